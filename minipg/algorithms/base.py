"""What every algorithm module provides, and the configuration machinery they share.

An algorithm is a subclass of :class:`Algorithm` with a config dataclass
(a subclass of :class:`BaseConfig` whose fields carry a one-line ``help`` and
their accepted range in ``metadata``), per-task presets, and two methods the
run loop (:mod:`minipg.run`) calls: ``learn(collector)`` does one iteration
(collect -> compute targets -> update) and returns its diagnostics, and
``act(obs, deterministic)`` chooses actions.  Everything else (the run
directory, logging, checkpoints, evaluation) lives in the run loop, once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import textwrap
import typing
from dataclasses import dataclass, field

import numpy as np

from ..envs.vector import (Collector, action_kind, check_observation_space, make_vector_env,
                           probe_spaces)

__all__ = ["Algorithm", "BaseConfig", "ConfigError", "setting", "config_from",
           "config_to_dict", "config_help", "parse_assignments", "validate", "accepted_range",
           "accepted_values", "setting_default", "parse_int", "memory_estimate",
           "check_memory", "available_memory", "format_bytes", "update_rows", "INT_HIGH",
           "WIDTH_HIGH", "LAYERS_HIGH", "replay_state", "load_replay_state"]

# Upper bounds every setting has unless it states a smaller one: an integer setting
# at most INT_HIGH; a layer-size tuple at most LAYERS_HIGH layers of at most WIDTH_HIGH
# units.  What the buffers and networks of a run would take in memory is checked
# against the machine by ``check_memory`` before anything is built.
INT_HIGH = 10**9
WIDTH_HIGH = 2**16
LAYERS_HIGH = 32


class ConfigError(ValueError):
    """A setting that is unknown, of the wrong type or out of range."""


def setting(default, help, low=None, high=None, low_open=False, high_open=False,
            choices=None):
    """A config field with its one-line help and accepted range (checked by ``validate``).

    An integer setting without ``high`` gets ``INT_HIGH``; a tuple of layer
    sizes, ``WIDTH_HIGH`` per entry (and at most ``LAYERS_HIGH`` entries).
    """
    if high is None and choices is None:
        if isinstance(default, int) and not isinstance(default, bool):
            high = INT_HIGH
        elif isinstance(default, (list, tuple)):
            high = WIDTH_HIGH
    meta = {"help": help, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open, "choices": choices}
    if isinstance(default, (list, tuple)):
        default = tuple(default)
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class BaseConfig:
    """Settings every algorithm has."""
    total_steps: int = setting(100_000, "environment steps to train for", low=1)
    n_envs: int = setting(1, "parallel environments", low=1, high=1024)
    vectorization: str = setting("sync", "vector env: 'sync' (one process) or 'async'",
                                 choices=("sync", "async"))
    dtype: str = setting("float64", "floating point type of networks and data",
                         choices=("float64", "float32"))
    eval_episodes: int = setting(10, "episodes of the final deterministic evaluation", low=1,
                                 high=10_000)
    log_every: int = setting(2_000, "environment steps between progress rows", low=1)
    checkpoint_every: int = setting(20_000, "environment steps between checkpoints", low=1)

    def check(self):
        """Cross-field constraints; subclasses extend (raise ConfigError)."""


def _field_type(cls, name):
    return typing.get_type_hints(cls)[name]


def parse_int(value):
    """``value`` (an int, an integral float, or a string such as '2000', '2_000', '1e5')
    as an int; ValueError otherwise (bools, fractions, non-finite numbers, other text)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return int(text)                   # exact for any size of integer
        except ValueError:
            pass
        value = float(text)                     # accept 1e5
    if isinstance(value, float) and not value.is_integer():   # also nan and inf
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _coerce(cls, name, value):
    """``value`` (a string from the command line, or a JSON value) as field ``name``'s type."""
    ftype = _field_type(cls, name)
    origin = typing.get_origin(ftype)
    try:
        if ftype is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if ftype is int:
            return parse_int(value)
        if ftype is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if ftype is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if origin is tuple:
            if isinstance(value, str):
                parts = [p for p in value.replace(" ", "").split(",") if p]
            else:
                parts = list(value)
            return tuple(parse_int(p) for p in parts)
    except (ValueError, TypeError, OverflowError):
        pass
    expected = {bool: "true/false", int: "an integer", float: "a number",
                str: "a string"}.get(ftype, "comma-separated integers, e.g. 64,64")
    raise ConfigError(f"setting {name!r}: {value!r} is not {expected}")


def _number(v):
    """``v`` as the text a user would type: 1000000000 as 1e9, others as they are."""
    if isinstance(v, int) and abs(v) >= 10**6:
        digits = str(abs(v))
        if digits.strip("0") == digits[0]:
            return f"{'-' if v < 0 else ''}{digits[0]}e{len(digits) - 1}"
    return v


def accepted_range(meta):
    """A field's accepted interval as text, e.g. '(0.0, 1.0]' or '[1, inf)'; None if unbounded."""
    low, high = meta.get("low"), meta.get("high")
    if low is None and high is None:
        return None
    lo = "-inf" if low is None else _number(low)
    hi = "inf" if high is None else _number(high)
    return ("(" if meta.get("low_open") or low is None else "[") + f"{lo}, {hi}" + \
        (")" if meta.get("high_open") or high is None else "]")


def validate(config):
    """Check every field's type and range, then ``config.check()``; raise ConfigError."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        meta = f.metadata
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise ConfigError(f"setting {f.name!r}: {value!r} is not accepted; "
                              f"accepted: {', '.join(map(str, meta['choices']))}")
        if isinstance(value, tuple):
            high = meta.get("high") or WIDTH_HIGH
            if not 0 < len(value) <= LAYERS_HIGH or any(not 1 <= v <= high for v in value):
                raise ConfigError(f"setting {f.name!r}: {','.join(map(str, value)) or 'empty'}"
                                  f" is not accepted; accepted: {_tuple_accepted(meta)}")
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"setting {f.name!r}: {value!r} is not finite")
            low, high = meta.get("low"), meta.get("high")
            too_low = low is not None and (value <= low if meta.get("low_open") else value < low)
            too_high = high is not None and (value >= high if meta.get("high_open")
                                             else value > high)
            if too_low or too_high:
                raise ConfigError(f"setting {f.name!r}: {value!r} is out of range; "
                                  f"accepted: {accepted_range(meta)} ({meta.get('help', '')})")
    config.check()
    return config


def _tuple_accepted(meta):
    high = meta.get("high") or WIDTH_HIGH
    return (f"1 to {LAYERS_HIGH} comma-separated integers in [1, {_number(high)}], "
            f"e.g. 64,64")


def parse_assignments(assignments):
    """``['lr=3e-4', 'hidden=64,64']`` -> ``{'lr': '3e-4', 'hidden': '64,64'}``."""
    out = {}
    for item in assignments or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out


def config_from(config_cls, overrides):
    """A validated ``config_cls`` with ``overrides`` (a dict of strings or JSON values)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(map(repr, unknown))}; valid settings: "
                          f"{', '.join(sorted(names))}")
    values = {k: _coerce(config_cls, k, v) for k, v in overrides.items()}
    return validate(config_cls(**values))


def config_to_dict(config):
    """The config as JSON-ready values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(config).items()}


def setting_default(f):
    """The default value of config field ``f`` (a tuple default as a list)."""
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return list(value) if isinstance(value, tuple) else value


def accepted_values(config_cls, f):
    """What ``--set NAME=...`` accepts for field ``f``, in words: type and range or choices."""
    meta = f.metadata
    if meta.get("choices") is not None:
        return "one of " + ", ".join(map(str, meta["choices"]))
    ftype = _field_type(config_cls, f.name)
    if ftype is bool:
        return "true or false"
    if typing.get_origin(ftype) is tuple:
        return _tuple_accepted(meta)
    kind = {int: "an integer", float: "a number", str: "a string"}.get(ftype, str(ftype))
    interval = accepted_range(meta)
    return kind if interval is None else f"{kind} in {interval}"


def config_help(config_cls, width=100):
    """Every setting of ``config_cls``: 'NAME = DEFAULT  (accepted values)' and its help.

    Two lines per setting (the help indented below its name), in the
    order of the dataclass; the text of ``minipg train ALGO --help``.
    """
    lines = []
    for f in dataclasses.fields(config_cls):
        lines.append(f"  {f.name} = {json.dumps(setting_default(f))}  "
                     f"({accepted_values(config_cls, f)})")
        lines.extend(textwrap.wrap(f.metadata.get("help", ""), width=width,
                                   initial_indent=" " * 6, subsequent_indent=" " * 6))
    return lines


# --- the memory a run's buffers and networks take --------------------------------------
def format_bytes(n):
    """``n`` bytes as text: '512 B', '3.2 MiB', '233.0 TiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def update_rows(config):
    """(rows, settings): the rows of one update's batch and the settings that set them --
    the minibatch where there is one, else the rollout (``n_steps`` x ``n_envs``), the
    episode batch or the replay minibatch, whichever is largest."""
    n_envs = int(getattr(config, "n_envs", 1))
    if hasattr(config, "minibatch_size"):           # updates on minibatches of a rollout
        return max(int(config.minibatch_size), n_envs), ("minibatch_size",)
    rollout = int(getattr(config, "n_steps", 0)) * n_envs
    return (max(rollout, int(getattr(config, "batch_steps", 0)), n_envs,
                int(getattr(config, "batch_size", 0))), ("n_steps", "batch_steps", "batch_size"))


def memory_estimate(config, obs_dim, act_dim):
    """{part: (bytes, settings)} an upper estimate of what a run of ``config`` allocates
    on a task with ``obs_dim`` observation numbers and ``act_dim`` action numbers (the
    number of actions for a discrete task).

    Read from the settings every algorithm names alike: the networks (``hidden``;
    up to six networks for an off-policy algorithm -- actor, two critics, their
    targets -- two otherwise, each with its gradient and two Adam moments), the
    activations of the largest batch, a rollout (``n_steps`` x ``n_envs``), a
    REINFORCE batch (``batch_steps``) and a replay buffer (``buffer_size``
    transitions, allocated whole).  Settings an algorithm does not have count 0.
    """
    item = np.dtype(config.dtype).itemsize
    obs_dim, act_dim = max(int(obs_dim), 1), max(int(act_dim), 1)
    hidden = list(getattr(config, "hidden", ()) or ())
    off_policy = hasattr(config, "buffer_size")
    sizes = [obs_dim + (act_dim if off_policy else 0), *hidden, act_dim]
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    n_nets = 6 if off_policy else 2
    n_envs = int(getattr(config, "n_envs", 1))
    per_step = obs_dim + act_dim + 8                # obs, action, reward, value, log-prob, ...
    rollout = int(getattr(config, "n_steps", 0)) * n_envs
    batch_steps = int(getattr(config, "batch_steps", 0))
    rows, batch_keys = update_rows(config)
    parts = {
        "networks": (4 * n_nets * params * item, ("hidden",)),
        "activations": (4 * n_nets * rows * (sum(hidden) + obs_dim + act_dim) * item,
                        ("hidden",) + tuple(k for k in batch_keys if hasattr(config, k))
                        + ("n_envs",)),
        "rollout buffer": (rollout * per_step * item, ("n_steps", "n_envs")),
        "episode batch": (batch_steps * per_step * item, ("batch_steps",)),
        "replay buffer": (int(getattr(config, "buffer_size", 0)) * (2 * obs_dim + act_dim + 3)
                          * item, ("buffer_size",)),
    }
    return {k: v for k, v in parts.items() if v[0] > 0}


def _setting_text(value):
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(_number(value))


def available_memory():
    """Bytes this process may use: the machine's memory, or a lower cgroup limit."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                limit = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if total is None or 0 < limit < total:
            total = limit
    return total


def check_memory(config, obs_dim, act_dim, limit=None):
    """ConfigError naming the settings (and what would fit) where ``memory_estimate``
    exceeds ``limit`` bytes (default: ``available_memory()``); the estimate otherwise."""
    limit = available_memory() if limit is None else limit
    parts = memory_estimate(config, obs_dim, act_dim)
    total = sum(b for b, _ in parts.values())
    if limit is None or total <= limit:
        return total
    name, (biggest, names) = max(parts.items(), key=lambda kv: kv[1][0])
    names = tuple(k for k in names if hasattr(config, k))
    values = ", ".join(f"{k}={_setting_text(getattr(config, k))}" for k in names)
    hint = ""
    if names and name in ("rollout buffer", "episode batch", "replay buffer"):
        key = names[0]
        fits = int(getattr(config, key) * max(limit - (total - biggest), 0) / biggest)
        hint = f"; at most about {key}={fits} fits with the other settings as they are"
    raise ConfigError(
        f"this run would need about {format_bytes(total)} of memory, more than the "
        f"{format_bytes(limit)} available; the {name} alone would take "
        f"{format_bytes(biggest)} "
        f"({values}, {config.dtype}): lower {' or '.join(names)}"
        f"{hint}")


# --- a replay buffer in the checkpoint (``checkpoint_replay``) --------------------------
def replay_state(buffer, enabled):
    """``buffer.state_dict()`` under keys ``replay/...`` for an algorithm's
    :meth:`Algorithm.extra_state` when ``enabled``; else nothing."""
    return {f"replay/{k}": v for k, v in buffer.state_dict().items()} if enabled else {}


def load_replay_state(buffer, arrays, enabled):
    """Restore :func:`replay_state`'s keys from ``arrays`` into ``buffer`` when ``enabled``
    (a ValueError if the checkpoint holds none); the keys are ignored otherwise."""
    if not enabled:
        return
    replay = {k[len("replay/"):]: v for k, v in arrays.items() if k.startswith("replay/")}
    if not replay:
        raise ValueError("checkpoint_replay is on but the checkpoint holds no replay buffer")
    buffer.load_state_dict(replay)


class Algorithm:
    """Base of every algorithm (see the module docstring).

    Class attributes a subclass sets: ``name``, ``Config``, ``action_kinds``
    (a tuple of 'discrete' / 'continuous'), ``default_env``, ``description``
    (one line), ``presets`` ({env_id: {setting: value}}, applied before
    ``--set`` overrides; the default task must have one).
    """

    name = "?"
    Config = BaseConfig
    action_kinds = ("discrete", "continuous")
    default_env = "CartPole-v1"
    description = ""
    presets: dict = {}

    def __init__(self, config, observation_space, action_space, seed):
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.dtype = np.dtype(config.dtype)
        self.rng = np.random.default_rng(seed)

    # --- what the run loop calls -------------------------------------------------
    @classmethod
    def env_wrappers(cls, config):
        """gymnasium wrappers (callables env -> env) applied to every sub-environment."""
        return []

    @classmethod
    def check_task(cls, env_id, config):
        """Refuse, with a ConfigError, a task this algorithm cannot train on.

        The default is for one-agent gymnasium tasks: one environment made and
        closed (an unknown id, a missing package), observations an MLP takes,
        actions of a kind in ``action_kinds``, buffers and networks that fit in
        memory.  An algorithm with other tasks (several agents) overrides it
        together with :meth:`make_collector`.
        """
        obs_space, act_space = probe_spaces(env_id, cls.env_wrappers(config))
        check_observation_space(env_id, obs_space)
        try:
            kind = action_kind(act_space)
        except ValueError as exc:
            raise ConfigError(f"{env_id}: {exc}") from None
        if kind not in cls.action_kinds:
            raise ConfigError(
                f"{cls.name} works with {' or '.join(cls.action_kinds)} actions, but "
                f"{env_id} has {kind} actions ({act_space}). Try e.g. "
                f"`--env {cls.default_env}`.")
        obs_dim = int(np.prod(obs_space.shape)) if obs_space.shape else 1
        act_dim = int(act_space.n) if hasattr(act_space, "n") else int(np.prod(act_space.shape))
        check_memory(config, obs_dim, act_dim)

    @classmethod
    def make_collector(cls, env_id, config, seed, n_envs=None, render_mode=None):
        """The collector the run loop trains with (``n_envs=None``: the config's
        ``n_envs``) or evaluates with (``n_envs=1``, optionally rendering).

        It has the attributes and methods of :class:`minipg.envs.vector.Collector`
        that the run loop uses: ``observation_space`` and ``action_space`` (passed
        to the algorithm's constructor), ``obs``, ``steps``, ``episodes``,
        ``recent_returns``, ``recent_lengths``, ``step(actions)``,
        ``drain_finished()``, ``render()``, ``state_arrays()``,
        ``load_state_arrays(arrays)``, ``close()``; and, optionally,
        ``progress_columns()`` -> {name: float} (extra progress.csv columns, the same
        keys every time).  The default steps a gymnasium vector environment; an
        algorithm whose workers own their environments, or whose tasks have several
        agents, returns its own.
        """
        if n_envs is None:
            n_envs, vectorization = config.n_envs, config.vectorization
        else:
            vectorization = "sync"
        envs = make_vector_env(env_id, n_envs, cls.env_wrappers(config), vectorization,
                               render_mode=render_mode)
        try:
            return Collector(envs, seed=seed, dtype=config.dtype)
        except BaseException:
            envs.close()
            raise

    def learn(self, collector):
        """One iteration: collect with ``collector.step``, update; return {name: float}."""
        raise NotImplementedError

    def act(self, obs, deterministic=False):
        """Actions (n, ...) for observations (n, obs_dim)."""
        raise NotImplementedError

    def modules(self):
        """{name: Module} of every network (checkpointed, checked for non-finite values)."""
        return {}

    def optimizers(self):
        """{name: Optimizer} (their state is checkpointed)."""
        return {}

    # --- checkpoints: plain arrays only ------------------------------------------
    def state_arrays(self):
        """Everything needed to continue: {key: ndarray}."""
        out = {}
        for name, module in self.modules().items():
            out[f"module/{name}"] = np.array(module.flat_params, copy=True)
        for name, opt in self.optimizers().items():
            for key, value in opt.state_dict().items():
                out[f"optim/{name}/{key}"] = np.asarray(value)
        out["rng"] = np.array(json.dumps(self.rng.bit_generator.state))
        out.update({f"extra/{k}": np.asarray(v) for k, v in self.extra_state().items()})
        return out

    def extra_state(self):
        """Other state to checkpoint ({name: array}: counters, noise, replay buffer)."""
        return {}

    def load_extra_state(self, arrays):
        """Restore ``extra_state`` from {name: array}."""

    def load_state_arrays(self, arrays):
        for name, module in self.modules().items():
            key = f"module/{name}"
            if key not in arrays:
                raise ValueError(f"checkpoint has no {key!r}")
            module.flat_params = arrays[key]
        for name, opt in self.optimizers().items():
            prefix = f"optim/{name}/"
            opt.load_state_dict({k[len(prefix):]: v for k, v in arrays.items()
                                 if k.startswith(prefix)})
        if "rng" in arrays:
            self.rng.bit_generator.state = json.loads(str(arrays["rng"]))
        self.load_extra_state({k[len("extra/"):]: v for k, v in arrays.items()
                               if k.startswith("extra/")})

    # --- helpers for subclasses --------------------------------------------------
    @property
    def obs_dim(self):
        return int(np.prod(self.observation_space.shape))

    @property
    def n_actions(self):
        """Number of discrete actions, or the continuous action dimension."""
        if hasattr(self.action_space, "n"):
            return int(self.action_space.n)
        return int(np.prod(self.action_space.shape))
