r"""Tanh-squashed diagonal Gaussian: SAC's bounded-action policy.

References: L. Weng, "Policy Gradient Algorithms" (2018), section "SAC"
(reparameterised actions :math:`a_t = f_\phi(\epsilon_t; s_t)` and the
policy loss :math:`E[\alpha \log \pi_\phi(f_\phi(\epsilon; s) \mid s) -
Q(s, f_\phi(\epsilon; s))]`); T. Haarnoja, A. Zhou, P. Abbeel, S. Levine,
"Soft Actor-Critic: Off-Policy Maximum Entropy Deep Reinforcement Learning
with a Stochastic Actor", ICML 2018, Appendix C "Enforcing Action Bounds",
eq. 21; the numerically stable form of the log-determinant is the one of
OpenAI Spinning Up's SAC (J. Achiam, 2018).

With :math:`u = \mu + \sigma \odot \epsilon` (pre-squash Gaussian sample),
:math:`y = \tanh u` and, for a box :math:`[\text{low}, \text{high}]`,
:math:`a = \text{low} + (y + 1) \cdot s`, :math:`s = (\text{high} - \text{low})/2`
(:math:`a = y` without bounds), the change of variables gives

.. math::

    \log \pi(a) = \sum_i \Big[\log \mathcal{N}(u_i; \mu_i, \sigma_i)
    - \log(1 - \tanh^2 u_i) - \log s_i\Big],

and the correction is evaluated as

.. math::

    \log(1 - \tanh^2 u) = 2\,\big(\log 2 - u - \mathrm{softplus}(-2u)\big),

which is exact algebra (:math:`1 - \tanh^2 u = 4 / (e^{u} + e^{-u})^2`) and
stays finite and accurate for any :math:`|u|` (at :math:`u = 30`,
:math:`1 - \tanh^2 u` rounds to 0 in float64 and the naive log is
:math:`-\infty`).
"""

from __future__ import annotations

import math

import numpy as np

from ..autodiff import Tensor, ops
from .common import HALF_LOG_2PI, check_event, float_tensor, gaussian_fisher_metric
from .gaussian import DiagGaussian

__all__ = ["TanhGaussian", "tanh_log_det_jacobian", "box_constants", "SquashedSample",
           "rsample_from_head"]

_LOG2 = math.log(2.0)


def tanh_log_det_jacobian(u):
    r"""Elementwise :math:`\log \frac{d}{du}\tanh u = \log(1 - \tanh^2 u)`, stably.

    Computed as :math:`2(\log 2 - u - \mathrm{softplus}(-2u))`; finite for
    all finite ``u`` (about :math:`\log 4 - 2|u|` for large :math:`|u|`).
    ``u`` may be a Tensor (differentiable) or an array; returns a Tensor.
    """
    return 2.0 * (_LOG2 - u - ops.softplus(-2.0 * u))


def box_constants(low, high, d):
    r"""(scale, sum_log_scale) of the box [low, high] (arrays of the distribution's dtype,
    broadcasting to (..., d)): :math:`s = (\text{high} - \text{low})/2` and
    :math:`\sum_i \log s_i` over the d action dimensions."""
    scale = (high - low) / 2.0
    log_scale = np.log(scale)
    full = np.broadcast_shapes(log_scale.shape, (d,))
    return scale, np.sum(np.broadcast_to(log_scale, full), axis=-1)


class TanhGaussian:
    r"""Squashed Gaussian :math:`a = \text{low} + (\tanh(u) + 1)\,s`.

    :math:`u \sim \mathcal{N}(\mu, \mathrm{diag}(\sigma^2))`,
    :math:`s = (\text{high} - \text{low})/2`.

    Parameters
    ----------
    mean : Tensor or array_like, shape (..., d)
    log_std : Tensor or array_like, shape (..., d) or (d,)
    low, high : None (actions in (-1, 1), :math:`a = \tanh u`) or arrays
        broadcasting to ``mean.shape`` with ``low < high`` elementwise,
        both given or neither.
    log_std_bounds : (lo, hi) or None.  The log-std used is
        ``ops.clip(log_std, lo, hi)`` (default (-20, 2), as in SAC
        implementations): the gradient passes on the closed interval
        ``[lo, hi]`` and is zero outside.  None disables the clamp.

    Attributes: ``base`` (the pre-squash :class:`DiagGaussian`, with the
    clamped log-std), ``mean``, ``log_std`` (clamped), ``std``, ``low``,
    ``high``, ``scale`` (arrays or None), ``batch_shape``, ``d``.
    """

    def __init__(self, mean, log_std, low=None, high=None, log_std_bounds=(-20.0, 2.0)):
        owner = "TanhGaussian"
        mean = float_tensor(mean, "mean", owner)
        log_std = float_tensor(log_std, "log_std", owner)
        if log_std_bounds is not None:
            lo, hi = (float(b) for b in log_std_bounds)
            if not lo < hi:
                raise ValueError(f"{owner}: log_std_bounds {log_std_bounds!r} must be (lo, hi) "
                                 "with lo < hi, or None")
            log_std = ops.clip(log_std, lo, hi)
            log_std_bounds = (lo, hi)
        self.log_std_bounds = log_std_bounds
        self.base = DiagGaussian(mean, log_std)
        self.base._name = owner
        if (low is None) != (high is None):
            raise ValueError(f"{owner}: give both low and high (a box [low, high]) or neither "
                             "(actions in (-1, 1))")
        if low is None:
            self.low = self.high = self.scale = None
            self._sum_log_scale = 0.0
        else:
            dtype = mean.dtype
            low = np.asarray(low.data if isinstance(low, Tensor) else low, dtype=dtype)
            high = np.asarray(high.data if isinstance(high, Tensor) else high, dtype=dtype)
            for name, b in (("low", low), ("high", high)):
                try:
                    ok = np.broadcast_shapes(b.shape, mean.shape) == mean.shape
                except ValueError:
                    ok = False
                if not ok:
                    raise ValueError(f"{owner}: {name} of shape {b.shape} must broadcast to the "
                                     f"mean's shape {mean.shape} (e.g. a scalar or shape "
                                     f"({mean.shape[-1]},))")
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))
                    and np.all(low < high)):
                raise ValueError(f"{owner}: need finite low < high elementwise; got low={low}, "
                                 f"high={high}")
            self.low, self.high = low, high
            self.scale, self._sum_log_scale = box_constants(low, high, self.d)

    # ----------------------------------------------------------------- basics
    @property
    def mean(self):
        """The pre-squash mean (Tensor)."""
        return self.base.mean

    @property
    def log_std(self):
        """The pre-squash log-std after the clamp (Tensor)."""
        return self.base.log_std

    @property
    def std(self):
        """exp(clamped log-std) (Tensor)."""
        return self.base.std

    @property
    def d(self):
        """Action dimension (last axis)."""
        return self.base.d

    @property
    def batch_shape(self):
        """Leading (batch) axes of the mean."""
        return self.base.batch_shape

    def __repr__(self):
        box = "(-1, 1)" if self.low is None else "[low, high]"
        return f"TanhGaussian(batch_shape={self.batch_shape}, d={self.d}, actions in {box})"

    def _squash(self, u):
        """a = tanh(u) or low + (tanh(u) + 1) * scale; Tensor in, Tensor out (array: array)."""
        if isinstance(u, Tensor):
            y = ops.tanh(u)
            return y if self.low is None else self.low + (y + 1.0) * self.scale
        y = np.tanh(u)
        return y if self.low is None else self.low + (y + 1.0) * self.scale

    # ------------------------------------------------------------- density
    def log_prob_from_pre_tanh(self, u):
        r"""Log-density of the action :math:`a(u)` given the pre-squash value u, shape (...).

        .. math::

            \log\pi(a(u)) = \log\mathcal{N}(u; \mu, \sigma)
            - \sum_i 2(\log 2 - u_i - \mathrm{softplus}(-2u_i)) - \sum_i \log s_i.

        Exact for any u (no inverse tanh).  ``u`` is an array or a Tensor
        (then gradients flow through it as well).
        """
        corr = ops.sum(tanh_log_det_jacobian(u), axis=-1)
        return self.base.log_prob(u) - corr - self._sum_log_scale

    def log_prob(self, action):
        r"""Log-density of actions in the box, by inverting the squash, shape (...).

        :math:`u = \operatorname{atanh}(y)` with :math:`y = (a - \text{low})/s - 1`
        clipped to :math:`[-1 + \varepsilon, 1 - \varepsilon]` (:math:`\varepsilon`
        the dtype's machine epsilon, so :math:`|u| \le 18.4` in float64,
        :math:`8.3` in float32), then :meth:`log_prob_from_pre_tanh`.
        No gradient flows to ``action`` (it is data).

        Less accurate near the bounds: once :math:`|u| \gtrsim 10`, y is
        within :math:`10^{-8}` of :math:`\pm 1` and its rounding error is a
        large relative error in :math:`1 - |y|`, hence in u; an action
        exactly at a bound maps to the clip value rather than :math:`\pm\infty`.
        Prefer the log-prob that :meth:`rsample` returns (computed from u).
        Actions outside [low, high] by more than :math:`10^{-6}` of the
        half-width raise ValueError (the density there is 0).
        """
        a = action.data if isinstance(action, Tensor) else action
        dtype = self.mean.dtype
        a = np.asarray(a, dtype=dtype)
        check_event(a, self.d, self.batch_shape, "TanhGaussian.log_prob", "action")
        y = a if self.low is None else (a - self.low) / self.scale - 1.0
        bad = ~(np.abs(y) <= 1.0 + 1e-6)
        if np.any(bad):
            box = "(-1, 1)" if self.low is None else "[low, high]"
            value = float(a[bad].ravel()[0])
            raise ValueError(f"TanhGaussian.log_prob: action value {value!r} lies "
                             f"outside the support {box} (or is NaN)")
        tiny = np.finfo(dtype).eps
        u = np.arctanh(np.clip(y, -1.0 + tiny, 1.0 - tiny))
        return self.log_prob_from_pre_tanh(u)

    def entropy(self, rng=None, n=1000, eps=None):
        r"""Monte-Carlo entropy :math:`-\frac1n \sum_k \log\pi(a_k)`, :math:`a_k` from rsample.

        There is no closed form.  Give ``rng`` (draws ``n`` samples per
        distribution) or ``eps`` of shape ``(n,) + mean.shape``; returns a
        Tensor of shape (...) that is differentiable (pathwise) in the
        parameters.  Its standard error is std(log pi) / sqrt(n).
        """
        if rng is None and eps is None:
            raise NotImplementedError(
                "TanhGaussian.entropy: the squashed Gaussian has no closed-form entropy; "
                "call entropy(rng, n) for a Monte-Carlo estimate (or pass eps of shape "
                "(n,) + mean.shape)")
        if eps is not None:
            eps = np.asarray(eps.data if isinstance(eps, Tensor) else eps)
            if eps.shape[1:] != self.mean.shape:
                raise ValueError(f"TanhGaussian.entropy: eps of shape {eps.shape} must be "
                                 f"(n,) + mean.shape = (n,) + {self.mean.shape}")
            _, logp = self.rsample(eps=eps)
        else:
            if int(n) < 1:
                raise ValueError(f"TanhGaussian.entropy: n = {n} samples; need n >= 1")
            _, logp = self.rsample(rng=rng, sample_shape=(int(n),))
        return -ops.mean(logp, axis=0)

    def kl(self, other):
        r"""Exact :math:`\mathrm{KL}(\pi_p \,\|\, \pi_q)` for squashed Gaussians on the same box.

        The KL divergence is invariant under a common bijection of the sample
        space, and both distributions are the images of their pre-squash
        Gaussians under the same map :math:`u \mapsto \text{low} + (\tanh u + 1)s`,
        so :math:`\mathrm{KL}(\pi_p \| \pi_q) = \mathrm{KL}(\mathcal N_p \| \mathcal N_q)`,
        the closed form of :meth:`DiagGaussian.kl` (with the clamped log-stds).
        Different boxes have different supports: ValueError.
        """
        if not isinstance(other, TanhGaussian):
            raise ValueError(f"TanhGaussian.kl: other must be a TanhGaussian, got "
                             f"{type(other).__name__}")
        same = (self.low is None) == (other.low is None) and (
            self.low is None or (np.array_equal(*np.broadcast_arrays(self.low, other.low))
                                 and np.array_equal(*np.broadcast_arrays(self.high, other.high))))
        if not same:
            raise ValueError("TanhGaussian.kl: the two distributions squash to different boxes "
                             "[low, high]; the KL between them is not the Gaussians' KL (it is "
                             "infinite where the supports differ). Use the same low and high.")
        return self.base.kl(other.base)

    # ------------------------------------------------------------ sampling
    def sample(self, rng, sample_shape=()):
        """A squashed action ndarray of shape ``sample_shape + mean.shape`` (no gradient).

        Same draws as :meth:`rsample` with an identically seeded generator.
        """
        return self._squash(self.base.sample(rng, sample_shape))

    def rsample(self, rng=None, eps=None, sample_shape=()):
        r"""Reparameterised ``(action, log_prob)``, both Tensors.

        :math:`u = \mu + \sigma\epsilon` with ``eps`` (any shape (..., d)
        broadcasting with the mean; common random numbers) or
        ``rng.standard_normal(sample_shape + mean.shape)``; action
        :math:`= \text{low} + (\tanh u + 1) s`; the log-prob uses u directly,

        .. math::

            \log\pi = \sum_i\big[-\tfrac12\epsilon_i^2 - \log\sigma_i - \tfrac12\log 2\pi
            - 2(\log 2 - u_i - \mathrm{softplus}(-2u_i)) - \log s_i\big],

        (:math:`(u - \mu)/\sigma = \epsilon` exactly), so it is accurate even
        where the action has rounded to a bound.
        """
        eps = self.base._eps(rng, eps, sample_shape, "TanhGaussian.rsample")
        u = self.mean + self.std * eps
        gauss = (-0.5 * np.sum(np.square(eps), axis=-1) - ops.sum(self.log_std, axis=-1)
                 - self.d * HALF_LOG_2PI)
        logp = gauss - ops.sum(tanh_log_det_jacobian(u), axis=-1) - self._sum_log_scale
        return self._squash(u), logp

    def mode(self):
        """The deterministic action :math:`\\text{low} + (\\tanh\\mu + 1)s` (ndarray)."""
        return self._squash(np.array(self.mean.data, copy=True))

    # --------------------------------------------------------------- Fisher
    @staticmethod
    def fisher_metric(outputs, tangents, log_std_bounds=(-20.0, 2.0)):
        r"""Fisher information w.r.t. (mean, unclamped log_std), times a tangent.

        A bijection of the sample space leaves the Fisher information
        unchanged, so this is :meth:`DiagGaussian.fisher_metric` at the
        clamped log-std, with the log-std tangent and result multiplied by the
        clamp's derivative (1 on ``[lo, hi]``, 0 outside).  For bounds other
        than the default pass them with ``functools.partial(
        TanhGaussian.fisher_metric, log_std_bounds=(lo, hi))`` (None: no clamp).
        """
        return gaussian_fisher_metric(outputs, tangents, "TanhGaussian.fisher_metric",
                                log_std_bounds=log_std_bounds)


# ------------------------------------------------------- the fused sample (SAC's hot path)
class SquashedSample:
    r"""One op for :meth:`TanhGaussian.rsample` taken from a policy head's output.

    Input: ``head`` (N, 2d), the network's [mean, log_std] (log_std before the
    clamp); constants: the noise ``eps`` (N, d) of the head's dtype, ``d``,
    ``bounds`` (lo, hi) of the clamp or None, the box's ``low`` and ``scale``
    (arrays, or None for actions in (-1, 1)) and ``sum_log_scale``
    (:math:`\sum_i \log s_i`, 0 without a box).  Output (N, d + 1): the
    action in the first d columns, log pi in the last.

    The forward pass does the same NumPy operations, in the same order and
    dtypes, as the ops :class:`TanhGaussian` records (the clamp, exp, u = mean +
    std eps, the Gaussian term, the correction 2 (log 2 - u - softplus(-2u)),
    the squash), and the vjp applies each of those ops' vjps in the order the
    tape would visit them, summing the contributions to u (tanh's, then
    softplus(-2u)'s, then (log 2 - u)'s) and to the clamped log-std (the
    Gaussian term's, then exp's) in the tape's order: the values and the
    gradients are the same bits as the unfused graph (tests/test_distributions.py
    checks it), from one tape node instead of about twenty, and no
    distribution object or checks (callers pass eps of the right shape and dtype).
    """

    @staticmethod
    def forward(head, eps, d, bounds, low, scale, sum_log_scale):
        mean, log_std = head[:, :d], head[:, d:]
        inside = None
        if bounds is not None:
            log_std, inside = ops.Clip.forward(log_std, *bounds)     # the clamp
        std = np.exp(log_std)
        u = np.add(mean, np.multiply(std, eps))                      # u = mean + std eps
        gauss = np.subtract(np.subtract(-0.5 * np.sum(np.square(eps), axis=-1),
                                        np.add.reduce(log_std, axis=(1,))), d * HALF_LOG_2PI)
        minus_2u = np.multiply(-2.0, u)
        softplus, softplus_grad = ops.Softplus.forward(minus_2u)
        correction = np.multiply(2.0, np.subtract(np.subtract(_LOG2, u), softplus))
        log_prob = np.subtract(np.subtract(gauss, np.add.reduce(correction, axis=(1,))),
                               sum_log_scale)
        y = np.tanh(u)
        action = y if low is None else np.add(low, np.multiply(np.add(y, 1.0), scale))
        out = np.empty((head.shape[0], d + 1), dtype=action.dtype)
        out[:, :d] = action
        out[:, d] = log_prob
        return out, (d, eps, std, inside, y, softplus_grad, scale, head.shape)

    @staticmethod
    def vjp(g, saved, needs):
        d, eps, std, inside, y, softplus_grad, scale, shape = saved
        g_action, g_log_prob = g[:, :d], g[:, d]
        # the squash: a = low + (tanh u + 1) scale (Add, Mul, Add, Tanh vjps)
        g_y = g_action if scale is None else g_action * scale
        g_u = g_y * (1.0 - y * y)
        # log pi = gauss - sum(correction) - sum log s: the Sub vjps, then the Sum's
        summed_rows = (shape[:1] + (d,), (1,), False)               # Sum over the last axis
        g_correction = ops.Sum.vjp(-g_log_prob, summed_rows, None)[0]
        g_t2 = g_correction * 2.0                                    # 2 (t1 - softplus)
        g_u = g_u + (-g_t2 * softplus_grad) * -2.0                   # softplus(-2u)
        g_u = g_u + -g_t2                                            # log 2 - u
        # the Gaussian term's -sum(log_std), then std = exp(log_std) through u = mean + std eps
        g_log_std = ops.Sum.vjp(-g_log_prob, summed_rows, None)[0] + (g_u * eps) * std
        if inside is not None:
            g_log_std = ops.Clip.vjp(g_log_std, inside, None)[0]    # the clamp
        g_head = np.empty(shape, dtype=g.dtype)
        g_head[:, :d] = g_u
        g_head[:, d:] = g_log_std
        return (g_head,)

    @staticmethod
    def jvp(saved, d_head):
        """The forward-mode derivative (the chain rule of the same graph)."""
        d, eps, std, inside, y, softplus_grad, scale, _ = saved
        if d_head is None:
            return None
        d_log_std = d_head[:, d:] if inside is None else d_head[:, d:] * inside
        d_u = d_head[:, :d] + (d_log_std * std) * eps
        d_y = d_u * (1.0 - y * y)
        d_correction = 2.0 * (-d_u - softplus_grad * (-2.0 * d_u))
        out = np.empty((d_head.shape[0], d + 1), dtype=d_u.dtype)
        out[:, :d] = d_y if scale is None else d_y * scale
        out[:, d] = -np.sum(d_log_std, axis=-1) - np.sum(d_correction, axis=-1)
        return out


def rsample_from_head(head, eps, d, low=None, scale=None, sum_log_scale=0.0,
                      log_std_bounds=(-20.0, 2.0)):
    r"""(action, log_prob) of :meth:`TanhGaussian.rsample` at noise ``eps`` for the
    distribution ``TanhGaussian(head[:, :d], head[:, d:], low, high, log_std_bounds)``,
    through one op (:class:`SquashedSample`): the same values and gradients.

    ``head`` is a (N, 2d) Tensor; ``eps`` a (N, d) array of its dtype; ``scale`` =
    (high - low) / 2 and ``sum_log_scale`` = sum_i log scale_i (the box's constants,
    computed once by the caller; ``low`` None: actions in (-1, 1)).  Nothing is
    checked: for internal callers that built these themselves (SAC's actor)."""
    bounds = None if log_std_bounds is None else tuple(float(b) for b in log_std_bounds)
    out = ops.apply(SquashedSample, head, eps=eps, d=d, bounds=bounds, low=low, scale=scale,
                    sum_log_scale=sum_log_scale)
    return out[:, :d], out[:, d]
