r"""The elementwise passes around a dense layer's matrix product, one pass each.

.. math::

    z = \mathrm{relu}(x W + b) = \max(x W + b, 0),
    \qquad
    \bar s = \bar z \odot \mathbb{1}[z > 0]

Every hidden layer of the off-policy actors and critics (relu, 256 and 400
units wide at batch 256) adds a bias and applies the relu after its product,
and its backward pass masks the output cotangent by relu's derivative.  NumPy
does the forward in two passes over the (K, N, n) output (``out += b``, then
``np.maximum``, which is slow because it handles NaN) and the mask in two more
(a boolean array, then a product that allocates); one compiled pass each is
3-5x faster at these sizes (verification/results/offpolicy_speed.md).

Semantics are NumPy's, value for value: the bias is added in the array's own
precision before the relu (the same rounding as ``out += b``); a NaN stays NaN
through the relu (as ``np.maximum``); relu's derivative is 1 where z > 0 and 0
at and below the kink, applied as a product (``g * 0`` keeps a NaN cotangent
NaN, as ``g * (z > 0)`` does).

Arrays are 3-D: ``z`` (K, N, n), ``b`` (K, 1, n) -- a stack of K layers (a
critic ensemble) or K = 1 for one layer (the caller reshapes).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .checks import check_float_array, check_params

__all__ = ["bias_relu", "bias_relu_numba", "bias_relu_numpy",
           "relu_mask", "relu_mask_numba", "relu_mask_numpy"]


@njit(cache=True, error_model="numpy")
def bias_relu_numba(z, b):
    """In place: z <- max(z + b, 0) (NaN kept), z (K, N, n), b (K, 1, n); no validation."""
    n_layers, n_rows, n = z.shape
    for k in range(n_layers):
        for i in range(n_rows):
            for j in range(n):
                s = z[k, i, j] + b[k, 0, j]          # rounded to z's dtype, as out += b
                z[k, i, j] = 0.0 if s <= 0.0 else s  # a NaN fails s <= 0 and stays


def bias_relu_numpy(z, b):
    """NumPy twin of :func:`bias_relu_numba` (no validation)."""
    z += b
    np.maximum(z, 0, out=z)


@njit(cache=True, error_model="numpy")
def relu_mask_numba(g, z, out):
    """out <- g * [z > 0] for (K, N, n) arrays (g and z unchanged); no validation."""
    n_layers, n_rows, n = g.shape
    for k in range(n_layers):
        for i in range(n_rows):
            for j in range(n):
                v = g[k, i, j]
                out[k, i, j] = v if z[k, i, j] > 0.0 else v * 0.0   # NaN * 0 stays NaN


def relu_mask_numpy(g, z, out):
    """NumPy twin of :func:`relu_mask_numba` (no validation)."""
    np.multiply(g, z > 0, out=out)


def _as_stack(a, name):
    """A (N, n) or (K, N, n) array as (K, N, n) (K = 1 for 2-D); a view."""
    if a.ndim == 3:
        return a
    if a.ndim == 2:
        return a[None]
    raise ValueError(f"{name}: expected a 2-D (N, n) or 3-D (K, N, n) array, got shape {a.shape}")


def bias_relu(z, b):
    """In place: ``z <- max(z + b, 0)``; z (N, n) or (K, N, n), float32/float64,
    C-contiguous and writeable; b (n,) for 2-D z, (K, 1, n) for 3-D, of z's dtype.
    Returns z."""
    z = check_params(z, "z")
    z3 = _as_stack(z, "bias_relu")
    b = np.asarray(b)
    expected = (z.shape[-1],) if z.ndim == 2 else (z.shape[0], 1, z.shape[2])
    if b.shape != expected or b.dtype != z.dtype:
        raise ValueError(f"bias_relu: b must have shape {expected} and dtype {z.dtype} for z "
                         f"of shape {z.shape}; got {b.shape} {b.dtype}")
    bias_relu_numba(z3, np.ascontiguousarray(b).reshape(z3.shape[0], 1, z3.shape[2]))
    return z


def relu_mask(g, z):
    """``g * (z > 0)`` as a new array; g and z float32/float64 of one shape and dtype,
    (N, n) or (K, N, n)."""
    z = check_float_array(z, "z")
    g = check_float_array(g, "g")
    if g.shape != z.shape or g.dtype != z.dtype:
        raise ValueError(f"relu_mask: g ({g.shape} {g.dtype}) must have z's shape and dtype "
                         f"({z.shape} {z.dtype})")
    out = np.empty_like(z)
    relu_mask_numba(_as_stack(g, "relu_mask"), _as_stack(z, "relu_mask"),
                    _as_stack(out, "relu_mask"))
    return out
