r"""Fused, in-place optimizer updates on flat float buffers.

Each update reads ``grads`` (never modified) and overwrites ``params`` and the
optimizer state buffers in place.  Semantics follow ``torch.optim``
(``SGD``, ``Adam`` with ``amsgrad=False, maximize=False``, ``RMSprop``);
weight decay is the classic L2 term added to the gradient,
:math:`g \leftarrow g + \lambda_{wd}\,\theta`, not decoupled (AdamW) decay.

Precision: float32 buffers are read into float64, updated in float64 and
rounded once on store.  A state buffer is re-read after being stored, so the
parameter step uses exactly the (rounded) state that the next step will see,
as in torch.

The kernels use ``error_model="numpy"``: a division by zero gives inf/nan as
in NumPy instead of raising, which removes a per-element branch and lets
LLVM vectorise the loop (about 5x faster for Adam).  The arithmetic is
unchanged (IEEE, no fastmath).

The raw ``*_numba`` kernels take 1-D arrays; the ``*_numpy`` twins take any
shape.  The public wrappers accept any shape (all arrays equal), validate, and
pass flat views of C-contiguous buffers to the numba kernels.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit

from .checks import check_flag, check_input, check_params, check_real, check_state

__all__ = [
    "sgd_update",
    "sgd_update_numba",
    "sgd_update_numpy",
    "adam_update",
    "adam_update_numba",
    "adam_update_numpy",
    "rmsprop_update",
    "rmsprop_update_numba",
    "rmsprop_update_numpy",
]


# --------------------------------------------------------------------------
# SGD
# --------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def sgd_update_numba(params, grads, momentum_buf, lr, momentum, dampening,
                     nesterov, weight_decay, first_step):
    """SGD step, numba kernel on 1-D arrays (no validation); see :func:`sgd_update`."""
    for i in range(params.shape[0]):
        p = np.float64(params[i])
        g = np.float64(grads[i])
        if weight_decay != 0.0:
            g = g + weight_decay * p
        if momentum != 0.0:
            if first_step:
                b = g  # torch: buf = clone(grad) when no buffer exists yet
            else:
                b = momentum * np.float64(momentum_buf[i]) + (1.0 - dampening) * g
            momentum_buf[i] = b
            b = np.float64(momentum_buf[i])
            if nesterov:
                g = g + momentum * b
            else:
                g = b
        params[i] = p - lr * g


def sgd_update_numpy(params, grads, momentum_buf, lr, momentum, dampening,
                     nesterov, weight_decay, first_step):
    """SGD step, NumPy twin (array expressions, no validation); see :func:`sgd_update`."""
    p = params.astype(np.float64)
    g = grads.astype(np.float64)
    if weight_decay != 0.0:
        g = g + weight_decay * p
    if momentum != 0.0:
        if first_step:
            momentum_buf[...] = g
        else:
            momentum_buf[...] = (momentum * momentum_buf.astype(np.float64)
                                 + (1.0 - dampening) * g)
        b = momentum_buf.astype(np.float64)
        g = g + momentum * b if nesterov else b
    params[...] = p - lr * g


def sgd_update(params, grads, momentum_buf, lr, momentum=0.0, dampening=0.0,
               nesterov=False, weight_decay=0.0, first_step=False):
    r"""In-place SGD step with momentum / Nesterov / L2 weight decay (torch.optim.SGD).

    .. math::

        g &= \nabla_\theta + \lambda_{wd}\,\theta \\
        b &= \begin{cases} g & \text{first step} \\
                           \mu b + (1 - \tau_{damp})\, g & \text{otherwise}
             \end{cases} \quad (\text{only if } \mu \ne 0) \\
        g &= g + \mu b \ \text{(Nesterov)} \quad\text{or}\quad g = b \\
        \theta &\leftarrow \theta - \eta\, g

    (Weng 2018, "Policy Gradient": the parameter update
    :math:`\theta \leftarrow \theta + \alpha \nabla_\theta J`, here written as
    descent on a loss.)

    Parameters
    ----------
    params : float32/float64 C-contiguous array, updated in place
    grads : array, same shape and dtype (not modified)
    momentum_buf : array, same shape and dtype, updated in place; may be a
        size-0 array (or None) when ``momentum == 0``
    lr : float >= 0
    momentum : float >= 0
    dampening : float (torch default 0)
    nesterov : bool; requires ``momentum > 0`` and ``dampening == 0``
    weight_decay : float >= 0
    first_step : bool; True on the first step, where torch initialises the
        momentum buffer to ``g`` (matters only when ``dampening != 0``)
    """
    params = check_params(params)
    lr = check_real(lr, "lr", low=0.0)
    momentum = check_real(momentum, "momentum", low=0.0)
    dampening = check_real(dampening, "dampening")
    nesterov = check_flag(nesterov, "nesterov")
    weight_decay = check_real(weight_decay, "weight_decay", low=0.0)
    first_step = check_flag(first_step, "first_step")
    if nesterov and (momentum <= 0.0 or dampening != 0.0):
        raise ValueError(
            "nesterov=True requires momentum > 0 and dampening == 0, "
            f"got momentum={momentum!r}, dampening={dampening!r}"
        )
    g = check_input(grads, "grads", params)
    buf = check_state(momentum_buf, "momentum_buf", params, used=momentum != 0.0)
    sgd_update_numba(params.reshape(-1), g, buf, lr, momentum, dampening,
                     nesterov, weight_decay, first_step)


# --------------------------------------------------------------------------
# Adam
# --------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def adam_update_numba(params, grads, m, v, lr, beta1, beta2, eps, weight_decay, t):
    """Adam step, numba kernel on 1-D arrays (no validation); see :func:`adam_update`."""
    # float exponent: pow() from libm, as Python's float ** float (numba's
    # float ** int uses repeated squaring, which may differ in the last bit)
    bc1 = 1.0 - beta1 ** np.float64(t)
    bc2 = 1.0 - beta2 ** np.float64(t)
    for i in range(params.shape[0]):
        p = np.float64(params[i])
        g = np.float64(grads[i])
        if weight_decay != 0.0:
            g = g + weight_decay * p
        m[i] = beta1 * np.float64(m[i]) + (1.0 - beta1) * g
        v[i] = beta2 * np.float64(v[i]) + (1.0 - beta2) * (g * g)
        m_hat = np.float64(m[i]) / bc1
        v_hat = np.float64(v[i]) / bc2
        params[i] = p - lr * m_hat / (np.sqrt(v_hat) + eps)


def adam_update_numpy(params, grads, m, v, lr, beta1, beta2, eps, weight_decay, t):
    """Adam step, NumPy twin (array expressions, no validation); see :func:`adam_update`."""
    bc1 = 1.0 - beta1 ** float(t)
    bc2 = 1.0 - beta2 ** float(t)
    p = params.astype(np.float64)
    g = grads.astype(np.float64)
    if weight_decay != 0.0:
        g = g + weight_decay * p
    m[...] = beta1 * m.astype(np.float64) + (1.0 - beta1) * g
    v[...] = beta2 * v.astype(np.float64) + (1.0 - beta2) * (g * g)
    m_hat = m.astype(np.float64) / bc1
    v_hat = v.astype(np.float64) / bc2
    params[...] = p - lr * m_hat / (np.sqrt(v_hat) + eps)


def adam_update(params, grads, m, v, lr, beta1, beta2, eps, weight_decay, t):
    r"""In-place Adam step (Kingma & Ba 2015, Alg. 1; torch.optim.Adam, L2 decay).

    .. math::

        g &= \nabla_\theta + \lambda_{wd}\,\theta \\
        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
        \theta &\leftarrow \theta - \eta\,
            \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}

    ``eps`` is added outside the square root, after bias correction.

    Parameters
    ----------
    params : float32/float64 C-contiguous array, updated in place
    grads : array, same shape and dtype (not modified)
    m, v : first/second moment buffers, same shape and dtype, updated in
        place (start at zeros)
    lr : float >= 0
    beta1, beta2 : floats in [0, 1) (torch defaults 0.9, 0.999)
    eps : float >= 0 (torch default 1e-8)
    weight_decay : float >= 0
    t : int >= 1, the 1-based step count, including this step (no default:
        a forgotten step count would silently redo step-1 bias correction)
    """
    params = check_params(params)
    lr = check_real(lr, "lr", low=0.0)
    beta1 = check_real(beta1, "beta1", low=0.0, high=1.0, high_open=True)
    beta2 = check_real(beta2, "beta2", low=0.0, high=1.0, high_open=True)
    eps = check_real(eps, "eps", low=0.0)
    weight_decay = check_real(weight_decay, "weight_decay", low=0.0)
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Integral) or t < 1:
        raise ValueError(f"t must be an integer >= 1 (the 1-based step count), got {t!r}")
    g = check_input(grads, "grads", params)
    m_flat = check_state(m, "m", params, used=True)
    v_flat = check_state(v, "v", params, used=True)
    adam_update_numba(params.reshape(-1), g, m_flat, v_flat, lr, beta1, beta2,
                      eps, weight_decay, int(t))


# --------------------------------------------------------------------------
# RMSprop
# --------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def rmsprop_update_numba(params, grads, square_avg, grad_avg, momentum_buf, lr,
                         alpha, eps, weight_decay, momentum, centered):
    """RMSprop step, numba kernel on 1-D arrays (no validation); see :func:`rmsprop_update`."""
    for i in range(params.shape[0]):
        p = np.float64(params[i])
        g = np.float64(grads[i])
        if weight_decay != 0.0:
            g = g + weight_decay * p
        square_avg[i] = alpha * np.float64(square_avg[i]) + (1.0 - alpha) * (g * g)
        sq = np.float64(square_avg[i])
        if centered:
            grad_avg[i] = alpha * np.float64(grad_avg[i]) + (1.0 - alpha) * g
            ga = np.float64(grad_avg[i])
            # no clamp at 0, as torch: sq >= ga^2 in exact arithmetic
            avg = np.sqrt(sq - ga * ga) + eps
        else:
            avg = np.sqrt(sq) + eps
        if momentum > 0.0:
            momentum_buf[i] = momentum * np.float64(momentum_buf[i]) + g / avg
            params[i] = p - lr * np.float64(momentum_buf[i])
        else:
            params[i] = p - lr * (g / avg)


def rmsprop_update_numpy(params, grads, square_avg, grad_avg, momentum_buf, lr,
                         alpha, eps, weight_decay, momentum, centered):
    """RMSprop step, NumPy twin (array expressions, no validation); see :func:`rmsprop_update`."""
    p = params.astype(np.float64)
    g = grads.astype(np.float64)
    if weight_decay != 0.0:
        g = g + weight_decay * p
    square_avg[...] = alpha * square_avg.astype(np.float64) + (1.0 - alpha) * (g * g)
    sq = square_avg.astype(np.float64)
    if centered:
        grad_avg[...] = alpha * grad_avg.astype(np.float64) + (1.0 - alpha) * g
        ga = grad_avg.astype(np.float64)
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    if momentum > 0.0:
        momentum_buf[...] = momentum * momentum_buf.astype(np.float64) + g / avg
        params[...] = p - lr * momentum_buf.astype(np.float64)
    else:
        params[...] = p - lr * (g / avg)


def rmsprop_update(params, grads, square_avg, grad_avg, momentum_buf, lr,
                   alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                   centered=False):
    r"""In-place RMSprop step (Tieleman & Hinton 2012, lecture 6.5; torch.optim.RMSprop).

    .. math::

        g &= \nabla_\theta + \lambda_{wd}\,\theta \\
        s &\leftarrow \alpha s + (1 - \alpha)\, g^2 \\
        \bar g &\leftarrow \alpha \bar g + (1 - \alpha)\, g
            \quad (\text{centered only}) \\
        d &= \sqrt{s - \bar g^2} + \epsilon \ \text{(centered)}
            \quad\text{or}\quad d = \sqrt{s} + \epsilon \\
        b &\leftarrow \mu b + g / d,\ \ \theta \leftarrow \theta - \eta\, b
            \ \ (\mu > 0)
            \quad\text{else}\quad \theta \leftarrow \theta - \eta\, g / d

    torch semantics: ``eps`` outside the square root; buffers start at zero.

    Parameters
    ----------
    params : float32/float64 C-contiguous array, updated in place
    grads : array, same shape and dtype (not modified)
    square_avg : buffer, same shape and dtype, updated in place
    grad_avg : buffer, updated in place when ``centered``; else may be size 0
        (or None)
    momentum_buf : buffer, updated in place when ``momentum > 0``; else may
        be size 0 (or None)
    lr : float >= 0
    alpha : float >= 0 (smoothing constant)
    eps : float >= 0
    weight_decay : float >= 0
    momentum : float >= 0
    centered : bool
    """
    params = check_params(params)
    lr = check_real(lr, "lr", low=0.0)
    alpha = check_real(alpha, "alpha", low=0.0)
    eps = check_real(eps, "eps", low=0.0)
    weight_decay = check_real(weight_decay, "weight_decay", low=0.0)
    momentum = check_real(momentum, "momentum", low=0.0)
    centered = check_flag(centered, "centered")
    g = check_input(grads, "grads", params)
    sq = check_state(square_avg, "square_avg", params, used=True)
    ga = check_state(grad_avg, "grad_avg", params, used=centered)
    buf = check_state(momentum_buf, "momentum_buf", params, used=momentum > 0.0)
    rmsprop_update_numba(params.reshape(-1), g, sq, ga, buf, lr, alpha, eps,
                         weight_decay, momentum, centered)
