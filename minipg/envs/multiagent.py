r"""Multi-agent glue: mpe2's particle environments through PettingZoo's parallel API.

The tasks of Lowe et al. 2017 ("Multi-Agent Actor-Critic for Mixed
Cooperative-Competitive Environments"), maintained as the ``mpe2`` package
(minipg's optional ``multiagent`` extra: ``pip install 'minipg[multiagent]'``),
are named ``mpe2/<module>``: ``mpe2/simple_spread_v3`` (cooperative
navigation), ``mpe2/simple_speaker_listener_v4`` (cooperative
communication), ``mpe2/simple_adversary_v3`` (physical deception) and
``mpe2/simple_tag_v3`` (predator-prey); any other module of mpe2 with a
``parallel_env`` is accepted too.

:class:`MultiAgentCollector` is to MADDPG what
:class:`minipg.envs.vector.Collector` is to the one-agent algorithms: it
owns ``n_envs`` copies of the task, steps them with one action per agent,
keeps the run's counters, and has every attribute and method the run loop
uses (``Algorithm.make_collector``'s docstring).  Its shapes:

* ``observation_space``, ``action_space``: tuples of the N agents' spaces, in
  the task's agent order (``agents``);
* ``obs``: a tuple of N arrays, agent j's of shape (n_envs, obs_dim_j);
* ``step(actions)``: ``actions`` a sequence of N arrays, agent j's of shape
  (n_envs, d_j): for a Discrete(n) agent a vector of n numbers (a one-hot or
  relaxed one-hot sample) whose argmax the task receives, for a Box agent
  the action itself, clipped to the box and cast to its dtype (float32) on its
  way to the task; with ``store_sent_actions`` the step's ``actions`` of a Box
  agent are that clipped, cast vector (what the world received: MADDPG's
  ``relaxed_actions`` stores it in its replay);
* ``recent_returns``: the SUM over agents of each finished episode's
  returns (the return_mean column); ``progress_columns()`` adds one
  ``return_<agent>`` column per agent.

Episodes end for all agents together (mpe2 truncates every agent at
``max_cycles``); as in the one-agent Collector, a finished environment is
reset at once and ``Step.next_obs`` holds the TRUE final observations.

Exact resume: :func:`world_state_arrays` saves what an mpe2 task keeps
between steps -- every entity's state (positions, velocities, utterances),
its per-episode properties (colours, goals, as entity indices), the step
counter and the task's random generator -- and
:func:`load_world_state_arrays` writes it back into a freshly made copy;
tests/test_multiagent.py checks that the continuation is bit-for-bit the
uninterrupted one.
"""

from __future__ import annotations

import importlib
import json
from collections import deque
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from .vector import NonFiniteError, UnknownEnvironmentError, UnsupportedEnvironmentError

__all__ = ["PREFIX", "TASKS", "is_multiagent_id", "make_parallel_env", "probe_agent_spaces",
           "mixed_action_agents", "MultiAgentCollector", "MultiAgentStep", "world_state_arrays",
           "load_world_state_arrays"]

PREFIX = "mpe2/"
#: the tasks the presets and verification/ use (any mpe2 module with parallel_env works)
TASKS = ("mpe2/simple_spread_v3", "mpe2/simple_speaker_listener_v4", "mpe2/simple_adversary_v3",
         "mpe2/simple_tag_v3")
EXTRA_HINT = "minipg's `multiagent` extra installs it: pip install 'minipg[multiagent]'"


def is_multiagent_id(env_id):
    """True for an ``mpe2/<module>`` task id."""
    return isinstance(env_id, str) and env_id.startswith(PREFIX)


def _task_module(env_id):
    if not is_multiagent_id(env_id):
        raise UnknownEnvironmentError(
            f"{env_id!r} is not a multi-agent task; accepted: mpe2/<module>, e.g. "
            f"{', '.join(TASKS)}")
    try:
        importlib.import_module("mpe2")
        importlib.import_module("pettingzoo")
    except ImportError as exc:
        raise UnsupportedEnvironmentError(
            f"{env_id} needs the mpe2 and pettingzoo packages, which are not installed "
            f"({exc}); {EXTRA_HINT}") from None
    name = env_id[len(PREFIX):]
    try:
        module = importlib.import_module(f"mpe2.{name}") if name.isidentifier() else None
    except ImportError:
        module = None
    if module is None or not hasattr(module, "parallel_env"):
        raise UnknownEnvironmentError(
            f"unknown multi-agent task {env_id!r}: mpe2 has no module {name!r} with a "
            f"parallel_env; accepted: {', '.join(TASKS)} or another mpe2 task module")
    return module


def make_parallel_env(env_id, continuous_actions=False, max_cycles=25, render_mode=None):
    """One PettingZoo parallel environment of the mpe2 task ``env_id``."""
    module = _task_module(env_id)
    kwargs = dict(continuous_actions=bool(continuous_actions), max_cycles=int(max_cycles))
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    return module.parallel_env(**kwargs)


def probe_agent_spaces(env_id, continuous_actions=False, max_cycles=25):
    """(agents, observation spaces, action spaces) of one copy of ``env_id``, closed again;
    an error unless every agent has 1-D Box observations and Discrete or 1-D Box actions."""
    env = make_parallel_env(env_id, continuous_actions, max_cycles)
    try:
        agents = list(env.possible_agents)
        obs_spaces = tuple(env.observation_space(a) for a in agents)
        act_spaces = tuple(env.action_space(a) for a in agents)
    finally:
        env.close()
    for agent, o, a in zip(agents, obs_spaces, act_spaces):
        if not (isinstance(o, gym.spaces.Box) and len(o.shape) == 1):
            raise UnsupportedEnvironmentError(
                f"{env_id}: agent {agent} has observations {o}; accepted: 1-D Box observations")
        if not (isinstance(a, gym.spaces.Discrete)
                or (isinstance(a, gym.spaces.Box) and len(a.shape) == 1)):
            raise UnsupportedEnvironmentError(
                f"{env_id}: agent {agent} has actions {a}; accepted: Discrete or 1-D Box")
    return agents, obs_spaces, act_spaces


def mixed_action_agents(env_id, max_cycles=25):
    """The agents of ``env_id`` whose continuous action (``continuous_actions=True``) is a
    movement block of 5 followed by a message block of dim_c: agents that both move and
    speak (e.g. simple_reference's).  Every other mpe2 agent's Box(0, 1, (n,)) action is
    ONE block in the place of the Discrete(n) one-hot: 5 movement entries (mpe2's
    force is (a[2] - a[1], a[4] - a[3]) times the sensitivity) or a message c = a."""
    env = make_parallel_env(env_id, True, max_cycles)
    try:
        return [agent.name for agent in env.unwrapped.world.agents
                if agent.movable and not agent.silent]
    finally:
        env.close()


def action_width(space):
    """The length of an agent's action vector: n for Discrete(n), d for a Box (d,)."""
    return int(space.n) if isinstance(space, gym.spaces.Discrete) else int(space.shape[0])


@dataclass
class MultiAgentStep:
    """One step of every environment: per-agent tuples of arrays (leading axis n_envs),
    rewards (n_envs, N) and the episode flags (n_envs,), shared by all agents."""
    obs: tuple
    actions: tuple
    rewards: np.ndarray
    next_obs: tuple
    terminated: np.ndarray
    truncated: np.ndarray


class MultiAgentCollector:
    """Steps ``envs`` (PettingZoo parallel environments of one task) for a multi-agent
    algorithm; see the module docstring for the shapes."""

    def __init__(self, envs, seed, dtype=np.float64, window=20, store_sent_actions=False):
        self.envs = list(envs)
        # True: a Box agent's entry of Step.actions is the vector the task received
        # (clipped, in the space's dtype), not the one given to step()
        self.store_sent_actions = bool(store_sent_actions)
        self.n_envs = len(self.envs)
        self.dtype = np.dtype(dtype)
        first = self.envs[0]
        self.agents = list(first.possible_agents)
        self.n_agents = len(self.agents)
        self.observation_space = tuple(first.observation_space(a) for a in self.agents)
        self.action_space = tuple(first.action_space(a) for a in self.agents)
        self.discrete = tuple(isinstance(s, gym.spaces.Discrete) for s in self.action_space)
        for j, space in enumerate(self.action_space):
            space.seed(int(seed) + j)          # random actions are reproducible
        per_env = [env.reset(seed=int(seed) + 1000 * k)[0] for k, env in enumerate(self.envs)]
        self.obs = self._stack(per_env)
        self.steps = 0
        self.episodes = 0
        self.recent_returns = deque(maxlen=window)
        self.recent_lengths = deque(maxlen=window)
        self.recent_agent_returns = deque(maxlen=window)
        self.finished = []
        self.episode_returns = np.zeros((self.n_envs, self.n_agents))
        self.episode_lengths = np.zeros(self.n_envs, dtype=np.int64)

    def _stack(self, per_env):
        """Per-env dicts {agent: obs} -> a tuple of N arrays (n_envs, obs_dim_j)."""
        return tuple(np.stack([np.asarray(o[a], dtype=self.dtype).ravel() for o in per_env])
                     for a in self.agents)

    def random_actions(self):
        """Uniform random actions: one-hot vectors for Discrete agents, uniform in the box."""
        out = []
        for space, discrete in zip(self.action_space, self.discrete):
            if discrete:
                idx = [space.sample() for _ in range(self.n_envs)]
                out.append(np.eye(int(space.n), dtype=self.dtype)[idx])
            else:
                out.append(np.stack([space.sample() for _ in range(self.n_envs)])
                           .astype(self.dtype))
        return tuple(out)

    def _env_action(self, j, action):
        space = self.action_space[j]
        if self.discrete[j]:
            return int(np.argmax(action))        # the relaxed sample's argmax is the action
        return np.clip(action, space.low, space.high).astype(space.dtype)

    def step(self, actions):
        """Apply one action per agent in every environment; returns a :class:`MultiAgentStep`."""
        if len(actions) != self.n_agents:
            raise ValueError(f"MultiAgentCollector.step: {len(actions)} actions for "
                             f"{self.n_agents} agents ({', '.join(self.agents)})")
        actions = tuple(np.asarray(a).reshape(self.n_envs, -1) for a in actions)
        for j, (a, space) in enumerate(zip(actions, self.action_space)):
            if a.shape[1] != action_width(space):
                raise ValueError(f"MultiAgentCollector.step: agent {self.agents[j]}'s actions "
                                 f"have {a.shape[1]} numbers; accepted: {action_width(space)} "
                                 f"for {space}")
        obs_now = self.obs
        rewards = np.zeros((self.n_envs, self.n_agents), dtype=self.dtype)
        terminated = np.zeros(self.n_envs, dtype=bool)
        truncated = np.zeros(self.n_envs, dtype=bool)
        next_dicts, reset_dicts = [], []
        # the actions as the tasks received them (clipped), only where they are stored
        sent = [np.array(a, dtype=self.dtype) for a in actions] if self.store_sent_actions else None
        for k, env in enumerate(self.envs):
            joint = {a: self._env_action(j, actions[j][k]) for j, a in enumerate(self.agents)}
            if sent is not None:
                for j, a in enumerate(self.agents):
                    if not self.discrete[j]:
                        sent[j][k] = joint[a]
            obs, rew, term, trunc, _ = env.step(joint)
            rewards[k] = [rew[a] for a in self.agents]
            terminated[k] = any(term.values())
            truncated[k] = any(trunc.values()) and not terminated[k]
            next_dicts.append(obs)
            reset_dicts.append(obs)
        if not np.isfinite(rewards).all():
            raise NonFiniteError(f"non-finite reward {rewards.tolist()} from the task at step "
                                 f"{self.steps + self.n_envs}")
        self.episode_returns += rewards
        self.episode_lengths += 1
        for k in np.flatnonzero(terminated | truncated):
            reset_dicts[k] = self.envs[k].reset()[0]          # continue the task's generator
            ep = self.episode_returns[k].copy()
            total, length = float(ep.sum()), int(self.episode_lengths[k])
            self.recent_returns.append(total)
            self.recent_lengths.append(length)
            self.recent_agent_returns.append(ep)
            self.finished.append((self.steps + self.n_envs, total, length))
            self.episodes += 1
            self.episode_returns[k] = 0.0
            self.episode_lengths[k] = 0
        self.steps += self.n_envs
        next_obs = self._stack(next_dicts)
        # no episode ended: the next observations are the next step's (as Collector's)
        self.obs = self._stack(reset_dicts) if (terminated | truncated).any() else next_obs
        if sent is not None:
            actions = tuple(sent)
        return MultiAgentStep(obs_now, actions, rewards, next_obs, terminated, truncated)

    def progress_columns(self):
        """One ``return_<agent>`` column per agent: its mean over the recent episodes."""
        if not self.recent_agent_returns:
            return {f"return_{a}": float("nan") for a in self.agents}
        means = np.mean(np.asarray(self.recent_agent_returns), axis=0)
        return {f"return_{a}": float(m) for a, m in zip(self.agents, means)}

    def render(self):
        """The first environment's frame (environments made with a render mode)."""
        return self.envs[0].render()

    def drain_finished(self):
        """The (step, return summed over agents, length) of episodes finished since the last
        call."""
        out, self.finished = self.finished, []
        return out

    # --- exact resume ----------------------------------------------------------------
    def state_arrays(self):
        out = {}
        for k, env in enumerate(self.envs):
            out.update(world_state_arrays(env, f"mpe/{k}"))
        out.update({f"collector/obs/{j}": o for j, o in enumerate(self.obs)})
        out.update({
            "collector/steps": np.asarray(self.steps),
            "collector/episodes": np.asarray(self.episodes),
            "collector/recent_returns": np.asarray(self.recent_returns, dtype=np.float64),
            "collector/recent_lengths": np.asarray(self.recent_lengths, dtype=np.int64),
            "collector/recent_agent_returns": np.asarray(self.recent_agent_returns,
                                                         dtype=np.float64)
            .reshape(-1, self.n_agents),
            "collector/episode_returns": self.episode_returns.copy(),
            "collector/episode_lengths": self.episode_lengths.copy(),
            "collector/action_rng": np.array(json.dumps(
                [s.np_random.bit_generator.state for s in self.action_space]))})
        return out

    def load_state_arrays(self, arrays):
        for k, env in enumerate(self.envs):
            load_world_state_arrays(env, arrays, f"mpe/{k}")
        obs = tuple(np.asarray(arrays[f"collector/obs/{j}"], dtype=self.dtype)
                    for j in range(self.n_agents))
        if any(o.shape != s.shape for o, s in zip(obs, self.obs)):
            raise ValueError(f"checkpoint observations have shapes {[o.shape for o in obs]}, "
                             f"this run {[o.shape for o in self.obs]}")
        self.obs = obs
        self.steps = int(arrays["collector/steps"])
        self.episodes = int(arrays["collector/episodes"])
        self.recent_returns.extend(arrays["collector/recent_returns"].tolist())
        self.recent_lengths.extend(arrays["collector/recent_lengths"].tolist())
        self.recent_agent_returns.extend(np.asarray(arrays["collector/recent_agent_returns"]))
        self.episode_returns = np.array(arrays["collector/episode_returns"], dtype=np.float64)
        self.episode_lengths = np.array(arrays["collector/episode_lengths"], dtype=np.int64)
        for space, state in zip(self.action_space,
                                json.loads(str(arrays["collector/action_rng"]))):
            space.np_random.bit_generator.state = state

    def close(self):
        for env in self.envs:
            env.close()


# --- the world's state as plain arrays -------------------------------------------------
_ENV_SCALARS = ("steps", "original_cam_range")


def _entity_parts(entity):
    """The objects of an entity whose attributes change: itself, its state, its action."""
    parts = {"e": entity, "s": entity.state}
    if hasattr(entity, "action"):
        parts["a"] = entity.action
    return parts


def world_state_arrays(env, prefix):
    """{key: ndarray}: everything of an mpe2 task that changes between steps.

    For each entity (agents, then landmarks) and each of its parts (the
    entity, its state, its action): array attributes as arrays; numbers,
    flags and None in one JSON text; references to another entity (a goal)
    as its index.  Also the environment's step counter, camera range and
    random generator.  Names, spaces and callables are the task's make-up,
    rebuilt identically by ``make_parallel_env``, and are not saved.
    """
    raw = env.unwrapped
    entities = list(raw.world.entities)
    index = {id(e): i for i, e in enumerate(entities)}
    arrays, scalars = {}, {}
    for i, entity in enumerate(entities):
        for part, obj in _entity_parts(entity).items():
            for name, value in vars(obj).items():
                key = f"{i}/{part}/{name}"
                if isinstance(value, np.ndarray):
                    arrays[f"{prefix}/{key}"] = value.copy()
                elif value is None or isinstance(value, (bool, int, float, np.number)):
                    scalars[key] = value.item() if isinstance(value, np.number) else value
                elif id(value) in index:
                    scalars[key] = {"entity": index[id(value)]}
    for name in _ENV_SCALARS:
        scalars[f"env/{name}"] = float(getattr(raw, name)) if name != "steps" \
            else int(raw.steps)
    scalars["env/np_random"] = {"generator": raw.np_random.bit_generator.state}
    arrays[f"{prefix}/scalars"] = np.array(json.dumps(scalars))
    return arrays


def load_world_state_arrays(env, arrays, prefix):
    """Write :func:`world_state_arrays`'s snapshot back into ``env`` (the same task)."""
    raw = env.unwrapped
    entities = list(raw.world.entities)
    scalars = json.loads(str(arrays[f"{prefix}/scalars"]))
    for key, value in scalars.items():
        head, rest = key.split("/", 1)
        if head == "env":
            if rest == "np_random":
                raw.np_random.bit_generator.state = value["generator"]
            else:
                setattr(raw, rest, value)
            continue
        part, name = rest.split("/", 1)
        obj = _entity_parts(entities[int(head)])[part]
        setattr(obj, name, entities[value["entity"]] if isinstance(value, dict) else value)
    for key, value in arrays.items():
        if not key.startswith(prefix + "/") or key == f"{prefix}/scalars":
            continue
        i, part, name = key[len(prefix) + 1:].split("/", 2)
        setattr(_entity_parts(entities[int(i)])[part], name, np.array(value))
