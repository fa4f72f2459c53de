"""Function transforms: grad, value_and_grad, vjp, jvp, Fisher-vector products.

These take a Python function of Tensors and give back derivatives as
ndarrays.  Inputs are passed as arrays (or Tensors, whose data is used);
each call makes fresh leaf tensors (sharing the callers' arrays, which are
only read), so no ``.grad`` the caller holds is touched.

The jvp is forward mode over the recorded graph: the function runs once
(recording), then tangents are pushed from the inputs to the output through
each op's ``jvp`` rule, inputs before outputs.  No finite differences and no
double backward are involved, so ``J v`` and ``J^T u`` are both exact.
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor, backprop, check_recorded, enable_grad, topological_order

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "fisher_vector_product", "fisher_product",
           "forward_tangents", "backward_cotangents", "as_tuple"]


def _leaves(xs):
    out = []
    for x in xs:
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        if data.dtype.kind not in "fc":
            data = data.astype(np.float64)
        out.append(Tensor(data, requires_grad=True))
    return out


def as_tuple(y):
    """The outputs of a function as a tuple: a tuple or list as is, one output as a 1-tuple."""
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def forward_tangents(outputs, tangents):
    """Push input tangents forward through the recorded graph of `outputs`.

    tangents: dict mapping id(leaf tensor) -> tangent array (absent = zero).
    Returns one tangent array per output (zeros where nothing flows).
    """
    outputs = as_tuple(outputs)
    tan = dict(tangents)
    results = []
    for y in outputs:
        for node in topological_order(y):
            if id(node) in tan:
                continue
            check_recorded(node)
            ts = [None if p is None else tan.get(id(p)) for p in node._parents]
            tan[id(node)] = node._op.jvp(node._saved, *ts)
        t = tan.get(id(y))
        results.append(np.zeros_like(y.data) if t is None else np.asarray(t))
    return results


def backward_cotangents(outputs, cotangents, leaves):
    """sum_k J_k^T u_k for outputs y_k and cotangents u_k, per leaf.

    Does not touch any ``.grad`` and keeps the graph (it can be called again).
    Returns one array per leaf (zeros where nothing flows).
    """
    sink = {}
    outputs, cotangents = as_tuple(outputs), as_tuple(cotangents)
    if len(outputs) != len(cotangents):
        raise ValueError(f"{len(cotangents)} cotangents for {len(outputs)} outputs")
    for y, u in zip(outputs, cotangents):
        if np.shape(u) != y.shape:
            raise ValueError(f"cotangent shape {np.shape(u)} does not match output shape "
                             f"{y.shape}")
    for y, u in zip(outputs, cotangents):
        if y.requires_grad:
            backprop(y, np.asarray(u, dtype=y.data.dtype), retain_graph=True, sink=sink)
    return [sink.get(id(x), np.zeros_like(x.data)) for x in leaves]


def _call(f, leaves):
    with enable_grad():
        y = f(*leaves)
    if isinstance(y, list):
        y = tuple(y)
    for out in as_tuple(y):
        if not isinstance(out, Tensor):
            raise TypeError(f"the function must return a Tensor (or a tuple of them), "
                            f"got {type(out).__name__}")
    return y


def _argnums(argnums, n):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for a in nums:
        if not -n <= a < n:
            raise ValueError(f"argnums {argnums} out of range for {n} arguments")
    return nums


def value_and_grad(f, argnums=0):
    """Return a function computing (f(*args), d f / d args[argnums]).

    f must return a single-element Tensor.  With a tuple argnums the
    gradient is a tuple.
    """
    def wrapped(*args):
        nums = _argnums(argnums, len(args))
        leaves = _leaves(args)
        y = _call(f, leaves)
        if isinstance(y, tuple) or y.data.size != 1:
            raise ValueError("grad/value_and_grad need f to return a single-element Tensor; "
                             "use vjp for other outputs")
        grads = backward_cotangents(y, np.ones_like(y.data), [leaves[a] for a in nums])
        value = y.data.reshape(()) if y.data.ndim else y.data
        return value, (grads[0] if isinstance(argnums, int) else tuple(grads))
    return wrapped


def grad(f, argnums=0):
    """Return a function computing d f / d args[argnums] (f scalar-valued)."""
    vg = value_and_grad(f, argnums)
    return lambda *args: vg(*args)[1]


def vjp(f, *xs):
    """Evaluate y = f(*xs) and return (y, pullback).

    pullback(u) returns J^T u as one array per input; it can be called
    repeatedly (the graph is kept).  If f returns a tuple, y is a tuple and
    u must be a tuple of the same length.
    """
    leaves = _leaves(xs)
    y = _call(f, leaves)
    multi = isinstance(y, tuple)

    def pullback(u):
        # backward_cotangents checks the number and shapes of the cotangents
        return tuple(backward_cotangents(y, as_tuple(u) if multi else (u,), leaves))

    value = tuple(o.data for o in y) if multi else y.data
    return value, pullback


def jvp(f, xs, vs):
    """Evaluate y = f(*xs) and the Jacobian-vector product J v (forward mode).

    xs and vs are sequences of equal length; returns (y, Jv) as arrays
    (tuples when f returns a tuple).
    """
    xs, vs = tuple(xs), tuple(vs)
    if len(xs) != len(vs):
        raise ValueError(f"jvp: {len(xs)} inputs but {len(vs)} tangents")
    leaves = _leaves(xs)
    for x, v in zip(leaves, vs):
        if np.shape(v) != x.shape:
            raise ValueError(f"jvp: tangent shape {np.shape(v)} does not match input {x.shape}")
    y = _call(f, leaves)
    tangents = {id(x): np.asarray(v, dtype=x.data.dtype) for x, v in zip(leaves, vs)}
    jv = forward_tangents(y, tangents)
    if isinstance(y, tuple):
        return tuple(o.data for o in y), tuple(jv)
    return y.data, jv[0]


def fisher_vector_product(outputs_fn, params, v, metric):
    """Exact Fisher-vector product F v = J^T M J v.

    outputs_fn : callable with no arguments returning the distribution
        parameters as a Tensor or tuple of Tensors (e.g. logits, or
        (mean, log_std)), computed from the leaf tensors `params`.
    params : sequence of leaf Tensors that require grad (e.g.
        ``module.parameters()``).
    v : one array per parameter, or a flat vector of their total size.
    metric : callable (output_arrays, output_tangents) -> M (J v), the
        Fisher information of the distribution with respect to its
        parameters applied to a tangent, averaged over the batch (see
        ``minipg.distributions``: ``Categorical.fisher_metric``,
        ``DiagGaussian.fisher_metric``).

    J v comes from forward mode and J^T (.) from reverse mode; no finite
    differences.  Returns the product in the same form as v.
    """
    params = list(params)
    flat = not isinstance(v, (list, tuple))
    if flat:
        v = np.asarray(v)
        size = sum(p.data.size for p in params)
        if v.shape != (size,):
            raise ValueError(f"v has shape {v.shape}; expected ({size},) for these params")
    else:
        v = [np.asarray(x) for x in v]
    with enable_grad():
        outs = outputs_fn()
    if isinstance(outs, list):
        outs = tuple(outs)
    for o in as_tuple(outs):
        if not isinstance(o, Tensor):
            raise TypeError("fisher_vector_product: outputs_fn must return a Tensor or a tuple "
                            f"of Tensors computed from params, got {type(o).__name__}")
    return fisher_product(outs, params, v, metric)


def fisher_product(outs, params, v, metric):
    """F v = J^T M J v through ALREADY-RECORDED outputs (no new forward pass).

    outs : the distribution parameters, a Tensor or a tuple/list of Tensors,
        recorded (with grad enabled) from the leaf tensors ``params``.
    v : one array per parameter (a list or tuple), or a flat array of their
        total size in the order of ``params`` (not checked here).
    metric : as in :func:`fisher_vector_product`; it gets the output arrays
        and J v as a tuple where ``outs`` is a tuple/list, as one array
        where ``outs`` is a single Tensor.

    J v by :func:`forward_tangents`, J^T (M J v) by
    :func:`backward_cotangents`.  Returns the product in the same form as v
    (a flat array, or a list of one array per parameter).
    """
    params = list(params)
    multi = isinstance(outs, (tuple, list))
    outs_t = as_tuple(outs)
    flat = not isinstance(v, (list, tuple))
    if flat:
        pieces, start = [], 0
        for p in params:
            n = p.data.size
            pieces.append(v[start:start + n].reshape(p.shape))
            start += n
    else:
        pieces = list(v)
    jv = forward_tangents(outs_t, {id(p): t for p, t in zip(params, pieces)})      # J v
    mjv = metric(tuple(o.data for o in outs_t) if multi else outs_t[0].data,
                 tuple(jv) if multi else jv[0])                                    # M J v
    fv = backward_cotangents(outs_t, as_tuple(mjv), params)                       # J^T M J v
    if flat:
        return np.concatenate([f.ravel() for f in fv])
    return fv
