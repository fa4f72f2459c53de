"""Speed of D4PG's actors and learner (issue 19): transitions per second with K = 1 and
K = 2 actor processes, the learner's updates per second alone and with two actors
running, and the Ray backend's throughput against the process backend.

Task: Pendulum-v1 with D4PG's Pendulum preset (float32, layers 400-300, 51 atoms,
N = 5, batch 256).  Each measurement runs ``--seconds`` seconds after a warm-up (the
workers started, numba compiled, the first message received):

* ``in-process K=1``: the default ``actors=1`` path, acting and stepping in the
  learner's process (Collector + policy + noise + N-step assembly), no updates;
* ``process K=1``, ``process K=2``, ``ray K=2``: actor workers sending N-step rows to a
  learner that only receives them (no updates): the actors' throughput;
* ``learner alone``: gradient updates on a filled replay, no actors;
* ``learner + process K=2``: the learner's loop with two actor processes
  (``learn_from_actors``: one update per transition received, the actors held back by
  the bounded queue), updates per second and transitions per second.

The project's machine has 2 cores shared with other jobs: figures are indicative; the
ratios within one run are what the report states.  One BLAS thread per process.

    nice -n 10 python verification/d4pg_speed.py [--seconds 10] [--no-ray]
"""

import argparse
import os
import platform
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from minipg import algorithms  # noqa: E402
from minipg.algorithms.base import config_from  # noqa: E402
from minipg.envs.vector import Collector, make_vector_env  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def config(**extra):
    cls = algorithms.get("d4pg")
    overrides = dict(cls.presets["Pendulum-v1"])
    overrides.update(learning_starts=0, buffer_size=200_000)
    overrides.update(extra)
    return cls, config_from(cls.Config, {k: (",".join(map(str, v)) if isinstance(v, tuple)
                                             else v) for k, v in overrides.items()})


def in_process_rate(seconds):
    cls, cfg = config()
    envs = make_vector_env("Pendulum-v1", 1)
    collector = Collector(envs, seed=0, dtype=cfg.dtype)
    agent = cls(cfg, envs.single_observation_space, envs.single_action_space, 0)
    try:
        for _ in range(50):
            agent.store(agent.assembler.add(*_step(agent, collector)))
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            agent.store(agent.assembler.add(*_step(agent, collector)))
            n += 1
        return n / (time.perf_counter() - start)
    finally:
        collector.close()


def _step(agent, collector):
    step = collector.step(agent.explore(collector.obs))
    return step.obs, step.actions, step.rewards, step.next_obs, step.terminated, step.truncated


def actors_rate(k, backend, seconds):
    """Transitions per second the actors deliver to a learner that only receives."""
    from minipg.algorithms.d4pg_actors import ActorCollector
    cls, cfg = config(actors=k, backend=backend)
    collector = ActorCollector("Pendulum-v1", cfg, seed=0)
    try:
        agent = cls(cfg, collector.observation_space, collector.action_space, 0)
        collector.publish(agent.actor.flat_params)
        collector.receive()                               # warm-up: the first message
        start, before = time.perf_counter(), collector.steps
        while time.perf_counter() - start < seconds:
            collector.receive()
        return (collector.steps - before) / (time.perf_counter() - start)
    finally:
        collector.close()


def learner_rates(seconds):
    """(updates/s alone, updates/s with 2 actor processes, transitions/s then)."""
    from minipg.algorithms.d4pg_actors import ActorCollector
    cls, cfg = config(actors=2, learning_starts=1000)
    collector = ActorCollector("Pendulum-v1", cfg, seed=0)
    try:
        agent = cls(cfg, collector.observation_space, collector.action_space, 0)
        collector.publish(agent.actor.flat_params)
        while collector.steps < 1000:                     # fill the replay first
            agent.store(collector.receive())
        # with the actors: the learner's own loop (updates due per transition received)
        for _ in range(5):
            agent.learn(collector)
        start, u0, s0 = time.perf_counter(), agent.updates, collector.steps
        while time.perf_counter() - start < seconds:
            agent.learn(collector)
        wall = time.perf_counter() - start
        with_actors = (agent.updates - u0) / wall
        transitions = (collector.steps - s0) / wall
    finally:
        collector.close()
    start, u0 = time.perf_counter(), agent.updates              # alone: the actors are gone
    while time.perf_counter() - start < seconds:
        agent.update_once()
    alone = (agent.updates - u0) / (time.perf_counter() - start)
    return alone, with_actors, transitions


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--results", default=os.path.join(HERE, "results", "d4pg_speed.md"))
    args = p.parse_args()
    t = args.seconds
    rows = [("in-process K=1 (actors=1, no updates)", in_process_rate(t)),
            ("process K=1 (actor workers, no updates)", actors_rate(1, "process", t)),
            ("process K=2 (actor workers, no updates)", actors_rate(2, "process", t))]
    if not args.no_ray:
        rows.append(("ray K=2 (Ray actors, local, no updates)", actors_rate(2, "ray", t)))
    alone, with_actors, transitions = learner_rates(t)
    lines = ["# D4PG speed: actors and learner (issue 19)", "",
             f"Command: `nice -n 10 python verification/d4pg_speed.py --seconds {t:g}`.  "
             "Pendulum-v1, D4PG's Pendulum preset (float32, layers 400-300, 51 atoms, N = 5, "
             "batch 256), one BLAS thread per process.",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores SHARED with other jobs "
             "(other helpers' tests and runs) while this ran; Python "
             f"{platform.python_version()}, numpy {np.__version__}.  Figures are indicative; "
             "compare within this table.", "",
             "| what | transitions/s |", "|---|---|"]
    lines += [f"| {name} | {rate:.0f} |" for name, rate in rows]
    lines += ["", "| learner | updates/s |", "|---|---|",
              f"| alone (filled replay, no actors) | {alone:.1f} |",
              f"| with 2 actor processes (learn_from_actors) | {with_actors:.1f} |",
              "", f"With two actors running the learner made {with_actors / alone:.2f}x the "
              f"updates per second it makes alone, and took {transitions:.1f} transitions/s "
              "from them (one update per transition: the bounded queue holds the actors back "
              "to the learner's pace)."]
    if os.path.exists(args.results):          # keep the hand-written reading below the tables
        with open(args.results) as fh:
            old = fh.read()
        if "\n## Reading" in old:
            lines += ["", old[old.index("\n## Reading") + 1:].rstrip("\n")]
    text = "\n".join(lines) + "\n"
    with open(args.results, "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
