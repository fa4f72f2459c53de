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

:class:`OnPolicyAlgorithm`, also defined here, is the machinery A2C and PPO
share: networks, acting, observation normalisation, rollouts, targets and
schedules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autodiff import no_grad
from ..buffers.rollout import RolloutBuffer
from ..estimators.a2c import a2c_loss
from ..kernels import gae, n_step_returns
from ..optim import Adam, RMSprop, clip_grad_norm
from .base import Algorithm, BaseConfig, ConfigError, setting
from .networks import ObservationNormalizer, SharedActorCritic, ValueNet, make_policy

__all__ = ["OnPolicyConfig", "OnPolicyAlgorithm", "A2CConfig", "A2C", "linear_decay"]


@dataclass
class OnPolicyConfig(BaseConfig):
    """Settings A2C and PPO share."""
    n_envs: int = setting(8, "parallel environments N", low=1, high=1024)
    n_steps: int = setting(5, "steps T per environment in one rollout", low=1)
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0, low_open=True)
    gae_lambda: float = setting(1.0, "GAE lambda (1: n-step / Monte-Carlo advantages)",
                                low=0.0, high=1.0)
    hidden: tuple[int, ...] = setting((64, 64), "hidden layer sizes")
    activation: str = setting("tanh", "hidden activation", choices=("tanh", "relu"))
    shared_trunk: bool = setting(False, "one trunk with policy and value heads")
    lr: float = setting(7e-4, "learning rate (initial value when annealed)", low=0.0,
                        low_open=True)
    anneal_lr: bool = setting(True, "decay the learning rate linearly to 0 over total_steps")
    value_coef: float = setting(0.5, "c_v / c1: weight of E[(V - R)^2] (no factor 1/2)",
                                low=0.0)
    entropy_coef: float = setting(0.0, "c_H / c2: weight of the entropy bonus", low=0.0)
    max_grad_norm: float = setting(0.5, "clip the gradient to this global L2 norm (0: off)",
                                   low=0.0)
    normalize_obs: bool = setting(False, "normalise observations by running mean/std")
    obs_clip: float = setting(10.0, "clip normalised observations to +-this", low=0.0,
                              low_open=True)
    normalize_reward: bool = setting(False, "scale rewards by the std of the discounted return "
                                     "(gymnasium NormalizeReward)")
    reward_clip: float = setting(10.0, "clip scaled rewards to +-this", low=0.0, low_open=True)
    init_log_std: float = setting(0.0, "initial log-std of a Gaussian policy")


def linear_decay(start, steps_done, total_steps):
    """start * (1 - steps_done / total_steps), floored at 0: the value after ``steps_done``."""
    return start * max(0.0, 1.0 - steps_done / total_steps)


class OnPolicyAlgorithm(Algorithm):
    """Networks, acting, normalisation, rollouts and targets shared by A2C and PPO."""

    action_kinds = ("discrete", "continuous")
    default_env = "CartPole-v1"

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        cfg = config
        self.kind = "discrete" if hasattr(action_space, "n") else "continuous"
        if cfg.shared_trunk:
            self.net = SharedActorCritic(self.kind, self.obs_dim, self.n_actions, cfg.hidden,
                                         cfg.activation, self.rng, self.dtype, cfg.init_log_std)
            self._modules = {"net": self.net}
        else:
            self.policy = make_policy(self.kind, self.obs_dim, self.n_actions, cfg.hidden,
                                      cfg.activation, self.rng, self.dtype, cfg.init_log_std)
            self.value = ValueNet(self.obs_dim, cfg.hidden, cfg.activation, self.rng,
                                  self.dtype)
            self._modules = {"policy": self.policy, "value": self.value}
        # one optimizer over every parameter: the global-norm clip sees the whole gradient
        self.optimizer = self.make_optimizer(list(self._modules.values()))
        self.normalizer = (ObservationNormalizer(observation_space.shape, cfg.obs_clip,
                                                 dtype=self.dtype)
                           if cfg.normalize_obs else None)
        action_shape = () if self.kind == "discrete" else (self.n_actions,)
        action_dtype = np.int64 if self.kind == "discrete" else self.dtype
        self.buffer = RolloutBuffer(cfg.n_steps, cfg.n_envs, self.obs_dim, action_shape,
                                    action_dtype, self.dtype)

    def make_optimizer(self, modules):
        raise NotImplementedError

    # --- the run loop's interface ------------------------------------------------
    @classmethod
    def env_wrappers(cls, config):
        """Reward scaling by gymnasium's own NormalizeReward (then clipping), when asked.

        Observation normalisation is not a wrapper: the agent holds it
        (:class:`ObservationNormalizer`).  Action clipping is done by the
        Collector for every algorithm (gymnasium's ClipAction, without the wrapper).
        """
        if not config.normalize_reward:
            return []
        import gymnasium as gym
        gamma, bound = config.gamma, config.reward_clip
        return [lambda env: gym.wrappers.NormalizeReward(env, gamma=gamma),
                lambda env: gym.wrappers.TransformReward(
                    env, lambda r: float(np.clip(r, -bound, bound)))]

    def modules(self):
        return dict(self._modules)

    def optimizers(self):
        return {"optimizer": self.optimizer}

    def extra_state(self):
        return self.normalizer.state() if self.normalizer is not None else {}

    def load_extra_state(self, arrays):
        if self.normalizer is not None:
            self.normalizer.load_state(arrays)

    def act(self, obs, deterministic=False):
        """Actions for raw observations; normalisation statistics are used frozen."""
        obs = self.observe(np.asarray(obs), update=False)
        with no_grad():
            dist = self.distribution(obs)
            return dist.mode() if deterministic else dist.sample(self.rng)

    # --- pieces -------------------------------------------------------------------
    def observe(self, obs, update=False):
        """Observations as the networks see them (normalised, when configured)."""
        if self.normalizer is None:
            return np.asarray(obs, dtype=self.dtype)
        return self.normalizer(obs, update)

    def distribution(self, obs):
        """pi(.|s) for prepared observations."""
        if self.config.shared_trunk:
            return self.net(obs)[0]
        return self.policy(obs)

    def distribution_and_values(self, obs):
        """(pi(.|s), V(s)) for prepared observations, on the tape unless under no_grad."""
        if self.config.shared_trunk:
            return self.net(obs)
        return self.policy(obs), self.value(obs)

    def values_of(self, obs):
        """V(s) as an array (no gradient)."""
        with no_grad():
            if self.config.shared_trunk:
                return self.net(obs)[1].data
            return self.value(obs).data

    def policy_step(self, obs):
        """(actions, log pi(a|s), V(s)) for prepared observations, no gradient."""
        with no_grad():
            dist, values = self.distribution_and_values(obs)
            actions = dist.sample(self.rng)
            log_prob = dist.log_prob(actions, validate=False).data    # just drawn
        return actions, log_prob, values.data

    def collect(self, collector):
        """One rollout of T steps of the N environments into ``self.buffer``."""
        return self.buffer.collect(collector, self.policy_step, self.values_of,
                                   self.observe if self.normalizer is not None else None)

    def targets(self, method="gae"):
        """(advantages, returns), (T, N) arrays held constant for the update.

        'gae': A = GAE(gamma, lambda), R = A + V.  'nstep': R = the n-step return
        to the end of the rollout (A3C), A = R - V.  Both bootstrap a truncation
        from V(true final observation) and a termination from nothing.
        """
        b, cfg = self.buffer, self.config
        if method == "gae":
            advantages = gae(b.rewards, b.values, b.next_values, b.terminated, b.truncated,
                             cfg.gamma, cfg.gae_lambda)                          # eq. 16
            return advantages, advantages + b.values
        returns = n_step_returns(b.rewards, b.next_values, b.terminated, b.truncated,
                                 cfg.gamma, b.n_steps)
        return returns - b.values, returns

    def set_learning_rate(self, steps_done):
        """The learning rate after ``steps_done`` steps (linear decay, when configured)."""
        cfg = self.config
        lr = linear_decay(cfg.lr, steps_done, cfg.total_steps) if cfg.anneal_lr else cfg.lr
        self.optimizer.lr = lr
        return lr

    def entropy_of(self, dist):
        """H(pi(.|s)) on the tape, or as a constant array when its coefficient is 0 (the
        gradient is then exactly the same, 0 * grad H, and the tape four nodes shorter)."""
        if self.config.entropy_coef > 0:
            return dist.entropy()
        with no_grad():
            return dist.entropy().data

    def clip_and_step(self):
        """Global-norm clip of the whole gradient, then the optimizer step; the norm before."""
        cfg = self.config
        grad_norm = (clip_grad_norm(self.optimizer, cfg.max_grad_norm) if cfg.max_grad_norm > 0
                     else float(np.linalg.norm(self.optimizer.grad)))
        self.optimizer.step()
        return grad_norm


def explained_variance(values, returns):
    """1 - Var[R - V] / Var[R] (1: V predicts R perfectly); 0 when Var[R] = 0, where it is
    undefined (a NaN diagnostic would stop the run loop as a non-finite value)."""
    var = np.var(returns)
    return 0.0 if var == 0 else float(1.0 - np.var(returns - values) / var)


# ----------------------------------------------------------------------------- A2C
@dataclass
class A2CConfig(OnPolicyConfig):
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


class A2C(OnPolicyAlgorithm):
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

    def learn(self, collector):
        cfg = self.config
        lr = self.set_learning_rate(collector.steps)
        b = self.collect(collector)
        advantages, returns = self.targets(cfg.advantage)

        obs, actions = b.flat("obs"), b.flat("actions")
        self.optimizer.zero_grad()
        dist, values = self.distribution_and_values(obs)
        log_prob = dist.log_prob(actions, validate=False)          # sampled by us
        loss, diagnostics = a2c_loss(log_prob, values, self.entropy_of(dist),
                                     advantages.reshape(-1), returns.reshape(-1),
                                     cfg.value_coef, cfg.entropy_coef)
        loss.backward()
        grad_norm = self.clip_and_step()
        self.set_learning_rate(collector.steps)       # ends at 0 with the step budget
        diagnostics.update(loss=float(loss.data), grad_norm=grad_norm, lr=lr,
                           explained_variance=explained_variance(b.values, returns))
        return diagnostics


ALGORITHM = A2C
