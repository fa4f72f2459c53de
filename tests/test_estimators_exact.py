"""Exact-gradient (level 3) statistical checks of the classical estimators.

Weng, "Policy Gradient Algorithms" (2018), sections "Policy Gradient
Theorem", "REINFORCE", "Actor-Critic", "Off-Policy Policy Gradient", "DPG".
On the exact test beds of :mod:`minipg.audit.beds` (an episodic random
MDP, a continuing one, a random LQR), the Monte-Carlo mean of each minipg
estimator, evaluated through minipg's own objective and autodiff
(:func:`minipg.audit.beds.split_gradient`), is tested against the
theorem by Hotelling's T^2 (:mod:`minipg.audit.stats`) at 99.9% confidence
with fixed seeds:

* REINFORCE with gamma^t -> grad J; without gamma^t -> sum_s eta_1(s) sum_a
  grad pi Q_gamma (Thomas 2014; Nota & Thomas 2020), and the same data tell
  the two apart in both directions;
* the exact state-value baseline: the same mean, a smaller total variance
  (paired one-sided test); an action-dependent baseline is rejected;
* the actor with the exact Q^pi and I = gamma^t -> grad J; without I it is
  rejected (its mean is the eta_1 quantity);
* the off-policy actor -> g = sum_s d_b(s) sum_a grad pi Q^pi (Degris et al.
  2012), which differs from (1 - gamma) grad J_pi and (1 - gamma) grad J_beta;
  without the importance ratio it is rejected; with b = pi it is accepted
  for (1 - gamma) grad J_pi (the bed starts from d_pi);
* DPG on the LQR -> grad_K J after the 1/(1 - gamma) of the normalised state
  distribution; a sign flip and the missing 1/(1 - gamma) are rejected.

Every acceptance is paired with a deliberately wrong estimator or target that
the same check rejects.  The test statistics themselves are checked in
tests/test_audit_stats.py (calibration, power, agreement with scipy).  Bigger
samples: ``verification/estimators_exact.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from minipg import audit
from minipg.audit.beds import (actor_critic_estimates, continuing_bed, dpg_estimates,
                               episodic_bed, lqr_bed, off_policy_estimates, reinforce_estimates,
                               split_gradient, step_log_prob)
from minipg.audit.classical import (formula_from_terms, frozen_ratio_objective,
                                    softmax_score_by_hand)
from minipg.audit.levels import gradcheck_function
from minipg.audit.stats import hotelling_test, variance_comparison
from minipg.autodiff import Tensor, grad, ops
from minipg.envs.tabular import LinearSoftmaxPolicy
from minipg.estimators.off_policy import off_policy_actor_objective
from minipg.estimators.reinforce import (episode_discounts, episode_time_index,
                                         reinforce_objective)
from minipg.kernels import discounted_returns

N_EPISODES = 10_000      # episodic bed: mean length 10, ~1e5 steps
N_SAMPLES = 20_000       # off-policy pairs (s, a) and LQR states


@pytest.fixture(scope="module")
def episodic():
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), N_EPISODES, np.random.default_rng(11))
    return mdp, policy, theta, batch


@pytest.fixture(scope="module")
def reinforce_samples(episodic):
    mdp, policy, theta, batch = episodic
    return {
        "gamma_t": reinforce_estimates(mdp, policy, theta, batch),
        "no_gamma_t": reinforce_estimates(mdp, policy, theta, batch, discounted=False),
        "baseline": reinforce_estimates(mdp, policy, theta, batch,
                                        baseline=mdp.value(policy.probs(theta))),
    }


# ========================================================================== bad input

def test_estimates_refuse_a_batch_that_is_not_an_episode_batch():
    with pytest.raises(TypeError, match="EpisodeBatch"):
        reinforce_estimates(*episodic_bed(), batch="episodes")


# ============================================ the samples are minipg's estimator, split

def test_each_episode_estimate_is_the_objective_gradient_on_that_episode_alone(episodic):
    """g_i from split_gradient equals the autodiff gradient of reinforce_objective on
    episode i's steps alone (n_episodes=1), for the first few episodes."""
    mdp, policy, theta, batch = episodic
    samples = reinforce_estimates(mdp, policy, theta, batch)
    for i in range(5):
        steps = batch.episode == i
        G = discounted_returns(batch.rewards[steps], batch.terminated[steps],
                               batch.truncated[steps], mdp.gamma)
        disc = episode_discounts(batch.t[steps], mdp.gamma)
        g_i = grad(lambda th: reinforce_objective(step_log_prob(
            policy.features, th, batch.states[steps], batch.actions[steps]), G, disc))(theta)
        np.testing.assert_allclose(samples[i], g_i, rtol=1e-12, atol=1e-12)


def test_sampler_time_index_is_episode_time_index(episodic):
    """The estimators use batch.t for gamma^t; it is what episode_time_index gives."""
    batch = episodic[3]
    k = 2000                                   # a prefix of whole episodes
    k = int(np.flatnonzero(batch.terminated[:k])[-1]) + 1
    np.testing.assert_array_equal(
        episode_time_index(batch.terminated[:k], batch.truncated[:k]), batch.t[:k])


def test_split_gradient_refuses_an_objective_not_linear_in_log_prob(episodic):
    mdp, policy, theta, batch = episodic
    n = 200
    with pytest.raises(RuntimeError, match="not linear"):
        split_gradient(lambda lp: ops.mean(ops.exp(lp) * lp), policy, theta,
                       batch.states[:n], batch.actions[:n], batch.episode[:n],
                       int(batch.episode[n - 1]) + 1, scale=1.0)


def test_split_gradient_refuses_score_rows_that_are_not_the_tapes(episodic):
    """A policy whose closed-form score forgets the - E_pi[phi] term is caught."""
    mdp, policy, theta, batch = episodic

    class ForgetfulPolicy(LinearSoftmaxPolicy):
        def grad_log_prob(self, theta):
            return self.features                                     # phi(s,a) only: wrong

    n = 200
    with pytest.raises(RuntimeError, match="add up"):
        split_gradient(lambda lp: ops.sum(lp * batch.rewards[:n]),
                       ForgetfulPolicy(policy.features), theta, batch.states[:n],
                       batch.actions[:n], batch.episode[:n], int(batch.episode[n - 1]) + 1,
                       scale=1.0)


# =========================================================================== REINFORCE

def test_reinforce_with_gamma_t_has_mean_grad_J(episodic, reinforce_samples):
    mdp, policy, theta, _ = episodic
    grad_J = mdp.policy_gradient(policy, theta)
    assert not hotelling_test(reinforce_samples["gamma_t"], grad_J).rejected
    # deliberately wrong: the sign-flipped estimate (a loss minimised as if maximised)
    assert hotelling_test(-reinforce_samples["gamma_t"], grad_J).rejected


def test_reinforce_without_gamma_t_has_the_eta_1_mean_and_the_test_tells_them_apart(
        episodic, reinforce_samples):
    """Same episodes: the gamma^t-free estimate is accepted for sum_s eta_1(s) sum_a grad pi
    Q_gamma and rejected for grad J; the gamma^t estimate the other way round."""
    mdp, policy, theta, _ = episodic
    grad_J = mdp.policy_gradient(policy, theta)
    biased = mdp.reinforce_gradient_without_gamma_t(policy, theta)
    without_t, with_t = reinforce_samples["no_gamma_t"], reinforce_samples["gamma_t"]
    assert not hotelling_test(without_t, biased).rejected
    vs_grad = hotelling_test(without_t, grad_J)
    assert vs_grad.rejected and vs_grad.max_abs_z > vs_grad.z_threshold
    wrong_target = hotelling_test(with_t, biased)
    assert wrong_target.rejected and wrong_target.max_abs_z > wrong_target.z_threshold


def test_state_value_baseline_keeps_the_mean_and_lowers_the_variance(episodic,
                                                                      reinforce_samples):
    mdp, policy, theta, _ = episodic
    grad_J = mdp.policy_gradient(policy, theta)
    with_b, without_b = reinforce_samples["baseline"], reinforce_samples["gamma_t"]
    assert not hotelling_test(with_b, grad_J).rejected
    var = variance_comparison(with_b, without_b)
    assert var.smaller and var.ratio < 1.0
    # the paired test is not one-sided by construction: swapped, it says "not smaller"
    assert not variance_comparison(without_b, with_b).smaller


def test_action_dependent_baseline_is_rejected(episodic):
    """b_t = Q^pi(s_t, a_t) depends on the action: E[gamma^t (G_t - Q) grad log pi] = 0."""
    mdp, policy, theta, batch = episodic
    Q = mdp.q_value(policy.probs(theta))
    G = discounted_returns(batch.rewards, batch.terminated, batch.truncated, mdp.gamma)
    disc = episode_discounts(batch.t, mdp.gamma)
    b = Q[batch.states, batch.actions]
    wrong = split_gradient(lambda lp: reinforce_objective(lp, G, disc, b, batch.n_episodes),
                           policy, theta, batch.states, batch.actions, batch.episode,
                           batch.n_episodes, scale=batch.n_episodes)
    assert hotelling_test(wrong, mdp.policy_gradient(policy, theta)).rejected


# ======================================================================== actor-critic

def test_actor_with_exact_q_and_gamma_t_has_mean_grad_J(episodic):
    mdp, policy, theta, batch = episodic
    grad_J = mdp.policy_gradient(policy, theta)
    samples = actor_critic_estimates(mdp, policy, theta, batch)
    assert not hotelling_test(samples, grad_J).rejected
    assert hotelling_test(-samples, grad_J).rejected                      # sign flip
    # missing I = gamma^t (Weng's step 2.3): rejected for grad J; its mean is the eta_1
    # quantity of REINFORCE without gamma^t (E[Q(s,a) grad log pi | s] = E[G_t grad log pi | s])
    no_I = actor_critic_estimates(mdp, policy, theta, batch, discounted=False)
    assert hotelling_test(no_I, grad_J).rejected
    assert not hotelling_test(no_I, mdp.reinforce_gradient_without_gamma_t(policy,
                                                                           theta)).rejected


# ========================================================================== off-policy

@pytest.fixture(scope="module")
def off_policy():
    mdp, policy, theta, behaviour, d_b = continuing_bed()
    states, actions = mdp.sample_state_actions(d_b, behaviour, N_SAMPLES,
                                               np.random.default_rng(12))
    samples = off_policy_estimates(mdp, policy, theta, behaviour, states, actions)
    return mdp, policy, theta, behaviour, d_b, states, actions, samples


def test_off_policy_actor_has_mean_g(off_policy):
    mdp, policy, theta, behaviour, d_b, states, actions, samples = off_policy
    g = mdp.off_policy_gradient(policy, theta, d_b)
    assert not hotelling_test(samples, g).rejected
    assert hotelling_test(-samples, g).rejected                           # sign flip
    # missing importance weight: the on-policy actor on behaviour data
    no_ratio = off_policy_estimates(mdp, policy, theta, behaviour, states, actions,
                                    importance_weighted=False)
    assert hotelling_test(no_ratio, g).rejected


def test_off_policy_mean_is_neither_scaled_grad_J_pi_nor_grad_J_beta(off_policy):
    """(1 - gamma) puts the gradients on g's scale (d_b sums to 1, eta to 1/(1-gamma)), so
    the rejections are about the state weighting and the dropped pi grad Q term."""
    mdp, policy, theta, behaviour, d_b, _, _, samples = off_policy
    assert hotelling_test(samples, (1 - mdp.gamma) * mdp.policy_gradient(policy, theta)).rejected
    assert hotelling_test(samples, (1 - mdp.gamma)
                          * mdp.excursion_gradient(policy, theta, d_b)).rejected


def test_off_policy_actor_with_behaviour_equal_to_target_has_mean_scaled_grad_J():
    """The control: b = pi (data from d_pi, pi).  The bed starts from d_pi, so eta =
    d_pi / (1 - gamma) and the same estimator's mean is (1 - gamma) grad J_pi exactly;
    the difference above comes from b != pi."""
    mdp, policy, theta, _, _ = continuing_bed()
    pi = policy.probs(theta)
    states, actions = mdp.sample_state_actions(mdp.mu0, pi, N_SAMPLES,
                                               np.random.default_rng(13))
    samples = off_policy_estimates(mdp, policy, theta, pi, states, actions)
    target = (1 - mdp.gamma) * mdp.policy_gradient(policy, theta)
    np.testing.assert_allclose(mdp.off_policy_gradient(policy, theta, mdp.mu0), target,
                               rtol=1e-10, atol=1e-12)
    assert not hotelling_test(samples, target).rejected
    assert hotelling_test(-samples, target).rejected


# ================================================================================= DPG

@pytest.fixture(scope="module")
def dpg():
    lqr, K = lqr_bed()
    x = lqr.sample_states(K, N_SAMPLES, np.random.default_rng(14))
    return lqr, K, dpg_estimates(lqr, K, x)


def test_dpg_with_exact_grad_a_q_has_mean_grad_K_J(dpg):
    """States from the normalised discounted distribution: mean / (1 - gamma) = grad_K J.
    With 2 actions and 3 states each estimate is M x x^T (5 free directions of 6), so the
    test runs in the samples' span (the exact gradient M Sigma_K lies in it)."""
    lqr, K, samples = dpg
    grad_J = lqr.return_gradient(K).reshape(-1)
    ok = hotelling_test(samples / (1 - lqr.gamma), grad_J, span_only=True)
    assert ok.dof == 5 and not ok.rejected
    assert hotelling_test(-samples / (1 - lqr.gamma), grad_J, span_only=True).rejected
    # the missing 1/(1 - gamma) (rho normalised vs unnormalised) is rejected too
    assert hotelling_test(samples, grad_J, span_only=True).rejected


# ======================================================================== the audit rows

def test_audit_registers_three_levels_for_each_classical_algorithm():
    for algorithm in ("reinforce", "actor_critic", "off_policy_ac", "dpg"):
        levels = {entry.info["level"] for entry in audit.checks([algorithm])}
        assert levels == {"gradcheck", "formula", "exact"}


def test_audit_quick_mode_passes_for_the_classical_algorithms():
    results = audit.run(["reinforce", "actor_critic", "off_policy_ac", "dpg"], seed=0)
    failed = [audit.format_row(r) for r in results if not r.passed]
    assert not failed, "\n".join(failed)
    assert all("99.9%" in r.detail for r in results if r.level == "exact")


def test_audit_gradcheck_and_formula_levels_reject_wrong_gradients():
    """The gradcheck row fails for the off-policy objective with rho NOT frozen (its value's
    derivative has the extra Q log pi grad rho); the formula row fails for a closed form
    that forgets gamma^t."""
    mdp, policy, theta, behaviour, d_b = continuing_bed()
    rng = np.random.default_rng(3)
    states, actions = mdp.sample_state_actions(d_b, behaviour, 8, rng)
    q, b = rng.standard_normal(8), behaviour[states, actions]

    def unfrozen(theta_t):
        return off_policy_actor_objective(
            step_log_prob(policy.features, theta_t, states, actions), b, q)
    assert not gradcheck_function(unfrozen, [theta], "unfrozen").passed
    frozen = frozen_ratio_objective(policy, theta, b, q, states, actions)
    assert gradcheck_function(frozen, [theta], "frozen").passed

    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), 20, rng)
    G = discounted_returns(batch.rewards, batch.terminated, batch.truncated, mdp.gamma)
    g = grad(lambda th: reinforce_objective(step_log_prob(
        policy.features, th, batch.states, batch.actions), G,
        episode_discounts(batch.t, mdp.gamma), None, batch.n_episodes))(theta)
    _, score = softmax_score_by_hand(policy.features, theta, batch.states, batch.actions)
    right = (mdp.gamma ** batch.t * G)[:, None] * score / batch.n_episodes
    wrong = G[:, None] * score / batch.n_episodes                        # no gamma^t
    assert formula_from_terms(g, right, "right").passed
    assert not formula_from_terms(g, wrong, "no gamma^t").passed


def test_dpg_estimates_refuse_bad_input():
    lqr, K = lqr_bed()
    with pytest.raises(ValueError, match="states"):
        dpg_estimates(lqr, K, np.zeros((4, 2)))
    with pytest.raises(TypeError, match="LQR"):
        dpg_estimates("lqr", K, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="stabilising"):
        dpg_estimates(lqr, 100 * np.ones_like(K), np.zeros((4, 3)))


def test_step_log_prob_is_the_linear_softmax_log_probability():
    """step_log_prob is the policy written with minipg ops: log_softmax(phi @ theta)[s, a]."""
    mdp, policy, theta = episodic_bed()
    states, actions = np.array([0, 1, 2]), np.array([2, 0, 1])
    lp = step_log_prob(policy.features, Tensor(theta), states, actions)
    np.testing.assert_allclose(lp.data, policy.log_probs(theta)[states, actions], rtol=1e-14)
