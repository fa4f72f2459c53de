"""Tests of the exact-gradient test beds: minipg.envs.tabular and minipg.envs.lqr.

What is checked, and against what (never against our own earlier output):
* exact gradients against central finite differences of the exact objective
  (float64, eps = 1e-6);
* closed forms derived by hand here (two-state MDP by Cramer's rule, Sutton &
  Barto's short corridor, the scalar discounted Riccati equation);
* defining equations (Bellman, flow, Lyapunov, stationarity) and independent
  algorithms (value iteration, power iteration, sigma-point expectations);
* samplers and gymnasium environments against the exact means, by z-tests at a
  stated confidence level with fixed seeds; each such test is paired with a
  deliberately wrong quantity that the same check rejects.

Finite-difference tolerance (CONTRIBUTING.md "Test tolerances"): the central
difference error is about eps^2 |f'''| / 6 + cond * macheps |f| / eps, i.e.
~1e-12 + ~1e-9 for the |f| <= 100 and condition numbers <= 40 drawn here, so
``rtol = 1e-6`` with ``atol = 1e-7 * max(1, |f|)`` leaves a margin of ~100.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from minipg.distributions import Categorical
from minipg.envs.lqr import LQR, LQREnv, lqr_1d, lqr_2d, random_lqr
from minipg.envs.tabular import (
    LinearSoftmaxPolicy,
    TabularMDP,
    TabularMDPEnv,
    TabularSoftmaxPolicy,
    mean_kl,
    one_hot_features,
    random_features,
    random_mdp,
    short_corridor,
    short_corridor_features,
    two_state_mdp,
)

EPS = 1e-6
# Two-sided 99.9% normal quantile (3.29): a correct sampler fails a single
# z-test with probability 0.001; the seeds are fixed, so the outcome is too.
Z_999 = norm.ppf(1 - 0.001 / 2)

seeds = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def central_difference_gradient(f, x, eps=EPS):
    """Numerical gradient of a scalar function of a flat or matrix-shaped array x."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        grad[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


def assert_fd_close(analytic, numeric, value_scale):
    np.testing.assert_allclose(
        analytic, numeric, rtol=1e-6, atol=1e-7 * max(1.0, abs(value_scale))
    )


def z_score(samples, expected):
    """(sample mean - expected) / standard error."""
    samples = np.asarray(samples, dtype=np.float64)
    return (samples.mean() - expected) / (samples.std(ddof=1) / np.sqrt(samples.size))


def random_theta(n, seed):
    return np.random.default_rng(seed).standard_normal(n)


def policy_pair(mdp, kind, seed):
    """A softmax policy of the given kind on ``mdp`` and a random parameter vector."""
    if kind == "tabular":
        policy = TabularSoftmaxPolicy(mdp.n_states, mdp.n_actions)
    else:
        policy = LinearSoftmaxPolicy(random_features(mdp.n_states, mdp.n_actions, 3, seed + 1))
    return policy, random_theta(policy.n_params, seed + 2)


# Random MDPs: continuing (gamma < 1) or episodic (gamma <= 1, one terminal state).
@st.composite
def mdps(draw, episodic=None, gammas=(0.5, 0.9), max_states=6, max_actions=4):
    seed = draw(seeds)
    n_states = draw(st.integers(2, max_states))
    n_actions = draw(st.integers(2, max_actions))
    is_episodic = draw(st.booleans()) if episodic is None else episodic
    if is_episodic:
        gamma = draw(st.sampled_from((0.9, 1.0)))
        return random_mdp(n_states + 1, n_actions, seed, gamma=gamma, n_terminal=1), seed
    return random_mdp(n_states, n_actions, seed, gamma=draw(st.sampled_from(gammas))), seed


# ===========================================================================
# Tabular MDP: exact values and gradients
# ===========================================================================


@given(mdps(), st.sampled_from(["tabular", "linear"]))
def test_policy_gradient_matches_finite_differences(mdp_seed, kind):
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, kind, seed)
    J = lambda th: mdp.expected_return(policy.probs(th))  # noqa: E731
    assert_fd_close(
        mdp.policy_gradient(policy, theta), central_difference_gradient(J, theta), J(theta)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_finite_difference_check_rejects_wrong_gradients(seed):
    # The same comparison as above refuses plausible wrong gradients.
    mdp = random_mdp(5, 3, seed, gamma=0.9, n_terminal=1)
    policy, theta = policy_pair(mdp, "tabular", seed)
    pi = policy.probs(theta)
    J = lambda th: mdp.expected_return(policy.probs(th))  # noqa: E731
    numeric = central_difference_gradient(J, theta)
    wrong = {
        "normalised d instead of eta": mdp.weighted_policy_gradient(
            policy, theta, mdp.state_distribution(pi)
        ),
        "start distribution instead of eta": mdp.weighted_policy_gradient(policy, theta, mdp.mu0),
        "REINFORCE without gamma^t": mdp.reinforce_gradient_without_gamma_t(policy, theta),
    }
    for g in wrong.values():
        with pytest.raises(AssertionError):
            assert_fd_close(g, numeric, J(theta))
    lqr = random_lqr(2, 2, seed)
    K = stable_gain(lqr, seed)
    P = lqr.value_matrix(K)
    E = (lqr.R + lqr.gamma * lqr.B.T @ P @ lqr.B) @ K + lqr.gamma * lqr.B.T @ P @ lqr.A
    with pytest.raises(AssertionError):  # Sigma0 in place of Sigma_K
        assert_fd_close(2 * E @ lqr.Sigma0, central_difference_gradient(lqr.cost, K), lqr.cost(K))


@given(mdps())
def test_tabular_gradient_is_eta_pi_advantage(mdp_seed):
    # verification/FORMULAS.md "Tabular MDP/Policy gradient theorem":
    # dJ/dtheta[s,a] = eta(s) pi(a|s) A(s,a) for tabular logits.
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, "tabular", seed)
    pi = policy.probs(theta)
    expected = mdp.discounted_visitation(pi)[:, None] * pi * mdp.advantage(pi)
    np.testing.assert_allclose(
        mdp.policy_gradient(policy, theta), expected.ravel(), rtol=1e-10, atol=1e-12
    )


@given(seeds, st.integers(1, 5), st.integers(1, 4))
def test_linear_softmax_with_one_hot_features_is_tabular_softmax(seed, n_states, n_actions):
    tabular = TabularSoftmaxPolicy(n_states, n_actions)
    linear = LinearSoftmaxPolicy(one_hot_features(n_states, n_actions))
    theta = random_theta(n_states * n_actions, seed)
    np.testing.assert_allclose(linear.probs(theta), tabular.probs(theta), rtol=1e-14)
    np.testing.assert_allclose(
        linear.grad_log_prob(theta), tabular.grad_log_prob(theta), atol=1e-15
    )
    np.testing.assert_allclose(
        tabular.probs(theta.reshape(n_states, n_actions)), tabular.probs(theta)
    )


@given(mdps(), st.sampled_from(["tabular", "linear"]))
def test_grad_log_prob_matches_finite_differences(mdp_seed, kind):
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, kind, seed)
    # Jacobian of all log pi(a|s) at once: column i from log_probs(theta +- eps e_i).
    numeric = np.stack(
        [(policy.log_probs(theta + EPS * e) - policy.log_probs(theta - EPS * e)) / (2 * EPS)
         for e in np.eye(policy.n_params)], axis=-1)
    assert_fd_close(policy.grad_log_prob(theta), numeric, 1.0)


@given(mdps())
def test_values_satisfy_the_bellman_equation(mdp_seed):
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, "tabular", seed)
    pi = policy.probs(theta)
    V, Q = mdp.value(pi), mdp.q_value(pi)
    scale = max(1.0, np.abs(V).max())
    for s in range(mdp.n_states):
        if mdp.terminal[s]:
            assert V[s] == 0.0 and np.all(Q[s] == 0.0)
            continue
        backup = sum(
            pi[s, a] * (mdp.R[s, a] + mdp.gamma * mdp.P[s, a] @ V) for a in range(mdp.n_actions)
        )
        assert abs(V[s] - backup) <= 1e-12 * scale
        assert abs(V[s] - pi[s] @ Q[s]) <= 1e-12 * scale
    np.testing.assert_allclose(mdp.advantage(pi), Q - V[:, None], atol=1e-12 * scale)
    assert mdp.expected_return(pi) == pytest.approx(mdp.mu0 @ V, rel=1e-14)


@given(mdps())
def test_discounted_visitation_flow_and_normalisation(mdp_seed):
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, "tabular", seed)
    pi = policy.probs(theta)
    eta = mdp.discounted_visitation(pi)
    # Flow equation on nonterminal s': eta(s') = mu0(s') + gamma sum_{s live} eta(s) P_pi(s, s').
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    live = ~mdp.terminal
    inflow = mdp.mu0 + mdp.gamma * (eta[live] @ P_pi[live])
    np.testing.assert_allclose(eta[live], inflow[live], rtol=1e-12, atol=1e-12)
    assert np.all(eta[mdp.terminal] == 0)
    if not mdp.episodic:
        assert eta.sum() == pytest.approx(1.0 / (1.0 - mdp.gamma), rel=1e-12)
    np.testing.assert_allclose(mdp.state_distribution(pi), eta / eta.sum(), rtol=1e-14)


@given(mdps(episodic=True))
def test_undiscounted_visits_equal_discounted_ones_at_gamma_1(mdp_seed):
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, "tabular", seed)
    pi = policy.probs(theta)
    eta_1 = mdp.undiscounted_visitation(pi)
    # eta_1 = mu0 + eta_1 P_pi on nonterminal states (undiscounted flow).
    P_pi = mdp.transition_matrix(pi)
    np.testing.assert_allclose(eta_1, mdp.mu0 + eta_1 @ P_pi, rtol=1e-12, atol=1e-12)
    if mdp.gamma == 1.0:
        np.testing.assert_allclose(eta_1, mdp.discounted_visitation(pi), rtol=1e-12)
        np.testing.assert_allclose(
            mdp.reinforce_gradient_without_gamma_t(policy, theta),
            mdp.policy_gradient(policy, theta),
            rtol=1e-10,
            atol=1e-12,
        )


def test_two_state_mdp_matches_the_hand_derived_gradient():
    # Closed form by Cramer's rule (two_state_mdp docstring), differentiated by hand:
    #   J = V0 = N0 / D,  N0 = (1 - g p1) r0 + g (1 - p0) r1,
    #   D = (1 - g p0)(1 - g p1) - g^2 (1 - p0)(1 - p1),
    #   dJ/dp = (dN0 D - N0 dD) / D^2,  dp_s/dtheta[s, stay] = p(1-p) = -dp_s/dtheta[s, switch].
    g, r0, r1 = 0.8, 2.0, -1.0
    mdp = two_state_mdp(gamma=g, rewards=(r0, r1))
    policy = TabularSoftmaxPolicy(2, 2)
    theta = np.array([0.3, -0.4, -1.1, 0.5])  # rows: [stay, switch] logits of states 0, 1
    p0, p1 = policy.probs(theta)[:, 0]
    D = (1 - g * p0) * (1 - g * p1) - g**2 * (1 - p0) * (1 - p1)
    N0 = (1 - g * p1) * r0 + g * (1 - p0) * r1
    N1 = g * (1 - p1) * r0 + (1 - g * p0) * r1
    dD = np.array([-g * (1 - g * p1) + g**2 * (1 - p1), -g * (1 - g * p0) + g**2 * (1 - p0)])
    dN0 = np.array([-g * r1, -g * r0])
    dJ_dp = (dN0 * D - N0 * dD) / D**2
    dp_dtheta = np.array([p0 * (1 - p0), p1 * (1 - p1)])
    expected = (
        np.array([1, -1, 0, 0]) * dJ_dp[0] * dp_dtheta[0]
        + np.array([0, 0, 1, -1]) * dJ_dp[1] * dp_dtheta[1]
    )
    pi = policy.probs(theta)
    np.testing.assert_allclose(mdp.value(pi), [N0 / D, N1 / D], rtol=1e-13)
    assert mdp.expected_return(pi) == pytest.approx(N0 / D, rel=1e-13)
    np.testing.assert_allclose(mdp.policy_gradient(policy, theta), expected, rtol=1e-11)


def test_short_corridor_matches_sutton_barto_example_13_1():
    # Solving V0 = -1 + p V1 + (1-p) V0, V1 = -1 + p V0 + (1-p) V2, V2 = -1 + (1-p) V1 by hand:
    # J(p) = V0 = -2 (2 - p) / (p (1 - p)), maximal at p = 2 - sqrt(2) with J = -(6 + 4 sqrt 2)
    # (the book: "p ~ 0.59, value ~ -11.6").
    mdp = short_corridor()
    policy = LinearSoftmaxPolicy(short_corridor_features())

    def w_for(p):  # logit difference right - left = log(p / (1 - p))
        return np.array([np.log(p / (1 - p)), 0.0])

    for p in (0.1, 0.4, 0.7, 0.95):
        J = mdp.expected_return(policy.probs(w_for(p)))
        assert J == pytest.approx(-2 * (2 - p) / (p * (1 - p)), rel=1e-12)
        # dJ/dw = dJ/dp * p (1 - p) * [1, -1]
        dJ_dp = 2 / (p * (1 - p)) + 2 * (2 - p) * (1 - 2 * p) / (p * (1 - p)) ** 2
        np.testing.assert_allclose(
            mdp.policy_gradient(policy, w_for(p)),
            dJ_dp * p * (1 - p) * np.array([1, -1]),
            rtol=1e-10,
        )
    p_star = 2 - np.sqrt(2)
    assert mdp.expected_return(policy.probs(w_for(p_star))) == pytest.approx(
        -(6 + 4 * np.sqrt(2)), rel=1e-12
    )
    assert np.abs(mdp.policy_gradient(policy, w_for(p_star))).max() < 1e-10
    assert mdp.expected_episode_length(policy.probs(w_for(p_star))) == pytest.approx(
        6 + 4 * np.sqrt(2), rel=1e-12
    )
    # With the state visible the optimum is right, left, right: 3 steps from the start.
    V_star, _ = mdp.optimal_values()
    np.testing.assert_allclose(V_star, [-3.0, -2.0, -1.0, 0.0], atol=1e-12)


def test_improper_policy_at_gamma_1_is_refused():
    mdp = short_corridor()
    always_left = np.array([[1.0, 0.0]] * 4)
    with pytest.raises(ValueError, match="does not terminate"):
        mdp.value(always_left)
    with pytest.raises(ValueError, match="does not terminate"):
        mdp.undiscounted_visitation(always_left)


# ---------------------------------------------------------------------------
# REINFORCE without gamma^t
# ---------------------------------------------------------------------------


def jacobian_fd(field, theta):
    return np.stack(
        [
            (field(theta + EPS * e) - field(theta - EPS * e)) / (2 * EPS)
            for e in np.eye(theta.size)
        ],
        axis=1,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_field_is_symmetric_and_gamma_free_field_is_not(seed):
    # Nota & Thomas (2020): the Jacobian of grad J (a Hessian) is symmetric; the Jacobian of
    # the gamma^t-free REINFORCE field is not, so that field is not the gradient of anything.
    mdp = random_mdp(5, 2, seed, gamma=0.8, n_terminal=1, terminal_prob=0.1)
    policy, theta = policy_pair(mdp, "tabular", seed)
    hessian = jacobian_fd(lambda th: mdp.policy_gradient(policy, th), theta)
    biased = jacobian_fd(lambda th: mdp.reinforce_gradient_without_gamma_t(policy, th), theta)
    # FD error of each entry ~ 1e-9 (module docstring): a true Hessian is symmetric to that.
    assert np.abs(hessian - hessian.T).max() < 1e-6
    assert np.abs(biased - biased.T).max() > 1e-2 * np.abs(biased).max()
    # and the biased mean really differs from the gradient
    g, b = mdp.policy_gradient(policy, theta), mdp.reinforce_gradient_without_gamma_t(
        policy, theta
    )
    assert np.linalg.norm(g - b) > 1e-2 * np.linalg.norm(g)


# ---------------------------------------------------------------------------
# Fisher matrix and natural gradient
# ---------------------------------------------------------------------------


@given(mdps(max_states=4, max_actions=3), st.sampled_from(["tabular", "linear"]))
def test_fisher_is_hessian_of_mean_kl(mdp_seed, kind):
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, kind, seed)
    d = mdp.state_distribution(policy.probs(theta))

    def kl_categorical(th_prime):  # sum_s d(s) KL(pi_theta || pi_theta'), by minipg.distributions
        return float(
            d @ Categorical(policy.logits(theta)).kl(Categorical(policy.logits(th_prime))).data
        )

    def kl(th_prime):
        return mean_kl(policy, theta, th_prime, d)

    for shift in (0.3, -1.0):  # mean_kl agrees with the independent Categorical.kl
        th_prime = theta + shift * random_theta(policy.n_params, seed + 3)
        assert kl(th_prime) == pytest.approx(kl_categorical(th_prime), rel=1e-10, abs=1e-15)
    # Second central differences, h = 1e-4: truncation ~ h^2 |KL''''| ~ 1e-8, round-off
    # ~ macheps / h^2 ~ 1e-8, so atol = 1e-6 has a margin of ~100.
    h, n = 1e-4, policy.n_params
    E = np.eye(n) * h
    hessian = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):  # symmetric by construction of the formula: fill both halves
            hessian[i, j] = hessian[j, i] = (
                kl(theta + E[i] + E[j]) - kl(theta + E[i] - E[j])
                - kl(theta - E[i] + E[j]) + kl(theta - E[i] - E[j])
            ) / (4 * h * h)
    np.testing.assert_allclose(mdp.fisher_matrix(policy, theta), hessian, atol=1e-6)


@given(mdps())
def test_tabular_fisher_is_block_diagonal(mdp_seed):
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, "tabular", seed)
    pi = policy.probs(theta)
    d = mdp.state_distribution(pi)
    S, A = pi.shape
    expected = np.zeros((S * A, S * A))
    for s in range(S):  # F = blockdiag_s d(s) (diag pi_s - pi_s pi_s^T)
        expected[s * A : (s + 1) * A, s * A : (s + 1) * A] = d[s] * (
            np.diag(pi[s]) - np.outer(pi[s], pi[s])
        )
    np.testing.assert_allclose(mdp.fisher_matrix(policy, theta), expected, atol=1e-15)


@given(mdps())
def test_natural_gradient_is_centred_advantage(mdp_seed):
    # pinv(F) grad J = (A - mean_a A) * sum(eta) with F under the normalised d = eta / sum(eta);
    # continuing: sum(eta) = 1/(1-gamma) (verification/FORMULAS.md "Tabular MDP/Fisher"
    # and "Tabular MDP/Values and visitation").  Every nonterminal state has d > 0
    # here (mu0 has full support), terminal states have A = 0 and F-block 0.
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, "tabular", seed)
    pi = policy.probs(theta)
    eta = mdp.discounted_visitation(pi)
    natural = np.linalg.pinv(mdp.fisher_matrix(policy, theta), rcond=1e-12) @ mdp.policy_gradient(
        policy, theta
    )
    A = mdp.advantage(pi)
    centred = (A - A.mean(axis=1, keepdims=True)) * eta.sum()
    if not mdp.episodic:
        assert eta.sum() == pytest.approx(1 / (1 - mdp.gamma), rel=1e-12)
    np.testing.assert_allclose(
        natural, centred.ravel(), rtol=1e-7, atol=1e-8 * max(1.0, np.abs(centred).max())
    )


# ---------------------------------------------------------------------------
# Off-policy (Degris et al. 2012; Imani et al. 2018), d_b stationary
# ---------------------------------------------------------------------------


@given(mdps(episodic=False), st.sampled_from(["tabular", "linear"]))
def test_emphatic_gradient_matches_finite_differences_of_J_beta(mdp_seed, kind):
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, kind, seed)
    behaviour = TabularSoftmaxPolicy(mdp.n_states, mdp.n_actions).probs(
        random_theta(mdp.n_states * mdp.n_actions, seed + 7)
    )
    d_b = mdp.stationary_distribution(behaviour)
    J_beta = lambda th: mdp.excursion_objective(policy.probs(th), d_b)  # noqa: E731
    assert_fd_close(
        mdp.excursion_gradient(policy, theta, d_b),
        central_difference_gradient(J_beta, theta),
        J_beta(theta),
    )


@given(mdps(episodic=False))
def test_stationary_distribution_matches_power_iteration(mdp_seed):
    mdp, seed = mdp_seed
    policy, theta = policy_pair(mdp, "tabular", seed)
    pi = policy.probs(theta)
    d = mdp.stationary_distribution(pi)
    # Dirichlet(1) rows are positive, so the chain is primitive: rows of P_pi^t converge to d.
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    np.testing.assert_allclose(np.linalg.matrix_power(P_pi, 2000)[0], d, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_off_policy_gradient_differs_from_true_gradients_when_behaviour_differs(seed):
    # Scales: with stationary d_b, g = sum d_b grad pi Q and grad J_beta = sum m grad pi Q with
    # sum m = 1/(1-gamma); we compare g with (1-gamma) grad J_beta and (1-gamma) grad J_pi so that
    # a difference is a difference of direction/weighting, not of the 1/(1-gamma) scale.
    mdp = random_mdp(5, 3, seed, gamma=0.9)
    policy, theta = policy_pair(mdp, "tabular", seed)
    pi = policy.probs(theta)
    behaviour = TabularSoftmaxPolicy(5, 3).probs(random_theta(15, seed + 100))
    d_b = mdp.stationary_distribution(behaviour)
    g = mdp.off_policy_gradient(policy, theta, d_b)
    # g is the mean of the importance-weighted estimator:
    # sum_s d_b(s) sum_a b(a|s) (pi/b) grad log pi Q^pi.
    ratio = pi / behaviour
    score = policy.grad_log_prob(theta)
    is_mean = np.einsum("s,sa,sa,sa,sai->i", d_b, behaviour, ratio, mdp.q_value(pi), score)
    np.testing.assert_allclose(g, is_mean, rtol=1e-12, atol=1e-14)
    scaled_excursion = (1 - mdp.gamma) * mdp.excursion_gradient(policy, theta, d_b)
    scaled_on_policy = (1 - mdp.gamma) * mdp.policy_gradient(policy, theta)
    assert np.linalg.norm(g - scaled_excursion) > 0.05 * np.linalg.norm(g)
    assert np.linalg.norm(g - scaled_on_policy) > 0.05 * np.linalg.norm(g)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_off_policy_gradient_equals_true_gradients_when_behaviour_is_target(seed):
    # beta = pi and the MDP started from pi's stationary distribution: m = d/(1-gamma) and
    # eta = d/(1-gamma), so g = (1-gamma) grad J_beta = (1-gamma) grad J_pi exactly.
    base = random_mdp(5, 3, seed, gamma=0.9)
    policy, theta = policy_pair(base, "tabular", seed)
    pi = policy.probs(theta)
    d = base.stationary_distribution(pi)
    mdp = TabularMDP(base.P, base.R, base.gamma, d)
    g = mdp.off_policy_gradient(policy, theta, d)
    np.testing.assert_allclose(
        g, (1 - mdp.gamma) * mdp.excursion_gradient(policy, theta, d), rtol=1e-10, atol=1e-13
    )
    np.testing.assert_allclose(
        g, (1 - mdp.gamma) * mdp.policy_gradient(policy, theta), rtol=1e-10, atol=1e-13
    )
    assert mdp.excursion_objective(pi, d) == pytest.approx(mdp.expected_return(pi), rel=1e-12)


# ---------------------------------------------------------------------------
# Optimal values
# ---------------------------------------------------------------------------


@given(mdps())
def test_optimal_values_satisfy_bellman_optimality_and_match_value_iteration(mdp_seed):
    mdp, seed = mdp_seed
    V_star, Q_star = mdp.optimal_values()
    scale = max(1.0, np.abs(V_star).max())
    live = ~mdp.terminal
    backup = (mdp.R + mdp.gamma * mdp.P @ V_star).max(axis=1)
    np.testing.assert_allclose(V_star[live], backup[live], atol=1e-11 * scale)
    np.testing.assert_allclose(V_star, Q_star.max(axis=1), atol=1e-12 * scale)
    # Independent algorithm: value iteration (gamma = 1 episodic: every policy terminates
    # with probability >= 0.2 per step, so it converges).
    V = np.zeros(mdp.n_states)
    for _ in range(2000):
        V_new = np.where(live, (mdp.R + mdp.gamma * mdp.P @ V).max(axis=1), 0.0)
        if np.abs(V_new - V).max() < 1e-13 * scale:
            break
        V = V_new
    np.testing.assert_allclose(V_star, V_new, atol=1e-10 * scale)
    # No softmax policy does better.
    policy, theta = policy_pair(mdp, "tabular", seed)
    assert mdp.expected_return(policy.probs(theta)) <= mdp.optimal_return() + 1e-12 * scale
    assert mdp.expected_return(mdp.optimal_policy()) == pytest.approx(
        mdp.optimal_return(), rel=1e-12
    )


# ---------------------------------------------------------------------------
# Sampler: statistical checks (99.9% two-sided z-tests, fixed seeds)
# ---------------------------------------------------------------------------


EPISODIC = dict(n_states=5, n_actions=3, seed=3, gamma=0.9, n_terminal=1, terminal_prob=0.15)


def _episodic_setup():
    mdp = random_mdp(**EPISODIC)
    policy, theta = policy_pair(mdp, "tabular", 11)
    return mdp, policy.probs(theta)


def test_sampled_episode_length_matches_sum_of_undiscounted_visits():
    mdp, pi = _episodic_setup()
    batch = mdp.sample_episodes(pi, 20_000, np.random.default_rng(0))
    lengths = batch.lengths
    assert abs(z_score(lengths, mdp.expected_episode_length(pi))) < Z_999
    # The same check rejects the discounted visit total sum(eta) as "the episode length".
    assert abs(z_score(lengths, mdp.discounted_visitation(pi).sum())) > Z_999


def test_sampled_discounted_visits_and_returns_match_eta_and_J():
    mdp, pi = _episodic_setup()
    batch = mdp.sample_episodes(pi, 20_000, np.random.default_rng(1))
    eta = mdp.discounted_visitation(pi)
    live = np.flatnonzero(~mdp.terminal)
    z_crit = norm.ppf(1 - 0.001 / (2 * live.size))  # Bonferroni over states: family level 99.9%
    per_episode = np.zeros((batch.n_episodes, mdp.n_states))  # sum_t gamma^t 1[s_t = s]
    np.add.at(per_episode, (batch.episode, batch.states), mdp.gamma**batch.t)
    assert max(abs(z_score(per_episode[:, s], eta[s])) for s in live) < z_crit
    # Undiscounted counts are rejected as eta by the same check.
    counts = np.zeros((batch.n_episodes, mdp.n_states))
    np.add.at(counts, (batch.episode, batch.states), 1.0)
    assert max(abs(z_score(counts[:, s], eta[s])) for s in live) > z_crit
    returns = batch.episode_returns(mdp.gamma)
    assert abs(z_score(returns, mdp.expected_return(pi))) < Z_999
    # gamma forgotten:
    assert abs(z_score(batch.episode_returns(1.0), mdp.expected_return(pi))) > Z_999


def test_sampler_layout_truncation_and_behaviour_probabilities():
    mdp = random_mdp(4, 3, 5, gamma=0.9)  # continuing
    behaviour = TabularSoftmaxPolicy(4, 3).probs(random_theta(12, 5))
    batch = mdp.sample_episodes(behaviour, 20_000, np.random.default_rng(2), max_steps=6)
    assert np.all(batch.lengths == 6) and not batch.terminated.any()
    assert np.array_equal(batch.truncated, batch.t == 5)
    assert np.array_equal(batch.t, np.tile(np.arange(6), 20_000))  # episode-major, time-ordered
    assert np.array_equal(
        batch.states[1:][batch.t[1:] > 0], batch.next_states[:-1][batch.t[1:] > 0]
    )
    np.testing.assert_array_equal(batch.action_probs, behaviour[batch.states, batch.actions])
    np.testing.assert_array_equal(batch.rewards, mdp.R[batch.states, batch.actions])
    returns = batch.episode_returns(mdp.gamma)
    assert abs(z_score(returns, mdp.truncated_expected_return(behaviour, 6))) < Z_999
    assert abs(z_score(returns, mdp.expected_return(behaviour))) > Z_999  # truncation ignored


def test_sample_state_actions_frequencies():
    mdp, pi = _episodic_setup()
    w = mdp.state_distribution(pi)
    states, actions = mdp.sample_state_actions(w, pi, 50_000, np.random.default_rng(3))
    joint = (w[:, None] * pi).ravel()
    counts = np.bincount(states * mdp.n_actions + actions, minlength=joint.size)
    # Per-cell binomial z-scores, Bonferroni over the cells with positive probability.
    cells = joint > 0
    z = (counts - 50_000 * joint)[cells] / np.sqrt(50_000 * joint * (1 - joint))[cells]
    assert np.abs(z).max() < norm.ppf(1 - 0.001 / (2 * cells.sum()))
    assert counts[~cells].sum() == 0


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def test_tabular_input_validation():
    P = np.full((2, 2, 2), 0.5)
    R = np.zeros((2, 2))
    mu0 = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="sum to 1"):
        TabularMDP(P * 0.9, R, 0.9, mu0)
    with pytest.raises(ValueError, match="R must have"):
        TabularMDP(P, np.zeros(2), 0.9, mu0)
    with pytest.raises(ValueError, match="gamma"):
        TabularMDP(P, R, 1.5, mu0)
    with pytest.raises(ValueError, match="needs terminal states"):
        TabularMDP(P, R, 1.0, mu0)
    with pytest.raises(ValueError, match="absorbing"):
        TabularMDP(P, R, 0.9, np.array([1.0, 0.0]), terminal=np.array([False, True]))
    P_goal = P.copy()
    P_goal[1] = [[0.0, 1.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="no mass on terminal"):
        TabularMDP(P_goal, R, 0.9, mu0, terminal=np.array([False, True]))
    P_stuck = np.zeros((3, 1, 3))
    P_stuck[0, 0, 1] = P_stuck[1, 0, 0] = P_stuck[2, 0, 2] = 1.0
    with pytest.raises(ValueError, match="cannot reach a terminal"):
        TabularMDP(
            P_stuck,
            np.zeros((3, 1)),
            1.0,
            np.array([1.0, 0, 0]),
            terminal=np.array([False, False, True]),
        )
    mdp = TabularMDP(P, R, 0.9, mu0)
    with pytest.raises(ValueError, match="pi must have shape"):
        mdp.value(np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match="max_steps is required"):
        mdp.sample_episodes(np.full((2, 2), 0.5), 10, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        mdp.sample_episodes(np.full((2, 2), 0.5), 10, 0, max_steps=3)
    with pytest.raises(ValueError, match="continuing"):
        short_corridor().stationary_distribution(np.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="theta must be a flat vector"):
        TabularSoftmaxPolicy(2, 2).probs(np.zeros(5))


# ===========================================================================
# LQR
# ===========================================================================


def discounted_radius(lqr, K):
    return np.sqrt(lqr.gamma) * np.max(np.abs(np.linalg.eigvals(lqr.closed_loop(K))))


def stable_gain(lqr, seed, scale=0.3):
    """A random gain, shrunk towards K = 0 (sqrt(gamma) rho(A) = 0.85 for random_lqr) until
    sqrt(gamma) rho(A + BK) <= 0.9.  The margin keeps C and its derivatives moderate (the
    Lyapunov solves' condition ~ 1/(1 - 0.81)); right at the stability edge C blows up and any
    finite difference, however correct the gradient, loses its accuracy."""
    K = scale * np.random.default_rng(seed).standard_normal((lqr.n_action, lqr.n_state))
    while discounted_radius(lqr, K) > 0.9:
        K = 0.5 * K
    return K


def gain_near_optimum(lqr, seed):
    """K* + 0.1 N(0, 1): well inside the stable set, for Monte-Carlo tests (light tails)."""
    K = lqr.optimal_gain() + 0.1 * np.random.default_rng(seed).standard_normal(
        (lqr.n_action, lqr.n_state)
    )
    assert discounted_radius(lqr, K) < 0.8
    return K


lqrs = st.builds(
    lambda seed, n, m: random_lqr(n, m, seed, gamma=0.9),
    seeds,
    st.integers(1, 3),
    st.integers(1, 3),
)


@given(lqrs, seeds)
def test_lqr_cost_gradient_matches_finite_differences(lqr, seed):
    K = stable_gain(lqr, seed)
    assert_fd_close(lqr.cost_gradient(K), central_difference_gradient(lqr.cost, K), lqr.cost(K))
    np.testing.assert_allclose(lqr.return_gradient(K), -lqr.cost_gradient(K))


@given(lqrs, seeds, st.floats(0.05, 1.0))
def test_gaussian_policy_cost_and_gradients_match_finite_differences(lqr, seed, sigma):
    K = stable_gain(lqr, seed)
    sigmas = sigma * (1 + np.arange(lqr.n_action))  # one std per action
    C = lambda K_: lqr.cost(K_, sigmas)  # noqa: E731
    assert_fd_close(lqr.cost_gradient(K, sigmas), central_difference_gradient(C, K), C(K))
    assert_fd_close(
        lqr.cost_sigma_gradient(K, sigmas),
        central_difference_gradient(lambda s: lqr.cost(K, s), sigmas),
        C(K),
    )
    assert lqr.cost(K, 0.0) == pytest.approx(lqr.cost(K), rel=1e-14)


def sigma_point_mean(f, mean, cov):
    """E[f(mean + z)], z ~ (0, cov), by the 2n points mean +- sqrt(n) F_i (F F^T = cov): exact for
    every quadratic f (it matches the first two moments)."""
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    F = eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))
    n = cov.shape[0]
    return np.mean(
        [f(mean + sign * np.sqrt(n) * F[:, i]) for i in range(n) for sign in (1, -1)], axis=0
    )


@given(lqrs, seeds, st.floats(0.05, 1.0))
def test_gaussian_policy_value_and_q_function(lqr, seed, sigma):
    # V_sigma(x) = E_eta[Q_sigma(x, Kx + eta)], eta ~ N(0, sigma^2 I), and
    # Q_sigma(x, u) = c(x, u) + gamma E_w[V_sigma(Ax + Bu + w)].
    K = stable_gain(lqr, seed)
    rng = np.random.default_rng(seed)
    x, u = rng.standard_normal((3, lqr.n_state)), rng.standard_normal((3, lqr.n_action))
    action_cov = sigma**2 * np.eye(lqr.n_action)
    v_from_q = sigma_point_mean(lambda u_: lqr.q_cost(K, x, u_, sigma), x @ K.T, action_cov)
    np.testing.assert_allclose(lqr.value_cost(K, x, sigma), v_from_q, rtol=1e-10)
    y = x @ lqr.A.T + u @ lqr.B.T
    bellman = lqr.stage_cost(x, u) + lqr.gamma * sigma_point_mean(
        lambda z: lqr.value_cost(K, z, sigma), y, lqr.W
    )
    np.testing.assert_allclose(lqr.q_cost(K, x, u, sigma), bellman, rtol=1e-10)
    # J = E_{x0}[V_sigma(x0)]
    V = lambda z: lqr.value_cost(K, z, sigma)[0]  # noqa: E731
    assert lqr.cost(K, sigma) == pytest.approx(
        sigma_point_mean(V, np.zeros(lqr.n_state), lqr.Sigma0), rel=1e-10
    )


@given(lqrs, seeds)
def test_lqr_exact_quantities_satisfy_their_defining_equations(lqr, seed):
    K = stable_gain(lqr, seed)
    g, L = lqr.gamma, lqr.closed_loop(K)
    P, Sigma = lqr.value_matrix(K), lqr.state_covariance(K)
    np.testing.assert_allclose(
        P, lqr.Q + K.T @ lqr.R @ K + g * L.T @ P @ L, rtol=1e-9, atol=1e-11 * np.abs(P).max()
    )
    np.testing.assert_allclose(
        Sigma,
        lqr.Sigma0 + g / (1 - g) * lqr.W + g * L @ Sigma @ L.T,
        rtol=1e-9,
        atol=1e-11 * np.abs(Sigma).max(),
    )
    # Two expressions of the cost: tr(P Sigma0) + g/(1-g) tr(P W) = tr((Q + K^T R K) Sigma_K).
    assert lqr.cost(K) == pytest.approx(np.trace((lqr.Q + K.T @ lqr.R @ K) @ Sigma), rel=1e-9)
    # Truncated cost plus the exact tail: C = C_H + gamma^H E[V_K(x_H)]
    #   = C_H + gamma^H (tr(P S_H) + v), with S_H = E[x_H x_H^T] from S <- L S L^T + W.
    H, S_H = 5, lqr.Sigma0
    for _ in range(H):
        S_H = L @ S_H @ L.T + lqr.W
    tail = g**H * (np.trace(P @ S_H) + g / (1 - g) * np.trace(P @ lqr.W))
    assert lqr.truncated_cost(K, H) + tail == pytest.approx(lqr.cost(K), rel=1e-10)


def test_scalar_riccati_closed_form():
    # x' = a x + b u: the discounted Riccati equation is the quadratic
    #   g b^2 p^2 + (r - g q b^2 - g a^2 r) p - q r = 0  (positive root),
    #   K* = -g a b p / (r + g b^2 p).
    lqr = lqr_1d(gamma=0.9)
    a, b, q, r, g = 1.1, 1.0, 1.0, 0.5, 0.9
    lin = r - g * q * b**2 - g * a**2 * r
    p = (-lin + np.sqrt(lin**2 + 4 * g * b**2 * q * r)) / (2 * g * b**2)
    K_star = -g * a * b * p / (r + g * b**2 * p)
    assert lqr.optimal_gain()[0, 0] == pytest.approx(K_star, rel=1e-12)
    assert lqr.value_matrix(lqr.optimal_gain())[0, 0] == pytest.approx(p, rel=1e-10)


@given(lqrs)
def test_gradient_vanishes_at_riccati_gain(lqr):
    K_star = lqr.optimal_gain()
    G = lqr.cost_gradient(K_star)
    assert np.abs(G).max() < 1e-9 * max(1.0, lqr.cost(K_star))
    rng = np.random.default_rng(0)
    for _ in range(3):  # a minimum, not just a stationary point
        assert lqr.cost(K_star) <= lqr.cost(K_star + 1e-3 * rng.standard_normal(K_star.shape))


@given(lqrs, seeds)
def test_q_function_bellman_equation_and_action_gradient(lqr, seed):
    K = stable_gain(lqr, seed)
    rng = np.random.default_rng(seed)
    n, m = lqr.n_state, lqr.n_action
    x, u = rng.standard_normal((4, n)), rng.standard_normal((4, m))
    V = lambda y: lqr.q_cost(K, y, y @ K.T)  # noqa: E731  V(x) = Q(x, Kx)
    np.testing.assert_allclose(V(x), lqr.value_cost(K, x), rtol=1e-10)
    # E_w[V(Ax + Bu + w)] by sigma points: exact for the quadratic V.
    y = x @ lqr.A.T + u @ lqr.B.T
    bellman = lqr.stage_cost(x, u) + lqr.gamma * sigma_point_mean(V, y, lqr.W)
    np.testing.assert_allclose(lqr.q_cost(K, x, u), bellman, rtol=1e-9)
    # grad_u Q against central differences (Q is quadratic in u: exact up to round-off).
    scale = np.abs(lqr.q_cost(K, x, u)).max()
    for i in range(x.shape[0]):
        numeric = central_difference_gradient(lambda u_: lqr.q_cost(K, x[i], u_)[0], u[i])
        assert_fd_close(lqr.q_cost_grad_u(K, x[i], u[i])[0], numeric, scale)
    np.testing.assert_allclose(lqr.q_value_grad_u(K, x, u), -lqr.q_cost_grad_u(K, x, u))


@given(lqrs, seeds)
def test_dpg_identity_exact(lqr, seed):
    # E_{x~rho}[grad_K mu(x) grad_u Q(x, Kx)] with mu(x) = K x: the (i, j) entry is
    # E[(grad_u Q)_i x_j].  grad_u Q(x, Kx) = G x is linear; read G off the Q-function at x = e_j.
    K = stable_gain(lqr, seed)
    basis = np.eye(lqr.n_state)
    G = lqr.q_cost_grad_u(K, basis, basis @ K.T).T  # column j = grad_u Q(e_j, K e_j)
    dpg = G @ lqr.state_covariance(K)  # E_rho[G x x^T] with rho unnormalised
    assert_fd_close(dpg, central_difference_gradient(lqr.cost, K), lqr.cost(K))


def test_dpg_identity_monte_carlo_with_sampled_states():
    lqr = random_lqr(2, 2, 4, gamma=0.9, noise_scale=0.3)
    K = gain_near_optimum(lqr, 4)
    n = 40_000
    states = lqr.sample_states(K, n, np.random.default_rng(5))
    # per-sample DPG term grad_u Q(x, Kx) x^T, scaled by sum(rho) = 1/(1-gamma)
    terms = np.einsum("ni,nj->nij", lqr.q_cost_grad_u(K, states, states @ K.T), states) / (
        1 - lqr.gamma
    )
    exact = lqr.cost_gradient(K)
    z_crit = norm.ppf(1 - 0.001 / (2 * exact.size))  # Bonferroni over the entries of K
    z = [z_score(terms[:, i, j], exact[i, j]) for i in range(2) for j in range(2)]
    assert np.abs(z).max() < z_crit
    # Wrong state distribution: x_0 ~ N(0, Sigma0) instead of the discounted distribution rho.
    x0 = lqr.sample_initial_states(n, np.random.default_rng(6))
    wrong = np.einsum("ni,nj->nij", lqr.q_cost_grad_u(K, x0, x0 @ K.T), x0) / (1 - lqr.gamma)
    z_wrong = [z_score(wrong[:, i, j], exact[i, j]) for i in range(2) for j in range(2)]
    assert np.abs(z_wrong).max() > z_crit


def test_lqr_cost_matches_monte_carlo_rollouts():
    # Horizon 200 at gamma = 0.9: the truncated tail (~gamma^200 = 7e-10 relative) is below
    # 1e-8 of C (checked), so the Monte-Carlo mean estimates C(K) itself.
    lqr = random_lqr(2, 2, 7, gamma=0.9, noise_scale=0.5)
    K = gain_near_optimum(lqr, 7)
    horizon = 200
    assert lqr.truncated_cost(K, horizon) == pytest.approx(lqr.cost(K), rel=1e-8)
    for sigma, rng_seed in ((0.0, 8), (0.6, 9)):
        costs = lqr.sample_trajectories(
            K, 2000, horizon, np.random.default_rng(rng_seed), sigma=sigma
        ).discounted_costs()
        assert abs(z_score(costs, lqr.cost(K, sigma))) < Z_999
        if sigma == 0.0:
            # Wrong: C without the process-noise term gamma/(1-gamma) tr(P_K W).
            assert abs(z_score(costs, np.trace(lqr.value_matrix(K) @ lqr.Sigma0))) > Z_999
        else:
            # Wrong: the deterministic-policy cost for a Gaussian policy.
            assert abs(z_score(costs, lqr.cost(K))) > Z_999


def test_instability_raises_clear_error():
    lqr = lqr_1d(gamma=0.9)  # A = 1.1: K = 0 gives sqrt(0.9) * 1.1 = 1.04 >= 1
    for method in (lqr.cost, lqr.cost_gradient, lqr.value_matrix, lqr.state_covariance):
        with pytest.raises(ValueError, match="not stabilising"):
            method(np.zeros((1, 1)))
    with pytest.raises(ValueError, match="not stabilising"):
        lqr.sample_states(np.zeros((1, 1)), 10, np.random.default_rng(0))
    assert lqr.is_stable([[-0.5]]) and np.isfinite(lqr.cost([[-0.5]]))


def test_lqr_input_validation():
    with pytest.raises(ValueError, match="positive definite"):
        LQR([[1.0]], [[1.0]], [[1.0]], [[0.0]], 0.9)
    with pytest.raises(ValueError, match="gamma"):
        LQR([[1.0]], [[1.0]], [[1.0]], [[1.0]], 1.0)
    with pytest.raises(ValueError, match="B must have shape"):
        LQR(np.eye(2), [[1.0]], np.eye(2), [[1.0]], 0.9)
    with pytest.raises(ValueError, match="K must have shape"):
        lqr_2d().cost(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="sigma"):
        lqr_2d().cost(np.zeros((1, 2)), sigma=-1.0)


# ===========================================================================
# gymnasium environments
# ===========================================================================


def _check_env_quietly(env):
    """check_env, with only gymnasium's advice about unbounded Box spaces tolerated."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*infinity.*")
        warnings.filterwarnings("ignore", message=".*symmetric and normalized.*")
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize("obs", ["onehot", "index"])
def test_tabular_env_passes_check_env(obs):
    _check_env_quietly(
        TabularMDPEnv(random_mdp(4, 2, 0, n_terminal=1), max_episode_steps=20, obs=obs)
    )


def test_lqr_env_passes_check_env():
    _check_env_quietly(LQREnv(lqr_2d(), horizon=20))


def test_tabular_env_returns_match_exact_J():
    base = random_mdp(4, 2, 12, gamma=0.9, n_terminal=1, terminal_prob=0.3)
    # +1 per step, so forgetting gamma changes the mean return by E[T] - E[sum_t gamma^t] ~ 0.4.
    mdp = TabularMDP(
        base.P, base.R + (~base.terminal)[:, None], base.gamma, base.mu0, base.terminal
    )
    pi = TabularSoftmaxPolicy(4, 2).probs(random_theta(8, 12))
    env = TabularMDPEnv(mdp, obs="index")
    rng = np.random.default_rng(13)
    discounted, undiscounted = [], []
    obs, _ = env.reset(seed=14)
    for _ in range(1500):
        obs, _ = env.reset()
        G, G1, t, done = 0.0, 0.0, 0, False
        while not done:
            obs, r, terminated, truncated, _ = env.step(int(rng.choice(2, p=pi[obs])))
            G, G1, t, done = G + mdp.gamma**t * r, G1 + r, t + 1, terminated or truncated
        discounted.append(G)
        undiscounted.append(G1)
    assert abs(z_score(discounted, mdp.expected_return(pi))) < Z_999
    assert abs(z_score(undiscounted, mdp.expected_return(pi))) > Z_999  # gamma forgotten


def test_lqr_env_returns_match_exact_truncated_J():
    lqr = random_lqr(2, 1, 15, gamma=0.9, noise_scale=0.5)
    K = gain_near_optimum(lqr, 15)
    horizon = 30
    env = LQREnv(lqr, horizon)
    returns, undiscounted = [], []
    env.reset(seed=16)
    for _ in range(300):
        x, _ = env.reset()
        G, G1, t, truncated = 0.0, 0.0, 0, False
        while not truncated:
            x, r, terminated, truncated, _ = env.step(K @ x)
            assert not terminated
            G, G1, t = G + lqr.gamma**t * r, G1 + r, t + 1
        returns.append(G)
        undiscounted.append(G1)
    assert t == horizon
    assert abs(z_score(returns, -lqr.truncated_cost(K, horizon))) < Z_999
    assert abs(z_score(undiscounted, -lqr.truncated_cost(K, horizon))) > Z_999  # gamma forgotten
