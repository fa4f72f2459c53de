r"""D4PG's K parallel actors: worker processes or Ray actors feeding the learner's replay.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "D4PG", item (3)
and Algorithm 1 ("Launch K actors and replicate network weights (theta, w) to
each actor"; line 10, "replicate network weights to the actors"; the Actor
box: a = pi_theta(x) + epsilon N(0, 1), store (x, a, r, x') in replay);
Barth-Maron et al. 2018, section 3.

Each actor (:func:`actor_main`, run by :mod:`minipg.parallel`'s backends) owns
its environments (a :class:`~minipg.envs.vector.Collector` of ``n_envs``), a
copy of the policy network and its own exploration noise; it assembles N-step
rows itself (:class:`~minipg.buffers.nstep.NStepAssembler`) and sends them,
``actor_batch`` environment steps at a time, through one queue to the learner.
Each message carries the actor's rank, a sequence number (the learner refuses
a lost or repeated message), the rows, the version of the weights each row's
action was chosen with (0 for the uniform random actions of the actor's share
of the warm-up), and the episodes that finished.  The queue is bounded
(``QUEUE_PER_ACTOR`` messages per actor): when the learner is slower than the
actors they wait, so the learner's updates per transition stay what the
settings say and the actors cannot starve it.

Weights go the other way through a :class:`WeightChannel`: the learner
publishes the actor's flat parameter vector with a version number; an actor
looks for a newer version before every step and acts with the newest it
found.  Process backend: a seqlock in shared memory
(:class:`~minipg.parallel.SharedArrays`): the learner makes the counter odd,
writes the vector, makes it even again; a reader copies the vector between
two equal even readings of the counter, so it never sees half a vector.  Ray
backend: a small Ray actor holding (version, vector), asked at most every
``RAY_WEIGHT_POLL_S`` seconds.

:class:`ActorCollector` is what the run loop sees: the collector's attributes
(``steps`` counts the transitions received, ``recent_returns`` the actors'
finished episodes), plus ``receive()`` (the rows that arrived, waiting for at
least one message and watching the workers) and ``publish(flat_params)``.
What minipg.parallel's API lacks and this module adds: a put that gives up
when the stop flag is set (:func:`put_until_stopped`), and the weight channel.
"""

from __future__ import annotations

import math
import queue as queue_module
import time
from collections import deque

import numpy as np

from ..autodiff import no_grad
from ..buffers.nstep import NStepAssembler, NStepRows
from ..envs.vector import Collector, make_vector_env, probe_spaces
from ..parallel import SharedArrays, close_queue, get_backend
from .offpolicy_common import (DeterministicActor, action_box, make_exploration_noise,
                               noisy_actions, restart_noise)

__all__ = ["ActorCollector", "WeightChannel", "actor_main", "put_until_stopped",
           "QUEUE_PER_ACTOR", "RAY_WEIGHT_POLL_S"]

QUEUE_PER_ACTOR = 4          # messages an actor may have waiting in the queue
RAY_WEIGHT_POLL_S = 0.05     # seconds between an actor's weight look-ups under Ray
PUT_TIMEOUT_S = 0.25         # a blocked put looks at the stop flag this often
RECEIVE_TIMEOUT_S = 0.5      # the learner watches the workers this often while waiting
SEQLOCK_WAIT_S = 0.1         # an actor waits this long for a write to end, then acts on


def put_until_stopped(q, item, stop):
    """Put ``item`` on the backend queue ``q``, waiting while it is full; False (item not
    put) once ``stop`` is set."""
    inner = getattr(q, "inner", None)               # Ray: ray.util.queue.Queue
    while not stop.is_set():
        try:
            if inner is not None:
                inner.put(item, block=True, timeout=PUT_TIMEOUT_S)
            else:
                q.put(item, block=True, timeout=PUT_TIMEOUT_S)
            return True
        except queue_module.Full:
            continue
        except Exception as exc:                    # ray.util.queue.Full is its own class
            if type(exc).__name__ != "Full":
                raise
    return False


# ------------------------------------------------------------------ weights
class RayWeightStore:
    """Held by a Ray actor: the newest (version, flat parameters) and the warm-up."""

    def __init__(self):
        self.version, self.params, self.warmup = 0, None, 0

    def set(self, version, params):
        self.version, self.params = int(version), params

    def set_warmup(self, steps):
        self.warmup = int(steps)

    def get_warmup(self):
        return self.warmup

    def newer_than(self, version):
        return None if self.version <= version else (self.version, self.params)


class WeightChannel:
    """The learner's side: ``publish(params)`` (version 1, 2, ...); ``reader()`` is the
    picklable description an actor opens with :func:`open_reader`.  ``set_warmup(n)``
    before the first publish: each actor's environment steps of uniform random actions,
    read by the actors once they have their first weights."""

    def __init__(self, backend, size, dtype):
        self.kind, self.version = backend.name, 0
        if self.kind == "process":
            self.shared = SharedArrays.create({"params": ((size,), dtype),
                                               "sequence": ((1,), np.int64),
                                               "warmup": ((1,), np.int64)})
        else:
            ray = backend.ray
            self.store = ray.remote(num_cpus=0)(RayWeightStore).remote()

    def publish(self, params):
        """Make ``params`` the newest weights; returns their version."""
        self.version += 1
        if self.kind == "process":
            seq = self.shared.arrays["sequence"]
            seq[0] = 2 * self.version - 1            # odd: writing
            self.shared.arrays["params"][:] = params
            seq[0] = 2 * self.version                # even: version v complete
        else:
            import ray
            ray.get(self.store.set.remote(self.version, np.array(params, copy=True)))
        return self.version

    def set_warmup(self, steps):
        """Each actor's warm-up (environment steps); before the first :meth:`publish`."""
        if self.kind == "process":
            self.shared.arrays["warmup"][0] = int(steps)
        else:
            import ray
            ray.get(self.store.set_warmup.remote(int(steps)))

    def reader(self):
        return ("process", self.shared.spec) if self.kind == "process" else ("ray", self.store)

    def close(self):
        if self.kind == "process":
            self.shared.close()
        else:
            import ray
            try:
                ray.kill(self.store, no_restart=True)
            except Exception:
                pass


class SharedWeightReader:
    """An actor's view of the process channel (the seqlock reader)."""

    def __init__(self, spec):
        self.shared = SharedArrays.attach(spec)

    def newer_than(self, version):
        """(version, params) of weights newer than ``version``; None if there are none or
        the learner's write does not end within SEQLOCK_WAIT_S (it may have been
        interrupted between its two counter writes: the actor keeps its weights)."""
        seq, params = self.shared.arrays["sequence"], self.shared.arrays["params"]
        deadline = time.monotonic() + SEQLOCK_WAIT_S
        while time.monotonic() < deadline:
            before = int(seq[0])
            if before // 2 <= version and before % 2 == 0:
                return None
            if before % 2:                          # the learner is writing: try again
                time.sleep(0)
                continue
            copy = np.array(params, copy=True)
            if int(seq[0]) == before:
                return before // 2, copy
        return None

    def warmup(self):
        return int(self.shared.arrays["warmup"][0])

    def close(self):
        self.shared.close()


class RayWeightReader:
    """An actor's view of the Ray channel, asked at most every RAY_WEIGHT_POLL_S seconds."""

    def __init__(self, store):
        self.store, self.checked = store, -math.inf

    def newer_than(self, version):
        if time.monotonic() - self.checked < RAY_WEIGHT_POLL_S:
            return None
        import ray
        self.checked = time.monotonic()
        return ray.get(self.store.newer_than.remote(version))

    def warmup(self):
        import ray
        return int(ray.get(self.store.get_warmup.remote()))

    def close(self):
        pass


def open_reader(description):
    kind, handle = description
    return SharedWeightReader(handle) if kind == "process" else RayWeightReader(handle)


# ------------------------------------------------------------------ the actor
def actor_main(rank, stop, spec):
    """One actor (run in a worker): act with the newest weights plus Gaussian noise, step
    its environments, assemble N-step rows and send them; until ``stop`` is set.

    ``spec``: a dict with ``env_id``, ``config`` (the D4PG config), ``seed``, ``weights``
    (a WeightChannel reader description), ``queue``, ``counters`` (SharedArrays spec of
    the per-actor count of rows sent, or None).  The actor's warm-up (environment steps
    of uniform random actions) comes with the first weights: the learner decides it then,
    after a resume has restored its step count.
    """
    cfg = spec["config"]
    reader = open_reader(spec["weights"])
    counters = SharedArrays.attach(spec["counters"]) if spec["counters"] else None
    envs = make_vector_env(spec["env_id"], cfg.n_envs)
    collector = Collector(envs, seed=spec["seed"], dtype=cfg.dtype)
    try:
        dtype = np.dtype(cfg.dtype)
        rng = np.random.default_rng(spec["seed"])
        act_dim = int(np.prod(collector.action_space.shape))
        obs_dim = int(np.prod(collector.observation_space.shape))
        low, high, _, scale = action_box(collector.action_space, dtype, owner="d4pg actor")
        actor = DeterministicActor(obs_dim, act_dim, cfg.hidden, cfg.activation, low, high,
                                   rng, dtype)
        noise = make_exploration_noise(cfg.noise, cfg.noise_std, cfg.n_envs, act_dim, rng,
                                       cfg.ou_theta, cfg.ou_dt)
        half_width = 1.0 if scale is None else scale
        assembler = NStepAssembler(cfg.n_envs, cfg.n_step, cfg.gamma, (obs_dim,), (act_dim,),
                                   dtype)
        window_versions = [deque() for _ in range(cfg.n_envs)]
        version, seq = 0, 0
        while version == 0 and not stop.is_set():          # Algorithm 1, line 3
            newest = reader.newer_than(0)
            if newest is None:
                time.sleep(0.01)
            else:
                version, actor.flat_params = newest[0], newest[1]
        warmup = reader.warmup()                             # set before version 1
        pending, versions = [], []
        while not stop.is_set():
            newest = reader.newer_than(version)
            if newest is not None:
                version, actor.flat_params = newest[0], newest[1]
            acted_with = 0 if collector.steps < warmup else version   # 0: uniform
            if acted_with == 0:
                actions = collector.random_actions()
            else:
                with no_grad():
                    mu = actor(collector.obs).data
                actions = noisy_actions(mu, noise, half_width, low, high, dtype)
            step = collector.step(actions)
            rows = assembler.add(step.obs, step.actions, step.rewards, step.next_obs,
                                 step.terminated, step.truncated)
            for e in range(cfg.n_envs):                 # the version of each row's action
                window_versions[e].append(acted_with)
                for _ in range(len(window_versions[e]) - len(assembler.windows[e])):
                    versions.append(window_versions[e].popleft())
            if len(rows.obs):
                pending.append(rows)
            done = step.terminated | step.truncated
            if done.any():
                restart_noise(noise, done)
            if sum(len(r.obs) for r in pending) >= cfg.actor_batch:
                message = (rank, seq, NStepRows(*map(np.concatenate, zip(*pending))),
                           np.asarray(versions, np.int64),
                           [(r, n) for _, r, n in collector.drain_finished()])
                if not put_until_stopped(spec["queue"], message, stop):
                    break
                if counters is not None:
                    counters.arrays["sent"][rank] += len(versions)
                seq += 1
                pending, versions = [], []
    finally:
        collector.close()
        reader.close()
        if counters is not None:
            counters.close()


# ------------------------------------------------------------------ the learner's side
class ActorCollector:
    """The run loop's collector when K >= 2 actors act elsewhere (see the module docstring).

    ``steps`` counts the N-step rows received (one per environment step an actor took,
    except the windows still open at the end); ``received_versions`` (with
    ``record_versions``) keeps, per message, (rank, rows, versions) for the tests.
    """

    remote_actors = True

    def __init__(self, env_id, config, seed, record_versions=False, window=20):
        self.env_id, self.config = env_id, config
        self.observation_space, self.action_space = probe_spaces(env_id)
        self.n_actors = int(config.actors)
        self.steps, self.episodes = 0, 0
        self.recent_returns, self.recent_lengths = deque(maxlen=window), deque(maxlen=window)
        self.finished = []
        self.obs = None
        self.record_versions = record_versions
        self.received_versions = []
        self.next_seq = [0] * self.n_actors
        dtype = np.dtype(config.dtype)
        obs_dim = int(np.prod(self.observation_space.shape))
        act_dim = int(np.prod(self.action_space.shape))
        low, high, _, _ = action_box(self.action_space, dtype, owner="d4pg")
        size = DeterministicActor(obs_dim, act_dim, config.hidden, config.activation, low,
                                  high, 0, dtype).flat_params.size
        self.backend = get_backend(config.backend, config.ray_address or None)
        self.group = self.weights = self.counters = None
        self.backend.__enter__()
        try:
            self.weights = WeightChannel(self.backend, size, dtype)
            self.queue = self.backend.queue(QUEUE_PER_ACTOR * self.n_actors)
            if self.backend.name == "process":
                self.counters = SharedArrays.create({"sent": ((self.n_actors,), np.int64)})
            specs = [{"env_id": env_id, "config": config, "seed": int(seed) + 1 + rank,
                      "weights": self.weights.reader(), "queue": self.queue,
                      "counters": self.counters.spec if self.counters else None}
                     for rank in range(self.n_actors)]
            self.group = self.backend.start(_actor_entry, self.n_actors, (specs,))
        except BaseException:
            self.close()
            raise

    @property
    def version(self):
        """The version of the weights last published (0: none yet)."""
        return self.weights.version

    def publish(self, flat_params):
        """Copy the actor's weights to the K actors (Algorithm 1, lines 3 and 10).  Before
        the first copy, the warm-up still due: max(0, learning_starts - steps) transitions
        (steps restored by a resume), shared by the K actors (each does its ceiling
        share, counted in its own steps, which restart at 0)."""
        if self.weights.version == 0:
            left = max(0, int(self.config.learning_starts) - self.steps)
            self.weights.set_warmup(-(-left // self.n_actors))
        return self.weights.publish(flat_params)

    def sent(self):
        """Rows each actor has put on the queue (process backend), as an array."""
        return None if self.counters is None else self.counters.arrays["sent"].copy()

    def _take(self, message, parts):
        rank, seq, rows, versions, episodes = message
        if seq != self.next_seq[rank]:
            raise RuntimeError(f"d4pg: actor {rank} sent message {seq} where {self.next_seq[rank]}"
                               f" was due: a message was lost or repeated")
        self.next_seq[rank] += 1
        parts.append(rows)
        self.steps += len(rows.obs)
        if self.record_versions:
            self.received_versions.append((rank, rows, versions))
        for ep_return, ep_length in episodes:
            self.episodes += 1
            self.recent_returns.append(ep_return)
            self.recent_lengths.append(ep_length)
            self.finished.append((self.steps, ep_return, ep_length))

    def receive(self, max_messages=None, timeout=None):
        """The rows of the messages waiting (at least one: waits for it, watching the
        workers, up to ``timeout`` seconds if given), concatenated; at most
        ``max_messages`` (default: one per actor)."""
        limit = max_messages or self.n_actors
        parts, started = [], time.monotonic()
        while not parts:
            try:
                self._take(self.queue.get(timeout=RECEIVE_TIMEOUT_S), parts)
            except queue_module.Empty:
                self.group.poll()                            # WorkerError if one failed
                if timeout is not None and time.monotonic() - started > timeout:
                    break
        while 0 < len(parts) < limit:
            try:
                self._take(self.queue.get_nowait(), parts)
            except queue_module.Empty:
                break
        if not parts:
            return NStepRows(*(np.zeros((0,)) for _ in range(6)))
        return NStepRows(*map(np.concatenate, zip(*parts)))

    def stop_actors(self, timeout=10.0):
        """Stop the actors and take every message they had sent; the rows (for tests and
        benchmarks; :meth:`close` drops them)."""
        self.group.stop_flag.set()
        parts, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = self.group.poll()
            try:
                while True:
                    self._take(self.queue.get_nowait(), parts)
            except queue_module.Empty:
                pass
            if running == 0:
                break
            time.sleep(0.01)
        self.group.stop()
        try:                                 # what arrived after the last poll
            while True:
                self._take(self.queue.get(timeout=0.2), parts)
        except queue_module.Empty:
            pass
        return NStepRows(*map(np.concatenate, zip(*parts))) if parts else None

    # --- the rest of the collector interface --------------------------------------
    def random_actions(self):
        raise RuntimeError("d4pg with actors >= 2: the actors choose the actions")

    def step(self, actions):
        raise RuntimeError("d4pg with actors >= 2: the actors step the environments")

    def render(self):
        raise RuntimeError("d4pg with actors >= 2: evaluation uses its own collector")

    def drain_finished(self):
        out, self.finished = self.finished, []
        return out

    def state_arrays(self):
        """The counters (the actors' environments restart on resume)."""
        return {"collector/steps": np.asarray(self.steps),
                "collector/episodes": np.asarray(self.episodes),
                "collector/recent_returns": np.asarray(self.recent_returns, dtype=np.float64),
                "collector/recent_lengths": np.asarray(self.recent_lengths, dtype=np.int64)}

    def load_state_arrays(self, arrays):
        self.steps = int(arrays["collector/steps"])
        self.episodes = int(arrays["collector/episodes"])
        self.recent_returns.extend(np.asarray(arrays["collector/recent_returns"]).tolist())
        self.recent_lengths.extend(np.asarray(arrays["collector/recent_lengths"]).tolist())

    def close(self):
        """Stop the actors (no child process remains), free the shared memory, leave Ray."""
        try:
            if self.group is not None:
                self.group.stop_flag.set()
                deadline = time.monotonic() + 10.0
                while time.monotonic() < deadline:      # keep the queue moving while they stop
                    try:
                        if self.group.poll() == 0:
                            break
                    except Exception:
                        break
                    try:
                        while True:
                            self.queue.get_nowait()
                    except queue_module.Empty:
                        pass
                    time.sleep(0.01)
                self.group.stop()
                self.group = None
        finally:
            for thing in (self.weights, self.counters):
                if thing is not None:
                    thing.close()
            self.weights = self.counters = None
            queue, self.queue = getattr(self, "queue", None), None
            if queue is not None:       # a process queue's pipe, a Ray queue's actor
                close_queue(queue)
            self.backend.__exit__(None, None, None)


def _actor_entry(rank, stop, specs):
    """The worker's target: this rank's spec (module level, so it pickles)."""
    actor_main(rank, stop, specs[rank])
