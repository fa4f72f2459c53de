r"""Uniform experience replay for the off-policy actor-critics (DDPG, TD3, SAC).

References: L. Weng, "Policy Gradient Algorithms" (2018), sections "DDPG"
("Initialize replay buffer R ... Store transition (s_t, a_t, r_t, s_{t+1})
in R ... Sample a random minibatch of N transitions"), "TD3" and "SAC"
(the replay pool :math:`\mathcal{D}`); T. P. Lillicrap et al., "Continuous
control with deep reinforcement learning", ICLR 2016, Algorithm 1; the
replay memory of V. Mnih et al., "Human-level control through deep
reinforcement learning", Nature 2015.

One transition is :math:`(s, a, r, s', d)` with ``d = terminated``: the
only episode-end flag stored, because it is the only one the one-step
target :math:`y = r + \gamma (1 - d)\,Q'(s', \cdot)` needs.

Time-limit truncation is *not* termination.  When an episode is cut by a
time limit the state :math:`s'` is an ordinary state whose value is not
zero, so the caller stores ``terminated=False`` and, as ``next_obs``, the
TRUE final observation of the episode, never the observation the
environment was reset to.  The target then bootstraps from
:math:`Q'(s', \cdot)` exactly as for any other step.  (Storing truncated
transitions as terminal biases the values towards the time-limited return.)
With gymnasium's vector environments the true final observation is the one
returned by the step that ended the episode in the default ``NEXT_STEP``
autoreset mode (and the following step, which only resets, is no
transition and must not be stored), or ``infos["final_obs"]`` in
``SAME_STEP`` mode.

Storage is a set of preallocated arrays of length ``capacity``, written as
a ring: once full, the oldest transition is overwritten.  Sampling draws
indices uniformly, with replacement, from the filled part only.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["ReplayBuffer", "ReplayBatch", "ring_state", "load_ring_state"]

_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")


class ReplayBatch(NamedTuple):
    """A sampled minibatch: fresh arrays (copies), leading axis = batch."""

    obs: np.ndarray          #: (B, *obs_shape)
    actions: np.ndarray      #: (B, *action_shape)
    rewards: np.ndarray      #: (B,)
    next_obs: np.ndarray     #: (B, *obs_shape), the true next observation s'
    terminated: np.ndarray   #: (B,) bool: True where s' is terminal (no bootstrap)
    indices: np.ndarray      #: (B,) int64: the slots the rows came from


def _shape_tuple(shape, name):
    """shape as a tuple of non-negative ints; an int n means (n,)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"ReplayBuffer: {name} must be a tuple of ints (or an int), "
                        f"got {shape!r}") from None
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0
               for s in shape):
        raise ValueError(f"ReplayBuffer: {name} must be a tuple of non-negative ints, "
                         f"got {shape!r}")
    return tuple(int(s) for s in shape)


class ReplayBuffer:
    r"""A ring buffer of transitions :math:`(s, a, r, s', \text{terminated})`.

    Parameters
    ----------
    capacity : int >= 1
        Number of transitions kept; the oldest is overwritten first.
    obs_shape, action_shape : tuple of ints (an int n means (n,); () is a
        scalar, e.g. a discrete action index).
    dtype : float dtype of actions and rewards (and of observations unless
        ``obs_dtype`` is given).  Default float64.
    obs_dtype : dtype of ``obs`` and ``next_obs`` (e.g. ``np.uint8`` for
        images); default ``dtype``.

    Attributes ``obs``, ``actions``, ``rewards``, ``next_obs``,
    ``terminated`` are the preallocated arrays (of length ``capacity``; only
    the first ``len(self)`` slots are filled until the buffer wraps), ``ptr``
    the next slot to write.
    """

    def __init__(self, capacity, obs_shape, action_shape, dtype=np.float64, obs_dtype=None):
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
            raise TypeError(f"ReplayBuffer: capacity must be an int >= 1, got {capacity!r}")
        if capacity < 1:
            raise ValueError(f"ReplayBuffer: capacity must be an int >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.obs_shape = _shape_tuple(obs_shape, "obs_shape")
        self.action_shape = _shape_tuple(action_shape, "action_shape")
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"ReplayBuffer: dtype must be a float dtype (float32 or float64), "
                            f"got {self.dtype}")
        self.obs_dtype = self.dtype if obs_dtype is None else np.dtype(obs_dtype)
        if self.obs_dtype.kind not in "fiub":
            raise TypeError(f"ReplayBuffer: obs_dtype must be a numeric dtype, got "
                            f"{self.obs_dtype}")
        n = self.capacity
        self.obs = np.zeros((n,) + self.obs_shape, dtype=self.obs_dtype)
        self.actions = np.zeros((n,) + self.action_shape, dtype=self.dtype)
        self.rewards = np.zeros(n, dtype=self.dtype)
        self.next_obs = np.zeros((n,) + self.obs_shape, dtype=self.obs_dtype)
        self.terminated = np.zeros(n, dtype=bool)
        self.ptr = 0            # next slot to write
        self._size = 0          # number of filled slots, <= capacity

    def __len__(self):
        return self._size

    def __repr__(self):
        return (f"ReplayBuffer(capacity={self.capacity}, size={self._size}, "
                f"obs_shape={self.obs_shape}, action_shape={self.action_shape}, "
                f"dtype={self.dtype}, obs_dtype={self.obs_dtype})")

    # ------------------------------------------------------------------ add
    def add(self, obs, action, reward, next_obs, terminated):
        """Store one transition, or a batch of them (leading axis = n environments).

        ``obs`` of shape ``obs_shape`` is one transition (``reward`` and
        ``terminated`` scalars); of shape ``(n,) + obs_shape`` it is ``n``
        transitions, stored in row order (``reward``, ``terminated`` of shape
        ``(n,)``); n may change between calls (e.g. the rows of environments
        that are only resetting left out).  ``terminated`` is bool or 0/1.  On a time-limit
        truncation pass ``terminated=False`` and the true final observation
        as ``next_obs`` (see the module docstring).  Rewards must be finite.
        """
        obs = np.asarray(obs)
        k = len(self.obs_shape)
        if obs.ndim == k and obs.shape == self.obs_shape:
            n, batch = 1, False
        elif obs.ndim == k + 1 and obs.shape[1:] == self.obs_shape:
            n, batch = obs.shape[0], True
        else:
            raise ValueError(f"ReplayBuffer.add: obs of shape {obs.shape} must be obs_shape "
                             f"{self.obs_shape} (one transition) or (n,) + {self.obs_shape} "
                             f"(a batch of n)")
        lead = (n,) if batch else ()
        what = f"(n,) with n = {n}" if batch else "a scalar"
        next_obs = np.asarray(next_obs)
        if next_obs.shape != obs.shape:
            raise ValueError(f"ReplayBuffer.add: next_obs of shape {next_obs.shape} must have "
                             f"the shape of obs {obs.shape}")
        action = np.asarray(action)
        if action.shape != lead + self.action_shape:
            raise ValueError(f"ReplayBuffer.add: action of shape {action.shape} must be "
                             f"{lead + self.action_shape} (leading axis as obs, then "
                             f"action_shape {self.action_shape})")
        reward = np.asarray(reward)
        if reward.shape != lead:
            raise ValueError(f"ReplayBuffer.add: reward of shape {reward.shape} must be {what}")
        if reward.dtype.kind not in "fiu" or not np.all(np.isfinite(reward)):
            raise ValueError(f"ReplayBuffer.add: reward must be finite real numbers, got "
                             f"{reward!r}")
        terminated = np.asarray(terminated)
        if terminated.shape != lead:
            raise ValueError(f"ReplayBuffer.add: terminated of shape {terminated.shape} must be "
                             f"{what}")
        if terminated.dtype != np.bool_:
            if terminated.dtype.kind not in "iuf" or not np.all((terminated == 0)
                                                                 | (terminated == 1)):
                raise ValueError("ReplayBuffer.add: terminated must be bool (numeric arrays are "
                                 f"accepted only with entries 0 or 1), got {terminated!r}")
            terminated = terminated.astype(bool)
        if not batch:
            obs, next_obs, action = obs[None], next_obs[None], action[None]
            reward, terminated = reward[None], terminated[None]
        if n > self.capacity:
            # only the last `capacity` rows survive a wrap within one call
            skip = n - self.capacity
            self.ptr = (self.ptr + skip) % self.capacity
            obs, action, reward = obs[skip:], action[skip:], reward[skip:]
            next_obs, terminated = next_obs[skip:], terminated[skip:]
            n = self.capacity
        slots = (self.ptr + np.arange(n)) % self.capacity      # ring order, oldest overwritten
        self.obs[slots] = obs
        self.actions[slots] = action
        self.rewards[slots] = reward
        self.next_obs[slots] = next_obs
        self.terminated[slots] = terminated
        self.ptr = (self.ptr + n) % self.capacity
        self._size = min(self._size + n, self.capacity)

    # --------------------------------------------------------------- sample
    def check_sample(self, batch_size, rng):
        """Refuse a sampling request :meth:`sample` (and a subclass's) cannot serve: ``rng``
        not a ``numpy.random.Generator``, ``batch_size`` not an int in [1, len(self)]."""
        where = f"{type(self).__name__}.sample"
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"{where}: rng must be a numpy Generator "
                            f"(np.random.default_rng(seed)), got {type(rng).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"{where}: batch_size must be an int, got {batch_size!r}")
        if self._size == 0:
            raise ValueError(f"{where}: the buffer is empty; add transitions first")
        if not 1 <= batch_size <= self._size:
            raise ValueError(f"{where}: batch_size = {batch_size} must be between 1 and the "
                             f"number of stored transitions, {self._size}")

    def sample(self, batch_size, rng):
        """A uniform minibatch, drawn with replacement from the filled slots.

        ``rng`` is a ``numpy.random.Generator``; ``batch_size`` an int with
        ``1 <= batch_size <= len(self)`` (with replacement a larger batch
        would be possible, but asking for more transitions than were stored
        is almost always a warm-up bug, so it is refused).  Returns a
        :class:`ReplayBatch` of copies.
        """
        self.check_sample(batch_size, rng)
        idx = rng.integers(0, self._size, size=int(batch_size))   # uniform over filled slots
        return ReplayBatch(self.obs[idx], self.actions[idx], self.rewards[idx],
                           self.next_obs[idx], self.terminated[idx], idx)

    # ------------------------------------------------------------ checkpoint
    def state_dict(self):
        """The filled part as plain arrays (``np.savez`` / ``np.load(allow_pickle=False)``).

        Keys: ``obs``, ``actions``, ``rewards``, ``next_obs``, ``terminated``
        (the first ``len(self)`` slots, copies) and ``ptr``, ``size``,
        ``capacity`` (0-d int64 arrays).
        """
        return ring_state(self, _FIELDS)

    def load_state_dict(self, state):
        """Restore from :meth:`state_dict` (same capacity, shapes and dtype kinds)."""
        self._size, self.ptr = load_ring_state(self, _FIELDS, state)
        return self


# --- checkpoints of a ring of preallocated arrays ---------------------------------------
# A buffer with arrays ``fields`` of ``capacity`` rows, ``len(buffer)`` rows filled and the
# next write at ``ptr`` (ReplayBuffer here, ACER's SegmentReplay).
def ring_state(buffer, fields):
    """The filled rows of ``buffer``'s arrays ``fields`` (copies) and its ``ptr``, ``size``
    and ``capacity`` as 0-d int64 arrays."""
    n = len(buffer)
    state = {name: getattr(buffer, name)[:n].copy() for name in fields}
    state["ptr"] = np.array(buffer.ptr, dtype=np.int64)
    state["size"] = np.array(n, dtype=np.int64)
    state["capacity"] = np.array(buffer.capacity, dtype=np.int64)
    return state


def load_ring_state(buffer, fields, state):
    """Write :func:`ring_state`'s rows into ``buffer``'s arrays (same capacity, row shapes
    and dtype kinds; everything is checked before anything is written) and return the
    saved ``(size, ptr)`` for the buffer to take."""
    where = f"{type(buffer).__name__}.load_state_dict"
    keys = set(fields) | {"ptr", "size", "capacity"}
    missing = sorted(keys - set(state))
    unexpected = sorted(set(state) - keys)
    if missing or unexpected:
        raise ValueError(f"{where}: missing keys {missing}, unexpected keys {unexpected}; "
                         f"expected {sorted(keys)}")
    scalars = {}
    for name in ("ptr", "size", "capacity"):
        v = np.asarray(state[name])
        if v.shape != () or v.dtype.kind not in "iu":
            raise ValueError(f"{where}: '{name}' must be a 0-d integer array, got shape "
                             f"{v.shape} dtype {v.dtype}")
        scalars[name] = int(v)
    cap, size, ptr = scalars["capacity"], scalars["size"], scalars["ptr"]
    if cap != buffer.capacity:
        raise ValueError(f"{where}: saved capacity {cap} differs from this buffer's "
                         f"{buffer.capacity}")
    if not 0 <= size <= cap or not 0 <= ptr < cap or (size < cap and ptr != size):
        raise ValueError(f"{where}: inconsistent size {size} and ptr {ptr} for capacity {cap} "
                         f"(need 0 <= size <= capacity, 0 <= ptr < capacity, and ptr == size "
                         f"until the buffer is full)")
    arrays = {}
    for name in fields:
        target = getattr(buffer, name)
        v = np.asarray(state[name])
        want = (size,) + target.shape[1:]
        if v.shape != want:
            raise ValueError(f"{where}: '{name}' has shape {v.shape}, expected {want}")
        if not np.can_cast(v.dtype, target.dtype, casting="same_kind"):
            raise ValueError(f"{where}: '{name}' has dtype {v.dtype}, which does not convert "
                             f"to the buffer's {target.dtype}")
        arrays[name] = v
    for name, v in arrays.items():          # all checked: now write
        target = getattr(buffer, name)
        target[:size] = v
        target[size:] = 0                   # no stale rows beyond the filled part
    return size, ptr
