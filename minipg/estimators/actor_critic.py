r"""The action-value actor-critic step, as pure functions.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section
"Actor-Critic" (the "simple action-value actor-critic algorithm", steps
2.1-2.5).  Book: R. S. Sutton and A. G. Barto, *Reinforcement Learning: An
Introduction*, 2nd ed. (2018), sec. 13.5 ("Actor-Critic Methods", the box
"One-step Actor-Critic (episodic)").

Weng's step, for a transition :math:`(s, a, r, s')` and the next action
:math:`a' \sim \pi_\theta(\cdot|s')`:

.. math::

    \theta &\leftarrow \theta + \alpha_\theta\, Q_w(s, a)\, \nabla_\theta \ln\pi_\theta(a|s)
            && \text{(step 2.3)} \\
    \delta_t &= r_t + \gamma\, Q_w(s', a') - Q_w(s, a)
            && \text{(step 2.4)} \\
    w &\leftarrow w + \alpha_w\, \delta_t\, \nabla_w Q_w(s, a).

Sutton & Barto's one-step actor-critic uses a state-value critic and the TD
error as the actor's signal, with a discount factor :math:`I`:

.. math::

    \delta &= R + \gamma \hat v(S', w) - \hat v(S, w), \\
    w &\leftarrow w + \alpha^w \delta \nabla \hat v(S, w), \\
    \theta &\leftarrow \theta + \alpha^\theta I \delta \nabla \ln\pi(A|S, \theta), \\
    I &\leftarrow \gamma I \quad (I = 1 \text{ at the episode's start, so } I_t = \gamma^t).

Which is which here:

* ``actor_objective(log_prob, q_values)`` -- Weng's step 2.3, no :math:`I`
  (the common form; like REINFORCE without :math:`\gamma^t` it weights
  late states too much when :math:`\gamma < 1`, see
  :mod:`minipg.estimators.reinforce`);
* ``actor_objective(log_prob, td_errors, discount_I=gamma**t)`` -- Sutton &
  Barto's actor, with :math:`I_t = \gamma^t`
  (:func:`minipg.estimators.reinforce.episode_discounts`).  Passing
  :math:`\delta` instead of :math:`Q_w` (with a state-value critic) is the
  advantage form: :math:`\mathbb{E}[\delta | s, a] = A^\pi(s, a)` when the
  critic is exact, so the mean is unchanged and the variance smaller.  The
  function does not care which of the two signals it gets.
* the critic has no :math:`I` in either (the 2nd edition's box).

The critic step :math:`w \leftarrow w + \alpha_w \delta \nabla_w Q_w(s, a)`
is a *semi-gradient*: the target :math:`r + \gamma Q_w(s', a')` is held
constant.  Two equivalent losses give it as one SGD step of size
:math:`\alpha_w` (both minimised, both averaged over the batch):

* :func:`critic_loss` -- :math:`\tfrac12 (y - Q_w(s,a))^2` with the target
  :math:`y` a plain array: gradient :math:`-(y - Q_w)\nabla Q_w = -\delta\nabla Q_w`;
* :func:`critic_semi_gradient_loss` -- :math:`-\delta\, Q_w(s, a)` with
  :math:`\delta` a plain array: the same gradient.

Episode ends: ``terminated`` cuts the bootstrap (:math:`Q(s', a') = 0` at a
terminal state); a truncation (time limit) does not: pass the value at the
true final observation as ``q_next`` and ``terminated=False``.

Shapes: every per-sample input has one and the same shape (any; no
broadcasting); batch reductions are means over all entries.
"""

from __future__ import annotations

import numpy as np

from minipg.autodiff import ops

from . import checks as _c
from .terms import policy_gradient_objective, td_error, td_target

__all__ = ["td_target", "td_error", "actor_objective", "critic_loss",
           "critic_semi_gradient_loss"]


# td_target and td_error are written once in minipg.estimators.terms (the Off-PAC
# and DPG critics use them too).


def actor_objective(log_prob, q_values, discount_I=None):
    r"""Actor surrogate (maximised): batch mean of :math:`I_t\, \psi_t \log\pi_\theta(a_t|s_t)`.

    Gradient: :math:`\frac1N \sum_t I_t\, \psi_t\, \nabla_\theta \log\pi_\theta(a_t|s_t)`,
    i.e. Weng's step 2.3 (:math:`\psi = Q_w(s, a)`, ``discount_I=None``) or
    Sutton & Barto's one-step actor (:math:`\psi = \delta`,
    :math:`I_t = \gamma^t`); see the module docstring.

    Parameters
    ----------
    log_prob : Tensor, any shape -- :math:`\log\pi_\theta(a_t|s_t)`.
    q_values : plain array, same shape -- the critic's signal
        :math:`\psi_t`: :math:`Q_w(s_t, a_t)` or the TD error
        :math:`\delta_t`; held constant (a Tensor is refused: the actor's
        loss must not train the critic).
    discount_I : plain array of the same shape, or None -- :math:`I_t = \gamma^t`
        (``episode_discounts``); None means no :math:`I` (Weng's form).

    Returns
    -------
    Tensor, scalar (maximise it).
    """
    where = "actor_objective"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    signal = _c.held_constant(q_values, "q_values", where, log_prob.shape, np.float64)
    if discount_I is not None:
        signal = _c.held_constant(discount_I, "discount_I", where, log_prob.shape,
                                np.float64) * signal              # I_t psi_t
    return policy_gradient_objective(log_prob, signal)            # mean(I psi log pi)


def critic_loss(q, q_target):
    r"""Semi-gradient critic loss :math:`\frac1N\sum_t \tfrac12 (y_t - Q_w(s_t, a_t))^2`, minimised.

    With :math:`y` held constant its gradient is
    :math:`-\frac1N\sum_t \delta_t \nabla_w Q_w(s_t, a_t)`, so one SGD step
    of size :math:`\alpha_w` on one sample is Weng's
    :math:`w \leftarrow w + \alpha_w \delta_t \nabla_w Q_w(s, a)`.

    Parameters
    ----------
    q : Tensor, any shape -- :math:`Q_w(s_t, a_t)` (or :math:`\hat v(s_t)`).
    q_target : plain array, same shape -- :math:`y_t` from :func:`td_target`.

    Returns
    -------
    Tensor, scalar (minimise it).
    """
    where = "critic_loss"
    q = _c.differentiable(q, "q", where)
    q_target = _c.held_constant(q_target, "q_target", where, q.shape, q.dtype)
    return 0.5 * ops.mean(ops.square(q_target - q))               # 1/2 (y - Q)^2


def critic_semi_gradient_loss(q, td_errors):
    r"""The same critic step written as :math:`-\frac1N\sum_t \delta_t\, Q_w(s_t, a_t)` (minimised).

    With :math:`\delta` held constant, its gradient
    :math:`-\frac1N\sum_t \delta_t \nabla_w Q_w(s_t, a_t)` equals that of
    :func:`critic_loss` when ``td_errors = q_target - q.data``.  Its value
    is not a squared error (it can be negative); use it for the step, not to
    monitor the fit.

    Parameters
    ----------
    q : Tensor, any shape -- :math:`Q_w(s_t, a_t)`.
    td_errors : plain array, same shape -- :math:`\delta_t`, held constant.

    Returns
    -------
    Tensor, scalar (minimise it).
    """
    where = "critic_semi_gradient_loss"
    q = _c.differentiable(q, "q", where)
    td_errors = _c.held_constant(td_errors, "td_errors", where, q.shape, q.dtype)
    return -ops.mean(q * td_errors)                               # -delta Q_w
