"""The categorical projection of D4PG (minipg.kernels.projection).

Properties of verification/FORMULAS.md "Losses/C51/D4PG projection": m >= 0, sum m = 1,
the identity when r = 0 and gamma = 1, the mean preserved when no atom is clipped, an
atom exactly on a support point keeping its mass (the textbook floor/ceil form, written
here, fails that one); the kernel against its NumPy twin and against a brute-force
per-atom evaluation; hypothesis over supports, rewards and discounts; NUMBA_DISABLE_JIT.

Tolerances: kernel and twin compute an atom's position b = (T z - v_min) / dz in
different ways (float64); T z and the atoms carry a rounding error of about
eps max(|v_min|, |v_max|), which the division by dz magnifies, so they agree to
position_tol = 64 eps (1 + max(|v_min|, |v_max|) / dz) (64: a few roundings, with room).
Sums of n <= 60 numbers of order 1 are exact to ~1e-14: the kernel's sum m = 1 within
1e-12 (the twin's within the position rounding too).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minipg.kernels import (categorical_projection, categorical_projection_numba,
                            categorical_projection_numpy)

IMPLS = [categorical_projection_numba, categorical_projection_numpy]


def position_tol(v_min, v_max, n):
    """The rounding of an atom's position on the support (see the module docstring)."""
    dz = (v_max - v_min) / (n - 1)
    return 64 * np.finfo(float).eps * (1.0 + max(abs(v_min), abs(v_max)) / dz)


def brute_force(probs, rewards, discounts, v_min, v_max):
    """Atom by atom: clip the backup, find the support points around it by a linear scan,
    split the mass linearly (all of it where the backup IS a support point)."""
    batch, n = probs.shape
    z = [v_min + i * (v_max - v_min) / (n - 1) for i in range(n)]
    out = np.zeros((batch, n))
    for k in range(batch):
        for j in range(n):
            tz = min(max(rewards[k] + discounts[k] * z[j], v_min), v_max)
            p = probs[k, j]
            for i in range(n):
                if abs(tz - z[i]) <= 1e-12 * max(1.0, abs(z[i])):
                    out[k, i] += p
                    break
                if i + 1 < n and z[i] < tz < z[i + 1]:
                    w_upper = (tz - z[i]) / (z[i + 1] - z[i])
                    out[k, i] += p * (1 - w_upper)
                    out[k, i + 1] += p * w_upper
                    break
    return out


def textbook_floor_ceil(probs, rewards, discounts, v_min, v_max):
    """The flawed form: l = floor(b), u = ceil(b); loses the mass where l == u."""
    batch, n = probs.shape
    dz = (v_max - v_min) / (n - 1)
    z = v_min + dz * np.arange(n)
    out = np.zeros((batch, n))
    for k in range(batch):
        b = (np.clip(rewards[k] + discounts[k] * z, v_min, v_max) - v_min) / dz
        lo, up = np.floor(b).astype(int), np.ceil(b).astype(int)
        np.add.at(out[k], lo, probs[k] * (up - b))
        np.add.at(out[k], up, probs[k] * (b - lo))
    return out


@st.composite
def problems(draw, max_batch=4, max_atoms=41):
    n = draw(st.integers(2, max_atoms))
    batch = draw(st.integers(1, max_batch))
    v_min = draw(st.floats(-500, 100, allow_nan=False))
    width = draw(st.floats(0.1, 800))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(n, draw(st.sampled_from([0.1, 1.0, 10.0]))), size=batch)
    scale = draw(st.floats(0.0, 2.0)) * width
    rewards = rng.normal(0.0, 1.0, batch) * scale + (v_min + width / 2) * draw(
        st.sampled_from([0.0, 0.3]))
    discounts = rng.uniform(0.0, 1.0, batch) ** draw(st.sampled_from([1.0, 0.1]))
    discounts[rng.random(batch) < 0.2] = 0.0                           # terminations
    return probs, rewards, discounts, v_min, v_min + width


@settings(deadline=None, max_examples=60)
@given(problems())
def test_kernel_twin_and_brute_force_agree(problem):
    a = categorical_projection_numba(*problem)
    b = categorical_projection_numpy(*problem)
    c = brute_force(*problem)
    tol = position_tol(problem[3], problem[4], problem[0].shape[1])
    np.testing.assert_allclose(a, b, rtol=0, atol=tol)
    # the brute force snaps a backup within 1e-12 |z| of an atom onto it: that much more
    np.testing.assert_allclose(a, c, rtol=0, atol=tol + 1e-12 * max(1.0, abs(problem[3]),
                                                                     abs(problem[4]))
                               / ((problem[4] - problem[3]) / (problem[0].shape[1] - 1)))


@settings(deadline=None, max_examples=60)
@given(problems())
def test_nonnegative_and_sums_to_one(problem):
    # the kernel's two shares of an atom, p (1 - frac) and p frac, sum to p within an ulp;
    # the twin's clip(1 - |T z_j - z_i| / dz) terms within the position rounding
    tol = 1e-12 + position_tol(problem[3], problem[4], problem[0].shape[1])
    for impl in IMPLS:
        m = impl(*problem)
        assert np.all(m >= 0)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0,
                                   atol=1e-12 if impl is categorical_projection_numba else tol)


@settings(deadline=None, max_examples=40)
@given(problems())
def test_identity_when_reward_zero_and_discount_one(problem):
    probs, rewards, _, v_min, v_max = problem
    for impl in IMPLS:
        m = impl(probs, np.zeros_like(rewards), np.ones_like(rewards), v_min, v_max)
        np.testing.assert_allclose(m, probs, rtol=0,
                                   atol=position_tol(v_min, v_max, probs.shape[1]))


@settings(deadline=None, max_examples=60)
@given(problems(), st.floats(0.0, 1.0))
def test_mean_preserved_when_nothing_clipped(problem, position):
    """r and d chosen so that r + d z stays in [v_min, v_max] for every atom: then
    sum_i m_i z_i = r + d sum_j p_j z_j."""
    probs, _, discounts, v_min, v_max = problem
    # r + d [v_min, v_max] inside [v_min, v_max]: r in [v_min (1 - d), v_max (1 - d)]
    rewards = (v_min + position * (v_max - v_min)) * (1.0 - discounts)
    z = np.linspace(v_min, v_max, probs.shape[1])
    for impl in IMPLS:
        m = impl(probs, rewards, discounts, v_min, v_max)
        np.testing.assert_allclose(m @ z, rewards + discounts * (probs @ z), rtol=1e-10,
                                   atol=1e-9 * (v_max - v_min))


def test_mean_changes_when_atoms_are_clipped():
    """The companion: with clipping the mean is NOT r + d E[Z] (the test above can fail)."""
    probs = np.full((1, 5), 0.2)
    m = categorical_projection(probs, np.array([3.0]), np.array([1.0]), -2.0, 2.0)
    z = np.linspace(-2, 2, 5)
    assert abs(m @ z - (3.0 + probs @ z))[0] > 1.0


def test_atom_on_a_support_point_keeps_its_mass():
    """Support {-2, ..., 2}, d = 1, r = 1: every backup lands exactly on a support point
    (b integer), the top one clipped onto 2.  The robust form keeps all the mass; the
    textbook floor/ceil form loses every atom (l == u) and fails."""
    probs = np.array([[0.1, 0.2, 0.3, 0.25, 0.15]])
    args = (probs, np.array([1.0]), np.array([1.0]), -2.0, 2.0)
    expected = np.array([[0.0, 0.1, 0.2, 0.3, 0.4]])
    for impl in IMPLS + [categorical_projection]:
        np.testing.assert_allclose(impl(*args), expected, rtol=0, atol=1e-15)
    lost = textbook_floor_ceil(*args)
    assert lost.sum() < 0.5                           # the flaw this form avoids
    assert not np.allclose(lost, expected)


def test_hand_example():
    """Support {0, 1, 2}, r = 0.5, d = 0.5: Tz = (0.5, 1.0, 1.5); masses split in halves."""
    m = categorical_projection(np.array([[0.2, 0.3, 0.5]]), np.array([0.5]), np.array([0.5]),
                               0.0, 2.0)
    np.testing.assert_allclose(m, [[0.1, 0.1 + 0.3 + 0.25, 0.25]], rtol=0, atol=1e-15)


def test_float32_in_float32_out():
    probs = np.random.default_rng(0).dirichlet(np.ones(7), size=3).astype(np.float32)
    m = categorical_projection(probs, np.zeros(3), np.full(3, 0.9), -1.0, 1.0)
    assert m.dtype == np.float32
    np.testing.assert_allclose(m, categorical_projection_numpy(probs, np.zeros(3),
                                                               np.full(3, 0.9), -1.0, 1.0),
                               atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(v_min=1.0, v_max=1.0), "v_min"),
    (dict(v_min=float("nan")), "v_min"),
    (dict(probs=np.ones((2, 1))), "n >= 2"),
    (dict(probs=-np.ones((2, 3))), "non-negative"),
    (dict(discounts=np.array([0.5, 1.5])), "discounts"),
    (dict(rewards=np.zeros(3)), "rewards"),
    (dict(probs=np.ones((2, 3), dtype=np.int64)), "float dtype"),
])
def test_validation(kwargs, match):
    args = dict(probs=np.full((2, 3), 1 / 3), rewards=np.zeros(2), discounts=np.ones(2),
                v_min=-1.0, v_max=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        categorical_projection(**args)


def test_numba_disable_jit_subprocess(run_without_jit):
    code = (
        "import numpy as np, numba\n"
        "assert numba.config.DISABLE_JIT\n"
        "from minipg.kernels import categorical_projection_numba as k, "
        "categorical_projection_numpy as t, sum_tree_update_numba as u, "
        "sum_tree_update_numpy as v, sum_tree_find_numba as f\n"
        "assert not hasattr(k, 'py_func')\n"
        "rng = np.random.default_rng(0)\n"
        "p = rng.dirichlet(np.ones(9), size=4); r = rng.normal(size=4); d = rng.random(4)\n"
        "np.testing.assert_allclose(k(p, r, d, -2.0, 3.0), t(p, r, d, -2.0, 3.0), atol=1e-12)\n"
        "a, b = np.zeros(16), np.zeros(16); i = np.array([0, 5, 7, 5]); q = rng.random(4)\n"
        "u(a, i, q); v(b, i, q); assert np.array_equal(a, b)\n"
        "assert list(f(a, np.array([0.0]))) == [0]\n"
        "print('ok')\n")
    run_without_jit(code)
