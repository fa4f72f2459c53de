"""Optimizers as fused updates over one flat parameter buffer, and related utilities."""

from .optimizers import (SGD, Adam, Optimizer, RMSprop, clip_grad_norm, global_grad_norm,
                         polyak_update)

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "clip_grad_norm", "global_grad_norm",
           "polyak_update"]
