"""Tests of the classical estimators of Weng's first half: REINFORCE, the
action-value actor-critic, the off-policy (Off-PAC) actor and its GTD(lambda)
critic, DPG and the compatible COPDAC-Q critic.

Levels (CONTRIBUTING.md, "Verification levels"):
* the formula: autodiff gradients against closed forms computed by hand in
  NumPy, through a linear-softmax policy pi(a|s) ∝ exp(phi(s,a)^T w) with
  grad log pi = phi(s,a) - sum_b pi(b|s) phi(s,b) (verification/FORMULAS.md
  "Tabular MDP/Policy gradient theorem"), and a
  linear deterministic policy mu(s) = K s with a quadratic Q; property-based
  over shapes and seeds;
* the plain-NumPy updates (GTD(lambda), the Off-PAC actor, COPDAC-Q) against
  single steps written out entry by entry from the papers' algorithm boxes,
  and their reductions (rho = 1, w = 0 gives TD(lambda); lambda = 0 gives the
  off-policy actor objective's gradient);
* the engine: gradcheck of each objective/loss (float64 central differences);
* each closed-form check is shown to reject a deliberately wrong estimator
  (a missing gamma^t, a differentiated importance ratio).
Statistical tests against exact MDP gradients live elsewhere.

Tolerances.  gradcheck uses CONTRIBUTING.md's (eps=1e-6, atol=1e-7,
rtol=1e-6): the central-difference error is ~eps^2 |f'''|/6 + macheps |f|/eps
~ 1e-10 for these O(1)-O(10) values.  Identities without finite differences
(autodiff against a closed form of the same sum) use rtol 1e-12 and an atol of
1e-12 times the sum of the absolute terms (`scale`): the two sides add the same
O(100) float64 terms in different orders, so they differ by a few ulps of the
largest partial sum, and a component that cancels to ~0 must be judged on that
scale, not on its own size.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import softmax

from minipg.autodiff import GradcheckError, Tensor, grad, gradcheck, ops
from minipg.distributions import Categorical
from minipg.estimators.actor_critic import (actor_objective, critic_loss,
                                            critic_semi_gradient_loss, td_error, td_target)
from minipg.estimators.dpg import (compatible_features, compatible_q, copdac_q_update,
                                   dpg_actor_gradient, dpg_actor_objective,
                                   q_learning_td_error, sarsa_td_error)
from minipg.estimators.off_policy import (gtd_lambda_update, importance_weights,
                                          off_policy_actor_objective, offpac_actor_update)
from minipg.estimators.reinforce import (episode_discounts, episode_time_index,
                                         reinforce_objective, value_baseline_loss)
from minipg.kernels import discounted_returns

TIGHT = dict(eps=1e-6, atol=1e-7, rtol=1e-6)          # CONTRIBUTING.md, float64
seeds = st.integers(0, 2**32 - 1)


def assert_identity(actual, expected, scale):
    """Closed form vs autodiff of the same sum (see the module docstring)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * max(scale, 1.0))


# ---------------------------------------------------------- linear-softmax policy

def linear_softmax_log_prob(phi, actions, w):
    """log pi(a|s) with pi ∝ exp(phi(s,a)^T w): phi (N, A, d) array, w Tensor (d,)."""
    return Categorical(ops.matmul(phi, w)).log_prob(actions)


def score_by_hand(phi, actions, w):
    """grad_w log pi(a|s) = phi(s,a) - sum_b pi(b|s) phi(s,b), shape (N, d)."""
    pi = softmax(phi @ w, axis=-1)
    return phi[np.arange(len(actions)), actions] - np.einsum("nb,nbd->nd", pi, phi)


def random_policy(rng, n, n_actions, d):
    phi = rng.normal(size=(n, n_actions, d))
    w = rng.normal(size=d)
    actions = rng.integers(0, n_actions, size=n)
    return phi, actions, w


def grad_wrt_w(objective_of_log_prob, phi, actions, w):
    """Autodiff gradient of objective(log pi(actions|phi; w)) with respect to w."""
    return grad(lambda w_: objective_of_log_prob(linear_softmax_log_prob(phi, actions, w_)))(
        Tensor(w))


# ====================================================================== REINFORCE

def episodes(rng, n_episodes, max_len):
    """Episodes laid end to end: rewards, terminated flags, lengths."""
    lengths = rng.integers(1, max_len + 1, size=n_episodes)
    rewards = rng.normal(size=lengths.sum())
    terminated = np.zeros(lengths.sum(), dtype=bool)
    terminated[np.cumsum(lengths) - 1] = True
    return rewards, terminated, lengths


def returns_by_hand(rewards, lengths, gamma):
    """G_t = sum_k gamma^k r_{t+k} within each episode, by a double loop."""
    out, start = [], 0
    for n in lengths:
        r = rewards[start:start + n]
        out += [sum(gamma**k * r[t + k] for k in range(n - t)) for t in range(n)]
        start += n
    return np.array(out)


@given(seed=seeds, n_episodes=st.integers(1, 4), max_len=st.integers(1, 6),
       n_actions=st.integers(2, 4), d=st.integers(1, 4),
       gamma=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
       use_discounts=st.booleans(), use_baseline=st.booleans())
def test_reinforce_gradient_is_the_closed_form(seed, n_episodes, max_len, n_actions, d, gamma,
                                               use_discounts, use_baseline):
    """(1/K) sum_t [gamma^t] (G_t - b_t) grad log pi, Sutton & Barto 13.3 / 13.4."""
    rng = np.random.default_rng(seed)
    rewards, terminated, lengths = episodes(rng, n_episodes, max_len)
    n = len(rewards)
    phi, actions, w = random_policy(rng, n, n_actions, d)
    returns = discounted_returns(rewards, terminated, np.zeros(n, bool), gamma)
    G = returns_by_hand(rewards, lengths, gamma)
    np.testing.assert_allclose(returns, G, rtol=1e-12, atol=1e-12)
    t = np.concatenate([np.arange(k) for k in lengths])
    np.testing.assert_array_equal(episode_time_index(terminated, np.zeros(n, bool)), t)
    discounts = episode_discounts(t, gamma) if use_discounts else None
    baseline = rng.normal(size=n) if use_baseline else None

    g = grad_wrt_w(lambda lp: reinforce_objective(lp, returns, discounts, baseline, n_episodes),
                   phi, actions, w)

    weight = (gamma**t if use_discounts else 1.0) * (G - (baseline if use_baseline else 0.0))
    terms = weight[:, None] * score_by_hand(phi, actions, w)
    assert_identity(g, terms.sum(0) / n_episodes, np.abs(terms).sum())


def test_reinforce_without_gamma_t_is_rejected_by_the_discounted_closed_form():
    """The gamma^t-free variant differs from S&B's update whenever gamma < 1 and T > 1."""
    rng = np.random.default_rng(3)
    n, gamma = 6, 0.8
    phi, actions, w = random_policy(rng, n, 3, 2)
    returns = rng.normal(size=n)
    t = np.arange(n)
    right = (gamma**t * returns)[:, None] * score_by_hand(phi, actions, w)
    g_right = grad_wrt_w(lambda lp: reinforce_objective(lp, returns, episode_discounts(t, gamma)),
                         phi, actions, w)
    g_wrong = grad_wrt_w(lambda lp: reinforce_objective(lp, returns), phi, actions, w)
    assert_identity(g_right, right.sum(0), np.abs(right).sum())
    with pytest.raises(AssertionError):
        assert_identity(g_wrong, right.sum(0), np.abs(right).sum())


def test_reinforce_scalar_baseline_and_value():
    lp = Tensor(np.log([0.5, 0.25, 0.25]), requires_grad=True)
    returns = np.array([1.0, 2.0, 3.0])
    out = reinforce_objective(lp, returns, baseline=1.0, n_episodes=2)
    assert out.shape == ()
    np.testing.assert_allclose(out.data, (0 * np.log(.5) + 1 * np.log(.25) + 2 * np.log(.25)) / 2,
                               rtol=1e-14)
    out.backward()
    np.testing.assert_allclose(lp.grad, [0.0, 0.5, 1.0], rtol=1e-14)
    same = reinforce_objective(lp, returns, baseline=np.ones(3), n_episodes=2)
    assert float(same.data) == float(out.data)


def test_episode_discounts_and_time_index_by_hand():
    np.testing.assert_allclose(episode_discounts(np.array([0, 1, 2, 0]), 0.5), [1, .5, .25, 1])
    np.testing.assert_allclose(episode_discounts(np.array([0, 3]), 0.0), [1.0, 0.0])  # 0^0 = 1
    term = np.array([[0, 0], [1, 0], [0, 0], [0, 1]], dtype=bool)
    trunc = np.array([[0, 1], [0, 0], [0, 0], [0, 0]], dtype=bool)
    np.testing.assert_array_equal(episode_time_index(term, trunc),
                                  [[0, 0], [1, 0], [0, 1], [1, 2]])
    np.testing.assert_array_equal(episode_time_index(term, trunc, start_index=np.array([5, 0])),
                                  [[5, 0], [6, 0], [0, 1], [1, 2]])


@given(seed=seeds, n=st.integers(1, 8), k=st.integers(1, 4))
def test_value_baseline_loss_gradient_is_the_closed_form(seed, n, k):
    """Linear v(s) = x(s)^T theta: grad = (2/N) sum (v - G) x = -(2/N) sum delta x."""
    rng = np.random.default_rng(seed)
    x, theta, G = rng.normal(size=(n, k)), rng.normal(size=k), rng.normal(size=n)
    g = grad(lambda th: value_baseline_loss(ops.matmul(x, th), G))(Tensor(theta))
    terms = 2.0 / n * (x @ theta - G)[:, None] * x
    assert_identity(g, terms.sum(0), np.abs(terms).sum())


def test_reinforce_on_a_batch_of_1e5_steps_is_one_multiply_and_one_sum():
    rng = np.random.default_rng(0)
    n = 100_000
    lp = Tensor(rng.normal(size=n), requires_grad=True)
    returns, t = rng.normal(size=n), rng.integers(0, 200, size=n)
    start = time.perf_counter()
    out = reinforce_objective(lp, returns, episode_discounts(t, 0.99), returns.mean(), 500)
    out.backward()
    elapsed = time.perf_counter() - start
    np.testing.assert_allclose(lp.grad, 0.99**t * (returns - returns.mean()) / 500, rtol=1e-14)
    assert elapsed < 1.0, f"1e5 steps took {elapsed:.3f} s"


# =================================================================== actor-critic

def test_td_error_by_hand_with_termination_and_truncation():
    r = np.array([1.0, 2.0, -1.0])
    q_next = np.array([10.0, 20.0, 30.0])         # at a truncation: Q at the true final state
    q = np.array([0.5, 1.0, 2.0])
    terminated = np.array([False, True, False])
    expected = np.array([1 + .9 * 10 - .5, 2 + 0 - 1, -1 + .9 * 30 - 2])
    np.testing.assert_allclose(td_error(r, q_next, q, 0.9, terminated), expected, rtol=1e-15)
    np.testing.assert_allclose(td_target(r, q_next, 0.9, terminated), expected + q, rtol=1e-15)
    assert float(td_error(1.0, 5.0, 0.0, 0.5, False)) == 3.5          # one online step
    qt = Tensor(q, requires_grad=True)
    delta = td_error(r, q_next, qt, 0.9, terminated)
    assert isinstance(delta, Tensor)
    delta.sum().backward()
    np.testing.assert_array_equal(qt.grad, -np.ones(3))               # only through Q(s, a)


@given(seed=seeds, n=st.integers(1, 10), n_actions=st.integers(2, 4), d=st.integers(1, 4),
       with_I=st.booleans())
def test_actor_objective_gradient_is_the_closed_form(seed, n, n_actions, d, with_I):
    """Weng step 2.3 (Q, no I) and Sutton & Barto 13.5 (delta, I = gamma^t), batch mean."""
    rng = np.random.default_rng(seed)
    phi, actions, w = random_policy(rng, n, n_actions, d)
    signal = rng.normal(size=n)
    I = episode_discounts(rng.integers(0, 5, size=n), 0.9) if with_I else None
    g = grad_wrt_w(lambda lp: actor_objective(lp, signal, I), phi, actions, w)
    terms = ((I if with_I else 1.0) * signal)[:, None] * score_by_hand(phi, actions, w) / n
    assert_identity(g, terms.sum(0), np.abs(terms).sum())


@given(seed=seeds, n=st.integers(1, 10), k=st.integers(1, 5))
def test_critic_losses_give_the_semi_gradient_step(seed, n, k):
    """Linear Q_w(s,a) = x(s,a)^T w: both losses have gradient -(1/N) sum delta x, so one SGD
    step of size alpha on one sample is Weng's w <- w + alpha delta grad_w Q_w(s, a)."""
    rng = np.random.default_rng(seed)
    x, x_next, w = rng.normal(size=(n, k)), rng.normal(size=(n, k)), rng.normal(size=k)
    r, term = rng.normal(size=n), rng.random(n) < 0.3
    y = td_target(r, x_next @ w, 0.9, term)
    delta = td_error(r, x_next @ w, x @ w, 0.9, term)
    expected = -(delta[:, None] * x).sum(0) / n
    scale = np.abs(delta[:, None] * x).sum() / n
    g_sq = grad(lambda w_: critic_loss(ops.matmul(x, w_), y))(Tensor(w))
    g_semi = grad(lambda w_: critic_semi_gradient_loss(ops.matmul(x, w_), delta))(Tensor(w))
    g_td = grad(lambda w_: 0.5 * ops.mean(ops.square(
        td_error(r, x_next @ w, ops.matmul(x, w_), 0.9, term))))(Tensor(w))
    for g in (g_sq, g_semi, g_td):
        assert_identity(g, expected, scale)
    alpha = 0.1
    g1 = grad(lambda w_: critic_loss(ops.matmul(x[:1], w_), y[:1]))(Tensor(w))
    assert_identity(w - alpha * g1, w + alpha * delta[0] * x[0], np.abs(x[0]).sum())


def test_critic_loss_differentiated_through_the_target_is_rejected():
    """The residual gradient (target not held constant) is not the semi-gradient step."""
    rng = np.random.default_rng(1)
    x, x_next, w, r = (rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=3),
                       rng.normal(size=4))
    delta = r + 0.9 * x_next @ w - x @ w
    semi = -(delta[:, None] * x).sum(0) / 4
    residual = grad(lambda w_: 0.5 * ops.mean(ops.square(
        r + 0.9 * ops.matmul(x_next, w_) - ops.matmul(x, w_))))(Tensor(w))
    with pytest.raises(AssertionError):
        assert_identity(residual, semi, np.abs(semi).sum())
    with pytest.raises(TypeError, match="q_next"):
        td_error(r, Tensor(x_next @ w), Tensor(x @ w), 0.9, np.zeros(4, bool))


# ===================================================================== off-policy

def test_importance_weights_probability_and_log_forms_agree():
    pi, b = np.array([0.2, 0.5, 0.3, 0.0]), np.array([0.4, 0.25, 0.3, 0.5])
    expected = np.array([0.5, 2.0, 1.0, 0.0])
    np.testing.assert_allclose(importance_weights(pi, b), expected, rtol=1e-15)
    with np.errstate(divide="ignore"):
        log_pi = np.log(pi)
    np.testing.assert_allclose(importance_weights(log_prob=log_pi, behaviour_prob=b), expected,
                               rtol=1e-14)
    np.testing.assert_allclose(importance_weights(pi_prob=pi, behaviour_log_prob=np.log(b)),
                               expected, rtol=1e-14)
    np.testing.assert_allclose(importance_weights(log_prob=Tensor(log_pi[:3]),
                                                  behaviour_log_prob=np.log(b[:3]), clip=1.5),
                               [0.5, 1.5, 1.0], rtol=1e-14)


@given(seed=seeds, n=st.integers(1, 10), n_actions=st.integers(2, 4), d=st.integers(1, 4))
def test_off_policy_actor_gradient_is_the_importance_weighted_closed_form(seed, n, n_actions, d):
    """(1/N) sum rho Q grad log pi with rho = pi/beta held constant (Degris et al. sec. 2)."""
    rng = np.random.default_rng(seed)
    phi, actions, w = random_policy(rng, n, n_actions, d)
    beta = rng.dirichlet(np.ones(n_actions), size=n)[np.arange(n), actions]
    q = rng.normal(size=n)
    g = grad_wrt_w(lambda lp: off_policy_actor_objective(lp, beta, q), phi, actions, w)
    pi = softmax(phi @ w, axis=-1)[np.arange(n), actions]
    terms = (pi / beta * q)[:, None] * score_by_hand(phi, actions, w) / n
    assert_identity(g, terms.sum(0), np.abs(terms).sum())
    g_log = grad_wrt_w(lambda lp: off_policy_actor_objective(
        lp, None, q, behaviour_log_prob=np.log(beta)), phi, actions, w)
    assert_identity(g_log, terms.sum(0), np.abs(terms).sum())
    # beta = pi: the ratio is 1 and the estimator is the on-policy actor's
    g_on = grad_wrt_w(lambda lp: off_policy_actor_objective(lp, pi, q), phi, actions, w)
    g_ac = grad_wrt_w(lambda lp: actor_objective(lp, q), phi, actions, w)
    assert_identity(g_on, g_ac, np.abs(terms).sum() + np.abs(g_ac).sum())


def test_differentiated_importance_ratio_is_rejected_and_finite_differences_see_why():
    """Differentiating rho Q log pi through rho adds Q log pi grad rho, which is not in g.

    The same extra term is what central differences of the objective's *value* measure
    (they move rho with log pi), so gradcheck must fail here, by the exact amount."""
    rng = np.random.default_rng(2)
    n = 5
    phi, actions, w = random_policy(rng, n, 3, 2)
    beta, q = rng.uniform(0.2, 0.6, size=n), rng.normal(size=n)
    pi = softmax(phi @ w, axis=-1)[np.arange(n), actions]
    score = score_by_hand(phi, actions, w)
    right = ((pi / beta * q)[:, None] * score).sum(0) / n
    wrong = grad_wrt_w(lambda lp: ops.mean(ops.exp(lp) / beta * q * lp), phi, actions, w)
    assert_identity(grad_wrt_w(lambda lp: off_policy_actor_objective(lp, beta, q), phi, actions,
                               w), right, np.abs(right).sum())
    with pytest.raises(AssertionError):
        assert_identity(wrong, right, np.abs(right).sum())
    # d/d log_prob_i of the value: rho_i q_i (1 + log pi_i) / N; the objective's gradient
    # is rho_i q_i / N
    lp = np.log(pi)
    with pytest.raises(GradcheckError):
        gradcheck(lambda t: off_policy_actor_objective(t, beta, q), [lp], **TIGHT)
    eps = 1e-6
    numeric = np.array([(off_policy_actor_objective(Tensor(lp + eps * e), beta, q).data
                         - off_policy_actor_objective(Tensor(lp - eps * e), beta, q).data)
                        / (2 * eps) for e in np.eye(n)])
    np.testing.assert_allclose(numeric, pi / beta * q * (1 + lp) / n, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------ GTD(lambda) / Off-PAC

def gtd_step_by_hand(v, w, e, x, xn, r, gamma, lam, rho, a_v, a_w, terminated):
    """Degris et al. 2012, Algorithm 1, critic lines, written entry by entry."""
    d = len(v)
    g_next = 0.0 if terminated else gamma
    delta = r + g_next * sum(v[i] * xn[i] for i in range(d)) - sum(v[i] * x[i] for i in range(d))
    e_new = [rho * (x[i] + gamma * lam * e[i]) for i in range(d)]
    w_dot_e = sum(w[i] * e_new[i] for i in range(d))
    w_dot_x = sum(w[i] * x[i] for i in range(d))
    v_new = [v[i] + a_v * (delta * e_new[i] - g_next * (1 - lam) * w_dot_e * xn[i])
             for i in range(d)]
    w_new = [w[i] + a_w * (delta * e_new[i] - w_dot_x * x[i]) for i in range(d)]
    return np.array(v_new), np.array(w_new), np.array(e_new)


@given(seed=seeds, d=st.integers(1, 5), lam=st.sampled_from([0.0, 0.4, 1.0]),
       terminated=st.booleans())
def test_gtd_lambda_single_step_by_hand(seed, d, lam, terminated):
    rng = np.random.default_rng(seed)
    v, w, e, x, xn = (rng.normal(size=d) for _ in range(5))
    r, rho = rng.normal(), rng.uniform(0, 3)
    args = (v, w, e, x, xn, r, 0.9, lam, rho, 0.1, 0.05, terminated)
    copies = [np.copy(a) for a in args[:5]]
    got = gtd_lambda_update(*args)
    for a, c in zip(args[:5], copies):                 # a pure function
        np.testing.assert_array_equal(a, c)
    for g_, h in zip(got, gtd_step_by_hand(*args)):
        np.testing.assert_allclose(g_, h, rtol=1e-12, atol=1e-12)


@given(seed=seeds, d=st.integers(1, 4), lam=st.sampled_from([0.0, 0.7, 1.0]))
def test_gtd_lambda_with_rho_one_and_w_zero_is_td_lambda(seed, d, lam):
    """rho = 1, w = 0, alpha_w = 0: v <- v + alpha delta e, e <- x + gamma lam e (an episode)."""
    rng = np.random.default_rng(seed)
    T, gamma, alpha = 6, 0.9, 0.05
    xs, rs = rng.normal(size=(T + 1, d)), rng.normal(size=T)
    v_gtd = v_td = rng.normal(size=d)
    w = e_gtd = e_td = np.zeros(d)
    for t in range(T):
        last = t == T - 1
        v_gtd, w, e_gtd = gtd_lambda_update(v_gtd, w, e_gtd, xs[t], xs[t + 1], rs[t], gamma, lam,
                                            1.0, alpha, 0.0, last)
        delta = rs[t] + (0.0 if last else gamma * v_td @ xs[t + 1]) - v_td @ xs[t]
        e_td = xs[t] + gamma * lam * e_td
        v_td = v_td + alpha * delta * e_td
        np.testing.assert_allclose(v_gtd, v_td, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(e_gtd, e_td, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(w, 0.0)


def test_gtd_lambda_batched_learners_equal_one_by_one():
    rng = np.random.default_rng(4)
    B, d = 7, 3
    v, w, e, x, xn = (rng.normal(size=(B, d)) for _ in range(5))
    r, rho, term = rng.normal(size=B), rng.uniform(0, 2, size=B), rng.random(B) < 0.4
    batched = gtd_lambda_update(v, w, e, x, xn, r, 0.95, 0.5, rho, 0.1, 0.01, term)
    for i in range(B):
        single = gtd_lambda_update(v[i], w[i], e[i], x[i], xn[i], r[i], 0.95, 0.5, rho[i], 0.1,
                                   0.01, term[i])
        for b_, s_ in zip(batched, single):
            np.testing.assert_allclose(b_[i], s_, rtol=1e-14, atol=1e-15)


@given(seed=seeds, n_params=st.integers(1, 5), lam=st.sampled_from([0.0, 0.5]))
def test_offpac_actor_step_by_hand_and_lambda_zero_is_the_off_policy_gradient(seed, n_params,
                                                                               lam):
    rng = np.random.default_rng(seed)
    u, e_u, psi = (rng.normal(size=n_params) for _ in range(3))
    delta, rho, gamma, alpha = rng.normal(), rng.uniform(0, 3), 0.9, 0.1
    u_new, e_new = offpac_actor_update(u, e_u, psi, delta, gamma, lam, rho, alpha)
    e_hand = np.array([rho * (psi[i] + gamma * lam * e_u[i]) for i in range(n_params)])
    np.testing.assert_allclose(e_new, e_hand, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(u_new, u + alpha * delta * e_hand, rtol=1e-12, atol=1e-12)


def test_offpac_actor_with_lambda_zero_steps_along_the_off_policy_objective():
    """lambda = 0: u <- u + alpha rho delta psi = u + alpha grad off_policy_actor_objective."""
    rng = np.random.default_rng(5)
    phi, actions, w = random_policy(rng, 1, 3, 4)
    beta, delta = np.array([0.3]), np.array([0.7])
    g = grad_wrt_w(lambda lp: off_policy_actor_objective(lp, beta, delta), phi, actions, w)
    pi = softmax(phi @ w, axis=-1)[0, actions[0]]
    rho = importance_weights(np.array([pi]), beta)[0]
    u_new, _ = offpac_actor_update(w, np.zeros(4), score_by_hand(phi, actions, w)[0], delta[0],
                                   0.9, 0.0, rho, 0.1)
    assert_identity(u_new, w + 0.1 * g, np.abs(w).sum() + np.abs(g).sum())


# ============================================================================= DPG

def linear_mu_and_quadratic_q(rng, B, m, ns):
    """mu(s) = K s; Q(s, a) = -(a - M s)^T C (a - M s) + c^T a + s^T D a, C SPD."""
    S = rng.normal(size=(B, ns))
    K, M, D = rng.normal(size=(m, ns)), rng.normal(size=(m, ns)), rng.normal(size=(ns, m))
    L = rng.normal(size=(m, m))
    C, c = L @ L.T + np.eye(m), rng.normal(size=m)

    def q_of(s, a):                                   # a: Tensor (B, m)
        diff = a - s @ M.T
        return (-ops.sum(ops.matmul(diff, C) * diff, axis=-1) + ops.matmul(a, c)
                + ops.sum(ops.matmul(s, D) * a, axis=-1))

    def grad_a_q(s, a):                               # by hand
        return -2 * (a - s @ M.T) @ C + c + s @ D

    return S, K, q_of, grad_a_q


@given(seed=seeds, B=st.integers(1, 6), m=st.integers(1, 3), ns=st.integers(1, 3))
def test_dpg_gradient_is_grad_a_q_times_grad_theta_mu(seed, B, m, ns):
    """Silver et al. eq. 9: for mu = K s, d mu_i / d K_kj = [i = k] s_j, so the DPG estimate is
    (1/B) sum_b outer(grad_a Q(s_b, mu(s_b)), s_b)."""
    rng = np.random.default_rng(seed)
    S, K, q_of, grad_a_q = linear_mu_and_quadratic_q(rng, B, m, ns)
    g = grad(lambda K_: dpg_actor_objective(q_of(S, ops.matmul(S, ops.transpose(K_)))))(
        Tensor(K))
    ga = grad_a_q(S, S @ K.T)
    terms = ga[:, :, None] * S[:, None, :] / B
    assert_identity(g, terms.sum(0), np.abs(terms).sum())
    J = np.einsum("ik,bj->bikj", np.eye(m), S).reshape(B, m, m * ns)   # d mu_i / d vec(K)
    assert_identity(dpg_actor_gradient(ga, J), terms.sum(0).reshape(-1), np.abs(terms).sum())


def test_dpg_gradient_at_the_behaviour_action_is_rejected():
    """grad_a Q must be taken at a = mu(s): at the behaviour's action the check fails."""
    rng = np.random.default_rng(6)
    B, m, ns = 5, 2, 3
    S, K, q_of, grad_a_q = linear_mu_and_quadratic_q(rng, B, m, ns)
    right = grad(lambda K_: dpg_actor_objective(q_of(S, ops.matmul(S, ops.transpose(K_)))))(
        Tensor(K))
    J = np.einsum("ik,bj->bikj", np.eye(m), S).reshape(B, m, m * ns)
    behaviour_a = S @ K.T + rng.normal(size=(B, m))
    wrong = dpg_actor_gradient(grad_a_q(S, behaviour_a), J).reshape(m, ns)
    with pytest.raises(AssertionError):
        assert_identity(wrong, right, np.abs(right).sum())


@given(seed=seeds, B=st.integers(1, 5), m=st.integers(1, 3), n=st.integers(1, 4))
def test_compatible_critic_satisfies_the_compatibility_condition(seed, B, m, n):
    """Theorem 3, condition 1: grad_a Q^w(s, a) = grad_theta mu(s)^T w (J @ w here), at any a,
    and Q^w(s, mu(s)) = V(s)."""
    rng = np.random.default_rng(seed)
    J, mu, w, v_s = (rng.normal(size=(B, m, n)), rng.normal(size=(B, m)), rng.normal(size=n),
                     rng.normal(size=B))
    a = Tensor(rng.normal(size=(B, m)), requires_grad=True)
    q = compatible_q(compatible_features(a, mu, J), w, v_s)
    assert isinstance(q, Tensor) and q.shape == (B,)
    ops.sum(q).backward()
    assert_identity(a.grad, np.einsum("bkj,j->bk", J, w), np.abs(J).sum() * np.abs(w).sum())
    np.testing.assert_allclose(compatible_q(compatible_features(mu, mu, J), w, v_s), v_s,
                               rtol=1e-15)
    phi = compatible_features(a.data, mu, J)
    assert_identity(phi, np.einsum("bk,bkj->bj", a.data - mu, J), np.abs(phi).sum() + 1)


def copdac_q_step_by_hand(theta, w, v, a, mu, J, x, xn, r, gamma, term, a_th, a_w, a_v):
    """Silver et al. 2014 eqs. 19-22, entry by entry (J[i, j] = d mu_i / d theta_j)."""
    m, n = J.shape
    phi = [sum(J[i, j] * (a[i] - mu[i]) for i in range(m)) for j in range(n)]
    q = sum(phi[j] * w[j] for j in range(n)) + sum(v[k] * x[k] for k in range(len(v)))
    q_next = sum(v[k] * xn[k] for k in range(len(v)))            # phi(s', mu(s')) = 0
    delta = r + (0.0 if term else gamma) * q_next - q
    jw = [sum(J[i, j] * w[j] for j in range(n)) for i in range(m)]
    theta_new = [theta[j] + a_th * sum(J[i, j] * jw[i] for i in range(m)) for j in range(n)]
    w_new = [w[j] + a_w * delta * phi[j] for j in range(n)]
    v_new = [v[k] + a_v * delta * x[k] for k in range(len(v))]
    return np.array(theta_new), np.array(w_new), np.array(v_new), delta


@given(seed=seeds, m=st.integers(1, 3), n=st.integers(1, 4), k=st.integers(1, 3),
       terminated=st.booleans())
def test_copdac_q_step_by_hand(seed, m, n, k, terminated):
    rng = np.random.default_rng(seed)
    theta, w = rng.normal(size=n), rng.normal(size=n)
    v, x, xn = (rng.normal(size=k) for _ in range(3))
    a, mu, J = rng.normal(size=m), rng.normal(size=m), rng.normal(size=(m, n))
    args = (theta, w, v, a, mu, J, x, xn, rng.normal(), 0.9, terminated, 0.1, 0.2, 0.3)
    got = copdac_q_update(*args)
    for g_, h in zip(got, copdac_q_step_by_hand(*args)):
        np.testing.assert_allclose(g_, h, rtol=1e-12, atol=1e-12)
    # eq. 20 is the DPG step with the compatible critic's grad_a Q^w = J w
    step = dpg_actor_gradient((J @ w)[None], J[None])
    assert_identity(got[0], theta + 0.1 * step, np.abs(theta).sum() + np.abs(step).sum())


def test_sarsa_and_q_learning_td_errors_as_weng_writes_them():
    """Sarsa bootstraps at the next action taken, Q-learning at mu(s'); with the compatible
    critic, Q^w(s', mu(s')) = V(s'), so COPDAC-Q's delta is r + gamma V(s') - Q^w(s, a)."""
    rng = np.random.default_rng(7)
    m, n = 2, 3
    J, mu_next, a_next = rng.normal(size=(m, n)), rng.normal(size=m), rng.normal(size=m)
    w, v_next, q = rng.normal(size=n), 1.7, 0.4

    def q_next_at(action):
        return compatible_q(compatible_features(action, mu_next, J), w, np.float64(v_next))

    sarsa = sarsa_td_error(1.0, q_next_at(a_next), q, 0.9, False)
    qlearn = q_learning_td_error(1.0, q_next_at(mu_next), q, 0.9, False)
    np.testing.assert_allclose(qlearn, 1.0 + 0.9 * v_next - q, rtol=1e-15)
    np.testing.assert_allclose(sarsa, 1.0 + 0.9 * (v_next + (a_next - mu_next) @ J @ w) - q,
                               rtol=1e-13)
    assert float(q_learning_td_error(1.0, q_next_at(mu_next), q, 0.9, True)) == 1.0 - q


# ======================================================================= gradcheck

def test_gradcheck_every_objective_and_loss():
    rng = np.random.default_rng(8)
    n = 5
    lp0 = np.log(rng.uniform(0.1, 0.9, size=n))
    G, b, disc = rng.normal(size=n), rng.normal(size=n), 0.9 ** np.arange(n)
    q, y, delta = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    phi, actions, w = random_policy(rng, n, 3, 2)
    checks = [
        (lambda lp: reinforce_objective(lp, G, disc, b, 2), [lp0]),
        (lambda w_: reinforce_objective(linear_softmax_log_prob(phi, actions, w_), G, disc, b),
         [w]),
        (lambda vals: value_baseline_loss(vals, G), [q]),
        (lambda lp: actor_objective(lp, q, disc), [lp0]),
        (lambda w_: actor_objective(linear_softmax_log_prob(phi, actions, w_), delta), [w]),
        (lambda qq: critic_loss(qq, y), [q]),
        (lambda qq: critic_semi_gradient_loss(qq, delta), [q]),
        (lambda qq: td_error(G, y, qq, 0.9, np.arange(n) % 2 == 0), [q]),
    ]
    B, m, k = 4, 2, 3
    J, mu, S = rng.normal(size=(B, m, k)), rng.normal(size=(B, m)), rng.normal(size=(B, m))
    checks += [
        (lambda K_: dpg_actor_objective(ops.sum(ops.square(ops.matmul(S, K_)), axis=-1)),
         [rng.normal(size=(m, m))]),
        (lambda a: compatible_features(a, mu, J), [rng.normal(size=(B, m))]),
        (lambda ph, ww, vv: compatible_q(ph, ww, vv),
         [rng.normal(size=(B, k)), rng.normal(size=k), rng.normal(size=B)]),
    ]
    for f, inputs in checks:
        assert gradcheck(f, inputs, **TIGHT)


# ===================================================================== bad input

BAD_GAMMAS = [1.5, -0.1, float("nan"), "0.9", True]
n3 = np.zeros(3)
lp3 = Tensor(np.log(np.full(3, 1 / 3)), requires_grad=True)


@pytest.mark.parametrize("gamma", BAD_GAMMAS)
@pytest.mark.parametrize("call", [
    lambda g: episode_discounts(np.arange(3), g),
    lambda g: td_error(n3, n3, n3, g, np.zeros(3, bool)),
    lambda g: gtd_lambda_update(n3, n3, n3, n3, n3, 0.0, g, 0.5, 1.0, 0.1, 0.1, False),
    lambda g: offpac_actor_update(n3, n3, n3, 0.0, g, 0.5, 1.0, 0.1),
    lambda g: copdac_q_update(n3, n3, n3, n3[:2], n3[:2], np.zeros((2, 3)), n3, n3, 0.0, g,
                              False, .1, .1, .1),
])
def test_bad_gamma_is_refused(call, gamma):
    with pytest.raises(ValueError, match="gamma"):
        call(gamma)


@pytest.mark.parametrize("call, error, match", [
    (lambda: reinforce_objective(lp3, np.zeros(4)), ValueError, "returns has shape"),
    (lambda: reinforce_objective(lp3, np.zeros((3, 1))), ValueError, "no broadcasting"),
    (lambda: reinforce_objective(lp3, n3, discounts=np.ones(2)), ValueError, "discounts"),
    (lambda: reinforce_objective(lp3, n3, baseline=np.ones(2)), ValueError, "baseline"),
    (lambda: reinforce_objective(lp3, Tensor(n3)), TypeError, "held constant"),
    (lambda: reinforce_objective(lp3, n3, n_episodes=0), ValueError, "n_episodes"),
    (lambda: reinforce_objective(lp3, n3, n_episodes=2.5), ValueError, "n_episodes"),
    (lambda: reinforce_objective(lp3, np.array([0., np.nan, 0.])), ValueError, "non-finite"),
    (lambda: episode_discounts(np.array([0.0, 1.0]), 0.9), TypeError, "integer"),
    (lambda: episode_discounts(np.array([-1, 0]), 0.9), ValueError, ">= 0"),
    (lambda: episode_time_index(np.zeros(3, bool), np.zeros(4, bool)), ValueError, "truncated"),
    (lambda: td_error(n3, np.zeros(2), n3, 0.9, np.zeros(3, bool)), ValueError, "q_next"),
    (lambda: td_error(n3, n3, n3, 0.9, np.array([0, 2, 0])), ValueError, "terminated"),
    (lambda: actor_objective(lp3, Tensor(n3)), TypeError, "q_values"),
    (lambda: actor_objective(lp3, n3, discount_I=np.ones(4)), ValueError, "discount_I"),
    (lambda: critic_loss(lp3, Tensor(n3)), TypeError, "q_target"),
    (lambda: importance_weights(n3 + .5, np.array([.5, 0., .5])), ValueError, "> 0"),
    (lambda: importance_weights(n3 + .5), ValueError, "behaviour"),
    (lambda: importance_weights(n3 + .5, n3 + .5, log_prob=n3), ValueError, "exactly one"),
    (lambda: importance_weights(n3 - .5, n3 + .5), ValueError, "pi_prob"),
    (lambda: importance_weights(n3 + .5, n3 + .5, clip=0.0), ValueError, "clip"),
    (lambda: importance_weights(n3 + .5, n3 + .5, clip=-1.0), ValueError, "clip"),
    (lambda: off_policy_actor_objective(lp3, np.ones(2), n3), ValueError, "behaviour_prob"),
    (lambda: off_policy_actor_objective(lp3, Tensor(n3 + 1), n3), TypeError, "behaviour_prob"),
    (lambda: gtd_lambda_update(n3, n3, n3, np.zeros(2), n3, 0., .9, .5, 1., .1, .1, False),
     ValueError, "x has shape"),
    (lambda: gtd_lambda_update(n3, n3, n3, n3, n3, 0., .9, 1.5, 1., .1, .1, False),
     ValueError, "lam"),
    (lambda: gtd_lambda_update(n3, n3, n3, n3, n3, 0., .9, .5, -1., .1, .1, False),
     ValueError, "rho"),
    (lambda: gtd_lambda_update(n3, n3, n3, n3, n3, 0., .9, .5, 1., -.1, .1, False),
     ValueError, "alpha_v"),
    (lambda: gtd_lambda_update(n3, n3, n3, n3, n3, np.zeros(2), .9, .5, 1., .1, .1, False),
     ValueError, "reward"),
    (lambda: gtd_lambda_update(Tensor(n3), n3, n3, n3, n3, 0., .9, .5, 1., .1, .1, False),
     TypeError, "plain array"),
    (lambda: dpg_actor_objective(np.ones(3)), TypeError, "Tensor"),
    (lambda: dpg_actor_objective(Tensor(np.ones((3, 2)))), ValueError, r"\(N, 1\)"),
    (lambda: dpg_actor_gradient(np.ones((4, 2)), np.ones((4, 3, 2))), ValueError,
     "grad_theta_mu"),
    (lambda: dpg_actor_gradient(np.ones(2), np.ones((2, 1, 1))), ValueError, r"\(N, m\)"),
    (lambda: compatible_features(np.ones((4, 2)), np.ones((4, 3)), np.ones((4, 3, 5))),
     ValueError, "a has shape"),
    (lambda: compatible_q(np.ones((4, 3)), np.ones(2), np.ones(4)), ValueError, "phi"),
    (lambda: compatible_q(np.ones((4, 3)), np.ones(3), np.ones((4, 1))), ValueError, "v_of_s"),
    (lambda: copdac_q_update(n3, n3, n3, n3[:2], n3[:2], np.zeros((2, 4)), n3, n3, 0., .9,
                             False, .1, .1, .1), ValueError, "parameter columns"),
])
def test_bad_input_is_refused_with_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
