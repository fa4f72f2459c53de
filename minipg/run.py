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

A non-finite diagnostic, parameter or reward stops training with the step and
the quantity's name (:class:`NonFiniteError`); the last good checkpoint stays.
Ctrl-C or SIGTERM writes a final checkpoint and stops (``train`` returns, or
raises :class:`Interrupted` for the command line, which exits 130 / 143).
A write that fails (a full disk) is a :class:`RunWriteError`: no temporary
file and no half-written row stay behind, and the previous checkpoint is intact.

A run holds an exclusive lock (``fcntl.flock``) on its directory for its
lifetime, so two trainings never write into one directory.  Nothing is
created before every check has passed: the settings, the seed, the task and
its spaces, the memory the buffers and networks would take, and the directory
(new, empty, or a minipg run with ``--resume`` or ``--force``).
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
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
from . import threads as blas
from .algorithms import get as get_algorithm
from .algorithms.base import (ConfigError, config_from, config_to_dict,
                              parse_int)
from .envs.vector import Collector, NonFiniteError
from .parallel import WorkerError

__all__ = ["train", "open_run", "Run", "TrainingLoop", "evaluate_agent", "evaluate_run",
           "load_run", "NonFiniteError", "RunDirectoryError", "RunWriteError", "Interrupted",
           "check_seed", "ProgressLog", "cut_progress", "write_checkpoint", "read_checkpoint",
           "write_atomic", "write_json", "check_out_dir", "CHECKPOINT", "PROGRESS", "CONFIG",
           "EVAL", "SEED_HIGH"]

CHECKPOINT, PROGRESS, CONFIG, EVAL = "checkpoint.npz", "progress.csv", "config.json", "eval.json"
BASE_COLUMNS = ["step", "episodes", "return_mean", "return_std", "length_mean", "wall_s",
                "steps_per_s"]


SEED_HIGH = 2**32 - 1
RUN_FILES = (CONFIG, PROGRESS, CHECKPOINT, EVAL)


class RunDirectoryError(ValueError):
    """A run directory that cannot be used (occupied, missing, corrupt, not writable)."""


class RunWriteError(OSError):
    """Writing the run directory failed while training (a full disk, a lost mount).

    What was written before stays whole: the previous checkpoint, every
    complete progress row."""


class Interrupted(Exception):
    """Training stopped by SIGINT (Ctrl-C) or SIGTERM, after a final checkpoint."""

    def __init__(self, signum, out, step, algo):
        self.signum, self.out, self.step, self.algo = signum, out, step, algo
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}; "
                         f"checkpoint written; continue with: minipg train {algo} "
                         f"--resume {out}")


def check_seed(seed):
    """``seed`` (an int or its text, e.g. '7' or '1e3') as an int in [0, SEED_HIGH]."""
    try:
        value = parse_int(seed)
    except (ValueError, TypeError, OverflowError):
        value = None
    if value is None or not 0 <= value <= SEED_HIGH:
        raise ConfigError(f"--seed {seed!r} is not accepted; accepted: an integer in "
                          f"[0, {SEED_HIGH}]")
    return value


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


def default_out_dir(algo, env_id, seed):
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{algo}-{env_id.replace('/', '_')}-{seed}-{stamp}")


# --- checkpoints -----------------------------------------------------------------------
def _fsync_dir(path):
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path, write, what="file"):
    """Write ``path`` atomically: ``write(fh)`` into ``path.tmp``, fsync, rename.

    On any failure the temporary file is removed and ``path`` is left as it
    was; an OSError (a full disk) becomes a :class:`RunWriteError`.
    """
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise RunWriteError(exc.errno, f"cannot write {what} {path}: "
                                f"{exc.strerror or exc}; the previous one is intact") from None
        raise
    _fsync_dir(path)


def write_checkpoint(path, arrays):
    """Write ``arrays`` to ``path`` atomically: a temporary file, fsync, rename."""
    write_atomic(path, lambda fh: np.savez(fh, **arrays), "checkpoint")


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
    return restore_arrays(agent, path, read_checkpoint(path), collector)


def restore_arrays(agent, path, arrays, collector=None):
    """Load the checkpoint ``arrays`` (read from ``path``) into ``agent`` and ``collector``."""
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
def cut_progress(path, step):
    """Keep progress.csv's header and its rows up to ``step`` (the checkpoint a run resumes
    from): rows logged after it, and a last row cut short by a crash, are dropped.
    Rewritten atomically; nothing happens when there is nothing to drop."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as fh:
        text = fh.read()
    lines = text.splitlines(keepends=True)
    kept = lines[:1] if lines and lines[0].endswith("\n") else []
    for line in lines[1:]:
        if not line.endswith("\n"):
            break                                  # a row cut short
        first = line.split(",", 1)[0]
        try:
            if int(first) > step:
                break
        except ValueError:
            break
        kept.append(line)
    if "".join(kept) != text:
        write_atomic(path, lambda fh: fh.write("".join(kept).encode()), "progress log")


class ProgressLog:
    """progress.csv, appended row by row; a live line on a terminal.

    Each row goes to the file in one ``os.write`` of the whole line; if the
    write fails (a full disk) the file is cut back to its previous length,
    so it never ends in half a row, and a :class:`RunWriteError` is raised.
    """

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
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self.fd = os.open(path, flags, 0o666)

    def _append(self, text):
        data = text.encode()
        size = os.lseek(self.fd, 0, os.SEEK_END)
        try:
            done = 0
            while done < len(data):
                done += os.write(self.fd, data[done:])
        except OSError as exc:
            try:
                os.ftruncate(self.fd, size)
            except OSError:
                pass
            raise RunWriteError(exc.errno, f"cannot write {self.path}: {exc.strerror or exc}; "
                                f"every complete row before is kept") from None

    def write(self, row):
        buffer = io.StringIO()
        if self.columns is None:
            self.columns = list(row)
            writer = csv.DictWriter(buffer, self.columns)
            writer.writeheader()
        else:
            writer = csv.DictWriter(buffer, self.columns)
        writer.writerow({k: _fmt(row.get(k, "")) for k in self.columns})
        self._append(buffer.getvalue())
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
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

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
def evaluate_agent(agent, env_id, episodes, seed, render=None, frames=None):
    """Mean and std of ``episodes`` returns of the deterministic policy (one env).

    With ``render="rgb_array"`` every frame is appended to ``frames`` (a list, or a
    writer with an ``append`` method such as :class:`minipg.envs.video.GifWriter`).
    """
    collector = type(agent).make_collector(env_id, agent.config, seed, n_envs=1,
                                           render_mode=render)
    try:
        if frames is not None:
            frames.append(collector.render())
        while collector.episodes < episodes:
            collector.step(agent.act(collector.obs, deterministic=True))
            if frames is not None:
                frames.append(collector.render())
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
    threads: int = 1
    threads_basis: dict = None      # what chose the count (minipg.threads.choose_threads)
    wall_before: float = 0.0
    lock_fd: int = None

    def close(self):
        """Close the environments and release the directory's lock."""
        self.collector.close()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def read_run_config(out):
    """config.json of the run in ``out`` as a dict, checked: RunDirectoryError where there
    is none or it is not one `minipg train` wrote (not JSON, not an object, a key missing
    or of the wrong type)."""
    path = os.path.join(out, CONFIG)
    if not os.path.isfile(path):
        raise RunDirectoryError(f"{out} is not a run directory (no {CONFIG})")
    accepted = ("accepted: the config.json `minipg train` writes, a JSON object with "
                "algorithm, env_id, seed and config")
    try:
        with open(path, encoding="utf-8") as fh:
            saved = json.load(fh)
    except (ValueError, OSError) as exc:           # UnicodeDecodeError is a ValueError
        raise RunDirectoryError(f"{path} is not a minipg run config: {type(exc).__name__}: "
                                f"{exc}; {accepted}") from None
    if not isinstance(saved, dict):
        raise RunDirectoryError(f"{path} is not a minipg run config: it holds a JSON "
                                f"{type(saved).__name__}; {accepted}")
    for key, kind in (("algorithm", str), ("env_id", str), ("seed", int), ("config", dict)):
        value = saved.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or value == "":
            raise RunDirectoryError(
                f"{path} is not a minipg run config: {key!r} is "
                f"{'missing' if key not in saved else repr(value)}; {accepted} "
                f"({key}: {'a non-empty string' if kind is str else kind.__name__})")
    if not 0 <= saved["seed"] <= SEED_HIGH:
        raise RunDirectoryError(f"{path}: seed {saved['seed']} is out of range; accepted: an "
                                f"integer in [0, {SEED_HIGH}]")
    n = saved.get("threads")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise RunDirectoryError(f"{path}: threads {n!r} is not a thread count; accepted: an "
                                f"integer >= 1 (or no threads key: the default rule)")
    return saved


def saved_config(algo_cls, out, saved, **changes):
    """The validated config of the run in ``out`` (``saved``: its config.json), with
    ``changes``; a saved config that does not validate is a RunDirectoryError."""
    try:
        config = config_from(algo_cls.Config, saved["config"])
    except ConfigError as exc:
        raise RunDirectoryError(f"{os.path.join(out, CONFIG)} is not a minipg run config: "
                                f"{exc}") from None
    if changes:
        config = config_from(algo_cls.Config, dict(config_to_dict(config), **changes))
    return config


def resumed_settings(algo_cls, out, total_steps):
    """(env_id, seed, config, checkpoint arrays) of the run in ``out``, with
    ``total_steps`` if given (range-checked like ``--set total_steps``)."""
    if out is None or not os.path.exists(os.path.join(out, CONFIG)):
        raise RunDirectoryError(f"--resume {out}: no {CONFIG} there; nothing to resume")
    saved = read_run_config(out)
    if saved["algorithm"] != algo_cls.name:
        raise RunDirectoryError(f"--resume {out}: that run is {saved['algorithm']}, "
                                f"not {algo_cls.name}")
    changes = {} if total_steps is None else {"total_steps": total_steps}
    config = saved_config(algo_cls, out, saved, **changes)
    path = os.path.join(out, CHECKPOINT)
    if not os.path.exists(path):
        raise RunDirectoryError(
            f"--resume {out}: the run stopped before its first checkpoint, so there is "
            f"nothing to continue from; start it afresh in the same directory with "
            f"`minipg train {algo_cls.name} --out {out} --force` (its settings are in "
            f"{os.path.join(out, CONFIG)})")
    arrays = read_checkpoint(path)
    try:
        done = int(arrays["collector/steps"])
    except (KeyError, ValueError, TypeError):
        raise RunDirectoryError(f"checkpoint {path} does not fit this run (no step "
                                f"counter); it must come from `minipg train`") from None
    if total_steps is not None and done >= config.total_steps:
        raise RunDirectoryError(
            f"--resume {out}: --total-steps {total_steps} is not above the {done} steps the "
            f"run has trained; accepted: --total-steps above {done}")
    if done >= config.total_steps and os.path.exists(os.path.join(out, EVAL)):
        raise RunDirectoryError(
            f"--resume {out}: the run has finished its {config.total_steps} steps (it "
            f"trained {done}); accepted: --total-steps above {done} to train further")
    return saved["env_id"], saved["seed"], config, arrays


def check_out_dir(out, force):
    """Refuse ``out`` unless it is new, empty, or a minipg run with ``force``.

    A directory holding other files is refused even with ``force``: minipg
    never overwrites what it did not write.
    """
    if not os.path.exists(out):
        if os.path.lexists(out):
            raise RunDirectoryError(f"--out {out} is a broken link; accepted: a new or empty "
                                    f"directory")
        return
    if not os.path.isdir(out):
        raise RunDirectoryError(f"--out {out} exists and is not a directory; accepted: a new "
                                f"or empty directory, or a minipg run directory")
    try:
        entries = os.listdir(out)
    except OSError as exc:
        raise RunDirectoryError(f"--out {out}: cannot read the directory ({exc.strerror}); "
                                f"accepted: a directory you can read and write") from None
    if CONFIG in entries:
        if not force:
            has_ckpt = CHECKPOINT in entries
            raise RunDirectoryError(
                f"{out} already holds a run; use --resume {out} to continue it"
                f"{'' if has_ckpt else ' (it has no checkpoint yet)'}, --force to replace "
                f"it, or another --out")
        return
    if entries:
        shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunDirectoryError(
            f"--out {out} is not empty and is not a minipg run (no {CONFIG}; it holds "
            f"{shown}); accepted: a new or empty directory, or a minipg run directory "
            f"(--force replaces only a minipg run)")


def new_settings(algo_cls, env_id, total_steps, seed, out, overrides, force):
    """(env_id, config, out) of a new run: defaults, preset, overrides; a free directory."""
    env_id = algo_cls.default_env if env_id is None else env_id
    overrides = dict(overrides or {})
    if total_steps is not None:
        overrides["total_steps"] = total_steps
    config = resolve_config(algo_cls, env_id, overrides)
    out = out or default_out_dir(algo_cls.name, env_id, seed)
    check_out_dir(out, force)
    return env_id, config, out


def check_task(algo_cls, env_id, config):
    """Refuse, before anything else is built, a task the algorithm cannot train on
    (:meth:`minipg.algorithms.base.Algorithm.check_task`: an unknown id, a missing
    package, observations or actions it does not take, more memory than the machine
    has)."""
    algo_cls.check_task(env_id, config)


def lock_run_dir(out):
    """An exclusive ``flock`` on the directory ``out``, held until its descriptor is
    closed (at the end of the run, or when the process dies)."""
    fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirectoryError(
                f"{out} is in use: another minipg train holds its lock; wait for it to "
                f"finish, or choose another --out") from None
        raise
    return fd


def create_run_dir(out):
    """Create ``out`` (and its parents); True if it was created here."""
    if os.path.isdir(out):
        return False
    try:
        os.makedirs(out)
    except OSError as exc:
        raise RunDirectoryError(f"--out {out}: cannot create the directory "
                                f"({exc.strerror or exc}); accepted: a path where you can "
                                f"create a directory") from None
    return True


def open_run(algo, env_id=None, total_steps=None, seed=0, out=None, overrides=None,
             resume=False, force=False, threads=None):
    """Validate the settings, build the environments and the agent, prepare the directory.

    A new run writes ``config.json`` and a first checkpoint (step 0, so a run
    killed at once can be resumed); a resumed one restores its checkpoint,
    cuts progress.csv back to it and records a changed step budget in
    config.json.  Nothing is written before every check has passed (a
    refused run leaves no directory behind), and the environments are closed
    if opening fails.  The run holds its directory's lock (``Run.lock_fd``)
    until :meth:`Run.close`.

    ``threads``: the BLAS thread count (:mod:`minipg.threads`; None: the user's
    OPENBLAS_NUM_THREADS if set, else the default rule), recorded in config.json;
    a resumed run uses the recorded count (``threads`` must be None).
    """
    algo_cls = get_algorithm(algo)
    arrays = None
    if resume:
        env_id, seed, config, arrays = resumed_settings(algo_cls, out, total_steps)
    else:
        seed = check_seed(seed)
        env_id, config, out = new_settings(algo_cls, env_id, total_steps, seed, out, overrides,
                                           force)
    check_task(algo_cls, env_id, config)
    if resume:
        if threads is not None:
            raise ConfigError("--resume continues a run with the thread count in its "
                              "config.json; --threads cannot change on resume")
        n_threads = read_run_config(out).get("threads")
        n_threads, basis = blas.choose_threads(config, n_threads)
    else:
        n_threads, basis = blas.choose_threads(config, threads)
    wrappers = algo_cls.env_wrappers(config)
    collector = algo_cls.make_collector(env_id, config, seed)
    try:
        agent = algo_cls(config, collector.observation_space, collector.action_space, seed)
    except ValueError as exc:       # the task's spaces do not suit the algorithm
        collector.close()
        raise ConfigError(f"{algo_cls.name} cannot train on {env_id}: {exc}") from None
    except BaseException:
        collector.close()
        raise
    run = Run(algo_cls, env_id, seed, out, config, wrappers, agent, collector, resumed=resume,
              threads=n_threads, threads_basis=basis)
    created = False
    try:
        created = create_run_dir(out)
        run.lock_fd = lock_run_dir(out)
        if resume:
            remove_files(out, [name + ".tmp" for name in RUN_FILES])   # a write cut by kill -9
            restore_arrays(agent, os.path.join(out, CHECKPOINT), arrays, collector)
            run.wall_before = float(arrays["counter/wall_s"])
            cut_progress(os.path.join(out, PROGRESS), collector.steps)
            saved = read_run_config(out)
            if saved["config"].get("total_steps") != config.total_steps:
                saved.setdefault("budget_changes", []).append(
                    {"at_step": collector.steps, "from": saved["config"].get("total_steps"),
                     "to": config.total_steps,
                     "time": datetime.now(timezone.utc).isoformat()})
                saved["config"]["total_steps"] = config.total_steps
                write_json(os.path.join(out, CONFIG), saved)
        else:
            check_out_dir(out, force)            # again, now that the lock is held
            # --force: the old run's files go first
            remove_files(out, list(RUN_FILES) + [name + ".tmp" for name in RUN_FILES])
            write_run_config(run)
            TrainingLoop(run, None).checkpoint(wall=0.0)
    except BaseException:
        locked = run.lock_fd is not None
        run.close()
        if created and locked:                   # a directory this run made, and only it
            try:
                for name in os.listdir(out):
                    os.remove(os.path.join(out, name))
                os.rmdir(out)
            except OSError:
                pass
        raise
    return run


def remove_files(out, names):
    """Remove the files ``names`` of the directory ``out`` where they exist."""
    for name in names:
        path = os.path.join(out, name)
        if os.path.lexists(path):
            os.remove(path)


def write_json(path, obj):
    """``obj`` as indented JSON, written atomically."""
    write_atomic(path, lambda fh: fh.write(json.dumps(obj, indent=2).encode()),
                 os.path.basename(path))


def write_run_config(run):
    """config.json: the algorithm, the task, the seed, the BLAS thread count and what
    chose it (``threads_basis``: minipg.threads.choose_threads), every setting, the
    versions."""
    write_json(os.path.join(run.out, CONFIG),
               {"algorithm": run.algo_cls.name, "env_id": run.env_id, "seed": run.seed,
                "threads": run.threads, "threads_basis": run.threads_basis,
                "config": config_to_dict(run.config),
                "versions": versions(),
                "started": datetime.now(timezone.utc).isoformat()})


# --- the loop ----------------------------------------------------------------------------
class CtrlC:
    """Ctrl-C (SIGINT) or SIGTERM as a request to stop: the first sets ``requested`` to
    the signal's number (the loop finishes its iteration, writes a checkpoint and
    stops), a second raises KeyboardInterrupt.

    A context manager: the handlers are installed on entry and the previous ones
    restored on exit; outside the main thread no handler can be installed and
    the signals act as usual.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = None
        self.previous = {}

    def __call__(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signum

    def __enter__(self):
        for signum in self.SIGNALS:
            previous = signal.getsignal(signum)
            try:
                signal.signal(signum, self)
                self.previous[signum] = previous
            except ValueError:      # not the main thread
                pass
        return self

    def __exit__(self, *exc):
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        self.previous = {}
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

    def checkpoint(self, wall=None):
        """checkpoint.npz: the agent's and the collector's state, the wall time, the config."""
        run = self.run
        arrays = run.agent.state_arrays()
        arrays.update(run.collector.state_arrays())
        arrays["counter/wall_s"] = np.asarray(self.wall() if wall is None else wall)
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
        if hasattr(collector, "progress_columns"):    # e.g. one return column per agent
            row.update(collector.progress_columns())
        row.update(metrics)
        return row

    def loop(self):
        """Train until the step budget is spent or a stop signal; the signal's number if
        one stopped it (SIGINT, SIGTERM), else None.

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
                    try:
                        metrics = agent.learn(collector)
                    except WorkerError as exc:     # a worker process or actor failed
                        self.checkpoint()          # its siblings are stopped: state is still
                        exc.add_note(f"checkpoint at step {collector.steps} written; continue "
                                     f"with: minipg train {run.algo_cls.name} --resume {run.out}")
                        raise
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


def warnings_for(run):
    """Lines warning of a run that will surprise: a budget that ends before learning
    starts; an off-policy resume without its replay buffer (not exact)."""
    config, lines = run.config, []
    starts = getattr(config, "learning_starts", None)
    if starts is not None and config.total_steps <= starts:
        lines.append(
            f"warning: total_steps={config.total_steps} ends before learning_starts={starts}: "
            f"the run makes no gradient update, its loss columns stay 0 and its policy is "
            f"the initial one; accepted for learning: --total-steps above {starts}, or a "
            f"lower --set learning_starts")
    if run.resumed and getattr(config, "checkpoint_replay", True) is False:
        lines.append(
            f"note: {run.algo_cls.name} resumes with an empty replay buffer "
            f"(checkpoint_replay=false), so it does not continue exactly as an uninterrupted "
            f"run would; start runs with --set checkpoint_replay=true for an exact resume")
    return lines


def train(algo, env_id=None, total_steps=None, seed=0, out=None, overrides=None,
          resume=False, force=False, stream=sys.stderr, raise_on_interrupt=False,
          threads=None):
    """Train ``algo`` on ``env_id``; returns the run directory. See the module docstring.

    :func:`open_run` (new or resumed), then the :class:`TrainingLoop`, then
    the final deterministic evaluation into eval.json.  A stop signal
    (Ctrl-C, SIGTERM) ends training after a final checkpoint, without the
    evaluation: ``train`` then says so on ``stream`` and returns the run
    directory, or raises :class:`Interrupted` with ``raise_on_interrupt``
    (what the command line does, to exit 130 / 143).  The BLAS pools run on
    ``threads`` threads (:func:`open_run`; recorded in config.json) while it trains
    and evaluates, and are restored on return.
    """
    run = open_run(algo, env_id, total_steps, seed, out, overrides, resume, force, threads)
    try:
        with blas.limit(run.threads):
            result = _train_open_run(run, stream, raise_on_interrupt)
    finally:
        run.close()
    if result is None:
        return run.out
    stream.write(f"evaluation: return {result['return_mean']:.1f} +- {result['return_std']:.1f} "
                 f"over {result['episodes']} episodes; run directory {run.out}\n")
    return run.out


def _train_open_run(run, stream, raise_on_interrupt):
    """The loop and the evaluation of an opened run: eval.json's dict, or None when a
    stop signal ended training (see :func:`train`)."""
    try:
        for line in warnings_for(run):
            stream.write(line + "\n")
        stream.flush()
        signum = TrainingLoop(run, stream).loop()
        if signum:
            stopped = Interrupted(signum, run.out, run.collector.steps, run.algo_cls.name)
            if raise_on_interrupt:
                raise stopped
            stream.write(f"{stopped}\n")
            return None
        result = evaluate_agent(run.agent, run.env_id, run.config.eval_episodes,
                                seed=run.seed + 10_000)
        write_json(os.path.join(run.out, EVAL), result)
    except RunWriteError as exc:
        raise RunWriteError(exc.errno, f"{exc.strerror}; once it can be written, continue "
                            f"with: minipg train {run.algo_cls.name} --resume {run.out}") from None
    return result


def load_run(out):
    """(algorithm instance, config dict) rebuilt from a run directory's checkpoint."""
    saved = read_run_config(out)
    try:
        algo_cls = get_algorithm(saved["algorithm"])
    except ConfigError as exc:
        raise RunDirectoryError(f"{os.path.join(out, CONFIG)} is not a minipg run config: "
                                f"{exc}") from None
    config = saved_config(algo_cls, out, saved)
    collector = algo_cls.make_collector(saved["env_id"], config, saved["seed"], n_envs=1)
    try:
        agent = algo_cls(config, collector.observation_space, collector.action_space,
                         saved["seed"])
    except ValueError as exc:
        raise RunDirectoryError(f"{algo_cls.name} cannot be rebuilt on {saved['env_id']}: "
                                f"{exc}") from None
    finally:
        collector.close()
    restore_checkpoint(agent, os.path.join(out, CHECKPOINT))
    return agent, saved


def check_video_path(video):
    """``video`` if a GIF can be written there: a .gif path in an existing directory."""
    if not video.lower().endswith(".gif"):
        raise ConfigError(f"--video {video}: accepted: a path ending in .gif")
    folder = os.path.dirname(os.path.abspath(video))
    if not os.path.isdir(folder):
        raise ConfigError(f"--video {video}: the directory {os.path.dirname(video) or '.'} "
                          f"does not exist; accepted: a .gif path in an existing directory")
    if os.path.isdir(video):
        raise ConfigError(f"--video {video} is a directory; accepted: a .gif file path")
    return video


def quiet_sdl():
    """Keep SDL (pygame's renderer) from printing its XDG_RUNTIME_DIR and audio
    complaints: rendering to arrays needs neither a display nor sound."""
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    if not os.environ.get("XDG_RUNTIME_DIR"):
        import tempfile
        os.environ["XDG_RUNTIME_DIR"] = tempfile.gettempdir()


def evaluate_run(out, episodes=10, seed=None, render=None, video=None, threads=None):
    """Reload the run in ``out`` and evaluate it; with ``video``, stream its frames to a
    GIF (:class:`minipg.envs.video.GifWriter`: memory independent of the length).  The
    BLAS pools run on ``threads`` threads (None: the run's recorded count)."""
    if video is not None and render != "rgb_array":
        raise ConfigError("--video needs --render rgb_array")
    if video is not None:
        check_video_path(video)
    if threads is not None:
        threads = blas.check_threads(threads)
    if render is not None:
        quiet_sdl()
    agent, saved = load_run(out)
    if threads is None:
        threads = blas.resolve_threads(agent.config, saved.get("threads"))
    with blas.limit(threads):
        return _evaluate_loaded(agent, saved, episodes, seed, render, video)


def _evaluate_loaded(agent, saved, episodes, seed, render, video):
    """:func:`evaluate_run` on the run already loaded."""
    seed = saved["seed"] + 10_000 if seed is None else seed
    writer = None
    if video is not None:
        from .envs.video import GifWriter
        try:
            writer = GifWriter(video)
        except ImportError as exc:
            raise ConfigError(f"--video: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"--video {video}: cannot write it ({exc.strerror}); accepted: "
                              f"a .gif path you can write to") from None
    frames = writer if writer is not None else (FrameCount() if render else None)
    try:
        result = evaluate_agent(agent, saved["env_id"], episodes, seed, render, frames)
    except gym_error.DependencyNotInstalled as exc:
        raise ConfigError(f"cannot render {saved['env_id']}: {exc} (minipg's `render` extra "
                          f"installs it: pip install 'minipg[render]')") from None
    finally:
        if writer is not None:
            writer.close()
            if writer.frames == 0 and os.path.exists(video):
                os.remove(video)                # no empty GIF left behind
    if writer is not None:
        if writer.frames == 0:
            raise ConfigError(f"--video {video}: {saved['env_id']} rendered no frames; "
                              f"accepted: a task that renders in rgb_array mode")
        result["video"] = video
        result["video_frames"] = writer.frames
    return result


class FrameCount:
    """A frame sink for ``--render`` without ``--video``: counts the frames, keeps none."""

    def __init__(self):
        self.frames = 0

    def append(self, frame):
        self.frames += frame is not None
