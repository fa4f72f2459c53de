r"""SAC (2018, the first version): policy, soft Q and soft V networks with a target V.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "SAC" (J_V,
J_Q, J_pi and Algorithm 1, Fig. 6); T. Haarnoja, A. Zhou, P. Abbeel,
S. Levine, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep Reinforcement
Learning with a Stochastic Actor", ICML 2018 (arXiv:1801.01290), section
4.2, eqs. 5-13, Algorithm 1 and Appendix C (the tanh-squashed policy).
The version with a learned temperature is :mod:`minipg.algorithms.sac`.

Every environment step (the shared loop of
:class:`~minipg.algorithms.offpolicy_common.OffPolicyAlgorithm`): a_t ~
pi_theta(.|s_t) (uniform random during the warm-up), store the transition;
then each gradient step on a minibatch (s, a, r, s', d), with a~ = f_theta
(eps; s) FRESH reparameterised actions at the minibatch states:

* J_V(psi) = (1/N) sum 1/2 (V_psi(s) - [min_i Q_w_i(s, a~) - alpha log pi(a~|s)])^2
  (eq. 5; the bracket held constant);
* J_Q(w_i) = (1/N) sum 1/2 (Q_w_i(s, a) - Q^)^2, Q^ = r + gamma (1 - d)
  V_psibar(s') from the TARGET value network (eqs. 7, 8), for each critic;
* J_pi(theta) = (1/N) sum [alpha log pi(a~|s) - min_i Q_w_i(s, a~)] (eq. 12),
  differentiated through a~ (the reparameterisation, eq. 13) with the
  critics' parameters held constant;
* psi <- psi - lambda_V grad J_V, w <- w - lambda_Q grad J_Q,
  theta <- theta - lambda_pi grad J_pi, psibar <- tau psi + (1 - tau) psibar
  (Algorithm 1, lines 9-12).

The three gradients are computed at the same parameters and then the three
optimizers step, as the authors' code does (it runs the three training ops
in one session call); one critic evaluation at (s, a~) serves both the value
target and the policy loss.  Two soft Q networks with their minimum in J_V
and J_pi, as the paper's experiments (section 4.2: "two Q-functions ...
mitigate positive bias"); ``n_critics=1`` is the document's single Q_w.

alpha is fixed (``alpha``): the paper sets alpha = 1 and scales the rewards
instead (reward scale 1/alpha gives the same optimal policy, with Q and V
scaled by 1/alpha); the document writes alpha in V.  The policy is the
TanhGaussian of :mod:`minipg.algorithms.sac`, its log-density that of the
action in [low, high] or, with ``log_prob_of=normalized_action``, of the
normalised action in [-1, 1] (higher by sum log((high - low)/2); with a
fixed alpha this shifts V and Q by alpha times that constant and leaves
every policy gradient unchanged; see :mod:`minipg.algorithms.sac`).  d is
termination only.

Presets: Pendulum-v1 with the settings of :mod:`minipg.algorithms.sac`
(learning rate 1e-3, batch 256, tau 0.005, layers 256-256, float32) and
alpha = 0.1 (a fixed value of the order the learned temperature reaches on
this task).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..autodiff import no_grad, ops
from ..estimators import sac as sac_estimators
from ..nn import MLP
from ..optim import Adam
from . import ALGORITHMS
from .base import setting
from .offpolicy_common import (CriticEnsemble, OffPolicyAlgorithm, OffPolicyConfig,
                               TanhGaussianPolicyMixin, frozen, log_prob_of_setting)

__all__ = ["SACv1Config", "SACv1"]


@dataclass
class SACv1Config(OffPolicyConfig):
    """Settings of SAC 2018 (defaults: the paper's Table 1, with stable-baselines3's warm-up)."""
    actor_lr: float = setting(3e-4, "lambda_pi, Adam learning rate of the policy", low=0.0,
                              low_open=True)
    critic_lr: float = setting(3e-4, "lambda_Q, Adam learning rate of the soft Q networks",
                               low=0.0, low_open=True)
    value_lr: float = setting(3e-4, "lambda_V, Adam learning rate of the soft V network",
                              low=0.0, low_open=True)
    alpha: float = setting(0.2, "temperature alpha (fixed; 1/reward scale)", low=0.0)
    n_critics: int = setting(2, "soft Q networks (their minimum is used)", low=1, high=2)
    log_prob_of: str = log_prob_of_setting()


@ALGORITHMS.register("sac_v1")
class SACv1(TanhGaussianPolicyMixin, OffPolicyAlgorithm):
    """Soft actor-critic with a soft V network (2018); see the module docstring."""

    name = "sac_v1"
    Config = SACv1Config
    description = "soft actor-critic with V network and fixed temperature (Haarnoja et al. 2018)"
    presets = {"Pendulum-v1": {"actor_lr": 1e-3, "critic_lr": 1e-3, "value_lr": 1e-3,
                               "alpha": 0.1, "dtype": "float32"}}
    metric_names = ("value_loss", "q_loss", "policy_loss", "entropy", "v_mean")

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        cfg = config
        self._build_actor()
        self.critic = CriticEnsemble(self.obs_dim, self.action_dim, cfg.hidden, cfg.activation,
                                     cfg.n_critics, self.rng, self.dtype)
        self.value = MLP([self.obs_dim, *cfg.hidden, 1], activation=cfg.activation,
                         init="fan_in_uniform", rng=self.rng, dtype=self.dtype)
        self.value_target = self.value.copy()                              # psibar <- psi
        self.critic_opt = Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.value_opt = Adam(self.value.parameters(), lr=cfg.value_lr)

    def modules(self):
        return {"actor": self.actor, "critic": self.critic, "value": self.value,
                "value_target": self.value_target}

    def optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt, "value": self.value_opt}

    # --- the losses, as the update uses them --------------------------------------
    def losses(self, batch, eps):
        """(J_V, J_Q, J_pi, log pi(a~|s), V_psi(s)) on a minibatch, a~ = f_theta(eps; s)."""
        cfg = self.config
        with no_grad():
            v_next = self.value_target(batch.next_obs).data.reshape(-1)      # V_psibar(s')
        q_hat = sac_estimators.soft_q_target(batch.rewards, batch.terminated, v_next,
                                             cfg.gamma)                      # eq. 8
        q = self.critic(batch.obs, batch.actions)                            # Q_w_i(s, a)
        q_loss = sac_estimators.soft_q_loss(q[0], q_hat)                     # eq. 7
        for i in range(1, cfg.n_critics):
            q_loss = q_loss + sac_estimators.soft_q_loss(q[i], q_hat)

        actions, log_prob = self.sample_with_log_prob(batch.obs, eps)       # a~ = f_theta(eps; s)
        with frozen(self.critic):
            q_new = self.critic(batch.obs, actions)                          # Q_w_i(s, a~)
        q_new_min = q_new[0] if cfg.n_critics == 1 else ops.minimum(q_new[0], q_new[1])
        v_target = sac_estimators.v_target(q_new_min.data, log_prob.data, cfg.alpha)
        v = self.value(batch.obs).reshape(-1)                                # V_psi(s)
        value_loss = sac_estimators.value_loss(v, v_target)                  # eq. 5
        policy_loss = sac_estimators.policy_loss(log_prob, q_new_min, cfg.alpha)   # eq. 12
        return value_loss, q_loss, policy_loss, log_prob, v

    def update(self, batch):
        value_loss, q_loss, policy_loss, log_prob, v = self.losses(
            batch, self.normal(batch.actions.shape))
        pairs = ((self.value_opt, value_loss), (self.critic_opt, q_loss),
                 (self.actor_opt, policy_loss))
        for opt, loss in pairs:          # every gradient at the same parameters ...
            opt.zero_grad()
            loss.backward()
        for opt, _ in pairs:             # ... then lines 9-11 of Algorithm 1
            opt.step()
        self.soft_update(self.value_target, self.value)                      # line 12
        return {"value_loss": float(value_loss.data), "q_loss": float(q_loss.data),
                "policy_loss": float(policy_loss.data), "entropy": -float(log_prob.data.mean()),
                "v_mean": float(v.data.mean())}

