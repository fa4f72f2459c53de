r"""``minipg audit`` checks of A3C: one worker's segment at the three levels of
:mod:`minipg.audit.levels`.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "A3C" (the
outline's steps 5-6); Mnih et al. 2016, Algorithm S3.  The estimator is
:func:`minipg.estimators.a3c.segment_loss` on returns from
:func:`minipg.kernels.discounted_returns`, exactly as
:meth:`minipg.algorithms.a3c.A3C.run_segment` calls them.

gradcheck
    the segment loss as a function of (theta, w), through a linear-softmax
    policy pi(a|s) ∝ exp(theta^T phi(s,a)) and a linear critic V(s) = w^T x(s),
    the returns held constant.
formula
    the outline's sums by hand in NumPy, for the same model and three segment
    endings (terminal: R = 0; truncated and t_max: R = V(s_t)), the returns by
    the backward recursion R <- r_i + gamma R:

    * d theta = sum_i (R_i - V(s_i)) psi_i + beta sum_i grad H_i, psi = grad log pi;
    * d w = sum_i 2 (R_i - V(s_i)) (-x_i);

    the autodiff gradient of the loss must be (-d theta, d w).
exact
    the tabular MDP of :func:`minipg.audit.onpolicy.exact_bed`; i.i.d. segments
    that start at (s, a) ~ eta(s) pi(a|s) / Z and follow pi for at most t_max = 3
    steps, cut at a termination; R_0 through the kernel with the exact V^pi as the
    bootstrap (so E[R_0 | s, a] = Q^pi(s, a)); the first step's term of d theta,
    (R_0 - V^pi(s)) grad log pi(a|s), times Z, against grad J (Hotelling's T^2).
    Beside it, the T^2 of the same segments with their terminations hidden from the
    kernel (bootstrapping past the end of an episode, from a junk value), which must
    be rejected.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import value_and_grad
from ..estimators.a3c import segment_loss
from ..kernels import discounted_returns
from . import audit_check
from .beds import split_gradient
from .levels import exact_result, formula_result, gradcheck_function, relative_error
from .onpolicy import (EXACT_SAMPLES, exact_bed, linear_softmax_batch,
                       linear_softmax_distribution, linear_softmax_pieces, sample_transitions)
from .stats import hotelling_test

__all__ = ["segment_batch", "segment_closed_form", "segment_returns_numpy", "segment_loss_fn",
           "kernel_returns", "sample_segments",
           "segment_estimates", "ENDINGS", "T_MAX"]

ENDINGS = ("terminal", "truncated", "t_max")
GAMMA, BETA = 0.9, 0.01
T_MAX = 3                        # the exact row's segment length at most


# ----------------------------------------------------------------- the small model
def segment_batch(rng, ending, m=5):
    """A segment of m steps through a linear-softmax policy and a linear critic: features,
    parameters, actions, rewards, the episode-end flags of ``ending`` and the bootstrap
    value V(s_t) (used unless the segment ends at a terminal state)."""
    phi, x, theta, w, actions = linear_softmax_batch(rng, n=m)
    rewards = rng.standard_normal(m)
    terminated, truncated = np.zeros(m, bool), np.zeros(m, bool)
    if ending == "terminal":
        terminated[-1] = True
    elif ending == "truncated":
        truncated[-1] = True
    bootstrap = float(rng.standard_normal(x.shape[1]) @ w)
    return phi, x, theta, w, actions, rewards, terminated, truncated, bootstrap


def kernel_returns(rewards, terminated, truncated, bootstrap, gamma=GAMMA):
    """The returns as A3C computes them: the discounted-returns kernel, the bootstrap in
    the last step's next value (0 after a termination)."""
    next_values = np.zeros(len(rewards))
    next_values[-1] = 0.0 if terminated[-1] else bootstrap
    return discounted_returns(rewards, terminated, truncated, gamma, next_values)


def segment_returns_numpy(rewards, terminal, bootstrap, gamma=GAMMA):
    """The outline's step 5-6 recursion: R = 0 or V(s_t), then R <- r_i + gamma R."""
    R = 0.0 if terminal else bootstrap
    returns = np.zeros(len(rewards))
    for i in reversed(range(len(rewards))):
        R = rewards[i] + gamma * R
        returns[i] = R
    return returns


def segment_closed_form(phi, x, theta, w, actions, returns, beta=BETA):
    """(-d theta, d w): the outline's accumulated sums, by hand (module docstring)."""
    _, _, psi, grad_entropy = linear_softmax_pieces(phi, theta, actions)
    advantages = returns - x @ w
    d_theta = (advantages[:, None] * psi).sum(0) + beta * grad_entropy.sum(0)
    d_w = (2.0 * advantages[:, None] * -x).sum(0)
    return -d_theta, d_w


def segment_loss_fn(phi, x, actions, returns, advantages):
    """The segment loss of (theta, w), its advantages held constant (given)."""
    def loss(theta, w):
        dist = linear_softmax_distribution(phi, theta)
        value, _ = segment_loss(dist.log_prob(actions), (x * w).sum(axis=-1), dist.entropy(),
                                advantages, returns, BETA)
        return value
    return loss


# ----------------------------------------------------------------- level 1: gradcheck
@audit_check("a3c", "segment_loss", "gradcheck")
def a3c_gradcheck(full, rng):
    phi, x, theta, w, actions, rewards, term, trunc, boot = segment_batch(rng, "t_max")
    returns = kernel_returns(rewards, term, trunc, boot)
    advantages = returns - x @ w                      # held constant, as A3C holds them
    return gradcheck_function(segment_loss_fn(phi, x, actions, returns, advantages),
                              [theta, w],
                              "A3C segment loss through a linear-softmax policy and linear "
                              "critic")


# ----------------------------------------------------------------- level 2: formula
@audit_check("a3c", "segment_loss + discounted_returns", "formula")
def a3c_formula(full, rng):
    worst = 0.0
    for _ in range(5 if full else 2):
        for ending in ENDINGS:
            phi, x, theta, w, actions, rewards, term, trunc, boot = segment_batch(rng, ending)
            returns = kernel_returns(rewards, term, trunc, boot)
            expected = segment_returns_numpy(rewards, ending == "terminal", boot)
            _, grads = value_and_grad(segment_loss_fn(phi, x, actions, returns,
                                                       returns - x @ w),
                                      argnums=(0, 1))(theta, w)
            closed = segment_closed_form(phi, x, theta, w, actions, expected)
            worst = max(worst, relative_error(list(grads) + [returns], list(closed) + [expected]))
    return formula_result(worst, "(-sum (R - V) psi - beta sum grad H, sum 2 (V - R) x) and "
                                 "R <- r + gamma R, terminal / truncated / t_max endings, "
                                 "linear softmax")


# ----------------------------------------------------------------- level 3: exact
def sample_segments(mdp, policy, theta, n, rng, t_max=T_MAX):
    """n i.i.d. segments: (s_0, a_0) ~ eta pi / Z and s_1 ~ P, then pi for up to t_max
    steps in all, stopped at a termination.  Returns (states, actions, rewards (t_max, n),
    terminated (t_max, n), next_states (t_max, n), Z); after a termination the rows are
    padding the returns never reach."""
    pi = policy.probs(theta)
    states0, actions0, next0, Z = sample_transitions(mdp, policy, theta, n, rng)
    rewards = np.zeros((t_max, n))
    terminated = np.zeros((t_max, n), bool)
    next_states = np.zeros((t_max, n), int)
    s, a, s2 = states0, actions0, next0
    for t in range(t_max):
        rewards[t] = mdp.R[s, a]
        terminated[t] = mdp.terminal[s2]
        next_states[t] = s2
        if t + 1 < t_max:                       # the next step, from s' (a terminal s' is
            s = s2                              # padding: its row is never used)
            cumulative = np.cumsum(pi[s], axis=1)
            u = rng.random(n)[:, None] * cumulative[:, -1:]
            a = np.minimum(np.sum(cumulative <= u, axis=1), pi.shape[1] - 1)
            cumulative = np.cumsum(mdp.P[s, a], axis=1)
            u = rng.random(n)[:, None] * cumulative[:, -1:]
            s2 = np.minimum(np.sum(cumulative <= u, axis=1), mdp.P.shape[2] - 1)
    return states0, actions0, rewards, terminated, next_states, Z


def segment_estimates(mdp, policy, theta, states, actions, rewards, terminated, next_states,
                      flag_terminations=True):
    """Per-segment estimates of the first step's d theta term, (R_0 - V^pi(s_0)) grad log
    pi(a_0|s_0), shape (n, d): R_0 through the kernel, bootstrapped from V^pi at the cut; a
    terminal state's value is a junk 1e3 that shows if the kernel bootstraps past it
    (``flag_terminations=False`` hides the terminations from it: a deliberate mistake)."""
    v = mdp.value(policy.probs(theta))
    next_values = np.where(mdp.terminal[next_states], 1e3, v[next_states])
    flags = terminated if flag_terminations else np.zeros_like(terminated)
    returns = discounted_returns(rewards, flags, np.zeros_like(flags), mdp.gamma,
                                 next_values)[0]
    n = len(states)

    def objective(log_prob):
        loss, _ = segment_loss(log_prob, v[states], np.zeros(n), returns - v[states],
                               returns, 0.0)
        return -loss                   # sum_i A_i log pi; the critic term is constant here

    return split_gradient(objective, policy, theta, states, actions, np.arange(n), n, scale=1,
                          check_linear=False)


@audit_check("a3c", "segment_loss + discounted_returns", "exact")
def a3c_exact(full, rng):
    mdp, policy, theta = exact_bed()
    states, actions, rewards, terminated, next_states, Z = sample_segments(
        mdp, policy, theta, EXACT_SAMPLES[full], rng)
    samples = Z * segment_estimates(mdp, policy, theta, states, actions, rewards, terminated,
                                    next_states)
    past_end = Z * segment_estimates(mdp, policy, theta, states, actions, rewards, terminated,
                                     next_states, flag_terminations=False)
    grad_J = mdp.policy_gradient(policy, theta)
    return exact_result(hotelling_test(samples, grad_J), "exact grad J",
                        f" (segments of <= {T_MAX} steps from (s, a) ~ eta pi, R_0 bootstrapped "
                        f"from V^pi, 6-state MDP); bootstrapping past terminations T^2 "
                        f"{hotelling_test(past_end, grad_J).t2:.3g}")

