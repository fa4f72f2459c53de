r"""Exact-gradient test bed: finite (tabular) MDPs with softmax policies.

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "Policy
Gradient Theorem", "REINFORCE" and "Off-Policy Policy Gradient"; the
formulas are those of ``verification/FORMULAS.md`` ("Tabular MDP", "Off-policy").
Papers: R. Sutton, D. McAllester, S. Singh, Y. Mansour, "Policy gradient
methods for reinforcement learning with function approximation", NIPS 2000;
R. Sutton & A. Barto, "Reinforcement Learning: An Introduction", 2nd ed.
(2018), section 13.2 and Example 13.1 (the short corridor); S. Kakade, "A
Natural Policy Gradient", NIPS 2002 (the Fisher matrix); P. Thomas, "Bias in
natural actor-critic algorithms", ICML 2014, and C. Nota & P. Thomas, "Is
the policy gradient a gradient?", AAMAS 2020 (REINFORCE without gamma^t);
T. Degris, M. White, R. Sutton, "Off-policy actor-critic", ICML 2012;
E. Imani, E. Graves, M. White, "An off-policy policy gradient theorem using
emphatic weightings", NeurIPS 2018.

Everything exact here is a linear solve, so a Monte-Carlo estimator can be
compared with the quantity it claims to estimate.

Conventions
-----------
* States ``0..S-1``, actions ``0..A-1``.  ``P[s, a, s']`` transition
  probabilities, ``R[s, a]`` expected reward; the sampler pays exactly
  ``R[s, a]`` (rewards are deterministic given ``(s, a)``).
* Terminal states are absorbing and zero-reward.  The step that ENTERS a
  terminal state is the last step of an episode (``terminated=True``); a
  terminal state is never a state in which an action is taken, so it is never
  counted as visited: ``V = Q = eta = 0`` there.  All linear solves use the
  sub-stochastic matrix ``P_pi`` restricted to nonterminal states (rows AND
  columns of terminal states set to zero).
* ``pi`` is a policy matrix of shape ``(S, A)`` (rows sum to one).
  Parameterised policies (:class:`TabularSoftmaxPolicy`,
  :class:`LinearSoftmaxPolicy`) take a flat parameter vector ``theta`` of
  shape ``(n_params,)`` and give ``pi``, ``grad log pi`` and ``grad pi`` as
  arrays of shape ``(S, A)``, ``(S, A, n_params)``, ``(S, A, n_params)``.
* State distributions (all of shape ``(S,)``):

  - ``eta(s) = sum_t gamma^t Pr(s_t = s)`` -- unnormalised DISCOUNTED
    visitation from ``mu0``, ``eta^T = mu0^T (I - gamma P_pi)^-1``; sums to
    ``1/(1-gamma)`` when continuing.  The policy gradient theorem weights
    states by ``eta``.
  - ``d = eta / sum(eta)`` -- normalised discounted visitation (``= (1-gamma)
    eta`` when continuing).  The Fisher matrix uses ``d`` by default.
  - ``eta_1`` -- UNDISCOUNTED expected visit counts (episodic MDPs only),
    ``eta_1^T = mu0^T (I - P_pi)^-1``; sums to the expected episode length.
  - ``d_stat`` -- the STATIONARY distribution, ``d^T P_pi = d^T`` (continuing
    MDPs only).  The off-policy quantities use the behaviour policy's
    stationary distribution ``d^b`` as in the document ("d^beta(s) is the
    stationary distribution of the behavior policy"); every off-policy
    function takes ``d_b`` explicitly, so another weighting can be passed.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from scipy.special import log_softmax, softmax

__all__ = [
    "TabularMDP",
    "TabularSoftmaxPolicy",
    "LinearSoftmaxPolicy",
    "EpisodeBatch",
    "TabularMDPEnv",
    "mean_kl",
    "random_mdp",
    "random_features",
    "one_hot_features",
    "two_state_mdp",
    "short_corridor",
    "short_corridor_features",
]

# Rows of P, mu0 and pi must sum to one within this (float64 data written by
# hand, e.g. 0.1 + 0.2 + 0.7, is off by ~1e-16; 1e-8 catches real mistakes).
_SUM_TOL = 1e-8
# A sub-stochastic P_pi whose spectral radius is this close to 1 means the
# policy does not terminate with probability one (values would be infinite).
_PROPER_TOL = 1e-10


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------


def _as_float_array(x, name, ndim):
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real array, got {type(x).__name__}") from exc
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _check_distribution_rows(arr, name):
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative (probabilities)")
    sums = arr.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > _SUM_TOL):
        worst = float(np.max(np.abs(sums - 1.0)))
        raise ValueError(
            f"{name} must sum to 1 over its last axis (within {_SUM_TOL}); "
            f"largest deviation {worst:.3g}"
        )


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )


def _check_positive_int(x, name):
    if not isinstance(x, numbers.Integral) or isinstance(x, bool) or x < 1:
        raise ValueError(f"{name} must be a positive integer, got {x!r}")
    return int(x)


def _sample_categorical(cdf, u):
    """Inverse-CDF sampling, row by row: index k with cdf[k-1] < u <= cdf[k].

    ``cdf`` has shape (n, K) with its last column set to 1; ``u`` is uniform
    on [0, 1), shape (n,).  Zero-probability entries are never chosen.
    """
    return np.sum(u[:, None] > cdf, axis=1)


# ---------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------


class _SoftmaxPolicy:
    """Shared part of the softmax policies: pi(a|s) = softmax_a(logits[s, a])."""

    n_states: int
    n_actions: int
    n_params: int

    def _check_theta(self, theta):
        arr = np.asarray(theta, dtype=np.float64)
        if arr.shape != (self.n_params,):
            raise ValueError(
                f"theta must be a flat vector of shape ({self.n_params},), got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError("theta must be finite (no NaN or inf)")
        return arr

    def logits(self, theta):  # pragma: no cover - overridden
        raise NotImplementedError

    def probs(self, theta):
        r"""pi(a|s) = exp(l[s,a]) / sum_b exp(l[s,b]); shape (S, A)."""
        return softmax(self.logits(theta), axis=1)

    def log_probs(self, theta):
        r"""log pi(a|s) = l[s,a] - logsumexp_b l[s,b]; shape (S, A)."""
        return log_softmax(self.logits(theta), axis=1)

    def grad_prob(self, theta):
        r"""grad_theta pi(a|s) = pi(a|s) grad_theta log pi(a|s); shape (S, A, n_params)."""
        return self.probs(theta)[:, :, None] * self.grad_log_prob(theta)

    def grad_log_prob(self, theta):  # pragma: no cover - overridden
        raise NotImplementedError

    def fisher_matrix(self, theta, state_weights):
        r"""F = sum_s w(s) sum_a pi(a|s) grad log pi(a|s) grad log pi(a|s)^T, shape (n, n).

        ``state_weights`` w has shape (S,) and is used as given (no normalisation).
        """
        w = np.asarray(state_weights, dtype=np.float64)
        if w.shape != (self.n_states,):
            raise ValueError(
                f"state_weights must have shape ({self.n_states},), got shape {w.shape}"
            )
        score = self.grad_log_prob(theta)
        return np.einsum("s,sa,sai,saj->ij", w, self.probs(theta), score, score)


class TabularSoftmaxPolicy(_SoftmaxPolicy):
    r"""Tabular softmax: pi(a|s) = exp(theta[s,a]) / sum_b exp(theta[s,b]).

    ``theta`` is flat with ``n_params = S * A``, row-major: parameter
    ``theta[s * A + a]`` is the logit of action ``a`` in state ``s`` (an
    ``(S, A)`` array is accepted too).
    """

    def __init__(self, n_states, n_actions):
        self.n_states = _check_positive_int(n_states, "n_states")
        self.n_actions = _check_positive_int(n_actions, "n_actions")
        self.n_params = self.n_states * self.n_actions

    def _check_theta(self, theta):
        arr = np.asarray(theta, dtype=np.float64)
        if arr.shape == (self.n_states, self.n_actions):
            arr = arr.reshape(self.n_params)  # theta[s, a] -> theta[s * A + a]
        return super()._check_theta(arr)

    def logits(self, theta):
        """l[s, a] = theta[s, a]; shape (S, A)."""
        return self._check_theta(theta).reshape(self.n_states, self.n_actions)

    def grad_log_prob(self, theta):
        r"""grad_theta log pi(a|s) = e_s (x) (e_a - pi(.|s)), shape (S, A, S*A).

        Entry ``[s, a, s'*A + b] = 1[s' = s] (1[b = a] - pi(b|s))``.
        """
        S, A = self.n_states, self.n_actions
        pi = self.probs(theta)
        score = np.zeros((S, A, S, A))
        for s in range(S):
            score[s, :, s, :] = np.eye(A) - pi[s][None, :]  # e_a - pi_s
        return score.reshape(S, A, S * A)


class LinearSoftmaxPolicy(_SoftmaxPolicy):
    r"""Linear softmax: pi(a|s) ∝ exp(w^T phi(s,a)), features ``phi[s, a, :]``.

    ``features`` has shape ``(S, A, n_params)``.  With one-hot features
    (:func:`one_hot_features`) it is the tabular softmax.
    """

    def __init__(self, features):
        phi = _as_float_array(features, "features", 3)
        if min(phi.shape) < 1:
            raise ValueError(
                f"features must have shape (S, A, d) with S, A, d >= 1, got {phi.shape}"
            )
        self.features = phi
        self.n_states, self.n_actions, self.n_params = phi.shape

    def logits(self, theta):
        """l[s, a] = w^T phi(s, a); shape (S, A)."""
        return self.features @ self._check_theta(theta)

    def grad_log_prob(self, theta):
        r"""grad_w log pi(a|s) = phi(s,a) - sum_b pi(b|s) phi(s,b); shape (S, A, d)."""
        pi = self.probs(theta)
        mean_phi = np.einsum("sb,sbi->si", pi, self.features)  # E_{b~pi(.|s)} phi(s,b)
        return self.features - mean_phi[:, None, :]


def mean_kl(policy, theta, theta_prime, state_weights):
    r"""sum_s w(s) KL(pi_theta(.|s) || pi_theta'(.|s)).

    KL(p || q) = sum_a p(a) (log p(a) - log q(a)).  Its Hessian in theta' at
    theta' = theta is the Fisher matrix weighted by ``w`` (Kakade 2002;
    verification/FORMULAS.md "Tabular MDP/Fisher").
    """
    w = np.asarray(state_weights, dtype=np.float64)
    if w.shape != (policy.n_states,):
        raise ValueError(f"state_weights must have shape ({policy.n_states},), got {w.shape}")
    log_p = policy.log_probs(theta)
    log_q = policy.log_probs(theta_prime)
    kl_per_state = np.sum(np.exp(log_p) * (log_p - log_q), axis=1)
    return float(w @ kl_per_state)


# ---------------------------------------------------------------------------
# Sampled episodes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeBatch:
    """Steps of ``n_episodes`` sampled episodes, flat and episode-major.

    All step arrays have shape ``(n_steps,)``; the steps of episode ``i`` are
    contiguous and in time order, so ``(rewards, terminated, truncated)`` is
    the 1-D rollout layout of ``minipg.kernels`` (episodes back to back).

    Attributes
    ----------
    states, actions, next_states : int64 arrays; ``s_t``, ``a_t``, ``s_{t+1}``.
    rewards : float64, ``r_t = R[s_t, a_t]``.
    t : int64, the time index of the step within its episode (0, 1, ...).
    episode : int64, the episode id (0 .. n_episodes-1).
    terminated : bool, ``s_{t+1}`` is terminal (last step, no bootstrap).
    truncated : bool, the episode was cut after this step by ``max_steps``.
    action_probs : float64, probability of ``a_t`` under the policy that
        SAMPLED it (the behaviour policy ``b(a_t|s_t)`` off-policy); the
        importance ratio of a target ``pi`` is ``pi[states, actions] /
        action_probs``.
    n_episodes : int.
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_states: np.ndarray
    t: np.ndarray
    episode: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    action_probs: np.ndarray
    n_episodes: int

    @property
    def lengths(self):
        """Number of steps of each episode, shape (n_episodes,)."""
        return np.bincount(self.episode, minlength=self.n_episodes)

    def episode_returns(self, gamma):
        r"""G_0 = sum_t gamma^t r_t of each episode, shape (n_episodes,)."""
        return np.bincount(
            self.episode, weights=float(gamma) ** self.t * self.rewards, minlength=self.n_episodes
        )


# ---------------------------------------------------------------------------
# The MDP
# ---------------------------------------------------------------------------


class TabularMDP:
    r"""A finite MDP (P, R, gamma, mu0, terminal) with exact policy evaluation.

    Parameters
    ----------
    P : array (S, A, S); ``P[s, a, s']``, each ``P[s, a, :]`` a distribution.
    R : array (S, A); expected reward of taking ``a`` in ``s``.
    gamma : float in (0, 1].  ``gamma = 1`` needs proper termination: terminal
        states must exist and be reachable from every nonterminal state (then
        every policy with full support, e.g. any softmax policy, terminates
        with probability one).
    mu0 : array (S,); start distribution, no mass on terminal states.
    terminal : optional bool array (S,).  Terminal states must be absorbing
        (``P[s, a, s] = 1``) with zero reward (``R[s, a] = 0``).

    Attributes ``P, R, gamma, mu0, terminal, n_states, n_actions, episodic``
    (``episodic``: at least one terminal state).
    """

    def __init__(self, P, R, gamma, mu0, terminal=None):
        P = _as_float_array(P, "P", 3)
        S, A, S2 = P.shape
        if S != S2 or S < 1 or A < 1:
            raise ValueError(f"P must have shape (S, A, S) with S, A >= 1, got {P.shape}")
        _check_distribution_rows(P, "P[s, a, :]")
        R = _as_float_array(R, "R", 2)
        if R.shape != (S, A):
            raise ValueError(f"R must have shape (S, A) = {(S, A)}, got {R.shape}")
        if not isinstance(gamma, numbers.Real) or not 0.0 < float(gamma) <= 1.0:
            raise ValueError(f"gamma must be a real number in (0, 1], got {gamma!r}")
        mu0 = _as_float_array(mu0, "mu0", 1)
        if mu0.shape != (S,):
            raise ValueError(f"mu0 must have shape ({S},), got {mu0.shape}")
        _check_distribution_rows(mu0, "mu0")
        if terminal is None:
            terminal = np.zeros(S, dtype=bool)
        terminal = np.asarray(terminal)
        if terminal.shape != (S,) or terminal.dtype != np.bool_:
            raise ValueError(
                f"terminal must be a boolean array of shape ({S},), "
                f"got dtype {terminal.dtype} shape {terminal.shape}"
            )
        if terminal.all():
            raise ValueError(
                "terminal marks every state terminal; at least one must be nonterminal"
            )
        for s in np.flatnonzero(terminal):
            if np.any(P[s, :, s] != 1.0):
                raise ValueError(
                    f"terminal state {s} must be absorbing: P[{s}, a, {s}] = 1 for every a"
                )
            if np.any(R[s] != 0.0):
                raise ValueError(
                    f"terminal state {s} must have zero reward: R[{s}, a] = 0 for every a"
                )
        if np.any(mu0[terminal] > 0):
            raise ValueError(
                "mu0 must put no mass on terminal states "
                "(an episode starts in a nonterminal state)"
            )

        self.P, self.R, self.mu0, self.terminal = P, R, mu0, terminal.copy()
        self.gamma = float(gamma)
        self.n_states, self.n_actions = S, A
        self.episodic = bool(terminal.any())
        for arr in (self.P, self.R, self.mu0, self.terminal):
            arr.setflags(write=False)
        if self.gamma == 1.0:
            self._check_terminal_reachable()

    def _check_terminal_reachable(self):
        """gamma = 1: every nonterminal state must reach a terminal one (graph of all (s, a))."""
        if not self.episodic:
            raise ValueError(
                "gamma = 1 needs terminal states (an episodic MDP); "
                "a continuing MDP needs gamma < 1"
            )
        can_move = self.P.max(axis=1) > 0  # s -> s' possible under some action
        reaches = self.terminal.copy()
        for _ in range(self.n_states):
            reaches = reaches | (can_move & reaches[None, :]).any(axis=1)
        stuck = np.flatnonzero(~reaches)
        if stuck.size:
            raise ValueError(
                f"gamma = 1 needs proper termination, but states {stuck.tolist()} cannot reach a "
                "terminal state under any actions"
            )

    # -- small helpers ------------------------------------------------------

    def check_policy(self, pi):
        """Validate a policy matrix pi (S, A): finite, non-negative, rows summing to 1."""
        pi = _as_float_array(pi, "pi", 2)
        if pi.shape != (self.n_states, self.n_actions):
            raise ValueError(
                f"pi must have shape (S, A) = {(self.n_states, self.n_actions)}, got {pi.shape}"
            )
        _check_distribution_rows(pi, "pi[s, :]")
        return pi

    def _check_state_weights(self, w, name):
        w = _as_float_array(w, name, 1)
        if w.shape != (self.n_states,):
            raise ValueError(f"{name} must have shape ({self.n_states},), got {w.shape}")
        if np.any(w < 0):
            raise ValueError(f"{name} must be non-negative")
        return w

    def transition_matrix(self, pi):
        r"""P_pi[s, s'] = sum_a pi(a|s) P[s, a, s'], restricted to nonterminal states.

        Rows and columns of terminal states are zero (leaving the episode), so
        the matrix is sub-stochastic when the MDP is episodic.
        """
        pi = self.check_policy(pi)
        P_pi = np.einsum("sa,sat->st", pi, self.P)
        P_pi[self.terminal, :] = 0.0
        P_pi[:, self.terminal] = 0.0
        return P_pi

    def reward_vector(self, pi):
        r"""r_pi[s] = sum_a pi(a|s) R[s, a] (zero at terminal states)."""
        pi = self.check_policy(pi)
        return np.where(self.terminal, 0.0, np.sum(pi * self.R, axis=1))

    def _resolvent_matrix(self, pi, discount):
        """I - discount * P_pi, after checking that it is invertible with a meaningful inverse."""
        P_pi = self.transition_matrix(pi)
        if discount == 1.0:
            if not self.episodic:
                raise ValueError(
                    "undiscounted quantities (gamma = 1, visit counts eta_1) need terminal "
                    "states; this MDP is continuing"
                )
            radius = np.max(np.abs(np.linalg.eigvals(P_pi)))
            if radius >= 1.0 - _PROPER_TOL:
                raise ValueError(
                    "this policy does not terminate with probability one (spectral radius of "
                    f"the sub-stochastic P_pi is {radius:.12g}); undiscounted values/visits "
                    "are infinite"
                )
        return np.eye(self.n_states) - discount * P_pi

    # -- exact policy evaluation ----------------------------------------------

    def value(self, pi):
        r"""V^pi = (I - gamma P_pi)^-1 r_pi, shape (S,) (zero at terminal states)."""
        return np.linalg.solve(self._resolvent_matrix(pi, self.gamma), self.reward_vector(pi))

    def q_value(self, pi):
        r"""Q^pi(s, a) = R[s, a] + gamma sum_s' P[s, a, s'] V^pi(s'), shape (S, A).

        Zero at terminal states.
        """
        V = self.value(pi)
        Q = self.R + self.gamma * self.P @ V
        Q[self.terminal] = 0.0
        return Q

    def advantage(self, pi):
        r"""A^pi(s, a) = Q^pi(s, a) - V^pi(s), shape (S, A)."""
        return self.q_value(pi) - self.value(pi)[:, None]

    def expected_return(self, pi):
        r"""J(pi) = mu0^T V^pi = E[sum_t gamma^t r_t]."""
        return float(self.mu0 @ self.value(pi))

    def truncated_expected_return(self, pi, horizon):
        r"""J_H(pi) = sum_{t<H} gamma^t mu0^T P_pi^t r_pi (episodes cut after H steps)."""
        horizon = _check_positive_int(horizon, "horizon")
        P_pi, r_pi = self.transition_matrix(pi), self.reward_vector(pi)
        occupancy, total = self.mu0.copy(), 0.0
        for t in range(horizon):
            total += self.gamma**t * float(occupancy @ r_pi)
            occupancy = occupancy @ P_pi  # Pr(s_{t+1} = ., not yet terminated)
        return total

    def discounted_visitation(self, pi, start=None):
        r"""eta^T = start^T (I - gamma P_pi)^-1, i.e. eta(s) = sum_t gamma^t Pr(s_t = s).

        Unnormalised; ``start`` defaults to ``mu0``.  Sums to ``1/(1-gamma)``
        for a continuing MDP.  With ``start = d_b`` it is the emphatic weighting
        ``m`` of the off-policy gradient (see :meth:`excursion_gradient`).
        """
        start = self.mu0 if start is None else self._check_state_weights(start, "start")
        M = self._resolvent_matrix(pi, self.gamma)
        return np.linalg.solve(M.T, start)

    def state_distribution(self, pi):
        r"""d = eta / sum(eta), the normalised discounted visitation.

        Equal to (1 - gamma) eta when the MDP is continuing.
        """
        eta = self.discounted_visitation(pi)
        return eta / eta.sum()

    def undiscounted_visitation(self, pi):
        r"""eta_1^T = mu0^T (I - P_pi)^-1: expected visits to each state (episodic only)."""
        M = self._resolvent_matrix(pi, 1.0)
        return np.linalg.solve(M.T, self.mu0)

    def expected_episode_length(self, pi):
        r"""E[T] = sum_s eta_1(s) (episodic only)."""
        return float(self.undiscounted_visitation(pi).sum())

    def stationary_distribution(self, pi):
        r"""d with d^T P_pi = d^T, sum d = 1 (continuing MDPs, unique stationary distribution).

        d(s) = lim_t Pr(s_t = s) for an aperiodic chain, the long-run fraction
        of time in s otherwise (the document's d^pi and d^beta).
        """
        if self.episodic:
            raise ValueError(
                "a stationary distribution needs a continuing MDP; with terminal states the "
                "chain is absorbed (use discounted_visitation or undiscounted_visitation)"
            )
        I_minus_P = np.eye(self.n_states) - self.transition_matrix(pi)
        singular_values = np.linalg.svd(I_minus_P, compute_uv=False)
        if self.n_states > 1 and singular_values[-2] < 1e-10:
            raise ValueError(
                "the Markov chain of this policy has several stationary distributions (it is not "
                "irreducible); pass the state weighting you mean explicitly"
            )
        # Solve d^T (I - P_pi) = 0 together with sum(d) = 1 (least squares, exact when consistent).
        system = np.vstack([I_minus_P.T, np.ones((1, self.n_states))])
        rhs = np.zeros(self.n_states + 1)
        rhs[-1] = 1.0
        d, *_ = np.linalg.lstsq(system, rhs, rcond=None)
        d = np.clip(d, 0.0, None)  # remove -1e-17 round-off
        return d / d.sum()

    # -- gradients ------------------------------------------------------------

    def weighted_policy_gradient(self, policy, theta, state_weights, q=None):
        r"""sum_s w(s) sum_a grad pi(a|s) Q(s, a), with Q = Q^pi unless ``q`` is given.

        Every gradient-like quantity below is this sum for some weighting ``w``
        (shape (n_params,)).  Computed as sum_{s,a} w(s) pi(a|s) Q(s,a) grad log pi(a|s).
        """
        w = self._check_state_weights(state_weights, "state_weights")
        pi = policy.probs(theta)
        if q is None:
            q = self.q_value(pi)
        q = _as_float_array(q, "q", 2)
        if q.shape != pi.shape:
            raise ValueError(f"q must have shape {pi.shape}, got {q.shape}")
        return np.einsum("s,sa,sa,sai->i", w, pi, q, policy.grad_log_prob(theta))

    def policy_gradient(self, policy, theta):
        r"""grad J = sum_s eta(s) sum_a grad pi(a|s) Q^pi(s, a) (policy gradient theorem).

        eta is the unnormalised discounted visitation from mu0.  For tabular
        logits, dJ/dtheta[s,a] = eta(s) pi(a|s) A^pi(s,a).
        """
        pi = policy.probs(theta)
        return self.weighted_policy_gradient(policy, theta, self.discounted_visitation(pi))

    def reinforce_gradient_without_gamma_t(self, policy, theta):
        r"""Mean of REINFORCE that drops gamma^t: sum_s eta_1(s) sum_a grad pi(a|s) Q_gamma(s, a).

        eta_1 = mu0^T (I - P_pi)^-1 are undiscounted visit counts (episodic
        MDPs only) and Q_gamma the discounted action values.  Not the gradient
        of any function in general (Thomas 2014; Nota & Thomas 2020).
        """
        pi = policy.probs(theta)
        return self.weighted_policy_gradient(policy, theta, self.undiscounted_visitation(pi))

    def fisher_matrix(self, policy, theta, state_weights=None):
        r"""F = sum_s w(s) sum_a pi(a|s) grad log pi(a|s) grad log pi(a|s)^T, shape (n, n).

        ``w`` defaults to the normalised discounted visitation d, so F =
        E_{s~d, a~pi}[grad log pi grad log pi^T].  For tabular logits F =
        blockdiag_s w(s) (diag pi_s - pi_s pi_s^T).
        """
        pi = policy.probs(theta)
        w = (
            self.state_distribution(pi)
            if state_weights is None
            else self._check_state_weights(state_weights, "state_weights")
        )
        return policy.fisher_matrix(theta, w)

    # -- off-policy (stationary behaviour distribution d_b, see module docstring) --

    def off_policy_gradient(self, policy, theta, d_b):
        r"""Degris et al. (2012): g = sum_s d_b(s) sum_a grad pi(a|s) Q^pi(s, a).

        The expectation of E_{s~d_b, a~b}[pi(a|s)/b(a|s) grad log pi(a|s) Q^pi(s,a)]
        for any behaviour b with the same support.  It omits the sum_a pi grad Q
        term, so it is neither grad J_beta nor the on-policy grad J.
        """
        return self.weighted_policy_gradient(policy, theta, d_b)

    def excursion_objective(self, pi, d_b):
        r"""J_beta(pi) = sum_s d_b(s) V^pi(s) (the off-policy objective, d_b held fixed)."""
        d_b = self._check_state_weights(d_b, "d_b")
        return float(d_b @ self.value(pi))

    def emphatic_weighting(self, pi, d_b):
        r"""m^T = d_b^T (I - gamma P_pi)^-1 (Imani et al. 2018), shape (S,)."""
        return self.discounted_visitation(pi, start=d_b)

    def excursion_gradient(self, policy, theta, d_b):
        r"""True grad J_beta = sum_s m(s) sum_a grad pi(a|s) Q^pi(s, a).

        m^T = d_b^T (I - gamma P_pi)^-1 is the emphatic weighting (Imani et al. 2018).
        """
        pi = policy.probs(theta)
        return self.weighted_policy_gradient(policy, theta, self.emphatic_weighting(pi, d_b))

    # -- optimal control ------------------------------------------------------

    def _bellman_optimality_q(self, V):
        r"""(T* V) as Q: R + gamma P V, zero at terminal states."""
        Q = self.R + self.gamma * self.P @ V
        Q[self.terminal] = 0.0
        return Q

    def optimal_policy(self, max_iter=10_000):
        r"""A deterministic optimal policy pi* (one-hot rows, shape (S, A)) by policy iteration.

        Evaluate V^pi exactly, improve pi(s) <- argmax_a R + gamma P V^pi (keeping
        the current action on ties), stop when nothing changes (Howard 1960).
        Starts from the uniform policy (proper when gamma = 1).
        """
        S, A = self.n_states, self.n_actions
        actions = None
        pi = np.full((S, A), 1.0 / A)
        for _ in range(max_iter):
            try:
                Q = self._bellman_optimality_q(self.value(pi))
            except ValueError as exc:
                raise ValueError(
                    "policy iteration met a policy that never terminates; with gamma = 1 the "
                    "optimal value may be unbounded (a positive-reward cycle)"
                ) from exc
            best = Q.max(axis=1)
            tie_tol = 1e-12 * (1.0 + np.abs(best))
            greedy = Q.argmax(axis=1)
            if actions is not None:
                keep = Q[np.arange(S), actions] >= best - tie_tol
                greedy = np.where(keep, actions, greedy)
                if np.array_equal(greedy, actions):
                    return pi
            actions = greedy
            pi = np.eye(A)[actions]
        raise RuntimeError(f"policy iteration did not converge in {max_iter} iterations")

    def optimal_values(self):
        r"""(V*, Q*): V*(s) = max_a Q*(s, a), Q* = R + gamma P V* (Bellman optimality)."""
        pi_star = self.optimal_policy()
        V = self.value(pi_star)
        return V, self._bellman_optimality_q(V)

    def optimal_return(self):
        r"""J* = mu0^T V*."""
        return float(self.mu0 @ self.optimal_values()[0])

    # -- sampling -------------------------------------------------------------

    def sample_episodes(self, pi, n_episodes, rng, max_steps=None, start=None):
        r"""Sample ``n_episodes`` episodes of policy ``pi``, vectorised over episodes.

        s_0 ~ start (default mu0), a_t ~ pi(.|s_t), r_t = R[s_t, a_t],
        s_{t+1} ~ P[s_t, a_t, .].  An episode ends when it enters a terminal
        state (``terminated``) or after ``max_steps`` steps (``truncated``);
        ``max_steps`` is required for a continuing MDP.  Off-policy: pass the
        behaviour policy as ``pi``; ``action_probs`` records b(a_t|s_t).

        Returns an :class:`EpisodeBatch` (flat, episode-major).
        """
        pi = self.check_policy(pi)
        n_episodes = _check_positive_int(n_episodes, "n_episodes")
        _check_rng(rng)
        if max_steps is None:
            if not self.episodic:
                raise ValueError("max_steps is required for a continuing MDP (no terminal states)")
        else:
            max_steps = _check_positive_int(max_steps, "max_steps")
        start = self.mu0 if start is None else self._check_state_weights(start, "start")
        if abs(start.sum() - 1.0) > _SUM_TOL or np.any(start[self.terminal] > 0):
            raise ValueError("start must be a distribution over nonterminal states")

        def cdf(p):  # cumulative sums with an exact 1 at the end (round-off never picks past it)
            c = np.cumsum(p, axis=-1)
            c[..., -1] = 1.0
            return c

        pi_cdf, P_cdf, start_cdf = cdf(pi), cdf(self.P), cdf(start)
        episode = np.arange(n_episodes)
        s = _sample_categorical(
            np.broadcast_to(start_cdf, (n_episodes, self.n_states)), rng.random(n_episodes)
        )
        chunks, t = [], 0
        while episode.size:
            a = _sample_categorical(pi_cdf[s], rng.random(episode.size))
            s_next = _sample_categorical(P_cdf[s, a], rng.random(episode.size))
            terminated = self.terminal[s_next]
            truncated = ~terminated & (max_steps is not None and t + 1 >= max_steps)
            time_index = np.full(episode.size, t)
            chunks.append(
                (s, a, self.R[s, a], s_next, time_index, episode, terminated, truncated, pi[s, a])
            )
            going_on = ~(terminated | truncated)
            episode, s, t = episode[going_on], s_next[going_on], t + 1
        columns = [np.concatenate(col) for col in zip(*chunks)]
        # episode-major; a stable sort keeps the time order within each episode
        order = np.argsort(columns[5], kind="stable")
        columns = [col[order] for col in columns]
        return EpisodeBatch(*columns, n_episodes=n_episodes)

    def sample_state_actions(self, state_weights, pi, n, rng):
        r"""n i.i.d. pairs s ~ w / sum(w), a ~ pi(.|s); returns (states, actions), int64 (n,).

        E.g. ``state_weights = d_b`` and ``pi = b`` for the off-policy
        estimator's sampling distribution, without any Markov-chain correlation.
        """
        w = self._check_state_weights(state_weights, "state_weights")
        pi = self.check_policy(pi)
        n = _check_positive_int(n, "n")
        _check_rng(rng)
        w_cdf = np.cumsum(w / w.sum())
        w_cdf[-1] = 1.0
        pi_cdf = np.cumsum(pi, axis=1)
        pi_cdf[:, -1] = 1.0
        states = _sample_categorical(np.broadcast_to(w_cdf, (n, self.n_states)), rng.random(n))
        actions = _sample_categorical(pi_cdf[states], rng.random(n))
        return states, actions


# ---------------------------------------------------------------------------
# gymnasium wrapper
# ---------------------------------------------------------------------------


class TabularMDPEnv(gym.Env):
    """A :class:`TabularMDP` as a gymnasium environment.

    Actions ``Discrete(A)``; observations a one-hot ``Box(0, 1, (S,), float64)``
    (``obs="onehot"``) or the state index ``Discrete(S)`` (``obs="index"``).
    Rewards ``R[s, a]``; ``terminated`` when a terminal state is entered;
    ``truncated`` after ``max_episode_steps`` steps (None: never).  The
    environment does not discount: the discounted return is the agent's sum.
    ``info["state"]`` is the state index.  Seed with ``reset(seed=...)``.
    """

    metadata = {"render_modes": []}

    def __init__(self, mdp, max_episode_steps=None, obs="onehot"):
        if not isinstance(mdp, TabularMDP):
            raise TypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
        if obs not in ("onehot", "index"):
            raise ValueError(f"obs must be 'onehot' or 'index', got {obs!r}")
        if max_episode_steps is not None:
            max_episode_steps = _check_positive_int(max_episode_steps, "max_episode_steps")
        self.mdp, self.max_episode_steps, self.obs_mode = mdp, max_episode_steps, obs
        self.action_space = gym.spaces.Discrete(mdp.n_actions)
        if obs == "onehot":
            self.observation_space = gym.spaces.Box(0.0, 1.0, (mdp.n_states,), dtype=np.float64)
        else:
            self.observation_space = gym.spaces.Discrete(mdp.n_states)
        self._state, self._t = None, 0

    def _observation(self, s):
        if self.obs_mode == "index":
            return np.int64(s)
        one_hot = np.zeros(self.mdp.n_states)
        one_hot[s] = 1.0
        return one_hot

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.mu0))
        self._t = 0
        return self._observation(self._state), {"state": self._state}

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self.mdp.terminal[self._state]:
            raise RuntimeError("the episode has terminated; call reset()")
        if not self.action_space.contains(action):
            try:
                action = int(action)
            except (TypeError, ValueError):
                action = -1
            if not 0 <= action < self.mdp.n_actions:
                raise ValueError(
                    f"action must be an integer in [0, {self.mdp.n_actions}), got {action!r}"
                )
        a, s = int(action), self._state
        reward = float(self.mdp.R[s, a])
        s_next = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.P[s, a]))
        self._state, self._t = s_next, self._t + 1
        terminated = bool(self.mdp.terminal[s_next])
        truncated = (
            (not terminated)
            and self.max_episode_steps is not None
            and self._t >= self.max_episode_steps
        )
        return self._observation(s_next), reward, terminated, bool(truncated), {"state": s_next}


# ---------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------


def random_mdp(
    n_states,
    n_actions,
    seed,
    gamma=0.9,
    n_terminal=0,
    terminal_prob=0.2,
    reward_scale=1.0,
    concentration=1.0,
):
    r"""A random MDP: P[s, a, .] ~ Dirichlet(concentration), R ~ N(0, reward_scale^2).

    ``n_states`` counts all states; the last ``n_terminal`` are terminal.
    From every nonterminal (s, a) the episode terminates with probability
    ``terminal_prob`` (spread uniformly over the terminal states), so every
    policy terminates and ``gamma = 1`` is allowed when ``n_terminal > 0``.
    mu0 ~ Dirichlet(1) has full support on the nonterminal states.
    """
    n_states = _check_positive_int(n_states, "n_states")
    n_actions = _check_positive_int(n_actions, "n_actions")
    if not isinstance(n_terminal, numbers.Integral) or not 0 <= n_terminal < n_states:
        raise ValueError(f"n_terminal must be an integer in [0, n_states), got {n_terminal!r}")
    if n_terminal > 0 and not 0.0 < terminal_prob <= 1.0:
        raise ValueError(
            "terminal_prob must be in (0, 1] when there are terminal states, "
            f"got {terminal_prob!r}"
        )
    rng = np.random.default_rng(seed)
    n_live = n_states - n_terminal
    P = np.zeros((n_states, n_actions, n_states))
    live_part = rng.dirichlet(np.full(n_live, float(concentration)), size=(n_live, n_actions))
    if n_terminal:
        P[:n_live, :, :n_live] = (1.0 - terminal_prob) * live_part
        P[:n_live, :, n_live:] = terminal_prob / n_terminal
        for s in range(n_live, n_states):
            P[s, :, s] = 1.0  # absorbing
    else:
        P[:, :, :] = live_part
    R = np.zeros((n_states, n_actions))
    R[:n_live] = reward_scale * rng.standard_normal((n_live, n_actions))
    mu0 = np.zeros(n_states)
    mu0[:n_live] = rng.dirichlet(np.ones(n_live))
    terminal = np.arange(n_states) >= n_live
    return TabularMDP(P, R, gamma, mu0, terminal)


def random_features(n_states, n_actions, n_features, seed):
    """Features phi[s, a, :] ~ N(0, 1) for a :class:`LinearSoftmaxPolicy`, shape (S, A, d)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_states, n_actions, n_features))


def one_hot_features(n_states, n_actions):
    """phi(s, a) = e_{s*A + a}: with these, the linear softmax is the tabular softmax."""
    return np.eye(n_states * n_actions).reshape(n_states, n_actions, n_states * n_actions)


def two_state_mdp(gamma=0.9, rewards=(1.0, 0.0), mu0=(1.0, 0.0)):
    r"""Two states, two actions (0 = stay, 1 = switch), reward r_s for acting in state s.

    Deterministic moves: ``stay`` keeps the state, ``switch`` goes to the other
    one; ``R[s, a] = rewards[s]``.  With p_s = pi(stay|s),
    P_pi = [[p0, 1-p0], [1-p1, p1]] and, by Cramer's rule,

        D  = (1 - gamma p0)(1 - gamma p1) - gamma^2 (1-p0)(1-p1)
        V0 = [(1 - gamma p1) r0 + gamma (1-p0) r1] / D
        V1 = [gamma (1-p1) r0 + (1 - gamma p0) r1] / D,

    so J = mu0 . V and its gradient can be written by hand (tests do).
    """
    P = np.zeros((2, 2, 2))
    for s in range(2):
        P[s, 0, s] = 1.0  # stay
        P[s, 1, 1 - s] = 1.0  # switch
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (2,):
        raise ValueError(f"rewards must be two numbers (r0, r1), got shape {r.shape}")
    R = np.repeat(r[:, None], 2, axis=1)
    return TabularMDP(P, R, gamma, np.asarray(mu0, dtype=np.float64))


def short_corridor(gamma=1.0):
    r"""Sutton & Barto (2018), Example 13.1: short corridor with switched actions.

    States 0, 1, 2 nonterminal, 3 = goal (terminal); actions 0 = left,
    1 = right; reward -1 per step; start in state 0.  State 0: left bumps into
    the wall (stays), right -> 1.  State 1 (switched): left -> 2, right -> 0.
    State 2: left -> 1, right -> goal.  With the features of
    :func:`short_corridor_features` all states look alike, so the policy is
    one probability p = pi(right); the book gives the best p ~ 0.59 with
    value ~ -11.6 (exactly p = 2 - sqrt 2, J = -(6 + 4 sqrt 2) for gamma = 1).
    """
    LEFT, RIGHT, GOAL = 0, 1, 3
    P = np.zeros((4, 2, 4))
    P[0, LEFT, 0] = P[0, RIGHT, 1] = 1.0
    P[1, LEFT, 2] = P[1, RIGHT, 0] = 1.0  # the switched state
    P[2, LEFT, 1] = P[2, RIGHT, GOAL] = 1.0
    P[GOAL, :, GOAL] = 1.0
    R = np.full((4, 2), -1.0)
    R[GOAL] = 0.0
    terminal = np.array([False, False, False, True])
    return TabularMDP(P, R, gamma, np.array([1.0, 0.0, 0.0, 0.0]), terminal)


def short_corridor_features():
    r"""Example 13.1's features, shape (4, 2, 2).

    phi(s, right) = [1, 0] and phi(s, left) = [0, 1] in every state.
    """
    phi = np.zeros((4, 2, 2))
    phi[:, 1, 0] = 1.0  # right
    phi[:, 0, 1] = 1.0  # left
    return phi
