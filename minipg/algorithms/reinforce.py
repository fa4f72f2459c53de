r"""REINFORCE (Monte-Carlo policy gradient), with an optional learned baseline.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "REINFORCE";
R. J. Williams, "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 8 (1992); Sutton &
Barto, *Reinforcement Learning: An Introduction*, 2nd ed., section 13.3-13.4.

Each iteration:

1. collect whole episodes with the current policy until at least
   ``batch_steps`` steps are in the batch;
2. G_t = sum_k gamma^k R_{t+k+1} by the returns kernel (the document's
   G_t); a time-limit truncation bootstraps from V(s_T) when a baseline is
   learned (the episode did not end, the clock did), from 0 otherwise;
3. ascend  (1/n_episodes) sum_t [gamma^t] (G_t - b(s_t)) grad log pi(A_t|S_t)
   (the document's update theta <- theta + alpha gamma^t G_t grad log pi);
4. fit the baseline b(s) = V_w(s) to G_t by least squares.

``discount_weighting`` keeps the gamma^t factor of the theorem, which makes
the estimate unbiased for grad J; most implementations drop it (the default
here too, because it learns faster on long episodes), which estimates
sum_s eta_1(s) sum_a grad pi(a|s) Q_gamma(s,a), not grad J (Thomas 2014;
Nota & Thomas 2020).  ``tests/test_estimators_exact.py`` tells them apart.

With ``n_envs > 1`` the episodes still running when the batch is full are
dropped (their steps count as spent), so every episode in a batch was drawn
from one policy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autodiff import no_grad
from ..estimators.reinforce import reinforce_objective, value_baseline_loss
from ..kernels import discounted_returns
from ..optim import Adam
from . import ALGORITHMS
from .base import Algorithm, BaseConfig, setting
from .networks import ValueNet, make_policy

__all__ = ["ReinforceConfig", "Reinforce", "collect_episodes"]


@dataclass
class ReinforceConfig(BaseConfig):
    """Settings of REINFORCE (defaults: CartPole-v1)."""
    total_steps: int = setting(300_000, "environment steps to train for", low=1)
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0, low_open=True)
    batch_steps: int = setting(2_000, "minimum steps per update (whole episodes)", low=1)
    hidden: tuple[int, ...] = setting((64, 64), "hidden layer sizes of both networks")
    activation: str = setting("tanh", "hidden activation", choices=("tanh", "relu"))
    policy_lr: float = setting(3e-3, "Adam learning rate of the policy", low=0.0, low_open=True)
    baseline: bool = setting(True, "learn a state-value baseline b(s) = V_w(s)")
    value_lr: float = setting(3e-3, "Adam learning rate of the baseline", low=0.0, low_open=True)
    value_iters: int = setting(10, "full-batch gradient steps of the baseline per update",
                               low=1, high=1000)
    discount_weighting: bool = setting(False, "multiply step t by gamma^t (unbiased for grad J)")
    init_log_std: float = setting(-0.5, "initial log-std of a Gaussian policy")


def collect_episodes(collector, policy_actions, min_steps):
    """Whole episodes from ``collector`` until they hold >= ``min_steps`` steps.

    ``policy_actions(obs) -> actions``.  Returns a dict of (T, N) arrays (time
    by environment) and a (T, N) boolean ``complete`` mask marking the steps
    that belong to finished episodes, plus the time index ``t`` of each step
    within its episode.
    """
    n = collector.n_envs
    obs, actions, rewards, next_obs, term, trunc, t_index = [], [], [], [], [], [], []
    t_now = np.zeros(n, dtype=np.int64)
    last_end = np.full(n, -1)  # index of each env's last episode end
    steps_complete = 0
    T = 0
    while steps_complete < min_steps:
        step = collector.step(policy_actions(collector.obs))
        obs.append(step.obs)
        actions.append(step.actions)
        rewards.append(step.rewards)
        next_obs.append(step.next_obs)
        term.append(step.terminated)
        trunc.append(step.truncated)
        t_index.append(t_now.copy())
        done = step.terminated | step.truncated
        steps_complete += int(np.sum(np.where(done, T - last_end, 0)))
        last_end = np.where(done, T, last_end)
        t_now = np.where(done, 0, t_now + 1)
        T += 1
    complete = np.arange(T)[:, None] <= last_end[None, :]
    return {"obs": np.stack(obs), "actions": np.stack(actions), "rewards": np.stack(rewards),
            "next_obs": np.stack(next_obs), "terminated": np.stack(term),
            "truncated": np.stack(trunc), "t": np.stack(t_index), "complete": complete}


@ALGORITHMS.register("reinforce")
class Reinforce(Algorithm):
    """REINFORCE with optional baseline; see the module docstring."""

    name = "reinforce"
    Config = ReinforceConfig
    action_kinds = ("discrete", "continuous")
    default_env = "CartPole-v1"
    description = "Monte-Carlo policy gradient (Williams 1992), optional learned baseline"
    presets = {"CartPole-v1": {}}

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        self.kind = "discrete" if hasattr(action_space, "n") else "continuous"
        self.policy = make_policy(self.kind, self.obs_dim, self.n_actions, config.hidden,
                                  config.activation, self.rng, self.dtype, config.init_log_std)
        self.policy_opt = Adam(self.policy.parameters(), lr=config.policy_lr)
        if config.baseline:
            self.value = ValueNet(self.obs_dim, config.hidden, config.activation, self.rng,
                                  self.dtype)
            self.value_opt = Adam(self.value.parameters(), lr=config.value_lr)

    def modules(self):
        out = {"policy": self.policy}
        if self.config.baseline:
            out["value"] = self.value
        return out

    def optimizers(self):
        out = {"policy": self.policy_opt}
        if self.config.baseline:
            out["value"] = self.value_opt
        return out

    def act(self, obs, deterministic=False):
        with no_grad():
            dist = self.policy(np.asarray(obs, dtype=self.dtype))
            return dist.mode() if deterministic else dist.sample(self.rng)

    def learn(self, collector):
        cfg = self.config
        batch = collect_episodes(collector, self.act, cfg.batch_steps)
        keep = batch["complete"]
        next_values = None
        if cfg.baseline:  # bootstrap a truncated episode from V(s_T)
            with no_grad():
                flat_next = batch["next_obs"].reshape(-1, self.obs_dim)
                next_values = self.value(flat_next).data.reshape(keep.shape)
            next_values = np.where(batch["truncated"] & ~batch["terminated"], next_values, 0.0)
        returns = discounted_returns(batch["rewards"], batch["terminated"], batch["truncated"],
                                     cfg.gamma, next_values)                      # G_t

        obs = batch["obs"][keep]
        actions = batch["actions"][keep]
        returns = returns[keep]
        n_episodes = int(np.sum((batch["terminated"] | batch["truncated"])[keep]))
        discounts = cfg.gamma ** batch["t"][keep] if cfg.discount_weighting else None

        baseline = None
        metrics = {}
        if cfg.baseline:
            with no_grad():
                baseline = self.value(obs).data                                    # b(s_t)
            for _ in range(cfg.value_iters):
                self.value_opt.zero_grad()
                loss = value_baseline_loss(self.value(obs), returns)
                loss.backward()
                self.value_opt.step()
            metrics["value_loss"] = float(loss.data)

        self.policy_opt.zero_grad()
        log_prob = self.policy(obs).log_prob(actions)
        objective = reinforce_objective(log_prob, returns, discounts=discounts,
                                        baseline=baseline, n_episodes=n_episodes)
        (-objective).backward()            # gradient ascent on the surrogate
        self.policy_opt.step()
        metrics["objective"] = float(objective.data)
        metrics["batch_episodes"] = float(n_episodes)
        return metrics

