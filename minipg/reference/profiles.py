r"""Conventions that decide the reference numbers, and profiles that choose them by name.

Two correct implementations of the same loss can differ by a convention: the
standard deviation that normalises the advantages, a factor 1/2 on a squared
error, whether PPO's value clip takes the larger of the clipped and unclipped
errors, an epsilon inside :math:`\log(1 - \tanh^2 u)`, the action space in
which SAC's log-density is taken.  Each such convention is named here, once,
with one sentence per value; a *profile* chooses a value for each.  Every
manifest records its profile and each convention its case used (value and
sentence), so that the numbers can be reproduced from the manifest alone.

Profiles (``minipg reference --profile NAME``):

* ``minipg`` (default) -- minipg's own conventions (``minipg/estimators/``);
* ``sb3`` -- stable-baselines3's PPO, A2C, SAC, TD3 and DDPG;
* ``cleanrl`` -- CleanRL's ``ppo*.py``, ``sac_continuous_action.py``,
  ``td3_continuous_action.py`` and ``ddpg_continuous_action.py``.

A profile that has no algorithm for a case (CleanRL has no A2C, neither
library has SAC v1's value network) keeps minipg's value there, and the
manifest's notes say so.  The facts behind the ``sb3`` and ``cleanrl``
values are stated in ``verification/reference/SCHEMA.md``.

This module imports nothing from the rest of :mod:`minipg.reference`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["PROFILES", "DEFAULT_PROFILE", "CONVENTIONS", "Convention", "profile_values",
           "check_profile"]

DEFAULT_PROFILE = "minipg"

#: profile name -> one line saying what it follows
PROFILES = {
    "minipg": "minipg's own conventions (minipg/estimators/)",
    "sb3": "stable-baselines3 (PPO, A2C, SAC, TD3, DDPG as its train() methods compute them)",
    "cleanrl": "CleanRL (ppo*.py, sac_continuous_action.py, td3/ddpg_continuous_action.py)",
}


@dataclass(frozen=True)
class Convention:
    """One convention: its values per profile and one sentence per value.

    ``values`` maps a profile to its value; a profile absent from it has no
    algorithm the convention applies to, and uses ``values["minipg"]``.
    ``statements`` maps each value (as canonical JSON, :func:`_key`) to the
    sentence the manifest carries.
    """
    name: str
    values: dict
    statements: dict = field(default_factory=dict)

    def value(self, profile):
        return self.values.get(profile, self.values[DEFAULT_PROFILE])

    def statement(self, value):
        return self.statements[_key(value)]


def _key(value):
    """A value as canonical JSON (sorted keys): the same after a manifest's round trip."""
    return json.dumps(value, sort_keys=True)


def _c(name, values, statements):
    return Convention(name, values, {_key(k): v for k, v in statements})


CONVENTIONS = {c.name: c for c in [
    _c("float32_data", {"minipg": True, "sb3": True, "cleanrl": True}, [
        (True, "Every float input and parameter is a float32 number (drawn in float64 and "
               "rounded to the nearest float32), stored as float64: casting it to float32 is "
               "exact. Every output and gradient is computed in float64 from those numbers.")]),
    # ------------------------------------------------------------------ PPO and A2C
    _c("advantage_normalization", {"minipg": {"ddof": 0, "eps": 1e-8},
                                   "sb3": {"ddof": 1, "eps": 1e-8},
                                   "cleanrl": {"ddof": 1, "eps": 1e-8}}, [
        ({"ddof": 0, "eps": 1e-8},
         "A_norm = (A - mean A) / (std A + 1e-8) with the population standard deviation "
         "(ddof = 0, numpy's std()) over the minibatch."),
        ({"ddof": 1, "eps": 1e-8},
         "A_norm = (A - mean A) / (std A + 1e-8) with the sample standard deviation "
         "(ddof = 1, torch's Tensor.std()) over the minibatch.")]),
    _c("ppo_value_clip", {"minipg": "max", "sb3": "clipped", "cleanrl": "max"}, [
        ("max", "With value clipping, the value loss is the larger of the unclipped and the "
                "clipped squared errors, mean max((V - R)^2, (V_clip - R)^2), V_clip = V_old + "
                "clip(V - V_old, -eps_v, eps_v) (PPO2's pessimistic form)."),
        ("clipped", "With value clipping, the value loss is the clipped squared error alone, "
                    "mean (V_clip - R)^2, V_clip = V_old + clip(V - V_old, -eps_v, eps_v).")]),
    _c("ppo_value_loss_scale", {"minipg": 1.0, "sb3": 1.0, "cleanrl": 0.5}, [
        (1.0, "PPO's value loss has no factor 1/2: mean (V - R)^2 (Weng's L^VF; "
              "F.mse_loss)."),
        (0.5, "PPO's value loss has a factor 1/2: 0.5 mean (V - R)^2.")]),
    _c("a2c_value_loss_scale", {"minipg": 1.0, "sb3": 1.0}, [
        (1.0, "A2C's value loss has no factor 1/2: mean (V - R)^2 (Weng's J_v; F.mse_loss).")]),
    _c("a2c_advantage_normalization", {"minipg": None, "sb3": None}, [
        (None, "A2C uses the advantages as given, without normalisation (stable-baselines3's "
               "default normalize_advantage=False).")]),
    # ------------------------------------------------------------------ DDPG and TD3
    _c("critic_loss_scale", {"minipg": 1.0, "sb3": 1.0, "cleanrl": 1.0}, [
        (1.0, "DDPG's and TD3's critic losses have no factor 1/2: mean (Q - y)^2 per critic "
              "(F.mse_loss), and TD3's twin loss is the sum over the two critics.")]),
    # ------------------------------------------------------------------ SAC
    _c("sac_action_space", {"minipg": "box", "sb3": "unit", "cleanrl": "box"}, [
        ("box", "The SAC policy's action is the environment's action a = low + (tanh(u) + 1) "
                "(high - low) / 2 in [low, high]; the critics take it, and log pi is the "
                "log-density of it (lower by sum_i log((high_i - low_i) / 2) than that of "
                "tanh(u)), so the target entropy -dim(A) sets a different temperature than "
                "with normalised actions."),
        ("unit", "The SAC policy's action is the normalised action a = tanh(u) in (-1, 1)^d "
                 "(rescaled to [low, high] only when sent to the environment); the critics take "
                 "it, replayed actions are normalised ones, and log pi is the log-density of "
                 "tanh(u), with no log((high - low) / 2) term.")]),
    _c("tanh_log_det", {"minipg": {"form": "exact"},
                        "sb3": {"form": "log(1 - tanh(u)^2 + eps)", "eps": 1e-6},
                        "cleanrl": {"form": "log(scale (1 - tanh(u)^2) + eps)", "eps": 1e-6}}, [
        ({"form": "exact"},
         "The squashing correction is exact: log(1 - tanh(u)^2) = 2 (log 2 - u - "
         "softplus(-2u)), no epsilon; with a box, log((high - low) / 2) is subtracted too."),
        ({"form": "log(1 - tanh(u)^2 + eps)", "eps": 1e-6},
         "The squashing correction is log(1 - tanh(u)^2 + 1e-6), summed over the action "
         "dimensions (stable-baselines3's SquashedDiagGaussianDistribution)."),
        ({"form": "log(scale (1 - tanh(u)^2) + eps)", "eps": 1e-6},
         "The squashing correction is log(scale (1 - tanh(u)^2) + 1e-6), scale = (high - low) "
         "/ 2, summed over the action dimensions (CleanRL's Actor.get_action).")]),
    _c("sac_log_std", {"minipg": "clamp(-20, 2)", "sb3": "clamp(-20, 2)",
                       "cleanrl": "tanh(-5, 2)"}, [
        ("clamp(-20, 2)", "The policy's log_std is its network output clamped to [-20, 2] "
                          "(never active in these cases)."),
        ("tanh(-5, 2)", "The policy's log_std is -5 + 0.5 (2 - (-5)) (tanh(out) + 1), the "
                        "network output squashed into (-5, 2).")]),
    _c("sac_q_loss_scale", {"minipg": 0.5, "sb3": 0.5, "cleanrl": 1.0}, [
        (0.5, "Each SAC critic's loss has a factor 1/2: J_Q = 0.5 mean (Q - y)^2 (Haarnoja "
              "et al. eq. 7; stable-baselines3's critic_loss is J_Q1 + J_Q2)."),
        (1.0, "Each SAC critic's loss has no factor 1/2: J_Q = mean (Q - y)^2 (F.mse_loss; "
              "CleanRL's qf_loss is J_Q1 + J_Q2).")]),
    _c("sac_value_loss_scale", {"minipg": 0.5}, [
        (0.5, "SAC v1's value loss has a factor 1/2: J_V = 0.5 mean (V - v_target)^2 "
              "(Haarnoja et al. eq. 5).")]),
    _c("temperature_loss", {"minipg": "alpha", "sb3": "log_alpha", "cleanrl": "alpha"}, [
        ("alpha", "The temperature loss multiplies alpha: J = mean(-alpha (log pi + H_target)), "
                  "alpha = exp(log_alpha), differentiated in log_alpha (Haarnoja et al. 2018b "
                  "eq. 18)."),
        ("log_alpha", "The temperature loss multiplies log alpha: J = mean(-log_alpha (log pi "
                      "+ H_target)), differentiated in log_alpha; its value and gradient are "
                      "those of eq. 18 divided by alpha.")]),
]}


def check_profile(profile):
    """``profile`` if it is a known profile name; a ValueError naming the accepted ones if not."""
    if profile not in PROFILES:
        raise ValueError(f"unknown reference profile {profile!r}; accepted: "
                         f"{', '.join(PROFILES)}")
    return profile


def profile_values(profile):
    """Convention name -> value under ``profile``."""
    check_profile(profile)
    return {name: c.value(profile) for name, c in CONVENTIONS.items()}
