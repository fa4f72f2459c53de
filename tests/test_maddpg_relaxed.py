"""MADDPG's ``relaxed_actions`` path (the authors' code's): the task is built with mpe2's
Box(0, 1, (n,)) actions and receives each agent's Gumbel-softmax relaxed sample itself.

Checked here: the vector the world applies (the listener's force, the speaker's message)
is the one the actor produced and the one the replay and the critic see; the
deterministic action is the noise-free softmax(l / T); exact resume through the run loop;
the actor update uses the other agents' replayed actions on this path too; the setting is
refused where it does not apply.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest

from minipg.algorithms import get
from minipg.algorithms.base import ConfigError, config_from
from minipg.algorithms.maddpg import JointBatch
from minipg.estimators import maddpg as est
from minipg.run import read_checkpoint, resolve_config, train

SPEAKER, SPREAD = "mpe2/simple_speaker_listener_v4", "mpe2/simple_spread_v3"
MADDPG = get("maddpg")


def relaxed_agent(task=SPEAKER, **settings):
    cfg = dict(relaxed_actions=True, hidden=(8,), learning_starts=10**6, max_cycles=25)
    cfg.update(settings)
    config = config_from(MADDPG.Config, cfg)
    collector = MADDPG.make_collector(task, config, seed=0)
    return MADDPG(config, collector.observation_space, collector.action_space, 0), collector


def test_the_world_receives_the_relaxed_vector_and_the_replay_keeps_it():
    agent, collector = relaxed_agent()
    try:
        assert agent.gumbel == [True, True] and agent.relaxed == [True, True]
        world = collector.envs[0].unwrapped.world
        speaker, listener = world.agents
        for _ in range(3):
            actions = agent.act(collector.obs)
            step = collector.step(actions)
            agent.replay.add(step, agent.subpolicy)
            a_s, a_l = actions[0][0], actions[1][0]
            assert a_s.shape == (3,) and a_l.shape == (5,)
            assert np.all((a_s > 0) & (a_s < 1)) and abs(a_s.sum() - 1) < 1e-12  # not one-hot
            # the world's message and force, from the vector it received (float32)
            sent_s, sent_l = a_s.astype(np.float32), a_l.astype(np.float32)
            np.testing.assert_array_equal(speaker.action.c, sent_s)
            sensitivity = 5.0 if listener.accel is None else listener.accel
            np.testing.assert_array_equal(
                listener.action.u, np.array([sent_l[2] - sent_l[1], sent_l[4] - sent_l[3]],
                                            dtype=np.float64) * sensitivity)
            # the step, the replay and the critic's input hold exactly that vector
            np.testing.assert_array_equal(step.actions[0][0], sent_s)
            np.testing.assert_array_equal(step.actions[1][0], sent_l)
        row = (agent.replay.ptr - 1) % agent.replay.capacity
        np.testing.assert_array_equal(agent.replay.actions[row],
                                      np.concatenate([speaker.action.c, sent_l]))
        batch = agent.replay.sample(4, np.random.default_rng(0))
        _, x_act = agent.critic_inputs(0, batch.obs, batch.actions)
        assert np.asarray(x_act).shape == (4, 8)
        np.testing.assert_array_equal(np.asarray(x_act), np.concatenate(batch.actions, 1))
        for row in np.asarray(x_act):        # every stored action: float32 values on the simplex
            assert any(np.array_equal(row, r) for r in agent.replay.actions[:3])
    finally:
        collector.close()


def test_the_discrete_path_still_sends_the_argmax():
    config = config_from(MADDPG.Config, dict(hidden=(8,)))
    collector = MADDPG.make_collector(SPEAKER, config, seed=0)
    agent = MADDPG(config, collector.observation_space, collector.action_space, 0)
    try:
        actions = agent.act(collector.obs)
        step = collector.step(actions)
        speaker = collector.envs[0].unwrapped.world.agents[0]
        np.testing.assert_array_equal(speaker.action.c, np.eye(3)[np.argmax(actions[0][0])])
        np.testing.assert_array_equal(step.actions[0], actions[0])   # the replay: the soft one
    finally:
        collector.close()


def test_deterministic_action_is_the_noise_free_softmax():
    agent, collector = relaxed_agent(temperature=0.5)
    try:
        obs = collector.obs
        for i in range(2):
            logits = agent.actors[i][0](np.asarray(obs[i], np.float64)).data
            z = np.exp((logits - logits.max(1, keepdims=True)) / 0.5)
            np.testing.assert_allclose(agent.act(obs, deterministic=True)[i],
                                       z / z.sum(1, keepdims=True), rtol=1e-12)
            # and not the one-hot argmax the Discrete path evaluates with
            assert not np.allclose(agent.act(obs, deterministic=True)[i],
                                   np.eye(logits.shape[1])[np.argmax(logits, 1)])
    finally:
        collector.close()


def actor_uses_replayed_actions_relaxed(actor_loss):
    """On the relaxed path (Box(0, 1) agents, Gumbel actors, the noise held fixed): agent
    0's actor loss moves with agent 1's REPLAYED action and not with agent 1's policy."""
    rng = np.random.default_rng(2)
    spaces = (gym.spaces.Box(0.0, 1.0, (3,)), gym.spaces.Box(0.0, 1.0, (5,)))
    config = config_from(MADDPG.Config, dict(relaxed_actions=True, hidden=(6,),
                                              activation="tanh"))
    obs_spaces = tuple(gym.spaces.Box(-np.inf, np.inf, (d,), np.float64) for d in (3, 4))
    agent = MADDPG(config, obs_spaces, spaces, 0)
    for module in agent.modules().values():
        module.flat_params = 0.5 * rng.standard_normal(module.flat_params.shape)
    n = 6
    obs = [rng.standard_normal((n, d)) for d in (3, 4)]
    replayed = [rng.dirichlet(np.ones(3), n), rng.dirichlet(np.ones(5), n)]
    noise = est.gumbel_noise(rng, (n, 3))
    base = float(actor_loss(agent, obs, replayed, noise).data)
    moved = [replayed[0], rng.dirichlet(np.ones(5), n)]
    reacts = abs(float(actor_loss(agent, obs, moved, noise).data) - base) > 1e-8
    agent.actors[1][0].flat_params = rng.standard_normal(agent.actors[1][0].flat_params.shape)
    ignores = float(actor_loss(agent, obs, replayed, noise).data) == base
    return reacts and ignores


def _batch(agent, obs, actions):
    n = len(obs[0])
    return JointBatch(obs, actions, np.zeros((n, 2)), obs, np.zeros(n, bool), np.zeros(n, bool),
                      np.zeros((n, 2), np.int64))


def test_relaxed_actor_update_uses_the_replayed_actions_of_the_others():
    assert actor_uses_replayed_actions_relaxed(
        lambda agent, obs, acts, noise: agent.actor_loss(0, _batch(agent, obs, acts),
                                                         noise=noise))


def test_relaxed_actor_check_rejects_the_current_policy_of_the_other():
    def wrong(agent, obs, acts, noise):
        own, _ = agent.policy_action(0, agent.actors[0][0], obs[0], noise)
        other, _ = agent.policy_action(1, agent.actors[1][0], obs[1], np.zeros((len(obs[1]), 5)))
        return -est.actor_objective(agent.critic(0, 0, obs, [own, other]))
    assert not actor_uses_replayed_actions_relaxed(wrong)


def test_relaxed_resume_is_exact(tmp_path):
    small = {"learning_starts": 50, "batch_size": 16, "train_freq": 10, "hidden": "16,16",
             "checkpoint_replay": "true", "checkpoint_every": 100, "log_every": 100,
             "eval_episodes": 2, "relaxed_actions": "true"}
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    kw = dict(seed=3, overrides=small, stream=open(os.devnull, "w"), threads=1)
    train("maddpg", SPEAKER, total_steps=200, out=whole, **kw)
    train("maddpg", SPEAKER, total_steps=100, out=parts, **kw)
    train("maddpg", total_steps=200, out=parts, resume=True, stream=open(os.devnull, "w"))
    a = read_checkpoint(os.path.join(whole, "checkpoint.npz"))
    b = read_checkpoint(os.path.join(parts, "checkpoint.npz"))
    assert int(a["extra/updates"]) > 0
    replayed = a["extra/replay/actions"]          # soft vectors (float32 values), not one-hots
    assert len(replayed) == 200 and np.all(replayed.max(axis=1) < 1.0)
    np.testing.assert_array_equal(replayed, replayed.astype(np.float32))
    for key in a:
        if key != "counter/wall_s":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_relaxed_with_continuous_actions_is_refused():
    with pytest.raises(ConfigError, match="relaxed_actions.*continuous_actions"):
        config_from(MADDPG.Config, dict(relaxed_actions=True, continuous_actions=True))


def test_relaxed_on_a_task_that_is_not_mpe2_is_refused():
    with pytest.raises(ConfigError, match="relaxed_actions.*mpe2 tasks only.*CartPole"):
        MADDPG.check_task("CartPole-v1", MADDPG.Config(relaxed_actions=True))


def test_relaxed_on_agents_that_move_and_speak_is_refused():
    with pytest.raises(ConfigError, match="relaxed_actions.*both move and speak"):
        MADDPG.check_task("mpe2/simple_reference_v3", MADDPG.Config(relaxed_actions=True))
    MADDPG.check_task(SPREAD, MADDPG.Config(relaxed_actions=True))      # accepted


def test_relaxed_needs_a_unit_box():
    config = config_from(MADDPG.Config, dict(relaxed_actions=True))
    obs = (gym.spaces.Box(-np.inf, np.inf, (2,), np.float64),)
    with pytest.raises(ConfigError, match="Box\\(0, 1"):
        MADDPG(config, obs, (gym.spaces.Box(-1.0, 1.0, (3,)),), 0)


def test_the_paper_tasks_presets_use_the_relaxed_path():
    for task in (SPEAKER, SPREAD, "mpe2/simple_adversary_v3"):
        config = resolve_config(MADDPG, task, {})
        assert config.relaxed_actions and config.train_freq == 100 and config.gamma == 0.95
    assert not resolve_config(MADDPG, SPEAKER, {"relaxed_actions": "false"}).relaxed_actions
    with pytest.raises(ConfigError, match="add --set relaxed_actions=false"):
        resolve_config(MADDPG, SPREAD, {"continuous_actions": "true"})
