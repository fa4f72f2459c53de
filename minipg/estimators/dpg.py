r"""Deterministic policy gradient (DPG), its critics, and the compatible COPDAC-Q step.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "DPG".
Paper: D. Silver, G. Lever, N. Heess, T. Degris, D. Wierstra and
M. Riedmiller, "Deterministic Policy Gradient Algorithms", ICML 2014:
Theorem 1 (eq. 9), the on-policy deterministic actor-critic with a Sarsa
critic (sec. 4.1, eqs. 11-13), the off-policy one with a Q-learning critic
(OPDAC, sec. 4.2, eqs. 16-18), compatible function approximation (sec. 4.3,
Theorem 3) and COPDAC-Q (eqs. 19-22).

Deterministic policy gradient theorem (Weng; Silver et al. eq. 9):

.. math::

    \nabla_\theta J(\theta) = \mathbb{E}_{s \sim \rho^\mu}\big[
        \nabla_\theta \mu_\theta(s)\, \nabla_a Q^\mu(s, a)|_{a = \mu_\theta(s)} \big],

and off-policy (states from a behaviour policy :math:`\beta`, eq. 15) the
same expectation under :math:`\rho^\beta`, with no importance weight.

Jacobian convention.  Arrays here hold the Jacobian of the policy as
``grad_theta_mu[..., i, j]`` :math:`= \partial \mu_i / \partial \theta_j`,
shape ``(..., m, n)`` for ``m`` action dimensions and ``n`` policy
parameters.  Silver et al.'s :math:`\nabla_\theta \mu_\theta(s)` is its
transpose (``n x m``, "each column the gradient of one action dimension"),
so their :math:`\nabla_\theta \mu\, \nabla_a Q` is ``J^T grad_a_q`` here
and their :math:`\nabla_\theta \mu^\top w` is ``J @ w``.

Critic TD errors as Weng's "DPG" section writes them:

* on-policy (Sarsa, eq. 11): :math:`\delta_t = R_t + \gamma Q_w(s_{t+1}, a_{t+1}) - Q_w(s_t, a_t)`,
  :math:`a_{t+1}` the next action actually taken (:math:`\mu_\theta(s_{t+1})` when
  acting deterministically);
* off-policy (Q-learning, eq. 16):
  :math:`\delta_t = r_t + \gamma Q_w(s_{t+1}, \mu_\theta(s_{t+1})) - Q_w(s_t, a_t)`,
  the next action being the *target* policy's, whatever the behaviour did.

Both are :func:`minipg.estimators.actor_critic.td_error`; the two names say
which action the caller must evaluate ``q_next`` at.
"""

from __future__ import annotations

import numpy as np

from minipg.autodiff import Tensor, ops

from . import checks as _c
from .terms import deterministic_actor_objective, td_error

__all__ = ["dpg_actor_objective", "dpg_actor_gradient", "sarsa_td_error",
           "q_learning_td_error", "compatible_features", "compatible_q", "copdac_q_update"]


def dpg_actor_objective(q_of_mu):
    r"""DPG actor surrogate (maximised): the batch mean of :math:`Q(s, \mu_\theta(s))`.

    Build ``q_of_mu`` on the tape as ``critic(s, actor(s))`` with the critic's
    parameters held fixed (not stepped by this objective's optimizer):
    reverse mode then applies the chain rule, so the gradient with respect to
    :math:`\theta` is

    .. math::

        \frac1N \sum_i \nabla_\theta \mu_\theta(s_i)\,
        \nabla_a Q(s_i, a)|_{a = \mu_\theta(s_i)},

    the sample form of Silver et al. eq. 9 (Weng, "DPG"; on-policy actor
    step eq. 13, off-policy eq. 18).  The same function as DDPG's
    :func:`minipg.estimators.ddpg.actor_objective` (both are
    :func:`minipg.estimators.terms.deterministic_actor_objective`, written
    once), with the shape checked.

    Parameters
    ----------
    q_of_mu : Tensor, shape (N,) or (N, 1) -- :math:`Q(s_i, \mu_\theta(s_i))`.

    Returns
    -------
    Tensor, scalar (maximise it).
    """
    where = "dpg_actor_objective"
    if not isinstance(q_of_mu, Tensor):
        raise TypeError(f"{where}: q_of_mu must be a Tensor computed from the actor's output "
                        f"(otherwise no gradient reaches theta); got {type(q_of_mu).__name__}")
    q_of_mu = _c.differentiable(q_of_mu, "q_of_mu", where)
    if q_of_mu.ndim not in (1, 2) or (q_of_mu.ndim == 2 and q_of_mu.shape[1] != 1):
        raise ValueError(f"{where}: q_of_mu must have shape (N,) or (N, 1); got "
                         f"{q_of_mu.shape}")
    return deterministic_actor_objective(q_of_mu, where)          # E_s[Q(s, mu(s))]


def _jacobian(grad_theta_mu, where, batch_action_shape):
    J = _c.held_constant(grad_theta_mu, "grad_theta_mu", where, np.shape(grad_theta_mu),
                       np.float64)
    if J.ndim < 2 or J.shape[:-1] != batch_action_shape:
        raise ValueError(f"{where}: grad_theta_mu must have shape {batch_action_shape} + (n,) "
                         f"(d mu_i / d theta_j for each sample and action dimension i); got "
                         f"{J.shape}")
    return J


def dpg_actor_gradient(grad_a_q, grad_theta_mu):
    r"""The DPG estimate written out, :math:`\frac1N \sum_i J_i^\top \nabla_a Q(s_i, \mu(s_i))`.

    For when :math:`\nabla_a Q` is known exactly (an LQR test bed, a
    compatible critic) and no tape is needed.  Silver et al. eq. 9.

    Parameters
    ----------
    grad_a_q : array, shape (N, m) -- :math:`\nabla_a Q(s_i, a)` at :math:`a = \mu(s_i)`.
    grad_theta_mu : array, shape (N, m, n) -- :math:`\partial\mu_k(s_i)/\partial\theta_j`.

    Returns
    -------
    float64 array, shape (n,) -- the ascent direction for :math:`\theta`.
    """
    where = "dpg_actor_gradient"
    grad_a_q = _c.held_constant(grad_a_q, "grad_a_q", where, np.shape(grad_a_q), np.float64)
    if grad_a_q.ndim != 2:
        raise ValueError(f"{where}: grad_a_q must have shape (N, m); got {grad_a_q.shape}")
    J = _jacobian(grad_theta_mu, where, grad_a_q.shape)
    return np.einsum("bk,bkj->j", grad_a_q, J) / grad_a_q.shape[0]   # mean J^T grad_a Q


def sarsa_td_error(reward, q_next, q, gamma, terminated):
    r"""On-policy (Sarsa) critic TD error, Weng "DPG" / Silver et al. eq. 11.

    :math:`\delta_t = R_t + \gamma Q_w(s_{t+1}, a_{t+1}) - Q_w(s_t, a_t)` with
    ``q_next`` :math:`= Q_w(s_{t+1}, a_{t+1})` at the next action taken.  Its
    critic step (eq. 12) is ``actor_critic.critic_loss(q, td_target(...))``.
    Arguments and return as :func:`minipg.estimators.actor_critic.td_error`.
    """
    return td_error(reward, q_next, q, gamma, terminated)


def q_learning_td_error(reward, q_next_at_mu, q, gamma, terminated):
    r"""Off-policy (Q-learning) critic TD error, Silver et al. eq. 16 (OPDAC, COPDAC-Q eq. 19).

    :math:`\delta_t = r_t + \gamma Q_w(s_{t+1}, \mu_\theta(s_{t+1})) - Q_w(s_t, a_t)`:
    ``q_next_at_mu`` must be the critic at the *target* policy's action
    :math:`\mu_\theta(s_{t+1})`, not at the behaviour's next action; ``q`` at
    the action taken.  Arguments and return as
    :func:`minipg.estimators.actor_critic.td_error`.
    """
    return td_error(reward, q_next_at_mu, q, gamma, terminated)


# ------------------------------------------------ compatible function approximation

def compatible_features(a, mu, grad_theta_mu):
    r"""Compatible features :math:`\phi(s, a) = \nabla_\theta\mu_\theta(s)\, (a - \mu_\theta(s))`.

    Silver et al. sec. 4.3: with :math:`Q^w(s, a) = \phi(s, a)^\top w + V^v(s)`
    the critic satisfies condition 1 of Theorem 3,
    :math:`\nabla_a Q^w(s, a) = \nabla_\theta \mu_\theta(s)^\top w`.

    Parameters
    ----------
    a : array or Tensor, shape (..., m) -- the actions taken (a Tensor keeps
        the result differentiable in ``a``, e.g. to check condition 1).
    mu : array, same shape -- :math:`\mu_\theta(s)`, held constant.
    grad_theta_mu : array, shape (..., m, n) -- :math:`\partial\mu_k/\partial\theta_j`.

    Returns
    -------
    shape (..., n): a Tensor if ``a`` is one, else a float64 array.
    """
    where = "compatible_features"
    mu = _c.held_constant(mu, "mu", where, np.shape(mu), np.float64)
    if mu.ndim < 1:
        raise ValueError(f"{where}: mu must have shape (..., m); got a scalar")
    J = _jacobian(grad_theta_mu, where, mu.shape)
    if isinstance(a, Tensor):
        a = _c.differentiable(a, "a", where, mu.shape)
        diff = ops.reshape(a - mu, mu.shape[:-1] + (1, mu.shape[-1]))     # (..., 1, m)
        return ops.reshape(ops.matmul(diff, J), J.shape[:-2] + J.shape[-1:])  # (a - mu)^T J
    a = _c.held_constant(a, "a", where, mu.shape, np.float64)
    return np.einsum("...k,...kj->...j", a - mu, J)               # grad_theta mu (a - mu)


def compatible_q(phi, w, v_of_s):
    r"""Compatible critic :math:`Q^w(s, a) = \phi(s, a)^\top w + V^v(s)` (Silver et al. sec. 4.3).

    Parameters
    ----------
    phi : array or Tensor, shape (..., n) -- :func:`compatible_features`.
    w : array or Tensor, shape (n,) or (..., n) -- advantage weights.
    v_of_s : array or Tensor, shape (...) -- the baseline :math:`V^v(s)`
        (e.g. ``x(s) @ v``).

    Returns
    -------
    shape (...): a Tensor if any input is one, else a float64 array.
    """
    where = "compatible_q"
    shapes = [np.shape(t.data if isinstance(t, Tensor) else t) for t in (phi, w, v_of_s)]
    if (len(shapes[0]) < 1 or shapes[1][-1:] != shapes[0][-1:]
            or shapes[2] != shapes[0][:-1]
            or np.broadcast_shapes(shapes[0], shapes[1]) != shapes[0]):
        raise ValueError(f"{where}: need phi (..., n), w (n,) or (..., n) and v_of_s (...); got "
                         f"phi {shapes[0]}, w {shapes[1]}, v_of_s {shapes[2]}")
    if any(isinstance(t, Tensor) for t in (phi, w, v_of_s)):
        return ops.sum(phi * w, axis=-1) + v_of_s                 # phi^T w + V(s)
    phi, w, v_of_s = (np.asarray(t, dtype=np.float64) for t in (phi, w, v_of_s))
    return np.sum(phi * w, axis=-1) + v_of_s


def copdac_q_update(theta, w, v, a, mu, grad_theta_mu, state_features, next_state_features,
                    reward, gamma, terminated, alpha_theta, alpha_w, alpha_v):
    r"""One step of COPDAC-Q (Silver et al. 2014, sec. 4.3, eqs. 19-22), plain NumPy.

    Critic :math:`Q^w(s, a) = \phi(s, a)^\top w + v^\top x(s)` with the
    compatible features :math:`\phi(s, a) = \nabla_\theta\mu_\theta(s)(a - \mu_\theta(s))`;
    a transition :math:`(s_t, a_t, r_t, s_{t+1})` from any behaviour policy:

    .. math::

        \delta_t &= r_t + \gamma Q^w(s_{t+1}, \mu_\theta(s_{t+1})) - Q^w(s_t, a_t)
            && (19) \\
        \theta_{t+1} &= \theta_t + \alpha_\theta \nabla_\theta\mu_\theta(s_t)
            \big(\nabla_\theta\mu_\theta(s_t)^\top w_t\big) && (20) \\
        w_{t+1} &= w_t + \alpha_w \delta_t \phi(s_t, a_t) && (21) \\
        v_{t+1} &= v_t + \alpha_v \delta_t x(s_t) && (22)

    Since :math:`\phi(s, \mu_\theta(s)) = 0`, the Q-learning target is
    :math:`Q^w(s_{t+1}, \mu_\theta(s_{t+1})) = v^\top x(s_{t+1})`, so the next
    state's Jacobian is not needed.  Eq. 20 is the DPG step with
    :math:`\nabla_a Q^w = \nabla_\theta\mu^\top w` (Theorem 3, condition 1):
    ``dpg_actor_gradient(J @ w, J)`` for one sample.

    Parameters
    ----------
    theta, w : arrays, shape (..., n) -- policy parameters and advantage weights.
    v : array, shape (..., k) -- value weights of :math:`V^v(s) = v^\top x(s)`.
    a, mu : arrays, shape (..., m) -- action taken, :math:`\mu_\theta(s_t)`.
    grad_theta_mu : array, shape (..., m, n) -- :math:`\partial\mu_i(s_t)/\partial\theta_j`.
    state_features, next_state_features : arrays, shape (..., k) --
        :math:`x(s_t)`, :math:`x(s_{t+1})`.
    reward : array or number, shape (...).
    gamma : float in [0, 1].
    terminated : bool (or 0/1), shape (...) -- True when :math:`s_{t+1}` is terminal.
    alpha_theta, alpha_w, alpha_v : floats >= 0.

    Leading axes ``...``, if any, are independent learners.

    Returns
    -------
    (theta, w, v, delta) -- new float64 arrays (inputs not modified) and the
    TD error of eq. 19.
    """
    where = "copdac_q_update"
    (theta, w), _ = _c.vectors(where, theta=theta, w=w)
    (v, x, x_next), _ = _c.vectors(where, v=v, state_features=state_features,
                                 next_state_features=next_state_features)
    (a, mu), _ = _c.vectors(where, a=a, mu=mu)
    batch = theta.shape[:-1]
    if v.shape[:-1] != batch or a.shape[:-1] != batch:
        raise ValueError(f"{where}: theta {theta.shape}, v {v.shape} and a {a.shape} must share "
                         f"their leading (learner) axes")
    J = _jacobian(grad_theta_mu, where, a.shape)
    if J.shape[-1] != theta.shape[-1]:
        raise ValueError(f"{where}: grad_theta_mu has {J.shape[-1]} parameter columns but theta "
                         f"has {theta.shape[-1]} entries")
    alpha_theta = _c.coefficient(alpha_theta, "alpha_theta", where)
    alpha_w = _c.coefficient(alpha_w, "alpha_w", where)
    alpha_v = _c.coefficient(alpha_v, "alpha_v", where)

    phi = compatible_features(a, mu, J)                               # phi(s_t, a_t)
    q = compatible_q(phi, w, np.sum(v * x, axis=-1))                  # Q^w(s_t, a_t)
    q_next_at_mu = np.sum(v * x_next, axis=-1)                        # Q^w(s', mu(s')) = V(s')
    delta = q_learning_td_error(reward, q_next_at_mu, q, gamma, terminated)   # (19)
    grad_a_q = np.einsum("...kj,...j->...k", J, w)                    # grad_theta mu^T w
    theta_new = theta + alpha_theta * np.einsum("...kj,...k->...j", J, grad_a_q)  # (20)
    w_new = w + alpha_w * delta[..., None] * phi                      # (21)
    v_new = v + alpha_v * delta[..., None] * x                        # (22)
    return theta_new, w_new, v_new, delta
