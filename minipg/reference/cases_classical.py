r"""Reference cases of the classical family: REINFORCE, actor-critic, Off-PAC, DPG and COPDAC-Q.

Registered with :data:`minipg.reference.case.CASES`; the format of what they
record is in ``verification/reference/SCHEMA.md``.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, ops
from ..autodiff.functional import backward_cotangents
from ..distributions import Categorical
from ..estimators import actor_critic, dpg, off_policy, reinforce
from ..kernels import discounted_returns


from .case import CASES, episode_flags, q_value


# ------------------------------------------------------------------ REINFORCE

@CASES.register(
    "reinforce", seed=1001, section="REINFORCE",
    title="REINFORCE with Monte-Carlo returns, the gamma^t-free variant, linear-softmax policy",
    paper="R. J. Williams 1992; Sutton & Barto 2018, sec. 13.3",
    estimators=["minipg.kernels.discounted_returns",
                "minipg.estimators.reinforce.reinforce_objective"],
    formula=["G_t = r_t + gamma * G_{t+1}, cut at episode ends (G = r at a terminated step)",
             "log pi(a|s) = log_softmax(s @ W + b)[a]",
             "objective = (1 / n_episodes) * sum_t G_t * log pi(a_t|s_t)   (maximised)",
             "grad = (1 / n_episodes) * sum_t G_t * grad log pi(a_t|s_t)"])
def _reinforce(c):
    T, k, n = 10, 3, 3
    gamma, n_episodes = 0.9, 2
    c.hp(gamma=gamma, n_episodes=n_episodes)
    obs = c.input("obs", c.rng.standard_normal((T, k)), "state features s_t, two episodes laid "
                  "end to end (steps 0-5 and 6-9)")
    actions = c.input("actions", c.rng.integers(0, n, T), "actions a_t in {0, 1, 2}")
    rewards = c.input("rewards", c.rng.standard_normal(T), "rewards r_t")
    terminated = c.input("terminated", episode_flags(T, [5, 9]), "True where s_{t+1} is "
                         "terminal (episode ends)")
    truncated = c.input("truncated", np.zeros(T, dtype=bool), "no time-limit truncations")
    policy = c.mlp("policy", [k, n], None, None, "obs (T, 3)",
                   "logits of a linear-softmax policy, shape (T, 3)")
    returns = c.output("returns", discounted_returns(rewards, terminated, truncated, gamma),
                       "Monte-Carlo returns G_t")
    log_prob = Categorical(policy(obs)).log_prob(actions)
    c.output("log_prob", log_prob, "log pi(a_t|s_t)")
    objective = reinforce.reinforce_objective(log_prob, returns, n_episodes=n_episodes)
    c.output("objective", objective, "REINFORCE surrogate (maximised)")
    c.gradient("objective", objective, c.params("policy"), "the REINFORCE estimate")


@CASES.register(
    "reinforce_baseline", seed=1002, section="REINFORCE",
    title="REINFORCE with gamma^t and a learned state-value baseline, MLP policy, (T, N) layout",
    paper="Sutton & Barto 2018, sec. 13.4 (REINFORCE with baseline)",
    estimators=["minipg.kernels.discounted_returns",
                "minipg.estimators.reinforce.episode_time_index",
                "minipg.estimators.reinforce.episode_discounts",
                "minipg.estimators.reinforce.reinforce_objective",
                "minipg.estimators.reinforce.value_baseline_loss"],
    formula=["G_t = r_t + gamma * X_t; X_t = 0 if terminated_t, V(s'_t) = next_values_t if "
             "truncated_t or t = T-1, else G_{t+1}",
             "t_index: the step within its episode (0 after every episode end)",
             "discounts = gamma ** t_index",
             "objective = (1 / n_episodes) * sum_{t,env} gamma^t (G_t - V(s_t)) log pi(a_t|s_t)"
             "  with V(s_t) held constant (maximised)",
             "value_loss = mean_{t,env} (V_w(s_t) - G_t)^2  (minimised, no factor 1/2)"])
def _reinforce_baseline(c):
    T, E, k, n = 8, 2, 3, 3
    gamma, n_episodes = 0.95, 5
    c.hp(gamma=gamma, n_episodes=n_episodes)
    obs = c.input("obs", c.rng.standard_normal((T, E, k)), "states s_t, shape (T, envs, 3)")
    actions = c.input("actions", c.rng.integers(0, n, (T, E)), "actions a_t in {0, 1, 2}")
    rewards = c.input("rewards", c.rng.standard_normal((T, E)), "rewards r_t")
    terminated = np.zeros((T, E), dtype=bool)
    terminated[[2, 6], 0] = True
    terminated[4, 1] = True
    truncated = np.zeros((T, E), dtype=bool)
    truncated[1, 1] = True
    terminated = c.input("terminated", terminated, "True where s'_t is terminal")
    truncated = c.input("truncated", truncated, "True where the episode was cut at t (time "
                        "limit): the return bootstraps from next_values")
    next_values = c.input("next_values", c.rng.standard_normal((T, E)),
                          "V(s'_t) of the true next state; read only at truncations and at "
                          "the last row")
    policy = c.mlp("policy", [k, 8, 8, n], "tanh", None, "obs (T, E, 3)", "logits (T, E, 3)")
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs (T, E, 3)",
                  "V_w(s), shape (T, E, 1); the baseline is out[..., 0]")
    returns = c.output("returns", discounted_returns(rewards, terminated, truncated, gamma,
                                                     next_values), "returns G_t")
    t_index = c.output("t_index", reinforce.episode_time_index(terminated, truncated),
                       "step within the episode (int64)")
    discounts = c.output("discounts", reinforce.episode_discounts(t_index, gamma), "gamma^t")
    values = value(obs)[..., 0]
    c.output("values", values, "V_w(s_t), the baseline")
    log_prob = Categorical(policy(obs)).log_prob(actions)
    c.output("log_prob", log_prob, "log pi(a_t|s_t)")
    objective = reinforce.reinforce_objective(log_prob, returns, discounts=discounts,
                                              baseline=values.data, n_episodes=n_episodes)
    c.output("objective", objective, "REINFORCE-with-baseline surrogate (maximised)")
    c.gradient("objective", objective, c.params("policy"), "the baseline is held constant")
    loss = reinforce.value_baseline_loss(values, returns)
    c.output("value_loss", loss, "baseline loss mean (V - G)^2 (minimised)")
    c.gradient("value_loss", loss, c.params("value"))


# ------------------------------------------------------------------ actor-critic

@CASES.register(
    "actor_critic", seed=1003, section="Actor-Critic",
    title="Action-value actor-critic: TD target, TD error, actor objectives, critic losses",
    paper="Sutton & Barto 2018, sec. 13.5 (one-step actor-critic)",
    estimators=["minipg.estimators.actor_critic.td_target",
                "minipg.estimators.actor_critic.td_error",
                "minipg.estimators.actor_critic.actor_objective",
                "minipg.estimators.actor_critic.critic_loss",
                "minipg.estimators.actor_critic.critic_semi_gradient_loss",
                "minipg.estimators.reinforce.episode_discounts"],
    formula=["Q_w(s, a) = Q_net(s)[a]; q_next = Q_w(s', a') with a' ~ pi(.|s') given, held "
             "constant",
             "td_target y = r + gamma * (1 - terminated) * q_next",
             "td_error delta = y - Q_w(s, a)",
             "actor_objective = mean_t Q_w(s_t, a_t) log pi(a_t|s_t), Q held constant "
             "(Weng step 2.3; maximised)",
             "actor_objective_td = mean_t gamma^t delta_t log pi(a_t|s_t), delta held constant "
             "(Sutton & Barto's actor with I = gamma^t; maximised)",
             "critic_loss = mean_t (y_t - Q_w(s_t, a_t))^2 / 2 (minimised)",
             "critic_semi_gradient_loss = -mean_t delta_t Q_w(s_t, a_t), delta held constant "
             "(same gradient as critic_loss)"])
def _actor_critic(c):
    N, k, n = 6, 3, 3
    gamma = 0.9
    c.hp(gamma=gamma)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    actions = c.input("actions", c.rng.integers(0, n, N), "actions a")
    rewards = c.input("rewards", c.rng.standard_normal(N), "rewards r")
    next_obs = c.input("next_obs", c.rng.standard_normal((N, k)), "next states s'")
    next_actions = c.input("next_actions", c.rng.integers(0, n, N), "next actions a' ~ pi(.|s')")
    terminated = c.input("terminated", episode_flags(N, [3]), "True where s' is terminal")
    t_index = c.input("t_index", np.array([0, 1, 2, 3, 0, 1]), "step within the episode")
    policy = c.mlp("policy", [k, 8, 8, n], "tanh", None, "obs", "logits")
    critic = c.mlp("critic", [k, 8, 8, n], "tanh", None, "obs",
                   "Q_w(s, .) for every action; Q_w(s, a) = out[a]")
    q = ops.gather(critic(obs), actions[:, None], axis=-1)[:, 0]
    q_next = ops.gather(critic(next_obs), next_actions[:, None], axis=-1)[:, 0].data
    c.output("q", q, "Q_w(s, a)")
    c.output("q_next", q_next, "Q_w(s', a')")
    y = c.output("td_target", actor_critic.td_target(rewards, q_next, gamma, terminated), "y")
    delta = actor_critic.td_error(rewards, q_next, q, gamma, terminated)
    c.output("td_error", delta, "delta = y - Q_w(s, a)")
    log_prob = Categorical(policy(obs)).log_prob(actions)
    c.output("log_prob", log_prob, "log pi(a|s)")
    discount_I = c.output("discount_I", reinforce.episode_discounts(t_index, gamma),
                          "I = gamma^t")
    objective = actor_critic.actor_objective(log_prob, q.data)
    c.output("actor_objective", objective, "mean Q log pi (maximised)")
    c.gradient("actor_objective", objective, c.params("policy"))
    objective_td = actor_critic.actor_objective(log_prob, delta.data, discount_I=discount_I)
    c.output("actor_objective_td", objective_td, "mean gamma^t delta log pi (maximised)")
    c.gradient("actor_objective_td", objective_td, c.params("policy"))
    loss = actor_critic.critic_loss(q, y)
    c.output("critic_loss", loss, "mean (y - Q)^2 / 2 (minimised)")
    c.gradient("critic_loss", loss, c.params("critic"))
    semi = actor_critic.critic_semi_gradient_loss(q, delta.data)
    c.output("critic_semi_gradient_loss", semi, "-mean delta Q (minimised)")
    c.gradient("critic_semi_gradient_loss", semi, c.params("critic"))


# ------------------------------------------------------------------ off-policy

@CASES.register(
    "off_policy_actor", seed=1004, section="Off-Policy Policy Gradient",
    title="Importance weights and the off-policy actor objective (plain and truncated rho)",
    paper="Degris, White & Sutton 2012 (Off-PAC), sec. 2",
    estimators=["minipg.estimators.off_policy.importance_weights",
                "minipg.estimators.off_policy.off_policy_actor_objective"],
    formula=["log pi(a|s) = log_softmax(s @ W + b)[a]",
             "rho = pi(a|s) / beta(a|s) = exp(log pi(a|s) - log beta(a|s)), held constant",
             "objective = mean_t rho_t Q_t log pi(a_t|s_t)   (maximised)",
             "rho_clipped = min(rho, clip); objective_clipped likewise"])
def _off_policy_actor(c):
    N, k, n = 8, 3, 4
    clip = 1.0
    c.hp(clip=clip)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s ~ d^beta")
    beta_logits = c.rng.standard_normal((N, n))
    beta = np.exp(beta_logits - beta_logits.max(-1, keepdims=True))
    beta /= beta.sum(-1, keepdims=True)
    actions = c.input("actions", [c.rng.choice(n, p=p) for p in beta], "actions a ~ beta(.|s)")
    behaviour_prob = c.input("behaviour_prob", beta[np.arange(N), actions],
                             "beta(a|s) recorded when acting")
    q_values = c.input("q_values", c.rng.standard_normal(N), "the critic's Q(s, a), held constant")
    policy = c.mlp("policy", [k, n], None, None, "obs", "logits of the target policy pi")
    log_prob = Categorical(policy(obs)).log_prob(actions)
    c.output("log_prob", log_prob, "log pi(a|s)")
    rho = off_policy.importance_weights(log_prob=log_prob.data, behaviour_prob=behaviour_prob)
    if np.min(np.abs(rho - clip)) < 1e-2:
        raise RuntimeError("reference case off_policy_actor: a weight is at the clip")
    c.output("rho", rho, "importance weights pi / beta")
    objective = off_policy.off_policy_actor_objective(log_prob, behaviour_prob, q_values)
    c.output("objective", objective, "mean rho Q log pi (maximised)")
    c.gradient("objective", objective, c.params("policy"), "rho held constant")
    c.output("rho_clipped", off_policy.importance_weights(
        log_prob=log_prob.data, behaviour_prob=behaviour_prob, clip=clip), "min(rho, clip)")
    clipped = off_policy.off_policy_actor_objective(log_prob, behaviour_prob, q_values, clip=clip)
    c.output("objective_clipped", clipped, "mean min(rho, clip) Q log pi (maximised)")
    c.gradient("objective_clipped", clipped, c.params("policy"), "rho held constant")


@CASES.register(
    "offpac_step", seed=1005, section="Off-Policy Policy Gradient",
    title="One Off-PAC step: GTD(lambda) critic and the actor with eligibility traces",
    paper="Degris, White & Sutton 2012 (Off-PAC), Algorithm 1",
    estimators=["minipg.estimators.actor_critic.td_error",
                "minipg.estimators.off_policy.importance_weights",
                "minipg.estimators.off_policy.gtd_lambda_update",
                "minipg.estimators.off_policy.offpac_actor_update"],
    formula=["B independent learners (leading axis); features x = x(s), x_next = x(s')",
             "delta = r + gamma (1 - terminated) v.x_next - v.x",
             "rho = pi_u(a|s) / b(a|s), pi_u = softmax(x @ W + b), u = concat(W.ravel(), b)",
             "e_v' = rho (x + gamma lam e_v)",
             "v' = v + alpha_v [delta e_v' - gamma (1 - terminated) (1 - lam) (w.e_v') x_next]",
             "w' = w + alpha_w [delta e_v' - (w.x) x]",
             "psi = grad_u log pi_u(a|s)",
             "e_u' = rho (psi + gamma lam e_u);  u' = u + alpha_u delta e_u'"])
def _offpac_step(c):
    B, d, n = 4, 5, 3
    gamma, lam, alpha_v, alpha_w, alpha_u = 0.9, 0.7, 0.1, 0.05, 0.2
    c.hp(gamma=gamma, lam=lam, alpha_v=alpha_v, alpha_w=alpha_w, alpha_u=alpha_u)
    x = c.input("x", c.rng.standard_normal((B, d)), "features x(s_t)")
    x_next = c.input("x_next", c.rng.standard_normal((B, d)), "features x(s_{t+1})")
    reward = c.input("reward", c.rng.standard_normal(B), "r_{t+1}")
    terminated = c.input("terminated", episode_flags(B, [2]), "True where s_{t+1} is terminal")
    v = c.input("v", c.rng.standard_normal((B, d)) * 0.5, "value weights")
    w = c.input("w", c.rng.standard_normal((B, d)) * 0.5, "GTD second weights")
    e = c.input("e_v", c.rng.standard_normal((B, d)) * 0.5, "critic trace")
    actions = c.input("actions", c.rng.integers(0, n, B), "actions taken by the behaviour")
    behaviour_prob = c.input("behaviour_prob", c.rng.uniform(0.2, 0.6, B), "b(a|s)")
    e_u = c.input("e_u", c.rng.standard_normal((B, d * n + n)) * 0.5, "actor trace")
    policy = c.mlp("policy", [d, n], None, None, "x", "logits; u = concat(W.ravel(), b), "
                   "the order of psi, e_u and u")
    log_prob = Categorical(policy(x)).log_prob(actions)
    c.output("log_prob", log_prob, "log pi_u(a|s)")
    W, b = c.leaves["policy.layer0.W"], c.leaves["policy.layer0.b"]
    psi = []
    for i in range(B):
        onehot = np.zeros(B)
        onehot[i] = 1.0
        gW, gb = backward_cotangents(log_prob, onehot, [W, b])
        psi.append(np.concatenate([gW.ravel(), gb]))
    psi = c.output("psi", np.array(psi), "grad_u log pi_u(a|s), one row per learner")
    u = np.tile(np.concatenate([W.data.ravel(), b.data]), (B, 1))
    rho = c.output("rho", off_policy.importance_weights(log_prob=log_prob.data,
                                                        behaviour_prob=behaviour_prob), "rho")
    delta = c.output("td_error", actor_critic.td_error(
        reward, np.sum(v * x_next, -1), np.sum(v * x, -1), gamma, terminated), "delta")
    v_new, w_new, e_new = off_policy.gtd_lambda_update(
        v, w, e, x, x_next, reward, gamma, lam, rho, alpha_v, alpha_w, terminated)
    c.output("v_new", v_new, "v after the step")
    c.output("w_new", w_new, "w after the step")
    c.output("e_v_new", e_new, "e_v after the step")
    u_new, e_u_new = off_policy.offpac_actor_update(u, e_u, psi, delta, gamma, lam, rho, alpha_u)
    c.output("u_new", u_new, "policy parameters after the step (u = concat(W.ravel(), b))")
    c.output("e_u_new", e_u_new, "e_u after the step")


# ------------------------------------------------------------------ DPG

@CASES.register(
    "dpg", seed=1006, section="DPG",
    title="Deterministic policy gradient: actor objective, its Jacobian form, Sarsa and "
          "Q-learning TD errors",
    paper="Silver et al. 2014, Theorem 1 (eq. 9), eqs. 11 and 16",
    estimators=["minipg.estimators.dpg.dpg_actor_objective",
                "minipg.estimators.dpg.dpg_actor_gradient",
                "minipg.estimators.dpg.sarsa_td_error",
                "minipg.estimators.dpg.q_learning_td_error"],
    formula=["mu = actor(s); Q(s, a) = critic(concat(s, a))[0]",
             "objective = mean_i Q(s_i, mu(s_i)), critic fixed (maximised)",
             "grad_theta objective = (1/N) sum_i J_i^T grad_a Q(s_i, a)|_{a = mu(s_i)} "
             "with J_i[k, j] = d mu_k(s_i) / d theta_j",
             "theta = concat of the actor's tensors in order layer0.W (row-major), layer0.b, "
             "layer1.W, ...",
             "sarsa_td_error = r + gamma (1 - terminated) Q(s', a') - Q(s, a)",
             "q_learning_td_error = r + gamma (1 - terminated) Q(s', mu(s')) - Q(s, a)"])
def _dpg(c):
    N, k, m = 5, 3, 2
    gamma = 0.9
    c.hp(gamma=gamma)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    actions = c.input("actions", c.rng.uniform(-1, 1, (N, m)), "actions taken a")
    rewards = c.input("rewards", c.rng.standard_normal(N), "rewards r")
    next_obs = c.input("next_obs", c.rng.standard_normal((N, k)), "next states s'")
    next_actions = c.input("next_actions", c.rng.uniform(-1, 1, (N, m)), "next actions taken a'")
    terminated = c.input("terminated", episode_flags(N, [1]), "True where s' is terminal")
    actor = c.mlp("actor", [k, 8, 8, m], "tanh", "tanh", "obs", "mu(s), shape (N, 2)")
    critic = c.mlp("critic", [k + m, 8, 8, 1], "tanh", None, "concat(obs, action), shape (N, 5)",
                   "Q(s, a) = out[:, 0]")
    mu = actor(obs)
    c.output("mu", mu, "mu(s)")
    q_of_mu = q_value(critic, obs, mu)
    c.output("q_of_mu", q_of_mu, "Q(s, mu(s))")
    objective = dpg.dpg_actor_objective(q_of_mu)
    c.output("objective", objective, "mean Q(s, mu(s)) (maximised)")
    c.gradient("objective", objective, c.params("actor"), "through mu, critic fixed")
    a_leaf = Tensor(mu.data.copy(), requires_grad=True)
    objective_at_a = dpg.dpg_actor_objective(q_value(critic, obs, a_leaf))
    c.gradient("objective", objective_at_a, {"mu": a_leaf},
               "the objective as a function of the actions, at a = mu(s): grad_a Q / N")
    grad_a_q = backward_cotangents(ops.sum(q_value(critic, obs, a_leaf)), np.ones(()), [a_leaf])[0]
    c.output("grad_a_q", grad_a_q, "grad_a Q(s_i, a) at a = mu(s_i), one row per sample")
    leaves = [c.leaves[p] for p in c.params("actor")]
    jac = np.zeros((N, m, sum(leaf.data.size for leaf in leaves)))
    for i in range(N):
        mu_i = actor(obs[i:i + 1])
        for j in range(m):
            cot = np.zeros((1, m))
            cot[0, j] = 1.0
            jac[i, j] = np.concatenate([g.ravel() for g in backward_cotangents(mu_i, cot, leaves)])
    c.output("grad_theta_mu", jac, "J[i, k, j] = d mu_k(s_i) / d theta_j (theta order: see "
             "formula)")
    c.output("dpg_actor_gradient", dpg.dpg_actor_gradient(grad_a_q, jac),
             "(1/N) sum_i J_i^T grad_a Q, flat theta order; equals the objective's gradient")
    q = q_value(critic, obs, actions)
    c.output("q", q, "Q(s, a) at the actions taken")
    q_next = q_value(critic, next_obs, next_actions).data
    q_next_mu = q_value(critic, next_obs, actor(next_obs)).data
    c.output("q_next", q_next, "Q(s', a')")
    c.output("q_next_at_mu", q_next_mu, "Q(s', mu(s'))")
    c.output("sarsa_td_error", dpg.sarsa_td_error(rewards, q_next, q.data, gamma, terminated),
             "on-policy TD error (eq. 11)")
    c.output("q_learning_td_error", dpg.q_learning_td_error(rewards, q_next_mu, q.data, gamma,
                                                            terminated),
             "off-policy TD error (eq. 16)")


@CASES.register(
    "copdac_q", seed=1007, section="DPG",
    title="COPDAC-Q: compatible features, compatible critic and one update (eqs. 19-22)",
    paper="Silver et al. 2014, sec. 4.3, eqs. 19-22",
    estimators=["minipg.estimators.dpg.compatible_features",
                "minipg.estimators.dpg.compatible_q",
                "minipg.estimators.dpg.copdac_q_update"],
    formula=["B independent learners; linear policy mu_theta(s) = x(s) @ theta.reshape(k, m)",
             "grad_theta_mu[b, i, j] = d mu_i / d theta_j (given)",
             "phi = grad_theta_mu^T (a - mu)   (compatible features)",
             "q = phi.w + v.x(s)",
             "delta = r + gamma (1 - terminated) v.x(s') - q   (eq. 19)",
             "theta' = theta + alpha_theta J^T (J w)   (eq. 20)",
             "w' = w + alpha_w delta phi   (eq. 21);  v' = v + alpha_v delta x(s)   (eq. 22)",
             "grad.q_sum.a = d sum_b q_b / d a = J w (Theorem 3, condition 1)"])
def _copdac_q(c):
    B, k, m = 3, 4, 2
    n = k * m
    gamma, a_t, a_w, a_v = 0.9, 0.1, 0.2, 0.3
    c.hp(gamma=gamma, alpha_theta=a_t, alpha_w=a_w, alpha_v=a_v)
    x = c.input("x", c.rng.standard_normal((B, k)), "x(s_t), used by the policy and by V")
    x_next = c.input("x_next", c.rng.standard_normal((B, k)), "x(s_{t+1})")
    theta = c.input("theta", c.rng.standard_normal((B, n)) * 0.5, "policy parameters")
    w = c.input("w", c.rng.standard_normal((B, n)) * 0.5, "advantage weights")
    v = c.input("v", c.rng.standard_normal((B, k)) * 0.5, "value weights")
    mu = c.input("mu", np.einsum("bj,bji->bi", x, theta.reshape(B, k, m)),
                 "mu_theta(s_t) = x @ theta.reshape(k, m)")
    jac = np.zeros((B, m, n))
    for i in range(m):
        jac[:, i, i::m] = x                                       # d mu_i / d theta[j*m + i]
    jac = c.input("grad_theta_mu", jac, "d mu_i / d theta_j")
    a = c.input("a", mu + 0.3 * c.rng.standard_normal((B, m)), "actions taken (behaviour)")
    reward = c.input("reward", c.rng.standard_normal(B), "r_t")
    terminated = c.input("terminated", episode_flags(B, [1]), "True where s_{t+1} is terminal")
    phi = c.output("phi", dpg.compatible_features(a, mu, jac), "compatible features")
    c.output("q", dpg.compatible_q(phi, w, np.sum(v * x, -1)), "Q^w(s_t, a_t)")
    theta_new, w_new, v_new, delta = dpg.copdac_q_update(
        theta, w, v, a, mu, jac, x, x_next, reward, gamma, terminated, a_t, a_w, a_v)
    c.output("td_error", delta, "delta (eq. 19)")
    c.output("theta_new", theta_new, "theta after eq. 20")
    c.output("w_new", w_new, "w after eq. 21")
    c.output("v_new", v_new, "v after eq. 22")
    a_leaf = Tensor(a.copy(), requires_grad=True)
    q_sum = ops.sum(dpg.compatible_q(dpg.compatible_features(a_leaf, mu, jac), w,
                                     np.sum(v * x, -1)))
    c.output("q_sum", q_sum, "sum_b Q^w(s_b, a_b)")
    c.gradient("q_sum", q_sum, {"a": a_leaf}, "equals J w per learner")
