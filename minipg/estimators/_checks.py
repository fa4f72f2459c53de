"""Input checks shared by every estimator module, written once.

Each names the function (``where``) and the argument in its message, and says
what is accepted.  Gradient-carrying inputs become Tensors; held-constant
targets must be plain finite arrays of exactly the batch's shape (a Tensor
there is refused: it would carry gradients into a target).
"""

from __future__ import annotations

import numbers

import numpy as np

from minipg.autodiff import Tensor, as_tensor
from minipg.kernels.returns import _check_unit_interval

__all__ = ["differentiable", "held_constant", "coefficient", "discount"]



def differentiable(x, name, where, shape=None):
    """A gradient-carrying input as a floating Tensor (arrays become constants)."""
    t = as_tensor(x)
    if t.dtype.kind != "f":
        raise TypeError(f"{where}: {name} must be a floating Tensor or array (float32/float64); "
                        f"got dtype {t.dtype}")
    if t.size == 0:
        raise ValueError(f"{where}: {name} is empty; accepted: a non-empty batch")
    if shape is not None and t.shape != shape:
        raise ValueError(f"{where}: {name} has shape {t.shape} but the batch has shape {shape}; "
                         "accepted: every per-sample input with the same shape (no broadcasting)")
    return t


def held_constant(x, name, where, shape, dtype):
    """A held-constant target as a finite plain array of `dtype` and `shape`."""
    if isinstance(x, Tensor):
        raise TypeError(f"{where}: {name} is held constant and must be a plain array, not a "
                        f"Tensor; pass {name}.data (a Tensor here would carry gradients into it)")
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{where}: {name} must be a real numeric array; got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{where}: {name} has shape {a.shape} but the batch has shape {shape}; "
                         "accepted: every per-sample input with the same shape (no broadcasting)")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: {name} contains non-finite values (nan or inf); accepted: "
                         "finite numbers")
    return a.astype(dtype, copy=False)


def coefficient(c, name, where):
    """A non-negative finite float hyperparameter."""
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number >= 0; got {type(c).__name__}")
    c = float(c)
    if not np.isfinite(c) or c < 0.0:
        raise ValueError(f"{where}: {name} must be a finite number >= 0; got {c!r}")
    return c


def discount(gamma, where):
    """gamma as a float in [0, 1], with the function's name in the error."""
    try:
        return _check_unit_interval(gamma, "gamma")
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
