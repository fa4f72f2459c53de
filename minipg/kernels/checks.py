"""Input checks of the public kernels.

The public wrappers (``discounted_returns``, ``gae``, ``n_step_returns``, the
optimizer updates, ``polyak_update_kernel``) validate their inputs with these
checks; the raw ``*_numba`` and ``*_numpy`` kernels trust their inputs.  Each
check raises ``ValueError`` naming what is wrong and what is accepted, and
returns the value in the form the kernels take.  The estimators use the
rollout checks (``check_mask``, ``check_unit_interval``) too, so that a flag
or a discount is accepted or refused the same way everywhere.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "FLOAT_DTYPES",
    "check_flag",
    "check_float_array",
    "check_input",
    "check_mask",
    "check_params",
    "check_real",
    "check_rewards",
    "check_rollout",
    "check_same_shape_float",
    "check_state",
    "check_unit_interval",
    "from_kernel_layout",
    "to_kernel_layout",
]

# The float dtypes the kernels accept (they compute in float64 either way).
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------
# Rollout arrays: discounted_returns, gae and n_step_returns
# --------------------------------------------------------------------------


def check_float_array(x, name):
    """x as a C-contiguous float32/float64 array; any other dtype is an error."""
    arr = np.asarray(x)
    if arr.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{name} must have a float dtype (float32 or float64), got dtype {arr.dtype}"
        )
    return np.ascontiguousarray(arr)


def check_rewards(rewards):
    """Rewards as a C-contiguous float array of shape (T,) or (T, N) (time on axis 0)."""
    arr = check_float_array(rewards, "rewards")
    if arr.ndim not in (1, 2):
        raise ValueError(
            "rewards must have shape (T,) or (T, N) (time on axis 0), "
            f"got shape {arr.shape} with ndim {arr.ndim}"
        )
    return arr


def check_same_shape_float(x, name, shape):
    """A float array of exactly the rewards' ``shape`` (values, next_values)."""
    arr = check_float_array(x, name)
    if arr.shape != shape:
        raise ValueError(
            f"{name} must have the same shape as rewards {shape}, got shape {arr.shape}"
        )
    return arr


def check_mask(x, name, shape):
    """Episode flags of exactly ``shape`` as a C-contiguous bool array (numeric 0/1 accepted)."""
    arr = np.asarray(x)
    if arr.shape != shape:
        raise ValueError(
            f"{name} must have the same shape as rewards {shape}, got shape {arr.shape}"
        )
    # (np.ascontiguousarray would turn a 0-d flag into shape (1,))
    if arr.dtype == np.bool_:
        return arr if arr.flags.c_contiguous else arr.copy(order="C")
    if arr.dtype.kind in "iuf":
        # 0/1 numeric flags (as some vector-env wrappers return) are accepted;
        # anything else is almost surely a mix-up with rewards or values.
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(
                f"{name} must be a boolean array (numeric arrays are accepted "
                "only if every entry is 0 or 1)"
            )
        return arr.astype(np.bool_, order="C")
    raise ValueError(
        f"{name} must be a boolean array (or numeric 0/1), got dtype {arr.dtype}"
    )


def to_kernel_layout(x):
    """(T,) or (T, N) -> C-contiguous (T, N); float arrays -> float64.

    The kernels compute in float64 anyway, so this changes no result; it
    only means each numba kernel is compiled for a single signature.
    """
    x2 = x.reshape((x.shape[0], 1)) if x.ndim == 1 else x
    if x2.dtype.kind == "f":
        return np.ascontiguousarray(x2, dtype=np.float64)
    return np.ascontiguousarray(x2)


def from_kernel_layout(out, rewards):
    """The kernel's (T, N) float64 output back in the shape and dtype of ``rewards``."""
    return out.reshape(rewards.shape).astype(rewards.dtype, copy=False)


def check_unit_interval(x, name):
    """A real number in [0, 1] (a discount, a trace decay) as a float; NaN is refused."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise ValueError(f"{name} must be a real number in [0, 1], got {x!r}")
    value = float(x)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def check_rollout(rewards, terminated, truncated, gamma, **arrays):
    """The checks every rollout kernel's public wrapper makes, in this order: ``rewards``
    (``check_rewards``), each of ``arrays`` (name=array, in the order given; float arrays
    of the rewards' shape, ``check_same_shape_float``), ``terminated`` and ``truncated``
    (``check_mask``), ``gamma`` (``check_unit_interval``).

    Returns ``(r, args, gamma)``: the checked rewards (for ``from_kernel_layout``), the
    arrays ``r, *arrays, terminated, truncated`` in the kernels' layout
    (``to_kernel_layout``), and gamma as a float.
    """
    r = check_rewards(rewards)
    floats = [check_same_shape_float(x, name, r.shape) for name, x in arrays.items()]
    term = check_mask(terminated, "terminated", r.shape)
    trunc = check_mask(truncated, "truncated", r.shape)
    gamma = check_unit_interval(gamma, "gamma")
    return r, [to_kernel_layout(a) for a in (r, *floats, term, trunc)], gamma


# --------------------------------------------------------------------------
# Flat buffers: the optimizer updates and polyak_update_kernel
# --------------------------------------------------------------------------


def _require_ndarray(buf, name):
    """The first check of a buffer updated in place: it is an ndarray."""
    if not isinstance(buf, np.ndarray):
        raise ValueError(
            f"{name} must be a numpy.ndarray (it is updated in place), "
            f"got {type(buf).__name__}"
        )


def _require_flat_writeable(buf, name):
    """The last checks of a buffer updated in place: C-contiguous and writeable."""
    if not buf.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (a flat buffer), got a strided view")
    if not buf.flags.writeable:
        raise ValueError(f"{name} must be writeable (it is updated in place)")


def check_params(params, name="params"):
    """A writeable C-contiguous float ndarray, updated in place (parameters, a target)."""
    _require_ndarray(params, name)
    if params.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{name} must have a float dtype (float32 or float64), got dtype {params.dtype}"
        )
    _require_flat_writeable(params, name)
    return params


def check_input(x, name, ref, ref_name="params"):
    """A read-only array: same shape and dtype as ``ref``; returns a flat copy/view."""
    arr = np.asarray(x)
    if arr.shape != ref.shape:
        raise ValueError(
            f"{name} must have the same shape as {ref_name} {ref.shape}, got shape {arr.shape}"
        )
    if arr.dtype != ref.dtype:
        raise ValueError(
            f"{name} must have the same dtype as {ref_name} ({ref.dtype}), got dtype {arr.dtype}"
        )
    return np.ascontiguousarray(arr).reshape(-1)


def check_state(buf, name, ref, used):
    """An in-place state buffer; may be size 0 when ``used`` is False."""
    if not used:
        if buf is None:
            return np.empty(0, dtype=ref.dtype)
        arr = np.asarray(buf)
        if arr.size == 0:
            return np.empty(0, dtype=ref.dtype)
    _require_ndarray(buf, name)
    if buf.shape != ref.shape:
        raise ValueError(
            f"{name} must have the same shape as params {ref.shape}, got shape {buf.shape} "
            "(a size-0 array is accepted only when the buffer is unused)"
        )
    if buf.dtype != ref.dtype:
        raise ValueError(
            f"{name} must have the same dtype as params ({ref.dtype}), got dtype {buf.dtype}"
        )
    _require_flat_writeable(buf, name)
    return buf.reshape(-1)


def check_real(x, name, low=None, high=None, low_open=False, high_open=False):
    """A finite real number as a float, within the given (open or closed) bounds."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {x!r}")
    value = float(x)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return value


def check_flag(x, name):
    """A bool (Python or NumPy) as a Python bool."""
    if not isinstance(x, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool, got {x!r}")
    return bool(x)
