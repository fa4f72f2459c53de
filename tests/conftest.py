"""Shared test configuration: hypothesis profiles.

Choose one with the environment variable MINIPG_HYPOTHESIS_PROFILE:

* ``ci`` (default): 30 examples per property, derandomized so a CI run is
  reproducible, no deadline (timings on shared CI machines are noisy);
* ``dev``: 100 examples, random;
* ``thorough``: 1000 examples, random (slow; before a release).
"""

import os
import subprocess
import sys
from pathlib import Path

# One BLAS thread: the tests' matrices are tiny, and BLAS threads spinning on
# them cost more than they save on a 2-core CI machine.  Set before NumPy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

settings.register_profile("ci", max_examples=30, derandomize=True, database=None, **_COMMON)
settings.register_profile("dev", max_examples=100, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)

settings.load_profile(os.environ.get("MINIPG_HYPOTHESIS_PROFILE", "ci"))


REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_without_jit():
    """A function that runs Python ``code`` in a fresh interpreter with
    NUMBA_DISABLE_JIT=1 (the kernels as plain Python) and asserts that it exits 0 and
    prints 'ok' (the numba kernels' tests of their uncompiled path)."""
    def run(code):
        env = dict(os.environ, NUMBA_DISABLE_JIT="1")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "ok"
    return run
