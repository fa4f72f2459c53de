r"""D4PG: the N-step distributional target, the weighted cross-entropy critic loss, and the
actor objective through the critic's mean.

References: L. Weng, "Policy Gradient Algorithms" (2018), section "D4PG",
Algorithm 1; G. Barth-Maron, M. W. Hoffman, D. Budden, W. Dabney, D. Horgan,
D. TB, A. Muldal, N. Heess, T. Lillicrap, "Distributed Distributional
Deterministic Policy Gradients", ICLR 2018, eqs. (4)-(7); M. G. Bellemare,
W. Dabney, R. Munos, "A Distributional Perspective on Reinforcement
Learning", ICML 2017 (the categorical distribution and its projection).

The critic is a categorical distribution over the fixed support
z_1 < ... < z_n (evenly spaced on [v_min, v_max]):
Z_w(s, a) takes value z_j with probability p_j(s, a) = softmax(logits_w(s, a))_j,
and :math:`Q_w(s, a) = \mathbb{E}[Z_w(s, a)] = \sum_j p_j z_j`.  For a
minibatch of M N-step rows (s_i, a_i, R_i, s'_i, d_i, m_i) with importance
weights w_i:

.. math::

    Y_i &= \Phi\bigl(R_i + \gamma^{m_i} (1 - d_i)\, Z_{w'}(s'_i, \mu_{\theta'}(s'_i))\bigr)
        && \text{Algorithm 1, line 6; } \Phi \text{ the projection}                 \\
    L(w) &= \tfrac1M \textstyle\sum_i w_i\, H(Y_i, Z_w(s_i, a_i)),\quad
        H(Y, Z) = -\textstyle\sum_j Y_j \log p_j
        && \text{the critic update, minimised}                                       \\
    J(\theta) &= \tfrac1M \textstyle\sum_i \mathbb{E}[Z_w(s_i, \mu_\theta(s_i))]
        && \text{the policy update, maximised}

Slips of the document's Algorithm 1 corrected here (and in the issue):
the n-th reward is discounted by gamma^n, so the bootstrap by gamma^N (the
document's target has the rewards undiscounted); the critic update is a
descent step on the distance d = cross-entropy (the document writes an
ascent, w <- w + beta delta_w); and the weights are (R P(i))^-1 of the
sampling probability P(i), normalised by the batch's largest (see
:mod:`minipg.buffers.prioritized`).  The cross-entropy equals the KL
divergence KL(Y_i || Z_w) up to the entropy of Y_i, which does not depend
on w, so both give the same gradient; its gradient in the logits is the
closed form (w_i / M)(p_ij - Y_ij) (rows of Y summing to 1).

The actor's gradient is that of J: by the chain rule
:math:`\nabla_\theta \mathbb{E}[Z_w(s, \mu_\theta(s))] = \nabla_a Q_w(s, a)
|_{a = \mu_\theta(s)} \nabla_\theta \mu_\theta(s)`, the document's
"E[nabla_a Z_w]" (the expectation commutes with the gradient).

Held-constant inputs (target distributions, weights, rewards) enter as
plain arrays; logits are Tensors.  Input checks: :mod:`minipg.estimators.checks`;
the projection is the kernel :func:`minipg.kernels.categorical_projection`.
"""

from __future__ import annotations

import numpy as np

from minipg.autodiff import ops
from minipg.kernels.projection import categorical_projection

from . import checks as _c
from .terms import deterministic_actor_objective

__all__ = ["support", "bootstrap_discounts", "target_distribution", "cross_entropy",
           "critic_loss", "q_values", "actor_objective"]


def support(v_min, v_max, n_atoms):
    """The atoms z_j = v_min + j (v_max - v_min)/(n - 1), j = 0..n-1 (float64)."""
    if not (np.isfinite(v_min) and np.isfinite(v_max) and v_min < v_max):
        raise ValueError(f"d4pg.support: need finite v_min < v_max, got v_min={v_min}, "
                         f"v_max={v_max}")
    if int(n_atoms) != n_atoms or n_atoms < 2:
        raise ValueError(f"d4pg.support: n_atoms must be an integer >= 2, got {n_atoms!r}")
    return np.linspace(float(v_min), float(v_max), int(n_atoms))


def bootstrap_discounts(n_steps, terminated, gamma):
    r"""gamma^m (1 - d) per row: the weight of the bootstrap after m rewards (0 where the
    window ended in a termination)."""
    where = "d4pg.bootstrap_discounts"
    gamma = _c.discount(gamma, where)
    m = np.asarray(n_steps)
    if m.dtype.kind not in "iu" or m.ndim != 1 or np.any(m < 1):
        raise ValueError(f"{where}: n_steps must be a 1-D integer array with entries >= 1, got "
                         f"{n_steps!r}")
    d = _c.flags(terminated, "terminated", m.shape)
    return np.where(d, 0.0, np.power(gamma, m.astype(np.float64)))     # gamma^m (1 - d)


def target_distribution(rewards, n_steps, terminated, next_probs, gamma, v_min, v_max):
    r"""Y_i = Phi(R_i + gamma^{m_i} (1 - d_i) z) under the target critic's p'_j(s'_i, mu'(s'_i))
    (Algorithm 1, line 6), a plain array (M, n) of ``next_probs``'s dtype, held constant.

    ``rewards`` R_i (M,), the discounted sums of m_i rewards; ``n_steps`` m_i (M,) ints;
    ``terminated`` d_i (M,); ``next_probs`` (M, n) plain array, the target critic's
    probabilities at the next state and the target actor's action.
    """
    where = "d4pg.target_distribution"
    next_probs = np.asarray(next_probs)
    if next_probs.ndim != 2:
        raise ValueError(f"{where}: next_probs must have shape (M, n_atoms), got "
                         f"{next_probs.shape}")
    rewards = _c.held_constant(rewards, "rewards", where, (next_probs.shape[0],), np.float64)
    discounts = bootstrap_discounts(n_steps, terminated, gamma)
    return categorical_projection(next_probs, rewards, discounts, v_min, v_max)   # Phi(...)


def cross_entropy(logits, target_probs):
    r"""H(Y_i, Z_w(s_i, a_i)) = -sum_j Y_ij log softmax(logits_i)_j per row: a Tensor (M,).

    ``logits`` the critic's Tensor (M, n); ``target_probs`` Y, a plain array (M, n)
    held constant (:func:`target_distribution`).
    """
    where = "d4pg.cross_entropy"
    logits = _c.differentiable(logits, "logits", where)
    if logits.ndim != 2:
        raise ValueError(f"{where}: logits must have shape (M, n_atoms), got {logits.shape}")
    target = _c.held_constant(target_probs, "target_probs", where, logits.shape, logits.dtype)
    return -ops.sum(ops.log_softmax(logits, axis=-1) * target, axis=-1)   # -sum_j Y_j log p_j


def critic_loss(cross_entropies, weights):
    r"""L(w) = (1/M) sum_i w_i H(Y_i, Z_w(s_i, a_i)) (the critic update of Algorithm 1,
    minimised): ``cross_entropies`` the Tensor of :func:`cross_entropy`, ``weights`` w_i (M,)
    the importance weights, held constant (all ones for uniform replay)."""
    where = "d4pg.critic_loss"
    ce = _c.differentiable(cross_entropies, "cross_entropies", where)
    if ce.ndim != 1:
        raise ValueError(f"{where}: cross_entropies must have shape (M,), got {ce.shape}")
    w = _c.held_constant(weights, "weights", where, ce.shape, ce.dtype)
    return ops.mean(ce * w)                                  # (1/M) sum_i w_i H_i


def q_values(logits, atoms):
    r"""Q_w(s, a) = E[Z_w(s, a)] = sum_j softmax(logits)_j z_j per row: a Tensor (M,)."""
    where = "d4pg.q_values"
    logits = _c.differentiable(logits, "logits", where)
    if logits.ndim != 2:
        raise ValueError(f"{where}: logits must have shape (M, n_atoms), got {logits.shape}")
    z = _c.held_constant(atoms, "atoms", where, (logits.shape[1],), logits.dtype)
    return ops.sum(ops.softmax(logits, axis=-1) * z, axis=-1)           # sum_j p_j z_j


def actor_objective(logits_of_mu, atoms):
    r"""J(theta) = (1/M) sum_i E[Z_w(s_i, mu_theta(s_i))] (the policy update, maximised).

    ``logits_of_mu`` the critic's logits at the actor's own action, on the tape through
    the actor (the critic's parameters held constant); its gradient is the sampled DPG
    through Q_w = E[Z_w].
    """
    return deterministic_actor_objective(q_values(logits_of_mu, atoms), "d4pg.actor_objective")
