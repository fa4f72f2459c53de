r"""TD3: twin delayed deep deterministic policy gradient.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "TD3";
S. Fujimoto, H. van Hoof, D. Meger, "Addressing Function Approximation Error
in Actor-Critic Methods", ICML 2018 (arXiv:1802.09477), Algorithm 1,
sections 4.2 (clipped double Q-learning), 5.2 (delayed policy updates) and
5.3 (target policy smoothing).

Every environment step (Algorithm 1; the shared loop of
:class:`~minipg.algorithms.offpolicy_common.OffPolicyAlgorithm`):

1. a = clip(mu_phi(s) + eps, low, high), eps ~ N(0, sigma) in units of the
   box's half-width (uniform random actions during the warm-up); store
   (s, a, r, s', terminated);
2. sample a minibatch of N transitions;
3. target policy smoothing: a~ = clip(mu_phi'(s') + clip(eps~, -c, c), low,
   high), eps~ ~ N(0, sigma~^2) drawn PER SAMPLE and per action dimension,
   with sigma~ = ``target_policy_noise`` and c = ``target_noise_clip`` both
   times the box's half-width (the authors' code: ``policy_noise *
   max_action``); the target actor at the NEXT state s';
4. clipped double Q: y = r + gamma (1 - d) min_{i=1,2} Q_theta'_i(s', a~);
5. both critics: minimise (1/N) sum (y - Q_theta_i(s, a))^2;
6. every ``policy_delay``-th critic step (d in the paper): the actor by the
   DPG through critic 1 ONLY, grad_phi J = (1/N) sum grad_a Q_theta1(s, a)
   |_{a = mu_phi(s)} grad_phi mu_phi(s) (a batch mean), then the soft
   updates of all three targets.

The two critics live in one :class:`CriticEnsemble`: each layer is one
batched matmul for both, one Adam step and one polyak kernel.  d (in y) is
termination only: a time-limit truncation bootstraps.

Presets: stable-baselines3 zoo's Pendulum-v1 (gamma 0.98, 10,000 warm-up
steps, Gaussian noise 0.1, learning rate 1e-3, layers 400-300); the rest are
SB3's and the paper's defaults (tau 0.005, d = 2, sigma~ = 0.2, c = 0.5);
float32 (single-precision products are about twice as fast;
verification/results/offpolicy_learning.md reports the preset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autodiff import no_grad
from ..estimators import td3 as td3_estimators
from . import ALGORITHMS
from .base import setting
from .offpolicy_common import (ZOO_MUJOCO_DETERMINISTIC, ZOO_PENDULUM_DETERMINISTIC,
                               DeterministicPolicyConfig, DeterministicPolicyMixin,
                               OffPolicyAlgorithm, frozen)

__all__ = ["TD3Config", "TD3"]


@dataclass
class TD3Config(DeterministicPolicyConfig):
    """Settings of TD3 (defaults: the paper's and stable-baselines3's)."""
    policy_delay: int = setting(2, "d: critic steps per actor and target update", low=1)
    target_policy_noise: float = setting(0.2, "sigma~ of target policy smoothing (x half-width)",
                                         low=0.0)
    target_noise_clip: float = setting(0.5, "c, the smoothing noise clip (x half-width)",
                                       low=0.0)


@ALGORITHMS.register("td3")
class TD3(DeterministicPolicyMixin, OffPolicyAlgorithm):
    """Twin delayed DDPG; see the module docstring."""

    name = "td3"
    Config = TD3Config
    description = "twin delayed DDPG: clipped double Q, delayed updates, smoothing (Fujimoto 2018)"
    presets = {"Pendulum-v1": dict(ZOO_PENDULUM_DETERMINISTIC),
               # the zoo's MuJoCo settings
               "Hopper-v5": dict(ZOO_MUJOCO_DETERMINISTIC),
               "HalfCheetah-v5": dict(ZOO_MUJOCO_DETERMINISTIC)}
    metric_names = ("critic_loss", "actor_objective", "q1_mean", "q2_mean")

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        self._build(n_critics=2)                    # twin critics, one CriticEnsemble
        self._actor_objective = 0.0

    # --- the losses, as the update uses them --------------------------------------
    def smoothing_noise(self, shape):
        """eps~ ~ N(0, sigma~^2) per sample and dimension, in action units."""
        return self.config.target_policy_noise * self._half_width() * self.normal(shape)

    def critic_loss(self, batch, smoothing_noise):
        """Both critics' losses on a minibatch (one sum), and Q_1,2(s, a) (a (2, N) Tensor)."""
        cfg = self.config
        if self.low is None:        # an unbounded box: the outer clip does nothing
            low, high = -np.finfo(self.dtype).max, np.finfo(self.dtype).max
        else:
            low, high = self.low, self.high
        with no_grad():
            mu_next = self.actor_target(batch.next_obs).data                 # mu_phi'(s')
            a_tilde = td3_estimators.smoothed_target_actions(
                mu_next, smoothing_noise, cfg.target_noise_clip * self._half_width(), low, high)
            q_next = self.critic_target(batch.next_obs, a_tilde).data        # Q_theta'_i(s', a~)
        y = td3_estimators.clipped_double_q_target(batch.rewards, batch.terminated, q_next[0],
                                                   q_next[1], cfg.gamma)
        q = self.critic(batch.obs, batch.actions)                            # (2, N)
        return td3_estimators.twin_critic_loss(q[0], q[1], y), q

    def actor_loss(self, obs):
        """-J(phi) = -(1/N) sum Q_theta1(s, mu_phi(s)): critic 1 only, a batch mean."""
        with frozen(self.critic):
            q1_of_mu = self.critic.first(obs, self.actor(obs))
        return -td3_estimators.actor_objective(q1_of_mu)

    def update(self, batch):
        critic_loss, q = self.critic_loss(batch, self.smoothing_noise(batch.actions.shape))
        self.step_on(self.critic_opt, critic_loss)
        if (self.updates + 1) % self.config.policy_delay == 0:              # t mod d
            actor_loss = self.actor_loss(batch.obs)
            self.step_on(self.actor_opt, actor_loss)
            self._actor_objective = -float(actor_loss.data)
            self.soft_update(self.critic_target, self.critic)
            self.soft_update(self.actor_target, self.actor)
        q1_mean, q2_mean = q.data.mean(axis=1)
        return {"critic_loss": float(critic_loss.data), "actor_objective": self._actor_objective,
                "q1_mean": float(q1_mean), "q2_mean": float(q2_mean)}

    def extra_state(self):
        state = super().extra_state()
        state["actor_objective"] = np.asarray(self._actor_objective)
        return state

    def load_extra_state(self, arrays):
        super().load_extra_state(arrays)
        self._actor_objective = float(arrays["actor_objective"])

