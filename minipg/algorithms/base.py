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
import textwrap
import typing
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Algorithm", "BaseConfig", "ConfigError", "setting", "config_from",
           "config_to_dict", "config_help", "parse_assignments", "validate", "accepted_range",
           "accepted_values", "setting_default"]


class ConfigError(ValueError):
    """A setting that is unknown, of the wrong type or out of range."""


def setting(default, help, low=None, high=None, low_open=False, high_open=False,
            choices=None):
    """A config field with its one-line help and accepted range (checked by ``validate``)."""
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
    eval_episodes: int = setting(10, "episodes of the final deterministic evaluation", low=1)
    log_every: int = setting(2_000, "environment steps between progress rows", low=1)
    checkpoint_every: int = setting(20_000, "environment steps between checkpoints", low=1)

    def check(self):
        """Cross-field constraints; subclasses extend (raise ConfigError)."""


def _field_type(cls, name):
    return typing.get_type_hints(cls)[name]


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
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, str):
                value = value.strip().replace("_", "")
                as_float = float(value)  # accept 1e5
                if not as_float.is_integer():
                    raise ValueError
                return int(as_float)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
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
            return tuple(int(p) for p in parts)
    except (ValueError, TypeError, OverflowError):
        pass
    expected = {bool: "true/false", int: "an integer", float: "a number",
                str: "a string"}.get(ftype, "comma-separated integers, e.g. 64,64")
    raise ConfigError(f"setting {name!r}: {value!r} is not {expected}")


def accepted_range(meta):
    """A field's accepted interval as text, e.g. '(0.0, 1.0]' or '[1, inf)'; None if unbounded."""
    low, high = meta.get("low"), meta.get("high")
    if low is None and high is None:
        return None
    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
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
            if len(value) == 0 or any(v < 1 for v in value):
                raise ConfigError(f"setting {f.name!r}: {value!r}; accepted: one or more "
                                  f"positive integers, e.g. 64,64")
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
        return "comma-separated positive integers, e.g. 64,64"
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
