"""Prioritized replay (minipg.buffers.prioritized) and its sum tree (minipg.kernels.sumtree).

* the sum tree: kernel and twin bitwise equal under random updates; every internal node
  is exactly the sum of its children; the search finds the leaf a cumulative-sum scan
  finds; zero leaves are never found;
* sampling: frequencies proportional to p^alpha by a chi-square goodness-of-fit test at
  level 0.001 (fixed seeds), and the companion: a sampler with the wrong exponent fails
  the same test;
* importance weights (R P(i))^-beta / max over the batch, against the formula;
* checkpoints: a restored buffer samples exactly as the original.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from minipg.buffers.prioritized import PrioritizedReplayBuffer
from minipg.kernels import (sum_tree_find, sum_tree_find_numba, sum_tree_find_numpy,
                            sum_tree_leaves, sum_tree_update, sum_tree_update_numba,
                            sum_tree_update_numpy)

LEVEL = 0.001        # the chi-square tests' significance level


def internal_nodes_are_sums(tree):
    leaves = tree.shape[0] // 2
    nodes = np.arange(1, leaves)
    return np.array_equal(tree[nodes], tree[2 * nodes] + tree[2 * nodes + 1])


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 70), st.integers(0, 2**31 - 1), st.integers(1, 6))
def test_sum_tree_invariants_under_random_updates(capacity, seed, rounds):
    rng = np.random.default_rng(seed)
    leaves = sum_tree_leaves(capacity)
    assert leaves >= capacity and leaves & (leaves - 1) == 0 and leaves < 2 * capacity + 1
    a, b = np.zeros(2 * leaves), np.zeros(2 * leaves)
    reference = np.zeros(leaves)
    for _ in range(rounds):
        idx = rng.integers(0, capacity, size=rng.integers(1, 2 * capacity + 1))
        p = rng.exponential(size=idx.size) * (rng.random(idx.size) > 0.2)   # some zeros
        sum_tree_update_numba(a, idx, p)
        sum_tree_update_numpy(b, idx, p)
        for i, v in zip(idx, p):            # sequential: a repeated index keeps the last
            reference[i] = v
        assert np.array_equal(a, b)                                       # bitwise
        assert internal_nodes_are_sums(a)
        np.testing.assert_array_equal(a[leaves:], reference)
        np.testing.assert_allclose(a[1], reference.sum(), rtol=1e-12)
        if a[1] > 0:
            u = rng.random(50) * a[1]
            found = sum_tree_find_numba(a, u)
            np.testing.assert_array_equal(found, sum_tree_find_numpy(a, u))
            # a cumulative-sum scan: the first leaf whose running sum exceeds u
            scan = np.searchsorted(np.cumsum(reference), u, side="right")
            np.testing.assert_array_equal(found, scan)
            assert np.all(reference[found] > 0)


def test_zero_leaf_never_found_at_the_top_boundary():
    tree = np.zeros(2 * sum_tree_leaves(4))
    sum_tree_update(tree, np.array([0, 1]), np.array([0.3, 0.7]))
    top = np.nextafter(tree[1], 0.0)
    assert sum_tree_find(tree, np.array([top, 0.0, 0.3]))[0] == 1
    with pytest.raises(ValueError, match="values"):
        sum_tree_find(tree, np.array([tree[1]]))
    with pytest.raises(ValueError, match="priorities"):
        sum_tree_update(tree, np.array([0]), np.array([-1.0]))
    with pytest.raises(ValueError, match="leaf_indices"):
        sum_tree_update(tree, np.array([4]), np.array([1.0]))


def filled_buffer(priorities, alpha, capacity=None):
    n = len(priorities)
    buf = PrioritizedReplayBuffer(capacity or n, (2,), (1,), alpha=alpha)
    obs = np.arange(2 * n, dtype=float).reshape(n, 2)
    buf.add(obs, np.zeros((n, 1)), np.zeros(n), obs, np.zeros(n, bool))
    buf.update_priorities(np.arange(n), priorities)
    return buf


def chi_square_p(counts, probs):
    return stats.chisquare(counts, counts.sum() * probs).pvalue


PRIORITIES = np.random.default_rng(7).uniform(0.05, 3.0, size=12)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_sampling_frequencies_follow_p_to_the_alpha(alpha):
    buf = filled_buffer(PRIORITIES, alpha)
    rng = np.random.default_rng(11)
    counts = np.zeros(len(PRIORITIES))
    for _ in range(1500):                                      # 18000 draws
        np.add.at(counts, buf.sample(12, rng).indices, 1)
    expected = PRIORITIES ** alpha / np.sum(PRIORITIES ** alpha)
    assert chi_square_p(counts, expected) > LEVEL


def test_a_wrong_exponent_fails_the_chi_square_test():
    """The companion: frequencies drawn with exponent 1 tested against p^0.6 are rejected
    (and the other way round)."""
    rng = np.random.default_rng(11)
    for drawn, claimed in ((1.0, 0.6), (0.6, 1.0), (0.6, 0.0)):
        buf = filled_buffer(PRIORITIES, drawn)
        counts = np.zeros(len(PRIORITIES))
        for _ in range(1500):
            np.add.at(counts, buf.sample(12, rng).indices, 1)
        expected = PRIORITIES ** claimed / np.sum(PRIORITIES ** claimed)
        assert chi_square_p(counts, expected) < LEVEL


@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_importance_weights(beta):
    alpha = 0.7
    buf = filled_buffer(PRIORITIES, alpha, capacity=20)      # R = 12 stored of 20 slots
    batch = buf.sample(12, np.random.default_rng(3), beta=beta)
    P = PRIORITIES ** alpha / np.sum(PRIORITIES ** alpha)
    np.testing.assert_allclose(batch.probabilities, P[batch.indices], rtol=1e-12)
    raw = (12 * P[batch.indices]) ** (-beta)                    # (R P(i))^-beta
    np.testing.assert_allclose(batch.weights, raw / raw.max(), rtol=1e-12)
    assert batch.weights.max() == 1.0
    if beta == 1.0:     # (R P(i))^-1 undoes the sampling: E_P[w f] is the uniform mean
        f = np.arange(12.0)
        np.testing.assert_allclose(np.sum(P * (12 * P) ** -1.0 * f), f.mean(), rtol=1e-12)


def test_new_rows_get_the_largest_priority_and_wrap_replaces_old():
    buf = filled_buffer(np.array([0.5, 4.0, 1.0]), alpha=1.0, capacity=3)
    assert buf.max_priority == 4.0
    obs = np.full((1, 2), 99.0)
    buf.add(obs, np.zeros((1, 1)), np.zeros(1), obs, np.zeros(1, bool), n_steps=3)
    assert buf.priorities[0] == 4.0 and buf.n_steps[0] == 3 and buf.obs[0, 0] == 99.0
    assert internal_nodes_are_sums(buf.tree)
    np.testing.assert_allclose(buf.tree[1], 4.0 + 4.0 + 1.0)


def test_checkpoint_restores_sampling_exactly():
    rng = np.random.default_rng(0)
    buf = PrioritizedReplayBuffer(50, (3,), (2,), alpha=0.6)
    for _ in range(7):                                    # wraps: 70 rows into 50 slots
        k = 10
        obs = rng.normal(size=(k, 3))
        buf.add(obs, rng.normal(size=(k, 2)), rng.normal(size=k), obs, rng.random(k) < 0.1,
                n_steps=rng.integers(1, 5, size=k))
        b = buf.sample(8, rng)
        buf.update_priorities(b.indices, rng.exponential(size=8) + 0.01)
    state = {k: np.array(v) for k, v in buf.state_dict().items()}
    other = PrioritizedReplayBuffer(50, (3,), (2,), alpha=0.6).load_state_dict(state)
    assert np.array_equal(other.tree, buf.tree) and other.max_priority == buf.max_priority
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    for _ in range(3):
        x, y = buf.sample(16, r1, beta=0.5), other.sample(16, r2, beta=0.5)
        for field in x._fields:
            assert np.array_equal(getattr(x, field), getattr(y, field)), field


@pytest.mark.parametrize("call, match", [
    (lambda b: b.update_priorities(np.array([0]), np.array([0.0])), "priorities"),
    (lambda b: b.update_priorities(np.array([5]), np.array([1.0])), "stored rows"),
    (lambda b: b.sample(2, np.random.default_rng(0), beta=1.5), "beta"),
    (lambda b: b.add(np.zeros(2), np.zeros(1), 0.0, np.zeros(2), False, n_steps=0), "n_steps"),
])
def test_validation(call, match):
    buf = filled_buffer(np.ones(3), alpha=0.5, capacity=4)
    with pytest.raises(ValueError, match=match):
        call(buf)
    with pytest.raises(ValueError, match="alpha"):
        PrioritizedReplayBuffer(4, (2,), (1,), alpha=-0.1)
