r"""``minipg audit`` checks of MADDPG (issue 20).

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "MADDPG";
Lowe et al. 2017 (section 4, 4.2); Jang et al. 2017 (Gumbel-softmax).  Every
check runs the ALGORITHM's own loss methods (``critic_loss``, ``actor_loss``,
``approx_loss``) on a small agent with three Discrete agents of different
observation and action sizes, so what is audited is what training uses.

gradcheck
    the critic loss of agent 1 in its critic's parameters (the target actions
    a'_j fixed once), its actor loss in its actor's parameters (the Gumbel
    noise fixed), the approximate-policy loss of agent 1's model of agent 2,
    and the relaxed sample softmax((l + g)/T) in the logits.
formula
    LINEAR networks (``hidden = ()``): Q_i = [o_1..o_N, a_1..a_N] . w + c and
    logits l_i = o_i W + b.  Critic: -(2/B) X^T (y - Q) with y recomputed by
    hand from every agent's target policy; actor: the chain rule
    (1/B) o_i^T [J_y^T w_{a_i}] + policy_reg d mean(l^2)/dl with J_y =
    (diag(y) - y y^T)/T the Gumbel-softmax Jacobian and the other agents'
    actions as replayed.  Statistic: the largest relative error.
exact
    the Gumbel-max property: the argmax of the relaxed sample is distributed
    as Categorical(softmax(l)); the one-hot indicators of n = 20,000 (100,000
    with ``--full``) argmaxes against softmax(l), per-component z-tests,
    Bonferroni, 99.9%.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ..autodiff import ops
from ..estimators import maddpg as est
from . import audit_check
from .beds import softmax_rows
from .levels import exact_result, formula_result, gradcheck_function, gradcheck_module, \
    relative_error
from .stats import z_test_bonferroni

__all__ = ["make_agent", "random_batch"]

OBS_DIMS = (3, 2, 4)
N_ACTIONS = (4, 3, 2)


def make_agent(hidden=(5,), seed=0, **settings):
    """A float64 MADDPG agent with three Discrete agents (tanh ``hidden`` layers)."""
    from ..algorithms import get
    cls = get("maddpg")
    # built directly (not validated): hidden=() (linear networks) is for the audit only
    config = cls.Config(**dict(dict(hidden=tuple(hidden), activation="tanh", buffer_size=64,
                                    batch_size=8, temperature=0.7, max_grad_norm=0.0),
                               **settings))
    obs = tuple(gym.spaces.Box(-np.inf, np.inf, (d,), np.float64) for d in OBS_DIMS)
    act = tuple(gym.spaces.Discrete(n) for n in N_ACTIONS)
    return cls(config, obs, act, seed)


def random_batch(rng, agent, n=6):
    """A joint minibatch: Gaussian observations, relaxed one-hot actions, some terminated."""
    from ..algorithms.maddpg import JointBatch
    terminated = np.zeros(n, bool)
    terminated[::3] = True
    return JointBatch([rng.standard_normal((n, d)) for d in agent.obs_dims],
                      [rng.dirichlet(np.ones(d), size=n) for d in agent.action_dims],
                      rng.standard_normal((n, agent.n_agents)),
                      [rng.standard_normal((n, d)) for d in agent.obs_dims], terminated,
                      np.zeros(n, bool), np.zeros((n, agent.n_agents), np.int64))


def _randomized(rng, **settings):
    agent = make_agent(**settings)
    for module in agent.modules().values():
        module.flat_params = 0.5 * rng.standard_normal(module.flat_params.shape)
    return agent


# --------------------------------------------------------------- 1. gradcheck
@audit_check("maddpg", "critic_loss (centralized Q_i)", "gradcheck")
def _critic_gradcheck(full, rng):
    agent = _randomized(rng)
    batch = random_batch(rng, agent)
    next_actions = agent.target_actions(1, batch)          # a'_j fixed once
    return gradcheck_module(lambda: agent.critic_loss(1, batch, next_actions=next_actions)[0],
                            agent.critics[1][0], "maddpg.critic_loss of agent 1 in its critic")


@audit_check("maddpg", "actor_loss (grad_a_i Q_i)", "gradcheck")
def _actor_gradcheck(full, rng):
    agent = _randomized(rng)
    batch = random_batch(rng, agent)
    noise = est.gumbel_noise(rng, (len(batch.obs[1]), agent.action_dims[1]))
    return gradcheck_module(lambda: agent.actor_loss(1, batch, noise=noise),
                            agent.actors[1][0], "maddpg.actor_loss of agent 1 (Gumbel noise "
                                                "fixed) in its actor")


@audit_check("maddpg", "approximate_policy_loss", "gradcheck")
def _approx_gradcheck(full, rng):
    agent = _randomized(rng, approx_policies=True, approx_entropy=0.1)
    batch = random_batch(rng, agent)
    return gradcheck_module(lambda: agent.approx_loss(1, 2, batch), agent.approx[1, 2],
                            "agent 1's approximate policy of agent 2")


@audit_check("maddpg", "gumbel_softmax", "gradcheck")
def _gumbel_gradcheck(full, rng):
    logits = rng.standard_normal((3, 4))
    noise = est.gumbel_noise(rng, logits.shape)
    weights = rng.standard_normal((3, 4))
    return gradcheck_function(
        lambda x: ops.sum(est.gumbel_softmax(x, noise, 0.7) * weights), [logits],
        "sum(w * softmax((l + g)/T)) in l, g fixed, T = 0.7")


# --------------------------------------------------------------- 2. formula
@audit_check("maddpg", "critic_loss + actor_loss", "formula")
def _formula(full, rng):
    agent = _randomized(rng, hidden=(), policy_reg=1e-2)
    batch = random_batch(rng, agent)
    i, B, T, cfg = 1, len(batch.rewards), agent.config.temperature, agent.config
    w = agent.critics[i][0].W0.data[0, :, 0]
    c = agent.critics[i][0].b0.data[0, 0, 0]
    wt = agent.critic_targets[i][0].W0.data[0, :, 0]
    ct = agent.critic_targets[i][0].b0.data[0, 0, 0]

    # critic: y from EVERY agent's target policy with the Gumbel noise the agent will draw
    state = agent.rng.bit_generator.state
    noises = [est.gumbel_noise(agent.rng, (B, d)) for d in agent.action_dims]
    agent.rng.bit_generator.state = state
    next_actions = []
    for j, target in enumerate(agent.actor_targets):
        layer = target[0].layer0
        z = batch.next_obs[j] @ layer.weight.data + layer.bias.data
        next_actions.append(softmax_rows((z + noises[j]) / T))
    x_next = np.concatenate(batch.next_obs + next_actions, axis=1)
    y = batch.rewards[:, i] + cfg.gamma * np.where(batch.terminated, 0.0, x_next @ wt + ct)
    loss, _ = agent.critic_loss(i, batch)
    agent.critics[i][0].zero_grad()
    loss.backward()
    X = np.concatenate(batch.obs + batch.actions, axis=1)
    residual = y - (X @ w + c)
    error = max(relative_error(agent.critics[i][0].W0.grad[0, :, 0], -2.0 / B * X.T @ residual),
                relative_error(agent.critics[i][0].b0.grad[0, 0, 0], -2.0 / B * residual.sum()))

    # actor: d/dl of -mean Q(o, a_0, y(l), a_2) + reg mean(l^2), the others replayed
    noise = est.gumbel_noise(rng, (B, agent.action_dims[i]))
    actor = agent.actors[i][0].layer0
    agent.actors[i][0].zero_grad()
    agent.actor_loss(i, batch, noise=noise).backward()
    logits = batch.obs[i] @ actor.weight.data + actor.bias.data
    yi = softmax_rows((logits + noise) / T)
    start = sum(agent.obs_dims) + sum(agent.action_dims[:i])
    w_a = w[start:start + agent.action_dims[i]]                          # Q's weights on a_i
    dq_dl = (yi * (w_a - (yi * w_a).sum(axis=1, keepdims=True))) / T     # J_y^T w_a per row
    d_loss = -dq_dl / B + cfg.policy_reg * 2.0 * logits / logits.size
    error = max(error, relative_error(actor.weight.grad, batch.obs[i].T @ d_loss),
                relative_error(actor.bias.grad, d_loss.sum(axis=0)))
    return formula_result(error, "maddpg: critic loss (targets from every agent's target "
                                 "policy) and actor gradient (Gumbel-softmax Jacobian, other "
                                 "actions replayed), linear networks")


# --------------------------------------------------------------- 3. exact
@audit_check("maddpg", "gumbel_softmax argmax (Gumbel-max)", "exact")
def _gumbel_exact(full, rng):
    n = 100_000 if full else 20_000
    logits = np.array([1.0, -0.5, 0.3, 2.0, -1.2])
    g = est.gumbel_noise(rng, (n, logits.size))
    y = est.gumbel_softmax(np.tile(logits, (n, 1)), g, 0.7).data
    indicators = np.eye(logits.size)[np.argmax(y, axis=1)]
    return exact_result(z_test_bonferroni(indicators, softmax_rows(logits[None])[0]),
                        "softmax(l) (Gumbel-max: argmax softmax((l + g)/T) ~ Categorical)")
