r"""Reference cases of the on-policy family: A2C and PPO.

Registered with :data:`minipg.reference.case.CASES`.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import ops
from ..distributions import Categorical, DiagGaussian
from ..estimators import a2c, ppo
from .case import CASES


def _ratio_targets(rng, n, clip_eps, margin=0.04):
    """Ratios in three regions (below, inside, above the clip range), each >= margin from a kink."""
    lo, hi = 1.0 - clip_eps, 1.0 + clip_eps
    regions = [(0.55, lo - margin), (lo + margin, hi - margin), (hi + margin, 1.5)]
    r = np.array([rng.uniform(*regions[i % 3]) for i in range(n)])
    signs = np.array([1.0 if (i % 6) < 3 else -1.0 for i in range(n)])
    perm = rng.permutation(n)
    return r[perm], signs[perm]


def _value_offsets(rng, n, clip_eps_value, margin=0.04):
    """V - V_old, half inside the value clip range and half outside, each >= margin from it."""
    inside = rng.uniform(0.0, clip_eps_value - margin, n)
    outside = rng.uniform(clip_eps_value + margin, 2.5 * clip_eps_value, n)
    mag = np.where(np.arange(n) % 2 == 0, inside, outside)
    return rng.permutation(mag * np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0))


# clip_fraction is a count k divided by N <= 12: another count differs by >= 1/N > 0.08,
# so atol 1e-6 (rtol 0) still tells every count apart, and accepts a fraction computed in
# float32 (stable-baselines3's `(|ratio - 1| > clip_range).float()`, 3e-8 off k/N).
COUNT_TOLERANCE = dict(rtol=0.0, atol=1e-6)


def _value_loss_text(scale, clip_mode=None):
    """The value loss as the conventions write it (clip_mode None: unclipped)."""
    factor = "" if scale == 1.0 else f"{scale} "
    if clip_mode is None:
        return f"{factor}mean (V - R)^2"
    if clip_mode == "max":
        return f"{factor}mean max((V - R)^2, (V_clip - R)^2)"
    return f"{factor}mean (V_clip - R)^2"


def _value_conventions(c):
    """(scale, clip_mode) of PPO's value loss in the case's profile, recorded."""
    return c.convention("ppo_value_loss_scale"), c.convention("ppo_value_clip")


# ------------------------------------------------------------------ A2C

@CASES.register(
    "a2c", seed=1011, section="A2C",
    title="A2C loss: policy gradient term, value loss and entropy bonus",
    paper="Mnih et al. 2016 (A3C), sec. 4",
    estimators=["minipg.estimators.a2c.policy_gradient_objective",
                "minipg.estimators.a2c.value_loss", "minipg.estimators.a2c.entropy_bonus",
                "minipg.estimators.a2c.a2c_loss"],
    formula=["advantages = returns - V(s), held constant",
             "policy_objective = mean(A log pi(a|s)); value_loss = mean((V(s) - R)^2); "
             "entropy_mean = mean(H(pi(.|s)))",
             "loss = -policy_objective + value_coef value_loss - entropy_coef entropy_mean"
             "   (minimised)",
             "H(pi(.|s)) = -sum_a pi(a|s) log pi(a|s)"])
def _a2c(c):
    N, k, n = 8, 3, 4
    value_coef, entropy_coef = 0.5, 0.01
    c.hp(value_coef=value_coef, entropy_coef=entropy_coef)
    c.convention("a2c_value_loss_scale")
    c.convention("a2c_advantage_normalization")
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    actions = c.input("actions", c.rng.integers(0, n, N), "actions")
    returns = c.input("returns", c.rng.standard_normal(N), "value targets R (e.g. n-step returns)")
    policy = c.mlp("policy", [k, 8, 8, n], "tanh", None, "obs", "logits")
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs", "V(s) = out[:, 0]")
    dist = Categorical(policy(obs))
    log_prob, entropy = dist.log_prob(actions), dist.entropy()
    values = value(obs)[:, 0]
    c.output("log_prob", log_prob, "log pi(a|s)")
    c.output("entropy", entropy, "H(pi(.|s))")
    c.output("values", values, "V(s)")
    advantages = c.output("advantages", returns - values.data, "R - V(s), held constant")
    loss, _ = a2c.a2c_loss(log_prob, values, entropy, advantages, returns, value_coef,
                           entropy_coef)
    c.output("loss", loss, "the A2C loss (minimised)")
    c.output("policy_objective", a2c.policy_gradient_objective(log_prob, advantages),
             "mean(A log pi) (maximised)")
    c.output("value_loss", a2c.value_loss(values, returns), "mean (V - R)^2 (minimised)")
    c.output("entropy_mean", a2c.entropy_bonus(entropy), "mean H (maximised)")
    c.gradient("loss", loss, c.params("policy") + c.params("value"))


# ------------------------------------------------------------------ PPO

@CASES.register(
    "ppo_clip", seed=1012, section="PPO",
    title="PPO clipped surrogate J^CLIP with a diagonal-Gaussian policy",
    paper="Schulman et al. 2017, eq. 7",
    estimators=["minipg.estimators.ppo.clip_objective", "minipg.estimators.ppo.approx_kl",
                "minipg.estimators.ppo.clip_fraction"],
    formula=["log pi(a|s) = sum_i [-((a_i - mean_i) / sigma_i)^2 / 2 - log_std_i "
             "- log(2 pi) / 2], mean = policy(s), sigma = exp(log_std)",
             "ratio = exp(log pi(a|s) - log_prob_old)",
             "clip_objective = mean min(ratio A, clip(ratio, 1 - eps, 1 + eps) A)  (maximised)",
             "approx_kl = mean((ratio - 1) - log ratio);  clip_fraction = mean(|ratio - 1| > "
             "eps)"])
def _ppo_clip(c):
    N, k, m = 12, 3, 2
    eps = 0.2
    c.hp(clip_eps=eps)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    actions = c.input("actions", c.rng.standard_normal((N, m)), "actions taken")
    policy = c.mlp("policy", [k, 8, 8, m], "tanh", None, "obs", "mean of the Gaussian")
    log_std = c.parameter("policy.log_std", np.array([-0.3, 0.2]),
                          "state-independent log sigma, shape (2,)")
    dist = DiagGaussian(policy(obs), log_std)
    log_prob = dist.log_prob(actions)
    r, signs = _ratio_targets(c.rng, N, eps)
    log_prob_old = c.input("log_prob_old", log_prob.data - np.log(r),
                           "log pi_old(a|s), chosen so that the ratios lie in all three regions, "
                           ">= 0.04 from the kinks 1 +- eps")
    advantages = c.input("advantages", signs * c.rng.uniform(0.2, 1.5, N), "A, held constant")
    c.output("log_prob", log_prob, "log pi(a|s)")
    c.output("ratio", ops.exp(log_prob - log_prob_old), "r = pi / pi_old")
    objective = ppo.clip_objective(log_prob, log_prob_old, advantages, eps)
    c.output("clip_objective", objective, "J^CLIP (maximised)")
    c.gradient("clip_objective", objective, c.params("policy") + ["policy.log_std"])
    c.output("approx_kl", ppo.approx_kl(log_prob.data, log_prob_old), "k3 estimate of KL")
    c.output("clip_fraction", ppo.clip_fraction(log_prob.data, log_prob_old, eps),
             "fraction with |r - 1| > eps", **COUNT_TOLERANCE)


@CASES.register(
    "ppo_value_clip", seed=1013, section="PPO",
    title="PPO value loss, plain and clipped (the clipped form as the profile computes it)",
    paper="Schulman et al. 2017, eq. 9; Huang et al. 2022 (value function loss clipping)",
    estimators=["minipg.estimators.ppo.clipped_value_loss"],
    formula=["value_loss = {{value_loss}}   (minimised)",
             "V_clip = V_old + clip(V - V_old, -eps_v, eps_v)",
             "value_loss_clipped = {{value_loss_clipped}}   (minimised)"])
def _ppo_value_clip(c):
    N, k = 10, 3
    eps_v = 0.2
    c.hp(clip_eps_value=eps_v)
    scale, clip_mode = _value_conventions(c)
    half = scale == 0.5
    c.formula(value_loss=_value_loss_text(scale), value_loss_clipped=_value_loss_text(
        scale, clip_mode))
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs", "V(s) = out[:, 0]")
    values = value(obs)[:, 0]
    values_old = c.input("values_old", values.data - _value_offsets(c.rng, N, eps_v),
                         "V_old(s) at collection time; |V - V_old| is >= 0.04 from eps_v")
    returns = c.input("returns", values.data + c.rng.standard_normal(N) * 0.5, "R")
    c.output("values", values, "V(s)")
    plain = ppo.clipped_value_loss(values, None, returns, half=half)
    c.output("value_loss", plain, _value_loss_text(scale))
    c.gradient("value_loss", plain, c.params("value"))
    clipped = ppo.clipped_value_loss(values, values_old, returns, eps_v, clip_mode=clip_mode,
                                     half=half)
    c.output("value_loss_clipped", clipped, _value_loss_text(scale, clip_mode))
    c.gradient("value_loss_clipped", clipped, c.params("value"))


@CASES.register(
    "ppo_objective", seed=1014, section="PPO",
    title="PPO's full objective J^CLIP' with value clipping, entropy and normalised advantages",
    paper="Schulman et al. 2017, eq. 9; Huang et al. 2022",
    estimators=["minipg.estimators.ppo.normalize_advantages",
                "minipg.estimators.ppo.ppo_objective"],
    formula=["A_norm = (A - mean A) / (std A + 1e-8), std with ddof = {{ddof}}",
             "ratio = exp(log pi(a|s) - log_prob_old)",
             "J^CLIP = mean min(ratio A_norm, clip(ratio, 1 - eps, 1 + eps) A_norm)",
             "L^VF = {{value_loss}}, V_clip = V_old + clip(V - V_old, -eps_v, eps_v)",
             "objective = J^CLIP - c1 L^VF + c2 mean H(pi(.|s))   (maximised; the loss "
             "stable-baselines3 and CleanRL minimise is -objective)"])
def _ppo_objective(c):
    N, k, n = 12, 3, 3
    eps, eps_v, c1, c2 = 0.2, 0.2, 0.5, 0.01
    normalization = c.convention("advantage_normalization")
    scale, clip_mode = _value_conventions(c)
    c.hp(clip_eps=eps, clip_eps_value=eps_v, c1=c1, c2=c2, advantage_eps=normalization["eps"])
    c.formula(ddof=str(normalization["ddof"]), value_loss=_value_loss_text(scale, clip_mode))
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    actions = c.input("actions", c.rng.integers(0, n, N), "actions")
    policy = c.mlp("policy", [k, 8, 8, n], "tanh", None, "obs", "logits")
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs", "V(s) = out[:, 0]")
    dist = Categorical(policy(obs))
    log_prob, entropy = dist.log_prob(actions), dist.entropy()
    values = value(obs)[:, 0]
    r, signs = _ratio_targets(c.rng, N, eps)
    raw = signs * c.rng.uniform(0.3, 2.0, N)
    raw = c.input("advantages", raw, "A before normalisation")
    adv = c.output("advantages_normalized", ppo.normalize_advantages(
        raw, normalization["eps"], ddof=normalization["ddof"]), "A_norm")
    log_prob_old = c.input("log_prob_old", log_prob.data - np.log(r),
                           "log pi_old(a|s), ratios >= 0.04 from the kinks")
    values_old = c.input("values_old", values.data - _value_offsets(c.rng, N, eps_v),
                         "V_old(s); |V - V_old| >= 0.04 from eps_v")
    returns = c.input("returns", values.data + c.rng.standard_normal(N) * 0.5, "R")
    c.output("log_prob", log_prob, "log pi(a|s)")
    c.output("entropy", entropy, "H(pi(.|s))")
    c.output("values", values, "V(s)")
    c.output("ratio", ops.exp(log_prob - log_prob_old), "pi / pi_old")
    objective, diag = ppo.ppo_objective(log_prob, log_prob_old, adv, values, returns, entropy,
                                        c1, c2, eps, values_old=values_old, clip_eps_value=eps_v,
                                        value_clip_mode=clip_mode, value_half=scale == 0.5)
    c.output("objective", objective, "J^CLIP' (maximised)")
    for key in ("policy_objective", "value_loss", "approx_kl"):
        c.output(key, diag[key], f"diagnostic {key}")
    c.output("clip_fraction", diag["clip_fraction"], "diagnostic clip_fraction",
             **COUNT_TOLERANCE)
    c.output("entropy_mean", diag["entropy"], "mean H")
    c.gradient("objective", objective, c.params("policy") + c.params("value"))
