r"""Reference cases of D4PG: the categorical projection, the N-step target, the critic's
weighted cross-entropy loss and the actor objective through E[Z].

Registered with :data:`minipg.reference.case.CASES`.  Document: L. Weng, "Policy
Gradient Algorithms" (2018), section "D4PG", Algorithm 1; Barth-Maron et al. 2018;
Bellemare et al. 2017 (the projection, in the robust form of verification/FORMULAS.md
"Losses/C51/D4PG projection").
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, ops
from ..buffers.nstep import NStepAssembler
from ..estimators import d4pg
from ..kernels.projection import categorical_projection
from .case import CASES

V_MIN, V_MAX, N_ATOMS = -2.0, 3.0, 11          # dz = 0.5: some backups land on atoms exactly
PROJECTION = ("m_i = sum_j p_j clip(1 - |clip(r + d z_j, v_min, v_max) - z_i| / dz, 0, 1), "
              "z_j = v_min + j dz, dz = (v_max - v_min) / (n - 1)")


def _support(c):
    c.hp(v_min=V_MIN, v_max=V_MAX, n_atoms=N_ATOMS)
    return c.output("atoms", d4pg.support(V_MIN, V_MAX, N_ATOMS), "the support z_j")


def _probs(c, rows):
    """Rows of a distribution over the atoms (recorded as float32 numbers, so each row sums
    to 1 within ~1e-7; the projection does not renormalise)."""
    return c.rng.dirichlet(np.ones(N_ATOMS), size=rows)


@CASES.register(
    "d4pg_projection", seed=1901, section="D4PG",
    title="D4PG categorical projection of r + d Z onto the fixed support (robust form)",
    paper="Bellemare et al. 2017, Algorithm 1; Barth-Maron et al. 2018",
    estimators=["minipg.estimators.d4pg.support"],
    formula=[PROJECTION,
             "row 0: d = 1, r = 1 (every backup on a support point: its mass is kept whole)",
             "row 1: d = 0 (termination: all mass at r)"])
def _projection(c):
    atoms = _support(c)
    probs = c.input("probs", _probs(c, 5), "p_j, rows of a distribution over the atoms")
    rewards = c.input("rewards", np.array([1.0, 0.75, -1.3, 2.6, 0.1]), "r per row")
    discounts = c.input("discounts", np.array([1.0, 0.0, 0.9, 0.5, 0.95]), "d per row")
    m = categorical_projection(probs, rewards, discounts, V_MIN, V_MAX)
    c.output("projected", m, "m, shape (5, n_atoms)")
    c.output("projected_mean", m @ atoms, "sum_i m_i z_i per row")


@CASES.register(
    "d4pg_nstep_target", seed=1902, section="D4PG",
    title="D4PG N-step target distribution from the target actor and target critic",
    paper="Barth-Maron et al. 2018, Algorithm 1, line 6",
    estimators=["minipg.estimators.d4pg.bootstrap_discounts",
                "minipg.estimators.d4pg.target_distribution"],
    formula=["the window of row b: steps k = 0..N-1 of rewards[b]; it stops after the first "
             "k with terminated[b, k] or truncated[b, k]; m = the number of rewards summed",
             "returns = sum_{k<m} gamma^k rewards[b, k]",
             "bootstrap_discounts = gamma^m, or 0 if the window stopped at a termination",
             "next_probs = softmax(target_critic(concat(next_obs, target_actor(next_obs))))",
             "target = projection of returns + bootstrap_discounts z under next_probs: "
             + PROJECTION])
def _nstep_target(c):
    B, N, k, m_dim, gamma = 5, 4, 3, 2, 0.9
    c.hp(gamma=gamma, n_step=N)
    atoms = _support(c)
    rewards = c.input("rewards", c.rng.standard_normal((B, N)), "one-step rewards of each "
                      "window, shape (B, N)")
    terminated = np.zeros((B, N), bool)
    truncated = np.zeros((B, N), bool)
    terminated[1, 1] = True        # row 1 terminates after 2 rewards
    truncated[2, 2] = True         # row 2 is truncated after 3 (bootstraps)
    terminated[3, 3] = True        # row 3 terminates at the last step of the window
    terminated = c.input("terminated", terminated, "terminated flags of the window's steps")
    truncated = c.input("truncated", truncated, "truncated flags of the window's steps")
    next_obs = c.input("next_obs", c.rng.standard_normal((B, k)), "the TRUE state after the "
                       "window's last step (x_{i+m})")
    returns, n_steps = np.zeros(B), np.zeros(B, np.int64)
    for b in range(B):             # the online assembler, one window as one environment
        asm = NStepAssembler(1, N, gamma, (1,), (1,))
        for t in range(N):
            rows = asm.add(np.array([[t]]), np.zeros((1, 1)), rewards[b, t:t + 1],
                           next_obs[b:b + 1, :1], terminated[b, t:t + 1], truncated[b, t:t + 1])
            start = [i for i, s in enumerate(rows.obs[:, 0]) if s == 0]
            if start:
                returns[b], n_steps[b] = rows.rewards[start[0]], rows.n_steps[start[0]]
                break
    c.output("returns", returns, "sum_{k<m} gamma^k r_k")
    c.output("n_steps", n_steps, "m, the number of rewards summed")
    stopped_by_termination = terminated[np.arange(B), n_steps - 1]
    c.output("bootstrap_discounts", d4pg.bootstrap_discounts(n_steps, stopped_by_termination,
                                                             gamma), "gamma^m (1 - d)")
    actor = c.mlp("target_actor", [k, 8, m_dim], "tanh", "tanh", "next_obs",
                  "pi'(x) in (-1, 1)^2")
    critic = c.mlp("target_critic", [k + m_dim, 8, N_ATOMS], "tanh", None,
                   "concat(obs, action)", "logits of Z'(x, a) over the atoms")
    mu_next = c.output("target_actions", actor(next_obs), "pi'(x_{i+m})")
    next_probs = ops.softmax(critic(ops.concatenate([next_obs, mu_next.data], axis=-1)),
                             axis=-1).data
    c.output("next_probs", next_probs, "softmax of the target critic's logits")
    target = d4pg.target_distribution(returns, n_steps, stopped_by_termination, next_probs,
                                      gamma, V_MIN, V_MAX)
    c.output("target", target, "Y, shape (B, n_atoms)")
    c.output("target_mean", target @ atoms, "sum_i Y_i z_i per row")


@CASES.register(
    "d4pg_critic", seed=1903, section="D4PG",
    title="D4PG critic: cross-entropy to the target distribution, weighted by the importance "
          "weights",
    paper="Barth-Maron et al. 2018, Algorithm 1, line 7; Schaul et al. 2016",
    estimators=["minipg.estimators.d4pg.cross_entropy", "minipg.estimators.d4pg.critic_loss"],
    formula=["logits = critic(concat(obs, actions)); log p = log_softmax(logits)",
             "cross_entropies_i = -sum_j target_ij log p_ij (target held constant)",
             "critic_loss = mean_i weights_i cross_entropies_i   (minimised)"])
def _critic(c):
    B, k, m_dim = 6, 3, 2
    _support(c)
    obs = c.input("obs", c.rng.standard_normal((B, k)), "states x_i")
    actions = c.input("actions", c.rng.uniform(-1, 1, (B, m_dim)), "replayed actions a_i")
    target = c.input("target", _probs(c, B), "Y_i, the projected target (held constant)")
    weights = c.input("weights", np.array([1.0, 0.5, 0.25, 0.75, 0.125, 0.875]),
                      "importance weights (R P(i))^-beta / max (held constant)")
    critic = c.mlp("critic", [k + m_dim, 8, N_ATOMS], "tanh", None, "concat(obs, action)",
                   "logits of Z(x, a) over the atoms")
    logits = critic(ops.concatenate([obs, actions], axis=-1))
    c.output("logits", logits, "critic logits")
    ce = d4pg.cross_entropy(logits, target)
    c.output("cross_entropies", ce, "per-row cross-entropy (the new priorities)")
    loss = d4pg.critic_loss(ce, weights)
    c.output("critic_loss", loss, "mean_i w_i H_i")
    c.gradient("critic_loss", loss, c.params("critic"))


@CASES.register(
    "d4pg_actor", seed=1904, section="D4PG",
    title="D4PG actor objective: the mean of the critic's distribution at the actor's action",
    paper="Barth-Maron et al. 2018, Algorithm 1, line 7",
    estimators=["minipg.estimators.d4pg.q_values", "minipg.estimators.d4pg.actor_objective"],
    formula=["mu = actor(obs); q_i = sum_j softmax(critic(concat(obs, mu)))_ij z_j",
             "objective = mean_i q_i, critic fixed (maximised)",
             "grad.objective.mu = grad_a E[Z(x_i, a)] / N at a = mu(x_i)"])
def _actor(c):
    B, k, m_dim = 6, 3, 2
    atoms = _support(c)
    obs = c.input("obs", c.rng.standard_normal((B, k)), "states x_i")
    actor = c.mlp("actor", [k, 8, m_dim], "tanh", "tanh", "obs", "mu(x) in (-1, 1)^2")
    critic = c.mlp("critic", [k + m_dim, 8, N_ATOMS], "tanh", None, "concat(obs, action)",
                   "logits of Z(x, a) over the atoms")
    mu = c.output("mu", actor(obs), "mu(x)")
    q = d4pg.q_values(critic(ops.concatenate([obs, mu], axis=-1)), atoms)
    c.output("q", q, "E[Z(x, mu(x))]")
    objective = d4pg.actor_objective(critic(ops.concatenate([obs, mu], axis=-1)), atoms)
    c.output("objective", objective, "mean_i E[Z(x_i, mu(x_i))] (maximised)")
    c.gradient("objective", objective, c.params("actor"))
    a_leaf = Tensor(mu.data.copy(), requires_grad=True)
    c.gradient("objective",
               d4pg.actor_objective(critic(ops.concatenate([obs, a_leaf], axis=-1)), atoms),
               {"mu": a_leaf}, "the objective as a function of the actions, at a = mu(x)")
