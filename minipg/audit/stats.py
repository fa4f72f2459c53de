r"""The statistical tests of the audit's exact level: one implementation of each.

Every test here asks one question of n i.i.d. p-vectors g_1 .. g_n (gradient
estimates): is their mean the hypothesised ``target`` (H0: E[g] = target)?
Each returns the statistic, its critical value at the stated ``confidence``
(1 - alpha), the p-value and the decision; ``rejected`` is True when the
statistic exceeds the critical value (equivalently, p-value < alpha).

:func:`hotelling_test`
    Hotelling's one-sample T^2: with gbar the sample mean and S the sample
    covariance (ddof 1), ``T^2 = n (gbar - g0)^T S^-1 (gbar - g0)``; under H0
    (Gaussian g, or large n by the central limit theorem)
    ``F = (n - p) / (p (n - 1)) T^2 ~ F(p, n - p)``, so the critical T^2 is
    ``p (n - 1) / (n - p) F_{1-alpha}(p, n - p)``.  One test for the whole
    vector: it uses the correlations between the components.
:func:`t_test_bonferroni`
    one Student t statistic per component, ``t_k = (gbar_k - g0_k) /
    (s_k / sqrt(n))`` ~ t(n - 1) under H0, two-sided, Bonferroni over the p
    components: the statistic is max_k |t_k| and the critical value
    ``t_{1 - alpha / (2p)}(n - 1)``, so the family-wise error is at most alpha.
:func:`z_test_bonferroni`
    the same with the normal quantile ``z_{1 - alpha / (2p)}`` (large n: the
    t(n - 1) and N(0, 1) quantiles differ by O(1/n)).
:func:`variance_comparison`
    a paired one-sided z-test that tr Cov(a) < tr Cov(b) from the same n draws.

The seeds of the callers are fixed, so each decision is reproducible; a
correct estimator fails one such test with probability alpha = 1 - confidence.
tests/test_audit_stats.py checks calibration (the rejection rate under H0 is
alpha), power (a shifted mean is rejected) and agreement with scipy.stats.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

__all__ = ["CONFIDENCE", "SingularCovarianceError", "MeanTest", "hotelling_test", "CoordinateTest", "t_test_bonferroni",
           "z_test_bonferroni", "VarianceComparison", "variance_comparison"]

CONFIDENCE = 0.999  # the confidence level of every statistical check of the audit


class SingularCovarianceError(ValueError):
    """Hotelling's T^2 without ``span_only`` on samples whose covariance is singular."""

# eigenvalues of the sample covariance below this fraction of the largest are
# round-off of an exactly degenerate direction (the samples lie in a subspace)
SPAN_TOL = 1e-10


def check_confidence(confidence):
    """``confidence`` as a float in (0, 1), else ValueError."""
    if (isinstance(confidence, (bool, np.bool_)) or not isinstance(confidence, numbers.Real)
            or not 0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence must be a number in (0, 1) (e.g. 0.999); got "
                         f"{confidence!r}")
    return float(confidence)


def check_samples(samples, name="samples"):
    """``samples`` as a finite float64 array (n, p); a vector (n,) is read as p = 1."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, p) (one p-vector per sample) or (n,); "
                         f"got shape {np.shape(samples)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def check_target(target, p):
    g0 = np.asarray(target, dtype=np.float64).reshape(-1)
    if g0.shape != (p,) or not np.all(np.isfinite(g0)):
        raise ValueError(f"target must be a finite vector of shape ({p},) to match the "
                         f"samples; got shape {np.shape(target)}")
    return g0


# ============================================================== Hotelling's T^2

@dataclass(frozen=True)
class MeanTest:
    """Hotelling's T^2 test of H0: E[g] = target from n i.i.d. p-vectors.

    ``threshold`` is the critical T^2 at ``confidence`` for ``dof`` degrees of
    freedom (p, or the rank of the samples' span with ``span_only``);
    ``p_value`` = Pr(F(dof, n - dof) > (n - dof) / (dof (n - 1)) T^2); ``z``
    the per-component z-scores (gbar_k - target_k) / (s_k / sqrt(n)) and
    ``z_threshold`` their two-sided Bonferroni bound at the same level
    (reported beside T^2, not part of its decision)."""
    t2: float
    threshold: float
    p_value: float
    z: np.ndarray
    z_threshold: float
    n: int
    p: int
    dof: int
    confidence: float

    @property
    def statistic(self):
        return self.t2

    @property
    def rejected(self):
        """True when T^2 exceeds its critical value (H0 rejected)."""
        return bool(self.t2 > self.threshold)

    @property
    def max_abs_z(self):
        return float(np.max(np.abs(self.z)))

    def describe(self):
        """One line: the statistic, its threshold, max |z| and the level."""
        dims = f"p={self.p}" if self.dof == self.p else f"p={self.p}, span {self.dof}"
        return (f"Hotelling T^2 {self.t2:.3g} (crit {self.threshold:.3g}; {dims}, "
                f"n={self.n}, {100 * self.confidence:g}%), max|z| {self.max_abs_z:.3g} "
                f"(Bonferroni {self.z_threshold:.3g})")


def hotelling_test(samples, target, confidence=CONFIDENCE, span_only=False):
    r"""Hotelling's one-sample T^2 test of H0: E[g] = ``target``.

    Parameters
    ----------
    samples : array (n, p) (or (n,) for p = 1) -- i.i.d. estimates g_i.
    target : array (p,) (or a number for p = 1) -- the hypothesised mean.
    confidence : float in (0, 1) -- 1 - alpha.
    span_only : bool -- False: the sample covariance must be non-singular
        (else ValueError).  True: the samples may lie in an r-dimensional
        subspace (e.g. DPG on an LQR with fewer actions than states: every
        estimate is M x x^T with x x^T symmetric); T^2 is computed in that
        span with r degrees of freedom, and a target with a component
        outside the span (more than 1e-8 of its norm) gives T^2 = inf: no
        mean of such samples can equal it.

    T^2 = n (gbar - g0)^T S^-1 (gbar - g0), S the sample covariance (ddof 1);
    critical value r (n - 1) / (n - r) F_{confidence}(r, n - r), r = p unless
    ``span_only``.  Returns a :class:`MeanTest`.
    """
    confidence = check_confidence(confidence)
    x = check_samples(samples)
    n, p = x.shape
    g0 = check_target(target, p)
    if n <= p + 1:
        raise ValueError(f"hotelling_test needs more samples than dimensions + 1; got n={n}, "
                         f"p={p}")
    mean = x.mean(axis=0)
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    variances = np.diag(cov)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    keep = eigenvalues > SPAN_TOL * max(float(eigenvalues[-1]), 0.0)
    if np.any(variances <= 0) or (not span_only and not keep.all()):
        raise SingularCovarianceError(
            "the sample covariance is singular (a component is constant or the components are "
            "collinear); accepted: samples whose covariance is non-singular, or span_only=True "
            "to test within their span")
    diff = mean - g0
    coords = eigenvectors.T @ diff                                  # diff in the eigenbasis
    dof = int(keep.sum())
    t2 = float(n * np.sum(coords[keep] ** 2 / eigenvalues[keep]))  # n d^T S^+ d
    outside = float(np.linalg.norm(coords[~keep]))
    if outside > 1e-8 * max(float(np.linalg.norm(g0)), float(np.linalg.norm(mean))):
        t2 = float("inf")                                          # target off the span
    threshold = dof * (n - 1) / (n - dof) * float(scipy_stats.f.ppf(confidence, dof, n - dof))
    f_value = (n - dof) / (dof * (n - 1)) * t2                     # T^2 -> F(dof, n - dof)
    p_value = float(scipy_stats.f.sf(f_value, dof, n - dof))
    z = diff / np.sqrt(variances / n)
    z_threshold = float(scipy_stats.norm.ppf(1.0 - (1.0 - confidence) / (2 * p)))  # Bonferroni
    return MeanTest(t2, threshold, p_value, z, z_threshold, n, p, dof, confidence)


# ======================================= per-component t or z, Bonferroni over components

@dataclass(frozen=True)
class CoordinateTest:
    """Per-component two-sided tests of H0: E[g] = target, Bonferroni over the p components.

    ``scores`` the t (or z) statistics (gbar_k - target_k) / (s_k / sqrt(n));
    ``statistic`` = max_k |scores_k|; ``threshold`` the two-sided quantile at
    1 - (1 - confidence) / (2p) of t(n - 1) (``distribution`` "t") or N(0, 1)
    ("normal"); ``p_value`` the Bonferroni-adjusted min(1, p min_k p_k)."""
    scores: np.ndarray
    statistic: float
    threshold: float
    p_value: float
    n: int
    p: int
    confidence: float
    distribution: str

    @property
    def rejected(self):
        return bool(self.statistic > self.threshold)

    def describe(self):
        name = "t" if self.distribution == "t" else "z"
        return (f"max|{name}| {self.statistic:.3g} (Bonferroni bound {self.threshold:.3g}; "
                f"p={self.p}, n={self.n}, {100 * self.confidence:g}%)")


def _coordinate_test(samples, target, confidence, distribution):
    confidence = check_confidence(confidence)
    x = check_samples(samples)
    n, p = x.shape
    g0 = check_target(target, p)
    if n < 2:
        raise ValueError(f"a per-component test needs at least 2 samples; got n={n}")
    se = x.std(axis=0, ddof=1) / np.sqrt(n)
    if np.any(se <= 0):
        raise ValueError("a component of the samples is constant (zero standard error); "
                         "accepted: samples with a positive variance in every component")
    scores = (x.mean(axis=0) - g0) / se
    reference = scipy_stats.t(n - 1) if distribution == "t" else scipy_stats.norm()
    threshold = float(reference.ppf(1.0 - (1.0 - confidence) / (2 * p)))
    p_each = 2.0 * reference.sf(np.abs(scores))
    return CoordinateTest(scores, float(np.max(np.abs(scores))), threshold,
                          float(min(1.0, p * np.min(p_each))), n, p, confidence, distribution)


def t_test_bonferroni(samples, target, confidence=CONFIDENCE):
    """Student t per component (n - 1 degrees of freedom), Bonferroni; a CoordinateTest."""
    return _coordinate_test(samples, target, confidence, "t")


def z_test_bonferroni(samples, target, confidence=CONFIDENCE):
    """Normal z per component (large n), Bonferroni; a CoordinateTest."""
    return _coordinate_test(samples, target, confidence, "normal")


# ============================================================== paired variances

@dataclass(frozen=True)
class VarianceComparison:
    """Paired comparison of tr Cov(a) and tr Cov(b) from the same n draws.

    ``ratio`` = tr Cov(a) / tr Cov(b); ``z`` the z-score of the paired
    differences D_i = |a_i - abar|^2 - |b_i - bbar|^2 (mean tr Cov(a) - tr Cov(b));
    ``smaller`` is the one-sided test of tr Cov(a) < tr Cov(b) at ``confidence``
    (``p_value`` = Phi(z))."""
    ratio: float
    z: float
    z_threshold: float
    p_value: float
    n: int
    confidence: float

    @property
    def smaller(self):
        return bool(self.z < -self.z_threshold)


def variance_comparison(samples_a, samples_b, confidence=CONFIDENCE):
    """Is the total variance of ``samples_a`` smaller than that of ``samples_b``? (paired)."""
    confidence = check_confidence(confidence)
    a = check_samples(samples_a, "samples_a")
    b = check_samples(samples_b, "samples_b")
    if a.shape != b.shape or a.shape[0] < 3:
        raise ValueError(f"samples_a and samples_b must be paired draws of one shape (n, p), "
                         f"n >= 3; got {a.shape} and {b.shape}")
    spread_a = np.sum((a - a.mean(axis=0)) ** 2, axis=1)
    spread_b = np.sum((b - b.mean(axis=0)) ** 2, axis=1)
    d = spread_a - spread_b
    z = float(d.mean() / (d.std(ddof=1) / np.sqrt(d.size)))
    return VarianceComparison(float(spread_a.mean() / spread_b.mean()), z,
                              float(scipy_stats.norm.ppf(confidence)),
                              float(scipy_stats.norm.cdf(z)), a.shape[0], confidence)
