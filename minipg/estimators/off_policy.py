r"""Off-policy policy gradient: importance weights, the Off-PAC actor and its GTD(lambda) critic.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section
"Off-Policy Policy Gradient".  Paper: T. Degris, M. White and R. S. Sutton,
"Off-Policy Actor-Critic", ICML 2012 (arXiv:1205.4839), sec. 2 (the
off-policy objective and its approximate gradient) and Algorithm 1
("Off-PAC": a GTD(:math:`\lambda`) critic and an actor with eligibility
traces, both weighted by :math:`\rho = \pi_u(a|s) / b(a|s)`).

Data come from a behaviour policy :math:`\beta` (Degris et al. write
:math:`b`).  The objective :math:`J_\beta(\theta) = \sum_s d^\beta(s)
\sum_a \pi_\theta(a|s) Q^\pi(s, a)` has the approximate gradient (the term
:math:`\pi_\theta \nabla_\theta Q^\pi` dropped; Weng's step (i), Degris et al.
sec. 2)

.. math::

    g(\theta) = \mathbb{E}_{s \sim d^\beta,\, a \sim \beta}\Big[
        \frac{\pi_\theta(a|s)}{\beta(a|s)}\, Q^\pi(s, a)\,
        \nabla_\theta \ln\pi_\theta(a|s) \Big].

The ratio multiplies :math:`\nabla_\theta \ln\pi`; it is *not*
differentiated (differentiating :math:`\rho\, Q \ln\pi` through
:math:`\rho` would add :math:`Q \ln\pi\, \nabla\rho`, which is not in
:math:`g`).  The sample estimate is unbiased for :math:`g`, which is neither
:math:`\nabla J_\beta` (it drops :math:`\pi \nabla Q`) nor the on-policy
:math:`\nabla J_\pi` (Imani, Graves & White 2018 give the exact off-policy
gradient with emphatic weights).

The Off-PAC critic learns a linear value :math:`\hat v(s) = v^\top x(s)` by
GTD(:math:`\lambda`) (a second weight vector :math:`w` estimates the
expected TD update; Sutton et al. 2009, Maei 2011), both traces carrying
:math:`\rho`; :func:`gtd_lambda_update` and :func:`offpac_actor_update` are
one step of Algorithm 1, in plain NumPy.
"""

from __future__ import annotations

import numpy as np

from minipg.autodiff import Tensor

from . import checks as _c
from .terms import policy_gradient_objective, td_error

__all__ = ["importance_weights", "off_policy_actor_objective", "gtd_lambda_update",
           "offpac_actor_update"]


def _data(x):
    """The array of a Tensor (the weights are constants whatever they are computed from)."""
    return x.data if isinstance(x, Tensor) else x


def importance_weights(pi_prob=None, behaviour_prob=None, *, log_prob=None,
                       behaviour_log_prob=None, clip=None):
    r"""Importance weights :math:`\rho = \pi(a|s) / \beta(a|s)`, as a plain (constant) array.

    Give the target policy's probability of the taken action either as
    ``pi_prob`` or as ``log_prob``, and the behaviour policy's as
    ``behaviour_prob`` or ``behaviour_log_prob`` (densities for continuous
    actions).  With a log-probability on either side the ratio is formed as
    :math:`\exp(\log\pi - \log\beta)`.

    Parameters
    ----------
    pi_prob : array, any shape, >= 0 -- :math:`\pi(a_t|s_t)`; or
    log_prob : array or Tensor, any shape -- :math:`\log\pi(a_t|s_t)` (a
        Tensor's data is used: the weights are always held constant);
        ``-inf`` is allowed and gives :math:`\rho = 0`.
    behaviour_prob : array, same shape, > 0 -- :math:`\beta(a_t|s_t)`; or
    behaviour_log_prob : array, same shape -- :math:`\log\beta(a_t|s_t)`.
    clip : float > 0 or None -- if given, :math:`\min(\rho, c)` (truncated
        importance weights, as in Retrace/ACER; this biases the estimator).

    Returns
    -------
    float64 array of the common shape.
    """
    where = "importance_weights"
    if (pi_prob is None) == (log_prob is None):
        raise ValueError(f"{where}: give exactly one of pi_prob and log_prob (the target "
                         "policy's probability of the taken action)")
    if (behaviour_prob is None) == (behaviour_log_prob is None):
        raise ValueError(f"{where}: give exactly one of behaviour_prob and behaviour_log_prob")
    if log_prob is None:
        target = np.asarray(_data(pi_prob))
        target = _c.held_constant(target, "pi_prob", where, target.shape, np.float64)
    else:
        # log pi = -inf (an action the target never takes) is allowed: rho = 0
        target = np.asarray(_data(log_prob))
        finite = np.where(target == -np.inf, 0.0, target) if target.dtype.kind == "f" else target
        _c.held_constant(finite, "log_prob", where, target.shape, np.float64)
        target = target.astype(np.float64)
    shape = target.shape
    if behaviour_log_prob is None:
        behaviour = _c.held_constant(_data(behaviour_prob), "behaviour_prob", where, shape,
                                   np.float64)
        if np.any(behaviour <= 0):
            raise ValueError(f"{where}: behaviour_prob must be > 0 for every taken action "
                             f"(an action the behaviour policy cannot take cannot be in the "
                             f"data); got {int(np.sum(behaviour <= 0))} entries <= 0")
    else:
        behaviour = _c.held_constant(_data(behaviour_log_prob), "behaviour_log_prob", where,
                                   shape, np.float64)
    if log_prob is None and behaviour_log_prob is None:
        if np.any(target < 0):
            raise ValueError(f"{where}: pi_prob must be >= 0 (a probability or density)")
        rho = target / behaviour                                   # pi / beta
    else:
        log_pi = target if log_prob is not None else _log_nonneg(target, "pi_prob", where)
        log_beta = behaviour if behaviour_log_prob is not None else np.log(behaviour)
        rho = np.exp(log_pi - log_beta)                            # exp(log pi - log beta)
    if clip is not None:
        clip = _c.coefficient(clip, "clip", where)
        if clip == 0.0:
            raise ValueError(f"{where}: clip must be > 0 (or None for no clipping); got 0")
        rho = np.minimum(rho, clip)                                # min(rho, c)
    return rho


def _log_nonneg(p, name, where):
    if np.any(p < 0):
        raise ValueError(f"{where}: {name} must be >= 0 (a probability or density)")
    with np.errstate(divide="ignore"):
        return np.log(p)                                           # log 0 = -inf -> rho = 0


def off_policy_actor_objective(log_prob, behaviour_prob, q_values, clip=None, *,
                               behaviour_log_prob=None):
    r"""Off-policy actor surrogate (maximised): mean of :math:`\rho_t Q_t \log\pi_\theta(a_t|s_t)`.

    With :math:`\rho_t = \pi_\theta(a_t|s_t) / \beta(a_t|s_t)` held constant,
    its gradient is

    .. math:: \frac1N \sum_t \rho_t\, Q_t\, \nabla_\theta \log\pi_\theta(a_t|s_t),

    the sample form of the approximate off-policy gradient :math:`g(\theta)`
    (Weng, "Off-Policy Policy Gradient", last line; Degris et al. 2012,
    sec. 2), for :math:`(s_t, a_t)` drawn from :math:`d^\beta \beta`.

    Parameters
    ----------
    log_prob : Tensor, any shape -- :math:`\log\pi_\theta(a_t|s_t)` of the
        taken (behaviour) actions under the current target policy.
    behaviour_prob : plain array, same shape, > 0 -- :math:`\beta(a_t|s_t)`,
        recorded when acting; or None, with ``behaviour_log_prob`` (same
        shape, :math:`\log\beta(a_t|s_t)`) given instead.
    q_values : plain array, same shape -- the critic's signal
        :math:`Q^\pi(s_t, a_t)` (or a TD error / advantage), held constant.
    clip : float > 0 or None -- truncate :math:`\rho` at ``clip`` (biased).

    Returns
    -------
    Tensor, scalar (maximise it).
    """
    where = "off_policy_actor_objective"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    for name, b in (("behaviour_prob", behaviour_prob), ("behaviour_log_prob",
                                                        behaviour_log_prob)):
        if isinstance(b, Tensor):
            raise TypeError(f"{where}: {name} is held constant and must be a plain array, not "
                            "a Tensor")
    rho = importance_weights(log_prob=log_prob.data, behaviour_prob=behaviour_prob,
                             behaviour_log_prob=behaviour_log_prob, clip=clip)   # held constant
    q_values = _c.held_constant(q_values, "q_values", where, log_prob.shape, np.float64)
    return policy_gradient_objective(log_prob, rho * q_values)     # mean(rho Q log pi)


# --------------------------------------------------------------- Off-PAC (Algorithm 1)

def _per_sample(x, name, where, shape):
    return _c.held_constant(x, name, where, shape, np.float64)


def gtd_lambda_update(v, w, e, x, x_next, reward, gamma, lam, rho, alpha_v, alpha_w,
                      terminated):
    r"""One step of the Off-PAC critic, GTD(:math:`\lambda`) for :math:`\hat v(s) = v^\top x(s)`.

    Degris, White & Sutton 2012, Algorithm 1, the lines under "Update the
    critic (GTD(:math:`\lambda`) algorithm)", with a constant
    :math:`\gamma` (:math:`\gamma(s') = 0` when ``terminated``):

    .. math::

        \delta &\leftarrow r + \gamma(s')\, v^\top x_{s'} - v^\top x_s \\
        e_v &\leftarrow \rho\, (x_s + \gamma \lambda\, e_v) \\
        v &\leftarrow v + \alpha_v \big[\delta\, e_v
              - \gamma(s') (1 - \lambda) (w^\top e_v)\, x_{s'}\big] \\
        w &\leftarrow w + \alpha_w \big[\delta\, e_v - (w^\top x_s)\, x_s\big]

    All right-hand sides use the values before the step.  With
    :math:`\rho = 1` and :math:`w = 0`, :math:`\alpha_w = 0` it is TD(:math:`\lambda`):
    :math:`v \leftarrow v + \alpha_v \delta e_v`, :math:`e_v \leftarrow x_s + \gamma\lambda e_v`.

    Episodes: the paper's :math:`\gamma(s)` in the trace is 0 at an episode's
    first state, i.e. **pass** ``e = zeros`` **at the first step of each
    episode** (after a termination or a truncation).  The TD error is that of
    :func:`minipg.estimators.actor_critic.td_error` with
    ``q_next = x_next @ v``, ``q = x @ v``; compute it before calling this
    (with the old ``v``) to feed :func:`offpac_actor_update`.

    Parameters
    ----------
    v, w, e : arrays, shape (..., d) -- value weights, the second (GTD)
        weights, the critic's trace :math:`e_v`.  Leading axes, if any, are
        independent learners (e.g. ``(B, d)`` runs at once).
    x, x_next : arrays, shape (..., d) -- :math:`x(s_t)`, :math:`x(s_{t+1})`
        (at a truncation: the true final observation's features).
    reward, rho : arrays or numbers, shape (...) -- :math:`r_{t+1}` and
        :math:`\rho_t = \pi(a_t|s_t)/b(a_t|s_t)` (``importance_weights``).
    gamma, lam : floats in [0, 1].
    alpha_v, alpha_w : floats >= 0 -- step sizes.
    terminated : bool (or 0/1), shape (...) -- True when :math:`s_{t+1}` is terminal.

    Returns
    -------
    (v, w, e) -- new float64 arrays; the inputs are not modified.
    """
    where = "gtd_lambda_update"
    (v, w, e, x, x_next), shape = _c.vectors(where, v=v, w=w, e=e, x=x, x_next=x_next)
    batch = shape[:-1]
    gamma = _c.discount(gamma, where)
    lam = _c.trace_decay(lam, where)
    rho = _rho(rho, where, batch)
    alpha_v = _c.coefficient(alpha_v, "alpha_v", where)
    alpha_w = _c.coefficient(alpha_w, "alpha_w", where)
    term = _c.flags(terminated, "terminated", batch)
    reward = _per_sample(reward, "reward", where, batch)

    def dot(a, b):
        return np.sum(a * b, axis=-1, keepdims=True)

    gamma_next = np.where(term, 0.0, gamma)[..., None]                     # gamma(s')
    delta = td_error(reward, dot(v, x_next)[..., 0], dot(v, x)[..., 0], gamma,
                     term)[..., None]                   # delta = r + gamma(s') v'x' - v'x
    e = rho[..., None] * (x + gamma * lam * e)          # e_v <- rho (x_s + gamma lam e_v)
    v_new = v + alpha_v * (delta * e                    # v <- v + a_v [delta e_v
                           - gamma_next * (1.0 - lam) * dot(w, e) * x_next)  # - g(1-l)(w'e_v) x']
    w_new = w + alpha_w * (delta * e - dot(w, x) * x)   # w <- w + a_w [delta e_v - (w'x) x]
    return v_new, w_new, e


def offpac_actor_update(u, e_u, psi, delta, gamma, lam, rho, alpha_u):
    r"""One step of the Off-PAC actor (Degris et al. 2012, Algorithm 1, "Update the actor").

    .. math::

        e_u &\leftarrow \rho \left(\frac{\nabla_u \pi_u(a|s)}{\pi_u(a|s)}
                                 + \gamma \lambda\, e_u\right) \\
        u &\leftarrow u + \alpha_u\, \delta\, e_u

    with :math:`\psi = \nabla_u \pi_u / \pi_u = \nabla_u \ln\pi_u(a|s)` and
    :math:`\delta` the critic's TD error of the same step (computed with the
    critic's weights before its update).  With :math:`\lambda = 0` the step
    is :math:`\alpha_u \rho \delta \psi`: ``alpha_u`` times the gradient of
    ``off_policy_actor_objective(log_prob, b, delta)`` on that one sample.
    As for the critic, pass ``e_u = zeros`` at the first step of each episode.

    Parameters
    ----------
    u, e_u, psi : arrays, shape (..., n) -- policy parameters, the actor's
        trace, the score :math:`\nabla_u \ln\pi_u(a_t|s_t)` (e.g. the
        gradient of ``log_prob`` from the autodiff policy, flattened).
    delta, rho : arrays or numbers, shape (...) -- TD error and
        :math:`\pi_u(a_t|s_t)/b(a_t|s_t)`.
    gamma, lam : floats in [0, 1].
    alpha_u : float >= 0.

    Returns
    -------
    (u, e_u) -- new float64 arrays; the inputs are not modified.
    """
    where = "offpac_actor_update"
    (u, e_u, psi), shape = _c.vectors(where, u=u, e_u=e_u, psi=psi)
    batch = shape[:-1]
    gamma = _c.discount(gamma, where)
    lam = _c.trace_decay(lam, where)
    rho = _rho(rho, where, batch)
    alpha_u = _c.coefficient(alpha_u, "alpha_u", where)
    delta = _per_sample(delta, "delta", where, batch)
    e_u = rho[..., None] * (psi + gamma * lam * e_u)    # e_u <- rho (psi + gamma lam e_u)
    u = u + alpha_u * delta[..., None] * e_u            # u <- u + a_u delta e_u
    return u, e_u


def _rho(rho, where, batch):
    rho = _per_sample(rho, "rho", where, batch)
    if np.any(rho < 0):
        raise ValueError(f"{where}: rho must be >= 0 (a ratio of probabilities pi/b)")
    return rho
