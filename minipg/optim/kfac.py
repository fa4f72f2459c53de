r"""K-FAC: Kronecker-factored approximate natural gradient for minipg's dense layers.

Papers: J. Martens and R. Grosse, "Optimizing Neural Networks with
Kronecker-factored Approximate Curvature", ICML 2015 (sections 3, 5 and
6.3); Y. Wu, E. Mansimov, S. Liao, R. Grosse, J. Ba, "Scalable trust-region
method for deep reinforcement learning using Kronecker-factored
approximation", NeurIPS 2017 (ACKTR, section 3).  Document: L. Weng,
"Policy Gradient Algorithms" (2018), section "ACKTR".  Formulas cited:
verification/FORMULAS.md "TRPO, K-FAC, ACKTR/K-FAC".

For a dense layer s = a^T W + b with minipg's W of shape (n_in, n_out), put
the bias under the weight, Wbar = [W; b] of shape (n_in + 1, n_out), and
abar = [a; 1].  The gradient of a per-sample log-likelihood is
dlog p / dWbar = abar g^T with g = dlog p / ds, so its row-major flattening
(the order of minipg's flat buffer: W row by row, then b) is abar (x) g and
the layer's Fisher block is

    F_l = E[abar abar^T (x) g g^T]  ~=  A (x) G,   A = E[abar abar^T],  G = E[g g^T]

(Martens & Grosse section 3, written for W of shape (n_in, n_out):
with W of shape (n_out, n_in), as in the paper, the row-major order is
G (x) A; FORMULAS.md "K-FAC").  With y drawn from the model the factorization
is exact for one input; for several inputs it drops the correlation of
abar abar^T and g g^T across inputs.

* G uses the gradient of the SAMPLED log-likelihood log p(y~|x), y~ drawn
  from the model (the true Fisher, not the empirical one of the taken
  actions); the caller passes those log-likelihoods to
  :meth:`KFAC.update_curvature`.
* A and G are running averages, X <- decay X + (1 - decay) X_batch (the
  first batch initialises them).
* Factored Tikhonov damping (Martens & Grosse section 6.3, eq. for
  pi_l): (A + pi gamma I) (x) (G + gamma / pi I) with gamma = sqrt(damping)
  and pi = sqrt((tr A / dim A) / (tr G / dim G)).
* The damped factors' inverses (through symmetric eigendecompositions) are
  refreshed every ``refresh_every`` steps and reused in between.
* The update of a layer is (A (x) G)^-1 vec_r(V) = vec_r(A^-1 V G^-1) with V
  = [dW; db] of shape (n_in + 1, n_out).
* Stacked layers (W of shape (K, n_in, n_out), b of shape (K, 1, n_out), an
  ensemble of critics) get one pair of factors per member k.
* Parameters outside dense layers (a Gaussian policy's state-independent
  log-std) are accepted only with a given diagonal Fisher value
  (``diagonal``); any other parameter is an error naming it.

The engine exposes the layer inputs and the pre-activation gradients
through :class:`minipg.autodiff.ops.DenseCapture`, an opt-in hook: only
the dense calls made inside :meth:`KFAC.capture` record them, every other
dense layer keeps the plain fused op.

Use::

    opt = KFAC(model, lr=0.25, damping=1e-2)
    with opt.capture():
        out = model(x)                                  # one forward pass
    opt.update_curvature(log_lik_sampled)               # (N,) log p(y~_i|x_i), y~ ~ model
    opt.zero_grad(); loss.backward()                    # the loss gradient
    opt.step()                                          # theta <- theta - lr F^-1 grad
"""

from __future__ import annotations

import numpy as np

from ..autodiff.functional import backward_cotangents
from ..autodiff.ops import DenseCapture
from ..autodiff.tensor import Tensor
from ..nn.module import Module
from .optimizers import Optimizer

__all__ = ["KFAC", "kfac_damped_inverse", "factored_damping_pi"]


def _real(name, value, ok, accepted):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"KFAC: {name}={value!r} is not a number; accepted: {accepted}") from None
    if not (np.isfinite(value) and ok(value)):
        raise ValueError(f"KFAC: {name}={value!r} is out of range; accepted: {accepted}")
    return value


def factored_damping_pi(A, G):
    r"""pi = sqrt((tr A / dim A) / (tr G / dim G)) (Martens & Grosse section 6.3, the trace
    norm); 1 where either trace is 0.  ``A``, ``G`` of shapes (..., m, m) and (..., n, n)."""
    ta = np.trace(A, axis1=-2, axis2=-1) / A.shape[-1]
    tg = np.trace(G, axis1=-2, axis2=-1) / G.shape[-1]
    ok = (ta > 0) & (tg > 0)
    return np.where(ok, np.sqrt(np.where(ok, ta, 1.0) / np.where(ok, tg, 1.0)), 1.0)


def kfac_damped_inverse(A, G, damping):
    r"""((A + pi gamma I)^-1, (G + gamma/pi I)^-1) with gamma = sqrt(damping) (Martens &
    Grosse section 6.3), each through a symmetric eigendecomposition; batched over leading
    axes (stacked layers).  The damped factors are positive definite for A, G PSD."""
    gamma = np.sqrt(damping)
    pi = factored_damping_pi(A, G)[..., None]

    def inverse(M, shift):
        evals, Q = np.linalg.eigh(M)
        evals = np.maximum(evals, 0.0) + shift                 # PSD up to rounding, + damping
        return (Q / evals[..., None, :]) @ np.swapaxes(Q, -1, -2)

    return inverse(A, pi * gamma), inverse(G, gamma / pi)


class _Layer:
    """One dense layer's parameters, offsets and factors."""

    def __init__(self, W, b, iW, ib, name):
        self.W, self.b, self.iW, self.ib, self.name = W, b, iW, ib, name
        self.stacked = W.data.ndim == 3
        self.A = self.G = self.A_inv = self.G_inv = None

    @property
    def key(self):
        return f"layer{self.iW}_{self.ib}"

    def gradient_matrix(self, grad_W, grad_b):
        """V = [dW; db], (n_in + 1, n_out) or (K, n_in + 1, n_out)."""
        if self.stacked:
            return np.concatenate([grad_W, grad_b], axis=1)    # b is (K, 1, n_out)
        return np.concatenate([grad_W, grad_b[None, :]], axis=0)


class KFAC(Optimizer):
    r"""K-FAC natural-gradient optimizer over the dense layers of a minipg network.

    Parameters
    ----------
    params : a Module (names in errors), a list of Modules, or a list of Parameters.
    lr : step size eta (> 0) of :meth:`step` when no other is given (ACKTR's eta_max).
    damping : lambda > 0, the Tikhonov damping, factored as in Martens & Grosse 6.3.
    decay : in [0, 1), the running-average weight of the old factors.
    refresh_every : k >= 1, recompute the damped inverses every k steps.
    momentum : in [0, 1): buf <- momentum buf + eta d; theta <- theta - buf.
    diagonal : ((Parameter, fisher_value), ...): parameters outside dense layers and
        their (constant, > 0) diagonal Fisher; e.g. a Gaussian's state-independent
        log-std has the exact Fisher 2 per entry.

    See the module docstring for the mathematics and the calling sequence.
    """

    def __init__(self, params, lr=0.25, damping=1e-2, decay=0.95, refresh_every=10,
                 momentum=0.0, diagonal=()):
        super().__init__(params, lr)
        self.damping = _real("damping", damping, lambda v: v > 0, "(0, inf)")
        self.decay = _real("decay", decay, lambda v: 0 <= v < 1, "[0, 1)")
        self.momentum = _real("momentum", momentum, lambda v: 0 <= v < 1, "[0, 1)")
        if (isinstance(refresh_every, bool) or not float(refresh_every).is_integer()
                or int(refresh_every) < 1):
            raise ValueError(f"KFAC: refresh_every={refresh_every!r} is out of range; "
                             "accepted: an integer >= 1")
        self.refresh_every = int(refresh_every)
        names = {}
        if isinstance(params, Module):
            names = {id(p): n for n, p in params.named_parameters()}
        self.names = [names.get(id(p), f"parameter {i} of shape {p.data.shape}")
                      for i, p in enumerate(self.params)]
        self.index = {id(p): i for i, p in enumerate(self.params)}
        self.offsets = np.cumsum([0] + [p.data.size for p in self.params])
        self.diagonal = {}
        for p, value in diagonal:
            if id(p) not in self.index:
                raise ValueError("KFAC: a parameter in 'diagonal' is not one of the optimizer's "
                                 "parameters")
            self.diagonal[self.index[id(p)]] = _real(
                f"diagonal Fisher of '{self.names[self.index[id(p)]]}'", value,
                lambda v: v > 0, "(0, inf)")
        self.layers = {}                          # key -> _Layer, found by the first capture
        self.momentum_buffer = np.zeros_like(self.data)
        self.inverse_step = -1                    # the step at which inverses were refreshed
        self.curvature_updates = 0
        self._capture = None
        self._direction = self._eta = None        # held by step() for _update()

    # --- curvature ---------------------------------------------------------------
    def capture(self):
        """A ``with`` block recording this optimizer's dense layers in one forward pass."""
        self._capture = DenseCapture(self.params)
        return self._capture

    def _layer_of(self, W, b):
        iW, ib = self.index.get(id(W)), self.index.get(id(b)) if isinstance(b, Tensor) else None
        if ib is None:
            raise ValueError(f"KFAC: the dense layer with weight '{self.names[iW]}' has a bias "
                             "that is not one of the optimizer's parameters; K-FAC factors "
                             "[W; b] together")
        key = f"layer{iW}_{ib}"
        if key not in self.layers:
            self.layers[key] = _Layer(W, b, iW, ib, self.names[iW])
        return self.layers[key]

    def _check_coverage(self):
        covered = set(self.diagonal)
        for layer in self.layers.values():
            covered.update((layer.iW, layer.ib))
        for i, name in enumerate(self.names):
            if i not in covered:
                raise ValueError(
                    f"KFAC cannot factor '{name}': it is not the weight or bias of a dense "
                    "layer (minipg.nn.Linear, an MLP's layers, or a stacked dense layer) that "
                    "ran inside opt.capture(); accepted: dense layers, or the parameter with a "
                    "diagonal Fisher value in 'diagonal'")

    def update_curvature(self, log_likelihood, sample_weights=None):
        r"""Fold one batch into the running factors A and G of every captured layer.

        ``log_likelihood``: a Tensor of per-sample log p(y~_i | x_i) from the forward
        pass run inside :meth:`capture`, with y~_i drawn from the model (the Fisher, not
        the empirical Fisher); its shape is the leading (sample) axes of every layer's
        output.  A = mean_i abar_i abar_i^T and G = sum_i w_i g_i g_i^T with g_i = d log
        p(y~_i|x_i) / ds_i and w_i = ``sample_weights`` (default 1/N): weights p(y) over
        an enumeration of y give the exact expectation over y.
        """
        cap = self._capture
        if cap is None or not cap.inputs:
            raise RuntimeError("KFAC.update_curvature: no dense layer of this optimizer ran "
                               "inside 'with opt.capture():' (run the forward pass there first)")
        if not isinstance(log_likelihood, Tensor) or not log_likelihood.requires_grad:
            raise TypeError("KFAC.update_curvature: log_likelihood must be a Tensor on the tape "
                            "of the captured forward pass")
        ll_shape = log_likelihood.shape
        if sample_weights is not None:
            sample_weights = np.asarray(sample_weights, dtype=self.data.dtype)
            if sample_weights.shape != ll_shape:
                raise ValueError(f"KFAC.update_curvature: sample_weights has shape "
                                 f"{sample_weights.shape}, log_likelihood {ll_shape}")
        cap.grads.clear()
        cap.recording = True
        try:
            backward_cotangents(log_likelihood, np.ones_like(log_likelihood.data), [])
        finally:
            cap.recording = False
        for key, x in cap.inputs.items():
            layer = self._layer_of(*cap.params[key])
            h = cap.grads.get(key)
            if h is None:                        # no gradient reached the layer: zero
                lead = (layer.W.shape[:1] + x.shape[-2:-1]) if layer.stacked else x.shape[:-1]
                h = np.zeros(lead + layer.W.shape[-1:], dtype=self.data.dtype)
            if h.shape[:-1] != ll_shape:
                raise ValueError(f"KFAC.update_curvature: log_likelihood has shape {ll_shape}, "
                                 f"but layer '{layer.name}' has outputs of leading shape "
                                 f"{h.shape[:-1]}: one log-likelihood per sample is needed")
            A_batch, G_batch = self._batch_factors(layer, x, h, sample_weights)
            if layer.A is None:                                   # the first batch
                layer.A, layer.G = A_batch, G_batch
            else:
                d = self.decay
                layer.A = d * layer.A + (1.0 - d) * A_batch         # running averages
                layer.G = d * layer.G + (1.0 - d) * G_batch
        self._check_coverage()
        cap.grads.clear()
        self._capture = None
        self.curvature_updates += 1

    @staticmethod
    def _batch_factors(layer, x, h, w):
        if layer.stacked:                       # x (N, n_in) or (K, N, n_in); h (K, N, n_out)
            K, N = h.shape[0], h.shape[1]
            x = np.broadcast_to(x, (K,) + x.shape[-2:])
            abar = np.concatenate([x, np.ones((K, N, 1), x.dtype)], axis=2)
            A = np.swapaxes(abar, 1, 2) @ abar / N                          # E[abar abar^T]
            hw = h / N if w is None else h * w[..., None]
            return A, np.swapaxes(hw, 1, 2) @ h                             # E[g g^T]
        a = x.reshape(-1, x.shape[-1])
        g = h.reshape(-1, h.shape[-1])
        N = a.shape[0]
        abar = np.concatenate([a, np.ones((N, 1), a.dtype)], axis=1)        # trailing 1: bias
        A = abar.T @ abar / N
        gw = g / N if w is None else g * w.reshape(-1, 1)
        return A, gw.T @ g

    # --- the natural gradient ----------------------------------------------------
    def _views(self, vector, i):
        p = self.params[i]
        return vector[self.offsets[i]:self.offsets[i + 1]].reshape(p.data.shape)

    def refresh_inverses(self):
        """Recompute every layer's damped factor inverses from the current factors."""
        for layer in self.layers.values():
            layer.A_inv, layer.G_inv = kfac_damped_inverse(layer.A, layer.G, self.damping)
        self.inverse_step = self.step_count

    def natural_gradient(self, grad=None):
        r"""d = F~^-1 grad per block: vec_r(A~^-1 V G~^-1) for every dense layer (A~, G~ the
        damped factors), grad / (f + damping) for a ``diagonal`` parameter.  ``grad``
        defaults to the parameters' flat gradient; returns a new flat vector."""
        self._check_buffers()
        if not self.layers:
            raise RuntimeError("KFAC: no curvature yet; call update_curvature before the step")
        grad = self.grad if grad is None else np.asarray(grad, dtype=self.data.dtype)
        stale = self.inverse_step < 0 or self.step_count - self.inverse_step >= self.refresh_every
        if stale or any(layer.A_inv is None for layer in self.layers.values()):
            self.refresh_inverses()                              # every k steps
        out = np.empty_like(self.data)
        for layer in self.layers.values():
            V = layer.gradient_matrix(self._views(grad, layer.iW), self._views(grad, layer.ib))
            D = layer.A_inv @ V @ layer.G_inv                    # (A (x) G)^-1 vec_r(V)
            n_in = layer.W.shape[-2]
            self._views(out, layer.iW)[...] = D[..., :n_in, :]
            self._views(out, layer.ib)[...] = (D[:, n_in:, :] if layer.stacked
                                               else D[n_in])
        for i, f in self.diagonal.items():
            self._views(out, i)[...] = self._views(grad, i) / (f + self.damping)
        return out

    def fisher_quadratic(self, direction):
        r"""d^T F d with F the (undamped) K-FAC approximation: sum over layers of
        vec_r(V)^T (A (x) G) vec_r(V) = sum((A V G) * V), plus sum f d^2 on ``diagonal``."""
        direction = np.asarray(direction, dtype=self.data.dtype)
        total = 0.0
        for layer in self.layers.values():
            V = layer.gradient_matrix(self._views(direction, layer.iW),
                                      self._views(direction, layer.ib))
            total += float(np.sum((layer.A @ V @ layer.G) * V))
        for i, f in self.diagonal.items():
            d = self._views(direction, i)
            total += f * float(np.sum(d * d))
        return total

    def step(self, direction=None, eta=None):
        """theta <- theta - eta d (through the momentum buffer when momentum > 0), with
        d = :meth:`natural_gradient` and eta = ``lr`` unless given."""
        if direction is None:
            direction = self.natural_gradient()
        self._direction = direction
        self._eta = self.lr if eta is None else float(eta)
        try:
            super().step()                       # buffer check, step_count, mark_modified
        finally:
            self._direction = self._eta = None

    def _update(self):
        """The update of :meth:`step`, with the direction and eta it stored."""
        direction, eta = self._direction, self._eta
        if self.momentum > 0:
            self.momentum_buffer *= self.momentum
            self.momentum_buffer += eta * direction
            self.data -= self.momentum_buffer
        else:
            self.data -= eta * direction

    # --- checkpoints: plain arrays -----------------------------------------------
    def state_dict(self):
        state = {"step_count": np.asarray(self.step_count), "lr": np.asarray(self.lr),
                 "inverse_step": np.asarray(self.inverse_step),
                 "curvature_updates": np.asarray(self.curvature_updates),
                 "momentum_buffer": self.momentum_buffer.copy()}
        for layer in self.layers.values():
            for name in ("A", "G", "A_inv", "G_inv"):
                value = getattr(layer, name)
                if value is not None:
                    state[f"{layer.key}.{name}"] = value.copy()
        return state

    def load_state_dict(self, state):
        self.step_count = int(state["step_count"])
        self.lr = float(state["lr"])
        self.inverse_step = int(state["inverse_step"])
        self.curvature_updates = int(state["curvature_updates"])
        self.momentum_buffer[...] = np.asarray(state["momentum_buffer"])
        self.layers = {}
        for key, value in state.items():
            if not key.startswith("layer"):
                continue
            ids, name = key.split(".")
            iW, ib = (int(s) for s in ids[len("layer"):].split("_"))
            layer = self._layer_of(self.params[iW], self.params[ib])
            setattr(layer, name, np.array(value, dtype=self.data.dtype))
        return self
