"""``minipg audit``: each estimator checked at the three levels of DESIGN.md.

1. ``gradcheck`` -- the engine's gradient of the estimator's loss against
   central finite differences (float64);
2. ``formula``   -- the autodiff gradient against the closed form written in
   the document, computed by hand in NumPy for a small linear model;
3. ``exact``     -- on a problem whose true gradient is known exactly (tabular
   MDP, LQR, quadrature), the Monte-Carlo mean of the estimator against the
   theorem, within a stated confidence bound.

A check is a function registered with :func:`audit_check`; it receives
``full`` (large samples when True) and a seeded ``numpy.random.Generator`` and
returns a :class:`Result`.  Check modules live beside this file (one per
family of algorithms) and are imported by :func:`run`.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass

import numpy as np

__all__ = ["Result", "audit_check", "run", "format_table", "CHECK_MODULES"]

# the modules holding the checks, imported by run()
CHECK_MODULES = ("classical", "onpolicy", "offpolicy")

_CHECKS = {}  # algorithm -> [(estimator, level, fn)]


@dataclass
class Result:
    """One row of the audit table.

    ``statistic`` is compared with ``threshold`` (``passed`` says how; the
    ``detail`` names the statistic, e.g. "max |z|, Bonferroni 99.9%")."""
    statistic: float
    threshold: float
    passed: bool
    detail: str = ""
    algorithm: str = ""
    estimator: str = ""
    level: str = ""
    seconds: float = 0.0


def audit_check(algorithm, estimator, level):
    """Register ``fn(full, rng) -> Result`` as a check of ``estimator`` for ``algorithm``."""
    if level not in ("gradcheck", "formula", "exact"):
        raise ValueError(f"level must be gradcheck, formula or exact; got {level!r}")

    def register(fn):
        _CHECKS.setdefault(algorithm, []).append((estimator, level, fn))
        return fn
    return register


def _load():
    for name in CHECK_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


def algorithms():
    """Algorithms that have checks, in registration order."""
    _load()
    return list(_CHECKS)


def run(selected=None, full=False, seed=0, on_result=None):
    """Run the checks of ``selected`` algorithms (all when None); a list of Results."""
    _load()
    selected = list(_CHECKS) if not selected else list(selected)
    unknown = [a for a in selected if a not in _CHECKS]
    if unknown:
        raise ValueError(f"no audit checks for {', '.join(unknown)}; accepted: "
                         f"{', '.join(_CHECKS)}")
    results = []
    for algo in selected:
        for i, (estimator, level, fn) in enumerate(_CHECKS[algo]):
            rng = np.random.default_rng([seed, i, sum(map(ord, algo))])
            start = time.perf_counter()
            try:
                result = fn(full, rng)
            except Exception as exc:  # a crashing check is a failing check, with its reason
                result = Result(float("nan"), float("nan"), False,
                                f"error: {type(exc).__name__}: {exc}")
            result.algorithm, result.estimator, result.level = algo, estimator, level
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
