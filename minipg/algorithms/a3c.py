r"""A3C: asynchronous advantage actor-critic, workers updating shared parameters without locks.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "A3C" (its
algorithm outline is the specification).  Paper: V. Mnih, A. P. Badia,
M. Mirza, A. Graves, T. Lillicrap, T. Harley, D. Silver, K. Kavukcuoglu,
"Asynchronous Methods for Deep Reinforcement Learning", ICML 2016
(Algorithm S3; shared RMSprop, section 4 and Supplementary section 7; the
entropy bonus; t_max = 5).

The global parameters theta (policy) and w (value), in the engine's layout
of one flat vector (CONTRIBUTING.md, "Architecture/Parameters in one flat
buffer"), and RMSprop's statistics, one vector of the same size, live in
shared memory (:class:`minipg.parallel.SharedArrays`).  ``workers`` processes
(:mod:`minipg.parallel`; Python threads would serialise on the interpreter
lock), each with its own environment and its own copy theta', w', repeat
the outline (:meth:`A3C.run_segment`):

1. reset the gradients: d theta <- 0, d w <- 0;
2. synchronise: theta' = theta, w' = w;
3. roll out pi_theta' from the current state until a terminal state, the
   end of the episode or t_max = ``n_steps`` steps, T <- T + 1 per step;
4. R = 0 at a terminal state, else R = V_w'(s_t) (at a time-limit
   truncation the value of the true final state: truncation bootstraps);
5. for i = t-1 down to t_start: R <- r_i + gamma R, accumulating
   d theta += grad log pi(a_i|s_i) (R - V(s_i)) + beta grad H and
   d w += 2 (R - V(s_i)) grad (R - V(s_i))
   (:func:`minipg.estimators.a3c.segment_loss`, whose gradient they are);
6. apply d theta, d w to the shared theta, w with RMSprop on the shared
   statistics, without a lock (Hogwild, as the paper does): each worker's
   optimizer views the shared vectors, so an update writes them in place,
   and the statistics are one shared array for all workers (the paper's
   "shared RMSProp").

T is shared: each worker adds its own steps to its own slot of a shared
array (no lost increments without a lock), and T is their sum.  The
learning rate decays linearly in T to 0 at ``total_steps`` (the paper's).

With ``backend=ray`` the same worker code runs in Ray actors, on this
machine or on the cluster at ``ray_address``.  The driver, when it is a node
of the cluster (a local Ray instance, or ``ray_address`` host:port or auto),
creates the global state in shared memory as the process backend does, and
a parameter-server actor (:class:`ParameterServer`) pinned to the driver's
node attaches it.  Each worker compares its node with the server's
(:func:`connect_globals`): a worker on that node (on one machine: every
worker) uses the shared memory exactly as a worker process does, and
nothing crosses a network; a worker on another node sends its accumulated
gradient to the server and receives the new parameters and T, one round
trip per segment, and the server applies those updates one at a time into
the same shared arrays, so local and remote workers update one theta, w,
one set of statistics and one T.  ``ray_transport=actor`` sends every
worker through the server (what a remote worker does; it lets one machine
exercise that path); a driver connected as a ``ray://`` client is off the
cluster, so its server holds the global state itself and every worker goes
through it.

The run loop (``minipg/run.py``) calls :meth:`A3C.learn`, which lets the
workers run until T reaches the next multiple of ``log_every`` and pauses
them at their segment boundaries; the global parameters are then copied into
this agent (for the progress row, a checkpoint, the evaluation), and each
worker's environment, random generator and counters into the checkpoint.
So with ``workers=1`` a run is deterministic and resumes exactly; with more
workers the interleaving of their updates depends on timing, and runs are not
reproducible (README.md says so).  Ctrl-C ends the current stretch, writes a
checkpoint and stops every worker; a worker's exception stops the others and
ends the run with that worker's error (:class:`minipg.parallel.WorkerError`).
"""

from __future__ import annotations

import json
import queue
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..autodiff import Parameter
from ..envs.vector import Collector, make_vector_env, probe_spaces
from ..estimators.a3c import segment_loss
from ..kernels import discounted_returns
from ..optim import RMSprop, clip_grad_norm_or_measure
from ..parallel import (BACKENDS, SharedArrays, check_workers, close_queue, get_backend,
                        ray_node_id)
from ..threads import cpu_count
from . import ALGORITHMS
from .base import ConfigError, setting
from .onpolicy_common import JointLossAlgorithm, OnPolicyConfig, linear_decay

__all__ = ["A3CConfig", "A3C", "A3CWorkers", "SharedGlobals", "ParameterServer", "RayGlobals",
           "connect_globals", "worker_main", "learning_rate", "RAY_TRANSPORTS"]

# Seconds the parent waits on the report queue between checks of the workers' health.
POLL_S = 0.05
# backend=ray: how a worker reaches the global state (A3CConfig.ray_transport).
RAY_TRANSPORTS = ("auto", "actor")


# ----------------------------------------------------------------------------- config
@dataclass
class A3CConfig(OnPolicyConfig):
    """Settings of A3C (defaults: Mnih et al. 2016; presets per task below)."""
    total_steps: int = setting(1_000_000, "environment steps T_max over all workers", low=1)
    n_envs: int = setting(1, "environments per worker: one, as in the paper (use workers)",
                          low=1, high=1)
    n_steps: int = setting(5, "t_max: a worker's steps between updates (fewer at an episode "
                              "end)", low=1, high=100_000)
    workers: int = setting(cpu_count(), "asynchronous actor-learners (default: the machine's "
                                        "cores; on this machine at most 4 per core, as memory "
                                        "allows; on a Ray cluster, per the cluster's)",
                           low=1, high=4096)
    backend: str = setting("process", "'process' (this machine, shared memory) or 'ray' "
                                      "(Ray actors: shared memory on the driver's machine, a "
                                      "parameter-server actor for the others)",
                           choices=BACKENDS)
    ray_address: str = setting("", "backend=ray: the cluster to join (host:port, "
                                   "ray://host:port or auto); empty: a local Ray instance")
    ray_transport: str = setting("auto", "backend=ray: how a worker reaches the global state: "
                                         "'auto' (shared memory for the workers on the machine "
                                         "that holds it, the parameter-server actor for the "
                                         "others) or 'actor' (every worker through the actor, "
                                         "as a worker on another machine does)",
                                 choices=RAY_TRANSPORTS)
    normalize_reward: bool = setting(False, "scale rewards by the std of the discounted return "
                                     "(gymnasium NormalizeReward); each worker keeps its own "
                                     "statistics: it only rescales that worker's rewards by a "
                                     "positive factor, an estimate of the same task's scale")
    lr: float = setting(7e-4, "learning rate (initial value when annealed)", low=0.0,
                        low_open=True)
    anneal_lr: bool = setting(True, "decay the learning rate linearly in T to 0 at total_steps")
    rmsprop_alpha: float = setting(0.99, "shared RMSprop: decay of the squared-gradient average",
                                   low=0.0, high=1.0)
    optimizer_eps: float = setting(1e-5, "shared RMSprop: epsilon", low=0.0)
    entropy_coef: float = setting(0.01, "beta: weight of the entropy bonus (Mnih et al.: 0.01)",
                                  low=0.0)
    max_grad_norm: float = setting(40.0, "clip a segment's accumulated gradient to this global "
                                         "L2 norm (0: off)", low=0.0)

    def check(self):
        if self.gae_lambda != 1.0:
            raise ConfigError(f"setting 'gae_lambda': {self.gae_lambda} is not used by A3C "
                              "(n-step returns over a segment); accepted: 1.0")
        if self.normalize_obs:
            raise ConfigError("setting 'normalize_obs': true is not accepted by A3C: each "
                              "worker would keep statistics of its own; accepted: false")
        if self.backend == "process" and self.ray_address:
            raise ConfigError(f"setting 'ray_address': {self.ray_address!r} is for "
                              f"backend=ray; accepted with backend=process: empty")
        if self.backend == "process" and self.ray_transport != "auto":
            raise ConfigError(f"setting 'ray_transport': {self.ray_transport!r} is for "
                              f"backend=ray; accepted with backend=process: auto")
        if not (self.backend == "ray" and self.ray_address):
            check_workers(self.workers)     # a cluster's size is checked once joined


def learning_rate(config, steps):
    """The learning rate at global step T = ``steps`` (linear decay to 0, when annealed)."""
    if config.anneal_lr:
        return linear_decay(config.lr, steps, config.total_steps)
    return config.lr


# ----------------------------------------------------------------------------- the algorithm
@ALGORITHMS.register("a3c")
class A3C(JointLossAlgorithm):
    """Asynchronous advantage actor-critic; see the module docstring."""

    name = "a3c"
    Config = A3CConfig
    description = ("asynchronous advantage actor-critic (Mnih et al. 2016): worker processes "
                   "or Ray actors, shared RMSprop, Hogwild")
    presets = {
        # A2C's settings for these tasks (reward scaling, no entropy bonus), one environment
        # per worker, t_max 5; budgets from one trial run each (20k CartPole steps reached an
        # evaluation of 500, 100k Acrobot steps -80; verification/results/a3c_learning.md)
        "CartPole-v1": {"total_steps": 100_000, "entropy_coef": 0.0, "normalize_reward": True},
        "Acrobot-v1": {"total_steps": 100_000, "entropy_coef": 0.0, "normalize_reward": True},
    }

    def make_optimizer(self, modules):
        """RMSprop over theta' and w' in one flat buffer.  In a worker it is never stepped:
        its ``grad`` is where d theta, d w accumulate, its ``data`` is theta', w'."""
        cfg = self.config
        return RMSprop(modules, lr=cfg.lr, alpha=cfg.rmsprop_alpha, eps=cfg.optimizer_eps)

    # --- the run loop's hooks ---------------------------------------------------------
    @classmethod
    def check_task(cls, env_id, config):
        """The default checks, and the backend: Ray installed, ``ray_address`` reachable."""
        super().check_task(env_id, config)
        get_backend(config.backend, config.ray_address or None)

    @classmethod
    def make_collector(cls, env_id, config, seed, n_envs=None, render_mode=None):
        """Training: the workers (:class:`A3CWorkers`).  Evaluation (``n_envs=1``): the
        plain in-process Collector, the deterministic policy on one environment."""
        if n_envs is not None:
            return super().make_collector(env_id, config, seed, n_envs, render_mode)
        return A3CWorkers(cls, env_id, config, seed)

    def learn(self, collector):
        """One stretch: the workers run segments until T reaches the next multiple of
        ``log_every`` (or ``total_steps``), then pause; the global parameters and
        statistics are copied here.  Returns the stretch's mean segment diagnostics."""
        cfg = self.config
        until = min((collector.steps // cfg.log_every + 1) * cfg.log_every, cfg.total_steps)
        return collector.run(self, until)

    # --- one worker's segment: the outline -------------------------------------------
    def run_segment(self, collector, global_model):
        """Steps 1-6 of the module docstring on this worker's ``collector`` (one
        environment); ``global_model`` holds theta, w and T (:class:`SharedGlobals` or a
        Ray parameter server's proxy).  Returns the segment's diagnostics."""
        cfg = self.config
        self.optimizer.zero_grad()                                   # 1. d theta, d w <- 0
        global_model.pull(self.optimizer.data)                       # 2. theta', w' <- theta, w
        for p in self.optimizer.params:
            p.mark_modified()
        observations, actions, rewards = [], [], []
        for _ in range(cfg.n_steps):                                 # 3. roll out pi_theta'
            obs = self.observe(collector.obs)
            action = self.sample_actions(obs)
            step = collector.step(action)
            observations.append(obs[0])
            actions.append(step.actions[0])
            rewards.append(step.rewards[0])
            if step.terminated[0] or step.truncated[0]:              # until terminal (or cut)
                break
        length = len(rewards)
        terminated, truncated = np.zeros(length, bool), np.zeros(length, bool)
        terminated[-1], truncated[-1] = step.terminated[0], step.truncated[0]
        next_values = np.zeros(length, self.dtype)
        if not terminated[-1]:                                       # 4. R = V(s_t) unless terminal
            next_values[-1] = self.values_of(self.observe(step.next_obs))[0]
        returns = discounted_returns(np.asarray(rewards, self.dtype), terminated, truncated,
                                     cfg.gamma, next_values)         # 5. R <- r_i + gamma R
        obs_batch, action_batch = np.stack(observations), np.asarray(actions)
        dist, values = self.distribution_and_values(obs_batch)
        log_prob = dist.log_prob(action_batch, validate=False)      # actions drawn by us
        advantages = returns - values.data                           # R - V(s_i), held constant
        loss, diagnostics = segment_loss(log_prob, values, self.entropy_of(dist), advantages,
                                         returns, cfg.entropy_coef)
        loss.backward()                                              # accumulate d theta, d w
        grad_norm = clip_grad_norm_or_measure(self.optimizer.grad, cfg.max_grad_norm)
        global_model.push(self.optimizer.grad, length)               # 6. update theta, w
        diagnostics.update(grad_norm=grad_norm, segment_length=float(length))
        return diagnostics


# ----------------------------------------------------------------------------- global state
def view_parameters(data, grad):
    """One Parameter whose data is ``data`` and whose gradient is ``grad`` (1-D views, no
    copy): the global theta, w as one flat vector for an optimizer to update in place."""
    flat = Parameter(np.zeros(0, data.dtype))
    flat.data = data[:]           # views whose base is the array itself, as contiguous_buffers
    flat.grad = grad[:]           # expects of the engine's flat buffers
    return flat


class SharedGlobals:
    """theta, w, the RMSprop statistics and T, as a worker (or the parameter server) updates them.

    ``params`` and ``square_avg`` are the global vectors (views of the shared segments
    after :meth:`attach`); the optimizer is an :class:`~minipg.optim.RMSprop` over one
    Parameter whose data is the global parameter vector and whose gradient is the
    caller's own d theta, d w buffer ``grad``, with the global statistics as its
    ``square_avg``: a step writes both global vectors in place, without a lock (Hogwild).
    T = ``steps_before`` + the sum of ``worker_steps``, the slot of each worker written
    for that worker alone (by the worker itself, or by the parameter server for a worker
    that reaches the state through it).
    """

    LAYOUT = ("params", "square_avg", "worker_steps", "worker_updates", "steps_before")

    def __init__(self, arrays, config, rank, grad=None, shared=None):
        self.config, self.rank, self.shared = config, rank, shared
        self.params, self.square_avg = arrays["params"], arrays["square_avg"]
        self.worker_steps, self.worker_updates = arrays["worker_steps"], arrays["worker_updates"]
        self.steps_before = arrays["steps_before"]
        grad = np.zeros_like(self.params) if grad is None else grad
        self.flat = view_parameters(self.params, grad)
        self.optimizer = RMSprop([self.flat], lr=config.lr, alpha=config.rmsprop_alpha,
                                 eps=config.optimizer_eps, square_avg=self.square_avg)

    @classmethod
    def attach(cls, spec, config, rank, grad=None):
        """Over the shared arrays ``spec`` (a :class:`SharedArrays` owner's ``spec``)."""
        shared = SharedArrays.attach(spec)
        try:
            return cls(shared.arrays, config, rank, grad, shared)
        except BaseException:
            shared.close()
            raise

    @staticmethod
    def layout(n_params, dtype, workers):
        return {"params": ((n_params,), dtype), "square_avg": ((n_params,), dtype),
                "worker_steps": ((workers,), np.int64), "worker_updates": ((workers,), np.int64),
                "steps_before": ((1,), np.int64)}

    def steps(self):
        """T, the global step counter."""
        return int(self.steps_before[0] + self.worker_steps.sum())

    def pull(self, out):
        """theta', w' <- theta, w (a copy of the shared vector, read without a lock)."""
        np.copyto(out, self.params)

    def resync(self):
        """Nothing to forget: every pull and every T reads the shared arrays."""

    def push(self, grad, steps):
        """The RMSprop step with this worker's accumulated gradient (already in the
        optimizer's gradient buffer: ``grad`` is that buffer), at the learning rate of T."""
        self.apply(self.rank, steps)

    def apply(self, rank, steps):
        """The RMSprop step with the gradient in ``self.flat.grad`` for worker ``rank``'s
        segment of ``steps`` steps: theta, w and the statistics in place, then T."""
        self.optimizer.lr = learning_rate(self.config, self.steps())
        self.optimizer.step()                   # writes the global theta, w and statistics
        self.worker_steps[rank] += steps        # T <- T + steps: that worker's slot alone
        self.worker_updates[rank] += 1

    def close(self):
        if self.shared is not None:
            self.shared.close()


class ParameterServer:
    """backend=ray: the Ray actor through which a worker away from the global state reaches it.

    A worker ``push``-es its accumulated gradient and gets the new parameters and T
    back (one round trip per segment); the actor applies the updates one at a time,
    with the same RMSprop and the same T as the workers on shared memory
    (:class:`SharedGlobals`).  Given ``spec`` (the driver is a node of the cluster),
    the global state is the driver's shared memory: the actor runs on the driver's node
    and attaches it, so its updates and the local workers' land in the same arrays.
    Without it (a ``ray://`` client driver, off the cluster) the actor holds the global
    state itself, starting from ``params``, ``square_avg`` and T = ``steps``.
    """

    def __init__(self, config, workers, spec=None, params=None, square_avg=None, steps=0):
        if spec is not None:
            self.globals = SharedGlobals.attach(spec, config, None)
        else:
            params = np.asarray(params)
            arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype)
                      in SharedGlobals.layout(params.size, params.dtype, workers).items()}
            arrays["params"][:] = params
            arrays["square_avg"][:] = square_avg
            arrays["steps_before"][0] = steps
            self.globals = SharedGlobals(arrays, config, None)
        self.pushes = 0                   # updates applied here (for the remote workers)

    def pull(self):
        return self.globals.params.copy(), self.globals.steps()

    def push(self, rank, grad, steps):
        np.copyto(self.globals.flat.grad, grad)
        self.globals.apply(rank, int(steps))
        self.pushes += 1
        return self.pull()

    def state(self):
        g = self.globals
        return {"params": g.params.copy(), "square_avg": g.square_avg.copy(),
                "steps": g.steps(), "worker_steps": g.worker_steps.copy(),
                "worker_updates": g.worker_updates.copy(), "pushes": self.pushes}


class RayGlobals:
    """A Ray worker's view of the :class:`ParameterServer` (pull / push / steps)."""

    def __init__(self, server, rank):
        self.server, self.rank = server, rank
        self.received = None              # the parameters a push brought back
        self.known_steps = None

    def steps(self):
        if self.known_steps is None:
            self.pull(None)
        return self.known_steps

    def pull(self, out):
        import ray
        if self.received is None:
            self.received, self.known_steps = ray.get(self.server.pull.remote())
        if out is not None:
            np.copyto(out, self.received)
            self.received = None

    def resync(self):
        """Forget what the last push brought back: after a pause the other workers have
        moved theta, w and T, so the next segment pulls them afresh."""
        self.received = self.known_steps = None

    def push(self, grad, steps):
        import ray
        self.received, self.known_steps = ray.get(
            self.server.push.remote(self.rank, np.array(grad, copy=True), steps))

    def close(self):
        pass


# ----------------------------------------------------------------------------- the workers
@dataclass
class WorkerJob:
    """What every worker is given (picklable): the task, the settings, where the global
    state is, the queues, and each worker's saved state (None: a fresh start)."""
    algo_cls: type
    env_id: str
    config: A3CConfig
    seed: int
    spec: dict | None                 # the shared arrays a worker may attach (None: none may)
    server: object                    # ray backend: the ParameterServer actor
    commands: list
    reports: object
    states: list
    shared_node: str | None = None    # ray backend: the node whose memory holds ``spec``


def worker_seeds(seed, rank):
    """(environment seed, sampling generator seed) of worker ``rank``."""
    return seed + rank, (seed, rank)


def connect_globals(job, rank, grad):
    """How worker ``rank`` reaches the global state: the shared arrays where they are in its
    machine's memory (every worker of the process backend; with backend=ray and
    ray_transport=auto, the workers on the node of the driver, which holds them), else
    the parameter-server actor.  ``grad``: the worker's d theta, d w buffer."""
    if job.spec is not None and (job.shared_node is None or ray_node_id() == job.shared_node):
        try:
            return SharedGlobals.attach(job.spec, job.config, rank, grad)
        except OSError:
            if job.server is None:          # the process backend has no other way
                raise
            # same node id but not the driver's /dev/shm (another container or IPC
            # namespace): the parameter server reaches the state for this worker
    return RayGlobals(job.server, rank)


def worker_main(rank, stop, job):
    """A worker: its environment, its theta', w', then segments while told to run.

    It waits for a command ("run until T") on its own queue, runs segments
    (:meth:`A3C.run_segment`) until T reaches it, then reports its state, finished
    episodes and diagnostics, and waits again; it returns when ``stop`` is set.
    """
    cfg = job.config
    env_seed, rng_seed = worker_seeds(job.seed, rank)
    envs = make_vector_env(job.env_id, 1, job.algo_cls.env_wrappers(cfg), "sync")
    collector = Collector(envs, seed=env_seed, dtype=cfg.dtype)
    local = None
    global_model = None
    try:
        local = job.algo_cls(cfg, collector.observation_space, collector.action_space, job.seed)
        local.rng = np.random.default_rng(rng_seed)
        state = job.states[rank]
        if state is not None:
            collector.load_state_arrays(state)
            local.rng.bit_generator.state = json.loads(str(state["rng"]))
        global_model = connect_globals(job, rank, local.optimizer.grad)
        commands = job.commands[rank]
        while not stop.is_set():
            try:
                until = commands.get(timeout=0.2)
            except queue.Empty:
                continue
            global_model.resync()              # what a push returned before the pause is stale
            diagnostics = []
            while global_model.steps() < until and not stop.is_set():
                diagnostics.append(local.run_segment(collector, global_model))
            state = collector.state_arrays()
            state["rng"] = np.array(json.dumps(local.rng.bit_generator.state))
            episodes = [(ret, length) for _, ret, length in collector.drain_finished()]
            job.reports.put((rank, state, episodes, diagnostics))
    finally:
        collector.close()
        if global_model is not None:
            global_model.close()


DIAGNOSTICS = ("policy_loss", "value_loss", "entropy", "grad_norm", "segment_length")


class A3CWorkers:
    """The run loop's collector for A3C: the workers, T and the finished episodes.

    Attributes as :class:`minipg.envs.vector.Collector`'s (``steps`` is T); the
    workers start at the first :meth:`run` (the agent's parameters, fresh or
    restored, are then copied into the global state) and stop at :meth:`close`,
    which leaves no process and no shared-memory segment.
    """

    def __init__(self, algo_cls, env_id, config, seed, window=20):
        self.algo_cls, self.env_id, self.config, self.seed = algo_cls, env_id, config, seed
        self.n = config.workers
        self.observation_space, self.action_space = probe_spaces(
            env_id, algo_cls.env_wrappers(config))
        self.obs = None                     # the workers hold the observations
        self.steps = 0                      # T
        self.episodes = 0
        self.recent_returns = deque(maxlen=window)
        self.recent_lengths = deque(maxlen=window)
        self.finished = []
        self.states = [None] * self.n       # each worker's state at the last pause
        self.worker_env_steps = np.zeros(self.n, np.int64)   # as each worker counted them
        self.worker_updates = np.zeros(self.n, np.int64)
        self.updates = 0
        self.backend = self.group = self.shared = self.server = None
        self.shared_node = None
        self.commands, self.reports = [], None

    # --- starting and running ---------------------------------------------------------
    def start(self, agent):
        """Create the global state from ``agent``'s parameters and start the workers."""
        cfg = self.config
        params, square_avg = agent.optimizer.data, agent.optimizer.square_avg
        self.backend = get_backend(cfg.backend, cfg.ray_address or None)
        self.backend.__enter__()
        try:
            self.open_globals(params, square_avg)
            # the workers may attach the shared arrays unless every one goes through the actor
            spec = (self.shared.spec if self.shared is not None and cfg.ray_transport == "auto"
                    else None)
            self.commands = [self.backend.queue() for _ in range(self.n)]
            self.reports = self.backend.queue()
            job = WorkerJob(self.algo_cls, self.env_id, cfg, self.seed, spec, self.server,
                            self.commands, self.reports, list(self.states), self.shared_node)
            self.group = self.backend.start(worker_main, self.n, (job,))
        except BaseException:
            self.close()
            raise

    def open_globals(self, params, square_avg):
        """The global state, from ``params`` and ``square_avg`` and T = ``self.steps``:
        shared arrays owned here (so :meth:`close` unlinks them) wherever this process is a
        node of the workers' machines (always with the process backend; with backend=ray,
        unless connected as a ``ray://`` client), and with backend=ray the parameter-server
        actor, pinned to this node to attach those arrays (``shared_node``)."""
        cfg = self.config
        node = None
        if self.backend.name == "ray":
            import ray
            check_workers(self.n, cpus=int(ray.cluster_resources().get("CPU", 1)))
            node = self.backend.driver_node()
        if self.backend.name == "process" or node is not None:
            self.shared = SharedArrays.create(
                SharedGlobals.layout(params.size, params.dtype, self.n))
            self.shared["params"][:] = params
            self.shared["square_avg"][:] = square_avg
            self.shared["steps_before"][0] = self.steps
        if self.backend.name == "ray":
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
            server_cls = ray.remote(num_cpus=0)(ParameterServer)
            if node is not None:
                self.shared_node = node
                pinned = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
                self.server = server_cls.options(scheduling_strategy=pinned).remote(
                    cfg, self.n, spec=self.shared.spec)
                ray.get(self.server.pull.remote())   # its attach fails here, not at close
            else:
                self.server = server_cls.remote(cfg, self.n, params=params,
                                                square_avg=square_avg, steps=self.steps)

    def global_state(self):
        """(params, square_avg, T, per-worker steps this session, per-worker updates)."""
        if self.shared is not None:
            s = self.shared
            return (s["params"].copy(), s["square_avg"].copy(),
                    int(s["steps_before"][0] + s["worker_steps"].sum()),
                    s["worker_steps"].copy(), s["worker_updates"].copy())
        import ray
        state = ray.get(self.server.state.remote())
        return (state["params"], state["square_avg"], state["steps"], state["worker_steps"],
                state["worker_updates"])

    def run(self, agent, until):
        """Let the workers run until T >= ``until``, wait for every one to pause, copy the
        global state into ``agent``; the stretch's mean diagnostics."""
        if self.group is None:
            self.start(agent)
        for command in self.commands:
            command.put(int(until))
        reports = {}
        while len(reports) < self.n:
            try:
                rank, state, episodes, diagnostics = self.reports.get(timeout=POLL_S)
            except queue.Empty:
                running = self.group.poll()              # WorkerError if one failed
                if running < self.n:
                    raise RuntimeError(f"A3C: {self.n - running} worker(s) returned without "
                                       f"reporting (stopped from outside?)")
                continue
            reports[rank] = (state, episodes, diagnostics)
        params, square_avg, steps, session_steps, updates = self.global_state()
        # the agent now holds theta, w and the statistics as the pause left them
        np.copyto(agent.optimizer.data, params)
        for p in agent.optimizer.params:
            p.mark_modified()
        np.copyto(agent.optimizer.square_avg, square_avg)
        self.updates += int(updates.sum() - self.worker_updates.sum())
        self.worker_updates = updates
        agent.optimizer.step_count = self.updates
        agent.optimizer.lr = learning_rate(self.config, steps)
        self.steps = steps
        rows = []
        for rank in range(self.n):
            state, episodes, diagnostics = reports[rank]
            self.states[rank] = state
            self.worker_env_steps[rank] = int(state["collector/steps"])
            for ret, length in episodes:
                self.recent_returns.append(ret)
                self.recent_lengths.append(length)
                self.finished.append((steps, ret, length))
                self.episodes += 1
            rows.extend(diagnostics)
        metrics = {k: float(np.mean([row[k] for row in rows])) if rows else 0.0
                   for k in DIAGNOSTICS}
        metrics["segments"] = float(len(rows))
        metrics["lr"] = agent.optimizer.lr
        return metrics

    # --- the Collector interface ------------------------------------------------------
    def drain_finished(self):
        out, self.finished = self.finished, []
        return out

    def render(self):
        raise NotImplementedError("A3C's workers do not render; evaluation uses "
                                  "make_collector(..., n_envs=1)")

    def progress_columns(self):
        return {"workers": float(self.n), "updates": float(self.updates)}

    def state_arrays(self):
        """T, the episode counters, and each worker's state at the last pause (absent
        before the first: a worker then starts afresh from its seed)."""
        out = {"collector/steps": np.asarray(self.steps),
               "collector/episodes": np.asarray(self.episodes),
               "collector/updates": np.asarray(self.updates),
               "collector/recent_returns": np.asarray(self.recent_returns, dtype=np.float64),
               "collector/recent_lengths": np.asarray(self.recent_lengths, dtype=np.int64),
               "collector/workers": np.asarray(self.n)}
        for rank, state in enumerate(self.states):
            if state is not None:
                out.update({f"worker/{rank}/{k}": v for k, v in state.items()})
        return out

    def load_state_arrays(self, arrays):
        n = int(arrays["collector/workers"])
        if n != self.n:
            raise ValueError(f"the checkpoint has {n} workers, this run {self.n}")
        self.steps = int(arrays["collector/steps"])
        self.episodes = int(arrays["collector/episodes"])
        self.updates = int(arrays["collector/updates"])
        self.recent_returns.extend(arrays["collector/recent_returns"].tolist())
        self.recent_lengths.extend(arrays["collector/recent_lengths"].tolist())
        for rank in range(self.n):
            prefix = f"worker/{rank}/"
            state = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
            self.states[rank] = state or None
            if state:
                self.worker_env_steps[rank] = int(state["collector/steps"])

    def close(self):
        """Stop the workers, then free the global state: no process, no segment left."""
        try:
            if self.group is not None:
                self.group.stop()
        finally:
            self.group = None
            for channel in self.commands + [self.reports]:
                if channel is not None:
                    close_queue(channel)
            self.commands, self.reports = [], None
            if self.server is not None:          # a cluster we joined keeps running: end
                import ray                       # the parameter server's actor ourselves
                try:
                    ray.kill(self.server, no_restart=True)
                except Exception:                # the session is gone, and the actor too
                    pass
                self.server = None
            if self.shared is not None:          # the actor attached without registering:
                self.shared.close()              # unlinking is ours alone
                self.shared = None
            if self.backend is not None:
                backend, self.backend = self.backend, None
                backend.__exit__(None, None, None)

