r"""``minipg audit`` checks of the classical estimators: REINFORCE, actor-critic,
off-policy actor-critic and DPG, at the three levels of DESIGN.md.

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "Policy
Gradient Theorem", "REINFORCE", "Actor-Critic", "Off-Policy Policy Gradient"
and "DPG".  Papers: R. Sutton & A. Barto, *Reinforcement Learning: An
Introduction*, 2nd ed. (2018), secs. 13.2-13.5; P. Thomas, "Bias in natural
actor-critic algorithms", ICML 2014, and C. Nota & P. Thomas, "Is the policy
gradient a gradient?", AAMAS 2020 (REINFORCE without gamma^t); T. Degris,
M. White & R. Sutton, "Off-policy actor-critic", ICML 2012; D. Silver et al.,
"Deterministic policy gradient algorithms", ICML 2014, Theorem 1.  Exact
quantities: ``VERIFICATION.md`` and :mod:`minipg.envs.tabular`,
:mod:`minipg.envs.lqr`.

Levels, per estimator
---------------------
``gradcheck``
    :func:`minipg.autodiff.gradcheck` of the objective as a function of the
    policy parameters on a small seeded batch, float64, CONTRIBUTING.md's
    tolerances (eps 1e-6, atol 1e-7, rtol 1e-6).  The statistic is the worst
    |autodiff - central difference| / (atol + rtol |central difference|)
    (pass: <= 1).
``formula``
    The autodiff gradient of the objective against the closed form of the
    document, written here in NumPy by hand (linear-softmax score
    ``phi(s,a) - sum_b pi(b|s) phi(s,b)``; for DPG the chain rule through
    ``mu(x) = K x``).  Statistic: max |difference| / scale, scale = the largest
    sum of absolute per-step terms of one component; the two sides add the
    same float64 terms in different orders, so they agree to ~n * 1e-16 of
    that scale; the threshold 1e-12 leaves a margin of ~10x for the few
    hundred steps used.
``exact``
    On a problem whose gradient is known exactly, the Monte-Carlo mean of the
    estimator against the theorem, by Hotelling's T^2 test at a stated
    confidence level (99.9% by default).

How the exact-level samples come from minipg's estimators
---------------------------------------------------------
The statistical test needs one gradient estimate per episode (or per i.i.d.
sample), g_1 .. g_n, not only their mean.  Every estimator here is a sum over
steps of a held-constant weight times a score, ``grad_theta L = sum_t w_t grad
log pi(a_t|s_t)`` (``w_t = gamma^t (G_t - b_t) / n_episodes`` for REINFORCE,
``I_t Q_t / N`` for the actor, ``rho_t Q_t / N`` off-policy), so
:func:`split_gradient` runs the minipg objective ONCE on the whole batch, with
``log_prob`` on the tape (``log_softmax(phi @ theta)[s_t, a_t]``, minipg ops)
plus a zero leaf, and reads both ``dL/dtheta`` and ``w_t = dL/dlog_prob_t``
from one reverse pass.  The per-episode estimate is then ``g_i = scale *
sum_{t in episode i} w_t grad log pi(a_t|s_t)`` with the closed-form score
rows of :class:`~minipg.envs.tabular.LinearSoftmaxPolicy`; ``scale`` undoes
the estimator's own normalisation (n_episodes for REINFORCE, the number of
steps for the batch-mean actor objectives).  Every batch is checked: ``sum_i
g_i / scale`` must equal the autodiff ``dL/dtheta`` (relative 1e-10), else a
RuntimeError; so the samples are exactly the estimator's gradient, split by
episode.  DPG is the same with the action: ``u = x K^T + 0`` gives
``dL/du_i = grad_u Q(x_i, mu(x_i)) / N`` and ``g_i = N dL/du_i x_i^T``.

Statistical method
------------------
:func:`hotelling_test`: for n i.i.d. p-vectors with mean gbar and sample
covariance S, ``T^2 = n (gbar - g0)^T S^-1 (gbar - g0)``; under H0: E[g] = g0
(and normality, which the central limit theorem gives for the mean at these
n), ``(n - p) / (p (n - 1)) T^2 ~ F(p, n - p)``, so H0 is rejected when T^2
exceeds ``p (n - 1) / (n - p) F_{1-alpha}(p, n - p)`` (scipy.stats.f).  The
per-component z-scores with their Bonferroni bound at the same level are
reported beside it.  Seeds are fixed, so each outcome is reproducible; a
correct estimator fails one such test with probability 1 - confidence.
:func:`variance_comparison`: a paired one-sided z-test that the trace of the
covariance is smaller with a baseline (same episodes, both estimators).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from scipy.stats import f as f_distribution
from scipy.stats import norm

from minipg.autodiff import GradcheckError, Tensor, grad, gradcheck, ops, value_and_grad
from minipg.envs.lqr import LQR, random_lqr
from minipg.envs.tabular import (EpisodeBatch, LinearSoftmaxPolicy, TabularMDP,
                                 random_features, random_mdp)
from minipg.estimators.actor_critic import actor_objective
from minipg.estimators.dpg import dpg_actor_gradient, dpg_actor_objective
from minipg.estimators.off_policy import off_policy_actor_objective
from minipg.estimators.reinforce import (episode_discounts, episode_time_index,
                                         reinforce_objective)
from minipg.kernels import discounted_returns

from . import Result, audit_check

__all__ = [
    "CONFIDENCE", "MeanTest", "hotelling_test", "VarianceComparison", "variance_comparison",
    "step_log_prob", "split_gradient", "episodic_bed", "continuing_bed", "lqr_bed",
    "reinforce_estimates", "actor_critic_estimates", "off_policy_estimates", "dpg_estimates",
    "SAMPLE_SIZES",
]

CONFIDENCE = 0.999  # the confidence level of every statistical check here

# gradcheck tolerances of CONTRIBUTING.md ("Test tolerances"), float64
_GRADCHECK = dict(eps=1e-6, atol=1e-7, rtol=1e-6)
# autodiff vs closed form of the same sum (see the module docstring)
_FORMULA_TOL = 1e-12
# sum_i g_i / scale vs the autodiff gradient of the whole batch (and the value vs
# sum_t w_t log_prob_t): the same terms summed in two orders over up to ~1e6 steps,
# relative to the sum of their absolute values (rounding ~1e-16 * sqrt(N) typically)
_SPLIT_TOL = 1e-10


# ===================================================================== statistics

@dataclass(frozen=True)
class MeanTest:
    """Hotelling's T^2 test of H0: E[g] = target from n i.i.d. p-vectors.

    ``threshold`` is the critical T^2 at ``confidence`` for ``dof`` degrees of
    freedom (p, or the rank of the samples' span with ``span_only``); ``z``
    the per-component z-scores (gbar_k - target_k) / (s_k / sqrt(n)) and
    ``z_threshold`` their two-sided Bonferroni bound at the same level."""
    t2: float
    threshold: float
    z: np.ndarray
    z_threshold: float
    n: int
    p: int
    dof: int
    confidence: float

    @property
    def rejected(self):
        """True when T^2 exceeds its critical value (H0 rejected)."""
        return bool(self.t2 > self.threshold)

    @property
    def max_abs_z(self):
        return float(np.max(np.abs(self.z)))

    def describe(self):
        """One line: the statistic, its threshold, max |z| and the level."""
        dims = f"p={self.p}" if self.dof == self.p else f"p={self.p}, span {self.dof}"
        return (f"Hotelling T^2 {self.t2:.3g} (crit {self.threshold:.3g}; {dims}, "
                f"n={self.n}, {100 * self.confidence:g}%), max|z| {self.max_abs_z:.3g} "
                f"(Bonferroni {self.z_threshold:.3g})")


def _check_confidence(confidence):
    if (isinstance(confidence, (bool, np.bool_)) or not isinstance(confidence, numbers.Real)
            or not 0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence must be a number in (0, 1) (e.g. 0.999); got "
                         f"{confidence!r}")
    return float(confidence)


def _check_samples(samples, name):
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, p) (one p-vector per sample) or (n,); "
                         f"got shape {np.shape(samples)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


# eigenvalues of the sample covariance below this fraction of the largest are
# round-off of an exactly degenerate direction (the samples lie in a subspace)
_SPAN_TOL = 1e-10


def hotelling_test(samples, target, confidence=CONFIDENCE, span_only=False):
    r"""Hotelling's one-sample T^2 test of H0: E[g] = ``target``.

    Parameters
    ----------
    samples : array (n, p) (or (n,) for p = 1) -- i.i.d. estimates g_i.
    target : array (p,) (or a number for p = 1) -- the hypothesised mean.
    confidence : float in (0, 1) -- 1 - alpha.
    span_only : bool -- False: the sample covariance must be non-singular
        (else ValueError).  True: the samples may lie in an r-dimensional
        subspace (e.g. DPG on an LQR with fewer actions than states: every
        estimate is M x x^T with x x^T symmetric); T^2 is computed in that
        span with r degrees of freedom, and a target with a component
        outside the span (more than 1e-8 of its norm) gives T^2 = inf: no
        mean of such samples can equal it.

    T^2 = n (gbar - g0)^T S^-1 (gbar - g0), S the sample covariance (ddof 1);
    critical value r (n - 1) / (n - r) F_{confidence}(r, n - r), r = p unless
    ``span_only``.  Returns a :class:`MeanTest`.
    """
    confidence = _check_confidence(confidence)
    x = _check_samples(samples, "samples")
    n, p = x.shape
    g0 = np.asarray(target, dtype=np.float64).reshape(-1)
    if g0.shape != (p,) or not np.all(np.isfinite(g0)):
        raise ValueError(f"target must be a finite vector of shape ({p},) to match samples "
                         f"{x.shape}; got shape {np.shape(target)}")
    if n <= p + 1:
        raise ValueError(f"hotelling_test needs more samples than dimensions + 1; got n={n}, "
                         f"p={p}")
    mean = x.mean(axis=0)
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    variances = np.diag(cov)
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    keep = eigenvalues > _SPAN_TOL * max(float(eigenvalues[-1]), 0.0)
    if np.any(variances <= 0) or (not span_only and not keep.all()):
        raise ValueError("the sample covariance is singular (a component is constant or the "
                         "components are collinear); accepted: samples whose covariance is "
                         "non-singular, or span_only=True to test within their span")
    diff = mean - g0
    coords = eigenvectors.T @ diff                                  # diff in the eigenbasis
    dof = int(keep.sum())
    t2 = float(n * np.sum(coords[keep] ** 2 / eigenvalues[keep]))  # n d^T S^+ d
    outside = float(np.linalg.norm(coords[~keep]))
    if outside > 1e-8 * max(float(np.linalg.norm(g0)), float(np.linalg.norm(mean))):
        t2 = float("inf")                                          # target off the span
    threshold = dof * (n - 1) / (n - dof) * float(f_distribution.ppf(confidence, dof, n - dof))
    z = diff / np.sqrt(variances / n)
    z_threshold = float(norm.ppf(1.0 - (1.0 - confidence) / (2 * p)))   # Bonferroni
    return MeanTest(t2, threshold, z, z_threshold, n, p, dof, confidence)


@dataclass(frozen=True)
class VarianceComparison:
    """Paired comparison of tr Cov(a) and tr Cov(b) from the same n draws.

    ``ratio`` = tr Cov(a) / tr Cov(b); ``z`` the z-score of the paired
    differences D_i = |a_i - abar|^2 - |b_i - bbar|^2 (mean tr Cov(a) - tr Cov(b));
    ``smaller`` is the one-sided test of tr Cov(a) < tr Cov(b) at ``confidence``."""
    ratio: float
    z: float
    z_threshold: float
    n: int
    confidence: float

    @property
    def smaller(self):
        return bool(self.z < -self.z_threshold)


def variance_comparison(samples_a, samples_b, confidence=CONFIDENCE):
    """Is the total variance of ``samples_a`` smaller than that of ``samples_b``? (paired)."""
    confidence = _check_confidence(confidence)
    a = _check_samples(samples_a, "samples_a")
    b = _check_samples(samples_b, "samples_b")
    if a.shape != b.shape or a.shape[0] < 3:
        raise ValueError(f"samples_a and samples_b must be paired draws of one shape (n, p), "
                         f"n >= 3; got {a.shape} and {b.shape}")
    spread_a = np.sum((a - a.mean(axis=0)) ** 2, axis=1)
    spread_b = np.sum((b - b.mean(axis=0)) ** 2, axis=1)
    d = spread_a - spread_b
    z = float(d.mean() / (d.std(ddof=1) / np.sqrt(d.size)))
    return VarianceComparison(float(spread_a.mean() / spread_b.mean()), z,
                              float(norm.ppf(confidence)), a.shape[0], confidence)


# ============================================ per-episode samples from minipg estimators

def step_log_prob(features, theta, states, actions):
    r"""log pi_theta(a_t|s_t) on the tape, for the linear softmax pi ∝ exp(phi(s,a)^T theta).

    ``features`` (S, A, d) array, ``theta`` a Tensor (d,), ``states`` and
    ``actions`` int arrays (N,).  Built with minipg ops: the table
    ``log_softmax(phi @ theta)`` of shape (S, A), then one entry per step.
    """
    log_pi = ops.log_softmax(ops.matmul(features, theta), axis=-1)   # (S, A)
    return ops.getitem(log_pi, (states, actions))                     # (N,)


def _segment_sum(rows, groups, n_groups):
    """sum of rows[t] over the t with groups[t] = k, for k = 0 .. n_groups - 1."""
    return np.stack([np.bincount(groups, weights=rows[:, j], minlength=n_groups)
                     for j in range(rows.shape[1])], axis=1)


def split_gradient(objective, policy, theta, states, actions, groups, n_groups, scale):
    r"""The autodiff gradient of a minipg objective, split into per-group estimates.

    ``objective(log_prob) -> scalar Tensor`` must be linear in ``log_prob``
    with held-constant per-step weights, ``L = sum_t w_t log_prob_t`` (every
    policy-gradient surrogate here is: the weights are plain arrays by the
    estimators' contract).  One reverse pass through
    ``objective(step_log_prob(...) + zero)`` gives ``dL/dtheta`` and ``w_t =
    dL/dlog_prob_t``; then

        g_k = scale * sum_{t: groups[t] = k} w_t grad_theta log pi(a_t|s_t)

    with the closed-form score rows of ``policy``
    (:class:`~minipg.envs.tabular.LinearSoftmaxPolicy`).  ``scale`` undoes the
    objective's normalisation so that each g_k is one episode's (or one
    sample's) estimate.  Two checks, each raising RuntimeError: linearity
    (the value L equals ``sum_t w_t log_prob_t``, Euler's relation for a
    function homogeneous of degree one), and the assembly (``sum_k g_k /
    scale`` equals the autodiff ``dL/dtheta``: the closed-form score rows are
    the tape's).  For the g_k to be i.i.d., each w_t must depend only on its
    own group's data (true of every objective used here; a batch-normalised
    advantage would not be, and no check can see that).  Returns an array
    (n_groups, d).
    """
    if not isinstance(policy, LinearSoftmaxPolicy):
        raise TypeError(f"policy must be a LinearSoftmaxPolicy (its features define the "
                        f"policy on the tape); got {type(policy).__name__}")
    theta = np.asarray(theta, dtype=np.float64)
    features = policy.features
    log_prob = step_log_prob(features, Tensor(theta), states, actions).data

    def surrogate(theta_t, zero):
        # + zero: a leaf whose gradient is dL/dlog_prob (the value is unchanged)
        return objective(step_log_prob(features, theta_t, states, actions) + zero)

    value, (d_theta, weights) = value_and_grad(surrogate, argnums=(0, 1))(
        theta, np.zeros(len(states)))
    if abs(float(value) - weights @ log_prob) > _SPLIT_TOL * float(np.abs(weights) @
                                                                   np.abs(log_prob)):
        raise RuntimeError("split_gradient: the objective is not linear in log_prob with "
                           "held-constant weights (its value is not sum_t w_t log_prob_t), so "
                           "its gradient does not split into per-episode estimates")
    score = policy.grad_log_prob(theta)[states, actions]             # closed-form rows (N, d)
    terms = weights[:, None] * score                                  # w_t grad log pi
    estimates = scale * _segment_sum(terms, groups, n_groups)
    total = estimates.sum(axis=0) / scale
    size = max(float(np.max(np.sum(np.abs(terms), axis=0))), 1e-300)
    if np.max(np.abs(total - d_theta)) > _SPLIT_TOL * size:
        raise RuntimeError("split_gradient: the per-group estimates do not add up to the "
                           "objective's autodiff gradient (the policy's closed-form score "
                           "rows are not the gradient of step_log_prob)")
    return estimates


def reinforce_estimates(mdp, policy, theta, batch, discounted=True, baseline=None):
    r"""Per-episode REINFORCE estimates from :func:`reinforce_objective`, shape (n_episodes, d).

    Episode i gives ``sum_t [gamma^t] (G_t - b(s_t)) grad log pi(a_t|s_t)``
    (Sutton & Barto 13.3/13.4; ``discounted=False`` drops gamma^t), with
    ``G_t`` from :func:`minipg.kernels.discounted_returns` and ``gamma^t``
    from :func:`episode_discounts`.  ``baseline``: None or an (S,) array of
    state values b(s) (e.g. the exact V^pi).  ``batch`` an
    :class:`~minipg.envs.tabular.EpisodeBatch` of the policy ``pi_theta``.
    """
    _check_batch(batch)
    returns = discounted_returns(batch.rewards, batch.terminated, batch.truncated,
                                 mdp.gamma)                              # G_t
    # gamma^t with t counted within each episode (batch.t, the sampler's step index; the same
    # as episode_time_index(terminated, truncated), which loops in Python over the steps)
    discounts = episode_discounts(batch.t, mdp.gamma) if discounted else None
    b = None if baseline is None else np.asarray(baseline, dtype=np.float64)[batch.states]

    def objective(log_prob):
        return reinforce_objective(log_prob, returns, discounts, b, batch.n_episodes)

    # the objective divides by n_episodes: one episode's estimate is n_episodes x its share
    return split_gradient(objective, policy, theta, batch.states, batch.actions,
                          batch.episode, batch.n_episodes, scale=batch.n_episodes)


def actor_critic_estimates(mdp, policy, theta, batch, discounted=True, q_values=None):
    r"""Per-episode estimates of the actor step :func:`actor_objective` with an exact critic.

    Episode i gives ``sum_t I_t Q^pi(s_t, a_t) grad log pi(a_t|s_t)``, with
    ``I_t = gamma^t`` (Sutton & Barto 13.5) or, ``discounted=False``, I = 1
    (Weng's step 2.3).  ``q_values``: the (S, A) critic, default the exact
    Q^pi.
    """
    _check_batch(batch)
    pi = policy.probs(theta)
    Q = mdp.q_value(pi) if q_values is None else np.asarray(q_values, dtype=np.float64)
    discount_I = episode_discounts(batch.t, mdp.gamma) if discounted else None  # I_t = gamma^t

    def objective(log_prob):
        return actor_objective(log_prob, Q[batch.states, batch.actions], discount_I)

    # actor_objective is a mean over the N steps: one episode's estimate is N x its share
    return split_gradient(objective, policy, theta, batch.states, batch.actions,
                          batch.episode, batch.n_episodes, scale=len(batch.states))


def off_policy_estimates(mdp, policy, theta, behaviour, states, actions,
                         importance_weighted=True):
    r"""Per-sample estimates of :func:`off_policy_actor_objective` with the exact Q^pi.

    Sample i, ``(s_i, a_i) ~ d^b(s) b(a|s)``, gives
    ``pi(a_i|s_i) / b(a_i|s_i) Q^pi(s_i, a_i) grad log pi(a_i|s_i)`` (Degris et
    al. 2012, sec. 2), the ratio formed by the estimator from ``log_prob`` and
    the recorded ``b(a_i|s_i)``.  ``importance_weighted=False`` is the
    deliberate mistake: the on-policy :func:`actor_objective` on off-policy
    data (no ratio).  Shape (n, d).
    """
    pi = policy.probs(theta)
    q = mdp.q_value(pi)[states, actions]
    behaviour_prob = np.asarray(behaviour, dtype=np.float64)[states, actions]  # b(a_i|s_i)

    def objective(log_prob):
        if importance_weighted:
            return off_policy_actor_objective(log_prob, behaviour_prob, q)
        return actor_objective(log_prob, q)

    n = len(states)
    return split_gradient(objective, policy, theta, states, actions, np.arange(n), n, scale=n)


def _lqr_q_of_action(lqr, K_critic, x, u):
    r"""Q^K(x, u) in rewards, on the tape in ``u``: -([x;u]^T H [x;u] + c), H from the critic's K.

    The critic is exact and held fixed (its K is a plain array)."""
    n = lqr.n_state
    H = lqr.q_matrix(K_critic)
    c = lqr.q_constant(K_critic)
    x_cost = np.einsum("ni,ij,nj->n", x, H[:n, :n], x)                 # x^T H_xx x
    cross = ops.sum(ops.matmul(x, H[:n, n:]) * u, axis=-1)              # x^T H_xu u
    u_cost = ops.sum(ops.matmul(u, H[n:, n:]) * u, axis=-1)             # u^T H_uu u
    return -(x_cost + 2.0 * cross + u_cost + c)


def dpg_estimates(lqr, K, states):
    r"""Per-state DPG estimates from :func:`dpg_actor_objective`, shape (n, m * n_state).

    The actor mu(x) = K x and the exact critic Q^K (a quadratic, held fixed)
    are written with minipg ops; one reverse pass through
    ``dpg_actor_objective(Q(x, x K^T + 0))`` gives ``dL/dK`` and
    ``dL/du_i = grad_u Q(x_i, mu(x_i)) / N``, so state i's estimate is
    ``N dL/du_i x_i^T`` (the Jacobian of mu = K x: d mu_k / d K_kj = x_j),
    flattened row-major.  Its mean estimates E_{x ~ rho / |rho|}[grad_u Q x^T]
    = (1 - gamma) grad_K J when ``states`` come from
    :meth:`~minipg.envs.lqr.LQR.sample_states` (normalised rho).  Raises
    RuntimeError unless the mean equals the autodiff dL/dK and
    :func:`dpg_actor_gradient` with the test bed's ``q_value_grad_u``.
    """
    if not isinstance(lqr, LQR):
        raise TypeError(f"lqr must be an LQR; got {type(lqr).__name__}")
    K = lqr.check_stable(K)
    x = np.asarray(states, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != lqr.n_state or x.shape[0] < 1:
        raise ValueError(f"states must have shape (N, {lqr.n_state}); got {np.shape(states)}")
    N = x.shape[0]

    def surrogate(K_t, zero):
        u = ops.matmul(x, ops.transpose(K_t)) + zero                    # mu(x) = K x
        return dpg_actor_objective(_lqr_q_of_action(lqr, K, x, u))

    d_K, d_u = grad(surrogate, argnums=(0, 1))(K, np.zeros((N, lqr.n_action)))
    estimates = (N * d_u[:, :, None] * x[:, None, :]).reshape(N, -1)   # grad_u Q x^T
    jacobian = np.einsum("ik,nj->nikj", np.eye(lqr.n_action), x).reshape(N, lqr.n_action, -1)
    by_formula = dpg_actor_gradient(lqr.q_value_grad_u(K, x, x @ K.T), jacobian)
    size = max(float(np.max(np.sum(np.abs(estimates), axis=0))) / N, 1e-300)
    mean = estimates.mean(axis=0)
    if (np.max(np.abs(mean - d_K.reshape(-1))) > _SPLIT_TOL * size
            or np.max(np.abs(mean - by_formula)) > _SPLIT_TOL * size):
        raise RuntimeError("dpg_estimates: the per-state estimates do not average to the "
                           "autodiff gradient of dpg_actor_objective / dpg_actor_gradient")
    return estimates


def _check_batch(batch):
    if not isinstance(batch, EpisodeBatch):
        raise TypeError(f"batch must be an EpisodeBatch (TabularMDP.sample_episodes); got "
                        f"{type(batch).__name__}")


# ================================================================== the test beds

def episodic_bed(seed=0):
    r"""(mdp, policy, theta): 5 live states + 1 terminal, 3 actions, gamma = 0.8.

    Each step terminates with probability 0.1 (mean length 10), long enough
    for gamma^t to matter: REINFORCE's two variants then have means many
    standard errors apart (``verification/results/estimators_exact.md``).
    A linear-softmax policy with 4 random features (a non-singular score
    covariance, unlike tabular logits, whose scores sum to zero per state).
    """
    mdp = random_mdp(6, 3, seed, gamma=0.8, n_terminal=1, terminal_prob=0.1)
    policy = LinearSoftmaxPolicy(random_features(6, 3, 4, seed + 1))
    theta = 0.5 * np.random.default_rng(seed + 2).standard_normal(4)
    return mdp, policy, theta


def continuing_bed(seed=0):
    r"""(mdp, policy, theta, behaviour, d_b): continuing, 5 states, 3 actions, gamma = 0.8.

    Transitions ~ Dirichlet(0.3) (peaked, so the policy moves the state
    distribution); behaviour b uniform, d_b its stationary distribution.
    The start distribution is the TARGET policy's stationary distribution
    d_pi, so that (1 - gamma) grad J_pi = sum_s d_pi(s) sum_a grad pi Q^pi --
    the off-policy gradient g with b = pi -- and g differs from it only by
    the behaviour's state weighting.
    """
    base = random_mdp(5, 3, seed, gamma=0.8, concentration=0.3)
    policy = LinearSoftmaxPolicy(random_features(5, 3, 4, seed + 1))
    theta = np.random.default_rng(seed + 2).standard_normal(4)
    d_pi = base.stationary_distribution(policy.probs(theta))
    mdp = TabularMDP(base.P, base.R, base.gamma, d_pi)
    behaviour = np.full((5, 3), 1.0 / 3.0)
    return mdp, policy, theta, behaviour, mdp.stationary_distribution(behaviour)


def lqr_bed(seed=0):
    r"""(lqr, K): a random 3-state, 2-action LQR (gamma = 0.9) and K = K*/2 (stabilising)."""
    lqr = random_lqr(3, 2, seed, gamma=0.9)
    K = lqr.check_stable(0.5 * lqr.optimal_gain())
    return lqr, K


# ================================================================ the audit checks

SAMPLE_SIZES = {  # (quick, full): episodes for the tabular beds, samples otherwise
    "reinforce": (10_000, 200_000),
    "actor_critic": (10_000, 200_000),
    "off_policy_ac": (20_000, 400_000),
    "dpg": (20_000, 200_000),
}


def _size(algorithm, full):
    return SAMPLE_SIZES[algorithm][1 if full else 0]


def _accept(test, target_name, extra=""):
    """A Result that passes when H0 (mean = target) is NOT rejected."""
    return Result(test.t2, test.threshold, not test.rejected,
                  f"{test.describe()} vs {target_name}{extra}")


def _central_difference_error(f, x, autodiff):
    """max |autodiff - numeric| / (atol + rtol |numeric|), numeric by central differences."""
    eps, atol, rtol = _GRADCHECK["eps"], _GRADCHECK["atol"], _GRADCHECK["rtol"]
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        numeric[i] = (f(Tensor(x + step)).data - f(Tensor(x - step)).data) / (2 * eps)
    return float(np.max(np.abs(autodiff - numeric) / (atol + rtol * np.abs(numeric))))


def _gradcheck_result(f, x, what):
    """Run minipg's gradcheck on f at x and report the worst normalised error."""
    x = np.asarray(x, dtype=np.float64)
    try:
        passed = gradcheck(f, [x], **_GRADCHECK)
        reason = ""
    except GradcheckError as exc:
        passed, reason = False, f"; {exc}"
    stat = _central_difference_error(f, x, grad(f)(x))
    return Result(stat, 1.0, bool(passed and stat <= 1.0),
                  f"{what}: gradcheck (vjp, jvp, eps 1e-6, atol 1e-7, rtol 1e-6, float64); "
                  f"statistic max|ad - fd| / (atol + rtol|fd|){reason}")


def _formula_result(autodiff, terms, what):
    """Compare the autodiff gradient with sum(terms) (closed form), relative to sum |terms|."""
    closed = terms.sum(axis=0)
    scale = max(float(np.max(np.sum(np.abs(terms), axis=0))), 1.0)
    stat = float(np.max(np.abs(np.asarray(autodiff).reshape(closed.shape) - closed))) / scale
    return Result(stat, _FORMULA_TOL, bool(stat <= _FORMULA_TOL),
                  f"{what}; statistic max|autodiff - closed form| / max_k sum_t|term|")


def _softmax_score_by_hand(features, theta, states, actions):
    """pi by hand and grad log pi(a|s) = phi(s,a) - sum_b pi(b|s) phi(s,b), rows (N, d)."""
    logits = features @ theta
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    pi = e / e.sum(axis=1, keepdims=True)
    mean_phi = np.einsum("sb,sbd->sd", pi, features)
    return pi, features[states, actions] - mean_phi[states]


def _returns_by_hand(rewards, episode, gamma):
    """G_t = sum_k gamma^k r_{t+k} within each episode, by a backward loop."""
    G = np.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if t == len(rewards) - 1 or episode[t + 1] != episode[t]:
            running = 0.0                                   # the episode ends after step t
        running = rewards[t] + gamma * running
        G[t] = running
    return G


# ----------------------------------------------------------------------- REINFORCE

@audit_check("reinforce", "reinforce_objective", "gradcheck")
def reinforce_gradcheck(full, rng):
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), 4, rng)
    G = discounted_returns(batch.rewards, batch.terminated, batch.truncated, mdp.gamma)
    disc = episode_discounts(batch.t, mdp.gamma)
    b = rng.standard_normal(len(G))

    def f(theta_t):
        lp = step_log_prob(policy.features, theta_t, batch.states, batch.actions)
        return reinforce_objective(lp, G, disc, b, batch.n_episodes)
    return _gradcheck_result(f, theta, "objective of theta, 4 episodes, gamma^t and baseline")


@audit_check("reinforce", "reinforce_objective", "formula")
def reinforce_formula(full, rng):
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), 20, rng)
    returns = discounted_returns(batch.rewards, batch.terminated, batch.truncated, mdp.gamma)
    t = episode_time_index(batch.terminated, batch.truncated)
    baseline = rng.standard_normal(len(returns))
    g = grad(lambda th: reinforce_objective(
        step_log_prob(policy.features, th, batch.states, batch.actions), returns,
        episode_discounts(t, mdp.gamma), baseline, batch.n_episodes))(theta)
    # (1/n) sum_t gamma^t (G_t - b_t) grad log pi, G_t and gamma^t by hand (S&B 13.3-13.4)
    G = _returns_by_hand(batch.rewards, batch.episode, mdp.gamma)
    _, score = _softmax_score_by_hand(policy.features, theta, batch.states, batch.actions)
    terms = (mdp.gamma ** batch.t * (G - baseline))[:, None] * score / batch.n_episodes
    return _formula_result(g, terms, "(1/n) sum gamma^t (G_t - b_t) grad log pi, linear "
                                     "softmax, 20 episodes")


def reinforce_exact_checks(n_episodes, rng, which=("gamma_t", "no_gamma_t", "baseline")):
    """The REINFORCE exact checks on one batch of the episodic bed.

    Returns a dict of Results for the names in ``which``: "gamma_t" (mean =
    grad J), "no_gamma_t" (mean = the eta_1-weighted quantity, and grad J
    rejected for it), "baseline" (exact V^pi baseline: mean = grad J and a
    smaller total variance than without it, same episodes)."""
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), n_episodes, rng)
    grad_J = mdp.policy_gradient(policy, theta)
    biased = mdp.reinforce_gradient_without_gamma_t(policy, theta)
    results = {}
    if "gamma_t" in which or "baseline" in which:
        with_t = reinforce_estimates(mdp, policy, theta, batch)
    if "gamma_t" in which:
        ok = hotelling_test(with_t, grad_J)
        flipped = hotelling_test(-with_t, grad_J)
        wrong_target = hotelling_test(with_t, biased)
        results["gamma_t"] = _accept(
            ok, "exact grad J", f"; sign flip T^2 {flipped.t2:.3g}, vs the eta_1 quantity "
                                f"T^2 {wrong_target.t2:.3g}")
    if "no_gamma_t" in which:
        without_t = reinforce_estimates(mdp, policy, theta, batch, discounted=False)
        own = hotelling_test(without_t, biased)
        vs_grad = hotelling_test(without_t, grad_J)
        results["no_gamma_t"] = Result(
            own.t2, own.threshold, (not own.rejected) and vs_grad.rejected,
            f"{own.describe()} vs sum_s eta_1(s) sum_a grad pi Q_gamma; the same data vs "
            f"grad J: T^2 {vs_grad.t2:.3g} (pass needs it rejected)")
    if "baseline" in which:
        V = mdp.value(policy.probs(theta))
        with_b = reinforce_estimates(mdp, policy, theta, batch, baseline=V)
        base_test = hotelling_test(with_b, grad_J)
        var = variance_comparison(with_b, with_t)
        results["baseline"] = Result(
            base_test.t2, base_test.threshold, (not base_test.rejected) and var.smaller,
            f"{base_test.describe()} vs exact grad J; tr Cov ratio with/without V baseline "
            f"{var.ratio:.3g} (paired z {var.z:.3g}, one-sided {100 * var.confidence:g}% "
            f"bound -{var.z_threshold:.3g}; pass needs both)")
    return results


@audit_check("reinforce", "reinforce_objective", "exact")
def reinforce_exact(full, rng):
    return reinforce_exact_checks(_size("reinforce", full), rng, ("gamma_t",))["gamma_t"]


@audit_check("reinforce", "reinforce (no gamma^t)", "exact")
def reinforce_without_gamma_t_exact(full, rng):
    return reinforce_exact_checks(_size("reinforce", full), rng, ("no_gamma_t",))["no_gamma_t"]


@audit_check("reinforce", "reinforce (V baseline)", "exact")
def reinforce_baseline_exact(full, rng):
    return reinforce_exact_checks(_size("reinforce", full), rng, ("baseline",))["baseline"]


# ---------------------------------------------------------------------- actor-critic

@audit_check("actor_critic", "actor_objective", "gradcheck")
def actor_critic_gradcheck(full, rng):
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), 4, rng)
    q = rng.standard_normal(len(batch.states))
    I = episode_discounts(batch.t, mdp.gamma)

    def f(theta_t):
        return actor_objective(step_log_prob(policy.features, theta_t, batch.states,
                                             batch.actions), q, I)
    return _gradcheck_result(f, theta, "objective of theta, 4 episodes, I = gamma^t")


@audit_check("actor_critic", "actor_objective", "formula")
def actor_critic_formula(full, rng):
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), 20, rng)
    q = rng.standard_normal(len(batch.states))
    I = episode_discounts(batch.t, mdp.gamma)
    g = grad(lambda th: actor_objective(
        step_log_prob(policy.features, th, batch.states, batch.actions), q, I))(theta)
    # (1/N) sum_t gamma^t Q_t grad log pi (Sutton & Barto 13.5 with Q in place of delta)
    _, score = _softmax_score_by_hand(policy.features, theta, batch.states, batch.actions)
    terms = (mdp.gamma ** batch.t * q)[:, None] * score / len(q)
    return _formula_result(g, terms, "(1/N) sum I_t Q_t grad log pi, linear softmax, 20 "
                                     "episodes")


@audit_check("actor_critic", "actor_objective", "exact")
def actor_critic_exact(full, rng):
    mdp, policy, theta = episodic_bed()
    batch = mdp.sample_episodes(policy.probs(theta), _size("actor_critic", full), rng)
    grad_J = mdp.policy_gradient(policy, theta)
    samples = actor_critic_estimates(mdp, policy, theta, batch)
    no_I = actor_critic_estimates(mdp, policy, theta, batch, discounted=False)
    ok = hotelling_test(samples, grad_J)
    missing = hotelling_test(no_I, grad_J)
    flipped = hotelling_test(-samples, grad_J)
    return _accept(ok, "exact grad J (exact Q^pi critic, I = gamma^t)",
                   f"; without I: T^2 {missing.t2:.3g}, sign flip: T^2 {flipped.t2:.3g}")


# --------------------------------------------------------------- off-policy actor-critic

def _frozen_ratio_objective(policy, theta0, behaviour_prob, q, states, actions):
    r"""The off-policy objective as a function of theta with rho frozen at theta0.

    off_policy_actor_objective holds rho = pi/b constant (it is not
    differentiated), so its gradient is NOT the derivative of its value in
    theta.  Passing ``log b = log pi_theta - log rho_0`` keeps rho = rho_0 at
    every theta, and the value's derivative is then exactly the estimator's
    gradient -- which gradcheck can test."""
    log_rho0 = (step_log_prob(policy.features, Tensor(theta0), states, actions).data
                - np.log(behaviour_prob))

    def f(theta_t):
        lp = step_log_prob(policy.features, theta_t, states, actions)
        return off_policy_actor_objective(lp, None, q, behaviour_log_prob=lp.data - log_rho0)
    return f


@audit_check("off_policy_ac", "off_policy_actor_objective", "gradcheck")
def off_policy_gradcheck(full, rng):
    mdp, policy, theta, behaviour, d_b = continuing_bed()
    states, actions = mdp.sample_state_actions(d_b, behaviour, 8, rng)
    q = rng.standard_normal(8)
    f = _frozen_ratio_objective(policy, theta, behaviour[states, actions], q, states, actions)
    return _gradcheck_result(f, theta, "objective of theta with rho = pi/b held at its value "
                                       "(as the estimator holds it), 8 samples")


@audit_check("off_policy_ac", "off_policy_actor_objective", "formula")
def off_policy_formula(full, rng):
    mdp, policy, theta, behaviour, d_b = continuing_bed()
    states, actions = mdp.sample_state_actions(d_b, behaviour, 50, rng)
    q = rng.standard_normal(50)
    b = behaviour[states, actions]
    g = grad(lambda th: off_policy_actor_objective(
        step_log_prob(policy.features, th, states, actions), b, q))(theta)
    # (1/N) sum pi(a|s)/b(a|s) Q grad log pi (Degris et al. 2012, sec. 2)
    pi, score = _softmax_score_by_hand(policy.features, theta, states, actions)
    terms = (pi[states, actions] / b * q)[:, None] * score / len(q)
    return _formula_result(g, terms, "(1/N) sum (pi/b) Q grad log pi, linear softmax, 50 "
                                     "samples")


def off_policy_exact_check(n, rng):
    """Off-policy exact check; the Result and the tests of the wrong targets."""
    mdp, policy, theta, behaviour, d_b = continuing_bed()
    states, actions = mdp.sample_state_actions(d_b, behaviour, n, rng)
    samples = off_policy_estimates(mdp, policy, theta, behaviour, states, actions)
    g = mdp.off_policy_gradient(policy, theta, d_b)
    scaled_grad_J = (1.0 - mdp.gamma) * mdp.policy_gradient(policy, theta)   # mu0 = d_pi
    scaled_grad_J_beta = (1.0 - mdp.gamma) * mdp.excursion_gradient(policy, theta, d_b)
    no_ratio = off_policy_estimates(mdp, policy, theta, behaviour, states, actions,
                                    importance_weighted=False)
    tests = {
        "g": hotelling_test(samples, g),
        "grad_J_pi": hotelling_test(samples, scaled_grad_J),
        "grad_J_beta": hotelling_test(samples, scaled_grad_J_beta),
        "no_ratio": hotelling_test(no_ratio, g),
        "sign_flip": hotelling_test(-samples, g),
    }
    result = _accept(tests["g"], "g = sum_s d_b(s) sum_a grad pi Q^pi",
                     f"; (1-gamma) grad J_pi T^2 {tests['grad_J_pi'].t2:.3g}, (1-gamma) grad "
                     f"J_beta T^2 {tests['grad_J_beta'].t2:.3g}, no ratio T^2 "
                     f"{tests['no_ratio'].t2:.3g}")
    return result, tests


@audit_check("off_policy_ac", "off_policy_actor_objective", "exact")
def off_policy_exact(full, rng):
    return off_policy_exact_check(_size("off_policy_ac", full), rng)[0]


# ------------------------------------------------------------------------------- DPG

@audit_check("dpg", "dpg_actor_objective", "gradcheck")
def dpg_gradcheck(full, rng):
    lqr, K = lqr_bed()
    x = lqr.sample_states(K, 6, rng)

    def f(K_t):
        return dpg_actor_objective(_lqr_q_of_action(lqr, K, x, ops.matmul(x, ops.transpose(K_t))))
    return _gradcheck_result(f, K, "objective of K, mu(x) = K x, exact quadratic Q held "
                                   "fixed, 6 states")


@audit_check("dpg", "dpg_actor_objective", "formula")
def dpg_formula(full, rng):
    lqr, K = lqr_bed()
    x = lqr.sample_states(K, 50, rng)
    g = grad(lambda K_t: dpg_actor_objective(
        _lqr_q_of_action(lqr, K, x, ops.matmul(x, ops.transpose(K_t)))))(K)
    # (1/N) sum grad_u Q(x, Kx) x^T, grad_u Q = -2 (H_ux x + H_uu u) (Silver et al. eq. 9)
    n = lqr.n_state
    H = lqr.q_matrix(K)
    u = x @ K.T
    grad_u_q = -2.0 * (x @ H[n:, :n].T + u @ H[n:, n:].T)
    terms = (grad_u_q[:, :, None] * x[:, None, :]).reshape(len(x), -1) / len(x)
    return _formula_result(g, terms, "(1/N) sum grad_u Q(x, Kx) x^T, linear mu, 50 states")


def dpg_exact_check(n, rng):
    """DPG exact check on the LQR bed; the Result and the tests of the wrong variants."""
    lqr, K = lqr_bed()
    x = lqr.sample_states(K, n, rng)          # normalised discounted distribution
    # E over the NORMALISED rho is (1 - gamma) grad J: divide to estimate grad_K J itself
    samples = dpg_estimates(lqr, K, x) / (1.0 - lqr.gamma)
    grad_J = lqr.return_gradient(K).reshape(-1)
    # with m < n the estimates M x x^T span m n - m(m-1)/2 dimensions: test in that span
    tests = {
        "grad_J": hotelling_test(samples, grad_J, span_only=True),
        "sign_flip": hotelling_test(-samples, grad_J, span_only=True),
        "unnormalised": hotelling_test(samples * (1.0 - lqr.gamma), grad_J, span_only=True),
    }
    result = _accept(tests["grad_J"], "exact grad_K J (states ~ rho/|rho|, estimate / "
                                      "(1-gamma))",
                     f"; sign flip T^2 {tests['sign_flip'].t2:.3g}, without 1/(1-gamma) T^2 "
                     f"{tests['unnormalised'].t2:.3g}")
    return result, tests


@audit_check("dpg", "dpg_actor_objective", "exact")
def dpg_exact(full, rng):
    return dpg_exact_check(_size("dpg", full), rng)[0]
