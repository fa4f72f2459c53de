r"""The three levels of ``minipg audit``, implemented once: statistic, threshold, runner.

The levels are defined in ``CONTRIBUTING.md, "Verification levels"`` (1
gradcheck: the engine's gradient against central finite differences; 2
formula: the autodiff gradient against the document's closed form; 3 exact:
the Monte-Carlo mean against the exact gradient on a test bed, at a stated
confidence).  Every row of every family (the modules listed in
``minipg.audit.CHECK_MODULES``) is built by the runner of its level here,
so a level's statistic, threshold and wording are the same in every family:

1. ``gradcheck`` -- :func:`gradcheck_function` (a loss of plain arrays) and
   :func:`gradcheck_module` (a loss of a Module's flat parameter vector).
   Every coordinate of the parameters the loss trains is stepped by +-eps;
   ``fd_i = (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)`` is compared with
   the engine's reverse-mode gradient ``ad_i`` -- the entry-by-entry
   comparison of :func:`minipg.autodiff.gradcheck`, for a scalar loss.
   Statistic: ``max_i |ad_i - fd_i| / (atol + rtol |fd_i|)``; pass: <= 1.
   Tolerances of ``CONTRIBUTING.md, "Test tolerances"``, float64: eps 1e-6,
   atol 1e-7, rtol 1e-6 -- the central difference errs by ~eps^2 |L'''| / 6
   ~ 1e-13 (truncation) plus ~macheps |L| / eps ~ 1e-10 (rounding) on the
   O(1) values the beds draw, far below atol.  Inputs are drawn away from
   kinks (clip boundaries, ties of a minimum) so no difference straddles one.
2. ``formula`` -- :func:`formula_result` with :func:`relative_error`: the
   closed form (``verification/FORMULAS.md``) by hand in NumPy for a small
   linear model (a linear-softmax policy, linear critics, a linear actor).
   Statistic: ``max |autodiff - closed form| / scale`` (scale: the largest
   |closed form| entry, or the largest sum of absolute per-step terms where
   the closed form is a long sum); pass: <= 1e-10.  The two sides compute
   the same float64 terms in different orders, so they differ by rounding
   only (~1e-13 relative for a few hundred operations); a modelling error --
   a missing factor, a dropped term, a wrong sign -- is O(1) relative.
3. ``exact`` -- :func:`exact_result`: per-episode (per-sample) estimates on a
   bed of :mod:`minipg.audit.beds` (a tabular MDP, an LQR, a one-dimensional
   quadrature), a test of H0 "the mean is the exact gradient" from
   :mod:`minipg.audit.stats` (Hotelling's T^2, or per-component t or z with
   Bonferroni) at the confidence level :data:`CONFIDENCE` (99.9%), with the
   seed fixed by the row's name (:func:`minipg.audit.check_rng`).  Pass: H0
   not rejected.  A correct estimator fails a row with probability 0.001;
   tests show that a deliberately wrong one (a sign flip, a missing factor,
   the wrong critic) is rejected.

Each check is a function ``check(full, rng) -> Result`` registered with
:func:`minipg.audit.audit_check`; ``full`` asks for large samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minipg.autodiff import Tensor, no_grad, value_and_grad

from .stats import CONFIDENCE

__all__ = ["LEVELS", "Result", "GRADCHECK", "FORMULA_RTOL", "CONFIDENCE",
           "central_difference_error", "gradcheck_function", "gradcheck_module",
           "relative_error", "formula_result", "exact_result"]

LEVELS = ("gradcheck", "formula", "exact")

# level 1: CONTRIBUTING.md ("Test tolerances"), float64
GRADCHECK = dict(eps=1e-6, atol=1e-7, rtol=1e-6)
# level 2: closed form vs autodiff, rounding only
FORMULA_RTOL = 1e-10


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


# ================================================================ 1. gradcheck

GRADCHECK_WORDS = ("every coordinate of the reverse-mode gradient vs the central difference "
                   "(float64, eps 1e-6); statistic max|ad - fd| / (1e-7 + 1e-6 |fd|)")


def central_difference_error(analytic, numeric):
    """max_i |ad_i - fd_i| / (atol + rtol |fd_i|) with the level-1 tolerances."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    return float(np.max(np.abs(analytic - numeric)
                        / (GRADCHECK["atol"] + GRADCHECK["rtol"] * np.abs(numeric))))


def _gradcheck_row(error, what):
    return Result(error, 1.0, bool(error <= 1.0), f"{what}: {GRADCHECK_WORDS}")


def gradcheck_function(f, inputs, what):
    """Level 1 for a loss ``f(*tensors) -> scalar Tensor`` of the float64 arrays ``inputs``."""
    inputs = [np.asarray(x, dtype=np.float64) for x in inputs]
    _, grads = value_and_grad(f, argnums=tuple(range(len(inputs))))(*inputs)
    eps = GRADCHECK["eps"]
    worst = 0.0
    for k, x in enumerate(inputs):
        numeric = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            step = np.zeros_like(x)
            step[i] = eps
            plus = [Tensor(x + step if j == k else y) for j, y in enumerate(inputs)]
            minus = [Tensor(x - step if j == k else y) for j, y in enumerate(inputs)]
            numeric[i] = (float(f(*plus).data) - float(f(*minus).data)) / (2 * eps)
        worst = max(worst, central_difference_error(grads[k], numeric))
    return _gradcheck_row(worst, what)


def gradcheck_module(loss_fn, module, what):
    """Level 1 for a loss ``loss_fn() -> scalar Tensor`` of ``module``'s parameters.

    ``loss_fn`` must be deterministic (its noise fixed); the module's
    parameters and gradients are restored afterwards."""
    module.zero_grad()
    loss_fn().backward()
    analytic = np.array(module.flat_grad, copy=True)
    theta = np.array(module.flat_params, copy=True)
    eps = GRADCHECK["eps"]
    numeric = np.zeros_like(theta)
    try:
        with no_grad():
            for i in range(theta.size):
                step = np.zeros_like(theta)
                step[i] = eps
                module.flat_params = theta + step
                plus = float(loss_fn().data)
                module.flat_params = theta - step
                minus = float(loss_fn().data)
                numeric[i] = (plus - minus) / (2 * eps)
    finally:
        module.flat_params = theta
        module.zero_grad()
    return _gradcheck_row(central_difference_error(analytic, numeric), what)


# ================================================================== 2. formula

def relative_error(autodiff, closed, scale=None):
    """max |autodiff - closed| / scale; arrays or sequences of arrays (concatenated);
    ``scale`` defaults to max |closed|."""
    def flat(a):
        if isinstance(a, (list, tuple)):
            return np.concatenate([np.ravel(np.asarray(x, dtype=np.float64)) for x in a])
        return np.ravel(np.asarray(a, dtype=np.float64))
    a, c = flat(autodiff), flat(closed)
    if a.shape != c.shape:
        raise ValueError(f"autodiff and closed form have different sizes: {a.shape} vs "
                         f"{c.shape}")
    if scale is None:
        scale = max(float(np.max(np.abs(c))), 1e-300)
    return float(np.max(np.abs(a - c))) / scale


def formula_result(error, what, passed=True):
    """Level 2: a row for the relative error ``error`` (``passed`` adds a condition)."""
    return Result(error, FORMULA_RTOL, bool(passed and error <= FORMULA_RTOL),
                  f"{what}; statistic max|autodiff - closed form| / scale, float64")


# ==================================================================== 3. exact

def exact_result(test, target_name, extra="", passed=True):
    """Level 3: a row that passes when ``test`` (a :mod:`minipg.audit.stats` result) does
    not reject H0 "mean = target" (``passed`` adds a condition, stated in ``extra``)."""
    return Result(float(test.statistic), float(test.threshold),
                  bool(passed and not test.rejected),
                  f"{test.describe()} vs {target_name}{extra}")
