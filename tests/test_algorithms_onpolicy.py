"""A2C and PPO as algorithms: training runs, resume, schedules, early stop, targets, audit.

The losses themselves are tested in tests/test_estimators_onpolicy.py; here
the algorithms that wire them: tiny training runs (a few thousand steps,
~1 s each) check the machinery, not learning (learning is measured in
verification/onpolicy_learning.py).

Tolerances: targets computed two ways from the same float64 numbers (the
kernel against a direct sum written here) agree to rtol 1e-12, the rounding
of a few dozen float64 operations on O(1) values.
"""

import csv
import io
import json
import os
import signal
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest

from minipg import audit
from minipg.algorithms.a2c import A2C, A2CConfig
from minipg.algorithms.base import ConfigError, config_from, setting
from minipg.algorithms.onpolicy_common import OnPolicyConfig, SeparateStepsAlgorithm
from minipg.algorithms.ppo import PPO, PPOConfig
from minipg.audit import onpolicy as onpolicy_audit
from minipg.autodiff import ops
from minipg.envs.vector import Collector, SameStepCartPole, make_vector_env
from minipg.estimators.a2c import a2c_loss
from minipg.estimators.ppo import normalize_advantages, ppo_objective
from minipg.optim import Adam
from minipg.run import CHECKPOINT, EVAL, load_run, read_checkpoint, resolve_config, train

IDENTITY = dict(rtol=1e-12, atol=1e-12)
WALL_COLUMNS = ("wall_s", "steps_per_s")

PPO_QUICK = {"n_envs": "2", "n_steps": "64", "minibatch_size": "32", "n_epochs": "2",
             "hidden": "16,16", "log_every": "128", "checkpoint_every": "512",
             "eval_episodes": "2"}
A2C_QUICK = {"n_envs": "4", "n_steps": "5", "hidden": "16,16", "log_every": "200",
             "checkpoint_every": "1000", "eval_episodes": "2"}


def rows(run_dir):
    with open(os.path.join(run_dir, "progress.csv"), newline="") as fh:
        return [{k: v for k, v in r.items() if k not in WALL_COLUMNS}
                for r in csv.DictReader(fh)]


def quick(algo, env, out, total_steps, **overrides):
    base = dict(PPO_QUICK if algo is PPO else A2C_QUICK)
    base.update({k: str(v) for k, v in overrides.items()})
    return train(algo, env, total_steps=total_steps, seed=0, out=str(out), overrides=base,
                 stream=io.StringIO())


# ------------------------------------------------------------------ smoke training
@pytest.mark.parametrize("algo, env, extra", [
    (PPO, "CartPole-v1", {}),
    (PPO, "Pendulum-v1", {"normalize_obs": True, "normalize_reward": True}),
    (A2C, "CartPole-v1", {"shared_trunk": True}),
    (A2C, "Pendulum-v1", {"advantage": "gae", "gae_lambda": 0.9, "optimizer": "adam"}),
    (A2C, "CartPole-v1", {"vectorization": "async"}),
])
def test_smoke_training_discrete_and_continuous(tmp_path, algo, env, extra):
    out = quick(algo, env, tmp_path / "run", 1000, **extra)
    progress = rows(out)
    assert int(progress[-1]["step"]) >= 1000
    for row in progress:      # every diagnostic is a finite number in every row
        for key, value in row.items():
            assert value != "" or key in ("return_mean", "return_std", "length_mean"), key
    ev = json.load(open(os.path.join(out, EVAL)))
    assert ev["episodes"] == 2 and np.all(np.isfinite(ev["returns"]))


def test_presets_make_the_default_tasks_work_without_flags():
    for algo, envs in ((PPO, ("CartPole-v1", "Acrobot-v1", "Pendulum-v1",
                              "InvertedPendulum-v5")),
                       (A2C, ("CartPole-v1", "Acrobot-v1"))):
        assert algo.default_env == "CartPole-v1"
        for env_id in envs:
            config = resolve_config(algo, env_id, {})
            assert env_id in algo.presets and config.total_steps == \
                algo.presets[env_id]["total_steps"]
    # the rl-baselines3-zoo CartPole preset, as the speed benchmark compares it
    cp = resolve_config(PPO, "CartPole-v1", {})
    assert (cp.n_envs, cp.n_steps, cp.minibatch_size, cp.n_epochs, cp.gamma, cp.gae_lambda,
            cp.lr, cp.clip_eps, cp.anneal_lr, cp.anneal_clip, cp.entropy_coef,
            cp.total_steps) == (8, 32, 256, 20, 0.98, 0.8, 1e-3, 0.2, True, True, 0.0, 100_000)


def test_config_cross_checks_name_the_settings():
    with pytest.raises(ConfigError, match="minibatch_size"):
        config_from(PPOConfig, {"n_envs": 2, "n_steps": 8, "minibatch_size": 17})
    with pytest.raises(ConfigError, match="gae_lambda.*advantage=gae"):
        config_from(A2CConfig, {"gae_lambda": 0.9})
    with pytest.raises(ConfigError, match="optimizer"):
        config_from(A2CConfig, {"optimizer": "sgd"})


# ------------------------------------------------------------------ exact resume
def test_ppo_resume_continues_exactly_with_normalisation(tmp_path, monkeypatch):
    """Interrupted (Ctrl-C) after 4 of 8 iterations and resumed: observation statistics
    (agent), reward statistics (gymnasium wrapper), RNGs, Adam and the annealing schedules
    all come back, so the rows after the checkpoint equal an uninterrupted run's."""
    extra = {"normalize_obs": True, "normalize_reward": True, "target_kl": 0.05,
             "anneal_clip": True}
    full = rows(quick(PPO, "Pendulum-v1", tmp_path / "full", 1024, **extra))
    original, calls = PPO.learn, []

    def learn_then_interrupt(self, collector):
        out = original(self, collector)
        calls.append(collector.steps)
        if len(calls) == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(PPO, "learn", learn_then_interrupt)
    part = quick(PPO, "Pendulum-v1", tmp_path / "part", 1024, **extra)
    monkeypatch.setattr(PPO, "learn", original)
    k = int(read_checkpoint(os.path.join(part, CHECKPOINT))["collector/steps"])
    assert k == calls[3] < 1024 and not os.path.exists(os.path.join(part, EVAL))
    train(PPO, out=part, resume=True, stream=io.StringIO())
    after = [r for r in rows(part) if int(r["step"]) > k]
    assert after and after == [r for r in full if int(r["step"]) > k]


def test_a2c_resume_continues_exactly(tmp_path):
    # no lr annealing here: a shorter first run is then a prefix of the longer one
    full = rows(quick(A2C, "CartPole-v1", tmp_path / "full", 2000, anneal_lr=False))
    part = quick(A2C, "CartPole-v1", tmp_path / "part", 1000, anneal_lr=False)
    k = int(read_checkpoint(os.path.join(part, CHECKPOINT))["collector/steps"])
    train(A2C, total_steps=2000, out=part, resume=True, stream=io.StringIO())
    after = [r for r in rows(part) if int(r["step"]) > k]
    assert after and after == [r for r in full if int(r["step"]) > k]


def test_evaluation_uses_the_trained_observation_statistics_frozen(tmp_path):
    out = quick(PPO, "Pendulum-v1", tmp_path / "run", 512, normalize_obs=True)
    arrays = read_checkpoint(os.path.join(out, CHECKPOINT))
    agent, _ = load_run(out)                       # what `minipg evaluate` rebuilds
    rms = agent.normalizer.rms
    assert rms.count == float(arrays["extra/obs_rms/count"]) > 500    # trained, not fresh
    np.testing.assert_array_equal(rms.mean, arrays["extra/obs_rms/mean"])
    obs = np.random.default_rng(0).standard_normal((5, 3))
    agent.act(obs, deterministic=True)
    assert rms.count == float(arrays["extra/obs_rms/count"])          # frozen while acting
    z = agent.observe(obs)
    np.testing.assert_allclose(z, np.clip((obs - rms.mean) / np.sqrt(rms.var + 1e-8), -10, 10),
                               **IDENTITY)


# ------------------------------------------------------------------ schedules, early stop
def test_lr_and_clip_annealing_are_linear_and_reach_zero(tmp_path):
    total = 1024
    out = quick(PPO, "CartPole-v1", tmp_path / "run", total, anneal_lr=True, anneal_clip=True,
                lr=1e-3, clip_eps=0.2, log_every=1)
    progress = rows(out)
    rollout = 2 * 64
    steps_before = np.array([int(r["step"]) for r in progress]) - rollout
    lr = np.array([float(r["lr"]) for r in progress])
    clip = np.array([float(r["clip_eps"]) for r in progress])
    np.testing.assert_allclose(lr, 1e-3 * (1 - steps_before / total), **IDENTITY)
    np.testing.assert_allclose(clip, 0.2 * (1 - steps_before / total), **IDENTITY)
    assert lr[0] == 1e-3 and clip[0] == 0.2
    arrays = read_checkpoint(os.path.join(out, CHECKPOINT))
    assert float(arrays["optim/optimizer/lr"]) == 0.0       # the end value, reached
    flat = rows(quick(PPO, "CartPole-v1", tmp_path / "flat", 512, anneal_lr=False,
                      anneal_clip=False, lr=1e-3, log_every=1))
    assert {float(r["lr"]) for r in flat} == {1e-3} and {float(r["clip_eps"]) for r in flat} \
        == {0.2}


def test_kl_early_stop_fires_for_a_tiny_threshold(tmp_path):
    # first minibatch: ratio 1, KL 0, the step is taken; the next sees KL > 1e-12: stop
    stopped = rows(quick(PPO, "CartPole-v1", tmp_path / "tiny", 512, target_kl=1e-12))
    assert all(float(r["early_stopped"]) == 1.0 and float(r["minibatch_steps"]) == 1.0
               and float(r["epochs"]) == 0.0 and float(r["kl_last"]) > 1e-12 for r in stopped)
    free = rows(quick(PPO, "CartPole-v1", tmp_path / "free", 512, target_kl=0.0))
    # 2 epochs x 4 minibatches of 32 from 2 x 64 samples, never stopped
    assert all(float(r["early_stopped"]) == 0.0 and float(r["minibatch_steps"]) == 8.0
               and float(r["epochs"]) == 2.0 for r in free)
    assert all(float(r["approx_kl"]) >= 0.0 and 0.0 <= float(r["clip_fraction"]) <= 1.0
               for r in free)


def test_minibatch_of_one_does_not_divide_by_zero(tmp_path):
    out = quick(PPO, "CartPole-v1", tmp_path / "run", 256, n_steps=8, minibatch_size=1,
                n_epochs=1)
    assert all(np.isfinite(float(r["policy_objective"])) for r in rows(out))


# ------------------------------------------------------------------ targets inside the algorithm
class _Walk(gym.Env):
    """obs = [t, side]; action 1 at t == 1 terminates; otherwise TimeLimit(4) truncates.
    Rewards 1 + t so every step differs."""
    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, 0.0]), {}

    def step(self, action):
        self.t += 1
        return (np.array([float(self.t), float(action)]), 1.0 + self.t,
                bool(action == 1 and self.t == 2), False, {})


gym.register("minipg-test/Walk-v0", entry_point=_Walk, max_episode_steps=4)


def _direct_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l} up to the episode's or the rollout's end,
    written as the direct sum of GAE eq. 16 (no recursion)."""
    T, N = rewards.shape
    delta = rewards + gamma * np.where(terminated, 0.0, next_values) - values
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            for k in range(t, T):
                adv[t, n] += (gamma * lam) ** (k - t) * delta[k, n]
                if terminated[k, n] or truncated[k, n]:
                    break
    return adv


@pytest.mark.parametrize("algo, config", [
    (PPO, {"n_envs": 3, "n_steps": 11, "minibatch_size": 11, "gamma": 0.9, "gae_lambda": 0.8}),
    (A2C, {"n_envs": 3, "n_steps": 11, "gamma": 0.9, "advantage": "gae", "gae_lambda": 0.8}),
])
def test_truncation_bootstraps_from_the_final_observation_inside_the_algorithm(algo, config):
    cfg = config_from(algo.Config, config)
    envs = make_vector_env("minipg-test/Walk-v0", cfg.n_envs)
    agent = algo(cfg, envs.single_observation_space, envs.single_action_space, seed=1)
    collector = Collector(envs, seed=0)
    b = agent.collect(collector)
    assert b.truncated.any() and b.terminated.any()
    final_obs = []
    # the value of the TRUE final observation [4, a] at each truncation, not the reset [0, 0]
    for t, n in zip(*np.nonzero(b.truncated)):
        true_final = np.array([[4.0, b.actions[t, n]]])
        assert b.next_values[t, n] == pytest.approx(agent.values_of(true_final)[0], rel=1e-12)
        assert b.next_values[t, n] != pytest.approx(agent.values_of(np.zeros((1, 2)))[0])
        final_obs.append(true_final)
    inside = ~(b.terminated | b.truncated)
    np.testing.assert_array_equal(b.next_values[:-1][inside[:-1]], b.values[1:][inside[:-1]])
    advantages, returns = agent.targets("gae")
    expected = _direct_gae(b.rewards, b.values, b.next_values, b.terminated, b.truncated,
                           cfg.gamma, cfg.gae_lambda)
    np.testing.assert_allclose(advantages, expected, **IDENTITY)
    np.testing.assert_allclose(returns, expected + b.values, **IDENTITY)
    # a terminated step has A = r - V(s): nothing bootstrapped
    term = b.terminated
    np.testing.assert_allclose(advantages[term], b.rewards[term] - b.values[term], **IDENTITY)
    collector.close()


def test_a2c_nstep_returns_equal_gae_with_lambda_one():
    cfg = config_from(A2CConfig, {"n_envs": 3, "n_steps": 9, "gamma": 0.9})
    envs = make_vector_env("minipg-test/Walk-v0", cfg.n_envs)
    agent = A2C(cfg, envs.single_observation_space, envs.single_action_space, seed=2)
    collector = Collector(envs, seed=0)
    agent.collect(collector)
    adv_n, ret_n = agent.targets("nstep")
    adv_g, ret_g = agent.targets("gae")          # gae_lambda = 1 (the A2C default)
    np.testing.assert_allclose(adv_n, adv_g, **IDENTITY)
    np.testing.assert_allclose(ret_n, ret_g, **IDENTITY)
    collector.close()


# ------------------------------------------------------------------ the loss as a method
def agent_after_a_rollout(algo, config, seed=3):
    """An agent of ``algo`` with one CartPole rollout collected, its parameters moved off
    the acting ones (so that pi / pi_old != 1 and V != V_old), and its RolloutBatch."""
    cfg = config_from(algo.Config, config)
    envs = make_vector_env("CartPole-v1", cfg.n_envs)
    agent = algo(cfg, envs.single_observation_space, envs.single_action_space, seed=seed)
    collector = Collector(envs, seed=0)
    agent.collect(collector)
    collector.close()
    batch = agent.rollout_batch(*agent.targets("gae"))
    rng = np.random.default_rng(seed)
    for module in agent.modules().values():
        module.flat_params = module.flat_params + 0.3 * rng.standard_normal(
            module.flat_params.shape)
    return agent, batch


def gradient_of(agent, loss):
    """The flat gradient of ``loss`` over every parameter (the joint optimizer's buffer)."""
    agent.optimizer.zero_grad()
    loss.backward()
    return agent.optimizer.grad.copy()


PPO_LOSS_CASES = [
    {},
    {"value_clip_eps": 0.1, "entropy_coef": 0.01, "value_coef": 0.7},
    {"normalize_advantages": False, "shared_trunk": True, "entropy_coef": 0.02},
]


@pytest.mark.parametrize("extra", PPO_LOSS_CASES)
def test_ppo_loss_method_equals_the_estimator_on_a_minibatch(extra):
    """PPO.loss(minibatch) is -J^CLIP' of ppo_objective, with the minibatch's advantages
    normalised (when configured): the same value, diagnostics and gradient."""
    config = {"n_envs": 2, "n_steps": 32, "minibatch_size": 16, **extra}
    agent, batch = agent_after_a_rollout(PPO, config)
    cfg = agent.config
    minibatch = batch[np.arange(5, 45)]
    loss, diagnostics = agent.loss(minibatch, clip_eps=0.15)

    adv = (normalize_advantages(minibatch.advantages) if cfg.normalize_advantages
           else minibatch.advantages)
    dist, values = agent.distribution_and_values(minibatch.obs)
    value_clip = cfg.value_clip_eps if cfg.value_clip_eps > 0 else None
    objective, expected = ppo_objective(
        dist.log_prob(minibatch.actions), minibatch.log_prob_old, adv, values,
        minibatch.returns, dist.entropy(), cfg.value_coef, cfg.entropy_coef, 0.15,
        values_old=minibatch.values_old if value_clip else None, clip_eps_value=value_clip)
    assert float(loss.data) == pytest.approx(-float(objective.data), rel=1e-14, abs=1e-15)
    assert diagnostics == pytest.approx(expected, rel=1e-14, abs=1e-15)
    assert 0.0 < diagnostics["clip_fraction"] < 1.0          # the clip is active somewhere
    np.testing.assert_allclose(gradient_of(agent, loss), gradient_of(agent, -objective),
                               **IDENTITY)
    # clip_eps defaults to the setting
    default_loss, _ = agent.loss(minibatch)
    same, _ = agent.loss(minibatch, clip_eps=cfg.clip_eps)
    assert float(default_loss.data) == float(same.data)


@pytest.mark.parametrize("extra", [{}, {"shared_trunk": True, "value_coef": 0.3}])
def test_a2c_loss_method_equals_the_estimator_on_the_rollout(extra):
    agent, batch = agent_after_a_rollout(A2C, {"n_envs": 3, "n_steps": 7, **extra})
    cfg = agent.config
    loss, diagnostics = agent.loss(batch)
    dist, values = agent.distribution_and_values(batch.obs)
    expected_loss, expected = a2c_loss(dist.log_prob(batch.actions), values, dist.entropy(),
                                       batch.advantages, batch.returns, cfg.value_coef,
                                       cfg.entropy_coef)
    assert float(loss.data) == pytest.approx(float(expected_loss.data), rel=1e-14)
    assert diagnostics == pytest.approx(expected, rel=1e-14, abs=1e-15)
    np.testing.assert_allclose(gradient_of(agent, loss), gradient_of(agent, expected_loss),
                               **IDENTITY)


@pytest.mark.parametrize("algo, expected_calls", [(PPO, 2 * 4), (A2C, 1)])
def test_learn_takes_its_steps_on_the_loss_method(algo, expected_calls, monkeypatch):
    """learn() computes every minibatch loss through the algorithm's loss method: an
    override of the method is what the update descends."""
    calls = []
    original = algo.loss

    def counted(self, batch, *args, **kwargs):
        calls.append(len(batch))
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(algo, "loss", counted)
    config = dict(PPO_QUICK if algo is PPO else A2C_QUICK)
    cfg = config_from(algo.Config, config)
    envs = make_vector_env("CartPole-v1", cfg.n_envs)
    agent = algo(cfg, envs.single_observation_space, envs.single_action_space, seed=0)
    collector = Collector(envs, seed=0)
    agent.learn(collector)
    collector.close()
    rollout = cfg.n_steps * cfg.n_envs
    assert len(calls) == expected_calls
    assert calls == ([cfg.minibatch_size] * expected_calls if algo is PPO else [rollout])


def test_rollout_batch_rows_are_the_buffer_flattened():
    agent, batch = agent_after_a_rollout(A2C, {"n_envs": 3, "n_steps": 4})
    b = agent.buffer
    assert len(batch) == 12
    np.testing.assert_array_equal(batch.obs, b.obs.reshape(12, -1))
    np.testing.assert_array_equal(batch.log_prob_old, b.log_prob.reshape(-1))
    np.testing.assert_array_equal(batch.values_old, b.values.reshape(-1))
    sub = batch[[0, 5, 11]]
    np.testing.assert_array_equal(sub.actions, b.actions.reshape(-1)[[0, 5, 11]])
    np.testing.assert_array_equal(sub.returns, batch.returns[[0, 5, 11]])


# ------------------------------------------------------------------ separate policy and value steps
@dataclass
class PlainStepsConfig(OnPolicyConfig):
    """A test algorithm's settings: the on-policy ones and two learning rates."""
    gae_lambda: float = setting(0.95, "GAE lambda", low=0.0, high=1.0)
    policy_lr: float = setting(1e-3, "Adam learning rate of the policy", low=0.0, low_open=True)
    value_lr: float = setting(3e-3, "Adam learning rate of V", low=0.0, low_open=True)
    value_epochs: int = setting(3, "full-batch steps of the value regression", low=1)


class PlainSteps(SeparateStepsAlgorithm):
    """The shape TRPO and ACKTR take: a policy step and a value step on the same rollout,
    each with its own optimizer.  Here both plain: one Adam step up E[A log pi(a|s)], then
    ``value_epochs`` Adam steps down E[(V(s) - R)^2]."""

    name = "plain_steps"
    Config = PlainStepsConfig

    def make_policy_optimizer(self, policy):
        return Adam([policy], lr=self.config.policy_lr)

    def make_value_optimizer(self, value):
        return Adam([value], lr=self.config.value_lr)

    def policy_step(self, batch):
        log_prob = self.policy(batch.obs).log_prob(batch.actions, validate=False)
        loss = -ops.mean(log_prob * batch.advantages)               # -E[A log pi]
        self.policy_optimizer.zero_grad()
        loss.backward()
        self.policy_optimizer.step()
        return {"policy_loss": float(loss.data)}

    def value_step(self, batch):
        for _ in range(self.config.value_epochs):
            loss = ops.mean(ops.square(self.value(batch.obs) - batch.returns))  # E[(V - R)^2]
            self.value_optimizer.zero_grad()
            loss.backward()
            self.value_optimizer.step()
        return {"value_loss": float(loss.data)}


def test_separate_steps_each_move_only_their_own_network():
    agent, batch = agent_after_a_rollout(PlainSteps, {"n_envs": 2, "n_steps": 16})
    assert set(agent.optimizers()) == {"policy", "value"}
    policy0, value0 = agent.policy.flat_params.copy(), agent.value.flat_params.copy()
    agent.policy_step(batch)
    assert not np.array_equal(agent.policy.flat_params, policy0)
    np.testing.assert_array_equal(agent.value.flat_params, value0)
    policy1 = agent.policy.flat_params.copy()
    agent.value_step(batch)
    np.testing.assert_array_equal(agent.policy.flat_params, policy1)
    assert not np.array_equal(agent.value.flat_params, value0)


def test_separate_steps_train_resume_and_checkpoint_both_optimizers(tmp_path):
    overrides = {"n_envs": "2", "n_steps": "32", "hidden": "16,16", "log_every": "64",
                 "checkpoint_every": "256", "eval_episodes": "2"}
    full = train(PlainSteps, "CartPole-v1", total_steps=512, seed=0, out=str(tmp_path / "full"),
                 overrides=overrides, stream=io.StringIO())
    progress = rows(full)
    assert int(progress[-1]["step"]) == 512
    assert {"policy_loss", "value_loss", "explained_variance"} <= set(progress[0])
    arrays = read_checkpoint(os.path.join(full, CHECKPOINT))
    assert any(k.startswith("optim/policy/") for k in arrays)
    assert any(k.startswith("optim/value/") for k in arrays)
    part = train(PlainSteps, "CartPole-v1", total_steps=256, seed=0, out=str(tmp_path / "part"),
                 overrides=overrides, stream=io.StringIO())
    train(PlainSteps, total_steps=512, out=part, resume=True, stream=io.StringIO())
    assert [r for r in rows(part) if int(r["step"]) > 256] == \
        [r for r in progress if int(r["step"]) > 256]


def test_separate_steps_refuse_a_shared_trunk_and_may_go_without_an_optimizer():
    @dataclass
    class SharedConfig(PlainStepsConfig):
        shared_trunk: bool = setting(True, "one trunk")

    class Shared(PlainSteps):
        Config = SharedConfig

    envs = make_vector_env("CartPole-v1", 1)
    with pytest.raises(ValueError, match="shared_trunk"):
        Shared(config_from(SharedConfig, {}), envs.single_observation_space,
               envs.single_action_space, 0)

    class NaturalPolicyStep(PlainSteps):
        def make_policy_optimizer(self, policy):
            return None                   # e.g. a step that solves F x = g for itself

    agent = NaturalPolicyStep(config_from(PlainStepsConfig, {}), envs.single_observation_space,
                              envs.single_action_space, 0)
    assert set(agent.optimizers()) == {"value"}
    envs.close()


# ------------------------------------------------------------------ audit
def test_audit_has_both_algorithms_and_they_pass():
    results = audit.run(["a2c", "ppo"])
    assert {(r.algorithm, r.level) for r in results} == {
        (a, lvl) for a in ("a2c", "ppo") for lvl in ("gradcheck", "formula", "exact")}
    failed = [audit.format_row(r) for r in results if not r.passed]
    assert not failed, failed


def test_audit_formula_check_rejects_a_surrogate_without_the_min():
    def unclipped_surrogate(log_prob, log_prob_old, advantages, values, returns, entropy, c1,
                            c2, clip_eps, values_old=None, clip_eps_value=None):
        """Vanilla importance-weighted objective: the gradient never vanishes."""
        from minipg.autodiff import ops
        from minipg.estimators.ppo import clipped_value_loss
        ratio = ops.exp(log_prob - log_prob_old)
        objective = (ops.mean(ratio * advantages)
                     - c1 * clipped_value_loss(values, values_old, returns, clip_eps_value)
                     + c2 * ops.mean(entropy))
        return objective, {}

    good, clipped = onpolicy_audit.ppo_formula_error(np.random.default_rng(0))
    bad, _ = onpolicy_audit.ppo_formula_error(np.random.default_rng(0),
                                              estimator=unclipped_surrogate)
    assert good <= onpolicy_audit.IDENTITY_THRESHOLD and clipped > 0
    assert bad > 1e-3


def test_audit_exact_check_rejects_wrong_discount_and_missing_termination():
    mdp, policy, theta = onpolicy_audit.exact_bed()
    exact = mdp.policy_gradient(policy, theta)
    scale = np.max(np.abs(exact))

    def error(**kw):
        return np.max(np.abs(onpolicy_audit.expected_a2c_gradient(mdp, policy, theta, **kw)
                             - exact)) / scale
    assert error() <= onpolicy_audit.IDENTITY_THRESHOLD
    assert error(gamma=0.99) > 1e-3                 # bootstrap with the wrong discount
    assert error(flag_terminations=False) > 1e-3    # bootstraps past a termination
    ppo = onpolicy_audit.expected_ppo_gradient_at_ratio_one(mdp, policy, theta)
    np.testing.assert_allclose(ppo, exact, rtol=1e-10, atol=1e-12 * scale)
    # the same check on a J^CLIP that ignores the advantage's sign is rejected
    wrong = onpolicy_audit.expected_ppo_gradient_at_ratio_one(
        mdp, policy, theta, objective=lambda lp, lpo, adv, eps: ppo_objective(
            lp, lpo, np.abs(adv), lp * 0.0, np.zeros(lp.shape), lp * 0.0, 0.0, 0.0, eps)[0])
    assert np.max(np.abs(wrong - exact)) / scale > 1e-3


# ------------------------------------------------------------------ the vectorized CartPole
def _time_limit_layer(env):
    while not hasattr(env, "_elapsed_steps"):
        env = env.env
    return env


@pytest.mark.filterwarnings("ignore:.*CartPole-v0 is out of date")
@pytest.mark.parametrize("env_id, n_steps", [("CartPole-v1", 1200), ("CartPole-v0", 500)])
def test_vectorized_cartpole_equals_gym_make_transition_by_transition(env_id, n_steps):
    """Every transition of the fast vector CartPole (SAME_STEP adapter) equals the one
    gym.make's CartPole + TimeLimit makes from the same state and action: next
    observation, reward, both flags; finished carts continue from a fresh reset state."""
    envs = make_vector_env(env_id, 3)
    assert isinstance(envs, SameStepCartPole)
    collector = Collector(envs, seed=0)
    single = gym.make(env_id)
    single.reset(seed=0)
    limit = _time_limit_layer(single)
    rng = np.random.default_rng(0)
    counts = {"terminated": 0, "truncated": 0}
    returns = np.zeros(3)
    for _ in range(n_steps):
        state = envs.unwrapped.state.copy()             # float64 (4, N), before the step
        elapsed = envs.unwrapped.steps.copy()
        # a balancing controller with 60%, 2% and 0% random actions: both episode ends occur
        x = collector.obs
        actions = np.where(rng.random(3) < [0.6, 0.02, 0.0], rng.integers(0, 2, 3),
                           (x[:, 2] + 0.5 * x[:, 3] + 0.01 * x[:, 1] > 0).astype(np.int64))
        step = collector.step(actions)
        returns += step.rewards
        for i in range(3):
            single.unwrapped.state = state[:, i].copy()
            single.unwrapped.steps_beyond_terminated = None
            limit._elapsed_steps = int(elapsed[i])
            obs, reward, terminated, truncated, _ = single.step(int(actions[i]))
            np.testing.assert_array_equal(step.next_obs[i], obs.astype(np.float64))
            assert (reward, terminated, truncated) == \
                (step.rewards[i], step.terminated[i], step.truncated[i])
            if terminated or truncated:
                counts["terminated"] += terminated
                counts["truncated"] += truncated
                assert np.all(np.abs(collector.obs[i]) <= 0.05)          # a reset state
                assert envs.unwrapped.steps[i] == 0
                assert collector.recent_returns[-1] == returns[i]
                returns[i] = 0.0
            else:
                np.testing.assert_array_equal(collector.obs[i], step.next_obs[i])
    assert counts["terminated"] > 2 and counts["truncated"] > 0, counts
    collector.close()


def test_rollout_step_array_path_equals_the_tensor_path():
    """Acting on plain arrays (Categorical policy, separate value net) gives the Tensor
    path's actions, log-probabilities and values bit for bit, and draws the same numbers."""
    env = gym.make("CartPole-v1")
    agents = [A2C(A2CConfig(n_envs=3), env.observation_space, env.action_space, seed=4)
              for _ in range(2)]
    assert agents[0].acts_on_arrays
    agents[1].acts_on_arrays = False
    obs = np.random.default_rng(0).normal(size=(3, 4))
    for _ in range(10):
        fast, slow = (agent.rollout_step(obs) for agent in agents)
        for x, y in zip(fast, slow):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype and x.shape == y.shape


@pytest.mark.parametrize("bad", [[0, 2], [-1, 0], [0.0, 1.0], [0, 1, 1], [[0, 1]]])
def test_vectorized_cartpole_refuses_bad_actions(bad):
    """The adapter steps the carts itself: actions other than N integers in {0, 1} are refused."""
    envs = make_vector_env("CartPole-v1", 2)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="integers in"):
        envs.step(np.array(bad))
    envs.close()


def test_vectorized_cartpole_float_and_array_paths_agree():
    """The cart equations on Python floats (few carts) and on arrays (many) give the same
    observations, rewards, flags and states bit for bit, resets included."""
    pair = [make_vector_env("CartPole-v1", 12) for _ in range(2)]
    pair[1].FLOAT_CARTS = 0                                # the array path
    for envs in pair:
        envs.reset(seed=3)
    raw = gym.make_vec("CartPole-v1", num_envs=12, vectorization_mode="vector_entry_point")
    raw.reset(seed=3)                                      # gymnasium's own, until a cart ends
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(300):
        actions = rng.integers(0, 2, 12)
        if ends == 0:
            raw.step(actions)
        (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) = (envs.step(actions) for envs in pair)
        for a, b in ((o1, o2), (r1, r2), (te1, te2), (tr1, tr2),
                     (pair[0].unwrapped.state, pair[1].unwrapped.state)):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
        ends += int((te1 | tr1).sum())
        if ends == 0:
            np.testing.assert_array_equal(raw.unwrapped.state, pair[0].unwrapped.state)
    assert ends > 10
    raw.close()
    for envs in pair:
        envs.close()
