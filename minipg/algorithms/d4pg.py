r"""D4PG: distributed distributional deep deterministic policy gradient (Algorithm 1).

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "D4PG",
Algorithm 1; G. Barth-Maron, M. W. Hoffman, D. Budden, W. Dabney, D. Horgan,
D. TB, A. Muldal, N. Heess, T. Lillicrap, "Distributed Distributional
Deterministic Policy Gradients", ICLR 2018; M. G. Bellemare, W. Dabney,
R. Munos, ICML 2017 (the categorical critic and its projection); T. Schaul
et al., "Prioritized Experience Replay", ICLR 2016.

DDPG with four changes (the document's items (1)-(4)):

1. a distributional critic Z_w(s, a): a categorical distribution over
   ``atoms`` fixed atoms on [v_min, v_max] (:class:`CategoricalCritic`, the
   logits of an MLP on [s, a]); Q_w = E[Z_w];
2. N-step transitions (:mod:`minipg.buffers.nstep`): Algorithm 1, line 6,
   Y_i = Phi(sum_{n<m} gamma^n r_{i+n} + gamma^m (1 - d) Z_w'(x_{i+m},
   pi_theta'(x_{i+m}))), m = N unless the episode ended first;
3. K actors (``actors``), each with its own environment and Gaussian
   exploration a = pi_theta(x) + eps N(0, 1) (eps = ``noise_std`` times the
   box's half-width), feeding one replay (:mod:`minipg.algorithms.d4pg_actors`);
4. prioritized replay (:mod:`minipg.buffers.prioritized`): P(i) proportional
   to p_i^alpha, importance weights (R P(i))^-beta normalised by the batch's
   largest, beta annealed linearly from ``priority_beta`` to 1 over
   ``priority_beta_steps`` environment steps (a setting, not the budget, so
   that a resumed run with a new budget continues exactly),
   p_i the row's cross-entropy loss (plus ``priority_eps``).

Each update (Algorithm 1, lines 5-10; the estimators are
:mod:`minipg.estimators.d4pg`):

5. sample M rows with priority; 6. the projected target Y_i under the
TARGET actor and critic; 7. critic: a DESCENT step on (1/M) sum_i w_i
H(Y_i, Z_w(x_i, a_i)) (the document writes w <- w + beta delta_w: a slip);
actor: an ascent step on (1/M) sum_i E[Z_w(x_i, pi_theta(x_i))], whose
gradient is the document's pi's Jacobian times E[grad_a Z_w]; 8. Adam
steps; 9. every ``t_target`` updates the targets are copied (theta', w')
<- (theta, w) (``target_update=hard``, Algorithm 1; ``polyak`` instead
moves them by ``tau`` every update, as DDPG does); 10. every ``t_actors``
updates the actor's weights are copied to the K actors.

``actors = 1`` (the default) acts in this process through the run loop's
collector, one environment step per ``learn`` call, deterministic and
resumed exactly (with ``checkpoint_replay=true``); the N-step windows still
open are always checkpointed.  ``actors = K >= 2`` runs K worker processes
(``backend=process``) or Ray actors (``backend=ray``): each ``learn`` call
adds what the actors sent and makes the updates due, so that updates per
transition stay ``gradient_steps / (train_freq * n_envs)`` as in the
one-actor loop (whose ``train_freq`` counts vector steps of ``n_envs``
transitions each);
such a run is not reproducible step for step (the actors race), and a
resumed one restarts the actors' episodes.

d (in Y) is termination only: a truncation bootstraps from the true final
state.  Presets: Pendulum-v1 with the stable-baselines3 zoo's DDPG/TD3
settings (gamma 0.98, 10,000 warm-up steps, noise 0.1, learning rates 1e-3,
layers 400-300, float32), polyak target updates (tau 0.005, as DDPG's preset)
and a support [-800, 0] (Pendulum's rewards lie in [-16.3, 0], so its values
lie in [-16.3/(1 - 0.98), 0] = [-815, 0]); Hopper-v5 and HalfCheetah-v5 with
the zoo's MuJoCo TD3 settings, the paper's hard target copies every 100
updates and the support [-150, 150] of the paper's continuous-control tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autodiff import no_grad, ops
from ..buffers.nstep import NStepAssembler
from ..buffers.prioritized import PrioritizedReplayBuffer
from ..estimators import d4pg as d4pg_estimators
from ..nn import MLP, Module
from ..optim import polyak_update
from . import ALGORITHMS
from .base import ConfigError, setting
from .offpolicy_common import (ZOO_MUJOCO_DETERMINISTIC, ZOO_PENDULUM_DETERMINISTIC,
                               DeterministicPolicyConfig, DeterministicPolicyMixin,
                               OffPolicyAlgorithm, frozen)

__all__ = ["D4PGConfig", "D4PG", "CategoricalCritic"]


class CategoricalCritic(Module):
    r"""Z_w(s, a): the logits (N, atoms) of a categorical distribution over the support,
    one MLP on [s, a] (PyTorch's nn.Linear initialisation, as the other critics)."""

    def __init__(self, obs_dim, action_dim, hidden, activation, n_atoms, rng, dtype):
        super().__init__()
        self.net = MLP([int(obs_dim) + int(action_dim), *hidden, int(n_atoms)],
                       activation=activation, init="fan_in_uniform", rng=rng, dtype=dtype)

    def forward(self, obs, actions):
        return self.net(ops.concatenate([obs, actions], axis=-1))      # logits (N, atoms)


@dataclass
class D4PGConfig(DeterministicPolicyConfig):
    """Settings of D4PG (defaults: the paper's, Barth-Maron et al. 2018, section 4)."""
    actor_lr: float = setting(1e-4, "Adam learning rate alpha of the actor", low=0.0,
                              low_open=True)
    critic_lr: float = setting(1e-4, "Adam learning rate beta of the critic", low=0.0,
                               low_open=True)
    noise_std: float = setting(0.3, "exploration constant epsilon: a = pi(x) + epsilon N(0, 1), "
                               "in units of the box's half-width", low=0.0)
    atoms: int = setting(51, "number of atoms of the categorical critic's support", low=2,
                         high=10_000)
    v_min: float = setting(-150.0, "lowest atom of the support (below v_max)")
    v_max: float = setting(150.0, "highest atom of the support (above v_min)")
    n_step: int = setting(5, "N of the N-step returns", low=1, high=10_000)
    priority_alpha: float = setting(0.6, "priority exponent alpha: P(i) ~ p_i^alpha (0: uniform "
                                    "replay)", low=0.0, high=100.0)
    priority_beta: float = setting(0.4, "initial importance exponent beta, annealed linearly to "
                                   "1 over priority_beta_steps", low=0.0, high=1.0)
    priority_beta_steps: int = setting(20_000, "environment steps over which beta rises to 1 "
                                       "(the run's budget, as Schaul et al. anneal)", low=1)
    priority_eps: float = setting(1e-6, "added to the cross-entropy to make a priority",
                                  low=0.0, low_open=True)
    target_update: str = setting("hard", "target networks: 'hard' copies every t_target "
                                 "updates (Algorithm 1), 'polyak' moves them by tau every "
                                 "update", choices=("hard", "polyak"))
    t_target: int = setting(100, "updates between copies into the target networks (hard)",
                            low=1)
    actors: int = setting(1, "K, the number of actors (1: act in this process)", low=1,
                          high=1024)
    backend: str = setting("process", "where K >= 2 actors run: worker processes or Ray actors",
                           choices=("process", "ray"))
    ray_address: str = setting("", "Ray cluster address for backend=ray ('' starts a local "
                               "Ray)")
    t_actors: int = setting(100, "learner updates between copies of the weights to the actors",
                            low=1)
    actor_batch: int = setting(16, "transitions an actor sends at once (K >= 2)", low=1,
                               high=100_000)

    def check(self):
        super().check()
        if not self.v_min < self.v_max:
            raise ConfigError(f"settings 'v_min' = {self.v_min} and 'v_max' = {self.v_max}: the "
                              f"support needs v_min < v_max")


MUJOCO = dict(ZOO_MUJOCO_DETERMINISTIC, v_min=-150.0, v_max=150.0,
              priority_beta_steps=1_000_000)


@ALGORITHMS.register("d4pg")
class D4PG(DeterministicPolicyMixin, OffPolicyAlgorithm):
    """Distributed distributional DDPG; see the module docstring."""

    name = "d4pg"
    Config = D4PGConfig
    description = ("distributed distributional DDPG: categorical critic, N-step, prioritized "
                   "replay, K actors (Barth-Maron 2018)")
    presets = {"Pendulum-v1": dict(ZOO_PENDULUM_DETERMINISTIC, v_min=-800.0, v_max=0.0,
                                   target_update="polyak"),
               "Hopper-v5": dict(MUJOCO), "HalfCheetah-v5": dict(MUJOCO)}
    metric_names = ("critic_loss", "actor_objective", "q_mean")

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        cfg = self.config
        self.assembler = NStepAssembler(cfg.n_envs, cfg.n_step, cfg.gamma, (self.obs_dim,),
                                        self.action_shape, dtype=self.dtype)
        self.atoms = d4pg_estimators.support(cfg.v_min, cfg.v_max, cfg.atoms)    # z_1..z_n
        # Algorithm 1, lines 1-2: (theta, w) at random, (theta', w') <- (theta, w)
        self._build(n_critics=1)
        self.env_steps = 0          # transitions taken so far (anneals beta)

    def make_buffer(self):
        """Prioritized replay of N-step rows."""
        cfg = self.config
        return PrioritizedReplayBuffer(cfg.buffer_size, (self.obs_dim,), self.action_shape,
                                       cfg.priority_alpha, dtype=self.dtype)

    def make_critic(self, n_critics):
        """Z_w(x, a): one categorical critic over the support's atoms."""
        cfg = self.config
        return CategoricalCritic(self.obs_dim, self.action_dim, cfg.hidden, cfg.activation,
                                 cfg.atoms, self.rng, self.dtype)

    # --- the losses, as the update uses them --------------------------------------
    def beta(self):
        """beta annealed linearly from priority_beta to 1 over priority_beta_steps."""
        cfg = self.config
        frac = min(1.0, self.env_steps / cfg.priority_beta_steps)
        return cfg.priority_beta + (1.0 - cfg.priority_beta) * frac

    def target_distribution(self, batch):
        """Y_i under the target actor and critic (Algorithm 1, line 6), a plain (M, n) array."""
        cfg = self.config
        with no_grad():
            mu_next = self.actor_target(batch.next_obs)                     # pi_theta'(x_{i+m})
            next_probs = ops.softmax(self.critic_target(batch.next_obs, mu_next), axis=-1).data
        return d4pg_estimators.target_distribution(batch.rewards, batch.n_steps,
                                                   batch.terminated, next_probs, cfg.gamma,
                                                   cfg.v_min, cfg.v_max)

    def critic_loss(self, batch):
        """(L(w), the per-row cross-entropies H(Y_i, Z_w(x_i, a_i)) as a Tensor, the logits)."""
        target = self.target_distribution(batch)
        logits = self.critic(batch.obs, batch.actions)                      # Z_w(x_i, a_i)
        cross_entropies = d4pg_estimators.cross_entropy(logits, target)
        return d4pg_estimators.critic_loss(cross_entropies, batch.weights), cross_entropies, \
            logits

    def actor_loss(self, obs):
        """-J = -(1/M) sum_i E[Z_w(x_i, pi_theta(x_i))] (critic held constant)."""
        with frozen(self.critic):
            logits_of_mu = self.critic(obs, self.actor(obs))
        return -d4pg_estimators.actor_objective(logits_of_mu, self.atoms)

    def update(self, batch):
        cfg = self.config
        critic_loss, cross_entropies, logits = self.critic_loss(batch)
        self.step_on(self.critic_opt, critic_loss)                          # descent on L(w)
        self.buffer.update_priorities(batch.indices,
                                      cross_entropies.data.astype(np.float64) + cfg.priority_eps)
        actor_loss = self.actor_loss(batch.obs)
        self.step_on(self.actor_opt, actor_loss)                            # ascent on J
        if cfg.target_update == "polyak":
            self.soft_update(self.critic_target, self.critic)
            self.soft_update(self.actor_target, self.actor)
        elif (self.updates + 1) % cfg.t_target == 0:                        # line 9
            polyak_update(self.critic_target, self.critic, 1.0)             # w' <- w
            polyak_update(self.actor_target, self.actor, 1.0)               # theta' <- theta
        with no_grad():
            q = d4pg_estimators.q_values(logits.detach(), self.atoms).data
        return {"critic_loss": float(critic_loss.data), "actor_objective": -float(actor_loss.data),
                "q_mean": float(q.mean())}

    # --- the task and the collector -----------------------------------------------
    @classmethod
    def check_task(cls, env_id, config):
        """The one-agent checks, and for K >= 2 actors the number of workers and the backend
        (Ray installed, its address reachable)."""
        super().check_task(env_id, config)
        if config.actors >= 2:
            from ..parallel import check_workers, get_backend
            check_workers(config.actors, "actors")
            get_backend(config.backend, config.ray_address or None)
        elif config.ray_address and config.backend != "ray":
            raise ConfigError(f"setting 'ray_address': {config.ray_address!r} is for "
                              f"backend=ray with actors >= 2")

    @classmethod
    def make_collector(cls, env_id, config, seed, n_envs=None, render_mode=None):
        """actors = 1, or evaluation (``n_envs`` given): the run loop's own collector;
        actors = K >= 2: the K actors' (:class:`~minipg.algorithms.d4pg_actors.ActorCollector`)."""
        if n_envs is not None or config.actors == 1:
            return super().make_collector(env_id, config, seed, n_envs, render_mode)
        from .d4pg_actors import ActorCollector
        return ActorCollector(env_id, config, seed)

    # --- the loop ------------------------------------------------------------------
    def learn(self, collector):
        """One actor (the off-policy loop, explore: pi(x) + eps N(0, 1)), or K >= 2 actors."""
        if getattr(collector, "remote_actors", False):
            return self.learn_from_actors(collector)
        return super().learn(collector)

    def store_step(self, step, collector):
        """The step into the N-step windows; the rows they complete into the replay."""
        self.store(self.assembler.add(step.obs, step.actions, step.rewards, step.next_obs,
                                      step.terminated, step.truncated))
        self.env_steps = collector.steps

    def learn_from_actors(self, collector):
        """K >= 2 actors: add what they sent, then make the updates due (updates per
        transition gradient_steps / (train_freq * n_envs), the one-actor loop's rate),
        copying weights every t_actors updates."""
        cfg = self.config
        if collector.version == 0:                     # line 3: the actors' first weights
            collector.publish(self.actor.flat_params)
        self.store(collector.receive())
        self.env_steps = collector.steps
        due = (max(0, collector.steps - cfg.learning_starts) * cfg.gradient_steps
               // (cfg.train_freq * cfg.n_envs))
        while self.updates < due and len(self.buffer) >= cfg.batch_size:
            self.update_once()
            if self.updates % cfg.t_actors == 0:                          # line 10
                collector.publish(self.actor.flat_params)
        return self.metrics()

    def store(self, rows):
        """Add complete N-step rows to the replay (new rows get the largest priority)."""
        if len(rows.obs):
            self.buffer.add(rows.obs, rows.actions, rows.rewards, rows.next_obs,
                            rows.terminated, n_steps=rows.n_steps)

    def sample_batch(self):
        return self.buffer.sample(self.config.batch_size, self.rng, beta=self.beta())

    def metrics(self):
        out = dict(self._last_metrics)
        out["beta"] = self.beta()
        out["updates"] = float(self.updates)
        return out

    # --- checkpoints -----------------------------------------------------------------
    def extra_state(self):
        state = super().extra_state()
        state.update({f"nstep/{k}": v for k, v in self.assembler.state_dict().items()})
        state["env_steps"] = np.asarray(self.env_steps)
        return state

    def load_extra_state(self, arrays):
        super().load_extra_state(arrays)
        self.assembler.load_state_dict({k[len("nstep/"):]: v for k, v in arrays.items()
                                        if k.startswith("nstep/")})
        self.env_steps = int(arrays["env_steps"])
