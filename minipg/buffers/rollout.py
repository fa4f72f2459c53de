r"""On-policy rollout storage: ``n_steps`` steps of ``n_envs`` environments, (T, N) layout.

References: L. Weng, "Policy Gradient Algorithms" (2018), sections "A2C"
and "PPO" (a batch of T steps from N synchronous actors, then an update);
V. Mnih et al., "Asynchronous Methods for Deep Reinforcement Learning",
ICML 2016 (t_max-step segments); J. Schulman et al., "Proximal Policy
Optimization Algorithms", 2017, Algorithm 1 ("Run policy pi_old in
environment for T timesteps" in each of N actors).

Every array has time first and environment second, the layout of the
return and advantage kernels (:mod:`minipg.kernels`).  For each step t the
buffer holds the observation the policy saw, the action as the policy drew
it, its log-probability and V(s_t) at collection time, the reward, the two
episode-end flags kept apart, and ``next_values[t]`` -- the value of the
TRUE next state s'_t:

* inside an episode s'_t is s_{t+1}, so ``next_values[t] = values[t+1]``
  (no second forward pass);
* at a time-limit truncation s'_t is the episode's final observation
  (``Step.next_obs``), whose value is computed on the spot, so the
  truncated step bootstraps from V(s_T) and not from the reset state;
* at a termination it is 0 (the kernels do not read it);
* after the last step it is V of the observation the next rollout starts
  from (or of the final observation, where the last step ended an episode).

The buffer is allocated once and overwritten by every :meth:`collect`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RolloutBuffer"]


class RolloutBuffer:
    """Preallocated (T, N) arrays of one on-policy rollout; see the module docstring.

    Parameters
    ----------
    n_steps, n_envs : int >= 1 -- T and N.
    obs_dim : int >= 1 -- the flattened observation size.
    action_shape : tuple -- ``()`` for discrete actions, ``(d,)`` for continuous ones.
    action_dtype : numpy dtype of the actions (int64 or the float dtype).
    dtype : float dtype of observations, values and rewards.
    """

    def __init__(self, n_steps, n_envs, obs_dim, action_shape, action_dtype, dtype=np.float64):
        for name, value in (("n_steps", n_steps), ("n_envs", n_envs), ("obs_dim", obs_dim)):
            if int(value) < 1:
                raise ValueError(f"RolloutBuffer: {name} must be an integer >= 1, got {value!r}")
        T, N = int(n_steps), int(n_envs)
        self.n_steps, self.n_envs = T, N
        self.obs = np.zeros((T, N, int(obs_dim)), dtype=dtype)
        self.actions = np.zeros((T, N, *action_shape), dtype=action_dtype)
        self.log_prob = np.zeros((T, N), dtype=dtype)        # log pi_old(a_t|s_t)
        self.values = np.zeros((T, N), dtype=dtype)          # V(s_t) at collection
        self.rewards = np.zeros((T, N), dtype=dtype)
        self.terminated = np.zeros((T, N), dtype=bool)
        self.truncated = np.zeros((T, N), dtype=bool)
        self.next_values = np.zeros((T, N), dtype=dtype)     # V(s'_t), true next state

    @property
    def size(self):
        """T * N, the number of steps in one rollout."""
        return self.n_steps * self.n_envs

    def collect(self, collector, policy_step, value_fn, observe=None):
        """Fill the buffer with ``n_steps`` steps of ``collector``.

        ``policy_step(obs) -> (actions, log_prob, values)`` acts for a batch of
        (prepared) observations without recording gradients; ``value_fn(obs)
        -> values`` evaluates V alone (for the bootstraps).  ``observe(obs,
        update) -> obs`` prepares raw observations (e.g. normalises them,
        updating the running statistics only when ``update`` is True); each
        observation the policy acts on is passed once with ``update=True``,
        final and bootstrap observations with ``update=False``.
        """
        if collector.n_envs != self.n_envs:
            raise ValueError(f"RolloutBuffer holds {self.n_envs} environments, the collector "
                             f"steps {collector.n_envs}")

        def prepare(obs, update):
            return obs if observe is None else observe(obs, update)

        T = self.n_steps
        for t in range(T):
            obs = prepare(collector.obs, True)
            actions, log_prob, values = policy_step(obs)
            step = collector.step(actions)
            self.obs[t] = obs
            self.actions[t] = step.actions
            self.log_prob[t] = log_prob
            self.values[t] = values
            self.rewards[t] = step.rewards
            self.terminated[t] = step.terminated
            self.truncated[t] = step.truncated
            # a truncation bootstraps from V(final observation), never the reset state
            cut = step.truncated & ~step.terminated
            self.next_values[t] = 0.0
            if t < T - 1 and cut.any():
                self.next_values[t, cut] = value_fn(prepare(step.next_obs[cut], False))
        # inside an episode the true next state is s_{t+1}: its value is already known
        done = self.terminated | self.truncated
        np.copyto(self.next_values[:-1], self.values[1:], where=~done[:-1])
        # after the last step: V(next_obs) (the final observation where it ended an episode)
        last = value_fn(prepare(step.next_obs, False))
        self.next_values[-1] = np.where(self.terminated[-1], 0.0, last)
        return self

    def flat(self, name):
        """Array ``name`` with time and environment merged: shape (T * N, ...)."""
        a = getattr(self, name)
        return a.reshape(self.size, *a.shape[2:])
