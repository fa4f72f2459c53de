"""The command line: bench runs and prints its table; bad input is a clear error."""

import subprocess
import sys

import pytest

from minipg import __version__
from minipg.cli import main


def test_bench_prints_every_requested_row(capsys):
    assert main(["bench", "--quick", "--repeats", "1", "--case", "c", "a",
                 "--dtype", "float64", "--no-kernels"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    rows = [line for line in lines if line and line[0] in ("a", "c")]
    assert [(r[0], r[1]) for r in rows] == [("c", "float64"), ("a", "float64")]
    for r in rows:
        assert float(r[2]) > 0 and float(r[3]) > 0      # minipg and floor times in us


def test_bench_kernel_table_lists_each_kernel(capsys):
    from minipg import bench
    rows = bench.run(repeats=1, quick=True, cases=(), kernels=True)
    names = [r["kernel"] for r in rows]
    for kernel in ("gae", "discounted_returns", "n_step_returns", "adam_update",
                   "rmsprop_update", "sgd_update", "polyak_update", "log_softmax_rows",
                   "log_softmax_rows_vjp", "categorical_sample_rows"):
        assert any(n.startswith(kernel) for n in names), kernel
    assert all(r["numba_s"] > 0 and r["numpy_s"] > 0 for r in rows)


def test_unknown_command_and_bad_values_exit_nonzero_with_a_message():
    for args, needle in ((["fly"], "invalid choice: 'fly'"),
                         (["bench", "--case", "z"], "invalid choice: 'z'"),
                         (["bench", "--repeats", "0"], "--repeats must be >= 1")):
        proc = subprocess.run([sys.executable, "-m", "minipg", *args], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


# --- minipg train [ALGO] --help ----------------------------------------------------------
def test_train_algo_help_lists_every_setting_with_help_default_and_range(capsys):
    """Every field of every registered algorithm's config, with its help text (its first
    words: the help is wrapped), its default and what --set accepts."""
    import dataclasses
    import json

    from minipg import algorithms
    from minipg.algorithms.base import accepted_values, setting_default
    for name in algorithms.names():
        cls = algorithms.get(name)
        assert main(["train", name, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: minipg train") and f"settings of {cls.name}" in out
        flat = " ".join(out.split())                       # the help text, unwrapped
        for f in dataclasses.fields(cls.Config):
            line = (f"{f.name} = {json.dumps(setting_default(f))}  "
                    f"({accepted_values(cls.Config, f)})")
            assert f"\n  {line}\n" in out, (name, line)
            assert f.metadata["help"] and " ".join(f.metadata["help"].split()) in flat, \
                (name, f.name)
        for env_id in cls.presets:
            assert f"  {env_id}: " in out, (name, env_id)


def test_train_help_ranges_read_as_the_validator_accepts(capsys):
    assert main(["train", "ppo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  gamma = 0.99  (a number in (0.0, 1.0])\n      discount factor\n" in out
    assert "  clip_eps = 0.2  (a number in (0.0, 1.0))" in out
    assert "  n_epochs = 10  (an integer in [1, 1000])" in out
    assert "  activation = \"tanh\"  (one of tanh, relu)" in out
    assert "  hidden = [64, 64]  (1 to 32 comma-separated integers in [1, 65536], e.g. 64,64)" in out
    assert "  normalize_obs = false  (true or false)" in out


def test_train_help_without_an_algorithm_and_errors():
    proc = subprocess.run([sys.executable, "-m", "minipg", "train", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: minipg train" in proc.stdout
    assert "minipg train ALGO --help" in proc.stdout
    for args, needle in ((["train"], "the following arguments are required: algorithm"),
                         (["train", "nope", "--help"], "unknown algorithm 'nope'; accepted:")):
        proc = subprocess.run([sys.executable, "-m", "minipg", *args], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and needle in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == ""
