"""The run loop every algorithm trains through: collect -> targets -> update -> log.

``train`` opens a run (:func:`open_run`: a new one, or one resumed from its
directory), runs the :class:`TrainingLoop` -- ``algorithm.learn(collector)``
until the step budget is spent -- and writes the run directory
(CONTRIBUTING.md, "Run directory"):

* ``config.json``  every setting, the seed, the task and the versions;
* ``progress.csv`` one row every ``log_every`` steps, flushed as it is
  written (a crash loses nothing already logged);
* ``checkpoint.npz`` parameters, optimizer state, RNG and counters, written
  to a temporary file and renamed into place (a crash mid-write keeps the
  previous one); read back with ``allow_pickle=False``;
* ``eval.json`` the final deterministic evaluation.

A non-finite diagnostic or parameter stops training with the step and the
quantity's name (:class:`NonFiniteError`); the last good checkpoint stays.
Ctrl-C writes a final checkpoint and returns.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from gymnasium import error as gym_error

from . import __version__
from .algorithms import get as get_algorithm
from .algorithms.base import ConfigError, config_from, config_to_dict
from .envs.vector import Collector, action_kind, make_vector_env

__all__ = ["train", "open_run", "Run", "TrainingLoop", "evaluate_agent", "evaluate_run",
           "load_run", "NonFiniteError", "RunDirectoryError", "CHECKPOINT", "PROGRESS", "CONFIG",
           "EVAL"]

CHECKPOINT, PROGRESS, CONFIG, EVAL = "checkpoint.npz", "progress.csv", "config.json", "eval.json"
BASE_COLUMNS = ["step", "episodes", "return_mean", "return_std", "length_mean", "wall_s",
                "steps_per_s"]


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinity."""


class RunDirectoryError(ValueError):
    """A run directory that cannot be used (occupied, missing, corrupt)."""


def versions():
    import gymnasium
    import numba
    return {"minipg": __version__, "numpy": np.__version__, "numba": numba.__version__,
            "gymnasium": gymnasium.__version__, "python": platform.python_version()}


def resolve_config(algo_cls, env_id, overrides):
    """Defaults, then the task's preset, then ``overrides``; validated."""
    merged = dict(algo_cls.presets.get(env_id, {}))
    merged.update(overrides)
    return config_from(algo_cls.Config, merged)


def check_action_space(algo_cls, env_id, space):
    kind = action_kind(space)
    if kind not in algo_cls.action_kinds:
        raise ConfigError(
            f"{algo_cls.name} works with {' or '.join(algo_cls.action_kinds)} actions, but "
            f"{env_id} has {kind} actions ({space}). Try e.g. `--env {algo_cls.default_env}`.")


def default_out_dir(algo, env_id, seed):
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{algo}-{env_id.replace('/', '_')}-{seed}-{stamp}")


# --- checkpoints -----------------------------------------------------------------------
def write_checkpoint(path, arrays):
    """Write ``arrays`` to ``path`` atomically: a temporary file, fsync, rename."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_checkpoint(path):
    """The arrays of a checkpoint, never unpickling; clear errors for bad files."""
    if not os.path.exists(path):
        raise RunDirectoryError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as exc:  # zip errors, truncated files, object arrays
        raise RunDirectoryError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}. A minipg checkpoint "
            f"is an .npz of plain arrays written by `minipg train`.") from None


def restore_checkpoint(agent, path, collector=None):
    """Load ``path`` into ``agent`` (and ``collector``); a clear error if it does not fit."""
    arrays = read_checkpoint(path)
    try:
        agent.load_state_arrays(arrays)
        if collector is not None:
            collector.load_state_arrays(arrays)
            float(arrays["counter/wall_s"])
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise RunDirectoryError(f"checkpoint {path} does not fit this run ({type(exc).__name__}: "
                                f"{exc}); it must come from `minipg train` with the same "
                                f"algorithm and settings") from None
    return arrays


# --- progress --------------------------------------------------------------------------
class ProgressLog:
    """progress.csv, appended and flushed row by row; a live line on a terminal."""

    def __init__(self, path, total_steps, stream=sys.stderr, append=False):
        self.path = path
        self.total_steps = total_steps
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.columns = None
        if append and os.path.exists(path):
            with open(path, newline="") as fh:
                header = next(csv.reader(fh), None)
            self.columns = header
        self.fh = open(path, "a" if append else "w", newline="")
        self.writer = None if self.columns is None else csv.DictWriter(self.fh, self.columns)

    def write(self, row):
        if self.writer is None:
            self.columns = list(row)
            self.writer = csv.DictWriter(self.fh, self.columns)
            self.writer.writeheader()
        self.writer.writerow({k: _fmt(row.get(k, "")) for k in self.columns})
        self.fh.flush()
        self.show(row)

    def show(self, row):
        step, rate = row["step"], row["steps_per_s"]
        eta = (self.total_steps - step) / rate if rate > 0 else float("nan")
        ret = row["return_mean"]
        ret = "-" if ret == "" or ret is None or math.isnan(ret) else f"{ret:.1f}"
        line = (f"step {step}/{self.total_steps}  episodes {row['episodes']}  return {ret}  "
                f"{rate:.0f} steps/s  ETA {_duration(eta)}")
        if self.tty:
            self.stream.write("\r" + line.ljust(90))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
        self.fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _fmt(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.10g}"
    return v


def _duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# --- evaluation ------------------------------------------------------------------------
def evaluate_agent(agent, env_id, episodes, seed, wrappers=(), render=None, frames=None):
    """Mean and std of ``episodes`` returns of the deterministic policy (one env).

    With ``render="rgb_array"`` every frame is appended to the list ``frames``.
    """
    envs = make_vector_env(env_id, 1, wrappers, render_mode=render)
    collector = Collector(envs, seed=seed, dtype=agent.dtype)
    try:
        if frames is not None:
            frames.append(envs.envs[0].render())
        while collector.episodes < episodes:
            collector.step(agent.act(collector.obs, deterministic=True))
            if frames is not None:
                frames.append(envs.envs[0].render())
        returns = [r for _, r, _ in collector.drain_finished()][:episodes]
    finally:
        collector.close()
    return {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
            "episodes": len(returns), "returns": returns, "seed": seed}


# --- opening a run: new or resumed ------------------------------------------------------
@dataclass
class Run:
    """An opened run: its settings, its directory, the agent and the environments.

    ``wall_before`` is the wall time already spent (0 for a new run; the
    checkpoint's counter when resumed).
    """
    algo_cls: type
    env_id: str
    seed: int
    out: str
    config: object
    wrappers: list
    agent: object
    collector: Collector
    resumed: bool
    wall_before: float = 0.0


def read_run_config(out):
    """config.json of the run in ``out`` as a dict (RunDirectoryError where there is none)."""
    path = os.path.join(out, CONFIG)
    if not os.path.exists(path):
        raise RunDirectoryError(f"{out} is not a run directory (no {CONFIG})")
    with open(path) as fh:
        try:
            return json.load(fh)
        except ValueError as exc:
            raise RunDirectoryError(f"{path} is not a minipg run config: {exc}") from None


def resumed_settings(algo_cls, out, total_steps):
    """(env_id, seed, config) of the run in ``out``, with ``total_steps`` if given."""
    if out is None or not os.path.exists(os.path.join(out, CONFIG)):
        raise RunDirectoryError(f"--resume {out}: no {CONFIG} there; nothing to resume")
    saved = read_run_config(out)
    if saved.get("algorithm") != algo_cls.name:
        raise RunDirectoryError(f"--resume {out}: that run is {saved.get('algorithm')}, "
                                f"not {algo_cls.name}")
    config = config_from(algo_cls.Config, saved["config"])
    if total_steps is not None:
        config.total_steps = int(total_steps)
    return saved["env_id"], saved["seed"], config


def new_settings(algo_cls, env_id, total_steps, seed, out, overrides, force):
    """(env_id, config, out) of a new run: defaults, preset, overrides; a free directory."""
    env_id = env_id or algo_cls.default_env
    overrides = dict(overrides or {})
    if total_steps is not None:
        overrides["total_steps"] = total_steps
    config = resolve_config(algo_cls, env_id, overrides)
    out = out or default_out_dir(algo_cls.name, env_id, seed)
    if os.path.exists(os.path.join(out, CONFIG)) and not force:
        raise RunDirectoryError(f"{out} already holds a run; use --resume {out} to continue "
                                f"it, --force to overwrite it, or another --out")
    return env_id, config, out


def open_run(algo, env_id=None, total_steps=None, seed=0, out=None, overrides=None,
             resume=False, force=False):
    """Validate the settings, build the environments and the agent, prepare the directory.

    A new run writes ``config.json``; a resumed one restores its checkpoint.
    Nothing is written before every check has passed (a refused run leaves no
    directory behind), and the environments are closed if opening fails.
    """
    algo_cls = get_algorithm(algo)
    if resume:
        env_id, seed, config = resumed_settings(algo_cls, out, total_steps)
    else:
        env_id, config, out = new_settings(algo_cls, env_id, total_steps, seed, out, overrides,
                                           force)
    wrappers = algo_cls.env_wrappers(config)
    envs = make_vector_env(env_id, config.n_envs, wrappers, config.vectorization)
    try:
        check_action_space(algo_cls, env_id, envs.single_action_space)
        agent = algo_cls(config, envs.single_observation_space, envs.single_action_space, seed)
    except BaseException:
        envs.close()
        raise
    collector = Collector(envs, seed=seed, dtype=config.dtype)
    run = Run(algo_cls, env_id, seed, out, config, wrappers, agent, collector, resumed=resume)
    try:
        if resume:
            arrays = restore_checkpoint(agent, os.path.join(out, CHECKPOINT), collector)
            run.wall_before = float(arrays["counter/wall_s"])
        else:
            os.makedirs(out, exist_ok=True)   # only now: a refused run leaves no directory
            write_run_config(run)
    except BaseException:
        collector.close()
        raise
    return run


def write_run_config(run):
    """config.json: the algorithm, the task, the seed, every setting, the versions."""
    with open(os.path.join(run.out, CONFIG), "w") as fh:
        json.dump({"algorithm": run.algo_cls.name, "env_id": run.env_id, "seed": run.seed,
                   "config": config_to_dict(run.config), "versions": versions(),
                   "started": datetime.now(timezone.utc).isoformat()}, fh, indent=2)


# --- the loop ----------------------------------------------------------------------------
class CtrlC:
    """Ctrl-C as a request to stop: the first sets ``requested`` (the loop finishes its
    iteration, writes a checkpoint and returns), a second raises KeyboardInterrupt.

    A context manager: the handler is installed on entry and the previous one
    restored on exit; outside the main thread no handler can be installed and
    Ctrl-C interrupts as usual.
    """

    def __init__(self):
        self.requested = False
        self.previous = None

    def __call__(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        previous = signal.getsignal(signal.SIGINT)
        try:
            signal.signal(signal.SIGINT, self)
            self.previous = previous
        except ValueError:      # not the main thread
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def check_finite(agent, metrics, step):
    """NonFiniteError naming the first non-finite diagnostic or network, and the step."""
    for name, value in metrics.items():
        if not np.isfinite(value):
            raise NonFiniteError(f"non-finite {name} ({value}) at step {step}")
    for name, module in agent.modules().items():
        if not np.isfinite(module.flat_params).all():
            raise NonFiniteError(f"non-finite parameters in {name} at step {step}")


def next_multiple(steps, every):
    """The first multiple of ``every`` above ``steps``."""
    return (steps // every + 1) * every


class TrainingLoop:
    """collect -> learn -> check -> log -> checkpoint, until the budget or Ctrl-C.

    Rows go to progress.csv when the step count passes a multiple of
    ``log_every`` and at the end; checkpoints when it passes a multiple of
    ``checkpoint_every`` (before the end) and once more when the loop stops.
    """

    def __init__(self, run, stream):
        self.run = run
        self.stream = stream
        self.started = None

    def wall(self):
        """Seconds of training so far, over every session of the run."""
        return self.run.wall_before + time.perf_counter() - self.started

    def checkpoint(self):
        """checkpoint.npz: the agent's and the collector's state, the wall time, the config."""
        run = self.run
        arrays = run.agent.state_arrays()
        arrays.update(run.collector.state_arrays())
        arrays["counter/wall_s"] = np.asarray(self.wall())
        arrays["config"] = np.array(json.dumps(config_to_dict(run.config)))
        write_checkpoint(os.path.join(run.out, CHECKPOINT), arrays)

    def progress_row(self, metrics):
        """The row of progress.csv: counters, recent episodes, speed, then ``metrics``."""
        collector = self.run.collector
        returns = np.asarray(collector.recent_returns)
        wall = self.wall()
        row = {"step": collector.steps, "episodes": collector.episodes,
               "return_mean": float(returns.mean()) if len(returns) else float("nan"),
               "return_std": float(returns.std()) if len(returns) else float("nan"),
               "length_mean": float(np.mean(collector.recent_lengths))
               if len(collector.recent_lengths) else float("nan"),
               "wall_s": round(wall, 3), "steps_per_s": collector.steps / wall if wall > 0 else 0.0}
        row.update(metrics)
        return row

    def loop(self):
        """Train until the step budget is spent or Ctrl-C; True if interrupted.

        The environments are closed and progress.csv is closed on the way out,
        whatever happened; a NonFiniteError leaves the last good checkpoint.
        """
        run, config = self.run, self.run.config
        collector, agent = run.collector, run.agent
        next_log = next_multiple(collector.steps, config.log_every)
        next_ckpt = next_multiple(collector.steps, config.checkpoint_every)
        self.started = time.perf_counter()
        try:
            with ProgressLog(os.path.join(run.out, PROGRESS), config.total_steps, self.stream,
                             append=run.resumed) as log, CtrlC() as ctrl_c:
                while collector.steps < config.total_steps and not ctrl_c.requested:
                    metrics = agent.learn(collector)
                    check_finite(agent, metrics, collector.steps)
                    if collector.steps >= next_log or collector.steps >= config.total_steps:
                        log.write(self.progress_row(metrics))
                        next_log = next_multiple(collector.steps, config.log_every)
                    if next_ckpt <= collector.steps < config.total_steps:
                        self.checkpoint()
                        next_ckpt = next_multiple(collector.steps, config.checkpoint_every)
                self.checkpoint()
        finally:
            collector.close()
        return ctrl_c.requested


def train(algo, env_id=None, total_steps=None, seed=0, out=None, overrides=None,
          resume=False, force=False, stream=sys.stderr):
    """Train ``algo`` on ``env_id``; returns the run directory. See the module docstring.

    :func:`open_run` (new or resumed), then the :class:`TrainingLoop`, then
    the final deterministic evaluation into eval.json (skipped after Ctrl-C).
    """
    run = open_run(algo, env_id, total_steps, seed, out, overrides, resume, force)
    interrupted = TrainingLoop(run, stream).loop()
    if interrupted:
        stream.write(f"interrupted at step {run.collector.steps}; checkpoint written; continue "
                     f"with: minipg train {run.algo_cls.name} --resume {run.out}\n")
        return run.out
    result = evaluate_agent(run.agent, run.env_id, run.config.eval_episodes,
                            seed=run.seed + 10_000, wrappers=run.wrappers)
    with open(os.path.join(run.out, EVAL), "w") as fh:
        json.dump(result, fh, indent=2)
    stream.write(f"evaluation: return {result['return_mean']:.1f} +- {result['return_std']:.1f} "
                 f"over {result['episodes']} episodes; run directory {run.out}\n")
    return run.out


def load_run(out):
    """(algorithm instance, config dict) rebuilt from a run directory's checkpoint."""
    saved = read_run_config(out)
    try:
        algo_cls = get_algorithm(saved["algorithm"])
        config = config_from(algo_cls.Config, saved["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirectoryError(f"{os.path.join(out, CONFIG)} is not a minipg run config: "
                                f"{exc}") from None
    envs = make_vector_env(saved["env_id"], 1, algo_cls.env_wrappers(config))
    agent = algo_cls(config, envs.single_observation_space, envs.single_action_space,
                     saved["seed"])
    envs.close()
    restore_checkpoint(agent, os.path.join(out, CHECKPOINT))
    return agent, saved


def evaluate_run(out, episodes=10, seed=None, render=None, video=None):
    """Reload the run in ``out`` and evaluate it; with ``video``, write its frames (GIF)."""
    if video is not None and render != "rgb_array":
        raise ConfigError("--video needs --render rgb_array")
    if video is not None and not video.lower().endswith(".gif"):
        raise ConfigError(f"--video {video}: accepted: a .gif path (written with Pillow)")
    agent, saved = load_run(out)
    seed = saved["seed"] + 10_000 if seed is None else seed
    frames = [] if render else None
    try:
        result = evaluate_agent(agent, saved["env_id"], episodes, seed,
                                type(agent).env_wrappers(agent.config), render, frames)
    except gym_error.DependencyNotInstalled as exc:
        raise ConfigError(f"cannot render {saved['env_id']}: {exc}") from None
    if video is not None:
        try:
            from PIL import Image
        except ImportError:
            raise ConfigError("--video needs Pillow: pip install 'minipg[plot]'") from None
        images = [Image.fromarray(f) for f in frames if f is not None]
        images[0].save(video, save_all=True, append_images=images[1:], duration=20, loop=0)
        result["video"] = video
    return result
