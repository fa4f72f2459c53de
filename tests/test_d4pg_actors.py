"""D4PG's K actors (minipg.algorithms.d4pg_actors) on the process backend and on Ray.

* every row the actors put on the queue reaches the learner's replay exactly once
  (the actors count what they sent in shared memory; the learner refuses a lost or
  repeated message by its sequence number; the replay's start states are all distinct);
* the actors act with the weights last sent to them: each row carries the version of the
  weights its action was chosen with, and with exploration off the action equals mu of
  THAT version's weights at the row's state; versions never go back; after a new
  version is published every actor is soon acting with it;
* closing leaves no worker process and no shared-memory segment.

Kept small: Pendulum, 8-unit networks, two actors, a few seconds each (Ray: one local
session for the module, num_cpus=2).
"""

from __future__ import annotations

import multiprocessing
import os
import time

import numpy as np
import pytest

from minipg import algorithms
from minipg.algorithms.base import config_from
from minipg.algorithms.d4pg_actors import ActorCollector
from minipg.algorithms.offpolicy_common import DeterministicActor
from minipg.autodiff import no_grad

SMALL = {"actors": "2", "hidden": "8", "batch_size": "16", "learning_starts": "64",
         "noise": "none", "n_step": "3", "atoms": "11", "actor_batch": "8", "t_actors": "5",
         "dtype": "float64", "buffer_size": "100000"}


def make(**extra):
    cls = algorithms.get("d4pg")
    overrides = dict(cls.presets["Pendulum-v1"])
    overrides.update(SMALL)
    overrides.update(extra)
    config = config_from(cls.Config, overrides)
    collector = ActorCollector("Pendulum-v1", config, seed=3, record_versions=True)
    agent = cls(config, collector.observation_space, collector.action_space, 3)
    published = {}
    publish = collector.publish

    def recording_publish(flat):                      # keep a copy of every version sent
        version = publish(flat)
        published[version] = np.array(flat, copy=True)
        return version
    collector.publish = recording_publish
    return agent, collector, published


def check_actions_use_their_versions(agent, collector, published):
    cfg = agent.config
    actor = DeterministicActor(agent.obs_dim, agent.action_dim, cfg.hidden, cfg.activation,
                               agent.low, agent.high, 0, agent.dtype)
    last = {}
    checked = 0
    for rank, rows, versions in collector.received_versions:
        assert np.all(np.diff(versions) >= 0) and versions[0] >= last.get(rank, 0)
        last[rank] = versions[-1]
        warmup = versions == 0                        # uniform random actions in the box
        assert np.all((rows.actions[warmup] >= agent.low) & (rows.actions[warmup] <= agent.high))
        checked += int(warmup.sum())
        for v in np.unique(versions[~warmup]):
            actor.flat_params = published[int(v)]
            sel = versions == v
            with no_grad():
                mu = actor(rows.obs[sel]).data
            np.testing.assert_allclose(rows.actions[sel], mu, rtol=1e-10, atol=1e-13)
            checked += int(sel.sum())
    return checked, last


def wait_for_version(agent, collector, version, timeout=30.0):
    """Receive until every actor has sent a row acted with ``version``."""
    seen, deadline = set(), time.monotonic() + timeout
    while len(seen) < collector.n_actors and time.monotonic() < deadline:
        agent.store(collector.receive(timeout=1.0))
        seen = {rank for rank, _, versions in collector.received_versions
                if len(versions) and versions[-1] >= version}
    return seen


def test_process_actors_each_transition_once_and_the_last_weights():
    agent, collector, published = make()
    try:
        while agent.updates < 40:                     # t_actors = 5: versions 1..9 sent
            agent.learn(collector)
        assert collector.version >= 8
        # a new version: every actor soon acts with it
        final = collector.publish(agent.actor.flat_params * 1.01)
        assert wait_for_version(agent, collector, final) == {0, 1}
        rest = collector.stop_actors()
        if rest is not None:
            agent.store(rest)
        sent = collector.sent()
        assert sent.sum() == collector.steps == len(agent.buffer) > 0
        assert np.all(sent > 0)
        # exactly once: every stored row's start state is distinct (Pendulum's states are
        # continuous, so a repeated row would repeat its state)
        obs = agent.buffer.obs[:len(agent.buffer)]
        assert len(np.unique(obs, axis=0)) == len(obs)
        checked, last = check_actions_use_their_versions(agent, collector, published)
        assert checked == collector.steps and last == {0: final, 1: final}
        segments = collector.weights.shared.segment_names + collector.counters.segment_names
    finally:
        collector.close()
    assert multiprocessing.active_children() == []
    assert not any(os.path.exists(f"/dev/shm/{name}") for name in segments)


def test_resumed_actors_do_only_the_warm_up_left():
    """Resumed at 40 of learning_starts = 64 transitions (the run loop restores the
    collector's steps before the first learn), the 2 actors act uniformly for
    ceil((64 - 40) / 2) = 12 steps each, not the whole ceil(64 / 2) = 32 again (before
    the fix the warm-up was fixed when the actors started, before the restore)."""
    agent, collector, _ = make()
    try:
        collector.load_state_arrays({"collector/steps": np.asarray(40),
                                     "collector/episodes": np.asarray(0),
                                     "collector/recent_returns": np.zeros(0),
                                     "collector/recent_lengths": np.zeros(0, np.int64)})
        rows, deadline = {0: 0, 1: 0}, time.monotonic() + 60
        while min(rows.values()) < 40 and time.monotonic() < deadline:
            agent.learn(collector)
            rows = {r: sum(len(v) for rank, _, v in collector.received_versions if rank == r)
                    for r in (0, 1)}
        uniform = {r: sum(int((v == 0).sum()) for rank, _, v in collector.received_versions
                          if rank == r) for r in (0, 1)}
    finally:
        collector.close()
    assert min(rows.values()) >= 40                   # the rows of the warm-up all arrived
    assert uniform == {0: 12, 1: 12}


def test_weight_reader_gives_up_on_an_unfinished_write():
    """A learner interrupted between publish's two counter writes leaves the counter odd:
    the reader returns None (the actor keeps its weights) within SEQLOCK_WAIT_S instead
    of spinning forever (before the fix)."""
    import threading
    from minipg.algorithms import d4pg_actors
    from minipg.parallel import get_backend
    channel = d4pg_actors.WeightChannel(get_backend("process"), 4, np.float64)
    try:
        channel.publish(np.ones(4))
        channel.shared.arrays["sequence"][0] = 3     # version 2's write never ended
        reader = d4pg_actors.open_reader(channel.reader())
        result = []
        thread = threading.Thread(target=lambda: result.append(reader.newer_than(1)),
                                  daemon=True)
        started = time.monotonic()
        thread.start()
        thread.join(5.0)
        assert not thread.is_alive() and result == [None]
        assert time.monotonic() - started < 5 * d4pg_actors.SEQLOCK_WAIT_S + 1.0
        channel.shared.arrays["sequence"][0] = 4     # the write ends: version 2 is read
        assert reader.newer_than(1)[0] == 2
        reader.close()
    finally:
        channel.close()


def test_run_loop_with_two_actor_processes(tmp_path):
    """``minipg train d4pg --set actors=2``: the run loop, its progress rows and evaluation."""
    import io
    from minipg.run import train
    out = train("d4pg", "Pendulum-v1", total_steps=400, seed=0, out=str(tmp_path / "run"),
                overrides=dict(SMALL, noise="gaussian", log_every="100", eval_episodes="1"),
                stream=io.StringIO())
    with open(os.path.join(out, "progress.csv")) as fh:
        rows = fh.read().splitlines()
    assert len(rows) >= 4 and os.path.exists(os.path.join(out, "eval.json"))
    assert multiprocessing.active_children() == []


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_actors_feed_the_learner_with_the_last_weights(ray_session):
    agent, collector, published = make(backend="ray")
    try:
        while agent.updates < 20:
            agent.learn(collector)
        final = collector.publish(agent.actor.flat_params * 1.01)
        assert wait_for_version(agent, collector, final) == {0, 1}
        checked, last = check_actions_use_their_versions(agent, collector, published)
        assert checked == collector.steps == len(agent.buffer) > 0
    finally:
        collector.close()
    assert ray_session.is_initialized()            # the test's session: not ours to stop
