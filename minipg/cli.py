"""The `minipg` command line.

    minipg train ALGO [--env ENV_ID] [--total-steps N] [--seed S] [--out DIR]
                      [--set key=value ...] [--resume DIR] [--force] [--threads N]
    minipg train ALGO --help          (every setting of ALGO: help, default, range)
    minipg evaluate DIR [--episodes N] [--render rgb_array --video PATH.gif] [--threads N]
    minipg plot DIR... [--out PNG] [--title TITLE]
    minipg list
    minipg audit [ALGO ...] [--full] [--seed S]
    minipg audit --estimator MODULE:FUNCTION --check NAME [--policy linear|tabular] [--seed S]
                                      (your own estimator on an exact bed; no ALGO, no --full)
    minipg audit --check NAME         (what the check passes to the function, and expects)
    minipg reference --out DIR [--only NAME ...] [--profile minipg|sb3|cleanrl]
    minipg reference --check DIR_A DIR_B [--only NAME ...] [--arrays PATTERN ...] [--present-only]
    minipg bench [--repeats N] [--quick] [--case a b c] [--dtype float64 float32]
                 [--no-kernels] [--threads N]
    minipg --version

Exit status (README.md, "The command line"): 0 finished; 1 ``audit`` or
``reference --check`` found a failing check; 2 bad input (an
unknown algorithm, task or setting, a bad value, a run that would not fit in
memory, an occupied, locked or corrupt run directory: one clear line, no
traceback); 3 training stopped on a NaN or infinity or by a failing worker
(A3C, D4PG: its error and traceback, after a checkpoint); 4 the run directory
could not be written (a full disk); 128 + the signal's number when Ctrl-C
(130) or SIGTERM (143) stopped training after a final checkpoint.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
import warnings

from . import __version__
from . import threads as blas

THREADS_HELP = ("BLAS threads for NumPy's matrix products: an integer from 1 to the machine's "
                "cores (more: a warning and the cap)")
THREADS_DEFAULT = ("default: OPENBLAS_NUM_THREADS, OMP_NUM_THREADS or MKL_NUM_THREADS where "
                   "you set one (--threads overrides it), else 1, or 2 where an update's "
                   "batch x width x width reaches 256**3 (SAC and TD3 at 256-256, batch 256) "
                   "and a second core is idle (measured over 0.2 s from /proc/stat; "
                   "minipg.threads)")


def _bench(args):
    from . import bench
    threads = args.threads
    if threads is None:                 # one thread, like the one-thread PyTorch compared
        threads = blas.user_env_threads() or 1
    threads = min(threads, blas.cpu_count())
    bench.run(repeats=args.repeats, quick=args.quick, cases=args.case, dtypes=args.dtype,
              kernels=not args.no_kernels, threads=threads, blas_threads=threads)
    return 0


def _user_errors():
    from .algorithms.base import ConfigError
    from .envs.vector import UnknownEnvironmentError, UnsupportedEnvironmentError
    from .run import NonFiniteError, RunDirectoryError
    return ((ConfigError, UnknownEnvironmentError, UnsupportedEnvironmentError,
             RunDirectoryError), NonFiniteError)


def _train_help(args):
    """``minipg train [ALGO] --help``: the options, then ALGO's settings and presets."""
    if args.algorithm is None:
        print(args.parser.format_help(), end="")
        print("\n`minipg train ALGO --help` lists ALGO's settings (`minipg list` names them).")
        return 0
    from . import algorithms
    from .algorithms.base import config_help
    cls = algorithms.get(args.algorithm)                # an unknown name: a clear error first
    print(args.parser.format_help(), end="")
    print(f"\nsettings of {cls.name} (--set NAME=VALUE; the defaults below, then the task's "
          f"preset, then --set):")
    print("\n".join(config_help(cls.Config)))
    if cls.presets:
        print(f"\npresets of {cls.name} (default task {cls.default_env}):")
        for env_id, preset in cls.presets.items():
            values = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
                               for k, v in preset.items()) or "the defaults"
            print(textwrap.fill(f"{env_id}: {values}", width=100, initial_indent="  ",
                                subsequent_indent=" " * 6))
    return 0


def _train(args):
    from .algorithms.base import ConfigError, parse_assignments
    from .run import check_seed, train
    if args.help:
        return _train_help(args)
    if args.algorithm is None:
        args.parser.error("the following arguments are required: algorithm")
    from . import algorithms
    algo = algorithms.get(args.algorithm)
    if args.resume is not None:
        fixed = [flag for flag, value in (("--env", args.env), ("--seed", args.seed),
                                          ("--out", args.out), ("--set", args.set or None),
                                          ("--force", args.force or None),
                                          ("--threads", args.threads))
                 if value is not None]
        if fixed:
            raise ConfigError(
                f"--resume continues a run with the settings in its config.json; "
                f"{', '.join(fixed)} cannot change on resume. Accepted with --resume: "
                f"--total-steps N (a new step budget, recorded in config.json); for other "
                f"settings start a new run with another --out")
    seed = 0 if args.seed is None else check_seed(args.seed)
    train(algo.name, env_id=args.env, total_steps=args.total_steps, seed=seed,
          out=args.resume or args.out, overrides=parse_assignments(args.set),
          resume=args.resume is not None, force=args.force, raise_on_interrupt=True,
          threads=args.threads)
    return 0


def _evaluate(args):
    from .run import evaluate_run
    result = evaluate_run(args.run_dir, episodes=args.episodes, render=args.render,
                          video=args.video, threads=args.threads)
    print(f"return {result['return_mean']:.2f} +- {result['return_std']:.2f} over "
          f"{result['episodes']} episodes")
    if "video" in result:
        print(f"wrote {result['video_frames']} frames to {os.path.abspath(result['video'])}")
    return 0


def _plot(args):
    from .plot import PlotError, PlotUnavailable, plot_runs
    try:
        out = plot_runs(args.run_dirs, args.out, title=args.title)
    except (PlotUnavailable, PlotError, FileNotFoundError) as exc:
        print(f"minipg: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _list(args):
    from . import algorithms
    rows = []
    for name in algorithms.names():
        cls = algorithms.get(name)
        rows.append((name, "/".join(cls.action_kinds), cls.default_env, cls.description))
    widths = [max(len(r[i]) for r in rows + [("algorithm", "actions", "default task", "")])
              for i in range(3)]
    print(f"{'algorithm':<{widths[0]}}  {'actions':<{widths[1]}}  {'default task':<{widths[2]}}"
          f"  description")
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    return 0


def _audit(args):
    """Exit status: 0 when every selected check passed, 1 when one failed (or none ran),
    2 for an unknown algorithm or a check module that cannot be imported.  With
    --estimator MODULE:FUNCTION --check NAME: one check of minipg.audit.exact on that
    function (0 pass, 1 fail, 2 a usage error or bad output from the function); --check
    NAME alone prints what the function receives and must return."""
    from . import audit
    from .registry import RegistryError
    if args.estimator is not None or args.check is not None:
        from .audit import exact
        try:
            if args.algorithms or args.full:
                raise exact.UsageError("--estimator/--check audit one outside function; they "
                                       "take no algorithm names and no --full")
            if args.estimator is None:
                print(exact.describe(args.check))
                return 0
            if args.check is None:
                raise exact.UsageError(f"--estimator needs --check NAME; accepted: "
                                       f"{', '.join(exact.check_names())}")
            result = exact.check(args.check, exact.load_estimator(args.estimator),
                                 seed=args.seed, policy=args.policy)
        except exact.USER_ERRORS as exc:
            print(f"minipg: error: {exc}", file=sys.stderr)
            return 2
        print(result)
        return 0 if result.passed else 1
    try:
        audit.checks(args.algorithms)          # imports the check modules, checks the names
    except (audit.UnknownAlgorithmError, RegistryError) as exc:
        print(f"minipg: error: {exc}", file=sys.stderr)
        return 2
    print(audit.header(), flush=True)
    results = audit.run(args.algorithms, full=args.full, seed=args.seed,
                        on_result=lambda r: print(audit.format_row(r), flush=True))
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed}/{len(results)} checks passed"
          f"{'' if args.full else ' (quick mode; --full for large samples)'}")
    return 0 if failed == 0 and results else 1


def _reference(args):
    from . import reference
    try:
        if args.check:
            if args.profile is not None:
                raise reference.ReferenceUsageError("--profile is for --out; --check reads the "
                                                    "profile from the manifests")
            rows, notes = reference.check(*args.check, only=args.only, arrays=args.arrays,
                                          present_only=args.present_only)
            print(reference.report(rows, notes))
            return 0 if all(r.passed for r in rows) else 1
        if args.arrays is not None or args.present_only:
            raise reference.ReferenceUsageError("--arrays and --present-only are for --check")
        profile = args.profile or reference.DEFAULT_PROFILE
        names = reference.write(args.out, only=args.only, profile=profile)
    except reference.ReferenceUsageError as exc:
        print(f"minipg: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(names)} reference cases ({profile} conventions) to {args.out}: "
          f"{', '.join(names)}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minipg",
        description="minipg: a NumPy reference implementation of policy-gradient RL.")
    parser.add_argument("--version", action="version", version=f"minipg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train an agent and write a run directory", add_help=False,
                       description="Train ALGO on a gymnasium task. Writes DIR/config.json, "
                                   "progress.csv, checkpoint.npz and eval.json.")
    t.add_argument("-h", "--help", action="store_true",
                   help="show this help (with ALGO: and every setting of ALGO) and exit")
    t.add_argument("algorithm", nargs="?", default=None,
                   help="algorithm name (see `minipg list`)")
    t.add_argument("--env", default=None, help="gymnasium id (default: the algorithm's task)")
    t.add_argument("--total-steps", default=None, metavar="N",
                   help="environment steps (the setting total_steps: the same rule as --set "
                        "total_steps=N, e.g. 100000 or 1e5; with --resume: the new budget)")
    t.add_argument("--seed", default=None, metavar="S",
                   help="an integer in [0, 2**32 - 1] (default 0)")
    t.add_argument("--out", default=None, help="run directory (default runs/ALGO-ENV-SEED-TIME)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting (repeatable)")
    t.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    t.add_argument("--force", action="store_true", help="overwrite the run already in --out")
    t.add_argument("--threads", default=None, metavar="N",
                   help=f"{THREADS_HELP}; recorded in config.json, and --resume uses the "
                        f"recorded count; {THREADS_DEFAULT}. The results do not depend on it "
                        f"(checked: a CartPole PPO run writes the same progress.csv on 1 and "
                        f"2 threads)")
    t.set_defaults(func=_train, parser=t)

    e = sub.add_parser("evaluate", help="reload a run and evaluate its deterministic policy")
    e.add_argument("run_dir")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--render", choices=["rgb_array"], default=None,
                   help="render the episodes (needs the task's renderer, e.g. pygame)")
    e.add_argument("--video", default=None, metavar="PATH",
                   help="with --render rgb_array: write the frames to PATH (.gif, Pillow)")
    e.add_argument("--threads", default=None, metavar="N",
                   help=f"{THREADS_HELP}; default: the count in the run's config.json")
    e.set_defaults(func=_evaluate)

    a = sub.add_parser("audit", help="check every estimator's gradient; exit 0 only if all pass",
                       description="Per estimator: gradcheck of its loss, the closed-form "
                                   "formula check, and the exact-gradient statistical check.")
    a.add_argument("algorithms", nargs="*", help="algorithms to audit (default: all)")
    a.add_argument("--full", action="store_true", help="large samples (slower)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--estimator", default=None, metavar="MODULE:FUNCTION",
                   help="audit your own estimator (an importable function on NumPy arrays) "
                        "against the exact test beds; with --check")
    a.add_argument("--check", default=None, metavar="NAME",
                   help="the exact check to run on --estimator (alone: print what the function "
                        "receives and returns); see minipg.audit.exact")
    a.add_argument("--policy", choices=["linear", "tabular"], default="linear",
                   help="with --check: the bed's softmax policy, linear in random features or "
                        "tabular (theta = its logits)")
    a.set_defaults(func=_audit)

    r = sub.add_parser("reference", help="write seeded reference inputs and float64 outputs, or "
                                         "compare two reference directories",
                       description="--out DIR writes DIR/<case>/manifest.json and one .npy per "
                                   "array for every estimator (schema: "
                                   "verification/reference/SCHEMA.md). --check DIR_A DIR_B "
                                   "compares two such directories with the manifests' "
                                   "tolerances; exit 0 only if all agree.")
    how = r.add_mutually_exclusive_group(required=True)
    how.add_argument("--out", metavar="DIR", help="write the reference cases into DIR")
    how.add_argument("--check", nargs=2, metavar=("DIR_A", "DIR_B"),
                     help="compare two reference directories and print a per-case table")
    r.add_argument("--only", nargs="+", metavar="NAME", default=None,
                   help="only these cases (default: all)")
    r.add_argument("--profile", choices=["minipg", "sb3", "cleanrl"], default=None,
                   help="with --out: write the cases in the conventions of minipg (default), "
                        "stable-baselines3 or CleanRL (each manifest states them)")
    r.add_argument("--arrays", nargs="+", metavar="PATTERN", default=None,
                   help="with --check: compare only the arrays these globs select "
                        "('J_Q1', 'grad.J_pi.*', or 'case/array' such as 'ppo_objective/*'); "
                        "the others are listed as not checked")
    r.add_argument("--present-only", action="store_true",
                   help="with --check: compare only the arrays DIR_B has; the others are listed "
                        "as not checked")
    r.set_defaults(func=_reference)

    pl = sub.add_parser("plot", help="PNG of learning curves (optional matplotlib)")
    pl.add_argument("run_dirs", nargs="+", metavar="DIR")
    pl.add_argument("--out", default="learning_curves.png", help="PNG path")
    pl.add_argument("--title", default=None)
    pl.set_defaults(func=_plot)

    ls = sub.add_parser("list", help="the algorithms, their action spaces and default tasks")
    ls.set_defaults(func=_list)

    b = sub.add_parser("bench", help="time the engine against a plain-NumPy floor and PyTorch",
                       description="Time one gradient step (forward, backward, Adam) of small "
                                   "MLPs against hand-written NumPy and, when installed, "
                                   "PyTorch (1 thread); then each numba kernel against its "
                                   "NumPy twin.")
    b.add_argument("--repeats", type=int, default=7, help="repeats per timing (median taken)")
    b.add_argument("--quick", action="store_true", help="fewer iterations per repeat")
    b.add_argument("--case", nargs="+", choices=["a", "b", "c"], default=["a", "b", "c"],
                   help="(a) 4-64-64-2 tanh batch 64; (b) 23-256-256-1 relu batch 256; "
                        "(c) 3-64-64-1 tanh batch 1, forward only")
    b.add_argument("--dtype", nargs="+", choices=["float64", "float32"],
                   default=["float64", "float32"])
    b.add_argument("--no-kernels", action="store_true", help="skip the kernel table")
    b.add_argument("--threads", default=None, metavar="N",
                   help="threads for PyTorch and NumPy's BLAS: an integer from 1 to the "
                        "machine's cores (default: OPENBLAS_NUM_THREADS where you set it, "
                        "else 1; --threads overrides it; the header prints the count in "
                        "effect)")
    b.set_defaults(func=_bench)
    return parser


def _one_blas_thread():
    """Note the thread variables the user set (:func:`minipg.threads.note_environment`:
    one the user set wins over the default rule), then start NumPy's BLAS on one
    thread: each command then sets the count it uses (:mod:`minipg.threads`, through
    threadpoolctl), so no thread is started to spin at load, and the environments' worker
    processes (vectorization=async) stay on one.  minipg's matrices are small: with a
    BLAS thread per core, the threads spin on them and on a busy 2-core machine a TRPO
    run took 6x longer (verification/results/trpo_speed.md)."""
    blas.note_environment()
    if "numpy" not in sys.modules:
        for var in blas.ENV_VARS:
            os.environ.setdefault(var, "1")


def _check_threads(args):
    """--threads checked (minipg.threads.check_threads): 2 and one line for a bad value,
    a warning line and the cap above the machine's cores; else None."""
    from .algorithms.base import ConfigError
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            args.threads = blas.check_threads(args.threads)
        except ConfigError as exc:
            print(f"minipg: error: {exc}", file=sys.stderr)
            return 2
    for w in caught:
        print(f"minipg: warning: {w.message}", file=sys.stderr)
    return None


def main(argv=None):
    _one_blas_thread()
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None) is not None:
        status = _check_threads(args)
        if status is not None:
            return status
    for flag in ("repeats", "episodes"):
        if getattr(args, flag, 1) < 1:
            print(f"minipg: error: --{flag} must be >= 1, got {getattr(args, flag)}",
                  file=sys.stderr)
            return 2
    user_errors, non_finite = _user_errors()
    from .parallel import WorkerError as worker_error
    try:
        return args.func(args)
    except user_errors as exc:
        print(f"minipg: error: {exc}", file=sys.stderr)
        return 2
    except non_finite as exc:
        print(f"minipg: training stopped: {exc}; the last good checkpoint is kept",
              file=sys.stderr)
        return 3
    except worker_error as exc:          # a worker's exception: its traceback, no ours
        print(f"minipg: training stopped: {exc.summary}", *getattr(exc, "__notes__", ()),
              f"the worker's traceback:\n{exc.traceback}", sep="\n", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("minipg: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as exc:
        from .run import Interrupted, RunWriteError
        if isinstance(exc, Interrupted):
            print(f"minipg: {exc}", file=sys.stderr)
            return 128 + exc.signum
        if isinstance(exc, RunWriteError):
            print(f"minipg: error: {exc.strerror}", file=sys.stderr)
            return 4
        raise


if __name__ == "__main__":
    sys.exit(main())
