"""Tests of minipg.estimators.trpo: F v, CG, the step, the line search, and the theory.

What is checked (CONTRIBUTING.md, "Verification levels"; formulas in
verification/FORMULAS.md "TRPO, K-FAC, ACKTR/TRPO" and "Tabular MDP/Fisher"):

* the engine's Fisher-vector product (FisherOperator) equals the explicit
  Fisher matrix times v, for a categorical and a Gaussian head (state-
  independent log-std among the parameters), the matrix built two independent
  ways: (a) the Hessian of the mean KL at theta_old, by central differences of
  the engine's gradient of the KL with Richardson extrapolation, and (b)
  E[grad log pi grad log pi^T] by enumeration over actions (all actions of
  the categorical; for the Gaussian the 3-point Gauss-Hermite nodes per axis,
  an exact enumeration: the score's outer product is a polynomial of degree
  <= 4 in the standard normal noise, and 3-point Gauss-Hermite is exact to
  degree 5);
* on the exact tabular bed with tabular softmax logits: pinv(F) grad J =
  (A - mean_a A) / (1 - gamma), and CG over the engine's F v reaches it;
* Theorem 1 of Schulman et al. 2015 (the monotonic improvement bound), exactly,
  on random MDPs and random policy pairs; and shown to fail without its penalty;
* one exact TRPO step (g, F, CG, step, line search on exact quantities)
  increases the exact J;
* the line search, by hypothesis: on a synthetic problem whose accepted fraction
  is known in closed form, and on a policy whose KL and surrogate are the
  engine's; unchanged parameters when the surrogate cannot improve;
* the surrogate: gradcheck, and its gradient at theta_old against the vanilla
  policy gradient of a linear-softmax policy in closed form;
* bad settings: each a clear error naming the setting and its range.

Tolerances.  (a) The Hessian by Richardson-extrapolated central differences
of the gradient at h = 1e-3: truncation O(h^4) ~ 1e-12 relative, rounding
~ macheps / h ~ 1e-13 (the KL's gradient is O(h) near theta_old, its
terms O(1)); 1e-10 relative in the 2-norm, as the issue asks, has a margin of
~100.  (b) Enumeration and the engine's product are the same sum in another
order: 1e-10 relative has a margin of ~1e4.  Tabular identities are linear
solves on O(1) numbers: 1e-9 relative (condition numbers ~1e2 on these beds).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import softmax

from minipg.algorithms.networks import CategoricalPolicy, GaussianPolicy
from minipg.autodiff import Tensor, gradcheck, no_grad
from minipg.distributions import Categorical, DiagGaussian
from minipg.envs.tabular import TabularSoftmaxPolicy, mean_kl as tabular_mean_kl, random_mdp
from minipg.estimators.trpo import (FisherOperator, backtracking_line_search, check_cg_iterations,
                                    check_damping, check_max_kl, check_shrink, conjugate_gradient,
                                    max_step, mean_kl, surrogate_objective)

FVP_RTOL = 1e-10


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ============================================================ policies and their Fisher

def categorical_setup(seed=0, batch=5, obs_dim=3, n_actions=3):
    rng = np.random.default_rng(seed)
    policy = CategoricalPolicy(obs_dim, n_actions, hidden=(4,), rng=seed)
    policy.flat_params = rng.normal(scale=0.7, size=policy.num_parameters)   # not near uniform
    obs = rng.normal(size=(batch, obs_dim))
    return policy, obs


def gaussian_setup(seed=0, batch=4, obs_dim=3, action_dim=2):
    rng = np.random.default_rng(seed)
    policy = GaussianPolicy(obs_dim, action_dim, hidden=(4,), rng=seed)
    policy.flat_params = rng.normal(scale=0.7, size=policy.num_parameters)
    obs = rng.normal(size=(batch, obs_dim))
    return policy, obs


def outputs_and_metric(policy, obs):
    """(outputs_fn, metric) of the policy's distribution: logits, or (mean, log_std)."""
    if isinstance(policy, CategoricalPolicy):
        return (lambda: policy(obs).logits), Categorical.fisher_metric

    def outputs():
        dist = policy(obs)
        return dist.mean, dist.log_std
    return outputs, DiagGaussian.fisher_metric


def frozen(dist):
    """pi_old: the same distribution from held-constant arrays."""
    if isinstance(dist, Categorical):
        return Categorical(dist.logits.data.copy())
    return DiagGaussian(dist.mean.data.copy(), dist.log_std.data.copy())


def kl_gradient(policy, obs, old, theta):
    """The engine's gradient of mean KL(pi_old || pi_theta) at theta (flat)."""
    saved = policy.flat_params.copy()
    policy.flat_params = theta
    policy.zero_grad()
    mean_kl(old, policy(obs)).backward()
    g = policy.flat_grad.copy()
    policy.flat_params = saved
    policy.zero_grad()
    return g


def fisher_as_kl_hessian(policy, obs, h=1e-3):
    """Hessian of the mean KL at theta_old, column j = Richardson-extrapolated central
    differences of the engine's gradient: (4 D(h/2) - D(h)) / 3, D(h) = (g(+h) - g(-h)) / 2h."""
    theta = policy.flat_params.copy()
    with no_grad():
        old = frozen(policy(obs))
    n = theta.size
    H = np.zeros((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0

        def D(step):
            return (kl_gradient(policy, obs, old, theta + step * e)
                    - kl_gradient(policy, obs, old, theta - step * e)) / (2 * step)
        H[:, j] = (4 * D(h / 2) - D(h)) / 3
    return H


def score(policy, obs_row, action):
    """grad_theta log pi(action | s), flat, by the engine."""
    policy.zero_grad()
    policy(obs_row[None]).log_prob(action[None] if np.ndim(action) else np.array([action])) \
        .sum().backward()
    g = policy.flat_grad.copy()
    policy.zero_grad()
    return g


def fisher_by_enumeration(policy, obs):
    """E_s E_{a~pi(.|s)}[score score^T], the inner expectation an exact finite sum."""
    n = policy.num_parameters
    F = np.zeros((n, n))
    with no_grad():
        dist = policy(obs)
    if isinstance(policy, CategoricalPolicy):
        probs = np.exp(dist.log_probs.data)
        for b in range(len(obs)):
            for a in range(probs.shape[1]):
                s = score(policy, obs[b], np.int64(a))
                F += probs[b, a] * np.outer(s, s)
    else:
        z1, w1 = hermegauss(3)
        w1 = w1 / np.sqrt(2 * np.pi)                 # weights of N(0, 1)
        d = dist.d
        grid = np.array(np.meshgrid(*[np.arange(3)] * d, indexing="ij")).reshape(d, -1).T
        std = np.exp(dist.log_std.data)
        for b in range(len(obs)):
            for idx in grid:
                action = dist.mean.data[b] + std * z1[idx]
                s = score(policy, obs[b], action)
                F += np.prod(w1[idx]) * np.outer(s, s)
    return F / len(obs)


@pytest.fixture(scope="module", params=["categorical", "gaussian"])
def head(request):
    policy, obs = (categorical_setup() if request.param == "categorical" else gaussian_setup())
    return request.param, policy, obs, fisher_as_kl_hessian(policy, obs), \
        fisher_by_enumeration(policy, obs)


def test_the_two_explicit_fishers_agree(head):
    _, _, _, hessian, enumerated = head
    assert rel_err(hessian, enumerated) < FVP_RTOL
    np.testing.assert_allclose(enumerated, enumerated.T, rtol=0, atol=1e-15)


def test_fisher_vector_product_equals_both_explicit_fishers(head):
    kind, policy, obs, hessian, enumerated = head
    outputs_fn, metric = outputs_and_metric(policy, obs)
    F = FisherOperator(outputs_fn, policy.parameters(), metric)
    rng = np.random.default_rng(7)
    for _ in range(3):
        v = rng.normal(size=policy.num_parameters)
        fv = F(v)
        assert rel_err(fv, hessian @ v) < FVP_RTOL, kind
        assert rel_err(fv, enumerated @ v) < FVP_RTOL, kind
    if kind == "gaussian":                     # log_std is inside the constrained parameters
        names = [name for name, p in policy.named_parameters() for _ in range(p.data.size)]
        j = names.index("log_std")
        e = np.zeros(policy.num_parameters)
        e[j] = 1.0
        assert F(e)[j] == pytest.approx(2.0, rel=1e-14)      # F_{log sigma, log sigma} = 2


def test_a_wrong_metric_is_caught(head):
    """The comparison is not vacuous: the Gaussian metric without the 2 on log-std, or the
    categorical one without its p p^T term, is far outside the tolerance."""
    kind, policy, obs, hessian, _ = head
    outputs_fn, metric = outputs_and_metric(policy, obs)
    if kind == "gaussian":
        def wrong(outs, tans):
            m_mean, m_ls = metric(outs, tans)
            return m_mean, m_ls / 2.0
    else:
        def wrong(logits, u):
            p = softmax(logits, axis=-1)
            return p * u / logits.shape[0]
    v = np.random.default_rng(8).normal(size=policy.num_parameters)
    assert rel_err(FisherOperator(outputs_fn, policy.parameters(), wrong)(v), hessian @ v) > 1e-3


def test_fisher_operator_damping_and_agreement_with_the_engine_function():
    from minipg.autodiff import fisher_vector_product
    policy, obs = gaussian_setup(seed=3)
    outputs_fn, metric = outputs_and_metric(policy, obs)
    v = np.random.default_rng(1).normal(size=policy.num_parameters)
    plain = fisher_vector_product(outputs_fn, policy.parameters(), v, metric)
    F = FisherOperator(outputs_fn, policy.parameters(), metric, damping=0.1)
    np.testing.assert_allclose(F.fisher(v), plain, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(F(v), plain + 0.1 * v, rtol=1e-14, atol=1e-15)   # F + lambda I
    np.testing.assert_allclose(F.linear_operator().matvec(v), F(v), rtol=0, atol=0)
    assert not np.any(policy.flat_grad)                                  # no .grad touched
    with pytest.raises(ValueError, match="expected"):
        F(np.ones(policy.num_parameters + 1))


# ============================================================ CG

def test_conjugate_gradient_solves_a_symmetric_positive_definite_system():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(12, 12))
    A = M @ M.T + 0.5 * np.eye(12)
    g = rng.normal(size=12)
    result = conjugate_gradient(lambda v: A @ v, g, iterations=40)
    x = np.linalg.solve(A, g)
    assert rel_err(result.x, x) < 1e-9
    np.testing.assert_allclose(result.Ax, A @ result.x, rtol=1e-14)
    assert result.residual == pytest.approx(np.linalg.norm(g - A @ result.x), rel=1e-12)
    assert result.xAx == pytest.approx(result.x @ A @ result.x, rel=1e-12)
    one = conjugate_gradient(lambda v: A @ v, g, iterations=1)   # one step: x = (g.g/g.Ag) g
    np.testing.assert_allclose(one.x, (g @ g) / (g @ A @ g) * g, rtol=1e-12)


def test_max_step_puts_the_quadratic_kl_at_delta():
    rng = np.random.default_rng(1)
    M = rng.normal(size=(6, 6))
    A = M @ M.T + np.eye(6)
    x = rng.normal(size=6)
    s, scale = max_step(x, x @ A @ x, 0.02)
    assert 0.5 * s @ A @ s == pytest.approx(0.02, rel=1e-13)
    np.testing.assert_allclose(s, scale * x, rtol=0)
    assert np.all(max_step(x, 0.0, 0.02)[0] == 0)


# ============================================================ tabular natural gradient

def tabular_bed(seed, S=5, A=3, gamma=0.9):
    mdp = random_mdp(S, A, seed=seed, gamma=gamma)           # continuing: d = (1 - gamma) eta
    policy = TabularSoftmaxPolicy(S, A)
    theta = np.random.default_rng(seed + 100).normal(size=S * A)
    return mdp, policy, theta


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tabular_natural_gradient_is_the_advantage(seed):
    """pinv(F) grad J = (A - mean_a A) / (1 - gamma) (FORMULAS.md "Tabular MDP/Fisher"),
    with F the d-weighted Fisher, and CG over the engine's F v (tabular logits, the
    batch of all states weighted by d) reaches it; a wrong weighting does not."""
    mdp, policy, theta = tabular_bed(seed)
    pi = policy.probs(theta)
    adv = mdp.advantage(pi)
    expected = ((adv - adv.mean(axis=1, keepdims=True)) / (1 - mdp.gamma)).ravel()
    grad_J = mdp.policy_gradient(policy, theta)
    F = mdp.fisher_matrix(policy, theta)
    assert rel_err(np.linalg.pinv(F) @ grad_J, expected) < 1e-9

    S, A = policy.n_states, policy.n_actions
    d = mdp.state_distribution(pi)
    leaf = Tensor(theta.copy(), requires_grad=True)

    def metric(logits, u):                      # the batch mean over states, reweighted by d
        return Categorical.fisher_metric(logits, u) * (S * d)[:, None]
    engine_F = FisherOperator(lambda: leaf.reshape(S, A), [leaf], metric)
    v = np.random.default_rng(seed).normal(size=S * A)
    assert rel_err(engine_F(v), F @ v) < 1e-12
    result = conjugate_gradient(engine_F, grad_J, iterations=3 * S * A)
    assert rel_err(result.x, expected) < 1e-8
    assert result.residual < 1e-9 * np.linalg.norm(grad_J)

    uniform = FisherOperator(lambda: leaf.reshape(S, A), [leaf], Categorical.fisher_metric)
    wrong = conjugate_gradient(uniform, grad_J, iterations=3 * S * A)
    assert rel_err(wrong.x, expected) > 1e-2


# ============================================================ Theorem 1 and one exact step

def surrogate_L(mdp, pi_old, pi_new):
    """L_pi_old(pi_new) = J(pi_old) + sum_s rho_old(s) sum_a pi_new(a|s) A_old(s, a)
    (Schulman et al. 2015, eq. 3), rho the unnormalised discounted visitation."""
    rho = mdp.discounted_visitation(pi_old)
    return mdp.expected_return(pi_old) + float(rho @ np.sum(pi_new * mdp.advantage(pi_old), 1))


def max_kl(pi_old, pi_new):
    return float(np.max(np.sum(pi_old * (np.log(pi_old) - np.log(pi_new)), axis=1)))


def theorem_1_gaps(seeds, pairs=20):
    """J(pi_new) - [L(pi_new) - C max_s KL] and J(pi_new) - L(pi_new) for random pairs."""
    gaps, no_penalty = [], []
    for seed in seeds:
        mdp = random_mdp(4, 3, seed=seed, gamma=0.8)
        policy = TabularSoftmaxPolicy(4, 3)
        rng = np.random.default_rng(1000 + seed)
        for k in range(pairs):
            theta_old = rng.normal(size=12)
            theta_new = theta_old + rng.normal(scale=[0.1, 0.5, 2.0, 5.0][k % 4], size=12)
            pi_old, pi_new = policy.probs(theta_old), policy.probs(theta_new)
            eps = float(np.max(np.abs(mdp.advantage(pi_old))))
            C = 4 * eps * mdp.gamma / (1 - mdp.gamma) ** 2                # Theorem 1
            J_new, L = mdp.expected_return(pi_new), surrogate_L(mdp, pi_old, pi_new)
            gaps.append(J_new - (L - C * max_kl(pi_old, pi_new)))
            no_penalty.append(J_new - L)
    return np.array(gaps), np.array(no_penalty)


def test_monotonic_improvement_bound_holds_exactly_on_random_mdps():
    """Schulman et al. 2015, Theorem 1 with D_TV^2 <= D_KL (eq. 9):
    J(pi_new) >= L_pi_old(pi_new) - C max_s KL, C = 4 eps gamma / (1 - gamma)^2; exact
    quantities, so the only slack is rounding (1e-12 on returns of size ~10)."""
    gaps, no_penalty = theorem_1_gaps(range(6))
    assert np.all(gaps >= -1e-12), gaps.min()
    # not vacuous: without the penalty the bound fails for some pairs
    assert np.any(no_penalty < -1e-3)


def test_surrogate_matches_J_to_first_order():
    """L(pi_old) = J(pi_old) and grad L = grad J at theta_old (eq. 4 of the paper)."""
    mdp, policy, theta = tabular_bed(4)
    pi_old = policy.probs(theta)
    assert surrogate_L(mdp, pi_old, pi_old) == pytest.approx(mdp.expected_return(pi_old),
                                                             rel=1e-12)
    h, grad_L = 1e-6, np.zeros(theta.size)
    for j in range(theta.size):
        e = np.zeros(theta.size)
        e[j] = h
        grad_L[j] = (surrogate_L(mdp, pi_old, policy.probs(theta + e))
                     - surrogate_L(mdp, pi_old, policy.probs(theta - e))) / (2 * h)
    assert rel_err(grad_L, mdp.policy_gradient(policy, theta)) < 1e-7


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_one_exact_trpo_step_increases_exact_J(seed):
    """g, F (d-weighted), CG with damping, s = sqrt(2 delta / x^T F x) x, the line search on
    the exact surrogate and the exact mean KL: J rises, and the KL is within delta."""
    mdp, policy, theta = tabular_bed(seed, S=6, A=3)
    delta = 0.01
    pi_old = policy.probs(theta)
    d = mdp.state_distribution(pi_old)
    adv = mdp.advantage(pi_old)

    def evaluate(th):                      # (E_{s~d} sum_a pi_th A_old, E_{s~d} KL)
        return float(d @ np.sum(policy.probs(th) * adv, 1)), \
            tabular_mean_kl(policy, theta, th, d)
    g = (1 - mdp.gamma) * mdp.policy_gradient(policy, theta)      # grad of evaluate()[0]
    F = mdp.fisher_matrix(policy, theta)
    cg_result = conjugate_gradient(lambda v: F @ v + 1e-3 * v, g, iterations=10)
    step, _ = max_step(cg_result.x, cg_result.xAx, delta)
    result = backtracking_line_search(evaluate, theta, step, evaluate(theta)[0], delta)
    assert result.accepted and result.kl <= delta and result.improvement > 0
    J_old, J_new = mdp.expected_return(pi_old), mdp.expected_return(policy.probs(result.theta))
    assert J_new > J_old


# ============================================================ the line search

@given(seed=st.integers(0, 2**31 - 1), delta=st.floats(1e-4, 0.5),
       scale=st.floats(1e-2, 1e2), shrink=st.floats(0.3, 0.9), n=st.integers(1, 15))
def test_line_search_on_a_quadratic_kl_accepts_the_predicted_fraction(seed, delta, scale,
                                                                      shrink, n):
    """L(theta) = g.(theta - theta0) and KL = 1/2 dtheta^T H dtheta: the first fraction
    c^k with c^(2k) KL(s) <= delta is accepted when g.s > 0, none otherwise."""
    rng = np.random.default_rng(seed)
    dim = 4
    M = rng.normal(size=(dim, dim))
    H = M @ M.T + 0.1 * np.eye(dim)
    g = rng.normal(size=dim)
    theta0 = rng.normal(size=dim)
    step = scale * rng.normal(size=dim)

    def evaluate(th):
        dth = th - theta0
        return g @ dth, 0.5 * dth @ H @ dth
    result = backtracking_line_search(evaluate, theta0, step, 0.0, delta, shrink, n)
    q = 0.5 * step @ H @ step
    fits = [k for k in range(n) if shrink ** (2 * k) * q <= delta]
    if g @ step > 0 and fits:
        k = fits[0]
        assert result.accepted and result.tries == k + 1
        assert result.fraction == shrink ** k
        assert result.kl <= delta and result.improvement > 0
        np.testing.assert_array_equal(result.theta, theta0 + shrink ** k * step)
        if q > delta:
            assert result.fraction < 1.0               # a violating step is shortened
    else:
        assert not result.accepted and result.fraction == 0.0
        np.testing.assert_array_equal(result.theta, theta0)            # unchanged
        assert result.theta is not theta0


@given(seed=st.integers(0, 2**31 - 1), delta=st.floats(1e-3, 0.2), scale=st.floats(0.1, 50),
       zero_advantages=st.booleans())
def test_line_search_with_the_engine_kl_and_surrogate(seed, delta, scale, zero_advantages):
    """A categorical policy (logits per sample): the accepted step's exact KL <= delta and
    the surrogate improves; with zero advantages L cannot improve and theta is unchanged."""
    rng = np.random.default_rng(seed)
    B, n = 6, 3
    theta0 = rng.normal(size=B * n)
    actions = rng.integers(0, n, size=B)
    advantages = np.zeros(B) if zero_advantages else rng.normal(size=B)
    old = Categorical(theta0.reshape(B, n))
    log_prob_old = old.log_prob(actions).data

    def evaluate(th):
        with no_grad():
            dist = Categorical(th.reshape(B, n))
            return (surrogate_objective(dist.log_prob(actions), log_prob_old, advantages).data,
                    mean_kl(old, dist).data)
    step = scale * rng.normal(size=B * n)
    result = backtracking_line_search(evaluate, theta0, step, evaluate(theta0)[0], delta)
    if result.accepted:
        surrogate, kl = evaluate(result.theta)
        assert kl <= delta and surrogate > evaluate(theta0)[0]
        assert kl == result.kl
        if evaluate(theta0 + step)[1] > delta:
            assert result.fraction < 1.0
    else:
        np.testing.assert_array_equal(result.theta, theta0)
        assert result.fraction == 0.0 and result.kl == 0.0 and result.improvement == 0.0
    if zero_advantages:
        assert not result.accepted


# ============================================================ the surrogate

def test_surrogate_value_gradcheck_and_vanilla_gradient_at_theta_old():
    rng = np.random.default_rng(3)
    N, n, k = 7, 3, 4
    phi = rng.normal(size=(N, n, k))                 # linear softmax: logits = phi w
    w = rng.normal(size=k)
    actions = rng.integers(0, n, size=N)
    advantages = rng.normal(size=N)
    pi = softmax(phi @ w, axis=-1)
    log_prob_old = np.log(pi[np.arange(N), actions])

    def L(wt):
        logits = (Tensor(phi) * wt.reshape(1, 1, k)).sum(axis=-1)
        return surrogate_objective(Categorical(logits).log_prob(actions), log_prob_old,
                                   advantages)
    leaf = Tensor(w.copy(), requires_grad=True)
    value = L(leaf)
    assert float(value.data) == pytest.approx(advantages.mean(), rel=1e-13)   # r = 1
    value.backward()
    score = phi[np.arange(N), actions] - np.einsum("na,nak->nk", pi, phi)
    np.testing.assert_allclose(leaf.grad, (advantages[:, None] * score).mean(0),
                               rtol=1e-12, atol=1e-14)
    gradcheck(L, [w + 0.3], eps=1e-6, atol=1e-7, rtol=1e-6)


def test_surrogate_and_kl_inputs_are_checked():
    with pytest.raises(TypeError, match="plain array"):
        surrogate_objective(Tensor(np.zeros(3)), Tensor(np.zeros(3)), np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        surrogate_objective(Tensor(np.zeros(3)), np.zeros(2), np.zeros(3))
    with pytest.raises(TypeError, match="distribution"):
        mean_kl(np.zeros(3), Categorical(np.zeros((2, 3))))


# ============================================================ bad settings

@pytest.mark.parametrize("check, bad, words", [
    (check_max_kl, 0.0, "max_kl .* > 0"), (check_max_kl, -0.1, "max_kl .* > 0"),
    (check_max_kl, float("nan"), "max_kl"),
    (check_damping, -1e-3, "cg_damping .* >= 0"),
    (check_cg_iterations, 0, "cg_iterations .* >= 1"), (check_cg_iterations, 2.5, "integer"),
    (check_shrink, 0.0, r"line_search_shrink .* \(0, 1\)"),
    (check_shrink, 1.0, r"line_search_shrink .* \(0, 1\)"),
    (check_shrink, 1.5, r"line_search_shrink .* \(0, 1\)"),
])
def test_bad_settings_name_the_setting_and_its_range(check, bad, words):
    with pytest.raises(ValueError, match=words):
        check(bad)


def test_bad_settings_reach_the_step_functions():
    with pytest.raises(ValueError, match="max_kl"):
        max_step(np.ones(2), 1.0, 0.0)
    with pytest.raises(ValueError, match="line_search_shrink"):
        backtracking_line_search(lambda t: (0.0, 0.0), np.zeros(2), np.ones(2), 0.0, 0.01, 1.0)
    with pytest.raises(ValueError, match="max_backtracks"):
        backtracking_line_search(lambda t: (0.0, 0.0), np.zeros(2), np.ones(2), 0.0, 0.01, 0.5,
                                 0)
    with pytest.raises(ValueError, match="cg_iterations"):
        conjugate_gradient(lambda v: v, np.ones(2), 0)
    with pytest.raises(ValueError, match="cg_damping"):
        FisherOperator(lambda: Tensor(np.zeros((1, 2))), [], Categorical.fisher_metric, -1.0)
