"""One module per algorithm of "Policy Gradient Algorithms" (Weng, 2018).

:data:`ALGORITHMS` is a :class:`minipg.registry.Registry` of the algorithm
classes (subclasses of :class:`minipg.algorithms.base.Algorithm`): it lists
the algorithm modules below in the document's order, and each module
registers its class with ``@ALGORITHMS.register("name")``.  Adding an
algorithm: write its module, add it to :data:`MODULES` in the document's
order, decorate its class.

``get(name)`` returns the algorithm's class; ``names()`` lists the registered
ones in the document's order.  Modules are imported on first use, so
``import minipg`` stays light.
"""

from __future__ import annotations

import difflib

from ..registry import Registry, UnknownNameError
from .base import Algorithm, BaseConfig, ConfigError

__all__ = ["ALGORITHMS", "MODULES", "get", "names", "Algorithm", "BaseConfig", "ConfigError",
           "UnknownAlgorithmError"]

# the algorithm modules under minipg.algorithms, in the order of Weng's document
MODULES = ("reinforce", "actor_critic", "off_policy_ac", "a2c", "a3c", "dpg", "ddpg", "d4pg",
           "maddpg", "td3", "trpo", "ppo", "acer", "acktr", "sac", "sac_v1")

ALGORITHMS = Registry("algorithm", __name__, MODULES)


class UnknownAlgorithmError(ConfigError):
    """An algorithm name that minipg does not have (the message lists the accepted names)."""


def names():
    """The registered algorithm names, in the document's order."""
    return ALGORITHMS.names()


def get(name):
    """The algorithm class registered as ``name`` (case-insensitive, '-' for '_');
    an Algorithm subclass passes through."""
    if isinstance(name, type) and issubclass(name, Algorithm):
        return name
    key = str(name).lower().replace("-", "_")
    try:
        return ALGORITHMS.get(key)
    except UnknownNameError:
        close = difflib.get_close_matches(key, names(), n=3, cutoff=0.6)
        hint = f". Did you mean {' or '.join(close)}?" if close else ""
        raise UnknownAlgorithmError(f"unknown algorithm {name!r}; accepted: "
                                    f"{', '.join(names())}{hint}") from None
