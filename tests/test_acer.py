"""ACER: the estimators against their formulas and theorems, the segment replay, the
algorithm through the run loop (training, exact resume with the replay, bad input).

The Retrace kernel is tested in test_retrace.py.  Here:

* the bias-correction identity, exactly over all actions, for c in {0, 0.5, 1, 10, inf}
  (verification/FORMULAS.md "Retrace and ACER/Truncation with bias correction"), and the
  expected ACER policy gradient with the exact Q^pi of a tabular MDP under the behaviour's
  state distribution d_mu: sum_s d_mu(s) sum_a pi grad log pi A^pi (exact sums; without
  the correction term both fail);
* the same gradient estimated from samples (x, a) ~ d_mu mu: Hotelling's T^2 at 99.9%,
  fixed seed; the estimator without the correction term is rejected by the same test;
* the trust-region projection against scipy.optimize on random g, k, delta, and k^T z*
  <= delta; a projection that forgets the max(0, .) disagrees with scipy;
* the stochastic dueling network's Q~ unbiased for V + A - E_pi A (Hotelling at 99.9%),
  and a wrong Q~ (A at the mean sampled action) rejected;
* gradients: every estimator against central differences in float64
  (minipg.autodiff.gradcheck, tolerances of CONTRIBUTING.md "Test tolerances"), and the
  algorithm's update: without the trust region its policy gradient is exactly the
  gradient of the ACER objective through the network (central differences).
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from scipy.optimize import minimize

from minipg import algorithms
from minipg.algorithms.base import ConfigError, config_from
from minipg.audit import acer as audit_acer
from minipg.audit import run as audit_run
from minipg.audit.stats import hotelling_test
from minipg.autodiff import gradcheck, no_grad, ops
from minipg.buffers.segment_replay import SegmentBatch, SegmentReplay
from minipg.cli import main
from minipg.distributions import DiagGaussian
from minipg.envs.vector import make_vector_env
from minipg.estimators import acer as est
from minipg.run import CHECKPOINT, PROGRESS, read_checkpoint, train

# CONTRIBUTING.md "Test tolerances": float64 central differences, eps 1e-6
TIGHT = dict(eps=1e-6, atol=1e-7, rtol=1e-6)


# ------------------------------------------------- truncation with bias correction

@pytest.mark.parametrize("c", audit_acer.TRUNCATIONS)
def test_bias_correction_identity_exact_over_actions(c):
    rng = np.random.default_rng(0)
    for _ in range(5):
        state = audit_acer.linear_softmax_state(rng)
        # exact sums of float64 terms on both sides: rounding only (1e-10, FORMULA_RTOL)
        assert audit_acer.bias_correction_error(*state, c) < 1e-10


@pytest.mark.parametrize("c", [0.0, 0.5, 1.0])
def test_bias_correction_identity_fails_without_the_correction(c):
    """Where the truncation is active (c below some rho), the truncated term alone is biased:
    the identity check can fail."""
    rng = np.random.default_rng(0)
    errors = [audit_acer.bias_correction_error(*audit_acer.linear_softmax_state(rng), c,
                                               correction=False) for _ in range(5)]
    assert max(errors) > 1e-2


def test_expected_acer_gradient_with_exact_q_is_the_d_mu_weighted_policy_gradient():
    mdp, policy, theta, mu, d_mu = audit_acer.acer_bed()
    target = mdp.weighted_policy_gradient(policy, theta, d_mu)   # sum d_mu sum pi psi A^pi
    scale = np.max(np.abs(target))
    for c in audit_acer.TRUNCATIONS:
        got = audit_acer.expected_acer_gradient(mdp, policy, theta, mu, d_mu, c)
        np.testing.assert_allclose(got, target, rtol=0, atol=1e-10 * scale)
    wrong = audit_acer.expected_acer_gradient(mdp, policy, theta, mu, d_mu, 1.0,
                                              correction=False)
    assert np.max(np.abs(wrong - target)) > 1e-2 * scale


def test_sampled_acer_gradient_is_unbiased_and_the_uncorrected_one_is_rejected():
    """Hotelling's T^2 at 99.9% (fixed seed): a correct estimator fails with probability
    0.001; the truncated term alone (c = 1) is rejected by the same test."""
    mdp, policy, theta, mu, d_mu = audit_acer.acer_bed()
    target = mdp.weighted_policy_gradient(policy, theta, d_mu)
    rng = np.random.default_rng(123)
    good = audit_acer.acer_sample_estimates(mdp, policy, theta, mu, d_mu, 20_000, rng)
    bad = audit_acer.acer_sample_estimates(mdp, policy, theta, mu, d_mu, 20_000, rng,
                                           correction=False)
    assert not hotelling_test(good, target).rejected
    assert hotelling_test(bad, target).rejected


# ------------------------------------------------------------------ the trust region

def scipy_projection(g, k, delta):
    """argmin 1/2 ||g - z||^2 s.t. k^T z <= delta by SLSQP (tight tolerance)."""
    result = minimize(lambda z: 0.5 * np.sum((g - z) ** 2), np.zeros_like(g),
                      jac=lambda z: z - g, method="SLSQP",
                      constraints=[{"type": "ineq", "fun": lambda z: delta - k @ z,
                                    "jac": lambda z: -k}],
                      options={"ftol": 1e-14, "maxiter": 500})
    assert result.success, result.message
    return result.x


def test_trust_region_projection_solves_the_quadratic_program():
    rng = np.random.default_rng(0)
    active = 0
    for _ in range(40):
        g, k = rng.standard_normal((2, 5))
        delta = rng.uniform(0.05, 2.0)
        z, scale = est.trust_region_projection(g, k, delta)
        # SLSQP at ftol 1e-14 locates the optimum to ~1e-7; the closed form is exact
        np.testing.assert_allclose(z, scipy_projection(g, k, delta), atol=1e-6)
        assert k @ z <= delta + 1e-12
        active += scale > 0
        if scale > 0:
            assert abs(k @ z - delta) < 1e-12                   # on the boundary
        else:
            np.testing.assert_array_equal(z, g)                  # untouched inside
    assert 5 < active < 35                                        # both cases were drawn


def test_a_projection_without_the_max_disagrees_with_scipy():
    """The same comparison rejects z = g - (k^T g - delta)/||k||^2 k without max(0, .):
    it moves g onto the boundary even where g already satisfies the constraint."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        g, k = rng.standard_normal((2, 5))
        delta = rng.uniform(0.05, 2.0)
        if k @ g < delta:
            wrong = g - (k @ g - delta) / (k @ k) * k
            assert np.max(np.abs(wrong - scipy_projection(g, k, delta))) > 1e-3
            return
    pytest.fail("no draw had an inactive constraint")


def test_trust_region_rows_and_bad_delta():
    g = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]])
    k = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    z, scale = est.trust_region_projection(g, k, 1.0)
    np.testing.assert_allclose(z, [[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    np.testing.assert_allclose(scale, [0.0, 2.0, 0.0])           # k = 0: left unchanged
    for delta in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="delta"):
            est.trust_region_projection(g, k, delta)


def test_kl_gradients_closed_forms_match_autodiff():
    assert audit_run(["acer"], seed=0)                            # smoke: the rows exist
    result = audit_acer.acer_k_formula(False, np.random.default_rng(0))
    assert result.passed, result.detail


# ---------------------------------------------------------- stochastic dueling network

def test_stochastic_dueling_q_is_unbiased_and_a_wrong_one_is_rejected():
    rng = np.random.default_rng(5)
    target = audit_acer.dueling_target()
    assert not hotelling_test(audit_acer.dueling_samples(20_000, rng), target).rejected
    assert hotelling_test(audit_acer.dueling_samples(20_000, rng, wrong=True), target).rejected


# ------------------------------------------------------------------------ gradients

def test_estimator_gradients_against_central_differences():
    rng = np.random.default_rng(0)
    N, A = 5, 3
    rho = rng.uniform(0.2, 3.0, N)
    rho = np.where(np.abs(rho - 1.0) < 0.05, 0.5, rho)           # away from the kink at c
    q_ret, values = rng.standard_normal((2, N))
    probs, mu = rng.dirichlet(np.ones(A), N), rng.dirichlet(np.ones(A), N)
    q = rng.standard_normal((N, A))
    gradcheck(lambda lp: ops.sum(est.truncated_term(lp, rho, q_ret, values, 1.0)),
              [rng.standard_normal(N)], **TIGHT)
    gradcheck(lambda lps: ops.sum(est.correction_term(lps, probs, mu, q, values, 1.0)),
              [np.log(probs)], **TIGHT)
    gradcheck(lambda lp: ops.sum(est.sampled_correction_term(lp, rho, q_ret, values, 1.0)),
              [rng.standard_normal(N)], **TIGHT)
    z = rng.standard_normal((N, A))
    gradcheck(lambda s: est.statistics_surrogate(s, z), [probs], **TIGHT)
    gradcheck(lambda v, a, au: est.critic_loss(est.stochastic_dueling_q(v, a, au), q_ret),
              [values, rng.standard_normal(N), rng.standard_normal((4, N))], **TIGHT)


def test_audit_acer_rows_pass():
    rows = audit_run(["acer"], seed=0)
    assert len(rows) == 12
    assert all(r.passed for r in rows), [(r.estimator, r.level, r.detail) for r in rows
                                         if not r.passed]


def test_estimator_inputs_are_checked():
    with pytest.raises(ValueError, match="rho"):
        est.trace_weights(np.array([-1.0]))
    with pytest.raises(ValueError, match="action_dim"):
        est.trace_weights(np.array([1.0]), 0)
    with pytest.raises(ValueError, match="mu"):
        est.importance_weights(np.array([0.5]), np.array([0.0]))
    with pytest.raises(TypeError, match="held constant"):
        est.truncated_term(np.zeros(2), ops.exp(np.zeros(2)), np.zeros(2), np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="c ="):
        est.truncated_term(np.zeros(2), np.ones(2), np.zeros(2), np.zeros(2), -1.0)


# ------------------------------------------------------------------ segment replay

def segments(rng, T, N, obs_dim=3, A=2):
    return dict(obs=rng.standard_normal((T, N, obs_dim)), actions=rng.integers(0, A, (T, N)),
                rewards=rng.standard_normal((T, N)), terminated=rng.random((T, N)) < 0.2,
                truncated=rng.random((T, N)) < 0.1, next_obs=rng.standard_normal((T, N, obs_dim)),
                mu=rng.dirichlet(np.ones(A), (T, N)))


def test_segment_replay_stores_whole_segments_in_a_ring_and_restores_exactly():
    rng = np.random.default_rng(0)
    buf = SegmentReplay(5, 4, 3, (), 2, action_dtype=np.int64)
    batches = [segments(rng, 4, 3) for _ in range(3)]            # 9 segments into 5 slots
    for b in batches:
        buf.add(**b)
    assert len(buf) == 5 and buf.transitions == 20 and buf.ptr == 4
    # slot 3 holds the 9th segment (the last of the third batch), slot 4 the 5th
    np.testing.assert_array_equal(buf.obs[3], batches[2]["obs"][:, 2])
    np.testing.assert_array_equal(buf.mu[4], batches[1]["mu"][:, 1])
    sample = buf.sample(7, np.random.default_rng(1))
    assert sample.obs.shape == (4, 7, 3) and sample.mu.shape == (4, 7, 2)
    np.testing.assert_array_equal(sample.rewards[:, 0], buf.rewards[sample.indices[0]])
    other = SegmentReplay(5, 4, 3, (), 2, action_dtype=np.int64).load_state_dict(
        buf.state_dict())
    a, b = buf.sample(6, np.random.default_rng(2)), other.sample(6, np.random.default_rng(2))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="mu"):
        buf.add(**dict(segments(rng, 4, 2), mu=np.zeros((4, 2, 3))))


# ------------------------------------------------------------------ the algorithm

TINY = {"hidden": "16,16", "n_steps": "5", "n_envs": "2", "replay_start": "20",
        "log_every": "40", "checkpoint_every": "200", "eval_episodes": "1",
        "buffer_size": "200"}


def tiny_train(env, out, total_steps=200, **extra):
    overrides = dict(TINY, **{k: str(v) for k, v in extra.items()})
    return train("acer", env, total_steps=total_steps, seed=0, out=str(out),
                 overrides=overrides, stream=io.StringIO())


def rows(run_dir):
    import csv
    with open(os.path.join(run_dir, PROGRESS), newline="") as fh:
        return [{k: v for k, v in r.items() if k not in ("wall_s", "steps_per_s")}
                for r in csv.DictReader(fh)]


@pytest.mark.parametrize("env,dtype", [("CartPole-v1", "float64"), ("Pendulum-v1", "float64"),
                                       ("Pendulum-v1", "float32")])
def test_trains_on_discrete_and_continuous_tasks(env, dtype, tmp_path):
    out = tiny_train(env, tmp_path / "run", dtype=dtype)
    arrays = read_checkpoint(os.path.join(out, CHECKPOINT))
    assert arrays["module/policy"].dtype == arrays["extra/replay/mu"].dtype == np.dtype(dtype)
    progress = rows(out)
    assert int(progress[-1]["step"]) == 200
    assert float(progress[-1]["replayed_updates"]) > 0            # Poisson replays happened
    with open(os.path.join(out, "eval.json")) as fh:
        assert np.isfinite(json.load(fh)["return_mean"])


def test_resume_restores_the_replay_and_continues_exactly(tmp_path):
    full = rows(tiny_train("CartPole-v1", tmp_path / "full", total_steps=240))
    part = tiny_train("CartPole-v1", tmp_path / "part", total_steps=120)
    arrays = read_checkpoint(os.path.join(part, CHECKPOINT))
    assert int(arrays["extra/replay/size"]) == 120 // 5         # every segment of 5 steps
    train("acer", total_steps=240, out=part, resume=True, stream=io.StringIO())
    after = [r for r in rows(part) if int(r["step"]) > 120]
    assert after and after == [r for r in full if int(r["step"]) > 120]


@pytest.mark.parametrize("setting,value,accepted", [
    ("c", "0", "(0.0, inf)"), ("c", "-1", "(0.0, inf)"), ("alpha", "1", "[0.0, 1.0)"),
    ("alpha", "-0.1", "[0.0, 1.0)"), ("delta", "0", "(0.0, inf)"),
    ("replay_ratio", "-1", "[0.0, 1000.0]"), ("n_steps", "0", "[1, 10000]"),
    ("replay_batch", "-1", "[0, 100000]")])
def test_bad_settings_are_refused_naming_the_setting_and_its_range(setting, value, accepted,
                                                                   tmp_path, capsys):
    code = main(["train", "acer", "--env", "CartPole-v1", "--out", str(tmp_path / "x"),
                 "--set", f"{setting}={value}"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"'{setting}'" in err and accepted in err
    assert not (tmp_path / "x").exists()


def test_buffer_smaller_than_a_segment_is_refused():
    with pytest.raises(ConfigError, match="buffer_size"):
        config_from(algorithms.get("acer").Config, {"buffer_size": "10", "n_steps": "20"})


def agent_for(env_id, **extra):
    cls = algorithms.get("acer")
    settings = dict(TINY, max_grad_norm="0", value_coef="0", trust_region="false")
    config = config_from(cls.Config, dict(settings, **extra))
    envs = make_vector_env(env_id, 1)
    agent = cls(config, envs.single_observation_space, envs.single_action_space, 0)
    envs.close()
    return agent


def random_batch(agent, rng, T=4, B=2):
    obs = rng.standard_normal((T, B, agent.obs_dim))
    term = np.zeros((T, B), bool)
    term[1, 0] = True
    trunc = np.zeros((T, B), bool)
    trunc[2, 1] = True
    if agent.kind == "discrete":
        actions = rng.integers(0, agent.n_actions, (T, B))
        mu = rng.dirichlet(np.ones(agent.n_actions), (T, B))
    else:
        actions = rng.standard_normal((T, B, agent.n_actions))
        mu = np.concatenate([rng.standard_normal((T, B, agent.n_actions)),
                             rng.uniform(-0.5, 0.5, (T, B, agent.n_actions))], axis=-1)
    return SegmentBatch(obs, actions, rng.standard_normal((T, B)), term, trunc,
                        rng.standard_normal((T, B, agent.obs_dim)), mu, np.arange(B))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_update_without_trust_region_follows_the_acer_objective(env_id):
    """The policy gradient of the algorithm's loss (trust region off, critic weight 0) is
    -(1/N) d/dtheta sum_i objective_i(phi_theta(x_i)), every held-constant quantity frozen
    at the current parameters: compared with central differences in float64."""
    agent = agent_for(env_id)
    batch = random_batch(agent, np.random.default_rng(0))
    policy = agent.policy
    discrete = agent.kind == "discrete"
    pieces = agent.discrete_pieces if discrete else agent.continuous_pieces
    objective = agent.discrete_objective if discrete else agent.continuous_objective
    state = agent.rng.bit_generator.state
    held = pieces(batch)[-1]
    agent.rng.bit_generator.state = state           # the same a' and u_i in the loss below
    loss, _ = agent.discrete_loss(batch) if discrete else agent.continuous_loss(batch)
    agent.optimizer.zero_grad()
    loss.backward()
    analytic = np.array(policy.flat_grad, copy=True)
    n = len(held["obs"])

    def statistics():
        dist = policy(held["obs"])
        if discrete:
            return dist.probs
        return ops.concatenate([dist.mean, dist.log_std + np.zeros(dist.mean.shape)], axis=-1)

    theta = np.array(policy.flat_params, copy=True)
    numeric = np.zeros_like(theta)
    eps = 1e-6
    with no_grad():
        for i in range(theta.size):
            values = []
            for sign in (1, -1):
                policy.flat_params = theta + sign * eps * np.eye(theta.size)[i]
                values.append(float(objective(statistics(), held).data))
            numeric[i] = -(values[0] - values[1]) / (2 * eps * n)
    policy.flat_params = theta
    # float64 central differences, CONTRIBUTING.md "Test tolerances"
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)


def test_average_policy_follows_the_policy_with_rate_one_minus_alpha():
    agent = agent_for("CartPole-v1", alpha="0.9")
    before = np.array(agent.avg_policy.flat_params, copy=True)
    agent.update(random_batch(agent, np.random.default_rng(1)))
    after_policy = np.array(agent.policy.flat_params, copy=True)
    np.testing.assert_allclose(agent.avg_policy.flat_params, 0.9 * before + 0.1 * after_policy,
                               rtol=1e-12, atol=1e-14)


def test_behaviour_stores_the_full_distribution():
    agent = agent_for("CartPole-v1")
    obs = np.random.default_rng(0).standard_normal((3, 4))
    _, mu = agent.behaviour(obs)
    with no_grad():
        np.testing.assert_allclose(mu, agent.policy(obs).probs.data, rtol=1e-14)
    agent = agent_for("Pendulum-v1")
    _, stats = agent.behaviour(np.zeros((2, 3)))
    with no_grad():
        dist = agent.policy(np.zeros((2, 3)))
    assert isinstance(dist, DiagGaussian) and stats.shape == (2, 2)
    np.testing.assert_allclose(stats[:, 1], dist.log_std.data[0])


@pytest.mark.parametrize("replay_batch,expected", [("0", 2), ("3", 3)])
def test_replayed_updates_draw_replay_batch_segments(replay_batch, expected):
    """Every replayed update samples ``replay_batch`` segments (0: n_envs = 2 here); the
    on-policy update is on the N fresh segments whatever ``replay_batch`` is."""
    from minipg.envs.vector import Collector
    agent = agent_for("CartPole-v1", replay_batch=replay_batch, replay_ratio="3",
                      replay_start="0")
    collector = Collector(make_vector_env("CartPole-v1", 2), seed=0)
    sizes, real_sample, real_update = [], agent.buffer.sample, agent.update
    agent.buffer.sample = lambda n, rng: (sizes.append(n), real_sample(n, rng))[1]
    widths = []
    agent.update = lambda batch: (widths.append(batch.rewards.shape[1]), real_update(batch))[1]
    for _ in range(4):
        agent.learn(collector)
    collector.close()
    assert sizes and set(sizes) == {expected}
    on_policy = [2] * 4                        # one update on the fresh segments a learn()
    assert sorted(widths) == sorted(on_policy + [expected] * len(sizes))
