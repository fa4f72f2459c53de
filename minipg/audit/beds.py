r"""The exact test beds of the audit and the per-sample estimates drawn on them.

The beds are small problems whose policy gradient is known exactly (a
tabular MDP solved by linear solves, :mod:`minipg.envs.tabular`; an LQR solved
by Lyapunov equations, :mod:`minipg.envs.lqr`; the formulas are in
``verification/FORMULAS.md``, sections "Tabular MDP, softmax policy",
"Off-policy" and "LQR, deterministic linear policy").  The classical rows of
``minipg audit`` (:mod:`minipg.audit.classical`), ``tests/test_estimators_exact.py``
and ``verification/estimators_exact.py`` draw their samples here; the
on-policy rows split their estimators with :func:`split_gradient` on a bed of
their own (:func:`minipg.audit.onpolicy.exact_bed`).

How the samples come from minipg's estimators
---------------------------------------------
A statistical test needs one gradient estimate per episode (or per i.i.d.
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
"""

from __future__ import annotations

import numpy as np

from minipg.autodiff import Tensor, grad, ops, value_and_grad
from minipg.envs.lqr import LQR, random_lqr
from minipg.envs.tabular import (EpisodeBatch, LinearSoftmaxPolicy, TabularMDP,
                                 random_features, random_mdp)
from minipg.estimators.actor_critic import actor_objective
from minipg.estimators.dpg import dpg_actor_gradient, dpg_actor_objective
from minipg.estimators.off_policy import off_policy_actor_objective
from minipg.estimators.reinforce import episode_discounts, reinforce_objective
from minipg.kernels import discounted_returns

__all__ = [
    "episodic_bed", "continuing_bed", "lqr_bed", "step_log_prob", "split_gradient",
    "reinforce_estimates", "actor_critic_estimates", "off_policy_estimates", "lqr_q_of_action",
    "dpg_estimates", "dpg_linear_jacobian", "softmax_rows",
]

# sum_i g_i / scale vs the autodiff gradient of the whole batch (and the value vs
# sum_t w_t log_prob_t): the same terms summed in two orders over up to ~1e6 steps,
# relative to the sum of their absolute values (rounding ~1e-16 * sqrt(N) typically)
SPLIT_TOL = 1e-10


# ============================================ per-episode samples from minipg estimators

def softmax_rows(logits):
    """softmax over the last axis, max-shifted, in plain NumPy (the closed forms' own, so
    that no check leans on the engine it checks)."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def step_log_prob(features, theta, states, actions):
    r"""log pi_theta(a_t|s_t) on the tape, for the linear softmax pi ∝ exp(phi(s,a)^T theta).

    ``features`` (S, A, d) array, ``theta`` a Tensor (d,), ``states`` and
    ``actions`` int arrays (N,).  Built with minipg ops: the table
    ``log_softmax(phi @ theta)`` of shape (S, A), then one entry per step.
    """
    log_pi = ops.log_softmax(ops.matmul(features, theta), axis=-1)   # (S, A)
    return ops.getitem(log_pi, (states, actions))                     # (N,)


def segment_sum(rows, groups, n_groups):
    """sum of rows[t] over the t with groups[t] = k, for k = 0 .. n_groups - 1."""
    return np.stack([np.bincount(groups, weights=rows[:, j], minlength=n_groups)
                     for j in range(rows.shape[1])], axis=1)


def split_gradient(objective, policy, theta, states, actions, groups, n_groups, scale,
                   check_linear=True):
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

    ``check_linear=False`` drops the linearity check, for an objective that is
    not linear in ``log_prob`` (PPO's clipped ratio): its gradient still splits
    by the chain rule, ``dL/dtheta = sum_t (dL/dlog_prob_t) grad log
    pi(a_t|s_t)``, at the point where it is evaluated (the assembly check
    still applies).
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
    residual = abs(float(value) - weights @ log_prob)                # Euler: L = sum w lp
    if check_linear and residual > SPLIT_TOL * float(np.abs(weights) @ np.abs(log_prob)):
        raise RuntimeError("split_gradient: the objective is not linear in log_prob with "
                           "held-constant weights (its value is not sum_t w_t log_prob_t), so "
                           "its gradient does not split into per-episode estimates")
    score = policy.grad_log_prob(theta)[states, actions]             # closed-form rows (N, d)
    terms = weights[:, None] * score                                  # w_t grad log pi
    estimates = scale * segment_sum(terms, groups, n_groups)
    total = estimates.sum(axis=0) / scale
    size = max(float(np.max(np.sum(np.abs(terms), axis=0))), 1e-300)
    if np.max(np.abs(total - d_theta)) > SPLIT_TOL * size:
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
    check_batch(batch)
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
    check_batch(batch)
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


def lqr_q_of_action(lqr, K_critic, x, u):
    r"""Q^K(x, u) in rewards, on the tape in ``u``: -([x;u]^T H [x;u] + c), H from the critic's K.

    The critic is exact and held fixed (its K is a plain array)."""
    n = lqr.n_state
    H = lqr.q_matrix(K_critic)
    c = lqr.q_constant(K_critic)
    x_cost = np.einsum("ni,ij,nj->n", x, H[:n, :n], x)                 # x^T H_xx x
    cross = ops.sum(ops.matmul(x, H[:n, n:]) * u, axis=-1)              # x^T H_xu u
    u_cost = ops.sum(ops.matmul(u, H[n:, n:]) * u, axis=-1)             # u^T H_uu u
    return -(x_cost + 2.0 * cross + u_cost + c)


def dpg_linear_jacobian(states, n_action):
    """d mu / d K of the linear actor mu(x) = K x at each state: shape (N, m, m * n), entry
    [i, a, k * n + j] = 1[a = k] x_i[j] (K flattened row-major)."""
    x = np.asarray(states, dtype=np.float64)
    return np.einsum("ik,nj->nikj", np.eye(n_action), x).reshape(len(x), n_action, -1)


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
        return dpg_actor_objective(lqr_q_of_action(lqr, K, x, u))

    d_K, d_u = grad(surrogate, argnums=(0, 1))(K, np.zeros((N, lqr.n_action)))
    estimates = (N * d_u[:, :, None] * x[:, None, :]).reshape(N, -1)   # grad_u Q x^T
    jacobian = dpg_linear_jacobian(x, lqr.n_action)
    by_formula = dpg_actor_gradient(lqr.q_value_grad_u(K, x, x @ K.T), jacobian)
    size = max(float(np.max(np.sum(np.abs(estimates), axis=0))) / N, 1e-300)
    mean = estimates.mean(axis=0)
    if (np.max(np.abs(mean - d_K.reshape(-1))) > SPLIT_TOL * size
            or np.max(np.abs(mean - by_formula)) > SPLIT_TOL * size):
        raise RuntimeError("dpg_estimates: the per-state estimates do not average to the "
                           "autodiff gradient of dpg_actor_objective / dpg_actor_gradient")
    return estimates


def check_batch(batch):
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
