"""Tests of the on-policy losses: minipg.estimators.a2c and minipg.estimators.ppo,
plus the GAE properties that tests/test_kernels.py does not already cover.

Levels (CONTRIBUTING.md, "Verification levels"):
* the formula: autodiff gradients against closed forms computed by hand in
  NumPy -- the PPO clipped-surrogate derivative of verification/FORMULAS.md
  "Losses/PPO" (property-based), the vanilla policy gradient at ratio 1,
  through a linear-softmax policy's parameters
  (grad log pi = phi(s,a) - sum_b pi(b|s) phi(s,b)), value clipping;
* the engine: gradcheck of every loss (float64 central differences);
* statistics: the k3 KL estimator against the exact KL of two categoricals
  (fixed seed, stated confidence), shown to reject biased estimators;
* each closed-form check is shown to fail for deliberately wrong J^CLIP.

Tolerances.  Identities with no finite differences (autodiff against a
closed form of the same quantity) use rtol 1e-12: they differ only in the
rounding of a handful of float64 operations on O(1) values.  gradcheck uses
CONTRIBUTING.md's tight tolerances (eps=1e-6, atol=1e-7, rtol=1e-6): the
central-difference error is ~eps^2 |f'''|/6 + macheps |f|/eps ~ 1e-10 here.

Kinks.  J^CLIP is piecewise linear in the ratio r with kinks at r = 1 -+ eps
(where the min switches and clip saturates).  Draws keep r at least
KINK_MARGIN = 1e-3 away from both: that is 1000x the finite-difference step
(a step of 1e-6 in log_prob moves r by r * 1e-6 < 2e-6), and far above the
~1e-15 rounding of exp(log_prob - log_prob_old), so neither the numeric
derivative nor the closed form's indicator straddles a kink.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import log_softmax, softmax

from minipg.autodiff import Tensor, grad, gradcheck, ops, value_and_grad
from minipg.distributions import Categorical
from minipg.estimators.a2c import (a2c_loss, entropy_bonus, policy_gradient_objective,
                                   value_loss)
from minipg.estimators.ppo import (approx_kl, clip_fraction, clip_objective,
                                   clipped_value_loss, normalize_advantages, ppo_objective)
from minipg.kernels import gae, n_step_returns
# Shared rollout generators of the kernel tests (not rewritten here).
from test_kernels import consistent_next_values, rollouts

TIGHT = dict(eps=1e-6, atol=1e-7, rtol=1e-6)   # CONTRIBUTING.md, float64
IDENTITY = dict(rtol=1e-12, atol=1e-14)        # closed form vs autodiff, no finite differences
KINK_MARGIN = 1e-3
CLIP_EPS_VALUES = [0.1, 0.2, 0.3]


# ============================================================ closed forms (NumPy)

def clip_objective_closed_form(ratio, advantages, clip_eps):
    """J^CLIP piecewise (Schulman et al. 2017, Fig. 1): min(r, 1+eps) A for A > 0,
    max(r, 1-eps) A for A < 0."""
    per_sample = np.where(advantages > 0, np.minimum(ratio, 1 + clip_eps),
                          np.maximum(ratio, 1 - clip_eps)) * advantages
    return per_sample.mean()


def clip_gradient_closed_form(ratio, advantages, clip_eps):
    """dJ^CLIP/dlog_prob = (A/N) r where (A > 0 and r < 1+eps) or (A < 0 and r > 1-eps),
    else 0 (verification/FORMULAS.md "Losses/PPO": dJ/dr = A/N there;
    dr/dlog_prob = r)."""
    unclipped = (((advantages > 0) & (ratio < 1 + clip_eps))
                 | ((advantages < 0) & (ratio > 1 - clip_eps)))
    dJ_dratio = np.where(unclipped, advantages, 0.0) / advantages.size
    return dJ_dratio * ratio


def assert_matches_clip_closed_form(objective, log_prob_old, log_ratio, advantages, clip_eps,
                                    check_value=True):
    """The property: `objective` has J^CLIP's value and J^CLIP's closed-form gradient."""
    log_prob = log_prob_old + log_ratio
    value, gradient = value_and_grad(
        lambda lp: objective(lp, log_prob_old, advantages, clip_eps))(log_prob)
    ratio = np.exp(log_prob - log_prob_old)
    if check_value:
        np.testing.assert_allclose(value, clip_objective_closed_form(ratio, advantages, clip_eps),
                                   **IDENTITY)
    np.testing.assert_allclose(gradient, clip_gradient_closed_form(ratio, advantages, clip_eps),
                               **IDENTITY, err_msg="dJ^CLIP/dlog_prob differs from closed form")


@st.composite
def clip_cases(draw):
    """(log_prob_old, log_ratio, advantages, clip_eps), ratios in [0.3, 2] away from kinks;
    ratio exactly 1 is drawn too (inside the range, where the min is a tie)."""
    clip_eps = draw(st.sampled_from(CLIP_EPS_VALUES))
    n = draw(st.integers(1, 12))

    def far_from_kinks(r):
        return abs(r - (1 - clip_eps)) > KINK_MARGIN and abs(r - (1 + clip_eps)) > KINK_MARGIN

    ratio = st.one_of(st.just(1.0), st.floats(0.3, 2.0).filter(far_from_kinks))
    ratios = np.array(draw(st.lists(ratio, min_size=n, max_size=n)))
    advantages = np.array(draw(st.lists(st.floats(-5.0, 5.0), min_size=n, max_size=n)))
    log_prob_old = np.array(draw(st.lists(st.floats(-6.0, 0.0), min_size=n, max_size=n)))
    return log_prob_old, np.log(ratios), advantages, clip_eps


# ============================================================ PPO: J^CLIP, the formula

@given(clip_cases())
def test_clip_objective_gradient_equals_closed_form(case):
    assert_matches_clip_closed_form(clip_objective, *case)


@given(clip_cases())
def test_clip_objective_at_ratio_one_is_policy_gradient(case):
    log_prob_old, _, advantages, clip_eps = case
    # log_prob == log_prob_old: r = exp(0) = 1 exactly, inside the range
    g_clip = grad(lambda lp: clip_objective(lp, log_prob_old, advantages, clip_eps))(log_prob_old)
    g_pg = grad(lambda lp: policy_gradient_objective(lp, advantages))(log_prob_old)
    np.testing.assert_allclose(g_clip, g_pg, **IDENTITY)
    np.testing.assert_allclose(g_pg, advantages / advantages.size, **IDENTITY)


def test_clip_objective_at_the_kinks_follows_the_documented_convention():
    # clip_eps = 0.25: 1.25 and 0.75 are exact in float64 and exp(log(r)) == r for both,
    # so r lands exactly on the kinks; documented gradient there: A r / N (from inside)
    ratio = np.array([1.25, 1.25, 0.75, 0.75])
    assert np.all(np.exp(np.log(ratio)) == ratio)
    advantages = np.array([1.0, -1.0, 1.0, -1.0])
    g = grad(lambda lp: clip_objective(lp, np.zeros(4), advantages, 0.25))(np.log(ratio))
    np.testing.assert_allclose(g, advantages * ratio / 4, **IDENTITY)


# Deliberately wrong J^CLIP: each is a plausible bug.
def _wrong_max_instead_of_min(lp, lpo, A, eps):
    r = ops.exp(lp - lpo)
    return ops.maximum(r * A, ops.clip(r, 1 - eps, 1 + eps) * A).mean()


def _wrong_clip_without_min(lp, lpo, A, eps):
    return (ops.clip(ops.exp(lp - lpo), 1 - eps, 1 + eps) * A).mean()


def _wrong_no_clip(lp, lpo, A, eps):             # J^TRPO's surrogate, unconstrained
    return (ops.exp(lp - lpo) * A).mean()


def _wrong_min_before_advantage(lp, lpo, A, eps):  # min(r, clip(r)) A ignores the sign of A
    r = ops.exp(lp - lpo)
    return (ops.minimum(r, ops.clip(r, 1 - eps, 1 + eps)) * A).mean()


# Every region of the (r, A) plane: both signs of A, r below, inside, at 1, above.
_GRID_RATIOS, _GRID_ADVANTAGES = np.meshgrid([0.5, 0.85, 1.0, 1.1, 1.5], [-1.5, 2.0])
_GRID = (np.full(10, -1.0), np.log(_GRID_RATIOS.ravel()), _GRID_ADVANTAGES.ravel(), 0.2)


def test_clip_closed_form_check_accepts_right_objective_on_grid():
    assert_matches_clip_closed_form(clip_objective, *_GRID)


@pytest.mark.parametrize("wrong", [_wrong_max_instead_of_min, _wrong_clip_without_min,
                                   _wrong_no_clip, _wrong_min_before_advantage])
def test_clip_closed_form_check_rejects_wrong_objective(wrong):
    # the gradient check alone (not the value) must catch each bug
    with pytest.raises(AssertionError, match="closed form"):
        assert_matches_clip_closed_form(wrong, *_GRID, check_value=False)


# ------------------------------------------------------------ through a linear-softmax policy

def _linear_softmax_problem(seed=3, n_states=4, n_actions=3, dim=5, batch=16):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(n_states, n_actions, dim))          # phi(s, a)
    states = rng.integers(n_states, size=batch)
    actions = rng.integers(n_actions, size=batch)
    advantages = rng.normal(size=batch)
    w = rng.normal(size=dim)
    return rng, phi[states], actions, advantages, w           # features of the batch (N, K, d)


def _log_prob(w, features, actions):
    """log pi_w(a|s), pi_w(.|s) = softmax(phi(s, .) w): a Tensor through ops and Categorical."""
    n, k, d = features.shape
    logits = ops.reshape(ops.matmul(features.reshape(n * k, d), w), n, k)
    return Categorical(logits).log_prob(actions)


def _score_closed_form(w, features, actions):
    """grad_w log pi(a|s) = phi(s,a) - sum_b pi(b|s) phi(s,b), per sample (N, d)."""
    pi = softmax(features @ w, axis=-1)
    return features[np.arange(len(actions)), actions] - np.einsum("nk,nkd->nd", pi, features)


def test_linear_softmax_at_ratio_one_gradient_is_policy_gradient():
    _, features, actions, advantages, w = _linear_softmax_problem()
    log_prob_at_w = _log_prob(Tensor(w), features, actions).data      # theta_old = theta
    pg_closed = (advantages[:, None] * _score_closed_form(w, features, actions)).mean(axis=0)
    g_clip = grad(lambda w_: clip_objective(_log_prob(w_, features, actions), log_prob_at_w,
                                            advantages, 0.2))(w)
    g_pg = grad(lambda w_: policy_gradient_objective(_log_prob(w_, features, actions),
                                                     advantages))(w)
    np.testing.assert_allclose(g_pg, pg_closed, **IDENTITY)
    np.testing.assert_allclose(g_clip, pg_closed, **IDENTITY)


def test_linear_softmax_away_from_ratio_one_gradient_is_closed_form():
    rng, features, actions, advantages, w = _linear_softmax_problem(seed=4, batch=40)
    clip_eps = 0.2
    w_old = w + 0.4 * rng.normal(size=w.shape)
    log_prob_old = _log_prob(Tensor(w_old), features, actions).data
    ratio = np.exp(_log_prob(Tensor(w), features, actions).data - log_prob_old)
    # the fixed draw must be a real test: off the kinks, with clipped and unclipped samples
    assert np.min(np.abs(np.abs(ratio - 1) - clip_eps)) > KINK_MARGIN
    active = (((advantages > 0) & (ratio < 1 + clip_eps))
              | ((advantages < 0) & (ratio > 1 - clip_eps)))
    assert 5 <= active.sum() <= len(active) - 5
    # grad_w J^CLIP = (1/N) sum_i 1[active_i] A_i r_i grad_w log pi(a_i|s_i)
    expected = ((active * advantages * ratio)[:, None]
                * _score_closed_form(w, features, actions)).mean(axis=0)
    g = grad(lambda w_: clip_objective(_log_prob(w_, features, actions), log_prob_old,
                                       advantages, clip_eps))(w)
    np.testing.assert_allclose(g, expected, **IDENTITY)


# ============================================================ gradcheck of every loss

def _batch(seed, n=7):
    """Per-sample inputs; log-ratios in +-0.5 kept KINK_MARGIN away from the kinks of
    clip_eps = 0.2 and of value clipping with clip_eps_value = 0.3."""
    rng = np.random.default_rng(seed)
    log_prob_old = rng.uniform(-3, -0.1, size=n)
    log_ratio = rng.uniform(-0.5, 0.5, size=n)
    ratio = np.exp(log_ratio)
    log_ratio[np.abs(np.abs(ratio - 1) - 0.2) < 0.01] += 0.05
    values_old = rng.normal(size=n)
    values = values_old + rng.uniform(-0.6, 0.6, size=n)
    values[np.abs(np.abs(values - values_old) - 0.3) < 0.01] += 0.05
    return dict(log_prob=log_prob_old + log_ratio, log_prob_old=log_prob_old,
                advantages=rng.normal(size=n), values=values, values_old=values_old,
                returns=rng.normal(size=n), entropy=rng.uniform(0.1, 1.5, size=n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck_every_loss(seed):
    b = _batch(seed)
    lpo, A, R, Vo = b["log_prob_old"], b["advantages"], b["returns"], b["values_old"]
    checks = [
        (lambda lp: clip_objective(lp, lpo, A, 0.2), [b["log_prob"]]),
        (lambda lp: policy_gradient_objective(lp, A), [b["log_prob"]]),
        (lambda v: value_loss(v, R), [b["values"]]),
        (lambda h: entropy_bonus(h), [b["entropy"]]),
        (lambda v: clipped_value_loss(v, Vo, R), [b["values"]]),
        (lambda v: clipped_value_loss(v, Vo, R, clip_eps_value=0.3), [b["values"]]),
        (lambda lp, v, h: a2c_loss(lp, v, h, A, R, 0.5, 0.01)[0],
         [b["log_prob"], b["values"], b["entropy"]]),
        (lambda lp, v, h: ppo_objective(lp, lpo, A, v, R, h, 1.0, 0.01, 0.2, values_old=Vo,
                                        clip_eps_value=0.3)[0],
         [b["log_prob"], b["values"], b["entropy"]]),
    ]
    for f, inputs in checks:
        assert gradcheck(f, inputs, **TIGHT)


# ============================================================ value clipping

def test_clipped_value_loss_hand_cases():
    # V_old = 0, eps_v = 0.2, target 1 (values written as arithmetic, not copied output)
    values_old, returns = np.zeros(3), np.ones(3)
    values = np.array([0.1, 0.5, -0.5])
    # inside: (0.1-1)^2; moved past the clip TOWARD the target: the clipped error
    # (0.2-1)^2 is larger and has no gradient; moved past the clip AWAY from it:
    # the unclipped (-0.5-1)^2 is larger
    expected_loss = ((0.1 - 1) ** 2 + (0.2 - 1) ** 2 + (-0.5 - 1) ** 2) / 3
    expected_grad = np.array([2 * (0.1 - 1), 0.0, 2 * (-0.5 - 1)]) / 3
    loss, g = value_and_grad(lambda v: clipped_value_loss(v, values_old, returns, 0.2))(values)
    np.testing.assert_allclose(loss, expected_loss, **IDENTITY)
    np.testing.assert_allclose(g, expected_grad, **IDENTITY)


@given(st.integers(0, 2**32 - 1), st.integers(1, 10), st.sampled_from([0.1, 0.5, 2.0]))
def test_clipped_value_loss_closed_form(seed, n, eps_v):
    rng = np.random.default_rng(seed)
    values_old, returns = rng.normal(size=(2, n))
    values = values_old + rng.uniform(-3 * eps_v, 3 * eps_v, size=n)
    values_clipped = values_old + np.clip(values - values_old, -eps_v, eps_v)
    err, err_clipped = (values - returns) ** 2, (values_clipped - returns) ** 2
    inside = np.abs(values - values_old) <= eps_v
    # away from the kinks |V - V_old| = eps_v and, outside, err = err_clipped
    assume(np.all(np.abs(np.abs(values - values_old) - eps_v) > KINK_MARGIN))
    assume(np.all(inside | (np.abs(err - err_clipped) > KINK_MARGIN)))
    expected_grad = np.where(inside | (err > err_clipped), 2 * (values - returns), 0.0) / n
    loss, g = value_and_grad(lambda v: clipped_value_loss(v, values_old, returns, eps_v))(values)
    np.testing.assert_allclose(loss, np.maximum(err, err_clipped).mean(), **IDENTITY)
    np.testing.assert_allclose(g, expected_grad, **IDENTITY)


def test_clipped_value_loss_without_clipping_is_mean_squared_error():
    b = _batch(5)
    V, Vo, R = b["values"], b["values_old"], b["returns"]
    mse = np.mean((V - R) ** 2)                                     # no factor 1/2
    for loss in (clipped_value_loss(V, None, R), clipped_value_loss(V, Vo, R),
                 clipped_value_loss(V, Vo, R, clip_eps_value=1e6), value_loss(V, R)):
        np.testing.assert_allclose(loss.data, mse, **IDENTITY)


# ============================================================ combined objectives and signs

def test_ppo_objective_is_eq9_with_its_gradients_and_diagnostics():
    b = _batch(7, n=9)
    lp, lpo, A, V, R, H = (b[k] for k in ("log_prob", "log_prob_old", "advantages", "values",
                                          "returns", "entropy"))
    c1, c2, eps, n = 0.7, 0.05, 0.2, 9
    (obj, diag), grads = _objective_and_grads(
        lambda lp_, v_, h_: ppo_objective(lp_, lpo, A, v_, R, h_, c1, c2, eps), lp, V, H)
    ratio = np.exp(lp - lpo)
    j_clip = clip_objective_closed_form(ratio, A, eps)
    mse = np.mean((V - R) ** 2)
    np.testing.assert_allclose(obj, j_clip - c1 * mse + c2 * H.mean(), **IDENTITY)    # eq. 9
    np.testing.assert_allclose(grads[0], clip_gradient_closed_form(ratio, A, eps), **IDENTITY)
    np.testing.assert_allclose(grads[1], -2 * c1 * (V - R) / n, **IDENTITY)
    np.testing.assert_allclose(grads[2], np.full(n, c2 / n), **IDENTITY)   # entropy raises J
    assert set(diag) == {"policy_objective", "value_loss", "entropy", "approx_kl",
                         "clip_fraction"}
    assert all(type(v) is float for v in diag.values())
    np.testing.assert_allclose(diag["policy_objective"], j_clip, **IDENTITY)
    np.testing.assert_allclose(diag["value_loss"], mse, **IDENTITY)
    np.testing.assert_allclose(diag["entropy"], H.mean(), **IDENTITY)
    # plain exp - 1 here: log-ratios are O(0.1), so no cancellation to speak of
    np.testing.assert_allclose(diag["approx_kl"], np.mean(ratio - 1 - np.log(ratio)),
                               rtol=1e-10)
    assert diag["clip_fraction"] == np.mean(np.abs(ratio - 1) > eps)


def test_a2c_loss_is_mnih_loss_with_its_gradients_and_diagnostics():
    b = _batch(8, n=6)
    lp, A, V, R, H = (b[k] for k in ("log_prob", "advantages", "values", "returns", "entropy"))
    cv, cH, n = 0.5, 0.01, 6
    (loss, diag), grads = _objective_and_grads(
        lambda lp_, v_, h_: a2c_loss(lp_, v_, h_, A, R, cv, cH), lp, V, H)
    mse = np.mean((V - R) ** 2)
    np.testing.assert_allclose(loss, -np.mean(A * lp) + cv * mse - cH * H.mean(), **IDENTITY)
    np.testing.assert_allclose(grads[0], -A / n, **IDENTITY)
    np.testing.assert_allclose(grads[1], 2 * cv * (V - R) / n, **IDENTITY)
    np.testing.assert_allclose(grads[2], np.full(n, -cH / n), **IDENTITY)  # entropy lowers L
    assert diag == pytest.approx({"policy_loss": -np.mean(A * lp), "value_loss": mse,
                                  "entropy": H.mean()}, rel=1e-12)


def _objective_and_grads(f, *arrays):
    """f's (output, diagnostics) and the gradients of output wrt each array."""
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    out, diag = f(*leaves)
    out.backward()
    return (float(out.data), diag), [t.grad for t in leaves]


def test_raising_entropy_raises_ppo_objective_and_lowers_a2c_loss():
    # through a real policy: flatter logits have higher entropy
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.4, -2.0]])
    A, R, V = np.array([1.0, -1.0]), np.zeros(2), np.zeros(2)
    acts = np.array([0, 1])

    def both(scale):
        d = Categorical(logits * scale)
        lp = d.log_prob(acts)
        j = ppo_objective(lp, lp.data, A, V, R, d.entropy(), 0.5, 0.1, 0.2)[0].data
        l_ = a2c_loss(lp, V, d.entropy(), A, R, 0.5, 0.1)[0].data
        j0 = ppo_objective(lp, lp.data, A, V, R, d.entropy(), 0.5, 0.0, 0.2)[0].data
        l0 = a2c_loss(lp, V, d.entropy(), A, R, 0.5, 0.0)[0].data
        return j - j0, l_ - l0, d.entropy().data.mean()

    dj_sharp, dl_sharp, h_sharp = both(1.0)
    dj_flat, dl_flat, h_flat = both(0.5)
    assert h_flat > h_sharp
    assert dj_flat > dj_sharp > 0 and dl_flat < dl_sharp < 0
    np.testing.assert_allclose([dj_flat, dl_flat], [0.1 * h_flat, -0.1 * h_flat], **IDENTITY)


def test_float32_inputs_give_float32_losses_close_to_float64():
    b = {k: v.astype(np.float32) for k, v in _batch(9).items()}
    held = dict(log_prob_old=b["log_prob_old"], advantages=b["advantages"].astype(np.float64),
                returns=b["returns"], values_old=b["values_old"])   # float64 constants are cast

    def run(dtype):
        lp, v, h = (Tensor(b[k], dtype=dtype) for k in ("log_prob", "values", "entropy"))
        j = ppo_objective(lp, held["log_prob_old"], held["advantages"], v, held["returns"], h,
                          1.0, 0.01, 0.2, values_old=held["values_old"], clip_eps_value=0.3)[0]
        l_ = a2c_loss(lp, v, h, held["advantages"], held["returns"], 0.5, 0.01)[0]
        return j, l_

    (j32, l32), (j64, l64) = run(np.float32), run(np.float64)
    assert j32.dtype == np.float32 and l32.dtype == np.float32
    # ~10 float32 roundings (2**-24 relative each) on O(1) terms averaged over 7 samples
    np.testing.assert_allclose([j32.data, l32.data], [j64.data, l64.data], rtol=1e-5, atol=1e-5)


# ============================================================ k3 KL estimator

@given(hnp.arrays(np.float64, st.integers(1, 20),
                  elements=st.one_of(st.floats(-20, 20), st.floats(-1e-9, 1e-9))))
def test_approx_kl_is_non_negative_and_zero_when_equal(log_ratio):
    log_prob_old = np.full(log_ratio.shape, -1.0)
    kl = approx_kl(log_prob_old + log_ratio, log_prob_old)
    assert kl >= 0.0 and np.isfinite(kl)
    assert approx_kl(log_prob_old, log_prob_old) == 0.0


def _two_categoricals():
    old_logits = np.array([0.0, 0.5, -0.5, 1.0, -1.0])
    new_logits = old_logits + 2.0 * np.array([1.0, -1.0, 0.5, -0.5, 0.0])
    return log_softmax(old_logits), log_softmax(new_logits)


def test_approx_kl_expectation_is_exact_kl_old_new():
    lp_old, lp_new = _two_categoricals()
    p_old = np.exp(lp_old)
    kl_exact = np.sum(p_old * (lp_old - lp_new))                       # KL(old || new)
    per_action = np.array([approx_kl(lp_new[a:a + 1], lp_old[a:a + 1]) for a in range(5)])
    np.testing.assert_allclose(p_old @ per_action, kl_exact, rtol=1e-12)
    # the same KL from the distribution class
    kl_class = Categorical(lp_old).kl(Categorical(lp_new)).data
    np.testing.assert_allclose(kl_class, kl_exact, rtol=1e-12)


# Sampled check: M actions a ~ pi_old, estimate = estimator(log pi_new(a), log pi_old(a)).
# Per-sample estimates are bounded (5 actions), so the CLT applies; their
# standard deviation sigma is computed EXACTLY from the distribution (the
# estimator applied to each action alone), not estimated.  Accept when
# |estimate - KL(old || new)| <= Z sigma / sqrt(M); Z = 4 is two-sided
# 99.994% confidence.  Fixed seed.
M_SAMPLES, Z = 20_000, 4.0


def sampled_kl_check(estimator, seed=12345):
    """(error, bound) of `estimator` (a batch mean) against the exact KL(old || new)."""
    lp_old, lp_new = _two_categoricals()
    p_old = np.exp(lp_old)
    kl_exact = np.sum(p_old * (lp_old - lp_new))
    per_action = np.array([estimator(lp_new[a:a + 1], lp_old[a:a + 1]) for a in range(5)])
    sigma = np.sqrt(p_old @ (per_action - p_old @ per_action) ** 2)
    actions = np.random.default_rng(seed).choice(5, size=M_SAMPLES, p=p_old)
    estimate = estimator(lp_new[actions], lp_old[actions])
    return abs(estimate - kl_exact), Z * sigma / np.sqrt(M_SAMPLES)


def test_approx_kl_sampled_mean_within_ci_of_kl_old_new():
    error, bound = sampled_kl_check(approx_kl)
    assert error <= bound, f"error {error:.5f} > bound {bound:.5f}"


def _k2(log_prob, log_prob_old):                 # PPO2's approxkl: 0.5 E[(log r)^2], biased
    return float(np.mean(0.5 * (log_prob - log_prob_old) ** 2))


def _k3_reversed(log_prob, log_prob_old):        # ratio upside down: targets KL(new || old)
    return approx_kl(log_prob_old, log_prob)


@pytest.mark.parametrize("wrong", [_k2, _k3_reversed])
def test_sampled_kl_check_rejects_biased_estimators(wrong):
    error, bound = sampled_kl_check(wrong)
    assert error > bound, f"{wrong.__name__}: error {error:.5f} within bound {bound:.5f}"


# ============================================================ clip fraction

def test_clip_fraction_counts_ratios_outside_the_range():
    # 1e-4 from the boundaries of [0.8, 1.2]: far above the ~1e-16 rounding of exp(log r)
    ratios = np.array([0.5, 0.7999, 0.8001, 1.0, 1.1999, 1.2001, 2.0, 1.05])
    log_prob_old = np.full(8, -0.7)
    # outside [0.8, 1.2]: 0.5, 0.7999, 1.2001, 2.0 -> 4 of 8
    assert clip_fraction(log_prob_old + np.log(ratios), log_prob_old, 0.2) == 4 / 8
    # outside [0.4, 1.6]: 2.0 -> 1 of 8
    assert clip_fraction(log_prob_old + np.log(ratios), log_prob_old, 0.6) == 1 / 8
    assert clip_fraction(log_prob_old, log_prob_old, 0.1) == 0.0
    # Tensors are read without gradient
    assert clip_fraction(Tensor(log_prob_old + np.log(ratios)), log_prob_old, 0.2) == 4 / 8


# ============================================================ advantage normalisation

@pytest.mark.parametrize("advantages", [np.array([3.7]), np.array([-1e6]), np.full(9, 0.1),
                                        np.full((2, 3), -2.5), np.array([0.0, 0.0])])
@pytest.mark.parametrize("eps", [1e-8, 0.0])
def test_normalize_advantages_degenerate_minibatch_gives_zeros(advantages, eps):
    out = normalize_advantages(advantages, eps=eps)
    assert out.shape == advantages.shape and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, 0.0)     # centring only: mathematically zero


@given(hnp.arrays(np.float64, st.integers(2, 50), elements=st.floats(-1e3, 1e3)),
       st.sampled_from([1e-8, 0.0]))
def test_normalize_advantages_zero_mean_unit_std(advantages, eps):
    std = advantages.std()
    assume(std > 1e-3 * max(1.0, np.abs(advantages).max()))
    out = normalize_advantages(advantages, eps=eps)
    # mean and std of the output are exactly 0 and std / (std + eps) up to rounding
    np.testing.assert_allclose(out.mean(), 0.0, atol=1e-10)
    np.testing.assert_allclose(out.std(), std / (std + eps), rtol=1e-10)
    np.testing.assert_allclose(out * (std + eps) + advantages.mean(), advantages,
                               rtol=1e-10, atol=1e-9)


def test_normalize_advantages_dtype():
    a32 = np.array([1.0, 2.0, 4.0], dtype=np.float32)
    assert normalize_advantages(a32).dtype == np.float32
    assert normalize_advantages(np.array([1, 2, 4])).dtype == np.float64
    assert normalize_advantages(np.ones(3, dtype=np.float32)).dtype == np.float32


# ============================================================ bad input

_T = Tensor(np.zeros(3))
_Z = np.zeros(3)


@pytest.mark.parametrize("call, error, match", [
    (lambda: clip_objective(_T, _Z, Tensor(_Z), 0.2), TypeError, "advantages.*plain array"),
    (lambda: clip_objective(_T, Tensor(_Z), _Z, 0.2), TypeError, "log_prob_old.*plain array"),
    (lambda: clip_objective(_T, _Z, np.zeros((3, 1)), 0.2), ValueError, r"shape \(3, 1\)"),
    (lambda: clip_objective(_T, _Z, _Z, 1.5), ValueError, r"clip_eps must be a float in \(0, 1\)"),
    (lambda: clip_objective(_T, _Z, _Z, True), TypeError, "clip_eps"),
    (lambda: clip_objective(_T, _Z, np.array([0, np.nan, 0]), 0.2), ValueError, "non-finite"),
    (lambda: clip_objective(Tensor(np.zeros(0)), np.zeros(0), np.zeros(0), 0.2), ValueError,
     "empty"),
    (lambda: policy_gradient_objective(np.array(["a", "b", "c"]), _Z), TypeError, "floating"),
    (lambda: value_loss(_T, Tensor(_Z)), TypeError, "returns.*plain array"),
    (lambda: clipped_value_loss(_T, None, _Z, 0.2), ValueError, "needs values_old"),
    (lambda: clipped_value_loss(_T, _Z, _Z, -0.2), ValueError, "clip_eps_value"),
    (lambda: a2c_loss(_T, _T, Tensor(np.zeros(2)), _Z, _Z, 0.5, 0.01), ValueError,
     "entropy has shape"),
    (lambda: a2c_loss(_T, _T, _T, _Z, _Z, -0.5, 0.01), ValueError, "value_coef"),
    (lambda: ppo_objective(_T, _Z, _Z, _T, _Z, _T, 1.0, float("nan"), 0.2), ValueError, "c2"),
    (lambda: normalize_advantages(np.zeros(0)), ValueError, "empty"),
    (lambda: normalize_advantages(_T), TypeError, "plain array"),
    (lambda: normalize_advantages(np.array([1.0, np.inf])), ValueError, "non-finite"),
    (lambda: normalize_advantages(_Z, eps=-1.0), ValueError, "eps"),
    (lambda: approx_kl(_Z, np.zeros(2)), ValueError, "same shape"),
])
def test_bad_input_is_refused_with_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ============================================================ GAE: what test_kernels.py lacks
# Already in tests/test_kernels.py: twins, double sum of TD residuals (1-D and
# 2-D, episode ends anywhere), lambda=1 via the discounted-returns kernel,
# lambda=0, truncation vs termination on one environment.  Added here: a hand
# example with several environments and mid-rollout ends whose expected
# values are written as arithmetic, and the forward view (lambda-return as a
# mixture of n-step returns).

def test_gae_two_environments_with_mid_rollout_ends_by_hand():
    gamma = 0.9
    # env 0 terminates at t=1 (next_values[1] = 99 must be ignored), then runs to the
    # rollout end (bootstrap from next_values[3] = 3); env 1 is truncated at t=1
    # (bootstrap from next_values[1] = 5, the true next state's value).
    rewards = np.array([[1.0, 0.5], [2.0, 1.0], [3.0, 0.0], [4.0, 2.0]])
    values = np.array([[0.5, 1.0], [1.0, 2.0], [1.5, 0.5], [2.0, 1.0]])
    next_values = np.array([[1.0, 2.0], [99.0, 5.0], [2.0, 1.0], [3.0, 0.25]])
    terminated = np.array([[False, False], [True, False], [False, False], [False, False]])
    truncated = np.array([[False, False], [False, True], [False, False], [False, False]])
    delta = np.array([[1 + 0.9 * 1.0 - 0.5, 0.5 + 0.9 * 2.0 - 1.0],
                      [2 - 1.0, 1 + 0.9 * 5.0 - 2.0],
                      [3 + 0.9 * 2.0 - 1.5, 0 + 0.9 * 1.0 - 0.5],
                      [4 + 0.9 * 3.0 - 2.0, 2 + 0.9 * 0.25 - 1.0]])
    for lam in (0.0, 0.5, 1.0):
        gl = gamma * lam
        expected = np.array([[delta[0, 0] + gl * delta[1, 0], delta[0, 1] + gl * delta[1, 1]],
                             [delta[1, 0], delta[1, 1]],
                             [delta[2, 0] + gl * delta[3, 0], delta[2, 1] + gl * delta[3, 1]],
                             [delta[3, 0], delta[3, 1]]])
        got = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
        # each column alone gives the same (environments do not mix)
        for j in range(2):
            col = gae(rewards[:, j], values[:, j], next_values[:, j], terminated[:, j],
                      truncated[:, j], gamma, lam)
            np.testing.assert_allclose(col, expected[:, j], rtol=1e-12, atol=1e-14)
    # lambda = 1 is the Monte-Carlo advantage, computed from the rewards directly:
    # env 0, t=0: 1 + 0.9 * 2 (terminal) - V; env 1, t=0: 0.5 + 0.9 * (1 + 0.9 * 5) - V
    mc = gae(rewards, values, next_values, terminated, truncated, gamma, 1.0)
    np.testing.assert_allclose(mc[0], [1 + 0.9 * 2 - 0.5, 0.5 + 0.9 * (1 + 0.9 * 5) - 1.0],
                               rtol=1e-12)


@settings(deadline=None)
@given(rollouts(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_gae_plus_values_is_lambda_return_of_n_step_returns(ro, gamma, lam):
    """Forward view (Schulman et al. 2016, eq. 16 / Sutton & Barto 12.1):
    A_t + V(s_t) = G^lambda_t = (1 - lam) sum_{n=1}^{T-1} lam^{n-1} G^{(n)}_t + lam^{T-1} G^{(T)}_t,
    where a window that reaches an episode end or the rollout end stops there
    (G^{(n)} = G^{(L)} for n >= L), which the n-step kernel does."""
    r, v, nv, te, tr = ro
    nv = consistent_next_values(v, nv, te, tr)        # V(s'_t) = V(s_{t+1}) inside episodes
    T = r.shape[0]
    lam_return = lam ** (T - 1) * n_step_returns(r, nv, te, tr, gamma, T)
    for n in range(1, T):
        lam_return = lam_return + (1 - lam) * lam ** (n - 1) * n_step_returns(r, nv, te, tr,
                                                                              gamma, n)
    # sums of <= 40 weighted O(10) returns, values O(1): rounding far below 1e-10
    np.testing.assert_allclose(gae(r, v, nv, te, tr, gamma, lam) + v, lam_return,
                               rtol=1e-10, atol=1e-10)


# ============================================ conventions of other implementations
# (the options `minipg reference --profile sb3|cleanrl` uses; defaults unchanged)

def test_normalize_advantages_sample_std_option_closed_form():
    """ddof=1: (A - mean) / (std_{n-1} + eps), torch's Tensor.std(); ddof=0 is numpy's std()."""
    A = np.random.default_rng(11).normal(size=9) * 3.0 + 1.0
    for ddof in (0, 1):
        expected = (A - A.mean()) / (np.std(A, ddof=ddof) + 1e-8)
        np.testing.assert_allclose(normalize_advantages(A, ddof=ddof), expected, **IDENTITY)
    np.testing.assert_array_equal(normalize_advantages(A), normalize_advantages(A, ddof=0))
    sample, population = normalize_advantages(A, ddof=1), normalize_advantages(A)
    np.testing.assert_allclose(sample / population, np.sqrt(8 / 9), rtol=1e-7)   # eps shifts it
    np.testing.assert_array_equal(normalize_advantages(np.array([2.5]), ddof=1), [0.0])
    with pytest.raises(ValueError, match="ddof must be 0"):
        normalize_advantages(A, ddof=2)


def _value_clip_batch(seed=12, n=10, eps_v=0.2):
    """V, V_old, R with |V - V_old| at least 0.04 from eps_v (half inside, half outside)."""
    rng = np.random.default_rng(seed)
    V = rng.normal(size=n)
    mag = np.where(np.arange(n) % 2 == 0, rng.uniform(0, eps_v - 0.04, n),
                   rng.uniform(eps_v + 0.04, 3 * eps_v, n))
    V_old = V - mag * rng.choice([-1.0, 1.0], n)
    R = V + rng.normal(size=n)
    return V, V_old, R


def test_clipped_value_loss_clipped_alone_option_closed_form():
    """clip_mode='clipped': L = mean (V_clip - R)^2 (stable-baselines3), dL/dV_i =
    2 (V_clip_i - R_i) / n inside the clip range and 0 outside; half=True halves both."""
    eps_v = 0.2
    V, V_old, R = _value_clip_batch(eps_v=eps_v)
    V_clip = V_old + np.clip(V - V_old, -eps_v, eps_v)
    inside = np.abs(V - V_old) < eps_v
    for half, k in ((False, 1.0), (True, 0.5)):
        v = Tensor(V.copy(), requires_grad=True)
        loss = clipped_value_loss(v, V_old, R, eps_v, clip_mode="clipped", half=half)
        loss.backward()
        np.testing.assert_allclose(loss.data, k * np.mean((V_clip - R) ** 2), **IDENTITY)
        np.testing.assert_allclose(v.grad, k * np.where(inside, 2 * (V_clip - R) / len(V), 0.0),
                                   **IDENTITY)
    assert gradcheck(lambda v: clipped_value_loss(v, V_old, R, eps_v, clip_mode="clipped"),
                     [V], **TIGHT)
    # the two modes differ on this batch (a sample where the unclipped error is the larger)
    assert np.any((V - R) ** 2 > (V_clip - R) ** 2)
    assert not np.isclose(clipped_value_loss(Tensor(V), V_old, R, eps_v).data,
                          clipped_value_loss(Tensor(V), V_old, R, eps_v, clip_mode="clipped").data)
    with pytest.raises(ValueError, match="clip_mode must be"):
        clipped_value_loss(Tensor(V), V_old, R, eps_v, clip_mode="min")


def test_half_value_loss_and_ppo_objective_pass_the_value_conventions():
    """half=True is exactly 0.5 x the loss and its gradient (CleanRL's 0.5 * v_loss);
    ppo_objective passes value_clip_mode and value_half to the value term."""
    V, V_old, R = _value_clip_batch(seed=13)
    for mode in ("max", "clipped"):
        full, g_full = value_and_grad(
            lambda v: clipped_value_loss(v, V_old, R, 0.2, clip_mode=mode))(V)
        half, g_half = value_and_grad(
            lambda v: clipped_value_loss(v, V_old, R, 0.2, clip_mode=mode, half=True))(V)
        assert float(half) == 0.5 * float(full)
        np.testing.assert_allclose(g_half, 0.5 * np.asarray(g_full), **IDENTITY)
    n = len(V)
    rng = np.random.default_rng(14)
    lp, lpo, A, H = rng.normal(size=n) * 0.1, rng.normal(size=n) * 0.1, rng.normal(size=n), \
        rng.uniform(0.5, 1.0, n)
    c1 = 0.5
    base, _ = ppo_objective(Tensor(lp), lpo, A, Tensor(V), R, Tensor(H), c1, 0.01, 0.2,
                            values_old=V_old, clip_eps_value=0.2)
    other, diag = ppo_objective(Tensor(lp), lpo, A, Tensor(V), R, Tensor(H), c1, 0.01, 0.2,
                                values_old=V_old, clip_eps_value=0.2,
                                value_clip_mode="clipped", value_half=True)
    l_max = clipped_value_loss(Tensor(V), V_old, R, 0.2).data
    l_cl = clipped_value_loss(Tensor(V), V_old, R, 0.2, clip_mode="clipped", half=True).data
    np.testing.assert_allclose(diag["value_loss"], l_cl, **IDENTITY)
    np.testing.assert_allclose(other.data - base.data, c1 * (l_max - l_cl), **IDENTITY)
