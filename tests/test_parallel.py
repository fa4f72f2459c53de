"""minipg.parallel: worker backends (process and Ray), shared arrays, errors and shutdown.

The worker functions are module-level (the spawn start method pickles them by
name).  The Ray tests share one local Ray instance (a module-scoped fixture):
starting Ray takes several seconds.
"""

import multiprocessing
import os
import queue
import signal
import sys
import time
import warnings

import numpy as np
import pytest

from minipg.algorithms.base import ConfigError
from minipg import parallel
from minipg.parallel import SharedArrays, WorkerError, check_workers, get_backend


# --- worker functions (run in the children) ------------------------------------------
def count_into_shared(rank, stop, spec, out_queue):
    """Say which rank it is on ``out_queue``, then add 1 to counts[rank] until stopped."""
    out_queue.put((rank, os.getpid()))
    shared = SharedArrays.attach(spec)
    counts = shared.arrays["counts"]
    while not stop.is_set():
        counts[rank] += 1
        time.sleep(0.001)
    shared.close()


def fail_after(rank, stop, failing_rank, message):
    """Worker ``failing_rank`` raises ValueError(message) after a few steps; the others
    run until stopped."""
    steps = 0
    while not stop.is_set():
        steps += 1
        if rank == failing_rank and steps == 20:
            raise ValueError(message)
        time.sleep(0.005)


def die_hard(rank, stop):
    """Worker 1 ends its process without an exception (as a crash in C would)."""
    if rank == 1:
        os._exit(7)
    while not stop.is_set():
        time.sleep(0.005)


def ignore_stop(rank, stop):
    """Never looks at the stop flag: stop() must terminate it."""
    while True:
        time.sleep(0.01)


def raise_huge(rank, stop):
    """Worker 1 raises an exception whose message is 2 MB (e.g. one quoting a large
    array); worker 0 runs until stopped."""
    if rank == 1:
        raise ValueError("x" * 2_000_000)
    while not stop.is_set():
        time.sleep(0.01)


def report_rank(rank, stop, out_queue):
    out_queue.put((rank, os.getpid()))
    while not stop.is_set():
        time.sleep(0.01)


# --- helpers ---------------------------------------------------------------------------
def spawned_children():
    """PIDs of this process's children started by multiprocessing's spawn, from /proc
    (independent of multiprocessing's own bookkeeping)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == me and b"spawn_main" in cmdline:
            found.append(int(entry))
    return found


def assert_no_children():
    assert multiprocessing.active_children() == []
    assert spawned_children() == []


def segments_exist(names):
    return [os.path.exists(os.path.join("/dev/shm", name.lstrip("/"))) for name in names]


# --- check_workers ---------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, -1, 10**6, 2.5, "2", True, None])
def test_check_workers_refuses_bad_counts(bad):
    limit = parallel.worker_limit()
    with pytest.raises(ConfigError) as info:
        check_workers(bad, "workers")
    text = str(info.value)
    assert "'workers'" in text
    assert repr(bad) in text or str(bad) in text
    assert f"from 1 to {limit}" in text


def test_check_workers_accepts_and_warns_when_oversubscribed():
    assert check_workers(1) == 1
    assert check_workers(np.int64(1)) == 1
    cores = os.cpu_count() or 1
    if cores + 1 <= parallel.worker_limit():
        with pytest.warns(UserWarning, match="share cores"):
            assert check_workers(cores + 1) == cores + 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_workers(cores)                        # no warning at the core count


def test_worker_limit_counts_cores_and_memory(monkeypatch):
    monkeypatch.setattr("minipg.algorithms.base.available_memory",
                        lambda: 3 * parallel.WORKER_MEMORY)
    assert parallel.worker_limit(cpus=16) == 3
    monkeypatch.setattr("minipg.algorithms.base.available_memory", lambda: None)
    assert parallel.worker_limit(cpus=16) == 16 * parallel.WORKERS_PER_CORE


# --- backends: bad input -----------------------------------------------------------------
def test_unknown_backend_is_refused():
    with pytest.raises(ConfigError, match=r"'backend': 'threads' is not accepted; "
                                          r"accepted: process, ray"):
        get_backend("threads")
    with pytest.raises(ConfigError, match="ray_address"):
        get_backend("process", ray_address="127.0.0.1:6379")


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)        # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'minipg\[ray\]'"):
        get_backend("ray")


@pytest.mark.parametrize("address", ["127.0.0.1:1", "not-an-address", "host:99999"])
def test_unreachable_or_malformed_ray_address_fails_fast(address):
    started = time.monotonic()
    with pytest.raises(ConfigError, match="ray_address") as info:
        get_backend("ray", ray_address=address)
    assert time.monotonic() - started < parallel.RAY_PROBE_TIMEOUT_S + 1
    assert address in str(info.value) and "accepted" in str(info.value)
    assert_no_children()


# --- shared arrays ----------------------------------------------------------------------
def test_shared_arrays_are_seen_across_processes_and_unlinked():
    shared = SharedArrays.create({"counts": ((3,), "float64"), "step": (1, "int64")})
    names = shared.segment_names
    assert all(segments_exist(names))
    assert shared["counts"].tolist() == [0.0, 0.0, 0.0]
    with get_backend("process") as backend:
        out = backend.queue()
        with pytest.raises(queue.Empty):
            out.get(timeout=0.01)
        group = backend.start(count_into_shared, 2, (shared.spec, out))
        assert sorted(out.get(timeout=60)[0] for _ in range(2)) == [0, 1]
        deadline = time.monotonic() + 60
        while (shared["counts"][:2] == 0).any() and time.monotonic() < deadline:
            assert group.poll() == 2
            time.sleep(0.01)
        group.stop_flag.set()                   # the workers see it and return
        assert group.join(timeout=60) == 0
        group.stop()
    assert (shared["counts"][:2] > 0).all() and shared["counts"][2] == 0
    assert_no_children()
    shared.close()
    shared.close()                                       # idempotent
    assert not any(segments_exist(names))


def test_shared_arrays_unlinked_by_context_and_by_garbage_collection():
    with SharedArrays.create({"a": ((4, 2), np.float32)}) as shared:
        names = shared.segment_names
        view = SharedArrays.attach(shared.spec)
        view["a"][1, 1] = 5
        assert shared["a"][1, 1] == 5 and shared["a"].dtype == np.float32
        view.close()
        assert all(segments_exist(names))                # only the owner unlinks
    assert not any(segments_exist(names))
    shared = SharedArrays.create({"b": (8, "float64")})
    names = shared.segment_names
    del shared
    assert not any(segments_exist(names))


# --- process workers: errors and shutdown ------------------------------------------------
def test_worker_exception_is_raised_with_its_traceback():
    with get_backend("process") as backend:
        group = backend.start(fail_after, 2, (1, "environment exploded"))
        with pytest.raises(WorkerError) as info:
            group.join(timeout=60)
    error = info.value
    assert error.rank == 1 and error.exc_type == "ValueError"
    assert str(error).startswith("worker 1 failed: ValueError: environment exploded")
    assert "in fail_after" in error.traceback and "raise ValueError(message)" in error.traceback
    assert_no_children()                              # the other worker was stopped


def test_worker_that_dies_without_exception_is_reported():
    with get_backend("process") as backend:
        with backend.start(die_hard, 2) as group:
            with pytest.raises(WorkerError, match=r"worker 1 failed: WorkerDied: .*exit "
                                                  r"status 7"):
                group.join(timeout=60)
    assert_no_children()


def test_stop_terminates_a_worker_that_ignores_the_flag_and_sigint():
    with get_backend("process") as backend:
        group = backend.start(ignore_stop, 2)
        time.sleep(0.5)
        for process in group.processes:                  # Ctrl-C reaches the children too
            os.kill(process.pid, signal.SIGINT)
        time.sleep(0.3)
        assert group.poll() == 2                         # they ignore it: the parent decides
        started = time.monotonic()
        group.stop(timeout=0.5)
        assert time.monotonic() - started < 10
        group.stop()                                     # idempotent
    assert_no_children()


def test_huge_error_message_is_cut_so_stop_is_prompt_and_the_error_arrives():
    """A 2 MB message (before the fix sent whole) filled the pipe: the worker blocked in
    send() until the parent read it, so a stop() that did not read waited its full 10 s
    timeout.  Cut to TRACEBACK_CHARS, the record fits in the pipe and the worker exits."""
    limit = parallel.TRACEBACK_CHARS
    with get_backend("process") as backend:
        group = backend.start(raise_huge, 2)
        deadline = time.monotonic() + 60
        while not group.error_conns[1].poll() and time.monotonic() < deadline:
            time.sleep(0.05)                          # until worker 1 has sent its record
        time.sleep(0.5)
        started = time.monotonic()
        group.stop()                                  # without reading the record
        assert time.monotonic() - started < 5         # 10 s (the join timeout) before
        group = backend.start(raise_huge, 2)
        with pytest.raises(WorkerError) as info:
            group.join(timeout=60)
    error = info.value
    assert error.rank == 1 and error.exc_type == "ValueError"
    assert error.message.startswith("xxxx") and "(2000000 characters)" in error.message
    assert len(error.message) <= limit + 40 and len(error.traceback) <= limit + 10
    assert_no_children()


def test_stop_flag_takes_no_lock_and_reaches_the_workers(tmp_path):
    """The process stop flag is a lock-free shared byte: a worker SIGKILLed inside
    is_set() cannot leave a lock held that the parent's set() would wait on forever (a
    multiprocessing Event, used before, locks in is_set()).  Set by the parent, seen by
    the workers."""
    with get_backend("process") as backend:
        out = backend.queue()
        with backend.start(report_rank, 2, (out,)) as group:
            flag = group.stop_flag.flag
            assert not hasattr(flag, "get_lock") and not hasattr(flag, "acquire")
            assert sorted(out.get(timeout=60)[0] for _ in range(2)) == [0, 1]
            group.stop_flag.set()
            assert group.join(timeout=30) == 0        # the workers saw it and returned
    assert_no_children()


# --- the Ray backend ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    # the workers below live in this test module, which Ray's worker processes cannot
    # import: send them by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_workers_start_poll_queue_stop(ray_session):
    with get_backend("ray") as backend:
        assert backend.name == "ray" and not backend.started_ray   # joins the session
        out = backend.queue()
        with pytest.raises(queue.Empty):
            out.get(timeout=0.01)
        group = backend.start(report_rank, 2, (out,))
        got = sorted(out.get(timeout=60)[0] for _ in range(2))
        assert got == [0, 1]
        assert group.poll() == 2
        group.stop()
        assert group.poll() == 0
        group.stop()                                       # idempotent
    assert ray_session.is_initialized()                   # not ours to shut down


def test_ray_worker_exception_is_raised_with_its_traceback(ray_session):
    with get_backend("ray") as backend:
        with backend.start(fail_after, 2, (0, "ray environment exploded")) as group:
            with pytest.raises(WorkerError) as info:
                group.join(timeout=60)
    assert info.value.rank == 0
    assert info.value.summary == "worker 0 failed: ValueError: ray environment exploded"
    assert "raise ValueError(message)" in info.value.traceback
