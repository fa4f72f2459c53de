"""A3C (minipg/algorithms/a3c.py): one worker's segment against the outline's sums, the
one-worker trajectory against a sequential loop written here, several workers on shared
parameters, shutdown (Ctrl-C, a failing worker) and bad input.

Spawned workers (and the command-line runs) import this module by name to make the
failing task below, so the tests directory goes on their PYTHONPATH.
"""

import dataclasses
import io
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

from minipg.algorithms.a3c import (A3C, A3CConfig, A3CWorkers, SharedGlobals, WorkerJob,
                                   connect_globals, learning_rate, worker_seeds)
from minipg.algorithms.base import ConfigError, config_from
from minipg.autodiff import Tensor
from minipg.distributions import Categorical
from minipg.envs.vector import Collector, Step
from minipg.estimators.a3c import segment_loss
from minipg.kernels import rmsprop_update_numpy
from minipg.parallel import WorkerError, get_backend
from minipg.run import CHECKPOINT, read_checkpoint, train

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# --- a task whose environment fails in a worker ----------------------------------------
class FailingCartPole(gym.Wrapper):
    """CartPole whose step raises after ``fail_at`` steps -- in worker 1 only (the
    worker's environment seed is seed + rank: reset(seed=1) marks it)."""

    def __init__(self, fail_at=300):
        super().__init__(gym.make("CartPole-v1"))
        self.fail_at, self.count, self.armed = fail_at, 0, False

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.armed = seed == 1
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.count += 1
        if self.armed and self.count >= self.fail_at:
            raise RuntimeError("the simulator lost its state")
        return self.env.step(action)


if "A3CFailing-v0" not in gym.registry:
    gym.register("A3CFailing-v0", entry_point=FailingCartPole, max_episode_steps=500)


# --- helpers ---------------------------------------------------------------------------
def config(**overrides):
    values = {"workers": 1, "hidden": (5,), "n_steps": 5, "gamma": 0.9, "max_grad_norm": 0.0,
              "entropy_coef": 0.01}
    values.update(overrides)
    return config_from(A3CConfig, values)


def make_agent(cfg, obs_dim=3, n_actions=2, seed=0):
    obs_space = gym.spaces.Box(-5.0, 5.0, (obs_dim,), np.float64)
    return A3C(cfg, obs_space, gym.spaces.Discrete(n_actions), seed)


class ScriptedCollector:
    """One environment replaying given observations, rewards and episode ends."""

    def __init__(self, observations, rewards, terminated, truncated, final_obs):
        self.observations, self.rewards = observations, rewards
        self.terminated, self.truncated, self.final_obs = terminated, truncated, final_obs
        self.t = 0
        self.obs = observations[0][None]
        self.steps = 0

    def step(self, actions):
        t = self.t
        self.t += 1
        self.steps += 1
        last = t + 1 == len(self.rewards)
        next_obs = self.final_obs if last else self.observations[t + 1]
        step = Step(self.obs, np.asarray(actions), np.array([self.rewards[t]]), next_obs[None],
                    np.array([self.terminated[t]]), np.array([self.truncated[t]]))
        self.obs = next_obs[None]
        return step


class RecordingGlobals:
    """A global model for one segment: fixed theta, w; records the pushed gradient."""

    def __init__(self, params):
        self.params, self.pushed, self.pushed_steps = params, None, None

    def steps(self):
        return 0

    def pull(self, out):
        np.copyto(out, self.params)

    def push(self, grad, steps):
        self.pushed, self.pushed_steps = grad.copy(), steps


def mlp_numpy(layers, x):
    """Forward of a one-hidden-layer tanh MLP: (hidden activations, output)."""
    (w1, b1), (w2, b2) = layers
    h = np.tanh(x @ w1 + b1)
    return h, h @ w2 + b2


def mlp_backward(layers, x, h, g_out):
    """Gradients (w1, b1, w2, b2) of sum(g_out * output) for one input row."""
    (w1, b1), (w2, b2) = layers
    g_pre = (w2 @ g_out) * (1.0 - h * h)
    return np.outer(x, g_pre), g_pre, np.outer(h, g_out), g_out


def outline_gradients(agent, observations, actions, rewards, terminal, bootstrap_obs, gamma,
                      beta):
    """Weng's A3C outline, steps 5-6, evaluated directly in NumPy: d theta (ascent, with
    Mnih et al.'s entropy term) and d w, per parameter, for one-hidden-layer networks."""
    pol = [(agent.policy.net.layer0.weight.data, agent.policy.net.layer0.bias.data),
           (agent.policy.net.layer1.weight.data, agent.policy.net.layer1.bias.data)]
    val = [(agent.value.net.layer0.weight.data, agent.value.net.layer0.bias.data),
           (agent.value.net.layer1.weight.data, agent.value.net.layer1.bias.data)]
    d_theta = [np.zeros_like(a) for layer in pol for a in layer]
    d_w = [np.zeros_like(a) for layer in val for a in layer]
    R = 0.0 if terminal else float(mlp_numpy(val, bootstrap_obs)[1][0])    # step 5
    returns = []
    for i in reversed(range(len(rewards))):                               # i = t-1..t_start
        R = rewards[i] + gamma * R
        returns.append(R)
        x = observations[i]
        h, logits = mlp_numpy(pol, x)
        pi = np.exp(logits - logits.max())
        pi /= pi.sum()
        log_pi = np.log(pi)
        entropy = -(pi * log_pi).sum()
        hv, v = mlp_numpy(val, x)
        advantage = R - v[0]
        # d log pi(a|s) / d logits = e_a - pi;  d H / d logits = -pi (log pi + H)
        g_logits = advantage * (np.eye(len(pi))[actions[i]] - pi) \
            + beta * (-pi * (log_pi + entropy))
        for acc, g in zip(d_theta, mlp_backward(pol, x, h, g_logits)):
            acc += g
        # d w += 2 (R - V) d(R - V)/dw = -2 (R - V) dV/dw
        for acc, g in zip(d_w, mlp_backward(val, x, hv, np.array([-2.0 * advantage]))):
            acc += g
    return d_theta, d_w, returns[::-1]


# --- one segment against the outline ------------------------------------------------------
@pytest.mark.parametrize("ending", ["terminal", "truncated", "t_max"])
def test_segment_gradients_equal_the_outline_sums(ending):
    """d theta and d w accumulated by run_segment equal the outline's sums in NumPy, to
    1e-10 (float64; both sides are exact evaluations of one formula, differing by
    rounding only: sums of ~5 terms of size ~1)."""
    rng = np.random.default_rng(3)
    cfg = config(n_steps=5)
    agent = make_agent(cfg)
    length = {"terminal": 3, "truncated": 4, "t_max": 5}[ending]
    observations = rng.normal(size=(length, 3))
    rewards = rng.normal(size=length)
    terminated = np.zeros(length, bool)
    truncated = np.zeros(length, bool)
    if ending == "terminal":
        terminated[-1] = True
    elif ending == "truncated":
        truncated[-1] = True
    final_obs = rng.normal(size=3)
    collector = ScriptedCollector(observations, rewards, terminated, truncated, final_obs)
    params = agent.optimizer.data.copy() + rng.normal(scale=0.3, size=agent.optimizer.data.size)
    globals_ = RecordingGlobals(params)
    # the actions the worker draws: replay its generator
    replay = np.random.default_rng(11)
    agent.rng = np.random.default_rng(11)
    agent.run_segment(collector, globals_)
    assert globals_.pushed_steps == length
    assert np.array_equal(agent.optimizer.data, params)          # synchronised first
    logits = np.stack([agent.policy.net.forward_array(o[None])[0] for o in observations])
    actions = [int(Categorical.sample_from_logits(logits[i:i + 1], replay)[0][0])
               for i in range(length)]
    d_theta, d_w, _ = outline_gradients(agent, observations, actions, rewards,
                                        ending == "terminal", final_obs, cfg.gamma,
                                        cfg.entropy_coef)
    expected = np.concatenate([-g.ravel() for g in d_theta] + [g.ravel() for g in d_w])
    np.testing.assert_allclose(globals_.pushed, expected, rtol=0, atol=1e-10)


def test_segment_loss_gradient_is_the_sum_not_the_mean():
    """A wrongly averaged segment loss (the A2C mean) fails the same comparison."""
    rng = np.random.default_rng(0)
    log_prob = Tensor(rng.normal(size=4), requires_grad=True)
    values = Tensor(rng.normal(size=4), requires_grad=True)
    returns = rng.normal(size=4)
    advantages = returns - values.data
    loss, _ = segment_loss(log_prob, values, np.zeros(4), advantages, returns, 0.0)
    loss.backward()
    np.testing.assert_allclose(log_prob.grad, -advantages, rtol=0, atol=1e-12)
    np.testing.assert_allclose(values.grad, -2 * advantages, rtol=0, atol=1e-12)
    assert not np.allclose(log_prob.grad, -advantages / 4, atol=1e-3)


# --- one worker: the trajectory of a sequential loop ----------------------------------------
def sequential_outline(cfg, seed, total_steps):
    """Weng's A3C outline with one worker, as a plain loop: returns theta, w at the end."""
    env = gym.make("CartPole-v1")
    env_seed, rng_seed = worker_seeds(seed, 0)
    obs, _ = env.reset(seed=env_seed)
    template = A3C(cfg, env.observation_space, env.action_space, seed)
    theta_w = template.optimizer.data.copy()                     # the global parameters
    square_avg = np.zeros_like(theta_w)
    local = A3C(cfg, env.observation_space, env.action_space, seed)
    rng = np.random.default_rng(rng_seed)
    T = 0
    while T < total_steps:
        local.optimizer.zero_grad()                             # reset d theta, d w
        local.optimizer.data[:] = theta_w                       # theta' = theta, w' = w
        for p in local.optimizer.params:
            p.mark_modified()
        rows, actions, rewards, terminal = [], [], [], False
        for _ in range(cfg.n_steps):
            x = np.asarray(obs, np.float64)
            a = int(Categorical.sample_from_logits(
                local.policy.net.forward_array(x[None]), rng)[0][0])
            obs, r, terminated, truncated, _ = env.step(a)
            rows.append(x)
            actions.append(a)
            rewards.append(r)
            T += 1
            if terminated or truncated:
                terminal = terminated
                final = np.asarray(obs, np.float64)
                obs, _ = env.reset()
                break
        else:
            final = np.asarray(obs, np.float64)
        R = 0.0 if terminal else float(local.value.net.forward_array(final[None])[0, 0])
        returns = np.zeros(len(rewards))
        for i in reversed(range(len(rewards))):
            R = rewards[i] + cfg.gamma * R
            returns[i] = R
        dist, values = local.policy(np.stack(rows)), local.value(np.stack(rows))
        log_prob = dist.log_prob(np.asarray(actions))
        advantages = returns - values.data
        loss = (-(log_prob * advantages).sum() + ((values - returns) ** 2).sum()
                - cfg.entropy_coef * dist.entropy().sum())
        loss.backward()
        lr = learning_rate(cfg, T - len(rewards))
        rmsprop_update_numpy(theta_w, local.optimizer.grad, square_avg, np.zeros(0),
                             np.zeros(0), lr, cfg.rmsprop_alpha, cfg.optimizer_eps, 0.0, 0.0,
                             False)
    env.close()
    return theta_w, square_avg, T


def test_one_worker_follows_the_sequential_outline_and_resumes_exactly(tmp_path,
                                                                        monkeypatch):
    """train() with workers=1 (a spawned worker process, shared memory) ends with the
    parameters and RMSprop statistics of the loop above, to 1e-9 (the same arithmetic in
    another order: a segment's sums against means times its length).  The same run
    stopped by Ctrl-C after its first stretch and resumed ends exactly as it (parameters,
    statistics, T, the worker's environment and generator)."""
    overrides = {"workers": 1, "hidden": (8,), "normalize_reward": True, "entropy_coef": 0.01,
                 "max_grad_norm": 0.0, "log_every": 150, "checkpoint_every": 300}
    full = train("a3c", "CartPole-v1", total_steps=300, seed=4, out=str(tmp_path / "full"),
                 overrides=dict(overrides, normalize_reward=False), stream=io.StringIO())
    ckpt = read_checkpoint(os.path.join(full, CHECKPOINT))
    cfg = config_from(A3CConfig, dict(overrides, total_steps=300, normalize_reward=False))
    theta_w, square_avg, T = sequential_outline(cfg, 4, 300)
    assert int(ckpt["collector/steps"]) == T
    got = np.concatenate([ckpt["module/policy"], ckpt["module/value"]])
    np.testing.assert_allclose(got, theta_w, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ckpt["optim/optimizer/square_avg"], square_avg, rtol=0,
                               atol=1e-9)
    initial = A3C(cfg, gym.make("CartPole-v1").observation_space, gym.spaces.Discrete(2), 4)
    assert not np.allclose(got, initial.optimizer.data, atol=1e-3)

    # resume, with reward scaling (the wrapper's statistics travel in the worker's state)
    full = train("a3c", "CartPole-v1", total_steps=300, seed=4, out=str(tmp_path / "full2"),
                 overrides=overrides, stream=io.StringIO())
    original, calls = A3C.learn, []

    def learn_then_interrupt(self, collector):
        out = original(self, collector)
        calls.append(collector.steps)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(A3C, "learn", learn_then_interrupt)
    part = train("a3c", "CartPole-v1", total_steps=300, seed=4, out=str(tmp_path / "part"),
                 overrides=overrides, stream=io.StringIO())
    monkeypatch.setattr(A3C, "learn", original)
    assert int(read_checkpoint(os.path.join(part, CHECKPOINT))["collector/steps"]) == calls[0]
    train("a3c", out=part, resume=True, stream=io.StringIO())
    a, b = (read_checkpoint(os.path.join(d, CHECKPOINT)) for d in (full, part))
    for key in ("module/policy", "module/value", "optim/optimizer/square_avg",
                "collector/steps", "collector/episodes", "worker/0/collector/obs",
                "worker/0/envstate/0/1/return_rms/var"):
        assert np.array_equal(a[key], b[key]), key
    assert str(a["worker/0/rng"]) == str(b["worker/0/rng"])


# --- several workers ------------------------------------------------------------------------
def push_one_hot(rank, stop, jobs, size, kinds):
    """A worker that applies a gradient on coordinate ``rank`` only, through the global
    state a real worker with ``jobs[rank]`` reaches (checked to be of class kinds[rank])."""
    grad = np.zeros(size)
    global_model = connect_globals(jobs[rank], rank, grad)
    assert type(global_model).__name__ == kinds[rank], type(global_model)
    grad[rank] = 1.0
    global_model.push(grad, 10 + rank)
    global_model.close()


def test_connect_globals_falls_back_to_the_server_where_the_segment_cannot_be_opened(
        monkeypatch):
    """A Ray worker reporting the driver's node id but not seeing its /dev/shm (another
    container or IPC namespace) goes through the parameter server instead of dying; the
    process backend, which has no server, raises."""
    import minipg.algorithms.a3c as a3c_module
    cfg = config_from(A3CConfig, {"workers": 1})
    spec = {"params": ((4,), "float64", "minipg_test_missing_segment")}
    monkeypatch.setattr(a3c_module, "ray_node_id", lambda: "node-a")
    sentinel = object()
    job = WorkerJob(A3C, "CartPole-v1", cfg, 0, spec, sentinel, [], None, [None],
                    shared_node="node-a")
    model = connect_globals(job, 0, np.zeros(4))
    assert type(model).__name__ == "RayGlobals" and model.server is sentinel
    with pytest.raises(OSError):
        connect_globals(dataclasses.replace(job, server=None, shared_node=None), 0,
                        np.zeros(4))


def descendants(pid):
    found, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        found += kids
        todo += kids
    return found


def ray_actor_pids():
    """This test process's Ray actor processes running A3C's workers or server."""
    pids = []
    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if b"RayWorkerHost" in cmdline or b"ParameterServer" in cmdline:
            pids.append(pid)
    return pids


def check_every_worker_updates_the_one_shared_state(backend, ray=None):
    """Each worker's update reaches the shared theta, w and the shared RMSprop statistics
    (one array for all), and T is the sum of the workers' steps."""
    cfg = config(workers=2, anneal_lr=False, lr=0.01, backend=backend)
    size = 6
    workers = A3CWorkers(A3C, "CartPole-v1", cfg, 0)
    workers.backend = get_backend(backend).__enter__()    # Ray: the session of the fixture
    try:
        workers.open_globals(np.ones(size), np.zeros(size))
        shared = workers.shared
        local = SharedGlobals.attach(shared.spec, cfg, 0, np.zeros(size))
        # the optimizer of a worker steps the shared vectors themselves: what it writes,
        # the owner's mapping of the segments reads
        local.optimizer.square_avg[5] = 7.0
        local.optimizer.data[5] = 3.0
        assert shared["square_avg"][5] == 7.0 and shared["params"][5] == 3.0
        local.optimizer.square_avg[5] = 0.0
        local.optimizer.data[5] = 1.0
        local.close()
        job = WorkerJob(A3C, "CartPole-v1", cfg, 0, shared.spec, workers.server, [], None,
                        [None, None], workers.shared_node)
        if backend == "process":
            jobs, kinds = [job, job], ["SharedGlobals", "SharedGlobals"]
        else:
            elsewhere = dataclasses.replace(job, shared_node="f" * len(job.shared_node))
            jobs, kinds = [job, elsewhere], ["SharedGlobals", "RayGlobals"]
        with workers.backend.start(push_one_hot, 2, (jobs, size, kinds)) as group:
            assert group.join(timeout=120) == 0      # both workers returned
        step = 0.01 / (np.sqrt(1 - cfg.rmsprop_alpha) + cfg.optimizer_eps)   # first RMSprop step
        np.testing.assert_allclose(shared["params"], [1 - step, 1 - step, 1, 1, 1, 1],
                                   rtol=1e-12)
        # one array of statistics: the second step decays the first worker's entry too
        # (alpha s), which private statistics would not
        first, second = sorted(shared["square_avg"][:2])
        np.testing.assert_allclose([first, second], [cfg.rmsprop_alpha * 0.01, 0.01],
                                   rtol=1e-12)
        assert (shared["square_avg"][2:] == 0).all()
        assert shared["worker_steps"].tolist() == [10, 11]
        assert shared["worker_updates"].tolist() == [1, 1]
        segments = [os.path.join("/dev/shm", name.lstrip("/")) for name in shared.segment_names]
        if backend == "ray":
            assert ray.get(workers.server.state.remote())["pushes"] == 1   # worker 1's only
            pids = ray_actor_pids()
            assert pids                                   # the workers' hosts and the server
            ray.kill(workers.server, no_restart=True)
            workers.server = None
            deadline = time.monotonic() + 30
            while any(alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(alive(p) for p in pids)
            assert all(os.path.exists(s) for s in segments)      # still the driver's
    finally:
        workers.close()
    assert not any(os.path.exists(s) for s in segments)


def test_every_worker_updates_the_one_shared_state():
    check_every_worker_updates_the_one_shared_state("process")


def test_two_workers_train_through_the_run_loop(tmp_path):
    """workers=2: T equals the sum of the steps the workers' own collectors counted, every
    worker made updates, and the parameters moved."""
    overrides = {"workers": 2, "hidden": (8,), "log_every": 250}
    collectors = []
    original = A3CWorkers.close

    def keep(self):
        collectors.append(self)
        original(self)

    try:
        A3CWorkers.close = keep
        out = train("a3c", "CartPole-v1", total_steps=500, seed=0, out=str(tmp_path / "run"),
                    overrides=overrides, stream=io.StringIO())
    finally:
        A3CWorkers.close = original
    workers = [c for c in collectors if isinstance(c, A3CWorkers)][0]
    assert workers.steps >= 500
    assert workers.steps == int(workers.worker_env_steps.sum())
    assert (workers.worker_updates > 0).all()
    assert workers.updates == int(workers.worker_updates.sum())
    assert multiprocessing.active_children() == []
    assert os.path.exists(os.path.join(out, "eval.json"))


# --- shutdown ---------------------------------------------------------------------------------
def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def shm_segments_of(pid):
    try:
        with open(f"/proc/{pid}/maps") as fh:
            return {line.split()[-1] for line in fh if "/dev/shm/" in line}
    except OSError:
        return set()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_cli(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HERE]))
    return subprocess.Popen([sys.executable, "-m", "minipg", "train", "a3c", *args],
                            cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_workers(proc, n, timeout=60):
    """The training process's worker PIDs and shared-memory segments, once n run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [k for k in children_of(proc.pid)
                if b"spawn_main" in open(f"/proc/{k}/cmdline", "rb").read()]
        segments = shm_segments_of(proc.pid)
        if len(kids) >= n and segments:
            return kids, segments
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"workers did not start: {proc.communicate()}")


def test_ctrl_c_stops_every_worker_checkpoints_and_exits_130(tmp_path):
    proc = start_cli(tmp_path, "--env", "CartPole-v1", "--total-steps", "1000000",
                     "--out", "run", "--set", "workers=2", "--set", "hidden=8")
    kids, segments = wait_for_workers(proc, 2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)                # the terminal's Ctrl-C: every process
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    ckpt = read_checkpoint(str(tmp_path / "run" / CHECKPOINT))
    assert int(ckpt["collector/steps"]) > 0 and "worker/1/collector/obs" in ckpt
    assert not any(alive(k) for k in kids)
    assert not any(os.path.exists(s) for s in segments)


def test_failing_worker_stops_the_run_with_its_error(tmp_path):
    proc = start_cli(tmp_path, "--env", "test_a3c:A3CFailing-v0", "--total-steps", "1000000",
                     "--out", "run", "--set", "workers=2", "--set", "hidden=8",
                     "--set", "log_every=100")
    kids, segments = wait_for_workers(proc, 2)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "training stopped: worker 1 failed: RuntimeError: the simulator lost its state" in err
    assert "in step" in err and "Traceback (most recent call last)" not in err.split(
        "the worker's traceback")[0]
    assert "--resume" in err
    assert os.path.exists(tmp_path / "run" / CHECKPOINT)
    assert not any(alive(k) for k in kids)
    assert not any(os.path.exists(s) for s in segments)


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-1", "1000000", "2.5", "two"])
def test_bad_worker_counts_are_refused(value):
    with pytest.raises(ConfigError, match="'workers'"):
        config_from(A3CConfig, {"workers": value})


@pytest.mark.parametrize("overrides, match", [
    ({"backend": "threads"}, "accepted: process, ray"),
    ({"ray_address": "10.0.0.1:6379"}, "is for backend=ray"),
    ({"ray_transport": "actor"}, "'ray_transport': 'actor' is for backend=ray; accepted "
                                 "with backend=process: auto"),
    ({"backend": "ray", "ray_transport": "shm"}, "'ray_transport'.*accepted: auto, actor"),
    ({"normalize_obs": "true"}, "normalize_obs"),
    ({"n_envs": "2"}, "n_envs"),
])
def test_bad_settings_are_refused(overrides, match):
    with pytest.raises(ConfigError, match=match):
        config_from(A3CConfig, overrides)


def test_ray_missing_or_unreachable_is_refused_before_anything_starts(tmp_path, monkeypatch):
    cfg = config_from(A3CConfig, {"backend": "ray", "ray_address": "127.0.0.1:1"})
    started = time.monotonic()
    with pytest.raises(ConfigError, match="cannot reach a Ray cluster at 127.0.0.1:1"):
        A3C.check_task("CartPole-v1", cfg)
    assert time.monotonic() - started < 10
    with pytest.raises(ConfigError, match="ray_address"):
        train("a3c", "CartPole-v1", total_steps=100, out=str(tmp_path / "run"),
              overrides={"backend": "ray", "ray_address": "127.0.0.1:1"}, stream=io.StringIO())
    assert not os.path.exists(tmp_path / "run")                     # nothing created
    assert multiprocessing.active_children() == []
    monkeypatch.setitem(sys.modules, "ray", None)                   # import ray fails
    with pytest.raises(ConfigError, match=r"pip install 'minipg\[ray\]'"):
        A3C.check_task("CartPole-v1", config_from(A3CConfig, {"backend": "ray"}))


def test_evaluation_uses_a_plain_collector():
    cfg = config()
    collector = A3C.make_collector("CartPole-v1", cfg, 0, n_envs=1)
    try:
        assert type(collector) is Collector
    finally:
        collector.close()
    workers = A3C.make_collector("CartPole-v1", cfg, 0)
    assert isinstance(workers, A3CWorkers) and workers.group is None
    workers.close()
    assert json.dumps(workers.progress_columns())


# --- the audit rows and the deliberately wrong estimators they reject ------------------------
def test_audit_rows_pass_and_reject_wrong_estimators():
    from minipg.audit import a3c as rows
    from minipg.audit import check_rng
    from minipg.audit.levels import FORMULA_RTOL, relative_error
    from minipg.audit.onpolicy import exact_bed
    from minipg.audit.stats import hotelling_test
    from minipg.autodiff import value_and_grad
    for level, fn in (("gradcheck", rows.a3c_gradcheck), ("formula", rows.a3c_formula),
                      ("exact", rows.a3c_exact)):
        result = fn(False, check_rng(0, "a3c", "test", level))
        assert result.passed, (level, result)
    # formula: the A2C mean in place of the segment's sum is off by the factor m
    rng = np.random.default_rng(5)
    phi, x, theta, w, actions, rewards, term, trunc, boot = rows.segment_batch(rng, "terminal")
    returns = rows.kernel_returns(rewards, term, trunc, boot)
    closed = rows.segment_closed_form(phi, x, theta, w, actions, returns)
    _, grads = value_and_grad(rows.segment_loss_fn(phi, x, actions, returns, returns - x @ w),
                              argnums=(0, 1))(theta, w)
    assert relative_error(list(grads), list(closed)) <= FORMULA_RTOL
    assert relative_error([g / len(actions) for g in grads], list(closed)) > 0.5
    # exact: bootstrapping past the end of an episode is rejected (99.9% Hotelling)
    mdp, policy, theta = exact_bed()
    data = rows.sample_segments(mdp, policy, theta, 20_000, np.random.default_rng(1))
    states, actions, rewards, terminated, next_states, Z = data
    wrong = Z * rows.segment_estimates(mdp, policy, theta, states, actions, rewards, terminated,
                                       next_states, flag_terminations=False)
    assert hotelling_test(wrong, mdp.policy_gradient(policy, theta)).rejected


# --- Ray (last: the module's Ray session lives from its first use to the end) ----------------
@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for this module's Ray tests (its start costs seconds); its
    workers find this directory (the failing task, the test targets) on their path."""
    ray = pytest.importorskip("ray")
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, HERE] + ([saved] if saved else []))
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    yield ray
    ray.shutdown()


def test_ray_every_worker_updates_the_one_shared_state(ray_session):
    """backend=ray, auto transport: worker 0 is on the driver's node and writes the shared
    memory itself; worker 1 believes it is on another node and goes through the parameter
    server, whose update lands in the same arrays.  The server's actor neither unlinks the
    segments when it ends (the driver does, at close) nor leaves them behind."""
    check_every_worker_updates_the_one_shared_state("ray", ray_session)


def keep_ray_handles(monkeypatch, found):
    """Patch A3CWorkers.close to record, just before it runs, the parameter server's state,
    the actor handles of the server and the queues, and the shared segments' paths."""
    import ray
    close = A3CWorkers.close

    def close_keeping_handles(self):
        if self.server is not None:
            found["state"] = ray.get(self.server.state.remote())
            found["handles"] = [self.server] + [channel.inner.actor for channel
                                                in self.commands + [self.reports]]
            found["segments"] = ([] if self.shared is None else
                                 [os.path.join("/dev/shm", name.lstrip("/"))
                                  for name in self.shared.segment_names])
            found["actor_pids"] = ray_actor_pids()
            found["workers"] = self.n
        close(self)
    monkeypatch.setattr(A3CWorkers, "close", close_keeping_handles)


def actor_dies(ray, handle, within):
    """Whether the actor behind ``handle`` answers with an actor error within ``within``
    seconds: ray.kill only asks for the kill, so a call made just after it may still be
    answered by the live actor (seen once in CI under load); ask until it is gone."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            ray.get(handle.__ray_ready__.remote(), timeout=max(0.1, deadline - time.monotonic()))
        except ray.exceptions.RayActorError:
            return True
        except ray.exceptions.GetTimeoutError:
            return False
        time.sleep(0.1)
    return False


def assert_nothing_left(ray, found):
    """After close: the server's and the queues' actors are gone (their handles answer with
    an actor error), so are the actors' processes, and no shared-memory segment remains."""
    assert len(found["handles"]) == found["workers"] + 2    # server, command queues, reports
    for handle in found["handles"]:
        assert actor_dies(ray, handle, within=30), handle
    assert found["segments"] and not any(os.path.exists(s) for s in found["segments"])
    deadline = time.monotonic() + 30
    while any(alive(p) for p in found["actor_pids"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found["actor_pids"] and not any(alive(p) for p in found["actor_pids"])


def test_ray_ctrl_c_and_resume_are_exact_on_both_transports(tmp_path, monkeypatch,
                                                            ray_session):
    """workers=1 on Ray, stopped by Ctrl-C after each first stretch and resumed, switching
    transport at each resume (auto, actor, auto: config.json edited between the runs, as a
    run continued on another machine would be), ends exactly as the uninterrupted run on
    the process backend: the same arithmetic on the same arrays whichever way an update
    travels, and a checkpoint that does not depend on it.  Nothing is left after each."""
    overrides = {"workers": 1, "hidden": (8,), "log_every": 150, "checkpoint_every": 450}
    full = read_checkpoint(os.path.join(train(
        "a3c", "CartPole-v1", total_steps=450, seed=4, out=str(tmp_path / "full"),
        overrides=overrides, stream=io.StringIO()), CHECKPOINT))
    original, run_dir = A3C.learn, str(tmp_path / "ray")
    for i, transport in enumerate(("auto", "actor", "auto")):
        calls, found = [], {}

        def learn_then_interrupt(self, collector):
            out = original(self, collector)
            calls.append(collector.steps)
            if len(calls) == 1 and i < 2:
                os.kill(os.getpid(), signal.SIGINT)
            return out

        monkeypatch.setattr(A3C, "learn", learn_then_interrupt)
        keep_ray_handles(monkeypatch, found)
        if i == 0:
            train("a3c", "CartPole-v1", total_steps=450, seed=4, out=run_dir,
                  stream=io.StringIO(), overrides=dict(overrides, backend="ray"))
        else:
            path = os.path.join(run_dir, "config.json")
            with open(path) as fh:
                saved = json.load(fh)
            saved["config"]["ray_transport"] = transport
            with open(path, "w") as fh:
                json.dump(saved, fh)
            train("a3c", out=run_dir, resume=True, stream=io.StringIO())
        ckpt = read_checkpoint(os.path.join(run_dir, CHECKPOINT))
        assert int(ckpt["collector/steps"]) == calls[-1] >= 150 * (i + 1)   # stopped, ended
        assert (calls[-1] < 450) == (i < 2)
        session_updates = int(found["state"]["worker_updates"].sum())
        assert session_updates > 0
        assert found["state"]["pushes"] == (0 if transport == "auto" else session_updates)
        assert_nothing_left(ray_session, found)
    for key in ("module/policy", "module/value", "optim/optimizer/square_avg",
                "collector/steps", "collector/updates", "worker/0/collector/obs",
                "worker/0/envstate/0/1/return_rms/var"):
        assert np.array_equal(full[key], ckpt[key]), key
    assert str(full["worker/0/rng"]) == str(ckpt["worker/0/rng"])


@pytest.mark.parametrize("transport", ["auto", "actor"])
def test_ray_trains_and_a_failing_worker_stops_the_run(transport, tmp_path, monkeypatch,
                                                       ray_session):
    """Two workers train through the run loop on Ray until worker 1's environment fails.
    auto: the workers (all on this node) update the driver's shared memory and the
    parameter server applies nothing; actor: every update goes through the server, into
    the same shared arrays.  The worker's exception ends train() with its error after a
    checkpoint; the actors, their processes and the shared segments are gone."""
    found = {}
    keep_ray_handles(monkeypatch, found)
    with pytest.raises(WorkerError, match="worker 1 failed: RuntimeError: the simulator lost"):
        train("a3c", "test_a3c:A3CFailing-v0", total_steps=1_000_000, seed=0,
              out=str(tmp_path / "run"), stream=io.StringIO(),
              overrides={"workers": 2, "hidden": (8,), "log_every": 100, "backend": "ray",
                         "ray_transport": transport})
    ckpt = read_checkpoint(str(tmp_path / "run" / CHECKPOINT))
    updates = int(ckpt["collector/updates"])
    assert int(ckpt["collector/steps"]) >= 300 and updates > 0
    assert "worker/1/collector/obs" in ckpt
    assert (found["state"]["worker_updates"] > 0).all()          # both workers updated
    assert found["state"]["pushes"] == (0 if transport == "auto" else
                                        found["state"]["worker_updates"].sum())
    assert ray_session.is_initialized()          # the session was not ours to end
    assert_nothing_left(ray_session, found)


class SynchronousServer:
    """The ParameterServer's pull / push called in-process (ray.get patched to identity),
    logging each call; ``advance`` stands for the other workers' pushes."""

    class Remote:
        def __init__(self, function):
            self.remote = function

    def __init__(self, size):
        self.params, self.T, self.calls = np.zeros(size), 0, []
        self.pull = self.Remote(self._pull)
        self.push = self.Remote(self._push)

    def _pull(self):
        self.calls.append("pull")
        return self.params.copy(), self.T

    def _push(self, rank, grad, steps):
        self.calls.append("push")
        self.T += int(steps)
        return self.params.copy(), self.T

    def advance(self, steps):
        self.params = self.params + 1.0
        self.T += steps


def test_ray_worker_pulls_fresh_globals_after_each_pause(monkeypatch):
    """backend=ray: the parameters and T a worker's last push brought back are stale once
    it has paused (the other workers went on): the first segment after a new command must
    pull (before the fix it pushed from the old theta' and T first)."""
    import queue as queue_module
    import threading
    ray = pytest.importorskip("ray")
    from minipg.algorithms.a3c import WorkerJob, worker_main
    monkeypatch.setattr(ray, "get", lambda value: value)
    cfg = config(hidden=(4,))
    size = make_agent(cfg, obs_dim=4).optimizer.data.size
    server = SynchronousServer(size)
    commands, reports, stop = queue_module.Queue(), queue_module.Queue(), threading.Event()
    job = WorkerJob(A3C, "CartPole-v1", cfg, 0, None, server, [commands], reports, [None])
    thread = threading.Thread(target=worker_main, args=(0, stop, job), daemon=True)
    thread.start()
    try:
        commands.put(20)
        reports.get(timeout=60)
        before = len(server.calls)
        assert server.calls[0] == "pull" and server.T >= 20
        server.advance(100)                           # the other workers, during the pause
        commands.put(server.T + 10)
        reports.get(timeout=60)
        assert server.calls[before] == "pull"
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
