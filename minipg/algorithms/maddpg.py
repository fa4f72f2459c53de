r"""MADDPG: multi-agent DDPG with centralized critics and decentralized actors.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "MADDPG";
R. Lowe, Y. Wu, A. Tamar, J. Harb, P. Abbeel, I. Mordatch, "Multi-Agent
Actor-Critic for Mixed Cooperative-Competitive Environments", NeurIPS 2017
(arXiv:1706.02275), section 4 (Algorithm 1 of its appendix), 4.2
(approximate policies) and 4.3 (policy ensembles).  The mathematics is in
:mod:`minipg.estimators.maddpg`; this module wires it together.

Agents i = 1..N, each with

* a decentralized actor mu_i(o_i) (its own observation only): for a Discrete
  agent an MLP of logits whose action is the Gumbel-softmax relaxed sample
  softmax((l + g) / T) (the task receives its argmax; the replay keeps the
  vector); for a Box agent (tasks built with ``continuous_actions=true``)
  DDPG's tanh actor onto the box, explored with Gaussian noise;
* ``relaxed_actions=true``, the authors' code's path: the task is built with
  mpe2's Box(0, 1, (n,)) actions (its ``continuous_actions``), every agent
  has the Discrete actor of n logits, and the task receives the relaxed
  sample ITSELF: mpe2 applies the force (a[2] - a[1], a[4] - a[3]) times the
  sensitivity (5, or the agent's accel) and a speaker's message is c = a,
  the soft vector the listener observes (the multi-agent particle
  environment's non-discrete-input path, which the authors' MADDPG trains
  on).  The replay and the critics keep that same vector, rounded to the
  task's float32 as the world received it, so what the critic is trained on
  is what moved the world (on the argmax path above the critic sees the
  soft vector while the world moved by its argmax).  The deterministic
  action (``minipg evaluate``, eval.json) is the noise-free softmax(l / T): a
  fixed function of the observation in the same simplex the actions were
  trained on (a one-hot argmax would put the listener's force and the
  speaker's message at a corner the critic saw only when the policy had
  become sharp); the authors' code evaluates its stochastic policy, which
  verification/maddpg_learning.py reports as well.  Not accepted with
  ``continuous_actions`` nor for agents that both move and speak (their Box
  action is two blocks: e.g. simple_reference);
* a centralized critic Q_i(o_1..o_N, a_1..a_N) with its own reward r_i
  (``critic=centralized``), or Q_i(o_i, a_i) (``critic=independent``: the
  independent-DDPG baseline of the paper's comparisons, same code);
* target networks mu_i', Q_i', soft-updated with ``tau``.

Every ``train_freq`` environment steps, once ``learning_starts`` steps were
taken, each agent i (and each of its sub-policies) does one step on a
minibatch of the JOINT replay (o, a_1..a_N, r_1..r_N, o', terminated,
truncated):

1. critic: y_i = r_i + gamma (1 - d) Q_i'(o', a'_1..a'_N) with a'_j = mu_j'(o'_j)
   for every agent j (relaxed samples for Discrete agents); minimise
   (1/B) sum (Q_i(o, a_1..a_N) - y_i)^2;
2. actor: ascend (1/B) sum Q_i(o, a_1, .., mu_i(o_i), .., a_N), the other
   agents' actions as REPLAYED, i.e. grad_{a_i} Q_i grad_theta_i mu_i
   (Weng, "MADDPG", actor update), plus the authors' code's 1e-3 mean(l^2)
   on the logits (``policy_reg``);
3. gradients clipped to norm ``max_grad_norm`` (0.5 in the authors' code),
   Adam steps, then the soft target updates.

Approximate policies (``approx_policies=true``, section 4.2): agent i fits
mu_hat_i^j(o_j) to agent j's replayed actions (maximising log mu_hat +
lambda H, ``approx_entropy``) and its critic's target uses mu_hat_i^j' (the
target copy) for every j != i instead of the true target policies.

Policy ensembles (``ensemble_size`` K > 1, section 4.3): K sub-policies per
agent (each with its own critic and targets); at the start of every episode
each agent draws one sub-policy uniformly; the transitions of that episode
belong to agent i's replay D_i^(k) of the sub-policy it ran (the K replays
of an agent share one ring of ``buffer_size`` transitions: D_i^(k) is the
part of it in which agent i ran sub-policy k).  The update maximises the
ensemble objective J_e = (1/K) sum_k J(mu_i^(k)): sub-policy k's gradient is
(1/K) grad J on its own replay.  A target action a'_j of another agent is
that of the sub-policy j ran in the sampled transition.  The deterministic
evaluation (``minipg evaluate``, eval.json) runs sub-policy 0 of every agent.

Presets (simple_speaker_listener, simple_spread, simple_adversary): the
paper's settings (appendix): Adam with learning rate 0.01, gamma 0.95,
minibatch 1024, tau 0.01, two hidden layers of 64 ReLU units, one update
every 100 steps, episodes of 25 steps; updates start once the replay holds
1024 x 25 transitions, as in the authors' code; and ``relaxed_actions=true``,
the authors' action path, with which MADDPG beat independent DDPG on
cooperative communication on every seed (the argmax path had not separated
them at smaller budgets, and lagged the relaxed path in a one-seed pilot with
the paper's protocol: verification/results/maddpg_learning.md).  ``--set relaxed_actions=false``
gives the argmax path (and is needed with ``continuous_actions=true``).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from ..autodiff import no_grad
from ..envs.multiagent import (EXTRA_HINT, MultiAgentCollector, action_width, is_multiagent_id,
                               make_parallel_env, mixed_action_agents, probe_agent_spaces)
from ..envs.vector import UnknownEnvironmentError, UnsupportedEnvironmentError
from ..estimators import maddpg as est
from ..nn import MLP
from ..optim import Adam, SoftUpdates, clip_grad_norm
from . import ALGORITHMS
from .base import (Algorithm, ConfigError, check_memory, load_replay_state, replay_state,
                   setting)
from .networks import make_policy
from .offpolicy_common import (CriticEnsemble, DeterministicActor, OffPolicyConfig, action_box,
                               frozen)

__all__ = ["MADDPGConfig", "MADDPG", "JointReplay", "JointBatch", "PAPER_PRESET"]


# --------------------------------------------------------------------- the joint replay

@dataclass
class JointBatch:
    """A minibatch of joint transitions: per-agent lists of (B, d_j) arrays, rewards (B, N),
    flags (B,), and the sub-policy each agent ran (B, N)."""
    obs: list
    actions: list
    rewards: np.ndarray
    next_obs: list
    terminated: np.ndarray
    truncated: np.ndarray
    subpolicy: np.ndarray


class JointReplay:
    r"""A ring buffer of joint transitions (o_1..o_N, a_1..a_N, r_1..r_N, o'_1..o'_N,
    terminated, truncated) and the sub-policy index each agent ran.

    Observations and actions of all agents are stored side by side, (capacity,
    sum_j d_j); :meth:`sample` splits them back per agent.  ``sample(..., agent=i,
    subpolicy=k)`` draws uniformly (with replacement) from the transitions in
    which agent i ran sub-policy k: agent i's replay D_i^(k).
    """

    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "subpolicy")

    def __init__(self, capacity, obs_dims, action_dims, dtype=np.float64):
        self.capacity = int(capacity)
        self.obs_dims, self.action_dims = list(obs_dims), list(action_dims)
        n, n_agents = self.capacity, len(self.obs_dims)
        self.obs = np.zeros((n, sum(self.obs_dims)), dtype=dtype)
        self.next_obs = np.zeros((n, sum(self.obs_dims)), dtype=dtype)
        self.actions = np.zeros((n, sum(self.action_dims)), dtype=dtype)
        self.rewards = np.zeros((n, n_agents), dtype=dtype)
        self.terminated = np.zeros(n, dtype=bool)
        self.truncated = np.zeros(n, dtype=bool)
        self.subpolicy = np.zeros((n, n_agents), dtype=np.int64)
        self.ptr = 0
        self.size = 0

    def __len__(self):
        return self.size

    def add(self, step, subpolicy):
        """Store the rows of a :class:`~minipg.envs.multiagent.MultiAgentStep`."""
        rows = len(step.terminated)
        slots = (self.ptr + np.arange(rows)) % self.capacity
        self.obs[slots] = np.concatenate(step.obs, axis=1)
        self.next_obs[slots] = np.concatenate(step.next_obs, axis=1)
        self.actions[slots] = np.concatenate(step.actions, axis=1)
        self.rewards[slots] = step.rewards
        self.terminated[slots] = step.terminated
        self.truncated[slots] = step.truncated
        self.subpolicy[slots] = subpolicy
        self.ptr = int((self.ptr + rows) % self.capacity)
        self.size = min(self.size + rows, self.capacity)

    def count(self, agent, subpolicy):
        """How many stored transitions agent ``agent`` ran with sub-policy ``subpolicy``."""
        return int(np.count_nonzero(self.subpolicy[:self.size, agent] == subpolicy))

    def sample(self, batch_size, rng, agent=None, subpolicy=None):
        """A uniform minibatch (with replacement) of D, or of D_agent^(subpolicy)."""
        if subpolicy is None:
            idx = rng.integers(0, self.size, size=int(batch_size))
        else:
            pool = np.flatnonzero(self.subpolicy[:self.size, agent] == subpolicy)
            idx = pool[rng.integers(0, len(pool), size=int(batch_size))]
        split = lambda a, dims: np.split(a[idx], np.cumsum(dims)[:-1], axis=1)  # noqa: E731
        return JointBatch(split(self.obs, self.obs_dims), split(self.actions, self.action_dims),
                          self.rewards[idx], split(self.next_obs, self.obs_dims),
                          self.terminated[idx], self.truncated[idx], self.subpolicy[idx])

    def state_dict(self):
        state = {f: getattr(self, f)[:self.size].copy() for f in self.FIELDS}
        state.update(ptr=np.asarray(self.ptr), size=np.asarray(self.size))
        return state

    def load_state_dict(self, state):
        size = int(state["size"])
        for f in self.FIELDS:
            value = np.asarray(state[f])
            target = getattr(self, f)
            if value.shape != (size,) + target.shape[1:]:
                raise ValueError(f"replay field {f!r} has shape {value.shape}, expected "
                                 f"{(size,) + target.shape[1:]}")
            target[:size] = value
        self.size, self.ptr = size, int(state["ptr"])


# --------------------------------------------------------------------- settings

PAPER_PRESET = {"gamma": 0.95, "actor_lr": 0.01, "critic_lr": 0.01, "batch_size": 1024,
                "tau": 0.01, "hidden": (64, 64), "train_freq": 100, "max_cycles": 25,
                "learning_starts": 1024 * 25}


@dataclass
class MADDPGConfig(OffPolicyConfig):
    """Settings of MADDPG (defaults: the paper's appendix and the authors' code)."""
    total_steps: int = setting(250_000, "environment steps to train for (all envs together)",
                               low=1)
    gamma: float = setting(0.95, "discount factor", low=0.0, high=1.0, low_open=True)
    tau: float = setting(0.01, "polyak rate: target <- (1 - tau) target + tau online",
                         low=0.0, high=1.0, low_open=True)
    batch_size: int = setting(1024, "minibatch size B of each update", low=1)
    buffer_size: int = setting(1_000_000, "joint replay capacity (transitions)", low=1)
    learning_starts: int = setting(1024 * 25, "environment steps before the first update "
                                   "(the policies act, with exploration, from the start)",
                                   low=0)
    train_freq: int = setting(100, "vector steps between updates (each agent one step)", low=1)
    gradient_steps: int = setting(1, "gradient steps per agent per update", low=1, high=1000)
    hidden: tuple[int, ...] = setting((64, 64), "hidden layer sizes of actors and critics")
    activation: str = setting("relu", "hidden activation", choices=("relu", "tanh"))
    actor_lr: float = setting(0.01, "Adam learning rate of the actors", low=0.0, low_open=True)
    critic_lr: float = setting(0.01, "Adam learning rate of the critics", low=0.0,
                               low_open=True)
    max_grad_norm: float = setting(0.5, "clip each network's gradient to this norm (0: off)",
                                   low=0.0)
    critic: str = setting("centralized", "critic inputs: 'centralized' Q_i(o_1..o_N, "
                          "a_1..a_N) (MADDPG) or 'independent' Q_i(o_i, a_i) (independent "
                          "DDPG, the baseline)", choices=("centralized", "independent"))
    temperature: float = setting(1.0, "Gumbel-softmax temperature T of Discrete agents' "
                                 "relaxed actions", low=0.0, low_open=True)
    policy_reg: float = setting(1e-3, "weight of mean(logits^2) in a Discrete actor's loss "
                                "(the authors' code)", low=0.0)
    noise_std: float = setting(0.1, "Gaussian exploration noise of Box agents, in units of "
                               "the box's half-width", low=0.0)
    continuous_actions: bool = setting(False, "build the task with Box actions "
                                       "(mpe2's continuous_actions)")
    relaxed_actions: bool = setting(False, "the authors' path: build the mpe2 task with "
                                    "Box(0, 1, (n,)) actions and SEND each agent's "
                                    "Gumbel-softmax relaxed sample itself (force "
                                    "(a[2]-a[1], a[4]-a[3]) x sensitivity, message c = a) "
                                    "instead of its argmax; Discrete actors; not with "
                                    "continuous_actions")
    max_cycles: int = setting(25, "episode length (mpe2's max_cycles; the paper's 25)", low=1,
                              high=100_000)
    approx_policies: bool = setting(False, "the critics' targets use each agent's learned "
                                    "approximations of the other agents' policies")
    approx_entropy: float = setting(1e-3, "entropy bonus lambda of the approximate-policy "
                                    "loss", low=0.0)
    approx_lr: float = setting(0.01, "Adam learning rate of the approximate policies", low=0.0,
                               low_open=True)
    ensemble_size: int = setting(1, "policy ensembles: K sub-policies per agent (1: none)",
                                 low=1, high=64)
    log_every: int = setting(5_000, "environment steps between progress rows", low=1)
    checkpoint_every: int = setting(50_000, "environment steps between checkpoints", low=1)

    def check(self):
        super().check()
        if self.relaxed_actions and self.continuous_actions:
            raise ConfigError("setting 'relaxed_actions': true is not accepted together with "
                              "continuous_actions=true (relaxed_actions builds the task with "
                              "Box actions itself but keeps the Discrete Gumbel-softmax "
                              "actors; continuous_actions uses DDPG's tanh actors); accepted: "
                              "at most one of the two true (the presets of the paper's tasks "
                              "set relaxed_actions=true: add --set relaxed_actions=false)")
        if self.vectorization != "sync":
            raise ConfigError(f"setting 'vectorization': {self.vectorization!r} is not "
                              f"accepted by maddpg; accepted: sync (its environments step in "
                              f"one process)")


def box_actions(config):
    """Whether the task is built with mpe2's Box actions (continuous_actions=True): for
    DDPG's tanh actors (``continuous_actions``) or for the relaxed samples themselves
    (``relaxed_actions``)."""
    return bool(config.continuous_actions or config.relaxed_actions)


# --------------------------------------------------------------------- the algorithm

@ALGORITHMS.register("maddpg")
class MADDPG(Algorithm):
    """Multi-agent DDPG; see the module docstring."""

    name = "maddpg"
    Config = MADDPGConfig
    action_kinds = ("discrete", "continuous")
    default_env = "mpe2/simple_speaker_listener_v4"
    description = ("multi-agent DDPG, centralized critics and decentralized actors "
                   "(Lowe et al. 2017), on mpe2 tasks")
    # the paper's tasks: its settings and the authors' action path (relaxed_actions; the
    # results of verification/results/maddpg_learning.md chose it)
    presets = {task: dict(PAPER_PRESET, relaxed_actions=True)
               for task in ("mpe2/simple_speaker_listener_v4", "mpe2/simple_spread_v3",
                            "mpe2/simple_adversary_v3")}
    metric_names = ("critic_loss", "actor_objective", "q_mean", "approx_loss")

    # --- the run loop's task hooks -------------------------------------------------
    @classmethod
    def check_task(cls, env_id, config):
        if config.relaxed_actions and not is_multiagent_id(env_id):
            raise ConfigError(f"setting 'relaxed_actions': true applies to mpe2 tasks only, "
                              f"and {env_id} is not one; accepted: mpe2/<task>, e.g. "
                              f"mpe2/simple_speaker_listener_v4, or relaxed_actions=false")
        if not is_multiagent_id(env_id):
            raise ConfigError(
                f"maddpg trains on multi-agent tasks, and {env_id} is a single-agent task; "
                f"accepted: mpe2/<task>, e.g. mpe2/simple_speaker_listener_v4, "
                f"mpe2/simple_spread_v3, mpe2/simple_adversary_v3, mpe2/simple_tag_v3")
        try:
            _, obs_spaces, act_spaces = probe_agent_spaces(env_id, box_actions(config),
                                                           config.max_cycles)
            mixed = mixed_action_agents(env_id, config.max_cycles) if config.relaxed_actions \
                else []
        except (UnknownEnvironmentError, UnsupportedEnvironmentError) as exc:
            raise ConfigError(str(exc)) from None
        if mixed:
            raise ConfigError(f"setting 'relaxed_actions': true is not accepted for {env_id}: "
                              f"agent(s) {', '.join(mixed)} both move and speak, so their Box "
                              f"action is two blocks (movement, message), not one relaxed "
                              f"one-hot; accepted: tasks whose agents move or speak, e.g. "
                              f"simple_speaker_listener, simple_spread, simple_adversary, "
                              f"simple_tag, or relaxed_actions=false")
        obs_dim = sum(int(s.shape[0]) for s in obs_spaces)
        act_dim = sum(action_width(s) for s in act_spaces)
        check_memory(config, obs_dim, act_dim)

    @classmethod
    def make_collector(cls, env_id, config, seed, n_envs=None, render_mode=None):
        n_envs = config.n_envs if n_envs is None else int(n_envs)
        envs = []
        try:
            for _ in range(n_envs):
                envs.append(make_parallel_env(env_id, box_actions(config),
                                              config.max_cycles, render_mode))
            return MultiAgentCollector(envs, seed=seed, dtype=config.dtype,
                                       store_sent_actions=config.relaxed_actions)
        except BaseException:
            for env in envs:
                env.close()
            raise

    # --- construction ---------------------------------------------------------------
    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        if not isinstance(observation_space, tuple) or len(observation_space) != len(
                action_space) or not observation_space:
            raise ValueError("maddpg needs one observation space and one action space per "
                             f"agent (tuples); got {observation_space} and {action_space} -- "
                             f"a multi-agent task; {EXTRA_HINT}")
        cfg = self.config
        self.n_agents = len(observation_space)
        self.obs_dims = [int(s.shape[0]) for s in observation_space]
        self.action_dims = [action_width(s) for s in action_space]
        self.discrete = [isinstance(s, gym.spaces.Discrete) for s in action_space]
        # relaxed_actions: a Box(0, 1, (n,)) agent acts with the Discrete actor and the task
        # receives its relaxed sample itself
        self.relaxed = [bool(cfg.relaxed_actions) and not d for d in self.discrete]
        for space, relaxed in zip(action_space, self.relaxed):
            if relaxed and not (np.all(space.low == 0) and np.all(space.high == 1)):
                raise ConfigError(f"setting 'relaxed_actions': true needs Box(0, 1, (n,)) "
                                  f"actions (mpe2's continuous_actions); got {space}")
        # the agents whose actor is the Gumbel-softmax one (n logits)
        self.gumbel = [d or r for d, r in zip(self.discrete, self.relaxed)]
        self.K = int(cfg.ensemble_size)
        self.boxes = [None if g else action_box(s, self.dtype, bounded_only=True, owner=self.name)
                      for g, s in zip(self.gumbel, action_space)]
        self.actors, self.critics = [], []            # [agent][subpolicy]
        self.actor_targets, self.critic_targets = [], []
        self.actor_opts, self.critic_opts = [], []
        for i in range(self.n_agents):
            if cfg.critic == "centralized":
                c_obs, c_act = sum(self.obs_dims), sum(self.action_dims)
            else:
                c_obs, c_act = self.obs_dims[i], self.action_dims[i]
            actors = [self._make_actor(i) for _ in range(self.K)]
            critics = [CriticEnsemble(c_obs, c_act, cfg.hidden, cfg.activation, 1, self.rng,
                                      self.dtype) for _ in range(self.K)]
            self.actors.append(actors)
            self.critics.append(critics)
            self.actor_targets.append([a.copy() for a in actors])     # theta' <- theta
            self.critic_targets.append([c.copy() for c in critics])
            self.actor_opts.append([Adam(a.parameters(), lr=cfg.actor_lr) for a in actors])
            self.critic_opts.append([Adam(c.parameters(), lr=cfg.critic_lr) for c in critics])
        self.approx, self.approx_targets, self.approx_opts = {}, {}, {}
        if cfg.approx_policies:
            for i in range(self.n_agents):
                for j in range(self.n_agents):
                    if j == i:
                        continue
                    net = make_policy("discrete" if self.gumbel[j] else "continuous",
                                      self.obs_dims[j], self.action_dims[j], cfg.hidden,
                                      cfg.activation, self.rng, self.dtype)
                    self.approx[i, j] = net
                    self.approx_targets[i, j] = net.copy()
                    self.approx_opts[i, j] = Adam(net.parameters(), lr=cfg.approx_lr)
        self.replay = JointReplay(cfg.buffer_size, self.obs_dims, self.action_dims, self.dtype)
        self.subpolicy = self.rng.integers(0, self.K, size=(cfg.n_envs, self.n_agents))
        self.soft_updates = SoftUpdates()     # theta' <- (1 - tau) theta' + tau theta
        self.updates = 0
        self.vector_steps = 0
        self._last_metrics = {k: 0.0 for k in self.metric_names}

    def _make_actor(self, i):
        cfg = self.config
        if self.gumbel[i]:                   # logits of a Gumbel-softmax policy
            return MLP([self.obs_dims[i], *cfg.hidden, self.action_dims[i]],
                       activation=cfg.activation, init="fan_in_uniform", rng=self.rng,
                       dtype=self.dtype)
        low, high, _, _ = self.boxes[i]
        return DeterministicActor(self.obs_dims[i], self.action_dims[i], cfg.hidden,
                                  cfg.activation, low, high, self.rng, self.dtype)

    # --- acting -----------------------------------------------------------------------
    def policy_action(self, i, actor, obs_i, noise=None):
        """Agent i's action Tensor from ``actor`` at obs (B, d_i): the relaxed sample
        softmax((l + g)/T) with Gumbel ``noise`` g for a Discrete agent (its logits too),
        mu(o_i) for a Box agent; returns (action, logits or None)."""
        out = actor(obs_i)
        if not self.gumbel[i]:
            return out, None
        return est.gumbel_softmax(out, noise, self.config.temperature), out

    def _gumbel(self, shape):
        return est.gumbel_noise(self.rng, shape, self.dtype)

    def act(self, obs, deterministic=False, subpolicy=None):
        """One action per agent for observations ``obs`` (a tuple of (n, d_j) arrays).

        Exploring: the relaxed Gumbel-softmax sample (Discrete, and relaxed_actions
        agents) or mu + Gaussian noise (Box), from each environment's current
        sub-policy.  Deterministic: the one-hot of argmax logits (Discrete: the
        task receives that argmax anyway), the noise-free softmax(l / T)
        (relaxed_actions: see the module docstring), or mu(o), of sub-policy 0 (or
        ``subpolicy``, an array (n, N)).
        """
        n = np.asarray(obs[0]).shape[0]
        if subpolicy is None:
            subpolicy = (np.zeros((n, self.n_agents), dtype=np.int64) if deterministic
                         or n != self.subpolicy.shape[0] else self.subpolicy)
        actions = []
        with no_grad():
            for i in range(self.n_agents):
                o = np.asarray(obs[i], dtype=self.dtype)
                a = np.zeros((n, self.action_dims[i]), dtype=self.dtype)
                for k in np.unique(subpolicy[:, i]):
                    rows = subpolicy[:, i] == k
                    out = self.actors[i][k](o[rows]).data
                    a[rows] = self._action_from_output(i, out, deterministic)
                actions.append(a)
        return tuple(actions)

    def _action_from_output(self, i, out, deterministic):
        if self.relaxed[i] and deterministic:                                  # softmax(l / T)
            return est.gumbel_softmax(out, np.zeros_like(out), self.config.temperature).data
        if self.gumbel[i]:
            if deterministic:
                return np.eye(self.action_dims[i], dtype=self.dtype)[np.argmax(out, axis=1)]
            return est.gumbel_softmax(out, self._gumbel(out.shape),
                                      self.config.temperature).data        # softmax((l + g)/T)
        if deterministic or self.config.noise_std == 0.0:
            return out
        low, high, _, scale = self.boxes[i]
        noisy = out + scale * self.config.noise_std * self.rng.standard_normal(
            out.shape).astype(self.dtype)
        return np.clip(noisy, low, high)

    # --- the losses, as the update uses them --------------------------------------------
    def critic_inputs(self, i, obs, actions):
        """Q_i's inputs: every agent's (centralized) or agent i's own (independent)."""
        if self.config.critic == "centralized":
            return est.joint_input(obs, actions)
        return est.joint_input([obs[i]], [actions[i]])

    def target_actions(self, i, batch, k=0):
        """a'_j for every agent j: the target policy (agent i's sub-policy ``k``; for
        another agent, the sub-policy it ran in each transition), or agent i's
        approximation mu_hat_i^j' of it; plain arrays."""
        out = []
        with no_grad():
            for j in range(self.n_agents):
                o_next = batch.next_obs[j]
                if j != i and self.config.approx_policies:
                    dist = self.approx_targets[i, j](o_next)
                    if self.gumbel[j]:
                        a = est.gumbel_softmax(dist.logits, self._gumbel(dist.logits.shape),
                                               self.config.temperature).data
                    else:
                        low, high, _, _ = self.boxes[j]
                        a = np.clip(dist.mode(), low, high)
                    out.append(a)
                    continue
                # agent i's own sub-policy k; another agent's, the one it ran in each transition
                ks = np.full(len(o_next), k) if j == i else batch.subpolicy[:, j]
                a = np.zeros((len(o_next), self.action_dims[j]), dtype=self.dtype)
                for kk in np.unique(ks):
                    rows = ks == kk
                    noise = (self._gumbel((int(rows.sum()), self.action_dims[j]))
                             if self.gumbel[j] else None)
                    a[rows] = self.policy_action(j, self.actor_targets[j][kk], o_next[rows],
                                                 noise)[0].data
                out.append(a)
        return out

    def td_target(self, i, batch, k=0, next_actions=None):
        """y_i = r_i + gamma (1 - d) Q_i'(o', a'_1..a'_N) on ``batch`` (a plain array).

        ``next_actions`` (per agent, plain arrays) replaces the target policies'
        actions a'_j (the tests pass them to compare with DDPG)."""
        if next_actions is None:
            next_actions = self.target_actions(i, batch, k)
        with no_grad():
            x_obs, x_act = self.critic_inputs(i, batch.next_obs, next_actions)
            q_next = self.critic_targets[i][k].first(x_obs, x_act).data    # Q_i'(o', a')
        return est.critic_target(batch.rewards[:, i], batch.terminated, q_next,
                                 self.config.gamma)                         # y_i

    def critic_loss(self, i, batch, k=0, next_actions=None):
        """(L(theta_i), Q_i(o, a)) on ``batch`` for agent i's sub-policy k."""
        y = self.td_target(i, batch, k, next_actions)
        q = self.critic(i, k, batch.obs, batch.actions)                    # Q_i(o, a)
        return est.critic_loss(q, y), q

    def critic(self, i, k, obs, actions):
        """Q_i^(k)(o, a) for per-agent lists ``obs`` and ``actions``, shape (B,)."""
        return self.critics[i][k].first(*self.critic_inputs(i, obs, actions))

    def actor_loss(self, i, batch, k=0, noise=None):
        """-J(theta_i) (+ policy_reg mean(l^2) for a Discrete agent): the critic at agent
        i's current (relaxed) action and the other agents' REPLAYED actions."""
        if self.gumbel[i] and noise is None:
            noise = self._gumbel((len(batch.obs[i]), self.action_dims[i]))
        own, logits = self.policy_action(i, self.actors[i][k], batch.obs[i], noise)
        joint = est.actor_actions(batch.actions, i, own)                   # a_j, j != i, replayed
        with frozen(self.critics[i][k]):
            q_of_mu = self.critic(i, k, batch.obs, joint)
        loss = -est.actor_objective(q_of_mu)
        if logits is not None and self.config.policy_reg > 0:
            loss = loss + self.config.policy_reg * est.logit_penalty(logits)
        return loss

    def approx_loss(self, i, j, batch):
        """Agent i's approximate-policy loss of agent j on ``batch`` (section 4.2)."""
        dist = self.approx[i, j](batch.obs[j])
        a_j = batch.actions[j]
        if self.gumbel[j]:            # the category: the task's argmax, or the relaxed vector's
            log_prob = dist.log_prob(np.argmax(a_j, axis=1))
        else:
            log_prob = dist.log_prob(a_j)
        return est.approximate_policy_loss(log_prob, dist.entropy(), self.config.approx_entropy)

    # --- the update -------------------------------------------------------------------
    def _step(self, optimizer, module, loss, scale=1.0):
        optimizer.zero_grad()
        (loss * scale if scale != 1.0 else loss).backward()
        if self.config.max_grad_norm > 0:
            clip_grad_norm(module, self.config.max_grad_norm)
        optimizer.step()

    def update(self):
        """One update of every agent (and sub-policy) on its own minibatch."""
        cfg = self.config
        sums = dict.fromkeys(self.metric_names, 0.0)
        n_terms = 0
        for i in range(self.n_agents):
            for k in range(self.K):
                if self.K > 1 and self.replay.count(i, k) == 0:
                    continue
                batch = self.replay.sample(cfg.batch_size, self.rng, i,
                                           k if self.K > 1 else None)
                critic_loss, q = self.critic_loss(i, batch, k)
                self._step(self.critic_opts[i][k], self.critics[i][k], critic_loss)
                # the ensemble objective (1/K) sum_k J(mu^(k)): each sub-policy gets (1/K) grad J
                actor_loss = self.actor_loss(i, batch, k)
                self._step(self.actor_opts[i][k], self.actors[i][k], actor_loss, 1.0 / self.K)
                self.soft_updates(self.critic_targets[i][k], self.critics[i][k], cfg.tau)
                self.soft_updates(self.actor_targets[i][k], self.actors[i][k], cfg.tau)
                sums["critic_loss"] += float(critic_loss.data)
                sums["actor_objective"] -= float(actor_loss.data)
                sums["q_mean"] += float(q.data.mean())
                n_terms += 1
                if k == 0 and cfg.approx_policies:
                    for j in range(self.n_agents):
                        if j == i:
                            continue
                        loss = self.approx_loss(i, j, batch)
                        self._step(self.approx_opts[i, j], self.approx[i, j], loss)
                        self.soft_updates(self.approx_targets[i, j], self.approx[i, j], cfg.tau)
                        sums["approx_loss"] += float(loss.data) / (self.n_agents - 1)
        out = {k: v / max(n_terms, 1) for k, v in sums.items()}
        out["approx_loss"] = sums["approx_loss"] / self.n_agents
        return out

    def learn(self, collector):
        """One vector step: act, store the joint transition, update every ``train_freq``."""
        cfg = self.config
        step = collector.step(self.act(collector.obs))
        self.replay.add(step, self.subpolicy)
        done = step.terminated | step.truncated
        if done.any() and self.K > 1:        # a new sub-policy per agent per episode
            self.subpolicy[done] = self.rng.integers(0, self.K, size=(int(done.sum()),
                                                                       self.n_agents))
        self.vector_steps += 1
        if (collector.steps >= cfg.learning_starts and len(self.replay) >= cfg.batch_size
                and self.vector_steps % cfg.train_freq == 0):
            for _ in range(cfg.gradient_steps):
                self._last_metrics = self.update()
                self.updates += 1
        metrics = dict(self._last_metrics)
        metrics["updates"] = float(self.updates)
        return metrics

    # --- checkpoints --------------------------------------------------------------------
    def modules(self):
        out = {}
        for i in range(self.n_agents):
            for k in range(self.K):
                tag = f"{i}" if self.K == 1 else f"{i}.{k}"
                out[f"actor{tag}"] = self.actors[i][k]
                out[f"critic{tag}"] = self.critics[i][k]
                out[f"actor_target{tag}"] = self.actor_targets[i][k]
                out[f"critic_target{tag}"] = self.critic_targets[i][k]
        for (i, j), net in self.approx.items():
            out[f"approx{i}_{j}"] = net
            out[f"approx_target{i}_{j}"] = self.approx_targets[i, j]
        return out

    def optimizers(self):
        out = {}
        for i in range(self.n_agents):
            for k in range(self.K):
                tag = f"{i}" if self.K == 1 else f"{i}.{k}"
                out[f"actor{tag}"] = self.actor_opts[i][k]
                out[f"critic{tag}"] = self.critic_opts[i][k]
        for (i, j), opt in self.approx_opts.items():
            out[f"approx{i}_{j}"] = opt
        return out

    def extra_state(self):
        state = {"updates": np.asarray(self.updates),
                 "vector_steps": np.asarray(self.vector_steps),
                 "subpolicy": self.subpolicy.copy(),
                 "last_metrics": np.asarray([self._last_metrics[k] for k in self.metric_names])}
        state.update(replay_state(self.replay, self.config.checkpoint_replay))
        return state

    def load_extra_state(self, arrays):
        self.updates = int(arrays["updates"])
        self.vector_steps = int(arrays["vector_steps"])
        self.subpolicy = np.array(arrays["subpolicy"], dtype=np.int64)
        self._last_metrics = dict(zip(self.metric_names,
                                      map(float, np.asarray(arrays["last_metrics"]))))
        load_replay_state(self.replay, arrays, self.config.checkpoint_replay)
