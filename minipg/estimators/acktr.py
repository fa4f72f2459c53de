r"""ACKTR: the losses, the sampled log-likelihoods whose curvature K-FAC uses, the step size.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "ACKTR"
(ACKTR = actor-critic with a Kronecker-factored trust region; the document
gives no formulas).  Paper: Y. Wu, E. Mansimov, S. Liao, R. Grosse, J. Ba,
"Scalable trust-region method for deep reinforcement learning using
Kronecker-factored approximation", NeurIPS 2017, section 3; K-FAC:
J. Martens and R. Grosse, ICML 2015.  Formulas: verification/FORMULAS.md
"TRPO, K-FAC, ACKTR/ACKTR".

* The actor: the A2C policy loss :math:`-\mathbb{E}[\hat A \log\pi] - c_H
  \mathbb{E}[H]` (:func:`actor_loss`), its natural gradient by K-FAC with the
  Fisher of the POLICY ITSELF: the curvature comes from
  :func:`sampled_policy_log_likelihood`, :math:`\log\pi(\tilde a|s)` with
  :math:`\tilde a \sim \pi(\cdot|s)` drawn afresh (Wu et al. section 3.1;
  the taken actions would give the empirical Fisher, a different matrix).
* The critic: :math:`\frac12\mathbb{E}[(V - R)^2]` (:func:`critic_loss`), the
  negative log-likelihood (up to a constant) of a Gaussian output
  :math:`N(V, 1)`, so its Fisher is the Gauss-Newton matrix
  :math:`\mathbb{E}[J^\top J]`; K-FAC gets it from
  :func:`critic_fisher_log_likelihood`, the log-likelihood of targets
  :math:`\tilde y = V + \epsilon` sampled around V (Wu et al. section 3.1).
* The step: :math:`\eta = \min(\eta_{max}, \sqrt{2\delta / (\Delta\theta^\top
  \hat F \Delta\theta)})` with :math:`\hat F` the K-FAC approximation (Wu et
  al. section 3.2): :func:`step_size`, which is TRPO's rule
  (:func:`minipg.estimators.terms.trust_region_step_size`) capped at
  :math:`\eta_{max}`.
"""

from __future__ import annotations

from minipg.autodiff import ops

from . import checks as _c
from .terms import entropy_bonus, policy_gradient_objective, trust_region_step_size

__all__ = ["actor_loss", "critic_loss", "sampled_policy_log_likelihood",
           "critic_fisher_log_likelihood", "step_size", "policy_gradient_objective",
           "entropy_bonus"]


def actor_loss(log_prob, advantages, entropy, entropy_coef):
    r"""The actor's loss (minimised) and float diagnostics:
    :math:`L_\pi = -\mathbb{E}[\hat A_t\log\pi_\theta(a_t|s_t)] - c_H\,\mathbb{E}[H(\pi_\theta(\cdot|s_t))]`
    (A2C's policy terms, Mnih et al. 2016 sec. 4).

    ``log_prob`` Tensor (N,) of the taken actions; ``advantages`` plain array (N,),
    held constant; ``entropy`` Tensor (N,) (or a plain array when ``entropy_coef`` is
    0); ``entropy_coef`` >= 0.
    """
    where = "acktr.actor_loss"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    entropy = _c.differentiable(entropy, "entropy", where, log_prob.shape)
    entropy_coef = _c.coefficient(entropy_coef, "entropy_coef", where)
    policy_loss = -policy_gradient_objective(log_prob, advantages)     # -E[A log pi]
    mean_entropy = entropy_bonus(entropy)                               # E[H]
    loss = policy_loss - entropy_coef * mean_entropy
    return loss, {"policy_loss": float(policy_loss.data), "entropy": float(mean_entropy.data)}


def critic_loss(values, returns):
    r""":math:`L_V = \frac12\mathbb{E}[(V_w(s_t) - R_t)^2]` (minimised): the negative
    log-likelihood of :math:`R_t` under :math:`N(V_w(s_t), 1)` up to a constant, so that
    the Fisher of that model, the Gauss-Newton matrix, is its curvature (Wu et al.
    section 3.1).  ``values`` Tensor (N,); ``returns`` plain array (N,), held constant."""
    where = "acktr.critic_loss"
    values = _c.differentiable(values, "values", where)
    returns = _c.held_constant(returns, "returns", where, values.shape, values.dtype)
    return 0.5 * ops.mean(ops.square(values - returns))                # 1/2 E[(V - R)^2]


def sampled_policy_log_likelihood(dist, sampled_actions):
    r""":math:`\log\pi_\theta(\tilde a_i|s_i)` per sample, :math:`\tilde a_i \sim
    \pi_\theta(\cdot|s_i)` drawn by the caller from ``dist`` itself (randomness enters as
    an argument): K-FAC's G from these is the policy's Fisher, E over s and
    :math:`\tilde a` of the score's outer product (Wu et al. section 3.1).  A Tensor
    of the batch shape."""
    return dist.log_prob(sampled_actions)


def critic_fisher_log_likelihood(values, noise):
    r"""Per sample :math:`\log N(\tilde y_i; V_i, 1) + \text{const} = -\frac12(\tilde y_i -
    V_i)^2` with :math:`\tilde y_i = V_i + \epsilon_i` (V held at its value),
    :math:`\epsilon_i \sim N(0, 1)` given as ``noise``: its gradient in V is
    :math:`\epsilon_i`, so :math:`\mathbb{E}[g g^\top]` over the noise is the
    Gauss-Newton matrix of the unit-variance Gaussian critic (Wu et al. section 3.1).
    ``values`` Tensor (N,); ``noise`` plain array (N,)."""
    where = "acktr.critic_fisher_log_likelihood"
    values = _c.differentiable(values, "values", where)
    noise = _c.held_constant(noise, "noise", where, values.shape, values.dtype)
    targets = values.data + noise                                      # y~ = V + eps
    return -0.5 * ops.square(values - targets)                         # log N(y~; V, 1) + c


def step_size(quadratic, max_kl, eta_max):
    r""":math:`\eta = \min(\eta_{max}, \sqrt{2\delta / (\Delta\theta^\top \hat F
    \Delta\theta)})` (Wu et al. section 3.2) with ``quadratic`` =
    :math:`\Delta\theta^\top\hat F\Delta\theta` from the K-FAC approximation and
    ``max_kl`` = :math:`\delta`; so :math:`\frac12\eta^2\Delta\theta^\top\hat
    F\Delta\theta \le \delta`."""
    return trust_region_step_size(quadratic, max_kl, eta_max, where="acktr.step_size")
