"""Optimizers as fused updates over one flat parameter vector.

An optimizer holds the flat data and grad buffers of its parameters (see
``minipg.nn.module``), and its step is one kernel call over them
(``minipg.kernels.optim_updates``: numba, with a NumPy twin).  The update
rules are torch.optim's, so results can be compared one to one.
"""

from __future__ import annotations

import numpy as np

from ..kernels import optim_updates as K
from ..kernels.polyak import polyak_update_kernel_numba
from ..nn.module import Module, contiguous_buffers, flatten_parameters

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "clip_grad_norm", "global_grad_norm",
           "polyak_update"]


def _params_of(params):
    """The parameters of a Module, of a list of Modules, or a list; each once, in order."""
    if isinstance(params, Module):
        return params.parameters()
    found = []
    for item in params:
        found.extend(item.parameters() if isinstance(item, Module) else [item])
    seen = set()
    unique = []
    for p in found:                              # modules may share a trunk
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    return unique


def _check(name, value, low, high=np.inf, low_open=False, high_open=False):
    value = float(value)
    ok = ((value > low if low_open else value >= low)
          and (value < high if high_open else value <= high))
    if not ok or not np.isfinite(value):
        lo = "(" if low_open else "["
        hi = ")" if high_open or not np.isfinite(high) else "]"
        raise ValueError(f"{name}={value!r} is out of range; accepted: {lo}{low}, {high}{hi}")
    return value


class Optimizer:
    """Base class: owns the flat views of its parameters' data and gradients.

    params: a Module, a list of Modules, or a list of Parameters.  If the
    parameters are not already back to back in one buffer, they are moved
    into a new one (their ``.data`` and ``.grad`` are re-pointed).
    """

    def __init__(self, params, lr):
        self.params = _params_of(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got no parameters")
        bufs = contiguous_buffers(self.params)
        if bufs is None:
            bufs = flatten_parameters(self.params)
        self.data, self.grad = bufs
        self._bases = tuple(a if a.base is None else a.base for a in bufs)
        self.lr = _check("lr", lr, 0.0, low_open=True)
        self.step_count = 0

    def zero_grad(self):
        """Zero the flat gradient buffer of the parameters in place (see Module.zero_grad)."""
        self.grad.fill(0)

    def _check_buffers(self):
        # a module re-flattened after this optimizer was made would leave us stale
        data_base, grad_base = self._bases
        for p in self.params:
            if p.data.base is not data_base or p.grad.base is not grad_base:
                raise RuntimeError(f"{type(self).__name__}: the parameters were moved to "
                                   "another buffer after the optimizer was created; create "
                                   "the optimizer after building the whole model")

    def step(self):
        """One update of every parameter from its current gradient."""
        self._check_buffers()
        self.step_count += 1
        self._update()
        for p in self.params:                    # invalidates graphs that saved them
            p.mark_modified()

    def _update(self):  # pragma: no cover - abstract
        raise NotImplementedError

    # checkpointing: plain arrays and numbers only (no pickle)
    _state_names = ()

    def state_dict(self):
        state = {"step_count": np.asarray(self.step_count), "lr": np.asarray(self.lr)}
        for name in self._state_names:
            state[name] = getattr(self, name).copy()
        return state

    def load_state_dict(self, state):
        for name in self._state_names:
            value = np.asarray(state[name])
            target = getattr(self, name)
            if value.shape != target.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: '{name}' has shape "
                                 f"{value.shape}, expected {target.shape}")
            target[...] = value
        self.step_count = int(state["step_count"])
        self.lr = float(state["lr"])
        return self


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, torch semantics:
    g = grad + wd p;  buf = momentum buf + (1 - dampening) g (buf = g at the first step);
    p <- p - lr (g + momentum buf if nesterov else buf)."""

    _state_names = ("momentum_buffer",)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = _check("momentum", momentum, 0.0)
        self.dampening = _check("dampening", dampening, 0.0, 1.0)
        self.weight_decay = _check("weight_decay", weight_decay, 0.0)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
        self.nesterov = bool(nesterov)
        self.momentum_buffer = np.zeros_like(self.data)

    def _update(self):
        K.sgd_update_numba(self.data, self.grad, self.momentum_buffer, self.lr, self.momentum,
                           self.dampening, self.nesterov, self.weight_decay,
                           self.step_count == 1)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1) with bias correction, torch semantics:
    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    p <- p - lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)."""

    _state_names = ("m", "v")

    def __init__(self, params, lr=3e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        self.beta1 = _check("betas[0]", betas[0], 0.0, 1.0, high_open=True)
        self.beta2 = _check("betas[1]", betas[1], 0.0, 1.0, high_open=True)
        self.eps = _check("eps", eps, 0.0)
        self.weight_decay = _check("weight_decay", weight_decay, 0.0)
        self.m = np.zeros_like(self.data)
        self.v = np.zeros_like(self.data)

    def _update(self):
        K.adam_update_numba(self.data, self.grad, self.m, self.v, self.lr, self.beta1,
                            self.beta2, self.eps, self.weight_decay, self.step_count)


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012), torch semantics (eps outside the sqrt):
    s <- alpha s + (1-alpha) g^2;  centered: c <- alpha c + (1-alpha) g, s - c^2 used;
    p <- p - lr g / (sqrt(s) + eps)  (or through a momentum buffer).

    square_avg: pass an existing array (e.g. in shared memory) to share the
    statistics between several optimizers, as A3C's shared RMSprop does.
    """

    _state_names = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, params, lr=7e-4, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, square_avg=None):
        super().__init__(params, lr)
        self.alpha = _check("alpha", alpha, 0.0, 1.0)
        self.eps = _check("eps", eps, 0.0)
        self.weight_decay = _check("weight_decay", weight_decay, 0.0)
        self.momentum = _check("momentum", momentum, 0.0)
        self.centered = bool(centered)
        if square_avg is None:
            square_avg = np.zeros_like(self.data)
        elif square_avg.shape != self.data.shape or square_avg.dtype != self.data.dtype:
            raise ValueError(f"square_avg must have shape {self.data.shape} and dtype "
                             f"{self.data.dtype}, got {square_avg.shape} {square_avg.dtype}")
        self.square_avg = square_avg
        self.grad_avg = np.zeros_like(self.data) if self.centered else np.zeros(0, self.data.dtype)
        self.momentum_buffer = (np.zeros_like(self.data) if self.momentum > 0
                                else np.zeros(0, self.data.dtype))

    def _update(self):
        K.rmsprop_update_numba(self.data, self.grad, self.square_avg, self.grad_avg,
                               self.momentum_buffer, self.lr, self.alpha, self.eps,
                               self.weight_decay, self.momentum, self.centered)


def _grad_vector(params):
    if isinstance(params, Optimizer):
        return [params.grad]
    if isinstance(params, np.ndarray):
        return [params]
    plist = _params_of(params)
    bufs = contiguous_buffers(plist)
    if bufs is not None:
        return [bufs[1]]
    return [p.grad for p in plist if p.grad is not None]


def global_grad_norm(params):
    """sqrt(sum of squared gradient entries) over all parameters."""
    return float(np.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in _grad_vector(params))))


def clip_grad_norm(params, max_norm):
    """Scale all gradients in place so their global L2 norm is at most max_norm.

    params: a Module, an Optimizer, a list of Parameters, or a flat gradient
    array.  As torch.nn.utils.clip_grad_norm_, the scale is
    max_norm / (norm + 1e-6) and is applied only when it is below 1.
    Returns the norm before clipping.
    """
    max_norm = _check("max_norm", max_norm, 0.0, low_open=True)
    grads = _grad_vector(params)
    norm = float(np.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads)))
    scale = max_norm / (norm + 1e-6)
    if scale < 1.0:
        for g in grads:
            g *= scale
    return norm


def clip_grad_norm_or_measure(params, max_norm):
    """:func:`clip_grad_norm` where ``max_norm`` > 0; 0 turns clipping off (the settings'
    "0: off").  Returns the global norm before any clipping, either way (unclipped: the
    L2 norm of a flat gradient in its own dtype, as ``np.linalg.norm`` gives it)."""
    if max_norm > 0:
        return clip_grad_norm(params, max_norm)
    grads = _grad_vector(params)
    return float(np.linalg.norm(grads[0])) if len(grads) == 1 else global_grad_norm(params)


def polyak_update(target, source, tau):
    """target <- (1 - tau) target + tau source over the flat buffers (in place).

    tau is the fraction taken from the source (DDPG's and TD3's 0.005);
    tau = 1 copies the source.  The modules must have the same layout.
    """
    tau = _check("tau", tau, 0.0, 1.0)
    t_bufs = contiguous_buffers(target.parameters())
    s_bufs = contiguous_buffers(source.parameters())
    if t_bufs is None or s_bufs is None:
        raise ValueError("polyak_update needs both modules' parameters in one flat buffer "
                         "each (as after Module.flatten())")
    if t_bufs[0].shape != s_bufs[0].shape or t_bufs[0].dtype != s_bufs[0].dtype:
        raise ValueError(f"polyak_update: target has {t_bufs[0].shape} {t_bufs[0].dtype} "
                         f"parameters, source {s_bufs[0].shape} {s_bufs[0].dtype}")
    polyak_update_kernel_numba(t_bufs[0], s_bufs[0], tau)
    for p in target.parameters():
        p.mark_modified()


class SoftUpdates:
    """theta' <- (1 - tau) theta' + tau theta for fixed (target, source) module pairs, as
    :func:`polyak_update` does, for a hot loop.

    The first call for a target goes through :func:`polyak_update` (which checks that both
    modules have one flat buffer of the same layout); the flat views are then kept, and
    later calls run the same kernel on them directly (finding the buffers again costs
    more than the update: ~90 us against ~4 us for a 128-128 network).
    """

    def __init__(self):
        self.views = {}     # id(target) -> (target's flat view, source, source's, params)

    def __call__(self, target, source, tau):
        views = self.views.get(id(target))
        if views is None or views[1] is not source:
            polyak_update(target, source, tau)
            self.views[id(target)] = (target.flat_params, source, source.flat_params,
                                      target.parameters())
            return
        target_flat, _, source_flat, target_params = views
        polyak_update_kernel_numba(target_flat, source_flat, tau)
        for p in target_params:          # invalidates graphs that saved the old values
            p.mark_modified()
