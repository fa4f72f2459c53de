r"""Reference cases of the return and advantage kernels: GAE, n-step and discounted returns.

Registered with :data:`minipg.reference.case.CASES`.
"""

from __future__ import annotations

import numpy as np

from ..kernels import discounted_returns, gae, n_step_returns
from .case import CASES


# ------------------------------------------------------------------ returns and advantages

def _rollout(c, T=10, N=3):
    c.input("rewards", c.rng.standard_normal((T, N)), "r_t, shape (T, envs)")
    term = np.zeros((T, N), dtype=bool)
    trunc = np.zeros((T, N), dtype=bool)
    term[[3, 8], 0] = True
    term[5, 1] = True
    trunc[6, 2] = True
    trunc[2, 1] = True
    c.input("terminated", term, "True where s'_t is terminal (no bootstrap)")
    c.input("truncated", trunc, "True where the episode was cut at t (bootstrap from "
            "next_values)")
    c.input("next_values", c.rng.standard_normal((T, N)), "V(s'_t) of the true next state")
    return [c.arrays[n] for n in ("rewards", "terminated", "truncated", "next_values")]


@CASES.register(
    "gae", seed=1008, section="Proof of Policy Gradient Theorem",
    title="Generalized advantage estimation GAE(gamma, lambda) over a (T, N) rollout (the "
          "advantage estimates PPO and A2C use)",
    paper="Schulman et al. 2016 (GAE), eq. 16",
    estimators=["minipg.kernels.gae"],
    formula=["delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)",
             "A_t = delta_t + gamma lam (1 - done_t) A_{t+1}, A_T = 0, "
             "done = terminated or truncated"])
def _gae(c):
    gamma, lam = 0.99, 0.95
    c.hp(gamma=gamma, lam=lam)
    rewards, term, trunc, next_values = _rollout(c)
    values = c.input("values", c.rng.standard_normal(rewards.shape), "V(s_t)")
    c.output("advantages", gae(rewards, values, next_values, term, trunc, gamma, lam), "A_t")


@CASES.register(
    "n_step_returns", seed=1009, section="A3C",
    title="n-step bootstrapped returns over a (T, N) rollout",
    paper="Mnih et al. 2016 (A3C); Sutton & Barto 2018, sec. 7.1",
    estimators=["minipg.kernels.n_step_returns"],
    formula=["G_t = sum_{k<m} gamma^k r_{t+k} + [not terminated_{t+m-1}] gamma^m "
             "V(s'_{t+m-1}), m <= n stopping at the first episode end or the rollout end"])
def _n_step(c):
    gamma, n = 0.9, 3
    c.hp(gamma=gamma, n=n)
    rewards, term, trunc, next_values = _rollout(c)
    c.output("returns", n_step_returns(rewards, next_values, term, trunc, gamma, n), "G_t^(n)")


@CASES.register(
    "discounted_returns", seed=1010, section="REINFORCE",
    title="Discounted returns over a (T, N) rollout, with and without bootstrap values",
    paper="Sutton & Barto 2018, sec. 3.3",
    estimators=["minipg.kernels.discounted_returns"],
    formula=["G_t = r_t + gamma X_t; X_t = 0 if terminated_t; V(s'_t) if truncated_t or "
             "t = T-1; else G_{t+1}",
             "returns_no_bootstrap: the same with V = 0"])
def _discounted(c):
    gamma = 0.95
    c.hp(gamma=gamma)
    rewards, term, trunc, next_values = _rollout(c)
    c.output("returns", discounted_returns(rewards, term, trunc, gamma, next_values), "G_t")
    c.output("returns_no_bootstrap", discounted_returns(rewards, term, trunc, gamma),
             "G_t with next_values = 0")
