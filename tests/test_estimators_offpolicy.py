"""Tests of the off-policy actor-critic estimators: DDPG, TD3, SAC (v1 and auto-temperature).

Levels (CONTRIBUTING.md, "Verification levels"):

1. gradcheck of every loss/objective (float64, central differences);
2. the autodiff gradient of each loss equals its closed form for a LINEAR
   model, computed by hand in NumPy (relative tolerance 1e-12: both sides are
   exact formulas, only rounding separates them);
3. statistical checks with fixed seeds and stated levels: the TanhGaussian
   log-prob is the density of its samples (quadrature and chi-square), the
   reparameterised and score-function gradients of E[f(a)] and the SAC
   policy-loss gradient match the exact gradient from Gauss-Hermite
   quadrature (z-bounds);
plus hypothesis properties of the TD3 target.  Each check is also run on a
deliberately wrong estimator, which it must reject.
"""

import math

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, stats

from minipg.autodiff import Tensor, gradcheck, ops
from minipg.distributions import TanhGaussian
from minipg.estimators import ddpg, sac, td3

# CONTRIBUTING.md: eps = 1e-6 in float64 gives a central-difference error of
# about eps^2 |f'''| / 6 + macheps |f| / eps ~ 1e-12 + 1e-10 for the O(1)-scaled
# values used here, so atol = 1e-7, rtol = 1e-6 leaves a margin of ~1000x.
GRADCHECK = dict(eps=1e-6, atol=1e-7, rtol=1e-6)
# autodiff versus a hand-written closed form: no finite differences, rounding only
EXACT = dict(rtol=1e-12, atol=1e-14)

N, OBS, ACT = 7, 3, 2


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        s=rng.normal(size=(N, OBS)), a=rng.uniform(-0.9, 0.9, size=(N, ACT)),
        r=rng.normal(size=N), s_next=rng.normal(size=(N, OBS)),
        d=np.array([False, True, False, False, True, False, False]),
        eps=rng.normal(size=(N, ACT)), rng=rng)


def _leaf(x):
    return Tensor(np.array(x, dtype=np.float64), requires_grad=True)


def _linear_q(s, a, w):
    """Q_w(s, a) = w^T [s; a] for a batch: s (N, OBS) array, a (N, ACT) array or Tensor."""
    x = ops.concatenate([Tensor(s), a if isinstance(a, Tensor) else Tensor(a)], axis=1)
    return ops.matmul(x, w)


# =============================================================== 1. gradcheck

def test_gradcheck_ddpg():
    g = _data()
    y = ddpg.critic_target(g["r"], g["d"], g["rng"].normal(size=N), 0.99)
    q = g["rng"].normal(size=N)
    assert gradcheck(lambda q: ddpg.critic_loss(q, y), [q], **GRADCHECK)
    assert gradcheck(ddpg.actor_objective, [q], **GRADCHECK)
    # through a linear actor and a critic quadratic in the action
    w = g["rng"].normal(size=OBS + ACT)

    def actor(theta):
        mu = ops.matmul(g["s"], theta)
        return ddpg.actor_objective(_linear_q(g["s"], mu, w) - 0.5 * ops.sum(mu * mu, axis=1))
    assert gradcheck(actor, [g["rng"].normal(size=(OBS, ACT))], **GRADCHECK)


def test_gradcheck_td3():
    g = _data()
    y = td3.clipped_double_q_target(g["r"], g["d"], g["rng"].normal(size=N),
                                    g["rng"].normal(size=N), 0.99)
    q1, q2 = g["rng"].normal(size=N), g["rng"].normal(size=N)
    assert gradcheck(lambda q1, q2: td3.twin_critic_loss(q1, q2, y), [q1, q2], **GRADCHECK)
    assert gradcheck(td3.actor_objective, [q1], **GRADCHECK)


def test_gradcheck_sac():
    g = _data()
    rng = g["rng"]
    v_t = sac.v_target(rng.normal(size=N), rng.normal(size=N), 0.2)
    q_hat = sac.soft_q_target(g["r"], g["d"], rng.normal(size=N), 0.99)
    assert gradcheck(lambda v: sac.value_loss(v, v_t), [rng.normal(size=N)], **GRADCHECK)
    assert gradcheck(lambda q: sac.soft_q_loss(q, q_hat), [rng.normal(size=N)], **GRADCHECK)
    assert gradcheck(lambda lp, q: sac.policy_loss(lp, q, 0.3),
                     [rng.normal(size=N), rng.normal(size=N)], **GRADCHECK)
    log_prob = rng.normal(size=N)
    assert gradcheck(lambda la: sac.temperature_loss(la, log_prob, -2.0), [np.array([0.4])],
                     **GRADCHECK)
    # end to end: linear mean, state-independent log-std, box actions, linear Q
    low, high = np.array([-2.0, 0.0]), np.array([1.0, 3.0])
    w = rng.normal(size=OBS + ACT)

    def policy(W, log_std):
        action, logp = TanhGaussian(ops.matmul(g["s"], W), log_std, low, high).rsample(
            eps=g["eps"])
        return sac.policy_loss(logp, _linear_q(g["s"], action, w), 0.3)
    assert gradcheck(policy, [0.3 * rng.normal(size=(OBS, ACT)), np.array([-0.5, 0.2])],
                     **GRADCHECK)


# ============================================= 2. closed forms for a linear model

def test_ddpg_critic_loss_closed_form():
    g = _data(1)
    w = g["rng"].normal(size=OBS + ACT)
    y = ddpg.critic_target(g["r"], g["d"], g["rng"].normal(size=N), 0.9)
    wt = _leaf(w)
    ddpg.critic_loss(_linear_q(g["s"], g["a"], wt), y).backward()
    x = np.concatenate([g["s"], g["a"]], axis=1)
    expected = -2.0 / N * x.T @ (y - x @ w)              # -(2/N) sum (y - Q) grad Q
    np.testing.assert_allclose(wt.grad, expected, **EXACT)


@pytest.mark.parametrize("kappa", [0.0, 0.7])
def test_ddpg_actor_gradient_is_the_dpg(kappa):
    """J = mean Q(s, mu(s)), mu(s) = Theta^T s, Q = w^T [s; a] - kappa/2 |a|^2:
    grad_Theta J = (1/N) sum s (grad_a Q)^T = (1/N) sum s (w_a - kappa mu)^T.
    kappa = 0 is the purely linear critic."""
    g = _data(2)
    w = g["rng"].normal(size=OBS + ACT)
    theta = g["rng"].normal(size=(OBS, ACT))
    th = _leaf(theta)
    mu = ops.matmul(g["s"], th)
    q = _linear_q(g["s"], mu, w) - 0.5 * kappa * ops.sum(mu * mu, axis=1)
    ddpg.actor_objective(q).backward()
    grad_a_q = w[OBS:] - kappa * (g["s"] @ theta)        # (N, ACT)
    np.testing.assert_allclose(th.grad, g["s"].T @ grad_a_q / N, **EXACT)


def test_td3_twin_critic_and_actor_closed_forms():
    g = _data(3)
    w1, w2 = g["rng"].normal(size=OBS + ACT), g["rng"].normal(size=OBS + ACT)
    y = td3.clipped_double_q_target(g["r"], g["d"], g["rng"].normal(size=N),
                                    g["rng"].normal(size=N), 0.9)
    w1t, w2t = _leaf(w1), _leaf(w2)
    td3.twin_critic_loss(_linear_q(g["s"], g["a"], w1t), _linear_q(g["s"], g["a"], w2t),
                         y).backward()
    x = np.concatenate([g["s"], g["a"]], axis=1)
    np.testing.assert_allclose(w1t.grad, 2.0 / N * x.T @ (x @ w1 - y), **EXACT)
    np.testing.assert_allclose(w2t.grad, 2.0 / N * x.T @ (x @ w2 - y), **EXACT)
    # actor: the first critic only
    theta = g["rng"].normal(size=(OBS, ACT))
    th = _leaf(theta)
    td3.actor_objective(_linear_q(g["s"], ops.matmul(g["s"], th), w1)).backward()
    np.testing.assert_allclose(th.grad, np.outer(g["s"].mean(axis=0), w1[OBS:]), **EXACT)


def test_sac_value_and_soft_q_closed_forms():
    """eq. 6: grad J_V = mean grad V (V - Q + alpha log pi);
    eq. 9: grad J_Q = mean grad Q (Q - r - gamma (1 - d) V_bar(s'))."""
    g = _data(4)
    rng, alpha, gamma = g["rng"], 0.3, 0.95
    psi, psi_bar, w = rng.normal(size=OBS), rng.normal(size=OBS), rng.normal(size=OBS + ACT)
    q_new, logp_new = rng.normal(size=N), rng.normal(size=N)
    psit = _leaf(psi)
    sac.value_loss(ops.matmul(g["s"], psit), sac.v_target(q_new, logp_new, alpha)).backward()
    v = g["s"] @ psi
    np.testing.assert_allclose(psit.grad, g["s"].T @ (v - q_new + alpha * logp_new) / N,
                               **EXACT)

    q_hat = sac.soft_q_target(g["r"], g["d"], g["s_next"] @ psi_bar, gamma)
    wt = _leaf(w)
    sac.soft_q_loss(_linear_q(g["s"], g["a"], wt), q_hat).backward()
    x = np.concatenate([g["s"], g["a"]], axis=1)
    v_bar_next = np.where(g["d"], 0.0, g["s_next"] @ psi_bar)
    np.testing.assert_allclose(wt.grad, x.T @ (x @ w - g["r"] - gamma * v_bar_next) / N,
                               **EXACT)


LOW, HIGH = np.array([-2.0, 0.0]), np.array([1.0, 3.0])
SCALE = (HIGH - LOW) / 2


def _policy_grad_closed_form(s, W, log_std, eps, w_a, alpha):
    """Closed-form gradient of J_pi = mean[alpha log pi(a) - w^T [s; a]] for
    u = s W + sigma eps, a = low + (tanh u + 1) scale (eq. 13, by hand):
    d log pi / du = 2 tanh u (the -log(1 - tanh^2 u) term), d log pi / d log sigma
    = -1 directly, da/du = scale (1 - tanh^2 u)."""
    sigma = np.exp(log_std)
    t = np.tanh(s @ W + sigma * eps)
    dL_du = alpha * 2.0 * t - w_a * SCALE * (1.0 - t * t)           # (N, ACT)
    grad_W = s.T @ dL_du / len(s)
    grad_log_std = np.mean(-alpha + dL_du * sigma * eps, axis=0)
    return grad_W, grad_log_std


def _check_policy_gradient(log_prob_fn, seed=5, alpha=0.4):
    """Autodiff gradient of sac.policy_loss, with the log-prob from `log_prob_fn`,
    against the closed form; AssertionError when they differ."""
    g = _data(seed)
    W, log_std = 0.5 * g["rng"].normal(size=(OBS, ACT)), np.array([-0.3, 0.4])
    w = g["rng"].normal(size=OBS + ACT)
    Wt, lst = _leaf(W), _leaf(log_std)
    dist = TanhGaussian(ops.matmul(g["s"], Wt), lst, LOW, HIGH)
    action, log_prob = log_prob_fn(dist, g["eps"])
    sac.policy_loss(log_prob, _linear_q(g["s"], action, w), alpha).backward()
    gW, gls = _policy_grad_closed_form(g["s"], W, log_std, g["eps"], w[OBS:], alpha)
    np.testing.assert_allclose(Wt.grad, gW, **EXACT)
    np.testing.assert_allclose(lst.grad, gls, **EXACT)


def _rsample(dist, eps):
    return dist.rsample(eps=eps)


def _rsample_without_tanh_correction(dist, eps):
    """Deliberately wrong: the Gaussian log-density of u, no change-of-variables term."""
    action, _ = dist.rsample(eps=eps)
    u = dist.mean + dist.std * eps
    return action, dist.base.log_prob(u)


def test_sac_policy_loss_closed_form():
    _check_policy_gradient(_rsample)


def test_sac_policy_closed_form_rejects_missing_tanh_correction():
    with pytest.raises(AssertionError):
        _check_policy_gradient(_rsample_without_tanh_correction)


def test_temperature_loss_value_and_gradient_closed_form():
    """J = alpha (H_hat - H_bar), dJ/dlog_alpha = alpha (H_hat - H_bar),
    H_hat = -mean log pi (2018b eq. 18 with alpha = exp(log_alpha))."""
    rng = np.random.default_rng(6)
    log_prob, target, log_alpha = rng.normal(size=50), -2.0, np.array([-0.7])
    la = _leaf(log_alpha)
    loss = sac.temperature_loss(la, log_prob, target)
    loss.backward()
    alpha, h_hat = math.exp(log_alpha[0]), -log_prob.mean()
    np.testing.assert_allclose(loss.data, alpha * (h_hat - target), **EXACT)
    np.testing.assert_allclose(la.grad, [alpha * (h_hat - target)], **EXACT)
    # chain rule: dJ/dalpha = (dJ/dlog_alpha) / alpha = H_hat - H_bar
    # (verification/FORMULAS.md "Losses/SAC")
    np.testing.assert_allclose(la.grad / alpha, [h_hat - target], **EXACT)


# ----------------------------------------------- temperature: sign of the gradient

def _wrong_sign_temperature_loss(log_alpha, log_prob, target_entropy):
    """Deliberately wrong: the sign flipped, J = +alpha mean(log pi + H_bar)."""
    return -sac.temperature_loss(log_alpha, log_prob, target_entropy)


def _check_temperature_direction(loss_fn):
    """One SGD step on the loss must raise alpha when the policy's entropy is
    below the target and lower it when above (the constraint H >= H_bar).
    The log-probs are samples of a 1-D TanhGaussian: sigma = 0.05 has entropy
    about log(0.05) + 1.42 + E log(1 - a^2) ~ -1.56 < -1 = H_bar (default for
    1-D); sigma = 1 has entropy ~ 0.68 > -1 (measured on these 4000 samples)."""
    rng = np.random.default_rng(8)
    target = sac.default_target_entropy(1)
    for log_std, entropy_is_low in ((math.log(0.05), True), (0.0, False)):
        dist = TanhGaussian(np.zeros((4000, 1)), np.full((4000, 1), log_std))
        _, log_prob = dist.rsample(rng=rng)
        assert (-log_prob.data.mean() < target) == entropy_is_low      # the premise
        la = _leaf([0.0])
        loss_fn(la, log_prob.data, target).backward()
        new_alpha = math.exp(0.0 - 0.1 * la.grad[0])                   # one SGD step
        assert (new_alpha > 1.0) == entropy_is_low, (log_std, la.grad)


def test_temperature_gradient_raises_alpha_when_entropy_is_low():
    _check_temperature_direction(sac.temperature_loss)


def test_temperature_direction_check_rejects_wrong_sign():
    with pytest.raises(AssertionError):
        _check_temperature_direction(_wrong_sign_temperature_loss)


def test_default_target_entropy():
    assert sac.default_target_entropy(6) == -6.0
    assert sac.default_target_entropy((2, 3)) == -6.0
    with pytest.raises(ValueError):
        sac.default_target_entropy(0)


# ================================================================== TD3 targets

def _td3_case(draw):
    """One hypothesis example: a batch with its action box, noise and target critics."""
    n = draw(st.integers(1, 6))
    d = draw(st.integers(1, 3))

    def floats(lo, hi):
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)

    def arr(shape, lo, hi):
        size = int(np.prod(shape))
        return np.array(draw(st.lists(floats(lo, hi), min_size=size, max_size=size))
                        ).reshape(shape)

    low = arr((d,), -3.0, 0.0)
    high = low + arr((d,), 0.1, 5.0)
    # the target actor's action, inside the box (the clip only undoes rounding)
    mu_next = np.clip(low + arr((n, d), 0.0, 1.0) * (high - low), low, high)
    return dict(
        mu_next=mu_next, low=low, high=high,
        noise=arr((n, d), -5.0, 5.0), noise_clip=draw(floats(0.0, 2.0)),
        rewards=arr((n,), -10.0, 10.0),
        terminated=np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        gamma=draw(floats(0.0, 1.0)),
        # target critics Q'_i(a) = b_i + k_i . a - |a|^2 (different, so the min matters)
        critics=[(draw(floats(-20.0, 20.0)), arr((d,), -5.0, 5.0)) for _ in range(2)])


def _q(critic, a):
    b, k = critic
    return b + a @ k - np.sum(a * a, axis=-1)


def _check_td3(case, target_fn, smooth_fn):
    """The TD3 facts of verification/FORMULAS.md "Losses/TD3" for one batch."""
    c, low, high, mu = case["noise_clip"], case["low"], case["high"], case["mu_next"]
    r, done, gamma = case["rewards"], case["terminated"], case["gamma"]
    a_smooth = smooth_fn(mu, case["noise"], c, low, high)
    # smoothed actions inside the box; the applied noise within [-c, c]
    assert np.all((low <= a_smooth) & (a_smooth <= high))
    assert np.all(np.abs(a_smooth - mu) <= c + 1e-12)
    q1, q2 = (_q(critic, a_smooth) for critic in case["critics"])
    y = target_fn(r, done, q1, q2, gamma)
    # y = r + gamma (1 - d) min(Q1', Q2'), written independently
    expected = np.where(done, r, r + gamma * np.minimum(q1, q2))
    np.testing.assert_allclose(y, expected, rtol=1e-15, atol=0)
    # never above either single-critic (DDPG) target
    assert np.all(y <= ddpg.critic_target(r, done, q1, gamma))
    assert np.all(y <= ddpg.critic_target(r, done, q2, gamma))
    # termination: y = r exactly
    np.testing.assert_array_equal(y[done], r[done])
    # sigma = 0 (no smoothing): the clipped double-Q target at mu'(s')
    a0 = smooth_fn(mu, 0.0 * case["noise"], c, low, high)
    np.testing.assert_array_equal(a0, mu)
    y0 = target_fn(r, done, *(_q(critic, mu) for critic in case["critics"]), gamma)
    q_min_mu = np.minimum(*(_q(critic, mu) for critic in case["critics"]))
    np.testing.assert_allclose(y0, np.where(done, r, r + gamma * q_min_mu), rtol=1e-15,
                               atol=0)


def _max_instead_of_min(rewards, terminated, q1_next, q2_next, gamma):
    """Deliberately wrong: the overestimating max of the two critics."""
    return ddpg.critic_target(rewards, terminated, np.maximum(q1_next, q2_next), gamma)


def _unclipped_noise(mu_next, noise, noise_clip, low, high):
    """Deliberately wrong: the smoothing noise is not clipped to [-c, c]."""
    return np.clip(mu_next + noise, low, high)


def _td3_property(target_fn, smooth_fn, shrink=True):
    @given(st.data())
    def prop(data):
        _check_td3(_td3_case(data.draw), target_fn, smooth_fn)
    # a wrong estimator only has to fail: skip shrinking its counterexample (slow)
    return prop if shrink else settings(phases=(Phase.explicit, Phase.generate))(prop)


def test_td3_target_properties():
    _td3_property(td3.clipped_double_q_target, td3.smoothed_target_actions)()


@pytest.mark.parametrize("wrong", ["max", "noise"])
def test_td3_property_rejects_wrong_estimators(wrong):
    target_fn = _max_instead_of_min if wrong == "max" else td3.clipped_double_q_target
    smooth_fn = _unclipped_noise if wrong == "noise" else td3.smoothed_target_actions
    with pytest.raises(AssertionError):
        _td3_property(target_fn, smooth_fn, shrink=False)()


def test_td3_noise_scale_in_action_units():
    """Paper: sigma~ = 0.2, c = 0.5 for actions in [-1, 1]; the authors' code scales
    both by max_action.  With max_action = 2: c = 1 in action units."""
    mu = np.zeros((3, 1))
    a = td3.smoothed_target_actions(mu, np.array([[5.0], [-0.3], [-5.0]]), 0.5 * 2.0,
                                    -2.0, 2.0)
    np.testing.assert_array_equal(a, [[1.0], [-0.3], [-1.0]])


def test_soft_q_target_twin():
    g = _data(9)
    rng = g["rng"]
    q1, q2, logp = rng.normal(size=N), rng.normal(size=N), rng.normal(size=N)
    y = sac.soft_q_target_twin(g["r"], g["d"], q1, q2, logp, 0.2, 0.9)
    expected = np.where(g["d"], g["r"], g["r"] + 0.9 * (np.minimum(q1, q2) - 0.2 * logp))
    np.testing.assert_allclose(y, expected, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(
        sac.soft_q_target_twin(g["r"], g["d"], q1, q2, logp, 0.0, 0.9),
        td3.clipped_double_q_target(g["r"], g["d"], q1, q2, 0.9))


def test_targets_are_held_constant():
    """Targets are plain arrays; a Tensor where a held-constant input belongs is
    refused (it would carry gradients into the target)."""
    q, ones, alive = _leaf(np.ones(3)), np.ones(3), np.zeros(3, bool)
    assert isinstance(ddpg.critic_target(ones, alive, ones, 0.5), np.ndarray)
    calls = [lambda: ddpg.critic_target(ones, alive, q * 2.0, 0.5),
             lambda: td3.clipped_double_q_target(ones, alive, q, ones, 0.5),
             lambda: td3.smoothed_target_actions(q.reshape(3, 1), np.zeros((3, 1)), 0.5, -1, 1),
             lambda: sac.v_target(q, ones, 0.1),
             lambda: sac.soft_q_target_twin(ones, alive, ones, ones, q, 0.1, 0.9),
             lambda: ddpg.critic_loss(q, q),
             lambda: sac.temperature_loss(_leaf([0.0]), q, -1.0)]
    for call in calls:
        with pytest.raises(TypeError, match="held constant"):
            call()


# ============================================================ input validation

def test_bad_inputs_raise_clear_errors():
    y = np.zeros(4)
    with pytest.raises(ValueError, match="no broadcasting"):
        ddpg.critic_loss(_leaf(np.zeros((4, 1))), y)           # the (N, 1) vs (N,) bug
    with pytest.raises(ValueError, match="no broadcasting"):
        td3.twin_critic_loss(_leaf(np.zeros(4)), _leaf(np.zeros((4, 1))), y)
    with pytest.raises(ValueError, match="non-finite"):
        ddpg.critic_target(y, np.zeros(4, bool), np.full(4, np.nan), 0.9)
    with pytest.raises(ValueError, match="gamma"):
        ddpg.critic_target(y, np.zeros(4, bool), y, 1.5)
    with pytest.raises(ValueError, match="terminated"):
        ddpg.critic_target(y, np.full(4, 0.5), y, 0.9)
    with pytest.raises(ValueError, match="alpha"):
        sac.policy_loss(_leaf(y), _leaf(y), -0.1)
    with pytest.raises(ValueError, match="low < high"):
        td3.smoothed_target_actions(np.zeros((2, 1)), np.zeros((2, 1)), 0.5, 1.0, -1.0)
    with pytest.raises(ValueError, match="noise_clip"):
        td3.smoothed_target_actions(np.zeros((2, 1)), np.zeros((2, 1)), -0.5, -1.0, 1.0)
    with pytest.raises(ValueError, match="one element"):
        sac.temperature_loss(_leaf(np.zeros(2)), y, -1.0)
    with pytest.raises(ValueError, match="target_entropy"):
        sac.temperature_loss(_leaf(np.zeros(1)), y, float("nan"))


# ====================================== 3. statistical: the TanhGaussian density

# (mean, log_std, low, high): centred, skewed towards a bound, wide
DENSITY_CASES = [(0.3, math.log(0.8), -2.0, 3.0), (1.2, math.log(0.4), -1.0, 1.0),
                 (-0.5, math.log(1.5), 0.0, 4.0)]


def _density(log_prob_fn, mean, log_std, low, high):
    """a -> density at a scalar action, from a log-prob function of (dist, actions)."""
    dist = TanhGaussian(np.array([mean]), np.array([log_std]), np.array([low]), np.array([high]))
    return lambda a: float(np.exp(log_prob_fn(dist, np.array([a])).data))


def _log_prob(dist, actions):
    return dist.log_prob(actions)


def _log_prob_without_tanh_correction(dist, actions):
    """Deliberately wrong: log N(u; mu, sigma) - log scale, no -log(1 - tanh^2 u)."""
    y = (actions - dist.low) / dist.scale - 1.0
    u = np.arctanh(np.clip(y, -1 + 1e-15, 1 - 1e-15))
    return dist.base.log_prob(u) - float(np.sum(np.log(dist.scale)))


def _check_integrates_to_one(log_prob_fn, case):
    """The density integrates to 1 over (low, high).  Adaptive quadrature asked for
    1e-12 reports an error estimate below 1e-11 for these smooth densities (the
    integrals come out within 2e-14 of 1), so 1e-9 is a safe bound; without the
    tanh correction the integrals are 0.35-0.66."""
    p = _density(log_prob_fn, *case)
    total, err = integrate.quad(p, case[2], case[3], limit=200, epsabs=1e-12, epsrel=1e-12)
    assert err < 1e-10
    assert abs(total - 1.0) < 1e-9, total


@pytest.mark.parametrize("case", DENSITY_CASES)
def test_tanh_gaussian_density_integrates_to_one(case):
    _check_integrates_to_one(_log_prob, case)


@pytest.mark.parametrize("case", DENSITY_CASES)
def test_integration_check_rejects_missing_tanh_correction(case):
    with pytest.raises(AssertionError):
        _check_integrates_to_one(_log_prob_without_tanh_correction, case)


@pytest.mark.parametrize("case", DENSITY_CASES)
def test_tanh_gaussian_log_prob_is_change_of_variables(case):
    """pi(a) = N(u; mu, sigma) |du/da| with u = atanh((a - low)/s - 1),
    du/da = 1 / (s (1 - y^2)), written with scipy.stats.norm."""
    mean, log_std, low, high = case
    s = (high - low) / 2
    a = np.linspace(low, high, 41)[1:-1]
    y = (a - low) / s - 1
    expected = stats.norm.logpdf(np.arctanh(y), mean, math.exp(log_std)) - np.log(s * (1 - y * y))
    dist = TanhGaussian(np.array([mean]), np.array([log_std]), np.array([low]), np.array([high]))
    np.testing.assert_allclose(dist.log_prob(a[:, None]).data, expected, rtol=1e-10, atol=1e-10)


CHI2_LEVEL = 1e-3       # goodness-of-fit level; fixed seed


def _histogram_p_value(log_prob_fn, case, n=20000, bins=20, seed=11):
    """Chi-square p-value of n samples (from TanhGaussian.sample) against bin
    probabilities integrated from the log-prob (normalised by its total, so a
    wrong density is compared by its shape, not its mass)."""
    mean, log_std, low, high = case
    dist = TanhGaussian(np.array([mean]), np.array([log_std]), np.array([low]), np.array([high]))
    samples = dist.sample(np.random.default_rng(seed), (n,))[:, 0]
    edges = np.linspace(low, high, bins + 1)
    counts, _ = np.histogram(samples, edges)
    p = _density(log_prob_fn, *case)
    mass = np.array([integrate.quad(p, lo, hi)[0] for lo, hi in zip(edges[:-1], edges[1:])])
    expected = n * mass / mass.sum()
    counts, expected = _merge_small_bins(counts, expected)
    assert len(counts) >= 8
    return stats.chisquare(counts, expected).pvalue


def _merge_small_bins(counts, expected, minimum=5.0):
    """Merge neighbouring bins (left to right, the last into its left neighbour)
    until every expected count is >= minimum, where the chi-square
    approximation holds."""
    merged_c, merged_e, c, e = [], [], 0.0, 0.0
    for ci, ei in zip(counts, expected):
        c, e = c + ci, e + ei
        if e >= minimum:
            merged_c.append(c)
            merged_e.append(e)
            c = e = 0.0
    if e > 0:
        merged_c[-1] += c
        merged_e[-1] += e
    return np.array(merged_c), np.array(merged_e)


@pytest.mark.parametrize("case", DENSITY_CASES[:2])
def test_tanh_gaussian_density_matches_sample_histogram(case):
    p = _histogram_p_value(_log_prob, case)
    assert p > CHI2_LEVEL, p


@pytest.mark.parametrize("case", DENSITY_CASES[:2])
def test_histogram_check_rejects_missing_tanh_correction(case):
    p = _histogram_p_value(_log_prob_without_tanh_correction, case)
    assert p < CHI2_LEVEL, p


# ================== 3. statistical: pathwise vs score-function, exact by quadrature

# a ~ TanhGaussian(m, log_std) on (-1, 1); f smooth and built from minipg ops
M0, LOG_STD0 = 0.2, -0.3
N_MC = 20000
# |z| < 4: two-sided level 6.3e-5 per comparison, < 5e-4 for the 8 comparisons
# of this section together (Bonferroni); the seeds are fixed.
Z_BOUND = 4.0
GH_NODES, GH_WEIGHTS = hermegauss(120)
GH_WEIGHTS = GH_WEIGHTS / math.sqrt(2 * math.pi)   # E[g(z)] = sum w_k g(z_k), z ~ N(0, 1)


def _f(a):
    """f(a) = exp(-2 (a - 0.3)^2) + 0.5 a, for arrays or Tensors."""
    if isinstance(a, Tensor):
        return ops.exp(-2.0 * ops.square(a - 0.3)) + 0.5 * a
    return np.exp(-2.0 * (a - 0.3) ** 2) + 0.5 * a


def _expect(g, m, log_std):
    """E_{z ~ N(0,1)}[g(z, u)] with u = m + sigma z, by Gauss-Hermite quadrature."""
    u = m + math.exp(log_std) * GH_NODES
    return float(np.sum(GH_WEIGHTS * g(GH_NODES, u)))


def _exact_gradient(objective):
    """(d/dm, d/dlog_std) of objective(m, log_std) by central differences of the
    quadrature (h = 1e-5: truncation ~1e-11, rounding ~1e-11)."""
    h = 1e-5
    return np.array([(objective(M0 + h, LOG_STD0) - objective(M0 - h, LOG_STD0)) / (2 * h),
                     (objective(M0, LOG_STD0 + h) - objective(M0, LOG_STD0 - h)) / (2 * h)])


def _expected_f(m, log_std):
    return _expect(lambda z, u: _f(np.tanh(u)), m, log_std)


def test_quadrature_reference_is_accurate():
    """Gauss-Hermite E[f(a)] agrees with adaptive quadrature to 1e-10."""
    sigma = math.exp(LOG_STD0)
    ref, _ = integrate.quad(lambda z: _f(np.tanh(M0 + sigma * z)) * stats.norm.pdf(z),
                            -12, 12, epsabs=1e-13)
    assert abs(_expected_f(M0, LOG_STD0) - ref) < 1e-10


def _per_sample_leaves():
    """(N_MC, 1) copies of the parameters, so the gradient of a SUM gives each
    sample's own gradient (for the standard error)."""
    return _leaf(np.full((N_MC, 1), M0)), _leaf(np.full((N_MC, 1), LOG_STD0))


def _pathwise(eps):
    m, ls = _per_sample_leaves()
    action, _ = TanhGaussian(m, ls).rsample(eps=eps)
    ops.sum(_f(action)).backward()
    return np.stack([m.grad[:, 0], ls.grad[:, 0]], axis=1)


def _score_function(eps):
    m, ls = _per_sample_leaves()
    dist = TanhGaussian(m, ls)
    u = M0 + math.exp(LOG_STD0) * eps                  # the sampled pre-squash value (data)
    log_prob = dist.log_prob_from_pre_tanh(u)
    ops.sum(log_prob * _f(np.tanh(u))[:, 0]).backward()   # f(a) grad log pi(a)
    return np.stack([m.grad[:, 0], ls.grad[:, 0]], axis=1)


def _straight_through(eps):
    """Deliberately wrong pathwise gradient: da/du taken as 1 (tanh's derivative dropped)."""
    m, ls = _per_sample_leaves()
    u = m + ops.exp(ls) * eps
    action = u - Tensor(u.data) + Tensor(np.tanh(u.data))   # value tanh(u), derivative 1
    ops.sum(_f(action)).backward()
    return np.stack([m.grad[:, 0], ls.grad[:, 0]], axis=1)


def _z_scores(per_sample, exact):
    mean = per_sample.mean(axis=0)
    se = per_sample.std(axis=0, ddof=1) / math.sqrt(len(per_sample))
    return (mean - exact) / se


@pytest.mark.parametrize("estimator", [_pathwise, _score_function])
def test_pathwise_and_score_function_are_unbiased(estimator):
    eps = np.random.default_rng(21).standard_normal((N_MC, 1))
    z = _z_scores(estimator(eps), _exact_gradient(_expected_f))
    assert np.all(np.abs(z) < Z_BOUND), z


def test_pathwise_and_score_function_agree_with_each_other():
    """Same objective, independent noise: the difference of the two means is
    within Z_BOUND of its own standard error."""
    a = _pathwise(np.random.default_rng(22).standard_normal((N_MC, 1)))
    b = _score_function(np.random.default_rng(23).standard_normal((N_MC, 1)))
    se = np.sqrt(a.var(axis=0, ddof=1) / N_MC + b.var(axis=0, ddof=1) / N_MC)
    z = (a.mean(axis=0) - b.mean(axis=0)) / se
    assert np.all(np.abs(z) < Z_BOUND), z


def test_unbiasedness_check_rejects_straight_through_gradient():
    eps = np.random.default_rng(21).standard_normal((N_MC, 1))
    z = _z_scores(_straight_through(eps), _exact_gradient(_expected_f))
    assert np.any(np.abs(z) > Z_BOUND), z


# ------------------------ the SAC policy loss: E[grad] = grad E_pi[alpha log pi - Q]

ALPHA = 0.5


def _expected_policy_loss(m, log_std):
    """E_{a ~ pi}[alpha log pi(a) - Q(a)] with Q = f, log pi from the change of
    variables written independently: log N(u) - log(1 - tanh^2 u), the latter as
    2 (log 2 - u - softplus(-2u)) (verification/FORMULAS.md "Losses/SAC")."""
    def integrand(z, u):
        log_det = 2.0 * (math.log(2.0) - u - np.logaddexp(0.0, -2.0 * u))
        log_pi = -0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi) - log_det
        return ALPHA * log_pi - _f(np.tanh(u))
    return _expect(integrand, m, log_std)


def _policy_loss_gradients(eps, detach_log_prob=False):
    m, ls = _per_sample_leaves()
    action, log_prob = TanhGaussian(m, ls).rsample(eps=eps)
    if detach_log_prob:     # deliberately wrong: drops the entropy term's gradient
        log_prob = Tensor(log_prob.data)
    loss = sac.policy_loss(log_prob, _f(action)[:, 0], ALPHA)
    (loss * float(N_MC)).backward()            # mean -> sum: per-sample gradients
    return np.stack([m.grad[:, 0], ls.grad[:, 0]], axis=1)


def test_sac_policy_gradient_is_unbiased():
    eps = np.random.default_rng(31).standard_normal((N_MC, 1))
    z = _z_scores(_policy_loss_gradients(eps), _exact_gradient(_expected_policy_loss))
    assert np.all(np.abs(z) < Z_BOUND), z


def test_policy_gradient_check_rejects_detached_log_prob():
    eps = np.random.default_rng(31).standard_normal((N_MC, 1))
    z = _z_scores(_policy_loss_gradients(eps, detach_log_prob=True),
                  _exact_gradient(_expected_policy_loss))
    assert np.any(np.abs(z) > Z_BOUND), z


def test_float32_stays_float32():
    r32 = np.ones(3, dtype=np.float32)
    y = ddpg.critic_target(r32, np.zeros(3, bool), r32, 0.9)
    assert y.dtype == np.float32
    q = Tensor(np.zeros(3, dtype=np.float32), requires_grad=True)
    assert ddpg.critic_loss(q, y).dtype == np.float32
    assert sac.soft_q_loss(q, y).dtype == np.float32
    a = td3.smoothed_target_actions(np.zeros((3, 1), np.float32), np.ones((3, 1), np.float32),
                                    0.5, -1.0, 1.0)
    assert a.dtype == np.float32


# ============================================ conventions of other implementations
# (the options `minipg reference --profile sb3|cleanrl` uses; defaults unchanged)

def test_soft_q_loss_without_the_half_closed_form():
    """half=False: J = mean (Q - y)^2 (CleanRL's F.mse_loss), dJ/dQ_i = 2 (Q_i - y_i) / N."""
    rng = np.random.default_rng(21)
    Q, y = rng.normal(size=N), rng.normal(size=N)
    for half, k in ((True, 0.5), (False, 1.0)):
        q = _leaf(Q)
        loss = sac.soft_q_loss(q, y, half=half)
        loss.backward()
        np.testing.assert_allclose(loss.data, k * np.mean((Q - y) ** 2), **EXACT)
        np.testing.assert_allclose(q.grad, k * 2 * (Q - y) / N, **EXACT)
    assert sac.soft_q_loss(_leaf(Q), y).data == sac.soft_q_loss(_leaf(Q), y, half=True).data
    assert gradcheck(lambda q: sac.soft_q_loss(q, y, half=False), [Q], **GRADCHECK)


def test_temperature_loss_on_log_alpha_closed_form():
    """on='log_alpha': J = log_alpha (H_hat - H_bar) (stable-baselines3's
    -(log_alpha (log pi + H_bar)).mean()), dJ/dlog_alpha = H_hat - H_bar: eq. 18's
    gradient divided by alpha, same sign, same fixed point."""
    rng = np.random.default_rng(22)
    log_prob, target, log_alpha = rng.normal(size=50), -2.0, np.array([-0.7])
    h_hat = -log_prob.mean()
    la = _leaf(log_alpha)
    loss = sac.temperature_loss(la, log_prob, target, on="log_alpha")
    loss.backward()
    np.testing.assert_allclose(loss.data, log_alpha[0] * (h_hat - target), **EXACT)
    np.testing.assert_allclose(la.grad, [h_hat - target], **EXACT)
    on_alpha = _leaf(log_alpha)
    sac.temperature_loss(on_alpha, log_prob, target).backward()
    np.testing.assert_allclose(on_alpha.grad / math.exp(log_alpha[0]), la.grad, **EXACT)
    _check_temperature_direction(
        lambda a, lp, t: sac.temperature_loss(a, lp, t, on="log_alpha"))
    with pytest.raises(ValueError, match="on must be"):
        sac.temperature_loss(_leaf(log_alpha), log_prob, target, on="alpha2")
