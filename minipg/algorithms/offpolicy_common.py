r"""What DDPG, TD3, SAC (v1) and SAC with automatic temperature share.

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "DDPG",
"TD3", "SAC" and "SAC with Automatically Adjusted Temperature"; papers:
T. P. Lillicrap et al., "Continuous control with deep reinforcement
learning", ICLR 2016 (Algorithm 1: replay buffer, target networks with soft
updates, exploration noise); S. Fujimoto, H. van Hoof, D. Meger,
"Addressing Function Approximation Error in Actor-Critic Methods", ICML
2018; T. Haarnoja et al., "Soft Actor-Critic", ICML 2018 and
arXiv:1812.05905 (2018b).

* :class:`DeterministicActor`  mu(s) = center + scale * tanh(MLP(s)): the
  network's tanh output in [-1, 1] mapped affinely onto the task's box
  [low, high] (center = (high + low)/2, scale = (high - low)/2); on an
  unbounded box (e.g. the LQR test bed) the output is MLP(s), unsquashed.
* :class:`TanhGaussianActor`  pi(.|s) = TanhGaussian(mean(s), log_std(s),
  low, high): one MLP whose last layer gives the mean and log-std.
* :class:`CriticEnsemble`  K critics Q_k(s, a) = MLP_k([s, a]), evaluated
  together: every layer's K weight matrices are stacked (K, n_in, n_out), so
  the twin critics of TD3 and SAC are one batched matmul per layer, and one
  flat buffer (one optimizer step, one polyak kernel for all K).
* :class:`LogTemperature`  log alpha as a one-parameter module (checkpointed
  and checked for non-finite values like any network).
* :class:`OffPolicyAlgorithm`  the loop every one of them runs: act (uniform
  random actions during the warm-up, then the policy with exploration), store
  (s, a, r, s', terminated) in the replay buffer, and every ``train_freq``
  vector steps do ``gradient_steps`` updates on uniform minibatches.
* :func:`frozen`  a context in which a module's parameters are constants, so
  the actor's loss differentiates through the critic to the ACTION only
  (grad_a Q) and no time is spent on gradients the critic's optimizer would
  throw away.

Initialisation follows PyTorch's ``nn.Linear`` default (U(+-1/sqrt(fan_in))
for weights and biases), as stable-baselines3 and the authors' code use.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from ..allocator import keep_freed_memory
from ..autodiff import Parameter, no_grad, ops
from ..buffers.replay import ReplayBuffer
from ..distributions import GaussianNoise, OrnsteinUhlenbeckNoise, TanhGaussian
from ..distributions.tanh_gaussian import box_constants, rsample_from_head
from ..nn import MLP, Module, fan_in_uniform
from ..optim import Adam, SoftUpdates
from .base import (Algorithm, BaseConfig, ConfigError, load_replay_state, replay_state,
                   setting)

__all__ = ["OffPolicyConfig", "DeterministicPolicyConfig", "OffPolicyAlgorithm",
           "DeterministicPolicyMixin", "TanhGaussianPolicyMixin", "DeterministicActor",
           "TanhGaussianActor", "CriticEnsemble", "LogTemperature", "frozen", "action_box",
           "make_exploration_noise", "ZOO_PENDULUM_DETERMINISTIC", "LOG_PROB_OF",
           "log_prob_of_setting"]


# ------------------------------------------------------------------------ networks

def action_box(action_space, dtype, bounded_only=False, owner="algorithm"):
    """(low, high, center, scale) of a Box as arrays of ``dtype``; all None if unbounded.

    A box is bounded when every bound is finite, unbounded when every bound
    is infinite; a mix is refused (ValueError), and so is an unbounded box
    when ``bounded_only`` (a tanh-squashed policy needs finite bounds).
    """
    low = np.asarray(action_space.low, dtype=np.float64).reshape(-1)
    high = np.asarray(action_space.high, dtype=np.float64).reshape(-1)
    finite = np.isfinite(low) & np.isfinite(high)
    if finite.all():
        if not np.all(low < high):
            raise ValueError(f"{owner}: the action box needs low < high, got low={low}, "
                             f"high={high}")
        center, scale = (high + low) / 2.0, (high - low) / 2.0
        return tuple(np.asarray(v, dtype=dtype) for v in (low, high, center, scale))
    if finite.any() or bounded_only:
        raise ValueError(f"{owner}: the action box low={low}, high={high} must be bounded in "
                         f"every dimension (finite low and high)"
                         + ("" if bounded_only else " or unbounded in every dimension"))
    return None, None, None, None


class DeterministicActor(Module):
    r"""mu(s) = center + scale * tanh(MLP(s)) on a bounded box; MLP(s) on an unbounded one.

    ``hidden = ()`` makes the policy linear: mu(s) = s W + b (with the squash
    on a bounded box).  ``forward`` returns a Tensor (N, action_dim).
    """

    def __init__(self, obs_dim, action_dim, hidden, activation, low, high, rng, dtype):
        super().__init__()
        self.bounded = low is not None
        self.net = MLP([obs_dim, *hidden, action_dim], activation=activation,
                       output_activation="tanh" if self.bounded else None,
                       init="fan_in_uniform", rng=rng, dtype=dtype)
        if self.bounded:
            self._center = (np.asarray(high) + np.asarray(low)) / 2.0
            self._scale = (np.asarray(high) - np.asarray(low)) / 2.0

    def forward(self, obs):
        y = self.net(obs)                                    # tanh(MLP(s)) in [-1, 1]
        if not self.bounded:
            return y
        return y * self._scale + self._center                # affine onto [low, high]


class TanhGaussianActor(Module):
    r"""pi(.|s) = TanhGaussian(mean(s), log_std(s), low, high), [mean, log_std] = MLP(s).

    The log-std is clamped to ``log_std_bounds`` inside :class:`TanhGaussian`
    (default (-20, 2), as SAC implementations do).
    """

    def __init__(self, obs_dim, action_dim, hidden, activation, low, high, rng, dtype,
                 log_std_bounds=(-20.0, 2.0)):
        super().__init__()
        self.action_dim = int(action_dim)
        self.low, self.high = low, high
        self.log_std_bounds = log_std_bounds
        self.net = MLP([obs_dim, *hidden, 2 * action_dim], activation=activation,
                       init="fan_in_uniform", rng=rng, dtype=dtype)
        # the box's constants for rsample, as TanhGaussian computes them (dtype: the net's)
        self._box = (None, None, 0.0)
        if low is not None:
            box = [np.asarray(b, dtype=dtype) for b in (low, high)]
            self._box = (box[0], *box_constants(box[0], box[1], self.action_dim))

    def forward(self, obs):
        out = self.net(obs)
        d = self.action_dim
        return TanhGaussian(out[:, :d], out[:, d:], self.low, self.high,
                            log_std_bounds=self.log_std_bounds)

    def rsample(self, obs, eps):
        """``self(obs).rsample(eps=eps)`` -- (a~, log pi(a~|s)) -- through one fused op
        (:func:`minipg.distributions.tanh_gaussian.rsample_from_head`: the same values
        and gradients, without building and checking a TanhGaussian every update).
        ``eps``: standard normal noise of shape (N, action_dim) and the network's dtype."""
        low, scale, sum_log_scale = self._box
        return rsample_from_head(self.net(obs), eps, self.action_dim, low, scale, sum_log_scale,
                                 self.log_std_bounds)


class CriticEnsemble(Module):
    r"""K critics Q_k(s, a) = MLP_k([s, a]) with stacked weights; forward -> Tensor (K, N).

    Layer l holds ``W{l}`` of shape (K, n_in, n_out) and ``b{l}`` of shape
    (K, 1, n_out); the first layer maps the shared input x = [s, a] (N, n_in)
    to (K, N, n_out) with one broadcasting matmul, later layers are batched
    matmuls (K, N, n) @ (K, n, n').  Each critic is initialised as a separate
    ``nn.Linear`` stack would be.  :meth:`first` evaluates critic 1 alone.
    """

    def __init__(self, obs_dim, action_dim, hidden, activation, n_critics, rng, dtype):
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"CriticEnsemble: activation must be 'relu' or 'tanh', got "
                             f"{activation!r}")
        rng = np.random.default_rng(rng)
        self.n_critics = int(n_critics)
        self.sizes = (int(obs_dim) + int(action_dim), *map(int, hidden), 1)
        self.activation = activation            # applied by the dense op itself
        self.n_layers = len(self.sizes) - 1
        for layer, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            weights = np.stack([fan_in_uniform((n_in, n_out), n_in, rng, dtype)
                                for _ in range(self.n_critics)])
            biases = np.stack([fan_in_uniform((1, n_out), n_in, rng, dtype)
                               for _ in range(self.n_critics)])
            setattr(self, f"W{layer}", Parameter(weights))
            setattr(self, f"b{layer}", Parameter(biases))

    def forward(self, obs, actions):
        x = ops.concatenate([obs, actions], axis=-1)                        # [s, a] (N, n_in)
        for layer in range(self.n_layers):
            hidden = layer < self.n_layers - 1
            x = ops.dense(x, getattr(self, f"W{layer}"), getattr(self, f"b{layer}"),
                          self.activation if hidden else None)              # (K, N, n_out)
        return ops.reshape(x, x.shape[:2])                                  # (K, N)

    def first(self, obs, actions):
        """Q_1(s, a) alone, shape (N,) (TD3's and DDPG's actor objective)."""
        x = ops.concatenate([obs, actions], axis=-1)
        for layer in range(self.n_layers):
            hidden = layer < self.n_layers - 1
            x = ops.dense(x, getattr(self, f"W{layer}")[0], getattr(self, f"b{layer}")[0, 0],
                          self.activation if hidden else None)
        return ops.reshape(x, x.shape[:1])


class LogTemperature(Module):
    """log alpha, one parameter (alpha = exp(log alpha) > 0)."""

    def __init__(self, init_alpha, dtype):
        super().__init__()
        self.log_alpha = Parameter(np.full(1, np.log(init_alpha), dtype=dtype))

    @property
    def alpha(self):
        return float(np.exp(self.log_alpha.data[0]))


@contextlib.contextmanager
def frozen(module):
    """Inside, ``module``'s parameters are constants (requires_grad False) for new ops.

    Ops recorded inside still pass gradients to their other inputs (e.g. the
    action in Q(s, mu(s))); the critic's parameters get none, and their
    gradient matmuls are skipped.  Objects without ``parameters()`` (e.g. an
    exact critic in a test) are accepted as they are.
    """
    params = [p for p in (module.parameters() if hasattr(module, "parameters") else ())
              if p.requires_grad]
    for p in params:
        p.requires_grad = False
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad = True


# ---------------------------------------------------------------------- the loop

@dataclass
class OffPolicyConfig(BaseConfig):
    """Settings shared by DDPG, TD3 and SAC (defaults: stable-baselines3's SAC/TD3 defaults)."""
    total_steps: int = setting(20_000, "environment steps to train for", low=1)
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0, low_open=True)
    tau: float = setting(0.005, "polyak rate: target <- (1 - tau) target + tau online",
                         low=0.0, high=1.0, low_open=True)
    batch_size: int = setting(256, "minibatch size N of each gradient step", low=1)
    buffer_size: int = setting(1_000_000, "replay buffer capacity (transitions)", low=1)
    learning_starts: int = setting(100, "warm-up: environment steps of uniform random actions "
                                   "before the first update", low=0)
    train_freq: int = setting(1, "vector steps between rounds of updates", low=1)
    gradient_steps: int = setting(1, "gradient steps per round of updates", low=1,
                                 high=1000)
    hidden: tuple[int, ...] = setting((256, 256), "hidden layer sizes of actor and critics")
    activation: str = setting("relu", "hidden activation", choices=("relu", "tanh"))
    checkpoint_replay: bool = setting(False, "save the replay buffer in checkpoints (exact "
                                      "resume; can be large)")
    log_every: int = setting(1_000, "environment steps between progress rows", low=1)
    checkpoint_every: int = setting(10_000, "environment steps between checkpoints", low=1)

    def check(self):
        if self.batch_size > self.buffer_size:
            raise ConfigError(f"batch_size = {self.batch_size} exceeds buffer_size = "
                              f"{self.buffer_size}: a minibatch is drawn from the buffer, so "
                              f"batch_size <= buffer_size is required")


# the stable-baselines3 zoo's Pendulum-v1 hyperparameters of TD3 and DDPG (both the same),
# in float32: single-precision matrix products are about twice as fast
# (verification/results/offpolicy_learning.md reports these presets)
ZOO_PENDULUM_DETERMINISTIC = {"gamma": 0.98, "buffer_size": 200_000, "learning_starts": 10_000,
                              "noise": "gaussian", "noise_std": 0.1, "actor_lr": 1e-3,
                              "critic_lr": 1e-3, "hidden": (400, 300), "dtype": "float32"}
# the zoo's MuJoCo hyperparameters of TD3 (Hopper-v3, HalfCheetah-v3 there)
ZOO_MUJOCO_DETERMINISTIC = {"total_steps": 1_000_000, "learning_starts": 10_000,
                            "noise": "gaussian", "noise_std": 0.1, "actor_lr": 3e-4,
                            "critic_lr": 3e-4, "hidden": (400, 300), "dtype": "float32"}


@dataclass
class DeterministicPolicyConfig(OffPolicyConfig):
    """Settings of the deterministic-policy algorithms (DDPG, TD3): learning rates, noise."""
    hidden: tuple[int, ...] = setting((400, 300), "hidden layer sizes of actor and critics")
    actor_lr: float = setting(1e-3, "Adam learning rate of the actor", low=0.0, low_open=True)
    critic_lr: float = setting(1e-3, "Adam learning rate of the critic(s)", low=0.0,
                               low_open=True)
    noise: str = setting("gaussian", "exploration noise added to mu(s)",
                         choices=("gaussian", "ou", "none"))
    noise_std: float = setting(0.1, "exploration noise sigma, in units of the box's half-width",
                               low=0.0)
    ou_theta: float = setting(0.15, "Ornstein-Uhlenbeck mean reversion theta", low=0.0)
    ou_dt: float = setting(1e-2, "Ornstein-Uhlenbeck time step dt", low=0.0, low_open=True)


class OffPolicyAlgorithm(Algorithm):
    r"""The shared loop of the off-policy actor-critics (a subclass gives the update).

    ``learn(collector)`` is one vector step:

    1. a_t = uniform random while fewer than ``learning_starts`` steps were
       taken (the warm-up), else ``explore(s_t)`` (policy plus noise);
    2. store (s_t, a_t, r_t, s_{t+1}, terminated_t) in the replay buffer,
       with s_{t+1} the TRUE next observation (the final one where an episode
       ended); ``terminated`` only, so a time-limit truncation bootstraps;
    3. once more than ``learning_starts`` steps were taken (as
       stable-baselines3 counts) and the buffer holds a minibatch, every
       ``train_freq`` vector steps, ``gradient_steps`` times:
       ``update(minibatch)``.

    Resume: the replay buffer is saved in checkpoints only with
    ``checkpoint_replay=True`` (it can be large: 2 (obs_dim + 1) + action_dim
    numbers per transition).  Without it a resumed run starts with an empty
    buffer and refills it: it acts with its policy and updates again once
    the buffer holds ``batch_size`` transitions, so it does not continue
    exactly as an uninterrupted run would.  With it, resume is exact.

    Progress rows carry the last update's diagnostics; during the warm-up,
    before any update, they are 0 and the ``updates`` column says 0.
    """

    action_kinds = ("continuous",)
    default_env = "Pendulum-v1"
    metric_names: tuple = ()

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        keep_freed_memory()      # the update's large temporaries reuse heap memory (allocator.py)
        self.action_dim = self.n_actions
        self.action_shape = tuple(action_space.shape)
        self.buffer = self.make_buffer()
        self.updates = 0        # gradient steps so far
        self.vector_steps = 0   # learn() calls so far
        self._last_metrics = {name: 0.0 for name in self.metric_names}
        self._soft_updates = SoftUpdates()

    # --- to be provided by a subclass ------------------------------------------
    def explore(self, obs):
        """Actions for the environments during training (after the warm-up)."""
        raise NotImplementedError

    def update(self, batch):
        """One gradient step on a minibatch (a ReplayBatch); returns {name: float}."""
        raise NotImplementedError

    def on_episode_end(self, done):
        """Called with the boolean mask of environments whose episode just ended."""

    # --- the replay (a subclass may store and sample otherwise: D4PG) ----------
    def make_buffer(self):
        """The replay: uniform, one row per transition."""
        return ReplayBuffer(self.config.buffer_size, (self.obs_dim,), self.action_shape,
                            dtype=self.dtype)

    def store_step(self, step, collector):
        """Put a vector step's transitions into the replay (``collector`` has counted it)."""
        self.buffer.add(step.obs, step.actions, step.rewards, step.next_obs, step.terminated)

    def sample_batch(self):
        """A minibatch of ``batch_size`` transitions from the replay."""
        return self.buffer.sample(self.config.batch_size, self.rng)

    # --- the loop --------------------------------------------------------------
    def learn(self, collector):
        cfg = self.config
        if collector.steps < cfg.learning_starts:
            actions = collector.random_actions()                  # warm-up
        else:
            actions = self.explore(collector.obs)
        step = collector.step(actions)
        self.store_step(step, collector)
        done = step.terminated | step.truncated
        if done.any():
            self.on_episode_end(done)
        self.vector_steps += 1
        if (collector.steps > cfg.learning_starts and len(self.buffer) >= cfg.batch_size
                and self.vector_steps % cfg.train_freq == 0):
            for _ in range(cfg.gradient_steps):
                self.update_once()
        return self.metrics()

    def update_once(self):
        """One gradient step on a sampled minibatch."""
        self._last_metrics = self.update(self.sample_batch())
        self.updates += 1

    def metrics(self):
        """The last update's diagnostics and the number of updates so far."""
        metrics = dict(self._last_metrics)
        metrics["updates"] = float(self.updates)
        return metrics

    # --- helpers ---------------------------------------------------------------
    def soft_update(self, target, source):
        """theta' <- (1 - tau) theta' + tau theta (the fused polyak kernel, on flat views
        kept from the first call: :class:`minipg.optim.SoftUpdates`)."""
        self._soft_updates(target, source, self.config.tau)

    @staticmethod
    def step_on(optimizer, loss):
        """zero_grad, backward, step: one gradient step of ``optimizer`` on ``loss``."""
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def normal(self, shape):
        """Standard normal draws of the run's dtype from the agent's generator."""
        return self.rng.standard_normal(shape, dtype=self.dtype)

    # --- checkpoints -----------------------------------------------------------
    def extra_state(self):
        state = {"updates": np.asarray(self.updates),
                 "vector_steps": np.asarray(self.vector_steps),
                 "last_metrics": np.asarray([self._last_metrics[k] for k in self.metric_names],
                                            dtype=np.float64)}
        state.update(replay_state(self.buffer, self.config.checkpoint_replay))
        return state

    def load_extra_state(self, arrays):
        self.updates = int(arrays["updates"])
        self.vector_steps = int(arrays["vector_steps"])
        self._last_metrics = dict(zip(self.metric_names,
                                      map(float, np.asarray(arrays["last_metrics"]))))
        load_replay_state(self.buffer, arrays, self.config.checkpoint_replay)


LOG_PROB_OF = ("action", "normalized_action")


def log_prob_of_setting():
    """The ``log_prob_of`` setting of the squashed-Gaussian algorithms (SAC, SAC v1)."""
    return setting("action",
                   "the density log pi is taken of: 'action' (a in [low, high], minipg's) or "
                   "'normalized_action' (tanh u in [-1, 1], stable-baselines3's), higher by "
                   "sum log((high - low)/2); target_entropy 'auto' (-dim(A)) then means "
                   "another temperature", choices=LOG_PROB_OF)


class TanhGaussianPolicyMixin:
    r"""Acting with the squashed Gaussian policy (SAC, SAC v1): a ~ pi(.|s) when exploring,
    the mode low + (tanh(mean) + 1) scale when deterministic.

    :meth:`sample_with_log_prob` gives reparameterised actions and their
    log-density in the convention ``log_prob_of`` chooses.  With u the
    pre-squash Gaussian sample, y = tanh u in [-1, 1] the normalised action
    and a = low + (y + 1) s, s = (high - low)/2, the change of variables
    a = a(y) gives

    .. math::

        \log p_Y(y) = \log p_A(a) + \sum_i \log s_i :

    ``"action"`` (the default, minipg's) is log p_A, the density of the
    action the environment receives (:class:`minipg.distributions.TanhGaussian`);
    ``"normalized_action"`` is log p_Y, the density of the action rescaled
    to [-1, 1], which stable-baselines3 uses (it rescales every box to
    [-1, 1]).  They differ by the constant sum_i log s_i (log 2 per
    dimension on Pendulum's [-2, 2]); a constant in log pi leaves every
    gradient of the policy unchanged but shifts the soft values by
    alpha sum log s and the entropy the temperature is tuned to: the
    automatic target -dim(A) asks for a different temperature in the two.
    """

    def _build_actor(self):
        cfg = self.config
        self.low, self.high, _, scale = action_box(self.action_space, self.dtype,
                                                   bounded_only=True, owner=self.name)
        self.actor = TanhGaussianActor(self.obs_dim, self.action_dim, cfg.hidden, cfg.activation,
                                       self.low, self.high, self.rng, self.dtype)
        self.actor_opt = Adam(self.actor.parameters(), lr=cfg.actor_lr)
        # log p_Y(y) - log p_A(a) = sum_i log s_i, added only for 'normalized_action'
        self.log_prob_shift = (self.dtype.type(np.sum(np.log(scale)))
                               if getattr(cfg, "log_prob_of", "action") == "normalized_action"
                               else None)

    def sample_with_log_prob(self, obs, eps):
        """(a~, log pi(a~|s)) reparameterised at noise ``eps``, both Tensors; log pi of the
        action or of the normalised action, as ``log_prob_of`` says."""
        if type(self.actor) is TanhGaussianActor:         # the fused op (same bits); a
            # subclass may override forward, so it takes the general path
            actions, log_prob = self.actor.rsample(obs, eps)
        else:                                             # any policy giving a TanhGaussian
            actions, log_prob = self.actor(obs).rsample(eps=eps)
        if self.log_prob_shift is not None:
            log_prob = log_prob + self.log_prob_shift        # log p_Y = log p_A + sum log s
        return actions, log_prob

    def act(self, obs, deterministic=False):
        with no_grad():
            dist = self.actor(np.asarray(obs, dtype=self.dtype))
            return dist.mode() if deterministic else dist.sample(self.rng)

    def explore(self, obs):
        return self.act(obs)


def make_exploration_noise(kind, sigma, n_envs, action_dim, rng, ou_theta=0.15, ou_dt=1e-2):
    """Gaussian or Ornstein-Uhlenbeck noise of shape (n_envs, action_dim), or None."""
    size = (int(n_envs), int(action_dim))
    if kind == "gaussian":
        return GaussianNoise(sigma, size, rng=rng)
    if kind == "ou":
        return OrnsteinUhlenbeckNoise(size, theta=ou_theta, sigma=sigma, dt=ou_dt, rng=rng)
    if kind == "none":
        return None
    raise ValueError(f"exploration noise {kind!r}; accepted: 'gaussian', 'ou', 'none'")


def noisy_actions(mu, noise, half_width, low, high, dtype):
    """clip(mu + half_width * noise(), low, high), the exploring actions (``noise`` None:
    mu itself; ``low`` None: no clipping)."""
    if noise is None:
        return mu
    actions = mu + half_width * noise().astype(dtype)
    return actions if low is None else np.clip(actions, low, high)


def restart_noise(noise, done):
    """OU noise restarts (x0 = mu = 0) in the environments whose episode ended."""
    if isinstance(noise, OrnsteinUhlenbeckNoise):
        noise.state[done] = 0.0


class DeterministicPolicyMixin:
    """Acting and exploring with mu(s) plus Gaussian or OU noise (DDPG, TD3).

    The noise is in units of the box's half-width: a = clip(mu(s) + scale *
    noise, low, high), so ``noise_std = 0.1`` is 10% of the half-range, as
    stable-baselines3's noise on its [-1, 1]-rescaled actions.  OU noise keeps
    one state per environment, reset where an episode ends.
    """

    def _build(self, n_critics):
        """Actor, ``n_critics`` critics (:meth:`make_critic`), their targets, Adam for each,
        the noise."""
        cfg = self.config
        self.low, self.high, self.center, self.scale = action_box(self.action_space, self.dtype,
                                                                  owner=self.name)
        self.actor = DeterministicActor(self.obs_dim, self.action_dim, cfg.hidden,
                                        cfg.activation, self.low, self.high, self.rng,
                                        self.dtype)
        self.critic = self.make_critic(n_critics)
        self.actor_target = self.actor.copy()          # theta^mu' <- theta^mu
        self.critic_target = self.critic.copy()        # theta^Q' <- theta^Q
        self.actor_opt = Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = Adam(self.critic.parameters(), lr=cfg.critic_lr,
                               weight_decay=getattr(cfg, "critic_weight_decay", 0.0))
        self._init_noise()

    def make_critic(self, n_critics):
        """Q(s, a): ``n_critics`` MLP critics in one :class:`CriticEnsemble`."""
        cfg = self.config
        return CriticEnsemble(self.obs_dim, self.action_dim, cfg.hidden, cfg.activation,
                              n_critics, self.rng, self.dtype)

    def modules(self):
        return {"actor": self.actor, "critic": self.critic, "actor_target": self.actor_target,
                "critic_target": self.critic_target}

    def optimizers(self):
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def _init_noise(self):
        cfg = self.config
        self.noise = make_exploration_noise(cfg.noise, cfg.noise_std, cfg.n_envs,
                                            self.action_dim, self.rng, cfg.ou_theta, cfg.ou_dt)

    def _clip(self, actions):
        return actions if self.low is None else np.clip(actions, self.low, self.high)

    def _half_width(self):
        return 1.0 if self.scale is None else self.scale

    def act(self, obs, deterministic=False):
        with no_grad():
            mu = self.actor(np.asarray(obs, dtype=self.dtype)).data
        if deterministic or self.config.noise == "none":
            return mu
        noise = self.config.noise_std * self.normal(mu.shape)
        return self._clip(mu + self._half_width() * noise)

    def explore(self, obs):
        with no_grad():
            mu = self.actor(obs).data
        return noisy_actions(mu, self.noise, self._half_width(), self.low, self.high,
                             self.dtype)

    def on_episode_end(self, done):
        restart_noise(self.noise, done)

    def extra_state(self):
        state = super().extra_state()
        if isinstance(self.noise, OrnsteinUhlenbeckNoise):
            state["ou_state"] = self.noise.state.copy()
        return state

    def load_extra_state(self, arrays):
        super().load_extra_state(arrays)
        if isinstance(self.noise, OrnsteinUhlenbeckNoise):
            state = np.asarray(arrays["ou_state"], dtype=np.float64)
            if state.shape != self.noise.state.shape:
                raise ValueError(f"OU noise state of shape {state.shape}, this run "
                                 f"{self.noise.state.shape}")
            self.noise.state = state.copy()
