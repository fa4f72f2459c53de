"""Learning evidence for issue 5: DDPG, TD3, SAC v1 and SAC (auto-temperature) on Pendulum-v1.

Each algorithm is trained with its Pendulum-v1 preset (the command
`minipg train ALGO --env Pendulum-v1 --seed S` with no other setting: 20,000
steps) for 3 seeds, in float64 and in float32 (``--set dtype=...``), through
the same run loop the CLI uses; the final deterministic evaluation
(10 episodes, seed + 10000) is recorded.  Target (issue 5): median over seeds
of the final evaluation return >= -200 within 20k steps.  Published figures
beside it: the stable-baselines3 zoo benchmark (rl-baselines3-zoo
benchmark.md, one trained agent per algorithm, 20k steps, mean +- std over
750 evaluation episodes): SAC -157.0 +- 88.7, TD3 -151.9 +- 90.2, DDPG
-152.1 +- 94.3; SAC v1 has no published Pendulum figure.

Runs are long (minutes each on 2 shared cores), so the script has two steps:
`run` trains sequentially and leaves run directories under --out; `report`
reads them and writes verification/results/offpolicy_learning.md.

    python verification/offpolicy_learning.py run [--only sac:float32 td3:float64 ...]
                                                  [--seeds 0 1 2]
    python verification/offpolicy_learning.py report
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread: shared cores

import argparse  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ENV_ID = "Pendulum-v1"
TARGET = -200.0
ALGOS = ("sac", "sac_v1", "td3", "ddpg")
DTYPES = ("float32", "float64")
# stable-baselines3 zoo benchmark.md (20k steps): mean +- std of the evaluation episodes
PUBLISHED = {"sac": "-157.0 +- 88.7 (SB3 zoo)", "td3": "-151.9 +- 90.2 (SB3 zoo)",
             "ddpg": "-152.1 +- 94.3 (SB3 zoo)", "sac_v1": "none published"}


def run_dir(out, algo, dtype, seed):
    return os.path.join(out, f"{algo}-{ENV_ID}-{dtype}-{seed}")


def first_step_reaching(progress_csv, level):
    with open(progress_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["return_mean"] and float(row["return_mean"]) >= level:
                return int(row["step"])
    return None


def selected(args):
    if args.only:
        return [tuple(x.split(":")) for x in args.only]
    return [(algo, dtype) for dtype in DTYPES for algo in ALGOS]


def cmd_run(args):
    from minipg.run import train
    for algo, dtype in selected(args):
        for seed in args.seeds:
            out = run_dir(args.out, algo, dtype, seed)
            if os.path.exists(os.path.join(out, "eval.json")) and not args.force:
                print(f"{out}: done already", flush=True)
                continue
            start = time.perf_counter()
            train(algo, ENV_ID, seed=seed, out=out, force=True, overrides={"dtype": dtype},
                  stream=io.StringIO())
            wall = time.perf_counter() - start
            with open(os.path.join(out, "wall.json"), "w") as fh:
                json.dump({"wall_s": wall}, fh)
            ev = json.load(open(os.path.join(out, "eval.json")))
            print(f"{algo} {dtype} seed {seed}: eval {ev['return_mean']:.1f} wall {wall:.0f}s",
                  flush=True)


def cmd_report(args):
    lines = ["# Off-policy algorithms (DDPG, TD3, SAC v1, SAC): learning on Pendulum-v1", "",
             "Commands: `python verification/offpolicy_learning.py run` then "
             "`python verification/offpolicy_learning.py report`.  Each run is "
             "`minipg train ALGO --env Pendulum-v1 --seed S --set dtype=D` (the preset, 20,000 "
             f"steps, no other setting); seeds {args.seeds}; one BLAS thread.  Final "
             "evaluation: deterministic policy, 10 episodes, seed + 10000.  'reached' is the "
             "first logged step (every 1000) at which the mean training return of the last 20 "
             "episodes (exploring policy) was >= -200.  Wall times are on a 2-core machine "
             "shared with other jobs (load average 3-6 during these runs), so they are "
             "indicative only; see offpolicy_speed.md for timings.", "",
             "| algorithm | dtype | seed | final eval return | reached -200 at | wall s |",
             "|---|---|---|---|---|---|"]
    summary = []
    for algo, dtype in selected(args):
        finals = []
        for seed in args.seeds:
            out = run_dir(args.out, algo, dtype, seed)
            path = os.path.join(out, "eval.json")
            if not os.path.exists(path):
                lines.append(f"| {algo} | {dtype} | {seed} | not run | - | - |")
                continue
            ev = json.load(open(path))
            wall_path = os.path.join(out, "wall.json")
            wall = json.load(open(wall_path))["wall_s"] if os.path.exists(wall_path) \
                else float("nan")
            reached = first_step_reaching(os.path.join(out, "progress.csv"), TARGET)
            finals.append(ev["return_mean"])
            lines.append(f"| {algo} | {dtype} | {seed} | {ev['return_mean']:.1f} +- "
                         f"{ev['return_std']:.1f} | {reached or 'never'} | {wall:.0f} |")
        if finals:
            med = statistics.median(finals)
            summary.append(f"| {algo} | {dtype} | {len(finals)} | {med:.1f} | >= {TARGET:g} | "
                           f"{'met' if med >= TARGET else 'MISSED'} | {PUBLISHED[algo]} |")
        else:
            summary.append(f"| {algo} | {dtype} | 0 | - | >= {TARGET:g} | not run | "
                           f"{PUBLISHED[algo]} |")
    lines += ["", "## Against the target and the published figures", "",
              "| algorithm | dtype | seeds | median final eval return | target | result | "
              "published (20k steps) |", "|---|---|---|---|---|---|---|"] + summary
    path = os.path.join(HERE, "results", "offpolicy_learning.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "report"))
    p.add_argument("--only", nargs="*", help="algo:dtype pairs, e.g. sac:float32")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/verification/offpolicy")
    p.add_argument("--force", action="store_true", help="retrain runs that already finished")
    args = p.parse_args()
    cmd_run(args) if args.command == "run" else cmd_report(args)


if __name__ == "__main__":
    main()
