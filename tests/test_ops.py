"""Every differentiable op: vjp and jvp against central differences, the adjoint
identity, no input mutation, no gradient aliasing, fan-out, float32, and the
documented conventions at non-differentiable points.

How the checks are made
-----------------------
``check_op`` (used by every property test below) runs, for one drawn example:

1. ``gradcheck`` with eps=1e-6, atol=1e-7, rtol=1e-6 (10-100x tighter than
   its torch-like defaults 1e-5 / 1e-3).  Justification: in float64 central
   differences err by ~eps^2 |f'''| / 6 (truncation) + macheps |f| / eps
   (rounding) ~ 1e-12 * |f'''| + 2e-10 * |f|, i.e. ~1e-10 for the value
   ranges drawn here (|f|, |f'''| <= ~100: e.g. log on [0.1, 3] has
   |f'''| = 2/x^3 <= 2000, giving 3e-10).  atol=1e-7 leaves a margin of >100x
   while a wrong derivative (a factor, a sign, a missing broadcast sum) is off
   by O(0.1) or more.  gradcheck also checks the jvp the same way, that a
   zero cotangent gives exactly zero, that two backward passes agree and
   that the function did not write into its inputs.
2. The adjoint identity <u, J v> = <J^T u, v> with minipg.autodiff.vjp and jvp
   called directly, random u and v, relative tolerance 1e-12 (relative to the
   sum of the absolute values of the terms of both dot products, so that
   rounding in a sum with cancellation is not mistaken for a bug).
3. A forward + backward through Tensors wrapping the very arrays drawn
   (gradcheck works on contiguous copies; these may be transposed or strided
   views): no input (nor constant) is modified, every leaf gets a gradient
   of its own shape and dtype, no two leaves' gradients share memory, no
   gradient shares memory with an input or the output, and the gradients
   equal those computed from contiguous copies.
4. The forward value against a NumPy reference.

Values are drawn away from kinks and domain edges explicitly; each strategy
says how.
"""

from __future__ import annotations

import builtins
import operator

import numpy as np
import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minipg.autodiff import GradcheckError, Tensor, gradcheck, jvp, ops, vjp

EPS, ATOL, RTOL = 1e-6, 1e-7, 1e-6     # see the module docstring
ADJOINT_RTOL = 1e-12

# ----------------------------------------------------------------- strategies


def smooth(lo, hi):
    """Floats in [lo, hi] (used where the op is smooth on the whole interval)."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def nonzero(lo, hi):
    """Floats with lo <= |x| <= hi, either sign (denominators)."""
    return st.one_of(smooth(lo, hi), smooth(-hi, -lo))


# Values on the grid (k + 1/2) / 4, k in [-16, 15]: |x| >= 0.125 from the kink at 0
# (and from any bound on the grid j / 4), far more than the 1e-3 the finite
# differences need (eps = 1e-6).
OFF_GRID = st.integers(-16, 15).map(lambda k: (k + 0.5) / 4)
# Values on the grid j / 4: at least 0.125 from every OFF_GRID value.
ON_GRID = st.integers(-16, 16).map(lambda j: j / 4)

LAYOUTS = ("contiguous", "transposed", "strided")


def relayout(a, layout):
    """The same values as `a` in a non-contiguous layout.

    "transposed": an F-ordered array (a transposed C array);
    "strided": every other entry of a buffer whose gaps hold NaN, so that an
    op reading outside the view makes the test fail.
    """
    if layout == "transposed" and a.ndim >= 2:
        return np.ascontiguousarray(a.T).T
    if layout == "strided" and a.ndim >= 1:
        buf = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan)
        view = buf[..., ::2]
        view[...] = a
        return view
    return a


@st.composite
def arrays(draw, shape, elements, layouts=LAYOUTS):
    """A float64 array of `shape`, in a drawn (possibly non-contiguous) layout."""
    a = draw(hnp.arrays(np.float64, shape, elements=elements))
    return relayout(a, draw(st.sampled_from(layouts)))


@st.composite
def distinct_arrays(draw, shape, layouts=LAYOUTS):
    """Pairwise distinct values with gaps >= 0.25, all >= 0.125 from 0.

    Drawn as distinct integers k (hnp.arrays(unique=True)) mapped to
    (k + 1/2) / 4: no ties, no near-ties, nothing near the kink of relu/abs.
    """
    k = draw(hnp.arrays(np.int64, shape, elements=st.integers(-16, 15), unique=True))
    return relayout(np.asarray((k + 0.5) / 4), draw(st.sampled_from(layouts)))


SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
SHAPES_1D_UP = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3)
PAIRS = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)
TRIPLES = hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3)
SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def axis_args(draw, ndim):
    """(axis, keepdims): axis None, an int (maybe negative) or a tuple (maybe empty)."""
    keepdims = draw(st.booleans())
    kinds = ["none"] if ndim == 0 else ["none", "int", "tuple"]
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None, keepdims
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1)), keepdims
    axes = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    negate = draw(st.lists(st.booleans(), min_size=len(axes), max_size=len(axes)))
    return tuple(a - ndim if n else a for a, n in zip(axes, negate)), keepdims


# ------------------------------------------------------------------- checker

def _snapshot(a):
    """A copy of a's values and, for a view, of its whole base buffer."""
    a = np.asarray(a)
    base = a.base if isinstance(a.base, np.ndarray) else None
    return a, a.copy(), base, None if base is None else base.copy()


def _unchanged(snap):
    a, copy, base, base_copy = snap
    same = np.array_equal(a, copy, equal_nan=True)
    if base is not None:
        same = same and np.array_equal(base, base_copy, equal_nan=True)
    return same


def _as_tuple(y):
    return y if isinstance(y, tuple) else (y,)


def check_op(f, inputs, *, seed=0, expected=None, constants=()):
    """All the derivative checks of the module docstring for f at `inputs`.

    f takes one Tensor per input and returns a Tensor (or a tuple of them);
    `constants` are arrays f closes over (checked for mutation too);
    `expected` is the NumPy reference of f's forward value.
    """
    inputs = list(inputs)
    snaps = [_snapshot(a) for a in [*inputs, *constants]]

    # 1. vjp and jvp against central differences (and gradcheck's other checks)
    gradcheck(f, inputs, eps=EPS, atol=ATOL, rtol=RTOL)

    # 2. the adjoint identity <u, J v> = <J^T u, v> on the arrays as drawn
    rng = np.random.default_rng(seed)
    y, pullback = vjp(f, *inputs)
    multi = isinstance(y, tuple)
    ys = _as_tuple(y)
    us = [rng.standard_normal(np.shape(o)) for o in ys]
    vs = [rng.standard_normal(np.shape(a)) for a in inputs]
    jtu = pullback(tuple(us) if multi else us[0])
    _, jv = jvp(f, inputs, vs)
    u_jv = [u * t for u, t in zip(us, _as_tuple(jv))]
    jtu_v = [g * v for g, v in zip(jtu, vs)]
    lhs = builtins.sum(float(np.sum(t)) for t in u_jv)
    rhs = builtins.sum(float(np.sum(t)) for t in jtu_v)
    scale = builtins.sum(float(np.sum(np.abs(t))) for t in [*u_jv, *jtu_v])
    if not abs(lhs - rhs) <= ADJOINT_RTOL * scale:
        # a derivative error like gradcheck's (the tests of the tests expect this type)
        raise GradcheckError(f"adjoint identity fails, the vjp and jvp disagree: "
                             f"<u, J v> = {lhs!r}, <J^T u, v> = {rhs!r} (scale {scale!r})")

    # 3. forward + backward on the drawn arrays themselves
    leaves = [Tensor(a, requires_grad=True) for a in inputs]
    outs = _as_tuple(f(*leaves))
    for k, (o, u) in enumerate(zip(outs, us)):
        assert o.requires_grad, f"output {k} is not on the tape"
        o.backward(u, retain_graph=True)
    for leaf, a in zip(leaves, inputs):
        assert leaf.data is a or np.shares_memory(leaf.data, a)   # really the drawn array
        assert leaf.grad is not None
        assert leaf.grad.shape == a.shape and leaf.grad.dtype == a.dtype
    for i, leaf in enumerate(leaves):
        for other in leaves[i + 1:]:
            assert not np.shares_memory(leaf.grad, other.grad), "two gradients alias"
        for a in [*inputs, *constants, *(o.data for o in outs)]:
            assert not np.shares_memory(leaf.grad, a), "a gradient aliases an input/output"
    assert all(_unchanged(s) for s in snaps), "an input or constant was modified"
    # same gradients as from contiguous copies (which is what gradcheck checked)
    contiguous = [np.array(a, order="C", copy=True) for a in inputs]
    jtu_c = vjp(f, *contiguous)[1](tuple(us) if multi else us[0])
    for leaf, g, gc in zip(leaves, jtu, jtu_c):
        np.testing.assert_allclose(leaf.grad, gc, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(g, gc, rtol=1e-12, atol=1e-13)

    # 4. the forward value
    if expected is not None:
        for o, e in zip(outs, _as_tuple(expected)):
            assert o.shape == np.shape(e)
            np.testing.assert_allclose(o.data, e, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------ elementwise ops

# name -> (function of a Tensor, the same as a Tensor method/operator, values,
#          NumPy reference).  Domains: log / sqrt on [0.1, 3] (x > 0),
# log1p on [-0.9, 3] (x > -1), abs / relu on OFF_GRID (|x| >= 0.125 from the kink).
UNARY = {
    "neg": (ops.neg, operator.neg, smooth(-3, 3), np.negative),
    "exp": (ops.exp, lambda x: x.exp(), smooth(-3, 3), np.exp),
    "log": (ops.log, lambda x: x.log(), smooth(0.1, 3), np.log),
    "log1p": (ops.log1p, lambda x: x.log1p(), smooth(-0.9, 3), np.log1p),
    "sqrt": (ops.sqrt, lambda x: x.sqrt(), smooth(0.1, 3), np.sqrt),
    "square": (ops.square, lambda x: x.square(), smooth(-3, 3), np.square),
    "abs": (ops.abs, builtins.abs, OFF_GRID, np.abs),
    "tanh": (ops.tanh, lambda x: x.tanh(), smooth(-3, 3), np.tanh),
    "relu": (ops.relu, lambda x: x.relu(), OFF_GRID, lambda x: np.maximum(x, 0.0)),
    "sigmoid": (ops.sigmoid, lambda x: x.sigmoid(), smooth(-5, 5),
                lambda x: 1.0 / (1.0 + np.exp(-x))),
    "softplus": (ops.softplus, lambda x: x.softplus(), smooth(-5, 5),
                 lambda x: np.log1p(np.exp(x))),
}


def unary_property(name, data):
    fn, method, elements, ref = UNARY[name]
    x = data.draw(arrays(data.draw(SHAPES), elements), label="x")
    f = data.draw(st.sampled_from([fn, method]), label="form")
    check_op(f, [x], seed=data.draw(SEEDS), expected=ref(x))


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data())
def test_unary_op_vjp_jvp_match_central_differences(name, data):
    unary_property(name, data)


# name -> (function, operator, values of a, values of b, NumPy reference).
# div: |b| in [0.5, 2] (away from the pole at 0); pow: a in [0.5, 2] (a > 0, so
# log a and a^b are smooth), b in [-2, 2].
BINARY = {
    "add": (ops.add, operator.add, smooth(-3, 3), smooth(-3, 3), np.add),
    "sub": (ops.sub, operator.sub, smooth(-3, 3), smooth(-3, 3), np.subtract),
    "mul": (ops.mul, operator.mul, smooth(-3, 3), smooth(-3, 3), np.multiply),
    "div": (ops.div, operator.truediv, smooth(-3, 3), nonzero(0.5, 2), np.divide),
    "pow": (ops.pow, operator.pow, smooth(0.5, 2), smooth(-2, 2), np.power),
}


def binary_property(name, data):
    fn, op, ea, eb, ref = BINARY[name]
    shapes = data.draw(PAIRS, label="shapes").input_shapes
    a = data.draw(arrays(shapes[0], ea), label="a")
    b = data.draw(arrays(shapes[1], eb), label="b")
    form = data.draw(st.sampled_from(["function", "operator", "a constant", "b constant"]))
    seed = data.draw(SEEDS)
    if form == "function":
        check_op(fn, [a, b], seed=seed, expected=ref(a, b))
    elif form == "operator":
        check_op(op, [a, b], seed=seed, expected=ref(a, b))
    elif form == "a constant":        # ndarray (op) Tensor: NumPy must defer to Tensor
        check_op(lambda y: op(a, y), [b], seed=seed, expected=ref(a, b), constants=[a])
    else:
        check_op(lambda x: op(x, b), [a], seed=seed, expected=ref(a, b), constants=[b])


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data())
def test_binary_op_with_broadcasting_vjp_jvp_match_central_differences(name, data):
    binary_property(name, data)


@given(data=st.data())
def test_pow_constant_exponent_vjp_jvp_match_central_differences(data):
    p = data.draw(st.sampled_from([2, 3, -1, -2, 0.5, 1.5, -2.5, 2.0]), label="p")
    # integer powers are smooth for either sign away from 0 (|x| >= 0.25);
    # fractional ones need x > 0 (x >= 0.25)
    elements = nonzero(0.25, 2) if float(p).is_integer() else smooth(0.25, 2)
    x = data.draw(arrays(data.draw(SHAPES), elements), label="x")
    form = data.draw(st.sampled_from(["operator", "function", "0-d array"]))
    f = {"operator": lambda t: t ** p, "function": lambda t: ops.pow(t, p),
         "0-d array": lambda t: ops.pow(t, np.array(p))}[form]
    check_op(f, [x], seed=data.draw(SEEDS), expected=np.power(x, p))


@given(data=st.data())
def test_pow_constant_base_vjp_jvp_match_central_differences(data):
    c = data.draw(smooth(0.5, 3), label="base")
    x = data.draw(arrays(data.draw(SHAPES), smooth(-2, 2)), label="x")
    check_op(lambda t: c ** t, [x], seed=data.draw(SEEDS), expected=np.power(c, x))


# ------------------------------------------------------------------- matmul

@st.composite
def matmul_shapes(draw):
    """1-D @ 1-D, 1-D @ n-D, n-D @ 1-D, 2-D @ 2-D and batched with broadcasting."""
    a_vec, b_vec = draw(st.booleans()), draw(st.booleans())
    m, n, k = (draw(st.integers(1, 3)) for _ in range(3))
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2,
                                                   max_side=2)).input_shapes
    sa = (n,) if a_vec else batch[0] + (m, n)
    sb = (n,) if b_vec else batch[1] + (n, k)
    return sa, sb


@given(data=st.data())
def test_matmul_1d_2d_batched_vjp_jvp_match_central_differences(data):
    sa, sb = data.draw(matmul_shapes(), label="shapes")
    a = data.draw(arrays(sa, smooth(-2, 2)), label="a")
    b = data.draw(arrays(sb, smooth(-2, 2)), label="b")
    f = data.draw(st.sampled_from([ops.matmul, operator.matmul]), label="form")
    check_op(f, [a, b], seed=data.draw(SEEDS), expected=np.matmul(a, b))


@given(data=st.data())
def test_matmul_with_constant_matrix_vjp_jvp_match_central_differences(data):
    sa, sb = data.draw(matmul_shapes(), label="shapes")
    a = data.draw(arrays(sa, smooth(-2, 2)), label="a")
    b = data.draw(arrays(sb, smooth(-2, 2)), label="b")
    seed = data.draw(SEEDS)
    if data.draw(st.booleans(), label="constant on the left"):
        check_op(lambda y: a @ y, [b], seed=seed, expected=a @ b, constants=[a])
    else:
        check_op(lambda x: x @ b, [a], seed=seed, expected=a @ b, constants=[b])


@given(data=st.data())
def test_dense_vjp_jvp_match_central_differences(data):
    lead = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3), label="lead")
    n_in, n_out = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    x = data.draw(arrays(lead + (n_in,), smooth(-2, 2)), label="x")
    W = data.draw(arrays((n_in, n_out), smooth(-2, 2)), label="W")
    b = data.draw(arrays((n_out,), smooth(-2, 2)), label="b")
    seed = data.draw(SEEDS)
    expected = x @ W + b
    if data.draw(st.booleans(), label="x constant (observations)"):
        check_op(lambda W_, b_: ops.dense(x, W_, b_), [W, b], seed=seed, expected=expected,
                 constants=[x])
    else:
        check_op(ops.dense, [x, W, b], seed=seed, expected=expected)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@given(data=st.data())
def test_dense_with_activation_vjp_jvp_match_central_differences(activation, data):
    """The fused dense layer, tanh or relu applied by the op itself; relu's inputs are
    kept away from the kink, where central differences are not the derivative."""
    lead = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3), label="lead")
    n_in, n_out = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    x = data.draw(arrays(lead + (n_in,), smooth(-2, 2)), label="x")
    W = data.draw(arrays((n_in, n_out), smooth(-2, 2)), label="W")
    b = data.draw(arrays((n_out,), smooth(-2, 2)), label="b")
    pre = x @ W + b
    if activation == "relu":
        assume(np.all(np.abs(pre) > 1e-3))
    expected = np.tanh(pre) if activation == "tanh" else np.maximum(pre, 0.0)
    check_op(lambda x_, W_, b_: ops.dense(x_, W_, b_, activation), [x, W, b],
             seed=data.draw(SEEDS), expected=expected)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_fused_dense_activation_equals_the_composition_bitwise(activation):
    """dense(x, W, b, act) is dense then act: the same values and the same gradients,
    bit for bit (float32 and float64), including relu's 0 gradient at the kink."""
    act = getattr(ops, activation)
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(3)
        x = rng.standard_normal((7, 5)).astype(dtype)
        x[0] = 0.0                               # a row at relu's kink (pre-activation = b)
        W = rng.standard_normal((5, 4)).astype(dtype)
        b = np.zeros(4, dtype)
        grads = []
        for fused in (True, False):
            Wt, bt = Tensor(W.copy(), requires_grad=True), Tensor(b.copy(), requires_grad=True)
            xt = Tensor(x.copy(), requires_grad=True)
            y = (ops.dense(xt, Wt, bt, activation) if fused
                 else act(ops.dense(xt, Wt, bt)))
            (y * np.arange(4, dtype=dtype)).sum().backward()
            grads.append((y.data, xt.grad, Wt.grad, bt.grad))
        for a, c in zip(*grads):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("shapes", [((300, 5), (5, 64), (64,)),             # one layer
                                    ((3, 100, 5), (5, 64), (64,)),          # leading axes
                                    ((300, 5), (2, 5, 64), (2, 1, 64)),     # shared x, stack
                                    ((2, 300, 5), (2, 5, 64), (2, 1, 64))])  # stacked x
def test_large_relu_dense_compiled_passes_equal_numpy_bitwise(shapes, monkeypatch):
    """Above FUSED_RELU_MIN_SIZE outputs, the relu dense layer adds the bias, applies the
    relu and masks the cotangent in compiled passes (minipg.kernels.dense): the values,
    the gradients and a NaN's propagation are those of the same op with NumPy's passes
    (the threshold raised out of reach), bit for bit."""
    x_shape, W_shape, b_shape = shapes
    threshold = ops.FUSED_RELU_MIN_SIZE
    calls = []                                   # the compiled passes are really taken
    for name in ("bias_relu_numba", "relu_mask_numba"):
        kernel = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *a, kernel=kernel, name=name: (
            calls.append(name), kernel(*a))[1])
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(5)
        x = rng.standard_normal(x_shape).astype(dtype)
        W = rng.standard_normal(W_shape).astype(dtype)
        b = rng.standard_normal(b_shape).astype(dtype)
        x.reshape(-1, x_shape[-1])[0, 0] = np.nan         # a NaN row stays NaN (np.maximum)
        out_size = int(np.prod(np.broadcast_shapes(x_shape[:-1] + (1,), W_shape[:-2] + (1, 1))
                               )) * W_shape[-1]
        assert out_size >= threshold
        cotangent = rng.standard_normal(np.matmul(x, W).shape).astype(dtype)
        grads = []
        for min_size in (threshold, 2**62):
            monkeypatch.setattr(ops, "FUSED_RELU_MIN_SIZE", min_size)
            Wt, bt = Tensor(W.copy(), requires_grad=True), Tensor(b.copy(), requires_grad=True)
            xt = Tensor(x.copy(), requires_grad=True)
            y = ops.dense(xt, Wt, bt, "relu")
            y.backward(cotangent)
            grads.append((y.data, xt.grad, Wt.grad, bt.grad))
        for a, c in zip(*grads):
            np.testing.assert_array_equal(a, c)
        assert np.isnan(grads[0][0]).any() and np.isnan(grads[0][2]).any()
        assert sorted(set(calls)) == ["bias_relu_numba", "relu_mask_numba"]
        calls.clear()


@pytest.mark.parametrize("activation", [None, "tanh"])
@given(data=st.data())
def test_stacked_dense_vjp_jvp_match_central_differences(activation, data):
    """K layers stacked (an ensemble of critics): W (K, n_in, n_out), b (K, 1, n_out),
    x shared (N, n_in) or one per layer (K, N, n_in); against the matmul it stands for."""
    K, N = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    n_in, n_out = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    shared = data.draw(st.booleans(), label="x shared by the K layers")
    x = data.draw(arrays((N, n_in) if shared else (K, N, n_in), smooth(-2, 2)), label="x")
    W = data.draw(arrays((K, n_in, n_out), smooth(-2, 2)), label="W")
    b = data.draw(arrays((K, 1, n_out), smooth(-2, 2)), label="b")
    pre = np.matmul(x, W) + b
    expected = pre if activation is None else np.tanh(pre)
    check_op(lambda x_, W_, b_: ops.dense(x_, W_, b_, activation), [x, W, b],
             seed=data.draw(SEEDS), expected=expected)


def test_dense_rejects_shapes_it_does_not_accept():
    with pytest.raises(ValueError, match="accepted shapes"):
        ops.dense(np.ones((2, 3)), np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="accepted shapes"):
        ops.dense(np.ones((4, 2, 3)), np.ones((2, 3, 2)), np.ones((2, 1, 2)))


def test_dense_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        ops.dense(np.ones((2, 3)), np.ones((3, 2)), np.ones(2), "gelu")


# --------------------------------------------------------------- reductions

REDUCTIONS = {"sum": (ops.sum, np.sum), "mean": (ops.mean, np.mean),
              "max": (ops.max, np.max), "min": (ops.min, np.min)}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@given(data=st.data())
def test_reduction_any_axis_keepdims_vjp_jvp_match_central_differences(name, data):
    fn, ref = REDUCTIONS[name]
    shape = data.draw(SHAPES, label="shape")
    # max/min: distinct values with gaps >= 0.25, so no ties or near-ties
    x = data.draw(distinct_arrays(shape) if name in ("max", "min")
                  else arrays(shape, smooth(-3, 3)), label="x")
    axis, keepdims = data.draw(axis_args(len(shape)), label="axis, keepdims")
    if data.draw(st.booleans(), label="as a method"):
        def f(t):
            return getattr(t, name)(axis=axis, keepdims=keepdims)
    else:
        def f(t):
            return fn(t, axis=axis, keepdims=keepdims)
    check_op(f, [x], seed=data.draw(SEEDS), expected=ref(x, axis=axis, keepdims=keepdims))


PAIRWISE = {"maximum": (ops.maximum, np.maximum), "minimum": (ops.minimum, np.minimum)}


@pytest.mark.parametrize("name", sorted(PAIRWISE))
@given(data=st.data())
def test_maximum_minimum_with_broadcasting_vjp_jvp_match_central_differences(name, data):
    fn, ref = PAIRWISE[name]
    shapes = data.draw(PAIRS, label="shapes").input_shapes
    # a on the grid (k + 1/2)/4, b on the grid j/4: |a - b| >= 0.125 everywhere, no ties
    a = data.draw(arrays(shapes[0], OFF_GRID), label="a")
    b = data.draw(arrays(shapes[1], ON_GRID), label="b")
    seed = data.draw(SEEDS)
    form = data.draw(st.sampled_from(["both", "b constant", "python scalar"]), label="form")
    if form == "both":
        check_op(fn, [a, b], seed=seed, expected=ref(a, b))
    elif form == "b constant":
        check_op(lambda x: fn(x, b), [a], seed=seed, expected=ref(a, b), constants=[b])
    else:
        check_op(lambda x: fn(x, 0.0), [a], seed=seed, expected=ref(a, 0.0))


@given(data=st.data())
def test_clip_one_and_two_sided_vjp_jvp_match_central_differences(data):
    # x on the grid (k + 1/2)/4 and bounds on j/4: |x - bound| >= 0.125
    x = data.draw(arrays(data.draw(SHAPES), OFF_GRID), label="x")
    lo, hi = sorted(data.draw(st.lists(ON_GRID, min_size=2, max_size=2), label="bounds"))
    lo, hi = data.draw(st.sampled_from([(lo, hi), (lo, None), (None, hi)]), label="sides")
    f = data.draw(st.sampled_from([lambda t: ops.clip(t, lo, hi), lambda t: t.clip(lo, hi)]))
    check_op(f, [x], seed=data.draw(SEEDS), expected=np.clip(x, lo, hi))


@given(data=st.data())
def test_where_with_broadcasting_vjp_jvp_match_central_differences(data):
    sc, sa, sb = data.draw(TRIPLES, label="shapes").input_shapes
    cond = data.draw(hnp.arrays(np.bool_, sc), label="cond")
    a = data.draw(arrays(sa, smooth(-3, 3)), label="a")
    b = data.draw(arrays(sb, smooth(-3, 3)), label="b")
    seed = data.draw(SEEDS)
    if data.draw(st.booleans(), label="b a python scalar"):
        check_op(lambda x: ops.where(cond, x, 0.5), [a], seed=seed,
                 expected=np.where(cond, a, 0.5), constants=[cond])
    else:
        check_op(lambda x, y: ops.where(cond, x, y), [a, b], seed=seed,
                 expected=np.where(cond, a, b), constants=[cond])


# ------------------------------------------------------------------- shape ops

@given(data=st.data())
def test_reshape_vjp_jvp_match_central_differences(data):
    shape = data.draw(SHAPES, label="shape")
    x = data.draw(arrays(shape, smooth(-3, 3)), label="x")
    size = int(np.prod(shape))
    target = data.draw(st.sampled_from([(-1,), (size, 1), (1, size), shape[::-1],
                                        shape + (1,), (1,) + shape]), label="target")
    form = data.draw(st.sampled_from(["tuple", "varargs", "method"]), label="form")
    f = {"tuple": lambda t: ops.reshape(t, target),
         "varargs": lambda t: ops.reshape(t, *target),
         "method": lambda t: t.reshape(target)}[form]
    check_op(f, [x], seed=data.draw(SEEDS), expected=np.reshape(x, target))


@given(data=st.data())
def test_transpose_vjp_jvp_match_central_differences(data):
    shape = data.draw(SHAPES, label="shape")
    x = data.draw(arrays(shape, smooth(-3, 3)), label="x")
    perm = data.draw(st.permutations(range(len(shape))), label="perm")
    negate = data.draw(st.lists(st.booleans(), min_size=len(perm), max_size=len(perm)))
    axes = tuple(p - len(shape) if n else p for p, n in zip(perm, negate))
    form = data.draw(st.sampled_from(["axes", "reverse", ".T"]), label="form")
    f = {"axes": lambda t: ops.transpose(t, axes), "reverse": ops.transpose,
         ".T": lambda t: t.T}[form]
    expected = np.transpose(x, axes) if form == "axes" else np.transpose(x)
    check_op(f, [x], seed=data.draw(SEEDS), expected=expected)


@given(data=st.data())
def test_getitem_basic_slices_vjp_jvp_match_central_differences(data):
    shape = data.draw(SHAPES, label="shape")
    x = data.draw(arrays(shape, smooth(-3, 3)), label="x")
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True),
                      label="index")
    check_op(lambda t: t[index], [x], seed=data.draw(SEEDS), expected=x[index])


@given(data=st.data())
def test_getitem_integer_array_with_repeats_vjp_jvp_match_central_differences(data):
    shape = data.draw(SHAPES_1D_UP, label="shape")
    x = data.draw(arrays(shape, smooth(-3, 3)), label="x")
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    n = shape[axis]
    idx = data.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=5), label="idx")
    idx = idx + [idx[0]]                       # at least one repeated index
    as_list = data.draw(st.booleans(), label="as a list")
    idx_arr = idx if as_list and axis == 0 else np.array(idx)
    index = idx_arr if axis == 0 else (slice(None),) * axis + (idx_arr,)
    check_op(lambda t: t[index], [x], seed=data.draw(SEEDS), expected=x[index])


@given(data=st.data())
def test_getitem_two_integer_arrays_vjp_jvp_match_central_differences(data):
    shape = data.draw(hnp.array_shapes(min_dims=2, max_dims=3, max_side=3), label="shape")
    x = data.draw(arrays(shape, smooth(-3, 3)), label="x")
    m = data.draw(st.integers(1, 5), label="m")   # m > 3 forces repeated pairs
    rows = data.draw(hnp.arrays(np.int64, (m,), elements=st.integers(0, shape[0] - 1)))
    cols = data.draw(hnp.arrays(np.int64, (m,), elements=st.integers(0, shape[1] - 1)))
    check_op(lambda t: t[rows, cols], [x], seed=data.draw(SEEDS), expected=x[rows, cols])


@given(data=st.data())
def test_getitem_boolean_mask_vjp_jvp_match_central_differences(data):
    shape = data.draw(SHAPES_1D_UP, label="shape")
    x = data.draw(arrays(shape, smooth(-3, 3)), label="x")
    form = data.draw(st.sampled_from(["leading dims", "last axis"]), label="form")
    if form == "last axis":                   # x[..., mask]
        mask = data.draw(hnp.arrays(np.bool_, shape[-1:]), label="mask")
        index = key = (Ellipsis, mask)
    else:                                     # x[mask] with mask over the first k axes
        k = data.draw(st.integers(1, len(shape)), label="mask dims")
        mask = data.draw(hnp.arrays(np.bool_, shape[:k]), label="mask")
        index = key = mask
    check_op(lambda t: t[key], [x], seed=data.draw(SEEDS), expected=x[index],
             constants=[mask])


@given(data=st.data())
def test_gather_vjp_jvp_match_central_differences(data):
    shape = data.draw(SHAPES_1D_UP, label="shape")
    x = data.draw(arrays(shape, smooth(-3, 3)), label="x")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    n = shape[axis]
    m = data.draw(st.integers(1, 4), label="m")   # m > n forces repeated indices
    ishape = tuple(m if i == axis % len(shape) else s for i, s in enumerate(shape))
    indices = data.draw(hnp.arrays(np.int64, ishape, elements=st.integers(-n, n - 1)))
    f = data.draw(st.sampled_from([lambda t: ops.gather(t, indices, axis=axis),
                                   lambda t: t.gather(indices, axis=axis)]))
    check_op(f, [x], seed=data.draw(SEEDS),
             expected=np.take_along_axis(x, indices, axis=axis), constants=[indices])


@st.composite
def pieces(draw, same_shape):
    """1-3 arrays for concatenate (equal but on `axis`) or stack (equal shapes),
    each either differentiable or a constant ndarray (at least one differentiable)."""
    k = draw(st.integers(1, 3))
    base = draw(SHAPES if same_shape else SHAPES_1D_UP)
    ndim = len(base)
    axis = draw(st.integers(-(ndim + 1), ndim) if same_shape else st.integers(-ndim, ndim - 1))
    shapes = []
    for _ in range(k):
        s = list(base)
        if not same_shape:
            s[axis % ndim] = draw(st.integers(1, 3))
        shapes.append(tuple(s))
    arrs = [draw(arrays(s, smooth(-3, 3))) for s in shapes]
    diff = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    diff[draw(st.integers(0, k - 1))] = True
    return arrs, diff, axis


def _pieces_fn(fn, arrs, diff, axis):
    def f(*ts):
        it = iter(ts)
        return fn([next(it) if d else a for a, d in zip(arrs, diff)], axis=axis)
    return f


@given(data=st.data())
def test_concatenate_with_constant_pieces_vjp_jvp_match_central_differences(data):
    arrs, diff, axis = data.draw(pieces(same_shape=False), label="pieces")
    check_op(_pieces_fn(ops.concatenate, arrs, diff, axis),
             [a for a, d in zip(arrs, diff) if d], seed=data.draw(SEEDS),
             expected=np.concatenate(arrs, axis=axis),
             constants=[a for a, d in zip(arrs, diff) if not d])


@given(data=st.data())
def test_stack_with_constant_pieces_vjp_jvp_match_central_differences(data):
    arrs, diff, axis = data.draw(pieces(same_shape=True), label="pieces")
    check_op(_pieces_fn(ops.stack, arrs, diff, axis),
             [a for a, d in zip(arrs, diff) if d], seed=data.draw(SEEDS),
             expected=np.stack(arrs, axis=axis),
             constants=[a for a, d in zip(arrs, diff) if not d])


# -------------------------------------------------------------- normalisers

def _np_logsumexp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axis)


@given(data=st.data())
def test_logsumexp_any_axis_keepdims_vjp_jvp_match_central_differences(data):
    shape = data.draw(SHAPES, label="shape")
    x = data.draw(arrays(shape, smooth(-5, 5)), label="x")   # smooth: ties are harmless
    axis, keepdims = data.draw(axis_args(len(shape)), label="axis, keepdims")
    ax = None if axis is None else tuple(np.atleast_1d(axis).tolist())
    check_op(lambda t: ops.logsumexp(t, axis=axis, keepdims=keepdims), [x],
             seed=data.draw(SEEDS),
             expected=_np_logsumexp(x, tuple(range(x.ndim)) if ax is None else ax, keepdims))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data())
def test_softmax_log_softmax_vjp_jvp_match_central_differences(name, data):
    shape = data.draw(SHAPES_1D_UP, label="shape")
    x = data.draw(arrays(shape, smooth(-5, 5)), label="x")
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    lse = _np_logsumexp(x, axis, keepdims=True)
    expected = x - lse if name == "log_softmax" else np.exp(x - lse)
    fn = getattr(ops, name)
    f = data.draw(st.sampled_from([lambda t: fn(t, axis=axis),
                                   lambda t: getattr(t, name)(axis=axis)]))
    check_op(f, [x], seed=data.draw(SEEDS), expected=expected)


def test_log_softmax_axis_forms_other_than_the_last_axis_take_the_numpy_path():
    """The numba kernel serves an int naming the last axis; None and tuples still work,
    and an out-of-range axis is still refused (not wrapped onto the last axis)."""
    x = np.arange(6.0).reshape(2, 3)
    for axis in (None, (0, 1)):
        np.testing.assert_allclose(ops.log_softmax(Tensor(x), axis=axis).data,
                                   x - _np_logsumexp(x, (0, 1), keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(ops.log_softmax(Tensor(x), axis=(-1,)).data,
                               x - _np_logsumexp(x, 1, keepdims=True), rtol=1e-14)
    for axis in (2, -3, 5):
        with pytest.raises(np.exceptions.AxisError):
            ops.log_softmax(Tensor(x), axis=axis)


def test_logsumexp_and_log_softmax_are_stable_for_large_inputs():
    x = np.array([1000.0, 1001.0, 999.0])
    t = Tensor(x, requires_grad=True)
    shifted = np.array([0.0, 1.0, -1.0])
    np.testing.assert_allclose(ops.logsumexp(t).data,
                               1000.0 + np.log(np.exp(shifted).sum()), rtol=1e-15)
    out = ops.log_softmax(t)
    np.testing.assert_allclose(out.data, shifted - np.log(np.exp(shifted).sum()), atol=1e-12)
    out.sum().backward()
    assert np.all(np.isfinite(t.grad))


# ---------------------------------------------------------------- fan-out

def test_fan_out_x_times_x_accumulates_to_2x():
    x = Tensor(np.array([-1.5, 0.5, 2.0]), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data, rtol=1e-15)


def test_fan_out_x_plus_x_times_x_accumulates_to_1_plus_2x():
    x = Tensor(np.array([-1.5, 0.5, 2.0]), requires_grad=True)
    (x + x * x).sum().backward()
    np.testing.assert_allclose(x.grad, 1 + 2 * x.data, rtol=1e-15)


def test_fan_out_diamond_through_two_branches_matches_product_rule():
    x0 = np.array([-1.5, 0.5, 2.0])
    x = Tensor(x0, requires_grad=True)
    a = ops.tanh(x)          # a = f(x)
    b = ops.exp(x)           # b = g(x)
    c = a * b                # c = f(x) g(x)
    c.sum().backward()
    t = np.tanh(x0)
    np.testing.assert_allclose(x.grad, (1 - t * t) * np.exp(x0) + t * np.exp(x0), rtol=1e-14)
    # and forward mode sums both branches too
    _, jv = jvp(lambda s: ops.tanh(s) * ops.exp(s), [x0], [np.ones(3)])
    np.testing.assert_allclose(jv, x.grad, rtol=1e-14)


def test_fan_out_through_a_shared_intermediate_accumulates():
    x0 = np.array([-1.5, 0.5, 2.0])
    x = Tensor(x0, requires_grad=True)
    h = x * 2.0
    (h * h + h).sum().backward()          # d/dx (4x^2 + 2x) = 8x + 2
    np.testing.assert_allclose(x.grad, 8 * x0 + 2, rtol=1e-15)


def test_fan_out_through_repeated_index_concatenate_and_stack_accumulates():
    x0 = np.array([1.0, 2.0, 3.0])
    x = Tensor(x0, requires_grad=True)
    y = x[np.array([0, 0, 2])].sum() + ops.concatenate([x, x]).sum() + ops.stack([x, x, x]).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad, np.array([2.0, 0.0, 1.0]) + 2.0 + 3.0)


@given(data=st.data())
def test_fan_out_diamond_matches_central_differences(data):
    x = data.draw(arrays(data.draw(SHAPES), smooth(-2, 2)), label="x")
    check_op(lambda t: ops.tanh(t) * ops.exp(t) + t * t, [x], seed=data.draw(SEEDS),
             expected=np.tanh(x) * np.exp(x) + x * x)


# ------------------------------------------------------------------ float32

class _RecordCotangent:
    """Identity op whose vjp records the dtype of the cotangent it receives
    (so the cotangent an op hands to its input is seen before any cast)."""

    seen = []

    @staticmethod
    def forward(x):
        return x, ()

    @staticmethod
    def vjp(g, saved, needs):
        _RecordCotangent.seen.append(g.dtype)
        return (g,)

    @staticmethod
    def jvp(saved, dx):
        return dx


_COND = np.array([[True, False, True], [False, True, True], [True, True, False]])
_IDX = np.array([[0, 0, 2], [1, 2, 1], [2, 2, 0]])

# name -> f(x, y) on two float32 (3, 3) arrays with distinct values in [0.5, 2]
FLOAT32_CASES = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul,
    "div": operator.truediv, "pow": operator.pow, "neg": lambda x, y: -x,
    "scalar mul x * 2.0": lambda x, y: x * 2.0, "scalar rsub 2.0 - x": lambda x, y: 2.0 - x,
    "scalar rdiv 1.0 / x": lambda x, y: 1.0 / x, "scalar add x + 1": lambda x, y: x + 1,
    "pow const x ** 2": lambda x, y: x ** 2, "pow const x ** 0.5": lambda x, y: x ** 0.5,
    "rpow 2.0 ** x": lambda x, y: 2.0 ** x,
    "matmul": operator.matmul, "matmul vector": lambda x, y: x @ y[0],
    "dense": lambda x, y: ops.dense(x, y, y[1]),
    "sum": lambda x, y: ops.sum(x, axis=0), "mean": lambda x, y: ops.mean(x, axis=(0, 1)),
    "max": lambda x, y: ops.max(x, axis=1), "min": lambda x, y: ops.min(x),
    "maximum": ops.maximum, "minimum": ops.minimum,
    "maximum with 0.0": lambda x, y: ops.maximum(x, 0.0),
    "clip": lambda x, y: ops.clip(x, 0.8, 1.5),
    "where": lambda x, y: ops.where(_COND, x, y),
    "where with 0.0": lambda x, y: ops.where(_COND, x, 0.0),
    "exp": lambda x, y: ops.exp(x), "log": lambda x, y: ops.log(x),
    "log1p": lambda x, y: ops.log1p(x), "sqrt": lambda x, y: ops.sqrt(x),
    "square": lambda x, y: ops.square(x), "abs": lambda x, y: ops.abs(x),
    "tanh": lambda x, y: ops.tanh(x), "relu": lambda x, y: ops.relu(x),
    "sigmoid": lambda x, y: ops.sigmoid(x), "softplus": lambda x, y: ops.softplus(x),
    "reshape": lambda x, y: x.reshape(9), "transpose": lambda x, y: x.T,
    "getitem slice": lambda x, y: x[1:, ::-1],
    "getitem int array": lambda x, y: x[np.array([0, 0, 2])],
    "getitem mask": lambda x, y: x[_COND],
    "gather": lambda x, y: ops.gather(x, _IDX, axis=1),
    "concatenate": lambda x, y: ops.concatenate([x, y], axis=1),
    "stack": lambda x, y: ops.stack([x, y]),
    "logsumexp": lambda x, y: ops.logsumexp(x, axis=0),
    "log_softmax": lambda x, y: ops.log_softmax(x), "softmax": lambda x, y: ops.softmax(x),
}


def _float32_inputs():
    values = (np.random.default_rng(7).permutation(18) / 12 + 0.5).astype(np.float32)
    return values[:9].reshape(3, 3), values[9:].reshape(3, 3)


@pytest.mark.parametrize("name", sorted(FLOAT32_CASES))
def test_float32_forward_gradients_and_tangents_stay_float32(name):
    f = FLOAT32_CASES[name]
    x0, y0 = _float32_inputs()
    x = Tensor(x0, requires_grad=True)
    y = Tensor(y0, requires_grad=True)
    _RecordCotangent.seen = []
    out = f(ops.apply(_RecordCotangent, x), ops.apply(_RecordCotangent, y))
    assert out.dtype == np.float32, f"forward gave {out.dtype}"
    out.backward(np.ones(out.shape, dtype=np.float32))
    # the cotangents the op produced for its inputs, before any cast at the leaves
    assert _RecordCotangent.seen and all(d == np.float32 for d in _RecordCotangent.seen), \
        _RecordCotangent.seen
    for leaf in (x, y):
        assert leaf.grad is None or leaf.grad.dtype == np.float32
    assert x.grad is not None
    _, jv = jvp(f, [x0, y0], [np.ones_like(x0), np.ones_like(y0)])
    assert jv.dtype == np.float32, f"jvp gave {jv.dtype}"


# ------------------------------------------------ non-differentiable points

def _grad_and_tangent(f, x0):
    """(d sum f / dx, J 1) at x0: reverse and forward mode at once."""
    x = Tensor(np.array(x0, dtype=np.float64), requires_grad=True)
    f(x).sum().backward()
    _, jv = jvp(f, [np.array(x0, dtype=np.float64)], [np.ones(np.shape(x0))])
    return x.grad, jv


def test_relu_derivative_at_zero_is_zero():
    g, jv = _grad_and_tangent(ops.relu, [-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(jv, [0.0, 0.0, 1.0])


def test_relu_of_minus_inf_is_zero():
    assert np.array_equal(ops.relu(Tensor(np.array([-np.inf, 1.0]))).data, [0.0, 1.0])


def test_abs_derivative_at_zero_is_zero():
    g, jv = _grad_and_tangent(ops.abs, [-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(g, [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(jv, [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("lo, hi", [(-1.0, 1.0), (-1.0, None), (None, 1.0)])
def test_clip_at_a_bound_passes_gradient_one(lo, hi):
    x0 = [-2.0, -1.0, 0.0, 1.0, 2.0]
    g, jv = _grad_and_tangent(lambda t: ops.clip(t, lo, hi), x0)
    expected = [float((lo is None or v >= lo) and (hi is None or v <= hi)) for v in x0]
    assert expected[1] == 1.0 or lo is None     # the bounds themselves pass
    np.testing.assert_array_equal(g, expected)
    np.testing.assert_array_equal(jv, expected)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum_tie_splits_gradient_half_half(name):
    fn = getattr(ops, name)
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([1.0, 1.0, 4.0]), requires_grad=True)
    fn(a, b).sum().backward()
    win_a = [0.5, 1.0, 0.0] if name == "maximum" else [0.5, 0.0, 1.0]
    np.testing.assert_array_equal(a.grad, win_a)
    np.testing.assert_array_equal(b.grad, 1.0 - np.array(win_a))
    _, jv = jvp(fn, [a.data, b.data], [np.ones(3), np.zeros(3)])
    np.testing.assert_array_equal(jv, win_a)
    # a tie with itself: the halves add up to 1
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    fn(x, x).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_reduction_ties_split_evenly(name):
    fn = getattr(ops, name)
    top = 3.0 if name == "max" else -3.0
    x0 = np.array([[top, 0.0, top, 1.0],
                   [top, top, top, 0.5]])
    x = Tensor(x0, requires_grad=True)
    fn(x).backward()                          # 5 tied entries overall
    np.testing.assert_allclose(x.grad, (x0 == top) / 5.0, rtol=1e-15)
    x.grad = None
    fn(x, axis=1, keepdims=True).sum().backward()   # 2 ties in row 0, 3 in row 1
    np.testing.assert_allclose(x.grad, (x0 == top) / np.array([[2.0], [3.0]]), rtol=1e-15)
    _, jv = jvp(lambda t: fn(t, axis=1), [x0], [np.arange(8.0).reshape(2, 4)])
    np.testing.assert_allclose(jv, [(0 + 2) / 2, (4 + 5 + 6) / 3], rtol=1e-15)


# ------------------------------------------------------- tests of the tests

def _run_property(body, *args):
    """Run a property body under hypothesis exactly as its test does (fewer examples,
    no shrinking, no example database)."""
    @settings(max_examples=30, database=None, phases=[Phase.generate],
              report_multiple_bugs=False)
    @given(data=st.data())
    def prop(data):
        body(*args, data)
    prop()


def test_property_test_catches_a_wrong_sign_in_tanh_derivative(monkeypatch):
    right = ops.Tanh.derivative
    monkeypatch.setattr(ops.Tanh, "derivative", staticmethod(lambda saved: -right(saved)))
    with pytest.raises(GradcheckError, match="vjp"):
        _run_property(unary_property, "tanh")


def test_property_test_catches_a_wrong_tanh_jvp_alone(monkeypatch):
    right = ops.Tanh.jvp                       # vjp (via Tanh.derivative) stays right
    monkeypatch.setattr(ops.Tanh, "jvp", classmethod(
        lambda cls, saved, dx: None if dx is None else 1.5 * right(saved, dx)))
    with pytest.raises(GradcheckError, match="jvp"):
        _run_property(unary_property, "tanh")


def test_property_test_catches_a_wrong_factor_in_mul_vjp(monkeypatch):
    right = ops.Mul.vjp

    def wrong(g, saved, needs):
        ga, gb = right(g, saved, needs)
        return (None if ga is None else 1.5 * ga), gb
    monkeypatch.setattr(ops.Mul, "vjp", staticmethod(wrong))
    with pytest.raises(GradcheckError, match="vjp"):
        _run_property(binary_property, "mul")


def test_property_test_catches_a_wrong_sign_in_mul_jvp_alone(monkeypatch):
    right = ops.Mul.jvp

    def wrong(saved, da, db):
        return right(saved, da, None if db is None else -db)
    monkeypatch.setattr(ops.Mul, "jvp", staticmethod(wrong))
    with pytest.raises(GradcheckError, match="jvp"):
        _run_property(binary_property, "mul")



@pytest.mark.parametrize("activation", [None, "tanh", "relu"])
def test_dense_jvp_vjp_reused_and_inputs_untouched(activation):
    """Dense's jvp sums its terms in place and both products reuse f' computed once: the
    same arrays as the written-out formulas, however often the recorded node is used, with
    the tangents and cotangents given left unchanged (also float32 data, float64 tangents)."""
    rng = np.random.default_rng(5)
    for dtype, tdtype in ((np.float64, np.float64), (np.float32, np.float64)):
        x, W, b = (rng.normal(size=s).astype(dtype) for s in ((6, 3), (3, 4), (4,)))
        out, saved = ops.Dense.forward(x, W, b, activation)
        d = {None: 1.0, "tanh": 1.0 - out * out, "relu": out > 0}[activation]
        dx, dW, db = (rng.normal(size=s).astype(tdtype) for s in ((6, 3), (3, 4), (4,)))
        copies = [t.copy() for t in (dx, dW, db)]
        g = rng.normal(size=(6, 4)).astype(tdtype)
        g_copy = g.copy()
        for _ in range(3):
            np.testing.assert_array_equal(ops.Dense.jvp(saved, dx, dW, db),
                                          ((dx @ W + x @ dW) + db) * d)
            np.testing.assert_array_equal(ops.Dense.jvp(saved, None, None, db),
                                          np.broadcast_to(db, (6, 4)) * d)
            assert ops.Dense.jvp(saved, None, None, None) is None
            gx, gW, gb = ops.Dense.vjp(g, saved, (True, True, True))
            h = g * d
            np.testing.assert_array_equal(gx, h @ W.T)
            np.testing.assert_array_equal(gW, x.T @ h)
            np.testing.assert_allclose(gb, h.sum(axis=0), rtol=1e-12)
        for t, c in zip((dx, dW, db, g), (*copies, g_copy)):
            np.testing.assert_array_equal(t, c)
