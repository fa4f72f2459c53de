r"""Generalized Advantage Estimation, GAE(gamma, lambda).

Reference: J. Schulman, P. Moritz, S. Levine, M. Jordan, P. Abbeel,
"High-Dimensional Continuous Control Using Generalized Advantage Estimation",
ICLR 2016, eq. 16:
:math:`\hat A_t = \sum_{l \ge 0} (\gamma\lambda)^l \delta_{t+l}`; also
L. Weng, "Policy Gradient Algorithms" (2018), section "PPO" (advantage
estimates used by the clipped surrogate objective).

Recursion (computed backwards in time, per environment):

.. math::

    \delta_t &= r_t + \gamma (1 - \text{terminated}_t) V(s'_t) - V(s_t) \\
    A_t &= \delta_t + \gamma\lambda (1 - \text{done}_t) A_{t+1},
    \qquad A_T = 0,

with :math:`\text{done}_t = \text{terminated}_t \lor \text{truncated}_t`.
Episode-end convention: the bootstrap of the last step of each piece of
trajectory is already inside :math:`\delta_t` through ``next_values`` (the
value of the TRUE next state, the final observation at an episode end), so a
truncation bootstraps from :math:`V(s'_t)`, a termination does not, and the
recursion never crosses an episode boundary.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .checks import check_rollout, check_unit_interval, from_kernel_layout

__all__ = ["gae", "gae_numba", "gae_numpy"]


@njit(cache=True)
def _gae_2d(rewards, values, next_values, terminated, truncated, gamma, lam, out):
    T, N = rewards.shape
    gl = gamma * lam
    # carry[j] = A_{t+1} of env j, in float64 whatever the input dtype.
    carry = np.zeros(N)
    for t in range(T - 1, -1, -1):
        for j in range(N):
            r = np.float64(rewards[t, j])
            v = np.float64(values[t, j])
            if terminated[t, j]:
                # V(terminal) = 0: next_values[t] is not read at all, so a
                # garbage value there cannot leak in.
                a = r - v
            else:
                delta = r + gamma * np.float64(next_values[t, j]) - v
                if truncated[t, j]:
                    a = delta  # the episode ends here: do not chain A_{t+1}
                else:
                    a = delta + gl * carry[j]
            carry[j] = a
            out[t, j] = a


@njit(cache=True)
def gae_numba(rewards, values, next_values, terminated, truncated, gamma, lam):
    """GAE advantages, numba kernel (no input validation).

    See the module docstring for the mathematics.  Accepts arrays of shape
    (T,) or (T, N); any memory layout (copied to C order).  Computed in
    float64, returned in ``rewards.dtype``.
    """
    T = rewards.shape[0]
    n_env = rewards.size // T if T > 0 else 0
    out = np.empty(rewards.shape, dtype=rewards.dtype)
    # (T, N) views: one kernel serves both (T,) and (T, N) inputs.
    _gae_2d(
        np.ascontiguousarray(rewards).reshape((T, n_env)),
        np.ascontiguousarray(values).reshape((T, n_env)),
        np.ascontiguousarray(next_values).reshape((T, n_env)),
        np.ascontiguousarray(terminated).reshape((T, n_env)),
        np.ascontiguousarray(truncated).reshape((T, n_env)),
        gamma,
        lam,
        out.reshape((T, n_env)),
    )
    return out


def gae_numpy(rewards, values, next_values, terminated, truncated, gamma, lam):
    r"""GAE advantages, plain NumPy twin (no input validation).

    .. math::

        \delta_t = r_t + \gamma (1 - \text{terminated}_t) V(s'_t) - V(s_t),
        \qquad
        A_t = \delta_t + \gamma\lambda (1 - \text{done}_t) A_{t+1},
        \quad A_T = 0.

    The TD residuals are computed for the whole rollout at once; the
    recursion loops over time, vectorised over environments.  Computed in
    float64, returned in ``rewards.dtype``.
    """
    r = np.asarray(rewards, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    nv = np.asarray(next_values, dtype=np.float64)
    term = np.asarray(terminated, dtype=bool)
    trunc = np.asarray(truncated, dtype=bool)
    # where(), not a multiplication by (1 - terminated): a non-finite
    # next_value at a terminal step must not turn into NaN.
    delta = r + gamma * np.where(term, 0.0, nv) - v
    cont = ~(term | trunc)
    adv = np.empty_like(delta)
    carry = np.zeros(delta.shape[1:])
    for t in range(delta.shape[0] - 1, -1, -1):
        carry = delta[t] + np.where(cont[t], gamma * lam * carry, 0.0)
        adv[t] = carry
    return adv.astype(np.asarray(rewards).dtype, copy=False)


def gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    r"""Generalized Advantage Estimation (Schulman et al. 2016, eq. 16).

    .. math::

        \delta_t = r_t + \gamma (1 - \text{terminated}_t) V(s'_t) - V(s_t),
        \qquad
        A_t = \delta_t + \gamma\lambda (1 - \text{done}_t) A_{t+1},
        \quad A_T = 0,

    :math:`\text{done}_t = \text{terminated}_t \lor \text{truncated}_t`.
    Truncation bootstraps from ``next_values[t]``, termination does not, and
    the recursion never crosses an episode boundary.  ``lam = 1`` gives
    Monte-Carlo advantages (bootstrapped returns minus values), ``lam = 0``
    the one-step TD residual.

    Parameters
    ----------
    rewards : float32/float64 array, shape (T,) or (T, N)
    values : float array, same shape, ``V(s_t)``
    next_values : float array, same shape, ``V(s'_t)`` of the TRUE next state
    terminated, truncated : bool arrays, same shape
    gamma, lam : floats in [0, 1]

    Returns
    -------
    advantages : array of ``rewards.dtype``, same shape (add ``values`` to
    get the lambda-returns used as value targets).
    """
    r, args, gamma = check_rollout(rewards, terminated, truncated, gamma,
                                   values=values, next_values=next_values)
    lam = check_unit_interval(lam, "lam")
    return from_kernel_layout(gae_numba(*args, gamma, lam), r)
