r"""SAC with automatically adjusted temperature (twin Q, no V network, alpha learned).

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "SAC with
Automatically Adjusted Temperature" (its Algorithm 1, Fig. 7); T. Haarnoja,
A. Zhou, K. Hartikainen, G. Tucker, S. Ha, J. Tan, V. Kumar, H. Zhu,
A. Gupta, P. Abbeel, S. Levine, "Soft Actor-Critic Algorithms and
Applications", arXiv:1812.05905 (2018b), Algorithm 1, eqs. 5-7 and 18.
The 2018 version with a V network is :mod:`minipg.algorithms.sac_v1`.

Every environment step (the shared loop of
:class:`~minipg.algorithms.offpolicy_common.OffPolicyAlgorithm`): a_t ~
pi_phi(.|s_t) (uniform random during the warm-up), store the transition;
then each gradient step, on a minibatch (s, a, r, s', d), in the order of
Algorithm 1, with alpha = exp(log alpha) read once at its start:

1. soft target (eqs. 3, 5 with clipped double Q): a' ~ pi_phi(.|s') fresh,
   y = r + gamma (1 - d) (min_i Q_theta'_i(s', a') - alpha log pi(a'|s'));
2. both critics: theta_i <- theta_i - lambda_Q grad J_Q(theta_i),
   J_Q = (1/N) sum 1/2 (Q_theta_i(s, a) - y)^2;
3. policy (eq. 7): a~ = f_phi(eps; s) reparameterised, phi <- phi - lambda_pi
   grad J_pi, J_pi = (1/N) sum [alpha log pi(a~|s) - min_i Q_theta_i(s, a~)]
   (the critics just updated, their parameters held constant);
4. temperature (eq. 18): log alpha <- log alpha - lambda grad J(alpha),
   J(alpha) = (1/N) sum [-alpha log pi(a~|s) - alpha H_bar], log pi(a~|s)
   DETACHED (the samples of step 3), H_bar = ``target_entropy`` (default
   -dim(A));
5. theta'_i <- tau theta_i + (1 - tau) theta'_i.

The temperature loss multiplies alpha, as eq. 18 and the document write it
(also CleanRL and softlearning's TF2 code), not log alpha as
stable-baselines3, rlkit and the original TF1 softlearning code do:
dJ/dlog alpha = alpha (H_hat - H_bar) here, (H_hat - H_bar) there -- same
sign and fixed point (see :func:`minipg.estimators.sac.temperature_loss`,
whose gradient the tests check).  With Adam the two differ little: Adam
divides out the gradient's scale.

The policy is a TanhGaussian: u = mean + std * eps, a = low + (tanh u + 1)
(high - low)/2, log pi with the stable correction 2 (log 2 - u -
softplus(-2u)) and minus log((high - low)/2), log_std clamped to [-20, 2]
(:class:`minipg.distributions.TanhGaussian`).  The twin critics are one
:class:`CriticEnsemble` (one batched matmul per layer).  ``learn_alpha=False``
keeps alpha fixed at ``init_alpha``.

Which density log pi is (``log_prob_of``): by default (``"action"``) the
density of the action a in [low, high] that the environment receives, as
above; ``"normalized_action"`` takes the density of the normalised action
y = tanh u in [-1, 1], as stable-baselines3 does (it rescales every box to
[-1, 1]).  They differ by the constant sum_i log((high_i - low_i)/2):
log p_Y(y) = log p_A(a) + sum_i log s_i (on Pendulum's [-2, 2], minipg's
log pi is log 2 lower).  The policy's gradient is the same, but the soft
targets shift by alpha sum log s and the entropy compared with H_bar does
too, so the automatic H_bar = -dim(A) asks for a different temperature: to
reproduce stable-baselines3's alpha, set ``log_prob_of=normalized_action``
(:meth:`~minipg.algorithms.offpolicy_common.TanhGaussianPolicyMixin.sample_with_log_prob`).

Presets: stable-baselines3 zoo's Pendulum-v1 (learning rate 1e-3, the rest
SB3's defaults: batch 256, tau 0.005, 100 warm-up steps, layers 256-256,
alpha learned from 1.0), in float32: single-precision matrix products are
about twice as fast (verification/results/offpolicy_learning.md reports the
preset as it is).  One
difference from SB3: minipg's replay buffer samples a minibatch only once it
holds ``batch_size`` transitions (SB3 samples with replacement from fewer),
so the first update comes at step 256 rather than 101; and the presets keep
minipg's ``log_prob_of="action"`` (SB3's log-density is that of the
normalised action, log 2 higher per dimension on Pendulum-v1, so its
automatic temperature settles lower; ``--set log_prob_of=normalized_action``
follows SB3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autodiff import no_grad, ops
from ..estimators import sac as sac_estimators
from ..optim import Adam
from . import ALGORITHMS
from .base import ConfigError, setting
from .offpolicy_common import (CriticEnsemble, LogTemperature, OffPolicyAlgorithm,
                               OffPolicyConfig, TanhGaussianPolicyMixin, frozen,
                               log_prob_of_setting)

__all__ = ["SACConfig", "SAC", "parse_target_entropy"]


def parse_target_entropy(value, action_dim):
    """H_bar: -dim(A) for 'auto', else the number ``value`` names."""
    if value == "auto":
        return sac_estimators.default_target_entropy(action_dim)
    return float(value)


@dataclass
class SACConfig(OffPolicyConfig):
    """Settings of SAC with automatic temperature (defaults: stable-baselines3's)."""
    actor_lr: float = setting(3e-4, "lambda_pi, Adam learning rate of the policy", low=0.0,
                              low_open=True)
    critic_lr: float = setting(3e-4, "lambda_Q, Adam learning rate of the critics", low=0.0,
                               low_open=True)
    alpha_lr: float = setting(3e-4, "lambda, Adam learning rate of log alpha", low=0.0,
                              low_open=True)
    init_alpha: float = setting(1.0, "initial temperature alpha", low=0.0, low_open=True)
    learn_alpha: bool = setting(True, "learn alpha by J(alpha); False keeps init_alpha")
    target_entropy: str = setting("auto", "H_bar: 'auto' = -dim(A), or a number")
    log_prob_of: str = log_prob_of_setting()

    def check(self):
        super().check()
        if self.target_entropy != "auto":
            try:
                value = float(self.target_entropy)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value):
                raise ConfigError(f"setting 'target_entropy': {self.target_entropy!r}; accepted: "
                                  f"'auto' (-dim(A)) or a finite number")


@ALGORITHMS.register("sac")
class SAC(TanhGaussianPolicyMixin, OffPolicyAlgorithm):
    """Soft actor-critic with learned temperature; see the module docstring."""

    name = "sac"
    Config = SACConfig
    description = "soft actor-critic, twin Q, learned temperature (Haarnoja et al. 2018b)"
    presets = {"Pendulum-v1": {"actor_lr": 1e-3, "critic_lr": 1e-3, "alpha_lr": 1e-3,
                               "dtype": "float32"},
               # the zoo's, without its state-dependent exploration (gSDE), which minipg
               # lacks: a fixed temperature 0.1 instead of its log_std_init -3.67
               "MountainCarContinuous-v0": {"total_steps": 50_000, "actor_lr": 3e-4,
                                            "critic_lr": 3e-4, "buffer_size": 50_000,
                                            "batch_size": 512, "init_alpha": 0.1,
                                            "learn_alpha": False, "train_freq": 32,
                                            "gradient_steps": 32, "gamma": 0.9999,
                                            "tau": 0.01, "learning_starts": 0,
                                            "hidden": (64, 64), "dtype": "float32"},
               # the zoo's MuJoCo settings (SB3 defaults, 10,000 warm-up steps)
               "Hopper-v5": {"total_steps": 1_000_000, "learning_starts": 10_000,
                             "dtype": "float32"},
               "HalfCheetah-v5": {"total_steps": 1_000_000, "learning_starts": 10_000,
                                  "dtype": "float32"}}
    metric_names = ("critic_loss", "actor_loss", "alpha", "alpha_loss", "entropy", "q_mean")

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        cfg = config
        self._build_actor()
        self.critic = CriticEnsemble(self.obs_dim, self.action_dim, cfg.hidden, cfg.activation,
                                     2, self.rng, self.dtype)
        self.critic_target = self.critic.copy()
        self.temperature = LogTemperature(cfg.init_alpha, self.dtype)
        self.target_entropy = parse_target_entropy(cfg.target_entropy, self.action_dim)
        self.critic_opt = Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.alpha_opt = Adam(self.temperature.parameters(), lr=cfg.alpha_lr)

    def modules(self):
        return {"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target,
                "temperature": self.temperature}

    def optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}

    # --- the losses, as the update uses them --------------------------------------
    def critic_loss(self, batch, alpha, eps_next):
        """J_Q summed over both critics, and Q_1,2(s, a) (a (2, N) Tensor)."""
        with no_grad():
            next_actions, log_prob_next = self.sample_with_log_prob(batch.next_obs, eps_next)
            q_next = self.critic_target(batch.next_obs, next_actions).data   # Q_theta'_i(s', a')
        y = sac_estimators.soft_q_target_twin(batch.rewards, batch.terminated, q_next[0],
                                              q_next[1], log_prob_next.data, alpha,
                                              self.config.gamma)
        q = self.critic(batch.obs, batch.actions)
        loss = sac_estimators.soft_q_loss(q[0], y) + sac_estimators.soft_q_loss(q[1], y)
        return loss, q

    def actor_loss(self, obs, alpha, eps):
        """J_pi (eq. 7) at reparameterised actions f_phi(eps; s), and their log pi (a Tensor)."""
        actions, log_prob = self.sample_with_log_prob(obs, eps)             # a~ = f_phi(eps; s)
        with frozen(self.critic):
            q_new = self.critic(obs, actions)
        q_min = ops.minimum(q_new[0], q_new[1])                             # min_i Q_theta_i
        return sac_estimators.policy_loss(log_prob, q_min, alpha), log_prob

    def temperature_loss(self, log_prob):
        """J(alpha) (eq. 18) with log pi held constant (a plain array)."""
        return sac_estimators.temperature_loss(self.temperature.log_alpha, log_prob,
                                               self.target_entropy)

    def update(self, batch):
        alpha = self.temperature.alpha
        shape = batch.actions.shape
        critic_loss, q = self.critic_loss(batch, alpha, self.normal(shape))
        self.step_on(self.critic_opt, critic_loss)                           # step 2
        actor_loss, log_prob = self.actor_loss(batch.obs, alpha, self.normal(shape))
        self.step_on(self.actor_opt, actor_loss)                             # step 3
        alpha_loss = self.temperature_loss(log_prob.data)
        if self.config.learn_alpha:
            self.step_on(self.alpha_opt, alpha_loss)                         # step 4
        self.soft_update(self.critic_target, self.critic)                    # step 5
        return {"critic_loss": float(critic_loss.data), "actor_loss": float(actor_loss.data),
                "alpha": alpha, "alpha_loss": float(alpha_loss.data),
                "entropy": -float(log_prob.data.mean()), "q_mean": float(q.data.mean())}

