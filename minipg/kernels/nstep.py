r"""n-step bootstrapped returns.

Reference: L. Weng, "Policy Gradient Algorithms" (2018), section "A3C"
(returns over up to n steps, bootstrapped from the critic unless the last
state is terminal); Sutton & Barto (2018), sec. 7.1.

.. math::

    G_t^{(n)} = \sum_{k=0}^{m-1} \gamma^k r_{t+k} + [\text{bootstrap}]

where the sum stops at the first of: ``k = n``, an episode end, the end of
the rollout; ``m`` is the number of rewards summed.  If it stopped because
step ``t+m-1`` terminated there is no bootstrap; otherwise (truncated,
``k`` reached ``n``, or rollout end) the bootstrap is
:math:`\gamma^m V(s'_{t+m-1})` with ``V(s'_i) = next_values[i]``, the value
of the TRUE next state of step ``i``.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit

from .checks import check_rollout, from_kernel_layout

__all__ = ["n_step_returns", "n_step_returns_numba", "n_step_returns_numpy"]


@njit(cache=True)
def _n_step_2d(rewards, next_values, terminated, truncated, gamma, n, out):
    T, N = rewards.shape
    for j in range(N):
        for t in range(T):
            g = 0.0
            disc = 1.0  # gamma^k, by repeated multiplication
            k = 0
            while True:
                i = t + k
                g = g + disc * np.float64(rewards[i, j])
                disc = disc * gamma
                k += 1
                if terminated[i, j]:
                    break  # terminal state: nothing to bootstrap
                if truncated[i, j] or i == T - 1 or k == n:
                    g = g + disc * np.float64(next_values[i, j])
                    break
            out[t, j] = g


@njit(cache=True)
def n_step_returns_numba(rewards, next_values, terminated, truncated, gamma, n):
    """n-step returns, numba kernel (no input validation).

    See the module docstring for the mathematics.  Direct O(T * min(n, T))
    sum per environment.  Accepts arrays of shape (T,) or (T, N); any memory
    layout.  Computed in float64, returned in ``rewards.dtype``.
    """
    T = rewards.shape[0]
    n_env = rewards.size // T if T > 0 else 0
    out = np.empty(rewards.shape, dtype=rewards.dtype)
    _n_step_2d(
        np.ascontiguousarray(rewards).reshape((T, n_env)),
        np.ascontiguousarray(next_values).reshape((T, n_env)),
        np.ascontiguousarray(terminated).reshape((T, n_env)),
        np.ascontiguousarray(truncated).reshape((T, n_env)),
        gamma,
        n,
        out.reshape((T, n_env)),
    )
    return out


def n_step_returns_numpy(rewards, next_values, terminated, truncated, gamma, n):
    r"""n-step returns, plain NumPy twin (no input validation).

    .. math::

        G_t^{(n)} = \sum_{k=0}^{m-1} \gamma^k r_{t+k}
                    + [\text{not terminated}_{t+m-1}]\,
                      \gamma^m V(s'_{t+m-1}).

    Loops over the offset ``k`` only; each pass handles every start time
    ``t`` and every environment at once, keeping a mask of the windows that
    are still open.  Computed in float64, returned in ``rewards.dtype``.
    """
    r = np.asarray(rewards, dtype=np.float64)
    nv = np.asarray(next_values, dtype=np.float64)
    term = np.asarray(terminated, dtype=bool)
    trunc = np.asarray(truncated, dtype=bool)
    T = r.shape[0]
    g = np.zeros_like(r)
    open_ = np.ones(r.shape, dtype=bool)  # window starting at t still summing
    disc = 1.0
    for k in range(min(n, T)):
        span = T - k  # start times t with t + k inside the rollout
        live = open_[:span]
        g[:span] += np.where(live, disc * r[k:], 0.0)
        disc = disc * gamma
        stop_no_boot = live & term[k:]
        at_end = np.zeros(r[k:].shape, dtype=bool)
        at_end[-1] = True  # t + k == T - 1
        stop_boot = live & ~term[k:] & (trunc[k:] | at_end | (k == n - 1))
        g[:span] += np.where(stop_boot, disc * nv[k:], 0.0)
        open_[:span] = live & ~(stop_no_boot | stop_boot)
    return g.astype(np.asarray(rewards).dtype, copy=False)


def n_step_returns(rewards, next_values, terminated, truncated, gamma, n):
    r"""n-step bootstrapped returns, cut at episode ends.

    .. math::

        G_t^{(n)} = \sum_{k=0}^{m-1} \gamma^k r_{t+k}
                    + [\text{not terminated}_{t+m-1}]\,
                      \gamma^m V(s'_{t+m-1}),

    where ``m <= n`` stops at the first episode end or the rollout end
    (Weng 2018, "A3C").  Termination bootstraps nothing; truncation, the
    rollout end and a full window of ``n`` rewards bootstrap from
    ``next_values``.  ``n = 1`` gives the one-step TD target
    ``r + gamma (1 - terminated) next_values``.

    Parameters
    ----------
    rewards : float32/float64 array, shape (T,) or (T, N)
    next_values : float array, same shape, ``V(s'_t)`` of the TRUE next state
    terminated, truncated : bool arrays, same shape
    gamma : float in [0, 1]
    n : int >= 1

    Returns
    -------
    returns : array of ``rewards.dtype``, same shape.
    """
    r, args, gamma = check_rollout(rewards, terminated, truncated, gamma,
                                   next_values=next_values)
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    # A window never extends past the rollout, so n > T acts like n = T;
    # clipping keeps huge Python ints inside numba's int64.
    n_eff = min(int(n), max(r.shape[0], 1))
    return from_kernel_layout(n_step_returns_numba(*args, gamma, n_eff), r)
