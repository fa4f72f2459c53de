"""Discounted (Monte-Carlo) returns over a rollout, with episode ends.

Reference: L. Weng, "Policy Gradient Algorithms" (2018), section "REINFORCE"
(the return G_t = sum_k gamma^k R_{t+k+1}); the bootstrap at a truncation or
at the rollout end is the one used by the actor-critic sections ("A3C").

Rollout layout (shared by every kernel in this package): arrays of shape
``(T,)`` or ``(T, N)``, time on axis 0 and ``N`` parallel environments on
axis 1.  For step ``t``: ``rewards[t] = r_t``; ``next_values[t] = V(s'_t)``
where ``s'_t`` is the true next state of step ``t`` (at an episode end: the
final observation, not the reset one); ``terminated[t]`` is True when
``s'_t`` is terminal; ``truncated[t]`` is True when the episode was cut at
``t`` (time limit) without termination.  If both flags are set at one step,
termination wins (no bootstrap).

The input checks of the rollout kernels are in ``minipg/kernels/checks.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .checks import (
    check_rollout,
    check_same_shape_float,
    from_kernel_layout,
    to_kernel_layout,
)

__all__ = [
    "discounted_returns",
    "discounted_returns_numba",
    "discounted_returns_numpy",
]


# --------------------------------------------------------------------------
# numba kernel
# --------------------------------------------------------------------------


@njit(cache=True)
def _discounted_returns_2d(rewards, terminated, truncated, gamma, next_values,
                           has_next_values, out):
    T, N = rewards.shape
    # carry[j] = G_{t+1} of env j; float64 whatever the input dtype, so that
    # float32 rollouts are rounded once, on store.
    carry = np.zeros(N)
    for t in range(T - 1, -1, -1):
        for j in range(N):
            if terminated[t, j]:
                x = 0.0  # terminal s'_t has value 0: nothing to bootstrap
            elif truncated[t, j] or t == T - 1:
                # time limit / rollout end: the future is estimated, not cut
                if has_next_values:
                    x = np.float64(next_values[t, j])
                else:
                    x = 0.0
            else:
                x = carry[j]
            g = np.float64(rewards[t, j]) + gamma * x
            carry[j] = g
            out[t, j] = g


@njit(cache=True)
def discounted_returns_numba(rewards, terminated, truncated, gamma,
                             next_values=None):
    """Discounted returns, numba kernel (no input validation).

    See :func:`discounted_returns_numpy` for the mathematics.  Accepts arrays
    of shape (T,) or (T, N); any memory layout (copied to C order).
    """
    T = rewards.shape[0]
    n_env = rewards.size // T if T > 0 else 0
    out = np.empty(rewards.shape, dtype=rewards.dtype)
    # Work on (T, N) views so one kernel serves both (T,) and (T, N) inputs.
    r2 = np.ascontiguousarray(rewards).reshape((T, n_env))
    term2 = np.ascontiguousarray(terminated).reshape((T, n_env))
    trunc2 = np.ascontiguousarray(truncated).reshape((T, n_env))
    out2 = out.reshape((T, n_env))
    if next_values is None:
        # separate call sites: no need to unify the dtype of a dummy array
        _discounted_returns_2d(r2, term2, trunc2, gamma, r2, False, out2)
    else:
        nv2 = np.ascontiguousarray(next_values).reshape((T, n_env))
        _discounted_returns_2d(r2, term2, trunc2, gamma, nv2, True, out2)
    return out


# --------------------------------------------------------------------------
# NumPy twin
# --------------------------------------------------------------------------


def discounted_returns_numpy(rewards, terminated, truncated, gamma,
                             next_values=None):
    r"""Discounted returns, plain NumPy twin (no input validation).

    .. math::

        G_t = r_t + \gamma X_t, \qquad
        X_t = \begin{cases}
            0 & \text{terminated}_t \\
            V(s'_t) & \text{truncated}_t \text{ or } t = T-1 \\
            G_{t+1} & \text{otherwise}
        \end{cases}

    with ``V(s'_t) = next_values[t]``, or 0 when ``next_values is None``.
    Computed in float64, returned in ``rewards.dtype``.  Loops over time,
    vectorised over environments.
    """
    r = np.asarray(rewards, dtype=np.float64)
    term = np.asarray(terminated, dtype=bool)
    trunc = np.asarray(truncated, dtype=bool)
    if next_values is None:
        nv = np.zeros_like(r)
    else:
        nv = np.asarray(next_values, dtype=np.float64)
    T = r.shape[0]
    out = np.empty_like(r)
    g_next = np.zeros(r.shape[1:])
    for t in range(T - 1, -1, -1):
        if t == T - 1:
            future = nv[t]
        else:
            future = np.where(trunc[t], nv[t], g_next)
        x = np.where(term[t], 0.0, future)
        g_next = r[t] + gamma * x
        out[t] = g_next
    return out.astype(np.asarray(rewards).dtype, copy=False)


# --------------------------------------------------------------------------
# Public wrapper
# --------------------------------------------------------------------------


def discounted_returns(rewards, terminated, truncated, gamma, next_values=None):
    r"""Discounted returns of a rollout, cut at episode ends.

    .. math::

        G_t = r_t + \gamma X_t, \qquad
        X_t = \begin{cases}
            0 & \text{terminated}_t \\
            V(s'_t) & \text{truncated}_t \text{ or } t = T-1 \\
            G_{t+1} & \text{otherwise}
        \end{cases}

    (Weng 2018, "REINFORCE": :math:`G_t = \sum_k \gamma^k r_{t+k}`.)
    Episode-end convention: termination bootstraps nothing; truncation and
    the end of the rollout bootstrap from ``next_values`` (the value of the
    true final observation), or from 0 when ``next_values`` is None.  The
    recursion never crosses an episode boundary.

    Identity: ``discounted_returns(r, te, tr, g, nv) ==
    gae(r, 0, nv, te, tr, g, 1)`` whenever ``nv`` is 0 at steps that are
    neither an episode end nor the last step.

    Parameters
    ----------
    rewards : float32/float64 array, shape (T,) or (T, N)
    terminated, truncated : bool arrays, same shape
    gamma : float in [0, 1]
    next_values : float array, same shape, or None

    Returns
    -------
    returns : array of ``rewards.dtype``, same shape.
    """
    r, args, gamma = check_rollout(rewards, terminated, truncated, gamma)
    if next_values is None:
        out = discounted_returns_numba(*args, gamma)
    else:
        nv = check_same_shape_float(next_values, "next_values", r.shape)
        out = discounted_returns_numba(*args, gamma, to_kernel_layout(nv))
    return from_kernel_layout(out, r)
