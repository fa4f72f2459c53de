r"""Reference cases of the off-policy family: DDPG, TD3 and SAC.

Registered with :data:`minipg.reference.case.CASES`.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, ops
from ..distributions import TanhGaussian
from ..distributions.common import HALF_LOG_2PI
from ..estimators import ddpg, sac, td3
from .case import CASES, episode_flags, q_value


_BOX = dict(low=-2.0, high=2.0)


class SquashedGaussian:
    """SAC's policy distribution in the case's conventions.

    ``action_space`` (convention ``sac_action_space``): ``"box"``, the action
    is ``low + (tanh(u) + 1) scale`` and log pi its density; ``"unit"``, the
    action is ``tanh(u)`` and log pi its density.  ``log_det`` (convention
    ``tanh_log_det``): the exact correction (minipg's
    :class:`~minipg.distributions.TanhGaussian`) or ``log(1 - tanh(u)^2 +
    eps)`` / ``log(scale (1 - tanh(u)^2) + eps)``.  ``log_std`` is the
    network's log-std head after the profile's ``sac_log_std`` transform.
    """

    def __init__(self, mean, log_std, low, high, action_space, log_det):
        self.action_space, self.form = action_space, log_det["form"]
        self.eps = log_det.get("eps", 0.0)
        self.bounds = (low, high)                 # the environment's box
        self.low, self.high = (low, high) if action_space == "box" else (None, None)
        self.scale = (high - low) / 2.0
        self.exact = TanhGaussian(mean, log_std, self.low, self.high, log_std_bounds=None)
        self.mean, self.log_std, self.std = self.exact.mean, self.exact.log_std, self.exact.std
        self.d = self.exact.d

    def squash(self, u):
        """The action of the pre-squash value u (Tensor)."""
        y = ops.tanh(u)
        return y if self.low is None else (y + 1.0) * self.scale + self.low

    def _correction(self, u):
        """sum_i of the log-determinant term subtracted from log N(u) (Tensor)."""
        y = ops.tanh(u)
        if self.form == "log(1 - tanh(u)^2 + eps)":                  # stable-baselines3
            return ops.sum(ops.log(1.0 - ops.square(y) + self.eps), axis=-1)
        if self.form == "log(scale (1 - tanh(u)^2) + eps)":          # CleanRL
            return ops.sum(ops.log(self.scale * (1.0 - ops.square(y)) + self.eps), axis=-1)
        raise ValueError(f"tanh_log_det form {self.form!r} is not one this module computes")

    def rsample(self, eps):
        """(action, log pi) with u = mean + std * eps; log N(u) = -eps^2/2 - log_std - log(2 pi)/2."""
        if self.form == "exact":
            return self.exact.rsample(eps=eps)
        u = self.mean + self.std * eps
        gauss = (-0.5 * np.sum(np.square(eps), axis=-1) - ops.sum(self.log_std, axis=-1)
                 - self.d * HALF_LOG_2PI)
        return self.squash(u), gauss - self._correction(u)

    def log_prob_from_pre_tanh(self, u):
        """log pi of the action of u, as a function of u (Tensor): the noise path."""
        if self.form == "exact":
            return self.exact.log_prob_from_pre_tanh(u)
        return self.exact.base.log_prob(u) - self._correction(u)


def _log_std_head(raw, transform):
    """The policy's log_std from its network output, per the convention ``sac_log_std``."""
    if transform == "tanh(-5, 2)":
        return -5.0 + 0.5 * (2.0 - (-5.0)) * (ops.tanh(raw) + 1.0)
    ls = raw.data
    if not (np.all(ls > -19.0) and np.all(ls < 1.9)):
        raise RuntimeError("reference case: policy log-std too close to the clamp (-20, 2)")
    return ops.clip(raw, -20.0, 2.0)


def _policy_distribution(c, net, obs, d):
    """SAC's policy at ``obs`` in the case's conventions (recorded), and its formula lines."""
    action_space = c.convention("sac_action_space")
    log_det = c.convention("tanh_log_det")
    transform = c.convention("sac_log_std")
    out = net(obs)
    low, high = np.full(d, _BOX["low"]), np.full(d, _BOX["high"])
    dist = SquashedGaussian(out[..., :d], _log_std_head(out[..., d:], transform), low, high,
                            action_space, log_det)
    c.formula(policy_out=_policy_out_text(action_space, transform),
              log_prob=_log_prob_text(action_space, log_det))
    c.networks["policy"]["output"] = _policy_out_text(action_space, transform)
    return dist


def _policy_out_text(action_space, transform):
    head = ("clamped to [-20, 2], never active here" if transform == "clamp(-20, 2)" else
            "log_std = -5 + 3.5 (tanh(out[:, d:]) + 1)")
    action = ("a = low + (tanh(u) + 1) * (high - low) / 2" if action_space == "box" else
              "a = tanh(u) (the normalised action; low + (a + 1) (high - low) / 2 is sent to "
              "the environment)")
    return ("policy network output concat(mean, log_std) of the pre-tanh Gaussian, each of "
            f"shape (N, d): mean = out[:, :d], log_std from out[:, d:] ({head}); "
            f"u = mean + exp(log_std) * eps; {action}")


def _log_prob_text(action_space, log_det):
    gauss = "-eps_i^2 / 2 - log_std_i - log(2 pi) / 2"
    if log_det["form"] == "exact":
        box = " - log((high_i - low_i) / 2)" if action_space == "box" else ""
        return f"log pi(a|s) = sum_i [{gauss} - log(1 - tanh(u_i)^2){box}]"
    if log_det["form"] == "log(1 - tanh(u)^2 + eps)":
        return f"log pi(a|s) = sum_i [{gauss} - log(1 - tanh(u_i)^2 + {log_det['eps']})]"
    return (f"log pi(a|s) = sum_i [{gauss} - log((high_i - low_i) / 2 (1 - tanh(u_i)^2) + "
            f"{log_det['eps']})]")


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
    c.convention("critic_loss_scale")
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
    c.convention("critic_loss_scale")
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
    return c.mlp("policy", [k, 8, 8, 2 * d], "tanh", None, "obs", "{{policy_out}}", gain=0.8)


def _sac_critic_net(c, name, k, d):
    return c.mlp(name, [k + d, 8, 8, 1], "tanh", None, "concat(obs, action), shape (N, 5)",
                 "Q(s, a) = out[:, 0]")


def _q_loss_half(c):
    """Whether each SAC critic's loss has the factor 1/2 (recorded), and its formula text."""
    scale = c.convention("sac_q_loss_scale")
    c.formula(q_loss="0.5 mean " if scale == 0.5 else "mean ")
    return scale == 0.5


@CASES.register(
    "sac_value", seed=1019, section="SAC",
    title="SAC v1 soft value loss J_V with fresh reparameterised actions",
    paper="Haarnoja et al. 2018, eqs. 5-6",
    estimators=["minipg.distributions.TanhGaussian.rsample", "minipg.estimators.sac.v_target",
                "minipg.estimators.sac.value_loss"],
    formula=["a~, log pi(a~|s) from the tanh-Gaussian policy with noise eps: {{log_prob}}",
             "v_target = min(Q_1(s, a~), Q_2(s, a~)) - alpha log pi(a~|s), held constant",
             "J_V = mean (V(s) - v_target)^2 / 2   (minimised)"])
def _sac_value(c):
    N, k, d = 6, 3, 2
    alpha = 0.2
    c.hp(alpha=alpha, **_BOX)
    c.convention("sac_value_loss_scale")
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    eps = c.input("eps", c.rng.standard_normal((N, d)), "standard normal noise")
    policy = _sac_policy_net(c, k, d)
    q1, q2 = _sac_critic_net(c, "critic1", k, d), _sac_critic_net(c, "critic2", k, d)
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs", "V(s) = out[:, 0]")
    action, log_prob = _policy_distribution(c, policy, obs, d).rsample(eps=eps)
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
             "J_Q1 = {{q_loss}}(Q_1(s, a) - q_hat)^2;  J_Q2 likewise   (minimised)"])
def _sac_q(c):
    N, k, d = 6, 3, 2
    gamma = 0.99
    c.hp(gamma=gamma)
    half = _q_loss_half(c)
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
        loss = sac.soft_q_loss(q, q_hat, half=half)
        c.output(f"J_Q{i}", loss, f"soft Q loss of critic {i} (minimised)")
        c.gradient(f"J_Q{i}", loss, c.params(f"critic{i}"))


@CASES.register(
    "sac_policy", seed=1021, section="SAC",
    title="SAC policy loss J_pi through the reparameterised action, two critics",
    paper="Haarnoja et al. 2018, eqs. 12-13; Appendix C, eq. 21",
    estimators=["minipg.distributions.TanhGaussian.rsample",
                "minipg.estimators.sac.policy_loss"],
    formula=["{{policy_out}}",
             "{{log_prob}}",
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
    dist = _policy_distribution(c, policy, obs, d)
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
    fixed = SquashedGaussian(dist.mean.data, dist.log_std.data, *dist.bounds,
                             dist.action_space, c.convention("tanh_log_det"))
    u = eps_leaf * dist.std.data + dist.mean.data
    a_eps = fixed.squash(u)
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
    formula=["a', log pi(a'|s') from the policy at s' with noise eps_next: {{log_prob}}",
             "y = r + gamma (1 - terminated) (min(Q'_1(s', a'), Q'_2(s', a')) - alpha log "
             "pi(a'|s')), held constant",
             "J_Q1 = {{q_loss}}(Q_1(s, a) - y)^2;  J_Q2 likewise   (minimised; "
             "stable-baselines3's and CleanRL's critic loss is J_Q1 + J_Q2)"])
def _sac_q_twin(c):
    N, k, d = 6, 3, 2
    gamma, alpha = 0.99, 0.2
    c.hp(gamma=gamma, alpha=alpha, **_BOX)
    half = _q_loss_half(c)
    obs, actions, rewards, next_obs, terminated = _transitions(c, N, k, d)
    eps_next = c.input("eps_next", c.rng.standard_normal((N, d)), "noise for a' ~ pi(.|s')")
    policy = _sac_policy_net(c, k, d)
    q1, q2 = _sac_critic_net(c, "critic1", k, d), _sac_critic_net(c, "critic2", k, d)
    t1, t2 = _sac_critic_net(c, "target_critic1", k, d), _sac_critic_net(c, "target_critic2", k, d)
    a_next, logp_next = _policy_distribution(c, policy, next_obs, d).rsample(eps=eps_next)
    c.output("next_actions", a_next, "a' ~ pi(.|s')")
    c.output("log_prob_next", logp_next, "log pi(a'|s')")
    q1n = c.output("q1_next", q_value(t1, next_obs, a_next.data), "Q'_1(s', a')")
    q2n = c.output("q2_next", q_value(t2, next_obs, a_next.data), "Q'_2(s', a')")
    y = c.output("y", sac.soft_q_target_twin(rewards, terminated, q1n.data, q2n.data,
                                             logp_next.data, alpha, gamma), "soft target")
    for i, net in ((1, q1), (2, q2)):
        q = q_value(net, obs, actions)
        c.output(f"q{i}", q, f"Q_{i}(s, a)")
        loss = sac.soft_q_loss(q, y, half=half)
        c.output(f"J_Q{i}", loss, f"soft Q loss of critic {i} (minimised)")
        c.gradient(f"J_Q{i}", loss, c.params(f"critic{i}"))


@CASES.register(
    "sac_temperature", seed=1023, section="SAC with Automatically Adjusted Temperature",
    title="SAC temperature loss J(alpha), alpha = exp(log_alpha)",
    paper="Haarnoja et al. 2018b, eq. 18",
    estimators=["minipg.estimators.sac.default_target_entropy",
                "minipg.estimators.sac.temperature_loss"],
    formula=["log pi(a|s) of fresh actions (held constant): {{log_prob}}",
             "{{temperature_loss}}, H_target = -dim(A)   (minimised in log_alpha)"])
def _sac_temperature(c):
    N, k, d = 6, 3, 2
    target_entropy = sac.default_target_entropy(d)
    c.hp(target_entropy=target_entropy, **_BOX)
    on = c.convention("temperature_loss")
    c.formula(temperature_loss=(
        "J(alpha) = mean [-alpha log pi(a|s) - alpha H_target], alpha = exp(log_alpha)"
        if on == "alpha" else "J = mean [-log_alpha (log pi(a|s) + H_target)]"))
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    eps = c.input("eps", c.rng.standard_normal((N, d)), "standard normal noise")
    policy = _sac_policy_net(c, k, d)
    log_alpha = c.parameter("log_alpha", np.array([-1.3]), "log of the temperature, shape (1,)")
    _, log_prob = _policy_distribution(c, policy, obs, d).rsample(eps=eps)
    c.output("log_prob", log_prob, "log pi(a|s), held constant")
    loss = sac.temperature_loss(log_alpha, log_prob.data, target_entropy, on=on)
    c.output("J_alpha", loss, "temperature loss (minimised)")
    c.gradient("J_alpha", loss, ["log_alpha"])
