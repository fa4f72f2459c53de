r"""Proportional prioritized experience replay (the replay of D4PG).

References: L. Weng, "Policy Gradient Algorithms" (2018), section "D4PG",
item (4) and Algorithm 1; T. Schaul, J. Quan, I. Antonoglou, D. Silver,
"Prioritized Experience Replay", ICLR 2016, eq. (1), section 3.4 and
Algorithm 1.

Transition i, of priority p_i > 0, is drawn with probability

.. math::

    P(i) = \frac{p_i^\alpha}{\sum_k p_k^\alpha}

(alpha = 0 is uniform replay), and its update is weighted by the
importance weight

.. math::

    w_i = \frac{(R\,P(i))^{-\beta}}{\max_{j \in \text{batch}} (R\,P(j))^{-\beta}},

R the number of stored transitions.  With beta = 1 the weight (R P(i))^-1
undoes the non-uniform sampling exactly (the document's "(R p_i)^-1", with
p_i there the sampling probability); normalising by the batch's largest
weight keeps every w_i <= 1 and so only ever shrinks a step (Schaul et al.,
Algorithm 1, line 10, normalise by max w).  beta is annealed to 1 by the
caller (it is an argument of :meth:`PrioritizedReplayBuffer.sample`).

New transitions get the largest priority seen so far (Algorithm 1, line 6),
so each is replayed at least once with high probability; after a minibatch
the caller sets the sampled transitions' priorities from their losses
(:meth:`update_priorities`).  The p^alpha live in a sum tree
(:mod:`minipg.kernels.sumtree`), so sampling and updates cost O(log R).
Draws are independent (with replacement), u ~ U[0, total) per draw.

Each stored row may be an N-step transition: the reward is the discounted
sum of up to N rewards and ``n_steps`` the number m of rewards summed, so
the bootstrap of the row is gamma^m (1 - terminated) (see
:mod:`minipg.buffers.nstep`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.sumtree import sum_tree_find, sum_tree_leaves, sum_tree_update_numba
from .replay import ReplayBuffer

__all__ = ["PrioritizedReplayBuffer", "PrioritizedBatch"]


class PrioritizedBatch(NamedTuple):
    """A prioritized minibatch: the :class:`~minipg.buffers.replay.ReplayBatch` fields, the
    number of rewards summed per row, the sampling probabilities and the importance
    weights."""

    obs: np.ndarray            #: (B, *obs_shape)
    actions: np.ndarray        #: (B, *action_shape)
    rewards: np.ndarray        #: (B,) the (N-step) discounted reward sum
    next_obs: np.ndarray       #: (B, *obs_shape) the true state m steps later
    terminated: np.ndarray     #: (B,) bool: the window ended in a termination (no bootstrap)
    indices: np.ndarray        #: (B,) int64 slots (for update_priorities)
    n_steps: np.ndarray        #: (B,) int64 m, the number of rewards summed
    probabilities: np.ndarray  #: (B,) float64 P(i)
    weights: np.ndarray        #: (B,) float64 w_i, max 1


class PrioritizedReplayBuffer(ReplayBuffer):
    r"""A :class:`~minipg.buffers.replay.ReplayBuffer` that samples in proportion to p^alpha.

    Parameters
    ----------
    capacity, obs_shape, action_shape, dtype : as for ``ReplayBuffer``
    alpha : float >= 0, the priority exponent (0: uniform)

    ``add`` takes, besides the ``ReplayBuffer`` fields, ``n_steps`` (the
    number of rewards in each row's reward sum; default 1).  ``sample(batch_size,
    rng, beta)`` returns a :class:`PrioritizedBatch`; ``update_priorities(indices,
    priorities)`` sets p_i (> 0) of sampled rows.
    """

    def __init__(self, capacity, obs_shape, action_shape, alpha, dtype=np.float64):
        super().__init__(capacity, obs_shape, action_shape, dtype=dtype)
        alpha = float(alpha)
        if not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"PrioritizedReplayBuffer: alpha must be a finite number >= 0, "
                             f"got {alpha!r}")
        self.alpha = alpha
        self.n_steps = np.zeros(self.capacity, dtype=np.int64)
        self.priorities = np.zeros(self.capacity, dtype=np.float64)   # p_i (not ^alpha)
        self.max_priority = 1.0          # the priority of a new transition
        self.tree = np.zeros(2 * sum_tree_leaves(self.capacity), dtype=np.float64)

    def __repr__(self):
        return super().__repr__().replace("ReplayBuffer(", "PrioritizedReplayBuffer(", 1)[:-1] \
            + f", alpha={self.alpha})"

    def add(self, obs, action, reward, next_obs, terminated, n_steps=1):
        """Store rows as ``ReplayBuffer.add`` does, each with the largest priority seen."""
        obs = np.asarray(obs)
        n = 1 if obs.ndim == len(self.obs_shape) else obs.shape[0]
        steps = np.asarray(n_steps)
        if steps.dtype.kind not in "iu" or steps.shape not in ((), (n,)) or np.any(steps < 1):
            raise ValueError(f"PrioritizedReplayBuffer.add: n_steps must be an integer >= 1 or "
                             f"one per row ({n}), got {n_steps!r}")
        super().add(obs, action, reward, next_obs, terminated)
        written = min(n, self.capacity)          # a batch larger than the ring keeps its tail
        slots = (self.ptr - written + np.arange(written)) % self.capacity
        self.n_steps[slots] = np.broadcast_to(steps, (n,))[n - written:]
        self._set(slots, np.full(written, self.max_priority))

    def _set(self, slots, priorities):
        self.priorities[slots] = priorities
        sum_tree_update_numba(self.tree, slots.astype(np.int64),
                              np.power(priorities, self.alpha))           # p_i^alpha

    def update_priorities(self, indices, priorities):
        """p_i <- priorities (finite, > 0) for the rows ``indices`` of a sampled minibatch;
        a repeated index keeps the last."""
        idx = np.asarray(indices)
        p = np.asarray(priorities, dtype=np.float64)
        if idx.dtype.kind not in "iu" or idx.ndim != 1 or p.shape != idx.shape:
            raise ValueError(f"update_priorities: indices must be a 1-D integer array and "
                             f"priorities one number per index; got shapes {idx.shape}, "
                             f"{p.shape}")
        if np.any(idx < 0) or np.any(idx >= len(self)):
            raise ValueError(f"update_priorities: indices must be stored rows, in [0, "
                             f"{len(self)})")
        if not np.all(np.isfinite(p)) or np.any(p <= 0):
            raise ValueError(f"update_priorities: priorities must be finite and > 0, got "
                             f"{priorities!r}")
        self._set(idx.astype(np.int64), p)
        self.max_priority = max(self.max_priority, float(p.max()))

    def probabilities(self, indices):
        """P(i) = p_i^alpha / sum_k p_k^alpha of stored rows ``indices``."""
        leaves = self.tree.shape[0] // 2
        return self.tree[leaves + np.asarray(indices)] / self.tree[1]

    def sample(self, batch_size, rng, beta=1.0):
        """A minibatch drawn with P(i) proportional to p_i^alpha, with replacement, and its
        importance weights (R P(i))^-beta / max over the batch (beta in [0, 1])."""
        self.check_sample(batch_size, rng)
        beta = float(beta)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"PrioritizedReplayBuffer.sample: beta must lie in [0, 1], got "
                             f"{beta!r}")
        total = self.tree[1]
        values = rng.random(int(batch_size)) * total                 # u ~ U[0, total)
        idx = sum_tree_find(self.tree, np.minimum(values, np.nextafter(total, 0.0)))
        prob = self.probabilities(idx)                                # P(i)
        weights = np.power(len(self) * prob, -beta)                   # (R P(i))^-beta
        weights /= weights.max()                                      # normalised by the max
        return PrioritizedBatch(self.obs[idx], self.actions[idx], self.rewards[idx],
                                self.next_obs[idx], self.terminated[idx], idx,
                                self.n_steps[idx], prob, weights)

    # ------------------------------------------------------------ checkpoint
    def state_dict(self):
        """``ReplayBuffer.state_dict`` plus ``n_steps``, ``priorities`` (the filled part)
        and ``max_priority``; the tree is rebuilt from the priorities on load (bitwise the
        same: every node is the sum of its children)."""
        state = super().state_dict()
        n = len(self)
        state["n_steps"] = self.n_steps[:n].copy()
        state["priorities"] = self.priorities[:n].copy()
        state["max_priority"] = np.array(self.max_priority, dtype=np.float64)
        return state

    def load_state_dict(self, state):
        extra = ("n_steps", "priorities", "max_priority")
        missing = [k for k in extra if k not in state]
        if missing:
            raise ValueError(f"PrioritizedReplayBuffer.load_state_dict: missing keys {missing}")
        base = {k: v for k, v in state.items() if k not in extra}
        size = int(np.asarray(state.get("size", -1)))
        n_steps = np.asarray(state["n_steps"])
        priorities = np.asarray(state["priorities"], dtype=np.float64)
        if n_steps.shape != (size,) or priorities.shape != (size,) \
                or n_steps.dtype.kind not in "iu" or np.any(n_steps < 1) \
                or not np.all(np.isfinite(priorities)) or np.any(priorities <= 0):
            raise ValueError("PrioritizedReplayBuffer.load_state_dict: n_steps (integers >= 1) "
                             "and priorities (finite, > 0) must hold one entry per stored row")
        max_priority = float(np.asarray(state["max_priority"]))
        super().load_state_dict(base)
        self.n_steps[:] = 0
        self.n_steps[:size] = n_steps
        self.priorities[:] = 0.0
        self.tree[:] = 0.0
        self._set(np.arange(size), priorities)
        self.max_priority = max_priority
        return self
