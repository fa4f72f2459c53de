r"""Replay of whole trajectory segments with the behaviour policy's distribution (ACER).

References: L. Weng, "Policy Gradient Algorithms" (2018), section "ACER"
(experience replay for an off-policy actor-critic); Z. Wang et al., "Sample
Efficient Actor-Critic with Experience Replay", ICLR 2017, Algorithm 1 and
Appendix (the replay keeps trajectories and the policy mu(.|x) that
generated them, so importance weights rho = pi / mu can be formed later for
every action, not only the one taken).

One segment is T = ``segment_length`` consecutive steps of one environment:
for every step t the observation x_t, the action a_t, the reward r_t, the
two episode-end flags apart (``terminated``, ``truncated``), the TRUE next
observation x'_t (the final observation where an episode ended; inside an
episode it equals x_{t+1}) and the behaviour's statistics: the full
distribution mu(.|x_t) for discrete actions (A probabilities), the mean and
log-std (2d numbers) of a Gaussian behaviour for continuous ones.  A segment
may cross episode boundaries; the Retrace recursion stops at each (see
:mod:`minipg.kernels.retrace`).

Storage is a ring of ``capacity`` segments in preallocated arrays; sampling
draws segments uniformly, with replacement, from the filled part and returns
them time-first, (T, B, ...), the layout of the kernels.  ``state_dict`` /
``load_state_dict`` give the filled part as plain arrays, so a checkpoint
restores the buffer exactly (as :class:`minipg.buffers.replay.ReplayBuffer`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .replay import load_ring_state, ring_state

__all__ = ["SegmentReplay", "SegmentBatch"]

FIELDS = ("obs", "actions", "rewards", "terminated", "truncated", "next_obs", "mu")


class SegmentBatch(NamedTuple):
    """Segments, time first: arrays (T, B, ...) (copies)."""

    obs: np.ndarray          #: (T, B, obs_dim)
    actions: np.ndarray      #: (T, B, *action_shape)
    rewards: np.ndarray      #: (T, B)
    terminated: np.ndarray   #: (T, B) bool
    truncated: np.ndarray    #: (T, B) bool
    next_obs: np.ndarray     #: (T, B, obs_dim), the true next observation x'_t
    mu: np.ndarray           #: (T, B, stat_dim), the behaviour's statistics
    indices: np.ndarray      #: (B,) the slots the segments came from


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"SegmentReplay: {name} must be an integer >= 1, got {value!r}")
    return int(value)


class SegmentReplay:
    """A ring buffer of trajectory segments with the behaviour's statistics.

    Parameters
    ----------
    capacity : int >= 1 -- segments kept (the oldest is overwritten first).
    segment_length : int >= 1 -- T, steps per segment.
    obs_dim : int >= 1.
    action_shape : tuple -- () for a discrete action, (d,) for a continuous one.
    stat_dim : int >= 1 -- numbers describing mu(.|x): A (discrete), 2d (Gaussian).
    dtype : float dtype of observations, rewards and statistics.
    action_dtype : dtype of the actions (int64 for discrete ones; default ``dtype``).
    """

    def __init__(self, capacity, segment_length, obs_dim, action_shape, stat_dim,
                 dtype=np.float64, action_dtype=None):
        self.capacity = _positive_int(capacity, "capacity")
        self.segment_length = _positive_int(segment_length, "segment_length")
        self.obs_dim = _positive_int(obs_dim, "obs_dim")
        self.stat_dim = _positive_int(stat_dim, "stat_dim")
        self.action_shape = tuple(int(s) for s in action_shape)
        self.dtype = np.dtype(dtype)
        self.action_dtype = self.dtype if action_dtype is None else np.dtype(action_dtype)
        n, T = self.capacity, self.segment_length
        self.obs = np.zeros((n, T, self.obs_dim), dtype=self.dtype)
        self.actions = np.zeros((n, T) + self.action_shape, dtype=self.action_dtype)
        self.rewards = np.zeros((n, T), dtype=self.dtype)
        self.terminated = np.zeros((n, T), dtype=bool)
        self.truncated = np.zeros((n, T), dtype=bool)
        self.next_obs = np.zeros((n, T, self.obs_dim), dtype=self.dtype)
        self.mu = np.zeros((n, T, self.stat_dim), dtype=self.dtype)
        self.ptr = 0           # next slot to write
        self._size = 0         # filled slots

    def __len__(self):
        """The number of segments stored."""
        return self._size

    @property
    def transitions(self):
        """The number of steps stored (segments times T)."""
        return self._size * self.segment_length

    def __repr__(self):
        return (f"SegmentReplay(capacity={self.capacity}, size={self._size}, "
                f"segment_length={self.segment_length}, obs_dim={self.obs_dim}, "
                f"stat_dim={self.stat_dim})")

    def add(self, obs, actions, rewards, terminated, truncated, next_obs, mu):
        """Store N segments given time first, as collected: (T, N, ...) arrays.

        ``mu`` (T, N, stat_dim) holds the behaviour's statistics at each step;
        ``next_obs`` the true next observations.  Rewards must be finite.
        """
        T = self.segment_length
        obs = np.asarray(obs)
        if obs.ndim != 3 or obs.shape[0] != T or obs.shape[2] != self.obs_dim:
            raise ValueError(f"SegmentReplay.add: obs of shape {obs.shape}; expected (T, N, "
                             f"obs_dim) with T = {T}, obs_dim = {self.obs_dim}")
        N = obs.shape[1]
        expect = {"actions": (T, N) + self.action_shape, "rewards": (T, N),
                  "terminated": (T, N), "truncated": (T, N), "next_obs": obs.shape,
                  "mu": (T, N, self.stat_dim)}
        given = {"actions": actions, "rewards": rewards, "terminated": terminated,
                 "truncated": truncated, "next_obs": next_obs, "mu": mu}
        arrays = {"obs": obs}
        for name, shape in expect.items():
            a = np.asarray(given[name])
            if a.shape != shape:
                raise ValueError(f"SegmentReplay.add: {name} of shape {a.shape}; expected "
                                 f"{shape}")
            arrays[name] = a
        if not np.all(np.isfinite(arrays["rewards"])):
            raise ValueError("SegmentReplay.add: rewards must be finite")
        slots = (self.ptr + np.arange(N)) % self.capacity
        if N > self.capacity:                   # only the last `capacity` segments survive
            slots, keep = slots[-self.capacity:], slice(N - self.capacity, N)
        else:
            keep = slice(0, N)
        for name, a in arrays.items():
            getattr(self, name)[slots] = np.swapaxes(a, 0, 1)[keep]   # (N, T, ...) by segment
        self.ptr = int((self.ptr + N) % self.capacity)
        self._size = min(self._size + N, self.capacity)

    def sample(self, batch_size, rng):
        """B = ``batch_size`` segments drawn uniformly with replacement, time first."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError("SegmentReplay.sample: rng must be a numpy Generator")
        if self._size == 0:
            raise ValueError("SegmentReplay.sample: the buffer is empty")
        batch_size = _positive_int(batch_size, "batch_size")
        idx = rng.integers(0, self._size, size=batch_size)
        return SegmentBatch(*(np.swapaxes(getattr(self, name)[idx], 0, 1).copy()
                              for name in FIELDS), idx)

    # ------------------------------------------------------------ checkpoint
    def state_dict(self):
        """The filled part as plain arrays, plus ``ptr``, ``size``, ``capacity``."""
        return ring_state(self, FIELDS)

    def load_state_dict(self, state):
        """Restore from :meth:`state_dict` (same capacity and shapes); checked before writing."""
        self._size, self.ptr = load_ring_state(self, FIELDS, state)
        return self
