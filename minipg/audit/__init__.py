"""``minipg audit``: each estimator checked at the three verification levels.

The levels (gradcheck, formula, exact) are defined in ``CONTRIBUTING.md,
"Verification levels"`` and implemented once, with their statistics,
thresholds and confidence level, in :mod:`minipg.audit.levels`.

The package:

* :mod:`~minipg.audit.stats` -- the statistical tests of level 3;
* :mod:`~minipg.audit.beds` -- the exact test beds and the per-sample
  estimates drawn on them;
* :mod:`~minipg.audit.levels` -- the levels, the :class:`Result` row and the
  runner of each level;
* the check rows, one module per family (:data:`CHECK_MODULES`), each
  registering its checks with :func:`audit_check`;
* :mod:`~minipg.audit.exact` -- the public API for OUTSIDE estimators: a
  plain function on NumPy arrays checked against the exact beds
  (``exact.check(name, fn)``; ``minipg audit --estimator MODULE:FUNCTION
  --check NAME``), with the known wrong target named on a failure.

The checks live in one :class:`minipg.registry.Registry` (:data:`CHECKS`),
keyed by ``(algorithm, estimator, level)``; a listed module that cannot be
imported is an error, never a silently missing family.  Each check draws from
its own generator, seeded from its name (:func:`check_rng`), so adding,
removing or reordering checks reseeds no other check.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from minipg.registry import Registry, UnknownNameError

from .levels import LEVELS, Result

__all__ = ["Result", "LEVELS", "CHECK_MODULES", "CHECKS", "audit_check", "check_rng",
           "algorithms", "checks", "run", "format_row", "header", "format_table",
           "UnknownAlgorithmError"]

# the modules holding the checks, imported on first use
CHECK_MODULES = ("classical", "onpolicy", "a3c", "offpolicy", "d4pg", "maddpg", "trpo", "acer",
                 "acktr")

CHECKS = Registry("audit check", __name__, CHECK_MODULES)


class UnknownAlgorithmError(UnknownNameError):
    """An algorithm that has no audit checks (the message lists those that have)."""


def audit_check(algorithm, estimator, level):
    """Register ``fn(full, rng) -> Result`` as the ``level`` check of ``estimator`` for
    ``algorithm``, under the key ``(algorithm, estimator, level)``."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    return CHECKS.register((algorithm, estimator, level), algorithm=algorithm,
                           estimator=estimator, level=level)


def check_rng(seed, algorithm, estimator, level):
    """The generator of one check: seeded by ``seed`` and the SHA-256 of its name.

    The name ``algorithm/estimator/level`` (UTF-8) is hashed, and the first 16
    bytes become four 32-bit words of the seed sequence, so the stream depends
    on the check's own name only -- not on its position, not on Python's
    salted ``hash()`` -- and is the same on every run and machine."""
    digest = hashlib.sha256(f"{algorithm}/{estimator}/{level}".encode("utf-8")).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]
    return np.random.default_rng([int(seed), *words])


def checks(selected=None):
    """The registered check entries of the ``selected`` algorithms (all when None), in
    the modules' listed order; an unknown algorithm is an :class:`UnknownAlgorithmError`."""
    entries = CHECKS.entries()            # modules in CHECK_MODULES order
    known = algorithms()
    selected = known if not selected else list(selected)
    unknown = [a for a in selected if a not in known]
    if unknown:
        raise UnknownAlgorithmError(f"no audit checks for {', '.join(map(str, unknown))}; "
                                    f"accepted: {', '.join(known)}")
    return [e for a in selected for e in entries if e.info["algorithm"] == a]


def algorithms():
    """Algorithms that have checks, in registration order."""
    return list(dict.fromkeys(e.info["algorithm"] for e in CHECKS.entries()))


def run(selected=None, full=False, seed=0, on_result=None):
    """Run the checks of ``selected`` algorithms (all when None); a list of Results.

    A check that raises is a failing row whose detail names the exception."""
    results = []
    for entry in checks(selected):
        algorithm, estimator, level = entry.name
        rng = check_rng(seed, algorithm, estimator, level)
        start = time.perf_counter()
        try:
            result = entry.obj(full, rng)
        except Exception as exc:  # a crashing check is a failing check, with its reason
            result = Result(float("nan"), float("nan"), False,
                            f"error: {type(exc).__name__}: {exc}")
        result.algorithm, result.estimator, result.level = algorithm, estimator, level
        result.seconds = time.perf_counter() - start
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def format_row(r):
    return (f"{r.algorithm:<14} {r.estimator:<28} {r.level:<10} {r.statistic:>11.3g} "
            f"{r.threshold:>11.3g}  {'PASS' if r.passed else 'FAIL'}  {r.detail}")


def header():
    return (f"{'algorithm':<14} {'estimator':<28} {'check':<10} {'statistic':>11} "
            f"{'threshold':>11}  result  what")


def format_table(results):
    return "\n".join([header()] + [format_row(r) for r in results])
