"""Speed: minipg PPO against stable-baselines3 PPO on CartPole-v1, same hyperparameters.

The rl-baselines3-zoo CartPole-v1 preset for both (minipg's `ppo` preset for
CartPole-v1 is the same): 8 environments, n_steps 32, minibatches of 256,
20 epochs, gamma 0.98, GAE lambda 0.8, Adam lr 1e-3 and clip range 0.2 both
annealed linearly to 0, entropy coefficient 0, value coefficient 0.5 on the
squared error (SB3's vf_coef; minipg's value_coef has the same meaning),
gradient clipping at global norm 0.5, 64-64 tanh networks, orthogonal
initialisation, 100k steps.

The contenders run alternately, repeat by repeat, in one process (after one
untimed warm-up run each, so numba's and torch's one-time start-up costs are
not counted for either), and the table reports medians:

* minipg float32 (the precision SB3 trains in) and float64 (minipg's
  default), NumPy's BLAS on one thread;
* SB3 with torch on 1 thread and on 2 threads (the machine has 2 cores).

"train s" is the training wall time (minipg: the run loop's own clock,
progress.csv's last wall_s; SB3: model.learn), steps/s = 100k / train s,
"total s" adds building the environments and the final evaluation (10
episodes, deterministic policy, one environment), whose mean return is
"final return".  Ratios are minipg / SB3 from the same repeats.

    python verification/ppo_speed.py [--steps 100000] [--repeats 3] [--extra-repeats 1]
        [--seed 0] [--profile]        # --profile: also cProfile one minipg float32 run
    python verification/ppo_speed.py --default-command [--repeats 3] [--seed 0]

``--default-command`` (issue 13) times instead the command a user types, as
whole processes with no thread variable set, against SB3 with its own
defaults (verification/whole_process.py), and writes that section of the
results file.

Writes verification/results/ppo_speed.md.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # NumPy's BLAS on one thread (set before import)

import argparse  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ENV_ID = "CartPole-v1"


def run_minipg(steps, seed, dtype, profile_to=None):
    from minipg.run import train
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        if profile_to is not None:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        train("ppo", ENV_ID, total_steps=steps, seed=seed, out=out, force=True,
              overrides={"dtype": dtype, "log_every": steps}, stream=io.StringIO())
        if profile_to is not None:
            prof.disable()
            prof.dump_stats(profile_to)
        total = time.perf_counter() - start
        with open(os.path.join(out, "progress.csv"), newline="") as fh:
            train_s = float(list(csv.DictReader(fh))[-1]["wall_s"])
        final = json.load(open(os.path.join(out, "eval.json")))["return_mean"]
    return {"train_s": train_s, "total_s": total, "final_return": final}


def run_sb3(steps, seed, threads):
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    torch.set_num_threads(threads)

    def linear(initial):
        return lambda progress_remaining: progress_remaining * initial   # rl-zoo's lin_

    start = time.perf_counter()
    env = make_vec_env(ENV_ID, n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98,
                gae_lambda=0.8, learning_rate=linear(1e-3), clip_range=linear(0.2),
                ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, seed=seed, device="cpu",
                verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_s = time.perf_counter() - t0
    eval_env = make_vec_env(ENV_ID, n_envs=1, seed=seed + 10_000)
    final, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    total = time.perf_counter() - start
    return {"train_s": train_s, "total_s": total, "final_return": float(final)}


# (label, file suffix, function name) of the calls whose cumulative time the summary reports
PROFILE_GROUPS = [
    ("whole train() call", "minipg/run.py", "train"),
    ("  PPO.learn (collection + update)", "minipg/algorithms/ppo.py", "learn"),
    ("    rollout collection (RolloutBuffer.collect)", "minipg/buffers/rollout.py", "collect"),
    ("      acting: policy + value forward, sampling",
     "minipg/algorithms/onpolicy_common.py", "rollout_step"),
    ("      environment steps, training and evaluation (Collector.step)",
     "minipg/envs/vector.py", "step"),
    ("    update: networks' forward on the tape", "minipg/algorithms/onpolicy_common.py",
     "distribution_and_values"),
    ("    update: ppo_objective (J^CLIP', checks, diagnostics)", "minipg/estimators/ppo.py",
     "ppo_objective"),
    ("    update: backward pass", "minipg/autodiff/tensor.py", "backward"),
    ("    update: gradient clip + Adam", "minipg/algorithms/onpolicy_common.py",
     "clip_and_step"),
    ("  final evaluation (10 episodes, one env)", "minipg/run.py", "evaluate_agent"),
]

WHAT_WAS_DONE = """\
What was done about it (each step kept the numbers the same unless said):
* NumPy's BLAS on one thread (OPENBLAS_NUM_THREADS=1, as `minipg bench` and the tests
  do): with the default thread pool on this shared 2-core machine the 256x64 matrix
  products of the update were ~10x slower (BLAS threads spinning);
* float32 for the benchmark (SB3 trains in float32): NumPy's tanh in float64 is
  ~4x slower than in float32 here, and tanh is most of the forward arithmetic;
* CartPole's environment stepping: gymnasium's NumPy-vectorized CartPole (one NumPy
  expression for all 8 carts) behind a SAME_STEP adapter (minipg.envs.vector.
  SameStepCartPole: exact final observations and flags, tested transition by
  transition against gym.make's CartPole), instead of a SyncVectorEnv of 8
  gym.make copies with their wrapper stacks: ~0.65x the time per vector step;
* the entropy is computed off the tape when its coefficient is 0 (this preset):
  the same gradient (0 x grad H), four tape nodes fewer per minibatch;
* (issue 4, second round, measured with a per-part timer of one 256-sample minibatch)
  the log-probabilities of actions the agent drew itself skip the action checks
  (`log_prob(actions, validate=False)`, acting and update): the checks cost more than
  the log-probability (~16 us a call, 20k calls a run);
* the log-softmax over the last axis is one numba pass per row, forward and vjp
  (minipg.kernels.softmax): NumPy's max/sum over a 2-wide axis took ~20 us a call;
* the dense layer applies tanh/relu itself (`ops.dense(x, W, b, "tanh")`, used by
  every MLP): one tape node per layer instead of two, bit-identical results;
* the dense vjp sums the bias gradient as ones @ g (BLAS; 3x faster than a reduction
  over rows at 256 x 64) and forms an outer product directly when the layer has one
  output (the value head: matmul's k = 1 path took 16 us);
* the gather vjp (log pi(a|s) picks one entry per row) scatters with put_along_axis
  instead of add.at;
* what is left: the 64x64 matrix products run at the BLAS peak (about 18 us each
  at 256 rows in float32, 6 per minibatch forward and backward: ~1.0 s of a run);
  the rest is NumPy's per-call cost on small arrays and the tape's bookkeeping."""


def profile_groups(path):
    stats = pstats.Stats(path).stats
    rows = []
    for label, suffix, func in PROFILE_GROUPS:
        cum = sum(v[3] for (fname, _, name), v in stats.items()
                  if fname.endswith(suffix) and name == func)
        rows.append((label, cum))
    total = rows[0][1]
    return "\n".join(f"{label:<66} {cum:7.2f} s  {100 * cum / total:5.1f} %"
                     for label, cum in rows)


def profile_summary(path, top=18):
    stream = io.StringIO()
    stats = pstats.Stats(path, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return stream.getvalue()


def default_command(args):
    """The default command as a user types it, whole process, against SB3 with its own
    defaults (verification/whole_process.py), alternating; a section of ppo_speed.md."""
    import whole_process as wp
    tmp = tempfile.mkdtemp(prefix="minipg-ppo-default-")

    def out_dir(r):
        return os.path.join(tmp, f"ppo-{r}")

    sb3_env = wp.user_env()
    if args.sb3_threads:                 # a tuned SB3: torch on this many threads
        sb3_env["OMP_NUM_THREADS"] = str(args.sb3_threads)
    contenders = {
        "minipg": lambda r: (wp.minipg_command("ppo", ENV_ID, args.seed + r, out_dir(r)),
                             wp.user_env()),
        "SB3": lambda r: (wp.sb3_command("ppo", ENV_ID, args.seed + r), sb3_env)}
    # untimed warm-up of each (the disk cache holds the libraries after it; numba's
    # compiled kernels are cached on disk by the first minipg run anyway)
    wp.time_process(wp.minipg_command("ppo", ENV_ID, 0, out_dir("warm"), "--total-steps",
                                      "2048"), wp.user_env())
    wp.time_process(wp.sb3_command("ppo", ENV_ID, 0) + ["--steps", "2048"], sb3_env)
    results = wp.alternate(contenders, args.repeats)
    mine, sb3 = results["minipg"], results["SB3"]
    config = json.load(open(os.path.join(out_dir(0), "config.json")))
    rows = []
    for r, (a, b) in enumerate(zip(mine, sb3)):
        a_loop, b_loop = wp.loop_seconds(a, out_dir(r)), wp.loop_seconds(b)
        final = json.load(open(os.path.join(out_dir(r), "eval.json")))["return_mean"]
        sb3_final = [ln for ln in b["tail"].splitlines() if ln.startswith("RESULT")]
        rows.append((r, a, b, a_loop, b_loop, final, sb3_final[-1] if sb3_final else "-"))
    wall = [a["wall_s"] / b["wall_s"] for _, a, b, *_ in rows]
    loop = [row[3] / row[4] for row in rows]
    cpu_over_wall = [a["cpu_s"] / a["wall_s"] for _, a, *_ in rows]
    lines = [
        f"Command: `python verification/ppo_speed.py --default-command --repeats "
        f"{args.repeats} --seed {args.seed}"
        f"{f' --sb3-threads {args.sb3_threads}' if args.sb3_threads else ''}`. Each repeat "
        "runs, as separate processes with no thread variable in the environment"
        f"{f' (but OMP_NUM_THREADS={args.sb3_threads} for SB3)' if args.sb3_threads else ''}"
        ", alternating (order reversed on odd repeats), after one short untimed warm-up "
        "run of each:", "",
        f"* minipg: `python -m minipg train ppo --env {ENV_ID} --seed S --out DIR --force` "
        f"(the preset: 100k steps; config.json: dtype {config['config']['dtype']}, "
        f"{config['threads']} BLAS thread by the default rule);",
        "* SB3: `python verification/whole_process.py sb3 ppo CartPole-v1 --seed S`: the "
        "zoo's hyperparameters (the same), SB3's and torch's own defaults otherwise "
        "(float32, " + (f"torch on {args.sb3_threads} thread by OMP_NUM_THREADS" if
                        args.sb3_threads else "torch's default thread count") +
        "); train, then 10 deterministic episodes as minipg's final evaluation.", "",
        "Wall: the whole process, start to exit (imports, training, evaluation, minipg's "
        "checkpoint); CPU: user + system of the process (wait4). Loop: the training loop "
        "alone (minipg's progress.csv wall_s, SB3's learn()).", "",
        "| repeat | minipg wall s | minipg CPU s | SB3 wall s | SB3 CPU s | wall ratio | "
        "loop ratio | minipg CPU / wall | minipg final return | SB3 (its RESULT line) |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for (r, a, b, a_loop, b_loop, final, sb3_line), w, lo, c in zip(rows, wall, loop,
                                                                    cpu_over_wall):
        lines.append(f"| {r} | {a['wall_s']:.1f} | {a['cpu_s']:.1f} | {b['wall_s']:.1f} | "
                     f"{b['cpu_s']:.1f} | {w:.3f} | {lo:.3f} | {c:.2f} | {final:.0f} | "
                     f"{sb3_line.replace('RESULT ', '')} |")
    lines += ["", f"Median [min, max] over {len(rows)} repeats: wall ratio minipg / SB3 "
              f"{wp.summary(wall)} (goal <= 0.33); training-loop ratio {wp.summary(loop)}; "
              f"minipg CPU / wall {wp.summary(cpu_over_wall)} (goal <= 1.1). Load average "
              f"during the runs: {wp.summary([x['load_avg'] for x in mine + sb3])} (on this "
              "2-core machine, a load near 2 or above means other work shared the cores; the "
              "ratios come from alternated runs)."]
    path = os.path.join(HERE, "results", "ppo_speed.md")
    heading = "The default command, whole process (issue 13)"
    if args.sb3_threads:
        heading = (f"The default command, whole process, against SB3 on {args.sb3_threads} "
                   "torch thread (issue 13)")
    wp.write_section(path, heading, "\n".join(lines))
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3,
                   help="repeats of the main pair (minipg float32, SB3 on 1 thread)")
    p.add_argument("--extra-repeats", type=int, default=1,
                   help="repeats of minipg float64 and SB3 on 2 threads (in the first repeats)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--profile-steps", type=int, default=None,
                   help="steps of the profiled run (default: --steps)")
    p.add_argument("--no-sb3", action="store_true")
    p.add_argument("--default-command", action="store_true",
                   help="time the default command, whole process, against SB3 (issue 13)")
    p.add_argument("--sb3-threads", type=int, default=None,
                   help="--default-command: OMP_NUM_THREADS for SB3 (default: unset)")
    args = p.parse_args()
    if args.default_command:
        return default_command(args)

    contenders = [("minipg float32", lambda s: run_minipg(args.steps, s, "float32")),
                  ("minipg float64", lambda s: run_minipg(args.steps, s, "float64"))]
    have_sb3 = False
    if not args.no_sb3:
        try:
            import stable_baselines3  # noqa: F401
            import torch  # noqa: F401
            have_sb3 = True
        except ImportError:
            print("stable-baselines3 not installed: minipg only", file=sys.stderr)
    if have_sb3:
        contenders += [("SB3 torch 1 thread", lambda s: run_sb3(args.steps, s, 1)),
                       ("SB3 torch 2 threads", lambda s: run_sb3(args.steps, s, 2))]

    if args.extra_repeats == 0:
        contenders = [(n, f) for n, f in contenders
                      if n not in ("minipg float64", "SB3 torch 2 threads")]
    # untimed warm-up: numba loads its cached kernels, torch initialises
    for name, fn in contenders:
        if name.startswith("minipg"):
            run_minipg(2048, args.seed, name.split()[-1])
        else:
            run_sb3(2048, args.seed, 1)
    results = {name: [] for name, _ in contenders}
    extras = ("minipg float64", "SB3 torch 2 threads")
    for r in range(args.repeats):
        for name, fn in contenders:
            if name in extras and r >= args.extra_repeats:
                continue
            res = fn(args.seed + r)
            results[name].append(res)
            print(f"repeat {r} {name}: train {res['train_s']:.1f}s total {res['total_s']:.1f}s "
                  f"final return {res['final_return']:.1f}", flush=True)

    import gymnasium
    versions = (f"numpy {np.__version__}, gymnasium {gymnasium.__version__}, Python "
                f"{platform.python_version()}, {os.cpu_count()} cores, NumPy BLAS threads "
                f"{os.environ.get('OPENBLAS_NUM_THREADS')}")
    if have_sb3:
        from stable_baselines3 import __version__ as sb3_version
        from torch import __version__ as torch_version
        versions += f", stable-baselines3 {sb3_version}, torch {torch_version}"
    lines = ["# PPO speed: minipg against stable-baselines3 on CartPole-v1", "",
             f"Command: `python verification/ppo_speed.py --steps {args.steps} --repeats "
             f"{args.repeats} --extra-repeats {args.extra_repeats} --seed {args.seed}"
             f"{' --profile' if args.profile else ''}"
             f"{f' --profile-steps {args.profile_steps}' if args.profile_steps else ''}`.", "",
             versions + ".", "",
             "Same hyperparameters (rl-baselines3-zoo CartPole-v1 preset, see the script's "
             f"docstring), {args.steps} steps, seeds {args.seed}..{args.seed + args.repeats - 1} "
             "(repeat r uses seed + r for every contender), contenders alternated repeat by "
             "repeat after an untimed warm-up each. Medians over repeats:", "",
             "| contender | train s | steps/s | total s | final return (each repeat) |",
             "|---|---|---|---|---|"]
    med = {}
    for name, runs in results.items():
        train_s = statistics.median(r["train_s"] for r in runs)
        total_s = statistics.median(r["total_s"] for r in runs)
        med[name] = (train_s, total_s)
        finals = ", ".join(f"{r['final_return']:.0f}" for r in runs)
        lines.append(f"| {name} | {train_s:.1f} | {args.steps / train_s:.0f} | {total_s:.1f} | "
                     f"{finals} |")
    if have_sb3:
        lines += ["", "Ratios minipg / SB3 (median over repeats of the per-repeat ratio of "
                  "training wall times; goal <= 0.33):", "",
                  "| minipg | SB3 | train-time ratio | total-time ratio | repeats |",
                  "|---|---|---|---|---|"]
        for a in [n for n in ("minipg float32", "minipg float64") if n in results]:
            for b in [n for n in ("SB3 torch 1 thread", "SB3 torch 2 threads") if n in results]:
                pairs = list(zip(results[a], results[b]))       # same repeats (seeds)
                tr = statistics.median(x["train_s"] / y["train_s"] for x, y in pairs)
                tt = statistics.median(x["total_s"] / y["total_s"] for x, y in pairs)
                lines.append(f"| {a} | {b} | {tr:.2f} | {tt:.2f} | {len(pairs)} |")
    if args.profile:
        path = os.path.join(tempfile.gettempdir(), "minipg_ppo.prof")
        profile_steps = args.profile_steps or args.steps
        run_minipg(profile_steps, args.seed, "float32", profile_to=path)
        lines += ["", f"## Where the time goes: cProfile of one minipg float32 run "
                  f"({profile_steps} steps)", "",
                  "Cumulative time of the main parts (cProfile adds its own per-call cost, "
                  "so Python-heavy parts look heavier than they are):", "", "```",
                  profile_groups(path), "```", "", WHAT_WAS_DONE, "",
                  "<details><summary>raw cProfile output</summary>", "", "```",
                  profile_summary(path).strip(), "```", "", "</details>"]
    path = os.path.join(HERE, "results", "ppo_speed.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
