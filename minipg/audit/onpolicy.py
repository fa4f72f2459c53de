r"""``minipg audit`` checks of the on-policy actor-critics: A2C and PPO, each at the
three levels of :mod:`minipg.audit.levels`.

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "A2C" and
"PPO"; Mnih et al. 2016 (A3C/A2C loss), Schulman et al. 2017 (eqs. 7, 9).
The losses are :func:`minipg.estimators.a2c.a2c_loss` and
:func:`minipg.estimators.ppo.ppo_objective`, exactly as the algorithms call
them.  What each level's rows take:

gradcheck
    the whole loss as a function of (theta, w), through a linear-softmax
    policy pi(a|s) ∝ exp(theta^T phi(s,a)) and a linear critic V(s) = w^T
    x(s).  For PPO some ratios are clipped and some values clipped, every one
    at least 1e-3 away from a kink (1000 finite-difference steps), so no
    difference straddles one.
formula
    the closed forms, by hand in NumPy, for the same model
    (``verification/FORMULAS.md``, "Losses"):

    * grad log pi(a|s) = phi(s,a) - sum_b pi(b|s) phi(s,b)            (psi)
    * grad H(pi(.|s)) = -sum_a pi(a|s) (log pi(a|s) + H) phi(s,a)
    * A2C, loss: grad_theta = -(1/N) sum A psi - c_H (1/N) sum grad H;
      grad_w = c_v (1/N) sum 2 (V - R) x
    * PPO, J^CLIP': grad_theta = (1/N) sum 1[unclipped] A r psi
      + c2 (1/N) sum grad H, with 1[unclipped] = (A > 0 and r < 1 + eps) or
      (A < 0 and r > 1 - eps); grad_w = -c1 (1/N) sum 1[V error kept]
      2 (V - R) x, the value error dropped where |V - V_old| > eps_v and the
      clipped error is the larger.
exact
    a small tabular MDP with a linear-softmax policy (:func:`exact_bed`,
    termination depending on (s, a)); i.i.d. samples (s, a) ~ eta(s)
    pi(a|s) / Z (and s' ~ P(.|s, a) for A2C), Z = sum_s eta(s), so that
    Z E[A psi] = sum_s eta(s) sum_a pi(a|s) A(s,a) grad log pi(a|s) = grad J
    (policy gradient theorem, ``verification/FORMULAS.md``, "Tabular MDP,
    softmax policy").  Per-sample estimates through the estimator
    (:func:`minipg.audit.beds.split_gradient`), Hotelling's T^2 against grad J:

    * PPO: at theta = theta_old (every ratio 1) the gradient of J^CLIP with
      exact advantages A^pi is the vanilla policy gradient;
    * A2C: the one-step advantage of the n-step kernel, r + gamma V(s') -
      V(s) with V = V^pi exact and no bootstrap after a termination, is an
      unbiased estimate of A^pi(s,a), so the expected A2C policy gradient is
      grad J.

    The same computations in exact expectation (every (s, a, s') weighted,
    no sampling): :func:`expected_a2c_gradient` and
    :func:`expected_ppo_gradient_at_ratio_one`, which the tests compare with
    grad J to 1e-10.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, ops, value_and_grad
from ..distributions import Categorical
from ..envs.tabular import LinearSoftmaxPolicy, TabularMDP, random_features, random_mdp
from ..estimators.a2c import a2c_loss
from ..estimators.ppo import clip_objective, ppo_objective
from ..kernels import n_step_returns
from . import audit_check
from .beds import split_gradient
from .levels import FORMULA_RTOL, exact_result, formula_result, gradcheck_function, relative_error
from .stats import hotelling_test

__all__ = ["linear_softmax_batch", "a2c_closed_form", "ppo_closed_form", "ppo_formula_error",
           "exact_bed", "expected_ppo_gradient_at_ratio_one", "expected_a2c_gradient",
           "sample_transitions", "exact_gradient_result", "a2c_estimates",
           "ppo_estimates_at_ratio_one", "linear_softmax_distribution", "linear_softmax_pieces",
           "IDENTITY_THRESHOLD", "EXACT_SAMPLES"]

IDENTITY_THRESHOLD = FORMULA_RTOL                  # closed form vs autodiff, no differences
KINK_MARGIN = 1e-3
C1, C2, CLIP_EPS, VALUE_CLIP = 0.5, 0.01, 0.2, 0.3
EXACT_SAMPLES = (20_000, 200_000)                  # (quick, full) samples of the exact rows


# ----------------------------------------------------------------- the small model
def linear_softmax_batch(rng, n=12, n_actions=3, n_features=4, n_state_features=3):
    """Features, parameters and actions of a random batch for a linear-softmax policy
    pi(a|s) ∝ exp(theta^T phi(s,a)) and a linear critic V(s) = w^T x(s)."""
    phi = rng.standard_normal((n, n_actions, n_features))           # phi(s_i, a)
    x = rng.standard_normal((n, n_state_features))                  # x(s_i)
    theta = 0.5 * rng.standard_normal(n_features)
    w = 0.5 * rng.standard_normal(n_state_features)
    actions = rng.integers(0, n_actions, size=n)
    return phi, x, theta, w, actions


def linear_softmax_distribution(phi, theta):
    """Categorical with logits phi @ theta (theta a Tensor keeps the tape)."""
    return Categorical(ops.sum(phi * theta, axis=-1))


def _values(x, w):
    return ops.sum(x * w, axis=-1)


def linear_softmax_pieces(phi, theta, actions):
    """pi, log pi(a_i|s_i), psi_i = grad log pi(a_i|s_i), grad H_i (linear softmax)."""
    logits = phi @ theta
    logits = logits - logits.max(axis=1, keepdims=True)
    log_pi = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    pi = np.exp(log_pi)
    mean_phi = np.einsum("nb,nbi->ni", pi, phi)                      # sum_b pi(b|s) phi(s,b)
    rows = np.arange(len(actions))
    psi = phi[rows, actions] - mean_phi                              # grad log pi(a|s)
    entropy = -np.sum(pi * log_pi, axis=1)
    grad_entropy = -np.einsum("na,nai->ni", pi * (log_pi + entropy[:, None]), phi)
    return pi, log_pi[rows, actions], psi, grad_entropy


def a2c_closed_form(phi, x, theta, w, actions, advantages, returns, value_coef, entropy_coef):
    """(grad_theta, grad_w) of the A2C loss (minimised), by hand."""
    _, _, psi, grad_entropy = linear_softmax_pieces(phi, theta, actions)
    n = len(actions)
    values = x @ w
    grad_theta = -(advantages[:, None] * psi).sum(0) / n - entropy_coef * grad_entropy.sum(0) / n
    grad_w = value_coef * (2.0 * (values - returns)[:, None] * x).sum(0) / n
    return grad_theta, grad_w


def ppo_closed_form(phi, x, theta, w, actions, log_prob_old, advantages, returns, values_old,
                    c1, c2, clip_eps, value_clip):
    """(grad_theta, grad_w) of J^CLIP' (maximised), by hand; ``value_clip`` None: no clipping."""
    _, log_prob, psi, grad_entropy = linear_softmax_pieces(phi, theta, actions)
    n = len(actions)
    ratio = np.exp(log_prob - log_prob_old)
    unclipped = (((advantages > 0) & (ratio < 1 + clip_eps))
                 | ((advantages < 0) & (ratio > 1 - clip_eps)))
    grad_theta = ((np.where(unclipped, advantages * ratio, 0.0)[:, None] * psi).sum(0) / n
                  + c2 * grad_entropy.sum(0) / n)
    values = x @ w
    keep = np.ones(n, dtype=bool)
    if value_clip is not None:
        clipped_values = values_old + np.clip(values - values_old, -value_clip, value_clip)
        outside = np.abs(values - values_old) > value_clip
        keep = ~(outside & ((clipped_values - returns) ** 2 > (values - returns) ** 2))
    grad_w = -c1 * (np.where(keep, 2.0 * (values - returns), 0.0)[:, None] * x).sum(0) / n
    return grad_theta, grad_w


# ----------------------------------------------------------------- batches away from kinks
def _a2c_batch(rng):
    phi, x, theta, w, actions = linear_softmax_batch(rng)
    advantages = rng.standard_normal(len(actions))
    returns = rng.standard_normal(len(actions))
    return phi, x, theta, w, actions, advantages, returns


def _ppo_batch(rng):
    """A batch where ratios and value differences sit on both sides of the clip
    boundaries, each at least KINK_MARGIN from a kink."""
    phi, x, theta, w, actions = linear_softmax_batch(rng)
    n = len(actions)
    _, log_prob, _, _ = linear_softmax_pieces(phi, theta, actions)
    # ratios r in [0.6, 1.4], kept KINK_MARGIN away from 1 -+ eps
    ratio = rng.uniform(0.6, 1.4, size=n)
    for bound in (1 - CLIP_EPS, 1 + CLIP_EPS):
        near = np.abs(ratio - bound) < KINK_MARGIN
        ratio[near] = bound + np.sign(ratio[near] - bound + 1e-300) * 2 * KINK_MARGIN
    log_prob_old = log_prob - np.log(ratio)
    advantages = rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.1, 2.0, size=n)
    values = x @ w
    # V - V_old in +-[0, 0.6], away from +-VALUE_CLIP; returns chosen so the max is not tied
    delta = rng.uniform(-0.6, 0.6, size=n)
    near = np.abs(np.abs(delta) - VALUE_CLIP) < KINK_MARGIN
    delta[near] += 4 * KINK_MARGIN * np.sign(delta[near])
    values_old = values - delta
    returns = values + rng.choice([-1.0, 1.0], size=n) * rng.uniform(0.2, 1.5, size=n)
    clipped_values = values_old + np.clip(values - values_old, -VALUE_CLIP, VALUE_CLIP)
    gap = np.abs(np.abs(clipped_values - returns) - np.abs(values - returns))
    tie = (np.abs(delta) > VALUE_CLIP) & (gap < KINK_MARGIN)
    returns[tie] += 10 * KINK_MARGIN
    return phi, x, theta, w, actions, log_prob_old, advantages, returns, values_old


def _a2c_loss_fn(phi, x, actions, advantages, returns):
    def loss(theta, w):
        dist = linear_softmax_distribution(phi, theta)
        value, _ = a2c_loss(dist.log_prob(actions), _values(x, w), dist.entropy(), advantages,
                            returns, C1, C2)
        return value
    return loss


def _ppo_objective_fn(phi, x, actions, log_prob_old, advantages, returns, values_old,
                      estimator=ppo_objective):
    def objective(theta, w):
        dist = linear_softmax_distribution(phi, theta)
        value, _ = estimator(dist.log_prob(actions), log_prob_old, advantages, _values(x, w),
                             returns, dist.entropy(), C1, C2, CLIP_EPS,
                             values_old=values_old, clip_eps_value=VALUE_CLIP)
        return value
    return objective


# ----------------------------------------------------------------- level 1: gradcheck
@audit_check("a2c", "a2c_loss", "gradcheck")
def a2c_gradcheck(full, rng):
    phi, x, theta, w, actions, advantages, returns = _a2c_batch(rng)
    return gradcheck_function(_a2c_loss_fn(phi, x, actions, advantages, returns), [theta, w],
                              "A2C loss through a linear-softmax policy and linear critic")


@audit_check("ppo", "ppo_objective (J^CLIP')", "gradcheck")
def ppo_gradcheck(full, rng):
    phi, x, theta, w, actions, lpo, adv, ret, v_old = _ppo_batch(rng)
    return gradcheck_function(_ppo_objective_fn(phi, x, actions, lpo, adv, ret, v_old),
                              [theta, w], "J^CLIP' with clipped ratios and clipped values")


# ----------------------------------------------------------------- level 2: formula
@audit_check("a2c", "a2c_loss", "formula")
def a2c_formula(full, rng):
    worst = 0.0
    for _ in range(20 if full else 5):
        phi, x, theta, w, actions, advantages, returns = _a2c_batch(rng)
        _, grads = value_and_grad(_a2c_loss_fn(phi, x, actions, advantages, returns),
                                  argnums=(0, 1))(theta, w)
        closed = a2c_closed_form(phi, x, theta, w, actions, advantages, returns, C1, C2)
        worst = max(worst, relative_error(list(grads), list(closed)))
    return formula_result(worst, "(-mean A psi - c_H grad H, c_v mean 2 (V - R) x), linear "
                                 "softmax")


def ppo_formula_error(rng, n_batches=5, estimator=ppo_objective):
    """(max relative |autodiff - closed form|, number of samples on the zero-gradient side)
    of ``estimator`` (with ppo_objective's signature) over ``n_batches`` random batches."""
    worst, clipped = 0.0, 0
    for _ in range(n_batches):
        phi, x, theta, w, actions, lpo, adv, ret, v_old = _ppo_batch(rng)
        _, grads = value_and_grad(_ppo_objective_fn(phi, x, actions, lpo, adv, ret, v_old,
                                                    estimator), argnums=(0, 1))(theta, w)
        closed = ppo_closed_form(phi, x, theta, w, actions, lpo, adv, ret, v_old, C1, C2,
                                 CLIP_EPS, VALUE_CLIP)
        worst = max(worst, relative_error(list(grads), list(closed)))
        ratio = np.exp(linear_softmax_pieces(phi, theta, actions)[1] - lpo)
        clipped += int(np.sum(((adv > 0) & (ratio > 1 + CLIP_EPS))
                              | ((adv < 0) & (ratio < 1 - CLIP_EPS))))
    return worst, clipped


@audit_check("ppo", "ppo_objective (J^CLIP')", "formula")
def ppo_formula(full, rng):
    worst, clipped = ppo_formula_error(rng, 20 if full else 5)
    return formula_result(worst, f"(1[unclipped] A r psi, value clip), linear softmax; "
                                 f"{clipped} samples on the zero-gradient side (pass needs > 0)",
                          passed=clipped > 0)


# ----------------------------------------------------------------- level 3: exact
def exact_bed(seed=3):
    """A random 6-state (one terminal), 3-action MDP, gamma 0.9, whose termination
    probability depends on (s, a) (a constant one would act as a mere baseline and hide a
    bootstrap past a termination), and a linear-softmax policy with 4 random features;
    returns (mdp, policy, theta)."""
    base = random_mdp(6, 3, seed=seed, gamma=0.9, n_terminal=1, terminal_prob=0.3)
    rng = np.random.default_rng(seed + 2)
    P = base.P.copy()
    live = ~base.terminal
    p_end = rng.uniform(0.05, 0.6, size=(int(live.sum()), 3))        # Pr(terminate | s, a)
    moves = P[live][:, :, live]
    P[np.ix_(live, np.arange(3), live)] = (1 - p_end)[:, :, None] * moves / moves.sum(
        axis=2, keepdims=True)
    P[np.ix_(live, np.arange(3), ~live)] = p_end[:, :, None]
    mdp = TabularMDP(P, base.R, base.gamma, base.mu0, base.terminal)
    policy = LinearSoftmaxPolicy(random_features(6, 3, 4, seed=seed + 1))
    theta = 0.7 * rng.standard_normal(4)
    return mdp, policy, theta


def _all_pairs(mdp, policy, theta):
    """Every (s, a) with s nonterminal, its weight eta(s) pi(a|s), and phi, log pi."""
    pi = policy.probs(theta)
    eta = mdp.discounted_visitation(pi)
    states, actions = np.nonzero(eta[:, None] * pi > 0)
    weights = eta[states] * pi[states, actions]
    return pi, states, actions, weights


def one_step_advantages(mdp, v, states, actions, next_states, gamma, flag_terminations=True):
    """(returns, advantages): r + gamma V(s') through the n-step kernel (one step of n
    environments), minus V(s).  After a termination the kernel must not bootstrap: the
    terminal state's next value is a junk 1e3 that would show; ``flag_terminations=False``
    hides the terminations from the kernel (a deliberate mistake, for the tests)."""
    terminated = mdp.terminal[next_states]
    rewards = mdp.R[states, actions]
    next_values = np.where(terminated, 1e3, v[next_states])
    flags = terminated if flag_terminations else np.zeros_like(terminated)
    returns = n_step_returns(rewards[None, :], next_values[None, :], flags[None, :],
                             np.zeros((1, len(rewards)), dtype=bool), gamma, 1)[0]
    return returns, returns - v[states]


def expected_ppo_gradient_at_ratio_one(mdp, policy, theta, objective=clip_objective):
    """sum_{s,a} eta(s) pi(a|s) grad of J^CLIP's sample term at theta = theta_old, A = A^pi.

    J^CLIP is a batch mean, so each sample's advantage carries n * weight; the
    weights are positive, which leaves the sign of A -- all the clipping logic
    looks at -- unchanged."""
    pi, states, actions, weights = _all_pairs(mdp, policy, theta)
    advantage = mdp.advantage(pi)[states, actions]
    phi = policy.features[states]
    log_prob_old = np.log(pi[states, actions])                     # theta_old = theta
    scaled = len(states) * weights * advantage

    def fn(th):
        return objective(linear_softmax_distribution(phi, th).log_prob(actions), log_prob_old,
                         scaled, CLIP_EPS)
    _, gradient = value_and_grad(fn)(Tensor(theta))
    return gradient


def expected_a2c_gradient(mdp, policy, theta, gamma=None, flag_terminations=True):
    """E over (s, a) ~ eta pi and s' ~ P(.|s,a) of the A2C policy-gradient term with the
    one-step advantage of the n-step kernel (V = V^pi exact), computed exactly.

    Every (s, a, s') triple enters as one sample of a batch with weight
    eta(s) pi(a|s) P(s'|s,a); ``gamma`` (default: the MDP's) is the kernel's
    discount and ``flag_terminations=False`` hides the terminations from it (it then
    bootstraps from the terminal state's junk value): both wrong, to show they are detected."""
    gamma = mdp.gamma if gamma is None else gamma
    pi, states, actions, weights = _all_pairs(mdp, policy, theta)
    v = mdp.value(pi)
    s_idx, a_idx, next_states, triple_w = [], [], [], []
    for s, a, wt in zip(states, actions, weights):
        for s2 in np.flatnonzero(mdp.P[s, a] > 0):
            s_idx.append(s), a_idx.append(a), next_states.append(s2)
            triple_w.append(wt * mdp.P[s, a, s2])
    s_idx, a_idx, next_states = map(np.asarray, (s_idx, a_idx, next_states))
    triple_w = np.asarray(triple_w)
    returns, advantages = one_step_advantages(mdp, v, s_idx, a_idx, next_states, gamma,
                                              flag_terminations)
    n = len(returns)
    phi = policy.features[s_idx]

    def fn(th):
        loss, _ = a2c_loss(linear_softmax_distribution(phi, th).log_prob(a_idx), v[s_idx],
                           np.zeros(n), n * triple_w * advantages, returns, 0.0, 0.0)
        return -loss                                  # the policy-gradient objective
    _, gradient = value_and_grad(fn)(Tensor(theta))
    return gradient


# ---------------------------------------------------- level 3: Monte-Carlo samples
def sample_transitions(mdp, policy, theta, n, rng):
    """n i.i.d. (s, a, s'): s ~ eta / Z, a ~ pi(.|s), s' ~ P(.|s, a); returns
    (states, actions, next_states, Z) with Z = sum_s eta(s), so that Z E[f(s, a, s')] =
    sum_s eta(s) sum_a pi(a|s) sum_s' P(s'|s,a) f(s, a, s')."""
    pi = policy.probs(theta)
    eta = mdp.discounted_visitation(pi)
    states, actions = mdp.sample_state_actions(eta, pi, n, rng)
    cumulative = np.cumsum(mdp.P[states, actions], axis=1)
    u = rng.random(n)[:, None] * cumulative[:, -1:]
    next_states = np.minimum(np.sum(cumulative <= u, axis=1), mdp.P.shape[2] - 1)
    return states, actions, next_states, float(eta.sum())


def exact_gradient_result(estimates, full, rng, what):
    """The exact row of an estimator of grad J on :func:`exact_bed`: per-sample estimates
    ``estimates(mdp, policy, theta, states, actions)``, shape (n, d), from n =
    ``EXACT_SAMPLES[full]`` i.i.d. (s, a) ~ eta pi (:func:`sample_transitions`), times Z,
    against the exact grad J (Hotelling T^2), with the sign-flipped samples' T^2 beside
    it; ``what`` names the estimate in the row's text."""
    mdp, policy, theta = exact_bed()
    states, actions, _, Z = sample_transitions(mdp, policy, theta, EXACT_SAMPLES[full], rng)
    samples = Z * estimates(mdp, policy, theta, states, actions)
    grad_J = mdp.policy_gradient(policy, theta)
    flipped = hotelling_test(-samples, grad_J)
    return exact_result(hotelling_test(samples, grad_J), "exact grad J",
                        f" ({what}, (s, a) ~ eta pi, 6-state MDP, linear softmax); "
                        f"sign flip T^2 {flipped.t2:.3g}")


def a2c_estimates(mdp, policy, theta, states, actions, next_states, flag_terminations=True):
    """Per-sample A2C policy-gradient estimates A_i grad log pi(a_i|s_i), shape (n, d),
    through :func:`a2c_loss` with the kernel's one-step advantages (V = V^pi exact)."""
    v = mdp.value(policy.probs(theta))
    returns, advantages = one_step_advantages(mdp, v, states, actions, next_states, mdp.gamma,
                                              flag_terminations)
    n = len(states)

    def objective(log_prob):
        loss, _ = a2c_loss(log_prob, v[states], np.zeros(n), advantages, returns, 0.0, 0.0)
        return -loss                                  # the policy-gradient objective

    return split_gradient(objective, policy, theta, states, actions, np.arange(n), n, scale=n)


def ppo_estimates_at_ratio_one(mdp, policy, theta, states, actions, objective=clip_objective):
    """Per-sample gradients of J^CLIP at theta = theta_old with A = A^pi, shape (n, d).

    J^CLIP is not linear in log pi (the ratio is exp(log pi - log pi_old)), so
    the split is by the chain rule at ratio 1 (``check_linear=False``)."""
    pi = policy.probs(theta)
    advantages = mdp.advantage(pi)[states, actions]
    log_prob_old = np.log(pi[states, actions])                     # theta_old = theta
    n = len(states)

    def fn(log_prob):
        return objective(log_prob, log_prob_old, advantages, CLIP_EPS)

    return split_gradient(fn, policy, theta, states, actions, np.arange(n), n, scale=n,
                          check_linear=False)


@audit_check("ppo", "clip_objective (J^CLIP)", "exact")
def ppo_exact(full, rng):
    return exact_gradient_result(ppo_estimates_at_ratio_one, full, rng,
                                 "J^CLIP at ratio 1 with A^pi")


@audit_check("a2c", "a2c_loss + n_step_returns", "exact")
def a2c_exact(full, rng):
    mdp, policy, theta = exact_bed()
    states, actions, next_states, Z = sample_transitions(mdp, policy, theta,
                                                         EXACT_SAMPLES[full], rng)
    samples = Z * a2c_estimates(mdp, policy, theta, states, actions, next_states)
    past_end = Z * a2c_estimates(mdp, policy, theta, states, actions, next_states,
                                 flag_terminations=False)
    grad_J = mdp.policy_gradient(policy, theta)
    return exact_result(hotelling_test(samples, grad_J), "exact grad J",
                        f" (one-step advantages r + gamma V^pi(s') - V^pi(s) through the n-step "
                        f"kernel, (s, a, s') ~ eta pi P, 6-state MDP with termination "
                        f"depending on (s, a)); bootstrapping past terminations T^2 "
                        f"{hotelling_test(past_end, grad_J).t2:.3g}")
