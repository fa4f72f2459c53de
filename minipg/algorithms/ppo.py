r"""PPO: proximal policy optimization with the clipped surrogate objective.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "PPO".
Papers: J. Schulman, F. Wolski, P. Dhariwal, A. Radford, O. Klimov,
"Proximal Policy Optimization Algorithms", arXiv:1707.06347 (2017),
Algorithm 1 and eqs. 7 and 9; J. Schulman et al., "High-Dimensional
Continuous Control Using Generalized Advantage Estimation", ICLR 2016
(GAE); S. Huang, R. F. J. Dossa, A. Raffin, A. Kanervisto, W. Wang, "The 37
Implementation Details of Proximal Policy Optimization", ICLR blog track
2022 (below: "detail n").

Each iteration (Algorithm 1, "PPO, Actor-Critic Style"):

1. run pi_old for T = ``n_steps`` steps in each of N environments, recording
   s_t, a_t, log pi_old(a_t|s_t), V_old(s_t), r_t and both episode-end flags;
2. A_t = GAE(gamma, lambda) with V(s'_t) of the TRUE next state (a time-limit
   truncation bootstraps from V(s_T), a termination does not), and value
   targets V_target = A_t + V_old(s_t) (the lambda-return);
3. for ``n_epochs`` epochs, over a fresh random permutation of the T*N
   samples cut into minibatches of ``minibatch_size``: normalise A within
   the minibatch (:func:`~minipg.estimators.ppo.normalize_advantages`,
   which returns zeros rather than dividing by zero for a minibatch of one),
   and take one Adam step up the gradient of

   .. math::

       J^{CLIP'}(\theta) = \mathbb{E}[J^{CLIP}(\theta) - c_1 (V_\theta(s) - V_{target})^2
                           + c_2 H(s, \pi_\theta(\cdot))]        \qquad \text{(eq. 9)}

   (:func:`~minipg.estimators.ppo.ppo_objective`, exactly as Weng writes it:
   no factor 1/2 on the squared error), the gradient scaled to global norm
   <= ``max_grad_norm``; optionally the clipped value loss
   (``value_clip_eps`` > 0);
4. early stop (``target_kl`` > 0): before each minibatch step, the k3
   estimate of KL(pi_old || pi_theta) on that minibatch is computed; if it
   exceeds ``target_kl`` the step is not taken and the update ends.  The
   mean k3 KL and the clip fraction are logged in every case.

The learning rate and the clip range eps are annealed linearly to 0 over
``total_steps`` (``anneal_lr``, ``anneal_clip``), as in the paper's Atari
settings (alpha from 1 to 0): the value used by an update is the one at the step count
when its rollout began, so the first update uses the initial value and the
schedule has reached 0 when the step budget is spent.

The 37 implementation details (Huang et al. 2022): followed, by number --
1 vectorized environments; 2 orthogonal initialisation (gain sqrt 2 hidden,
0.01 policy output, 1 value output) with zero biases; 3 Adam eps 1e-5;
4 learning-rate annealing; 5 GAE; 6 shuffled minibatches; 7 advantage
normalisation per minibatch; 8 clipped surrogate; 10 overall loss with
entropy bonus; 11 global gradient clipping at 0.5; 12 debug variables
(policy objective, value loss, entropy, k3 approx-KL, clip fraction,
explained variance); 13 separate policy and value networks (a shared trunk
is an option); continuous actions: 1-2 Gaussian with a state-independent
log-std, independent action components; 3 separate MLPs; 4 action clipping to
the bounds on the way to the environment (the Collector; the stored
action is the sampled one, so log pi_old stays exact); 5 observation
normalisation and 6 its clipping to +-10; 7 reward scaling (gymnasium's
NormalizeReward) and 8 its clipping to +-10.
Deliberately different:

* detail 9, value-loss clipping, is off by default (``value_clip_eps = 0``):
  Andrychowicz et al. (2021, "What matters in on-policy RL") found it does
  not help and can hurt; the clipped form is available;
* time limits: baselines/CleanRL treat a truncation as a termination and
  bootstrap nothing (or from the reset state); here truncation and
  termination are kept apart (CONTRIBUTING.md) and a truncation bootstraps from
  V(final observation);
* the value coefficient multiplies the squared error without a factor 1/2
  (Weng's and the paper's eq. 9): ``value_coef = 0.5`` equals
  stable-baselines3's ``vf_coef = 0.5`` and CleanRL's ``vf_coef = 1``;
* observation normalisation keeps one running mean/std for all N
  environments, held by the agent (like SB3's VecNormalize) instead of one
  ``NormalizeObservation`` wrapper per environment, so that evaluation uses
  the trained statistics, frozen;
* early stopping is per minibatch before the step (SB3's choice), not at the
  end of an epoch (CleanRL's), and uses ``target_kl`` without SB3's factor 1.5;
* the clip range is annealed too (``anneal_clip``, the paper's Atari setting
  and the rl-zoo CartPole preset), which CleanRL does not do.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..estimators.ppo import normalize_advantages, ppo_objective
from ..optim import Adam
from . import ALGORITHMS
from .base import ConfigError, setting
from .onpolicy_common import (JointLossAlgorithm, JointLossConfig, explained_variance,
                              linear_decay)

__all__ = ["PPOConfig", "PPO"]


@dataclass
class PPOConfig(JointLossConfig):
    """Settings of PPO (defaults: the paper's MuJoCo settings, plus learning-rate annealing;
    presets per task below)."""
    total_steps: int = setting(1_000_000, "environment steps to train for", low=1)
    n_envs: int = setting(1, "parallel environments N", low=1, high=1024)
    n_steps: int = setting(2048, "steps T per environment in one rollout", low=1)
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0, low_open=True)
    gae_lambda: float = setting(0.95, "GAE lambda", low=0.0, high=1.0)
    n_epochs: int = setting(10, "passes over each rollout (K)", low=1, high=1000)
    minibatch_size: int = setting(64, "samples per minibatch (the last may be smaller)", low=1)
    lr: float = setting(3e-4, "Adam learning rate (initial value when annealed)", low=0.0,
                        low_open=True)
    anneal_lr: bool = setting(True, "anneal the learning rate linearly to 0")
    adam_eps: float = setting(1e-5, "Adam epsilon (detail 3)", low=0.0)
    clip_eps: float = setting(0.2, "epsilon of J^CLIP (initial value when annealed)",
                              low=0.0, high=1.0, low_open=True, high_open=True)
    anneal_clip: bool = setting(False, "anneal the clip range linearly to 0")
    value_clip_eps: float = setting(0.0, "clip V - V_old to +-this in the value loss (0: off)",
                                    low=0.0)
    value_coef: float = setting(0.5, "c1 of eq. 9 (on the squared error, no factor 1/2)",
                                low=0.0)
    entropy_coef: float = setting(0.0, "c2 of eq. 9", low=0.0)
    normalize_advantages: bool = setting(True, "normalise advantages in each minibatch")
    target_kl: float = setting(0.0, "stop the update when the k3 KL exceeds this (0: off)",
                               low=0.0)

    def check(self):
        if self.minibatch_size > self.n_steps * self.n_envs:
            raise ConfigError(f"setting 'minibatch_size': {self.minibatch_size} is larger than "
                              f"a rollout (n_steps * n_envs = {self.n_steps * self.n_envs}); "
                              "accepted: at most n_steps * n_envs")


@ALGORITHMS.register("ppo")
class PPO(JointLossAlgorithm):
    """PPO-Clip, actor-critic style; see the module docstring."""

    name = "ppo"
    Config = PPOConfig
    description = "proximal policy optimization, clipped surrogate (Schulman et al. 2017)"
    presets = {
        # rl-baselines3-zoo's CartPole-v1 settings (also the speed benchmark's), in float32:
        # it learns as well as float64 on 3 seeds (verification/results/float32_presets.md)
        # and NumPy's tanh is ~4x faster in single precision
        "CartPole-v1": {"n_envs": 8, "n_steps": 32, "minibatch_size": 256, "n_epochs": 20,
                        "gamma": 0.98, "gae_lambda": 0.8, "lr": 1e-3, "anneal_lr": True,
                        "clip_eps": 0.2, "anneal_clip": True, "entropy_coef": 0.0,
                        "total_steps": 100_000, "dtype": "float32"},
        "Acrobot-v1": {"n_envs": 8, "n_steps": 128, "minibatch_size": 256, "n_epochs": 4,
                       "gamma": 0.99, "gae_lambda": 0.94, "lr": 1e-3, "normalize_obs": True,
                       "entropy_coef": 0.0, "total_steps": 200_000},
        # rl-zoo's Pendulum-v1 settings without gSDE; 150k steps: the learning rate then
        # anneals fast enough (a 300k-step trial stalled near -470 on seed 0)
        "Pendulum-v1": {"n_envs": 4, "n_steps": 1024, "minibatch_size": 64, "n_epochs": 10,
                        "gamma": 0.9, "gae_lambda": 0.95, "lr": 1e-3, "normalize_obs": True,
                        "entropy_coef": 0.0, "init_log_std": -0.5, "total_steps": 150_000},
        # CleanRL's MuJoCo settings (normalised observations and rewards); 100k steps (a
        # trial's training return averaged 840 after 32k)
        "InvertedPendulum-v5": {"n_envs": 1, "n_steps": 2048, "minibatch_size": 64,
                                "n_epochs": 10, "gamma": 0.99, "gae_lambda": 0.95, "lr": 3e-4,
                                "normalize_obs": True, "normalize_reward": True,
                                "total_steps": 100_000},
    }

    def make_optimizer(self, modules):
        return Adam(modules, lr=self.config.lr, eps=self.config.adam_eps)

    def clip_range(self, steps_done):
        cfg = self.config
        return linear_decay(cfg.clip_eps, steps_done, cfg.total_steps) if cfg.anneal_clip \
            else cfg.clip_eps

    def loss(self, batch, clip_eps=None):
        r"""Minus J^CLIP' (eq. 9) on a minibatch (a RolloutBatch), and its diagnostics.

        The advantages are normalised within the minibatch first (detail 7,
        :func:`~minipg.estimators.ppo.normalize_advantages`, when
        ``normalize_advantages``), then
        :func:`~minipg.estimators.ppo.ppo_objective` gives

            J^CLIP' = E[min(r A, clip(r, 1 - eps, 1 + eps) A) - c1 (V - V_target)^2 + c2 H]

        with r = pi(a|s) / pi_old(a|s), eps = ``clip_eps`` (default: the
        setting, not annealed) and, when ``value_clip_eps`` > 0, the clipped
        value error.  Returns (-J^CLIP', a Tensor to descend; diagnostics,
        with ``approx_kl`` the k3 estimate of KL(pi_old || pi) before any step).
        """
        cfg = self.config
        clip_eps = cfg.clip_eps if clip_eps is None else clip_eps
        value_clip = cfg.value_clip_eps if cfg.value_clip_eps > 0 else None
        advantages = batch.advantages
        if cfg.normalize_advantages:
            advantages = normalize_advantages(advantages)                    # detail 7
        dist, values = self.distribution_and_values(batch.obs)
        log_prob = dist.log_prob(batch.actions, validate=False)             # sampled by us
        objective, diagnostics = ppo_objective(
            log_prob, batch.log_prob_old, advantages, values, batch.returns,
            self.entropy_of(dist), cfg.value_coef, cfg.entropy_coef, clip_eps,
            values_old=batch.values_old if value_clip else None,
            clip_eps_value=value_clip)                                       # J^CLIP', eq. 9
        return -objective, diagnostics                                       # descend -J

    def learn(self, collector):
        cfg = self.config
        lr = self.set_learning_rate(collector.steps)
        clip_eps = self.clip_range(collector.steps)
        batch = self.collect_batch(collector, "gae")                # GAE; V_target = A + V
        n, size = len(batch), cfg.minibatch_size
        # means over the minibatch steps taken (fixed keys: progress.csv has fixed columns)
        sums = dict.fromkeys(("policy_objective", "value_loss", "entropy", "approx_kl",
                              "clip_fraction", "grad_norm"), 0.0)
        n_minibatches, epochs_done, stopped = 0, 0, False
        for epoch in range(cfg.n_epochs):
            order = self.rng.permutation(n)                          # detail 6: shuffle
            for start in range(0, n, size):
                loss, diag = self.loss(batch[order[start:start + size]], clip_eps)
                kl_last = diag["approx_kl"]                          # k3, before this step
                if cfg.target_kl > 0 and kl_last > cfg.target_kl:
                    stopped = True                                   # do not take this step
                    break
                diag["grad_norm"] = self.descend(loss)               # ascend J^CLIP'
                n_minibatches += 1
                for key in sums:
                    sums[key] += diag[key]
            if stopped:
                break
            epochs_done += 1
        self.set_learning_rate(collector.steps)        # the schedule ends at 0 with the budget
        metrics = {key: value / max(n_minibatches, 1) for key, value in sums.items()}
        metrics.update(kl_last=kl_last, early_stopped=float(stopped), epochs=float(epochs_done),
                       minibatch_steps=float(n_minibatches), lr=lr, clip_eps=clip_eps,
                       explained_variance=explained_variance(batch.values_old, batch.returns))
        return metrics
