"""gymnasium glue: building vector environments and stepping them for an algorithm.

Every algorithm collects experience through one :class:`Collector`, which
owns a gymnasium vector environment in ``SAME_STEP`` autoreset mode: when a
sub-environment's episode ends, ``step`` returns the *true* final
observation as ``next_obs`` (needed to bootstrap a time-limit truncation from
V(s_T)) and the reset observation as the next ``obs``.  Termination and
truncation stay apart (CONTRIBUTING.md, "Conventions"): a terminated
transition does not bootstrap, a truncated one does.

Episode returns are read from gymnasium's ``RecordEpisodeStatistics``,
wrapped innermost, so they are the task's own rewards even when an algorithm
normalizes rewards with gymnasium's ``NormalizeReward`` on top.
"""

from __future__ import annotations

import importlib
import json
from collections import deque
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium import error as gym_error
from gymnasium.vector import AutoresetMode

__all__ = ["make_env", "make_vector_env", "probe_spaces", "action_kind", "check_observation_space", "Collector",
           "Step", "UnknownEnvironmentError", "UnsupportedEnvironmentError", "NonFiniteError",
           "SameStepCartPole", "cartpole_equations"]


class UnknownEnvironmentError(ValueError):
    """An environment id that gymnasium does not know."""


class UnsupportedEnvironmentError(ValueError):
    """A task minipg cannot train on: a missing dependency, or an observation or action
    space its networks do not take."""


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinity (a loss, a parameter, or a task's reward)."""


def _check_env_id(env_id):
    """An error naming what is accepted unless gymnasium knows ``env_id``.

    gymnasium's ``module:EnvId`` form imports ``module`` (which registers
    ``EnvId``) first, as ``gym.make`` does.
    """
    if not isinstance(env_id, str) or not env_id.strip():
        raise UnknownEnvironmentError(
            f"--env {env_id!r}: an environment id is needed; accepted: a gymnasium id such as "
            f"CartPole-v1 or Pendulum-v1, or module:EnvId for a task registered by a module "
            f"(leave --env out for the algorithm's default task)")
    if env_id.startswith("mpe2/"):           # minipg.envs.multiagent's tasks
        raise UnsupportedEnvironmentError(
            f"--env {env_id} is a multi-agent task; use maddpg (minipg train maddpg --env "
            f"{env_id}); this algorithm trains one-agent gymnasium tasks")
    name = env_id
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except Exception as exc:   # ImportError, or any error raised by the module itself
            raise UnknownEnvironmentError(
                f"--env {env_id}: cannot import module {module!r} ({type(exc).__name__}: "
                f"{exc}); the form module:EnvId imports the module, which must register "
                f"EnvId with gymnasium.register") from None
    if name not in gym.registry:
        stem = name.lower().split("-")[0].split("/")[-1]
        close = [k for k in gym.registry if stem and stem in k.lower()][:8]
        hint = f" Similar ids: {', '.join(close)}." if close else ""
        raise UnknownEnvironmentError(
            f"unknown environment {env_id!r}: not registered with gymnasium.{hint} "
            f"Any gymnasium id is accepted, e.g. CartPole-v1, Acrobot-v1, Pendulum-v1, "
            f"minipg/ShortCorridor-v0, minipg/LQR2D-v0 (see `minipg list`), or module:EnvId "
            f"for a task that a module registers.")


def action_kind(space):
    """'discrete' for a Discrete action space, 'continuous' for a 1-D Box, else an error."""
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return "continuous"
    raise UnsupportedEnvironmentError(
        f"unsupported action space {space}: minipg accepts Discrete or a 1-D Box actions")


def check_observation_space(env_id, space):
    """An error unless minipg's MLPs can take ``space``'s observations as a vector.

    Accepted: a Box of numbers (flattened), Discrete (the index as one number),
    MultiDiscrete and MultiBinary (flattened).  Refused: spaces without a
    fixed shape (Dict, Tuple, Text, Graph, ...) and uint8 images, which an MLP
    would take pixel by pixel.
    """
    if getattr(space, "shape", None) is None or not isinstance(
            space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete,
                    gym.spaces.MultiBinary)):
        raise UnsupportedEnvironmentError(
            f"{env_id} has {type(space).__name__} observations ({space}); minipg's networks "
            f"take a vector: accepted: Box, Discrete, MultiDiscrete or MultiBinary "
            f"observations (a Dict or Tuple task can be wrapped in "
            f"gymnasium.wrappers.FlattenObservation and registered under its own id)")
    if isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3):
        raise UnsupportedEnvironmentError(
            f"{env_id} has image observations (uint8, shape {space.shape}); minipg's networks "
            f"are MLPs on vector observations and would take the image pixel by pixel: "
            f"accepted: vector observations (a Box of numbers, Discrete, MultiDiscrete or "
            f"MultiBinary)")


def _dependency_error(env_id, exc):
    extra = ""
    text = str(exc).lower()
    if "mujoco" in text:
        extra = " (minipg's `mujoco` extra installs it: pip install 'minipg[mujoco]')"
    elif "pygame" in text:
        extra = " (minipg's `render` extra installs it: pip install 'minipg[render]')"
    return UnsupportedEnvironmentError(
        f"{env_id} needs a package that is not installed: {exc}{extra}")


def make_env(env_id, wrappers=(), render_mode=None):
    """One environment: ``gym.make(env_id)`` with the episode recorder innermost,
    then ``wrappers`` (callables env -> env) in order."""
    _check_env_id(env_id)
    try:
        env = gym.make(env_id) if render_mode is None else gym.make(env_id,
                                                                    render_mode=render_mode)
    except gym_error.DependencyNotInstalled as exc:
        raise _dependency_error(env_id, exc) from None
    except TypeError as exc:
        if render_mode is None or "render_mode" not in str(exc):
            raise
        raise UnsupportedEnvironmentError(
            f"{env_id} does not take render_mode={render_mode!r}; accepted: a task that "
            f"renders in rgb_array mode") from None
    modes = env.metadata.get("render_modes") or []
    if render_mode is not None and render_mode not in modes:
        env.close()
        raise UnsupportedEnvironmentError(
            f"{env_id} does not render in {render_mode} mode (its render modes: "
            f"{', '.join(map(str, modes)) or 'none'}); accepted: a task that renders in "
            f"rgb_array mode")
    env = gym.wrappers.RecordEpisodeStatistics(env)
    for wrap in wrappers:
        env = wrap(env)
    return env


def probe_spaces(env_id, wrappers=()):
    """(observation space, action space) of one ``make_env(env_id, wrappers)``, closed
    again: a missing dependency or an unknown id fails here, in this process, before
    anything else is built."""
    env = make_env(env_id, wrappers)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def make_vector_env(env_id, n_envs=1, wrappers=(), vectorization="sync", render_mode=None):
    """``n_envs`` copies of ``make_env(env_id, wrappers)`` as a gymnasium vector env
    (``vectorization``: 'sync' runs them in this process, 'async' in subprocesses)."""
    if vectorization not in ("sync", "async"):
        raise ValueError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")
    if int(n_envs) < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    _check_env_id(env_id)
    if (vectorization == "sync" and not wrappers and render_mode is None
            and env_id in SameStepCartPole.ENV_IDS and int(n_envs) >= 2):
        return SameStepCartPole.make(env_id, int(n_envs))
    fns = [lambda: make_env(env_id, wrappers, render_mode) for _ in range(int(n_envs))]
    cls = gym.vector.SyncVectorEnv if vectorization == "sync" else gym.vector.AsyncVectorEnv
    return cls(fns, autoreset_mode=AutoresetMode.SAME_STEP)


class SameStepCartPole(gym.vector.VectorWrapper):
    """gymnasium's NumPy-vectorized CartPole with ``SAME_STEP`` autoreset semantics.

    ``gym.make_vec(id, vectorization_mode="vector_entry_point")`` steps all
    N carts in one NumPy expression (no Python loop over environments and
    wrappers: ~10x less time per vector step than a SyncVectorEnv of
    ``gym.make`` copies), but it autoresets in ``NEXT_STEP`` mode: a
    finished cart is reset by the *following* ``step`` call, which ignores
    its action and returns a reward of 0 -- a step that is no transition.
    This wrapper makes it behave exactly as the ``SAME_STEP`` SyncVectorEnv
    the Collector expects, for the same task:

    * the step that ends an episode returns the reset observation for that
      cart, the true final observation in ``info["final_obs"]`` and the
      flags as computed by the environment (termination from the angle and
      position limits, truncation at ``max_episode_steps`` -- the spec's
      TimeLimit, 500 for v1), so no transition is lost or invented;
    * the reset is the environment's own: the same draw
      ``np_random.uniform(low, high, size=(4, k))`` and counter reset that
      its next ``step`` would do, done now, after which the environment's
      own pending reset is cleared;
    * episode returns and lengths are reported as ``RecordEpisodeStatistics``
      reports them (``info["final_info"]["episode"]``).

    Used by :func:`make_vector_env` for ``CartPole-v0/v1`` with
    ``vectorization="sync"``, no wrappers (wrappers are per environment and
    need the SyncVectorEnv) and at least 2 environments (for one, the
    SyncVectorEnv is faster: one NumPy call per operation either way, and
    Python floats are cheaper than NumPy arrays of one element);
    tests/test_algorithms_onpolicy.py checks
    transition by transition that the dynamics, flags and final observations
    equal those of ``gym.make``'s single-environment CartPole.
    """

    ENV_IDS = ("CartPole-v1", "CartPole-v0")
    _RESET_STATE = ("state", "steps", "prev_done", "low", "high")

    @classmethod
    def make(cls, env_id, n_envs):
        return cls(gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point"))

    def __init__(self, env):
        super().__init__(env)
        inner = env.unwrapped
        missing = [a for a in self._RESET_STATE if not hasattr(inner, a)]
        if missing or inner.metadata.get("autoreset_mode") != AutoresetMode.NEXT_STEP:
            raise TypeError(f"SameStepCartPole: {type(inner).__name__} lacks {missing} or does "
                            "not autoreset in NEXT_STEP mode; use a SyncVectorEnv")
        if getattr(inner, "_sutton_barto_reward", False):
            raise TypeError("SameStepCartPole: the Sutton-Barto reward is not supported; use a "
                            "SyncVectorEnv")
        if inner.max_episode_steps != inner.spec.max_episode_steps:
            raise ValueError(f"SameStepCartPole: time limit {inner.max_episode_steps} differs "
                             f"from the spec's {inner.spec.max_episode_steps}")
        self.metadata = dict(env.metadata, autoreset_mode=AutoresetMode.SAME_STEP)
        self.episode_returns = np.zeros(self.num_envs)
        self.episode_lengths = np.zeros(self.num_envs, dtype=np.int64)

    def reset(self, *, seed=None, options=None):
        self.episode_returns[:] = 0.0
        self.episode_lengths[:] = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, actions):
        obs, rewards, terminated, truncated = self._carts_step(actions)
        info = {}
        self.episode_returns += rewards
        self.episode_lengths += 1
        done = terminated | truncated
        if not done.any():
            return obs, rewards, terminated, truncated, info
        env = self.env.unwrapped
        final_obs = np.empty(self.num_envs, dtype=object)
        for i in np.flatnonzero(done):
            final_obs[i] = obs[i].copy()
        # the environment's own reset of the finished carts, now instead of at the next step
        env.state[:, done] = env.np_random.uniform(low=env.low, high=env.high,
                                                   size=(4, int(done.sum())))
        env.steps[done] = 0
        env.prev_done[:] = False
        obs = env.state.T.astype(np.float32)
        episode = {"r": np.where(done, self.episode_returns, 0.0),
                   "l": np.where(done, self.episode_lengths, 0)}
        self.episode_returns[done] = 0.0
        self.episode_lengths[done] = 0
        info = dict(info, final_obs=final_obs, _final_obs=done,
                    final_info={"episode": episode, "_episode": done})
        return obs, rewards, terminated, truncated, info


    # up to this many carts, the equations run on Python floats, one cart at a time: a
    # NumPy call on 2 numbers costs as much as ~20 float operations
    FLOAT_CARTS = 8

    def _carts_step(self, actions):
        """gymnasium's ``CartPoleVectorEnv.step`` (gymnasium 1.x) with the same floats
        (:func:`cartpole_equations`), without its per-call ``action_space.contains``
        (a cheap check of the actions replaces it) and without its NEXT_STEP reset,
        which :meth:`step` does at once instead."""
        env = self.env.unwrapped
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu" \
                or (actions >> 1).any():                       # only 0 and 1 pass
            raise ValueError(f"CartPole: actions must be {self.num_envs} integers in {{0, 1}}; "
                             f"got {actions!r}")
        force = np.sign(actions - 0.5) * env.force_mag
        theta = env.state[2]
        costheta, sintheta = np.cos(theta), np.sin(theta)      # NumPy's, as gymnasium's
        if self.num_envs <= self.FLOAT_CARTS:
            carts = [cartpole_equations(env, *cart) for cart in zip(
                *env.state.tolist(), force.tolist(), costheta.tolist(), sintheta.tolist())]
            *state, terminated = zip(*carts)
            env.state = np.array(state)
            terminated = np.array(terminated)
        else:
            *state, terminated = cartpole_equations(env, *env.state, force, costheta, sintheta)
            env.state = np.stack(state)
        env.steps += 1
        truncated = env.steps >= env.max_episode_steps
        reward = np.ones_like(terminated, dtype=np.float32)     # +1 per step (checked above)
        return env.state.T.astype(np.float32), reward, terminated, truncated


def cartpole_equations(env, x, x_dot, theta, theta_dot, force, costheta, sintheta):
    """One Euler step of gymnasium's CartPole (``CartPoleVectorEnv.step``, gymnasium 1.x):
    the same expressions in the same order (np.square(v) as v * v, the same rounding), on
    arrays of carts or on one cart's floats alike; returns (x, x_dot, theta, theta_dot,
    terminated)."""
    temp = (force + env.polemass_length * (theta_dot * theta_dot) * sintheta) / env.total_mass
    thetaacc = (env.gravity * sintheta - costheta * temp) / (
        env.length * (4.0 / 3.0 - env.masspole * (costheta * costheta) / env.total_mass))
    xacc = temp - env.polemass_length * thetaacc * costheta / env.total_mass
    if env.kinematics_integrator == "euler":
        x = x + env.tau * x_dot
        x_dot = x_dot + env.tau * xacc
        theta = theta + env.tau * theta_dot
        theta_dot = theta_dot + env.tau * thetaacc
    else:                                                       # semi-implicit Euler
        x_dot = x_dot + env.tau * xacc
        x = x + env.tau * x_dot
        theta_dot = theta_dot + env.tau * thetaacc
        theta = theta + env.tau * theta_dot
    terminated = ((x < -env.x_threshold) | (x > env.x_threshold)
                  | (theta < -env.theta_threshold_radians)
                  | (theta > env.theta_threshold_radians))
    return x, x_dot, theta, theta_dot, terminated


@dataclass
class Step:
    """One vector step: arrays with leading axis n_envs.

    ``next_obs`` is the true successor of ``obs`` (the final observation where
    an episode ended); ``reset_obs`` is where each environment continues.
    """
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray


class Collector:
    """Steps a vector environment for an algorithm and keeps the run's counters.

    Attributes: ``obs`` (current observations, float array of ``dtype``),
    ``steps`` (environment steps so far, summed over sub-environments),
    ``episodes`` (finished episodes), ``recent_returns`` / ``recent_lengths``
    (the last ``window`` finished episodes).
    """

    def __init__(self, envs, seed, dtype=np.float64, window=20):
        self.envs = envs
        self.n_envs = envs.num_envs
        self.dtype = np.dtype(dtype)
        self.observation_space = envs.single_observation_space
        self.action_space = envs.single_action_space
        self.kind = action_kind(self.action_space)
        self.action_space.seed(int(seed))  # random warm-up actions are reproducible
        obs, _ = envs.reset(seed=int(seed))
        self.obs = self._obs(obs)
        self.steps = 0
        self.episodes = 0
        self.recent_returns = deque(maxlen=window)
        self.recent_lengths = deque(maxlen=window)
        self.finished = []  # (step, return, length) since the last drain_finished()

    def _obs(self, obs):
        return np.asarray(obs, dtype=self.dtype).reshape(self.n_envs, -1)

    def random_actions(self):
        """Uniform random actions from the action space (warm-up)."""
        return np.stack([self.action_space.sample() for _ in range(self.n_envs)])

    def step(self, actions):
        """Apply ``actions`` (n_envs, ...) and return the :class:`Step`.

        Continuous actions are clipped to the Box bounds on their way to the
        environment; ``Step.actions`` keeps them as the policy drew them (their
        log-probability is the one the estimators need).
        """
        actions = np.asarray(actions)
        if self.kind == "discrete":
            env_actions = actions.astype(np.int64).reshape(self.n_envs)
        else:
            env_actions = np.clip(actions.reshape(self.n_envs, -1), self.action_space.low,
                                  self.action_space.high).astype(self.action_space.dtype)
        obs_now = self.obs
        reset_obs, rewards, terminated, truncated, info = self.envs.step(env_actions)
        if not np.isfinite(rewards).all():
            raise NonFiniteError(f"non-finite reward {np.asarray(rewards).tolist()} from the "
                                 f"task at step {self.steps + self.n_envs}")
        reset_obs = self._obs(reset_obs)
        next_obs = reset_obs
        done = terminated | truncated
        if done.any():
            next_obs = reset_obs.copy()
            final_info = info["final_info"]
            for i in np.flatnonzero(done):
                next_obs[i] = np.asarray(info["final_obs"][i], dtype=self.dtype).ravel()
                if "episode" in final_info and final_info["_episode"][i]:
                    ep_return = float(final_info["episode"]["r"][i])
                    ep_length = int(final_info["episode"]["l"][i])
                    self.recent_returns.append(ep_return)
                    self.recent_lengths.append(ep_length)
                    self.finished.append((self.steps + self.n_envs, ep_return, ep_length))
                    self.episodes += 1
        self.steps += self.n_envs
        self.obs = reset_obs
        return Step(obs_now, actions, np.asarray(rewards, dtype=self.dtype), next_obs,
                    np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool))

    def render(self):
        """The first sub-environment's frame (environments made with a render mode)."""
        return self.envs.envs[0].render()

    def drain_finished(self):
        """The (step, return, length) of episodes finished since the last call."""
        out, self.finished = self.finished, []
        return out

    def state_arrays(self):
        """Counters, current observations, RNGs and the environments' state (for resume)."""
        out = env_state_arrays(self.envs)
        out.update({
            "collector/obs": self.obs, "collector/steps": np.asarray(self.steps),
            "collector/episodes": np.asarray(self.episodes),
            "collector/recent_returns": np.asarray(self.recent_returns, dtype=np.float64),
            "collector/recent_lengths": np.asarray(self.recent_lengths, dtype=np.int64),
            "collector/action_rng": np.array(json.dumps(
                self.action_space.np_random.bit_generator.state))})
        return out

    def load_state_arrays(self, arrays):
        load_env_state_arrays(self.envs, arrays)
        obs = np.asarray(arrays["collector/obs"], dtype=self.dtype)
        if obs.shape != self.obs.shape:
            raise ValueError(f"checkpoint observations have shape {obs.shape}, this run "
                             f"{self.obs.shape}")
        self.obs = obs
        self.steps = int(arrays["collector/steps"])
        self.episodes = int(arrays["collector/episodes"])
        self.recent_returns.extend(arrays["collector/recent_returns"].tolist())
        self.recent_lengths.extend(arrays["collector/recent_lengths"].tolist())
        self.action_space.np_random.bit_generator.state = json.loads(
            str(arrays["collector/action_rng"]))

    def close(self):
        self.envs.close()


# --- exact resume: the environments' state as plain arrays ------------------------------
# Everything a pure-Python/NumPy task and its wrappers keep between steps:
# arrays, numbers, flags, random generators and running statistics.  Skipped:
# spaces, specs, rendering handles, wall-clock times.  Tasks whose state lives
# in C structures (MuJoCo's MjData) are not captured; a resumed run of such a
# task continues from freshly reset episodes' state as stored, approximately.
_SKIP = {"episode_start_time", "time_queue", "spec", "_cached_spec", "render_mode"}


def _layers(env):
    while True:
        yield env
        if not hasattr(env, "env"):
            return
        env = env.env


def _env_chains(envs):
    """The wrapper chains whose state a snapshot holds: each sub-environment of a
    SyncVectorEnv, or the one vectorized environment (None where not captured)."""
    if isinstance(envs, gym.vector.SyncVectorEnv):
        return envs.envs
    if isinstance(envs, SameStepCartPole):
        return [envs]
    return None


def env_state_arrays(envs):
    """{key: ndarray} snapshot of every sub-environment of a SyncVectorEnv
    (or of a :class:`SameStepCartPole`)."""
    chains = _env_chains(envs)
    if chains is None:
        return {}
    scalars, arrays = {}, {}
    for i, env in enumerate(chains):
        for depth, layer in enumerate(_layers(env)):
            for name, value in vars(layer).items():
                key = f"{i}/{depth}/{name}"
                if name in _SKIP:
                    continue
                if isinstance(value, np.ndarray) and value.dtype != object:
                    arrays[f"envstate/{key}"] = value
                elif value is None or isinstance(value, (bool, int, float, np.number)):
                    scalars[key] = value.item() if isinstance(value, np.number) else value
                elif isinstance(value, np.random.Generator):
                    scalars[key] = {"generator": value.bit_generator.state}
                elif all(hasattr(value, a) for a in ("mean", "var", "count")):
                    for a in ("mean", "var", "count"):  # gymnasium's RunningMeanStd
                        arrays[f"envstate/{key}/{a}"] = np.asarray(getattr(value, a))
    arrays["envstate/scalars"] = np.array(json.dumps(scalars))
    return arrays


def load_env_state_arrays(envs, arrays):
    """Restore what ``env_state_arrays`` saved (same task, same number of envs)."""
    chains = _env_chains(envs)
    if "envstate/scalars" not in arrays or chains is None:
        return
    layers = [list(_layers(env)) for env in chains]
    for key, value in json.loads(str(arrays["envstate/scalars"])).items():
        i, depth, name = key.split("/", 2)
        layer = layers[int(i)][int(depth)]
        if isinstance(value, dict) and "generator" in value:
            getattr(layer, name).bit_generator.state = value["generator"]
        else:
            setattr(layer, name, value)
    for key, value in arrays.items():
        parts = key.split("/")
        if parts[0] != "envstate" or parts[1] == "scalars":
            continue
        layer = layers[int(parts[1])][int(parts[2])]
        if len(parts) == 4:
            setattr(layer, parts[3], np.array(value))
        else:
            setattr(getattr(layer, parts[3]), parts[4],
                    np.array(value) if np.ndim(value) else value.item())
