r"""TD3: target policy smoothing, the clipped double-Q target, twin critics.

References: L. Weng, "Policy Gradient Algorithms" (2018), section "TD3";
S. Fujimoto, H. van Hoof, D. Meger, "Addressing Function Approximation Error
in Actor-Critic Methods", ICML 2018 (arXiv:1802.09477), Algorithm 1,
section 4.2 "Clipped Double Q-Learning for Actor-Critic" and section 5.3
"Target Policy Smoothing Regularization".

For a minibatch :math:`(s, a, r, s', d)` (Algorithm 1):

.. math::

    \tilde a &= \operatorname{clip}\big(\mu_{\phi'}(s') + \operatorname{clip}(\epsilon, -c, c),
        \text{low}, \text{high}\big), \quad \epsilon \sim \mathcal N(0, \tilde\sigma^2) \\
    y &= r + \gamma (1 - d) \min_{i=1,2} Q_{\theta'_i}(s', \tilde a) \\
    L(\theta_i) &= \tfrac1N \textstyle\sum (y - Q_{\theta_i}(s, a))^2, \quad i = 1, 2 \\
    \nabla_\phi J &= \tfrac1N \textstyle\sum \nabla_a Q_{\theta_1}(s, a)|_{a=\mu_\phi(s)}
        \nabla_\phi \mu_\phi(s)  \quad\text{(every d-th step)}

Notes on the conventions:

* Algorithm 1 of the paper (and the document) writes :math:`\pi_{\phi'}(s)`
  in the smoothing line; the target actor is evaluated at the NEXT state
  :math:`s'`, as in the authors' code.
* The outer clip to the action box is not in Algorithm 1 but is in the
  authors' code (``clamp(-max_action, max_action)``): the target critic is
  never queried outside the actions the environment accepts.
* Noise scale.  The paper uses :math:`\tilde\sigma = 0.2`, :math:`c = 0.5`
  for MuJoCo actions in :math:`[-1, 1]`; the authors' code scales both by the
  action bound (``policy_noise * max_action``, ``noise_clip * max_action``).
  Here ``noise`` and ``noise_clip`` are in ACTION UNITS: the caller draws
  ``noise = sigma_tilde * rng.standard_normal(shape)`` with ``sigma_tilde =
  0.2 * max_action`` and passes ``noise_clip = 0.5 * max_action`` (for an
  asymmetric box, use half its width in place of ``max_action``).
* ``d`` is termination only; a time-limit truncation bootstraps.

Pure functions: the smoothing noise is an argument (drawn by the caller,
per sample), targets are plain arrays, critics' outputs are Tensors.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import ops

from . import checks as _c
from .terms import deterministic_actor_objective, one_step_target

__all__ = ["smoothed_target_actions", "clipped_double_q_target", "twin_critic_loss",
           "actor_objective"]


def smoothed_target_actions(mu_next, noise, noise_clip, low, high):
    r"""Target policy smoothing :math:`\tilde a = \operatorname{clip}(\mu'(s') +
    \operatorname{clip}(\epsilon, -c, c), \text{low}, \text{high})`.

    Parameters
    ----------
    mu_next : array (N, d), the target actor's action :math:`\mu_{\phi'}(s')`
        (a plain array, e.g. a Tensor's ``.data``: no gradient flows through
        the target).
    noise : array (N, d), :math:`\epsilon \sim \mathcal N(0, \tilde\sigma^2)`
        drawn by the caller, one draw per sample and action dimension, in
        action units (see the module docstring for the scale).
    noise_clip : c >= 0 (action units), scalar or broadcasting to (d,).
    low, high : the action box, scalars or arrays broadcasting to (d,),
        low < high.

    Returns a plain array of the shape of ``mu_next``.  With ``noise = 0``
    it is :math:`\operatorname{clip}(\mu'(s'), \text{low}, \text{high})`.
    """
    owner = "td3.smoothed_target_actions"
    dtype = _c.target_dtype(mu_next, noise)                      # float32 stays float32
    mu_next = _c.held_constant(mu_next, "mu_next", owner, np.shape(mu_next), dtype)
    noise = _c.held_constant(noise, "noise", owner, mu_next.shape, dtype)
    params = {}
    for name, v in (("noise_clip", noise_clip), ("low", low), ("high", high)):
        v = np.asarray(v)
        if v.dtype.kind not in "fiu":
            raise TypeError(f"{owner}: {name} must be real numbers, got dtype {v.dtype}")
        try:
            ok = np.broadcast_shapes(v.shape, mu_next.shape) == mu_next.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{owner}: {name} of shape {v.shape} must broadcast to mu_next's "
                             f"shape {mu_next.shape} (a scalar or one value per action "
                             f"dimension)")
        params[name] = v.astype(np.float64)
    c, low, high = params["noise_clip"], params["low"], params["high"]
    if not np.all(np.isfinite(c) & (c >= 0)):
        raise ValueError(f"{owner}: noise_clip must be finite and >= 0, got {noise_clip!r}")
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise ValueError(f"{owner}: need finite low < high elementwise, got low={low}, "
                         f"high={high}")
    clipped_noise = np.clip(noise, -c, c)                         # clip(eps, -c, c)
    smoothed = np.clip(mu_next + clipped_noise, low, high)        # clip(mu' + eps, low, high)
    return smoothed.astype(dtype, copy=False)


def clipped_double_q_target(rewards, terminated, q1_next, q2_next, gamma):
    r"""Clipped double-Q target :math:`y = r + \gamma (1 - d) \min_i Q_{\theta'_i}(s', \tilde a)`.

    Section 4.2 (eq. 10) with the smoothed action of Algorithm 1.
    ``q1_next``, ``q2_next`` are the two target critics at
    :math:`(s', \tilde a)` (plain arrays), of the
    shape of ``rewards``; ``terminated`` bool (or 0/1); gamma in [0, 1].
    Returns a plain array.  Since :math:`\min \le` either, the target is at
    most either single-critic DDPG target (the point: an underestimate does
    not propagate through the max of the actor the way an overestimate does).
    """
    owner = "td3.clipped_double_q_target"
    dtype = _c.target_dtype(q1_next, q2_next)
    q1_next = _c.held_constant(q1_next, "q1_next", owner, np.shape(q1_next), dtype)
    q2_next = _c.held_constant(q2_next, "q2_next", owner, q1_next.shape, dtype)
    q_min_next = np.minimum(q1_next, q2_next)                      # min_i Q'_i(s', a~)
    return one_step_target(rewards, terminated, q_min_next, gamma, "q1_next", owner)


def twin_critic_loss(q1, q2, y):
    r"""Both critics' losses, :math:`\frac1N\sum(y - Q_1)^2 + \frac1N\sum(y - Q_2)^2`; minimised.

    Algorithm 1 minimises each critic's own mean squared error against the
    same target; the critics have disjoint parameters, so the gradient of
    the sum in :math:`\theta_i` is the gradient of the i-th term (one
    optimizer can step both; the authors' code does the same).  ``q1``,
    ``q2`` Tensors :math:`Q_{\theta_i}(s, a)`, ``y`` the held-constant target
    of :func:`clipped_double_q_target`, all of one shape.
    """
    owner = "td3.twin_critic_loss"
    q1 = _c.differentiable(q1, "q1", owner)
    q2 = _c.differentiable(q2, "q2", owner, q1.shape)
    y = _c.held_constant(y, "y", owner, q1.shape, q1.dtype)
    return ops.mean(ops.square(q1 - y)) + ops.mean(ops.square(q2 - y))


def actor_objective(q1_of_mu):
    r"""Actor objective :math:`J(\phi) = \frac1N\sum Q_{\theta_1}(s, \mu_\phi(s))`; maximised.

    The FIRST critic only (Algorithm 1), not the minimum of the two; the
    same DPG estimator as :func:`minipg.estimators.ddpg.actor_objective`.
    ``q1_of_mu`` is the Tensor :math:`Q_{\theta_1}(s, \mu_\phi(s))`.  TD3
    applies it every ``policy_delay``-th critic step (the training loop's
    business, not this function's).
    """
    _c.differentiable(q1_of_mu, "q1_of_mu", "td3.actor_objective")
    return deterministic_actor_objective(q1_of_mu, "td3.actor_objective")
