r"""Advantage actor-critic losses (A3C / A2C).

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "A3C" and
"A2C".  Paper: V. Mnih, A. P. Badia, M. Mirza, A. Graves, T. Lillicrap,
T. Harley, D. Silver, K. Kavukcuoglu, "Asynchronous Methods for Deep
Reinforcement Learning", ICML 2016, section 4 ("Asynchronous advantage
actor-critic") and its entropy regularisation.

A2C is the synchronous form of A3C: one update from a batch of
``(s_t, a_t, A_t, R_t)`` gathered by all actors.  The update of Weng's A3C
outline, step 6.2, averaged over the batch, is the gradient of

.. math::

    L(\theta, w) = -\mathbb{E}[\hat A_t \log\pi_\theta(a_t|s_t)]
                   + c_v\, \mathbb{E}[(V_w(s_t) - R_t)^2]
                   - c_H\, \mathbb{E}[H(\pi_\theta(\cdot|s_t))]

(the policy objective, the value loss :math:`J_v(w)`, the entropy bonus),
with the advantages :math:`\hat A_t = R_t - V_{w}(s_t)` held constant (no
gradient flows from the policy term into the critic), the value loss
:math:`J_v(w) = (G_t - V_w(s))^2` of Weng's A3C section *without* a factor
1/2 (its gradient is the ``2 (R - V) \nabla(R - V)`` of the outline), and the
entropy term of Mnih et al. (their :math:`\beta \nabla_{\theta'} H`).

Conventions shared by every function here:

* ``*_objective`` is maximised, ``*_loss`` minimised;
* inputs that carry gradients (``log_prob``, ``values``, ``entropy``) are
  Tensors (a plain array is accepted and treated as a constant);
  held-constant targets (``advantages``, ``returns``) must be plain arrays;
  a Tensor there raises TypeError, because it would let the policy loss
  push gradients into the critic;
* all per-sample inputs must have one and the same shape (no broadcasting:
  a (N,) against (N, 1) mix-up would silently build an N x N loss), be
  non-empty, and the constants finite; batch means are over all entries.
"""

from __future__ import annotations

from . import checks as _c
from .terms import entropy_bonus, policy_gradient_objective, value_loss

__all__ = ["policy_gradient_objective", "value_loss", "entropy_bonus", "a2c_loss"]


# ------------------------------------------------------------------ the loss
# policy_gradient_objective, value_loss and entropy_bonus are written once in
# minipg.estimators.terms (PPO, REINFORCE and the actor-critic use them too).

def a2c_loss(log_prob, values, entropy, advantages, returns, value_coef, entropy_coef):
    r"""Combined A2C loss (minimised) and float diagnostics.

    .. math::

        L = -\mathbb{E}[\hat A_t \log\pi_\theta(a_t|s_t)]
            + c_v\, \mathbb{E}[(V_w(s_t) - R_t)^2]
            - c_H\, \mathbb{E}[H(\pi_\theta(\cdot|s_t))]

    (Mnih et al. 2016, sec. 4; Weng, "A3C"/"A2C").  With separate actor and
    critic parameters the terms do not interact and ``value_coef`` only
    rescales the critic's step; with a shared trunk it weighs the two.

    Parameters
    ----------
    log_prob : Tensor (N,) or any shape -- :math:`\log\pi_\theta(a_t|s_t)`.
    values : Tensor, same shape -- :math:`V_w(s_t)`.
    entropy : Tensor, same shape -- :math:`H(\pi_\theta(\cdot|s_t))`.
    advantages : plain array, same shape -- held constant (e.g. GAE or
        ``returns - values.data``).
    returns : plain array, same shape -- value targets, held constant.
    value_coef : float >= 0 -- :math:`c_v` (baselines' A2C: 0.5).
    entropy_coef : float >= 0 -- :math:`c_H` (:math:`\beta`; Mnih et al.: 0.01).

    Returns
    -------
    (loss, diagnostics) -- ``loss`` a scalar Tensor to minimise;
    ``diagnostics`` a dict of Python floats: ``policy_loss`` (the negated
    policy objective), ``value_loss``, ``entropy`` (batch mean).
    """
    where = "a2c_loss"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    values = _c.differentiable(values, "values", where, log_prob.shape)
    entropy = _c.differentiable(entropy, "entropy", where, log_prob.shape)
    value_coef = _c.coefficient(value_coef, "value_coef", where)
    entropy_coef = _c.coefficient(entropy_coef, "entropy_coef", where)

    policy_loss = -policy_gradient_objective(log_prob, advantages)
    critic_loss = value_loss(values, returns)
    mean_entropy = entropy_bonus(entropy)
    loss = policy_loss + value_coef * critic_loss - entropy_coef * mean_entropy
    diagnostics = {
        "policy_loss": float(policy_loss.data),
        "value_loss": float(critic_loss.data),
        "entropy": float(mean_entropy.data),
    }
    return loss, diagnostics
