r"""The categorical projection of a shifted and scaled distribution onto a fixed support.

References: L. Weng, "Policy Gradient Algorithms" (2018), section "D4PG"
(the distributional critic); M. G. Bellemare, W. Dabney, R. Munos, "A
Distributional Perspective on Reinforcement Learning", ICML 2017,
Algorithm 1 (the projection Phi); G. Barth-Maron et al., "Distributed
Distributional Deterministic Policy Gradients", ICLR 2018; the robust form
is verification/FORMULAS.md "Losses/C51/D4PG projection".

The support is ``n`` evenly spaced atoms z_i = v_min + i dz, i = 0..n-1,
dz = (v_max - v_min)/(n - 1).  A distribution with probabilities p_j on the
atoms is moved by a backup Tz_j = r + d z_j (d = gamma^N, or 0 after a
termination) and projected back:

.. math::

    \hat T z_j = \mathrm{clip}(r + d\,z_j,\ v_{min},\ v_{max}), \qquad
    m_i = \sum_j p_j\, \mathrm{clip}\!\left(1 - \frac{|\hat T z_j - z_i|}{\Delta z},
    0, 1\right).

Each atom's mass goes to its two neighbours on the support, in proportion
to closeness.  The textbook floor/ceil form (l = floor(b), u = ceil(b),
m_l += p (u - b), m_u += p (b - l)) gives both weights 0 when b lands
exactly on a support point (l == u) and loses that atom's mass; the form
above keeps it (the atom's whole mass goes to z_l).  Properties: m >= 0,
sum m = 1, m = p when r = 0 and d = 1, and the mean sum m_i z_i equals
r + d sum p_j z_j when no atom is clipped.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit

from .checks import FLOAT_DTYPES

__all__ = ["categorical_projection", "categorical_projection_numba",
           "categorical_projection_numpy"]


@njit(cache=True)
def categorical_projection_numba(probs, rewards, discounts, v_min, v_max):
    """The projection, numba kernel (no validation): probs (B, n), rewards and discounts
    (B,); returns (B, n) in ``probs.dtype`` (computed in float64).

    Atom j's position on the support is b = (clip(r + d z_j) - v_min)/dz in
    [0, n - 1]; with l = floor(b) and u = l + 1, z_l receives p_j (1 - (b - l))
    and z_u receives p_j (b - l): these are the two non-zero terms of the
    robust form's clip(1 - |b - i|, 0, 1).  When b = l exactly, z_l gets all
    of p_j; when b = n - 1 (the top atom) there is no z_u and its share is 0.
    """
    batch, n = probs.shape
    dz = (v_max - v_min) / (n - 1)
    out = np.zeros((batch, n), dtype=np.float64)
    for k in range(batch):
        r = np.float64(rewards[k])
        d = np.float64(discounts[k])
        for j in range(n):
            z_j = v_min + j * dz
            tz = r + d * z_j                                  # T z_j
            if tz < v_min:
                tz = v_min
            elif tz > v_max:
                tz = v_max
            b = (tz - v_min) / dz
            lower = int(np.floor(b))
            if lower > n - 1:                                 # rounding at the top atom
                lower = n - 1
            frac = b - lower
            p = np.float64(probs[k, j])
            out[k, lower] += p * (1.0 - frac)
            if lower + 1 < n:
                out[k, lower + 1] += p * frac
    return out.astype(probs.dtype)


def categorical_projection_numpy(probs, rewards, discounts, v_min, v_max):
    """The projection, NumPy twin (no validation): the robust form written out densely,
    m_i = sum_j p_j clip(1 - |T z_j - z_i| / dz, 0, 1), one (B, n, n) array."""
    p = np.asarray(probs, dtype=np.float64)
    n = p.shape[1]
    atoms = np.linspace(v_min, v_max, n)
    dz = (v_max - v_min) / (n - 1)
    tz = np.clip(np.asarray(rewards, np.float64)[:, None]
                 + np.asarray(discounts, np.float64)[:, None] * atoms[None, :],
                 v_min, v_max)                                          # (B, n_j)
    weights = np.clip(1.0 - np.abs(tz[:, :, None] - atoms[None, None, :]) / dz, 0.0, 1.0)
    return np.einsum("bj,bji->bi", p, weights).astype(np.asarray(probs).dtype, copy=False)


def _finite_real(x, name):
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real) \
            or not np.isfinite(float(x)):
        raise ValueError(f"categorical_projection: {name} must be a finite real number, "
                         f"got {x!r}")
    return float(x)


def categorical_projection(probs, rewards, discounts, v_min, v_max):
    r"""Project the backed-up distribution r + d Z onto the support (see the module docstring).

    Parameters
    ----------
    probs : float32/float64 array (B, n), n >= 2: p_j of each row (rows of a
        distribution: non-negative, summing to 1; not renormalised here)
    rewards : float array (B,): r, e.g. the N-step discounted reward sum
    discounts : float array (B,), entries in [0, 1]: d, e.g. gamma^N, or 0
        where the episode terminated inside the window
    v_min, v_max : finite floats, v_min < v_max: the support's ends

    Returns
    -------
    m : array (B, n) of ``probs.dtype``: the projected probabilities.
    """
    p = np.asarray(probs)
    if p.dtype not in FLOAT_DTYPES:
        raise ValueError(f"categorical_projection: probs must have a float dtype (float32 or "
                         f"float64), got dtype {p.dtype}")
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"categorical_projection: probs must have shape (B, n) with n >= 2 "
                         f"atoms, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("categorical_projection: probs must be finite and non-negative")
    batch = p.shape[0]
    arrays = []
    for name, x in (("rewards", rewards), ("discounts", discounts)):
        a = np.asarray(x)
        if a.dtype.kind not in "fiu" or a.shape != (batch,) or not np.all(np.isfinite(a)):
            raise ValueError(f"categorical_projection: {name} must be finite real numbers of "
                             f"shape ({batch},) (one per row of probs), got shape {a.shape}, "
                             f"dtype {a.dtype}")
        arrays.append(np.ascontiguousarray(a, dtype=np.float64))
    if np.any(arrays[1] < 0) or np.any(arrays[1] > 1):
        raise ValueError("categorical_projection: discounts must lie in [0, 1]")
    v_min, v_max = _finite_real(v_min, "v_min"), _finite_real(v_max, "v_max")
    if not v_min < v_max:
        raise ValueError(f"categorical_projection: v_min = {v_min} must be below "
                         f"v_max = {v_max}")
    return categorical_projection_numba(np.ascontiguousarray(p), arrays[0], arrays[1],
                                        v_min, v_max)
