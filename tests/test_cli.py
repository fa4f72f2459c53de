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
