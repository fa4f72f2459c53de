"""Shared test configuration: hypothesis profiles.

Choose one with the environment variable MINIPG_HYPOTHESIS_PROFILE:

* ``ci`` (default): 30 examples per property, derandomized so a CI run is
  reproducible, no deadline (timings on shared CI machines are noisy);
* ``dev``: 100 examples, random;
* ``thorough``: 1000 examples, random (slow; before a release).
"""

import os

# One BLAS thread: the tests' matrices are tiny, and BLAS threads spinning on
# them cost more than they save on a 2-core CI machine.  Set before NumPy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from hypothesis import HealthCheck, settings  # noqa: E402

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

settings.register_profile("ci", max_examples=30, derandomize=True, database=None, **_COMMON)
settings.register_profile("dev", max_examples=100, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)

settings.load_profile(os.environ.get("MINIPG_HYPOTHESIS_PROFILE", "ci"))
