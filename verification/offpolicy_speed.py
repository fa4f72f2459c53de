"""Training speed of minipg's SAC and TD3 against stable-baselines3 on Pendulum-v1 (issue 5).

Both libraries train 20,000 steps with the same hyperparameters, those of the
stable-baselines3 zoo for Pendulum-v1 (minipg's presets are these):

* SAC: learning rate 1e-3 for actor, critics and temperature; batch 256;
  buffer 1e6; 100 random warm-up steps; tau 0.005; gamma 0.99; one gradient
  step per environment step; layers 256-256 ReLU; alpha learned from 1.0
  with target entropy -dim(A);
* TD3: learning rate 1e-3; batch 256; buffer 200,000; 10,000 random warm-up
  steps; gamma 0.98; tau 0.005; Gaussian exploration noise 0.1; one gradient
  step per environment step; policy delay 2, smoothing 0.2 clipped at 0.5;
  layers 400-300 ReLU.

Each contender runs in its own fresh process with the same number of BLAS /
torch threads (``--threads``; the runs alternate contender by contender).
Measured: the wall time of the training loop alone (minipg: the run loop's
own clock, ``wall_s`` of the last progress row, which includes its
checkpoints and per-step checks; SB3: ``model.learn``), the process's CPU
time over the same span (minipg's also includes the final 10-episode
evaluation, under 1% of it), steps per second, and the final deterministic
evaluation (10 episodes, fresh environment seeded seed + 10000).  On a
shared machine the wall time depends on the load; with one thread the CPU
time is close to the wall time the run would take alone, so ratios are
given for both.  ``profile`` runs cProfile on minipg's update loop;
``overhead`` times short runs (tiny and preset networks) alternating the
contenders.

    python verification/offpolicy_speed.py run [--algos sac td3] [--contenders ...]
    python verification/offpolicy_speed.py profile [--algos sac td3]
    python verification/offpolicy_speed.py overhead [--repeats 3]   # tiny vs preset networks
    python verification/offpolicy_speed.py report     # the table of results/offpolicy_speed.md
    python verification/offpolicy_speed.py floor [--algos sac td3] [--repeats 5]
    python verification/offpolicy_speed.py default [--algos sac td3] [--repeats 2]
    python verification/offpolicy_speed.py updates [--algos sac td3] [--thread-counts 1]

``floor`` (issue 13): per update at the presets' sizes, minipg's whole update
(replay sampling included) over the time of the same matrix products alone
(``ProductTrace``: recorded from the dense op during two updates, replayed on
arrays of the same shapes and dtype), in the same process, with the same BLAS
thread count, the two alternating repeat by repeat.  ``default`` (issue 13):
the default command as a user types it, whole process, against SB3 with its
own defaults (verification/whole_process.py).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

STEPS = 20_000
CONTENDERS = ("minipg-float32", "minipg-float64", "sb3")
RESULTS_JSON = "offpolicy_speed.json"


# ----------------------------------------------------------- one run (in a child process)
def child_minipg(algo, dtype, seed, out):
    import csv
    import io

    from minipg.run import train
    cpu = time.process_time()
    run = train(algo, "Pendulum-v1", total_steps=STEPS, seed=seed, out=out, force=True,
                overrides={"dtype": dtype, "eval_episodes": 10}, stream=io.StringIO())
    cpu = time.process_time() - cpu             # includes the 10-episode evaluation (< 1%)
    with open(os.path.join(run, "progress.csv"), newline="") as fh:
        last = list(csv.DictReader(fh))[-1]
    ev = json.load(open(os.path.join(run, "eval.json")))
    return {"wall_s": float(last["wall_s"]), "cpu_s": cpu, "steps": int(last["step"]),
            "return_mean": ev["return_mean"], "return_std": ev["return_std"]}


def child_sb3(algo, seed):
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.noise import NormalActionNoise
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    env = gym.make("Pendulum-v1")
    if algo == "sac":
        model = SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed, device="cpu")
    else:
        model = TD3("MlpPolicy", env, learning_rate=1e-3, gamma=0.98, buffer_size=200_000,
                    learning_starts=10_000, train_freq=1, gradient_steps=1,
                    action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
                    policy_kwargs=dict(net_arch=[400, 300]), seed=seed, device="cpu")
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(STEPS)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    eval_env = gym.make("Pendulum-v1")
    eval_env.reset(seed=seed + 10_000)
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return {"wall_s": wall, "cpu_s": cpu, "steps": STEPS, "return_mean": float(mean),
            "return_std": float(std), "torch": torch.__version__}


def run_child(args):
    if args.contender == "sb3":
        result = child_sb3(args.algo, args.seed)
    else:
        dtype = args.contender.split("-")[1]
        out = os.path.join(args.out, f"{args.algo}-{dtype}-{args.seed}")
        result = child_minipg(args.algo, dtype, args.seed, out)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------- the driver
def cmd_run(args):
    path = os.path.join(args.out, RESULTS_JSON)
    os.makedirs(args.out, exist_ok=True)
    results = json.load(open(path)) if os.path.exists(path) else []
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    for algo in args.algos:
        for contender in args.contenders:
            if contender == "sb3":
                try:
                    import stable_baselines3  # noqa: F401
                except ImportError:
                    print("stable-baselines3 is not installed: skipped", flush=True)
                    continue
            cmd = [sys.executable, __file__, "child", "--algo", algo, "--contender", contender,
                   "--seed", str(args.seed), "--out", args.out]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"{algo} {contender} failed:\n{proc.stderr[-2000:]}", flush=True)
                continue
            result = json.loads(lines[-1][len("RESULT "):])
            result.update({"algo": algo, "contender": contender, "seed": args.seed,
                           "threads": args.threads, "load_avg": os.getloadavg()[0],
                           "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
            results.append(result)
            with open(path, "w") as fh:
                json.dump(results, fh, indent=1)
            print(f"{algo} {contender}: {result['wall_s']:.0f} s, "
                  f"{result['steps'] / result['wall_s']:.0f} steps/s, return "
                  f"{result['return_mean']:.1f}", flush=True)


def cmd_profile(args):
    """cProfile of minipg's learn() after the warm-up (float32 preset networks)."""
    import cProfile
    import io
    import pstats

    from minipg.algorithms import get
    from minipg.algorithms.base import config_from
    from minipg.envs.vector import Collector, make_vector_env
    out = {}
    for algo in args.algos:
        cls = get(algo)
        overrides = dict(cls.presets["Pendulum-v1"])
        overrides.update({"dtype": "float32", "learning_starts": 300})
        config = config_from(cls.Config, overrides)
        envs = make_vector_env("Pendulum-v1", 1)
        agent = cls(config, envs.single_observation_space, envs.single_action_space, 0)
        collector = Collector(envs, seed=0, dtype=config.dtype)
        for _ in range(config.learning_starts + 20):
            agent.learn(collector)
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        for _ in range(args.profile_steps):
            agent.learn(collector)
        profiler.disable()
        per_step = (time.perf_counter() - start) / args.profile_steps
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(18)
        out[algo] = {"ms_per_step_profiled": per_step * 1e3, "table": stream.getvalue()}
        print(f"{algo}: {per_step * 1e3:.1f} ms per step under the profiler", flush=True)
        print(stream.getvalue(), flush=True)
    with open(os.path.join(args.out, "offpolicy_profile.json"), "w") as fh:
        json.dump(out, fh, indent=1)


def _ms_per_step(contender, algo, hidden, steps, warm):
    """CPU ms per step of ``steps`` steps after ``warm`` (one update per step), this process."""
    if contender == "sb3":
        import numpy as np
        import torch
        from stable_baselines3 import SAC, TD3
        from stable_baselines3.common.noise import NormalActionNoise
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        kw = dict(learning_rate=1e-3, learning_starts=warm, seed=0, device="cpu",
                  policy_kwargs=dict(net_arch=list(hidden)))
        if algo == "sac":
            model = SAC("MlpPolicy", "Pendulum-v1", **kw)
        else:
            model = TD3("MlpPolicy", "Pendulum-v1", gamma=0.98, buffer_size=200_000,
                        action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)), **kw)
        model.learn(warm + 10)
        start = time.process_time()
        model.learn(steps, reset_num_timesteps=False)
        return (time.process_time() - start) / steps * 1e3
    from minipg.algorithms import get
    from minipg.algorithms.base import config_from
    from minipg.envs.vector import Collector, make_vector_env
    cls = get(algo)
    overrides = dict(cls.presets["Pendulum-v1"])
    overrides.update({"dtype": contender.split("-")[1], "learning_starts": warm,
                      "hidden": tuple(hidden)})
    config = config_from(cls.Config, overrides)
    envs = make_vector_env("Pendulum-v1", 1)
    agent = cls(config, envs.single_observation_space, envs.single_action_space, 0)
    collector = Collector(envs, seed=0, dtype=config.dtype)
    for _ in range(warm + 10):
        agent.learn(collector)
    start = time.process_time()
    for _ in range(steps):
        agent.learn(collector)
    return (time.process_time() - start) / steps * 1e3


def cmd_overhead(args):
    """CPU time per step with tiny (32-32) and the preset networks, contenders alternating."""
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    rows = []
    for algo in args.algos:
        for hidden in ("32,32", "256,256" if algo == "sac" else "400,300"):
            times = {c: [] for c in args.contenders}
            for _ in range(args.repeats):
                for contender in args.contenders:
                    cmd = [sys.executable, __file__, "overhead-child", "--algo", algo,
                           "--contender", contender, "--hidden", hidden,
                           "--profile-steps", str(args.profile_steps)]
                    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                    if lines:
                        times[contender].append(float(lines[-1].split()[1]))
                    else:
                        print(proc.stderr[-1500:], flush=True)
            for contender, ts in times.items():
                if ts:
                    ts.sort()
                    rows.append((algo, hidden, contender, ts[len(ts) // 2], ts))
                    print(f"{algo} {hidden} {contender}: median {ts[len(ts) // 2]:.2f} CPU ms/step "
                          f"{[round(t, 2) for t in ts]}", flush=True)
    with open(os.path.join(args.out, "offpolicy_overhead.json"), "w") as fh:
        json.dump(rows, fh, indent=1)


def overhead_child(args):
    hidden = [int(h) for h in args.hidden.split(",")]
    ms = _ms_per_step(args.contender, args.algo, hidden, args.profile_steps, warm=300)
    print(f"RESULT {ms}", flush=True)


# ------------------------------------------------- per update: minipg over its products
class ProductTrace:
    """The matrix products of the dense layers, recorded from the Dense op while active.

    Every layer's products go through ``minipg.autodiff.ops.Dense``: the forward
    x W, and in the backward pass dX = G W^T and dW = X^T G where the op computes
    them (``needs``).  Inside ``with ProductTrace() as trace:`` its ``forward``
    and ``vjp`` are wrapped to note each product's operand shapes and dtype;
    ``replay`` then builds C-contiguous operands of those shapes (transposed
    operands as transposed views, as the op passes them) and output buffers,
    and returns a function doing exactly those products, nothing else.  A
    one-output layer's dX (G W^T with an inner dimension of 1) is an outer
    product, which the op forms elementwise; the replay does the same (a
    matmul would be slower and flatter the ratio).  Bias sums, activations and
    everything else are not products and are left out: they are the overhead.
    """

    def __enter__(self):
        from minipg.autodiff import ops
        self.ops, self.products = ops, []
        self._forward, self._vjp = ops.Dense.__dict__["forward"], ops.Dense.__dict__["vjp"]
        forward, vjp, products = self._forward.__func__, self._vjp.__func__, self.products

        def traced_forward(x, W, b, *args, **kwargs):
            products.append(("x W", x.shape, W.shape, W.dtype))
            return forward(x, W, b, *args, **kwargs)

        def traced_vjp(g, saved, needs):
            x, W = saved[0], saved[1]
            if needs[0]:
                products.append(("G W^T", g.shape, W.shape, W.dtype))
            if needs[1]:
                products.append(("X^T G", x.shape, g.shape, W.dtype))
            return vjp(g, saved, needs)

        ops.Dense.forward = staticmethod(traced_forward)
        ops.Dense.vjp = staticmethod(traced_vjp)
        return self

    def __exit__(self, *exc):
        self.ops.Dense.forward, self.ops.Dense.vjp = self._forward, self._vjp
        return False

    def replay(self, products=None, seed=0, shared=True):
        import numpy as np
        rng = np.random.default_rng(seed)
        calls, arrays = [], {}
        self.flops = 0

        def arr(shape, dtype, role="operand"):
            # shared (the floor): one array per shape and dtype, shared by every product
            # that has it: the smallest working set, so caches are as warm as they can be
            # (the strictest floor).  shared=False: a new array for every operand and
            # output (the largest working set; the update's own products share some
            # operands, a layer's input and weights between its forward and backward)
            key = (role, tuple(shape), np.dtype(dtype).str) if shared else len(arrays)
            if key not in arrays:
                arrays[key] = rng.standard_normal(shape).astype(dtype)
            return arrays[key]

        for kind, shape_a, shape_b, dtype in (self.products if products is None else products):
            if kind == "x W":
                a, b = arr(shape_a, dtype), arr(shape_b, dtype)
            elif kind == "G W^T":
                a, b = arr(shape_a, dtype), arr(shape_b, dtype).swapaxes(-1, -2)   # W^T: a view
            else:
                a, b = arr(shape_a, dtype).swapaxes(-1, -2), arr(shape_b, dtype)   # X^T: a view
            if kind == "G W^T" and b.shape[-2] == 1:                    # outer product
                fn = np.multiply
                out_shape = np.broadcast_shapes(a.shape, b.shape)
            else:
                fn = np.matmul
                out_shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2],
                                                                               b.shape[-1])
            out = arr(out_shape, dtype, "output")    # never an operand (no overlap copies)
            self.flops += (2 * int(np.prod(out_shape)) * a.shape[-1] if fn is np.matmul
                           else int(np.prod(out_shape)))
            calls.append((fn, a, b, out))

        def products_only():
            for fn, a, b, out in calls:
                fn(a, b, out=out)
        return products_only


def _update_agent(algo, dtype, seed=0, warm=600):
    """An agent of ``algo``'s Pendulum-v1 preset, its replay buffer filled by ``warm``
    warm-up steps and a few updates run (so every kernel is compiled)."""
    from minipg.algorithms import get
    from minipg.algorithms.base import config_from
    from minipg.envs.vector import Collector, make_vector_env
    cls = get(algo)
    overrides = dict(cls.presets["Pendulum-v1"])
    overrides.update({"learning_starts": warm - 20, "dtype": dtype or overrides.get("dtype",
                                                                                  "float64")})
    config = config_from(cls.Config, overrides)
    envs = make_vector_env("Pendulum-v1", 1)
    agent = cls(config, envs.single_observation_space, envs.single_action_space, seed)
    collector = Collector(envs, seed=seed, dtype=config.dtype)
    for _ in range(warm):
        agent.learn(collector)
    return agent


def cmd_floor(args):
    """Per update, at the presets' sizes: minipg's whole update (replay sampling included)
    over the time of the same matrix products alone, in the same process, alternating
    update and products, 1 and 2 BLAS threads."""
    import statistics

    from minipg.threads import limit
    rows = []
    for algo in args.algos:
        agent = _update_agent(algo, args.dtype)
        cfg = agent.config
        n = args.updates - args.updates % 2                # TD3: whole actor/critic pairs

        def updates():
            for _ in range(n):
                agent.update(agent.buffer.sample(cfg.batch_size, agent.rng))
                agent.updates += 1
        with ProductTrace() as trace:
            for _ in range(2):                             # one critic-only, one full (TD3)
                agent.update(agent.buffer.sample(cfg.batch_size, agent.rng))
                agent.updates += 1
        per_update = [p for p in trace.products]
        products = trace.replay()
        distinct_products = trace.replay(shared=False)

        def floor(replay=products):
            for _ in range(n // 2):
                replay()
        flops = trace.flops / 2
        for threads in args.thread_counts:
            ratios, t_upd, t_floor, cpu_ratios, distinct_ratios = [], [], [], [], []
            with limit(threads):
                updates(), floor(), floor(distinct_products)        # warm
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                for _ in range(args.repeats):
                    t0, c0 = time.perf_counter(), time.process_time()
                    updates()
                    t1, c1 = time.perf_counter(), time.process_time()
                    floor()
                    t2, c2 = time.perf_counter(), time.process_time()
                    floor(distinct_products)
                    c3 = time.process_time()
                    t_upd.append((t1 - t0) / n)
                    t_floor.append((t2 - t1) / n)
                    ratios.append((t1 - t0) / (t2 - t1))
                    cpu_ratios.append((c1 - c0) / (c2 - c1))
                    distinct_ratios.append((c1 - c0) / (c3 - c2))
                faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (
                    args.repeats * n)
            row = {"algo": algo, "dtype": str(agent.dtype), "threads": threads,
                   "hidden": list(cfg.hidden), "batch": cfg.batch_size,
                   "products_per_update": len(per_update) / 2,
                   "gflop_per_update": float(flops) / 1e9,
                   "update_ms": statistics.median(t_upd) * 1e3,
                   "products_ms": statistics.median(t_floor) * 1e3,
                   "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
                   "ratio_max": max(ratios), "ratios": ratios, "repeats": args.repeats,
                   "updates_per_repeat": n, "load_avg": os.getloadavg()[0],
                   "page_faults_per_update": faults, "cpu_ratios": cpu_ratios,
                   "distinct_cpu_ratios": distinct_ratios}
            rows.append(row)
            print(f"{algo} {row['dtype']} {threads} thread(s): update {row['update_ms']:.2f} ms, "
                  f"products {row['products_ms']:.2f} ms, ratio {row['ratio_median']:.2f} "
                  f"[{row['ratio_min']:.2f}, {row['ratio_max']:.2f}]; CPU-time ratio "
                  f"{statistics.median(cpu_ratios):.2f}, over distinct operands "
                  f"{statistics.median(distinct_ratios):.2f} ({len(per_update) / 2:g} "
                  f"products, {row['gflop_per_update']:.3f} GFLOP per update; {faults:.0f} page "
                  f"faults per update; load {row['load_avg']:.1f})", flush=True)
        if args.show_products:
            for p in per_update:
                print("   ", p, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "offpolicy_floor.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    import whole_process as wp
    lines = [
        f"Command: `python verification/offpolicy_speed.py floor --algos {' '.join(args.algos)} "
        f"--repeats {args.repeats} --updates {args.updates} --thread-counts "
        f"{' '.join(map(str, args.thread_counts))}`. One process per run: the preset's agent "
        "(Pendulum-v1, batch 256), its replay buffer filled by 600 warm-up steps; then, with "
        "the BLAS pool on 1 or 2 threads (threadpoolctl), repeat by repeat: N updates "
        "(`agent.update(buffer.sample(...))`, replay sampling included), then the same "
        "updates' matrix products alone (ProductTrace: recorded from the dense op during two "
        "updates, replayed on arrays of the same shapes and dtype, one array per shape so "
        "caches are as warm as they can be, outputs preallocated). Ratio: update time over "
        "products time, median [min, max] over repeats (goal <= 1.3). CPU-time ratio: the "
        "same from the process's CPU time (time.process_time), which on a shared machine "
        "leaves out the time other processes held the core. Over distinct operands (not the "
        "goal's floor, a bound from the other side): the update's CPU time over the same "
        "products replayed on a new array for every operand and output, the largest "
        "working set (the update's own products share some operands).", "",
        "| algorithm | dtype | threads | products per update | GFLOP per update | update ms "
        "| products ms | ratio | CPU-time ratio | CPU-time ratio over distinct operands "
        "| page faults per update | load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['algo']} | {row['dtype']} | {row['threads']} | "
                     f"{row['products_per_update']:g} | {row['gflop_per_update']:.3f} | "
                     f"{row['update_ms']:.2f} | {row['products_ms']:.2f} | "
                     f"{wp.summary(row['ratios'])} | {wp.summary(row['cpu_ratios'])} | "
                     f"{wp.summary(row['distinct_cpu_ratios'])} | "
                     f"{row['page_faults_per_update']:.0f} | {row['load_avg']:.1f} |")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                        "offpolicy_speed.md")
    wp.write_section(path, "Per update: minipg over its own matrix products (issue 13)",
                     "\n".join(lines))
    print("\n".join(lines))


def cmd_updates(args):
    """minipg's update against SB3's gradient step, in one process, alternating: the same
    preset networks and batch, the same thread count for NumPy's BLAS and torch."""
    import statistics

    import numpy as np
    import torch
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    import whole_process as wp
    from minipg.threads import limit
    rows = []
    for algo in args.algos:
        agent = _update_agent(algo, None)
        cfg = agent.config
        if algo == "sac":
            model = SAC("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, learning_starts=580,
                        seed=0, device="cpu")
        else:
            model = TD3("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, gamma=0.98,
                        buffer_size=200_000, learning_starts=580,
                        action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
                        policy_kwargs=dict(net_arch=[400, 300]), seed=0, device="cpu")
        model.learn(600)                          # buffer filled, a few steps trained
        n = args.updates - args.updates % 2

        def mine():
            for _ in range(n):
                agent.update(agent.buffer.sample(cfg.batch_size, agent.rng))
                agent.updates += 1

        def theirs():
            model.train(gradient_steps=n, batch_size=256)
        for threads in args.thread_counts:
            torch.set_num_threads(threads)
            ratios, t_mine, t_theirs = [], [], []
            with limit(threads):
                mine(), theirs()                   # warm
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    mine()
                    t1 = time.perf_counter()
                    theirs()
                    t2 = time.perf_counter()
                    t_mine.append((t1 - t0) / n)
                    t_theirs.append((t2 - t1) / n)
                    ratios.append((t1 - t0) / (t2 - t1))
            rows.append((algo, threads, statistics.median(t_mine) * 1e3,
                         statistics.median(t_theirs) * 1e3, ratios, os.getloadavg()[0]))
            print(f"{algo} {threads} thread(s): minipg {rows[-1][2]:.2f} ms, SB3 "
                  f"{rows[-1][3]:.2f} ms per update, ratio {wp.summary(ratios)}", flush=True)
    lines = [f"Command: `python verification/offpolicy_speed.py updates --algos "
             f"{' '.join(args.algos)} --repeats {args.repeats} --updates {args.updates} "
             f"--thread-counts {' '.join(map(str, args.thread_counts))}`. One process: "
             "minipg's preset agent (float32) and SB3's model with the zoo's hyperparameters "
             "(float32), both with a replay buffer filled by 600 steps; repeat by repeat, N "
             "minipg updates (`agent.update(buffer.sample(...))`) then SB3's `model.train("
             "gradient_steps=N, batch_size=256)`, with NumPy's BLAS and torch on the same "
             "thread count. A tuned configuration (threads set for both), not the default "
             "command; it compares the updates alone, under the same load.", "",
             "| algorithm | threads | minipg ms per update | SB3 ms per update | ratio "
             "minipg / SB3 | load average |", "|---|---|---|---|---|---|"]
    for algo, threads, a, b, ratios, load in rows:
        lines.append(f"| {algo} | {threads} | {a:.2f} | {b:.2f} | {wp.summary(ratios)} | "
                     f"{load:.1f} |")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                        "offpolicy_speed.md")
    wp.write_section(path, "Per update: minipg against SB3, same process (issue 13)",
                     "\n".join(lines))
    print("\n".join(lines))


def threads_seen(config):
    """config.json's thread count with what the default rule saw (``threads_basis``)."""
    seen = config.get("threads_basis") or {}
    if "busy_cores" in seen:
        return (f"{config['threads']} (busy {seen['busy_cores']:.2f} of {seen['cores']} cores, "
                f"{seen['source']})")
    return f"{config['threads']} ({seen.get('rule', 'not recorded')})"


def cmd_default(args):
    """The default command as a user types it (``minipg train sac --env Pendulum-v1``),
    whole process, against SB3 with its own defaults (verification/whole_process.py),
    alternating; a section of results/offpolicy_speed.md."""
    import statistics
    import tempfile

    import whole_process as wp
    tmp = tempfile.mkdtemp(prefix="minipg-offpolicy-default-")
    header = [
        f"Command: `python verification/offpolicy_speed.py default --algos ALGO --repeats "
        f"{args.repeats} --seed {args.seed}`. Each repeat "
        "runs, as separate processes with no thread variable in the environment, "
        "alternating (order reversed on odd repeats), after a short untimed minipg run "
        "(numba's kernels compiled and cached):", "",
        "* minipg: `python -m minipg train ALGO --env Pendulum-v1 --seed S --out DIR "
        "--force` (the preset: 20k steps, float32; BLAS threads by the default rule, as "
        "config.json records);",
        "* SB3: `python verification/whole_process.py sb3 ALGO Pendulum-v1 --seed S`: the "
        "zoo's hyperparameters (the same as minipg's presets), SB3's and torch's own "
        "defaults otherwise (float32, torch's default thread count); train, then 10 "
        "deterministic episodes as minipg's final evaluation.", "",
        "Wall: the whole process; CPU: user + system (wait4); loop: the training loop "
        "alone (minipg's progress.csv wall_s, SB3's learn()).", "",
        "| algorithm | repeat | minipg threads (what the rule saw) | minipg wall s | "
        "minipg CPU s | SB3 wall s | SB3 CPU s | wall ratio | loop ratio | minipg final return | SB3 (its RESULT line) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for algo in args.algos:                 # untimed warm-up: numba's kernels compiled, cached
        wp.time_process(wp.minipg_command(algo, "Pendulum-v1", 0, os.path.join(tmp, "warm"),
                                          "--total-steps", "400", "--set",
                                          "learning_starts=300"), wp.user_env())
    for algo in args.algos:
        def out_dir(r, algo=algo):
            return os.path.join(tmp, f"{algo}-{r}")
        contenders = {
            "minipg": lambda r, algo=algo: (wp.minipg_command(algo, "Pendulum-v1", args.seed + r,
                                                              out_dir(r)), wp.user_env()),
            "SB3": lambda r, algo=algo: (wp.sb3_command(algo, "Pendulum-v1", args.seed + r),
                                         wp.user_env())}
        results = wp.alternate(contenders, args.repeats)
        walls, loops, lines = [], [], list(header)
        for r, (a, b) in enumerate(zip(results["minipg"], results["SB3"])):
            config = json.load(open(os.path.join(out_dir(r), "config.json")))
            final = json.load(open(os.path.join(out_dir(r), "eval.json")))["return_mean"]
            sb3_line = [ln for ln in b["tail"].splitlines() if ln.startswith("RESULT")]
            walls.append(a["wall_s"] / b["wall_s"])
            loops.append(wp.loop_seconds(a, out_dir(r)) / wp.loop_seconds(b))
            lines.append(f"| {algo} | {r} | {threads_seen(config)} | {a['wall_s']:.1f} | "
                         f"{a['cpu_s']:.1f} | {b['wall_s']:.1f} | {b['cpu_s']:.1f} | "
                         f"{walls[-1]:.3f} | {loops[-1]:.3f} | {final:.1f} | "
                         f"{sb3_line[-1].replace('RESULT ', '') if sb3_line else '-'} |")
        loads = [x["load_avg"] for x in results["minipg"] + results["SB3"]]
        lines += ["", f"{algo}: wall ratio minipg / SB3 {wp.summary(walls)} (goal <= 0.6), "
                  f"training-loop ratio {wp.summary(loops)}, median [min, max] over "
                  f"{len(walls)} repeats; load average at the ends of the runs "
                  f"{statistics.median(loads):.1f} [{min(loads):.1f}, {max(loads):.1f}] (on "
                  "this 2-core machine, a load near 2 or above means other work shared the "
                  "cores); the ratios come from alternated runs."]
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                            "offpolicy_speed.md")
        # one section per algorithm, written when it is done (a cut-short session keeps it)
        wp.write_section(path, f"The default command, whole process: {algo} (issue 13)",
                         "\n".join(lines))
        print("\n".join(lines), flush=True)


def cmd_report(args):
    import statistics
    results = json.load(open(os.path.join(args.out, RESULTS_JSON)))
    lines = ["# Off-policy training speed: minipg vs stable-baselines3 (Pendulum-v1, 20k steps)",
             "", "Command: `python verification/offpolicy_speed.py run` then `... report` "
             "(each contender a fresh process, runs in sequence). Hyperparameters: the "
             "stable-baselines3 zoo's Pendulum-v1 (= minipg's presets); see the script's "
             "docstring. Wall: the training loop only. Return: deterministic, 10 episodes.", "",
             "| algorithm | contender | threads | wall s | CPU s | steps/s (wall) | "
             "final return | load avg at end | finished |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cpu = f"{r['cpu_s']:.0f}" if "cpu_s" in r else "-"
        lines.append(f"| {r['algo']} | {r['contender']} | {r['threads']} | {r['wall_s']:.0f} | "
                     f"{cpu} | {r['steps'] / r['wall_s']:.0f} | {r['return_mean']:.1f} +- "
                     f"{r['return_std']:.1f} | {r['load_avg']:.1f} | {r['finished']} |")
    lines += ["", "Ratios minipg / SB3, medians over the runs listed with the same number of "
              "threads (goal: wall-time ratio <= 0.5):", "",
              "| algorithm | threads | minipg | runs (minipg, SB3) | wall-time ratio | "
              "CPU-time ratio |", "|---|---|---|---|---|---|"]
    for algo in sorted({r["algo"] for r in results}):
        for threads in sorted({r["threads"] for r in results}):
            same = [r for r in results if r["algo"] == algo and r["threads"] == threads]
            sb3 = [r for r in same if r["contender"] == "sb3"]
            for contender in ("minipg-float32", "minipg-float64"):
                mine = [r for r in same if r["contender"] == contender]
                if not (sb3 and mine):
                    continue
                ratios = [statistics.median(r[key] for r in mine)
                          / statistics.median(r[key] for r in sb3)
                          for key in ("wall_s", "cpu_s")]
                lines.append(f"| {algo} | {threads} | {contender} | {len(mine)}, {len(sb3)} | "
                             f"{ratios[0]:.2f} | {ratios[1]:.2f} |")
    print("\n".join(lines))          # pasted into results/offpolicy_speed.md with the analysis


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "child", "profile", "overhead", "overhead-child",
                                       "floor", "default", "updates", "report"))
    p.add_argument("--algos", nargs="+", default=["sac", "td3"])
    p.add_argument("--algo")
    p.add_argument("--contenders", nargs="+", default=list(CONTENDERS))
    p.add_argument("--contender")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile-steps", type=int, default=300)
    p.add_argument("--hidden", default="32,32")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="runs/verification/offpolicy_speed")
    p.add_argument("--dtype", default=None, help="floor: the dtype (default: the preset's)")
    p.add_argument("--updates", type=int, default=40, help="floor: updates per timed repeat")
    p.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2])
    p.add_argument("--show-products", action="store_true")
    args = p.parse_args()
    {"run": cmd_run, "child": run_child, "profile": cmd_profile, "overhead": cmd_overhead,
     "overhead-child": overhead_child, "floor": cmd_floor, "default": cmd_default,
     "updates": cmd_updates,
     "report": cmd_report}[args.command](args)


if __name__ == "__main__":
    main()
