r"""Terms and targets shared by several estimator families, written once.

The family modules (``a2c``, ``ppo``, ``reinforce``, ``actor_critic``,
``off_policy``, ``dpg``, ``ddpg``, ``td3``, ``sac``) build their losses from
these and re-export the ones the document introduces with them, so
``minipg.estimators.a2c.policy_gradient_objective`` and
``minipg.estimators.actor_critic.td_error`` are the functions defined here.
A family imports only the engine, :mod:`minipg.estimators.checks` and this
module, never another family.

* :func:`one_step_target` -- :math:`y = r + \gamma (1 - d)\,v'`, the
  held-constant one-step backup of DDPG, TD3, SAC and the actor-critic
  (Weng 2018, "Policy Gradient Algorithms", sections "Actor-Critic", "DDPG",
  "TD3", "SAC"); :func:`td_target` and :func:`td_error` are its float64
  actor-critic forms (section "Actor-Critic", step 2.4), also used by the
  Off-PAC critic and the DPG critics;
* :func:`policy_gradient_objective` -- the score-function surrogate
  :math:`\mathbb{E}[\hat A_t \log\pi_\theta(a_t|s_t)]` (section "A3C"),
  used by A2C, the actor-critic and the off-policy actor;
* :func:`value_loss` -- :math:`\mathbb{E}[(V_w(s_t) - R_t)^2]` (A2C, the
  REINFORCE baseline); :func:`entropy_bonus` -- :math:`\mathbb{E}[H]` (A2C, PPO);
* :func:`deterministic_actor_objective` -- :math:`\frac1N\sum_i Q(s_i,
  \mu_\theta(s_i))`, the sampled deterministic policy gradient (sections
  "DPG", "DDPG", "TD3"); :func:`critic_squared_error` -- its critic's
  :math:`\frac1N\sum_i (y_i - Q_i)^2` (DDPG, MADDPG).

Conventions as everywhere in :mod:`minipg.estimators`: ``*_objective`` is
maximised, ``*_loss`` minimised; gradient-carrying inputs are Tensors,
held-constant targets plain finite arrays of the batch's shape.
"""

from __future__ import annotations

import numpy as np

from minipg.autodiff import Tensor, ops

from . import checks as _c

__all__ = ["one_step_target", "td_target", "td_error", "policy_gradient_objective",
           "value_loss", "entropy_bonus", "deterministic_actor_objective",
           "critic_squared_error", "trust_region_step_size"]


# ---------------------------------------------------------------- one-step targets

def one_step_target(rewards, terminated, next_value, gamma, next_name, owner):
    r"""y = r + gamma (1 - d) next_value as a plain array (held constant).

    ``rewards`` and ``next_value`` plain finite arrays of one shape (a Tensor
    is refused: a target must not carry gradients), ``terminated`` bool or 0/1
    of that shape, gamma in [0, 1].  float32 inputs give a float32 target.
    """
    shape = np.shape(rewards)
    dtype = _c.target_dtype(rewards, next_value)
    rewards = _c.held_constant(rewards, "rewards", owner, shape, dtype)
    next_value = _c.held_constant(next_value, next_name, owner, shape, dtype)
    done = _c.flags(terminated, "terminated", shape)
    gamma = _c.unit_interval(gamma, "gamma")
    return _backup(rewards, done, next_value, gamma, dtype)


def _backup(rewards, done, next_value, gamma, dtype):
    """r + gamma (1 - d) next_value on checked arrays (the callers check, once each)."""
    # (1 - d) as a selection: at termination y = r exactly
    return np.where(done, rewards, rewards + gamma * next_value).astype(dtype, copy=False)


def td_target(reward, q_next, gamma, terminated):
    r"""The one-step target :math:`y = r + \gamma (1 - \text{terminated})\, Q_w(s', a')`.

    Parameters
    ----------
    reward : array or number, any shape -- :math:`r_t`.
    q_next : plain array, same shape -- :math:`Q_w(s', a')` at the sampled
        next action (or :math:`\hat v(s')`, or any bootstrap value); held
        constant, so a Tensor is refused.
    gamma : float in [0, 1].
    terminated : bool (or 0/1) array, same shape -- True where :math:`s'` is
        terminal (the bootstrap is cut).

    Returns
    -------
    float64 array of the common shape.
    """
    where = "td_target"
    gamma = _c.discount(gamma, where)
    shape = reward.shape if isinstance(reward, Tensor) else np.shape(reward)
    reward = _c.held_constant(reward, "reward", where, shape, np.float64)
    q_next = _c.held_constant(q_next, "q_next", where, shape, np.float64)
    term = _c.flags(terminated, "terminated", shape)
    # r + gamma (1 - d) Q(s', a'): the one-step backup written once, above (inputs checked)
    return _backup(reward, term, q_next, gamma, np.float64).reshape(shape)


def td_error(reward, q_next, q, gamma, terminated):
    r"""TD error :math:`\delta = r + \gamma (1 - \text{terminated}) Q_w(s', a') - Q_w(s, a)`.

    Weng, "Actor-Critic" step 2.4 (and, with state values, Sutton & Barto
    sec. 13.5).

    Parameters
    ----------
    reward, q_next, gamma, terminated : as in :func:`td_target` (``q_next``
        held constant).
    q : Tensor or plain array, same shape -- :math:`Q_w(s, a)`.

    Returns
    -------
    A Tensor when ``q`` is a Tensor (differentiable through ``q`` only:
    ``0.5 * mean(delta**2)`` is then the semi-gradient critic loss), else a
    float64 array.  Feed ``delta.data`` to the actor: the actor's signal is
    held constant.
    """
    y = td_target(reward, q_next, gamma, terminated)
    if isinstance(q, Tensor):
        q = _c.differentiable(q, "q", "td_error", y.shape)
        return y.astype(q.dtype, copy=False) - q                  # y - Q_w(s, a)
    return y - _c.held_constant(q, "q", "td_error", y.shape, np.float64)


# ------------------------------------------------------- policy and value terms

def policy_gradient_objective(log_prob, advantages):
    r"""Policy-gradient surrogate :math:`\mathbb{E}[\hat A_t \log\pi_\theta(a_t|s_t)]` (maximised).

    Its gradient is the advantage actor-critic estimate
    :math:`\mathbb{E}[\hat A_t \nabla_\theta \log\pi_\theta(a_t|s_t)]`
    (Weng, "A3C" step 6.2; Mnih et al. 2016, sec. 4).

    Parameters
    ----------
    log_prob : Tensor, shape (...) -- :math:`\log\pi_\theta(a_t|s_t)`.
    advantages : plain array, same shape -- :math:`\hat A_t`, held constant.

    Returns
    -------
    Tensor, scalar: the batch mean (maximise it).
    """
    where = "policy_gradient_objective"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    advantages = _c.held_constant(advantages, "advantages", where, log_prob.shape, log_prob.dtype)
    return ops.mean(log_prob * advantages)                        # E[A log pi]


def value_loss(values, returns):
    r"""Critic loss :math:`J_v(w) = \mathbb{E}[(V_w(s_t) - R_t)^2]` (minimised).

    Mean squared error with **no** factor 1/2, as Weng's A3C section writes
    it (:math:`J_v(w) = (G_t - V_w(s))^2`, gradient
    :math:`2 (R - V)\nabla(R - V)`).  OpenAI baselines' A2C uses the same
    (``mean_squared_error``, weighted by ``vf_coef = 0.5``).

    Parameters
    ----------
    values : Tensor, shape (...) -- :math:`V_w(s_t)`.
    returns : plain array, same shape -- the targets :math:`R_t`, held constant.

    Returns
    -------
    Tensor, scalar (minimise it).
    """
    where = "value_loss"
    values = _c.differentiable(values, "values", where)
    returns = _c.held_constant(returns, "returns", where, values.shape, values.dtype)
    return ops.mean(ops.square(values - returns))                 # E[(V - R)^2]


def entropy_bonus(entropy):
    r"""Entropy bonus :math:`\mathbb{E}[H(\pi_\theta(\cdot|s_t))]` (maximised).

    Mnih et al. 2016, sec. 4: adding :math:`\beta\nabla_\theta H` to the
    policy gradient discourages premature convergence to a deterministic
    policy.

    Parameters
    ----------
    entropy : Tensor, shape (...) -- per-state entropies, e.g.
        ``Categorical(logits).entropy()``.

    Returns
    -------
    Tensor, scalar: the batch mean (maximise it).
    """
    entropy = _c.differentiable(entropy, "entropy", "entropy_bonus")
    return ops.mean(entropy)                                      # E[H]


# ------------------------------------------------------- deterministic policies

def deterministic_actor_objective(q_of_mu, where):
    r"""DPG actor objective :math:`J = \frac1N \sum_i Q(s_i, \mu_\theta(s_i))`; maximised.

    ``q_of_mu`` is the Tensor :math:`Q(s_i, \mu_\theta(s_i))`: the critic
    evaluated at the actor's own (noise-free) action, on the tape through
    the actor.  Its gradient in the actor's parameters is the sampled DPG
    :math:`\frac1N\sum_i \nabla_a Q(s_i, a)|_{a=\mu(s_i)} \nabla_\theta\mu(s_i)`
    (Silver et al. 2014, eq. 9; Lillicrap et al. 2016, Algorithm 1); a batch
    MEAN, so the step size does not scale with N.  ``where`` names the
    caller in the error messages (``ddpg.actor_objective``, ...).
    """
    q_of_mu = _c.differentiable(q_of_mu, "q_of_mu", where)
    return ops.mean(q_of_mu)                                   # (1/N) sum Q(s, mu(s))


# ------------------------------------------------------- trust-region step size

def critic_squared_error(q, y, where):
    r"""Critic loss :math:`L = \frac1N \sum_i (y_i - Q(s_i, a_i))^2`; minimised.

    ``q`` is the Tensor :math:`Q(s_i, a_i)` of the critic being trained, ``y`` the
    held-constant target (same shape).  Gradient: :math:`-\frac2N \sum_i (y_i - Q_i)
    \nabla Q_i`.  ``where`` names the caller in the error messages
    (``ddpg.critic_loss``, ...).
    """
    q = _c.differentiable(q, "q", where)
    y = _c.held_constant(y, "y", where, q.shape, q.dtype)
    return ops.mean(ops.square(q - y))                         # (1/N) sum (y - Q)^2


def trust_region_step_size(quadratic, max_kl, eta_max=np.inf, where="trust_region_step_size"):
    r"""eta = min(eta_max, sqrt(2 delta / (d^T F d))): the largest step along d with
    1/2 eta^2 d^T F d <= delta, capped at eta_max.

    TRPO's step (Schulman et al. 2015, Appendix C: s = sqrt(2 delta / x^T F x) x,
    eta_max = inf) and ACKTR's (Wu et al. 2017, section 3.2, F the K-FAC
    approximation); verification/FORMULAS.md "TRPO, K-FAC, ACKTR".
    ``quadratic`` = d^T F d >= 0 (a zero quadratic, e.g. d = 0, gives eta_max,
    or 0 when eta_max is infinite); ``max_kl`` = delta > 0; ``eta_max`` > 0.
    """
    quadratic, max_kl, eta_max = float(quadratic), float(max_kl), float(eta_max)
    if not (np.isfinite(quadratic) and quadratic >= 0):
        raise ValueError(f"{where}: d^T F d = {quadratic!r}; accepted: a finite number >= 0 "
                         "(F positive semi-definite)")
    if not (np.isfinite(max_kl) and max_kl > 0):
        raise ValueError(f"{where}: delta (max_kl) = {max_kl!r}; accepted: (0, inf)")
    if not eta_max > 0:
        raise ValueError(f"{where}: eta_max = {eta_max!r}; accepted: (0, inf]")
    if quadratic == 0:
        return eta_max if np.isfinite(eta_max) else 0.0
    return min(eta_max, float(np.sqrt(2.0 * max_kl / quadratic)))   # 1/2 eta^2 dFd <= delta
