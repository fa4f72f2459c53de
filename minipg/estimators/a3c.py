r"""A3C: the gradients one actor-learner accumulates over one segment.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "A3C" (its
algorithm outline, steps 6.1-6.2).  Paper: V. Mnih, A. P. Badia, M. Mirza,
A. Graves, T. Lillicrap, T. Harley, D. Silver, K. Kavukcuoglu, "Asynchronous
Methods for Deep Reinforcement Learning", ICML 2016, Algorithm S3 and the
entropy regularisation of section 4.

A worker rolls out a segment :math:`s_{t_{start}}, \dots, s_{t-1}` (until a
terminal state or :math:`t_{max}` steps), computes the returns
:math:`R_i = r_i + \gamma R_{i+1}` backwards from :math:`R = 0` (terminal)
or :math:`R = V_{w'}(s_t)` and *accumulates*, for :math:`i = t-1, \dots,
t_{start}`,

.. math::

    d\theta &\leftarrow d\theta + \nabla_{\theta'} \log\pi_{\theta'}(a_i|s_i)\,
              (R_i - V_{w'}(s_i)) + \beta\, \nabla_{\theta'} H(\pi_{\theta'}(\cdot|s_i)) \\
    dw &\leftarrow dw + 2 (R_i - V_{w'}(s_i))\, \nabla_{w'} (R_i - V_{w'}(s_i))

(the entropy term is Mnih et al.'s; :math:`\beta = 0` gives Weng's outline
exactly).  Both are gradients of one scalar, the *sum* over the segment

.. math::

    L(\theta', w') = -\sum_i \hat A_i \log\pi_{\theta'}(a_i|s_i)
                     + \sum_i (R_i - V_{w'}(s_i))^2
                     - \beta \sum_i H(\pi_{\theta'}(\cdot|s_i)),
    \qquad \hat A_i = R_i - V_{w'}(s_i) \text{ held constant},

with :math:`d\theta = -\nabla_{\theta'} L` (ascent) and :math:`dw =
\nabla_{w'} L` (descent).  It is the A2C loss of
:mod:`minipg.estimators.a2c` with sums in place of batch means and value
weight 1: written here from the same terms (:mod:`minipg.estimators.terms`),
the batch means times the segment length (verification/FORMULAS.md "Losses/A3C
segment").
"""

from __future__ import annotations

import numpy as np

from . import checks as _c
from .terms import entropy_bonus, policy_gradient_objective, value_loss

__all__ = ["segment_loss"]


def segment_loss(log_prob, values, entropy, advantages, returns, entropy_coef):
    r"""The loss whose gradient is one segment's accumulated (-d theta, d w).

    .. math::

        L = -\sum_i (R_i - V(s_i))\log\pi(a_i|s_i) + \sum_i (R_i - V(s_i))^2
            - \beta \sum_i H(\pi(\cdot|s_i))

    (Weng, "A3C", steps 6.2; Mnih et al. 2016, Algorithm S3 with the entropy
    bonus).  The advantages :math:`\hat A_i = R_i - V(s_i)` of the policy term are an
    input held constant (``returns - values.data``, computed by the caller as for
    :func:`minipg.estimators.a2c.a2c_loss`), so the policy term sends no gradient to
    the critic.

    Parameters
    ----------
    log_prob : Tensor (m,) -- :math:`\log\pi_{\theta'}(a_i|s_i)` over the segment.
    values : Tensor (m,) -- :math:`V_{w'}(s_i)`.
    entropy : Tensor or plain array (m,) -- :math:`H(\pi_{\theta'}(\cdot|s_i))`
        (a plain array when ``entropy_coef`` is 0: no gradient is needed).
    advantages : plain array (m,) -- :math:`R_i - V(s_i)`, held constant.
    returns : plain array (m,) -- :math:`R_i`, held constant.
    entropy_coef : float >= 0 -- :math:`\beta` (Mnih et al.: 0.01).

    Returns
    -------
    (loss, diagnostics) -- ``loss`` a scalar Tensor; ``diagnostics`` Python
    floats: ``policy_loss`` (:math:`-\sum_i \hat A_i \log\pi`), ``value_loss``
    (:math:`\sum_i (R_i - V_i)^2`), ``entropy`` (segment mean).
    """
    where = "segment_loss"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    values = _c.differentiable(values, "values", where, log_prob.shape)
    entropy = _c.differentiable(entropy, "entropy", where, log_prob.shape)
    entropy_coef = _c.coefficient(entropy_coef, "entropy_coef", where)
    returns = _c.held_constant(returns, "returns", where, log_prob.shape, log_prob.dtype)
    length = float(np.prod(log_prob.shape))

    policy_loss = -policy_gradient_objective(log_prob, advantages) * length  # -sum A log pi
    critic_loss = value_loss(values, returns) * length                 # sum (R - V)^2
    mean_entropy = entropy_bonus(entropy)
    loss = policy_loss + critic_loss - entropy_coef * (mean_entropy * length)   # step 6.2
    diagnostics = {"policy_loss": float(policy_loss.data),
                   "value_loss": float(critic_loss.data),
                   "entropy": float(mean_entropy.data)}
    return loss, diagnostics
