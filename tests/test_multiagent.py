"""The multi-agent collector (mpe2 through PettingZoo's parallel API) and MADDPG through
the run loop: train, resume exactly, evaluate; the errors for the wrong kind of task."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minipg.algorithms import get
from minipg.algorithms.base import ConfigError
from minipg.envs.multiagent import (MultiAgentCollector, load_world_state_arrays,
                                    make_parallel_env, world_state_arrays)
from minipg.run import read_checkpoint, train

SPREAD, SPEAKER = "mpe2/simple_spread_v3", "mpe2/simple_speaker_listener_v4"


def random_joint_actions(collector, rng):
    return tuple(np.eye(s.n)[rng.integers(s.n, size=collector.n_envs)]
                 for s in collector.action_space)


@pytest.mark.parametrize("task", [SPREAD, SPEAKER, "mpe2/simple_adversary_v3"])
def test_world_snapshot_continues_bit_for_bit(task):
    """Stop after 37 steps (inside the second episode), restore into a copy built with
    another seed: the next 40 steps (an episode end and reset included) are identical."""
    rng = np.random.default_rng(0)
    a = MultiAgentCollector([make_parallel_env(task) for _ in range(2)], seed=0)
    for _ in range(37):
        a.step(random_joint_actions(a, rng))
    snapshot = {k: np.array(v) for k, v in a.state_arrays().items()}
    b = MultiAgentCollector([make_parallel_env(task) for _ in range(2)], seed=123)
    b.load_state_arrays(snapshot)
    for _ in range(40):
        actions = random_joint_actions(a, rng)
        sa, sb = a.step(actions), b.step(actions)
        for x, y in zip(sa.obs + sa.next_obs, sb.obs + sb.next_obs):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(sa.rewards, sb.rewards)
        np.testing.assert_array_equal(sa.truncated, sb.truncated)
    assert a.episodes == b.episodes > 0 and list(a.recent_returns) == list(b.recent_returns)


def test_snapshot_is_needed():
    """Without the snapshot the two copies differ (the test above can fail)."""
    rng = np.random.default_rng(0)
    a = MultiAgentCollector([make_parallel_env(SPREAD)], seed=0)
    b = MultiAgentCollector([make_parallel_env(SPREAD)], seed=123)
    actions = random_joint_actions(a, rng)
    assert not np.array_equal(a.step(actions).next_obs[0], b.step(actions).next_obs[0])


def test_world_state_restores_goals_as_entities():
    env, other = make_parallel_env(SPEAKER), make_parallel_env(SPEAKER)
    env.reset(seed=1)
    other.reset(seed=2)
    load_world_state_arrays(other, world_state_arrays(env, "p"), "p")
    goal = env.unwrapped.world.agents[0].goal_b
    restored = other.unwrapped.world.agents[0].goal_b
    assert restored in other.unwrapped.world.landmarks
    np.testing.assert_array_equal(restored.color, goal.color)


def test_collector_returns_and_columns():
    rng = np.random.default_rng(1)
    c = MultiAgentCollector([make_parallel_env(SPEAKER, max_cycles=5)], seed=0)
    assert c.agents == ["speaker_0", "listener_0"]
    assert np.isnan(c.progress_columns()["return_speaker_0"])
    total = np.zeros(2)
    for _ in range(5):
        step = c.step(random_joint_actions(c, rng))
        total += step.rewards[0]
    assert step.truncated[0] and not step.terminated[0]
    assert c.episodes == 1 and c.recent_lengths[-1] == 5
    assert c.recent_returns[-1] == pytest.approx(total.sum(), rel=1e-12)     # summed over agents
    assert c.progress_columns() == pytest.approx({"return_speaker_0": total[0],
                                                  "return_listener_0": total[1]})
    with pytest.raises(ValueError, match="actions"):
        c.step((np.zeros((1, 3)),))


# ------------------------------------------------------------------ through the run loop

# relaxed_actions=false: these keep the argmax path (the presets' relaxed path is
# tests/test_maddpg_relaxed.py's)
SMALL = {"learning_starts": 50, "batch_size": 16, "train_freq": 10, "hidden": "16,16",
         "checkpoint_replay": "true", "checkpoint_every": 150, "log_every": 100,
         "eval_episodes": 2, "relaxed_actions": "false"}


def test_train_resume_is_exact_and_progress_has_agent_columns(tmp_path):
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    kw = dict(seed=3, overrides=dict(SMALL, ensemble_size="2"), stream=open(os.devnull, "w"),
              threads=1)
    train("maddpg", SPEAKER, total_steps=300, out=whole, **kw)
    train("maddpg", SPEAKER, total_steps=150, out=parts, **kw)
    train("maddpg", total_steps=300, out=parts, resume=True, stream=open(os.devnull, "w"))
    a = read_checkpoint(os.path.join(whole, "checkpoint.npz"))
    b = read_checkpoint(os.path.join(parts, "checkpoint.npz"))
    assert int(a["extra/updates"]) > 0
    for key in a:
        if key not in ("counter/wall_s",):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with open(os.path.join(whole, "progress.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert {"return_speaker_0", "return_listener_0", "critic_loss"} <= set(rows[0])
    result = json.load(open(os.path.join(whole, "eval.json")))
    assert result["episodes"] == 2


def test_cli_train_and_evaluate(tmp_path):
    out = str(tmp_path / "run")
    sets = [x for k, v in SMALL.items() for x in ("--set", f"{k}={v}")]
    run = subprocess.run([sys.executable, "-m", "minipg", "train", "maddpg", "--env", SPREAD,
                          "--total-steps", "200", "--out", out, "--threads", "1", *sets],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    ev = subprocess.run([sys.executable, "-m", "minipg", "evaluate", out, "--episodes", "2"],
                        capture_output=True, text=True)
    assert ev.returncode == 0, ev.stderr


# ------------------------------------------------------------------ the wrong kind of task

def test_single_agent_algorithm_refuses_a_multiagent_task(tmp_path):
    run = subprocess.run([sys.executable, "-m", "minipg", "train", "ppo", "--env", SPREAD,
                          "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert run.returncode == 2
    assert "multi-agent task; use maddpg" in run.stderr and "Traceback" not in run.stderr
    assert not os.path.exists(tmp_path / "x")


def test_maddpg_refuses_a_single_agent_task():
    cls = get("maddpg")
    with pytest.raises(ConfigError, match="single-agent task"):
        cls.check_task("CartPole-v1", cls.Config())


def test_missing_mpe2_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpe2", None)        # import mpe2 raises ImportError
    cls = get("maddpg")
    with pytest.raises(ConfigError, match=r"pip install 'minipg\[multiagent\]'"):
        cls.check_task(SPREAD, cls.Config())


def test_unknown_mpe2_task():
    cls = get("maddpg")
    with pytest.raises(ConfigError, match="simple_spread_v3"):
        cls.check_task("mpe2/simple_nothing_v9", cls.Config())


def test_continuous_actions_independent_critics_and_approx_policies(tmp_path):
    out = str(tmp_path / "run")
    train("maddpg", SPREAD, total_steps=120, out=out, seed=1, threads=1,
          stream=open(os.devnull, "w"),
          overrides=dict(SMALL, continuous_actions="true", critic="independent",
                         approx_policies="true"))
    with open(os.path.join(out, "progress.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[-1]["updates"]) > 0 and float(rows[-1]["approx_loss"]) != 0.0


def test_ensembles_draw_a_subpolicy_per_episode():
    cls = get("maddpg")
    config = cls.Config(ensemble_size=3, max_cycles=5, learning_starts=10**6, n_envs=2)
    collector = cls.make_collector(SPEAKER, config, seed=0)
    agent = cls(config, collector.observation_space, collector.action_space, 0)
    drawn = [agent.subpolicy.copy()]
    for t in range(20):
        agent.learn(collector)
        if (t + 1) % 5:
            np.testing.assert_array_equal(agent.subpolicy, drawn[-1])     # fixed in an episode
        else:
            drawn.append(agent.subpolicy.copy())
    assert len({tuple(d.ravel()) for d in drawn}) > 1
    # the first episode's 5 steps x 2 environments, each row tagged with what its env ran
    np.testing.assert_array_equal(agent.replay.subpolicy[:10], np.tile(drawn[0], (5, 1)))
    collector.close()
