r"""What the on-policy actor-critics share: rollouts, targets, acting, and two shapes of update.

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "A3C",
"A2C", "TRPO", "PPO" and "ACKTR"; papers: V. Mnih et al., "Asynchronous
Methods for Deep Reinforcement Learning", ICML 2016; J. Schulman et al.,
"High-Dimensional Continuous Control Using Generalized Advantage
Estimation", ICLR 2016 (GAE, eq. 16); J. Schulman et al., "Trust Region
Policy Optimization", ICML 2015; Y. Wu et al., "Scalable trust-region method
for deep reinforcement learning using Kronecker-factored approximation",
NeurIPS 2017 (ACKTR).

Every on-policy algorithm here runs one iteration as

1. run pi for T = ``n_steps`` steps in each of N environments
   (:meth:`OnPolicyAlgorithm.collect`), recording s_t, a_t,
   log pi_old(a_t|s_t), V_old(s_t), r_t and both episode-end flags;
2. targets held constant for the update (:meth:`OnPolicyAlgorithm.targets`):
   A_t = GAE(gamma, lambda) and R_t = A_t + V(s_t), or A3C's n-step returns
   R_t and A_t = R_t - V(s_t), both with V(s'_t) of the TRUE next state (a
   time-limit truncation bootstraps from V(s_T), a termination from nothing);
3. an update on the :class:`RolloutBatch` of those T * N samples.

The update comes in two shapes, one base class each:

* :class:`JointLossAlgorithm` -- one scalar loss of policy and value together,
  ``loss(batch) -> (loss, diagnostics)``, and ONE optimizer over every
  parameter, its gradient clipped to a global norm (A2C, PPO).  The only
  shape a shared trunk allows: the policy and value heads' gradients meet
  in the trunk, weighted by ``value_coef``.
* :class:`SeparateStepsAlgorithm` -- the policy step and the value step
  apart, ``policy_step(batch)`` then ``value_step(batch)``, each with its own
  optimizer (or none: a natural-gradient step that solves for its own
  direction).  TRPO's constrained natural-gradient step of the policy with a
  separately fitted V (Schulman et al. 2015, Appendix C), and ACKTR's K-FAC
  steps, one for the actor and one for the critic (Wu et al. 2017, section
  3.2), have this shape.  Separate networks only.

Both share the networks (a policy MLP -- Categorical logits, or Gaussian
means with a state-independent log-std -- and a value MLP, or with
``shared_trunk`` one trunk with two heads; orthogonal initialisation, gain
sqrt 2, policy output 0.01, value output 1), acting, observation
normalisation (running mean/std held by the agent, so that evaluation uses
the trained statistics) and reward scaling (gymnasium's ``NormalizeReward``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autodiff import no_grad
from ..buffers.rollout import RolloutBuffer
from ..distributions import Categorical
from ..kernels import gae, n_step_returns
from ..optim import clip_grad_norm_or_measure
from .base import Algorithm, BaseConfig, ConfigError, setting
from .networks import (CategoricalPolicy, ObservationNormalizer, SharedActorCritic, ValueNet,
                       make_policy)

__all__ = ["OnPolicyConfig", "JointLossConfig", "RolloutBatch", "OnPolicyAlgorithm",
           "JointLossAlgorithm", "SeparateStepsAlgorithm", "linear_decay",
           "explained_variance"]


@dataclass
class OnPolicyConfig(BaseConfig):
    """Settings every on-policy algorithm has: the rollout, the targets, the networks."""
    n_envs: int = setting(8, "parallel environments N", low=1, high=1024)
    n_steps: int = setting(5, "steps T per environment in one rollout", low=1)
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0, low_open=True)
    gae_lambda: float = setting(1.0, "GAE lambda (1: n-step / Monte-Carlo advantages)",
                                low=0.0, high=1.0)
    hidden: tuple[int, ...] = setting((64, 64), "hidden layer sizes")
    activation: str = setting("tanh", "hidden activation", choices=("tanh", "relu"))
    normalize_obs: bool = setting(False, "normalise observations by running mean/std")
    obs_clip: float = setting(10.0, "clip normalised observations to +-this", low=0.0,
                              low_open=True)
    normalize_reward: bool = setting(False, "scale rewards by the std of the discounted return "
                                     "(gymnasium NormalizeReward)")
    reward_clip: float = setting(10.0, "clip scaled rewards to +-this", low=0.0, low_open=True)
    init_log_std: float = setting(0.0, "initial log-std of a Gaussian policy")


@dataclass
class JointLossConfig(OnPolicyConfig):
    """Settings of the joint-loss update (A2C, PPO): one optimizer, one weighted loss."""
    shared_trunk: bool = setting(False, "one trunk with policy and value heads")
    lr: float = setting(7e-4, "learning rate (initial value when annealed)", low=0.0,
                        low_open=True)
    anneal_lr: bool = setting(True, "decay the learning rate linearly to 0 over total_steps")
    value_coef: float = setting(0.5, "c_v / c1: weight of E[(V - R)^2] (no factor 1/2)",
                                low=0.0)
    entropy_coef: float = setting(0.0, "c_H / c2: weight of the entropy bonus", low=0.0)
    max_grad_norm: float = setting(0.5, "clip the gradient to this global L2 norm (0: off)",
                                   low=0.0)


def linear_decay(start, steps_done, total_steps):
    """start * (1 - steps_done / total_steps), floored at 0: the value after ``steps_done``."""
    return start * max(0.0, 1.0 - steps_done / total_steps)


def explained_variance(values, returns):
    """1 - Var[R - V] / Var[R] (1: V predicts R perfectly); 0 when Var[R] = 0, where it is
    undefined (a NaN diagnostic would stop the run loop as a non-finite value)."""
    var = np.var(returns)
    return 0.0 if var == 0 else float(1.0 - np.var(returns - values) / var)


@dataclass
class RolloutBatch:
    """One rollout's samples, time and environment merged (T * N rows), with their targets.

    ``obs`` are the prepared (normalised) observations the policy acted on;
    ``log_prob_old`` = log pi_old(a|s) and ``values_old`` = V_old(s) were
    recorded when acting; ``advantages`` A and ``returns`` R (the value
    targets) are held constant for the update.  ``batch[idx]`` is the
    minibatch of rows ``idx``.
    """
    obs: np.ndarray
    actions: np.ndarray
    log_prob_old: np.ndarray
    values_old: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray

    def __len__(self):
        return len(self.obs)

    def __getitem__(self, idx):
        return RolloutBatch(self.obs[idx], self.actions[idx], self.log_prob_old[idx],
                            self.values_old[idx], self.advantages[idx], self.returns[idx])


class OnPolicyAlgorithm(Algorithm):
    """Networks, acting, normalisation, rollouts and targets (see the module docstring).

    A subclass builds its optimizers in :meth:`build_optimizers` (called once
    the networks exist) and gives ``learn``; in practice it derives from
    :class:`JointLossAlgorithm` or :class:`SeparateStepsAlgorithm`, which do both.
    """

    action_kinds = ("discrete", "continuous")
    default_env = "CartPole-v1"

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        cfg = config
        self.kind = "discrete" if hasattr(action_space, "n") else "continuous"
        self.shared_trunk = bool(getattr(cfg, "shared_trunk", False))
        if self.shared_trunk:
            self.net = SharedActorCritic(self.kind, self.obs_dim, self.n_actions, cfg.hidden,
                                         cfg.activation, self.rng, self.dtype, cfg.init_log_std)
            self._modules = {"net": self.net}
        else:
            self.policy = make_policy(self.kind, self.obs_dim, self.n_actions, cfg.hidden,
                                      cfg.activation, self.rng, self.dtype, cfg.init_log_std)
            self.value = ValueNet(self.obs_dim, cfg.hidden, cfg.activation, self.rng,
                                  self.dtype)
            self._modules = {"policy": self.policy, "value": self.value}
        # the plain-array acting path of rollout_step: exactly these two networks
        self.acts_on_arrays = (not self.shared_trunk and type(self.policy) is CategoricalPolicy
                               and type(self.value) is ValueNet)
        self.build_optimizers()
        self.normalizer = (ObservationNormalizer(observation_space.shape, cfg.obs_clip,
                                                 dtype=self.dtype)
                           if cfg.normalize_obs else None)
        action_shape = () if self.kind == "discrete" else (self.n_actions,)
        action_dtype = np.int64 if self.kind == "discrete" else self.dtype
        self.buffer = RolloutBuffer(cfg.n_steps, cfg.n_envs, self.obs_dim, action_shape,
                                    action_dtype, self.dtype)

    def build_optimizers(self):
        """Create the optimizers (the networks exist); :meth:`optimizers` returns them."""
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
        if self.shared_trunk:
            return self.net(obs)[0]
        return self.policy(obs)

    def distribution_and_values(self, obs):
        """(pi(.|s), V(s)) for prepared observations, on the tape unless under no_grad."""
        if self.shared_trunk:
            return self.net(obs)
        return self.policy(obs), self.value(obs)

    def values_of(self, obs):
        """V(s) as an array (no gradient)."""
        with no_grad():
            if self.shared_trunk:
                return self.net(obs)[1].data
            return self.value(obs).data

    def sample_actions(self, obs):
        """a ~ pi(.|s) for prepared observations, no gradient: :meth:`rollout_step`'s
        actions (the same draws) without V(s), for a rollout that needs no more."""
        if self.acts_on_arrays:
            actions, _ = Categorical.sample_from_logits(self.policy.net.forward_array(obs),
                                                        self.rng)
            return actions
        with no_grad():
            return self.distribution(obs).sample(self.rng)

    def rollout_step(self, obs):
        """(a ~ pi(.|s), log pi(a|s), V(s)) for prepared observations, no gradient."""
        if self.acts_on_arrays:
            # acting on plain arrays (two calls per vector step: Python overhead, not
            # arithmetic, is the cost); the same values as the Tensor path below
            actions, log_prob = Categorical.sample_from_logits(
                self.policy.net.forward_array(obs), self.rng)
            return actions, log_prob, self.value.net.forward_array(obs).reshape(-1)
        with no_grad():
            dist, values = self.distribution_and_values(obs)
            actions = dist.sample(self.rng)
            log_prob = dist.log_prob(actions, validate=False).data    # just drawn
        return actions, log_prob, values.data

    def collect(self, collector):
        """One rollout of T steps of the N environments into ``self.buffer``."""
        return self.buffer.collect(collector, self.rollout_step, self.values_of,
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

    def rollout_batch(self, advantages, returns):
        """The buffer's rollout with targets ``advantages``, ``returns`` ((T, N) each),
        as one :class:`RolloutBatch` of T * N rows."""
        b = self.buffer
        return RolloutBatch(b.flat("obs"), b.flat("actions"), b.flat("log_prob"),
                            b.flat("values"), advantages.reshape(-1), returns.reshape(-1))

    def collect_batch(self, collector, method="gae"):
        """Steps 1 and 2 of the module docstring: collect a rollout, compute its targets."""
        self.collect(collector)
        return self.rollout_batch(*self.targets(method))

    def entropy_of(self, dist):
        """H(pi(.|s)) on the tape, or as a constant array when its coefficient is 0 (the
        gradient is then exactly the same, 0 * grad H, and the tape four nodes shorter)."""
        if getattr(self.config, "entropy_coef", 0.0) > 0:
            return dist.entropy()
        with no_grad():
            return dist.entropy().data


class JointLossAlgorithm(OnPolicyAlgorithm):
    """One loss of policy and value, one optimizer over every parameter (A2C, PPO).

    A subclass gives :meth:`make_optimizer` (over a list of modules),
    :meth:`loss` and ``learn``; the global-norm clip sees the whole gradient.
    """

    def build_optimizers(self):
        # one optimizer over every parameter: the global-norm clip sees the whole gradient
        self.optimizer = self.make_optimizer(list(self._modules.values()))

    def make_optimizer(self, modules):
        """The optimizer over every parameter of ``modules``."""
        raise NotImplementedError

    def loss(self, batch):
        """(scalar loss Tensor to descend, {name: float} diagnostics) on a RolloutBatch."""
        raise NotImplementedError

    def optimizers(self):
        return {"optimizer": self.optimizer}

    def set_learning_rate(self, steps_done):
        """The learning rate after ``steps_done`` steps (linear decay, when configured)."""
        cfg = self.config
        lr = linear_decay(cfg.lr, steps_done, cfg.total_steps) if cfg.anneal_lr else cfg.lr
        self.optimizer.lr = lr
        return lr

    def clip_and_step(self):
        """Global-norm clip of the whole gradient, then the optimizer step; the norm before."""
        cfg = self.config
        grad_norm = clip_grad_norm_or_measure(self.optimizer, cfg.max_grad_norm)
        self.optimizer.step()
        return grad_norm

    def descend(self, loss):
        """One step down ``loss``: zero_grad, backward, clip, step; the gradient norm."""
        self.optimizer.zero_grad()
        loss.backward()
        return self.clip_and_step()


class SeparateStepsAlgorithm(OnPolicyAlgorithm):
    """The policy step and the value step apart, each with its own optimizer (TRPO, ACKTR).

    A subclass gives :meth:`make_policy_optimizer` and
    :meth:`make_value_optimizer` (either may return None: a step that
    computes its own update, e.g. a natural-gradient step by conjugate
    gradient, needs no optimizer), :meth:`policy_step` and
    :meth:`value_step`.  :meth:`learn` collects a rollout, computes its
    targets (``advantage_method``), then takes the policy step and the value
    step on the same batch, in that order (the value step changes V, not the
    advantages already computed).  No shared trunk: each step owns its
    network.
    """

    advantage_method = "gae"

    def __init__(self, config, observation_space, action_space, seed):
        if getattr(config, "shared_trunk", False):
            raise ConfigError(f"{self.name}: the policy and value steps are separate, so the "
                              "networks are too (shared_trunk is not accepted)")
        super().__init__(config, observation_space, action_space, seed)

    def build_optimizers(self):
        self.policy_optimizer = self.make_policy_optimizer(self.policy)
        self.value_optimizer = self.make_value_optimizer(self.value)

    def make_policy_optimizer(self, policy):
        """The policy's optimizer, or None."""
        raise NotImplementedError

    def make_value_optimizer(self, value):
        """The value function's optimizer, or None."""
        raise NotImplementedError

    def optimizers(self):
        pairs = (("policy", self.policy_optimizer), ("value", self.value_optimizer))
        return {name: opt for name, opt in pairs if opt is not None}

    def policy_step(self, batch):
        """Update the policy on a RolloutBatch; return {name: float} diagnostics."""
        raise NotImplementedError

    def value_step(self, batch):
        """Update the value function on a RolloutBatch; return {name: float} diagnostics."""
        raise NotImplementedError

    def learn(self, collector):
        batch = self.collect_batch(collector, self.advantage_method)
        metrics = dict(self.policy_step(batch))
        metrics.update(self.value_step(batch))
        metrics["explained_variance"] = explained_variance(batch.values_old, batch.returns)
        return metrics
