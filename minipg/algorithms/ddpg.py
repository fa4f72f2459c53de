r"""DDPG: deep deterministic policy gradient, the document's Algorithm 1.

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "DPG" and
"DDPG"; T. P. Lillicrap, J. J. Hunt, A. Pritzel, N. Heess, T. Erez, Y. Tassa,
D. Silver, D. Wierstra, "Continuous control with deep reinforcement
learning", ICLR 2016 (arXiv:1509.02971), Algorithm 1; D. Silver et al.,
"Deterministic Policy Gradient Algorithms", ICML 2014 (the DPG theorem).

Every environment step (Algorithm 1, inner loop; the shared loop of
:class:`~minipg.algorithms.offpolicy_common.OffPolicyAlgorithm`):

1. a_t = mu(s_t | theta^mu) + N_t, Gaussian or Ornstein-Uhlenbeck noise
   (``noise``), clipped to the box (uniform random actions during the
   warm-up); store (s_t, a_t, r_t, s_{t+1}, terminated_t) in R;
2. sample a minibatch of N transitions;
3. y_i = r_i + gamma (1 - d_i) Q'(s_{i+1}, mu'(s_{i+1} | theta^mu') | theta^Q')
   -- the TARGET actor and the TARGET critic;
4. critic: minimise L = (1/N) sum_i (y_i - Q(s_i, a_i | theta^Q))^2;
5. actor: ascend (1/N) sum_i grad_a Q(s, a | theta^Q)|_{s_i, a = mu(s_i)}
   grad_theta^mu mu(s | theta^mu)|_{s_i}: the gradient of
   J = (1/N) sum_i Q(s_i, mu(s_i)), taken by reverse-mode autodiff through
   the critic to the action and on into the actor (the critic's parameters
   are held constant, :func:`frozen`); the critic used is the one just
   updated in step 4, as in the paper's sequence;
6. soft updates theta' <- tau theta + (1 - tau) theta' of both targets.

d_i is termination only: a time-limit truncation bootstraps (the
document's y_i has no (1 - d_i); that is the standard treatment of terminal
states).  Actions: the actor's tanh output in [-1, 1] is mapped onto the
task's box [low, high].

Batch normalization (the paper's option for low-dimensional inputs) is not
offered: minipg's networks have no layers with running statistics, batch
statistics would make Q(s, a) and mu(s) depend on the other samples of the
minibatch (the DPG check on the LQR test bed needs a per-state function),
and Fujimoto et al. 2018 (their "our DDPG") found DDPG learns as well or
better without it on the MuJoCo tasks.  Observations of Pendulum-v1 are
already of order 1.

Presets: stable-baselines3 zoo's Pendulum-v1 (gamma 0.98, 10,000 warm-up
steps, Gaussian noise 0.1, learning rate 1e-3, layers 400-300), in float32
(single-precision products are about twice as fast).  The paper's
values are ``--set actor_lr=1e-4 critic_weight_decay=1e-2 tau=1e-3
batch_size=64 noise=ou noise_std=0.2``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..autodiff import no_grad
from ..estimators import ddpg as ddpg_estimators
from . import ALGORITHMS
from .base import setting
from .offpolicy_common import (ZOO_PENDULUM_DETERMINISTIC, DeterministicPolicyConfig,
                               DeterministicPolicyMixin, OffPolicyAlgorithm, frozen)

__all__ = ["DDPGConfig", "DDPG"]


@dataclass
class DDPGConfig(DeterministicPolicyConfig):
    """Settings of DDPG (defaults: stable-baselines3's; see the presets)."""
    critic_weight_decay: float = setting(0.0, "L2 weight decay of the critic (paper: 1e-2)",
                                         low=0.0)


@ALGORITHMS.register("ddpg")
class DDPG(DeterministicPolicyMixin, OffPolicyAlgorithm):
    """Deep deterministic policy gradient; see the module docstring."""

    name = "ddpg"
    Config = DDPGConfig
    description = "deep deterministic policy gradient (Lillicrap et al. 2015), Algorithm 1"
    presets = {"Pendulum-v1": dict(ZOO_PENDULUM_DETERMINISTIC)}
    metric_names = ("critic_loss", "actor_objective", "q_mean")

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        self._build(n_critics=1)

    # --- the losses, as the update uses them --------------------------------------
    def critic_loss(self, batch):
        """L(theta^Q) on a minibatch, and Q(s_i, a_i) (a Tensor)."""
        with no_grad():
            mu_next = self.actor_target(batch.next_obs)                  # mu'(s_{i+1})
            q_next = self.critic_target.first(batch.next_obs, mu_next).data  # Q'(s', mu'(s'))
        y = ddpg_estimators.critic_target(batch.rewards, batch.terminated, q_next,
                                          self.config.gamma)              # y_i
        q = self.critic.first(batch.obs, batch.actions)                  # Q(s_i, a_i)
        return ddpg_estimators.critic_loss(q, y), q

    def actor_loss(self, obs):
        """-J = -(1/N) sum_i Q(s_i, mu(s_i)); its gradient in theta^mu is minus the sampled DPG."""
        with frozen(self.critic):
            q_of_mu = self.critic.first(obs, self.actor(obs))           # Q(s_i, mu(s_i))
        return -ddpg_estimators.actor_objective(q_of_mu)

    def update(self, batch):
        critic_loss, q = self.critic_loss(batch)
        self.step_on(self.critic_opt, critic_loss)                       # step 4
        actor_loss = self.actor_loss(batch.obs)
        self.step_on(self.actor_opt, actor_loss)                         # step 5
        self.soft_update(self.critic_target, self.critic)                # step 6
        self.soft_update(self.actor_target, self.actor)
        return {"critic_loss": float(critic_loss.data), "actor_objective": -float(actor_loss.data),
                "q_mean": float(q.data.mean())}

