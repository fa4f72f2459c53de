r"""Reference cases of the off-policy family: DDPG, TD3 and SAC.

Registered with :data:`minipg.reference.case.CASES`.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, ops
from ..distributions import TanhGaussian
from ..estimators import ddpg, sac, td3
from .case import CASES, episode_flags, q_value


def _tanh_gaussian(net, obs, d, low, high):
    out = net(obs)
    mean, log_std = out[..., :d], out[..., d:]
    ls = log_std.data
    if not (np.all(ls > -19.0) and np.all(ls < 1.9)):
        raise RuntimeError("reference case: policy log-std too close to the clamp (-20, 2)")
    return TanhGaussian(mean, log_std, low, high)


SAC_POLICY_OUT = ("concat(mean, log_std) of the pre-tanh Gaussian, each of shape (N, d): "
                  "mean = out[:, :d], log_std = out[:, d:] (clamped to [-20, 2], never active "
                  "here); u = mean + exp(log_std) * eps; "
                  "a = low + (tanh(u) + 1) * (high - low) / 2")
SAC_LOG_PROB = ("log pi(a|s) = sum_i [-eps_i^2 / 2 - log_std_i - log(2 pi) / 2 "
                "- log(1 - tanh(u_i)^2) - log((high_i - low_i) / 2)]")


# ------------------------------------------------------------------ DDPG / TD3

def _ddpg_nets(c, k, m, critics=("critic",), actors=("actor",)):
    nets = {}
    for a in actors:
        nets[a] = c.mlp(a, [k, 8, 8, m], "tanh", "tanh", "obs", "mu(s) in (-1, 1)^2")
    for q in critics:
        nets[q] = c.mlp(q, [k + m, 8, 8, 1], "tanh", None, "concat(obs, action), shape (N, 5)",
                        "Q(s, a) = out[:, 0]")
    return nets


def _transitions(c, N, k, m):
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    actions = c.input("actions", c.rng.uniform(-1, 1, (N, m)), "replayed actions a")
    rewards = c.input("rewards", c.rng.standard_normal(N), "rewards r")
    next_obs = c.input("next_obs", c.rng.standard_normal((N, k)), "next states s'")
    terminated = c.input("terminated", episode_flags(N, [2]), "True where s' is terminal "
                         "(truncations bootstrap)")
    return obs, actions, rewards, next_obs, terminated


@CASES.register(
    "ddpg_critic", seed=1015, section="DDPG",
    title="DDPG critic: target from the target actor and critic, and the critic loss",
    paper="Lillicrap et al. 2016, Algorithm 1",
    estimators=["minipg.estimators.ddpg.critic_target", "minipg.estimators.ddpg.critic_loss"],
    formula=["y = r + gamma (1 - terminated) Q'(s', mu'(s'))",
             "loss = mean (y - Q(s, a))^2   (minimised), y held constant"])
def _ddpg_critic(c):
    N, k, m = 6, 3, 2
    gamma = 0.99
    c.hp(gamma=gamma)
    obs, actions, rewards, next_obs, terminated = _transitions(c, N, k, m)
    nets = _ddpg_nets(c, k, m, critics=("critic", "target_critic"), actors=("target_actor",))
    mu_next = c.output("target_actions", nets["target_actor"](next_obs), "mu'(s')")
    q_next = c.output("q_next_target", q_value(nets["target_critic"], next_obs, mu_next.data),
                      "Q'(s', mu'(s'))")
    y = c.output("y", ddpg.critic_target(rewards, terminated, q_next.data, gamma), "target y")
    q = q_value(nets["critic"], obs, actions)
    c.output("q", q, "Q(s, a)")
    loss = ddpg.critic_loss(q, y)
    c.output("critic_loss", loss, "mean (y - Q)^2")
    c.gradient("critic_loss", loss, c.params("critic"))


@CASES.register(
    "ddpg_actor", seed=1016, section="DDPG",
    title="DDPG actor objective: the sampled deterministic policy gradient",
    paper="Lillicrap et al. 2016, Algorithm 1; Silver et al. 2014",
    estimators=["minipg.estimators.ddpg.actor_objective"],
    formula=["objective = mean_i Q(s_i, mu(s_i)), critic fixed (maximised)",
             "grad.objective.mu = d objective / d a at a = mu(s) = grad_a Q(s_i, a) / N"])
def _ddpg_actor(c):
    N, k, m = 6, 3, 2
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    nets = _ddpg_nets(c, k, m)
    mu = c.output("mu", nets["actor"](obs), "mu(s)")
    objective = ddpg.actor_objective(q_value(nets["critic"], obs, mu))
    c.output("objective", objective, "mean Q(s, mu(s)) (maximised)")
    c.gradient("objective", objective, c.params("actor"))
    a_leaf = Tensor(mu.data.copy(), requires_grad=True)
    c.gradient("objective", ddpg.actor_objective(q_value(nets["critic"], obs, a_leaf)),
               {"mu": a_leaf}, "the objective as a function of the actions, at a = mu(s)")


@CASES.register(
    "td3_critic", seed=1017, section="TD3",
    title="TD3 critic: target policy smoothing, clipped double-Q target, twin critic loss",
    paper="Fujimoto et al. 2018, Algorithm 1, secs. 4.2 and 5.3",
    estimators=["minipg.estimators.td3.smoothed_target_actions",
                "minipg.estimators.td3.clipped_double_q_target",
                "minipg.estimators.td3.twin_critic_loss"],
    formula=["a~ = clip(mu'(s') + clip(noise, -c, c), low, high)",
             "y = r + gamma (1 - terminated) min(Q'_1(s', a~), Q'_2(s', a~))",
             "loss = mean (y - Q_1(s, a))^2 + mean (y - Q_2(s, a))^2   (minimised)"])
def _td3_critic(c):
    N, k, m = 6, 3, 2
    gamma, noise_clip, low, high, noise_std = 0.99, 0.5, -1.0, 1.0, 0.4
    c.hp(gamma=gamma, noise_clip=noise_clip, low=low, high=high, noise_std=noise_std)
    obs, actions, rewards, next_obs, terminated = _transitions(c, N, k, m)
    noise = c.input("noise", noise_std * c.rng.standard_normal((N, m)),
                    "smoothing noise eps ~ N(0, 0.4^2) in action units (some beyond c)")
    nets = _ddpg_nets(c, k, m, critics=("critic1", "critic2", "target_critic1", "target_critic2"),
                      actors=("target_actor",))
    mu_next = c.output("target_actions", nets["target_actor"](next_obs), "mu'(s')")
    smoothed = c.output("smoothed_actions", td3.smoothed_target_actions(
        mu_next.data, noise, noise_clip, low, high), "a~")
    q1n = c.output("q1_next", q_value(nets["target_critic1"], next_obs, smoothed), "Q'_1(s', a~)")
    q2n = c.output("q2_next", q_value(nets["target_critic2"], next_obs, smoothed), "Q'_2(s', a~)")
    y = c.output("y", td3.clipped_double_q_target(rewards, terminated, q1n.data, q2n.data,
                                                  gamma), "clipped double-Q target")
    q1 = q_value(nets["critic1"], obs, actions)
    q2 = q_value(nets["critic2"], obs, actions)
    c.output("q1", q1, "Q_1(s, a)")
    c.output("q2", q2, "Q_2(s, a)")
    loss = td3.twin_critic_loss(q1, q2, y)
    c.output("critic_loss", loss, "sum of both critics' mean squared errors")
    c.gradient("critic_loss", loss, c.params("critic1") + c.params("critic2"))


@CASES.register(
    "td3_actor", seed=1018, section="TD3",
    title="TD3 actor objective (first critic only)",
    paper="Fujimoto et al. 2018, Algorithm 1",
    estimators=["minipg.estimators.td3.actor_objective"],
    formula=["objective = mean_i Q_1(s_i, mu(s_i)), critic fixed (maximised)"])
def _td3_actor(c):
    N, k, m = 6, 3, 2
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    nets = _ddpg_nets(c, k, m, critics=("critic1",))
    mu = c.output("mu", nets["actor"](obs), "mu(s)")
    objective = td3.actor_objective(q_value(nets["critic1"], obs, mu))
    c.output("objective", objective, "mean Q_1(s, mu(s)) (maximised)")
    c.gradient("objective", objective, c.params("actor"))
    a_leaf = Tensor(mu.data.copy(), requires_grad=True)
    c.gradient("objective", td3.actor_objective(q_value(nets["critic1"], obs, a_leaf)),
               {"mu": a_leaf}, "the objective as a function of the actions, at a = mu(s)")


# ------------------------------------------------------------------ SAC

def _sac_policy_net(c, k, d):
    return c.mlp("policy", [k, 8, 8, 2 * d], "tanh", None, "obs", SAC_POLICY_OUT, gain=0.8)


def _sac_critic_net(c, name, k, d):
    return c.mlp(name, [k + d, 8, 8, 1], "tanh", None, "concat(obs, action), shape (N, 5)",
                 "Q(s, a) = out[:, 0]")


_BOX = dict(low=-2.0, high=2.0)


@CASES.register(
    "sac_value", seed=1019, section="SAC",
    title="SAC v1 soft value loss J_V with fresh reparameterised actions",
    paper="Haarnoja et al. 2018, eqs. 5-6",
    estimators=["minipg.distributions.TanhGaussian.rsample", "minipg.estimators.sac.v_target",
                "minipg.estimators.sac.value_loss"],
    formula=["a~, log pi(a~|s) from the tanh-Gaussian policy with noise eps: " + SAC_LOG_PROB,
             "v_target = min(Q_1(s, a~), Q_2(s, a~)) - alpha log pi(a~|s), held constant",
             "J_V = mean (V(s) - v_target)^2 / 2   (minimised)"])
def _sac_value(c):
    N, k, d = 6, 3, 2
    alpha = 0.2
    c.hp(alpha=alpha, **_BOX)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    eps = c.input("eps", c.rng.standard_normal((N, d)), "standard normal noise")
    policy = _sac_policy_net(c, k, d)
    q1, q2 = _sac_critic_net(c, "critic1", k, d), _sac_critic_net(c, "critic2", k, d)
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs", "V(s) = out[:, 0]")
    low, high = np.full(d, _BOX["low"]), np.full(d, _BOX["high"])
    action, log_prob = _tanh_gaussian(policy, obs, d, low, high).rsample(eps=eps)
    c.output("new_actions", action, "a~ = f(eps; s)")
    c.output("log_prob_new", log_prob, "log pi(a~|s)")
    q1n = c.output("q1_new", q_value(q1, obs, action.data), "Q_1(s, a~)")
    q2n = c.output("q2_new", q_value(q2, obs, action.data), "Q_2(s, a~)")
    target = c.output("v_target", sac.v_target(np.minimum(q1n.data, q2n.data), log_prob.data,
                                               alpha), "min Q - alpha log pi")
    v = value(obs)[:, 0]
    c.output("v", v, "V(s)")
    loss = sac.value_loss(v, target)
    c.output("J_V", loss, "soft value loss (minimised)")
    c.gradient("J_V", loss, c.params("value"))


@CASES.register(
    "sac_q", seed=1020, section="SAC",
    title="SAC v1 soft Q loss J_Q with the target value network",
    paper="Haarnoja et al. 2018, eqs. 7-9",
    estimators=["minipg.estimators.sac.soft_q_target", "minipg.estimators.sac.soft_q_loss"],
    formula=["q_hat = r + gamma (1 - terminated) V_target(s'), held constant",
             "J_Q1 = mean (Q_1(s, a) - q_hat)^2 / 2;  J_Q2 likewise   (minimised)"])
def _sac_q(c):
    N, k, d = 6, 3, 2
    gamma = 0.99
    c.hp(gamma=gamma)
    obs, actions, rewards, next_obs, terminated = _transitions(c, N, k, d)
    q1, q2 = _sac_critic_net(c, "critic1", k, d), _sac_critic_net(c, "critic2", k, d)
    target_value = c.mlp("target_value", [k, 8, 8, 1], "tanh", None, "obs",
                         "V_target(s) = out[:, 0]")
    v_next = c.output("v_next", target_value(next_obs)[:, 0], "V_target(s')")
    q_hat = c.output("q_hat", sac.soft_q_target(rewards, terminated, v_next.data, gamma),
                     "q_hat")
    for i, net in ((1, q1), (2, q2)):
        q = q_value(net, obs, actions)
        c.output(f"q{i}", q, f"Q_{i}(s, a)")
        loss = sac.soft_q_loss(q, q_hat)
        c.output(f"J_Q{i}", loss, f"soft Q loss of critic {i} (minimised)")
        c.gradient(f"J_Q{i}", loss, c.params(f"critic{i}"))


@CASES.register(
    "sac_policy", seed=1021, section="SAC",
    title="SAC policy loss J_pi through the reparameterised action, two critics",
    paper="Haarnoja et al. 2018, eqs. 12-13; Appendix C, eq. 21",
    estimators=["minipg.distributions.TanhGaussian.rsample",
                "minipg.estimators.sac.policy_loss"],
    formula=["u = mean + exp(log_std) eps; a = low + (tanh(u) + 1)(high - low)/2",
             SAC_LOG_PROB,
             "J_pi = mean [alpha log pi(a|s) - min(Q_1(s, a), Q_2(s, a))]   (minimised)",
             "grad.J_pi.eps: J_pi as a function of eps (policy fixed): the noise path",
             "grad.q_new_mean.action: d mean_i min(Q_1, Q_2)(s_i, a_i) / d a at the sampled a"])
def _sac_policy(c):
    N, k, d = 6, 3, 2
    alpha = 0.2
    c.hp(alpha=alpha, **_BOX)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    eps = c.input("eps", c.rng.standard_normal((N, d)), "standard normal noise")
    policy = _sac_policy_net(c, k, d)
    q1, q2 = _sac_critic_net(c, "critic1", k, d), _sac_critic_net(c, "critic2", k, d)
    low, high = np.full(d, _BOX["low"]), np.full(d, _BOX["high"])
    dist = _tanh_gaussian(policy, obs, d, low, high)
    action, log_prob = dist.rsample(eps=eps)
    c.output("action", action, "a = f(eps; s)")
    c.output("log_prob", log_prob, "log pi(a|s)")
    q_new = ops.minimum(q_value(q1, obs, action), q_value(q2, obs, action))
    c.output("q_new", q_new, "min(Q_1, Q_2)(s, a)")
    loss = sac.policy_loss(log_prob, q_new, alpha)
    c.output("J_pi", loss, "policy loss (minimised)")
    c.gradient("J_pi", loss, c.params("policy"), "both paths: log pi's parameters and the action")
    # the noise path: J_pi as a function of eps with the policy's outputs fixed
    eps_leaf = Tensor(eps.copy(), requires_grad=True)
    fixed = TanhGaussian(dist.mean.data, dist.log_std.data, low, high)
    u = eps_leaf * dist.std.data + dist.mean.data
    a_eps = (ops.tanh(u) + 1.0) * fixed.scale + low
    loss_eps = sac.policy_loss(fixed.log_prob_from_pre_tanh(u),
                               ops.minimum(q_value(q1, obs, a_eps), q_value(q2, obs, a_eps)), alpha)
    c.gradient("J_pi", loss_eps, {"eps": eps_leaf}, "the reparameterised noise path")
    a_leaf = Tensor(action.data.copy(), requires_grad=True)
    q_mean = ops.mean(ops.minimum(q_value(q1, obs, a_leaf), q_value(q2, obs, a_leaf)))
    c.output("q_new_mean", q_mean, "mean min(Q_1, Q_2)(s, a)")
    c.gradient("q_new_mean", q_mean, {"action": a_leaf}, "the critics' action gradient / N")


@CASES.register(
    "sac_q_twin", seed=1022, section="SAC with Automatically Adjusted Temperature",
    title="SAC (2018b) soft Q target from two target critics and a fresh next action",
    paper="Haarnoja et al. 2018b, eqs. 3 and 5 with clipped double Q",
    estimators=["minipg.distributions.TanhGaussian.rsample",
                "minipg.estimators.sac.soft_q_target_twin",
                "minipg.estimators.sac.soft_q_loss"],
    formula=["a', log pi(a'|s') from the policy at s' with noise eps_next: " + SAC_LOG_PROB,
             "y = r + gamma (1 - terminated) (min(Q'_1(s', a'), Q'_2(s', a')) - alpha log "
             "pi(a'|s')), held constant",
             "J_Q1 = mean (Q_1(s, a) - y)^2 / 2;  J_Q2 likewise   (minimised)"])
def _sac_q_twin(c):
    N, k, d = 6, 3, 2
    gamma, alpha = 0.99, 0.2
    c.hp(gamma=gamma, alpha=alpha, **_BOX)
    obs, actions, rewards, next_obs, terminated = _transitions(c, N, k, d)
    eps_next = c.input("eps_next", c.rng.standard_normal((N, d)), "noise for a' ~ pi(.|s')")
    policy = _sac_policy_net(c, k, d)
    q1, q2 = _sac_critic_net(c, "critic1", k, d), _sac_critic_net(c, "critic2", k, d)
    t1, t2 = _sac_critic_net(c, "target_critic1", k, d), _sac_critic_net(c, "target_critic2", k, d)
    low, high = np.full(d, _BOX["low"]), np.full(d, _BOX["high"])
    a_next, logp_next = _tanh_gaussian(policy, next_obs, d, low, high).rsample(eps=eps_next)
    c.output("next_actions", a_next, "a' ~ pi(.|s')")
    c.output("log_prob_next", logp_next, "log pi(a'|s')")
    q1n = c.output("q1_next", q_value(t1, next_obs, a_next.data), "Q'_1(s', a')")
    q2n = c.output("q2_next", q_value(t2, next_obs, a_next.data), "Q'_2(s', a')")
    y = c.output("y", sac.soft_q_target_twin(rewards, terminated, q1n.data, q2n.data,
                                             logp_next.data, alpha, gamma), "soft target")
    for i, net in ((1, q1), (2, q2)):
        q = q_value(net, obs, actions)
        c.output(f"q{i}", q, f"Q_{i}(s, a)")
        loss = sac.soft_q_loss(q, y)
        c.output(f"J_Q{i}", loss, f"soft Q loss of critic {i} (minimised)")
        c.gradient(f"J_Q{i}", loss, c.params(f"critic{i}"))


@CASES.register(
    "sac_temperature", seed=1023, section="SAC with Automatically Adjusted Temperature",
    title="SAC temperature loss J(alpha), alpha = exp(log_alpha)",
    paper="Haarnoja et al. 2018b, eq. 18",
    estimators=["minipg.estimators.sac.default_target_entropy",
                "minipg.estimators.sac.temperature_loss"],
    formula=["log pi(a|s) of fresh actions (held constant): " + SAC_LOG_PROB,
             "J(alpha) = mean [-alpha log pi(a|s) - alpha H_target], alpha = exp(log_alpha), "
             "H_target = -dim(A)   (minimised in log_alpha)"])
def _sac_temperature(c):
    N, k, d = 6, 3, 2
    target_entropy = sac.default_target_entropy(d)
    c.hp(target_entropy=target_entropy, **_BOX)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    eps = c.input("eps", c.rng.standard_normal((N, d)), "standard normal noise")
    policy = _sac_policy_net(c, k, d)
    log_alpha = c.parameter("log_alpha", np.array([-1.3]), "log of the temperature, shape (1,)")
    low, high = np.full(d, _BOX["low"]), np.full(d, _BOX["high"])
    _, log_prob = _tanh_gaussian(policy, obs, d, low, high).rsample(eps=eps)
    c.output("log_prob", log_prob, "log pi(a|s), held constant")
    loss = sac.temperature_loss(log_alpha, log_prob.data, target_entropy)
    c.output("J_alpha", loss, "temperature loss (minimised)")
    c.gradient("J_alpha", loss, ["log_alpha"])
