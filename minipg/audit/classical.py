r"""``minipg audit`` checks of the classical estimators: REINFORCE, actor-critic,
off-policy actor-critic and DPG, each at the three levels of
:mod:`minipg.audit.levels`.

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "Policy
Gradient Theorem", "REINFORCE", "Actor-Critic", "Off-Policy Policy Gradient"
and "DPG".  Papers: R. Sutton & A. Barto, *Reinforcement Learning: An
Introduction*, 2nd ed. (2018), secs. 13.2-13.5; P. Thomas, "Bias in natural
actor-critic algorithms", ICML 2014, and C. Nota & P. Thomas, "Is the policy
gradient a gradient?", AAMAS 2020 (REINFORCE without gamma^t); T. Degris,
M. White & R. Sutton, "Off-policy actor-critic", ICML 2012; D. Silver et al.,
"Deterministic policy gradient algorithms", ICML 2014, Theorem 1.  Exact
quantities: ``verification/FORMULAS.md`` (sections "Tabular MDP, softmax
policy", "Off-policy", "LQR, deterministic linear policy") and the beds of
:mod:`minipg.audit.beds`.

What each level's rows take
---------------------------
``gradcheck``
    the objective as a function of the policy parameters (theta; K for DPG)
    on a small seeded batch of the bed.  The off-policy objective holds the
    ratio rho = pi/b constant (not differentiated), so its gradient is not
    the derivative of its value; the row differentiates it with rho frozen
    at its value (:func:`frozen_ratio_objective`), as the estimator holds it.
``formula``
    the closed form of the document by hand: the linear-softmax score
    ``phi(s,a) - sum_b pi(b|s) phi(s,b)``; for DPG the chain rule through
    ``mu(x) = K x``.  The closed form is a sum of per-step terms, so the
    scale of the relative error is the largest sum of absolute per-step terms
    of one component (:func:`formula_from_terms`).
``exact``
    Hotelling's T^2 of the per-episode (per-sample) estimates of
    :mod:`minipg.audit.beds` against the exact gradient; each row also
    reports the T^2 of deliberately wrong variants (sign flip, missing
    gamma^t or I, missing ratio) on the same data, which must be far above
    the threshold.
"""

from __future__ import annotations

import numpy as np

from minipg.autodiff import Tensor, grad, ops
from minipg.estimators.actor_critic import actor_objective
from minipg.estimators.dpg import dpg_actor_objective
from minipg.estimators.off_policy import off_policy_actor_objective
from minipg.estimators.reinforce import (episode_discounts, episode_time_index,
                                         reinforce_objective)
from minipg.kernels import discounted_returns

from . import audit_check
from .beds import (actor_critic_estimates, continuing_bed, dpg_estimates, episodic_bed,
                   lqr_bed, lqr_q_of_action, off_policy_estimates, reinforce_estimates,
                   step_log_prob)
from .levels import exact_result, formula_result, gradcheck_function, relative_error
from .stats import hotelling_test, variance_comparison

__all__ = ["SAMPLE_SIZES", "formula_from_terms", "softmax_score_by_hand", "returns_by_hand",
           "frozen_ratio_objective", "reinforce_exact_checks", "off_policy_exact_check",
           "dpg_exact_check"]

# ================================================================ the audit checks

SAMPLE_SIZES = {  # (quick, full): episodes for the tabular beds, samples otherwise
    "reinforce": (10_000, 200_000),
    "actor_critic": (10_000, 200_000),
    "off_policy_ac": (20_000, 400_000),
    "dpg": (20_000, 200_000),
}


def _size(algorithm, full):
    return SAMPLE_SIZES[algorithm][1 if full else 0]


def formula_from_terms(autodiff, terms, what):
    """Level 2 against the closed form sum_t terms[t], relative to max_k sum_t |terms[t, k]|.

    The two sides add the same float64 terms in different orders, so they
    agree to ~n 1e-16 of that scale (1.0 at least, for all-small terms)."""
    scale = max(float(np.max(np.sum(np.abs(terms), axis=0))), 1.0)
    closed = terms.sum(axis=0)
    error = relative_error(np.asarray(autodiff).reshape(closed.shape), closed, scale)
    return formula_result(error, f"{what}; scale max_k sum_t|term|")


def softmax_score_by_hand(features, theta, states, actions):
    """pi by hand and grad log pi(a|s) = phi(s,a) - sum_b pi(b|s) phi(s,b), rows (N, d)."""
    logits = features @ theta
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    pi = e / e.sum(axis=1, keepdims=True)
    mean_phi = np.einsum("sb,sbd->sd", pi, features)
    return pi, features[states, actions] - mean_phi[states]


def returns_by_hand(rewards, episode, gamma):
    """G_t = sum_k gamma^k r_{t+k} within each episode, by a backward loop."""
    G = np.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if t == len(rewards) - 1 or episode[t + 1] != episode[t]:
            running = 0.0                                   # the episode ends after step t
        running = rewards[t] + gamma * running
        G[t] = running
    return G


# ----------------------------------------------------------------------- REINFORCE

@audit_check("reinforce", "reinforce_objective", "gradcheck")
def reinforce_gradcheck(full, rng):
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), 4, rng)
    G = discounted_returns(batch.rewards, batch.terminated, batch.truncated, mdp.gamma)
    disc = episode_discounts(batch.t, mdp.gamma)
    b = rng.standard_normal(len(G))

    def f(theta_t):
        lp = step_log_prob(policy.features, theta_t, batch.states, batch.actions)
        return reinforce_objective(lp, G, disc, b, batch.n_episodes)
    return gradcheck_function(f, [theta], "objective of theta, 4 episodes, gamma^t and "
                                          "baseline")


@audit_check("reinforce", "reinforce_objective", "formula")
def reinforce_formula(full, rng):
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), 20, rng)
    returns = discounted_returns(batch.rewards, batch.terminated, batch.truncated, mdp.gamma)
    t = episode_time_index(batch.terminated, batch.truncated)
    baseline = rng.standard_normal(len(returns))
    g = grad(lambda th: reinforce_objective(
        step_log_prob(policy.features, th, batch.states, batch.actions), returns,
        episode_discounts(t, mdp.gamma), baseline, batch.n_episodes))(theta)
    # (1/n) sum_t gamma^t (G_t - b_t) grad log pi, G_t and gamma^t by hand (S&B 13.3-13.4)
    G = returns_by_hand(batch.rewards, batch.episode, mdp.gamma)
    _, score = softmax_score_by_hand(policy.features, theta, batch.states, batch.actions)
    terms = (mdp.gamma ** batch.t * (G - baseline))[:, None] * score / batch.n_episodes
    return formula_from_terms(g, terms, "(1/n) sum gamma^t (G_t - b_t) grad log pi, linear "
                                        "softmax, 20 episodes")


def reinforce_exact_checks(n_episodes, rng, which=("gamma_t", "no_gamma_t", "baseline")):
    """The REINFORCE exact checks on one batch of the episodic bed.

    Returns a dict of Results for the names in ``which``: "gamma_t" (mean =
    grad J), "no_gamma_t" (mean = the eta_1-weighted quantity, and grad J
    rejected for it), "baseline" (exact V^pi baseline: mean = grad J and a
    smaller total variance than without it, same episodes)."""
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), n_episodes, rng)
    grad_J = mdp.policy_gradient(policy, theta)
    biased = mdp.reinforce_gradient_without_gamma_t(policy, theta)
    results = {}
    if "gamma_t" in which or "baseline" in which:
        with_t = reinforce_estimates(mdp, policy, theta, batch)
    if "gamma_t" in which:
        ok = hotelling_test(with_t, grad_J)
        flipped = hotelling_test(-with_t, grad_J)
        wrong_target = hotelling_test(with_t, biased)
        results["gamma_t"] = exact_result(
            ok, "exact grad J", f"; sign flip T^2 {flipped.t2:.3g}, vs the eta_1 quantity "
                                f"T^2 {wrong_target.t2:.3g}")
    if "no_gamma_t" in which:
        without_t = reinforce_estimates(mdp, policy, theta, batch, discounted=False)
        own = hotelling_test(without_t, biased)
        vs_grad = hotelling_test(without_t, grad_J)
        results["no_gamma_t"] = exact_result(
            own, "sum_s eta_1(s) sum_a grad pi Q_gamma",
            f"; the same data vs grad J: T^2 {vs_grad.t2:.3g} (pass needs it rejected)",
            passed=vs_grad.rejected)
    if "baseline" in which:
        V = mdp.value(policy.probs(theta))
        with_b = reinforce_estimates(mdp, policy, theta, batch, baseline=V)
        base_test = hotelling_test(with_b, grad_J)
        var = variance_comparison(with_b, with_t)
        results["baseline"] = exact_result(
            base_test, "exact grad J",
            f"; tr Cov ratio with/without V baseline {var.ratio:.3g} (paired z {var.z:.3g}, "
            f"one-sided {100 * var.confidence:g}% bound -{var.z_threshold:.3g}; pass needs "
            f"both)", passed=var.smaller)
    return results


@audit_check("reinforce", "reinforce_objective", "exact")
def reinforce_exact(full, rng):
    return reinforce_exact_checks(_size("reinforce", full), rng, ("gamma_t",))["gamma_t"]


@audit_check("reinforce", "reinforce (no gamma^t)", "exact")
def reinforce_without_gamma_t_exact(full, rng):
    return reinforce_exact_checks(_size("reinforce", full), rng, ("no_gamma_t",))["no_gamma_t"]


@audit_check("reinforce", "reinforce (V baseline)", "exact")
def reinforce_baseline_exact(full, rng):
    return reinforce_exact_checks(_size("reinforce", full), rng, ("baseline",))["baseline"]


# ---------------------------------------------------------------------- actor-critic

@audit_check("actor_critic", "actor_objective", "gradcheck")
def actor_critic_gradcheck(full, rng):
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), 4, rng)
    q = rng.standard_normal(len(batch.states))
    I = episode_discounts(batch.t, mdp.gamma)

    def f(theta_t):
        return actor_objective(step_log_prob(policy.features, theta_t, batch.states,
                                             batch.actions), q, I)
    return gradcheck_function(f, [theta], "objective of theta, 4 episodes, I = gamma^t")


@audit_check("actor_critic", "actor_objective", "formula")
def actor_critic_formula(full, rng):
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), 20, rng)
    q = rng.standard_normal(len(batch.states))
    I = episode_discounts(batch.t, mdp.gamma)
    g = grad(lambda th: actor_objective(
        step_log_prob(policy.features, th, batch.states, batch.actions), q, I))(theta)
    # (1/N) sum_t gamma^t Q_t grad log pi (Sutton & Barto 13.5 with Q in place of delta)
    _, score = softmax_score_by_hand(policy.features, theta, batch.states, batch.actions)
    terms = (mdp.gamma ** batch.t * q)[:, None] * score / len(q)
    return formula_from_terms(g, terms, "(1/N) sum I_t Q_t grad log pi, linear softmax, 20 "
                                        "episodes")


@audit_check("actor_critic", "actor_objective", "exact")
def actor_critic_exact(full, rng):
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), _size("actor_critic", full), rng)
    grad_J = mdp.policy_gradient(policy, theta)
    samples = actor_critic_estimates(mdp, policy, theta, batch)
    no_I = actor_critic_estimates(mdp, policy, theta, batch, discounted=False)
    ok = hotelling_test(samples, grad_J)
    missing = hotelling_test(no_I, grad_J)
    flipped = hotelling_test(-samples, grad_J)
    return exact_result(ok, "exact grad J (exact Q^pi critic, I = gamma^t)",
                        f"; without I: T^2 {missing.t2:.3g}, sign flip: T^2 {flipped.t2:.3g}")


# --------------------------------------------------------------- off-policy actor-critic

def frozen_ratio_objective(policy, theta0, behaviour_prob, q, states, actions):
    r"""The off-policy objective as a function of theta with rho frozen at theta0.

    off_policy_actor_objective holds rho = pi/b constant (it is not
    differentiated), so its gradient is NOT the derivative of its value in
    theta.  Passing ``log b = log pi_theta - log rho_0`` keeps rho = rho_0 at
    every theta, and the value's derivative is then exactly the estimator's
    gradient -- which gradcheck can test."""
    log_rho0 = (step_log_prob(policy.features, Tensor(theta0), states, actions).data
                - np.log(behaviour_prob))

    def f(theta_t):
        lp = step_log_prob(policy.features, theta_t, states, actions)
        return off_policy_actor_objective(lp, None, q, behaviour_log_prob=lp.data - log_rho0)
    return f


@audit_check("off_policy_ac", "off_policy_actor_objective", "gradcheck")
def off_policy_gradcheck(full, rng):
    mdp, policy, theta, behaviour, d_b = continuing_bed()
    states, actions = mdp.sample_state_actions(d_b, behaviour, 8, rng)
    q = rng.standard_normal(8)
    f = frozen_ratio_objective(policy, theta, behaviour[states, actions], q, states, actions)
    return gradcheck_function(f, [theta], "objective of theta with rho = pi/b held at its "
                                          "value (as the estimator holds it), 8 samples")


@audit_check("off_policy_ac", "off_policy_actor_objective", "formula")
def off_policy_formula(full, rng):
    mdp, policy, theta, behaviour, d_b = continuing_bed()
    states, actions = mdp.sample_state_actions(d_b, behaviour, 50, rng)
    q = rng.standard_normal(50)
    b = behaviour[states, actions]
    g = grad(lambda th: off_policy_actor_objective(
        step_log_prob(policy.features, th, states, actions), b, q))(theta)
    # (1/N) sum pi(a|s)/b(a|s) Q grad log pi (Degris et al. 2012, sec. 2)
    pi, score = softmax_score_by_hand(policy.features, theta, states, actions)
    terms = (pi[states, actions] / b * q)[:, None] * score / len(q)
    return formula_from_terms(g, terms, "(1/N) sum (pi/b) Q grad log pi, linear softmax, 50 "
                                        "samples")


def off_policy_exact_check(n, rng):
    """Off-policy exact check; the Result and the tests of the wrong targets."""
    mdp, policy, theta, behaviour, d_b = continuing_bed()
    states, actions = mdp.sample_state_actions(d_b, behaviour, n, rng)
    samples = off_policy_estimates(mdp, policy, theta, behaviour, states, actions)
    g = mdp.off_policy_gradient(policy, theta, d_b)
    scaled_grad_J = (1.0 - mdp.gamma) * mdp.policy_gradient(policy, theta)   # mu0 = d_pi
    scaled_grad_J_beta = (1.0 - mdp.gamma) * mdp.excursion_gradient(policy, theta, d_b)
    no_ratio = off_policy_estimates(mdp, policy, theta, behaviour, states, actions,
                                    importance_weighted=False)
    tests = {
        "g": hotelling_test(samples, g),
        "grad_J_pi": hotelling_test(samples, scaled_grad_J),
        "grad_J_beta": hotelling_test(samples, scaled_grad_J_beta),
        "no_ratio": hotelling_test(no_ratio, g),
        "sign_flip": hotelling_test(-samples, g),
    }
    result = exact_result(tests["g"], "g = sum_s d_b(s) sum_a grad pi Q^pi",
                          f"; (1-gamma) grad J_pi T^2 {tests['grad_J_pi'].t2:.3g}, (1-gamma) "
                          f"grad J_beta T^2 {tests['grad_J_beta'].t2:.3g}, no ratio T^2 "
                          f"{tests['no_ratio'].t2:.3g}")
    return result, tests


@audit_check("off_policy_ac", "off_policy_actor_objective", "exact")
def off_policy_exact(full, rng):
    return off_policy_exact_check(_size("off_policy_ac", full), rng)[0]


# ------------------------------------------------------------------------------- DPG

@audit_check("dpg", "dpg_actor_objective", "gradcheck")
def dpg_gradcheck(full, rng):
    lqr, K = lqr_bed()
    x = lqr.sample_states(K, 6, rng)

    def f(K_t):
        return dpg_actor_objective(lqr_q_of_action(lqr, K, x,
                                                   ops.matmul(x, ops.transpose(K_t))))
    return gradcheck_function(f, [K], "objective of K, mu(x) = K x, exact quadratic Q held "
                                      "fixed, 6 states")


@audit_check("dpg", "dpg_actor_objective", "formula")
def dpg_formula(full, rng):
    lqr, K = lqr_bed()
    x = lqr.sample_states(K, 50, rng)
    g = grad(lambda K_t: dpg_actor_objective(
        lqr_q_of_action(lqr, K, x, ops.matmul(x, ops.transpose(K_t)))))(K)
    # (1/N) sum grad_u Q(x, Kx) x^T, grad_u Q = -2 (H_ux x + H_uu u) (Silver et al. eq. 9)
    n = lqr.n_state
    H = lqr.q_matrix(K)
    u = x @ K.T
    grad_u_q = -2.0 * (x @ H[n:, :n].T + u @ H[n:, n:].T)
    terms = (grad_u_q[:, :, None] * x[:, None, :]).reshape(len(x), -1) / len(x)
    return formula_from_terms(g, terms, "(1/N) sum grad_u Q(x, Kx) x^T, linear mu, 50 states")


def dpg_exact_check(n, rng):
    """DPG exact check on the LQR bed; the Result and the tests of the wrong variants."""
    lqr, K = lqr_bed()
    x = lqr.sample_states(K, n, rng)          # normalised discounted distribution
    # E over the NORMALISED rho is (1 - gamma) grad J: divide to estimate grad_K J itself
    samples = dpg_estimates(lqr, K, x) / (1.0 - lqr.gamma)
    grad_J = lqr.return_gradient(K).reshape(-1)
    # with m < n the estimates M x x^T span m n - m(m-1)/2 dimensions: test in that span
    tests = {
        "grad_J": hotelling_test(samples, grad_J, span_only=True),
        "sign_flip": hotelling_test(-samples, grad_J, span_only=True),
        "unnormalised": hotelling_test(samples * (1.0 - lqr.gamma), grad_J, span_only=True),
    }
    result = exact_result(tests["grad_J"], "exact grad_K J (states ~ rho/|rho|, estimate / "
                                           "(1-gamma))",
                          f"; sign flip T^2 {tests['sign_flip'].t2:.3g}, without 1/(1-gamma) "
                          f"T^2 {tests['unnormalised'].t2:.3g}")
    return result, tests


@audit_check("dpg", "dpg_actor_objective", "exact")
def dpg_exact(full, rng):
    return dpg_exact_check(_size("dpg", full), rng)[0]
