"""Input checks of the estimators, written once and used by every family module.

Each names the function (``where``) and the argument in its message, and says
what is accepted.  Gradient-carrying inputs become Tensors; held-constant
targets must be plain finite arrays of exactly the batch's shape (a Tensor
there is refused: it would carry gradients into a target).  Episode flags and
the unit-interval hyperparameters use the kernels' checks
(:mod:`minipg.kernels.checks`), so an estimator and a kernel accept and refuse
the same inputs.
"""

from __future__ import annotations

import numbers

import numpy as np

from minipg.autodiff import Tensor, as_tensor
from minipg.kernels.checks import check_mask, check_unit_interval

__all__ = ["differentiable", "held_constant", "coefficient", "discount", "trace_decay",
           "unit_interval", "flags", "target_dtype", "vectors"]


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
        return check_unit_interval(gamma, "gamma")
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def trace_decay(lam, where):
    """lambda as a float in [0, 1], with the function's name in the error."""
    try:
        return check_unit_interval(lam, "lam")
    except ValueError as err:
        raise ValueError(f"{where}: {err} (the trace-decay parameter lambda)") from None


def unit_interval(x, name):
    """x as a float in [0, 1]; the error names the argument only (the kernels' check)."""
    return check_unit_interval(x, name)


def flags(x, name, shape):
    """Episode flags (bool, or numeric 0/1) as a bool array of exactly `shape`.

    A 0-d flag is allowed (one online step).  The kernels' check: a wrong
    shape or a value other than 0/1 raises ValueError naming `name`.
    """
    return check_mask(x, name, shape).reshape(shape)


def target_dtype(*xs):
    """float32 when the float inputs are all float32, else float64 (Tensors are skipped:
    held_constant refuses them with a clear message)."""
    floats = [np.asarray(x).dtype for x in xs if not isinstance(x, Tensor)]
    floats = [d for d in floats if d.kind == "f"]
    return np.result_type(*floats) if floats else np.dtype(np.float64)


def vectors(where, **arrays):
    """Float64 copies of same-shape (..., d) arrays (never Tensors), and their shape."""
    out = []
    shape = None
    for name, x in arrays.items():
        if isinstance(x, Tensor):
            raise TypeError(f"{where}: {name} must be a plain array (this update is plain "
                            "NumPy), not a Tensor")
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise TypeError(f"{where}: {name} must be a real numeric array; got dtype {a.dtype}")
        if a.ndim < 1:
            raise ValueError(f"{where}: {name} must have shape (..., d) (a weight or feature "
                             f"vector, optionally with leading batch axes); got a scalar")
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise ValueError(f"{where}: {name} has shape {a.shape} but "
                             f"{next(iter(arrays))} has shape {shape}; accepted: every vector "
                             "of the same shape (..., d)")
        out.append(a.astype(np.float64))
    return out, shape
