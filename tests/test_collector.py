"""The Collector (vector-env glue) and the episode collection of REINFORCE and actor-critic."""

import io

import gymnasium as gym
import numpy as np
import pytest

from minipg import algorithms
from minipg.algorithms.reinforce import collect_episodes
from minipg.envs.vector import Collector, make_vector_env
from minipg.run import train


class _Counter(gym.Env):
    """obs = [t]; terminates at t == 5 when started with flag 1, else truncated by TimeLimit(3)."""
    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0]), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)]), 1.0, bool(action == 1 and self.t == 2), False, {}


gym.register("minipg-test/Counter-v0", entry_point=_Counter, max_episode_steps=3)


def test_step_keeps_final_observation_and_flags_apart():
    collector = Collector(make_vector_env("minipg-test/Counter-v0", 2), seed=0)
    # env 0 takes action 1 (terminates at t=2), env 1 action 0 (truncated at t=3)
    steps = [collector.step(np.array([1, 0])) for _ in range(3)]
    assert steps[1].terminated.tolist() == [True, False]
    assert steps[1].next_obs[0, 0] == 2.0           # the terminal observation, not the reset one
    assert steps[2].obs[0, 0] == 0.0                # env 0 continued from its reset observation
    assert steps[2].truncated.tolist() == [False, True]
    assert steps[2].terminated.tolist() == [False, False]
    assert steps[2].next_obs[1, 0] == 3.0           # true final observation at the time limit
    assert collector.obs[1, 0] == 0.0
    assert collector.steps == 6 and collector.episodes == 2
    assert sorted(r for _, r, _ in collector.drain_finished()) == [2.0, 3.0]


def test_continuous_actions_are_clipped_for_the_env_only():
    collector = Collector(make_vector_env("Pendulum-v1", 1), seed=0)
    step = collector.step(np.array([[7.0]]))
    assert step.actions[0, 0] == 7.0                # what the policy drew (for its log-prob)
    # Pendulum's cost uses the clipped torque: u^2 term with u = 2, not 7
    th, thdot = np.arctan2(step.obs[0, 1], step.obs[0, 0]), step.obs[0, 2]
    angle = ((th + np.pi) % (2 * np.pi)) - np.pi
    assert step.rewards[0] == pytest.approx(-(angle ** 2 + 0.1 * thdot ** 2 + 0.001 * 4.0))


def test_collect_episodes_returns_whole_episodes_only():
    collector = Collector(make_vector_env("minipg-test/Counter-v0", 2), seed=0)
    rng = np.random.default_rng(0)
    batch = collect_episodes(collector, lambda obs: rng.integers(0, 2, len(obs)), min_steps=7)
    done = batch["terminated"] | batch["truncated"]
    keep = batch["complete"]
    assert keep.sum() >= 7
    for i in range(2):  # every kept stretch of an env ends with an episode end
        last = np.flatnonzero(keep[:, i]).max()
        assert done[last, i]
        assert not keep[last + 1:, i].any()
    # t restarts at 0 after every episode end
    for i in range(2):
        t = batch["t"][:, i]
        assert t[0] == 0 and all(t[k + 1] == (0 if done[k, i] else t[k] + 1)
                                 for k in range(len(t) - 1))


def test_reinforce_discount_weighting_passes_gamma_t(monkeypatch, tmp_path):
    import minipg.algorithms.reinforce as module
    seen = {}
    original = module.reinforce_objective

    def spy(log_prob, returns, discounts=None, baseline=None, n_episodes=None):
        seen["discounts"] = discounts
        return original(log_prob, returns, discounts, baseline, n_episodes)

    monkeypatch.setattr(module, "reinforce_objective", spy)
    for weighting in (True, False):
        train("reinforce", "minipg/ShortCorridor-v0", total_steps=200, out=str(tmp_path / "r"),
              force=True,
              overrides={"discount_weighting": str(weighting), "batch_steps": "50",
                         "gamma": "0.9", "eval_episodes": "1"}, stream=io.StringIO())
        if weighting:
            d = seen["discounts"]
            assert d[0] == 1.0 and np.all(np.isin(np.round(np.log(d) / np.log(0.9), 9),
                                                  np.arange(1000)))
        else:
            assert seen["discounts"] is None


def test_actor_critic_resume_is_exact(tmp_path):
    quick = {"hidden": "16", "log_every": "400", "checkpoint_every": "800", "n_envs": "4",
             "eval_episodes": "1"}

    def rows(out):
        import csv
        return [{k: v for k, v in r.items() if k not in ("wall_s", "steps_per_s")}
                for r in csv.DictReader(open(f"{out}/progress.csv"))]

    full = train("actor_critic", "CartPole-v1", total_steps=2400, out=str(tmp_path / "f"),
                 overrides=quick, stream=io.StringIO())
    part = train("actor_critic", "CartPole-v1", total_steps=1200, out=str(tmp_path / "p"),
                 overrides=quick, stream=io.StringIO())
    train("actor_critic", total_steps=2400, out=part, resume=True, stream=io.StringIO())
    after = [r for r in rows(part) if int(r["step"]) > 1200]
    assert after == [r for r in rows(full) if int(r["step"]) > 1200] and after


def test_registered_algorithms_have_a_preset_for_their_default_task():
    for name in algorithms.names():
        cls = algorithms.get(name)
        assert cls.default_env in cls.presets, name
        assert cls.description and cls.action_kinds
