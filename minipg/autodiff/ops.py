"""The differentiable ops: forward, vjp and jvp side by side.

Every op is a class with three static methods:

``forward(*arrays, **params) -> (out, saved)``
    computes the output from plain arrays and returns what the other two need;
``vjp(g, saved, needs) -> tuple``
    the vector-Jacobian product: given the output cotangent ``g`` it returns
    one input cotangent per differentiable argument (``None`` where
    ``needs[i]`` is False, so unneeded work is skipped);
``jvp(saved, *tangents) -> array``
    the Jacobian-vector product: given one input tangent per argument
    (``None`` meaning zero) it returns the output tangent.

Broadcasting is undone in one place, :func:`unbroadcast`.

Arguments that are not Tensors are constants.  Like the data of a Tensor,
a constant ndarray may be kept by reference for the backward pass: do not
write into it before ``backward()`` (writes through Tensor methods are
detected by version counters; raw NumPy writes cannot be).

Conventions at points where the derivative does not exist (documented once,
here, and in each op's docstring):

* ``relu`` at 0 and ``abs`` at 0: derivative 0.
* ``clip(x, lo, hi)`` at a bound (x == lo or x == hi): derivative 1 (the
  gradient passes on the closed interval, as in torch.clamp).
* ``maximum``/``minimum`` with a tie: the cotangent is split 1/2 to each side.
* ``max``/``min`` reductions with ties: split evenly among the tied entries.
* ``sqrt`` at 0 and ``log`` at 0: the formulas give inf; no special case.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from ..kernels.dense import bias_relu_numba, relu_mask_numba
from ..kernels.softmax import KERNEL_FLOATS, log_softmax_rows_numba, log_softmax_rows_vjp_numba
from .tensor import Tensor, record, record1, record2

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "matmul", "dense",
    "DenseCapture", "sum", "mean", "max", "min", "maximum", "minimum", "clip", "where",
    "exp", "log", "log1p", "sqrt", "square", "abs", "tanh", "relu", "sigmoid",
    "softplus", "reshape", "transpose", "getitem", "gather", "concatenate",
    "stack", "logsumexp", "log_softmax", "softmax", "unbroadcast", "apply",
]


# ---------------------------------------------------------------- plumbing

def apply(op, *inputs, **params):
    """Run op.forward on the arrays of `inputs` and record the result.

    Tensor inputs are differentiable arguments; anything else (Python
    numbers, ndarrays) is a constant and keeps its own dtype, so ``x * 2.0``
    stays float32 for a float32 ``x``.
    """
    n = len(inputs)
    if n == 1:                                   # fast paths: most ops are unary or binary
        x = inputs[0]
        if isinstance(x, Tensor):
            out, saved = op.forward(x.data, **params)
            return record1(op, out, x, saved)
        out, saved = op.forward(_constant(x), **params)
        return record1(op, out, None, saved)
    if n == 2:
        a, b = inputs
        a_is, b_is = isinstance(a, Tensor), isinstance(b, Tensor)
        out, saved = op.forward(a.data if a_is else _constant(a),
                                b.data if b_is else _constant(b), **params)
        return record2(op, out, a if a_is else None, b if b_is else None, saved)
    parents = []
    arrays = []
    for x in inputs:
        if isinstance(x, Tensor):
            parents.append(x)
            arrays.append(x.data)
        else:
            parents.append(None)
            arrays.append(_constant(x))
    out, saved = op.forward(*arrays, **params)
    return record(op, out, tuple(parents), saved)


def _constant(x):
    """A non-Tensor argument: lists and tuples become arrays; numbers stay numbers
    (so that they do not change a float32 result's dtype)."""
    return np.asarray(x) if type(x) in (list, tuple) else x


def unbroadcast(g, shape):
    """Sum g over the axes that broadcasting added or stretched, to `shape`."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g.reshape(shape)


def _tangent_sum(out_shape, *terms):
    """Sum of the non-None terms, broadcast to out_shape (None if all None)."""
    total = None
    for t in terms:
        if t is not None:
            total = t if total is None else total + t
    if total is not None and total.shape != out_shape:
        total = np.broadcast_to(total, out_shape)
    return total


def _shape(x):
    return x.shape if type(x) is np.ndarray else np.shape(x)


def _axes(axis, ndim):
    """Normalise an axis argument to a sorted tuple of non-negative ints."""
    if axis is None or ndim == 0:               # a 0-d array has nothing to reduce
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def _expand(g, shape, axes, keepdims):
    """A reduction's cotangent copied back to the input shape (a fresh array)."""
    out = np.empty(shape, dtype=g.dtype)
    if not keepdims and axes and g.ndim:
        g = np.expand_dims(g, axes)
    out[...] = g
    return out


# ------------------------------------------------------------- arithmetic

class Add:
    """z = a + b.  dz/da = 1, dz/db = 1 (broadcast undone)."""

    @staticmethod
    def forward(a, b):
        out = np.add(a, b)
        return out, (_shape(a), _shape(b), out.shape)

    @staticmethod
    def vjp(g, saved, needs):
        sa, sb, _ = saved
        return (unbroadcast(g, sa) if needs[0] else None,
                unbroadcast(g, sb) if needs[1] else None)

    @staticmethod
    def jvp(saved, da, db):
        return _tangent_sum(saved[2], da, db)


class Sub:
    """z = a - b.  dz/da = 1, dz/db = -1."""

    @staticmethod
    def forward(a, b):
        out = np.subtract(a, b)
        return out, (_shape(a), _shape(b), out.shape)

    @staticmethod
    def vjp(g, saved, needs):
        sa, sb, _ = saved
        return (unbroadcast(g, sa) if needs[0] else None,
                unbroadcast(-g, sb) if needs[1] else None)

    @staticmethod
    def jvp(saved, da, db):
        return _tangent_sum(saved[2], da, None if db is None else -db)


class Mul:
    """z = a * b.  dz/da = b, dz/db = a."""

    @staticmethod
    def forward(a, b):
        out = np.multiply(a, b)
        return out, (a, b, out.shape)

    @staticmethod
    def vjp(g, saved, needs):
        a, b, _ = saved
        return (unbroadcast(g * b, _shape(a)) if needs[0] else None,
                unbroadcast(g * a, _shape(b)) if needs[1] else None)

    @staticmethod
    def jvp(saved, da, db):
        a, b, shape = saved
        return _tangent_sum(shape, None if da is None else da * b,
                            None if db is None else a * db)


class Div:
    """z = a / b.  dz/da = 1/b, dz/db = -a/b^2 = -z/b.  Domain b != 0."""

    @staticmethod
    def forward(a, b):
        out = np.divide(a, b)
        return out, (a, b, out)

    @staticmethod
    def vjp(g, saved, needs):
        a, b, out = saved
        return (unbroadcast(g / b, _shape(a)) if needs[0] else None,
                unbroadcast(-g * out / b, _shape(b)) if needs[1] else None)

    @staticmethod
    def jvp(saved, da, db):
        a, b, out = saved
        return _tangent_sum(out.shape, None if da is None else da / b,
                            None if db is None else -out * db / b)


class Neg:
    """z = -a.  dz/da = -1."""

    @staticmethod
    def forward(a):
        # saved must not be None: the tape reads None as "graph freed by backward()"
        return np.negative(a), ()

    @staticmethod
    def vjp(g, saved, needs):
        return (-g,)

    @staticmethod
    def jvp(saved, da):
        return None if da is None else -da


class Pow:
    """z = a ** b.  dz/da = b a^(b-1);  dz/db = a^b log a.

    Domain: a > 0 when b is differentiated or not an integer; at a = 0 the
    formula b 0^(b-1) is used as is (1 for b = 1, 0 for b > 1, inf for b < 1).
    """

    @staticmethod
    def forward(a, b):
        out = np.power(a, b)
        if not isinstance(a, np.ndarray) and out.dtype.kind == "f":
            # a Python-number base: np.log(2.0) would be a float64 scalar and turn
            # float32 cotangents into float64
            a = np.asarray(a, dtype=out.dtype)
        return out, (a, b, out)

    @staticmethod
    def vjp(g, saved, needs):
        a, b, out = saved
        ga = unbroadcast(g * b * np.power(a, b - 1), _shape(a)) if needs[0] else None
        gb = unbroadcast(g * out * np.log(a), _shape(b)) if needs[1] else None
        return ga, gb

    @staticmethod
    def jvp(saved, da, db):
        a, b, out = saved
        return _tangent_sum(out.shape,
                            None if da is None else da * b * np.power(a, b - 1),
                            None if db is None else db * out * np.log(a))


def _swap(x):
    return np.swapaxes(x, -1, -2)


class MatMul:
    """z = a @ b (NumPy matmul rules: 1-D promotion, batched leading dims).

    dz/da: g @ b^T;  dz/db: a^T @ g, leading (batch) broadcast undone.
    """

    @staticmethod
    def forward(a, b):
        out = np.matmul(a, b)
        return out, (a, b)

    @staticmethod
    def vjp(g, saved, needs):
        a, b = saved
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = g
        if a.ndim == 1 and b.ndim == 1:          # vector @ vector: g is 0-d
            g2 = np.reshape(g2, (1, 1))
        elif a.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        elif b.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = gb = None
        if needs[0]:
            ga = unbroadcast(np.matmul(g2, _swap(b2)), a2.shape).reshape(a.shape)
        if needs[1]:
            gb = unbroadcast(np.matmul(_swap(a2), g2), b2.shape).reshape(b.shape)
        return ga, gb

    @staticmethod
    def jvp(saved, da, db):
        a, b = saved
        terms = []
        if da is not None:
            terms.append(np.matmul(da, b))
        if db is not None:
            terms.append(np.matmul(a, db))
        return _tangent_sum(np.broadcast_shapes(*(t.shape for t in terms)) if terms else (),
                            *terms)


DENSE_ACTIVATIONS = (None, "tanh", "relu")
_ONES = {}


def _ones(n, dtype):
    """A cached vector of n ones (read-only by convention)."""
    key = (n, dtype)
    ones = _ONES.get(key)
    if ones is None:
        if len(_ONES) > 64:                      # a bounded cache
            _ONES.clear()
        ones = _ONES[key] = np.ones(n, dtype=dtype)
    return ones


def _row_sum(g):
    """Sum over the rows of a 2-D array, as ones @ g: BLAS is ~3x faster than a
    reduction over axis 0 at the sizes of a minibatch (256 x 64)."""
    return _ones(g.shape[0], g.dtype) @ g


# below this many outputs NumPy's two passes cost no more than a compiled kernel's call
FUSED_RELU_MIN_SIZE = 4096


def _fused_relu(z, other):
    """Whether the relu passes of a dense layer with output ``z`` go through the compiled
    kernels (minipg.kernels.dense): large enough, and ``other`` (the bias, or the
    cotangent) of z's float dtype."""
    return (z.size >= FUSED_RELU_MIN_SIZE and z.dtype == getattr(other, "dtype", None)
            and z.dtype in KERNEL_FLOATS and z.flags.c_contiguous)


def _stack3(a, stacked):
    """A layer's (..., n) array as the (K, N, n) stack the dense kernels take: as it is
    for a stack of K layers (``stacked``), else (1, rows, n) (a view when C-contiguous)."""
    return a if stacked else a.reshape(1, -1, a.shape[-1])


class Dense:
    """z = f(x @ W + b), one op for a dense layer; f is the identity, tanh or relu.

    x: (..., n_in), W: (n_in, n_out), b: (n_out,).  With h = g f'(.), f' read off
    the output z (tanh: 1 - z^2; relu: 1 where z > 0, 0 at and below the kink, as
    the Relu op): dz/dx: h W^T;  dz/dW: sum over rows of x^T h;  dz/db: sum over rows
    of h.  Fusing f into the layer saves a tape node (and its temporaries) per
    hidden layer; the arithmetic is the same as dense followed by tanh or relu.
    """

    @staticmethod
    def forward(x, W, b, activation=None):
        out = x @ W
        if activation == "relu" and _fused_relu(out, b):
            # bias and relu in one compiled pass (minipg.kernels.dense), the same values
            stacked = W.ndim == 3
            bias_relu_numba(_stack3(out, stacked), b if stacked else b.reshape(1, 1, -1))
            return out, (x, W, out, activation, [])
        out += b
        if activation == "tanh":
            np.tanh(out, out=out)
        elif activation == "relu":
            np.maximum(out, 0, out=out)
        # the last slot keeps f' once computed: a recorded forward used by many products
        # (TRPO's F v, one jvp and one vjp each) computes it once
        return out, (x, W, out if activation else None, activation, [])

    @staticmethod
    def derivative(saved):
        """f' read off the output z (tanh: 1 - z^2; relu: z > 0), computed once per forward."""
        _x, _W, y, activation, cache = saved[:5]
        if not cache:
            cache.append(1.0 - y * y if activation == "tanh" else y > 0)   # Tanh, Relu
        return cache[0]

    @staticmethod
    def _activation_grad(g, saved, owned=False):
        """g f'(.); in place when ``owned`` (g is a fresh array of the result's shape)."""
        if saved[3] is None:
            return g
        d = Dense.derivative(saved)
        if owned and g.shape == np.broadcast_shapes(g.shape, d.shape) \
                and np.result_type(g, d) == g.dtype:
            g *= d
            return g
        return g * d

    @staticmethod
    def vjp(g, saved, needs):
        x, W, y = saved[0], saved[1], saved[2]
        if saved[3] == "relu" and g.shape == y.shape and _fused_relu(y, g):
            h = np.empty_like(y)                 # g [z > 0] in one compiled pass
            stacked = W.ndim == 3
            relu_mask_numba(_stack3(g, stacked), _stack3(y, stacked), _stack3(h, stacked))
            g = h
        else:
            g = Dense._activation_grad(g, saved)
        if W.ndim == 3:                          # a stack of K layers (an ensemble)
            gx = None
            if needs[0]:                         # one output unit: an outer product (below)
                gx = unbroadcast(g * _swap(W) if W.shape[2] == 1 else g @ _swap(W), x.shape)
            gW = unbroadcast(_swap(x) @ g, W.shape) if needs[1] else None
            gb = (_ones(g.shape[-2], g.dtype) @ g)[:, None, :] if needs[2] else None
            return gx, gW, gb
        gx = None
        if needs[0]:
            # one output unit: an outer product, which matmul's k = 1 path makes slow
            gx = g * W[:, 0] if W.shape[1] == 1 else g @ W.T
        if g.ndim != 2:                          # fold leading batch axes into rows
            g = g.reshape(-1, g.shape[-1])
            x = x.reshape(-1, x.shape[-1])
        gW = x.T @ g if needs[1] else None
        gb = _row_sum(g) if needs[2] else None
        return gx, gW, gb

    @staticmethod
    def jvp(saved, dx, dW, db):
        x, W = saved[0], saved[1]
        shape = (x.shape[:-1] if W.ndim == 2 else W.shape[:1] + x.shape[-2:-1]) + W.shape[-1:]
        # dz = (dx W + x dW) + db, summed in that order into the first product (no temporaries)
        dz, owned = None, False
        for term, fresh in ((None if dx is None else dx @ W, True),
                            (None if dW is None else x @ dW, True), (db, False)):
            if term is None:
                continue
            if dz is None:
                dz, owned = term, fresh
            elif owned and dz.shape == np.broadcast_shapes(dz.shape, term.shape) \
                    and np.result_type(dz, term) == dz.dtype:
                dz += term
            else:
                dz, owned = dz + term, True
        if dz is None:
            return None
        if dz.shape != shape:
            dz, owned = np.broadcast_to(dz, shape), False
        return Dense._activation_grad(dz, saved, owned)


class CapturedDense(Dense):
    """Dense, with its layer input and pre-activation gradient exposed (opt-in, for K-FAC).

    The same forward, vjp and jvp as :class:`Dense`; ``dense`` records this op
    instead only for a weight registered with an active :class:`DenseCapture`,
    so every other dense layer keeps the plain op and its speed.  The vjp
    stores h = g f'(.), the cotangent of the pre-activation s = x W + b, in the
    capture while it is recording gradients, then continues as Dense with f
    the identity (the same arithmetic).  While recording, only the input's
    cotangent is passed on (the pass exists to collect h; the weight and bias
    get no gradient from it, and their two matrix products are skipped).
    """

    @staticmethod
    def vjp(g, saved, needs):
        x, W, _y, _activation, _cache, capture, key = saved
        h = Dense._activation_grad(g, saved)              # d/ds, s the pre-activation
        if capture.recording:
            capture.grads[key] = h
            needs = (needs[0], False, False)
        return Dense.vjp(h, (x, W, None, None, []), needs)

    @staticmethod
    def jvp(saved, dx, dW, db):
        return Dense.jvp(saved[:5], dx, dW, db)


# the DenseCapture objects in effect (a `with` block each); empty for everyone else
_DENSE_CAPTURES = []


class DenseCapture:
    """Inside ``with capture:``, record the input and (while ``recording``) the
    pre-activation gradient of the dense layers whose weight Tensor is in ``weights``.

    ``inputs[key]`` is the layer input x (an array, (..., n_in) or
    (K, N, n_in)), ``params[key]`` the (W, b) Tensors of the call, and
    ``grads[key]`` the cotangent of s = x W + b from the latest backward pass
    run while ``recording`` is True (that pass gives the captured weights and
    biases no gradient); ``key`` is the weight's ``id``.  A layer
    called twice inside one block is an error (its factors would mix two
    inputs).  Used by :class:`minipg.optim.KFAC`.
    """

    def __init__(self, weights):
        self.weights = {id(w) for w in weights}
        self.inputs, self.params, self.grads = {}, {}, {}
        self.recording = False

    def see(self, x, W, b):
        key = id(W)
        if key in self.inputs:
            raise RuntimeError("DenseCapture: a dense layer with weight of shape "
                               f"{W.shape} was called twice in one capture block; K-FAC needs "
                               "one call per layer per forward pass")
        self.inputs[key] = x
        self.params[key] = (W, b)
        return key

    def __enter__(self):
        _DENSE_CAPTURES.append(self)
        return self

    def __exit__(self, *exc):
        _DENSE_CAPTURES.remove(self)
        return False


# -------------------------------------------------------------- reductions

class Sum:
    """z = sum of x over `axis`.  dz/dx = 1 on every summed entry."""

    @staticmethod
    def forward(x, axis=None, keepdims=False):
        axes = _axes(axis, x.ndim)
        return np.add.reduce(x, axis=axes, keepdims=keepdims), (x.shape, axes, keepdims)

    @staticmethod
    def vjp(g, saved, needs):
        shape, axes, keepdims = saved
        return (_expand(g, shape, axes, keepdims),)

    @staticmethod
    def jvp(saved, dx):
        _, axes, keepdims = saved
        return None if dx is None else np.add.reduce(dx, axis=axes, keepdims=keepdims)


class Mean:
    """z = mean of x over `axis`.  dz/dx = 1/n on every averaged entry."""

    @staticmethod
    def forward(x, axis=None, keepdims=False):
        axes = _axes(axis, x.ndim)
        n = 1
        for a in axes:
            n *= x.shape[a]
        out = np.add.reduce(x, axis=axes, keepdims=keepdims) / n
        return np.asarray(out, dtype=x.dtype), (x.shape, axes, keepdims, n)

    @staticmethod
    def vjp(g, saved, needs):
        shape, axes, keepdims, n = saved
        if n == 0:                               # the mean of nothing depends on nothing
            return (np.zeros(shape, dtype=g.dtype),)
        return (_expand(g * (1.0 / n), shape, axes, keepdims),)

    @staticmethod
    def jvp(saved, dx):
        _, axes, keepdims, n = saved
        return None if dx is None else np.add.reduce(dx, axis=axes, keepdims=keepdims) / n


class _Extremum:
    """z = max (or min) of x over `axis`.

    dz/dx = 1 at the extremal entry; with ties, 1/k at each of the k tied
    entries (the average of the one-sided derivatives).
    """

    reduce = None

    @classmethod
    def forward(cls, x, axis=None, keepdims=False):
        axes = _axes(axis, x.ndim)
        full = cls.reduce(x, axis=axes, keepdims=True)
        mask = (x == full)
        weights = mask / mask.sum(axis=axes, keepdims=True)   # float64 from bool / int
        if x.dtype.kind == "f":
            weights = weights.astype(x.dtype, copy=False)   # float32 stays float32
        out = full if keepdims else np.squeeze(full, axis=axes)
        return out, (x.shape, axes, keepdims, weights)

    @staticmethod
    def vjp(g, saved, needs):
        shape, axes, keepdims, weights = saved
        return (_expand(g, shape, axes, keepdims) * weights,)

    @staticmethod
    def jvp(saved, dx):
        _, axes, keepdims, weights = saved
        return None if dx is None else np.sum(dx * weights, axis=axes, keepdims=keepdims)


class Max(_Extremum):
    """z = max of x over `axis`; ties share the cotangent evenly (see _Extremum)."""
    reduce = staticmethod(np.max)


class Min(_Extremum):
    """z = min of x over `axis`; ties share the cotangent evenly (see _Extremum)."""
    reduce = staticmethod(np.min)


class _Pairwise:
    """z = maximum(a, b) (or minimum) elementwise.

    dz/da = 1 where a wins, 0 where b wins, 1/2 on a tie; dz/db = 1 - dz/da.
    """

    pick = None                                  # np.maximum or np.minimum
    wins = None                                  # np.greater or np.less

    @classmethod
    def forward(cls, a, b):
        out = cls.pick(a, b)
        wa = cls.wins(a, b) + 0.5 * (np.equal(a, b))        # float64 from bools
        if out.dtype.kind == "f":
            wa = wa.astype(out.dtype, copy=False)            # float32 stays float32
        return out, (_shape(a), _shape(b), wa)

    @staticmethod
    def vjp(g, saved, needs):
        sa, sb, wa = saved
        return (unbroadcast(g * wa, sa) if needs[0] else None,
                unbroadcast(g * (1.0 - wa), sb) if needs[1] else None)

    @staticmethod
    def jvp(saved, da, db):
        _, _, wa = saved
        return _tangent_sum(wa.shape, None if da is None else da * wa,
                            None if db is None else db * (1.0 - wa))


class Maximum(_Pairwise):
    """z = maximum(a, b); a tie splits the cotangent 1/2 each (see _Pairwise)."""
    pick = staticmethod(np.maximum)
    wins = staticmethod(np.greater)


class Minimum(_Pairwise):
    """z = minimum(a, b); a tie splits the cotangent 1/2 each (see _Pairwise)."""
    pick = staticmethod(np.minimum)
    wins = staticmethod(np.less)


class Clip:
    """z = clip(x, lo, hi) with constant bounds.

    dz/dx = 1 where lo <= x <= hi (bounds included, as torch.clamp), else 0.
    """

    @staticmethod
    def forward(x, lo, hi):
        out = np.clip(x, lo, hi)
        inside = np.ones(x.shape, dtype=bool)
        if lo is not None:
            inside &= x >= lo
        if hi is not None:
            inside &= x <= hi
        return out, inside

    @staticmethod
    def vjp(g, inside, needs):
        return (g * inside,)

    @staticmethod
    def jvp(inside, dx):
        return None if dx is None else dx * inside


class Where:
    """z = a where cond else b (cond a constant boolean array).

    dz/da = cond, dz/db = not cond.
    """

    @staticmethod
    def forward(cond, a, b):
        out = np.where(cond, a, b)
        return out, (cond, _shape(a), _shape(b), out.shape)

    @staticmethod
    def vjp(g, saved, needs):
        cond, sa, sb, _ = saved
        return (None,
                unbroadcast(np.where(cond, g, 0.0), sa) if needs[1] else None,
                unbroadcast(np.where(cond, 0.0, g), sb) if needs[2] else None)

    @staticmethod
    def jvp(saved, dcond, da, db):
        cond, _, _, shape = saved
        return _tangent_sum(shape, None if da is None else np.where(cond, da, 0.0),
                            None if db is None else np.where(cond, 0.0, db))


# ------------------------------------------------------------- elementwise

class _Unary:
    """Shared jvp for elementwise ops whose vjp is g * f'(x): jvp = dx * f'(x)."""

    @classmethod
    def vjp(cls, g, saved, needs):
        return (g * cls.derivative(saved),)

    @classmethod
    def jvp(cls, saved, dx):
        return None if dx is None else dx * cls.derivative(saved)


class Exp(_Unary):
    """y = exp(x);  dy/dx = y."""

    @staticmethod
    def forward(x):
        y = np.exp(x)
        return y, y

    @staticmethod
    def derivative(y):
        return y


class Log(_Unary):
    """y = log(x);  dy/dx = 1/x.  Domain x > 0."""

    @staticmethod
    def forward(x):
        return np.log(x), x

    @staticmethod
    def derivative(x):
        return 1.0 / x


class Log1p(_Unary):
    """y = log(1 + x);  dy/dx = 1/(1 + x).  Domain x > -1."""

    @staticmethod
    def forward(x):
        return np.log1p(x), x

    @staticmethod
    def derivative(x):
        return 1.0 / (1.0 + x)


class Sqrt(_Unary):
    """y = sqrt(x);  dy/dx = 1/(2y).  Domain x > 0 (inf at 0)."""

    @staticmethod
    def forward(x):
        y = np.sqrt(x)
        return y, y

    @staticmethod
    def derivative(y):
        return 0.5 / y


class Square(_Unary):
    """y = x^2;  dy/dx = 2x."""

    @staticmethod
    def forward(x):
        return np.square(x), x

    @staticmethod
    def derivative(x):
        return 2.0 * x


class Abs(_Unary):
    """y = |x|;  dy/dx = sign(x), 0 at x = 0."""

    @staticmethod
    def forward(x):
        return np.abs(x), np.sign(x)

    @staticmethod
    def derivative(sign):
        return sign


class Tanh(_Unary):
    """y = tanh(x);  dy/dx = 1 - y^2."""

    @staticmethod
    def forward(x):
        y = np.tanh(x)
        return y, y

    @staticmethod
    def derivative(y):
        return 1.0 - y * y


class Relu(_Unary):
    """y = max(x, 0);  dy/dx = 1 for x > 0, 0 for x <= 0 (0 at the kink)."""

    @staticmethod
    def forward(x):
        y = np.maximum(x, 0)
        return y, y

    @staticmethod
    def derivative(y):
        return y > 0                             # y > 0 exactly where x > 0


class Sigmoid(_Unary):
    """y = 1 / (1 + exp(-x));  dy/dx = y (1 - y)."""

    @staticmethod
    def forward(x):
        y = expit(x)
        return y, y

    @staticmethod
    def derivative(y):
        return y * (1.0 - y)


class Softplus(_Unary):
    """y = log(1 + exp(x)) (computed as logaddexp(0, x));  dy/dx = sigmoid(x)."""

    @staticmethod
    def forward(x):
        return np.logaddexp(0.0, x), expit(x)

    @staticmethod
    def derivative(s):
        return s


# ------------------------------------------------------------------- shape

class Reshape:
    """z = x reshaped; the cotangent is reshaped back."""

    @staticmethod
    def forward(x, shape):
        out = np.reshape(x, shape)
        return out, (x.shape, out.shape)

    @staticmethod
    def vjp(g, saved, needs):
        return (np.reshape(g, saved[0]),)

    @staticmethod
    def jvp(saved, dx):
        return None if dx is None else np.reshape(dx, saved[1])


class Transpose:
    """z = x with axes permuted; the cotangent gets the inverse permutation."""

    @staticmethod
    def forward(x, axes=None):
        axes = tuple(range(x.ndim))[::-1] if axes is None else tuple(a % x.ndim for a in axes)
        return np.transpose(x, axes), axes

    @staticmethod
    def vjp(g, axes, needs):
        return (np.transpose(g, np.argsort(axes)),)

    @staticmethod
    def jvp(axes, dx):
        return None if dx is None else np.transpose(dx, axes)


def _is_basic_index(index):
    items = index if isinstance(index, tuple) else (index,)
    for i in items:
        if not (i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice))):
            if isinstance(i, np.ndarray) and i.dtype == np.bool_:
                continue  # a boolean mask selects each entry at most once
            return False
    return True


class GetItem:
    """z = x[index] (NumPy indexing).  The cotangent is scattered back;
    repeated integer indices accumulate (np.add.at)."""

    @staticmethod
    def forward(x, index):
        return x[index], (x.shape, x.dtype, index)

    @staticmethod
    def vjp(g, saved, needs):
        shape, dtype, index = saved
        gx = np.zeros(shape, dtype=np.result_type(dtype, g.dtype))
        if _is_basic_index(index):
            gx[index] = g
        else:
            np.add.at(gx, index, g)
        return (gx,)

    @staticmethod
    def jvp(saved, dx):
        return None if dx is None else dx[saved[2]]


class Gather:
    """z = take_along_axis(x, indices, axis).

    The cotangent is scattered back to the gathered positions, repeated
    indices accumulating.  indices must match x on every axis but `axis`.
    """

    @staticmethod
    def forward(x, indices, axis):
        axis = axis % x.ndim
        return np.take_along_axis(x, indices, axis=axis), (x.shape, x.dtype, indices, axis)

    @staticmethod
    def vjp(g, saved, needs):
        shape, dtype, indices, axis = saved
        gx = np.zeros(shape, dtype=np.result_type(dtype, g.dtype))
        if indices.shape[axis] == 1 and indices.shape == shape[:axis] + (1,) + shape[axis + 1:]:
            # one index per line (log_prob of an action): no repeats, so a plain
            # scatter, much faster than add.at
            np.put_along_axis(gx, indices, g, axis=axis)
            return (gx, None)
        index = list(np.ix_(*[np.arange(n) for n in indices.shape]))
        index[axis] = indices
        np.add.at(gx, tuple(index), g)
        return (gx, None)

    @staticmethod
    def jvp(saved, dx, dindices):
        _, _, indices, axis = saved
        return None if dx is None else np.take_along_axis(dx, indices, axis=axis)


class Concatenate:
    """z = concatenate(xs, axis); the cotangent is split back into pieces."""

    @staticmethod
    def forward(*xs, axis=0):
        out = np.concatenate(xs, axis=axis)
        axis = axis % out.ndim
        sizes = [x.shape[axis] for x in xs]
        return out, (axis, np.cumsum(sizes)[:-1], [x.shape for x in xs])

    @staticmethod
    def vjp(g, saved, needs):
        axis, splits, _ = saved
        pieces = np.split(g, splits, axis=axis)
        return tuple(p if n else None for p, n in zip(pieces, needs))

    @staticmethod
    def jvp(saved, *dxs):
        axis, _, shapes = saved
        present = [d for d in dxs if d is not None]
        if not present:
            return None
        return np.concatenate([np.zeros(s, present[0].dtype) if d is None else d
                               for d, s in zip(dxs, shapes)], axis=axis)


class Stack:
    """z = stack(xs, axis); the cotangent is unstacked."""

    @staticmethod
    def forward(*xs, axis=0):
        out = np.stack(xs, axis=axis)
        return out, (axis % out.ndim, xs[0].shape)

    @staticmethod
    def vjp(g, saved, needs):
        axis, _ = saved
        return tuple(np.take(g, i, axis=axis) if n else None for i, n in enumerate(needs))

    @staticmethod
    def jvp(saved, *dxs):
        axis, shape = saved
        present = [d for d in dxs if d is not None]
        if not present:
            return None
        return np.stack([np.zeros(shape, present[0].dtype) if d is None else d
                         for d in dxs], axis=axis)


# ------------------------------------------------------------ normalisers

def _softmax(x, axis):
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


class LogSumExp:
    """z = log sum_i exp(x_i) over `axis` (max-shifted for stability).

    dz/dx = softmax(x) along the axis.
    """

    @staticmethod
    def forward(x, axis=-1, keepdims=False):
        axes = _axes(axis, x.ndim)
        m = np.max(x, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)    # an all -inf slice gives -inf, not nan
        e = np.exp(x - m)
        s = e.sum(axis=axes, keepdims=True)
        out = m + np.log(s)
        probs = e / s
        if not keepdims:
            out = np.squeeze(out, axis=axes)
        return out, (x.shape, axes, keepdims, probs)

    @staticmethod
    def vjp(g, saved, needs):
        shape, axes, keepdims, probs = saved
        return (_expand(g, shape, axes, keepdims) * probs,)

    @staticmethod
    def jvp(saved, dx):
        _, axes, keepdims, probs = saved
        return None if dx is None else np.sum(probs * dx, axis=axes, keepdims=keepdims)


class LogSoftmax:
    """z = x - logsumexp(x) along `axis`.

    vjp: g - softmax(x) * sum(g);  jvp: dx - sum(softmax(x) * dx).  Along the last
    axis of a float32/float64 array (every Categorical policy) both run as one
    numba pass per row (minipg.kernels.softmax), in float64 arithmetic.
    """

    @staticmethod
    def _rowwise(x, axis):
        # an int naming the last axis (None, tuples and out-of-range axes go to NumPy,
        # which accepts or refuses them as before)
        return (isinstance(axis, (int, np.integer)) and x.ndim >= 1
                and axis in (-1, x.ndim - 1) and x.shape[-1] >= 1
                and x.dtype in KERNEL_FLOATS)

    @staticmethod
    def forward(x, axis=-1):
        if LogSoftmax._rowwise(x, axis):
            x = np.ascontiguousarray(x)
            out = np.empty_like(x)
            log_softmax_rows_numba(x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1]))
            return out, (axis, out)
        m = np.max(x, axis=axis, keepdims=True)
        z = x - m
        lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
        out = z - lse
        return out, (axis, out)

    @staticmethod
    def vjp(g, saved, needs):
        axis, out = saved
        if g.dtype in KERNEL_FLOATS and LogSoftmax._rowwise(out, axis):
            g = np.ascontiguousarray(g)
            gx = np.empty(g.shape, dtype=np.result_type(g.dtype, out.dtype))
            n = out.shape[-1]
            log_softmax_rows_vjp_numba(g.reshape(-1, n), out.reshape(-1, n),
                                       gx.reshape(-1, n))
            return (gx,)
        return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)

    @staticmethod
    def jvp(saved, dx):
        axis, out = saved
        if dx is None:
            return None
        return dx - np.sum(np.exp(out) * dx, axis=axis, keepdims=True)


class Softmax:
    """y = exp(x) / sum exp(x) along `axis`.

    vjp: y * (g - sum(g * y));  jvp: y * (dx - sum(y * dx)).
    """

    @staticmethod
    def forward(x, axis=-1):
        y = _softmax(x, axis)
        return y, (axis, y)

    @staticmethod
    def vjp(g, saved, needs):
        axis, y = saved
        return (y * (g - np.sum(g * y, axis=axis, keepdims=True)),)

    @staticmethod
    def jvp(saved, dx):
        axis, y = saved
        if dx is None:
            return None
        return y * (dx - np.sum(y * dx, axis=axis, keepdims=True))


# --------------------------------------------------------- public functions

def add(a, b):
    return apply(Add, a, b)


def sub(a, b):
    return apply(Sub, a, b)


def mul(a, b):
    return apply(Mul, a, b)


def div(a, b):
    return apply(Div, a, b)


def neg(a):
    return apply(Neg, a)


def pow(a, b):  # noqa: A001 - the op's name
    return apply(Pow, a, b)


def matmul(a, b):
    return apply(MatMul, a, b)


def dense(x, W, b, activation=None):
    """activation(x @ W + b) as one tape node; W has shape (n_in, n_out), b (n_out,),
    and activation is None (linear), "tanh" or "relu".  A stack of K layers (an
    ensemble of critics) has W (K, n_in, n_out), b (K, 1, n_out) and x (N, n_in),
    shared by all K, or (K, N, n_in); the result is (K, N, n_out)."""
    if activation not in DENSE_ACTIVATIONS:
        raise ValueError(f"dense: unknown activation {activation!r}; accepted: "
                         f"{DENSE_ACTIVATIONS}")
    W_t, b_t, x_t = isinstance(W, Tensor), isinstance(b, Tensor), isinstance(x, Tensor)
    W_data = W.data if W_t else np.asarray(W)
    b_data = b.data if b_t else np.asarray(b)
    x_data = x.data if x_t else np.asarray(x)
    single = W_data.ndim == 2 and b_data.shape == W_data.shape[1:]
    stacked = (W_data.ndim == 3 and b_data.shape == (W_data.shape[0], 1, W_data.shape[2])
               and (x_data.ndim == 2 or (x_data.ndim == 3
                                         and x_data.shape[0] == W_data.shape[0])))
    if not (single or stacked) or x_data.shape[-1:] != W_data.shape[-2:-1]:
        raise ValueError(f"dense: accepted shapes are x (..., n_in), W (n_in, n_out), b (n_out,) "
                         f"or, for K stacked layers, x (N, n_in) or (K, N, n_in), W (K, n_in, "
                         f"n_out), b (K, 1, n_out); got x {x_data.shape}, W {W_data.shape} and "
                         f"b {b_data.shape}")
    out, saved = Dense.forward(x_data, W_data, b_data, activation)
    parents = (x if x_t else None, W if W_t else None, b if b_t else None)
    if _DENSE_CAPTURES and W_t:                  # opt-in (K-FAC): see DenseCapture
        for capture in _DENSE_CAPTURES:
            if id(W) in capture.weights:
                key = capture.see(x_data, W, b)
                return record(CapturedDense, out, parents, saved + (capture, key))
    return record(Dense, out, parents, saved)


def sum(x, axis=None, keepdims=False):  # noqa: A001
    return apply(Sum, x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    return apply(Mean, x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return apply(Max, x, axis=axis, keepdims=keepdims)


def min(x, axis=None, keepdims=False):  # noqa: A001
    return apply(Min, x, axis=axis, keepdims=keepdims)


def maximum(a, b):
    return apply(Maximum, a, b)


def minimum(a, b):
    return apply(Minimum, a, b)


def clip(x, lo, hi):
    """Clip to [lo, hi]; lo or hi may be None (one-sided)."""
    return apply(Clip, x, lo=_const(lo), hi=_const(hi))


def where(cond, a, b):
    return apply(Where, _const(cond), a, b)


def exp(x):
    return apply(Exp, x)


def log(x):
    return apply(Log, x)


def log1p(x):
    return apply(Log1p, x)


def sqrt(x):
    return apply(Sqrt, x)


def square(x):
    return apply(Square, x)


def abs(x):  # noqa: A001
    return apply(Abs, x)


def tanh(x):
    return apply(Tanh, x)


def relu(x):
    return apply(Relu, x)


def sigmoid(x):
    return apply(Sigmoid, x)


def softplus(x):
    return apply(Softplus, x)


def _mark_view(out, x):
    """Let writes through `out` count as writes to x when they share memory."""
    if isinstance(x, Tensor) and np.may_share_memory(out.data, x.data):
        out._base = x if x._base is None else x._base
    return out


def reshape(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return _mark_view(apply(Reshape, x, shape=shape), x)


def transpose(x, *axes):
    """Permute axes: transpose(x), transpose(x, (1, 0)) or transpose(x, 1, 0)."""
    if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
        axes = axes[0]
    return _mark_view(apply(Transpose, x, axes=tuple(axes) if axes else None), x)


def getitem(x, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return _mark_view(apply(GetItem, x, index=index), x)


def gather(x, indices, axis=-1):
    """take_along_axis(x, indices, axis), differentiable in x."""
    indices = np.asarray(_const(indices))
    if indices.dtype.kind not in "iu":
        raise TypeError(f"gather: indices must be integers, got dtype {indices.dtype}")
    shape = np.shape(_const(x))
    ax = axis % len(shape) if shape else 0
    if indices.ndim != len(shape) or any(
            i != ax and n != m for i, (n, m) in enumerate(zip(indices.shape, shape))):
        raise ValueError(f"gather: indices of shape {indices.shape} must have the shape of x "
                         f"{shape} on every axis but axis={axis}")
    return apply(Gather, x, indices, axis=axis)


def concatenate(xs, axis=0):
    return apply(Concatenate, *xs, axis=axis)


def stack(xs, axis=0):
    return apply(Stack, *xs, axis=axis)


def logsumexp(x, axis=-1, keepdims=False):
    return apply(LogSumExp, x, axis=axis, keepdims=keepdims)


def log_softmax(x, axis=-1):
    return apply(LogSoftmax, x, axis=axis)


def softmax(x, axis=-1):
    return apply(Softmax, x, axis=axis)


def _const(x):
    return x.data if isinstance(x, Tensor) else x


# ------------------------------------------------- Tensor operator methods

def _rev(f):
    return lambda self, other: f(other, self)


def _install_operators():
    T = Tensor
    T.__add__, T.__radd__ = add, _rev(add)
    T.__sub__, T.__rsub__ = sub, _rev(sub)
    T.__mul__, T.__rmul__ = mul, _rev(mul)
    T.__truediv__, T.__rtruediv__ = div, _rev(div)
    T.__pow__, T.__rpow__ = pow, _rev(pow)
    T.__matmul__, T.__rmatmul__ = matmul, _rev(matmul)
    T.__neg__ = neg
    T.__getitem__ = getitem
    T.__abs__ = abs
    # comparisons are not differentiable: they return plain boolean arrays
    T.__lt__ = lambda s, o: s.data < _const(o)
    T.__le__ = lambda s, o: s.data <= _const(o)
    T.__gt__ = lambda s, o: s.data > _const(o)
    T.__ge__ = lambda s, o: s.data >= _const(o)
    T.__eq__ = lambda s, o: s.data == _const(o)
    T.__ne__ = lambda s, o: s.data != _const(o)
    T.__hash__ = object.__hash__                 # identity: tensors key dicts by object
    for name in ("sum", "mean", "max", "min", "exp", "log", "log1p", "sqrt", "square",
                 "tanh", "relu", "sigmoid", "softplus", "transpose", "logsumexp",
                 "log_softmax", "softmax", "clip", "gather", "abs"):
        setattr(T, name, globals()[name])
    T.reshape = reshape
    T.T = property(lambda s: transpose(s))


_install_operators()
