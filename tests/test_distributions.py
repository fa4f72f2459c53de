"""Tests for minipg.distributions: densities, entropies and KLs against scipy
and closed forms, Monte-Carlo checks with stated confidence bounds, pathwise
gradients against central differences (common random numbers), and the
Fisher-vector product against an explicitly formed Fisher matrix.

All randomness is seeded; every statistical assertion states its bound.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minipg.autodiff import Tensor, fisher_vector_product, gradcheck, grad, ops
from minipg.distributions import (Categorical, DiagGaussian, GaussianNoise,
                                  OrnsteinUhlenbeckNoise, TanhGaussian, tanh_log_det_jacobian)
from minipg.distributions.tanh_gaussian import box_constants, rsample_from_head

TIGHT = dict(atol=1e-7, rtol=1e-6)          # float64 central differences, eps=1e-6
HYP = settings(max_examples=30, deadline=None)

finite = st.floats(-5.0, 5.0, allow_nan=False, allow_infinity=False, width=64)
batch_shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4)


def rng_(seed=0):
    return np.random.default_rng(seed)


# ============================================================ Categorical

@HYP
@given(data=st.data(), shape=batch_shapes, n=st.integers(1, 6))
def test_categorical_log_prob_and_entropy_match_scipy(data, shape, n):
    logits = data.draw(hnp.arrays(np.float64, shape + (n,), elements=finite))
    d = Categorical(logits)
    p = scipy.special.softmax(logits, axis=-1)
    for a in range(n):
        lp = d.log_prob(np.full(shape, a))
        assert lp.shape == shape
        np.testing.assert_allclose(lp.data, np.log(p[..., a]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.entropy().data, scipy.stats.entropy(p, axis=-1),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.probs.data, p, rtol=1e-12, atol=1e-15)


def test_categorical_log_prob_of_drawn_actions_and_broadcasting():
    logits = rng_(1).normal(size=(4, 5))
    d = Categorical(Tensor(logits))
    acts = np.array([4, 0, 2, 2])
    expect = np.log(scipy.special.softmax(logits, -1))[np.arange(4), acts]
    np.testing.assert_allclose(d.log_prob(acts).data, expect, rtol=1e-13)
    # float actions with integral values are accepted
    np.testing.assert_allclose(d.log_prob(acts.astype(float)).data, expect, rtol=1e-13)
    # one distribution, many actions: actions broadcast against the batch
    single = Categorical(logits[0])
    np.testing.assert_allclose(single.log_prob(np.arange(5)).data,
                               np.log(scipy.special.softmax(logits[0])), rtol=1e-13)
    # gradient flows through the broadcast
    L = Tensor(logits[0], requires_grad=True)
    Categorical(L).log_prob(np.array([1, 1, 3])).sum().backward()
    p = scipy.special.softmax(logits[0])
    np.testing.assert_allclose(L.grad, np.eye(5)[[1, 1, 3]].sum(0) - 3 * p, rtol=1e-12)


def test_categorical_kl_closed_form_and_monte_carlo():
    rng = rng_(2)
    lp, lq = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    p, q = scipy.special.softmax(lp, -1), scipy.special.softmax(lq, -1)
    P, Q = Categorical(lp), Categorical(lq)
    exact = scipy.stats.entropy(p, q, axis=-1)          # = sum p log(p/q)
    np.testing.assert_allclose(P.kl(Q).data, exact, rtol=1e-12)
    np.testing.assert_allclose(P.kl(P).data, 0.0, atol=1e-15)
    # Monte Carlo: mean of log p(a) - log q(a), a ~ p; |MC - exact| < 4 standard errors
    n = 20000
    a = P.sample(rng, (n,))
    r = P.log_prob(a).data - Q.log_prob(a).data
    mc, se = r.mean(0), r.std(0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(mc - exact) < 4 * se), (mc, exact, se)


def test_categorical_large_logits_do_not_overflow():
    logits = np.array([[1000.0, 0.0, -1000.0], [1000.0, 999.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # underflow is benign
        d = Categorical(logits)
        lp = d.log_prob(np.array([0, 1])).data
        ent = d.entropy().data
        kl = d.kl(Categorical(-logits)).data
        s = d.sample(rng_(3), (1000,))
    np.testing.assert_allclose(lp, [0.0, -1.0 - math.log(2 + math.exp(-1))], atol=1e-12)
    assert np.all(np.isfinite(ent)) and np.all(np.isfinite(kl))
    np.testing.assert_allclose(ent[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(kl[0], 2000.0, rtol=1e-12)
    assert np.all(s[:, 0] == 0)                          # other actions have p < 1e-400
    assert set(np.unique(s[:, 1])) <= {0, 1, 2}


@pytest.mark.parametrize("probs", [[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.25, 0.0, 0.25]])
def test_categorical_sample_frequencies_chi_square(probs):
    """Pearson chi-square goodness of fit at level 0.001 (fixed seed)."""
    probs = np.array(probs)
    with np.errstate(divide="ignore"):
        d = Categorical(np.log(np.maximum(probs, 0)) if probs.min() > 0 else
                        np.where(probs > 0, np.log(np.where(probs > 0, probs, 1)), -1e4))
    n = 50000
    s = d.sample(rng_(4), (n,))
    assert s.dtype == np.int64 and s.shape == (n,)
    counts = np.bincount(s, minlength=len(probs))
    assert np.all(counts[probs == 0] == 0)              # never an action of probability 0
    keep = probs > 0
    stat, pval = scipy.stats.chisquare(counts[keep], n * probs[keep])
    assert pval > 1e-3, (counts, pval)


def test_categorical_batched_sampling_and_mode():
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]))
    d = Categorical(logits)
    s = d.sample(rng_(5), (40000,))
    assert s.shape == (40000, 2)
    for row, p in enumerate(np.exp(logits)):
        counts = np.bincount(s[:, row], minlength=3)
        assert scipy.stats.chisquare(counts, 40000 * p).pvalue > 1e-3
    np.testing.assert_array_equal(d.mode(), [0, 2])


def test_categorical_gradchecks():
    rng = rng_(6)
    L, M = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    a = np.array([0, 3, 1])
    gradcheck(lambda x: Categorical(x).log_prob(a), [L], **TIGHT)
    gradcheck(lambda x: Categorical(x).entropy(), [L], **TIGHT)
    gradcheck(lambda x, y: Categorical(x).kl(Categorical(y)), [L, M], **TIGHT)
    gradcheck(lambda x: Categorical(x).probs, [L], **TIGHT)


def test_categorical_validation():
    d = Categorical(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"non-integer value 0\.5"):
        d.log_prob(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"action 3 is out of range.*0\.\.2"):
        d.log_prob(np.array([0, 3]))
    with pytest.raises(ValueError, match=r"action -1 is out of range"):
        d.log_prob(np.array([-1, 0]))
    with pytest.raises(ValueError, match="dtype bool"):
        d.log_prob(np.array([True, False]))
    with pytest.raises(ValueError, match=r"shape \(3,\) do not match the batch shape \(2,\)"):
        d.log_prob(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="same number"):
        d.kl(Categorical(np.zeros((2, 4))))
    with pytest.raises(ValueError, match="shape"):
        Categorical(np.float64(1.0))
    with pytest.raises(ValueError, match="Generator"):
        d.sample(0)


# ========================================================== DiagGaussian

@HYP
@given(data=st.data(), shape=batch_shapes, d=st.integers(1, 3), shared=st.booleans())
def test_gaussian_log_prob_and_entropy_match_scipy(data, shape, d, shared):
    full = shape + (d,)
    mean = data.draw(hnp.arrays(np.float64, full, elements=finite))
    log_std = data.draw(hnp.arrays(np.float64, (d,) if shared else full,
                                   elements=st.floats(-3.0, 2.0, width=64)))
    x = data.draw(hnp.arrays(np.float64, full, elements=finite))
    g = DiagGaussian(mean, log_std)
    std = np.broadcast_to(np.exp(log_std), full)
    lp = g.log_prob(x)
    assert lp.shape == shape
    np.testing.assert_allclose(lp.data, scipy.stats.norm.logpdf(x, mean, std).sum(-1),
                               rtol=1e-11, atol=1e-11)
    ent = g.entropy()
    assert ent.shape == shape
    np.testing.assert_allclose(ent.data, scipy.stats.norm.entropy(scale=std).sum(-1),
                               rtol=1e-12, atol=1e-12)


def _kl_full_covariance(mp, sp, mq, sq):
    """KL of two multivariate normals, written with full matrices (independent formula)."""
    Sp, Sq = np.diag(sp ** 2), np.diag(sq ** 2)
    iSq = np.linalg.inv(Sq)
    dm = mq - mp
    return 0.5 * (np.trace(iSq @ Sp) + dm @ iSq @ dm - len(mp)
                  + np.log(np.linalg.det(Sq) / np.linalg.det(Sp)))


def test_gaussian_kl_closed_form_and_monte_carlo():
    rng = rng_(7)
    mp, mq = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    lsp, lsq = rng.normal(scale=0.5, size=(2, 3)), rng.normal(scale=0.5, size=3)
    P, Q = DiagGaussian(mp, lsp), DiagGaussian(mq, lsq)
    kl = P.kl(Q).data
    exact = [_kl_full_covariance(mp[b], np.exp(lsp[b]), mq[b], np.exp(lsq)) for b in range(2)]
    np.testing.assert_allclose(kl, exact, rtol=1e-12)
    np.testing.assert_allclose(P.kl(P).data, 0.0, atol=1e-14)
    # 1-D: against numeric integration of p log(p/q)
    p1, q1 = scipy.stats.norm(0.3, 0.7), scipy.stats.norm(-0.2, 1.3)
    integral = scipy.integrate.quad(lambda x: p1.pdf(x) * (p1.logpdf(x) - q1.logpdf(x)),
                                    -np.inf, np.inf, epsabs=1e-13)[0]
    kl1 = DiagGaussian([0.3], [math.log(0.7)]).kl(DiagGaussian([-0.2], [math.log(1.3)])).data
    np.testing.assert_allclose(kl1, integral, rtol=1e-9)
    # Monte Carlo, |MC - exact| < 4 standard errors
    n = 40000
    x = P.sample(rng, (n,))
    r = P.log_prob(x).data - Q.log_prob(x).data
    mc, se = r.mean(0), r.std(0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(mc - kl) < 4 * se), (mc, kl, se)


def test_gaussian_sample_moments_and_rsample_agree():
    mean, log_std = np.array([1.0, -2.0, 0.0]), np.array([0.0, -1.0, 1.0])
    g = DiagGaussian(mean, log_std)
    n = 100000
    x = g.sample(rng_(8), (n,))
    assert x.shape == (n, 3)
    std = np.exp(log_std)
    # mean within 4 SE (sigma/sqrt n); std within 4 SE (about sigma/sqrt(2n))
    assert np.all(np.abs(x.mean(0) - mean) < 4 * std / math.sqrt(n))
    assert np.all(np.abs(x.std(0, ddof=1) - std) < 4 * std / math.sqrt(2 * n))
    # sample(rng) and rsample(rng) make the same draws from the same seed
    r = g.rsample(rng_(8), sample_shape=(n,))
    np.testing.assert_array_equal(r.data, x)
    np.testing.assert_array_equal(g.mode(), mean)


def test_gaussian_gradchecks():
    rng = rng_(9)
    m, ls = rng.normal(size=(3, 2)), rng.normal(scale=0.3, size=(3, 2))
    m2, ls_shared = rng.normal(size=(3, 2)), rng.normal(scale=0.3, size=2)
    x = rng.normal(size=(3, 2))
    gradcheck(lambda a, b: DiagGaussian(a, b).log_prob(x), [m, ls], **TIGHT)
    gradcheck(lambda a, b: DiagGaussian(a, b).log_prob(x), [m, ls_shared], **TIGHT)
    gradcheck(lambda a, b: DiagGaussian(a, b).entropy(), [m, ls_shared], **TIGHT)
    gradcheck(lambda a, b, c, e: DiagGaussian(a, b).kl(DiagGaussian(c, e)),
              [m, ls, m2, ls_shared], **TIGHT)
    # and with respect to the action, when it is a Tensor
    gradcheck(lambda y: DiagGaussian(m, ls).log_prob(y), [x], **TIGHT)


def test_gaussian_pathwise_gradient_common_random_numbers():
    """d/d(mean, log_std) of mean_k f(rsample(eps_k)) for fixed eps, vs central differences."""
    rng = rng_(10)
    m, ls = rng.normal(size=(2, 3)), rng.normal(scale=0.3, size=(2, 3))
    eps = rng.standard_normal((16, 2, 3))
    c = rng.normal(size=3)

    def objective(a, b):
        x = DiagGaussian(a, b).rsample(eps=eps)             # (16, 2, 3)
        return ops.mean(ops.sum(ops.tanh(x) * (x - c), axis=-1), axis=0)

    gradcheck(objective, [m, ls], **TIGHT)
    gradcheck(objective, [m, ls[0]], **TIGHT)               # state-independent log_std
    # the pathwise estimate is unbiased: d/dmu E[(x - c)^2] = 2(mu - c), d/dlog_std = 2 sigma^2
    n = 200000
    big = rng.standard_normal((n, 3))
    gm, gs = grad(lambda a, b: ops.mean(ops.sum(ops.square(
        DiagGaussian(a, b).rsample(eps=big) - c), axis=-1)), argnums=(0, 1))(m[0], ls[0])
    sigma = np.exp(ls[0])
    assert np.all(np.abs(gm - 2 * (m[0] - c)) < 4 * 2 * sigma / math.sqrt(n))
    # per-sample d/dlog_std = 2 sigma eps (mu - c + sigma eps): std <= 2 sigma(|mu-c| + 2 sigma)
    assert np.all(np.abs(gs - 2 * sigma ** 2)
                  < 4 * 2 * sigma * (np.abs(m[0] - c) + 2 * sigma) / math.sqrt(n))


def test_gaussian_validation_and_dtype():
    with pytest.raises(ValueError, match=r"log_std of shape \(3,\) must broadcast"):
        DiagGaussian(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"log_std of shape \(5, 2\)"):
        DiagGaussian(np.zeros((4, 2)), np.zeros((5, 2)))
    g = DiagGaussian(np.zeros((4, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"last axis d = 2"):
        g.log_prob(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="does not broadcast"):
        g.log_prob(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="pass rng"):
        g.rsample()
    with pytest.raises(ValueError, match="action dimensions differ"):
        g.kl(DiagGaussian(np.zeros(3), np.zeros(3)))
    f32 = DiagGaussian(np.zeros((2, 2), np.float32), np.zeros(2, np.float32))
    assert f32.log_prob(np.zeros((2, 2))).dtype == np.float32
    assert f32.rsample(rng_(0)).dtype == np.float32


# ========================================================== TanhGaussian

def test_tanh_correction_is_stable_and_exact():
    u = np.array([-30.0, -5.0, -1.0, 0.0, 0.3, 2.0, 5.0, 30.0])
    corr = tanh_log_det_jacobian(u).data
    assert np.all(np.isfinite(corr))
    # large |u|: log(1 - tanh^2 u) = log 4 - 2|u| - 2 log1p(exp(-2|u|)) exactly
    exact_tail = math.log(4.0) - 2 * np.abs(u) - 2 * np.log1p(np.exp(-2 * np.abs(u)))
    np.testing.assert_allclose(corr, exact_tail, rtol=1e-14, atol=1e-14)
    # where the naive formula is accurate (|u| <= 5), it agrees
    small = np.abs(u) <= 5
    np.testing.assert_allclose(corr[small], np.log(1.0 - np.tanh(u[small]) ** 2), rtol=1e-9)
    with np.errstate(divide="ignore"):
        assert np.log(1.0 - np.tanh(30.0) ** 2) == -np.inf   # why the stable form is needed
    # the full log-prob and its gradient are finite at u = +-30
    m = Tensor(np.array([[28.0, -28.0]]), requires_grad=True)
    t = TanhGaussian(m, np.zeros(2), low=-2.0, high=3.0)
    a, lp = t.rsample(eps=np.array([[2.0, -2.0]]))          # u = +-30
    assert np.all(np.isfinite(lp.data))
    np.testing.assert_array_equal(a.data, [[3.0, -2.0]])    # the action has rounded to the bound
    lp.sum().backward()
    assert np.all(np.isfinite(m.grad))
    np.testing.assert_allclose(m.grad, [[2.0, -2.0]], rtol=1e-12)   # d/du [-log(1 - tanh^2 u)]


@pytest.mark.parametrize("mean,log_std,low,high", [
    (0.3, -0.5, -2.0, 1.0), (1.5, 0.5, -1.0, 1.0), (-0.4, -2.0, 0.0, 10.0),
    (0.0, 0.0, None, None)])
def test_tanh_density_integrates_to_one(mean, log_std, low, high):
    t = TanhGaussian(np.array([mean]), np.array([log_std]), low=low, high=high)
    lo, hi = (-1.0, 1.0) if low is None else (low, high)

    def pdf(a):
        return math.exp(t.log_prob(np.array([a])).item())

    total, err = scipy.integrate.quad(pdf, lo, hi, limit=200, epsabs=1e-10, epsrel=1e-10)
    assert abs(total - 1.0) < 1e-6, (total, err)


def test_tanh_log_prob_is_change_of_variables_density():
    rng = rng_(11)
    mean, log_std = rng.normal(size=(4, 2)), rng.normal(scale=0.5, size=2)
    low, high = np.array([-1.0, 0.0]), np.array([2.0, 5.0])
    t = TanhGaussian(mean, log_std, low=low, high=high)
    scale = (high - low) / 2
    y = rng.uniform(-0.95, 0.95, size=(4, 2))
    a = low + (y + 1) * scale
    u = np.arctanh(y)
    expect = (scipy.stats.norm.logpdf(u, mean, np.exp(log_std))
              - np.log(1 - y ** 2) - np.log(scale)).sum(-1)
    np.testing.assert_allclose(t.log_prob(a).data, expect, rtol=1e-10)
    np.testing.assert_allclose(t.log_prob_from_pre_tanh(u).data, expect, rtol=1e-12)
    # rsample's log-prob is that density at its own action
    eps = rng.standard_normal((4, 2))
    act, lp = t.rsample(eps=eps)
    np.testing.assert_allclose(lp.data, t.log_prob(act.data).data, rtol=1e-9)
    np.testing.assert_allclose(lp.data, t.log_prob_from_pre_tanh(mean + np.exp(log_std) * eps)
                               .data, rtol=1e-12)
    # deterministic action and sample/rsample agreement
    np.testing.assert_allclose(t.mode(), low + (np.tanh(mean) + 1) * scale, rtol=1e-15)
    np.testing.assert_array_equal(t.sample(rng_(3)), t.rsample(rng_(3))[0].data)


def test_tanh_sample_histogram_chi_square():
    """20 equal-width bins on [low, high]; Pearson chi-square at level 0.001 (fixed seed)."""
    mean, log_std, low, high = 0.4, -0.2, -1.0, 3.0
    t = TanhGaussian([mean], [log_std], low=low, high=high)
    n = 100000
    a = t.sample(rng_(12), (n,))[:, 0]
    assert np.all((a >= low) & (a <= high))
    edges = np.linspace(low, high, 21)
    counts = np.histogram(a, edges)[0]
    with np.errstate(divide="ignore"):
        u_edges = np.arctanh((edges - low) / ((high - low) / 2) - 1)
    cdf = scipy.stats.norm.cdf(u_edges, mean, math.exp(log_std))
    expected = n * np.diff(cdf)
    keep = expected > 5
    stat = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    pval = scipy.stats.chi2.sf(stat, keep.sum() - 1)
    assert pval > 1e-3, (pval, counts, expected)


def test_tanh_pathwise_gradient_common_random_numbers():
    rng = rng_(13)
    m, ls = rng.normal(size=(2, 3)), rng.normal(scale=0.3, size=(2, 3))
    eps = rng.standard_normal((8, 2, 3))
    w = rng.normal(size=3)

    def outputs(a, b):
        return TanhGaussian(a, b, low=-2.0, high=np.array([1.0, 2.0, 3.0])).rsample(eps=eps)

    gradcheck(outputs, [m, ls], **TIGHT)                    # action and log_prob, per sample

    def sac_actor_loss(a, b):                               # E[alpha log pi - Q(s, a)]
        act, lp = TanhGaussian(a, b).rsample(eps=eps)
        return ops.mean(0.2 * lp - ops.sum(ops.square(act - w), axis=-1))

    gradcheck(sac_actor_loss, [m, ls], **TIGHT)
    gradcheck(sac_actor_loss, [m, ls[0]], **TIGHT)
    a = TanhGaussian(m, ls, low=-1.0, high=1.0).sample(rng, ())
    gradcheck(lambda x, y: TanhGaussian(x, y, low=-1.0, high=1.0).log_prob(a), [m, ls], **TIGHT)


def test_tanh_log_std_clamp():
    ls = Tensor(np.array([5.0, -25.0, 1.0]), requires_grad=True)
    t = TanhGaussian(np.zeros(3), ls)
    np.testing.assert_array_equal(t.log_std.data, [2.0, -20.0, 1.0])
    t.log_prob(np.array([0.1, 0.0, -0.3])).backward()
    assert ls.grad[0] == 0 and ls.grad[1] == 0 and ls.grad[2] != 0
    free = TanhGaussian(np.zeros(3), np.array([5.0, -25.0, 1.0]), log_std_bounds=None)
    np.testing.assert_array_equal(free.log_std.data, [5.0, -25.0, 1.0])


def _head_and_noise(dtype, n=64, d=3, seed=21):
    """A policy head [mean, log_std] (N, 2d) with some log-stds beyond the clamp's bounds
    and some |u| large (the correction's stable range), and noise eps (N, d)."""
    rng = rng_(seed)
    head = rng.normal(scale=2.0, size=(n, 2 * d))
    head[:4, d:] = [[5.0] * d, [-25.0] * d, [2.0] * d, [-20.0] * d]   # beyond and at the bounds
    head[4:6, :d] = [[30.0] * d, [-30.0] * d]                         # tanh saturated
    return head.astype(dtype), rng.standard_normal((n, d)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("box", [None, "scalar", "per_dim"])
@pytest.mark.parametrize("uses", ["both", "log_prob", "action"])
def test_the_fused_squashed_sample_gives_the_same_bits_as_the_unfused_graph(dtype, box, uses):
    """rsample_from_head (one op, SAC's hot path) against TanhGaussian.rsample on the same
    head and noise: action, log pi and the head's gradient are the same bits (the op
    repeats the graph's operations in the tape's order; no tolerance)."""
    d = 3
    head, eps = _head_and_noise(dtype, d=d)
    low = high = None
    if box == "scalar":
        low, high = np.full(d, -2.0, dtype), np.full(d, 2.0, dtype)
    elif box == "per_dim":
        low, high = np.array([-1.0, 0.0, -3.0], dtype), np.array([1.0, 0.5, 2.0], dtype)
    rng = rng_(22)
    g_action, g_log_prob = rng.normal(size=(64, d)).astype(dtype), rng.normal(size=64).astype(dtype)

    def run(fused):
        h = Tensor(head.copy(), requires_grad=True)
        if fused:
            scale, sum_log_scale = (None, 0.0) if low is None else box_constants(low, high, d)
            action, log_prob = rsample_from_head(h, eps, d, low, scale, sum_log_scale)
        else:
            action, log_prob = TanhGaussian(h[:, :d], h[:, d:], low, high).rsample(eps=eps)
        terms = {"action": ops.sum(action * g_action), "log_prob": ops.sum(log_prob * g_log_prob)}
        loss = terms[uses] if uses != "both" else terms["action"] + terms["log_prob"]
        loss.backward()
        return action.data, log_prob.data, h.grad

    for unfused_array, fused_array in zip(run(False), run(True)):
        assert fused_array.dtype == unfused_array.dtype
        np.testing.assert_array_equal(fused_array, unfused_array)


def test_the_fused_squashed_sample_gradcheck():
    """The fused op's own vjp against float64 central differences (TIGHT), the log-std
    inside the clamp (the clamp's kink is not differentiable)."""
    rng = rng_(23)
    head = np.concatenate([rng.normal(size=(5, 2)), rng.normal(scale=0.3, size=(5, 2))], axis=1)
    eps = rng.standard_normal((5, 2))
    low, high = np.array([-2.0, -1.0]), np.array([2.0, 3.0])
    scale, sum_log_scale = box_constants(low, high, 2)
    gradcheck(lambda h: rsample_from_head(h, eps, 2, low, scale, sum_log_scale), [head],
              **TIGHT)


def test_tanh_entropy_monte_carlo_and_kl():
    mean, log_std, low, high = 0.3, -0.4, -1.0, 2.0
    t = TanhGaussian([mean], [log_std], low=low, high=high)

    def plogp(a):
        lp = t.log_prob(np.array([a])).item()
        return -math.exp(lp) * lp

    exact = scipy.integrate.quad(plogp, low, high, limit=200)[0]
    n = 20000
    est = t.entropy(rng_(14), n).data
    _, lp = t.rsample(rng_(14), sample_shape=(n,))
    se = lp.data.std(ddof=1) / math.sqrt(n)
    assert est.shape == ()
    assert abs(est - exact) < 4 * se, (est, exact, se)
    with pytest.raises(NotImplementedError, match="no closed-form entropy"):
        t.entropy()
    # KL equals the pre-squash Gaussians' KL (invariance under a common bijection) ...
    q = TanhGaussian([-0.2], [0.1], low=low, high=high)
    kl = t.kl(q).data
    np.testing.assert_allclose(kl, DiagGaussian([mean], [log_std]).kl(
        DiagGaussian([-0.2], [0.1])).data, rtol=1e-14)
    # ... and agrees with a Monte-Carlo estimate in action space (4 standard errors)
    acts = t.sample(rng_(15), (n,))
    r = t.log_prob(acts).data - q.log_prob(acts).data
    assert abs(r.mean() - kl) < 4 * r.std(ddof=1) / math.sqrt(n)
    with pytest.raises(ValueError, match="different boxes"):
        t.kl(TanhGaussian([0.0], [0.0]))


def test_tanh_validation():
    with pytest.raises(ValueError, match="both low and high"):
        TanhGaussian(np.zeros(2), np.zeros(2), low=-1.0)
    with pytest.raises(ValueError, match="low < high"):
        TanhGaussian(np.zeros(2), np.zeros(2), low=1.0, high=np.array([2.0, 1.0]))
    with pytest.raises(ValueError, match=r"low of shape \(3,\)"):
        TanhGaussian(np.zeros(2), np.zeros(2), low=np.zeros(3), high=np.ones(3))
    t = TanhGaussian(np.zeros(2), np.zeros(2), low=-1.0, high=1.0)
    with pytest.raises(ValueError, match="outside the support"):
        t.log_prob(np.array([0.0, 1.5]))
    assert np.all(np.isfinite(t.log_prob(np.array([1.0, -1.0])).data))   # clipped atanh


# ================================================================= noise

def test_gaussian_noise_std_and_validation():
    noise = GaussianNoise(0.3, (200000,), rng=rng_(16))
    x = noise()
    noise.reset()
    assert x.shape == (200000,)
    n = x.size                     # std within 4 SE (0.3 / sqrt(2n)); mean within 4 SE
    assert abs(x.std(ddof=1) - 0.3) < 4 * 0.3 / math.sqrt(2 * n)
    assert abs(x.mean()) < 4 * 0.3 / math.sqrt(n)
    assert not np.array_equal(noise()[:10], x[:10])
    with pytest.raises(ValueError,
                       match=r"sigma = -0\.1 is out of range; accepted: finite sigma >= 0"):
        GaussianNoise(-0.1, 3)


def test_ou_stationary_variance_and_autocorrelation():
    """50000 independent chains, 1000 steps from 0 (theta dt k = 10: residual e^-20).

    The recursion's stationary variance sigma^2 / (theta (2 - theta dt)) is within
    theta dt / 2 = 0.5% of the continuous sigma^2 / (2 theta); the sample variance
    must be within 4 standard errors (var sqrt(2/N)) of the discrete value, and so
    within 4 SE + 0.5% of the continuous one.
    """
    theta, sigma, dt, n = 1.0, 0.5, 1e-2, 50000
    ou = OrnsteinUhlenbeckNoise(n, theta=theta, sigma=sigma, dt=dt, rng=rng_(17))
    for _ in range(999):
        ou()
    prev = ou.state.copy()
    x = ou()
    discrete = sigma ** 2 / (theta * (2 - theta * dt))
    continuous = sigma ** 2 / (2 * theta)
    se = discrete * math.sqrt(2 / n)
    assert abs(x.var() - discrete) < 4 * se
    assert abs(x.var() - continuous) < 4 * se + continuous * theta * dt / 2
    # lag-1 correlation 1 - theta dt; the sample correlation's SE is about (1 - rho^2)/sqrt(N)
    rho = np.corrcoef(prev, x)[0, 1]
    assert abs(rho - (1 - theta * dt)) < 4 * (1 - (1 - theta * dt) ** 2) / math.sqrt(n)


def test_ou_default_parameters_keep_stationary_distribution():
    """Defaults (theta 0.15, sigma 0.2, dt 1e-2), started from the stationary law."""
    n = 50000
    ou = OrnsteinUhlenbeckNoise(n, rng=rng_(18))
    var = 0.2 ** 2 / (0.15 * (2 - 0.15 * 1e-2))
    ou.x0 = rng_(19).normal(0.0, math.sqrt(var), n)
    ou.reset()
    for _ in range(300):
        x = ou()
    assert abs(x.var() - var) < 4 * var * math.sqrt(2 / n)
    assert abs(x.mean()) < 4 * math.sqrt(var / n)


def test_ou_reset_and_mean_reversion():
    x0 = np.array([1.0, -2.0, 3.0])
    ou = OrnsteinUhlenbeckNoise(3, theta=0.5, sigma=0.0, dt=0.1, mu=0.5, x0=x0, rng=0)
    first = ou()
    np.testing.assert_allclose(first, x0 + 0.5 * (0.5 - x0) * 0.1, rtol=1e-15)
    for _ in range(2000):
        ou()
    np.testing.assert_allclose(ou.state, 0.5, atol=1e-12)      # sigma = 0: decays to mu
    ou.reset()
    np.testing.assert_array_equal(ou.state, x0)
    np.testing.assert_allclose(ou(), first, rtol=1e-15)
    # the returned sample is a copy
    y = ou()
    y[:] = 99.0
    assert not np.any(ou.state == 99.0)
    ou_default = OrnsteinUhlenbeckNoise((2, 2), mu=0.3, rng=1)
    np.testing.assert_array_equal(ou_default.state, np.full((2, 2), 0.3))


@pytest.mark.parametrize("kwargs,match", [
    (dict(sigma=-0.2), r"sigma = -0\.2 is out of range; accepted: finite sigma >= 0"),
    (dict(theta=-1.0), r"theta = -1\.0 is out of range; accepted: finite theta >= 0"),
    (dict(dt=0.0), r"dt = 0\.0 is out of range; accepted: finite dt > 0"),
    (dict(dt=float("nan")), r"dt = nan is out of range"),
    (dict(x0=np.zeros(4)), r"x0 of shape \(4,\) does not broadcast"),
    (dict(mu=np.zeros(2)), r"mu of shape \(2,\) does not broadcast"),
])
def test_ou_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OrnsteinUhlenbeckNoise(3, **kwargs)


# ================================================================ Fisher

def _tiny_net(rng, n_in, n_out, hidden=4):
    params = [Tensor(rng.normal(scale=0.7, size=s), requires_grad=True)
              for s in [(n_in, hidden), (hidden,), (hidden, n_out), (n_out,)]]

    def forward(obs, W1, b1, W2, b2):
        return ops.dense(ops.tanh(ops.dense(obs, W1, b1)), W2, b2)
    return params, forward


def _score(logp_fn, params):
    """Flat gradient of a scalar log-prob w.r.t. all params (reverse mode, fresh leaves)."""
    gs = grad(logp_fn, argnums=tuple(range(len(params))))(*[p.data for p in params])
    return np.concatenate([g.ravel() for g in gs])


def test_fisher_vector_product_categorical():
    rng = rng_(20)
    B, n_in, n = 5, 3, 4
    obs = rng.normal(size=(B, n_in))
    params, net = _tiny_net(rng, n_in, n)
    p = scipy.special.softmax(net(obs, *params).data, -1)
    size = sum(q.size for q in params)
    F = np.zeros((size, size))
    for b in range(B):                           # exact expectation over actions
        for a in range(n):
            s = _score(lambda *w: Categorical(net(obs[b:b + 1], *w)).log_prob(np.array([a]))
                       .sum(), params)
            F += p[b, a] * np.outer(s, s) / B
    v = rng.normal(size=size)
    fv = fisher_vector_product(lambda: net(obs, *params), params, v, Categorical.fisher_metric)
    np.testing.assert_allclose(fv, F @ v, atol=1e-10, rtol=0)
    # list form of v gives the same pieces
    pieces = np.split(v, np.cumsum([q.size for q in params])[:-1])
    fv_list = fisher_vector_product(lambda: net(obs, *params), params,
                                    [x.reshape(q.shape) for x, q in zip(pieces, params)],
                                    Categorical.fisher_metric)
    np.testing.assert_allclose(np.concatenate([f.ravel() for f in fv_list]), fv, atol=1e-14)


def _gauss_hermite(d, k=3):
    """Nodes/weights exact for E[poly(z)] of degree <= 2k-1 per coordinate, z ~ N(0, I_d)."""
    x, w = np.polynomial.hermite_e.hermegauss(k)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * d), indexing="ij")
    wgrid = functools.reduce(np.multiply.outer, [w] * d)
    return np.stack([g.ravel() for g in grids], -1), wgrid.ravel()


@pytest.mark.parametrize("kind", ["shared_log_std", "state_log_std", "tanh_clamped"])
def test_fisher_vector_product_gaussian(kind):
    """E over the Gaussian is exact: the score is quadratic in z, the outer product
    quartic, and 3-point Gauss-Hermite quadrature is exact to degree 5 per axis."""
    rng = rng_(21)
    B, n_in, d = 4, 3, 2
    obs = rng.normal(size=(B, n_in))
    head = d if kind != "state_log_std" else 2 * d
    params, net = _tiny_net(rng, n_in, head)
    if kind != "state_log_std":
        init = [0.3, -0.5] if kind == "shared_log_std" else [0.3, 2.5]   # 2.5 > clamp 2
        params.append(Tensor(np.array(init), requires_grad=True))

    def outputs(o, *w):
        if kind == "state_log_std":
            y = net(o, *w)
            return y[..., :d], y[..., d:]
        return net(o, *w[:4]), w[4]

    if kind == "tanh_clamped":
        metric = TanhGaussian.fisher_metric

        def logp(o, a, *w):                   # the density of a = tanh(u) at fixed u
            return TanhGaussian(*outputs(o, *w)).log_prob_from_pre_tanh(a)
    else:
        metric = DiagGaussian.fisher_metric

        def logp(o, a, *w):
            return DiagGaussian(*outputs(o, *w)).log_prob(a)

    z, wq = _gauss_hermite(d)
    size = sum(q.size for q in params)
    F = np.zeros((size, size))
    for b in range(B):
        mu, ls = (np.asarray(t.data) for t in outputs(obs[b:b + 1], *params))
        if kind == "tanh_clamped":
            ls = np.clip(ls, -20, 2)
        for zk, wk in zip(z, wq):
            u = mu + np.exp(ls) * zk
            s = _score(lambda *w: logp(obs[b:b + 1], u, *w).sum(), params)
            F += wk * np.outer(s, s) / B
    v = rng.normal(size=size)
    fv = fisher_vector_product(lambda: outputs(obs, *params), params, v, metric)
    np.testing.assert_allclose(fv, F @ v, atol=1e-10, rtol=0)
    if kind == "tanh_clamped":                # the clamped log-std entry gets no curvature
        assert np.all(F[-1] == 0) and np.abs(fv[-1]) == 0


def test_fisher_metric_shapes_and_validation():
    with pytest.raises(ValueError, match="2-tuple"):
        DiagGaussian.fisher_metric(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="tangent shape"):
        Categorical.fisher_metric(np.zeros((2, 3)), np.zeros((2, 4)))
    mu = Categorical.fisher_metric((np.zeros((2, 3)),), (np.ones((2, 3)),))
    assert isinstance(mu, tuple) and np.allclose(mu[0], 0.0)   # F 1 = 0 (softmax shift)


def test_log_prob_without_validation_equals_the_validated_one():
    """validate=False (the acting and update paths, for actions drawn by sample) gives
    the same values and gradients; the checks it skips are those of validate=True."""
    rng = np.random.default_rng(0)
    logits = Tensor(rng.standard_normal((6, 3)), requires_grad=True)
    dist = Categorical(logits)
    actions = dist.sample(rng)
    checked, unchecked = dist.log_prob(actions), dist.log_prob(actions, validate=False)
    np.testing.assert_array_equal(checked.data, unchecked.data)
    g1 = grad(lambda l: Categorical(l).log_prob(actions).sum())(logits.data)
    g2 = grad(lambda l: Categorical(l).log_prob(actions, validate=False).sum())(logits.data)
    np.testing.assert_array_equal(g1, g2)
    with pytest.raises(ValueError, match="out of range"):
        dist.log_prob(actions + 3)
    mean = Tensor(rng.standard_normal((6, 2)), requires_grad=True)
    gauss = DiagGaussian(mean, np.zeros(2))
    x = gauss.sample(rng)
    np.testing.assert_array_equal(gauss.log_prob(x).data, gauss.log_prob(x, validate=False).data)
    with pytest.raises(ValueError):
        gauss.log_prob(np.zeros((6, 5)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_categorical_sample_from_logits_matches_the_tensor_path(dtype):
    """Acting's plain-array path: the same draws and log-probabilities, bit for bit."""
    logits = np.random.default_rng(3).normal(size=(7, 3)).astype(dtype)
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(20):
        d = Categorical(logits)
        a = d.sample(rng_a)
        actions, log_prob = Categorical.sample_from_logits(logits, rng_b)
        np.testing.assert_array_equal(actions, a)
        np.testing.assert_array_equal(log_prob, d.log_prob(a).data)
        assert log_prob.dtype == dtype
