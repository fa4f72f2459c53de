"""D4PG as an algorithm (one actor): the run loop, exact resume, target copies, bad input.

Training here is tiny (a few hundred Pendulum steps, networks of 16 units): it checks
the machinery, not learning (verification/d4pg_learning.py measures learning).  The K
actors are tested in test_d4pg_actors.py.
"""

import csv
import io
import os

import numpy as np
import pytest

from minipg import algorithms
from minipg.algorithms.base import ConfigError, config_from
from minipg.cli import main
from minipg.envs.vector import Collector, make_vector_env
from minipg.run import CHECKPOINT, PROGRESS, read_checkpoint, train

TINY = {"hidden": "16,16", "batch_size": "32", "learning_starts": "100", "log_every": "100",
        "checkpoint_every": "200", "eval_episodes": "1", "dtype": "float64", "atoms": "11",
        "n_step": "3", "t_target": "10"}
WALL_COLUMNS = ("wall_s", "steps_per_s")


def rows(run_dir):
    with open(os.path.join(run_dir, PROGRESS), newline="") as fh:
        return [{k: v for k, v in r.items() if k not in WALL_COLUMNS}
                for r in csv.DictReader(fh)]


def tiny_train(out, total_steps=300, seed=0, **extra):
    overrides = dict(TINY)
    overrides.update({k: str(v) for k, v in extra.items()})
    return train("d4pg", "Pendulum-v1", total_steps=total_steps, seed=seed, out=str(out),
                 overrides=overrides, stream=io.StringIO())


def agent_and_collector(seed=0, **extra):
    cls = algorithms.get("d4pg")
    overrides = dict(cls.presets["Pendulum-v1"])
    overrides.update(TINY)
    overrides.update({k: str(v) for k, v in extra.items()})
    config = config_from(cls.Config, overrides)
    envs = make_vector_env("Pendulum-v1", config.n_envs)
    agent = cls(config, envs.single_observation_space, envs.single_action_space, seed)
    return agent, Collector(envs, seed=seed, dtype=config.dtype)


def test_registered_after_ddpg_with_presets():
    names = algorithms.names()
    assert names.index("d4pg") == names.index("ddpg") + 1
    cls = algorithms.get("d4pg")
    assert {"Pendulum-v1", "Hopper-v5", "HalfCheetah-v5"} <= set(cls.presets)
    for env_id, preset in cls.presets.items():
        config_from(cls.Config, preset)                       # each preset is valid alone


def test_smoke_train_and_progress_columns(tmp_path):
    out = tiny_train(tmp_path / "run", n_envs=2)
    progress = rows(out)
    assert int(progress[-1]["step"]) == 300
    for key in ("critic_loss", "actor_objective", "q_mean", "beta", "updates"):
        assert key in progress[-1]
    assert float(progress[-1]["updates"]) > 0
    assert float(progress[-1]["critic_loss"]) > 0
    # beta annealed linearly from 0.4 towards 1 over priority_beta_steps
    out = tiny_train(tmp_path / "beta", total_steps=400, priority_beta_steps=300)
    progress = rows(out)
    assert float(progress[-1]["beta"]) == 1.0
    assert float(progress[0]["beta"]) == pytest.approx(0.4 + 0.6 * 100 / 300)


def test_resume_with_replay_continues_exactly(tmp_path):
    """The replay (with its priorities) and the open N-step windows are checkpointed: a
    resumed run writes the same progress rows as an uninterrupted one."""
    full = rows(tiny_train(tmp_path / "full", total_steps=240, checkpoint_replay="true"))
    part = tiny_train(tmp_path / "part", total_steps=170, checkpoint_replay="true")
    arrays = read_checkpoint(os.path.join(part, CHECKPOINT))
    assert int(arrays["collector/steps"]) == 170
    assert "extra/replay/priorities" in arrays and "extra/nstep/lengths" in arrays
    assert int(arrays["extra/nstep/lengths"][0]) > 0          # a window was open
    train("d4pg", total_steps=240, out=part, resume=True, stream=io.StringIO())
    after = [r for r in rows(part) if int(r["step"]) > 170]
    assert after and after == [r for r in full if int(r["step"]) > 170]


class StubActors:
    """A stand-in for the K actors' collector: ``n_envs`` random rows per receive()."""

    remote_actors = True

    def __init__(self, n_rows, obs_dim, act_dim, seed=0):
        self.n_rows, self.obs_dim, self.act_dim = n_rows, obs_dim, act_dim
        self.rng, self.steps, self.version = np.random.default_rng(seed), 0, 0

    def publish(self, flat_params):
        self.version += 1
        return self.version

    def receive(self):
        from minipg.buffers.nstep import NStepRows
        k = self.n_rows
        self.steps += k
        return NStepRows(self.rng.normal(size=(k, self.obs_dim)),
                         self.rng.uniform(-1, 1, (k, self.act_dim)), self.rng.normal(size=k),
                         self.rng.normal(size=(k, self.obs_dim)), np.zeros(k, bool),
                         np.ones(k, np.int64))


def test_k_actors_make_the_one_actor_loops_updates_per_transition():
    """The same transitions bring the same number of updates with one actor (train_freq
    counts vector steps of n_envs transitions) and with K actors (counted in
    transitions): gradient_steps / (train_freq * n_envs) per transition.  Before the fix
    the K-actor rate ignored n_envs (twice as many updates here)."""
    extra = dict(n_envs=2, train_freq=2, gradient_steps=3, learning_starts=100)
    one, collector = agent_and_collector(**extra)
    many, _ = agent_and_collector(**extra)
    stub = StubActors(2, one.obs_dim, one.action_dim)
    try:
        for _ in range(100):                          # 200 transitions each
            one.learn(collector)
            many.learn(stub)
            assert collector.steps == stub.steps
            # between the one-actor loop's update points they differ by one batch at most
            assert abs(many.updates - one.updates) <= 3
    finally:
        collector.close()
    assert one.updates == many.updates == (200 - 100) * 3 // (2 * 2) == 75


def test_hard_target_copies_every_t_target_updates_and_polyak_otherwise():
    agent, collector = agent_and_collector(learning_starts=40, t_target=5, target_update="hard")
    try:
        while agent.updates < 4:
            agent.learn(collector)
        assert not np.array_equal(agent.critic_target.flat_params, agent.critic.flat_params)
        agent.learn(collector)                                 # the 5th update copies
        assert agent.updates == 5
        assert np.array_equal(agent.critic_target.flat_params, agent.critic.flat_params)
        assert np.array_equal(agent.actor_target.flat_params, agent.actor.flat_params)
        agent.learn(collector)
        assert not np.array_equal(agent.critic_target.flat_params, agent.critic.flat_params)
    finally:
        collector.close()
    agent, collector = agent_and_collector(learning_starts=40, target_update="polyak", tau=0.5)
    try:
        while agent.updates < 1:
            before = agent.critic_target.flat_params.copy()
            agent.learn(collector)
        np.testing.assert_allclose(agent.critic_target.flat_params,
                                   0.5 * before + 0.5 * agent.critic.flat_params, rtol=1e-12)
    finally:
        collector.close()


def test_priorities_come_from_the_cross_entropy():
    agent, collector = agent_and_collector(learning_starts=40)
    try:
        while agent.updates < 1:
            agent.learn(collector)
        batch = agent.buffer.sample(8, np.random.default_rng(0))
        _, cross_entropies, _ = agent.critic_loss(batch)
        agent.buffer.update_priorities(batch.indices, cross_entropies.data + 1e-6)
        np.testing.assert_allclose(agent.buffer.priorities[batch.indices],
                                   cross_entropies.data + 1e-6)
        assert np.all(agent.buffer.priorities[:len(agent.buffer)] > 0)
    finally:
        collector.close()


@pytest.mark.parametrize("setting, value, words", [
    ("v_min", "200", "v_min"),
    ("atoms", "1", "atoms"),
    ("n_step", "0", "n_step"),
    ("priority_alpha", "-0.5", "priority_alpha"),
    ("priority_beta", "1.5", "priority_beta"),
    ("priority_beta", "-0.1", "priority_beta"),
    ("actors", "0", "actors"),
])
def test_bad_input_names_the_setting(setting, value, words):
    cls = algorithms.get("d4pg")
    with pytest.raises(ConfigError, match=words) as info:
        config_from(cls.Config, {setting: value})
    assert value in str(info.value) or "v_max" in str(info.value)


def test_bad_input_on_the_command_line_exits_2(capsys, tmp_path):
    code = main(["train", "d4pg", "--out", str(tmp_path / "x"), "--set", "v_min=5",
                 "--set", "v_max=1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "v_min" in err and "v_max" in err and "Traceback" not in err
    assert not os.path.exists(tmp_path / "x")


# ------------------------------------------------------------------------- audit
def test_audit_d4pg_all_pass():
    from minipg import audit
    results = audit.run(["d4pg"])
    assert len(results) == 4 and all(r.passed for r in results), audit.format_table(results)


def test_lqr_check_rejects_a_wrong_actor_loss():
    """The exact row's companion: an actor loss on the probability of the top atom
    (proportional to Q, but not E[Z]: its gradient is 1/(v_max - v_min) too small)."""
    from minipg.audit import check_rng
    from minipg.audit.d4pg import d4pg_lqr_check
    from minipg.autodiff import ops

    def top_atom_probability(agent, obs):
        logits = agent.critic(obs, agent.actor(obs))
        return -ops.mean(ops.softmax(logits, axis=-1)[:, 1])

    result = d4pg_lqr_check(check_rng(0, "d4pg", "wrong", "exact"),
                            actor_loss=top_atom_probability)
    assert not result.passed
