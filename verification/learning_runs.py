"""What the learning scripts of verification/ share (trpo_learning.py, acktr_learning.py,
onpolicy_learning.py, offpolicy_learning.py, classical_learning.py): train a preset for
some seeds into run directories, time it, read a finished run back (eval.json,
config.json, wall.json, progress.csv) and write the Markdown tables of a report.

The scripts are run as ``python verification/X.py``, so this folder is ``sys.path[0]``
and they import this module as ``import learning_runs``.  It imports only the standard
library at module level (minipg is imported where a run trains), so a script may call
``one_blas_thread()`` before anything imports NumPy.
"""

import argparse
import csv
import io
import json
import os
import statistics
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def one_blas_thread():
    """One BLAS thread a process (small matrices, shared cores); call before NumPy loads."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def run_dir(out, name, seed):
    """The run directory of run ``name`` (``ALGO:ENV[:...]``) and ``seed`` under ``out``:
    ``out/ALGO-ENV[-...]-SEED``."""
    return os.path.join(out, f"{name.replace(':', '-').replace('/', '_')}-{seed}")


def finished(out):
    """Whether the run in directory ``out`` finished (its final evaluation is written)."""
    return os.path.exists(os.path.join(out, "eval.json"))


def train_timed(algo, env_id, seed, out, overrides=None, cpu=False):
    """Train ``algo``'s preset on ``env_id`` (with ``overrides``, as ``--set`` gives them)
    through the run loop ``minipg train`` uses; write ``wall.json`` (``wall_s``, and
    ``cpu_s`` with ``cpu``) into ``out``; return (the final evaluation, those times)."""
    from minipg.run import train
    start, cpu_start = time.perf_counter(), time.process_time()
    kwargs = {} if overrides is None else {"overrides": overrides}
    train(algo, env_id, seed=seed, out=out, force=True, stream=io.StringIO(), **kwargs)
    times = {"wall_s": time.perf_counter() - start}
    if cpu:
        times["cpu_s"] = time.process_time() - cpu_start
    with open(os.path.join(out, "wall.json"), "w") as fh:
        json.dump(times, fh)
    with open(os.path.join(out, "eval.json")) as fh:
        return json.load(fh), times


def run_presets(selected, seeds, out_root, force=False):
    """Train each (algorithm, task) of ``selected`` for each seed, one run after the other,
    skipping finished runs unless ``force``; a run that fails (e.g. mujoco missing) is
    reported and the others go on."""
    for algo, env_id in selected:
        for seed in seeds:
            out = run_dir(out_root, f"{algo}:{env_id}", seed)
            if finished(out) and not force:
                print(f"{out}: done already", flush=True)
                continue
            try:
                ev, times = train_timed(algo, env_id, seed, out)
            except Exception as exc:  # e.g. mujoco missing: say so and go on
                print(f"{algo} {env_id} seed {seed}: {type(exc).__name__}: {exc}", flush=True)
                continue
            print(f"{algo} {env_id} seed {seed}: eval {ev['return_mean']:.1f} "
                  f"wall {times['wall_s']:.0f}s", flush=True)


def read_progress(out):
    """The rows of a run's progress.csv (dicts of strings)."""
    with open(os.path.join(out, "progress.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


def first_step_reaching(rows, level):
    """The first logged step whose mean training return is at least ``level``, or None."""
    for row in rows:
        if row["return_mean"] and float(row["return_mean"]) >= level:
            return int(row["step"])
    return None


def read_json(out, name):
    with open(os.path.join(out, name)) as fh:
        return json.load(fh)


def read_wall(out):
    """The run's wall.json, or {} where it has none."""
    path = os.path.join(out, "wall.json")
    return read_json(out, "wall.json") if os.path.exists(path) else {}


def table_head(*columns):
    """The two header lines of a Markdown table."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def verdict(value, target):
    return "met" if value >= target else "MISSED"


def preset_method(seeds):
    """The report sentences saying how a preset run was made and what its columns mean."""
    return ("Each run is the preset as `minipg train ALGO --env ENV --seed S` runs it, no "
            f"other setting; float64; seeds {seeds}; one BLAS thread. Final evaluation: "
            "deterministic policy, 10 episodes, seed + 10000. 'reached' is the first logged "
            "step at which the mean training return of the last 20 episodes (stochastic "
            "policy) reached the target.")


def preset_tables(plan, seeds, out_root, extra=()):
    """The two tables of a preset report over ``plan`` [(algorithm, task, target)]: one row
    a run (steps, final evaluation, the first step reaching the target, ``extra`` columns,
    wall time) and one an (algorithm, task) against its target (the median over seeds of
    the final evaluation return).  ``extra`` is [(header, function of (out, progress rows)
    giving the cell)].  Returns (run lines, summary lines, median step reaching the target
    per (algorithm, task) that has runs; a run that never reaches it counts as inf)."""
    runs = table_head("algorithm", "task", "seed", "steps", "final eval return",
                      "reached target at", *[h for h, _ in extra], "wall s")
    summary, reached_by = [], {}
    for algo, env_id, target in plan:
        finals, reached_all = [], []
        for seed in seeds:
            out = run_dir(out_root, f"{algo}:{env_id}", seed)
            if not finished(out):
                runs.append(f"| {algo} | {env_id} | {seed} | - | not run | - |"
                            + " - |" * (len(extra) + 1))
                continue
            ev = read_json(out, "eval.json")
            cfg = read_json(out, "config.json")["config"]
            wall = read_wall(out).get("wall_s", float("nan"))
            rows = read_progress(out)
            reached = first_step_reaching(rows, target)
            finals.append(ev["return_mean"])
            reached_all.append(float("inf") if reached is None else reached)
            cells = [f"{cfg['total_steps']}",
                     f"{ev['return_mean']:.1f} +- {ev['return_std']:.1f}",
                     f"{reached or 'never'}"] + [fn(out, rows) for _, fn in extra]
            runs.append(f"| {algo} | {env_id} | {seed} | " + " | ".join(cells)
                        + f" | {wall:.0f} |")
        if finals:
            reached_by[(algo, env_id)] = statistics.median(reached_all)
            summary.append((algo, env_id, target, len(finals), statistics.median(finals),
                            reached_by[(algo, env_id)]))
        else:
            summary.append((algo, env_id, target, 0, None, None))
    return runs, summary, reached_by


def summary_table(summary, with_reached=False):
    """The against-the-targets table of ``preset_tables``'s summary; ``with_reached`` adds
    the median step reaching the target."""
    lines = table_head("algorithm", "task", "seeds", "median final eval return",
                       *(["median step reaching the target"] if with_reached else []),
                       "target", "result")
    for algo, env_id, target, n, med, med_reached in summary:
        if n:
            cells = [f"{med:.1f}"] + ([f"{med_reached:.0f}"] if with_reached else []) \
                + [f">= {target:g}", verdict(med, target)]
        else:
            cells = ["-"] + (["-"] if with_reached else []) + [f">= {target:g}", "not run"]
        lines.append(f"| {algo} | {env_id} | {n} | " + " | ".join(cells) + " |")
    return lines


def write_report(lines, path):
    """Write the report's lines to ``path`` and print them."""
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def results_path(name):
    """verification/results/NAME."""
    return os.path.join(HERE, "results", name)


def preset_report(args, title, intro, plan, notes, results_name):
    """Write results/``results_name``: ``title``, ``intro``, ``preset_tables``'s two tables
    over ``plan`` (no extra columns) and ``notes``."""
    runs, summary, _ = preset_tables(plan, args.seeds, args.out)
    write_report([title, "", intro, ""] + runs + ["", "## Against the targets", ""]
                 + summary_table(summary) + ["", notes], results_path(results_name))


OUT_HELP = "where the run directories go (outside the work tree)"


def main(doc, commands, only_help, out_default, out_help=OUT_HELP, seeds=(0, 1, 2),
         more_options=None):
    """The command line the learning scripts share: COMMAND (a key of ``commands``, a dict
    of functions of the parsed arguments), --only, --seeds, --out and --force, then what
    ``more_options(parser)`` adds; parse it and run the command."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("command", choices=tuple(commands))
    p.add_argument("--only", nargs="*", help=only_help)
    p.add_argument("--seeds", type=int, nargs="+", default=list(seeds))
    p.add_argument("--out", default=out_default, help=out_help)
    p.add_argument("--force", action="store_true", help="retrain runs that already finished")
    if more_options is not None:
        more_options(p)
    args = p.parse_args()
    commands[args.command](args)
