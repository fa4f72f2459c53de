"""Learning evidence for issue 5: DDPG, TD3, SAC v1 and SAC on Pendulum-v1 and beyond.

A run is named ``ALGO:ENV:DTYPE[:STEPS]`` and is exactly
``minipg train ALGO --env ENV --seed S --set dtype=DTYPE [total_steps=STEPS]``:
the task's preset and no other setting, through the run loop the CLI uses;
its final deterministic evaluation (10 episodes, seed + 10000) is recorded.

Targets (issue 5), each the median over seeds of the final evaluation return:
SAC, SAC v1, TD3 and DDPG on Pendulum-v1 >= -200 within 20k steps (the
preset's budget); SAC on MountainCarContinuous-v0 >= 90 within 50k; SAC and
TD3 on Hopper-v5 reported with their step budget beside the published figure.

The default selection (``DEFAULT_RUNS``) is what results/offpolicy_learning.md
reports.  Runs are independent processes, ``--jobs`` at a time, one BLAS
thread each; a finished run (its eval.json exists) is skipped unless --force.

    python verification/offpolicy_learning.py run [--only sac:Pendulum-v1:float32 ...]
                                                  [--seeds 0 1 2] [--jobs 2] [--out DIR]
    python verification/offpolicy_learning.py report [--out DIR] [--machine TEXT]
"""

import concurrent.futures
import os
import platform
import statistics

import learning_runs as lr

lr.one_blas_thread()          # one BLAS thread per run: runs go in parallel

# (target on the median final return or None, what it is compared with)
TARGETS = {
    "Pendulum-v1": (-200.0, "20k steps, stable-baselines3 zoo benchmark.md: SAC -157.0 +- 88.7, "
                    "TD3 -151.9 +- 90.2, DDPG -152.1 +- 94.3 (one agent each, 750 episodes); "
                    "SAC v1: none published"),
    "MountainCarContinuous-v0": (90.0, "SB3 zoo SAC with gSDE: 94.6 +- 1.0 at 50k steps"),
    "Hopper-v5": (None, "1M steps: TD3 paper (Hopper-v1) 3564.07 +- 114.74; SAC paper "
                  "2018b (Hopper-v1) roughly 3000-3500, read off its learning curve (it has "
                  "no table)"),
}
SEEDS = (0, 1, 2)
DEFAULT_RUNS = (
    [f"{algo}:Pendulum-v1:float32" for algo in ("sac", "sac_v1", "td3", "ddpg")]
    + ["sac:MountainCarContinuous-v0:float32"]
    + ["sac:Hopper-v5:float32:50000", "td3:Hopper-v5:float32:50000"])
# float64 beside the float32 presets, one seed each: does single precision learn as well?
FLOAT64_RUNS = [f"{algo}:Pendulum-v1:float64" for algo in ("sac", "sac_v1", "td3", "ddpg")]


def parse_run(spec):
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise SystemExit(f"run {spec!r}: expected ALGO:ENV:DTYPE[:STEPS]")
    algo, env_id, dtype = parts[:3]
    steps = int(parts[3]) if len(parts) == 4 else None
    return algo, env_id, dtype, steps


def train_one(spec, seed, out):
    """One run in its own process; returns a line for the log."""
    algo, env_id, dtype, steps = parse_run(spec)
    overrides = {"dtype": dtype}
    if steps is not None:
        overrides["total_steps"] = steps
    ev, times = lr.train_timed(algo, env_id, seed, out, overrides=overrides, cpu=True)
    return f"{spec} seed {seed}: eval {ev['return_mean']:.1f} wall {times['wall_s']:.0f}s"


def cmd_run(args):
    specs = args.only or (list(DEFAULT_RUNS) + ["float64"])
    jobs = []
    for spec in specs:
        if spec == "float64":           # the float64 comparison: seed 0 only
            jobs += [(s, 0) for s in FLOAT64_RUNS]
            continue
        parse_run(spec)
        jobs += [(spec, seed) for seed in args.seeds]
    todo = [(spec, seed, lr.run_dir(args.out, spec, seed)) for spec, seed in jobs
            if args.force or not lr.finished(lr.run_dir(args.out, spec, seed))]
    # longest first, so the slow runs do not start last
    todo.sort(key=lambda j: -(parse_run(j[0])[3] or 20_000))
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(train_one, *job): job for job in todo}
        for fut in concurrent.futures.as_completed(futures):
            try:
                print(fut.result(), flush=True)
            except Exception as exc:            # report and go on with the others
                print(f"{futures[fut][0]} seed {futures[fut][1]}: FAILED {exc!r}", flush=True)


def cmd_report(args):
    lines = ["# Off-policy algorithms (DDPG, TD3, SAC v1, SAC): learning", "",
             "Commands: `python verification/offpolicy_learning.py run --jobs N` then "
             "`python verification/offpolicy_learning.py report`.  A run "
             "`ALGO:ENV:DTYPE[:STEPS]` is `minipg train ALGO --env ENV --seed S --set "
             "dtype=DTYPE [total_steps=STEPS]`: the task's preset and nothing else.  Final "
             "evaluation: deterministic policy, 10 episodes, seed + 10000.  'reached' is the "
             "first logged step (every 1000) at which the mean training return of the last 20 "
             "episodes (exploring policy) was at the target.", "",
             f"Machine: {args.machine}.", "",
             *lr.table_head("run", "seed", "final eval return", "reached target at", "wall s",
                            "CPU s")]
    summary = []
    for spec in list(DEFAULT_RUNS) + FLOAT64_RUNS:
        algo, env_id, dtype, steps = parse_run(spec)
        target, published = TARGETS[env_id]
        seeds = (0,) if spec in FLOAT64_RUNS else SEEDS
        finals = []
        for seed in seeds:
            out = lr.run_dir(args.out, spec, seed)
            if not lr.finished(out):
                lines.append(f"| {spec} | {seed} | not run | - | - | - |")
                continue
            ev = lr.read_json(out, "eval.json")
            times = lr.read_json(out, "wall.json")
            reached = (lr.first_step_reaching(lr.read_progress(out), target)
                       if target is not None else None)
            finals.append(ev["return_mean"])
            lines.append(f"| {spec} | {seed} | {ev['return_mean']:.1f} +- "
                         f"{ev['return_std']:.1f} | "
                         f"{'-' if target is None else reached or 'never'} | "
                         f"{times['wall_s']:.0f} | {times.get('cpu_s', float('nan')):.0f} |")
        config = lr.read_json(lr.run_dir(args.out, spec, seeds[0]),
                              "config.json") if finals else {}
        budget = config.get("config", config).get("total_steps", steps)
        if not finals:
            result, med = "not run", "-"
        else:
            med = f"{statistics.median(finals):.1f}"
            result = ("reported" if target is None else
                      lr.verdict(statistics.median(finals), target))
        summary.append(f"| {spec} | {budget} | {len(finals)} | {med} | "
                       f"{'-' if target is None else f'>= {target:g}'} | {result} | "
                       f"{published} |")
    lines += ["", "## Against the targets and the published figures", ""] + lr.table_head(
        "run", "steps", "seeds", "median final eval return", "target", "result",
        "published") + summary
    lr.write_report(lines, args.results or lr.results_path("offpolicy_learning.md"))


def more_options(p):
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one core each)")
    p.add_argument("--results", help="report file (default results/offpolicy_learning.md)")
    p.add_argument("--machine", default=f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}")


if __name__ == "__main__":
    lr.main(__doc__, {"run": cmd_run, "report": cmd_report},
            "runs ALGO:ENV:DTYPE[:STEPS], or 'float64'", "runs/verification/offpolicy",
            out_help=None, seeds=SEEDS, more_options=more_options)
