r"""Retrace targets Q^ret, computed backwards over a trajectory segment.

References: L. Weng, "Policy Gradient Algorithms" (2018), section "ACER"
("Retrace Q-value Estimation"); R. Munos, T. Stepleton, A. Harutyunyan,
M. Bellemare, "Safe and Efficient Off-Policy Reinforcement Learning",
NeurIPS 2016 (Retrace(lambda)); Z. Wang et al., "Sample Efficient
Actor-Critic with Experience Replay", ICLR 2017, eq. 5 and Algorithms 2-3;
``verification/FORMULAS.md "Retrace and ACER/ACER recursion"``.

Recursion (per environment, backwards in time):

.. math::

    Q^{ret}_t = r_t + \gamma B_t, \qquad
    B_t = \begin{cases}
      0 & \text{terminated}_t \\
      V(s'_t) & \text{truncated}_t \text{ or } t = T - 1 \\
      c_{t+1} (Q^{ret}_{t+1} - Q(s_{t+1}, a_{t+1})) + V(s_{t+1}) & \text{otherwise}
    \end{cases}

with ``q[t] = Q(s_t, a_t)``, ``values[t] = V(s_t) = sum_a pi(a|s_t) Q(s_t, a)``
(or the critic's V in continuous ACER), ``next_values[t] = V(s'_t)`` of the
TRUE next state (read only where step t truncates or ends the segment) and
``traces[t] = c_t``, the trace of step t: ACER's discrete critic uses
``rho_bar_t = min(1, rho_t)`` with ``rho_t = pi(a_t|s_t) / mu(a_t|s_t)``;
the continuous critic ``min(1, rho_t^(1/d))``; the off-policy-corrected
Q^opc ``c_t = 1``.  A termination does not bootstrap; a truncation and the
end of the segment bootstrap from V; the recursion never crosses an
episode boundary.

Unrolled (the document's Delta Q^ret form): with TD errors
``delta_t = r_t + gamma B^V_t - q_t`` (``B^V_t`` the bootstrap V(s_{t+1})
inside an episode, as in the cases above otherwise),
``Q^ret_t = q_t + sum_{k >= t} gamma^(k-t) (prod_{t<i<=k} c_i) delta_k``,
summed to the episode's or the segment's end.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .checks import check_float_array, check_rollout, from_kernel_layout

__all__ = ["retrace", "retrace_numba", "retrace_numpy"]


@njit(cache=True)
def _retrace_2d(rewards, q, values, next_values, traces, terminated, truncated, gamma, out):
    T, N = rewards.shape
    for j in range(N):
        carry = 0.0       # c_{t+1} (Q^ret_{t+1} - q_{t+1}) + V(s_{t+1}), in float64
        for t in range(T - 1, -1, -1):
            if terminated[t, j]:
                bootstrap = 0.0                           # V(terminal) = 0
            elif truncated[t, j] or t == T - 1:
                bootstrap = np.float64(next_values[t, j])  # V(s'_t), the true next state
            else:
                bootstrap = carry
            ret = np.float64(rewards[t, j]) + gamma * bootstrap
            out[t, j] = ret
            carry = np.float64(traces[t, j]) * (ret - np.float64(q[t, j])) \
                + np.float64(values[t, j])


@njit(cache=True)
def retrace_numba(rewards, q, values, next_values, traces, terminated, truncated, gamma):
    """Q^ret, numba kernel (no input validation); arrays (T,) or (T, N), any layout.

    See the module docstring.  Computed in float64, returned in ``rewards.dtype``.
    """
    T = rewards.shape[0]
    n_env = rewards.size // T if T > 0 else 0
    out = np.empty(rewards.shape, dtype=rewards.dtype)
    _retrace_2d(
        np.ascontiguousarray(rewards).reshape((T, n_env)),
        np.ascontiguousarray(q).reshape((T, n_env)),
        np.ascontiguousarray(values).reshape((T, n_env)),
        np.ascontiguousarray(next_values).reshape((T, n_env)),
        np.ascontiguousarray(traces).reshape((T, n_env)),
        np.ascontiguousarray(terminated).reshape((T, n_env)),
        np.ascontiguousarray(truncated).reshape((T, n_env)),
        gamma,
        out.reshape((T, n_env)),
    )
    return out


def retrace_numpy(rewards, q, values, next_values, traces, terminated, truncated, gamma):
    r"""Q^ret, plain-NumPy twin (no input validation), vectorised over environments.

    The bootstrap of every step is formed first -- 0 at a termination,
    V(s'_t) at a truncation and at the segment's last step -- and the trace
    term ``c_{t+1} (Q^ret_{t+1} - q_{t+1}) + V(s_{t+1})`` replaces it only
    where the episode goes on inside the segment.  Float64 inside, returned
    in ``rewards.dtype``.
    """
    r = np.asarray(rewards, dtype=np.float64)
    q_taken = np.asarray(q, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    nv = np.asarray(next_values, dtype=np.float64)
    c = np.asarray(traces, dtype=np.float64)
    term = np.asarray(terminated, dtype=bool)
    trunc = np.asarray(truncated, dtype=bool)
    goes_on = ~(term | trunc)
    goes_on[-1] = False                                   # the segment ends after T steps
    # where(), not (1 - terminated) *: a non-finite V(s') at a termination stays unread
    fixed_bootstrap = np.where(term, 0.0, nv)
    q_ret = np.empty_like(r)
    after = np.zeros(r.shape[1:])                         # c_{t+1} (Q^ret - q) + V at t+1
    for t in range(r.shape[0] - 1, -1, -1):
        q_ret[t] = r[t] + gamma * np.where(goes_on[t], after, fixed_bootstrap[t])
        after = c[t] * (q_ret[t] - q_taken[t]) + v[t]
    return q_ret.astype(np.asarray(rewards).dtype, copy=False)


def retrace(rewards, q, values, next_values, traces, terminated, truncated, gamma):
    r"""Retrace targets Q^ret (Munos et al. 2016; Wang et al. 2017, Algorithm 2).

    Parameters
    ----------
    rewards : float32/float64 array, (T,) or (T, N) -- r_t.
    q : same shape -- Q(s_t, a_t) of the critic (held constant).
    values : same shape -- V(s_t) (= sum_a pi(a|s_t) Q(s_t, a) in discrete ACER).
    next_values : same shape -- V(s'_t) of the TRUE next state; read only where
        step t is truncated (and not terminated) or is the segment's last step.
    traces : same shape -- c_t >= 0, the trace of step t (ACER: min(1, rho_t)).
    terminated, truncated : bool arrays, same shape.
    gamma : float in [0, 1].

    Returns
    -------
    Q^ret, an array of ``rewards.dtype`` and shape.
    """
    r, args, gamma = check_rollout(rewards, terminated, truncated, gamma, q=q, values=values,
                                   next_values=next_values, traces=traces)
    c = check_float_array(traces, "traces")
    if not np.all(c >= 0):                       # also refuses NaN
        raise ValueError("traces must be non-negative numbers (c_t = min(1, rho_t) >= 0)")
    r2, q2, v2, nv2, c2, term, trunc = args
    return from_kernel_layout(retrace_numba(r2, q2, v2, nv2, c2, term, trunc, gamma), r)
