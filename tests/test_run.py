"""The run loop and the run directory: files, determinism, resume, faults, bad input.

Training runs here are tiny (a few thousand CartPole steps, ~1 s each): they
check the machinery, not learning (learning is measured in verification/).
"""

import csv
import io
import json
import os
import signal
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minipg import algorithms
from minipg.algorithms.base import ConfigError, config_from
from minipg.cli import main
from minipg.run import (CHECKPOINT, CONFIG, EVAL, PROGRESS, Interrupted, NonFiniteError,
                        RunDirectoryError, read_checkpoint, train)

QUICK = {"batch_steps": "500", "log_every": "500", "checkpoint_every": "1000",
         "hidden": "16,16", "eval_episodes": "2"}
WALL_COLUMNS = ("wall_s", "steps_per_s")


def rows(run_dir):
    with open(os.path.join(run_dir, PROGRESS), newline="") as fh:
        return [{k: v for k, v in r.items() if k not in WALL_COLUMNS}
                for r in csv.DictReader(fh)]


def quick_train(out, total_steps=3000, seed=0, algo="reinforce", env="CartPole-v1", **kw):
    return train(algo, env, total_steps=total_steps, seed=seed, out=str(out),
                 overrides=dict(QUICK), stream=io.StringIO(), **kw)


def test_run_directory_contents(tmp_path):
    out = quick_train(tmp_path / "run")
    assert sorted(os.listdir(out)) == sorted([CONFIG, PROGRESS, CHECKPOINT, EVAL])
    config = json.load(open(os.path.join(out, CONFIG)))
    assert config["algorithm"] == "reinforce" and config["env_id"] == "CartPole-v1"
    assert config["seed"] == 0 and config["config"]["total_steps"] == 3000
    assert set(config["versions"]) >= {"minipg", "numpy", "numba", "gymnasium"}
    progress = rows(out)
    assert {"step", "episodes", "return_mean", "wall_s"} <= set(
        csv.DictReader(open(os.path.join(out, PROGRESS))).fieldnames)
    steps = [int(r["step"]) for r in progress]
    assert steps == sorted(steps) and steps[-1] >= 3000
    ev = json.load(open(os.path.join(out, EVAL)))
    assert ev["episodes"] == 2 and len(ev["returns"]) == 2
    assert ev["return_mean"] == pytest.approx(np.mean(ev["returns"]))
    arrays = read_checkpoint(os.path.join(out, CHECKPOINT))
    assert int(arrays["collector/steps"]) == steps[-1]


def test_same_seed_same_progress(tmp_path):
    a = rows(quick_train(tmp_path / "a", seed=3))
    b = rows(quick_train(tmp_path / "b", seed=3))
    c = rows(quick_train(tmp_path / "c", seed=4))
    assert a == b
    assert a != c  # the seed matters, so the equality above is not vacuous


def test_resume_continues_exactly(tmp_path):
    full = rows(quick_train(tmp_path / "full", total_steps=5000))
    part = quick_train(tmp_path / "part", total_steps=2500)
    k = int(read_checkpoint(os.path.join(part, CHECKPOINT))["collector/steps"])
    train("reinforce", total_steps=5000, out=part, resume=True, stream=io.StringIO())
    resumed = rows(part)
    after = [r for r in resumed if int(r["step"]) > k]
    assert after and after == [r for r in full if int(r["step"]) > k]


def test_sigint_writes_checkpoint_and_resume_matches(tmp_path, monkeypatch):
    cls = algorithms.get("reinforce")
    original = cls.learn
    calls = []

    def learn_then_interrupt(self, collector):
        out = original(self, collector)
        calls.append(collector.steps)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(cls, "learn", learn_then_interrupt)
    part = str(tmp_path / "part")
    with pytest.raises(Interrupted) as info:
        quick_train(part, total_steps=6000, raise_on_interrupt=True)
    assert info.value.signum == signal.SIGINT and info.value.step == calls[2]
    assert f"--resume {part}" in str(info.value)
    assert not os.path.exists(os.path.join(part, EVAL))  # stopped early
    k = int(read_checkpoint(os.path.join(part, CHECKPOINT))["collector/steps"])
    assert k == calls[2] < 6000
    monkeypatch.setattr(cls, "learn", original)
    train("reinforce", out=part, resume=True, stream=io.StringIO())
    full = rows(quick_train(tmp_path / "full", total_steps=6000))
    assert [r for r in rows(part) if int(r["step"]) > k] == \
        [r for r in full if int(r["step"]) > k]


def test_non_finite_stops_with_step_and_name(tmp_path, monkeypatch):
    cls = algorithms.get("reinforce")
    original = cls.learn
    calls = []

    def learn_then_break(self, collector):
        out = original(self, collector)
        calls.append(collector.steps)
        if len(calls) == 5:
            self.policy.flat_params = np.full_like(self.policy.flat_params, np.nan)
        return out

    monkeypatch.setattr(cls, "learn", learn_then_break)
    with pytest.raises(NonFiniteError) as info:
        quick_train(tmp_path / "run", total_steps=10_000)
    assert str(info.value) == f"non-finite parameters in policy at step {calls[4]}"
    arrays = read_checkpoint(os.path.join(tmp_path / "run", CHECKPOINT))
    assert int(arrays["collector/steps"]) < calls[4]            # an earlier, good checkpoint
    assert np.isfinite(arrays["module/policy"]).all()


# --- bad input: clear errors, exit status 2, no traceback --------------------------------
@pytest.mark.parametrize("argv, message", [
    (["train", "nope"], "unknown algorithm 'nope'; accepted: reinforce"),
    (["train", "reinforce", "--env", "NoSuchTask-v0"], "unknown environment 'NoSuchTask-v0'"),
    (["train", "reinforce", "--set", "lr=0.1"], "unknown setting(s) 'lr'; valid settings:"),
    (["train", "reinforce", "--set", "gamma=1.5"], "'gamma': 1.5 is out of range; accepted: (0.0"),
    (["train", "reinforce", "--set", "policy_lr=-1"], "'policy_lr': -1.0 is out of range"),
    (["train", "reinforce", "--set", "batch_steps=2.5"], "'batch_steps': '2.5' is not an integer"),
    (["train", "reinforce", "--set", "baseline=maybe"], "'baseline': 'maybe' is not true/false"),
    (["train", "reinforce", "--set", "hidden=a,b"], "'hidden': 'a,b' is not comma-separated"),
    (["train", "reinforce", "--set", "dtype=float16"], "'dtype': 'float16' is not accepted"),
    (["train", "reinforce", "--set", "gamma"], "--set 'gamma': expected key=value"),
    (["evaluate", "/nonexistent/run"], "is not a run directory"),
])
def test_cli_user_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default run directory would land here
    assert main(argv) == 2
    assert not os.path.exists(tmp_path / "runs")  # a refused run leaves nothing behind
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_occupied_run_directory_refused(tmp_path, capsys):
    out = quick_train(tmp_path / "run", total_steps=600)
    assert main(["train", "reinforce", "--out", out, "--total-steps", "600"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "reinforce", "--resume", str(tmp_path / "empty")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def _crafted_pickle_npz(path):
    """An .npz whose array is an object array: loading it with pickle would run code."""
    np.savez(path, evil=np.array([{"payload": "os.system"}], dtype=object))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle", "empty"])
def test_bad_checkpoint_is_a_clear_error(tmp_path, damage, capsys):
    out = quick_train(tmp_path / "run", total_steps=600)
    path = os.path.join(out, CHECKPOINT)
    if damage == "truncate":
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    elif damage == "garbage":
        open(path, "wb").write(os.urandom(2000))
    elif damage == "pickle":
        _crafted_pickle_npz(path)
    else:
        np.savez(path)
    with pytest.raises(RunDirectoryError, match="checkpoint"):
        train("reinforce", out=out, resume=True, stream=io.StringIO())
    assert main(["evaluate", out]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_pickle_npz_never_unpickled(tmp_path):
    path = str(tmp_path / "evil.npz")
    _crafted_pickle_npz(path)
    with zipfile.ZipFile(path) as zf:
        assert any(n.startswith("evil") for n in zf.namelist())
    with pytest.raises(RunDirectoryError, match="cannot read checkpoint"):
        read_checkpoint(path)


# --- property-based: the config parser and the checkpoint loader never crash -------------
_values = st.one_of(st.text(max_size=12), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.lists(st.integers(-3, 300), max_size=4))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(
    ["gamma", "policy_lr", "hidden", "baseline", "batch_steps", "dtype", "n_envs", "bogus",
     "total_steps", "activation"]), _values, max_size=4))
def test_config_parser_success_or_clear_error(overrides):
    cls = algorithms.get("reinforce").Config
    try:
        config = config_from(cls, overrides)
    except ConfigError as exc:
        assert str(exc)
    else:
        assert 0 < config.gamma <= 1 and config.policy_lr > 0 and config.batch_steps >= 1


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000))
def test_checkpoint_loader_success_or_clear_error(tmp_path_factory, blob):
    path = str(tmp_path_factory.mktemp("ck") / "checkpoint.npz")
    open(path, "wb").write(blob)
    try:
        read_checkpoint(path)
    except RunDirectoryError as exc:
        assert "cannot read checkpoint" in str(exc)


# --- list, evaluate, plot ----------------------------------------------------------------
def test_list_names_every_algorithm(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in algorithms.names():
        cls = algorithms.get(name)
        assert name in out and cls.default_env in out and cls.description in out


def test_evaluate_reloads_the_run(tmp_path, capsys):
    out = quick_train(tmp_path / "run", total_steps=600)
    assert main(["evaluate", out, "--episodes", "3"]) == 0
    assert "over 3 episodes" in capsys.readouterr().out
    # the reloaded policy is the trained one: same deterministic returns as eval.json
    from minipg.run import evaluate_run
    again = evaluate_run(out, episodes=2)
    assert again["returns"] == json.load(open(os.path.join(out, EVAL)))["returns"]


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    runs = [quick_train(tmp_path / f"s{seed}", total_steps=1500, seed=seed) for seed in (0, 1)]
    png = str(tmp_path / "curves.png")
    assert main(["plot", *runs, "--out", png]) == 0
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(tmp_path, monkeypatch, capsys):
    out = quick_train(tmp_path / "run", total_steps=600)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert main(["plot", out, "--out", str(tmp_path / "x.png")]) == 2
    assert "pip install 'minipg[plot]'" in capsys.readouterr().err


# --- the algorithm registry ----------------------------------------------------------------
def test_algorithm_registry_lists_the_documents_order_and_each_class_once():
    documented = ["reinforce", "actor_critic", "off_policy_ac", "a2c", "dpg", "ddpg", "td3",
                  "ppo", "sac", "sac_v1"]             # algorithms added later may sit between
    names = algorithms.names()
    assert len(set(names)) == len(names)
    assert [n for n in names if n in documented] == documented
    for entry in algorithms.ALGORITHMS.entries():
        cls = entry.obj
        assert issubclass(cls, algorithms.Algorithm) and cls.name == entry.name
        assert entry.module == f"minipg.algorithms.{entry.name}"


def test_algorithm_get_accepts_spellings_and_classes_and_names_the_accepted_ones():
    ppo = algorithms.get("ppo")
    assert algorithms.get("PPO") is ppo and algorithms.get(ppo) is ppo
    assert algorithms.get("Sac-V1") is algorithms.get("sac_v1")
    with pytest.raises(algorithms.UnknownAlgorithmError) as info:
        algorithms.get("natural_pg")
    assert isinstance(info.value, ConfigError)
    assert str(info.value) == ("unknown algorithm 'natural_pg'; accepted: " +
                               ", ".join(algorithms.names()))


def test_algorithm_order_holds_when_a_module_is_imported_first():
    """A module imported before the registry loads registers first; names() keeps the
    document's order all the same (a fresh interpreter: nothing loaded yet)."""
    import subprocess
    code = ("import minipg.algorithms.sac, minipg.algorithms.a2c\n"
            "from minipg import algorithms\nprint(','.join(algorithms.names()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().split(",") == algorithms.names()


def test_corrupt_config_json_is_a_clear_error(tmp_path, capsys):
    out = quick_train(tmp_path / "run", total_steps=600)
    with open(os.path.join(out, CONFIG), "w") as fh:
        fh.write("{not json")
    for argv in (["train", "reinforce", "--resume", out], ["evaluate", out]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "is not a minipg run config" in err and "Traceback" not in err
