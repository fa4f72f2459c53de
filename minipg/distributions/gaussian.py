r"""Diagonal Gaussian policy for continuous actions.

References: L. Weng, "Policy Gradient Algorithms" (2018), section "Policy
Gradient" (score function of a stochastic policy), sections "TRPO"/"PPO"
(KL between old and new policies, Fisher information for the natural
gradient) and section "SAC" (reparameterised actions :math:`a =
f_\phi(\epsilon; s)`); D. P. Kingma and M. Welling, "Auto-Encoding
Variational Bayes", ICLR 2014 (the reparameterisation / pathwise
gradient); J. Schulman et al., "Trust Region Policy Optimization", ICML
2015 (diagonal Gaussian policies with state-independent log-std).

Parameterisation: mean :math:`\mu` of shape (..., d) and log standard
deviation :math:`\log\sigma` of shape (..., d) or (d,) (a state-independent
log-std broadcast over the batch), with density

.. math::

    \log \mathcal{N}(x; \mu, \sigma) = \sum_{i=1}^d \Big[-\tfrac12
    \Big(\frac{x_i - \mu_i}{\sigma_i}\Big)^2 - \log\sigma_i
    - \tfrac12\log 2\pi\Big].
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, ops
from .common import (HALF_LOG_2PI, check_event, check_generator, float_tensor,
                     gaussian_fisher_metric)

__all__ = ["DiagGaussian"]


class DiagGaussian:
    r"""Gaussian :math:`\mathcal{N}(\mu, \mathrm{diag}(\sigma^2))`, :math:`\sigma = e^{\log\sigma}`.

    Parameters
    ----------
    mean : Tensor or array_like, shape (..., d)
    log_std : Tensor or array_like, shape (..., d) or (d,) (any shape that
        broadcasts to ``mean.shape`` with the same last axis; a
        state-independent log-std is the usual (d,) parameter vector).

    Tensors keep their place on the tape; arrays become constants.  Events
    are the last axis: ``log_prob`` and ``entropy`` sum over it and return
    ``batch_shape = mean.shape[:-1]``.

    Attributes: ``mean``, ``log_std`` (Tensors as given), ``std`` (Tensor,
    :math:`e^{\log\sigma}`), ``batch_shape``, ``d``.
    """

    _name = "DiagGaussian"

    def __init__(self, mean, log_std):
        owner = self._name
        self.mean = float_tensor(mean, "mean", owner)
        self.log_std = float_tensor(log_std, "log_std", owner)
        ms, ls = self.mean.shape, self.log_std.shape
        ok = ls[-1] == ms[-1] and len(ls) <= len(ms)
        if ok:
            try:
                ok = np.broadcast_shapes(ms, ls) == ms
            except ValueError:
                ok = False
        if not ok:
            raise ValueError(f"{owner}: log_std of shape {ls} must broadcast to the mean's shape "
                             f"{ms} (accepted: {ms} or ({ms[-1]},), the state-independent "
                             "log-std)")
        self.std = ops.exp(self.log_std)
        self._inv_std = ops.exp(-self.log_std)

    @property
    def d(self):
        """Action dimension (last axis)."""
        return self.mean.shape[-1]

    @property
    def batch_shape(self):
        """Leading (batch) axes of the mean."""
        return self.mean.shape[:-1]

    def __repr__(self):
        return f"{self._name}(batch_shape={self.batch_shape}, d={self.d})"

    def _batch_broadcast(self, t):
        """t (shape broadcastable to batch_shape) broadcast to batch_shape (one add node)."""
        if t.shape == self.batch_shape:
            return t
        return t + np.zeros(self.batch_shape, dtype=t.dtype)

    # ------------------------------------------------------------- density
    def log_prob(self, x, validate=True):
        r"""Log-density summed over the last axis, shape (...).

        .. math::

            \log p(x) = -\tfrac12 \sum_i z_i^2 - \sum_i \log\sigma_i - \tfrac d2 \log 2\pi,
            \qquad z = (x - \mu) / \sigma.

        ``x`` (array, or Tensor to differentiate through it too) has shape
        (..., d) broadcasting with ``mean``.  ``validate=False`` skips the checks
        of ``x``, for samples known to be good (drawn by :meth:`sample`).
        """
        if validate:
            check_event(x, self.d, self.batch_shape, self._name, "x")
        if not isinstance(x, Tensor):
            x = np.asarray(x, dtype=self.mean.dtype)
        z = (x - self.mean) * self._inv_std
        return (-0.5 * ops.sum(ops.square(z), axis=-1) - ops.sum(self.log_std, axis=-1)
                - self.d * HALF_LOG_2PI)

    def entropy(self):
        r"""Differential entropy, shape (...).

        .. math:: H = \sum_i \log\sigma_i + \tfrac d2 (1 + \log 2\pi).
        """
        h = ops.sum(self.log_std, axis=-1) + self.d * (0.5 + HALF_LOG_2PI)
        return self._batch_broadcast(h)

    def kl(self, other):
        r"""Closed-form :math:`\mathrm{KL}(p \,\|\, q)` for diagonal Gaussians, shape (...).

        .. math::

            \sum_i \Big[\log\frac{\sigma_{q,i}}{\sigma_{p,i}}
            + \frac{\sigma_{p,i}^2 + (\mu_{p,i} - \mu_{q,i})^2}{2\sigma_{q,i}^2}
            - \tfrac12\Big],

        computed as :math:`\tfrac12 e^{2(\log\sigma_p - \log\sigma_q)} + \tfrac12
        ((\mu_p - \mu_q)/\sigma_q)^2 + \log\sigma_q - \log\sigma_p - \tfrac12`.
        """
        if not isinstance(other, DiagGaussian) or type(other) is not type(self):
            raise ValueError(f"{self._name}.kl: other must be a {self._name}, got "
                             f"{type(other).__name__}")
        if other.d != self.d:
            raise ValueError(f"{self._name}.kl: action dimensions differ ({self.d} vs "
                             f"{other.d}); they must be equal")
        try:
            np.broadcast_shapes(self.mean.shape, other.mean.shape)
        except ValueError:
            raise ValueError(f"{self._name}.kl: shapes {self.mean.shape} and "
                             f"{other.mean.shape} do not broadcast") from None
        dls = self.log_std - other.log_std
        dm = (self.mean - other.mean) * other._inv_std
        per_dim = 0.5 * ops.exp(2.0 * dls) + 0.5 * ops.square(dm) - dls - 0.5
        return ops.sum(per_dim, axis=-1)

    # ------------------------------------------------------------ sampling
    def _eps(self, rng, eps, sample_shape, owner):
        """Standard normal noise: eps validated (shape (..., d)), or drawn from rng."""
        shape = tuple(sample_shape) + self.mean.shape
        if eps is None:
            if rng is None:
                raise ValueError(f"{owner}: pass rng (a numpy Generator) or eps (standard "
                                 "normal noise of shape (..., d))")
            return check_generator(rng).standard_normal(shape).astype(self.mean.dtype, copy=False)
        if isinstance(eps, Tensor):
            eps = eps.data
        eps = np.asarray(eps, dtype=self.mean.dtype)
        check_event(eps, self.d, self.batch_shape, owner, "eps")
        return eps

    def sample(self, rng, sample_shape=()):
        r"""Draw :math:`x = \mu + \sigma \epsilon`, :math:`\epsilon \sim \mathcal{N}(0, I)`.

        Returns an ndarray of shape ``sample_shape + mean.shape`` (no
        gradient).  Uses the same draws as ``rsample(rng)`` with an
        identically seeded generator.
        """
        eps = self._eps(rng, None, sample_shape, f"{self._name}.sample")
        return self.mean.data + self.std.data * eps

    def rsample(self, rng=None, eps=None, sample_shape=()):
        r"""Reparameterised sample :math:`x = \mu + \sigma \odot \epsilon` (a Tensor).

        Gradients flow to ``mean`` and ``log_std`` (pathwise estimator).  The
        noise is ``eps`` when given (any shape (..., d) broadcasting with the
        mean: common random numbers make finite differences exact), else
        ``rng.standard_normal(sample_shape + mean.shape)``.
        """
        eps = self._eps(rng, eps, sample_shape, f"{self._name}.rsample")
        return self.mean + self.std * eps

    def mode(self):
        """The deterministic action, the mean (an ndarray copy)."""
        return np.array(self.mean.data, copy=True)

    # --------------------------------------------------------------- Fisher
    @staticmethod
    def fisher_metric(outputs, tangents):
        r"""Fisher information of the Gaussian w.r.t. (mean, log_std), times a tangent.

        Per distribution the Fisher is block diagonal,
        :math:`F_{\mu\mu} = \mathrm{diag}(1/\sigma^2)`,
        :math:`F_{\log\sigma\log\sigma} = 2 I`, :math:`F_{\mu\log\sigma} = 0`
        (:math:`E[z(z^2 - 1)] = 0`).  Averaged over the batch of
        :math:`B = \prod(\text{mean.shape[:-1]})` distributions:

        .. math::

            M(u_\mu, u_{\log\sigma}) = \Big(\frac{u_\mu}{B\,\sigma^2},\;
            \frac{2\,u_{\log\sigma}}{B_{\log\sigma}}\Big),

        where :math:`B_{\log\sigma} = \prod(\text{log\_std.shape[:-1]})`.  When
        log_std has the full batch shape, :math:`B_{\log\sigma} = B`.  When it
        is state-independent, shape (d,), every one of its entries is shared
        by all B distributions, so its batch-averaged Fisher is
        :math:`\frac1B \sum_b 2 I = 2 I` (:math:`B_{\log\sigma} = 1`); in
        general each entry is shared by :math:`B / B_{\log\sigma}`
        distributions.

        outputs: (mean, log_std) arrays as the policy produced them (log_std
        not broadcast); tangents: their tangents ``J v`` (same shapes).
        Returns the tuple (M_mean, M_log_std).
        """
        return gaussian_fisher_metric(outputs, tangents, "DiagGaussian.fisher_metric")
