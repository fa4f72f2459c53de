r"""Categorical (softmax) policy over a finite action set.

References: L. Weng, "Policy Gradient Algorithms" (2018), section "Policy
Gradient" (the score-function gradient :math:`\nabla_\theta \log
\pi_\theta(a \mid s)` of a stochastic policy) and section "TRPO" (the KL
divergence between old and new policies and the Fisher information that
the natural gradient uses); R. J. Williams, "Simple statistical
gradient-following algorithms for connectionist reinforcement learning",
Machine Learning 8 (1992) (REINFORCE with softmax policies); S. Kakade, "A
Natural Policy Gradient", NIPS 2002; J. Schulman et al., "Trust Region
Policy Optimization", ICML 2015, Appendix C (Fisher-vector products).

Parameterisation: unnormalised logits :math:`\ell \in \mathbb{R}^{(\dots, n)}`,

.. math::

    \log p_i = \ell_i - \log \textstyle\sum_j e^{\ell_j}
    \qquad(\text{one } \texttt{log\_softmax} \text{ op, max-shifted, so logits of}
    \ 10^3 \text{ do not overflow}).
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, as_tensor, ops
from ..kernels.softmax import KERNEL_FLOATS, categorical_sample_rows_numba
from .common import batch_size, check_generator

__all__ = ["Categorical"]


class Categorical:
    r"""Categorical distribution :math:`p = \mathrm{softmax}(\ell)` over ``n`` actions.

    Parameters
    ----------
    logits : Tensor or array_like, shape (..., n)
        Unnormalised log-probabilities; the leading axes are the batch.
        A Tensor keeps its place on the tape (gradients flow to it); an
        array becomes a constant.  Logits need not be normalised; large
        values (1e3) are fine.  ``-inf`` entries (masked actions) are not
        supported (``entropy`` and ``kl`` would give NaN).

    Attributes
    ----------
    logits : Tensor (..., n), as given.
    log_probs : Tensor (..., n), :math:`\log p = \mathrm{log\_softmax}(\ell)`.
    batch_shape : tuple, ``logits.shape[:-1]``.
    n : int, the number of actions.
    """

    def __init__(self, logits):
        self.logits = as_tensor(logits)
        if self.logits.data.dtype.kind != "f":
            self.logits = Tensor(self.logits.data.astype(np.float64))
        if self.logits.ndim < 1 or self.logits.shape[-1] < 1:
            raise ValueError(f"Categorical: logits must have shape (..., n) with n >= 1 actions; "
                             f"got shape {self.logits.shape}")
        self.log_probs = ops.log_softmax(self.logits, axis=-1)

    # ----------------------------------------------------------------- basics
    @property
    def n(self):
        """Number of actions (the last axis of the logits)."""
        return self.logits.shape[-1]

    @property
    def batch_shape(self):
        """Leading (batch) axes of the logits."""
        return self.logits.shape[:-1]

    @property
    def probs(self):
        r"""Probabilities :math:`p = \exp(\log p)`, a differentiable Tensor of shape (..., n)."""
        return ops.exp(self.log_probs)

    def __repr__(self):
        return f"Categorical(batch_shape={self.batch_shape}, n={self.n})"

    # ---------------------------------------------------------- validation
    def _check_actions(self, actions):
        """Validated integer actions broadcast against the batch; returns (actions, shape)."""
        a = np.asarray(actions.data if isinstance(actions, Tensor) else actions)
        n = self.n
        if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
            raise ValueError(f"Categorical: actions must be integers in [0, {n - 1}]; got an "
                             f"array of dtype {a.dtype}")
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or np.any(a != np.floor(a)):
                bad = float(a[~(np.isfinite(a) & (a == np.floor(a)))].ravel()[0])
                raise ValueError(f"Categorical: actions must be integers in [0, {n - 1}]; got "
                                 f"the non-integer value {bad!r}")
            a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= n):
            bad = a[(a < 0) | (a >= n)].ravel()[0]
            raise ValueError(f"Categorical: action {int(bad)} is out of range; accepted actions "
                             f"are the integers 0..{n - 1} (n = {n})")
        try:
            shape = np.broadcast_shapes(a.shape, self.batch_shape)
        except ValueError:
            raise ValueError(f"Categorical: actions of shape {a.shape} do not match the batch "
                             f"shape {self.batch_shape} (logits {self.logits.shape}); accepted: "
                             f"the batch shape or a shape that broadcasts with it") from None
        return np.broadcast_to(a.astype(np.int64, copy=False), shape), shape

    # ------------------------------------------------------------- methods
    def log_prob(self, actions, validate=True):
        r"""Log-probability :math:`\log p_a` of integer actions, shape (...).

        ``gather(log_softmax(logits), a[..., None], -1)[..., 0]``: two tape
        nodes.  ``actions`` (ints, or floats with integral values) must lie in
        ``0..n-1`` and broadcast with ``batch_shape``; else ValueError.
        ``validate=False`` skips these checks, for actions known to be good: an
        int64 array of exactly ``batch_shape`` drawn by :meth:`sample` (the
        checks cost more than the log-probability itself on small batches).
        """
        if not validate:
            return ops.gather(self.log_probs, actions[..., None], axis=-1)[..., 0]
        a, shape = self._check_actions(actions)
        logp = self.log_probs
        if shape != self.batch_shape:       # actions broadcast beyond the logits' batch
            logp = logp + np.zeros(shape + (self.n,), dtype=logp.dtype)
        return ops.gather(logp, a[..., None], axis=-1)[..., 0]

    def entropy(self):
        r"""Entropy :math:`H(p) = -\sum_i p_i \log p_i`, shape (...)."""
        logp = self.log_probs
        return -ops.sum(ops.exp(logp) * logp, axis=-1)

    def kl(self, other):
        r"""KL divergence :math:`\mathrm{KL}(p \,\|\, q) = \sum_i p_i (\log p_i - \log q_i)`.

        ``other`` is a Categorical with the same number of actions whose
        batch shape broadcasts with this one's; returns shape (...).
        """
        if not isinstance(other, Categorical):
            raise ValueError(f"Categorical.kl: other must be a Categorical, got "
                             f"{type(other).__name__}")
        if other.n != self.n:
            raise ValueError(f"Categorical.kl: the distributions have {self.n} and {other.n} "
                             "actions; they must have the same number")
        try:
            np.broadcast_shapes(self.batch_shape, other.batch_shape)
        except ValueError:
            raise ValueError(f"Categorical.kl: batch shapes {self.batch_shape} and "
                             f"{other.batch_shape} do not broadcast") from None
        logp = self.log_probs
        return ops.sum(ops.exp(logp) * (logp - other.log_probs), axis=-1)

    def sample(self, rng, sample_shape=()):
        r"""Draw actions (int64 ndarray of shape ``sample_shape + batch_shape``, no gradient).

        Inverse CDF, one uniform per draw: with :math:`c_k = \sum_{j \le k} p_j`
        and :math:`U \sim \mathcal{U}[0, c_{n-1})`, the action is
        :math:`\#\{k : c_k \le U\} = \min\{k : U < c_k\}`, which equals
        :math:`k` with probability :math:`(c_k - c_{k-1}) / c_{n-1} = p_k`
        exactly (:math:`U` is scaled by :math:`c_{n-1}` so that rounding in
        the cumulative sum can never pick an action of probability 0).  The
        cumulative sum is taken in float64 whatever the logits' precision.
        """
        return _draw(self.log_probs.data, check_generator(rng), tuple(sample_shape))

    @staticmethod
    def sample_from_logits(logits, rng):
        """(a ~ softmax(logits) in each row, log p_a) as plain arrays, nothing recorded.

        Acting's path: for logits (B, n) the same log-probabilities, draws and
        values as ``d = Categorical(logits); a = d.sample(rng); d.log_prob(a)``,
        without the Tensors.
        """
        logits = np.asarray(logits)
        if logits.ndim != 2 or logits.dtype not in KERNEL_FLOATS:
            d = Categorical(logits)
            a = d.sample(rng)
            return a, d.log_prob(a, validate=False).data
        log_probs = ops.LogSoftmax.forward(logits, -1)[0]             # C-contiguous (B, n)
        actions = _draw(log_probs, check_generator(rng), ())           # as sample() draws
        return actions, log_probs[np.arange(len(actions)), actions]

    def mode(self):
        """Most probable action, ``argmax(logits)`` (ties: the lowest index); int64 ndarray."""
        return np.argmax(self.logits.data, axis=-1).astype(np.int64)

    # --------------------------------------------------------------- Fisher
    @staticmethod
    def fisher_metric(outputs, tangents):
        r"""Fisher information of the categorical w.r.t. its logits, times a tangent.

        For one distribution :math:`F = \mathrm{diag}(p) - p p^\top`, so
        :math:`F u = p \odot u - p \,(p^\top u)`; the result is divided by
        the batch size :math:`B = \prod(\text{leading axes})` so that
        ``fisher_vector_product(logits_fn, params, v, Categorical.fisher_metric)``
        is :math:`J^\top M J v = \frac1B \sum_b J_b^\top F_b J_b v`, the
        batch-averaged Fisher of the policy applied to ``v``.

        outputs, tangents: the logits array (..., n) and its tangent ``J v``
        (or 1-tuples of them, in which case a 1-tuple is returned).
        """
        tup = isinstance(outputs, (tuple, list))
        logits = np.asarray(outputs[0] if tup else outputs)
        u = np.asarray(tangents[0] if isinstance(tangents, (tuple, list)) else tangents)
        if u.shape != logits.shape:
            raise ValueError(f"Categorical.fisher_metric: tangent shape {u.shape} does not match "
                             f"logits shape {logits.shape}")
        z = logits - np.max(logits, axis=-1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=-1, keepdims=True)
        mu = (p * u - p * np.sum(p * u, axis=-1, keepdims=True)) / batch_size(logits.shape)
        return (mu,) if tup else mu


def _draw(log_probs, rng, sample_shape):
    """Inverse-CDF draws from log-probabilities (..., n): see :meth:`Categorical.sample`."""
    n = log_probs.shape[-1]
    shape = sample_shape + log_probs.shape[:-1]
    u = rng.random(shape)
    if not shape or sample_shape or log_probs.dtype not in KERNEL_FLOATS:
        cdf = np.cumsum(np.exp(log_probs.astype(np.float64)), axis=-1)
        return np.sum(cdf[..., :-1] <= (u * cdf[..., -1])[..., None], axis=-1).astype(np.int64)
    # one draw per row (acting): the same formula, one numba pass per row (its exp
    # may differ from NumPy's in the last bit, so a u on a boundary could differ)
    rows = np.ascontiguousarray(log_probs).reshape(-1, n)
    actions = np.empty(rows.shape[0], dtype=np.int64)
    categorical_sample_rows_numba(rows, u.reshape(-1), actions)
    return actions.reshape(shape)
