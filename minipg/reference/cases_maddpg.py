r"""Reference cases of MADDPG (issue 20): the centralized critic's target and loss, the
actor gradient with another agent's replayed action, the Gumbel-softmax relaxed sample and
its gradient.

Two agents with Discrete actions (3 and 4 actions) and observations of 3 and 2
numbers; the critic reads ``concat(o_1, o_2, a_1, a_2)`` (agent order, observations
first).  Registered with :data:`minipg.reference.case.CASES`.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, ops
from ..estimators import maddpg
from .case import CASES, episode_flags

OBS_DIMS, N_ACTIONS = (3, 2), (3, 4)
JOINT = sum(OBS_DIMS) + sum(N_ACTIONS)


def _critic_net(c, name):
    return c.mlp(name, [JOINT, 8, 8, 1], "tanh", None,
                 f"concat(o_1, o_2, a_1, a_2), shape (N, {JOINT})", "Q_1(o, a_1, a_2) = out[:, 0]")


def _actor_net(c, name, j):
    return c.mlp(name, [OBS_DIMS[j], 8, N_ACTIONS[j]], "tanh", None, f"o_{j + 1}",
                 f"logits of agent {j + 1} ({N_ACTIONS[j]} actions)")


def _joint_batch(c, N):
    obs = [c.input(f"obs_{j + 1}", c.rng.standard_normal((N, d)), f"observations o_{j + 1}")
           for j, d in enumerate(OBS_DIMS)]
    actions = [c.input(f"actions_{j + 1}", c.rng.dirichlet(np.ones(n), size=N),
                       f"replayed relaxed one-hot actions a_{j + 1}")
               for j, n in enumerate(N_ACTIONS)]
    return obs, actions


@CASES.register(
    "maddpg_critic", seed=2001, section="MADDPG",
    title="MADDPG centralized critic: target from every agent's target policy, and its loss",
    paper="Lowe et al. 2017, section 4 and Algorithm 1",
    estimators=["minipg.estimators.maddpg.gumbel_softmax", "minipg.estimators.maddpg.joint_input",
                "minipg.estimators.maddpg.critic_target", "minipg.estimators.maddpg.critic_loss"],
    formula=["a'_j = softmax((target_actor_j(o'_j) + g'_j) / T) for EVERY agent j",
             "y = r_1 + gamma (1 - terminated) Q_1'(concat(o'_1, o'_2, a'_1, a'_2))",
             "loss = mean (Q_1(concat(o_1, o_2, a_1, a_2)) - y)^2   (minimised), y held constant"])
def _maddpg_critic(c):
    N, gamma, T = 6, 0.95, 0.7
    c.hp(gamma=gamma, temperature=T)
    obs, actions = _joint_batch(c, N)
    next_obs = [c.input(f"next_obs_{j + 1}", c.rng.standard_normal((N, d)),
                        f"next observations o'_{j + 1}") for j, d in enumerate(OBS_DIMS)]
    noise = [c.input(f"next_noise_{j + 1}", c.rng.gumbel(size=(N, n)),
                     f"Gumbel noise g'_{j + 1} of agent {j + 1}'s target action")
             for j, n in enumerate(N_ACTIONS)]
    rewards = c.input("rewards_1", c.rng.standard_normal(N), "agent 1's rewards r_1")
    terminated = c.input("terminated", episode_flags(N, [2]), "True where o' is terminal")
    targets = [_actor_net(c, f"target_actor_{j + 1}", j) for j in range(2)]
    critic, critic_target = _critic_net(c, "critic"), _critic_net(c, "target_critic")
    a_next = [c.output(f"target_actions_{j + 1}",
                       maddpg.gumbel_softmax(targets[j](next_obs[j]), noise[j], T).data,
                       f"a'_{j + 1} = softmax((target_actor_{j + 1}(o'_{j + 1}) + g') / T)")
              for j in range(2)]
    x_obs, x_act = maddpg.joint_input(next_obs, a_next)
    q_next = c.output("q_next_target", critic_target(ops.concatenate([x_obs, x_act], axis=-1))
                      [..., 0].data, "Q_1'(o', a'_1, a'_2)")
    y = c.output("y", maddpg.critic_target(rewards, terminated, q_next, gamma), "target y")
    x_obs, x_act = maddpg.joint_input(obs, actions)
    q = critic(ops.concatenate([x_obs, x_act], axis=-1))[..., 0]
    c.output("q", q, "Q_1(o, a_1, a_2)")
    loss = maddpg.critic_loss(q, y)
    c.output("critic_loss", loss, "mean (Q - y)^2")
    c.gradient("critic_loss", loss, c.params("critic"))


@CASES.register(
    "maddpg_actor", seed=2002, section="MADDPG",
    title="MADDPG actor: grad_{a_1} Q_1 through agent 1's relaxed action, agent 2's replayed",
    paper="Lowe et al. 2017, section 4, eq. 5",
    estimators=["minipg.estimators.maddpg.gumbel_softmax",
                "minipg.estimators.maddpg.actor_actions",
                "minipg.estimators.maddpg.actor_objective",
                "minipg.estimators.maddpg.logit_penalty"],
    formula=["a_1 = softmax((actor_1(o_1) + g) / T), the relaxed sample at the fixed noise g",
             "objective = mean_i Q_1(concat(o_1, o_2, a_1, a_2)) with a_2 the REPLAYED action "
             "(critic fixed; maximised)",
             "grad.objective.a_1 = d objective / d a_1 at a_1 = the relaxed sample",
             "actor_loss = -objective + policy_reg mean(actor_1(o_1)^2)   (minimised; the "
             "authors' code's regulariser on the logits)"])
def _maddpg_actor(c):
    N, T, reg = 6, 0.7, 1e-2
    c.hp(temperature=T, policy_reg=reg)
    obs, actions = _joint_batch(c, N)
    noise = c.input("noise_1", c.rng.gumbel(size=(N, N_ACTIONS[0])), "Gumbel noise g of agent 1")
    actor, critic = _actor_net(c, "actor_1", 0), _critic_net(c, "critic")
    logits = actor(obs[0])
    own = maddpg.gumbel_softmax(logits, noise, T)
    c.output("a_1", own, "agent 1's relaxed action")

    def objective_of(a1):
        joint = maddpg.actor_actions(actions, 0, a1)
        x_obs, x_act = maddpg.joint_input(obs, joint)
        return maddpg.actor_objective(critic(ops.concatenate([x_obs, x_act], axis=-1))[..., 0])
    objective = objective_of(own)
    c.output("objective", objective, "mean Q_1(o, a_1(theta), a_2 replayed) (maximised)")
    c.gradient("objective", objective, c.params("actor_1"))
    a_leaf = Tensor(own.data.copy(), requires_grad=True)
    c.gradient("objective", objective_of(a_leaf), {"a_1": a_leaf},
               "the objective as a function of agent 1's action, at the relaxed sample")
    actor_loss = -objective + reg * maddpg.logit_penalty(logits)
    c.output("actor_loss", actor_loss, "-objective + policy_reg mean(logits^2)")
    c.gradient("actor_loss", actor_loss, c.params("actor_1"))


@CASES.register(
    "gumbel_softmax", seed=2003, section="MADDPG",
    title="Gumbel-softmax relaxed sample and its gradient in the logits",
    paper="Jang et al. 2017, eq. 2; Lowe et al. 2017, section 4",
    estimators=["minipg.estimators.maddpg.gumbel_noise",
                "minipg.estimators.maddpg.gumbel_softmax"],
    formula=["g = -log(-log U), U ~ U(0, 1): the given noise (drawn by gumbel_noise)",
             "y = softmax((logits + g) / T), g held constant",
             "weighted = sum(w * y); grad.weighted.logits = d weighted / d logits"])
def _gumbel_softmax(c):
    T = 0.7
    c.hp(temperature=T)
    logits = c.input("logits", 1.5 * c.rng.standard_normal((5, 4)), "logits l")
    noise = c.input("noise", maddpg.gumbel_noise(c.rng, (5, 4)), "Gumbel noise g")
    weights = c.input("weights", c.rng.standard_normal((5, 4)), "weights w of the readout")
    leaf = Tensor(logits.copy(), requires_grad=True)
    y = maddpg.gumbel_softmax(leaf, noise, T)
    c.output("y", y, "the relaxed sample")
    weighted = ops.sum(y * weights)
    c.output("weighted", weighted, "sum(w * y)")
    c.gradient("weighted", weighted, {"logits": leaf})


@CASES.register(
    "maddpg_approximate_policy", seed=2004, section="MADDPG",
    title="MADDPG approximate policy of another agent: log-likelihood plus entropy bonus",
    paper="Lowe et al. 2017, section 4.2, eq. 7",
    estimators=["minipg.estimators.maddpg.approximate_policy_loss"],
    formula=["p = softmax(approx(o_2)); log p_a at agent 2's replayed action index a",
             "loss = -(mean log p_a + lambda mean H(p)), H(p) = -sum p log p   (minimised)"])
def _maddpg_approximate_policy(c):
    N, coef = 7, 0.1
    c.hp(entropy_coef=coef)
    obs = c.input("obs_2", c.rng.standard_normal((N, OBS_DIMS[1])), "agent 2's observations")
    actions = c.input("actions_2", c.rng.integers(0, N_ACTIONS[1], N),
                      "agent 2's replayed action indices (the argmax of its relaxed action)")
    net = c.mlp("approx", [OBS_DIMS[1], 8, N_ACTIONS[1]], "tanh", None, "o_2",
                "logits of agent 1's approximation of agent 2's policy")
    log_probs = ops.log_softmax(net(obs), axis=-1)
    log_prob = ops.gather(log_probs, actions[:, None], axis=-1)[:, 0]
    entropy = -ops.sum(ops.exp(log_probs) * log_probs, axis=-1)
    c.output("log_prob", log_prob, "log p_a")
    c.output("entropy", entropy, "H(p)")
    loss = maddpg.approximate_policy_loss(log_prob, entropy, coef)
    c.output("loss", loss, "-(mean log p_a + lambda mean H)")
    c.gradient("loss", loss, c.params("approx"))
