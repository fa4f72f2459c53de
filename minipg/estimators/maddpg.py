r"""MADDPG: centralized critics, decentralized actors, the Gumbel-softmax relaxation and
the approximate policies of the other agents.

References: L. Weng, "Policy Gradient Algorithms" (2018), section "MADDPG";
R. Lowe, Y. Wu, A. Tamar, J. Harb, P. Abbeel, I. Mordatch, "Multi-Agent
Actor-Critic for Mixed Cooperative-Competitive Environments", NeurIPS 2017
(arXiv:1706.02275), section 4 and its appendix; E. Jang, S. Gu, B. Poole,
"Categorical Reparameterization with Gumbel-Softmax", ICLR 2017, and
C. J. Maddison, A. Mnih, Y. W. Teh, "The Concrete Distribution", ICLR 2017.

For agent i of N, on a minibatch of joint transitions
:math:`(\vec o, a_1..a_N, r_1..r_N, \vec o')` drawn from the joint replay D:

.. math::

    y_i &= r_i + \gamma\,(1 - d)\,Q_i'(\vec o', a'_1, \dots, a'_N),
        \quad a'_j = \mu'_j(o'_j) \text{ for EVERY agent } j        \\
    L(\theta_i) &= \tfrac1B \textstyle\sum_b (Q_i(\vec o, a_1..a_N) - y_i)^2 \\
    \nabla_{\theta_i} J &= \tfrac1B \textstyle\sum_b
        \nabla_{a_i} Q_i(\vec o, a_1..a_N)\big|_{a_i = \mu_i(o_i)}
        \nabla_{\theta_i}\mu_i(o_i)

where in the actor line every OTHER action :math:`a_j, j \ne i`, is the one
stored in the replay (Weng, "MADDPG", actor update: the expectation is over
:math:`\vec o, a \sim D`).  The critic sees its inputs in agent order:
``[o_1, ..., o_N, a_1, ..., a_N]`` (:func:`joint_input`); with one agent it
is DDPG's ``[s, a]`` and every line above is DDPG's (Algorithm 1 of
Lillicrap et al.).  ``d`` is termination only: a time-limit truncation
bootstraps.

Discrete actions (Lowe et al., section 4: "we use the Gumbel-Softmax
estimator"): the policy's output is a vector of logits ``l`` and its action
the relaxed one-hot sample

.. math::

    y = \mathrm{softmax}((l + g) / T), \quad g_k = -\log(-\log U_k),\ U_k \sim U(0, 1)

whose argmax is distributed as Categorical(softmax(l)) for every temperature
T (the Gumbel-max trick) and which tends to that one-hot vector as T -> 0.
With the noise g held fixed (an argument here), y is a smooth function of l:
:math:`\partial y_k / \partial l_m = y_k(\delta_{km} - y_m) / T`.

Approximate policies (Lowe et al., section 4.2): agent i fits
:math:`\hat\mu_i^j` to agent j's replayed actions by maximising
:math:`\mathbb{E}[\log\hat\mu_i^j(a_j|o_j) + \lambda H(\hat\mu_i^j)]`
(:func:`approximate_policy_loss`, its negative, minimised).

Conventions as in every estimator family: ``*_objective`` is maximised,
``*_loss`` minimised; gradient-carrying inputs are Tensors, held-constant
targets plain finite arrays of the batch's shape.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import as_tensor, ops

from . import checks as _c
from .terms import critic_squared_error, deterministic_actor_objective, one_step_target

__all__ = ["joint_input", "actor_actions", "critic_target", "critic_loss", "actor_objective",
           "gumbel_noise", "gumbel_softmax", "logit_penalty", "approximate_policy_loss"]


# ------------------------------------------------------------ the centralized critic

def joint_input(obs, actions):
    r"""(x_obs, x_act): the critic's inputs ``concat(o_1..o_N)`` and ``concat(a_1..a_N)``.

    ``obs`` and ``actions`` are sequences of N arrays or Tensors of shape
    (B, d_j), in agent order; a critic that concatenates its two inputs
    (``[x_obs, x_act]``) therefore reads ``[o_1, ..., o_N, a_1, ..., a_N]``.
    Agent j's action is always in slot j: permuting the agents permutes
    these blocks the same way (tests/test_maddpg.py checks it).  With one
    agent the inputs are DDPG's ``(s, a)``.
    """
    where = "maddpg.joint_input"
    if len(obs) != len(actions) or len(obs) < 1:
        raise ValueError(f"{where}: {len(obs)} observations and {len(actions)} actions; "
                         "accepted: one observation and one action per agent (N >= 1)")
    obs = [as_tensor(o) for o in obs]
    actions = [as_tensor(a) for a in actions]
    rows = {o.shape[0] for o in obs} | {a.shape[0] for a in actions}
    if len(rows) != 1 or any(x.ndim != 2 for x in obs + actions):
        raise ValueError(f"{where}: every observation and action must be (B, d) with one B; "
                         f"got shapes {[x.shape for x in obs]} and {[x.shape for x in actions]}")
    cat = lambda xs: xs[0] if len(xs) == 1 else ops.concatenate(xs, axis=-1)   # noqa: E731
    return cat(obs), cat(actions)


def actor_actions(replayed_actions, agent, own_action):
    r"""The joint action of agent ``agent``'s actor update: its own action from its current
    policy (a Tensor on the tape) in slot ``agent``, every other agent's action as
    REPLAYED (held constant), so the gradient reaches only :math:`\theta_i` through
    :math:`\nabla_{a_i} Q_i` (Weng, "MADDPG", actor update)."""
    where = "maddpg.actor_actions"
    n = len(replayed_actions)
    if not 0 <= int(agent) < n:
        raise ValueError(f"{where}: agent {agent} is not one of the {n} agents (0..{n - 1})")
    out = []
    for j, a in enumerate(replayed_actions):
        if j == int(agent):
            out.append(_c.differentiable(own_action, "own_action", where, np.shape(a)))
        else:
            out.append(_c.held_constant(a, f"replayed_actions[{j}]", where, np.shape(a),
                                        np.asarray(a).dtype))
    return out


def critic_target(rewards, terminated, q_next_target, gamma):
    r"""y_i = r_i + gamma (1 - d) Q_i'(o', mu_1'(o_1'), ..., mu_N'(o_N')) (Weng, "MADDPG",
    critic update), a plain array (held constant).

    ``q_next_target`` is the target critic at EVERY agent's target-policy action
    (plain array: pass a Tensor's ``.data``); ``terminated`` bool of the batch's shape.
    """
    return one_step_target(rewards, terminated, q_next_target, gamma, "q_next_target",
                           "maddpg.critic_target")


def critic_loss(q, y):
    r"""L(theta_i) = (1/B) sum_b (Q_i(o, a_1..a_N) - y_i)^2 (Weng, "MADDPG"); minimised."""
    return critic_squared_error(q, y, "maddpg.critic_loss")     # (1/B) sum (Q - y)^2


def actor_objective(q_of_mu):
    r"""J(theta_i) = (1/B) sum_b Q_i(o, a_1, .., mu_i(o_i), .., a_N); maximised.

    ``q_of_mu`` is the critic at :func:`actor_actions`'s joint action, on the
    tape through agent i's policy only; its gradient is
    :math:`\frac1B\sum_b \nabla_{a_i}Q_i \nabla_{\theta_i}\mu_i(o_i)`.
    """
    return deterministic_actor_objective(q_of_mu, "maddpg.actor_objective")


# ------------------------------------------------------------ Gumbel-softmax

def gumbel_noise(rng, shape, dtype=np.float64):
    r"""Standard Gumbel draws g = -log(-log U), U ~ U(0, 1) (open interval), from ``rng``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"maddpg.gumbel_noise: rng must be a numpy Generator, got "
                        f"{type(rng).__name__}")
    u = rng.random(shape)
    u = np.clip(u, np.finfo(np.float64).tiny, 1.0 - np.finfo(np.float64).epsneg)  # 0 < U < 1
    return (-np.log(-np.log(u))).astype(dtype)


def gumbel_softmax(logits, noise, temperature):
    r"""The relaxed one-hot sample y = softmax((logits + g) / T) (Jang et al. 2017, eq. 2).

    ``logits`` a Tensor (B, n) (the policy's output), ``noise`` the Gumbel draws
    g (plain array, same shape: held constant), ``temperature`` T > 0.  argmax y
    = argmax (l + g) ~ Categorical(softmax(l)) for every T; the gradient in l at
    fixed g is :math:`\partial y_k/\partial l_m = y_k (\delta_{km} - y_m) / T`.
    """
    where = "maddpg.gumbel_softmax"
    logits = _c.differentiable(logits, "logits", where)
    noise = _c.held_constant(noise, "noise", where, logits.shape, logits.dtype)
    temperature = _c.coefficient(temperature, "temperature", where)
    if temperature == 0.0:
        raise ValueError(f"{where}: temperature must be > 0; got 0")
    return ops.softmax((logits + noise) * (1.0 / temperature), axis=-1)   # softmax((l + g)/T)


def logit_penalty(logits):
    r"""mean(l^2) over the batch and actions: the small regulariser the authors' code adds to
    the actor loss (weight 1e-3) so the logits do not drift; minimised."""
    logits = _c.differentiable(logits, "logits", "maddpg.logit_penalty")
    return ops.mean(ops.square(logits))


# ------------------------------------------------------------ approximate policies

def approximate_policy_loss(log_prob, entropy, entropy_coef):
    r"""-(1/B) sum_b [log mu_hat(a_j | o_j) + lambda H(mu_hat(.|o_j))] (Lowe et al., eq. 7);
    minimised.

    ``log_prob`` (B,) Tensor: the approximate policy's log-likelihood of agent
    j's REPLAYED action; ``entropy`` (B,) Tensor: its entropy at o_j;
    ``entropy_coef`` lambda >= 0.  For a categorical mu_hat with logits l the
    gradient in l is :math:`-[(e_a - p) + \lambda\,\partial H/\partial l]`,
    :math:`\partial H/\partial l_k = -p_k(\log p_k + H)` (per sample, / B).
    """
    where = "maddpg.approximate_policy_loss"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    entropy = _c.differentiable(entropy, "entropy", where, log_prob.shape)
    coef = _c.coefficient(entropy_coef, "entropy_coef", where)
    return -(ops.mean(log_prob) + coef * ops.mean(entropy))     # -(E log mu_hat + lambda E H)
