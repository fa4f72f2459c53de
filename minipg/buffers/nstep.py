r"""N-step transitions assembled online, per environment, from one-step transitions.

References: L. Weng, "Policy Gradient Algorithms" (2018), section "D4PG",
item (2) and Algorithm 1, line 6 (with the discount of the n-th reward
gamma^n, which the document's target omits); G. Barth-Maron et al., ICLR
2018, section 3 (N-step returns).

From the one-step transitions (s_t, a_t, r_t, s'_t) of one environment the
assembler emits, for each t, the row

.. math::

    \Bigl(s_t,\ a_t,\ R_t = \sum_{k=0}^{m-1} \gamma^k r_{t+k},\ s'_{t+m-1},\
    \text{terminated}_{t+m-1},\ m\Bigr), \qquad m \le N,

where m = N unless the episode ended at step t+m-1 < t+N-1 first.  The
target built on it is :math:`Y_t = R_t + \gamma^m (1 - \text{terminated})
Z'(s'_{t+m-1}, \cdot)`: a termination inside the window stops the sum and
the bootstrap; a truncation (a time limit) stops the sum but bootstraps
from the TRUE final state s'_{t+m-1} (never the reset observation).  A row
is emitted once its window is complete: N steps later, or at once for every
open window when the episode ends.

The reward sums R_t are the n-step returns of :mod:`minipg.kernels.nstep`
with a bootstrap value of 0 (the bootstrap here is a distribution, added by
the target, not a number).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.nstep import n_step_returns

__all__ = ["NStepAssembler", "NStepRows"]


class NStepRows(NamedTuple):
    """Complete N-step rows (leading axis = rows, possibly 0 of them)."""

    obs: np.ndarray          #: (k, *obs_shape) s_t
    actions: np.ndarray      #: (k, *action_shape) a_t
    rewards: np.ndarray      #: (k,) R_t, the discounted sum of m rewards
    next_obs: np.ndarray     #: (k, *obs_shape) s'_{t+m-1}, the true state m steps later
    terminated: np.ndarray   #: (k,) bool: the episode terminated at step t+m-1
    n_steps: np.ndarray      #: (k,) int64 m


class NStepAssembler:
    """Open windows of up to N one-step transitions per environment; see the module docstring.

    Parameters
    ----------
    n_envs : int >= 1, the number of environments stepped together
    n : int >= 1, N (1 gives the one-step transitions back)
    gamma : discount in [0, 1]
    obs_shape, action_shape : shapes of one observation and one action
    dtype : float dtype of the rows
    """

    def __init__(self, n_envs, n, gamma, obs_shape, action_shape, dtype=np.float64):
        if int(n) < 1 or int(n_envs) < 1:
            raise ValueError(f"NStepAssembler: n and n_envs must be >= 1, got n={n}, "
                             f"n_envs={n_envs}")
        self.n_envs, self.n, self.gamma = int(n_envs), int(n), float(gamma)
        self.obs_shape, self.action_shape = tuple(obs_shape), tuple(action_shape)
        self.dtype = np.dtype(dtype)
        # the open window of each environment: its (s, a, r) in time order (at most N - 1
        # between calls)
        self.windows = [[] for _ in range(self.n_envs)]

    def add(self, obs, actions, rewards, next_obs, terminated, truncated):
        """One vector step (leading axis n_envs); the rows it completes, environment by
        environment, each environment's in time order."""
        rows = []
        for e in range(self.n_envs):
            window = self.windows[e]
            window.append((obs[e], actions[e], rewards[e]))
            ended = bool(terminated[e]) or bool(truncated[e])
            if not ended and len(window) < self.n:
                continue
            m = len(window)
            done_at_end = np.zeros(m, dtype=bool)
            term, trunc = done_at_end.copy(), done_at_end.copy()
            term[-1], trunc[-1] = bool(terminated[e]), bool(truncated[e])
            reward_sums = n_step_returns(np.array([w[2] for w in window], dtype=np.float64),
                                         np.zeros(m), term, trunc, self.gamma, self.n)
            starts = range(m) if ended else range(1)            # which windows are complete
            for t in starts:
                rows.append((window[t][0], window[t][1], reward_sums[t], next_obs[e],
                             bool(terminated[e]), m - t))
            del window[:len(starts)]
        return self._stack(rows)

    def _stack(self, rows):
        if not rows:
            return NStepRows(np.zeros((0,) + self.obs_shape, self.dtype),
                             np.zeros((0,) + self.action_shape, self.dtype),
                             np.zeros(0, self.dtype), np.zeros((0,) + self.obs_shape, self.dtype),
                             np.zeros(0, bool), np.zeros(0, np.int64))
        obs, actions, rewards, next_obs, terminated, n_steps = zip(*rows)
        return NStepRows(np.asarray(obs, self.dtype), np.asarray(actions, self.dtype),
                         np.asarray(rewards, self.dtype), np.asarray(next_obs, self.dtype),
                         np.asarray(terminated, bool), np.asarray(n_steps, np.int64))

    # ------------------------------------------------------------ checkpoint
    def state_dict(self):
        """The open windows as plain arrays: ``lengths`` (n_envs,) and ``obs``, ``actions``,
        ``rewards`` of shape (n_envs, N, ...), zero beyond each length."""
        n, e = self.n, self.n_envs
        obs = np.zeros((e, n) + self.obs_shape, self.dtype)
        actions = np.zeros((e, n) + self.action_shape, self.dtype)
        rewards = np.zeros((e, n), self.dtype)
        lengths = np.zeros(e, np.int64)
        for i, window in enumerate(self.windows):
            lengths[i] = len(window)
            for t, (s, a, r) in enumerate(window):
                obs[i, t], actions[i, t], rewards[i, t] = s, a, r
        return {"lengths": lengths, "obs": obs, "actions": actions, "rewards": rewards}

    def load_state_dict(self, state):
        lengths = np.asarray(state["lengths"])
        obs, actions = np.asarray(state["obs"]), np.asarray(state["actions"])
        rewards = np.asarray(state["rewards"])
        e, n = self.n_envs, self.n
        if lengths.shape != (e,) or np.any(lengths < 0) or np.any(lengths >= n) \
                or obs.shape != (e, n) + self.obs_shape or rewards.shape != (e, n) \
                or actions.shape != (e, n) + self.action_shape:
            raise ValueError(f"NStepAssembler.load_state_dict: the saved windows do not fit "
                             f"{e} environments with N = {n} (lengths {lengths.tolist()}, obs "
                             f"{obs.shape})")
        self.windows = [[(obs[i, t].astype(self.dtype), actions[i, t].astype(self.dtype),
                          rewards[i, t].astype(self.dtype)) for t in range(lengths[i])]
                        for i in range(e)]
        return self
