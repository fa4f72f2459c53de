"""Tests of minipg.buffers.replay.ReplayBuffer.

Ring order, batch adds, uniform sampling (chi-square, and a deliberately
wrong sampler rejected by the same check), truncation versus termination,
the state_dict round trip through np.savez / np.load(allow_pickle=False),
and the errors for bad input.
"""

import io

import numpy as np
import pytest
from scipy import stats

from minipg.buffers.replay import ReplayBatch, ReplayBuffer
from minipg.estimators.ddpg import critic_target


def _add_ids(buf, ids, batch=False):
    """Add transitions whose every field encodes its id k: obs = (k, -k), action k/10, ..."""
    ids = np.asarray(ids, dtype=float)
    obs = np.stack([ids, -ids], axis=-1)
    args = (obs, ids[:, None] / 10.0, ids, obs + 0.5, (ids % 3 == 0))
    if batch:
        buf.add(*args)
    else:
        for row in zip(*args):
            buf.add(*row)


# ------------------------------------------------------------------- ring order

def test_ring_overwrites_oldest_first():
    buf = ReplayBuffer(5, (2,), (1,))
    _add_ids(buf, range(7))
    # slots 0, 1 were overwritten by transitions 5, 6; the next write goes to slot 2
    np.testing.assert_array_equal(buf.obs[:, 0], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buf.rewards, [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buf.terminated, [False, True, False, True, False])
    assert buf.ptr == 2 and len(buf) == 5


@pytest.mark.parametrize("chunks", [[3, 4], [7], [2, 2, 2, 1], [1, 6]])
def test_batch_adds_equal_single_adds(chunks):
    """Adding n transitions at once (n envs) is the same as adding them one by one,
    including a batch larger than the capacity and one that wraps mid-batch."""
    ref = ReplayBuffer(5, (2,), (1,))
    _add_ids(ref, range(7))
    buf = ReplayBuffer(5, (2,), (1,))
    start = 0
    for n in chunks:
        _add_ids(buf, range(start, start + n), batch=True)
        start += n
    for name in ("obs", "actions", "rewards", "next_obs", "terminated"):
        np.testing.assert_array_equal(getattr(buf, name), getattr(ref, name))
    assert (buf.ptr, len(buf)) == (ref.ptr, len(ref))


def test_batch_larger_than_capacity_from_nonzero_pointer():
    buf = ReplayBuffer(4, (2,), (1,))
    _add_ids(buf, [100])                      # ptr = 1
    _add_ids(buf, range(10), batch=True)      # only 6, 7, 8, 9 survive
    assert sorted(buf.rewards.tolist()) == [6, 7, 8, 9]
    # ring order: the next write overwrites the oldest survivor (6)
    assert buf.rewards[buf.ptr] == 6
    assert len(buf) == 4


def test_len_grows_then_saturates():
    buf = ReplayBuffer(3, (), ())
    assert len(buf) == 0
    for k in range(5):
        buf.add(float(k), float(k), 0.0, float(k + 1), False)
        assert len(buf) == min(k + 1, 3)


# --------------------------------------------------------------------- sampling

def test_sampled_rows_keep_their_fields_together():
    buf = ReplayBuffer(16, (2,), (1,))
    _add_ids(buf, range(23))
    batch = buf.sample(16, np.random.default_rng(0))
    assert isinstance(batch, ReplayBatch)
    k = batch.rewards
    np.testing.assert_array_equal(batch.obs, np.stack([k, -k], axis=-1))
    np.testing.assert_array_equal(batch.actions[:, 0], k / 10.0)
    np.testing.assert_array_equal(batch.next_obs, batch.obs + 0.5)
    np.testing.assert_array_equal(batch.terminated, k % 3 == 0)
    np.testing.assert_array_equal(batch.rewards, buf.rewards[batch.indices])
    assert set(k.tolist()) <= set(range(7, 23))       # only the 16 newest survive
    batch.obs[:] = -1.0                                # copies: the buffer is untouched
    assert np.all(buf.obs[:, 0] >= 7)


# Chi-square goodness of fit at level 0.001 (fixed seeds): the test fails for a
# correct sampler with probability 0.001 per seed, and the seeds are fixed.
CHI2_LEVEL = 1e-3


def _uniformity_p_value(indices, n_filled):
    """p-value of the chi-square test that `indices` are uniform on {0, ..., n_filled-1}.

    Any index outside the filled part fails outright (the sampler read an
    empty slot).
    """
    indices = np.asarray(indices)
    assert indices.min() >= 0 and indices.max() < n_filled, "sampled an unfilled slot"
    counts = np.bincount(indices, minlength=n_filled)
    return stats.chisquare(counts).pvalue


def _draw(sampler, buf, rng, rounds=300, batch_size=37):
    return np.concatenate([sampler(buf, batch_size, rng) for _ in range(rounds)])


def _buffer_sampler(buf, batch_size, rng):
    return buf.sample(batch_size, rng).indices


def _off_by_one_sampler(buf, batch_size, rng):
    """Deliberately wrong: never draws the last filled slot (integers' high is exclusive)."""
    return rng.integers(0, len(buf) - 1, size=batch_size)


def _recency_biased_sampler(buf, batch_size, rng):
    """Deliberately wrong: slot i with probability proportional to i + 100 (newest 36% likelier
    than oldest; the check rejected it for all of 100 seeds tried, p < 3e-6)."""
    w = np.arange(len(buf)) + 100.0
    return rng.choice(len(buf), size=batch_size, p=w / w.sum())


@pytest.mark.parametrize("capacity, n_added", [(37, 100), (100, 37)])
def test_sampling_is_uniform_over_the_filled_part(capacity, n_added):
    """A wrapped full buffer and a partly filled one: 11100 draws over 37 slots
    (300 expected per slot); p-value above the 0.001 level."""
    buf = ReplayBuffer(capacity, (2,), (1,))
    _add_ids(buf, range(n_added), batch=True)
    assert len(buf) == 37
    p = _uniformity_p_value(_draw(_buffer_sampler, buf, np.random.default_rng(7)), len(buf))
    assert p > CHI2_LEVEL, p


@pytest.mark.parametrize("wrong", [_off_by_one_sampler, _recency_biased_sampler])
def test_wrong_sampler_is_rejected_by_the_same_check(wrong):
    buf = ReplayBuffer(100, (2,), (1,))
    _add_ids(buf, range(37), batch=True)
    p = _uniformity_p_value(_draw(wrong, buf, np.random.default_rng(7)), len(buf))
    assert p < CHI2_LEVEL, p


def test_reading_unfilled_slots_is_rejected():
    buf = ReplayBuffer(100, (2,), (1,))
    _add_ids(buf, range(37), batch=True)
    rng = np.random.default_rng(0)
    whole_capacity = rng.integers(0, buf.capacity, size=2000)   # wrong: ignores len(buf)
    with pytest.raises(AssertionError, match="unfilled"):
        _uniformity_p_value(whole_capacity, len(buf))


def test_same_seed_same_batch():
    buf = ReplayBuffer(50, (2,), (1,))
    _add_ids(buf, range(80), batch=True)
    a = buf.sample(16, np.random.default_rng(3))
    b = buf.sample(16, np.random.default_rng(3))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ----------------------------------------------------- truncation vs termination

def test_truncation_bootstraps_termination_does_not():
    """A time-limited episode stores terminated=False and the TRUE final
    observation; a terminal step stores terminated=True.  The one-step
    target built from a sampled batch then bootstraps only the former."""
    gamma = 0.9
    final_obs = np.array([7.0, 7.0])     # the state where the time limit cut the episode
    reset_obs = np.array([0.0, 0.0])     # what the env was reset to afterwards (not stored)
    buf = ReplayBuffer(4, (2,), (1,))
    buf.add(np.array([6.0, 6.0]), [0.1], 1.0, final_obs, terminated=False)     # truncated
    buf.add(np.array([3.0, 3.0]), [0.2], 2.0, np.array([4.0, 4.0]), terminated=True)

    def q_next_target(next_obs):         # any value function of the next state
        return next_obs.sum(axis=-1) + 1.0

    rng = np.random.default_rng(1)
    batches = [buf.sample(2, rng) for _ in range(10)]
    batch = ReplayBatch(*(np.concatenate(field) for field in zip(*batches)))
    assert set(batch.indices.tolist()) == {0, 1}
    y = critic_target(batch.rewards, batch.terminated, q_next_target(batch.next_obs), gamma)
    for k, idx in enumerate(batch.indices):
        if idx == 0:     # truncation: r + gamma Q'(final observation)
            np.testing.assert_array_equal(batch.next_obs[k], final_obs)
            assert not batch.terminated[k]
            assert y[k] == 1.0 + gamma * 15.0
            assert y[k] != 1.0 + gamma * q_next_target(reset_obs)
        else:            # termination: r, no bootstrap
            assert batch.terminated[k]
            assert y[k] == 2.0


def test_terminated_accepts_bool_or_01_only():
    buf = ReplayBuffer(4, (1,), (1,))
    buf.add(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 1)),
            np.array([0.0, 1.0]))
    np.testing.assert_array_equal(buf.terminated[:2], [False, True])
    with pytest.raises(ValueError, match="terminated"):
        buf.add(np.zeros(1), np.zeros(1), 0.0, np.zeros(1), 0.5)


# ------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("n_added", [0, 3, 11])
def test_state_dict_round_trip_through_npz(n_added):
    buf = ReplayBuffer(8, (2,), (1,), dtype=np.float32, obs_dtype=np.int16)
    _add_ids(buf, range(n_added), batch=True)
    f = io.BytesIO()
    np.savez(f, **buf.state_dict())
    f.seek(0)
    with np.load(f, allow_pickle=False) as data:
        state = {k: data[k] for k in data.files}
    new = ReplayBuffer(8, (2,), (1,), dtype=np.float32, obs_dtype=np.int16)
    new.load_state_dict(state)
    assert (len(new), new.ptr) == (len(buf), buf.ptr)
    for name in ("obs", "actions", "rewards", "next_obs", "terminated"):
        np.testing.assert_array_equal(getattr(new, name), getattr(buf, name))
        assert getattr(new, name).dtype == getattr(buf, name).dtype
    # both continue identically: same writes, same samples
    _add_ids(buf, [50, 51], batch=True)
    _add_ids(new, [50, 51], batch=True)
    a = buf.sample(2, np.random.default_rng(9))
    b = new.sample(2, np.random.default_rng(9))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_state_dict_holds_plain_arrays_only():
    buf = ReplayBuffer(4, (3,), (2,))
    obs = np.ones((2, 3))
    buf.add(obs, np.ones((2, 2)), np.ones(2), obs, np.array([True, False]))
    for key, value in buf.state_dict().items():
        assert isinstance(value, np.ndarray) and value.dtype != object, key


def test_load_state_dict_rejects_mismatches():
    buf = ReplayBuffer(8, (2,), (1,))
    _add_ids(buf, range(5), batch=True)
    state = buf.state_dict()
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(9, (2,), (1,)).load_state_dict(state)
    with pytest.raises(ValueError, match="shape"):
        ReplayBuffer(8, (3,), (1,)).load_state_dict(state)
    with pytest.raises(ValueError, match="missing keys"):
        ReplayBuffer(8, (2,), (1,)).load_state_dict({k: v for k, v in state.items()
                                                      if k != "rewards"})
    bad = dict(state, ptr=np.array(2))
    with pytest.raises(ValueError, match="inconsistent"):
        ReplayBuffer(8, (2,), (1,)).load_state_dict(bad)
    bad = dict(state, terminated=state["terminated"].astype(float))
    with pytest.raises(ValueError, match="dtype"):
        ReplayBuffer(8, (2,), (1,)).load_state_dict(bad)
    target = ReplayBuffer(8, (2,), (1,))
    with pytest.raises(ValueError):
        target.load_state_dict(dict(state, size=np.array(9)))
    assert len(target) == 0                 # a failed load leaves the buffer as it was


# ----------------------------------------------------------------------- errors

def test_sample_errors():
    buf = ReplayBuffer(10, (2,), (1,))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1, rng)
    _add_ids(buf, range(3), batch=True)
    with pytest.raises(ValueError, match="batch_size = 4"):
        buf.sample(4, rng)
    with pytest.raises(ValueError, match="batch_size = 0"):
        buf.sample(0, rng)
    with pytest.raises(TypeError, match="Generator"):
        buf.sample(2, 0)
    with pytest.raises(TypeError, match="batch_size"):
        buf.sample(2.0, rng)


def test_add_shape_errors():
    buf = ReplayBuffer(10, (2,), (1,))
    with pytest.raises(ValueError, match="obs of shape"):
        buf.add(np.zeros(3), np.zeros(1), 0.0, np.zeros(3), False)
    with pytest.raises(ValueError, match="next_obs"):
        buf.add(np.zeros(2), np.zeros(1), 0.0, np.zeros((1, 2)), False)
    with pytest.raises(ValueError, match="action of shape"):
        buf.add(np.zeros(2), np.zeros(2), 0.0, np.zeros(2), False)
    with pytest.raises(ValueError, match="reward of shape"):
        buf.add(np.zeros((3, 2)), np.zeros((3, 1)), np.zeros(2), np.zeros((3, 2)),
                np.zeros(3, bool))
    with pytest.raises(ValueError, match="terminated of shape"):
        buf.add(np.zeros((3, 2)), np.zeros((3, 1)), np.zeros(3), np.zeros((3, 2)), False)
    with pytest.raises(ValueError, match="finite"):
        buf.add(np.zeros(2), np.zeros(1), np.nan, np.zeros(2), False)
    assert len(buf) == 0                    # nothing half-written


def test_constructor_errors():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, (2,), (1,))
    with pytest.raises(TypeError, match="capacity"):
        ReplayBuffer(2.5, (2,), (1,))
    with pytest.raises(ValueError, match="obs_shape"):
        ReplayBuffer(4, (-1,), (1,))
    with pytest.raises(TypeError, match="dtype"):
        ReplayBuffer(4, (2,), (1,), dtype=np.int64)
    buf = ReplayBuffer(4, 3, 2)                     # ints mean (n,)
    assert buf.obs.shape == (4, 3) and buf.actions.shape == (4, 2)
