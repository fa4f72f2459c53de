"""Optimizers as fused updates over one flat parameter buffer, and related utilities."""

from .optimizers import (SGD, Adam, Optimizer, RMSprop, SoftUpdates, clip_grad_norm,
                         clip_grad_norm_or_measure, global_grad_norm, polyak_update)
from .kfac import KFAC

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "KFAC", "clip_grad_norm",
           "clip_grad_norm_or_measure", "global_grad_norm", "polyak_update", "SoftUpdates"]
