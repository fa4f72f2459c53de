"""Tensor and tape behaviour: backward order, accumulation, grad modes, detach,
freed graphs, in-place guards, and NumPy operator dispatch."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from minipg.autodiff import (GraphFreedError, InplaceModificationError, Parameter, Tensor,
                             enable_grad, is_grad_enabled, jvp, no_grad, ops)


def leaf(values):
    return Tensor(np.array(values, dtype=np.float64), requires_grad=True)


# ------------------------------------------------------------- construction

def test_integer_and_bool_data_become_float64_and_float32_is_kept():
    assert Tensor([1, 2]).dtype == np.float64
    assert Tensor(np.array([True, False])).dtype == np.float64
    assert Tensor(np.ones(2, dtype=np.float32)).dtype == np.float32
    assert Tensor([1, 2], dtype=np.float32).dtype == np.float32


def test_float_data_is_wrapped_without_a_copy():
    a = np.ones(3)
    assert Tensor(a).data is a


def test_parameter_is_a_leaf_that_requires_grad():
    p = Parameter(np.zeros(2))
    assert p.requires_grad and p.is_leaf and p.grad is None


# ----------------------------------------------------------------- backward

def test_backward_on_a_10000_op_chain_is_iterative_and_exact():
    assert sys.getrecursionlimit() < 20000      # a recursive walk would overflow
    x = leaf(0.5)
    y = x
    c = 1.0001
    for _ in range(5000):                       # 2 ops per step: 10,000 ops
        y = y * c + 0.001
    y.backward()
    np.testing.assert_allclose(x.grad, c ** 5000, rtol=1e-12)


def test_forward_mode_on_a_10000_op_chain_is_iterative_and_exact():
    def f(x):
        for _ in range(10000):
            x = x * 1.0001
        return x
    _, jv = jvp(f, [np.array(0.5)], [np.array(2.0)])
    np.testing.assert_allclose(jv, 2.0 * 1.0001 ** 10000, rtol=1e-12)


def test_backward_visits_a_node_only_after_all_its_consumers():
    # x feeds a long branch and a short one that meet again: a node processed
    # before all its cotangent arrived would lose a contribution
    x = leaf([0.3, -0.2])
    long_branch = x
    for _ in range(50):
        long_branch = long_branch * 1.0
    h = x * 3.0
    y = (h * long_branch + h).sum()             # 3x^2 + 3x
    y.backward()
    np.testing.assert_allclose(x.grad, 6 * x.data + 3, rtol=1e-14)


def test_gradients_accumulate_across_two_backward_calls_on_fresh_graphs():
    x = leaf([1.0, -2.0, 3.0])
    (x * x).sum().backward()
    first = x.grad.copy()
    (x * x).sum().backward()                    # a fresh graph, same leaf
    np.testing.assert_array_equal(first, 2 * x.data)
    np.testing.assert_array_equal(x.grad, 4 * x.data)


def test_only_leaves_receive_grad():
    x = leaf([1.0, 2.0])
    h = x * 2.0
    (h * h).sum().backward()
    assert h.grad is None
    np.testing.assert_array_equal(x.grad, 8 * x.data)


def test_backward_on_non_scalar_without_grad_raises_clear_runtime_error():
    y = leaf([1.0, 2.0]) * 2.0
    with pytest.raises(RuntimeError, match=r"single-element.*\(2,\)"):
        y.backward()


def test_backward_on_non_scalar_with_grad_uses_it_as_cotangent():
    x = leaf([1.0, 2.0])
    (x * 3.0).backward(np.array([10.0, 100.0]))
    np.testing.assert_array_equal(x.grad, [30.0, 300.0])


def test_backward_with_grad_of_wrong_shape_raises_value_error():
    with pytest.raises(ValueError, match="shape"):
        (leaf([1.0, 2.0]) * 3.0).backward(np.ones(3))


def test_backward_on_tensor_not_requiring_grad_raises_runtime_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor([1.0]) * 2.0).backward()


def test_second_backward_through_freed_graph_raises_graph_freed_error():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(GraphFreedError, match="retain_graph"):
        y.backward()


def test_backward_reaching_a_freed_intermediate_raises_graph_freed_error():
    x = leaf([1.0, 2.0])
    h = ops.exp(x)
    ops.square(h).sum().backward()              # frees the node of h too
    with pytest.raises(GraphFreedError, match="Exp"):
        (h * 3.0).sum().backward()


def test_retain_graph_allows_a_second_backward_that_accumulates():
    x = leaf([1.0, 2.0])
    y = (ops.tanh(x) * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.copy()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * first, rtol=1e-15)
    with pytest.raises(GraphFreedError):
        y.backward()


def test_negation_has_a_usable_graph():
    # Neg saves nothing; the tape must not mistake that for a freed graph
    x = leaf([1.0, -2.0])
    (-x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, -2 * x.data)


def test_backward_on_a_leaf_sets_its_grad_to_the_cotangent_copy():
    x = leaf([1.0, 2.0])
    g = np.array([3.0, 4.0])
    x.backward(g)
    np.testing.assert_array_equal(x.grad, g)
    assert not np.shares_memory(x.grad, g)


# ---------------------------------------------------------------- grad modes

def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0])
    with no_grad():
        assert not is_grad_enabled()
        y = ops.tanh(x * x).sum()
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError):
        y.backward()


def test_no_grad_as_decorator_and_enable_grad_inside_it():
    x = leaf([1.0, 2.0])

    @no_grad()
    def f():
        a = x * 2.0
        with enable_grad():
            b = x * 2.0
        return a, b
    a, b = f()
    assert not a.requires_grad
    assert b.requires_grad and not b.is_leaf


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert is_grad_enabled()


def test_detach_shares_data_and_cuts_the_tape():
    x = leaf([1.0, 2.0])
    h = x * 3.0
    d = h.detach()
    assert np.shares_memory(d.data, h.data)
    assert not d.requires_grad and d.is_leaf
    (d * x).sum().backward()                    # d is a constant: grad is d, not 6x
    np.testing.assert_array_equal(x.grad, h.data)


# ----------------------------------------------------------------- in place

@pytest.mark.parametrize("write", ["setitem", "copy_", "fill_", "add_", "mul_"])
def test_inplace_on_leaf_requiring_grad_raises_under_grad_mode(write):
    x = leaf([1.0, 2.0])
    with pytest.raises(InplaceModificationError):
        _write(x, write)
    np.testing.assert_array_equal(x.data, [1.0, 2.0])


def test_setitem_on_leaf_requiring_grad_is_allowed_under_no_grad():
    x = leaf([1.0, 2.0])
    with no_grad():
        x[0] = 5.0
    np.testing.assert_array_equal(x.data, [5.0, 2.0])


def test_leaf_changed_under_no_grad_after_use_makes_backward_raise():
    x = leaf([1.0, 2.0])
    y = ops.square(x).sum()
    with no_grad():
        x[0] = 5.0                              # e.g. an optimizer step too early
    with pytest.raises(InplaceModificationError, match="Square"):
        y.backward()


def _write(t, how):
    if how == "setitem":
        t[0] = 1.0
    elif how == "copy_":
        t.copy_(np.full(t.shape, 7.0))
    elif how == "fill_":
        t.fill_(7.0)
    elif how == "add_":
        t.add_(1.0)
    else:
        t.mul_(2.0)


@pytest.mark.parametrize("write", ["setitem", "copy_", "fill_", "add_", "mul_"])
def test_writing_into_an_intermediate_is_refused_naming_the_op(write):
    # a tensor computed by an op is on the tape: changing it would make the
    # recorded gradient disagree with its values, so every write is refused
    x = leaf([1.0, 2.0])
    h = ops.tanh(x)
    y = ops.square(h).sum()
    before = h.data.copy()
    with pytest.raises(InplaceModificationError, match="computed by op 'Tanh'"):
        _write(h, write)
    np.testing.assert_array_equal(h.data, before)
    y.backward()                                # the graph is still intact
    np.testing.assert_allclose(x.grad, 2 * before * (1 - before ** 2), rtol=1e-14)


@pytest.mark.parametrize("write", ["setitem", "copy_", "fill_", "add_", "mul_"])
def test_a_constant_changed_after_use_makes_backward_name_the_op(write):
    x = leaf([1.0, 2.0])
    c = Tensor([3.0, 4.0])                      # a constant (no grad) the op saves
    y = (x * c).sum()
    _write(c, write)                            # allowed: c is not on the tape itself
    with pytest.raises(InplaceModificationError, match="'Mul'"):
        y.backward()


def test_a_leaf_changed_under_no_grad_after_use_makes_backward_fail():
    x = leaf([1.0, 2.0])
    y = ops.square(x).sum()
    with no_grad():
        x[0] = 5.0                              # e.g. a manual parameter update
    with pytest.raises(InplaceModificationError, match="'Square'"):
        y.backward()


def test_modifying_an_ops_saved_output_in_place_is_refused():
    x = leaf([0.5, 1.0])
    y = ops.exp(x)                              # Exp saves its output for backward
    with pytest.raises(InplaceModificationError, match="computed by op 'Exp'"):
        y.copy_(np.array([100.0, 100.0]))
    (y * 1.0).sum().backward()
    np.testing.assert_allclose(x.grad, np.exp(x.data), rtol=1e-15)


VIEWS = {"reshape": lambda h: h.reshape(2), "getitem": lambda h: h[0:2],
         "transpose": lambda h: h.T, "detach": lambda h: h.detach()}


@pytest.mark.parametrize("make_view", sorted(VIEWS))
def test_writing_through_a_view_of_a_saved_tensor_is_refused(make_view):
    x = leaf([0.5, 1.0])
    h = x * 2.0
    y = (h * h).sum()                           # Mul saved h
    view = VIEWS[make_view](h)
    with pytest.raises(InplaceModificationError):
        view[0] = 100.0                         # would write into h.data
    np.testing.assert_array_equal(h.data, 2 * x.data)
    y.backward()
    np.testing.assert_allclose(x.grad, 8 * x.data, rtol=1e-15)


@pytest.mark.parametrize("make_view", sorted(VIEWS))
def test_a_view_of_a_constant_written_under_no_grad_invalidates_graphs_that_saved_it(
        make_view):
    x = leaf([0.5, 1.0])
    c = Tensor([3.0, 4.0])
    y = (x * c).sum()                           # Mul saved c
    view = VIEWS[make_view](c)
    view[0] = 100.0                             # writes into c.data through the view
    assert c.data[0] == 100.0
    with pytest.raises(InplaceModificationError, match="'Mul'"):
        y.backward()


def test_writing_through_a_view_of_a_leaf_requiring_grad_is_refused():
    x = leaf([0.5, 1.0])
    view = x[0:1]
    with pytest.raises(InplaceModificationError):
        view[0] = 100.0
    assert x.data[0] == 0.5, "the leaf was modified through a view"
    with no_grad():
        x.detach()[0] = 7.0                     # allowed where no graph is recorded
    assert x.data[0] == 7.0


def test_a_copy_made_by_advanced_indexing_is_not_a_view():
    c = Tensor([3.0, 4.0, 5.0])
    x = leaf([1.0, 1.0, 1.0])
    y = (x * c).sum()
    picked = c[np.array([0, 2])]                # a copy: writing it leaves c alone
    picked[0] = -1.0
    assert c.data[0] == 3.0
    y.backward()
    np.testing.assert_array_equal(x.grad, c.data)


# ----------------------------------------------------- NumPy operator dispatch

@pytest.mark.parametrize("op, expected_grad", [
    (lambda a, t: a * t, lambda a, x: a),
    (lambda a, t: a + t, lambda a, x: np.ones_like(x)),
    (lambda a, t: a - t, lambda a, x: -np.ones_like(x)),
    (lambda a, t: a / t, lambda a, x: -a / x ** 2),
    (lambda a, t: a ** t, lambda a, x: a ** x * np.log(a)),
], ids=["mul", "add", "sub", "truediv", "pow"])
def test_ndarray_op_tensor_dispatches_to_tensor(op, expected_grad):
    a = np.array([2.0, 3.0])
    x = leaf([0.5, 1.5])
    y = op(a, x)
    assert isinstance(y, Tensor) and y.requires_grad
    y.sum().backward()
    np.testing.assert_allclose(x.grad, expected_grad(a, x.data), rtol=1e-14)


def test_ndarray_matmul_tensor_dispatches_to_tensor():
    A = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = leaf([0.5, 1.5])
    y = A @ x
    assert isinstance(y, Tensor)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, A.sum(axis=0))


def test_comparisons_return_plain_boolean_arrays():
    x = Tensor([1.0, 2.0])
    assert isinstance(x > 1.5, np.ndarray) and (x > 1.5).tolist() == [False, True]


def test_truth_value_and_float_follow_numpy():
    assert float(Tensor(2.5)) == 2.5
    assert not Tensor(0.0) and Tensor(1.0)
    with pytest.raises(ValueError, match="ambiguous"):
        bool(Tensor([1.0, 2.0]))
