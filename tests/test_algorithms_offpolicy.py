"""DDPG, TD3, SAC v1 and SAC (auto-temperature) as algorithms: the loop, the updates, the checks.

Training here is tiny (a few hundred Pendulum steps, networks of 16 units):
it checks the machinery, not learning (learning is measured in
verification/offpolicy_learning.py).  The estimators themselves are tested
in test_estimators_offpolicy.py; the gradient audit of the algorithms' own
loss methods is minipg/audit/offpolicy.py, whose DPG-on-LQR and quadrature
checks run here too, each also against a deliberately wrong loss it must
reject.
"""

import csv
import io
import json
import os

import numpy as np
import pytest

from minipg import algorithms
from minipg.algorithms.base import ConfigError, config_from
from minipg.algorithms.offpolicy_common import frozen
from minipg.audit import offpolicy as audit_offpolicy
from minipg.autodiff import ops
from minipg.cli import main
from minipg.envs.vector import Collector, make_vector_env
from minipg.estimators import ddpg as ddpg_estimators
from minipg.run import CHECKPOINT, EVAL, PROGRESS, read_checkpoint, train

ALGOS = ("ddpg", "td3", "sac", "sac_v1")
TINY = {"hidden": "16,16", "batch_size": "32", "learning_starts": "100", "log_every": "100",
        "checkpoint_every": "200", "eval_episodes": "1", "dtype": "float64"}
WALL_COLUMNS = ("wall_s", "steps_per_s")


def rows(run_dir):
    with open(os.path.join(run_dir, PROGRESS), newline="") as fh:
        return [{k: v for k, v in r.items() if k not in WALL_COLUMNS}
                for r in csv.DictReader(fh)]


def tiny_train(algo, out, total_steps=300, seed=0, **extra):
    overrides = dict(TINY)
    overrides.update({k: str(v) for k, v in extra.items()})
    return train(algo, "Pendulum-v1", total_steps=total_steps, seed=seed, out=str(out),
                 overrides=overrides, stream=io.StringIO())


def agent_and_collector(algo, seed=0, **extra):
    cls = algorithms.get(algo)
    overrides = dict(cls.presets["Pendulum-v1"])
    overrides.update(TINY)
    overrides.update({k: str(v) for k, v in extra.items()})
    config = config_from(cls.Config, overrides)
    envs = make_vector_env("Pendulum-v1", config.n_envs)
    agent = cls(config, envs.single_observation_space, envs.single_action_space, seed)
    return agent, Collector(envs, seed=seed, dtype=config.dtype)


# ---------------------------------------------------------------- smoke training
@pytest.mark.parametrize("algo", ALGOS)
def test_float32_presets_train_in_single_precision(algo, tmp_path):
    """The presets are float32: parameters, optimizer state and the losses stay float32
    through the stacked critic layers (the other tests here run in float64)."""
    out = tiny_train(algo, tmp_path / algo, dtype="float32")
    arrays = read_checkpoint(os.path.join(out, CHECKPOINT))
    params = {k: v for k, v in arrays.items() if k.startswith("module/")}
    assert params and all(v.dtype == np.float32 for v in params.values()), \
        sorted((k, str(v.dtype)) for k, v in params.items())
    metric = algorithms.get(algo).metric_names[0]
    assert np.isfinite(float(rows(out)[-1][metric]))


@pytest.mark.parametrize("algo", ALGOS)
def test_smoke_train_pendulum(algo, tmp_path):
    out = tiny_train(algo, tmp_path / algo)
    progress = rows(out)
    assert int(progress[-1]["step"]) == 300
    assert float(progress[-1]["updates"]) == 300 - 100         # one update per step after warm-up
    assert float(progress[0]["updates"]) == 0.0                # step 100: still warming up
    metric = algorithms.get(algo).metric_names[0]
    assert np.isfinite(float(progress[-1][metric])) and float(progress[-1][metric]) != 0.0
    ev = json.load(open(os.path.join(out, EVAL)))
    assert ev["episodes"] == 1 and np.isfinite(ev["return_mean"])
    arrays = read_checkpoint(os.path.join(out, CHECKPOINT))
    assert not any(k.startswith("extra/replay/") for k in arrays)  # checkpoint_replay off


def test_presets_need_no_other_setting():
    for algo in ALGOS:
        cls = algorithms.get(algo)
        assert cls.default_env == "Pendulum-v1" and "Pendulum-v1" in cls.presets
        config = config_from(cls.Config, cls.presets["Pendulum-v1"])
        assert config.total_steps == 20_000 and config.dtype == "float32"


# ------------------------------------------------------------------- the loop
def test_warm_up_uses_uniform_random_actions():
    """Before learning_starts: the collector's random actions, no update; then the policy."""
    agent, collector = agent_and_collector("td3", learning_starts=50)
    calls = []
    original = agent.explore
    agent.explore = lambda obs: calls.append(collector.steps) or original(obs)
    expected_space = make_vector_env("Pendulum-v1", 1).single_action_space
    expected_space.seed(0)                      # the collector seeds its action space with 0
    for _ in range(50):
        agent.learn(collector)
    assert calls == [] and agent.updates == 0
    stored = agent.buffer.actions[:50]
    draws = np.array([expected_space.sample() for _ in range(50)])
    np.testing.assert_allclose(stored, draws, rtol=0, atol=1e-7)   # float32 draws
    assert stored.min() < -1.0 and stored.max() > 1.0    # uniform on [-2, 2], not mu + noise
    agent.learn(collector)
    assert calls == [50] and len(agent.buffer) == 51


def test_td3_delay_actor_and_targets_every_d_critic_steps():
    agent, collector = agent_and_collector("td3", learning_starts=40, policy_delay=3)
    for _ in range(40):
        agent.learn(collector)
    changed = []
    for _ in range(9):
        before = {k: np.array(m.flat_params, copy=True) for k, m in agent.modules().items()}
        agent.learn(collector)
        changed.append({k for k, m in agent.modules().items()
                        if not np.array_equal(before[k], m.flat_params)})
    assert all("critic" in c for c in changed)                       # every step
    moved = [i + 1 for i, c in enumerate(changed) if "actor" in c]
    assert moved == [3, 6, 9]                                        # updates 3, 6, 9
    for i, c in enumerate(changed):
        assert ("actor_target" in c) == ("critic_target" in c) == ("actor" in c), (i, c)


def test_polyak_tau_semantics():
    """target <- (1 - tau) target + tau source, on the first (checked) and later (cached) calls."""
    agent, _ = agent_and_collector("sac", tau=0.3)
    source, target = agent.critic, agent.critic_target
    rng = np.random.default_rng(0)
    for _ in range(2):
        source.flat_params = rng.standard_normal(source.flat_params.shape)
        old_target = np.array(target.flat_params, copy=True)
        agent.soft_update(target, source)
        np.testing.assert_allclose(target.flat_params, 0.7 * old_target + 0.3 * source.flat_params,
                                   rtol=1e-12, atol=1e-12)
    agent.config.tau = 1.0
    agent.soft_update(target, source)
    np.testing.assert_array_equal(target.flat_params, source.flat_params)


def test_actions_are_scaled_to_the_box_and_noise_in_half_widths():
    agent, _ = agent_and_collector("ddpg", noise_std=0.0)
    obs = np.random.default_rng(1).standard_normal((500, 3)) * 50.0    # saturate the tanh
    mu = agent.act(obs, deterministic=True)
    assert mu.min() >= -2.0 and mu.max() <= 2.0 and mu.max() > 1.9 and mu.min() < -1.9
    net_out = agent.actor.net(obs).data                                # tanh(MLP(s)) in [-1, 1]
    np.testing.assert_allclose(mu, 2.0 * net_out, rtol=1e-12)         # center 0, scale 2
    agent.config.noise_std = 0.1
    agent._init_noise()
    small = np.zeros((1, 3))
    mu0 = agent.act(small, deterministic=True)
    noisy = np.array([agent.explore(small)[0] for _ in range(4000)])
    assert np.std(noisy - mu0) == pytest.approx(0.1 * 2.0, rel=0.05)   # sigma x half-width


def test_ou_noise_resets_where_an_episode_ends():
    agent, collector = agent_and_collector("ddpg", noise="ou", noise_std=0.3, learning_starts=0,
                                           batch_size=8)
    for _ in range(199):
        agent.learn(collector)
    assert np.any(agent.noise.state != 0.0)
    agent.learn(collector)                       # step 200: Pendulum's time limit
    assert collector.episodes == 1
    assert np.all(agent.noise.state == 0.0)


def test_batch_size_above_buffer_size_is_a_config_error():
    for algo in ALGOS:
        with pytest.raises(ConfigError) as info:
            config_from(algorithms.get(algo).Config, {"batch_size": 512, "buffer_size": 100})
        assert "batch_size = 512" in str(info.value) and "buffer_size = 100" in str(info.value)


def test_discrete_task_is_refused_with_a_clear_error(capsys):
    assert main(["train", "td3", "--env", "CartPole-v1"]) == 2
    err = capsys.readouterr().err
    assert "td3 works with continuous actions" in err and "CartPole-v1 has discrete" in err
    assert "Traceback" not in err


def test_sac_needs_a_bounded_box():
    import gymnasium as gym
    cls = algorithms.get("sac")
    box = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
    with pytest.raises(ValueError, match="must be bounded"):
        cls(cls.Config(hidden=(4,)), gym.spaces.Box(-1, 1, (3,)), box, 0)


def test_float32_runs_in_float32():
    agent, collector = agent_and_collector("sac", dtype="float32", learning_starts=40)
    for _ in range(45):
        agent.learn(collector)
    for module in agent.modules().values():
        assert module.flat_params.dtype == np.float32
    assert agent.buffer.obs.dtype == np.float32
    assert agent.act(collector.obs).dtype == np.float32


def test_sac_temperature_rises_when_entropy_is_below_target():
    """dJ/dlog alpha = alpha (H_hat - H_bar): one step of the agent's own update moves alpha
    up when the policy's entropy estimate is below the target, down when above."""
    agent, _ = agent_and_collector("sac")
    for log_prob, direction in ((np.full(32, 3.0), +1), (np.full(32, -3.0), -1)):
        before = agent.temperature.alpha
        agent.step_on(agent.alpha_opt, agent.temperature_loss(log_prob))   # H_hat = -/+3 vs -1
        assert np.sign(agent.temperature.alpha - before) == direction


def test_frozen_critic_gives_no_parameter_gradients():
    agent, _ = agent_and_collector("td3")
    obs = np.random.default_rng(0).standard_normal((8, 3))
    agent.critic.zero_grad()
    agent.actor.zero_grad()
    agent.actor_loss(obs).backward()
    assert np.all(agent.critic.flat_grad == 0.0) and np.any(agent.actor.flat_grad != 0.0)
    assert all(p.requires_grad for p in agent.critic.parameters())   # restored afterwards
    with frozen(agent.critic):
        assert not any(p.requires_grad for p in agent.critic.parameters())


def test_critic_ensemble_first_is_critic_one_of_the_batched_forward():
    agent, _ = agent_and_collector("sac")
    rng = np.random.default_rng(2)
    obs, act = rng.standard_normal((10, 3)), rng.uniform(-2, 2, (10, 1))
    both = agent.critic(obs, act).data
    np.testing.assert_allclose(agent.critic.first(obs, act).data, both[0], rtol=1e-12)
    assert not np.allclose(both[0], both[1])                     # independently initialised


# ------------------------------------------------------------------- resume
def test_sac_resume_with_replay_continues_exactly(tmp_path):
    full = rows(tiny_train("sac", tmp_path / "full", total_steps=240, checkpoint_replay="true"))
    part = tiny_train("sac", tmp_path / "part", total_steps=160, checkpoint_replay="true")
    arrays = read_checkpoint(os.path.join(part, CHECKPOINT))
    k = int(arrays["collector/steps"])
    assert int(arrays["extra/replay/size"]) == k == 160
    train("sac", total_steps=240, out=part, resume=True, stream=io.StringIO())
    after = [r for r in rows(part) if int(r["step"]) > k]
    assert after and after == [r for r in full if int(r["step"]) > k]


def test_td3_resume_without_replay_refills_the_buffer(tmp_path):
    part = tiny_train("td3", tmp_path / "part", total_steps=150)
    train("td3", total_steps=300, out=part, resume=True, stream=io.StringIO())
    progress = rows(part)
    assert int(progress[-1]["step"]) == 300
    # 50 updates before the interruption; after it, none until the buffer holds a batch again
    assert float(progress[-1]["updates"]) == 50 + 150 - 32 + 1


# ------------------------------------------- DPG on LQR and the SAC quadrature check
@pytest.mark.parametrize("algo", ["ddpg", "td3"])
def test_dpg_actor_gradient_matches_exact_lqr_gradient(algo):
    result = audit_offpolicy.dpg_lqr_check(algo, np.random.default_rng(11))
    assert result.passed, result


def _sign_flipped(agent, obs):
    """Deliberately wrong: ascends -J (descends the critic)."""
    return -agent.actor_loss(obs)


def _min_of_twin_critics(agent, obs):
    """Deliberately wrong for TD3: the actor follows min(Q_1, Q_2) instead of Q_1."""
    q = agent.critic(obs, agent.actor(obs))
    return -ddpg_estimators.actor_objective(ops.minimum(q[0], q[1]))


@pytest.mark.parametrize("algo, wrong", [("ddpg", _sign_flipped), ("td3", _sign_flipped),
                                         ("td3", _min_of_twin_critics)])
def test_dpg_lqr_check_rejects_wrong_actor_gradient(algo, wrong):
    result = audit_offpolicy.dpg_lqr_check(algo, np.random.default_rng(11), actor_loss=wrong)
    assert not result.passed and result.statistic > result.threshold, result


@pytest.mark.parametrize("algo", ["sac", "sac_v1"])
def test_sac_policy_gradient_matches_quadrature(algo):
    result = audit_offpolicy.sac_quadrature_check(algo, np.random.default_rng(12))
    assert result.passed, result


def _max_of_critics(agent, batch, eps):
    """Deliberately wrong: the policy follows max(Q_1, Q_2) instead of the minimum."""
    actions, log_prob = agent.actor(batch.obs).rsample(eps=eps)
    q = agent.critic(batch.obs, actions)
    return ops.mean(audit_offpolicy.SAC_ALPHA * log_prob - ops.maximum(q[0], q[1]))


def _no_entropy_gradient(agent, batch, eps):
    """Deliberately wrong: log pi detached in the policy loss."""
    actions, log_prob = agent.actor(batch.obs).rsample(eps=eps)
    q = agent.critic(batch.obs, actions)
    return ops.mean(audit_offpolicy.SAC_ALPHA * log_prob.data - ops.minimum(q[0], q[1]))


@pytest.mark.parametrize("wrong", [_max_of_critics, _no_entropy_gradient])
def test_sac_quadrature_check_rejects_wrong_policy_loss(wrong):
    result = audit_offpolicy.sac_quadrature_check("sac", np.random.default_rng(12),
                                                  policy_loss=wrong)
    assert not result.passed, result


def test_audit_offpolicy_all_pass():
    from minipg import audit
    results = audit.run(list(ALGOS))
    assert {r.algorithm for r in results} == set(ALGOS)
    assert all(r.passed for r in results), [r for r in results if not r.passed]


# ------------------------------------------------------ which density log pi is (log_prob_of)
@pytest.mark.parametrize("algo", ["sac", "sac_v1"])
def test_log_prob_of_normalized_action_is_the_density_of_tanh_u(algo):
    """log p_Y(y) = log p_A(a) + sum_i log((high_i - low_i)/2) for y = tanh u in [-1, 1] and
    a = low + (y + 1)(high - low)/2; the normalised one equals the density of an unbounded
    TanhGaussian (actions in (-1, 1)) at the same u, computed independently."""
    import gymnasium as gym

    from minipg.distributions import TanhGaussian
    cls = algorithms.get(algo)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    box = gym.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 3.0]), dtype=np.float64)
    agents = {}
    for convention in ("action", "normalized_action"):
        config = config_from(cls.Config, {"hidden": "8,8", "log_prob_of": convention})
        agents[convention] = cls(config, obs_space, box, seed=5)     # the same networks
    rng = np.random.default_rng(0)
    obs, eps = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    a_action, lp_action = agents["action"].sample_with_log_prob(obs, eps)
    a_norm, lp_norm = agents["normalized_action"].sample_with_log_prob(obs, eps)
    np.testing.assert_array_equal(a_action.data, a_norm.data)
    shift = np.log(2.0) + np.log(1.5)                                 # sum log((high - low)/2)
    np.testing.assert_allclose(lp_norm.data - lp_action.data, shift, rtol=1e-13)
    out = agents["normalized_action"].actor.net(obs).data
    _, lp_unbounded = TanhGaussian(out[:, :2], out[:, 2:]).rsample(eps=eps)
    np.testing.assert_allclose(lp_norm.data, lp_unbounded.data, rtol=1e-12, atol=1e-12)
    # the default is the distribution's own log-density of the action, untouched
    _, lp_dist = agents["action"].actor(obs).rsample(eps=eps)
    np.testing.assert_array_equal(lp_action.data, lp_dist.data)


def test_log_prob_of_shifts_the_temperature_loss_not_the_policy_gradient():
    """A constant in log pi: the actor's gradient is the same, J(alpha)'s is not (the
    automatic target -dim(A) means another temperature)."""
    agents = {c: agent_and_collector("sac", seed=2, log_prob_of=c)[0]
              for c in ("action", "normalized_action")}
    rng = np.random.default_rng(1)
    obs, eps = rng.standard_normal((16, 3)), rng.standard_normal((16, 1))
    grads, alpha_losses = {}, {}
    for c, agent in agents.items():
        loss, log_prob = agent.actor_loss(obs, agent.temperature.alpha, eps)
        agent.actor_opt.zero_grad()
        loss.backward()
        grads[c] = agent.actor_opt.grad.copy()
        alpha_losses[c] = float(agent.temperature_loss(log_prob.data).data)
    np.testing.assert_allclose(grads["action"], grads["normalized_action"], rtol=1e-10,
                               atol=1e-12)
    # J(alpha) = -alpha (log pi + H_bar): shifted by -alpha log 2 on Pendulum's [-2, 2]
    alpha = agents["action"].temperature.alpha
    assert alpha_losses["normalized_action"] - alpha_losses["action"] == \
        pytest.approx(-alpha * np.log(2.0), rel=1e-10)


@pytest.mark.parametrize("algo", ["sac", "sac_v1"])
def test_training_runs_with_either_log_prob_convention(algo, tmp_path):
    runs = {c: rows(tiny_train(algo, tmp_path / c, total_steps=200, log_prob_of=c))
            for c in ("action", "normalized_action")}
    metric = algorithms.get(algo).metric_names[0]
    for progress in runs.values():
        assert int(progress[-1]["step"]) == 200 and np.isfinite(float(progress[-1][metric]))
    assert runs["action"][-1][metric] != runs["normalized_action"][-1][metric]
    with pytest.raises(ConfigError, match="log_prob_of.*accepted: action, normalized_action"):
        config_from(algorithms.get(algo).Config, {"log_prob_of": "pre_tanh"})
