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


def test_the_default_rule_keeps_one_thread_when_no_core_is_idle(monkeypatch):
    config = resolve_config(get_algorithm("sac"), "Pendulum-v1", {})
    cores = threads.cpu_count()
    assert threads.default_threads(config, load=cores - 1.0) == 1      # one core busy
    assert threads.default_threads(config, load=cores - 1.5) == TWO    # one idle
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))
    assert threads.busy_cores() == cores + 3.0
    assert threads.default_threads(config) == 1                        # read from the system
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.default_threads(config) == TWO


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
    assert saved["threads"] == asked
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
        assert json.loads((out / "config.json").read_text())["threads"] == expected


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
