"""gradcheck itself: it passes correct functions and catches each kind of wrong
derivative it promises to catch, with a message that locates the error."""

from __future__ import annotations

import re

import numpy as np
import pytest

from minipg.autodiff import GradcheckError, Tensor, gradcheck, no_grad, ops


def _rng():
    return np.random.default_rng(0)


# -------------------------------------------------- custom ops (some broken)

class SquareWrongAt10:
    """z = a^2 with a vjp that is 3x too large at entry (1, 0) only."""

    @staticmethod
    def forward(a):
        return a * a, a

    @staticmethod
    def vjp(g, a, needs):
        ga = 2.0 * a * g
        ga[1, 0] *= 3.0
        return (ga,)

    @staticmethod
    def jvp(a, da):
        return None if da is None else 2.0 * a * da


class SinWrongJvp:
    """z = sin(a): right vjp, jvp 1.5x too large."""

    @staticmethod
    def forward(a):
        return np.sin(a), a

    @staticmethod
    def vjp(g, a, needs):
        return (g * np.cos(a),)

    @staticmethod
    def jvp(a, da):
        return None if da is None else 1.5 * da * np.cos(a)


class SinVjpPlusConstant:
    """z = sin(a) whose vjp adds 1e-9: far inside the Jacobian tolerance, but a zero
    cotangent then gives a non-zero gradient."""

    @staticmethod
    def forward(a):
        return np.sin(a), a

    @staticmethod
    def vjp(g, a, needs):
        return (g * np.cos(a) + 1e-9,)

    @staticmethod
    def jvp(a, da):
        return None if da is None else da * np.cos(a)


class SinNoisyVjp:
    """z = sin(a) whose vjp has relative noise 1e-10 (zero for a zero cotangent, so only
    the repeat check can see it)."""

    noise = np.random.default_rng(123)

    @staticmethod
    def forward(a):
        return np.sin(a), a

    @staticmethod
    def vjp(g, a, needs):
        return (g * np.cos(a) * (1.0 + 1e-10 * SinNoisyVjp.noise.standard_normal(a.shape)),)

    @staticmethod
    def jvp(a, da):
        return None if da is None else da * np.cos(a)


# ------------------------------------------------------------------- passes

def test_gradcheck_passes_a_correct_function_of_several_inputs():
    x = _rng().standard_normal((2, 3))
    W = _rng().standard_normal((3, 4))
    b = _rng().standard_normal(4)
    assert gradcheck(lambda x, W, b: ops.tanh(x @ W + b).sum(), [x, W, b]) is True


def test_gradcheck_passes_a_correct_function_with_several_outputs():
    x = _rng().standard_normal(3)
    y = _rng().standard_normal((2, 3))
    assert gradcheck(lambda x, y: (x * y, ops.exp(x).sum(), ops.softmax(y, axis=0)),
                     [x, y], atol=1e-7, rtol=1e-6) is True


def test_gradcheck_fast_mode_passes_a_correct_function():
    x = _rng().standard_normal((8, 5))
    W = _rng().standard_normal((5, 6))
    assert gradcheck(lambda x, W: (ops.log_softmax(x @ W), ops.relu(x).sum()), [x, W],
                     fast_mode=True) is True


def test_gradcheck_accepts_a_single_array_or_tensor_and_leaves_it_alone():
    a = np.array([0.5, 1.0])
    t = Tensor(a.copy(), requires_grad=True)
    assert gradcheck(ops.exp, a) is True
    assert gradcheck(ops.exp, t) is True
    np.testing.assert_array_equal(a, [0.5, 1.0])
    np.testing.assert_array_equal(t.data, [0.5, 1.0])
    assert t.grad is None


def test_gradcheck_passes_non_contiguous_inputs():
    x = _rng().standard_normal((4, 3)).T          # F-ordered
    y = _rng().standard_normal((3, 8))[:, ::2]    # strided
    assert gradcheck(lambda x, y: x * y, [x, y]) is True


def test_gradcheck_passes_an_output_that_does_not_depend_on_the_input():
    c = Tensor(np.ones(2))
    assert gradcheck(lambda x: (x * 2.0, ops.exp(c)), [np.array([0.5, 1.0])]) is True


# ---------------------------------------------------------------- failures

def test_wrong_vjp_error_names_output_input_worst_entry_and_both_values():
    x = np.array([0.3, -0.7])
    y = np.array([[0.5, 1.0], [1.5, 2.0]])
    with pytest.raises(GradcheckError) as err:
        # output 0 is right; output 1 has a wrong vjp w.r.t. input 1 at entry (1, 0)
        gradcheck(lambda x, y: (x * y, ops.apply(SquareWrongAt10, y)), [x, y])
    msg = str(err.value)
    assert "vjp" in msg
    assert "output 1" in msg and "input 1" in msg
    assert "output index (1, 0)" in msg and "input index (1, 0)" in msg
    analytic = float(re.search(r"analytic ([-+0-9.e]+)", msg).group(1))
    numeric = float(re.search(r"numeric ([-+0-9.e]+)", msg).group(1))
    assert analytic == pytest.approx(3 * 2 * 1.5)              # 3 x (2 a) at a = 1.5
    assert numeric == pytest.approx(2 * 1.5, rel=1e-6)


def test_wrong_vjp_is_caught_in_fast_mode_too():
    y = np.array([[0.5, 1.0], [1.5, 2.0]])
    with pytest.raises(GradcheckError, match="fast mode"):
        gradcheck(lambda y: ops.apply(SquareWrongAt10, y), [y], fast_mode=True)


def test_wrong_jvp_with_correct_vjp_is_caught():
    x = np.array([0.3, -0.7, 1.1])
    with pytest.raises(GradcheckError, match=r"jvp \(forward mode\).*output 0.*input 0"):
        gradcheck(lambda x: ops.apply(SinWrongJvp, x), [x])
    # the vjp really is right: without the forward-mode check it passes
    assert gradcheck(lambda x: ops.apply(SinWrongJvp, x), [x], check_jvp=False) is True


def test_nonzero_gradient_for_a_zero_cotangent_is_caught():
    x = np.array([0.3, -0.7, 1.1])
    with pytest.raises(GradcheckError, match="zero output cotangent.*input 0"):
        gradcheck(lambda x: ops.apply(SinVjpPlusConstant, x), [x])


def test_nondeterministic_backward_is_caught_and_nondet_tol_allows_it():
    x = np.array([0.3, -0.7, 1.1])
    with pytest.raises(GradcheckError, match="two backward passes disagree"):
        gradcheck(lambda x: ops.apply(SinNoisyVjp, x), [x])
    assert gradcheck(lambda x: ops.apply(SinNoisyVjp, x), [x], nondet_tol=1e-6) is True


def test_function_mutating_its_input_is_caught():
    def f(x):
        with no_grad():
            x.add_(1.0)                   # writes into the input
        return x * 2.0
    with pytest.raises(GradcheckError, match="modified input 0"):
        gradcheck(f, [np.array([0.3, -0.7])])


def test_function_mutating_its_input_with_raw_numpy_is_caught():
    def f(x):
        x.data[0] = 5.0
        return x * 2.0
    with pytest.raises(GradcheckError, match="modified input 0"):
        gradcheck(f, [np.array([0.3, -0.7])])


def test_output_cut_from_the_tape_is_caught():
    # computed from x.data: the analytic Jacobian is 0, the numeric one 2x
    with pytest.raises(GradcheckError, match="output 0"):
        gradcheck(lambda x: Tensor(x.data ** 2), [np.array([0.5, 1.0])])


def test_float32_input_warns_and_is_checked_in_float64():
    x = np.array([0.3, -0.7], dtype=np.float32)
    with pytest.warns(UserWarning, match="float64"):
        assert gradcheck(ops.tanh, [x], atol=1e-7, rtol=1e-6) is True


def test_raise_exception_false_returns_false_instead_of_raising():
    y = np.array([[0.5, 1.0], [1.5, 2.0]])
    assert gradcheck(lambda y: ops.apply(SquareWrongAt10, y), [y],
                     raise_exception=False) is False
    x = np.array([0.3, -0.7, 1.1])
    assert gradcheck(lambda x: ops.apply(SinWrongJvp, x), [x], raise_exception=False) is False


def test_gradcheck_error_is_an_assertion_error():
    assert issubclass(GradcheckError, AssertionError)
