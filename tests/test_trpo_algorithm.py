"""Tests of minipg.algorithms.trpo: the policy step against its explicit computation, the
refused step, the value step apart, training, resume, presets and bad settings.

The policy step is checked against NumPy on the explicit Fisher matrix (enumerated
over CartPole's two actions, tests/test_trpo_estimators.py): x = (F + lambda I)^-1 g
by a dense solve, s = sqrt(2 delta / x^T (F + lambda I) x) x, and theta_new - theta_old
= f s with f the logged fraction.  CG runs as many iterations as there are parameters
(exact in exact arithmetic); with damping 0.1 the system's condition number is ~1e2, so
CG's rounding leaves ~1e-12 relative: 1e-8 has a wide margin and still catches a wrong
factor (a missing damping term changes x by ~1e-2 relative here).
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pytest

from minipg.algorithms import ConfigError, get
from minipg.algorithms.base import config_from
from minipg.algorithms.trpo import TRPO, TRPOConfig
from minipg.autodiff import no_grad
from minipg.envs.vector import Collector, make_vector_env
from minipg.estimators.ppo import normalize_advantages
from minipg.estimators.trpo import mean_kl, surrogate_objective
from minipg.run import CHECKPOINT, EVAL, read_checkpoint, resolve_config, train
from test_trpo_estimators import fisher_by_enumeration, frozen

QUICK = {"n_envs": "2", "n_steps": "64", "value_minibatch_size": "32", "value_epochs": "2",
         "hidden": "16,16", "log_every": "128", "checkpoint_every": "256",
         "eval_episodes": "2"}
COLUMNS = {"kl", "line_search_fraction", "line_search_accepted", "cg_residual",
           "surrogate_improvement", "value_loss", "explained_variance"}


def rows(run_dir):
    with open(os.path.join(run_dir, "progress.csv"), newline="") as fh:
        return [{k: v for k, v in r.items() if k not in ("wall_s", "steps_per_s")}
                for r in csv.DictReader(fh)]


def agent_and_batch(env_id="CartPole-v1", **config):
    settings = {"n_envs": 2, "n_steps": 16, "hidden": (4,), "value_minibatch_size": 8}
    settings.update(config)
    cfg = config_from(TRPOConfig, settings)
    envs = make_vector_env(env_id, cfg.n_envs)
    agent = TRPO(cfg, envs.single_observation_space, envs.single_action_space, seed=5)
    collector = Collector(envs, seed=0)
    agent.collect(collector)
    collector.close()
    return agent, agent.rollout_batch(*agent.targets("gae"))


def test_policy_step_is_the_explicit_natural_gradient_step():
    delta, damping = 0.02, 0.1
    agent, batch = agent_and_batch(max_kl=delta, cg_damping=damping, cg_iterations=200)
    policy = agent.policy
    theta_old = policy.flat_params.copy()
    value_before = agent.value.flat_params.copy()
    advantages = normalize_advantages(batch.advantages)
    policy.zero_grad()
    surrogate_objective(policy(batch.obs).log_prob(batch.actions), batch.log_prob_old,
                        advantages).backward()
    g = policy.flat_grad.copy()
    policy.zero_grad()
    F = fisher_by_enumeration(policy, batch.obs)
    A = F + damping * np.eye(len(g))
    x = np.linalg.solve(A, g)
    step = np.sqrt(2 * delta / (x @ A @ x)) * x
    with no_grad():
        old = frozen(policy(batch.obs))

    metrics = agent.policy_step(batch)
    assert metrics["line_search_accepted"] == 1.0
    moved = policy.flat_params - theta_old
    assert np.linalg.norm(moved - metrics["line_search_fraction"] * step) \
        < 1e-8 * np.linalg.norm(step)
    with no_grad():
        kl = float(mean_kl(old, policy(batch.obs)).data)
    assert kl == pytest.approx(metrics["kl"], rel=1e-12) and kl <= delta
    assert metrics["surrogate_improvement"] > 0
    assert metrics["grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-12)
    np.testing.assert_array_equal(agent.value.flat_params, value_before)   # policy step only
    wrong = np.linalg.solve(F + 1e-6 * np.eye(len(g)), g)      # the damping term matters
    assert np.linalg.norm(wrong / np.linalg.norm(wrong) - x / np.linalg.norm(x)) > 1e-3


def test_gaussian_policy_steps_log_std_inside_the_trust_region():
    agent, batch = agent_and_batch("Pendulum-v1", max_kl=0.01)
    log_std = agent.policy.log_std.data.copy()
    with no_grad():
        old = frozen(agent.policy(batch.obs))
    metrics = agent.policy_step(batch)
    assert metrics["line_search_accepted"] == 1.0
    assert not np.array_equal(agent.policy.log_std.data, log_std)
    with no_grad():
        assert float(mean_kl(old, agent.policy(batch.obs)).data) <= 0.01


def test_a_step_that_cannot_improve_leaves_the_policy_unchanged():
    agent, batch = agent_and_batch()
    batch.advantages[:] = 0.0                    # L(theta) = 0 for every theta
    theta = agent.policy.flat_params.copy()
    metrics = agent.policy_step(batch)
    np.testing.assert_array_equal(agent.policy.flat_params, theta)
    assert metrics["line_search_accepted"] == 0.0 and metrics["line_search_fraction"] == 0.0
    assert metrics["kl"] == 0.0 and metrics["surrogate_improvement"] == 0.0


def test_value_step_moves_only_the_value_network():
    agent, batch = agent_and_batch()
    theta = agent.policy.flat_params.copy()
    w = agent.value.flat_params.copy()
    metrics = agent.value_step(batch)
    np.testing.assert_array_equal(agent.policy.flat_params, theta)
    assert not np.array_equal(agent.value.flat_params, w)
    assert np.isfinite(metrics["value_loss"])
    assert set(agent.optimizers()) == {"value"}


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_training_logs_the_trust_region_columns(tmp_path, env):
    out = train(TRPO, env, total_steps=512, seed=0, out=str(tmp_path / "run"),
                overrides=dict(QUICK), stream=io.StringIO())
    progress = rows(out)
    assert COLUMNS <= set(progress[0])
    for row in progress:
        assert float(row["kl"]) <= 0.01
        assert all(np.isfinite(float(row[c])) for c in COLUMNS)
    assert json.load(open(os.path.join(out, EVAL)))["episodes"] == 2


def test_resume_continues_exactly(tmp_path):
    full = rows(train(TRPO, "CartPole-v1", total_steps=512, seed=0, out=str(tmp_path / "full"),
                      overrides=dict(QUICK), stream=io.StringIO()))
    part = train(TRPO, "CartPole-v1", total_steps=256, seed=0, out=str(tmp_path / "part"),
                 overrides=dict(QUICK), stream=io.StringIO())
    k = int(read_checkpoint(os.path.join(part, CHECKPOINT))["collector/steps"])
    train(TRPO, total_steps=512, out=part, resume=True, stream=io.StringIO())
    after = [r for r in rows(part) if int(r["step"]) > k]
    assert after and after == [r for r in full if int(r["step"]) > k]


def test_registered_in_document_order_with_presets():
    assert get("trpo") is TRPO
    from minipg.algorithms import names
    order = names()
    assert order.index("td3") < order.index("trpo") < order.index("ppo")
    for env_id in ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "InvertedPendulum-v5"):
        assert resolve_config(TRPO, env_id, {}).total_steps == TRPO.presets[env_id]["total_steps"]
    cp = resolve_config(TRPO, "CartPole-v1", {})          # rl-baselines3-zoo's TRPO preset
    assert (cp.n_envs, cp.n_steps, cp.value_minibatch_size, cp.cg_damping, cp.gae_lambda,
            cp.gamma, cp.value_lr, cp.value_epochs, cp.max_kl, cp.cg_iterations,
            cp.line_search_shrink, cp.line_search_max_steps, cp.total_steps) == \
        (2, 512, 512, 1e-3, 0.98, 0.99, 1e-3, 20, 0.01, 15, 0.8, 10, 100_000)


@pytest.mark.parametrize("setting, value, words", [
    ("max_kl", 0.0, r"'max_kl'.*accepted: \(0.0, inf\)"),
    ("max_kl", -0.01, r"'max_kl'.*accepted: \(0.0, inf\)"),
    ("cg_damping", -0.1, r"'cg_damping'.*accepted: \[0.0, inf\)"),
    ("cg_iterations", 0, r"'cg_iterations'.*accepted: \[1, "),
    ("line_search_shrink", 0.0, r"'line_search_shrink'.*accepted: \(0.0, 1.0\)"),
    ("line_search_shrink", 1.0, r"'line_search_shrink'.*accepted: \(0.0, 1.0\)"),
    ("line_search_max_steps", 0, r"'line_search_max_steps'.*accepted: \[1, "),
    ("value_minibatch_size", 10_000, r"value_minibatch_size.*n_steps \* n_envs"),
])
def test_bad_settings_are_clear_errors(setting, value, words):
    with pytest.raises(ConfigError, match=words):
        config_from(TRPOConfig, {setting: value})


def test_shared_trunk_is_refused():
    with pytest.raises(ConfigError, match="shared_trunk"):
        config_from(TRPOConfig, {"shared_trunk": True})


def test_the_command_line_runs_numpy_blas_on_one_thread_unless_told_otherwise():
    """minipg/cli.py: one BLAS thread by default (the speed of `minipg train` as a user
    types it, verification/results/trpo_speed.md); an explicit setting is kept."""
    import subprocess
    import sys
    code = ("import os, sys, io, contextlib; from minipg.cli import main; "
            "contextlib.redirect_stdout(io.StringIO()).__enter__(); main(['list']); "
            "sys.stderr.write(str(os.environ.get('OPENBLAS_NUM_THREADS')))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stderr.strip().endswith("1")
    env["OPENBLAS_NUM_THREADS"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stderr.strip().endswith("2")
