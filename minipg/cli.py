"""The `minipg` command line.

    minipg bench [--repeats N] [--quick] [--case a b c] [--dtype float64 float32]
                 [--no-kernels] [--threads N]

More subcommands (train, evaluate, list, audit, reference, plot) arrive with
the algorithms; see README.md.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__


def _bench(args):
    if "numpy" not in sys.modules:
        # One BLAS thread, like the one-thread PyTorch it is compared with.
        # These must be set before NumPy loads its BLAS.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(args.threads))
    from . import bench
    bench.run(repeats=args.repeats, quick=args.quick, cases=args.case, dtypes=args.dtype,
              kernels=not args.no_kernels, threads=args.threads)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minipg",
        description="minipg: a NumPy reference implementation of policy-gradient RL.")
    parser.add_argument("--version", action="version", version=f"minipg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

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
    b.add_argument("--threads", type=int, default=1,
                   help="threads for PyTorch, and for NumPy's BLAS unless OPENBLAS_NUM_THREADS "
                        "is already set (the header prints both)")
    b.set_defaults(func=_bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    for flag in ("repeats", "threads"):
        if getattr(args, flag, 1) < 1:
            print(f"minipg: error: --{flag} must be >= 1, got {getattr(args, flag)}",
                  file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("minipg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
