"""Modules whose parameters live in one flat buffer: Module, Linear, MLP, SharedTrunk."""

from .init import fan_in_uniform, orthogonal
from .layers import ACTIVATIONS, MLP, Linear, SharedTrunk, get_activation
from .module import Module, contiguous_buffers, flatten_parameters

__all__ = ["Module", "Linear", "MLP", "SharedTrunk", "flatten_parameters", "contiguous_buffers",
           "orthogonal", "fan_in_uniform", "ACTIVATIONS", "get_activation"]
