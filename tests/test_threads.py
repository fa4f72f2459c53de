"""The BLAS thread count (minipg/threads.py): chosen on purpose, in effect inside a run,
recorded in config.json; bad input is a clear error (issue 13)."""

import io
import json
import os
import subprocess
import sys

import pytest

from minipg import run as run_module
from minipg import threads
from minipg.algorithms import get as get_algorithm
from minipg.algorithms.base import ConfigError
from minipg.cli import main
from minipg.run import resolve_config, train

TWO = min(2, os.cpu_count() or 1)
QUICK = {"eval_episodes": "1", "log_every": "256"}


def _env_without_thread_vars():
    return {k: v for k, v in os.environ.items() if k not in threads.ENV_VARS}


# --- the rule --------------------------------------------------------------------------
def test_the_default_rule_picks_one_thread_for_the_cartpole_ppo_preset():
    config = resolve_config(get_algorithm("ppo"), "CartPole-v1", {})
    assert threads.default_threads(config) == 1


def test_the_default_rule_uses_both_cores_at_the_zoo_sizes():
    for algo in ("sac", "td3"):
        config = resolve_config(get_algorithm(algo), "Pendulum-v1", {})
        assert threads.default_threads(config, load=0.0) == TWO, algo
    small = resolve_config(get_algorithm("sac"), "Pendulum-v1", {"hidden": "64,64"})
    assert threads.default_threads(small, load=0.0) == 1


def test_the_default_rule_keeps_one_thread_when_no_core_is_idle():
    config = resolve_config(get_algorithm("sac"), "Pendulum-v1", {})
    cores = threads.cpu_count()
    assert threads.default_threads(config, load=cores - 1.0) == 1      # one core busy
    assert threads.default_threads(config, load=cores - 1.5) == TWO    # one idle


# --- what the rule sees: busy cores measured from /proc/stat -------------------------
def _samples(*jiffies):
    """A ``read`` for measure_busy_cores that returns the given (non-idle, total) samples
    in turn, and a ``sleep`` that records the window instead of waiting."""
    it = iter(jiffies)
    slept = []
    return (lambda: next(it)), slept.append, slept


def _measured(*jiffies, cores=2, load=lambda: 99.0):
    read, sleep, slept = _samples(*jiffies)
    seen = threads.measure_busy_cores(read=read, sleep=sleep, cores=cores, load=load)
    return seen, slept


def test_busy_cores_from_two_proc_stat_samples():
    """(delta non-idle / delta total) x cores over the window: 2 cores, 40 jiffies."""
    busy, slept = _measured((1000, 5000), (1040, 5040))          # both cores busy
    assert busy == {"busy_cores": 2.0, "source": "/proc/stat", "window_s": 0.2}
    assert slept == [threads.BUSY_WINDOW_S]                        # slept between the reads
    assert _measured((1000, 5000), (1000, 5040))[0]["busy_cores"] == 0.0    # idle
    assert _measured((1000, 5000), (1020, 5040))[0]["busy_cores"] == 1.0    # half busy
    assert _measured((0, 0), (10, 40), cores=8)[0]["busy_cores"] == 2.0     # 8 cores, 1/4


def test_the_fallback_to_the_load_average_where_proc_stat_is_unreadable(tmp_path):
    for samples in ([None], [(10, 100), None], [(10, 100), (10, 100)],   # unreadable; no ticks
                    [(10, 100), (5, 90)]):                               # counters went back
        seen, _ = _measured(*samples, load=lambda: 1.25)
        assert seen == {"busy_cores": 1.25, "source": "load average"}, samples
    assert threads.cpu_jiffies(str(tmp_path / "missing")) is None
    (tmp_path / "stat").write_text("intr 1 2 3\n")
    assert threads.cpu_jiffies(str(tmp_path / "stat")) is None
    (tmp_path / "stat").write_text("cpu  1 2 x 4\n")
    assert threads.cpu_jiffies(str(tmp_path / "stat")) is None


def test_cpu_jiffies_reads_the_aggregate_line():
    """user nice system idle iowait irq softirq steal count; idle and iowait are idle;
    guest and guest_nice (already inside user and nice) do not count twice."""
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix="stat", delete=False) as fh:
        fh.write("cpu  100 20 30 400 50 6 7 8 90 10\ncpu0 1 1 1 1 1 1 1 1 0 0\n")
    try:
        assert threads.cpu_jiffies(fh.name) == (100 + 20 + 30 + 6 + 7 + 8,
                                                100 + 20 + 30 + 400 + 50 + 6 + 7 + 8)
    finally:
        os.remove(fh.name)
    if os.path.exists("/proc/stat"):            # the real one, on Linux
        busy, total = threads.cpu_jiffies()
        assert 0 <= busy <= total


def _no_user_variables(monkeypatch):
    """The default rule decides: no thread variable noted (conftest sets them to 1)."""
    monkeypatch.setattr(threads, "_noted", None)      # restored after the test
    threads.note_environment({})


def _rule(config, *jiffies, cores):
    read, sleep, _ = _samples(*jiffies)

    def measure():
        return threads.measure_busy_cores(read=read, sleep=sleep, cores=cores)
    return threads.choose_threads(config, measure=measure)


def test_the_default_rule_on_measured_samples(monkeypatch):
    """2 cores: busy, half busy, idle, and the boundary (1.5 idle cores: two threads; a
    jiffy more busy: one)."""
    monkeypatch.setattr(threads, "cpu_count", lambda: 2)
    _no_user_variables(monkeypatch)
    config = resolve_config(get_algorithm("sac"), "Pendulum-v1", {})
    cases = [((0, 0), (400, 400), 1),          # both cores busy
             ((0, 0), (200, 400), 1),          # one of two busy
             ((0, 0), (0, 400), 2),            # idle
             ((0, 0), (100, 400), 2),          # half a core busy: 1.5 idle, the boundary
             ((0, 0), (101, 400), 1)]          # just past it
    for first, second, expected in cases:
        n, seen = _rule(config, first, second, cores=2)
        assert n == expected, (first, second, seen)
        assert seen["source"] == "/proc/stat" and seen["rule"] == "default"
        assert seen["busy_cores"] == round(second[0] / second[1] * 2, 3)
    # small products: nothing measured (the measurement would fail if it were called)
    small = resolve_config(get_algorithm("ppo"), "CartPole-v1", {})
    n, seen = threads.choose_threads(small, measure=lambda: 1 / 0)
    assert n == 1 and "busy_cores" not in seen
    assert seen["largest_product"] < threads.LARGE_PRODUCT
    # /proc/stat unreadable: the load average decides
    for load, expected in ((0.4, 2), (1.2, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        n, seen = threads.choose_threads(
            config, measure=lambda: threads.measure_busy_cores(
                read=lambda: threads.cpu_jiffies("/nonexistent/stat")))
        assert (n, seen["source"], seen["busy_cores"]) == (expected, "load average", load)


def test_the_basis_names_an_asked_count_and_a_users_variable(monkeypatch):
    config = resolve_config(get_algorithm("sac"), "Pendulum-v1", {})
    assert threads.choose_threads(config, 1) == (1, {"rule": "asked"})
    monkeypatch.setattr(threads, "_noted", None)      # restored after the test
    threads.note_environment({"OMP_NUM_THREADS": "1"})
    assert threads.choose_threads(config) == (1, {"rule": "environment",
                                                  "variable": "OMP_NUM_THREADS"})


# --- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", ""])
def test_a_bad_thread_count_is_one_clear_line_and_exit_2(capsys, tmp_path, value):
    for argv in (["train", "ppo", "--total-steps", "64", "--out", str(tmp_path / "r")],
                 ["evaluate", str(tmp_path / "none")],
                 ["bench", "--quick", "--case", "c", "--no-kernels"]):
        assert main(argv + [f"--threads={value}"]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("minipg: error: --threads")
        assert f"accepted: an integer from 1 to {threads.cpu_count()}" in err
    assert not (tmp_path / "r").exists()


def test_a_bad_thread_count_on_the_command_line_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minipg", "train", "ppo", "--threads", "0",
                           "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--threads: 0 is out of range; accepted: an integer from 1 to" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_more_threads_than_cores_is_a_warning_and_the_cap():
    with pytest.warns(UserWarning, match="using"):
        assert threads.check_threads(threads.cpu_count() + 5) == threads.cpu_count()
    for bad in (0, -3, 2.5, "two", True, None):
        with pytest.raises(ConfigError, match=r"accepted: an integer from 1 to"):
            threads.check_threads(bad)


# --- in effect inside a run, recorded, used on resume ----------------------------------
def _record_threads(monkeypatch):
    seen = []
    loop = run_module.TrainingLoop.loop

    def recording(self):
        seen.append(threads.blas_threads())
        return loop(self)
    monkeypatch.setattr(run_module.TrainingLoop, "loop", recording)
    return seen


@pytest.mark.parametrize("asked", sorted({1, TWO}))
def test_the_thread_count_in_effect_inside_a_run_is_the_one_asked(monkeypatch, tmp_path,
                                                                    asked):
    seen = _record_threads(monkeypatch)
    before = threads.blas_threads()
    out = train("ppo", env_id="CartPole-v1", total_steps=256, seed=0,
                out=str(tmp_path / "r"), overrides=QUICK, threads=asked, stream=io.StringIO())
    assert seen == [asked]
    assert threads.blas_threads() == before          # restored on return
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["threads"] == asked and saved["threads_basis"] == {"rule": "asked"}
    # --resume uses the recorded count
    train("ppo", total_steps=512, out=out, resume=True, stream=io.StringIO())
    assert seen == [asked, asked]
    with pytest.raises(ConfigError, match="--threads cannot change on resume"):
        train("ppo", total_steps=1024, out=out, resume=True, threads=1,
              stream=io.StringIO())


def test_the_command_line_records_the_count_and_warns_above_the_cores(capsys, tmp_path):
    out = str(tmp_path / "r")
    assert main(["train", "ppo", "--total-steps", "256", "--out", out, "--threads", "1",
                 "--set", "eval_episodes=1"]) == 0
    assert json.loads((tmp_path / "r" / "config.json").read_text())["threads"] == 1
    capsys.readouterr()
    assert main(["evaluate", out, "--episodes", "1", "--threads", "100000"]) == 0
    err = capsys.readouterr().err
    assert (f"minipg: warning: --threads 100000: this machine has {threads.cpu_count()} "
            f"cores; using {threads.cpu_count()}") in err
    assert main(["train", "ppo", "--total-steps", "512", "--resume", out,
                 "--threads", "1"]) == 2
    assert "--threads cannot change on resume" in capsys.readouterr().err


def test_the_default_command_uses_the_rule_and_a_users_variable_wins(tmp_path):
    """No variable: the rule (1 for the CartPole PPO preset); OPENBLAS_NUM_THREADS set
    by the user: that count."""
    env = _env_without_thread_vars()
    for extra, expected in (({}, 1), ({"OPENBLAS_NUM_THREADS": str(TWO)}, TWO)):
        out = tmp_path / f"r{expected}{len(extra)}"
        proc = subprocess.run([sys.executable, "-m", "minipg", "train", "ppo", "--total-steps",
                               "256", "--set", "eval_episodes=1", "--out", str(out)],
                              env=dict(env, **extra), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        saved = json.loads((out / "config.json").read_text())
        assert saved["threads"] == expected
        if extra:
            assert saved["threads_basis"] == {"rule": "environment",
                                              "variable": "OPENBLAS_NUM_THREADS"}
        else:                                   # small products: nothing measured
            assert saved["threads_basis"]["rule"] == "default"
            assert saved["threads_basis"]["largest_product"] == 64 * 64 * 256
            assert "busy_cores" not in saved["threads_basis"]


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="measures from /proc/stat")
def test_a_run_at_the_zoo_sizes_records_the_busy_cores_it_measured(monkeypatch, tmp_path):
    """SAC's preset (256-256, batch 256): the rule measures, config.json records what it
    saw beside the count, and the count follows from it."""
    _no_user_variables(monkeypatch)
    train("sac", env_id="Pendulum-v1", total_steps=64, seed=0, out=str(tmp_path / "r"),
          overrides=QUICK, stream=io.StringIO())
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    seen = saved["threads_basis"]
    assert seen["source"] == "/proc/stat" and seen["window_s"] == threads.BUSY_WINDOW_S
    assert 0 <= seen["busy_cores"] <= threads.cpu_count()
    idle = threads.cpu_count() - seen["busy_cores"] >= threads.IDLE_CORE_LOAD
    assert saved["threads"] == (TWO if idle else 1)


@pytest.mark.parametrize("asked", sorted({1, TWO}))
def test_bench_prints_the_blas_thread_count_in_effect(asked):
    proc = subprocess.run([sys.executable, "-m", "minipg", "bench", "--threads", str(asked),
                           "--quick", "--repeats", "1", "--case", "c", "--dtype", "float64",
                           "--no-kernels"],
                          env=_env_without_thread_vars(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"NumPy BLAS threads: {asked};" in proc.stdout


def test_limit_and_set_threads_in_the_library():
    before = threads.blas_threads()
    with threads.limit(TWO) as n:
        assert n == TWO and threads.blas_threads() == TWO
    assert threads.blas_threads() == before
    previous = threads.set_threads(TWO)
    try:
        assert previous == before and threads.blas_threads() == TWO
    finally:
        threads.set_threads(before)


def test_cpu_jiffies_of_the_allowed_cpus_only(tmp_path):
    """Under taskset or a cpuset the rule counts only the CPUs this process may use: the
    sum of their cpuN lines; a CPU missing from the file gives None (the fallback)."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  11 0 0 13 0 0 0 0\ncpu0 10 0 0 3 0 0 0 0\ncpu1 1 0 0 10 0 0 0 0\n"
                    "intr 5\n")
    assert threads.cpu_jiffies(str(stat)) == (11, 24)
    assert threads.cpu_jiffies(str(stat), cpus={1}) == (1, 11)
    assert threads.cpu_jiffies(str(stat), cpus={0, 1}) == (11, 24)
    assert threads.cpu_jiffies(str(stat), cpus={2}) is None


def test_cpu_count_follows_the_affinity(monkeypatch):
    """cpu_count is the affinity's size where it is narrower than the machine."""
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert threads.allowed_cpus() == frozenset({3})
    assert threads.cpu_count() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert threads.allowed_cpus() is None and threads.cpu_count() == 8
