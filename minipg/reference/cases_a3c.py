r"""Reference cases of A3C: one worker's segment, its returns and accumulated gradients.

Weng's A3C outline, steps 5-6 (Mnih et al. 2016, Algorithm S3, with the
entropy bonus of section 4): a segment of m steps ends at a terminal state
(R = 0), or at a time-limit truncation or after t_max steps (R = V(s_t), the
value of the state after the segment); then R_i = r_i + gamma R_{i+1} and the
accumulated

    d theta = sum_i grad log pi(a_i|s_i) (R_i - V(s_i)) + beta grad H(pi(.|s_i)),
    d w     = sum_i 2 (R_i - V(s_i)) grad (R_i - V(s_i)),

recorded as the gradients of the segment loss
:func:`minipg.estimators.a3c.segment_loss`: ``grad.loss.policy.*`` = -d theta,
``grad.loss.value.*`` = d w.  Registered with :data:`minipg.reference.case.CASES`.
"""

from __future__ import annotations

import numpy as np

from ..distributions import Categorical
from ..estimators import a3c
from ..kernels import discounted_returns
from .case import CASES

FORMULA = ["R = 0 if the segment ends at a terminal state, else R = V(s_t) (bootstrap_obs: "
           "the state after the segment), held constant",
           "R_i = r_i + gamma R_{i+1} for i = m-1 .. 0 (R_m = R)",
           "advantages = R_i - V(s_i), held constant",
           "loss = -sum_i A_i log pi(a_i|s_i) + sum_i (R_i - V(s_i))^2 "
           "- entropy_coef sum_i H(pi(.|s_i))  (sums over the segment, not means)",
           "d theta = -grad.loss.policy.*;  d w = grad.loss.value.*"]


def _segment(c, ending):
    m, k, n = 5, 3, 3
    gamma, entropy_coef = 0.9, 0.01
    c.hp(gamma=gamma, entropy_coef=entropy_coef, ending=ending)
    obs = c.input("obs", c.rng.standard_normal((m, k)), "s_i, the segment's states")
    actions = c.input("actions", c.rng.integers(0, n, m), "a_i")
    rewards = c.input("rewards", c.rng.standard_normal(m), "r_i")
    terminated = np.zeros(m, dtype=bool)
    truncated = np.zeros(m, dtype=bool)
    (terminated if ending == "terminal" else truncated)[-1] = True
    terminated = c.input("terminated", terminated, "True where s_{i+1} is terminal")
    truncated = c.input("truncated", truncated, "True where the episode was cut (time limit) "
                                                "after step i")
    bootstrap_obs = c.input("bootstrap_obs", c.rng.standard_normal((1, k)),
                            "s_t, the state after the segment (the final observation)")
    policy = c.mlp("policy", [k, 8, n], "tanh", None, "obs", "logits")
    value = c.mlp("value", [k, 8, 1], "tanh", None, "obs", "V(s) = out[:, 0]")
    bootstrap = value(bootstrap_obs).data[:, 0]
    c.output("bootstrap_value", bootstrap, "V(s_t), used where the segment does not end at a "
                                           "terminal state")
    next_values = np.zeros(m)
    next_values[-1] = 0.0 if terminated[-1] else bootstrap[0]
    returns = c.output("returns", discounted_returns(rewards, terminated, truncated, gamma,
                                                     next_values), "R_i (the n-step returns)")
    dist = Categorical(policy(obs))
    log_prob, entropy = dist.log_prob(actions), dist.entropy()
    values = value(obs)[:, 0]
    c.output("log_prob", log_prob, "log pi(a_i|s_i)")
    c.output("entropy", entropy, "H(pi(.|s_i))")
    c.output("values", values, "V(s_i)")
    advantages = c.output("advantages", returns - values.data, "R_i - V(s_i), held constant")
    loss, _ = a3c.segment_loss(log_prob, values, entropy, advantages, returns, entropy_coef)
    c.output("loss", loss, "the segment loss (its gradient: -d theta, d w)")
    c.gradient("loss", loss, c.params("policy") + c.params("value"),
               "for the policy -d theta, for the value d w (Weng, A3C, step 6.2)")


@CASES.register(
    "a3c_segment_terminal", seed=1701, section="A3C",
    title="A3C: one worker's segment ending at a terminal state (R = 0), its returns and "
          "accumulated d theta, d w",
    paper="Mnih et al. 2016, Algorithm S3",
    estimators=["minipg.kernels.discounted_returns", "minipg.estimators.a3c.segment_loss"],
    formula=FORMULA)
def _a3c_segment_terminal(c):
    _segment(c, "terminal")


@CASES.register(
    "a3c_segment_bootstrap", seed=1702, section="A3C",
    title="A3C: one worker's segment cut by a time limit (R = V(s_t)), its returns and "
          "accumulated d theta, d w",
    paper="Mnih et al. 2016, Algorithm S3",
    estimators=["minipg.kernels.discounted_returns", "minipg.estimators.a3c.segment_loss"],
    formula=FORMULA)
def _a3c_segment_bootstrap(c):
    _segment(c, "truncated")
