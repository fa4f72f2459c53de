"""``minipg plot``: learning curves of one or more runs as a PNG (matplotlib, optional).

Runs are grouped by (algorithm, task) from their ``config.json``; a group of
several runs (seeds) is drawn as its mean return over a common step grid
with the band between the lowest and the highest run, each run's curve being
its ``return_mean`` column (the mean of its last 20 episodes) interpolated
linearly onto the grid.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

__all__ = ["plot_runs", "read_progress", "PlotUnavailable", "PlotError", "FORMATS"]

FORMATS = (".png", ".pdf", ".svg")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


class PlotError(ValueError):
    """A progress.csv that cannot be read, or an --out minipg cannot write."""


def read_progress(run_dir):
    """(steps, returns) arrays from ``run_dir/progress.csv`` (rows without a return skipped)."""
    path = os.path.join(run_dir, "progress.csv")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} is not a run directory (no progress.csv)")
    steps, returns = [], []
    accepted = ("accepted: the progress.csv `minipg train` writes, with numeric step and "
                "return_mean columns")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"step", "return_mean"} <= set(reader.fieldnames):
                raise PlotError(f"{path} has no step and return_mean columns; {accepted}")
            for row in reader:
                if row.get("return_mean"):
                    try:
                        steps.append(float(row["step"]))
                        returns.append(float(row["return_mean"]))
                    except (TypeError, ValueError):
                        raise PlotError(f"{path}, line {reader.line_num}: step "
                                        f"{row.get('step')!r}, return_mean "
                                        f"{row.get('return_mean')!r} are not numbers; "
                                        f"{accepted}") from None
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        raise PlotError(f"cannot read {path}: {exc}; {accepted}") from None
    return np.asarray(steps), np.asarray(returns)


def _label(run_dir):
    try:
        with open(os.path.join(run_dir, "config.json")) as fh:
            config = json.load(fh)
        return f"{config['algorithm']} {config['env_id']}"
    except (OSError, ValueError, KeyError):
        return os.path.basename(os.path.normpath(run_dir))


def plot_runs(run_dirs, out, title=None):
    """Write a PNG of the runs' learning curves to ``out``; returns ``out``."""
    if not str(out).lower().endswith(FORMATS):
        raise PlotError(f"--out {out}: accepted: a path ending in {', '.join(FORMATS)}")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise PlotError(f"--out {out}: the directory {folder} does not exist; accepted: a "
                        f"path in an existing directory")
    groups = {}
    for run_dir in run_dirs:
        groups.setdefault(_label(run_dir), []).append(read_progress(run_dir))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("minipg plot needs matplotlib: pip install 'minipg[plot]' "
                              "(or pip install matplotlib)") from None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curves in groups.items():
        curves = [(s, r) for s, r in curves if len(s)]
        if not curves:
            continue
        if len(curves) == 1:
            ax.plot(*curves[0], label=label)
            continue
        end = min(s[-1] for s, _ in curves)
        grid = np.linspace(max(s[0] for s, _ in curves), end, 200)
        ys = np.stack([np.interp(grid, s, r) for s, r in curves])
        line, = ax.plot(grid, ys.mean(axis=0), label=f"{label} (mean of {len(curves)})")
        ax.fill_between(grid, ys.min(axis=0), ys.max(axis=0), color=line.get_color(),
                        alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return (mean of last 20 episodes)")
    ax.set_title(title or "minipg learning curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=120)
    except OSError as exc:
        raise PlotError(f"--out {out}: cannot write it ({exc.strerror or exc}); accepted: a "
                        f"path you can write to") from None
    finally:
        plt.close(fig)
    return out
