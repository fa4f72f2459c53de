"""minipg.audit.stats: the tests of the audit's exact level, each checked three ways.

* agreement with scipy.stats where scipy computes the same quantity
  (Hotelling's T^2 through its F form, the one-sample t-test, the normal
  tail), to rounding;
* calibration: under H0, with a fixed seed, the rejection count over many
  replications lies in the binomial interval of the nominal level alpha, at
  99.9% confidence (so a correct implementation fails this test with
  probability 0.001, and the seed is fixed, so it never flakes);
* power: a mean shifted by one standard deviation in one component is
  rejected in nearly every replication.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from minipg.audit.stats import (CONFIDENCE, hotelling_test, t_test_bonferroni,
                                variance_comparison, z_test_bonferroni)

ALPHA = 0.1                                         # nominal level of the calibration runs
REPLICATIONS = 1000


def binomial_interval(rate, n=REPLICATIONS, confidence=0.999):
    """The central ``confidence`` interval of Binomial(n, rate) counts."""
    lo, hi = scipy_stats.binom.ppf([(1 - confidence) / 2, (1 + confidence) / 2], n, rate)
    return lo, hi


def correlated_gaussian(rng, shape, p=3):
    """Gaussian p-vectors with a non-diagonal covariance L L^T and mean m."""
    L = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [-0.5, 0.3, 0.7]])[:p, :p]
    mean = np.array([1.0, -2.0, 0.5])[:p]
    return rng.standard_normal(shape + (p,)) @ L.T + mean, mean


# ================================================================= agreement with scipy

def test_hotelling_with_one_component_is_the_squared_t_test():
    """p = 1: T^2 = t^2, the critical value t_{1-alpha/2, n-1}^2, the same p-value."""
    x = np.random.default_rng(0).normal(0.3, 2.0, size=200)
    test = hotelling_test(x, 0.1)
    ref = scipy_stats.ttest_1samp(x, 0.1)
    np.testing.assert_allclose(test.t2, ref.statistic ** 2, rtol=1e-10)
    crit = scipy_stats.t.ppf(1 - (1 - CONFIDENCE) / 2, df=199) ** 2
    np.testing.assert_allclose(test.threshold, crit, rtol=1e-10)
    np.testing.assert_allclose(test.p_value, ref.pvalue, rtol=1e-8)
    np.testing.assert_allclose(test.z, [ref.statistic], rtol=1e-10)
    assert test.rejected == (ref.pvalue < 1 - CONFIDENCE)


def test_hotelling_is_the_f_distribution_form():
    """T^2 by a linear solve with the sample covariance, F = (n-p)/(p(n-1)) T^2 and its
    scipy.stats.f tail: the statistic, the critical value and the p-value agree."""
    rng = np.random.default_rng(5)
    x, mean = correlated_gaussian(rng, (60,))
    target = mean + [0.3, 0.0, -0.2]
    n, p = x.shape
    d = x.mean(axis=0) - target
    t2 = n * d @ np.linalg.solve(np.cov(x, rowvar=False), d)
    f_value = (n - p) / (p * (n - 1)) * t2
    test = hotelling_test(x, target, confidence=0.99)
    np.testing.assert_allclose(test.t2, t2, rtol=1e-10)
    np.testing.assert_allclose(test.p_value, scipy_stats.f.sf(f_value, p, n - p), rtol=1e-8)
    np.testing.assert_allclose(test.threshold * (n - p) / (p * (n - 1)),
                               scipy_stats.f.ppf(0.99, p, n - p), rtol=1e-10)
    assert test.rejected == (test.p_value < 0.01)


@pytest.mark.parametrize("test_fn, reference", [
    (t_test_bonferroni, "t"), (z_test_bonferroni, "normal")])
def test_coordinate_tests_agree_with_scipy(test_fn, reference):
    """Per-component scores are scipy's one-sample t statistics; the bound is the quantile at
    1 - alpha / (2p); the p-value is p times the smallest two-sided p-value (Bonferroni)."""
    x, mean = correlated_gaussian(np.random.default_rng(6), (50,))
    target = mean + [0.0, 0.4, 0.0]
    test = test_fn(x, target, confidence=0.95)
    ref = scipy_stats.ttest_1samp(x, target, axis=0)
    np.testing.assert_allclose(test.scores, ref.statistic, rtol=1e-10)
    dist = scipy_stats.t(49) if reference == "t" else scipy_stats.norm()
    np.testing.assert_allclose(test.threshold, dist.ppf(1 - 0.05 / 6), rtol=1e-10)
    if reference == "t":
        np.testing.assert_allclose(test.p_value, min(1.0, 3 * ref.pvalue.min()), rtol=1e-8)
    assert test.statistic == pytest.approx(np.max(np.abs(ref.statistic)))
    assert test.rejected == (test.p_value < 0.05)


def test_variance_comparison_is_a_paired_z_test():
    rng = np.random.default_rng(7)
    b = rng.standard_normal((400, 2))
    a = 0.8 * b + 0.1 * rng.standard_normal((400, 2))
    cmp = variance_comparison(a, b)
    d = (np.sum((a - a.mean(0)) ** 2, 1) - np.sum((b - b.mean(0)) ** 2, 1))
    np.testing.assert_allclose(cmp.z, d.mean() / (d.std(ddof=1) / 20), rtol=1e-12)
    np.testing.assert_allclose(cmp.p_value, scipy_stats.norm.cdf(cmp.z), rtol=1e-12)
    assert cmp.smaller and cmp.ratio < 1
    assert not variance_comparison(b, a).smaller


# ============================================================ calibration and power

def test_hotelling_is_calibrated_under_h0_and_rejects_a_shifted_mean():
    """Confidence 0.9, 1000 correlated Gaussian data sets (n=40, p=3) under H0: the count
    of rejections lies in the binomial 99.9% interval of 10%.  Shifted by one standard
    deviation in one component, nearly all are rejected."""
    data, mean = correlated_gaussian(np.random.default_rng(1), (REPLICATIONS, 40))
    rejected = sum(hotelling_test(d, mean, confidence=1 - ALPHA).rejected for d in data)
    lo, hi = binomial_interval(ALPHA)
    assert lo <= rejected <= hi
    shifted = sum(hotelling_test(d, mean + [1.0, 0, 0], confidence=1 - ALPHA).rejected
                  for d in data[:200])
    assert shifted > 0.95 * 200


@pytest.mark.parametrize("test_fn, n", [(t_test_bonferroni, 15), (z_test_bonferroni, 400)])
def test_coordinate_tests_are_calibrated_and_reject_a_shifted_mean(test_fn, n):
    """Independent components (p=3): the family-wise rejection rate of the Bonferroni test
    is exactly 1 - (1 - alpha/p)^p (the t test at any n, the z test at large n), and the
    count over 1000 replications must lie in its binomial 99.9% interval.  A mean shifted by
    1.5 standard deviations in one component is rejected nearly always."""
    rng = np.random.default_rng(2)
    mean = np.array([0.5, -1.0, 2.0])
    data = rng.standard_normal((REPLICATIONS, n, 3)) * [1.0, 3.0, 0.5] + mean
    rejected = sum(test_fn(d, mean, confidence=1 - ALPHA).rejected for d in data)
    lo, hi = binomial_interval(1 - (1 - ALPHA / 3) ** 3)
    assert lo <= rejected <= hi
    shifted = sum(test_fn(d, mean + [0.0, 4.5, 0.0], confidence=1 - ALPHA).rejected
                  for d in data[:200])
    assert shifted > 0.95 * 200


def test_variance_comparison_is_calibrated_under_equal_variances():
    """One-sided at confidence 0.9: with equal total variances (a and b independent draws of
    one distribution) 'smaller' is declared about 10% of the time."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((REPLICATIONS, 300, 2))
    b = rng.standard_normal((REPLICATIONS, 300, 2))
    smaller = sum(variance_comparison(x, y, confidence=1 - ALPHA).smaller for x, y in zip(a, b))
    lo, hi = binomial_interval(ALPHA)
    assert lo <= smaller <= hi


# ====================================================================== edge cases

def test_hotelling_span_only_for_samples_in_a_subspace():
    """Samples on a plane: refused by default; tested in the plane with span_only, and a
    target off the plane is rejected outright (T^2 = inf, p-value 0)."""
    rng = np.random.default_rng(2)
    basis = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]])
    x = rng.standard_normal((500, 2)) @ basis + [1.0, 2.0, -1.0]   # mean on the plane
    with pytest.raises(ValueError, match="singular"):
        hotelling_test(x, [1.0, 2.0, -1.0])
    ok = hotelling_test(x, [1.0, 2.0, -1.0], span_only=True)
    assert ok.dof == 2 and not ok.rejected
    off = hotelling_test(x, [1.0, 2.0, -0.9], span_only=True)
    assert off.t2 == np.inf and off.rejected and off.p_value == 0.0


@pytest.mark.parametrize("call, match", [
    (lambda: hotelling_test(np.ones((10, 2)) + np.arange(10)[:, None] * [1, 2], [0, 0]),
     "singular"),
    (lambda: hotelling_test(np.random.default_rng(0).normal(size=(10, 2)), [0, 0, 0]),
     "target"),
    (lambda: hotelling_test(np.random.default_rng(0).normal(size=(3, 2)), [0, 0]), "more"),
    (lambda: hotelling_test(np.zeros((5, 2, 2)), [0, 0]), "shape"),
    (lambda: hotelling_test(np.full((10, 1), np.nan), [0]), "finite"),
    (lambda: hotelling_test(np.random.default_rng(0).normal(size=20), 0, confidence=1.5),
     "confidence"),
    (lambda: t_test_bonferroni(np.ones((10, 2)), [0, 0]), "constant"),
    (lambda: z_test_bonferroni(np.ones((1, 2)), [0, 0]), "at least 2"),
    (lambda: t_test_bonferroni(np.random.default_rng(0).normal(size=(9, 2)), [0]), "target"),
    (lambda: z_test_bonferroni(np.random.default_rng(0).normal(size=9), 0, confidence=True),
     "confidence"),
    (lambda: variance_comparison(np.zeros((10, 2)), np.zeros((9, 2))), "paired"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
