"""Helpers shared by the distributions: argument checks, the batch size, the
Gaussian constant and the Gaussian Fisher metric.

Used by :mod:`categorical`, :mod:`gaussian` and :mod:`tanh_gaussian`, so that
each check and constant is written once.
"""

from __future__ import annotations

import math

import numpy as np

from ..autodiff import Tensor, as_tensor

__all__ = ["HALF_LOG_2PI", "batch_size", "check_event", "check_generator", "float_tensor",
           "gaussian_fisher_metric"]

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def batch_size(shape):
    """Number of distributions in a batch of shape (..., event): prod(leading axes), >= 1."""
    return int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1


def check_generator(rng):
    """A numpy Generator from a Generator (returned as is); anything else is an error."""
    if isinstance(rng, np.random.Generator):
        return rng
    raise ValueError(f"expected a numpy random Generator (np.random.default_rng(seed)) for rng, "
                     f"got {type(rng).__name__}")


def float_tensor(x, what, owner):
    """x as a Tensor of a floating dtype (Tensors keep their place on the tape)."""
    t = as_tensor(x)
    if t.data.dtype.kind != "f":
        if isinstance(x, Tensor) and x.requires_grad:
            raise ValueError(f"{owner}: {what} must be floating point, got dtype {t.data.dtype}")
        t = Tensor(t.data.astype(np.float64))
    if t.ndim < 1:
        raise ValueError(f"{owner}: {what} must have shape (..., d) with d >= 1 action "
                         f"dimensions; got a scalar")
    return t


def check_event(x, d, batch, owner, what):
    """Shape of x broadcast with the distribution (batch + (d,)); ValueError if incompatible."""
    shape = np.shape(x)
    if len(shape) < 1 or shape[-1] != d:
        raise ValueError(f"{owner}: {what} of shape {shape} must have last axis d = {d} "
                         f"(the action dimension)")
    try:
        return np.broadcast_shapes(shape, batch + (d,))
    except ValueError:
        raise ValueError(f"{owner}: {what} of shape {shape} does not broadcast with the "
                         f"distribution's shape {batch + (d,)}") from None


def gaussian_fisher_metric(outputs, tangents, owner, log_std_bounds=None):
    """The Fisher metric of DiagGaussian and TanhGaussian: see DiagGaussian.fisher_metric.

    With ``log_std_bounds = (lo, hi)`` the distribution uses clip(log_std, lo,
    hi): the metric is D F D with D the clip's derivative (1 on [lo, hi],
    0 outside) and F evaluated at the clipped log_std.
    """
    if not (isinstance(outputs, (tuple, list)) and len(outputs) == 2
            and isinstance(tangents, (tuple, list)) and len(tangents) == 2):
        raise ValueError(f"{owner}: outputs and tangents must be the pairs (mean, log_std) and "
                         "(mean tangent, log_std tangent); make outputs_fn return a 2-tuple")
    mean, log_std = (np.asarray(o) for o in outputs)
    um, uls = (np.asarray(t) for t in tangents)
    if um.shape != mean.shape or uls.shape != log_std.shape:
        raise ValueError(f"{owner}: tangent shapes {um.shape}, {uls.shape} do not match output "
                         f"shapes {mean.shape}, {log_std.shape}")
    if log_std_bounds is not None:
        lo, hi = log_std_bounds
        inside = (log_std >= lo) & (log_std <= hi)
        log_std = np.clip(log_std, lo, hi)
        uls = uls * inside          # D F D u = F D u: D is a 0/1 diagonal, F diagonal here
    m_mean = um * np.exp(-2.0 * log_std) / batch_size(mean.shape)
    m_ls = 2.0 * uls / batch_size(log_std.shape)
    return m_mean, m_ls
