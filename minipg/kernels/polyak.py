r"""Polyak (soft) target-network update, in place.

.. math::

    \theta' \leftarrow (1 - \tau)\,\theta' + \tau\,\theta

where :math:`\theta'` is the target and :math:`\theta` the source (online)
parameters.  ``tau`` is the fraction taken from the source, the DDPG / TD3
convention (Lillicrap et al. 2016; Weng 2018, "Policy Gradient Algorithms",
sections "DDPG" and "TD3": soft updates with :math:`\tau \ll 1`).  ``tau = 1``
copies the source, ``tau = 0`` leaves the target unchanged.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .checks import check_input, check_params, check_real

__all__ = [
    "polyak_update_kernel",
    "polyak_update_kernel_numba",
    "polyak_update_kernel_numpy",
]


@njit(cache=True, error_model="numpy")
def polyak_update_kernel_numba(target, source, tau):
    """Polyak update, numba kernel on 1-D arrays (no validation)."""
    keep = 1.0 - tau
    for i in range(target.shape[0]):
        # float64 arithmetic, one rounding on store for float32 buffers
        target[i] = keep * np.float64(target[i]) + tau * np.float64(source[i])


def polyak_update_kernel_numpy(target, source, tau):
    """Polyak update, NumPy twin (one array expression, no validation)."""
    target[...] = (1.0 - tau) * target.astype(np.float64) + tau * source.astype(np.float64)


def polyak_update_kernel(target, source, tau):
    r"""In place: ``target <- (1 - tau) * target + tau * source``.

    .. math::  \theta' \leftarrow (1 - \tau)\,\theta' + \tau\,\theta

    Parameters
    ----------
    target : float32/float64 C-contiguous array, updated in place
    source : array, same shape and dtype (not modified)
    tau : float in [0, 1], the fraction taken from ``source``
    """
    target = check_params(target, "target")
    src = check_input(source, "source", target, ref_name="target")
    tau = check_real(tau, "tau", low=0.0, high=1.0)
    polyak_update_kernel_numba(target.reshape(-1), src, tau)
