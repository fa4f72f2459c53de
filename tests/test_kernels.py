"""Tests of minipg.kernels: return/advantage estimators and fused optimizer updates.

Three kinds of check:
* twin agreement: each numba kernel against its independently written NumPy
  twin, on random rollouts (hypothesis);
* independent references: scipy.signal.lfilter, direct double sums, closed
  forms computed by hand here, torch.optim when it can be imported;
* behaviour at episode ends, input validation, and NUMBA_DISABLE_JIT.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter

from minipg.kernels import (
    adam_update,
    adam_update_numba,
    adam_update_numpy,
    discounted_returns,
    discounted_returns_numba,
    discounted_returns_numpy,
    gae,
    gae_numba,
    gae_numpy,
    n_step_returns,
    n_step_returns_numba,
    n_step_returns_numpy,
    polyak_update_kernel,
    polyak_update_kernel_numba,
    polyak_update_kernel_numpy,
    rmsprop_update,
    rmsprop_update_numba,
    rmsprop_update_numpy,
    sgd_update,
    sgd_update_numba,
    sgd_update_numpy,
)


# Twins agree to this relative tolerance in float64 (the brief's bound; in
# practice they perform the same IEEE operations in the same order).
RTOL64 = 1e-12
# float32: every kernel computes in float64 and rounds ONCE on store.  Two
# float64 results that agree to ~1e-15 therefore round to float32 values at
# most 1 ulp apart, and 1 ulp <= 2**-23 * |x| for normal numbers; 2**-22
# leaves a factor 2 of margin.
RTOL32_TWINS = 2.0**-22
# float32 output vs the float64 computation on the same (upcast) inputs:
# a single round-to-nearest, relative error <= 2**-24; 2**-23 for margin.
RTOL32_VS_F64 = 2.0**-23
# References that sum in another order (double sums, lfilter, closed forms):
# values are O(1) and at most ~40 terms are summed, so rounding differences
# stay near 40 * 1e-16 * 40; 1e-10 is far above that and far below any bug.
RTOL_REF = 1e-10
ATOL_REF = 1e-10


# --------------------------------------------------------------------------
# Random rollouts
# --------------------------------------------------------------------------


def make_rollout(seed, shape, p_term, p_trunc, dtype=np.float64):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=shape).astype(dtype)
    values = rng.normal(size=shape).astype(dtype)
    next_values = rng.normal(size=shape).astype(dtype)
    terminated = rng.random(shape) < p_term
    # exclusive flags: truncated only where not terminated
    truncated = (rng.random(shape) < p_trunc) & ~terminated
    return rewards, values, next_values, terminated, truncated


@st.composite
def rollouts(draw, dtype=np.float64, ends=True):
    T = draw(st.integers(1, 40))
    N = draw(st.one_of(st.none(), st.integers(1, 5)))
    shape = (T,) if N is None else (T, N)
    p_term = draw(st.sampled_from([0.0, 0.1, 0.3, 1.0])) if ends else 0.0
    p_trunc = draw(st.sampled_from([0.0, 0.1, 0.3, 1.0])) if ends else 0.0
    seed = draw(st.integers(0, 2**32 - 1))
    return make_rollout(seed, shape, p_term, p_trunc, dtype)


unit = st.floats(0.0, 1.0)


def as_2d(x):
    return np.asarray(x).reshape(x.shape[0], -1)


# --------------------------------------------------------------------------
# Independent references (plain Python loops, written from the definitions)
# --------------------------------------------------------------------------


def gae_double_sum(rewards, values, next_values, terminated, truncated, gamma, lam):
    """A_t = sum_{l>=0} (gamma lam)^l delta_{t+l}, cut after the first episode end."""
    r, v, nv = (as_2d(a).astype(np.float64) for a in (rewards, values, next_values))
    te, tr = as_2d(terminated), as_2d(truncated)
    T, N = r.shape
    out = np.zeros((T, N))
    for j in range(N):
        for t in range(T):
            total = 0.0
            for l in range(T - t):
                i = t + l
                boot = 0.0 if te[i, j] else gamma * nv[i, j]
                total += (gamma * lam) ** l * (r[i, j] + boot - v[i, j])
                if te[i, j] or tr[i, j]:
                    break
            out[t, j] = total
    return out.reshape(np.shape(rewards))


def n_step_direct_sum(rewards, next_values, terminated, truncated, gamma, n):
    r, nv = (as_2d(a).astype(np.float64) for a in (rewards, next_values))
    te, tr = as_2d(terminated), as_2d(truncated)
    T, N = r.shape
    out = np.zeros((T, N))
    for j in range(N):
        for t in range(T):
            total = 0.0
            for k in range(n):
                i = t + k
                total += gamma**k * r[i, j]
                if te[i, j]:
                    break
                if tr[i, j] or i == T - 1 or k == n - 1:
                    total += gamma ** (k + 1) * nv[i, j]
                    break
            out[t, j] = total
    return out.reshape(np.shape(rewards))


def consistent_next_values(values, next_values, terminated, truncated):
    """next_values[t] = values[t+1] inside episodes, as in a real rollout."""
    nv = next_values.copy()
    done = terminated | truncated
    inside = ~done[:-1]
    nv[:-1][inside] = values[1:][inside]
    return nv


# --------------------------------------------------------------------------
# Twin agreement (numba vs NumPy)
# --------------------------------------------------------------------------


@settings(deadline=None)
@given(rollouts(), unit, unit)
def test_gae_twins_agree(ro, gamma, lam):
    a = gae_numba(*ro, gamma, lam)
    b = gae_numpy(*ro, gamma, lam)
    assert a.dtype == b.dtype == np.float64 and a.shape == ro[0].shape
    np.testing.assert_allclose(a, b, rtol=RTOL64, atol=0)


@settings(deadline=None)
@given(rollouts(), unit, st.booleans())
def test_discounted_returns_twins_agree(ro, gamma, bootstrap):
    r, _, nv, te, tr = ro
    if bootstrap:
        a = discounted_returns_numba(r, te, tr, gamma, nv)
        b = discounted_returns_numpy(r, te, tr, gamma, nv)
    else:
        a = discounted_returns_numba(r, te, tr, gamma)
        b = discounted_returns_numpy(r, te, tr, gamma)
    assert a.dtype == b.dtype == np.float64 and a.shape == r.shape
    np.testing.assert_allclose(a, b, rtol=RTOL64, atol=0)


@settings(deadline=None)
@given(rollouts(), unit, st.integers(1, 45))
def test_n_step_twins_agree(ro, gamma, n):
    r, _, nv, te, tr = ro
    a = n_step_returns_numba(r, nv, te, tr, gamma, n)
    b = n_step_returns_numpy(r, nv, te, tr, gamma, n)
    assert a.dtype == b.dtype == np.float64 and a.shape == r.shape
    np.testing.assert_allclose(a, b, rtol=RTOL64, atol=0)


@settings(deadline=None, max_examples=50)
@given(rollouts(dtype=np.float32), unit, unit, st.integers(1, 45))
def test_float32_twins_agree_and_round_once(ro, gamma, lam, n):
    r, v, nv, te, tr = ro
    ro64 = (r.astype(np.float64), v.astype(np.float64), nv.astype(np.float64), te, tr)
    cases = [
        (gae_numba, gae_numpy, gae, (r, v, nv, te, tr, gamma, lam),
         (*ro64, gamma, lam)),
        (discounted_returns_numba, discounted_returns_numpy, discounted_returns,
         (r, te, tr, gamma, nv), (ro64[0], te, tr, gamma, ro64[2])),
        (n_step_returns_numba, n_step_returns_numpy, n_step_returns,
         (r, nv, te, tr, gamma, n), (ro64[0], ro64[2], te, tr, gamma, n)),
    ]
    for numba_fn, numpy_fn, public_fn, args32, args64 in cases:
        a, b, c = numba_fn(*args32), numpy_fn(*args32), public_fn(*args32)
        assert a.dtype == b.dtype == c.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=RTOL32_TWINS, atol=0)
        np.testing.assert_allclose(c, b, rtol=RTOL32_TWINS, atol=0)
        ref = numpy_fn(*args64)
        np.testing.assert_allclose(a, ref, rtol=RTOL32_VS_F64, atol=0)


@settings(deadline=None, max_examples=30)
@given(rollouts(), unit, unit, st.integers(1, 10))
def test_public_wrappers_match_raw_kernels_and_columns(ro, gamma, lam, n):
    r, v, nv, te, tr = ro
    np.testing.assert_array_equal(gae(r, v, nv, te, tr, gamma, lam),
                                  gae_numba(r, v, nv, te, tr, gamma, lam))
    np.testing.assert_array_equal(discounted_returns(r, te, tr, gamma, nv),
                                  discounted_returns_numba(r, te, tr, gamma, nv))
    np.testing.assert_array_equal(n_step_returns(r, nv, te, tr, gamma, n),
                                  n_step_returns_numba(r, nv, te, tr, gamma, n))
    if r.ndim == 2:
        # environments are independent: each column equals its 1-D run
        full = gae(r, v, nv, te, tr, gamma, lam)
        for j in range(r.shape[1]):
            col = [np.ascontiguousarray(a[:, j]) for a in ro]
            np.testing.assert_array_equal(full[:, j], gae(*col, gamma, lam))


def test_non_contiguous_and_numeric_mask_inputs():
    r, v, nv, te, tr = make_rollout(3, (12, 4), 0.2, 0.2)
    expected = gae(r, v, nv, te, tr, 0.97, 0.9)
    # Fortran-ordered copies and 0/1 float masks give the same result
    f = [np.asfortranarray(a) for a in (r, v, nv)]
    got = gae(*f, te.astype(np.float64), tr.astype(np.int8), 0.97, 0.9)
    np.testing.assert_array_equal(got, expected)
    # a strided view (every other env) equals the same columns
    got = gae(r[:, ::2], v[:, ::2], nv[:, ::2], te[:, ::2], tr[:, ::2], 0.97, 0.9)
    np.testing.assert_array_equal(got, expected[:, ::2])
    # raw kernels also accept strided views
    np.testing.assert_array_equal(
        gae_numba(r[:, ::2], v[:, ::2], nv[:, ::2], te[:, ::2], tr[:, ::2], 0.97, 0.9),
        expected[:, ::2])


# --------------------------------------------------------------------------
# Discounted returns
# --------------------------------------------------------------------------


@pytest.mark.parametrize("impl", [discounted_returns, discounted_returns_numpy])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.99, 1.0])
def test_discounted_returns_single_episode_vs_lfilter(impl, gamma):
    rng = np.random.default_rng(0)
    T = 37
    r = rng.normal(size=T)
    no = np.zeros(T, dtype=bool)
    expected = lfilter([1.0], [1.0, -gamma], r[::-1])[::-1]
    # no bootstrap
    np.testing.assert_allclose(impl(r, no, no, gamma), expected,
                               rtol=RTOL_REF, atol=ATOL_REF)
    # episode terminates at the last step: next_values is ignored
    term = no.copy()
    term[-1] = True
    nv = rng.normal(size=T)
    np.testing.assert_allclose(impl(r, term, no, gamma, nv), expected,
                               rtol=RTOL_REF, atol=ATOL_REF)
    # rollout ends (or is truncated) mid-episode: bootstrap gamma^(T-t) V(s'_{T-1})
    boot = gamma ** np.arange(T, 0, -1) * nv[-1]
    np.testing.assert_allclose(impl(r, no, no, gamma, nv), expected + boot,
                               rtol=RTOL_REF, atol=ATOL_REF)
    trunc = no.copy()
    trunc[-1] = True
    np.testing.assert_allclose(impl(r, no, trunc, gamma, nv), expected + boot,
                               rtol=RTOL_REF, atol=ATOL_REF)


def test_discounted_returns_restart_after_episode_end():
    r = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    term = np.array([False, True, False, False, False])
    trunc = np.array([False, False, False, True, False])
    nv = np.array([9.0, 9.0, 9.0, 4.0, 2.0])
    g = 0.5
    expected = np.array([1 + g * 1, 1, 1 + g * (1 + g * 4), 1 + g * 4, 1 + g * 2])
    np.testing.assert_allclose(discounted_returns(r, term, trunc, g, nv), expected,
                               rtol=1e-15)
    # both flags at one step: termination wins (no bootstrap from nv[4] = 2)
    term2, trunc2 = term.copy(), trunc.copy()
    term2[4] = trunc2[4] = True
    assert discounted_returns(r, term2, trunc2, g, nv)[4] == 1.0


@settings(deadline=None)
@given(rollouts(), unit)
def test_discounted_returns_equal_gae_lambda_one_values_zero(ro, gamma):
    r, _, nv, te, tr = ro
    T = r.shape[0]
    # bootstraps exist only at truncations and at the last step; elsewhere
    # V(s'_t) = V(s_{t+1}) = 0 for consistency with values = 0
    nv = nv.copy()
    keep = tr.copy()
    keep[T - 1] = True
    nv[~keep] = 0.0
    zeros = np.zeros_like(r)
    np.testing.assert_allclose(
        discounted_returns(r, te, tr, gamma, nv),
        gae(r, zeros, nv, te, tr, gamma, 1.0) + 0.0,
        rtol=RTOL64, atol=0)


# --------------------------------------------------------------------------
# GAE
# --------------------------------------------------------------------------


@settings(deadline=None, max_examples=60)
@given(rollouts(), unit, unit)
def test_gae_against_double_sum(ro, gamma, lam):
    expected = gae_double_sum(*ro, gamma, lam)
    np.testing.assert_allclose(gae(*ro, gamma, lam), expected, rtol=RTOL_REF, atol=ATOL_REF)
    np.testing.assert_allclose(gae_numpy(*ro, gamma, lam), expected,
                               rtol=RTOL_REF, atol=ATOL_REF)


@settings(deadline=None)
@given(rollouts(), unit)
def test_gae_lambda_one_is_monte_carlo_advantage(ro, gamma):
    r, v, nv, te, tr = ro
    nv = consistent_next_values(v, nv, te, tr)
    mc = discounted_returns(r, te, tr, gamma, nv) - v
    # telescoping sum: different rounding, values O(1), <= 40 terms
    np.testing.assert_allclose(gae(r, v, nv, te, tr, gamma, 1.0), mc,
                               rtol=RTOL_REF, atol=ATOL_REF)


@settings(deadline=None)
@given(rollouts(), unit)
def test_gae_lambda_zero_is_td_residual(ro, gamma):
    r, v, nv, te, tr = ro
    delta = r + gamma * (1.0 - te) * nv - v
    np.testing.assert_allclose(gae(r, v, nv, te, tr, gamma, 0.0), delta,
                               rtol=RTOL64, atol=1e-15)


def test_gae_truncation_bootstraps_termination_does_not():
    T = 6
    rng = np.random.default_rng(1)
    r, v, nv = rng.normal(size=(3, T))
    te = np.zeros(T, dtype=bool)
    tr = np.zeros(T, dtype=bool)
    te[2] = True
    tr[4] = True
    gamma, lam = 0.9, 0.8
    base = gae(r, v, nv, te, tr, gamma, lam)

    nv_term = nv.copy()
    nv_term[2] += 100.0  # value of a terminal state: must be ignored
    np.testing.assert_array_equal(gae(r, v, nv_term, te, tr, gamma, lam), base)
    nv_term[2] = np.nan  # not even NaN leaks through
    np.testing.assert_array_equal(gae(r, v, nv_term, te, tr, gamma, lam), base)
    np.testing.assert_array_equal(gae_numpy(r, v, nv_term, te, tr, gamma, lam), base)

    nv_trunc = nv.copy()
    nv_trunc[4] += 1.0  # truncated: A_t += gamma * (gamma lam)^(4-t) for t in 3..4
    got = gae(r, v, nv_trunc, te, tr, gamma, lam)
    shift = np.zeros(T)
    shift[3] = gamma * lam * gamma
    shift[4] = gamma
    np.testing.assert_allclose(got - base, shift, rtol=1e-12, atol=1e-14)

    # the recursion never crosses an end: steps 0..2 do not see steps 3..5
    r2 = r.copy()
    r2[3:] += 5.0
    np.testing.assert_array_equal(gae(r2, v, nv, te, tr, gamma, lam)[:3], base[:3])
    # A at a truncated step is its own delta
    assert base[4] == pytest.approx(r[4] + gamma * nv[4] - v[4], rel=1e-15)
    assert base[2] == pytest.approx(r[2] - v[2], rel=1e-15)


def test_gae_both_flags_equals_terminated():
    r, v, nv, te, tr = make_rollout(5, (15, 3), 0.2, 0.0)
    both = te.copy()
    np.testing.assert_array_equal(gae(r, v, nv, te, both, 0.99, 0.95),
                                  gae(r, v, nv, te, np.zeros_like(te), 0.99, 0.95))


def test_gae_dtype_and_empty_rollout():
    r, v, nv, te, tr = make_rollout(2, (5,), 0.2, 0.2, np.float32)
    assert gae(r, v.astype(np.float64), nv, te, tr, 0.9, 0.9).dtype == np.float32
    assert gae(r.astype(np.float64), v, nv, te, tr, 0.9, 0.9).dtype == np.float64
    empty = np.zeros((0, 3))
    mask = np.zeros((0, 3), dtype=bool)
    assert gae(empty, empty, empty, mask, mask, 0.9, 0.9).shape == (0, 3)


# --------------------------------------------------------------------------
# n-step returns
# --------------------------------------------------------------------------


@settings(deadline=None)
@given(rollouts(), unit)
def test_n_step_one_is_td_target(ro, gamma):
    r, _, nv, te, tr = ro
    expected = r + gamma * (1.0 - te) * nv
    np.testing.assert_allclose(n_step_returns(r, nv, te, tr, gamma, 1), expected,
                               rtol=RTOL64, atol=0)


@settings(deadline=None)
@given(rollouts(ends=False), unit, st.integers(0, 5))
def test_n_step_long_window_equals_discounted_returns(ro, gamma, extra):
    r, _, nv, te, tr = ro
    n = r.shape[0] + extra  # n >= T
    np.testing.assert_allclose(n_step_returns(r, nv, te, tr, gamma, n),
                               discounted_returns(r, te, tr, gamma, nv),
                               rtol=RTOL_REF, atol=ATOL_REF)


@settings(deadline=None, max_examples=60)
@given(rollouts(), unit, st.integers(1, 45))
def test_n_step_against_direct_sum(ro, gamma, n):
    r, _, nv, te, tr = ro
    expected = n_step_direct_sum(r, nv, te, tr, gamma, n)
    np.testing.assert_allclose(n_step_returns(r, nv, te, tr, gamma, n), expected,
                               rtol=RTOL_REF, atol=ATOL_REF)
    np.testing.assert_allclose(n_step_returns_numpy(r, nv, te, tr, gamma, n), expected,
                               rtol=RTOL_REF, atol=ATOL_REF)


def test_n_step_hand_example():
    r = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    nv = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    te = np.array([False, False, True, False, False])
    tr = np.array([False, False, False, False, False])
    g = 0.5
    expected = [
        1 + g * 2 + g**2 * 20,  # window of 2 full, bootstrap V(s'_1)
        2 + g * 3,  # stops at the termination of step 2
        3,  # terminal
        4 + g * 5 + g**2 * 50,  # rollout end
        5 + g * 50,
    ]
    np.testing.assert_allclose(n_step_returns(r, nv, te, tr, g, 2), expected, rtol=1e-15)
    # huge n is clipped to the rollout
    np.testing.assert_array_equal(n_step_returns(r, nv, te, tr, g, 10**30),
                                  n_step_returns(r, nv, te, tr, g, 5))


# --------------------------------------------------------------------------
# Optimizer kernels
# --------------------------------------------------------------------------

P0 = np.array([1.0, -2.0, 0.5, 0.0])
G1 = np.array([0.1, 0.3, -0.2, 0.05])
G2 = np.array([-0.4, 0.2, 0.1, 0.0])

SGD_IMPLS = [sgd_update, sgd_update_numba, sgd_update_numpy]
ADAM_IMPLS = [adam_update, adam_update_numba, adam_update_numpy]
RMS_IMPLS = [rmsprop_update, rmsprop_update_numba, rmsprop_update_numpy]
POLYAK_IMPLS = [polyak_update_kernel, polyak_update_kernel_numba, polyak_update_kernel_numpy]


def _ids(fns):
    return [f.__name__ if hasattr(f, "__name__") else str(f) for f in fns]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("impl", SGD_IMPLS, ids=_ids(SGD_IMPLS))
def test_sgd_closed_form(impl, dtype):
    tol = dict(rtol=1e-15 if dtype == np.float64 else 2.0**-23, atol=0)
    lr, mu, wd, damp = 0.1, 0.9, 0.01, 0.25
    kw = dict(momentum=mu, dampening=0.0, nesterov=False, weight_decay=wd)

    p, g1, g2 = P0.astype(dtype), G1.astype(dtype), G2.astype(dtype)
    p64, g1_64, g2_64 = (a.astype(dtype).astype(np.float64) for a in (P0, G1, G2))

    # plain SGD
    q = p.copy()
    impl(params=q, grads=g1, momentum_buf=np.zeros(0, dtype), lr=lr, momentum=0.0,
         dampening=0.0, nesterov=False, weight_decay=0.0, first_step=True)
    np.testing.assert_allclose(q, p64 - lr * g1_64, **tol)

    # momentum + weight decay, two steps
    q, buf = p.copy(), np.zeros_like(p)
    impl(params=q, grads=g1, momentum_buf=buf, lr=lr, first_step=True, **kw)
    d1 = g1_64 + wd * p64
    np.testing.assert_allclose(buf, d1, **tol)
    q1 = p64 - lr * d1
    np.testing.assert_allclose(q, q1, **tol)
    impl(params=q, grads=g2, momentum_buf=buf, lr=lr, first_step=False, **kw)
    d2 = g2_64 + wd * q1  # decay uses the current params
    np.testing.assert_allclose(buf, mu * d1 + d2, rtol=1e-14 if dtype == np.float64 else 1e-6)
    np.testing.assert_allclose(q, q1 - lr * (mu * d1 + d2),
                               rtol=1e-14 if dtype == np.float64 else 1e-6)

    # Nesterov, first step: g + mu * g
    q, buf = p.copy(), np.zeros_like(p)
    impl(params=q, grads=g1, momentum_buf=buf, lr=lr, momentum=mu, dampening=0.0,
         nesterov=True, weight_decay=0.0, first_step=True)
    np.testing.assert_allclose(q, p64 - lr * (1 + mu) * g1_64,
                               rtol=1e-15 if dtype == np.float64 else 2.0**-22)

    # dampening: buffer starts at g (torch), later steps scale g by 1 - dampening
    q, buf = p.copy(), np.zeros_like(p)
    impl(params=q, grads=g1, momentum_buf=buf, lr=lr, momentum=mu, dampening=damp,
         nesterov=False, weight_decay=0.0, first_step=True)
    np.testing.assert_allclose(buf, g1_64, **tol)
    impl(params=q, grads=g2, momentum_buf=buf, lr=lr, momentum=mu, dampening=damp,
         nesterov=False, weight_decay=0.0, first_step=False)
    np.testing.assert_allclose(buf, mu * g1_64 + (1 - damp) * g2_64,
                               rtol=1e-15 if dtype == np.float64 else 2.0**-22)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("impl", ADAM_IMPLS, ids=_ids(ADAM_IMPLS))
def test_adam_closed_form(impl, dtype):
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.0
    p, g1, g2 = P0.astype(dtype), G1.astype(dtype), G2.astype(dtype)
    p64, g1_64, g2_64 = (a.astype(dtype).astype(np.float64) for a in (P0, G1, G2))
    rtol = 1e-13 if dtype == np.float64 else 1e-6
    q, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    impl(params=q, grads=g1, m=m, v=v, lr=lr, beta1=b1, beta2=b2, eps=eps,
         weight_decay=wd, t=1)
    # step 1: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps)
    q1 = p64 - lr * g1_64 / (np.abs(g1_64) + eps)
    np.testing.assert_allclose(m, (1 - b1) * g1_64, rtol=rtol)
    np.testing.assert_allclose(v, (1 - b2) * g1_64**2, rtol=rtol)
    np.testing.assert_allclose(q, q1, rtol=rtol)
    impl(params=q, grads=g2, m=m, v=v, lr=lr, beta1=b1, beta2=b2, eps=eps,
         weight_decay=wd, t=2)
    m2 = b1 * (1 - b1) * g1_64 + (1 - b1) * g2_64
    v2 = b2 * (1 - b2) * g1_64**2 + (1 - b2) * g2_64**2
    q2 = q1 - lr * (m2 / (1 - b1**2)) / (np.sqrt(v2 / (1 - b2**2)) + eps)
    np.testing.assert_allclose(q, q2, rtol=rtol)

    # L2 weight decay enters the gradient (not decoupled as in AdamW)
    wd = 0.5
    q, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    impl(params=q, grads=g1, m=m, v=v, lr=lr, beta1=b1, beta2=b2, eps=1.0,
         weight_decay=wd, t=1)
    d = g1_64 + wd * p64
    np.testing.assert_allclose(q, p64 - lr * d / (np.abs(d) + 1.0), rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("impl", RMS_IMPLS, ids=_ids(RMS_IMPLS))
def test_rmsprop_closed_form(impl, dtype):
    lr, a, eps, mu, wd = 1e-2, 0.99, 1e-8, 0.9, 0.1
    p, g1 = P0.astype(dtype), G1.astype(dtype)
    p64, g1_64 = (x.astype(dtype).astype(np.float64) for x in (P0, G1))
    rtol = 1e-13 if dtype == np.float64 else 1e-6
    empty = np.zeros(0, dtype)

    # plain, first step from zero state: avg = sqrt(1 - a) |g| + eps
    q, sq = p.copy(), np.zeros_like(p)
    impl(params=q, grads=g1, square_avg=sq, grad_avg=empty, momentum_buf=empty, lr=lr,
         alpha=a, eps=eps, weight_decay=0.0, momentum=0.0, centered=False)
    np.testing.assert_allclose(sq, (1 - a) * g1_64**2, rtol=rtol)
    np.testing.assert_allclose(q, p64 - lr * g1_64 / (np.sqrt(1 - a) * np.abs(g1_64) + eps),
                               rtol=rtol)

    # centered + momentum + weight decay: s - gbar^2 = a (1 - a) d^2
    q, sq, ga, buf = p.copy(), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    impl(params=q, grads=g1, square_avg=sq, grad_avg=ga, momentum_buf=buf, lr=lr,
         alpha=a, eps=eps, weight_decay=wd, momentum=mu, centered=True)
    d = g1_64 + wd * p64
    step = d / (np.sqrt(a * (1 - a)) * np.abs(d) + eps)
    np.testing.assert_allclose(ga, (1 - a) * d, rtol=rtol)
    np.testing.assert_allclose(buf, step, rtol=1e-10 if dtype == np.float64 else 1e-5)
    np.testing.assert_allclose(q, p64 - lr * step, rtol=1e-10 if dtype == np.float64 else 1e-5)
    # second step: buffer accumulates mu * buf + g / avg
    buf_before, q_before = buf.astype(np.float64), q.astype(np.float64)
    sq_before, ga_before = sq.astype(np.float64), ga.astype(np.float64)
    impl(params=q, grads=g1, square_avg=sq, grad_avg=ga, momentum_buf=buf, lr=lr,
         alpha=a, eps=eps, weight_decay=wd, momentum=mu, centered=True)
    d = g1_64 + wd * q_before
    s2 = a * sq_before + (1 - a) * d**2
    ga2 = a * ga_before + (1 - a) * d
    b2 = mu * buf_before + d / (np.sqrt(s2 - ga2**2) + eps)
    np.testing.assert_allclose(buf, b2, rtol=1e-12 if dtype == np.float64 else 1e-5)
    np.testing.assert_allclose(q, q_before - lr * b2, rtol=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("impl", POLYAK_IMPLS, ids=_ids(POLYAK_IMPLS))
def test_polyak_formula(impl, dtype):
    rng = np.random.default_rng(4)
    target0 = rng.normal(size=17).astype(dtype)
    source = rng.normal(size=17).astype(dtype)
    source_copy = source.copy()
    t64, s64 = target0.astype(np.float64), source.astype(np.float64)
    for tau in (0.0, 0.005, 0.5, 1.0):
        target = target0.copy()
        impl(target, source, tau)
        expected = (1 - tau) * t64 + tau * s64
        np.testing.assert_allclose(target, expected,
                                   rtol=1e-15 if dtype == np.float64 else 2.0**-23)
    target = target0.copy()
    impl(target, source, 1.0)
    np.testing.assert_array_equal(target, source)  # tau = 1 copies the source
    target = target0.copy()
    impl(target, source, 0.0)
    np.testing.assert_array_equal(target, target0)  # tau = 0 keeps the target
    np.testing.assert_array_equal(source, source_copy)


def _run_optimizer(kind, impl, p, grads_seq, hp, dtype):
    p = p.astype(dtype)
    z = lambda: np.zeros_like(p)  # noqa: E731
    if kind == "sgd":
        state = dict(momentum_buf=z())
        for i, g in enumerate(grads_seq):
            impl(params=p, grads=g.astype(dtype), lr=hp["lr"], momentum=hp["momentum"],
                 dampening=hp["dampening"], nesterov=hp["nesterov"],
                 weight_decay=hp["weight_decay"], first_step=i == 0, **state)
    elif kind == "adam":
        state = dict(m=z(), v=z())
        for i, g in enumerate(grads_seq):
            impl(params=p, grads=g.astype(dtype), lr=hp["lr"], beta1=hp["beta1"],
                 beta2=hp["beta2"], eps=hp["eps"], weight_decay=hp["weight_decay"],
                 t=i + 1, **state)
    else:
        state = dict(square_avg=z(), grad_avg=z(), momentum_buf=z())
        for g in grads_seq:
            impl(params=p, grads=g.astype(dtype), lr=hp["lr"], alpha=hp["alpha"],
                 eps=hp["eps"], weight_decay=hp["weight_decay"], momentum=hp["momentum"],
                 centered=hp["centered"], **state)
    return p, state


hyper = st.fixed_dictionaries({
    "lr": st.floats(0.0, 1.0),
    "momentum": st.sampled_from([0.0, 0.5, 0.9]),
    "dampening": st.sampled_from([0.0, 0.1]),
    "nesterov": st.booleans(),
    "weight_decay": st.sampled_from([0.0, 1e-2]),
    "beta1": st.floats(0.0, 0.99),
    "beta2": st.floats(0.0, 0.9999),
    "eps": st.sampled_from([1e-8, 1e-3]),
    "alpha": st.floats(0.5, 0.999),
    "centered": st.booleans(),
})


@settings(deadline=None, max_examples=40)
@given(st.sampled_from(["sgd", "adam", "rmsprop"]), hyper, st.integers(0, 2**32 - 1),
       st.sampled_from([np.float64, np.float32]))
def test_optimizer_twins_agree_over_steps(kind, hp, seed, dtype):
    if hp["nesterov"]:
        hp = dict(hp, dampening=0.0, momentum=max(hp["momentum"], 0.5))
    rng = np.random.default_rng(seed)
    p0 = rng.normal(size=9)
    grads_seq = [rng.normal(size=9) for _ in range(4)]
    impls = {"sgd": SGD_IMPLS, "adam": ADAM_IMPLS, "rmsprop": RMS_IMPLS}[kind]
    results = [_run_optimizer(kind, impl, p0, grads_seq, hp, dtype) for impl in impls]
    rtol = RTOL64 if dtype == np.float64 else RTOL32_TWINS
    (p_ref, s_ref) = results[2]  # NumPy twin
    for p, s in results[:2]:
        assert p.dtype == dtype
        np.testing.assert_allclose(p, p_ref, rtol=rtol, atol=0)
        for key in s:
            np.testing.assert_allclose(s[key], s_ref[key], rtol=rtol, atol=0)


@pytest.mark.parametrize("kind", ["sgd", "adam", "rmsprop", "polyak"])
def test_kernels_mutate_only_params_and_state(kind):
    rng = np.random.default_rng(7)
    p = rng.normal(size=(2, 3))  # the public wrappers accept any C-contiguous shape
    g = rng.normal(size=(2, 3))
    p_before, g_before = p.copy(), g.copy()
    if kind == "sgd":
        buf = np.zeros_like(p)
        sgd_update(p, g, buf, lr=0.1, momentum=0.9, first_step=True)
        np.testing.assert_allclose(buf, g)
    elif kind == "adam":
        m, v = np.zeros_like(p), np.zeros_like(p)
        adam_update(p, g, m, v, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
                    weight_decay=0.0, t=1)
        assert np.all(m != 0) and np.all(v != 0)
    elif kind == "rmsprop":
        sq = np.zeros_like(p)
        unused = np.zeros(0)
        rmsprop_update(p, g, sq, unused, unused, lr=0.1)
        assert np.all(sq != 0) and unused.size == 0
    else:
        polyak_update_kernel(p, g, 0.3)
    np.testing.assert_array_equal(g, g_before)
    assert np.all(p != p_before)


def _torch():
    try:
        return pytest.importorskip("torch")
    except OSError as exc:  # installed but its shared libraries fail to load
        pytest.skip(f"torch cannot be loaded: {exc}")


@pytest.mark.parametrize("kind", ["sgd", "sgd_nesterov", "sgd_dampening", "adam",
                                  "rmsprop", "rmsprop_centered_momentum"])
def test_optimizers_match_torch(kind):
    torch = _torch()
    rng = np.random.default_rng(11)
    p0 = rng.normal(size=8)
    grads_seq = [rng.normal(size=8) for _ in range(5)]
    tp = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    if kind.startswith("sgd"):
        hp = dict(lr=0.05, momentum=0.9, dampening=0.3 if kind == "sgd_dampening" else 0.0,
                  nesterov=kind == "sgd_nesterov", weight_decay=0.01)
        opt = torch.optim.SGD([tp], **hp)
        ours = "sgd"
    elif kind == "adam":
        hp = dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.01)
        opt = torch.optim.Adam([tp], lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]),
                               eps=hp["eps"], weight_decay=hp["weight_decay"])
        ours = "adam"
    else:
        centered = kind != "rmsprop"
        hp = dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.01,
                  momentum=0.5 if centered else 0.0, centered=centered)
        opt = torch.optim.RMSprop([tp], **hp)
        ours = "rmsprop"
    for g in grads_seq:
        tp.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    impl = {"sgd": sgd_update, "adam": adam_update, "rmsprop": rmsprop_update}[ours]
    p, _ = _run_optimizer(ours, impl, p0, grads_seq, hp, np.float64)
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------

_R = np.zeros((4, 2))
_M = np.zeros((4, 2), dtype=bool)
_P = np.zeros(3)
_ADAM_HP = dict(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, t=1)


def _adam(**overrides):
    hp = dict(_ADAM_HP, **overrides)
    v = hp.pop("v", _P.copy())
    return adam_update(_P.copy(), _P, _P.copy(), v, **hp)


def _bad_calls():
    yield "rewards int", lambda: gae(_R.astype(int), _R, _R, _M, _M, 0.9, 0.9), \
        r"rewards must have a float dtype \(float32 or float64\)"
    yield "float16", lambda: gae(_R.astype(np.float16), _R, _R, _M, _M, 0.9, 0.9), \
        "rewards must have a float dtype"
    yield "3-D", lambda: gae(np.zeros((4, 2, 1)), _R, _R, _M, _M, 0.9, 0.9), \
        r"rewards must have shape \(T,\) or \(T, N\)"
    yield "values shape", lambda: gae(_R, _R[:3], _R, _M, _M, 0.9, 0.9), \
        r"values must have the same shape as rewards \(4, 2\)"
    yield "next_values dtype", lambda: gae(_R, _R, _M, _M, _M, 0.9, 0.9), \
        "next_values must have a float dtype"
    yield "gamma > 1", lambda: gae(_R, _R, _R, _M, _M, 1.5, 0.9), r"gamma must be in \[0, 1\]"
    yield "gamma nan", lambda: gae(_R, _R, _R, _M, _M, float("nan"), 0.9), \
        r"gamma must be in \[0, 1\]"
    yield "gamma str", lambda: gae(_R, _R, _R, _M, _M, "0.9", 0.9), \
        r"gamma must be a real number in \[0, 1\]"
    yield "lam < 0", lambda: gae(_R, _R, _R, _M, _M, 0.9, -0.1), r"lam must be in \[0, 1\]"
    yield "mask values", lambda: gae(_R, _R, _R, _M + 2, _M, 0.9, 0.9), \
        "terminated must be a boolean array"
    yield "mask shape", lambda: gae(_R, _R, _R, _M, _M[:, :1], 0.9, 0.9), \
        "truncated must have the same shape as rewards"
    yield "returns nv shape", lambda: discounted_returns(_R, _M, _M, 0.9, _P), \
        "next_values must have the same shape as rewards"
    yield "returns gamma", lambda: discounted_returns(_R, _M, _M, -1.0), r"gamma must be in \[0, 1\]"
    yield "n = 0", lambda: n_step_returns(_R, _R, _M, _M, 0.9, 0), r"n must be an integer >= 1"
    yield "n float", lambda: n_step_returns(_R, _R, _M, _M, 0.9, 2.0), r"n must be an integer >= 1"
    yield "n bool", lambda: n_step_returns(_R, _R, _M, _M, 0.9, True), r"n must be an integer >= 1"
    yield "lr < 0", lambda: sgd_update(_P.copy(), _P, None, lr=-0.1), "lr must be >= 0"
    yield "params list", lambda: sgd_update([0.0], _P, None, lr=0.1), \
        "params must be a numpy.ndarray"
    yield "params int", lambda: sgd_update(np.zeros(3, int), _P, None, lr=0.1), \
        "params must have a float dtype"
    yield "params strided", lambda: sgd_update(np.zeros(6)[::2], _P, None, lr=0.1), \
        "params must be C-contiguous"
    yield "grads shape", lambda: sgd_update(_P.copy(), np.zeros(4), None, lr=0.1), \
        r"grads must have the same shape as params \(3,\)"
    yield "grads dtype", lambda: sgd_update(_P.copy(), _P.astype(np.float32), None, lr=0.1), \
        r"grads must have the same dtype as params \(float64\)"
    yield "momentum buf missing", lambda: sgd_update(_P.copy(), _P, np.zeros(0), lr=0.1,
                                                     momentum=0.9), \
        "momentum_buf must have the same shape as params"
    yield "nesterov", lambda: sgd_update(_P.copy(), _P, np.zeros(3), lr=0.1, momentum=0.9,
                                         dampening=0.1, nesterov=True), \
        "nesterov=True requires momentum > 0 and dampening == 0"
    yield "nesterov type", lambda: sgd_update(_P.copy(), _P, np.zeros(3), lr=0.1, momentum=0.9,
                                              nesterov="yes"), "nesterov must be a bool"
    yield "beta1 = 1", lambda: _adam(beta1=1.0), "beta1 must be < 1"
    yield "adam t = 0", lambda: _adam(t=0), r"t must be an integer >= 1"
    yield "adam t float", lambda: _adam(t=1.0), r"t must be an integer >= 1"
    yield "adam eps", lambda: _adam(eps=-1.0), "eps must be >= 0"
    yield "adam v dtype", lambda: _adam(v=_P.astype(np.float32)), \
        r"v must have the same dtype as params"
    yield "lr inf", lambda: _adam(lr=np.inf), "lr must be finite"
    yield "rms centered", lambda: rmsprop_update(_P.copy(), _P, _P.copy(), np.zeros(0),
                                                 None, lr=0.1, centered=True), \
        "grad_avg must have the same shape as params"
    yield "rms alpha", lambda: rmsprop_update(_P.copy(), _P, _P.copy(), None, None, lr=0.1,
                                              alpha=-0.5), "alpha must be >= 0"
    yield "rms read-only", lambda: rmsprop_update(_P.copy(), _P, _readonly(), None, None,
                                                  lr=0.1), "square_avg must be writeable"
    yield "tau > 1", lambda: polyak_update_kernel(_P.copy(), _P, 1.5), "tau must be <= 1"
    yield "target read-only", lambda: polyak_update_kernel(_readonly(), _P, 0.5), \
        "target must be writeable"
    yield "source shape", lambda: polyak_update_kernel(_P.copy(), np.zeros(2), 0.5), \
        r"source must have the same shape as target \(3,\)"


def _readonly():
    a = np.zeros(3)
    a.flags.writeable = False
    return a


_BAD = list(_bad_calls())


@pytest.mark.parametrize("call, match", [(c, m) for _, c, m in _BAD],
                         ids=[name for name, _, _ in _BAD])
def test_validation_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------
# NUMBA_DISABLE_JIT
# --------------------------------------------------------------------------


def test_numba_disable_jit_subprocess(run_without_jit):
    code = (
        "import numpy as np, numba\n"
        "assert numba.config.DISABLE_JIT\n"
        "from minipg.kernels import gae_numba, gae_numpy\n"
        "assert not hasattr(gae_numba, 'py_func'), type(gae_numba)\n"
        "rng = np.random.default_rng(0)\n"
        "r, v, nv = rng.normal(size=(3, 6, 2))\n"
        "te = np.zeros((6, 2), bool); te[2, 0] = True\n"
        "tr = np.zeros((6, 2), bool); tr[4, 1] = True\n"
        "a = gae_numba(r, v, nv, te, tr, 0.9, 0.8)\n"
        "b = gae_numpy(r, v, nv, te, tr, 0.9, 0.8)\n"
        "np.testing.assert_allclose(a, b, rtol=1e-12)\n"
        "print('ok')\n"
    )
    run_without_jit(code)


# --------------------------------------------------------------------------
# Row-wise log-softmax (the Categorical policies' log-probabilities)
# --------------------------------------------------------------------------

from scipy.special import log_softmax as scipy_log_softmax  # noqa: E402

from minipg.kernels.softmax import (  # noqa: E402
    categorical_sample_rows,
    categorical_sample_rows_numba,
    categorical_sample_rows_numpy,
    log_softmax_rows,
    log_softmax_rows_numba,
    log_softmax_rows_numpy,
    log_softmax_rows_vjp,
    log_softmax_rows_vjp_numba,
    log_softmax_rows_vjp_numpy,
)


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 6), st.integers(1, 5), st.floats(0.1, 1e3), st.integers(0, 2**32 - 1),
       st.sampled_from([np.float64, np.float32]))
def test_log_softmax_rows_twins_agree_with_scipy(rows, n, scale, seed, dtype):
    """Both kernels against scipy.special.log_softmax (float64 reference), at logit
    scales up to 1e3 (no overflow: the row maximum is subtracted first); float32 is
    compared with the float64 result of its own (rounded) inputs."""
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((rows, n))).astype(dtype)
    expected = scipy_log_softmax(x.astype(np.float64), axis=-1)
    # the result is x - shift: its rounding error scales with |x| + |shift|, not with it
    atol = (2e-15 if dtype == np.float64 else 2.0**-23) * (np.abs(x).max() + abs(expected).max())
    for kernel in (log_softmax_rows_numba, log_softmax_rows_numpy):
        out = np.empty_like(x)
        kernel(x, out)
        np.testing.assert_allclose(out, expected, rtol=0, atol=atol)
    assert log_softmax_rows(x[None]).shape == (1, rows, n)


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**32 - 1),
       st.sampled_from([np.float64, np.float32]))
def test_log_softmax_rows_vjp_twins_agree_with_the_jacobian(rows, n, seed, dtype):
    """g - softmax(x) sum(g) against the explicit Jacobian (I - 1 p^T) per row."""
    rng = np.random.default_rng(seed)
    z = scipy_log_softmax(rng.standard_normal((rows, n)), axis=-1).astype(dtype)
    g = rng.standard_normal((rows, n)).astype(dtype)
    p = np.exp(z.astype(np.float64))
    expected = np.stack([g[i].astype(np.float64) @ (np.eye(n) - np.outer(np.ones(n), p[i]))
                         for i in range(rows)])
    tol = 1e-13 if dtype == np.float64 else 2e-6
    for kernel in (log_softmax_rows_vjp_numba, log_softmax_rows_vjp_numpy):
        out = np.empty_like(g)
        kernel(g, z, out)
        np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(log_softmax_rows_vjp(g, z), expected, rtol=tol, atol=tol)


def test_log_softmax_rows_rejects_bad_input():
    with pytest.raises(ValueError, match="float32/float64 array of shape"):
        log_softmax_rows(np.arange(3))
    with pytest.raises(ValueError, match="shape"):
        log_softmax_rows(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="same shape"):
        log_softmax_rows_vjp(np.zeros((2, 3)), np.zeros((2, 2)))


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**32 - 1),
       st.sampled_from([np.float64, np.float32]))
def test_categorical_sample_rows_twins_agree_and_invert_the_cdf(rows, n, seed, dtype):
    """Both kernels give the same actions, and each action k satisfies
    c_{k-1} <= u c_{n-1} < c_k (the inverse CDF), with c the float64 cumulative sum."""
    rng = np.random.default_rng(seed)
    log_probs = scipy_log_softmax(3 * rng.standard_normal((rows, n)), axis=-1).astype(dtype)
    u = rng.random(rows)
    u[0] = 0.0                                    # the lowest uniform picks action 0
    outs = []
    for kernel in (categorical_sample_rows_numba, categorical_sample_rows_numpy):
        out = np.empty(rows, dtype=np.int64)
        kernel(log_probs, u, out)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(categorical_sample_rows(log_probs, u), outs[0])
    cdf = np.cumsum(np.exp(log_probs.astype(np.float64)), axis=1)
    threshold = u * cdf[:, -1]
    for i, k in enumerate(outs[0]):
        assert 0 <= k < n and threshold[i] < cdf[i, k]
        assert k == 0 or cdf[i, k - 1] <= threshold[i]
    assert outs[0][0] == 0


def test_categorical_sample_rows_rejects_bad_uniforms():
    log_probs = np.log(np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match=r"u must have the shape \(3,\)"):
        categorical_sample_rows(log_probs, np.zeros(4))
    with pytest.raises(ValueError, match=r"uniforms in \[0, 1\)"):
        categorical_sample_rows(log_probs, np.array([0.0, 0.5, 1.0]))


# --------------------------------------------------------------------------
# The relu passes of a dense layer (bias + relu forward, the relu mask backward)
# --------------------------------------------------------------------------

from minipg.kernels.dense import (  # noqa: E402
    bias_relu,
    bias_relu_numba,
    bias_relu_numpy,
    relu_mask,
    relu_mask_numba,
    relu_mask_numpy,
)


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 7), st.integers(0, 2**32 - 1),
       st.sampled_from([np.float64, np.float32]))
def test_dense_relu_kernels_twins_agree_bitwise(k, rows, n, seed, dtype):
    """max(z + b, 0) and g [z > 0]: numba and NumPy give the same bits, with zeros, a
    negative zero, a NaN and an infinity among the inputs (NaN and inf propagate as
    NumPy's maximum and product do), and the definitions' values."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((k, rows, n)).astype(dtype)
    b = rng.standard_normal((k, 1, n)).astype(dtype)
    g = rng.standard_normal((k, rows, n)).astype(dtype)
    flat_z, flat_g = z.reshape(-1), g.reshape(-1)
    specials = [0.0, -0.0, np.nan, np.inf][: flat_z.size]
    flat_z[: len(specials)] = specials
    flat_g[-len(specials):] = specials
    expected = z + b
    expected = np.where(np.isnan(expected), expected, np.where(expected > 0, expected, 0))
    outs = []
    for kernel in (bias_relu_numba, bias_relu_numpy):
        out = z.copy()
        kernel(out, b)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], expected)
    masks = []
    for kernel in (relu_mask_numba, relu_mask_numpy):
        out = np.empty_like(g)
        kernel(g, outs[0], out)
        masks.append(out)
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], g * (outs[0] > 0))


def test_dense_relu_kernels_public_wrappers():
    """2-D and 3-D inputs through the checked wrappers; bad shapes and dtypes refused."""
    z = np.array([[-1.0, 2.0], [0.5, -3.0]])
    assert bias_relu(z, np.array([0.5, 0.5])) is z
    np.testing.assert_array_equal(z, [[0.0, 2.5], [1.0, 0.0]])
    np.testing.assert_array_equal(relu_mask(np.ones((2, 2)), z), [[0.0, 1.0], [1.0, 0.0]])
    z3 = np.zeros((2, 3, 2), np.float32)
    bias_relu(z3, np.ones((2, 1, 2), np.float32))
    assert (z3 == 1).all()
    with pytest.raises(ValueError, match="b must have shape"):
        bias_relu(np.zeros((2, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="dtype"):
        bias_relu(np.zeros((2, 2)), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="shape and dtype"):
        relu_mask(np.zeros((2, 2)), np.zeros((2, 3)))


def test_keep_freed_memory_sets_glibc_thresholds_once():
    """minipg.allocator: True on glibc (the thresholds set), False elsewhere; the same
    answer on a second call (it applies once per process)."""
    import platform

    from minipg.allocator import keep_freed_memory
    first = keep_freed_memory()
    assert first is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    assert keep_freed_memory() is first
