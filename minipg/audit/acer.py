r"""Audit rows of ACER: Retrace, truncation with bias correction, the trust region and the
stochastic dueling network.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "ACER"; Wang et al.
2017 (eqs. 5, 9-14, Algorithms 2-3); Munos et al. 2016 (Retrace).  The estimators are
those of :mod:`minipg.estimators.acer` and the kernel :func:`minipg.kernels.retrace`, as
the algorithm calls them; formulas in ``verification/FORMULAS.md "Retrace and ACER"``.

gradcheck
    * the ACER policy terms, min(c, rho)(Q^ret - V) log pi(a|x) + sum_a [1 - c/rho(a)]_+
      pi (Q - V) log pi(a|x), through a linear-softmax policy (c = 1, rho on both sides
      of c);
    * the trust-region surrogate (1/N) sum z*^T phi with phi = softmax(phi(s) theta);
    * the critic: 1/2 (Q^ret - Q~)^2 through the stochastic dueling network's V, A(x, a)
      and A(x, u_i);
    * continuous ACER's sampled correction through a Gaussian's (mean, log-std).
formula
    * the bias-correction identity, exactly over all actions, for c in {0, 0.5, 1, 10,
      inf}: E_{a~mu}[truncated] + correction = E_{a~pi}[(Q - V) grad log pi];
    * with the exact Q^pi of a tabular MDP, the expected ACER policy gradient under the
      behaviour's state distribution d_mu equals sum_s d_mu(s) sum_a pi grad log pi A^pi;
    * k = grad KL(pi_avg || pi) in closed form (-f_avg / f; the Gaussian's) against the
      engine's gradient of the KL;
    * z* satisfies the optimality (KKT) conditions of min 1/2 ||g - z||^2 s.t. k^T z <=
      delta;
    * the expected Retrace target of the kernel, enumerated exactly over every segment,
      equals the T-step Retrace operator Q + sum_{t<T} (gamma P^{c mu})^t (T^pi Q - Q),
      and is a gamma-contraction around Q^pi (its modulus, computed exactly).
exact
    * the ACER policy gradient with exact Q^pi on (x, a) ~ d_mu mu: Hotelling's T^2 at
      99.9% against sum_s d_mu(s) sum_a pi grad log pi A^pi (without the correction term
      the same test rejects it);
    * the stochastic dueling network: Q~ unbiased for V + A - E_pi A (a Gaussian policy,
      a nonlinear A; E_pi A in closed form), Hotelling's T^2 at 99.9%;
    * Retrace: the Monte-Carlo mean of the kernel's Q^ret over sampled segments equals
      the T-step Retrace operator (Hotelling's T^2 at 99.9%).
"""

from __future__ import annotations

import itertools

import numpy as np

from ..autodiff import ops, value_and_grad
from ..distributions import Categorical, DiagGaussian
from ..envs.tabular import random_mdp
from ..estimators import acer as est
from ..kernels import retrace
from . import audit_check
from .beds import continuing_bed
from .levels import exact_result, formula_result, gradcheck_function, relative_error
from .stats import hotelling_test

__all__ = ["TRUNCATIONS", "linear_softmax_state", "bias_correction_error", "pair_gradients",
           "expected_acer_gradient", "acer_bed", "acer_sample_estimates", "kkt_error",
           "expected_retrace", "retrace_operator", "contraction_modulus",
           "dueling_samples", "dueling_target", "retrace_sample_targets"]

TRUNCATIONS = (0.0, 0.5, 1.0, 10.0, np.inf)            # c of the bias-correction identity
EXACT_SAMPLES = (20_000, 200_000)


# ------------------------------------------------------- truncation with bias correction

def linear_softmax_state(rng, n_actions=4, n_features=5):
    """One state of a linear-softmax policy: features phi (A, p), theta, a behaviour mu and
    a critic Q (A,), all random."""
    return (rng.standard_normal((n_actions, n_features)), rng.standard_normal(n_features),
            rng.dirichlet(np.ones(n_actions)), rng.standard_normal(n_actions))


def _policy_pieces(phi, theta, n, pi=None):
    """log pi (n, A) on the tape (one state, repeated on n rows) and pi (held constant: the
    given ``pi``, else pi at ``theta``)."""
    dist = Categorical(ops.sum(phi * theta, axis=-1))            # logits (A,)
    log_probs = ops.reshape(dist.log_probs, (1, -1)) + np.zeros((n, 1))
    return log_probs, np.exp(dist.log_probs.data) if pi is None else pi


def _truncated(phi, theta, mu, q, q_ret, actions, c, pi=None):
    """truncated_term per row (rows = taken actions), V = sum_a pi Q."""
    log_probs, pi = _policy_pieces(phi, theta, len(actions), pi)
    log_prob = ops.gather(log_probs, actions[:, None], axis=-1)[:, 0]
    return est.truncated_term(log_prob, pi[actions] / mu[actions], q_ret,
                              np.full(len(actions), pi @ q), c)


def _correction(phi, theta, mu, q, c, pi=None):
    """correction_term of the state (one row), V = sum_a pi Q."""
    log_probs, pi = _policy_pieces(phi, theta, 1, pi)
    return est.correction_term(log_probs, pi[None], mu[None], q[None], np.array([pi @ q]),
                               c)[0]


def _policy_terms(phi, theta, mu, q, q_ret, actions, c, correction=True, pi=None):
    """truncated_term + correction_term per row (one state, rows = taken actions)."""
    total = _truncated(phi, theta, mu, q, q_ret, actions, c, pi)
    return total + _correction(phi, theta, mu, q, c, pi) if correction else total


def bias_correction_error(phi, theta, mu, q, c, correction=True):
    """Relative error of E_{a~mu}[grad truncated(a)] + grad correction against
    E_{a~pi}[(Q(a) - V) grad log pi(a)], the correction summed over all actions (the
    truncated term's Q^ret at its expectation Q(a)); ``correction=False`` leaves the
    correction out (a deliberate mistake, for the tests)."""
    actions = np.arange(len(q))

    def expected(th):
        total = ops.sum(_truncated(phi, th, mu, q, q, actions, c) * mu)
        return total + _correction(phi, th, mu, q, c) if correction else total
    _, g = value_and_grad(expected)(theta)
    logits = phi @ theta
    pi = np.exp(logits - logits.max())
    pi /= pi.sum()
    psi = phi - pi @ phi                                           # grad log pi(a), (A, p)
    weights = pi * (q - pi @ q)
    closed = weights @ psi                                         # E_pi[(Q - V) psi]
    return relative_error(g, closed, scale=max(float(np.abs(weights) @ np.abs(psi).max(axis=1)),
                                               1e-300))


def acer_bed(seed=0):
    """(mdp, policy, theta, mu, d_mu): the continuing 5-state bed of
    :func:`minipg.audit.beds.continuing_bed` with a random behaviour mu (Dirichlet rows)
    and d_mu its stationary distribution, the states a replay of mu's data holds."""
    mdp, policy, theta, _, _ = continuing_bed(seed)
    mu = np.random.default_rng(seed + 10).dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)
    return mdp, policy, theta, mu, mdp.stationary_distribution(mu)


def pair_gradients(mdp, policy, theta, mu, c, correction=True):
    """G[s, a] = grad_theta of truncated(s, a) + correction(s) with the exact Q^pi (Q^ret at
    its expectation Q^pi(s, a)), shape (S, A, d)."""
    q_pi = mdp.q_value(policy.probs(theta))
    out = np.zeros((mdp.n_states, mdp.n_actions, len(theta)))
    actions = np.arange(mdp.n_actions)
    for s in range(mdp.n_states):
        phi = policy.features[s]
        for a in actions:
            def fn(th):
                return _policy_terms(phi, th, mu[s], q_pi[s], q_pi[s, [a]], np.array([a]), c,
                                     correction)[0]
            out[s, a] = value_and_grad(fn)(np.asarray(theta, dtype=np.float64))[1]
    return out


def expected_acer_gradient(mdp, policy, theta, mu, d_mu, c, correction=True):
    """sum_s d_mu(s) sum_a mu(a|s) G[s, a] (:func:`pair_gradients`), exactly."""
    G = pair_gradients(mdp, policy, theta, mu, c, correction)
    return np.einsum("s,sa,sad->d", d_mu, mu, G)


def acer_sample_estimates(mdp, policy, theta, mu, d_mu, n, rng, c=1.0, correction=True):
    """n i.i.d. per-sample ACER gradients G[s, a], (s, a) ~ d_mu mu; shape (n, d)."""
    G = pair_gradients(mdp, policy, theta, mu, c, correction)
    states, actions = mdp.sample_state_actions(d_mu, mu, n, rng)
    return G[states, actions]


# ------------------------------------------------------------------ the trust region

def kkt_error(g, k, delta, z):
    """The largest violation of the optimality conditions of min 1/2 ||g - z||^2 s.t.
    k^T z <= delta, relative to the scale of g and k: feasibility k^T z <= delta; g - z =
    lam k with lam >= 0; complementary slackness lam (k^T z - delta) = 0."""
    g, k, z = (np.atleast_2d(np.asarray(x, dtype=np.float64)) for x in (g, k, z))
    scale = np.maximum(np.linalg.norm(g, axis=-1) * np.linalg.norm(k, axis=-1) + delta, 1e-300)
    k2 = np.sum(k * k, axis=-1)
    lam = np.sum((g - z) * k, axis=-1) / k2                          # the multiplier
    parallel = np.linalg.norm(g - z - lam[:, None] * k, axis=-1) / np.maximum(
        np.linalg.norm(g, axis=-1), 1e-300)
    slack = np.sum(k * z, axis=-1) - delta
    return float(np.max(np.concatenate([np.maximum(slack, 0) / scale, parallel,
                                        np.maximum(-lam, 0) * np.sqrt(k2) / np.maximum(
                                            np.linalg.norm(g, axis=-1), 1e-300),
                                        np.abs(lam * slack) / scale])))


# ------------------------------------------------------------------------ Retrace

def expected_retrace(mdp, pi, mu, Q, T, trace_fn=None):
    """E_mu[Q^ret_0 | x_0 = s, a_0 = a] for every (s, a) of a continuing MDP, exactly: every
    segment (x_0, a_0, ..., x_T) is enumerated with its probability under P and mu, the
    kernel runs on all of them at once (one column each), the targets are averaged.
    ``trace_fn(pi, mu)`` gives the traces (default min(1, pi/mu))."""
    S, A = Q.shape
    V = np.sum(pi * Q, axis=1)
    c = np.minimum(1.0, pi / mu) if trace_fn is None else trace_fn(pi, mu)
    out = np.zeros((S, A))
    later = list(itertools.product(range(S), range(A)))
    for s0, a0 in itertools.product(range(S), range(A)):
        paths = [((s0, a0),) + mid + ((last, 0),)
                 for mid in itertools.product(later, repeat=T - 1) for last in range(S)]
        states = np.array([[p[t][0] for t in range(T + 1)] for p in paths]).T  # (T + 1, n)
        actions = np.array([[p[t][1] for t in range(T)] for p in paths]).T      # (T, n)
        prob = np.ones(len(paths))
        for t in range(T):
            prob *= mdp.P[states[t], actions[t], states[t + 1]]
            if t + 1 < T:
                prob *= mu[states[t + 1], actions[t + 1]]
        out[s0, a0] = prob @ _kernel_targets(mdp, states, actions, Q, V, c)[0]
    return out


def _kernel_targets(mdp, states, actions, Q, V, c):
    """The kernel's Q^ret on segments (states (T + 1, n), actions (T, n)), no episode ends."""
    T = actions.shape[0]
    now = states[:T]
    shape = actions.shape
    last = np.arange(T)[:, None] == T - 1
    return retrace(mdp.R[now, actions], Q[now, actions], V[now],
                   np.where(last, V[states[1:]], 0.0), c[now, actions],
                   np.zeros(shape, bool), np.zeros(shape, bool), mdp.gamma)


def retrace_operator(mdp, pi, mu, Q, T):
    """Q + sum_{t<T} (gamma P^{c mu})^t (T^pi Q - Q) with c = min(1, pi/mu), on (s, a) pairs
    (verification/FORMULAS.md "Retrace and ACER/Retrace", truncated after T steps)."""
    S, A = Q.shape
    c = np.minimum(1.0, pi / mu)
    P_cmu = np.einsum("sat,tb->satb", mdp.P, mu * c).reshape(S * A, S * A)
    bellman = (mdp.R + mdp.gamma * mdp.P @ np.sum(pi * Q, axis=1) - Q).reshape(-1)
    total, term = np.zeros(S * A), bellman
    for _ in range(T):
        total += term
        term = mdp.gamma * P_cmu @ term
    return Q + total.reshape(S, A)


def contraction_modulus(mdp, pi, mu, T, trace_fn=None):
    """max_i sum_j |M_ij| for the linear part M of Q -> E[Q^ret](Q): the smallest L with
    ||RQ - Q^pi||_inf <= L ||Q - Q^pi||_inf for every Q."""
    q_pi = mdp.q_value(pi)
    n = q_pi.size
    columns = [(expected_retrace(mdp, pi, mu, q_pi + np.eye(n)[i].reshape(q_pi.shape), T,
                                 trace_fn) - q_pi).ravel() for i in range(n)]
    return float(np.abs(np.array(columns).T).sum(axis=1).max())


def retrace_sample_targets(mdp, pi, mu, Q, T, n, rng):
    """n i.i.d. vectors of the kernel's Q^ret_0, one segment sampled under P and mu from
    every (s, a) pair; shape (n, S * A)."""
    S, A = Q.shape
    V = np.sum(pi * Q, axis=1)
    c = np.minimum(1.0, pi / mu)
    starts = np.tile(np.arange(S * A), n)
    states = np.zeros((T + 1, starts.size), dtype=np.int64)
    actions = np.zeros((T, starts.size), dtype=np.int64)
    states[0], actions[0] = starts // A, starts % A
    P_cdf = np.cumsum(mdp.P, axis=-1)
    mu_cdf = np.cumsum(mu, axis=-1)
    for t in range(T):
        u = rng.random(starts.size)
        states[t + 1] = np.minimum((P_cdf[states[t], actions[t]] <= u[:, None]).sum(-1), S - 1)
        if t + 1 < T:
            u = rng.random(starts.size)
            actions[t + 1] = np.minimum((mu_cdf[states[t + 1]] <= u[:, None]).sum(-1), A - 1)
    return _kernel_targets(mdp, states, actions, Q, V, c)[0].reshape(n, S * A)


def _retrace_bed(seed=0):
    rng = np.random.default_rng(seed)
    mdp = random_mdp(3, 2, seed=seed, gamma=0.9)
    pi, mu = rng.dirichlet(np.ones(2), size=3), rng.dirichlet(np.ones(2), size=3)
    Q = mdp.q_value(pi) + rng.normal(scale=3.0, size=(3, 2))
    return mdp, pi, mu, Q


# ------------------------------------------------------- the stochastic dueling network

DUELING = dict(mean=0.4, std=0.7, value=0.3, actions=np.array([-1.0, 0.2, 1.5]), n=5)


def _advantage(a):
    """A nonlinear A(x, a) of a one-dimensional action: sin(2a) + a^2 / 2."""
    return np.sin(2.0 * a) + 0.5 * a * a


def dueling_target():
    """V + A(a) - E_pi A for the actions of DUELING; E_pi A in closed form for pi = N(m, s^2):
    E sin(2a) = sin(2m) exp(-2 s^2), E a^2 = m^2 + s^2."""
    m, s = DUELING["mean"], DUELING["std"]
    expected_a = np.sin(2 * m) * np.exp(-2 * s * s) + 0.5 * (m * m + s * s)
    return DUELING["value"] + _advantage(DUELING["actions"]) - expected_a


def dueling_samples(n_samples, rng, wrong=False):
    """n_samples replicates of Q~(x, a) for the actions of DUELING, each action with its own
    u_i ~ pi (n = DUELING['n']); ``wrong``: A at the mean of the u_i instead of the mean of
    A."""
    m, s, k = DUELING["mean"], DUELING["std"], DUELING["n"]
    actions = DUELING["actions"]
    u = m + s * rng.standard_normal((k, n_samples, len(actions)))
    values = np.full((n_samples, len(actions)), DUELING["value"])
    advantage = np.broadcast_to(_advantage(actions), values.shape)
    sampled = np.broadcast_to(_advantage(u), (k,) + values.shape)
    if wrong:
        sampled = np.broadcast_to(_advantage(u.mean(axis=0, keepdims=True)), sampled.shape)
    return est.stochastic_dueling_q(values, advantage, sampled).data


# ----------------------------------------------------------------- level 1: gradcheck
@audit_check("acer", "truncated + correction terms", "gradcheck")
def acer_policy_gradcheck(full, rng):
    phi, theta, mu, q = linear_softmax_state(rng)
    actions = rng.integers(0, len(q), size=6)
    q_ret = rng.standard_normal(6)
    logits = phi @ theta
    pi = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()   # held constant
    return gradcheck_function(
        lambda th: ops.sum(_policy_terms(phi, th, mu, q, q_ret, actions, 1.0, pi=pi)), [theta],
        "sum of min(c, rho)(Q^ret - V) log pi + sum_a [1 - c/rho]_+ pi (Q - V) log pi, "
        "linear softmax, c = 1")


@audit_check("acer", "statistics_surrogate (z*)", "gradcheck")
def acer_surrogate_gradcheck(full, rng):
    phi = rng.standard_normal((6, 4, 5))
    theta = rng.standard_normal(5)
    z = rng.standard_normal((6, 4))
    return gradcheck_function(
        lambda th: est.statistics_surrogate(Categorical(ops.sum(phi * th, axis=-1)).probs, z),
        [theta], "(1/N) sum z*^T softmax(phi theta), z* held constant")


@audit_check("acer", "critic_loss (Q~, SDN)", "gradcheck")
def acer_critic_gradcheck(full, rng):
    v, a, au = rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal((5, 6))
    q_ret = rng.standard_normal(6)
    return gradcheck_function(
        lambda v_, a_, au_: est.critic_loss(est.stochastic_dueling_q(v_, a_, au_), q_ret),
        [v, a, au], "1/2 (Q^ret - V - A(x, a) + mean_i A(x, u_i))^2")


@audit_check("acer", "sampled_correction_term", "gradcheck")
def acer_sampled_correction_gradcheck(full, rng):
    mean, log_std = rng.standard_normal((6, 2)), 0.3 * rng.standard_normal((6, 2))
    sampled = rng.standard_normal((6, 2))
    rho = rng.uniform(0.2, 5.0, size=6)
    q_s, v = rng.standard_normal(6), rng.standard_normal(6)
    return gradcheck_function(
        lambda m, ls: ops.sum(est.sampled_correction_term(
            DiagGaussian(m, ls).log_prob(sampled), rho, q_s, v, 1.0)),
        [mean, log_std], "[1 - c/rho']_+ (Q~(x, a') - V) log N(a'; mean, exp(log_std))")


# ----------------------------------------------------------------- level 2: formula
@audit_check("acer", "bias correction identity", "formula")
def acer_identity_formula(full, rng):
    worst = 0.0
    for _ in range(10 if full else 3):
        state = linear_softmax_state(rng)
        worst = max(worst, max(bias_correction_error(*state, c) for c in TRUNCATIONS))
    return formula_result(worst, "E_mu[truncated] + correction = E_pi[(Q - V) grad log pi], "
                                 "exact over actions, c in {0, 0.5, 1, 10, inf}")


@audit_check("acer", "expected ACER gradient (Q^pi)", "formula")
def acer_expected_gradient_formula(full, rng):
    mdp, policy, theta, mu, d_mu = acer_bed()
    target = mdp.weighted_policy_gradient(policy, theta, d_mu)
    worst = max(relative_error(expected_acer_gradient(mdp, policy, theta, mu, d_mu, c),
                               target) for c in TRUNCATIONS)
    wrong = relative_error(expected_acer_gradient(mdp, policy, theta, mu, d_mu, 1.0, False),
                           target)
    return formula_result(worst, f"sum_s d_mu sum_a mu G = sum_s d_mu sum_a pi psi A^pi, "
                                 f"5-state MDP, c in {{0, 0.5, 1, 10, inf}}; without the "
                                 f"correction {wrong:.2g}")


@audit_check("acer", "KL gradient k", "formula")
def acer_k_formula(full, rng):
    worst = 0.0
    for _ in range(5 if full else 2):
        avg, f = rng.dirichlet(np.ones(4), size=3), rng.dirichlet(np.ones(4), size=3)
        _, g = value_and_grad(lambda x: ops.sum(avg * (np.log(avg) - ops.log(x))))(f)
        worst = max(worst, relative_error(est.categorical_kl_gradient(avg, f), g))
        m_a, m, ls_a, ls = rng.standard_normal((4, 3, 2))

        def kl(mean, log_std):
            return ops.sum(DiagGaussian(m_a, ls_a).kl(DiagGaussian(mean, log_std)))
        _, (gm, gs) = value_and_grad(kl, argnums=(0, 1))(m, ls)
        worst = max(worst, relative_error(est.gaussian_kl_gradient(m_a, ls_a, m, ls),
                                          np.concatenate([gm, gs], axis=-1)))
    return formula_result(worst, "k = -f_avg / f and the Gaussian's (m - m_a)/s^2, 1 - (s_a^2 "
                                 "+ (m_a - m)^2)/s^2 vs the engine's gradient of the KL")


@audit_check("acer", "trust_region_projection (z*)", "formula")
def acer_trust_region_formula(full, rng):
    g, k = rng.standard_normal((2, 200 if full else 50, 4))
    delta = rng.uniform(0.01, 2.0)
    z, scale = est.trust_region_projection(g, k, delta)
    active = float(np.mean(scale > 0))
    return formula_result(kkt_error(g, k, delta, z), f"z* = g - max(0, (k^T g - delta) / "
                          f"||k||^2) k meets the KKT conditions ({active:.0%} of rows active)",
                          passed=0 < active < 1)


@audit_check("acer", "retrace (kernel, expected)", "formula")
def acer_retrace_formula(full, rng):
    mdp, pi, mu, Q = _retrace_bed(int(rng.integers(0, 1000)))
    error = relative_error(expected_retrace(mdp, pi, mu, Q, 3), retrace_operator(mdp, pi, mu,
                                                                                  Q, 3))
    modulus = contraction_modulus(mdp, pi, mu, 3)
    return formula_result(error, f"E_mu[Q^ret] over every 3-step segment = Q + sum_t (gamma "
                                 f"P^(c mu))^t (T^pi Q - Q); contraction modulus "
                                 f"{modulus:.3f} <= gamma {mdp.gamma}",
                          passed=modulus <= mdp.gamma)


# ----------------------------------------------------------------- level 3: exact
@audit_check("acer", "ACER policy gradient (Q^pi)", "exact")
def acer_gradient_exact(full, rng):
    mdp, policy, theta, mu, d_mu = acer_bed()
    n = EXACT_SAMPLES[full]
    target = mdp.weighted_policy_gradient(policy, theta, d_mu)
    samples = acer_sample_estimates(mdp, policy, theta, mu, d_mu, n, rng, c=1.0)
    wrong = hotelling_test(acer_sample_estimates(mdp, policy, theta, mu, d_mu, n, rng, c=1.0,
                                                 correction=False), target)
    return exact_result(hotelling_test(samples, target), "sum_s d_mu sum_a pi psi A^pi",
                        f" ((x, a) ~ d_mu mu, c = 1, 5-state MDP); without the correction "
                        f"T^2 {wrong.t2:.3g}")


@audit_check("acer", "stochastic_dueling_q (Q~)", "exact")
def acer_dueling_exact(full, rng):
    n = EXACT_SAMPLES[full]
    target = dueling_target()
    wrong = hotelling_test(dueling_samples(n, rng, wrong=True), target)
    return exact_result(hotelling_test(dueling_samples(n, rng), target), "V + A - E_pi A",
                        f" (N(0.4, 0.7^2), A = sin 2a + a^2/2, n = 5); A at the mean action "
                        f"T^2 {wrong.t2:.3g}")


@audit_check("acer", "retrace (kernel, sampled)", "exact")
def acer_retrace_exact(full, rng):
    mdp, pi, mu, Q = _retrace_bed(0)
    samples = retrace_sample_targets(mdp, pi, mu, Q, 3, EXACT_SAMPLES[full], rng)
    return exact_result(hotelling_test(samples, retrace_operator(mdp, pi, mu, Q, 3).ravel()),
                        "the 3-step Retrace operator", " (3-state MDP, every (s, a) start)")
