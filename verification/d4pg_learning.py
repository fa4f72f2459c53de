"""Learning evidence for issue 19: D4PG on Pendulum-v1, Hopper-v5 and HalfCheetah-v5.

A run is named ``ALGO:ENV[:STEPS]`` and is exactly ``minipg train ALGO --env ENV --seed S``
with the task's preset, plus, for a run with STEPS, ``--set total_steps=STEPS
learning_starts=WARMUP`` (WARMUP = ``MUJOCO_WARMUP``) and, for DDPG on a MuJoCo task
(DDPG has no MuJoCo preset), the settings of TD3's MuJoCo preset
(offpolicy_common.ZOO_MUJOCO_DETERMINISTIC), so that D4PG, DDPG and TD3 get the same
budget, warm-up, learning rates, noise, layers and dtype.  The final deterministic
evaluation (10 episodes, seed + 10000) is recorded.

Targets (issue 19), each the median over 3 seeds of the final evaluation return:
D4PG on Pendulum-v1 >= -200 within 20k steps (the preset's budget); Hopper-v5 and
HalfCheetah-v5 at a small stated budget beside DDPG and TD3 with the same budget.

Runs go one at a time (``--jobs 1``; the project's machine is shared), one BLAS thread.

    nice -n 10 python verification/d4pg_learning.py run [--only d4pg:Pendulum-v1 ...]
                                                        [--seeds 0 1 2] [--out DIR]
    python verification/d4pg_learning.py report [--out DIR] [--machine TEXT]
"""

import os
import platform
import statistics

import learning_runs as lr

lr.one_blas_thread()

SEEDS = (0, 1, 2)
MUJOCO_STEPS = 10_000
MUJOCO_WARMUP = 5_000
PENDULUM = ["d4pg:Pendulum-v1"]
MUJOCO = [f"{algo}:{env}:{MUJOCO_STEPS}" for env in ("Hopper-v5", "HalfCheetah-v5")
          for algo in ("d4pg", "ddpg", "td3")]
DEFAULT_RUNS = PENDULUM + MUJOCO
TARGETS = {"Pendulum-v1": -200.0}


def parse_run(spec):
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise SystemExit(f"run {spec!r}: expected ALGO:ENV[:STEPS]")
    return parts[0], parts[1], (int(parts[2]) if len(parts) == 3 else None)


def overrides_of(spec):
    algo, env_id, steps = parse_run(spec)
    if steps is None:
        return {}
    from minipg.algorithms.offpolicy_common import ZOO_MUJOCO_DETERMINISTIC
    out = dict(ZOO_MUJOCO_DETERMINISTIC) if algo == "ddpg" else {}
    out.update(total_steps=steps, learning_starts=MUJOCO_WARMUP)
    return {k: (",".join(map(str, v)) if isinstance(v, tuple) else v) for k, v in out.items()}


def cmd_run(args):
    for spec in args.only or DEFAULT_RUNS:
        algo, env_id, _ = parse_run(spec)
        for seed in args.seeds:
            out = lr.run_dir(args.out, spec, seed)
            if lr.finished(out) and not args.force:
                continue
            try:
                ev, times = lr.train_timed(algo, env_id, seed, out, overrides=overrides_of(spec),
                                           cpu=True)
                print(f"{spec} seed {seed}: eval {ev['return_mean']:.1f} wall "
                      f"{times['wall_s']:.0f}s cpu {times['cpu_s']:.0f}s", flush=True)
            except Exception as exc:                # report and go on with the others
                print(f"{spec} seed {seed}: FAILED {exc!r}", flush=True)


def cmd_report(args):
    lines = ["# D4PG: learning (issue 19)", "",
             "Script: `verification/d4pg_learning.py` (`run`, then `report`).  A run "
             "`ALGO:ENV` is the preset as `minipg train ALGO --env ENV --seed S` runs it; "
             f"`ALGO:ENV:STEPS` adds `--set total_steps=STEPS learning_starts={MUJOCO_WARMUP}` "
             "and, for DDPG (no MuJoCo preset), TD3's MuJoCo preset settings, so the three "
             "algorithms share budget, warm-up, learning rates, noise, layers and dtype.  "
             "Final evaluation: deterministic policy, 10 episodes, seed + 10000.  'reached' "
             "is the first logged step at which the mean training return of the last 20 "
             "episodes was at the target.", "",
             f"Machine: {args.machine}.", "",
             *lr.table_head("run", "seed", "final eval return", "reached target at", "wall s",
                            "CPU s")]
    summary = []
    for spec in DEFAULT_RUNS:
        algo, env_id, steps = parse_run(spec)
        target = TARGETS.get(env_id)
        finals = []
        for seed in args.seeds:
            out = lr.run_dir(args.out, spec, seed)
            if not lr.finished(out):
                lines.append(f"| {spec} | {seed} | not run | - | - | - |")
                continue
            ev = lr.read_json(out, "eval.json")
            times = lr.read_wall(out)
            reached = (lr.first_step_reaching(lr.read_progress(out), target)
                       if target is not None else None)
            finals.append(ev["return_mean"])
            lines.append(f"| {spec} | {seed} | {ev['return_mean']:.1f} +- "
                         f"{ev['return_std']:.1f} | "
                         f"{'-' if target is None else reached or 'never'} | "
                         f"{times.get('wall_s', float('nan')):.0f} | "
                         f"{times.get('cpu_s', float('nan')):.0f} |")
        budget = steps or 20_000
        if not finals:
            result, med = "not run", "-"
        else:
            med = f"{statistics.median(finals):.1f}"
            result = "reported" if target is None else lr.verdict(statistics.median(finals),
                                                                  target)
        summary.append(f"| {spec} | {budget} | {len(finals)} | {med} | "
                       f"{'-' if target is None else f'>= {target:g}'} | {result} |")
    lines += ["", "## Against the targets", ""] + lr.table_head(
        "run", "steps", "seeds", "median final eval return", "target", "result") + summary
    path = args.results or lr.results_path("d4pg_learning.md")
    if os.path.exists(path):                 # keep the hand-written reading below the tables
        with open(path) as fh:
            old = fh.read()
        if "\n## Reading" in old:
            lines += ["", old[old.index("\n## Reading") + 1:].rstrip("\n")]
    lr.write_report(lines, path)


def more_options(p):
    p.add_argument("--results", help="report file (default results/d4pg_learning.md; its "
                   "'## Reading' section is kept)")
    p.add_argument("--machine", default=f"{platform.machine()}, {os.cpu_count()} cores "
                   f"(shared with other jobs), Python {platform.python_version()}")


if __name__ == "__main__":
    lr.main(__doc__, {"run": cmd_run, "report": cmd_report},
            "runs ALGO:ENV[:STEPS]", "/tmp/d4pg/verification", out_help=lr.OUT_HELP,
            seeds=SEEDS, more_options=more_options)
