"""One module per algorithm of "Policy Gradient Algorithms" (Weng, 2018).

``get(name)`` returns the algorithm's class (a subclass of
:class:`minipg.algorithms.base.Algorithm`); ``names()`` lists the registered
ones.  Modules are imported on first use, so ``minipg list`` stays fast.
"""

from __future__ import annotations

import importlib

from .base import Algorithm, BaseConfig, ConfigError

__all__ = ["get", "names", "Algorithm", "BaseConfig", "ConfigError", "UnknownAlgorithmError"]

# name -> module under minipg.algorithms; each module defines the class `ALGORITHM`
_REGISTRY = {
    "reinforce": "reinforce",
    "actor_critic": "actor_critic",
    "off_policy_ac": "off_policy_ac",
    "a2c": "a2c",
    "dpg": "dpg",
    "ddpg": "ddpg",
    "td3": "td3",
    "ppo": "ppo",
    "sac": "sac",
    "sac_v1": "sac_v1",
}


class UnknownAlgorithmError(ConfigError):
    """An algorithm name that minipg does not have."""


def names():
    """The registered algorithm names, in the document's order."""
    return list(_REGISTRY)


def get(name):
    """The algorithm class registered as ``name`` (an Algorithm subclass passes through)."""
    if isinstance(name, type) and issubclass(name, Algorithm):
        return name
    key = str(name).lower().replace("-", "_")
    if key not in _REGISTRY:
        raise UnknownAlgorithmError(f"unknown algorithm {name!r}; accepted: {', '.join(_REGISTRY)}")
    module = importlib.import_module(f"{__name__}.{_REGISTRY[key]}")
    return module.ALGORITHM
