"""gradcheck: compare a function's autodiff derivatives with central differences.

For auditors checking their own code as much as for minipg's tests::

    from minipg.autodiff import gradcheck, ops
    gradcheck(lambda x, W: ops.tanh(x @ W).sum(), [x, W])   # True, or raises

The defaults (eps=1e-6, atol=1e-5, rtol=1e-3) are torch.autograd.gradcheck's.
What is checked, for every differentiable output and input:

1. the Jacobian from reverse mode (one vjp per output entry) against the
   numeric Jacobian from central differences, (f(x + eps e_j) - f(x - eps
   e_j)) / (2 eps), entry by entry: |analytic - numeric| <= atol + rtol
   |numeric|;
2. the same for the Jacobian from forward mode (one jvp per input entry);
3. a zero output cotangent gives exactly zero input gradients;
4. two backward passes through the same graph give the same answer
   (within `nondet_tol`, 0 by default);
5. the function did not modify its inputs in place.

``fast_mode=True`` replaces the full Jacobians by random projections
u^T J v (one pair per output and input), for large inputs.

Central differences have error O(eps^2 f''') from truncation and
O(machine_eps |f| / eps) from rounding; with eps=1e-6 in float64 both are
around 1e-10 for well-scaled functions, far below the default tolerances.
In float32 they are not: inputs that are not float64 are promoted to float64
for the check, with a warning.
"""

from __future__ import annotations

import warnings

import numpy as np

from .functional import as_tuple, backward_cotangents, forward_tangents
from .tensor import Tensor, enable_grad, no_grad

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """Raised by gradcheck when analytic and numeric derivatives disagree."""


def _fmt_index(shape, flat):
    return str(tuple(int(i) for i in np.unravel_index(flat, shape))) if shape else "()"


def gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, *, fast_mode=False,
              check_jvp=True, nondet_tol=0.0, raise_exception=True, seed=0):
    """Check f's vjp and jvp against central finite differences.

    Parameters
    ----------
    f : callable taking one Tensor per input and returning a Tensor or a
        tuple of Tensors.
    inputs : sequence of arrays or Tensors (a single one is accepted too).
        Every input is treated as differentiable.
    eps, atol, rtol : step and tolerances (torch.autograd.gradcheck's defaults).
    fast_mode : compare random projections u^T J v instead of full Jacobians.
    check_jvp : also check forward mode.
    nondet_tol : allowed difference between two backward passes.
    raise_exception : raise GradcheckError on failure (else return False).
    seed : for the random vectors of fast_mode and the repeat check.

    Returns True when every check passes.
    """
    if isinstance(inputs, (np.ndarray, Tensor)) or np.isscalar(inputs):
        inputs = (inputs,)
    arrays = []
    for i, x in enumerate(inputs):
        a = np.array(x.data if isinstance(x, Tensor) else x, copy=True)
        if a.dtype != np.float64:
            warnings.warn(f"gradcheck: input {i} has dtype {a.dtype}; finite differences need "
                          "float64, so it is checked in float64", stacklevel=2)
            a = a.astype(np.float64)
        arrays.append(a)
    rng = np.random.default_rng(seed)
    try:
        _check(f, arrays, eps, atol, rtol, fast_mode, check_jvp, nondet_tol, rng)
    except GradcheckError:
        if raise_exception:
            raise
        return False
    return True


def _evaluate(f, arrays):
    with no_grad():
        ys = as_tuple(f(*[Tensor(a) for a in arrays]))
    return [np.array(y.data, dtype=np.float64) for y in ys]


def _record(f, arrays):
    leaves = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    with enable_grad():
        ys = as_tuple(f(*leaves))
    for y in ys:
        if not isinstance(y, Tensor):
            raise TypeError(f"gradcheck: f must return Tensors, got {type(y).__name__}")
    return leaves, ys


def _numeric_column(f, arrays, i, direction, eps):
    """(f(x + eps d) - f(x - eps d)) / (2 eps) for input i moved along d."""
    plus = [a if k != i else a + eps * direction for k, a in enumerate(arrays)]
    minus = [a if k != i else a - eps * direction for k, a in enumerate(arrays)]
    return [(p - m) / (2 * eps) for p, m in zip(_evaluate(f, plus), _evaluate(f, minus))]


def _compare(analytic, numeric, atol, rtol, what, o, i, out_shape, in_shape, index_of):
    err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    bad = ~(err <= 0)                             # NaN counts as a failure
    if bad.any():
        k = int(np.nanargmax(np.where(bad, np.nan_to_num(err, nan=np.inf), -np.inf)))
        loc = index_of(k)
        raise GradcheckError(
            f"gradcheck: {what} mismatch for output {o} with respect to input {i} "
            f"at {loc}: analytic {float(analytic.flat[k])!r}, numeric {float(numeric.flat[k])!r} "
            f"(|difference| {abs(analytic.flat[k] - numeric.flat[k]):.3e} > "
            f"atol {atol:g} + rtol {rtol:g} * |numeric|); "
            f"output shape {out_shape}, input shape {in_shape}")


def _check(f, arrays, eps, atol, rtol, fast_mode, check_jvp, nondet_tol, rng):
    originals = [a.copy() for a in arrays]
    leaves, ys = _record(f, arrays)
    for k, (leaf, a) in enumerate(zip(leaves, arrays)):
        if not np.array_equal(leaf.data, a, equal_nan=True):
            raise GradcheckError(f"gradcheck: f modified input {k} in place")
    # every output: one cut from the tape (e.g. computed from x.data) has an analytic
    # Jacobian of zero, which the numeric one must then match
    diff_outputs = list(range(len(ys)))
    y_arrays = [y.data for y in ys]

    def cotangent(o, u):
        return [u if k == o else np.zeros_like(y_arrays[k]) for k in range(len(ys))]

    if fast_mode:
        for i, a in enumerate(arrays):
            v = rng.standard_normal(a.shape)
            numeric = _numeric_column(f, arrays, i, v, eps)
            jv = forward_tangents(ys, {id(leaves[i]): v}) if check_jvp else None
            for o in diff_outputs:
                u = rng.standard_normal(y_arrays[o].shape)
                num = np.sum(u * numeric[o])
                back = backward_cotangents(ys, cotangent(o, u), leaves)[i]
                ana = np.sum(back * v)
                loc = lambda k: "a random projection u^T J v"
                _compare(np.asarray(ana), np.asarray(num), atol, rtol, "vjp (fast mode)",
                         o, i, y_arrays[o].shape, a.shape, loc)
                if check_jvp:
                    _compare(np.asarray(np.sum(u * jv[o])), np.asarray(num), atol, rtol,
                             "jvp (fast mode)", o, i, y_arrays[o].shape, a.shape, loc)
    else:
        # reverse mode: one backward pass per output entry gives a row of every
        # input's Jacobian at once
        reverse = {}
        for o in diff_outputs:
            out_shape = y_arrays[o].shape
            rows = [np.empty((y_arrays[o].size, a.size)) for a in arrays]
            for r in range(y_arrays[o].size):
                u = np.zeros(y_arrays[o].size)
                u[r] = 1.0
                back = backward_cotangents(ys, cotangent(o, u.reshape(out_shape)), leaves)
                for i, b in enumerate(back):
                    rows[i][r] = b.ravel()
            reverse[o] = rows
        for i, a in enumerate(arrays):
            n_in = a.size
            numeric = {o: np.empty((y_arrays[o].size, n_in)) for o in diff_outputs}
            forward = {o: np.empty((y_arrays[o].size, n_in)) for o in diff_outputs}
            for j in range(n_in):
                e = np.zeros(n_in)
                e[j] = 1.0
                e = e.reshape(a.shape)
                col = _numeric_column(f, arrays, i, e, eps)
                jv = forward_tangents(ys, {id(leaves[i]): e}) if check_jvp else None
                for o in diff_outputs:
                    numeric[o][:, j] = col[o].ravel()
                    if check_jvp:
                        forward[o][:, j] = np.asarray(jv[o], dtype=np.float64).ravel()
            for o in diff_outputs:
                out_shape = y_arrays[o].shape

                def loc(k, out_shape=out_shape, in_shape=a.shape):
                    r, c = divmod(k, max(n_in, 1))
                    return (f"output index {_fmt_index(out_shape, r)}, "
                            f"input index {_fmt_index(in_shape, c)}")
                _compare(reverse[o][i], numeric[o], atol, rtol, "vjp (reverse mode)", o, i,
                         out_shape, a.shape, loc)
                if check_jvp:
                    _compare(forward[o], numeric[o], atol, rtol, "jvp (forward mode)", o, i,
                             out_shape, a.shape, loc)

    # a zero cotangent must give exactly zero gradients
    zeros = backward_cotangents(ys, [np.zeros_like(y) for y in y_arrays], leaves)
    for i, z in enumerate(zeros):
        if np.any(z != 0):
            raise GradcheckError(f"gradcheck: a zero output cotangent gave a non-zero gradient "
                                 f"for input {i} (max |g| = {np.max(np.abs(z)):.3e})")
    # two backward passes through the same graph must agree
    us = [rng.standard_normal(y.shape) for y in y_arrays]
    first = backward_cotangents(ys, us, leaves)
    second = backward_cotangents(ys, us, leaves)
    for i, (g1, g2) in enumerate(zip(first, second)):
        if np.max(np.abs(g1 - g2), initial=0.0) > nondet_tol:
            raise GradcheckError(f"gradcheck: two backward passes disagree for input {i} "
                                 f"(max difference {np.max(np.abs(g1 - g2)):.3e} > "
                                 f"nondet_tol {nondet_tol:g})")
    for k, (a, orig) in enumerate(zip(arrays, originals)):
        if not np.array_equal(a, orig, equal_nan=True):
            raise GradcheckError(f"gradcheck: input {k} was modified in place")
