"""How many BLAS threads minipg's matrix products run on, chosen on purpose.

NumPy's BLAS (OpenBLAS in the NumPy wheels) starts one thread per core.  On
minipg's small networks the second thread spins on products too small to
share and costs CPU time and wall time; on large ones (SAC's and TD3's
256-256 networks at batch 256) it gains.  This module sets the pool's size
after NumPy is loaded, through threadpoolctl (a runtime dependency: the
default command uses it).

* :func:`default_threads` -- the rule: ``min(2, os.cpu_count())`` threads
  when the largest product of an update, batch x width x width (the widest
  hidden layer, the update's batch of rows), reaches ``LARGE_PRODUCT`` =
  256 x 256 x 256, else 1.  Measured on the 2-core machine (OpenBLAS 0.3.31,
  float64; one layer's three products, median of 7 x 500 calls, two runs;
  verification/results/threads.md), two threads' time over one's: 256x256 at
  batch 256 0.61-0.86; 512x512 at batch 64 0.56; 256x256 at batch 64 1.07 (no
  gain); 64x64 at batch 64 1.01.  64x64 at batch 256 gains in the products
  alone (0.64-0.83), but the whole CartPole PPO run (64-64, minibatch 256) is
  no faster on two threads and takes 1.8x the CPU: between updates the acting
  products (a few rows) leave the second thread spinning.  And two threads only
  where a second core is idle: cores minus the 1-minute load average at least
  ``IDLE_CORE_LOAD`` = 1.5 (on 2 cores: a load of 0.5 or less).  With the other
  core busy, OpenBLAS's second thread waits for a time slice at every product:
  SAC's preset update on the 2-core machine at a load average of 2-6 took
  72-80 ms on two threads against 9 ms on one
  (verification/results/threads.md).
* :func:`check_threads` -- a requested count checked: an integer >= 1
  (ConfigError otherwise); above ``os.cpu_count()`` a warning and the cap.
* :func:`set_threads`, :func:`limit` (a context manager), :func:`blas_threads`
  (the count in effect, from threadpoolctl's info).
* :func:`user_env_threads` -- an OPENBLAS_NUM_THREADS / OMP_NUM_THREADS /
  MKL_NUM_THREADS the user set; where there is one and no count was asked
  for, it wins over the default rule.  The command line notes the user's
  variables (:func:`note_environment`) before it sets its own.

Checked, not guaranteed for every size and BLAS: a CartPole PPO run (4096
steps, seed 1) writes the same progress.csv on 1 and 2 threads but for the
timing columns, and the same checkpoint arrays (verification/results/threads.md).
"""

from __future__ import annotations

import contextlib
import os
import warnings

from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["ENV_VARS", "LARGE_PRODUCT", "IDLE_CORE_LOAD", "check_threads", "default_threads",
           "busy_cores", "cpu_count",
           "set_threads", "limit", "blas_threads", "user_env_threads", "note_environment",
           "resolve_threads"]

ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
LARGE_PRODUCT = 256 * 256 * 256
IDLE_CORE_LOAD = 1.5     # cores minus the load average: two threads need this much idle

_noted = None          # the user's thread variables, noted by the command line


def cpu_count():
    """The machine's cores (``os.cpu_count()``; 1 where unknown)."""
    return os.cpu_count() or 1


def _config_error(message):
    from .algorithms.base import ConfigError
    return ConfigError(message)


def check_threads(n, what="--threads"):
    """``n`` as a thread count: an integer >= 1 (ConfigError naming ``what`` and the
    accepted range otherwise); above the machine's cores a warning and the cap."""
    high = cpu_count()
    accepted = f"accepted: an integer from 1 to {high} (the machine's cores)"
    from .algorithms.base import parse_int   # late: the command line loads NumPy after us
    try:
        n = parse_int(n)
    except (ValueError, TypeError, OverflowError):
        raise _config_error(f"{what}: {n!r} is not an integer; {accepted}") from None
    if n < 1:
        raise _config_error(f"{what}: {n} is out of range; {accepted}")
    if n > high:
        warnings.warn(f"{what} {n}: this machine has {high} cores; using {high}", stacklevel=2)
        n = high
    return n


def busy_cores():
    """The machine's load: the 1-minute load average (runnable processes), or 0 where the
    system does not report one."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def default_threads(config, load=None):
    """The default rule (module docstring): two threads (at most the cores) where an
    update's largest product, rows x width x width, reaches LARGE_PRODUCT and a second
    core is free (``load``, the 1-minute load average, at most cores - IDLE_CORE_LOAD;
    None: read now); else one."""
    hidden = tuple(getattr(config, "hidden", ()) or ())
    width = max(hidden, default=0)
    from .algorithms.base import update_rows
    if update_rows(config)[0] * width * width < LARGE_PRODUCT:
        return 1
    load = busy_cores() if load is None else float(load)
    if cpu_count() - load < IDLE_CORE_LOAD:     # no idle core for the second thread
        return 1
    return min(2, cpu_count())


def note_environment(environ=None):
    """Note which thread variables the user set (before the command line sets its own)."""
    global _noted
    environ = os.environ if environ is None else environ
    _noted = {var: environ[var] for var in ENV_VARS if environ.get(var, "").strip()}


def user_env_threads():
    """The thread count the user's environment asks for (OPENBLAS_NUM_THREADS, then
    OMP_NUM_THREADS, then MKL_NUM_THREADS), or None where it asks for none."""
    env = _noted if _noted is not None else os.environ
    for var in ENV_VARS:
        try:
            n = int(str(env.get(var, "")).strip())
        except ValueError:
            continue
        if n >= 1:
            return n
    return None


def resolve_threads(config, threads=None):
    """The count a run uses: ``threads`` when given (checked), else the user's
    environment variable, else :func:`default_threads`."""
    if threads is not None:
        return check_threads(threads)
    env = user_env_threads()
    if env is not None:
        return min(env, cpu_count())
    return default_threads(config)


def blas_threads():
    """The BLAS thread count in effect (the largest over NumPy's BLAS pools), or None
    where threadpoolctl finds no BLAS pool."""
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return max(counts) if counts else None


def set_threads(n):
    """Set the BLAS pools to ``n`` threads (checked) for the rest of the process; returns
    the count in effect before."""
    n = check_threads(n)
    before = blas_threads()
    threadpool_limits(n, user_api="blas")
    return before


@contextlib.contextmanager
def limit(n):
    """``with limit(n):`` the BLAS pools on ``n`` threads (checked), restored on exit."""
    n = check_threads(n)
    with threadpool_limits(n, user_api="blas"):
        yield n
