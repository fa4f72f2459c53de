r"""Row-wise log-softmax over the last axis, and its vector-Jacobian product.

.. math::

    z_{ij} = x_{ij} - \log \sum_k e^{x_{ik}},
    \qquad
    \bar x_{ij} = g_{ij} - e^{z_{ij}} \sum_k g_{ik}

The log-probabilities of a Categorical policy (Weng 2018, "Policy Gradient
Algorithms": every discrete policy of the document) are a log-softmax of its
logits, on every acting step and every minibatch.  With a few actions per row
NumPy's reductions over a short last axis cost more than the arithmetic; one
pass per row does not.  The maximum is subtracted first, so large logits
(1e3) do not overflow.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# the dtypes the row kernels are compiled for
KERNEL_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

__all__ = ["KERNEL_FLOATS", "categorical_sample_rows", "categorical_sample_rows_numba",
           "categorical_sample_rows_numpy",
           "log_softmax_rows", "log_softmax_rows_numba", "log_softmax_rows_numpy",
           "log_softmax_rows_vjp", "log_softmax_rows_vjp_numba", "log_softmax_rows_vjp_numpy"]


@njit(cache=True, error_model="numpy")
def log_softmax_rows_numba(x, out):
    """out[i] = x[i] - logsumexp(x[i]) for a 2-D array, numba kernel (no validation)."""
    n_rows, n = x.shape
    for i in range(n_rows):
        m = x[i, 0]
        for j in range(1, n):
            if x[i, j] > m:
                m = x[i, j]
        total = 0.0                              # float64 accumulation
        for j in range(n):
            total += np.exp(np.float64(x[i, j]) - m)
        shift = m + np.log(total)
        for j in range(n):
            out[i, j] = np.float64(x[i, j]) - shift


def log_softmax_rows_numpy(x, out):
    """NumPy twin of :func:`log_softmax_rows_numba` (no validation)."""
    x64 = x.astype(np.float64)
    m = x64.max(axis=1, keepdims=True)
    out[...] = x64 - (m + np.log(np.exp(x64 - m).sum(axis=1, keepdims=True)))


@njit(cache=True, error_model="numpy")
def log_softmax_rows_vjp_numba(g, z, out):
    """out[i] = g[i] - exp(z[i]) * sum(g[i]) for 2-D arrays, numba kernel (no validation)."""
    n_rows, n = g.shape
    for i in range(n_rows):
        total = 0.0
        for j in range(n):
            total += g[i, j]
        for j in range(n):
            out[i, j] = np.float64(g[i, j]) - np.exp(np.float64(z[i, j])) * total


def log_softmax_rows_vjp_numpy(g, z, out):
    """NumPy twin of :func:`log_softmax_rows_vjp_numba` (no validation)."""
    g64 = g.astype(np.float64)
    out[...] = g64 - np.exp(z.astype(np.float64)) * g64.sum(axis=1, keepdims=True)


def _rows(x, name):
    x = np.asarray(x)
    if x.dtype not in KERNEL_FLOATS or x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must be a float32/float64 array of shape (..., n) with n >= 1; "
                         f"got dtype {x.dtype} and shape {x.shape}")
    return np.ascontiguousarray(x)


def log_softmax_rows(x):
    r"""Log-softmax over the last axis of ``x`` (shape (..., n), float32/float64), as a
    new array of the same shape and dtype: :math:`x - \log\sum e^{x}` per row."""
    x = _rows(x, "x")
    out = np.empty_like(x)
    log_softmax_rows_numba(x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1]))
    return out


def log_softmax_rows_vjp(g, z):
    r"""The cotangent of the log-softmax's input: :math:`g - e^{z} \sum g` per row, for
    the output ``z`` of :func:`log_softmax_rows` and its cotangent ``g`` (same shape)."""
    g, z = _rows(g, "g"), _rows(z, "z")
    if g.shape != z.shape:
        raise ValueError(f"g and z must have the same shape; got {g.shape} and {z.shape}")
    out = np.empty(g.shape, dtype=np.result_type(g.dtype, z.dtype))
    n = g.shape[-1]
    log_softmax_rows_vjp_numba(g.reshape(-1, n), z.reshape(-1, n), out.reshape(-1, n))
    return out


@njit(cache=True, error_model="numpy")
def categorical_sample_rows_numba(log_probs, u, out):
    """Inverse-CDF draws, one per row of 2-D log-probabilities, numba kernel (no validation).

    out[i] = #{k : c_k <= u[i] c_{n-1}}, c_k = sum_{j <= k} exp(log_probs[i, j]), in
    float64; u[i] in [0, 1).  Scaling u by the row's total keeps an action of
    probability 0 from being drawn when the probabilities sum to 1 - ulp.
    """
    n_rows, n = log_probs.shape
    for i in range(n_rows):
        total = 0.0
        for j in range(n):
            total += np.exp(np.float64(log_probs[i, j]))
        threshold = u[i] * total
        cdf = 0.0
        k = 0
        for j in range(n - 1):                   # c_{n-1} = total > threshold always
            cdf += np.exp(np.float64(log_probs[i, j]))
            if cdf <= threshold:
                k += 1
            else:
                break
        out[i] = k


def categorical_sample_rows_numpy(log_probs, u, out):
    """NumPy twin of :func:`categorical_sample_rows_numba` (no validation)."""
    cdf = np.cumsum(np.exp(log_probs.astype(np.float64)), axis=1)
    out[...] = np.sum(cdf[:, :-1] <= (u * cdf[:, -1])[:, None], axis=1)


def categorical_sample_rows(log_probs, u):
    r"""One inverse-CDF draw per row: the action k with :math:`c_{k-1} \le u\,c_{n-1} < c_k`,
    :math:`c` the cumulative sum of ``exp(log_probs)`` over the last axis (float64).

    log_probs : float32/float64 array (..., n), each row log-probabilities (they need not
        be normalised: the threshold scales with the row's total).
    u : float array of shape log_probs.shape[:-1], uniforms in [0, 1).
    Returns int64 actions of shape log_probs.shape[:-1].
    """
    log_probs = _rows(log_probs, "log_probs")
    u = np.ascontiguousarray(u, dtype=np.float64)
    if u.shape != log_probs.shape[:-1]:
        raise ValueError(f"u must have the shape {log_probs.shape[:-1]} of log_probs without its "
                         f"last axis; got {u.shape}")
    if u.size and not (np.all(u >= 0.0) and np.all(u < 1.0)):
        raise ValueError("u must hold uniforms in [0, 1)")
    out = np.empty(u.shape, dtype=np.int64)
    categorical_sample_rows_numba(log_probs.reshape(-1, log_probs.shape[-1]), u.reshape(-1),
                                  out.reshape(-1))
    return out
