r"""DDPG: the critic's TD target and loss, and the deterministic actor objective.

References: L. Weng, "Policy Gradient Algorithms" (2018), sections "DPG" and
"DDPG"; T. P. Lillicrap et al., "Continuous control with deep reinforcement
learning", ICLR 2016 (arXiv:1509.02971), Algorithm 1; D. Silver et al.,
"Deterministic Policy Gradient Algorithms", ICML 2014 (the DPG theorem).

Algorithm 1, for a minibatch of N transitions :math:`(s_i, a_i, r_i, s'_i, d_i)`:

.. math::

    y_i &= r_i + \gamma\,(1 - d_i)\,Q'(s'_i, \mu'(s'_i))            \\
    L(\theta^Q) &= \tfrac1N \textstyle\sum_i (y_i - Q(s_i, a_i))^2   \\
    \nabla_{\theta^\mu} J &\approx \tfrac1N \textstyle\sum_i
        \nabla_a Q(s_i, a)\big|_{a = \mu(s_i)} \nabla_{\theta^\mu}\mu(s_i)

The paper's target has no :math:`(1 - d_i)`; it is the standard handling of
terminal states (the value of a terminal state is 0), and ``d_i`` is
*termination* only: a time-limit truncation bootstraps like any other step
(see ``minipg.buffers.replay``).

The actor's gradient is the gradient of :func:`actor_objective`,
:math:`\frac1N\sum_i Q(s_i, \mu_\theta(s_i))`, with the critic's parameters
held fixed (only the actor's optimizer steps on it): by the chain rule
:math:`\nabla_\theta Q(s, \mu_\theta(s)) = \nabla_a Q(s, a)|_{a=\mu(s)}
\nabla_\theta \mu_\theta(s)`, exactly the line above.

Gradient-carrying inputs (``q``, ``q_of_mu``) are Tensors; targets are held
constant and enter as plain finite arrays (a Tensor there is refused: pass
``.data``).  Shapes must match exactly (no broadcasting: ``(N,)`` against
``(N, 1)`` would silently make an ``(N, N)`` loss).  The input checks are
:mod:`minipg.estimators.checks`; the one-step target and the actor objective
are written once in :mod:`minipg.estimators.terms` and shared with ``td3``,
``sac``, ``dpg`` and ``actor_critic``.
"""

from __future__ import annotations

from .terms import critic_squared_error, deterministic_actor_objective, one_step_target

__all__ = ["critic_target", "critic_loss", "actor_objective"]


# ------------------------------------------------------------------ estimators

def critic_target(rewards, terminated, q_next_target, gamma):
    r"""TD target :math:`y = r + \gamma (1 - d)\,Q'(s', \mu'(s'))` (Algorithm 1, "Set y_i").

    Parameters
    ----------
    rewards : array (N,) (any shape; all inputs the same shape)
    terminated : bool array (or 0/1), True where s' is terminal
    q_next_target : array, :math:`Q'(s', \mu'(s'))` from the target critic
        at the target actor's action (plain array: pass a Tensor's ``.data``)
    gamma : discount in [0, 1]

    Returns a plain array: the target is held constant in the critic loss.
    """
    return one_step_target(rewards, terminated, q_next_target, gamma, "q_next_target",
                           "ddpg.critic_target")


def critic_loss(q, y):
    r"""Critic loss :math:`L = \frac1N \sum_i (y_i - Q(s_i, a_i))^2` (Algorithm 1); minimised.

    ``q`` is the Tensor :math:`Q(s_i, a_i)` of the critic being trained,
    ``y`` the held-constant target of :func:`critic_target` (same shape).
    Gradient: :math:`\nabla L = -\frac2N \sum_i (y_i - Q_i)\nabla Q_i`.
    """
    return critic_squared_error(q, y, "ddpg.critic_loss")       # (1/N) sum (y - Q)^2


def actor_objective(q_of_mu):
    r"""Actor objective :math:`J = \frac1N \sum_i Q(s_i, \mu_\theta(s_i))`; maximised.

    ``q_of_mu`` is the Tensor :math:`Q(s_i, \mu_\theta(s_i))`: the critic
    evaluated at the actor's own (noise-free) action, on the tape through
    the actor.  Its gradient in the actor's parameters is the sampled DPG
    :math:`\frac1N\sum_i \nabla_a Q(s_i, a)|_{a=\mu(s_i)} \nabla_\theta\mu(s_i)`
    (Algorithm 1); a batch MEAN, so the step size does not scale with N.
    Minimise ``-actor_objective(...)`` with the actor's optimizer only.
    """
    return deterministic_actor_objective(q_of_mu, "ddpg.actor_objective")  # mean Q(s, mu(s))
