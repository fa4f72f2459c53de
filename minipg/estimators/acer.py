r"""ACER: Retrace targets, truncated importance weights with bias correction, the efficient
trust region and the stochastic dueling network.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "ACER"
(Retrace Q-value estimation, importance-weight truncation, efficient TRPO).
Papers: Z. Wang, V. Bapst, N. Heess, V. Mnih, R. Munos, K. Kavukcuoglu,
N. de Freitas, "Sample Efficient Actor-Critic with Experience Replay", ICLR
2017 (eqs. 5, 9-13, Algorithms 2 and 3); R. Munos, T. Stepleton,
A. Harutyunyan, M. Bellemare, "Safe and Efficient Off-Policy Reinforcement
Learning", NeurIPS 2016 (Retrace).  Formulas: ``verification/FORMULAS.md
"Retrace and ACER"``.

Notation: pi = f(.|phi_theta(x)) the current policy, phi its statistics (the
probabilities of a categorical policy; mean and log-std of a Gaussian one),
mu the behaviour policy that acted (stored in the replay), rho = pi / mu,
Q the critic, V = sum_a pi Q (discrete) or the critic's V (continuous).

* :func:`importance_weights`, :func:`trace_weights` -- rho_t and the traces
  c_t = min(1, rho_t^(1/d)) (d = 1: rho_bar = min(1, rho); d = the action
  dimension in continuous ACER, Algorithm 3);
* :func:`retrace_targets` -- Q^ret by the backward recursion (the kernel
  :func:`minipg.kernels.retrace`); with traces 1 it is Algorithm 3's Q^opc;
* :func:`truncated_term`, :func:`correction_term`,
  :func:`sampled_correction_term` -- the two parts of the ACER policy
  gradient (eq. 9 in Weng's form; Wang et al. eqs. 9 and 12):

  .. math::

      \hat g = \min(c, \rho_t) (Q^{ret}_t - V_t) \nabla \log \pi(a_t|x_t)
        + \mathbb{E}_{a \sim \pi} \big[ [1 - c / \rho_t(a)]_+ (Q(x_t, a) - V_t)
          \nabla \log \pi(a|x_t) \big],

  written as per-sample surrogates whose gradient is that term (every
  factor but log pi held constant);
* :func:`categorical_kl_gradient`, :func:`gaussian_kl_gradient` -- k =
  grad_phi KL(f(.|phi_avg) || f(.|phi)), the KL gradient with respect to the
  policy's statistics (eq. 11);
* :func:`trust_region_projection` -- z* = g - max(0, (k^T g - delta) /
  ||k||^2) k, the solution of min 1/2 ||g - z||^2 s.t. k^T z <= delta
  (eq. 13); :func:`statistics_surrogate` back-propagates z* through the
  network (its gradient is (1/N) sum_i (d phi_i / d theta)^T z*_i);
* :func:`stochastic_dueling_q` -- Q~(x, a) = V(x) + A(x, a) - 1/n sum_i
  A(x, u_i), u_i ~ pi (eq. 14), unbiased for V + A - E_pi A;
* :func:`critic_loss`, :func:`dueling_value_target` -- the critic's squared
  error to Q^ret and (continuous) V's target V + c (Q^ret - Q~).

Conventions as everywhere in :mod:`minipg.estimators`: ``*_objective`` and
the terms are maximised, ``*_loss`` minimised; gradient-carrying inputs are
Tensors, held-constant quantities plain arrays.
"""

from __future__ import annotations

import numpy as np

from minipg.autodiff import ops
from minipg.kernels.retrace import retrace

from . import checks as _c

__all__ = ["importance_weights", "trace_weights", "retrace_targets", "truncated_term",
           "correction_term", "sampled_correction_term", "categorical_kl_gradient",
           "gaussian_kl_gradient", "trust_region_projection", "statistics_surrogate",
           "stochastic_dueling_q", "critic_loss", "dueling_value_target"]


# ----------------------------------------------------------------- settings

def _truncation(c, where):
    """The truncation constant c in [0, inf] (0 and inf for the identity checks; the
    algorithm's setting is c > 0)."""
    c = float(c)
    if not c >= 0:                                    # also refuses NaN
        raise ValueError(f"{where}: the truncation constant c = {c!r}; accepted: [0, inf]")
    return c


def _delta(delta, where):
    """The trust-region radius delta > 0, finite."""
    delta = float(delta)
    if not (np.isfinite(delta) and delta > 0):
        raise ValueError(f"{where}: the trust-region radius delta = {delta!r}; accepted: "
                         "(0, inf)")
    return delta


def _truncation_weights(rho, c):
    """(min(c, rho), [1 - c/rho]_+) elementwise; c = 0 and c = inf need no special case
    (rho > 0: c / rho is 0 or inf)."""
    return np.minimum(c, rho), np.maximum(0.0, 1.0 - c / rho)


# ---------------------------------------------------------- importance weights

def importance_weights(pi_taken, mu_taken):
    r"""rho_t = pi(a_t|x_t) / mu(a_t|x_t) (plain arrays of probabilities or densities)."""
    where = "importance_weights"
    shape = np.shape(pi_taken)
    pi_taken = _c.held_constant(pi_taken, "pi_taken", where, shape, np.float64)
    mu_taken = _c.held_constant(mu_taken, "mu_taken", where, shape, np.float64)
    if np.any(mu_taken <= 0) or np.any(pi_taken < 0):
        raise ValueError(f"{where}: mu(a|x) must be > 0 (the behaviour drew a) and pi(a|x) "
                         ">= 0")
    return pi_taken / mu_taken


def trace_weights(rho, action_dim=1):
    r"""c_t = min(1, rho_t^(1/d)): rho_bar = min(1, rho) for d = 1 (discrete ACER and
    Retrace with lambda = 1), Algorithm 3's c_i for a d-dimensional action."""
    rho = np.asarray(rho, dtype=np.float64)
    if np.any(~(rho >= 0)):
        raise ValueError("trace_weights: rho must be >= 0")
    d = int(action_dim)
    if d < 1:
        raise ValueError(f"trace_weights: action_dim = {action_dim!r}; accepted: an integer "
                         ">= 1")
    return np.minimum(1.0, rho ** (1.0 / d))


def retrace_targets(rewards, q_taken, values, next_values, traces, terminated, truncated,
                    gamma):
    r"""Q^ret_t = r_t + gamma [c_{t+1} (Q^ret_{t+1} - Q(x_{t+1}, a_{t+1})) + V(x_{t+1})]
    (Wang et al. 2017, eq. 5 / Algorithm 2), computed backwards over segments of shape
    (T,) or (T, N) by :func:`minipg.kernels.retrace`; Q^ret_t = r_t at a termination,
    r_t + gamma V(x'_t) at a truncation and at the segment's last step.  ``traces`` =
    :func:`trace_weights` (Q^ret) or ones (Algorithm 3's Q^opc).  Held constant."""
    return retrace(rewards, q_taken, values, next_values, traces, terminated, truncated, gamma)


# ------------------------------------------------------------ the policy gradient

def truncated_term(log_prob, rho, q_ret, values, c):
    r"""min(c, rho_t) (Q^ret_t - V_t) log pi(a_t|x_t), per sample (a Tensor (N,), maximised).

    Its gradient is the first term of the ACER gradient (Wang et al. eq. 9):
    the importance weight truncated at c, Q^ret less the baseline V.  ``rho``,
    ``q_ret``, ``values`` held constant; ``c`` in (0, inf] (c = 0 is accepted
    here, for the identity checks: the term then vanishes).
    """
    where = "truncated_term"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    shape, dtype = log_prob.shape, log_prob.dtype
    rho = _c.held_constant(rho, "rho", where, shape, np.float64)
    advantage = (_c.held_constant(q_ret, "q_ret", where, shape, np.float64)
                 - _c.held_constant(values, "values", where, shape, np.float64))
    weight, _ = _truncation_weights(rho, _truncation(c, where))
    return log_prob * (weight * advantage).astype(dtype)          # min(c, rho)(Q^ret - V) log pi


def correction_term(log_probs, probs, mu_probs, q, values, c):
    r"""sum_a [1 - c / rho(a)]_+ pi(a|x) (Q(x, a) - V(x)) log pi(a|x), per sample (N,).

    The bias correction of discrete ACER, summed exactly over all actions
    with the critic's Q (Wang et al. eq. 9, Algorithm 2): rho(a) = pi(a|x) /
    mu(a|x) with ``probs`` = pi (held constant) and ``mu_probs`` = mu, shape
    (N, A); ``log_probs`` the Tensor log pi (N, A); ``q`` (N, A) and
    ``values`` (N,) held constant.  With :func:`truncated_term` it makes, in
    expectation over a ~ mu, E_{a~pi}[(Q - V) grad log pi] for every c
    (``verification/FORMULAS.md "Retrace and ACER/Truncation with bias correction"``).
    """
    where = "correction_term"
    log_probs = _c.differentiable(log_probs, "log_probs", where)
    shape, dtype = log_probs.shape, log_probs.dtype
    if len(shape) != 2:
        raise ValueError(f"{where}: log_probs must have shape (N, A); got {shape}")
    pi = _c.held_constant(probs, "probs", where, shape, np.float64)
    mu = _c.held_constant(mu_probs, "mu_probs", where, shape, np.float64)
    if np.any(mu <= 0):
        raise ValueError(f"{where}: mu_probs must be > 0 (a behaviour policy of full support)")
    q = _c.held_constant(q, "q", where, shape, np.float64)
    v = _c.held_constant(values, "values", where, shape[:1], np.float64)
    _, correction = _truncation_weights(pi / mu, _truncation(c, where))
    weights = correction * pi * (q - v[:, None])                   # [1 - c/rho]_+ pi (Q - V)
    return ops.sum(log_probs * weights.astype(dtype), axis=-1)


def sampled_correction_term(log_prob_sampled, rho_sampled, q_sampled, values, c):
    r"""[1 - c / rho'_t]_+ (Q~(x_t, a'_t) - V_t) log pi(a'_t|x_t) with a'_t ~ pi (N,).

    Continuous ACER's bias correction (Wang et al. eq. 12, Algorithm 3): one
    action a' drawn from the current policy replaces the sum over actions,
    rho' = pi(a'|x) / mu(a'|x), the critic's value at a' from the stochastic
    dueling network.  Held constant: rho', Q~(x, a'), V; the sample a' is a
    constant too (a score-function term, not reparameterised).
    """
    where = "sampled_correction_term"
    log_prob = _c.differentiable(log_prob_sampled, "log_prob_sampled", where)
    shape, dtype = log_prob.shape, log_prob.dtype
    rho = _c.held_constant(rho_sampled, "rho_sampled", where, shape, np.float64)
    advantage = (_c.held_constant(q_sampled, "q_sampled", where, shape, np.float64)
                 - _c.held_constant(values, "values", where, shape, np.float64))
    _, correction = _truncation_weights(rho, _truncation(c, where))
    return log_prob * (correction * advantage).astype(dtype)


# -------------------------------------------------------------- the trust region

def categorical_kl_gradient(avg_probs, probs):
    r"""k = grad_f KL(f_avg || f) = -f_avg / f with respect to the probabilities f (N, A).

    KL(f_avg || f) = sum_a f_avg(a) (log f_avg(a) - log f(a)) (Wang et al.
    eq. 11 with phi = f; ``verification/FORMULAS.md "Retrace and ACER/Trust region"``).
    """
    avg = np.asarray(avg_probs, dtype=np.float64)
    f = np.asarray(probs, dtype=np.float64)
    if avg.shape != f.shape:
        raise ValueError(f"categorical_kl_gradient: avg_probs {avg.shape} and probs {f.shape} "
                         "must have the same shape")
    return -avg / f


def gaussian_kl_gradient(avg_mean, avg_log_std, mean, log_std):
    r"""k = grad KL(N(m_a, s_a^2) || N(m, s^2)) with respect to (mean, log_std), per sample.

    KL = sum_j [log s_j - log s_a,j + (s_a,j^2 + (m_a,j - m_j)^2) / (2 s_j^2) - 1/2], so
    dKL/dm = (m - m_a) / s^2 and dKL/dlog s = 1 - (s_a^2 + (m_a - m)^2) / s^2.  Arrays
    (N, d) (the log-stds broadcast); returns the (N, 2d) gradient [d/dmean, d/dlog_std].
    """
    mean = np.asarray(mean, dtype=np.float64)
    shape = mean.shape
    avg_mean = np.broadcast_to(np.asarray(avg_mean, dtype=np.float64), shape)
    log_std = np.broadcast_to(np.asarray(log_std, dtype=np.float64), shape)
    avg_log_std = np.broadcast_to(np.asarray(avg_log_std, dtype=np.float64), shape)
    var = np.exp(2.0 * log_std)
    spread = np.exp(2.0 * avg_log_std) + (avg_mean - mean) ** 2
    return np.concatenate([(mean - avg_mean) / var, 1.0 - spread / var], axis=-1)


def trust_region_projection(g, k, delta):
    r"""z* = g - max(0, (k^T g - delta) / ||k||^2) k, row by row (Wang et al. eq. 13).

    The solution of min_z 1/2 ||g - z||^2 subject to k^T z <= delta: g
    itself when it satisfies the constraint, else g moved along k onto
    k^T z = delta.  ``g``, ``k`` arrays (..., m) (per-sample gradients with
    respect to the policy's statistics); ``delta`` > 0.  A row with k = 0
    satisfies the constraint and is returned unchanged.  Returns (z*, the
    scale max(0, ...) per row).
    """
    where = "trust_region_projection"
    delta = _delta(delta, where)
    (g, k), _ = _c.vectors(where, g=g, k=k)
    k_dot_g = np.sum(k * g, axis=-1)
    k_norm2 = np.sum(k * k, axis=-1)
    excess = np.maximum(0.0, k_dot_g - delta)
    scale = np.divide(excess, k_norm2, out=np.zeros_like(excess), where=k_norm2 > 0)
    return g - scale[..., None] * k, scale


def statistics_surrogate(statistics, z):
    r"""(1/N) sum_i z_i^T phi_i (maximised): its gradient back-propagates the per-sample
    statistics gradients z (e.g. z*) through the network, (1/N) sum_i J_i^T z_i.

    ``statistics`` a Tensor (N, m) of the policy's statistics on the tape;
    ``z`` a plain array (N, m), held constant.
    """
    where = "statistics_surrogate"
    statistics = _c.differentiable(statistics, "statistics", where)
    z = _c.held_constant(z, "z", where, statistics.shape, statistics.dtype)
    return ops.sum(statistics * z) / statistics.shape[0]


# ------------------------------------------------------------------- the critic

def stochastic_dueling_q(values, advantage, sampled_advantages):
    r"""Q~(x, a) = V(x) + A(x, a) - 1/n sum_i A(x, u_i), u_i ~ pi(.|x) (Wang et al. eq. 14).

    ``values`` (N,), ``advantage`` (N,) = A(x, a) and ``sampled_advantages``
    (n, N) = A(x, u_i): Tensors (the critic learns through all three) or
    arrays.  In expectation over the u_i it is V + A - E_pi A.
    """
    where = "stochastic_dueling_q"
    values = _c.differentiable(values, "values", where)
    advantage = _c.differentiable(advantage, "advantage", where, values.shape)
    sampled = _c.differentiable(sampled_advantages, "sampled_advantages", where)
    if sampled.ndim != values.ndim + 1 or sampled.shape[1:] != values.shape:
        raise ValueError(f"{where}: sampled_advantages must have shape (n,) + {values.shape}; "
                         f"got {sampled.shape}")
    return values + advantage - ops.mean(sampled, axis=0)


def critic_loss(q_taken, q_ret):
    r"""1/2 E[(Q^ret - Q(x, a))^2] (minimised): the critic's regression to Q^ret
    (Wang et al. Algorithm 2; Weng: the L2 error (Q^ret - Q)^2, with a factor 1/2)."""
    where = "critic_loss"
    q_taken = _c.differentiable(q_taken, "q_taken", where)
    q_ret = _c.held_constant(q_ret, "q_ret", where, q_taken.shape, q_taken.dtype)
    return 0.5 * ops.mean(ops.square(q_ret - q_taken))


def dueling_value_target(values, q_ret, q_tilde, traces):
    r"""V's target V(x) + c (Q^ret - Q~(x, a)), held constant: 1/2 (target - V)^2 has the
    gradient -c (Q^ret - Q~) grad V of Algorithm 3's critic update."""
    shape = np.shape(values)
    where = "dueling_value_target"
    v = _c.held_constant(values, "values", where, shape, np.float64)
    q_ret = _c.held_constant(q_ret, "q_ret", where, shape, np.float64)
    q_tilde = _c.held_constant(q_tilde, "q_tilde", where, shape, np.float64)
    c = _c.held_constant(traces, "traces", where, shape, np.float64)
    return v + c * (q_ret - q_tilde)
