r"""A2C: synchronous advantage actor-critic over N parallel environments.

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "A3C" and
"A2C".  Paper: V. Mnih, A. P. Badia, M. Mirza, A. Graves, T. Lillicrap,
T. Harley, D. Silver, K. Kavukcuoglu, "Asynchronous Methods for Deep
Reinforcement Learning", ICML 2016 (Algorithm S3, section 4); A2C is its
synchronous, batched form (OpenAI baselines' ``a2c``): every actor steps in
lock-step, and one update uses the whole (T, N) batch.

Each iteration (Weng's A3C outline, steps 3-6, for N actors at once):

1. run the policy for T = ``n_steps`` steps in each of the N environments
   (``vectorization``: 'sync' in this process, 'async' in subprocesses),
   recording s_t, a_t, r_t, V(s_t) and both episode-end flags;
2. targets (held constant), with V(s'_t) of the TRUE next state so that a
   time-limit truncation bootstraps from V(s_T) and a termination does not:

   * ``advantage="nstep"`` (the paper's): R_t = sum_{k<m} gamma^k r_{t+k}
     + gamma^m V(s'_{t+m-1}), summed forward to the end of the rollout or
     of the episode (A3C's "for i in t-1..t_start: R <- r_i + gamma R"),
     and A_t = R_t - V(s_t);
   * ``advantage="gae"``: A_t = GAE(gamma, lambda) (Schulman et al. 2016,
     eq. 16) and R_t = A_t + V(s_t); lambda = 1 gives the n-step case;

3. one gradient step on the A2C loss (:func:`minipg.estimators.a2c.a2c_loss`)

   .. math::

       L = -\mathbb{E}[A_t \log\pi_\theta(a_t|s_t)]
           + c_v \mathbb{E}[(V_w(s_t) - R_t)^2] - c_H \mathbb{E}[H(\pi_\theta(\cdot|s_t))]

   with RMSprop (the paper's, torch semantics) or Adam, after scaling the
   gradient to global norm <= ``max_grad_norm``.

Networks: a policy MLP (Categorical logits, or Gaussian means with a
state-independent log-std) and a value MLP, or with ``shared_trunk`` one
trunk with a policy head and a value head (Mnih et al.'s architecture, where
``value_coef`` then weighs the two losses on the shared features).
Orthogonal initialisation (gain sqrt 2, policy output 0.01, value output 1).
Learning-rate linear decay to 0 (``anneal_lr``; baselines' A2C default).
Observation normalisation (running mean/std held by the agent, so
evaluation uses the trained statistics) and reward scaling (gymnasium's
``NormalizeReward``) are options.

The machinery A2C shares with PPO (networks, acting, observation
normalisation, rollouts, targets, schedules) is
:class:`~minipg.algorithms.onpolicy_common.JointLossAlgorithm`; A2C adds its
loss (:meth:`A2C.loss`) and its optimizers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..estimators.a2c import a2c_loss
from ..optim import Adam, RMSprop
from . import ALGORITHMS
from .base import ConfigError, setting
from .onpolicy_common import JointLossAlgorithm, JointLossConfig, explained_variance

__all__ = ["A2CConfig", "A2C"]


# ----------------------------------------------------------------------------- A2C
@dataclass
class A2CConfig(JointLossConfig):
    """Settings of A2C (defaults: baselines' A2C; presets per task below)."""
    total_steps: int = setting(500_000, "environment steps to train for", low=1)
    n_envs: int = setting(16, "parallel environments N (synchronous actors)", low=1, high=1024)
    n_steps: int = setting(5, "t_max: steps per environment between updates", low=1)
    advantage: str = setting("nstep", "'nstep' (A3C's n-step returns) or 'gae' (GAE(lambda))",
                             choices=("nstep", "gae"))
    optimizer: str = setting("rmsprop", "'rmsprop' (the paper's) or 'adam'",
                             choices=("rmsprop", "adam"))
    lr: float = setting(7e-4, "learning rate (initial value when annealed)", low=0.0,
                        low_open=True)
    rmsprop_alpha: float = setting(0.99, "RMSprop decay of the squared-gradient average",
                                   low=0.0, high=1.0)
    optimizer_eps: float = setting(1e-5, "epsilon of RMSprop / Adam", low=0.0)
    entropy_coef: float = setting(0.01, "c_H: weight of the entropy bonus (Mnih et al.: 0.01)",
                                  low=0.0)

    def check(self):
        if self.advantage == "nstep" and self.gae_lambda != 1.0:
            raise ConfigError(f"setting 'gae_lambda': {self.gae_lambda} has no effect with "
                              "advantage='nstep'; set advantage=gae to use GAE(lambda)")


@ALGORITHMS.register("a2c")
class A2C(JointLossAlgorithm):
    """Synchronous advantage actor-critic; see the module docstring."""

    name = "a2c"
    Config = A2CConfig
    description = "synchronous advantage actor-critic (Mnih et al. 2016), n-step or GAE"
    presets = {
        # rl-baselines3-zoo's A2C settings for these tasks (RMSprop, n_steps 5), with lr decay
        # and reward scaling: the value loss and the policy loss share one global-norm clip,
        # and unscaled returns (~100 here) let the value gradient take the whole clip budget
        # (without it, 2 of 3 CartPole seeds and 1 of 3 Acrobot seeds failed in trials)
        "CartPole-v1": {"n_envs": 8, "entropy_coef": 0.0, "normalize_reward": True,
                        "total_steps": 200_000},
        "Acrobot-v1": {"n_envs": 16, "entropy_coef": 0.0, "normalize_obs": True,
                       "normalize_reward": True, "total_steps": 300_000},
    }

    def make_optimizer(self, modules):
        cfg = self.config
        if cfg.optimizer == "rmsprop":
            return RMSprop(modules, lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.optimizer_eps)
        return Adam(modules, lr=cfg.lr, eps=cfg.optimizer_eps)

    def loss(self, batch):
        r"""The A2C loss on a RolloutBatch (:func:`minipg.estimators.a2c.a2c_loss`):

        L = -E[A log pi(a|s)] + c_v E[(V(s) - R)^2] - c_H E[H(pi(.|s))];

        returns (L as a Tensor on the tape, its diagnostics).
        """
        cfg = self.config
        dist, values = self.distribution_and_values(batch.obs)
        log_prob = dist.log_prob(batch.actions, validate=False)     # sampled by us
        return a2c_loss(log_prob, values, self.entropy_of(dist), batch.advantages,
                        batch.returns, cfg.value_coef, cfg.entropy_coef)

    def learn(self, collector):
        cfg = self.config
        lr = self.set_learning_rate(collector.steps)
        batch = self.collect_batch(collector, cfg.advantage)          # targets held constant
        loss, diagnostics = self.loss(batch)
        grad_norm = self.descend(loss)                               # one step on the batch
        self.set_learning_rate(collector.steps)       # ends at 0 with the step budget
        diagnostics.update(loss=float(loss.data), grad_norm=grad_norm, lr=lr,
                           explained_variance=explained_variance(batch.values_old, batch.returns))
        return diagnostics
