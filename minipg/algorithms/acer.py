r"""ACER: actor-critic with experience replay, Retrace, truncated importance sampling with
bias correction and the efficient trust region, for discrete and continuous actions.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "ACER".
Paper: Z. Wang, V. Bapst, N. Heess, V. Mnih, R. Munos, K. Kavukcuoglu,
N. de Freitas, "Sample Efficient Actor-Critic with Experience Replay", ICLR
2017: Algorithm 1 (the master loop), Algorithm 2 (discrete ACER), Algorithm
3 (continuous ACER); R. Munos et al., "Safe and Efficient Off-Policy
Reinforcement Learning", NeurIPS 2016 (Retrace).  The mathematics is in
:mod:`minipg.estimators.acer` and :mod:`minipg.kernels.retrace`; formulas in
``verification/FORMULAS.md "Retrace and ACER"``.

Each iteration (Algorithm 1, synchronous over N environments, as OpenAI
baselines' ``acer``):

1. act for k = ``n_steps`` steps in each environment with the current policy
   mu = pi, recording x_t, a_t, r_t, both episode-end flags, the true next
   observation x'_t and mu's full distribution mu(.|x_t) (its probabilities,
   or its Gaussian mean and log-std); store the N segments in the replay
   (:class:`minipg.buffers.segment_replay.SegmentReplay`);
2. one on-policy update on those segments (rho = 1);
3. n ~ Poisson(``replay_ratio``) updates, each on N segments (``replay_batch``
   where set) drawn uniformly from the replay, once it holds ``replay_start`` steps.

One update on segments (T, B) (Algorithm 2, discrete):

* pi(.|x) = softmax(policy(x)), Q(x, .) = critic(x) over all actions,
  V(x) = sum_a pi(a|x) Q(x, a); rho = pi(a|x) / mu(a|x);
* Q^ret by the backward recursion with traces rho_bar = min(1, rho), no
  bootstrap at a termination, V(x') at a truncation and the segment's end
  (eq. 5);
* g = per-sample gradient, with respect to the statistics phi = pi(.|x), of
  min(c, rho)(Q^ret - V) log pi(a|x) + sum_a [1 - c/rho(a)]_+ pi(a|x)(Q(x, a) -
  V) log pi(a|x) + beta H(pi(.|x)) (eq. 9 and the entropy bonus);
* the efficient trust region (eqs. 11-13): k = grad_phi KL(pi_avg || pi) =
  -pi_avg / pi, z* = g - max(0, (k^T g - delta) / ||k||^2) k, back-propagated
  through the policy network (``trust_region=false``: z* = g);
* the critic: 1/2 (Q^ret - Q(x, a))^2, weighted by ``value_coef``;
* one optimizer step on both networks (gradient clipped to ``max_grad_norm``);
  then the average policy network phi_avg <- alpha phi_avg + (1 - alpha) phi.

Continuous actions (Algorithm 3): a Gaussian policy N(mean(x), diag(exp(2
log_std))) with a state-independent log-std, its statistics (mean, log-std)
the trust region's phi; the stochastic dueling network Q~(x, a) = V(x) +
A(x, a) - 1/n sum_i A(x, u_i), u_i ~ pi (n = ``n_dueling_samples``); traces
c_i = min(1, rho_i^(1/d)) for Q^ret, 1 for Q^opc; the policy gradient uses
Q^opc in the truncated term and one action a' ~ pi in the bias correction,
[1 - c/rho']_+ (Q~(x, a') - V) grad log pi(a'|x); the critic descends
1/2 (Q^ret - Q~)^2 + 1/2 (V + c_i (Q^ret - Q~) - V)^2 (the target held
constant), Algorithm 3's update of theta_v.

Resume: the replay is saved in checkpoints (``checkpoint_replay``, on by
default: an ACER replay of the presets' size is a few megabytes), so a
resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autodiff import grad, no_grad, ops
from ..buffers.segment_replay import SegmentBatch, SegmentReplay
from ..distributions import DiagGaussian
from ..estimators import acer as acer_estimators
from ..nn import MLP
from ..optim import Adam, RMSprop, SoftUpdates, clip_grad_norm_or_measure
from . import ALGORITHMS
from .base import (Algorithm, BaseConfig, ConfigError, load_replay_state, replay_state,
                   setting)
from .networks import CategoricalPolicy, GaussianPolicy, ValueNet
from .onpolicy_common import linear_decay

__all__ = ["ACERConfig", "ACER"]


@dataclass
class ACERConfig(BaseConfig):
    """Settings of ACER (defaults: OpenAI baselines' acer, and Wang et al. 2017)."""
    total_steps: int = setting(100_000, "environment steps to train for", low=1)
    n_envs: int = setting(4, "parallel environments N", low=1, high=1024)
    n_steps: int = setting(20, "k, the segment length: steps per environment per on-policy "
                           "update (and per replayed segment)", low=1, high=10_000)
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0, low_open=True)
    hidden: tuple[int, ...] = setting((64, 64), "hidden layer sizes of every network")
    activation: str = setting("tanh", "hidden activation", choices=("tanh", "relu"))
    optimizer: str = setting("adam", "'adam' or 'rmsprop' (baselines')",
                             choices=("adam", "rmsprop"))
    lr: float = setting(7e-4, "learning rate", low=0.0, low_open=True)
    anneal_lr: bool = setting(False, "decay the learning rate linearly to 0 over total_steps")
    optimizer_eps: float = setting(1e-5, "epsilon of Adam / RMSprop", low=0.0)
    rmsprop_alpha: float = setting(0.99, "RMSprop decay of the squared-gradient average",
                                   low=0.0, high=1.0)
    replay_ratio: float = setting(4.0, "mean of the Poisson number of replayed updates per "
                                  "on-policy update (0: on-policy ACER)", low=0.0, high=1000.0)
    buffer_size: int = setting(50_000, "replay capacity in environment steps (whole segments "
                               "of n_steps are kept)", low=1)
    replay_start: int = setting(1_000, "steps stored before replayed updates begin", low=0)
    replay_batch: int = setting(0, "segments per replayed update (0: n_envs, as many as an "
                                "on-policy update has)", low=0, high=100_000)
    c: float = setting(10.0, "truncation constant c of the importance weights min(c, rho)",
                       low=0.0, low_open=True)
    trust_region: bool = setting(True, "the efficient trust region against the average policy")
    delta: float = setting(1.0, "trust-region radius delta: k^T z <= delta", low=0.0,
                           low_open=True)
    alpha: float = setting(0.99, "average policy: phi_avg <- alpha phi_avg + (1 - alpha) phi",
                           low=0.0, high=1.0, high_open=True)
    entropy_coef: float = setting(0.01, "beta, weight of the entropy bonus", low=0.0)
    value_coef: float = setting(0.5, "weight of the critic's loss", low=0.0)
    max_grad_norm: float = setting(10.0, "clip the gradient to this global L2 norm (0: off)",
                                   low=0.0)
    n_dueling_samples: int = setting(5, "continuous: n, actions u_i ~ pi in the stochastic "
                                     "dueling network", low=1, high=1000)
    init_log_std: float = setting(0.0, "continuous: initial log-std of the Gaussian policy")
    checkpoint_replay: bool = setting(True, "save the replay in checkpoints (exact resume)")
    log_every: int = setting(2_000, "environment steps between progress rows", low=1)

    def check(self):
        if self.buffer_size < self.n_steps:
            raise ConfigError(f"settings 'buffer_size' ({self.buffer_size}) and 'n_steps' "
                              f"({self.n_steps}): the replay keeps whole segments of n_steps; "
                              "accepted: buffer_size >= n_steps")


@ALGORITHMS.register("acer")
class ACER(Algorithm):
    """Actor-critic with experience replay; see the module docstring."""

    name = "acer"
    Config = ACERConfig
    action_kinds = ("discrete", "continuous")
    default_env = "CartPole-v1"
    description = ("actor-critic with experience replay: Retrace, truncation with bias "
                   "correction, efficient trust region (Wang et al. 2017)")
    presets = {
        # CartPole-v1: no entropy bonus and 128-unit layers (tuned on seeds 0-3), lr 1e-3
        # and replay ratio 8 (seeds 20-23), segments of 10 steps (a third stage), then a
        # replay of 5,000 steps, not 50,000: fresher segments, importance weights nearer 1
        # (a fourth stage on seeds 100-107: median steps to a training return of 475 24k
        # against 57k); verification/results/acer_learning.md and acer_stage4.md say how
        "CartPole-v1": {"total_steps": 100_000, "entropy_coef": 0.0, "hidden": (128, 128),
                        "lr": 1e-3, "replay_ratio": 8.0, "n_steps": 10, "buffer_size": 5_000},
        "Acrobot-v1": {"total_steps": 100_000, "entropy_coef": 0.0, "hidden": (128, 128)},
        "Pendulum-v1": {"total_steps": 200_000, "gamma": 0.95, "hidden": (128, 128),
                        "init_log_std": -0.5},
        "InvertedPendulum-v5": {"total_steps": 100_000, "init_log_std": -0.5},
    }
    metric_names = ("loss", "policy_objective", "critic_loss", "entropy", "rho_mean",
                    "trust_region_scale", "grad_norm", "q_ret_mean")

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        cfg = config
        self.kind = "discrete" if hasattr(action_space, "n") else "continuous"
        obs_dim, n = self.obs_dim, self.n_actions
        if self.kind == "discrete":
            self.policy = CategoricalPolicy(obs_dim, n, cfg.hidden, cfg.activation, self.rng,
                                            self.dtype)
            self.critic = MLP([obs_dim, *cfg.hidden, n], activation=cfg.activation,
                              output_gain=1.0, rng=self.rng, dtype=self.dtype)  # Q(x, .)
            critics = {"critic": self.critic}
            stat_dim, action_shape, action_dtype = n, (), np.int64
        else:
            self.policy = GaussianPolicy(obs_dim, n, cfg.hidden, cfg.activation, self.rng,
                                         self.dtype, cfg.init_log_std)
            self.value = ValueNet(obs_dim, cfg.hidden, cfg.activation, self.rng, self.dtype)
            self.advantage = MLP([obs_dim + n, *cfg.hidden, 1], activation=cfg.activation,
                                 output_gain=1.0, rng=self.rng, dtype=self.dtype)  # A(x, a)
            critics = {"value": self.value, "advantage": self.advantage}
            stat_dim, action_shape, action_dtype = 2 * n, (n,), self.dtype
        self.avg_policy = self.policy.copy()                        # phi_avg <- phi
        self._modules = {"policy": self.policy, **critics, "avg_policy": self.avg_policy}
        trained = [self.policy, *critics.values()]
        if cfg.optimizer == "adam":
            self.optimizer = Adam(trained, lr=cfg.lr, eps=cfg.optimizer_eps)
        else:
            self.optimizer = RMSprop(trained, lr=cfg.lr, alpha=cfg.rmsprop_alpha,
                                     eps=cfg.optimizer_eps)
        self.buffer = SegmentReplay(max(1, cfg.buffer_size // cfg.n_steps), cfg.n_steps,
                                    obs_dim, action_shape, stat_dim, self.dtype, action_dtype)
        self.soft_updates = SoftUpdates()
        self.updates = 0
        self.replayed = 0

    # --- the run loop's interface ----------------------------------------------------
    def modules(self):
        return dict(self._modules)

    def optimizers(self):
        return {"optimizer": self.optimizer}

    def act(self, obs, deterministic=False):
        with no_grad():
            dist = self.policy(np.asarray(obs, dtype=self.dtype))
            return dist.mode() if deterministic else dist.sample(self.rng)

    def behaviour(self, obs):
        """(actions a ~ mu = pi, mu's statistics (N, stat_dim)) for observations, no gradient."""
        with no_grad():
            dist = self.policy(obs)
            actions = dist.sample(self.rng)
            if self.kind == "discrete":
                return actions, dist.probs.data                        # mu(.|x), all actions
            log_std = np.broadcast_to(dist.log_std.data, dist.mean.shape)
            return actions, np.concatenate([dist.mean.data, log_std], axis=-1)

    def collect(self, collector):
        """k steps of every environment as one batch of N segments (time first)."""
        T, N = self.config.n_steps, collector.n_envs
        seg = {"obs": np.zeros((T, N, self.obs_dim), self.dtype),
               "actions": np.zeros((T, N) + self.buffer.action_shape, self.buffer.action_dtype),
               "rewards": np.zeros((T, N), self.dtype),
               "terminated": np.zeros((T, N), bool), "truncated": np.zeros((T, N), bool),
               "next_obs": np.zeros((T, N, self.obs_dim), self.dtype),
               "mu": np.zeros((T, N, self.buffer.stat_dim), self.dtype)}
        for t in range(T):
            obs = collector.obs
            actions, mu = self.behaviour(obs)
            step = collector.step(actions)
            seg["obs"][t], seg["actions"][t], seg["mu"][t] = obs, step.actions, mu
            seg["rewards"][t], seg["next_obs"][t] = step.rewards, step.next_obs
            seg["terminated"][t], seg["truncated"][t] = step.terminated, step.truncated
        return seg

    def learn(self, collector):
        cfg = self.config
        if cfg.anneal_lr:
            self.optimizer.lr = linear_decay(cfg.lr, collector.steps, cfg.total_steps)
        seg = self.collect(collector)                                   # step 1
        self.buffer.add(**seg)
        batch = SegmentBatch(**seg, indices=np.arange(collector.n_envs))
        metrics = self.update(batch)                                    # step 2: on-policy
        if self.buffer.transitions >= cfg.replay_start and cfg.replay_ratio > 0:
            for _ in range(int(self.rng.poisson(cfg.replay_ratio))):    # step 3: replay
                metrics = self.update(self.buffer.sample(self.replay_segments(collector),
                                                         self.rng))
                self.replayed += 1
        metrics["updates"] = float(self.updates)
        metrics["replayed_updates"] = float(self.replayed)
        return metrics

    def replay_segments(self, collector):
        """B, the number of segments in one replayed update: ``replay_batch``, or N."""
        return self.config.replay_batch or collector.n_envs

    # --- one update on segments (Algorithms 2 and 3) -----------------------------------
    def bootstrap_values(self, batch, value_fn):
        """V(x'_t) where step t is truncated or ends the segment (not terminated); 0 elsewhere
        (the kernel reads no other entry)."""
        T = batch.rewards.shape[0]
        needed = batch.truncated.copy()
        needed[T - 1] = True
        needed &= ~batch.terminated
        out = np.zeros(batch.rewards.shape, dtype=self.dtype)
        if needed.any():
            with no_grad():
                out[needed] = value_fn(batch.next_obs[needed])
        return out

    def discrete_values(self, obs):
        """V(x) = sum_a pi(a|x) Q(x, a), no gradient."""
        probs = self.policy(obs).probs.data
        return np.sum(probs * self.critic(obs).data, axis=-1)

    def update(self, batch):
        if self.kind == "discrete":
            loss, metrics = self.discrete_loss(batch)
        else:
            loss, metrics = self.continuous_loss(batch)
        self.optimizer.zero_grad()
        loss.backward()
        cfg = self.config
        metrics["grad_norm"] = clip_grad_norm_or_measure(self.optimizer, cfg.max_grad_norm)
        self.optimizer.step()
        self.soft_updates(self.avg_policy, self.policy, 1.0 - cfg.alpha)   # phi_avg update
        self.updates += 1
        metrics["loss"] = float(loss.data)
        return {k: metrics[k] for k in self.metric_names}

    def project(self, g, k):
        """z* (eq. 13) and the mean projection scale; z* = g without the trust region."""
        if not self.config.trust_region:
            return g, 0.0
        z, scale = acer_estimators.trust_region_projection(g, k, self.config.delta)
        return z, float(np.mean(scale))

    def discrete_loss(self, batch):
        """The loss of Algorithm 2 on segments (T, B): its gradient is -z* back-propagated
        through the policy plus value_coef times the critic's gradient."""
        cfg, est = self.config, acer_estimators
        probs_t, q_all, held = self.discrete_pieces(batch)
        probs = held["probs"]
        g = grad(lambda stats: self.discrete_objective(stats, held))(probs.copy())   # g_i
        with no_grad():
            avg_probs = self.avg_policy(held["obs"]).probs.data
        z, scale = self.project(g, est.categorical_kl_gradient(avg_probs, probs))  # eq. 11-13
        policy_objective = est.statistics_surrogate(probs_t, z)
        actions = held["actions"]
        q_loss = est.critic_loss(ops.gather(q_all, actions[:, None], axis=-1)[:, 0],
                                 held["q_ret"])
        loss = -policy_objective + cfg.value_coef * q_loss
        entropy = float(np.mean(-np.sum(probs * np.log(probs), axis=-1)))
        return loss, {"policy_objective": float(policy_objective.data),
                      "critic_loss": float(q_loss.data), "entropy": entropy,
                      "rho_mean": float(held["rho"].mean()), "trust_region_scale": scale,
                      "q_ret_mean": float(held["q_ret"].mean())}

    def discrete_pieces(self, batch):
        """(pi(.|x) and Q(x, .) as Tensors on the tape, the held-constant quantities): rows
        t B + b; ``held`` has obs, actions, mu, probs, q, values, rho and q_ret (eq. 5)."""
        cfg, est = self.config, acer_estimators
        T, B = batch.rewards.shape
        n = T * B
        obs = batch.obs.reshape(n, -1)
        actions = batch.actions.reshape(n)
        probs_t = self.policy(obs).probs                       # phi: the statistics, on tape
        q_all = self.critic(obs)                               # Q(x, .), on tape
        probs, q = probs_t.data, q_all.data
        values = np.sum(probs * q, axis=-1)                    # V = sum_a pi Q
        mu = batch.mu.reshape(n, -1)
        rows = np.arange(n)
        rho = probs[rows, actions] / mu[rows, actions]
        q_ret = est.retrace_targets(batch.rewards, q[rows, actions].reshape(T, B),
                                    values.reshape(T, B),
                                    self.bootstrap_values(batch, self.discrete_values),
                                    est.trace_weights(rho).reshape(T, B), batch.terminated,
                                    batch.truncated, cfg.gamma).reshape(n)   # eq. 5
        return probs_t, q_all, {"obs": obs, "actions": actions, "mu": mu, "probs": probs,
                                "q": q, "values": values, "rho": rho, "q_ret": q_ret}

    def discrete_objective(self, stats, held):
        """sum_i of min(c, rho)(Q^ret - V) log f(a_i) + sum_a [1 - c/rho(a)]_+ f (Q - V) log f
        + beta H(f) at the statistics ``stats`` = f (N, A), the rest held constant (eq. 9):
        its gradient in row i is g_i."""
        cfg, est = self.config, acer_estimators
        log_probs = ops.log(stats)
        log_prob = ops.gather(log_probs, held["actions"][:, None], axis=-1)[:, 0]
        gain = (est.truncated_term(log_prob, held["rho"], held["q_ret"], held["values"], cfg.c)
                + est.correction_term(log_probs, held["probs"], held["mu"], held["q"],
                                      held["values"], cfg.c))
        entropy = -ops.sum(stats * log_probs, axis=-1)
        return ops.sum(gain + cfg.entropy_coef * entropy)

    def continuous_loss(self, batch):
        """The loss of Algorithm 3 on segments (T, B), with the stochastic dueling network."""
        cfg, est = self.config, acer_estimators
        stats_t, values_t, q_tilde_t, held = self.continuous_pieces(batch)
        stats, d = held["stats"], self.n_actions
        g = grad(lambda leaf: self.continuous_objective(leaf, held))(stats.copy())
        with no_grad():
            avg = self.avg_policy(held["obs"])
            k = est.gaussian_kl_gradient(avg.mean.data, avg.log_std.data, stats[:, :d],
                                         stats[:, d:])
        z, scale = self.project(g, k)
        policy_objective = est.statistics_surrogate(stats_t, z)
        v_target = est.dueling_value_target(held["values"], held["q_ret"], q_tilde_t.data,
                                            held["traces"])
        q_loss = est.critic_loss(q_tilde_t, held["q_ret"]) + est.critic_loss(values_t, v_target)
        loss = -policy_objective + cfg.value_coef * q_loss
        entropy = float(np.mean(np.sum(stats[:, d:], axis=-1))) + d * 0.5 * (1 + np.log(2 * np.pi))
        return loss, {"policy_objective": float(policy_objective.data),
                      "critic_loss": float(q_loss.data), "entropy": entropy,
                      "rho_mean": float(held["rho"].mean()), "trust_region_scale": scale,
                      "q_ret_mean": float(held["q_ret"].mean())}

    def continuous_pieces(self, batch):
        """(phi = [mean, log_std] (N, 2d), V, Q~ as Tensors on the tape, the held-constant
        quantities: actions, a' ~ pi, rho, rho', Q~(x, a'), V, traces, Q^ret, Q^opc)."""
        cfg, est = self.config, acer_estimators
        T, B = batch.rewards.shape
        n, d = T * B, self.n_actions
        obs = batch.obs.reshape(n, -1)
        actions = batch.actions.reshape(n, d)
        mu = batch.mu.reshape(n, 2 * d)
        dist = self.policy(obs)
        stats_t = ops.concatenate([dist.mean, dist.log_std + np.zeros((n, d), self.dtype)],
                                  axis=-1)                     # phi = (mean, log_std), on tape
        stats = stats_t.data
        behaviour = DiagGaussian(mu[:, :d], mu[:, d:])
        with no_grad():
            current = DiagGaussian(stats[:, :d], stats[:, d:])
            # rho = pi / mu from log-densities; a log-ratio above 690 (rho > 1e300, where
            # min(c, rho) = c and [1 - c/rho]_+ = 1 to double precision) is capped there
            # so that exp does not overflow to inf
            rho = np.exp(np.minimum(current.log_prob(actions).data
                                    - behaviour.log_prob(actions).data, 690.0))
            sampled = current.sample(self.rng)                                   # a' ~ pi
            rho_sampled = np.exp(np.minimum(current.log_prob(sampled).data
                                            - behaviour.log_prob(sampled).data, 690.0))
            u = current.sample(self.rng, (cfg.n_dueling_samples,))               # u_i ~ pi
        values_t = self.value(obs)
        adv_taken = self.advantage(ops.concatenate([obs, actions], axis=-1)).reshape(-1)
        tiled = np.broadcast_to(obs, (cfg.n_dueling_samples,) + obs.shape)
        adv_u = self.advantage(ops.concatenate([tiled, u], axis=-1)).reshape(
            cfg.n_dueling_samples, n)
        q_tilde_t = est.stochastic_dueling_q(values_t, adv_taken, adv_u)      # eq. 14
        values, q_tilde = values_t.data, q_tilde_t.data
        with no_grad():
            adv_sampled = self.advantage(np.concatenate([obs, sampled], axis=-1)).data
        q_sampled = values + adv_sampled.reshape(-1) - adv_u.data.mean(axis=0)   # Q~(x, a')
        traces = est.trace_weights(rho, d)                    # c_i = min(1, rho^(1/d))
        next_values = self.bootstrap_values(batch, lambda x: self.value(x).data)
        shape = (T, B)
        targets = [est.retrace_targets(batch.rewards, q_tilde.reshape(shape),
                                       values.reshape(shape), next_values, c.reshape(shape),
                                       batch.terminated, batch.truncated, cfg.gamma).reshape(n)
                   for c in (traces, np.ones(n))]             # Q^ret, Q^opc
        return stats_t, values_t, q_tilde_t, {
            "obs": obs, "actions": actions, "sampled": sampled, "stats": stats, "rho": rho,
            "rho_sampled": rho_sampled, "q_sampled": q_sampled, "values": values,
            "traces": traces, "q_ret": targets[0], "q_opc": targets[1]}

    def continuous_objective(self, stats, held):
        """sum_i of min(c, rho)(Q^opc - V) log pi(a_i) + [1 - c/rho']_+ (Q~(x, a') - V)
        log pi(a') + beta H(pi) at the statistics ``stats`` = [mean, log_std] (N, 2d), the
        rest held constant (eq. 12): its gradient in row i is g_i."""
        cfg, est, d = self.config, acer_estimators, self.n_actions
        pi = DiagGaussian(stats[:, :d], stats[:, d:])
        gain = (est.truncated_term(pi.log_prob(held["actions"]), held["rho"], held["q_opc"],
                                   held["values"], cfg.c)
                + est.sampled_correction_term(pi.log_prob(held["sampled"]),
                                              held["rho_sampled"], held["q_sampled"],
                                              held["values"], cfg.c))
        return ops.sum(gain + cfg.entropy_coef * pi.entropy())

    # --- checkpoints ------------------------------------------------------------------
    def extra_state(self):
        state = {"updates": np.asarray(self.updates), "replayed": np.asarray(self.replayed)}
        state.update(replay_state(self.buffer, self.config.checkpoint_replay))
        return state

    def load_extra_state(self, arrays):
        self.updates = int(arrays["updates"])
        self.replayed = int(arrays["replayed"])
        load_replay_state(self.buffer, arrays, self.config.checkpoint_replay)
