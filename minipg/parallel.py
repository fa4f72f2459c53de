"""Worker backends: N workers running one function, on this machine or on a Ray cluster.

Algorithms whose workers own their environments (A3C's asynchronous
actor-learners, D4PG's K actors) start them through this module, so that
starting, watching and stopping processes is written once:

* :func:`get_backend` -- ``"process"`` (``multiprocessing`` with the spawn
  start method on this machine) or ``"ray"`` (Ray actors, on a local Ray
  instance or the cluster at ``ray_address``); checked before anything runs.
  :meth:`RayBackend.driver_node` and :func:`ray_node_id` say which Ray node a
  process runs on, so that Ray workers on the driver's machine can share its
  memory (:class:`SharedArrays`) and only the others need the network.
* :meth:`Backend.start` runs ``target(rank, stop, *args)`` in ``n`` workers
  and returns a :class:`WorkerGroup`: :meth:`WorkerGroup.poll` says how many
  still run and raises :class:`WorkerError` (with the worker's traceback) as
  soon as one failed, after stopping the others; :meth:`WorkerGroup.stop`
  sets the stop flag, joins, and terminates what is left, so no child process
  remains.
* :class:`SharedArrays` -- named NumPy arrays in ``multiprocessing.shared_memory``
  segments (A3C's global parameters and RMSprop statistics, a step counter);
  the owner's :meth:`SharedArrays.close` unlinks them, and so does the
  interpreter's exit, so no ``/dev/shm`` segment outlives the run.
* :meth:`Backend.queue` -- a queue between the workers and the parent
  (``multiprocessing.Queue`` or ``ray.util.queue.Queue``).

Why processes and not threads: Python threads serialise on the interpreter
lock, so N threads stepping environments and networks run no faster than
one.  Why 'spawn': forking a process that already runs numba's or
OpenBLAS's threads can deadlock the child.  Each worker sets its BLAS pool
to one thread (:mod:`minipg.threads`), so N workers use N cores, not N^2
threads.  The children ignore SIGINT: a Ctrl-C in the terminal reaches the
whole process group, and the parent alone decides to stop (it sets the stop
flag, writes its checkpoint, then stops the workers).

Ray is an optional dependency (``pip install 'minipg[ray]'``); nothing here
imports it until the ray backend is asked for.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
import weakref
from multiprocessing import shared_memory

import numpy as np

__all__ = ["BACKENDS", "WorkerError", "check_workers", "require_ray", "SharedArrays",
           "get_backend", "Backend", "WorkerGroup", "worker_limit", "WORKER_MEMORY",
           "check_ray_address", "close_queue", "ray_node_id"]

BACKENDS = ("process", "ray")

# What one worker process takes in memory at least (a Python interpreter with NumPy,
# numba and gymnasium loaded, its environment and a small network copy: about 150-250
# MiB measured with ps on this project's workers); the number of workers is capped so
# that they fit in the machine's memory.
WORKER_MEMORY = 256 * 2**20
# Workers per core accepted at most: more only time-slice one core ever more finely.
WORKERS_PER_CORE = 4
# Seconds a worker's stop flag answer is cached under Ray (a remote call per step
# would cost more than the step).
RAY_STOP_REFRESH_S = 0.2
# Seconds the reachability probe of a ray_address waits for the TCP connection.
RAY_PROBE_TIMEOUT_S = 5.0
# A worker's traceback, and its exception's message, are each cut to this many characters
# before they are sent to the parent (a record larger than the pipe's buffer would block
# the worker in send() until the parent reads it, and stop() would wait for nothing).
TRACEBACK_CHARS = 20_000


def _config_error(message):
    from .algorithms.base import ConfigError      # late: keeps this module light
    return ConfigError(message)


# --- errors -------------------------------------------------------------------------
class WorkerError(RuntimeError):
    """A worker raised an exception or died.

    ``rank`` is the worker's number, ``exc_type`` and ``message`` its
    exception's, ``traceback`` the worker's formatted traceback (or a line
    saying how the process died), ``summary`` the first line of ``str()``:
    ``"worker {rank} failed: {ExcType}: {message}"``.
    """

    def __init__(self, rank, exc_type, message, traceback_text=""):
        self.rank = int(rank)
        self.exc_type = str(exc_type)
        self.message = str(message)
        self.traceback = str(traceback_text)
        self.summary = f"worker {self.rank} failed: {self.exc_type}: {self.message}"
        text = self.summary
        if self.traceback:
            text += "\n" + self.traceback.rstrip("\n")
        super().__init__(text)

    def __reduce__(self):                          # picklable with its fields
        return (type(self), (self.rank, self.exc_type, self.message, self.traceback))


def _error_record(rank, exc):
    """(rank, exception type name, message, traceback text) of ``exc``, for the parent."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(text) > TRACEBACK_CHARS:
        text = "...\n" + text[-TRACEBACK_CHARS:]
    message = str(exc)
    if len(message) > TRACEBACK_CHARS:
        message = message[:TRACEBACK_CHARS] + f"... ({len(message)} characters)"
    return (int(rank), type(exc).__name__, message, text)


# --- checks ---------------------------------------------------------------------------
def worker_limit(cpus=None):
    """The most workers this machine holds: ``WORKERS_PER_CORE`` per core, and no more
    than fit in the available memory at ``WORKER_MEMORY`` each (at least 1)."""
    from .algorithms.base import available_memory
    cores = int(cpus) if cpus is not None else (os.cpu_count() or 1)
    limit = WORKERS_PER_CORE * max(cores, 1)
    memory = available_memory()
    if memory:
        limit = min(limit, max(int(memory // WORKER_MEMORY), 1))
    return limit


def check_workers(n, setting="workers", cpus=None):
    """``n`` as a number of workers: an int with 1 <= n <= :func:`worker_limit`.

    ConfigError naming ``setting``, the value and the accepted range otherwise;
    a UserWarning when ``n`` exceeds the cores (the workers then share cores).
    ``cpus``: the cores counted (default: this machine's).
    """
    limit = worker_limit(cpus)
    cores = int(cpus) if cpus is not None else (os.cpu_count() or 1)
    accepted = (f"accepted: an integer from 1 to {limit} ({WORKERS_PER_CORE} per core on "
                f"{cores} cores, {WORKER_MEMORY // 2**20} MiB of memory each)")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise _config_error(f"setting {setting!r}: {n!r} is not an integer; {accepted}")
    n = int(n)
    if not 1 <= n <= limit:
        raise _config_error(f"setting {setting!r}: {n} is out of range; {accepted}")
    if n > cores:
        warnings.warn(f"setting {setting!r}: {n} workers on {cores} cores: the workers share "
                      f"cores and each runs slower", UserWarning, stacklevel=2)
    return n


def require_ray():
    """The ``ray`` module; ConfigError saying which extra to install when it is missing."""
    try:
        import ray
    except ImportError:
        raise _config_error("backend=ray needs Ray, which is not installed; install minipg's "
                            "ray extra: pip install 'minipg[ray]'") from None
    return ray


def _address_host_port(address):
    """(host, port) of a Ray address 'host:port' or 'ray://host:port'; None for 'auto'."""
    text = address.strip()
    if text in ("auto", "local"):
        return None
    if text.startswith("ray://"):
        text = text[len("ray://"):]
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected host:port")
    port = int(port)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not in [1, 65535]")
    return host.strip("[]"), port


RAY_ADDRESS_ACCEPTED = ("accepted: the address of a running Ray cluster's head, host:port "
                        "(e.g. 10.0.0.5:6379) or ray://host:port, 'auto' for the cluster "
                        "started on this machine with `ray start`, or empty for a local "
                        "Ray instance")


def check_ray_address(address, timeout=RAY_PROBE_TIMEOUT_S):
    """ConfigError unless ``address`` is well formed and something answers there.

    A TCP connection to the head's port, waiting at most ``timeout`` seconds: Ray's
    own connect retries for minutes before it gives up, so an unreachable address
    is refused here first.
    """
    try:
        host_port = _address_host_port(address)
    except ValueError as exc:
        raise _config_error(f"setting 'ray_address': {address!r} is not an address ({exc}); "
                            f"{RAY_ADDRESS_ACCEPTED}") from None
    if host_port is None:
        return address
    try:
        with socket.create_connection(host_port, timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, socket.timeout):
            reason = f"no answer within {timeout:g} s"
        raise _config_error(f"setting 'ray_address': cannot reach a Ray cluster at {address} "
                            f"({reason}); {RAY_ADDRESS_ACCEPTED}") from None
    return address


# --- shared arrays --------------------------------------------------------------------
_attach_lock = threading.Lock()


def _attach_segment(name):
    """Open an existing segment without registering it with this process's resource
    tracker: only the owner unlinks it (an attaching process that registered would have
    its tracker unlink the segment, or warn, when it exits)."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    from multiprocessing import resource_tracker
    with _attach_lock:
        original = resource_tracker.register
        resource_tracker.register = lambda *args, **kwargs: None
        try:
            return shared_memory.SharedMemory(name=name)
        finally:
            resource_tracker.register = original


def _release(segments, owner):
    """Unlink (owner) and close ``segments``; a mapping still viewed by live arrays is
    left to be unmapped when they go (its name is gone from /dev/shm already)."""
    for segment in segments:
        if owner:
            try:
                segment.unlink()
            except FileNotFoundError:
                pass
        try:
            segment.close()
        except BufferError:        # NumPy views of it are alive; unmapped when they die
            pass


class SharedArrays:
    """Named NumPy arrays, each in its own ``multiprocessing.shared_memory`` segment.

    ``SharedArrays.create({"params": ((n,), "float64"), ...})`` makes them (zero
    filled) in the owner; ``SharedArrays.attach(owner.spec)`` opens them in another
    process (``spec`` is a plain picklable dict).  ``arrays`` maps each name to an
    ndarray viewing its segment, so writes in one process are seen by every other.
    ``close()`` unlinks the segments in the owner (idempotent; also a context
    manager, and done at interpreter exit) and only unmaps them elsewhere.
    """

    def __init__(self, segments, spec, owner):
        self._segments = list(segments)
        self.spec = spec
        self.owner = owner
        self.arrays = {}
        for segment, (name, (shape, dtype, _)) in zip(self._segments, spec.items()):
            self.arrays[name] = np.ndarray(shape, dtype=dtype, buffer=segment.buf)
        # unlink when garbage-collected or at interpreter exit (finalize's atexit),
        # whichever comes first
        self._finalizer = weakref.finalize(self, _release, self._segments, owner)

    @classmethod
    def create(cls, layout):
        """The owner: {name: (shape, dtype)} -> zero-filled arrays in new segments."""
        if not layout:
            raise ValueError("SharedArrays.create: no arrays given")
        segments, spec = [], {}
        try:
            for name, (shape, dtype) in layout.items():
                shape = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
                dtype = np.dtype(dtype)
                nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
                segment = shared_memory.SharedMemory(create=True, size=nbytes)
                segments.append(segment)
                spec[name] = (shape, dtype.str, segment.name)
        except BaseException:
            _release(segments, owner=True)
            raise
        shared = cls(segments, spec, owner=True)
        for array in shared.arrays.values():
            array.fill(0)
        return shared

    @classmethod
    def attach(cls, spec):
        """Open the arrays described by ``spec`` (an owner's ``.spec``) in this process."""
        segments = []
        try:
            for shape, dtype, segment_name in spec.values():
                segments.append(_attach_segment(segment_name))
        except BaseException:
            _release(segments, owner=False)
            raise
        return cls(segments, dict(spec), owner=False)

    @property
    def segment_names(self):
        """The OS names of the segments (files under /dev/shm on Linux)."""
        return [segment_name for _, _, segment_name in self.spec.values()]

    def __getitem__(self, name):
        return self.arrays[name]

    def close(self):
        """Unlink (owner) and unmap the segments; idempotent.  Arrays obtained from
        ``arrays`` must not be used afterwards."""
        self.arrays = {}
        self._finalizer()

    @property
    def closed(self):
        return not self._finalizer.alive

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        names = ", ".join(f"{k}{tuple(s)}" for k, (s, _, _) in self.spec.items())
        return f"SharedArrays({names}, owner={self.owner}, closed={self.closed})"


# --- the process backend --------------------------------------------------------------
class ProcessStop:
    """The stop flag a process worker polls: one byte of shared memory (``flag``, a
    lock-free ``RawValue``), and also set when the parent process is gone (so an
    orphaned worker stops by itself).

    Lock-free on purpose: a ``multiprocessing.Event`` takes a lock in ``is_set()``, and
    a worker killed (SIGKILL, the OOM killer) while holding it would hang the parent's
    ``set()`` in :meth:`WorkerGroup.stop`.  One writer (the parent) and a one-byte value
    need no lock."""

    def __init__(self, flag, parent_pid):
        self.flag = flag
        self.parent_pid = parent_pid

    def is_set(self):
        return bool(self.flag.value) or os.getppid() != self.parent_pid

    def set(self):
        self.flag.value = 1


def _process_main(target, rank, stop, args, error_conn):
    """What a worker process runs: no SIGINT, one BLAS thread, ``target``; an exception
    goes to the parent through ``error_conn`` and the process exits with status 1."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from . import threads
        threads.set_threads(1)
        target(rank, stop, *args)
    except BaseException as exc:              # SystemExit too: the parent must hear of it
        try:
            error_conn.send(_error_record(rank, exc))
        finally:
            error_conn.close()
        os._exit(1)
    error_conn.close()


@contextlib.contextmanager
def _ignoring_sigint():
    """SIGINT ignored while children are started: they inherit the disposition (Python
    then installs no KeyboardInterrupt handler in them), so a Ctrl-C cannot kill one half
    started.  Outside the main thread no handler can be changed; nothing is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None
                      else previous)


class WorkerGroup:
    """Workers started by :meth:`Backend.start` (a context manager; exit stops them)."""

    def __init__(self, n):
        self.n = n
        self.stopped = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def join(self, timeout=None):
        """Wait until every worker has returned (WorkerError if one failed); returns
        the number still running when ``timeout`` seconds passed (0: all returned)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            running = self.poll()
            if running == 0:
                return 0
            if deadline is not None and time.monotonic() >= deadline:
                return running
            time.sleep(0.02)


class ProcessWorkerGroup(WorkerGroup):
    """Worker processes (spawn) running ``target(rank, stop, *args)``."""

    def __init__(self, context, target, n, args):
        super().__init__(n)
        self.stop_flag = ProcessStop(context.RawValue("b", 0), os.getpid())
        self.processes, self.error_conns = [], []
        try:
            with _ignoring_sigint():
                for rank in range(n):
                    receive, send = context.Pipe(duplex=False)
                    process = context.Process(
                        target=_process_main, args=(target, rank, self.stop_flag, args, send),
                        name=f"minipg-worker-{rank}", daemon=True)
                    process.start()
                    send.close()                  # the child holds the sending end
                    self.processes.append(process)
                    self.error_conns.append(receive)
        except BaseException:
            self.stop()
            raise

    def _failure(self, rank):
        """The WorkerError of worker ``rank`` if it failed, else None."""
        conn, process = self.error_conns[rank], self.processes[rank]
        try:
            if conn.poll():
                return WorkerError(*conn.recv())
        except (EOFError, OSError):
            pass
        code = process.exitcode
        if code is None or code == 0:
            return None
        how = (f"killed by signal {signal.Signals(-code).name}" if code < 0
               else f"exit status {code}")
        return WorkerError(rank, "WorkerDied", f"worker process {process.pid} ended ({how}) "
                           f"without reporting an exception")

    def poll(self):
        """The number of workers still running; WorkerError (after stopping the others)
        for the first worker that raised or died."""
        running = 0
        for rank, process in enumerate(self.processes):
            error = self._failure(rank)
            if error is not None:
                self.stop()
                raise error
            running += process.is_alive()
        return running

    def stop(self, timeout=10.0):
        """Set the stop flag, wait up to ``timeout`` seconds, then terminate and kill
        what is left; idempotent.  No child process remains afterwards."""
        if self.stopped:
            return
        self.stopped = True
        self.stop_flag.set()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            process.join(max(deadline - time.monotonic(), 0.0))
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join()
        for process in self.processes:
            process.close()
        for conn in self.error_conns:
            conn.close()
        self.processes, self.error_conns = [], []


def _count(n):
    """``n`` workers to start: a positive int (the settings were checked before)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"start: n must be a positive integer, got {n!r}")
    return int(n)


class Backend:
    """Where workers run; a context manager (see :func:`get_backend`)."""

    name = "?"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def queue(self, maxsize=0):
        raise NotImplementedError

    def start(self, target, n, args=()):
        raise NotImplementedError


class ProcessBackend(Backend):
    """Worker processes on this machine, started with 'spawn'."""

    name = "process"

    def __init__(self):
        self.context = multiprocessing.get_context("spawn")

    def queue(self, maxsize=0):
        """A spawn-context ``multiprocessing.Queue``."""
        return self.context.Queue(maxsize)

    def start(self, target, n, args=()):
        """Run ``target(rank, stop, *args)`` in ``n`` processes; a :class:`WorkerGroup`."""
        return ProcessWorkerGroup(self.context, target, _count(n), tuple(args))


# --- the Ray backend ------------------------------------------------------------------
class StopFlagActor:
    """Held by a Ray actor: the stop flag of a Ray worker group."""

    def __init__(self):
        self.flag = False

    def set(self):
        self.flag = True

    def is_set(self):
        return self.flag


class RayStop:
    """The stop flag a Ray worker polls: the actor's answer, refreshed at most every
    ``RAY_STOP_REFRESH_S`` seconds (a remote call per environment step would cost more
    than the step)."""

    def __init__(self, actor):
        self.actor = actor
        self.value = False
        self.checked = -math.inf

    def is_set(self):
        if not self.value and time.monotonic() - self.checked >= RAY_STOP_REFRESH_S:
            import ray
            self.value = bool(ray.get(self.actor.is_set.remote()))
            self.checked = time.monotonic()
        return self.value

    def set(self):
        import ray
        ray.get(self.actor.set.remote())
        self.value = True

    def __getstate__(self):
        return {"actor": self.actor}

    def __setstate__(self, state):
        self.__init__(state["actor"])


class RayWorkerHost:
    """The Ray actor a worker runs in: one BLAS thread, then ``target``; an exception
    comes back as an error record, as from a process worker."""

    def run(self, target, rank, stop, args):
        try:
            from . import threads
            threads.set_threads(1)
            target(rank, stop, *args)
        except BaseException as exc:
            return _error_record(rank, exc)
        return None


class RayQueue:
    """``ray.util.queue.Queue`` with the process queue's methods."""

    def __init__(self, maxsize=0):
        from ray.util.queue import Queue
        self.inner = Queue(maxsize, actor_options={"num_cpus": 0})   # no CPU held from workers

    def put(self, item):
        self.inner.put(item)

    def get(self, timeout=None):
        return self.inner.get(block=True, timeout=timeout)

    def get_nowait(self):
        return self.inner.get_nowait()

    def close(self):
        """End the queue's actor (it would outlive us on a cluster we joined)."""
        self.inner.shutdown()


def close_queue(channel):
    """Close a queue of :meth:`Backend.queue` (idempotent): a process queue's pipe and
    feeder thread (without waiting for unread items), a Ray queue's actor."""
    if hasattr(channel, "cancel_join_thread"):
        channel.cancel_join_thread()
    try:
        channel.close()
    except Exception:          # a Ray session already gone took the actor with it
        pass


class RayWorkerGroup(WorkerGroup):
    """Ray actors running ``target(rank, stop, *args)``."""

    def __init__(self, ray, target, n, args):
        super().__init__(n)
        self.ray = ray
        self.flag_actor = ray.remote(num_cpus=0)(StopFlagActor).remote()
        self.stop_flag = RayStop(self.flag_actor)
        # one CPU each where the cluster has them; shares of its CPUs otherwise (a worker
        # waiting for a CPU that never frees would hang the group)
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        per_worker = 1.0 if n <= cpus else cpus / n
        host_cls = ray.remote(num_cpus=per_worker, max_restarts=0)(RayWorkerHost)
        self.actors = [host_cls.remote() for _ in range(n)]
        self.refs = [actor.run.remote(target, rank, self.stop_flag, args)
                     for rank, actor in enumerate(self.actors)]
        self.done = [False] * n

    def _result(self, rank):
        """WorkerError of the finished worker ``rank`` if it failed, else None."""
        try:
            record = self.ray.get(self.refs[rank])
        except Exception as exc:               # the actor died (RayActorError, ...)
            return WorkerError(rank, "WorkerDied", f"Ray actor ended: {type(exc).__name__}: "
                               f"{exc}".splitlines()[0], str(exc))
        return None if record is None else WorkerError(*record)

    def poll(self):
        if self.stopped:
            return 0
        ready, _ = self.ray.wait(self.refs, num_returns=len(self.refs), timeout=0)
        ready = {ref.hex() for ref in ready} if ready else set()
        for rank, ref in enumerate(self.refs):
            if not self.done[rank] and ref.hex() in ready:
                self.done[rank] = True
                error = self._result(rank)
                if error is not None:
                    self.stop()
                    raise error
        return self.done.count(False)

    def stop(self, timeout=10.0):
        """Set the stop flag, wait up to ``timeout`` seconds, then kill the actors."""
        if self.stopped:
            return
        self.stopped = True
        ray = self.ray
        try:
            ray.get(self.flag_actor.set.remote(), timeout=timeout)
            ray.wait(self.refs, num_returns=len(self.refs), timeout=timeout)
        except Exception:        # the cluster is going away: kill what is left anyway
            pass
        for actor in self.actors + [self.flag_actor]:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self.actors, self.refs = [], []


class RayBackend(Backend):
    """Ray actors: on the cluster at ``ray_address``, else on a local Ray instance."""

    name = "ray"

    def __init__(self, ray_address=None):
        self.ray = require_ray()
        self.address = ray_address or None
        if self.address:
            check_ray_address(self.address)
        self.started_ray = False

    def __enter__(self):
        import logging
        ray = self.ray
        if ray.is_initialized():
            return self
        try:
            if self.address:
                ray.init(address=self.address, logging_level=logging.WARNING,
                         log_to_driver=True)
            else:
                ray.init(include_dashboard=False, logging_level=logging.WARNING)
        except Exception as exc:
            try:
                ray.shutdown()
            except Exception:
                pass
            where = f"at {self.address}" if self.address else "locally"
            raise _config_error(f"backend=ray: cannot start Ray {where}: "
                                f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        self.started_ray = True
        return self

    def __exit__(self, *exc):
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False
        return False

    def driver_node(self):
        """The Ray node id of this process when it is a node of the cluster (a local Ray
        instance, or ``ray_address`` host:port or auto: a driver on a machine of the
        cluster, sharing that machine's memory with the workers placed there); None for a
        ``ray://`` client connection, whose driver is off the cluster."""
        from ray.util.client import ray as client
        if client.is_connected():
            return None
        return ray_node_id()

    def queue(self, maxsize=0):
        """A ``ray.util.queue.Queue`` (held by an actor) with put/get/get_nowait."""
        return RayQueue(maxsize)

    def start(self, target, n, args=()):
        """Run ``target(rank, stop, *args)`` in ``n`` Ray actors; a :class:`WorkerGroup`."""
        if not self.ray.is_initialized():
            raise RuntimeError("RayBackend.start: enter the backend first (with backend: ...)")
        return RayWorkerGroup(self.ray, target, _count(n), tuple(args))


def ray_node_id():
    """The id of the Ray node this process (a driver or an actor) runs on."""
    import ray
    return ray.get_runtime_context().get_node_id()


def get_backend(name, ray_address=None):
    """The backend called ``name`` (one of :data:`BACKENDS`); ConfigError for an unknown
    name, a missing Ray, or an unreachable ``ray_address`` (checked here, within
    ``RAY_PROBE_TIMEOUT_S`` seconds, before anything starts)."""
    if name not in BACKENDS:
        raise _config_error(f"setting 'backend': {name!r} is not accepted; accepted: "
                            f"{', '.join(BACKENDS)}")
    if name == "process":
        if ray_address:
            raise _config_error(f"setting 'ray_address': {ray_address!r} is for backend=ray; "
                                f"accepted with backend=process: empty")
        return ProcessBackend()
    return RayBackend(ray_address)

