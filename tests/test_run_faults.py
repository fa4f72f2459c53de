"""Runs that keep the README's promises (issue 14): bad input is one clear line and exit
status 2; NaN stops with 3; a full disk with 4; Ctrl-C / SIGTERM with 130 / 143 after a
checkpoint; and the run directory is never left half-written, mixed or ambiguous.

Command-line behaviour is checked in subprocesses (started together, so the batch costs
about as much as its slowest member); the faults that need an exact moment (a full disk
mid-write, a crash after --force) are injected in-process.
"""

import csv
import dataclasses
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minipg import algorithms
from minipg.algorithms.base import (INT_HIGH, ConfigError, check_memory, config_from,
                                    memory_estimate)
from minipg.cli import main
from minipg.run import (CHECKPOINT, CONFIG, EVAL, PROGRESS, ProgressLog, RunDirectoryError,
                        RunWriteError, cut_progress, open_run, read_checkpoint, train,
                        write_checkpoint)

HERE = os.path.dirname(os.path.abspath(__file__))
QUICK = {"batch_steps": "500", "log_every": "500", "checkpoint_every": "1000",
         "hidden": "16,16", "eval_episodes": "2"}
QUICK_ARGS = [a for k, v in QUICK.items() for a in ("--set", f"{k}={v}")]
WALL_COLUMNS = ("wall_s", "steps_per_s")


def rows(run_dir):
    with open(os.path.join(run_dir, PROGRESS), newline="") as fh:
        return [{k: v for k, v in r.items() if k not in WALL_COLUMNS}
                for r in csv.DictReader(fh)]


def quick_train(out, total_steps=3000, algo="reinforce", env="CartPole-v1", **kw):
    return train(algo, env, total_steps=total_steps, seed=0, out=str(out),
                 overrides=dict(QUICK, **kw.pop("overrides", {})), stream=io.StringIO(), **kw)


def minipg(args, cwd, **kw):
    """``python -m minipg ARGS`` started (not waited for), with this directory on the path
    (for the tasks of tests/run_fault_envs.py, named ``run_fault_envs:ID``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [HERE, os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "minipg", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def step_of(path):
    return int(read_checkpoint(path)["collector/steps"])


# --- bad input and bad tasks: exit 2, one line naming what is wrong and what is accepted --
def _box2d_missing():
    try:
        import Box2D  # noqa: F401
    except ImportError:
        return True
    return False


CLI_CASES = [
    # (name, argv, exit status, needles in stderr)
    ("missing extra", ["train", "ppo", "--env", "LunarLander-v3"], 2,
     ["LunarLander-v3 needs a package that is not installed", "gymnasium[box2d]"]),
    ("tuple observations", ["train", "reinforce", "--env", "Blackjack-v1"], 2,
     ["Blackjack-v1 has Tuple observations", "accepted: Box, Discrete"]),
    ("dict observations", ["train", "reinforce", "--env", "run_fault_envs:DictObs-v0"], 2,
     ["has Dict observations", "accepted: Box, Discrete", "FlattenObservation"]),
    ("image observations", ["train", "reinforce", "--env", "run_fault_envs:ImageObs-v0"], 2,
     ["image observations (uint8, shape (16, 16, 3))", "accepted: vector observations"]),
    ("multidiscrete actions",
     ["train", "reinforce", "--env", "run_fault_envs:MultiDiscreteActions-v0"], 2,
     ["MultiDiscrete", "minipg accepts Discrete or a 1-D Box"]),
    ("unbounded box for sac", ["train", "sac", "--env", "run_fault_envs:UnboundedActions-v0"],
     2, ["sac cannot train on run_fault_envs:UnboundedActions-v0",
         "must be bounded in every dimension"]),
    ("negative seed", ["train", "reinforce", "--seed", "-1"], 2,
     ["--seed '-1' is not accepted; accepted: an integer in [0, 4294967295]"]),
    ("seed too large", ["train", "reinforce", "--seed", str(2**64)], 2,
     ["accepted: an integer in [0, 4294967295]"]),
    ("out is a file", ["train", "reinforce", "--out", "afile"], 2,
     ["--out afile exists and is not a directory; accepted: a new or empty directory"]),
    ("out under a file", ["train", "reinforce", "--out", "afile/run"], 2,
     ["--out afile/run: cannot create the directory", "accepted:"]),
    ("out is /dev/null", ["train", "reinforce", "--out", "/dev/null"], 2,
     ["--out /dev/null exists and is not a directory"]),
    ("out in /proc", ["train", "reinforce", "--out", "/proc/x/run"], 2,
     ["--out /proc/x/run: cannot create the directory", "accepted: a path where you can "
      "create a directory"]),
    ("out not a run", ["train", "reinforce", "--out", "mine"], 2,
     ["--out mine is not empty and is not a minipg run", "holds progress.csv",
      "accepted: a new or empty directory"]),
    ("out not a run, --force", ["train", "reinforce", "--out", "mine", "--force"], 2,
     ["--force replaces only a minipg run"]),
    ("empty env", ["train", "reinforce", "--env", ""], 2,
     ["--env '': an environment id is needed; accepted: a gymnasium id"]),
    ("mistyped algorithm", ["train", "pppo"], 2,
     ["unknown algorithm 'pppo'; accepted: reinforce", "Did you mean ppo?"]),
    ("n_epochs huge", ["train", "ppo", "--set", "n_epochs=99999999999999999999999"], 2,
     ["'n_epochs': 99999999999999999999999 is out of range; accepted: [1, 1000]"]),
    ("eval_episodes huge", ["train", "ppo", "--set", "eval_episodes=1e18"], 2,
     ["'eval_episodes': 1000000000000000000 is out of range; accepted: [1, 10000]"]),
    ("n_steps past the bound", ["train", "ppo", "--set", "n_steps=1e12"], 2,
     ["'n_steps': 1000000000000 is out of range; accepted: [1, 1e9]"]),
    ("n_steps beyond memory", ["train", "ppo", "--set", "n_steps=1e9"], 2,
     ["this run would need about", "the rollout buffer alone would take",
      "lower n_steps or n_envs; at most about n_steps="]),
    ("buffer_size past the bound", ["train", "sac", "--set", "buffer_size=1e13"], 2,
     ["'buffer_size': 10000000000000 is out of range; accepted: [1, 1e9]"]),
    ("buffer_size beyond memory", ["train", "sac", "--set", "buffer_size=1e9"], 2,
     ["the replay buffer alone would take", "buffer_size=1e9", "lower buffer_size"]),
    ("hidden too wide", ["train", "ppo", "--set", "hidden=1e8,1e8"], 2,
     ["'hidden': 100000000,100000000 is not accepted; accepted: 1 to 32 comma-separated "
      "integers in [1, 65536]"]),
    ("total-steps negative", ["train", "reinforce", "--total-steps", "-5"], 2,
     ["'total_steps': -5 is out of range; accepted: [1, 1e9]"]),
    ("video into a missing directory",
     ["evaluate", "finished", "--render", "rgb_array", "--video", "nodir/x.gif"], 2,
     ["--video nodir/x.gif: the directory nodir does not exist; accepted: a .gif path"]),
    ("plot of a malformed csv", ["plot", "badcsv"], 2,
     ["badcsv/progress.csv, line 2: step '1', return_mean 'abc' are not numbers; accepted:"]),
    ("plot --out x.txt", ["plot", "finished", "--out", "x.txt"], 2,
     ["--out x.txt: accepted: a path ending in .png, .pdf, .svg"]),
    ("resume with --set", ["train", "reinforce", "--resume", "finished", "--set", "gamma=0.5",
                           "--env", "Acrobot-v1"], 2,
     ["--env, --set cannot change on resume. Accepted with --resume: --total-steps N"]),
    ("resume with a budget not above the steps trained",
     ["train", "reinforce", "--resume", "finished", "--total-steps", "-5"], 2,
     ["'total_steps': -5 is out of range; accepted: [1, 1e9]"]),
    ("resume a finished run", ["train", "reinforce", "--resume", "finished"], 2,
     ["the run has finished its 600 steps", "accepted: --total-steps above"]),
    ("nan reward",
     ["train", "reinforce", "--env", "run_fault_envs:NaNReward-v0", "--out", "nan",
      "--total-steps", "3000", *QUICK_ARGS], 3,
     ["minipg: training stopped: non-finite reward [nan] from the task at step 700; the "
      "last good checkpoint is kept"]),
]


# the cases run as subprocesses (each costs ~1 s of imports); the others through main()
IN_PROCESS_ONLY = {"dict observations", "image observations", "multidiscrete actions",
                   "unbounded box for sac", "seed too large", "out under a file",
                   "out is /dev/null", "out in /proc", "out not a run, --force",
                   "buffer_size past the bound", "empty env",
                   "mistyped algorithm", "eval_episodes huge", "n_steps past the bound",
                   "n_steps beyond memory", "hidden too wide", "total-steps negative",
                   "video into a missing directory", "plot --out x.txt",
                   "resume with a budget not above the steps trained",
                   "resume a finished run"}


def _fixtures(tmp_path):
    quick_train(tmp_path / "finished", total_steps=600)
    (tmp_path / "afile").write_text("not a directory")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / PROGRESS).write_text("step,x\n1,2\n")
    (tmp_path / "badcsv").mkdir()
    (tmp_path / "badcsv" / PROGRESS).write_text("step,return_mean\n1,abc\n")
    return {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


def _check(name, code, needles, returncode, err):
    assert returncode == code, (name, err)
    assert "Traceback" not in err, (name, err)
    for needle in needles:
        assert needle in err, (name, needle, err)


def test_bad_input_and_bad_tasks_exit_with_one_clear_line(tmp_path):
    """Each case in its own process, all started at once: the exit status, no traceback,
    the message, and no run directory left where the run was refused."""
    before = _fixtures(tmp_path)
    cases = [c for c in CLI_CASES if c[0] not in IN_PROCESS_ONLY
             and (c[0] != "missing extra" or _box2d_missing())]
    procs = [(case, minipg(case[1], cwd=tmp_path)) for case in cases]
    for (name, argv, code, needles), proc in procs:
        _, err = proc.communicate(timeout=300)
        _check(name, code, needles, proc.returncode, err)
    for path, data in before.items():                    # nothing refused was touched
        assert path.read_bytes() == data, path
    assert not (tmp_path / "runs").exists()              # no default run directory made
    # the NaN run: stopped with the step, its directory whole and its checkpoint good
    nan = tmp_path / "nan"
    assert sorted(os.listdir(nan)) == sorted([CONFIG, PROGRESS, CHECKPOINT])
    assert step_of(nan / CHECKPOINT) < 700
    assert [int(r["step"]) for r in rows(nan)] == [500]


def test_bad_input_in_process(tmp_path, capsys, monkeypatch):
    """The other cases, through main() (the code the command runs, without the ~1 s of
    imports a process costs)."""
    before = _fixtures(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(HERE)
    for name, argv, code, needles in CLI_CASES:
        if name in IN_PROCESS_ONLY:
            _check(name, code, needles, main(argv), capsys.readouterr().err)
    for path, data in before.items():
        assert path.read_bytes() == data, path
    assert sorted(os.listdir(tmp_path)) == ["afile", "badcsv", "finished", "mine"]


def test_module_env_form_trains_and_one_rule_for_total_steps(tmp_path, capsys):
    """gymnasium's module:EnvId form is accepted; --total-steps 1e3 and --set
    total_steps=1e3 are one rule."""
    out = str(tmp_path / "run")
    assert main(["train", "reinforce", "--env", "gymnasium.envs.classic_control:CartPole-v1",
                 "--total-steps", "1e3", "--out", out, *QUICK_ARGS]) == 0
    saved = json.load(open(os.path.join(out, CONFIG)))
    assert saved["config"]["total_steps"] == 1000
    assert saved["env_id"] == "gymnasium.envs.classic_control:CartPole-v1"
    assert main(["evaluate", out, "--episodes", "1"]) == 0
    assert main(["train", "reinforce", "--env", "no_such_module_x:CartPole-v1"]) == 2
    assert "cannot import module 'no_such_module_x'" in capsys.readouterr().err


# --- stopping: signals, kill -9, a crash after --force ---------------------------------
def _wait_for_rows(path, n, proc, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, proc.communicate()
        if os.path.exists(path) and open(path).read().count("\n") > n:
            return
        time.sleep(0.05)
    raise AssertionError("no progress rows")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130),
                                       (signal.SIGKILL, -signal.SIGKILL)])
def test_stopped_runs_resume_to_the_uninterrupted_rows(tmp_path, sig, code):
    """SIGTERM and Ctrl-C: a checkpoint, a message naming the step and how to continue,
    exit 128 + signal.  kill -9: whatever it left, --resume cuts progress.csv back to the
    checkpoint, so the resumed rows equal an uninterrupted run's, each step once."""
    part = tmp_path / "part"
    proc = minipg(["train", "reinforce", "--out", str(part), "--total-steps", "200000",
                   *QUICK_ARGS, "--set", "checkpoint_every=3000"], cwd=tmp_path)
    _wait_for_rows(part / PROGRESS, 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    k = step_of(part / CHECKPOINT)
    assert not (part / EVAL).exists()
    if sig == signal.SIGKILL:                # as if killed while writing a checkpoint
        (part / (CHECKPOINT + ".tmp")).write_bytes(b"PK half a checkpoint")
    else:
        assert not (part / (CHECKPOINT + ".tmp")).exists()
    if sig != signal.SIGKILL:
        name = signal.Signals(sig).name
        assert (f"minipg: interrupted by {name} at step {k}; checkpoint written; continue "
                f"with: minipg train reinforce --resume {part}") in err
    total = k + 2000
    assert main(["train", "reinforce", "--resume", str(part), "--total-steps",
                 str(total)]) == 0
    steps = [int(r["step"]) for r in rows(part)]
    assert steps == sorted(set(steps))                   # no duplicate rows
    assert sorted(os.listdir(part)) == sorted([CONFIG, PROGRESS, CHECKPOINT, EVAL])
    saved = json.load(open(part / CONFIG))
    assert saved["config"]["total_steps"] == total       # the new budget is recorded
    assert saved["budget_changes"][-1]["from"] == 200000
    full = rows(quick_train(tmp_path / "full", total_steps=total,
                            overrides={"checkpoint_every": "3000"}))
    assert [r for r in rows(part) if int(r["step"]) > k] == \
        [r for r in full if int(r["step"]) > k]
    assert rows(part) == full


def test_a_run_killed_at_once_resumes_and_a_missing_checkpoint_names_force(tmp_path):
    out = str(tmp_path / "run")
    run = open_run("reinforce", "CartPole-v1", 1500, 0, out, dict(QUICK))
    run.close()                                # killed before training: a step-0 checkpoint
    assert step_of(os.path.join(out, CHECKPOINT)) == 0
    train("reinforce", out=out, resume=True, stream=io.StringIO())
    assert rows(out) == rows(quick_train(tmp_path / "full", total_steps=1500))
    os.remove(os.path.join(out, CHECKPOINT))
    with pytest.raises(RunDirectoryError, match=r"stopped before its first checkpoint.*"
                                                r"--out .* --force"):
        train("reinforce", out=out, resume=True, stream=io.StringIO())
    with pytest.raises(RunDirectoryError, match=r"already holds a run; use --resume .* \(it "
                                                r"has no checkpoint yet\), --force"):
        quick_train(out)


def test_force_clears_the_old_run_before_anything_else(tmp_path, monkeypatch):
    out = quick_train(tmp_path / "run", total_steps=2000)
    cls = algorithms.get("reinforce")

    def crash(self, collector):
        raise RuntimeError("crash")

    monkeypatch.setattr(cls, "learn", crash)
    with pytest.raises(RuntimeError, match="crash"):
        quick_train(out, total_steps=900, force=True, overrides={"hidden": "8"})
    assert sorted(os.listdir(out)) == sorted([CONFIG, PROGRESS, CHECKPOINT])  # no eval.json
    arrays = read_checkpoint(os.path.join(out, CHECKPOINT))
    assert int(arrays["collector/steps"]) == 0
    assert json.loads(str(arrays["config"]))["hidden"] == [8]   # the new run's model
    assert os.path.getsize(os.path.join(out, PROGRESS)) == 0


def test_two_trainings_never_share_a_directory(tmp_path):
    """The first holds the directory's lock for its lifetime; a second (even --force, even
    one that passed the checks before the first wrote config.json) is refused."""
    out = str(tmp_path / "run")
    first = open_run("reinforce", "CartPole-v1", 1000, 0, out, dict(QUICK))
    try:
        with pytest.raises(RunDirectoryError, match="is in use: another minipg train holds "
                                                    "its lock"):
            quick_train(out, force=True)
        with pytest.raises(RunDirectoryError, match="is in use"):
            train("reinforce", out=out, resume=True, stream=io.StringIO())
    finally:
        first.close()
    quick_train(out, total_steps=600, force=True)              # released: accepted
    assert sorted(os.listdir(out)) == sorted([CONFIG, PROGRESS, CHECKPOINT, EVAL])


# --- resume: what can change, and what it says ------------------------------------------
def test_resume_refuses_other_flags_and_what_is_not_above_the_steps_trained(tmp_path, capsys):
    out = quick_train(tmp_path / "run", total_steps=2000)
    done = step_of(os.path.join(out, CHECKPOINT))
    for argv, needle in (
            (["--seed", "3"], "--seed cannot change on resume"),
            (["--out", "x"], "--out cannot change on resume"),
            (["--force"], "--force cannot change on resume"),
            (["--total-steps", str(done)],
             f"--total-steps {done} is not above the {done} steps the run has trained; "
             f"accepted: --total-steps above {done}")):
        assert main(["train", "reinforce", "--resume", out, *argv]) == 2
        assert needle in capsys.readouterr().err, argv


def test_warnings_no_update_before_the_budget_ends_and_an_inexact_resume(tmp_path):
    stream = io.StringIO()
    out = train("sac", "Pendulum-v1", total_steps=100, out=str(tmp_path / "run"),
                overrides={"learning_starts": "200", "hidden": "8", "eval_episodes": "1",
                           "batch_size": "8"}, stream=stream)
    assert ("warning: total_steps=100 ends before learning_starts=200: the run makes no "
            "gradient update") in stream.getvalue()
    stream = io.StringIO()
    train("sac", out=out, total_steps=300, resume=True, stream=stream)
    text = stream.getvalue()
    assert "warning:" not in text
    assert ("note: sac resumes with an empty replay buffer (checkpoint_replay=false), so it "
            "does not continue exactly") in text


# --- a full disk: atomic checkpoints, whole rows --------------------------------------
def test_a_failed_checkpoint_write_leaves_the_previous_one_and_no_tmp(tmp_path, monkeypatch):
    path = str(tmp_path / CHECKPOINT)
    write_checkpoint(path, {"a": np.arange(3)})

    def savez_then_full(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_then_full)
    with pytest.raises(RunWriteError, match="cannot write checkpoint .*: No space left on "
                                            "device; the previous one is intact"):
        write_checkpoint(path, {"a": np.arange(5)})
    assert os.listdir(tmp_path) == [CHECKPOINT]
    np.testing.assert_array_equal(read_checkpoint(path)["a"], np.arange(3))


def test_a_failed_row_write_leaves_only_whole_rows(tmp_path, monkeypatch):
    path = str(tmp_path / PROGRESS)
    row = {"step": 1, "episodes": 0, "return_mean": float("nan"), "steps_per_s": 1.0}
    with ProgressLog(path, 10, io.StringIO()) as log:
        log.write(row)
        before = open(path, "rb").read()
        real_write = os.write

        def half_then_full(fd, data):
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", half_then_full)
        with pytest.raises(RunWriteError, match="every complete row before is kept"):
            log.write(dict(row, step=2))
        monkeypatch.setattr(os, "write", real_write)
    assert open(path, "rb").read() == before and before.endswith(b"\r\n")


def test_resume_cuts_progress_back_to_the_checkpoint(tmp_path):
    path = str(tmp_path / PROGRESS)
    lines = ["step,x\r\n", "500,1\r\n", "1000,2\r\n", "1500,3\r\n", "2000,4\r\n", "25"]
    open(path, "w", newline="").write("".join(lines))
    cut_progress(path, 1000)
    assert open(path, newline="").read() == "".join(lines[:3])
    cut_progress(path, 1000)                                 # nothing more to drop
    assert open(path, newline="").read() == "".join(lines[:3])
    assert os.listdir(tmp_path) == [PROGRESS]


def test_a_full_disk_exits_4_and_the_run_directory_stays_whole(tmp_path):
    """A real full disk: a 120 KiB tmpfs (root only; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs",
                                            str(disk)], capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        out = disk / "run"
        for argv in (["--out", str(out), "--total-steps", "50000", *QUICK_ARGS,
                      "--set", "hidden=32,32", "--set", "log_every=100"],
                     ["--resume", str(out)]):
            proc = minipg(["train", "reinforce", *argv], cwd=tmp_path)
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 4, err
            assert "Traceback" not in err
            assert "No space left on device; the previous one is intact" in err
            assert f"continue with: minipg train reinforce --resume {out}" in err
            assert sorted(os.listdir(out)) == sorted([CONFIG, PROGRESS, CHECKPOINT])
            assert open(out / PROGRESS, "rb").read().endswith(b"\r\n")
            assert step_of(out / CHECKPOINT) >= 0
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# --- evaluate and plot ---------------------------------------------------------------------
@pytest.mark.parametrize("damage, needle", [
    ("truncated", "JSONDecodeError"), ("array", "it holds a JSON list"),
    ("binary", "UnicodeDecodeError"), ("no env_id", "'env_id' is missing"),
    ("seed zero", "'seed' is 'zero'")])
def test_a_corrupt_config_json_is_one_line(tmp_path, capsys, damage, needle):
    out = quick_train(tmp_path / "run", total_steps=600)
    path = os.path.join(out, CONFIG)
    text = open(path).read()
    saved = json.loads(text)
    if damage == "truncated":
        open(path, "w").write(text[:40])
    elif damage == "array":
        open(path, "w").write("[1, 2]")
    elif damage == "binary":
        open(path, "wb").write(bytes(range(128, 256)))
    elif damage == "no env_id":
        del saved["env_id"]
        json.dump(saved, open(path, "w"))
    else:
        saved["seed"] = "zero"
        json.dump(saved, open(path, "w"))
    for argv in (["evaluate", out], ["train", "reinforce", "--resume", out]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "is not a minipg run config" in err and needle in err and "accepted:" in err


def test_gif_frames_are_streamed_to_the_file(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from minipg.envs.video import GifWriter
    import tracemalloc
    path = str(tmp_path / "x.gif")
    frame = np.full((40, 60, 3), 255, np.uint8)
    with GifWriter(path) as writer:
        for i in range(30):
            frame[10:20, :] = 255
            frame[10:20, i:i + 5] = (200, 30, 30)
            writer.append(frame)
        with pytest.raises(ValueError, match="size"):
            writer.append(np.zeros((10, 10, 3), np.uint8))
    assert writer.frames == 30
    # memory: 300 CartPole-sized frames (400 x 600, 0.7 MB each) cost what 30 do
    big = np.full((400, 600, 3), 255, np.uint8)
    peaks = []
    for n in (30, 300):
        tracemalloc.start()
        with GifWriter(str(tmp_path / f"{n}.gif")) as writer:
            for i in range(n):
                big[100:200, :] = 255
                big[100:200, i:i + 50] = (200, 30, 30)
                writer.append(big)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] + 2**20, peaks
    gif = Image.open(path)
    assert gif.n_frames == 30 and gif.info["loop"] == 0
    gif.seek(17)
    assert tuple(np.asarray(gif.convert("RGB"))[15, 19]) == (200, 30, 30)


# --- the settings' upper bounds and the memory estimate --------------------------------------
def _int_fields(cls):
    return [f for f in dataclasses.fields(cls.Config)
            if f.type in (int, "int") and f.metadata.get("choices") is None]


def test_every_integer_setting_has_an_upper_bound():
    for name in algorithms.names():
        for f in _int_fields(algorithms.get(name)):
            assert f.metadata["high"] is not None and f.metadata["high"] <= INT_HIGH, \
                (name, f.name)


@st.composite
def _near_bounds(draw):
    """An algorithm and overrides of its integer settings and layer sizes drawn near and
    past their bounds, plus a memory limit between 1 MiB and 64 GiB."""
    cls = algorithms.get(draw(st.sampled_from(algorithms.names())))
    fields = _int_fields(cls)
    overrides = {}
    for f in draw(st.lists(st.sampled_from(fields), max_size=4, unique_by=lambda f: f.name)):
        low, high = f.metadata["low"] or 0, f.metadata["high"]
        overrides[f.name] = draw(st.one_of(
            st.sampled_from([low, high, high + 1, low - 1, 10**23]),
            st.integers(low, high), st.integers(high, 10 * high)))
    if any(f.name == "hidden" for f in dataclasses.fields(cls.Config)) and draw(st.booleans()):
        overrides["hidden"] = draw(st.lists(st.integers(0, 70_000), min_size=0, max_size=3))
    limit = draw(st.integers(2**20, 2**36))
    obs_dim, act_dim = draw(st.integers(1, 400)), draw(st.integers(1, 20))
    return cls, overrides, limit, obs_dim, act_dim


@settings(max_examples=300, deadline=None)
@given(_near_bounds())
def test_settings_past_their_bounds_or_beyond_memory_are_refused_by_name(case):
    cls, overrides, limit, obs_dim, act_dim = case
    try:
        config = config_from(cls.Config, overrides)
    except ConfigError as exc:
        text = str(exc)
        assert "accepted" in text and any(f"'{k}'" in text for k in overrides) or \
            "exceeds" in text, text                      # cross-field checks name both
        return
    for f in _int_fields(cls):
        assert f.metadata["low"] is None or getattr(config, f.name) >= f.metadata["low"]
        assert getattr(config, f.name) <= f.metadata["high"]
    parts = memory_estimate(config, obs_dim, act_dim)
    total = sum(b for b, _ in parts.values())
    assert total > 0 and all(b > 0 for b, _ in parts.values())
    try:
        assert check_memory(config, obs_dim, act_dim, limit=limit) == total <= limit
    except ConfigError as exc:
        text = str(exc)
        assert total > limit and "lower " in text and "would need about" in text
        biggest = max(parts.values(), key=lambda v: v[0])
        assert any(name in text for name in biggest[1] if hasattr(config, name)), text


def test_the_memory_estimate_covers_what_a_run_allocates(tmp_path):
    """The estimate is an upper bound of the buffers and networks actually built: PPO's
    rollout and SAC's replay buffer measured in bytes."""
    from minipg.envs.vector import make_vector_env
    for name, overrides, attr in (("ppo", {"n_steps": "4096", "n_envs": "4"}, "buffer"),
                                  ("sac", {"buffer_size": "50000"}, "buffer")):
        cls = algorithms.get(name)
        env_id = "CartPole-v1" if name == "ppo" else "Pendulum-v1"
        config = config_from(cls.Config, dict(cls.presets.get(env_id, {}), **overrides))
        envs = make_vector_env(env_id, 1)
        agent = cls(config, envs.single_observation_space, envs.single_action_space, 0)
        envs.close()
        buffer = getattr(agent, attr)
        held = sum(v.nbytes for v in vars(buffer).values() if isinstance(v, np.ndarray))
        params = sum(m.flat_params.nbytes for m in agent.modules().values())
        obs_dim = envs.single_observation_space.shape[0]
        act = envs.single_action_space
        act_dim = act.n if hasattr(act, "n") else act.shape[0]
        parts = memory_estimate(config, obs_dim, act_dim)
        key = "rollout buffer" if name == "ppo" else "replay buffer"
        assert held <= parts[key][0] + parts.get("activations", (0,))[0], name
        assert params * 4 <= parts["networks"][0], name


def test_evaluate_video_says_where_it_went_without_sdl_noise(tmp_path):
    pytest.importorskip("pygame")
    pytest.importorskip("PIL")
    out = quick_train(tmp_path / "run", total_steps=600)
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "DISPLAY")}
    proc = subprocess.run([sys.executable, "-m", "minipg", "evaluate", out, "--episodes", "1",
                           "--render", "rgb_array", "--video", "x.gif"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "XDG_RUNTIME_DIR" not in proc.stdout + proc.stderr
    assert f"frames to {tmp_path / 'x.gif'}" in proc.stdout
    assert (tmp_path / "x.gif").read_bytes()[:6] == b"GIF89a"


def test_a_run_stopped_during_its_evaluation_resumes_to_the_evaluation(tmp_path):
    out = quick_train(tmp_path / "run", total_steps=1000)
    expected = json.load(open(os.path.join(out, EVAL)))
    os.remove(os.path.join(out, EVAL))                 # as if killed while evaluating
    rows_before = rows(out)
    train("reinforce", out=out, resume=True, stream=io.StringIO())
    assert json.load(open(os.path.join(out, EVAL))) == expected and rows(out) == rows_before


def test_a_task_that_renders_nothing_leaves_no_empty_gif(tmp_path, capsys, monkeypatch):
    pytest.importorskip("PIL")
    monkeypatch.syspath_prepend(HERE)
    for env_id, needle in (
            ("NoFrames-v0", "rendered no frames; accepted: a task that renders in rgb_array "
                            "mode"),
            ("NoRenderMode-v0", "does not take render_mode='rgb_array'; accepted: a task "
                                "that renders in rgb_array mode"),
            ("NoRenderModes-v0", "does not render in rgb_array mode (its render modes: "
                                 "none); accepted: a task that renders in rgb_array mode")):
        out = str(tmp_path / env_id)
        assert main(["train", "reinforce", "--env", f"run_fault_envs:{env_id}", "--out", out,
                     "--total-steps", "600", *QUICK_ARGS]) == 0
        video = str(tmp_path / "x.gif")
        assert main(["evaluate", out, "--episodes", "1", "--render", "rgb_array",
                     "--video", video]) == 2
        assert needle in capsys.readouterr().err, env_id
        assert not os.path.exists(video)
