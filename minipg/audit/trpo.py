r"""Audit rows of TRPO: the surrogate, the Fisher-vector product and the natural gradient.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "TRPO";
Schulman et al. 2015 (eq. 14, Appendix C).  The estimators are those of
:mod:`minipg.estimators.trpo`, as the algorithm calls them.  What each row takes:

gradcheck
    the surrogate L(theta) = mean(r A), r = exp(log pi_theta - log pi_old),
    through a linear-softmax policy pi(a|s) ∝ exp(theta^T phi(s,a)), at a
    theta away from theta_old (ratios != 1).
formula
    * the surrogate's gradient, by hand: (1/N) sum A r psi, psi = grad log
      pi(a|s) = phi(s,a) - sum_b pi(b|s) phi(s,b);
    * the engine's F v (:class:`~minipg.estimators.trpo.FisherOperator`)
      against the closed form F = (1/N) sum_i sum_a pi(a|s_i) psi_ia psi_ia^T
      times v (the Fisher is E[psi psi^T], ``verification/FORMULAS.md``
      "Tabular MDP/Fisher");
    * the natural gradient on the exact tabular bed with tabular softmax
      logits: conjugate gradient over the engine's F v (d-weighted) reaches
      (A - mean_a A) / (1 - gamma) (FORMULAS.md "Tabular MDP/Fisher").
exact
    * the surrogate at theta = theta_old with the exact advantages A^pi,
      (s, a) ~ eta pi / Z: Z times its per-sample gradients has mean grad J
      (Hotelling's T^2 at 99.9%), as the vanilla policy gradient must;
    * the engine's F v on states s ~ d: each state's J_s^T M_s J_s v has mean
      F v with F the exact d-weighted Fisher of the bed (Hotelling's T^2 at 99.9%).
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, ops, value_and_grad
from ..distributions import Categorical
from ..envs.tabular import LinearSoftmaxPolicy, TabularSoftmaxPolicy, random_mdp
from ..estimators.trpo import FisherOperator, conjugate_gradient, surrogate_objective
from . import audit_check
from .beds import split_gradient
from .levels import exact_result, formula_result, gradcheck_function, relative_error
from .onpolicy import (EXACT_SAMPLES, exact_bed, exact_gradient_result, linear_softmax_batch,
                       linear_softmax_distribution)
from .stats import hotelling_test

__all__ = ["surrogate_closed_form", "fisher_closed_form", "tabular_natural_gradient_error",
           "surrogate_estimates_at_theta_old", "fisher_product_estimates"]


def _log_prob(phi, theta, actions):
    return linear_softmax_distribution(phi, theta).log_prob(actions)


def _batch(rng):
    """A linear-softmax batch, advantages and log pi_old with ratios in [0.7, 1.3]."""
    phi, _, theta, _, actions = linear_softmax_batch(rng)
    pi = LinearSoftmaxPolicy(phi).probs(theta)
    log_prob = np.log(pi[np.arange(len(actions)), actions])
    log_prob_old = log_prob - np.log(rng.uniform(0.7, 1.3, size=len(actions)))
    advantages = rng.standard_normal(len(actions))
    return phi, theta, actions, log_prob_old, advantages


def surrogate_closed_form(phi, theta, actions, log_prob_old, advantages):
    """grad L = (1/N) sum_i A_i r_i psi_i (linear softmax), by hand."""
    policy = LinearSoftmaxPolicy(phi)
    pi, psi = policy.probs(theta), policy.grad_log_prob(theta)
    rows = np.arange(len(actions))
    ratio = pi[rows, actions] / np.exp(log_prob_old)
    return (advantages * ratio) @ psi[rows, actions] / len(actions)


def fisher_closed_form(phi, theta):
    """F = (1/N) sum_i sum_a pi(a|s_i) psi_ia psi_ia^T (linear softmax), by hand."""
    return LinearSoftmaxPolicy(phi).fisher_matrix(theta, np.ones(len(phi))) / len(phi)


def _fisher_operator(phi, theta, damping=0.0):
    leaf = Tensor(np.array(theta, dtype=np.float64), requires_grad=True)
    return FisherOperator(lambda: ops.sum(phi * leaf, axis=-1), [leaf],
                          Categorical.fisher_metric, damping)


def tabular_natural_gradient_error(seed, gamma=0.9, S=5, A=3, iterations=None):
    """max |x_CG - (A - mean_a A) / (1 - gamma)| / max |(A - mean_a A) / (1 - gamma)| on a
    random continuing MDP with tabular softmax logits: x_CG is conjugate gradient over the
    engine's F v (the batch of all states, each weighted by d(s)) solving F x = grad J, with
    ``iterations`` steps (default 4 S A, far more than CG needs in exact arithmetic)."""
    mdp = random_mdp(S, A, seed=seed, gamma=gamma)
    policy = TabularSoftmaxPolicy(S, A)
    theta = np.random.default_rng(seed + 100).normal(size=S * A)
    pi = policy.probs(theta)
    adv = mdp.advantage(pi)
    expected = ((adv - adv.mean(axis=1, keepdims=True)) / (1 - gamma)).ravel()
    d = mdp.state_distribution(pi)
    leaf = Tensor(theta.copy(), requires_grad=True)

    def metric(logits, u):                           # the batch mean over states, d-weighted
        return Categorical.fisher_metric(logits, u) * (S * d)[:, None]
    F = FisherOperator(lambda: leaf.reshape(S, A), [leaf], metric)
    x = conjugate_gradient(F, mdp.policy_gradient(policy, theta), iterations or 4 * S * A).x
    return relative_error(x, expected)


def surrogate_estimates_at_theta_old(mdp, policy, theta, states, actions):
    """Per-sample gradients of L at theta = theta_old with A = A^pi, shape (n, d)
    (split by the chain rule at ratio 1)."""
    pi = policy.probs(theta)
    advantages = mdp.advantage(pi)[states, actions]
    log_prob_old = np.log(pi[states, actions])                    # theta_old = theta
    n = len(states)

    def fn(log_prob):
        return surrogate_objective(log_prob, log_prob_old, advantages)
    return split_gradient(fn, policy, theta, states, actions, np.arange(n), n, scale=n,
                          check_linear=False)


def fisher_product_estimates(policy, theta, states, v):
    """The engine's F v on each sampled state alone (one row per sample), shape (n, d):
    J_s^T M_s J_s v, computed once per distinct state."""
    per_state = {}
    for s in np.unique(states):
        phi = policy.features[s][None]                            # a batch of one state
        per_state[s] = _fisher_operator(phi, theta)(v)
    return np.array([per_state[s] for s in states])


# ----------------------------------------------------------------- level 1: gradcheck
@audit_check("trpo", "surrogate_objective (L)", "gradcheck")
def trpo_surrogate_gradcheck(full, rng):
    phi, theta, actions, lpo, adv = _batch(rng)
    return gradcheck_function(lambda th: surrogate_objective(_log_prob(phi, th, actions), lpo,
                                                             adv),
                              [theta], "L = mean(r A) through a linear-softmax policy, r != 1")


# ----------------------------------------------------------------- level 2: formula
@audit_check("trpo", "surrogate_objective (L)", "formula")
def trpo_surrogate_formula(full, rng):
    worst = 0.0
    for _ in range(20 if full else 5):
        phi, theta, actions, lpo, adv = _batch(rng)
        _, g = value_and_grad(lambda th: surrogate_objective(_log_prob(phi, th, actions), lpo,
                                                             adv))(theta)
        worst = max(worst, relative_error(g, surrogate_closed_form(phi, theta, actions, lpo,
                                                                   adv)))
    return formula_result(worst, "grad L = mean A r psi, linear softmax")


@audit_check("trpo", "FisherOperator (F v)", "formula")
def trpo_fisher_formula(full, rng):
    worst = 0.0
    for _ in range(20 if full else 5):
        phi, theta, _, _, _ = _batch(rng)
        v = rng.standard_normal(theta.size)
        worst = max(worst, relative_error(_fisher_operator(phi, theta)(v),
                                          fisher_closed_form(phi, theta) @ v))
    return formula_result(worst, "F v = mean_i sum_a pi psi psi^T v, linear softmax")


@audit_check("trpo", "CG natural gradient", "formula")
def trpo_natural_gradient_formula(full, rng):
    seeds = rng.integers(0, 2**31 - 1, size=10 if full else 3)
    worst = max(tabular_natural_gradient_error(int(s)) for s in seeds)
    return formula_result(worst, "CG over the engine's F v = (A - mean_a A) / (1 - gamma), "
                                 "tabular softmax, random 5-state MDPs")


# ----------------------------------------------------------------- level 3: exact
@audit_check("trpo", "surrogate_objective (L)", "exact")
def trpo_surrogate_exact(full, rng):
    return exact_gradient_result(surrogate_estimates_at_theta_old, full, rng,
                                 "L at theta_old with A^pi")


@audit_check("trpo", "FisherOperator (F v)", "exact")
def trpo_fisher_exact(full, rng):
    mdp, policy, theta = exact_bed()
    pi = policy.probs(theta)
    d = mdp.state_distribution(pi)
    states, _ = mdp.sample_state_actions(d, pi, EXACT_SAMPLES[full], rng)
    v = np.random.default_rng(0).standard_normal(theta.size)
    samples = fisher_product_estimates(policy, theta, states, v)
    F = mdp.fisher_matrix(policy, theta)                          # d-weighted, exact
    uniform = np.mean([fisher_product_estimates(policy, theta, np.array([s]), v)[0]
                       for s in np.flatnonzero(d > 0)], axis=0)
    wrong = hotelling_test(samples, uniform)
    return exact_result(hotelling_test(samples, F @ v), "exact F v",
                        f" (s ~ d, 6-state MDP, linear softmax); against the state-uniform "
                        f"Fisher T^2 {wrong.t2:.3g}")
