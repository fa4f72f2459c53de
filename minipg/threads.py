"""How many BLAS threads minipg's matrix products run on, chosen on purpose.

NumPy's BLAS (OpenBLAS in the NumPy wheels) starts one thread per core.  On
minipg's small networks the second thread spins on products too small to
share and costs CPU time and wall time; on large ones (SAC's and TD3's
256-256 networks at batch 256) it gains.  This module sets the pool's size
after NumPy is loaded, through threadpoolctl (a runtime dependency: the
default command uses it).

* :func:`default_threads` -- the rule: ``min(2, cpu_count())`` threads
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
  where a second core is idle: the cores the rest of the machine keeps busy,
  measured (:func:`measure_busy_cores`), leave at least ``IDLE_CORE_LOAD`` = 1.5
  cores idle (on 2 cores: at most half a core busy), a whole core for the main
  thread and at least half of one for the second.  With the other core busy,
  OpenBLAS's second thread waits for a time slice at every product: SAC's preset
  update on the 2-core machine at a load average of 2-6 took 72-80 ms on two
  threads against 9 ms on one (verification/results/threads.md).

  The busy cores are measured, not read from the 1-minute load average: that
  average lags by a minute (an exponential average over a minute), so a job that
  has just ended still counts and one that has just started does not; a default
  SAC run started right after another two-thread job on the idle machine got one
  thread (verification/results/offpolicy_speed.md).  :func:`measure_busy_cores`
  reads /proc/stat's ``cpu`` counters (the aggregate line, or the ``cpuN`` lines
  of the CPUs this process may run on where taskset or a cpuset narrows them)
  twice, ``BUSY_WINDOW_S`` = 0.2 s apart, and takes (non-idle jiffies / all jiffies) x cores over the window, where
  idle is the ``idle`` and ``iowait`` columns (a core waiting for a disk runs
  nothing) and ``steal`` counts as busy (the hypervisor gave the core away).
  Why 0.2 s: the counters tick at 100 Hz, so 2 cores give 40 ticks in the window
  (a resolution of 0.05 cores), and the window spans tens of the scheduler's time
  slices (a few ms each) while adding little to a start that takes seconds (only
  runs whose products reach LARGE_PRODUCT measure; the others pay nothing).  A
  shorter window is noisier; a longer one slows the start for little.  Our own
  process adds nothing: it sleeps through the window (the command line's BLAS
  pool is one thread, and the environments' workers start after the count is
  chosen), so the sample sees the rest of the machine.  What it cannot see is
  work that starts after the window.  Where /proc/stat cannot be read (not
  Linux, or no /proc) it falls back to the 1-minute load average
  (:func:`busy_cores`), with its lag.  What the rule saw is recorded in the run's
  config.json (``threads_basis``, :func:`choose_threads`).
* :func:`check_threads` -- a requested count checked: an integer >= 1
  (ConfigError otherwise); above :func:`cpu_count` (the cores this process may
  use: its CPU affinity) a warning and the cap.
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
import time
import warnings

from threadpoolctl import threadpool_info, threadpool_limits

__all__ = ["ENV_VARS", "LARGE_PRODUCT", "IDLE_CORE_LOAD", "BUSY_WINDOW_S", "check_threads",
           "default_threads", "choose_threads", "largest_product", "busy_cores",
           "cpu_jiffies", "allowed_cpus", "allowed_jiffies", "measure_busy_cores", "cpu_count",
           "set_threads", "limit", "blas_threads", "user_env_threads", "note_environment",
           "resolve_threads"]

ENV_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
LARGE_PRODUCT = 256 * 256 * 256
IDLE_CORE_LOAD = 1.5     # idle cores (cores minus busy ones) two threads need
BUSY_WINDOW_S = 0.2      # the busy-core sample's window (module docstring: why 0.2 s)
PROC_STAT = "/proc/stat"

_noted = None          # the user's thread variables, noted by the command line


def allowed_cpus():
    """The CPUs this process may run on (``os.sched_getaffinity``: taskset, a cpuset
    container), or None where that is every CPU of the machine or cannot be asked."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None
    return None if len(allowed) >= (os.cpu_count() or 1) else frozenset(allowed)


def cpu_count():
    """The cores this process may use: its CPU affinity's size where that is narrower than
    the machine (:func:`allowed_cpus`), else ``os.cpu_count()`` (1 where unknown).  A
    cgroup CPU quota is not read."""
    allowed = allowed_cpus()
    return len(allowed) if allowed else (os.cpu_count() or 1)


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
    """The fallback measure of the machine's load: the 1-minute load average (runnable
    processes, lagging by about a minute), or 0 where the system does not report one."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def cpu_jiffies(path=PROC_STAT, cpus=None):
    """(non-idle, total) jiffies so far of all cores (/proc/stat's aggregate ``cpu`` line)
    or, given ``cpus`` (CPU numbers), of those cores alone (the sum of their ``cpuN``
    lines); None where it cannot be read or parsed, or a CPU of ``cpus`` is missing.

    The columns are user, nice, system, idle, iowait, irq, softirq, steal (then guest
    and guest_nice, already counted in user and nice, so left out of the total);
    non-idle is the total less idle and iowait."""
    wanted = {b"cpu"} if cpus is None else {f"cpu{n}".encode() for n in cpus}
    busy = total = 0
    found = set()
    try:
        with open(path, "rb") as fh:
            for line in fh:
                fields = line.split()
                if not fields or not fields[0].startswith(b"cpu"):
                    break                             # the cpu lines come first
                if fields[0] not in wanted:
                    continue
                values = [int(v) for v in fields[1:9]]
                if len(values) < 5:
                    return None
                total += sum(values)
                busy += sum(values) - values[3] - values[4]
                found.add(fields[0])
    except (OSError, ValueError):
        return None
    return (busy, total) if found == wanted else None


def allowed_jiffies():
    """:func:`cpu_jiffies` of the cores this process may run on (:func:`allowed_cpus`)."""
    return cpu_jiffies(cpus=allowed_cpus())


def measure_busy_cores(window=BUSY_WINDOW_S, read=allowed_jiffies, sleep=time.sleep,
                       cores=None, load=busy_cores):
    """What the default rule sees: a dict with ``busy_cores`` (the cores the machine kept
    busy over the last ``window`` seconds: delta non-idle / delta total jiffies x
    ``cores``), ``source`` ("/proc/stat") and ``window_s``.  ``read`` gives the
    (non-idle, total) jiffies (:func:`allowed_jiffies`: of the cores this process may
    run on, so under taskset or a cpuset only those count); ``sleep`` waits the window (this
    process sleeps through it, so it adds nothing to the count).  Where ``read`` gives
    None, or the counters did not advance or went back, the fallback: ``busy_cores``
    from ``load()``, the 1-minute load average, with ``source`` "load average".

    ``read``, ``sleep`` and ``load`` are there for the tests: they feed fixed samples."""
    cores = cpu_count() if cores is None else cores
    first = read()
    if first is not None:
        sleep(window)
        second = read()
        if second is not None:
            busy, total = second[0] - first[0], second[1] - first[1]
            if total > 0 and 0 <= busy <= total:
                return {"busy_cores": round(busy / total * cores, 3), "source": "/proc/stat",
                        "window_s": window}
    return {"busy_cores": round(float(load()), 3), "source": "load average"}


def largest_product(config):
    """An update's largest product, rows x width x width: the update's batch of rows
    (:func:`minipg.algorithms.base.update_rows`) times the widest hidden layer squared."""
    width = max(tuple(getattr(config, "hidden", ()) or ()), default=0)
    from .algorithms.base import update_rows
    return update_rows(config)[0] * width * width


def default_threads(config, load=None, measure=measure_busy_cores):
    """The default rule (module docstring): two threads (at most the cores) where an
    update's largest product reaches LARGE_PRODUCT and a second core is idle (at least
    IDLE_CORE_LOAD cores idle: cores - busy); else one.  ``load``: the busy cores given
    (None: ``measure()``, :func:`measure_busy_cores`, taken only where the products are
    large enough to need it)."""
    return _default_rule(config, load, measure)[0]


def _default_rule(config, load, measure):
    """(count, what the rule saw) for :func:`default_threads`."""
    product = largest_product(config)
    seen = {"rule": "default", "largest_product": product, "large_product": LARGE_PRODUCT,
            "cores": cpu_count()}
    if product < LARGE_PRODUCT:
        return 1, seen
    seen.update({"busy_cores": float(load), "source": "given"} if load is not None
                else measure())
    seen["idle_cores_needed"] = IDLE_CORE_LOAD
    if cpu_count() - seen["busy_cores"] < IDLE_CORE_LOAD:   # no idle core for a second thread
        return 1, seen
    return min(2, cpu_count()), seen


def note_environment(environ=None):
    """Note which thread variables the user set (before the command line sets its own)."""
    global _noted
    environ = os.environ if environ is None else environ
    _noted = {var: environ[var] for var in ENV_VARS if environ.get(var, "").strip()}


def user_env_threads():
    """The thread count the user's environment asks for (OPENBLAS_NUM_THREADS, then
    OMP_NUM_THREADS, then MKL_NUM_THREADS), or None where it asks for none."""
    return _user_env_setting()[1]


def _user_env_setting():
    """(variable, count) of :func:`user_env_threads`; (None, None) where none is set."""
    env = _noted if _noted is not None else os.environ
    for var in ENV_VARS:
        try:
            n = int(str(env.get(var, "")).strip())
        except ValueError:
            continue
        if n >= 1:
            return var, n
    return None, None


def choose_threads(config, threads=None, measure=measure_busy_cores):
    """(count, basis): the count a run uses -- ``threads`` when given (checked), else
    the user's environment variable, else :func:`default_threads` -- and what decided it,
    a dict for config.json: ``{"rule": "asked"}``, ``{"rule": "environment", "variable":
    ...}`` or the default rule's inputs (largest product, and where it is large enough
    the busy cores measured, their source and window)."""
    if threads is not None:
        return check_threads(threads), {"rule": "asked"}
    var, env = _user_env_setting()
    if env is not None:
        return min(env, cpu_count()), {"rule": "environment", "variable": var}
    return _default_rule(config, None, measure)


def resolve_threads(config, threads=None):
    """The count a run uses (:func:`choose_threads`, without the basis)."""
    return choose_threads(config, threads)[0]


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
