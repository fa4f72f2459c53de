r"""Reference cases of ACER: Retrace targets, the truncated and correction terms, k and z*.

Registered with :data:`minipg.reference.case.CASES`.  Three cases: the Retrace
recursion on segments with terminations and truncations (discrete traces
rho_bar = min(1, rho)); one update of discrete ACER (Algorithm 2: the per-sample terms,
the statistics gradient g, k = -f_avg / f, z*, the surrogate back-propagating z* and
the critic's loss); one of continuous ACER (Algorithm 3: the stochastic dueling
network, Q^ret with c = min(1, rho^(1/d)) and Q^opc, the sampled correction, the
Gaussian's k and z*, the critic's two losses).  Rows of an update are the segment's
steps flattened time first: row = t B + b for step t of segment b.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import grad, ops
from ..distributions import Categorical, DiagGaussian
from ..estimators import acer
from .case import CASES, episode_flags

# A kink of min(c, rho), [1 - c/rho]_+ or of the trust region's max(0, k^T g - delta) must
# be this far (relative) from every sample, so that rounding cannot move a sample across.
KINK_MARGIN = 1e-3


def _away_from(values, kink, what, name):
    """RuntimeError when a value lies within KINK_MARGIN (relative) of a kink."""
    values = np.asarray(values, dtype=np.float64)
    if np.any(np.abs(values - kink) <= KINK_MARGIN * max(abs(kink), 1.0)):
        raise RuntimeError(f"reference case {name}: {what} within {KINK_MARGIN} of its kink "
                           f"{kink}; change the seed")


RETRACE_FORMULA = [
    "rho = pi_taken / mu_taken;  traces c_t = min(1, rho_t)",
    "Q^ret_t = r_t + gamma B_t, computed backwards in t for each column: B_t = 0 if "
    "terminated_t; B_t = next_values_t if truncated_t or t = T - 1; otherwise B_t = "
    "c_{t+1} (Q^ret_{t+1} - q_{t+1}) + values_{t+1}",
]


@CASES.register(
    "acer_retrace", seed=1081, section="ACER",
    title="Retrace targets Q^ret with rho_bar = min(1, rho), terminations and truncations",
    paper="Wang et al. 2017, eq. 5 and Algorithm 2; Munos et al. 2016",
    estimators=["minipg.estimators.acer.importance_weights",
                "minipg.estimators.acer.trace_weights",
                "minipg.estimators.acer.retrace_targets", "minipg.kernels.retrace"],
    formula=RETRACE_FORMULA)
def _acer_retrace(c):
    T, N, gamma = 10, 3, 0.95
    c.hp(gamma=gamma)
    shape = (T, N)
    rewards = c.input("rewards", c.rng.standard_normal(shape), "r_t, (T, N)")
    q = c.input("q", c.rng.standard_normal(shape), "Q(x_t, a_t) of the critic")
    values = c.input("values", c.rng.standard_normal(shape), "V(x_t) = sum_a pi Q")
    next_values = c.input("next_values", c.rng.standard_normal(shape),
                          "V(x'_t) of the true next state (read at truncations and t = T-1)")
    pi_taken = c.input("pi_taken", c.rng.uniform(0.1, 0.9, shape), "pi(a_t|x_t)")
    mu_taken = c.input("mu_taken", c.rng.uniform(0.1, 0.9, shape), "mu(a_t|x_t)")
    terminated = np.stack([episode_flags(T, ends) for ends in ([3], [], [7])], axis=1)
    truncated = np.stack([episode_flags(T, ends) for ends in ([6], [2], [])], axis=1)
    c.input("terminated", terminated, "terminated_t (no bootstrap)")
    c.input("truncated", truncated, "truncated_t (bootstrap from next_values)")
    rho = acer.importance_weights(pi_taken, mu_taken)
    _away_from(rho, 1.0, "rho", c.name)
    traces = acer.trace_weights(rho)
    c.output("rho", rho, "pi / mu")
    c.output("traces", traces, "min(1, rho)")
    c.output("q_ret", acer.retrace_targets(rewards, q, values, next_values, traces, terminated,
                                           truncated, gamma), "Q^ret")


DISCRETE_FORMULA = [
    "f = pi(.|x) = softmax(policy(obs)) (the statistics phi);  Q(x, .) = critic(obs);  "
    "V = sum_a f(a) Q(x, a);  rho(a) = f(a) / mu_probs(a);  rho = rho(a_taken)",
    "truncated = min(c, rho) (q_ret - V) log f(a_taken);  correction = sum_a [1 - c / "
    "rho(a)]_+ f(a) (Q(x, a) - V) log f(a), every factor but log f held constant",
    "objective_i = truncated_i + correction_i + entropy_coef H(f_i), H = -sum_a f log f;  "
    "g_i = d objective_i / d f_i (the statistics gradient, per sample)",
    "k = -avg_probs / f;  scale_i = max(0, (k_i . g_i - delta) / ||k_i||^2);  z_i = g_i - "
    "scale_i k_i",
    "surrogate = (1/N) sum_i z_i . f_i with z held constant (maximised): its gradient is "
    "the trust-region policy gradient;  critic_loss = 1/2 mean (q_ret - Q(x, a_taken))^2",
]


@CASES.register(
    "acer_discrete", seed=1082, section="ACER",
    title="Discrete ACER update: truncation with bias correction, k = -f_avg/f, z*, critic",
    paper="Wang et al. 2017, eqs. 9-13 and Algorithm 2",
    estimators=["minipg.estimators.acer.truncated_term",
                "minipg.estimators.acer.correction_term",
                "minipg.estimators.acer.categorical_kl_gradient",
                "minipg.estimators.acer.trust_region_projection",
                "minipg.estimators.acer.statistics_surrogate",
                "minipg.estimators.acer.critic_loss"],
    formula=DISCRETE_FORMULA)
def _acer_discrete(c):
    N, k, A = 8, 3, 3
    trunc_c, delta, entropy_coef = 1.0, 0.5, 0.01
    c.hp(c=trunc_c, delta=delta, entropy_coef=entropy_coef)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    actions = c.input("actions", c.rng.integers(0, A, N), "actions taken (drawn from mu)")
    mu = c.input("mu_probs", c.rng.dirichlet(np.ones(A), N), "mu(.|x), the behaviour's "
                 "probabilities stored in the replay")
    avg_probs = c.input("avg_probs", c.rng.dirichlet(np.ones(A), N),
                        "f_avg = pi_avg(.|x), the average policy network's probabilities")
    q_ret = c.input("q_ret", c.rng.standard_normal(N), "Q^ret, held constant")
    policy = c.mlp("policy", [k, 8, A], "tanh", None, "obs", "logits", gain=1.5)
    critic = c.mlp("critic", [k, 8, A], "tanh", None, "obs", "Q(x, .) over the actions")
    probs_t = Categorical(policy(obs)).probs
    q_all = critic(obs)
    f, q = probs_t.data, q_all.data
    rows = np.arange(N)
    values = np.sum(f * q, axis=-1)
    rho_all = f / mu
    _away_from(rho_all, trunc_c, "rho(a)", c.name)
    rho = rho_all[rows, actions]
    c.output("probs", f, "f = pi(.|x)")
    c.output("q", q, "Q(x, .)")
    c.output("values", values, "V = sum_a f Q")
    c.output("rho", rho, "f(a_taken) / mu(a_taken)")

    def terms(stats):
        log_probs = ops.log(stats)
        log_prob = ops.gather(log_probs, actions[:, None], axis=-1)[:, 0]
        return (acer.truncated_term(log_prob, rho, q_ret, values, trunc_c),
                acer.correction_term(log_probs, f, mu, q, values, trunc_c),
                -ops.sum(stats * log_probs, axis=-1))
    truncated, correction, _ = terms(probs_t.data.copy())
    c.output("truncated", truncated, "min(c, rho) (q_ret - V) log f(a_taken), per sample")
    c.output("correction", correction, "sum_a [1 - c/rho(a)]_+ f (Q - V) log f, per sample")
    g = grad(lambda s: ops.sum(sum(t * w for t, w in zip(terms(s), (1.0, 1.0, entropy_coef)))))(
        f.copy())
    c.output("g", g, "d objective_i / d f_i")
    kl_grad = acer.categorical_kl_gradient(avg_probs, f)
    c.output("k", kl_grad, "-avg_probs / f")
    z, scale = acer.trust_region_projection(g, kl_grad, delta)
    _away_from(np.sum(kl_grad * g, axis=-1), delta, "k . g", c.name)
    if not 0 < np.count_nonzero(scale) < N:
        raise RuntimeError(f"reference case {c.name}: the trust region should bind on some "
                           "rows and not on others; change delta or the seed")
    c.output("trust_region_scale", scale, "max(0, (k . g - delta) / ||k||^2)")
    c.output("z", z, "z* = g - scale k")
    surrogate = acer.statistics_surrogate(probs_t, z)
    c.output("surrogate", surrogate, "(1/N) sum z* . f (maximised)")
    c.gradient("surrogate", surrogate, c.params("policy"), "z* held constant")
    q_loss = acer.critic_loss(ops.gather(q_all, actions[:, None], axis=-1)[:, 0], q_ret)
    c.output("critic_loss", q_loss, "1/2 mean (q_ret - Q(x, a_taken))^2")
    c.gradient("critic_loss", q_loss, c.params("critic"), "q_ret held constant")


CONTINUOUS_FORMULA = [
    "pi = N(mean, diag(exp(2 log_std))), mean = policy(obs), log_std = policy.log_std "
    "(state independent), statistics phi = [mean, log_std] per row (2d numbers);  mu = "
    "N(mu_mean, diag(exp(2 mu_log_std)));  log N(a; m, s) = sum_j [-((a_j - m_j)/s_j)^2/2 - "
    "log s_j - log(2 pi)/2]",
    "rho = pi(actions) / mu(actions);  rho_sampled = pi(sampled) / mu(sampled);  traces = "
    "min(1, rho^(1/d))",
    "V = value(obs)[:, 0];  A(x, a) = advantage([obs, a])[:, 0];  q_tilde = V + A(x, actions)"
    " - mean_i A(x, u_i);  q_sampled = V + A(x, sampled) - mean_i A(x, u_i)",
    "rows are steps of segments, row = t B + b (T = 4 steps, B = 2 segments);  q_ret = the "
    "Retrace recursion of case acer_retrace with q = q_tilde, values = V, traces;  q_opc = "
    "the same with traces 1",
    "objective_i = min(c, rho) (q_opc - V) log pi(actions) + [1 - c/rho_sampled]_+ "
    "(q_sampled - V) log pi(sampled) + entropy_coef H(pi), H = sum_j log_std_j + d (1 + "
    "log 2 pi)/2;  g_i = d objective_i / d phi_i",
    "k = [(mean - avg_mean) / s^2, 1 - (s_avg^2 + (avg_mean - mean)^2) / s^2];  z = g - "
    "max(0, (k . g - delta) / ||k||^2) k;  surrogate = (1/N) sum_i z_i . phi_i (z held "
    "constant)",
    "v_target = V + traces (q_ret - q_tilde) (held constant);  critic_loss = 1/2 mean "
    "(q_ret - q_tilde)^2 + 1/2 mean (v_target - V)^2",
]


@CASES.register(
    "acer_continuous", seed=1083, section="ACER",
    title="Continuous ACER update: stochastic dueling network, Q^ret and Q^opc, sampled "
          "correction, Gaussian k and z*",
    paper="Wang et al. 2017, eqs. 11-14 and Algorithm 3",
    estimators=["minipg.estimators.acer.stochastic_dueling_q",
                "minipg.estimators.acer.retrace_targets",
                "minipg.estimators.acer.truncated_term",
                "minipg.estimators.acer.sampled_correction_term",
                "minipg.estimators.acer.gaussian_kl_gradient",
                "minipg.estimators.acer.trust_region_projection",
                "minipg.estimators.acer.statistics_surrogate",
                "minipg.estimators.acer.dueling_value_target",
                "minipg.estimators.acer.critic_loss"],
    formula=CONTINUOUS_FORMULA)
def _acer_continuous(c):
    T, B, k, d, n_u = 4, 2, 3, 2, 3
    N = T * B
    trunc_c, delta, entropy_coef, gamma = 1.0, 0.5, 0.01, 0.9
    c.hp(c=trunc_c, delta=delta, entropy_coef=entropy_coef, gamma=gamma, T=T, B=B)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states, row t B + b")
    actions = c.input("actions", c.rng.standard_normal((N, d)), "actions taken (from mu)")
    mu_mean = c.input("mu_mean", c.rng.standard_normal((N, d)), "the behaviour's mean")
    mu_log_std = c.input("mu_log_std", c.rng.uniform(-0.4, 0.3, (N, d)),
                         "the behaviour's log-std")
    sampled = c.input("sampled", c.rng.standard_normal((N, d)), "a' ~ pi, held constant")
    u = c.input("u", c.rng.standard_normal((n_u, N, d)), "u_i ~ pi, held constant")
    avg_mean = c.input("avg_mean", c.rng.standard_normal((N, d)), "the average policy's mean")
    avg_log_std = c.input("avg_log_std", np.array([-0.2, 0.1]),
                          "the average policy's log-std, shape (d,)")
    rewards = c.input("rewards", c.rng.standard_normal((T, B)), "r_t, (T, B)")
    next_values = c.input("next_values", c.rng.standard_normal((T, B)),
                          "V(x'_t) (read at truncations and t = T - 1)")
    terminated = np.stack([episode_flags(T, []), episode_flags(T, [1])], axis=1)
    truncated = np.stack([episode_flags(T, [2]), episode_flags(T, [])], axis=1)
    c.input("terminated", terminated, "terminated_t, (T, B)")
    c.input("truncated", truncated, "truncated_t, (T, B)")
    policy = c.mlp("policy", [k, 8, d], "tanh", None, "obs", "mean of the Gaussian")
    log_std = c.parameter("policy.log_std", np.array([-0.3, 0.2]), "state-independent log "
                          "sigma, shape (d,)")
    value = c.mlp("value", [k, 8, 1], "tanh", None, "obs", "V(x) = out[:, 0]")
    advantage = c.mlp("advantage", [k + d, 8, 1], "tanh", None, "[obs, a]",
                      "A(x, a) = out[:, 0]")
    mean_t = policy(obs)
    stats_t = ops.concatenate([mean_t, log_std + np.zeros((N, d))], axis=-1)
    stats = stats_t.data
    pi = DiagGaussian(stats[:, :d], stats[:, d:])
    behaviour = DiagGaussian(mu_mean, mu_log_std)
    rho = np.exp(pi.log_prob(actions).data - behaviour.log_prob(actions).data)
    rho_sampled = np.exp(pi.log_prob(sampled).data - behaviour.log_prob(sampled).data)
    _away_from(rho, trunc_c, "rho", c.name)
    _away_from(rho_sampled, trunc_c, "rho_sampled", c.name)
    traces = acer.trace_weights(rho, d)
    c.output("rho", rho, "pi(a) / mu(a)")
    c.output("rho_sampled", rho_sampled, "pi(a') / mu(a')")
    c.output("traces", traces, "min(1, rho^(1/d))")
    values_t = value(obs)[:, 0]
    adv_taken = advantage(ops.concatenate([obs, actions], axis=-1))[:, 0]
    adv_u = advantage(ops.concatenate([np.broadcast_to(obs, (n_u, N, k)), u], axis=-1))[..., 0]
    q_tilde_t = acer.stochastic_dueling_q(values_t, adv_taken, adv_u)
    values, q_tilde = values_t.data, q_tilde_t.data
    adv_sampled = advantage(np.concatenate([obs, sampled], axis=-1)).data[:, 0]
    q_sampled = values + adv_sampled - adv_u.data.mean(axis=0)
    c.output("values", values, "V(x)")
    c.output("q_tilde", q_tilde, "Q~(x, a) of the stochastic dueling network")
    c.output("q_sampled", q_sampled, "Q~(x, a')")
    q_ret = acer.retrace_targets(rewards, q_tilde.reshape(T, B), values.reshape(T, B),
                                 next_values, traces.reshape(T, B), terminated, truncated,
                                 gamma).reshape(N)
    q_opc = acer.retrace_targets(rewards, q_tilde.reshape(T, B), values.reshape(T, B),
                                 next_values, np.ones((T, B)), terminated, truncated,
                                 gamma).reshape(N)
    c.output("q_ret", q_ret, "Q^ret, traces min(1, rho^(1/d))")
    c.output("q_opc", q_opc, "Q^opc, traces 1")

    def objective(leaf):
        dist = DiagGaussian(leaf[:, :d], leaf[:, d:])
        gain = (acer.truncated_term(dist.log_prob(actions), rho, q_opc, values, trunc_c)
                + acer.sampled_correction_term(dist.log_prob(sampled), rho_sampled, q_sampled,
                                               values, trunc_c))
        return ops.sum(gain + entropy_coef * dist.entropy())
    g = grad(objective)(stats.copy())
    c.output("g", g, "d objective_i / d [mean_i, log_std_i]")
    kl_grad = acer.gaussian_kl_gradient(avg_mean, avg_log_std, stats[:, :d], stats[:, d:])
    c.output("k", kl_grad, "grad of KL(pi_avg || pi) wrt [mean, log_std]")
    z, scale = acer.trust_region_projection(g, kl_grad, delta)
    _away_from(np.sum(kl_grad * g, axis=-1), delta, "k . g", c.name)
    if not 0 < np.count_nonzero(scale) < N:
        raise RuntimeError(f"reference case {c.name}: the trust region should bind on some "
                           "rows and not on others; change delta or the seed")
    c.output("trust_region_scale", scale, "max(0, (k . g - delta) / ||k||^2)")
    c.output("z", z, "z* = g - scale k")
    surrogate = acer.statistics_surrogate(stats_t, z)
    c.output("surrogate", surrogate, "(1/N) sum z* . phi (maximised)")
    c.gradient("surrogate", surrogate, c.params("policy") + ["policy.log_std"],
               "z* held constant")
    v_target = acer.dueling_value_target(values, q_ret, q_tilde, traces)
    c.output("v_target", v_target, "V + traces (q_ret - q_tilde)")
    q_loss = acer.critic_loss(q_tilde_t, q_ret) + acer.critic_loss(values_t, v_target)
    c.output("critic_loss", q_loss, "1/2 mean (q_ret - q_tilde)^2 + 1/2 mean (v_target - V)^2")
    c.gradient("critic_loss", q_loss, c.params("value") + c.params("advantage"),
               "q_ret, v_target, u held constant")
