"""Engine speed: run `minipg bench` with many repeats and record the table.

    python verification/engine_bench.py [--repeats 15] [--runs 3]

Runs the whole benchmark `--runs` times (each alternating minipg, the NumPy
floor and PyTorch repeat by repeat), then writes every table and, per case,
the median ratio over runs to verification/results/engine_bench.md.
"""

import argparse
import os
import platform
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")           # before NumPy loads its BLAS

import numpy as np  # noqa: E402

from minipg import __version__, bench  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "engine_bench.md"))
    args = parser.parse_args()
    lines = []
    all_rows = []
    for run in range(args.runs):
        lines.append(f"### run {run + 1}\n\n```")
        rows = bench.run(repeats=args.repeats, kernels=(run == args.runs - 1),
                         out=lambda s: (print(s), lines.append(s)))
        lines.append("```\n")
        all_rows.append([r for r in rows if "case" in r])
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    summary = ["| case | dtype | minipg/floor (goal) | minipg/torch (goal) |",
               "| --- | --- | --- | --- |"]
    for i, row in enumerate(all_rows[0]):
        r_floor = np.median([rows[i]["minipg_over_floor"] for rows in all_rows])
        r_torch = [rows[i]["minipg_over_torch"] for rows in all_rows]
        r_torch = None if r_torch[0] is None else float(np.median(r_torch))
        goal_torch, goal_floor = bench.GOALS[row["case"]]
        summary.append(f"| {row['case']} | {row['dtype']} | {r_floor:.2f} "
                       f"({goal_floor if goal_floor else '-'}) | "
                       f"{'-' if r_torch is None else f'{r_torch:.2f}'} ({goal_torch}) |")
    header = [
        "# Engine benchmark",
        "",
        f"minipg {__version__}, numpy {np.__version__}, torch {torch_version}, "
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS')}.",
        f"Command: `python verification/engine_bench.py --repeats {args.repeats} "
        f"--runs {args.runs}`.",
        "",
        "Median over runs of each run's median ratio:",
        "",
        *summary,
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(header + lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
