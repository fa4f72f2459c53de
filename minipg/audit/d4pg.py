r"""``minipg audit`` checks of D4PG: the categorical critic's loss and the actor's gradient.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "D4PG",
Algorithm 1; Barth-Maron et al. 2018; Bellemare et al. 2017.  Every check
runs the ALGORITHM's own loss methods (``D4PG.critic_loss``,
``D4PG.actor_loss``), which call :mod:`minipg.estimators.d4pg`, so what is
audited is what training uses.  The levels (:mod:`minipg.audit.levels`):

gradcheck
    the critic loss (1/M) sum_i w_i H(Y_i, Z_w(s_i, a_i)) in the critic's
    parameters and the actor loss -(1/M) sum_i E[Z_w(s_i, mu(s_i))] in the
    actor's, small tanh networks, a random prioritized batch of N-step rows
    (m_i in 1..3, some terminated, importance weights in (0, 1]).
formula
    LINEAR networks: logits l = [s, a] W + b, mu(s) = center + scale
    tanh(s A + c).  By hand in NumPy: the target Y_i (the target actor and
    critic evaluated by hand, projected by the NumPy twin of the projection,
    bootstrap gamma^m (1 - d)); the critic gradient X^T G with G = (w_i/M)
    (softmax(l_i) - Y_i) (softmax cross-entropy); the actor gradient
    -(1/M) s^T g with g = grad_a Q . scale (1 - tanh^2), grad_a Q = W_a (p (z -
    Q)), Q = sum_j p_j z_j (the DPG through the critic's mean).
exact
    the DPG theorem on the LQR test bed, as for DDPG
    (:func:`minipg.audit.offpolicy.dpg_lqr_check`), with a categorical
    critic whose MEAN is the exact Q^K: two atoms {v_min, v_max} with
    probabilities (v_max - Q, Q - v_min)/(v_max - v_min), so E[Z] = Q^K and
    the actor gradient through E[Z] must have expectation (1 - gamma)
    grad_K J.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import ops
from ..buffers.prioritized import PrioritizedBatch
from ..kernels.projection import categorical_projection_numpy
from . import audit_check
from .beds import softmax_rows
from .levels import formula_result, gradcheck_module, relative_error
from .offpolicy import dpg_lqr_check, make_agent

__all__ = ["random_prioritized_batch", "TwoAtomCritic", "d4pg_lqr_check"]

SETTINGS = dict(atoms=7, v_min=-3.0, v_max=4.0, n_step=3)


def random_prioritized_batch(rng, n, agent):
    """A PrioritizedBatch of ``n`` random N-step rows inside the agent's box."""
    d = agent.action_dim
    actions = agent.low + (agent.high - agent.low) * rng.uniform(0.05, 0.95, size=(n, d))
    terminated = np.zeros(n, bool)
    terminated[::3] = True
    probabilities = rng.uniform(0.01, 0.1, size=n)
    weights = rng.uniform(0.2, 1.0, size=n)
    weights /= weights.max()
    return PrioritizedBatch(rng.standard_normal((n, agent.obs_dim)), actions,
                            rng.standard_normal(n), rng.standard_normal((n, agent.obs_dim)),
                            terminated, np.arange(n), rng.integers(1, 4, size=n),
                            probabilities, weights)


def _agent(rng, hidden):
    agent = make_agent("d4pg", hidden=hidden, **SETTINGS)
    for m in agent.modules().values():
        m.flat_params = 0.5 * rng.standard_normal(m.flat_params.shape)
    return agent


@audit_check("d4pg", "critic_loss (weighted CE)", "gradcheck")
def _critic_gradcheck(full, rng):
    agent = _agent(rng, (5,))
    batch = random_prioritized_batch(rng, 12, agent)
    return gradcheck_module(lambda: agent.critic_loss(batch)[0], agent.critic,
                            "d4pg.critic_loss in the critic's parameters")


@audit_check("d4pg", "actor_loss (DPG via E[Z])", "gradcheck")
def _actor_gradcheck(full, rng):
    agent = _agent(rng, (5,))
    batch = random_prioritized_batch(rng, 12, agent)
    return gradcheck_module(lambda: agent.actor_loss(batch.obs), agent.actor,
                            "d4pg.actor_loss in the actor's parameters")


@audit_check("d4pg", "critic_loss + actor_loss", "formula")
def _formula(full, rng):
    agent = _agent(rng, ())
    cfg = agent.config
    batch = random_prioritized_batch(rng, 16, agent)
    M, z = len(batch.rewards), agent.atoms
    center, scale = agent.center, agent.scale
    A, c = agent.actor.net.layer0.weight.data, agent.actor.net.layer0.bias.data
    At, ct = agent.actor_target.net.layer0.weight.data, agent.actor_target.net.layer0.bias.data
    W, b = agent.critic.net.layer0.weight.data, agent.critic.net.layer0.bias.data
    Wt, bt = agent.critic_target.net.layer0.weight.data, agent.critic_target.net.layer0.bias.data

    # the target Y_i by hand: target actor, target critic, projection's NumPy twin
    mu_next = center + scale * np.tanh(batch.next_obs @ At + ct)
    p_next = softmax_rows(np.concatenate([batch.next_obs, mu_next], 1) @ Wt + bt)
    discounts = np.where(batch.terminated, 0.0, cfg.gamma ** batch.n_steps.astype(float))
    Y = categorical_projection_numpy(p_next, batch.rewards, discounts, cfg.v_min, cfg.v_max)
    loss, _, _ = agent.critic_loss(batch)
    agent.critic.zero_grad()
    loss.backward()
    X = np.concatenate([batch.obs, batch.actions], 1)
    p = softmax_rows(X @ W + b)
    G = batch.weights[:, None] / M * (p - Y)                   # d L / d logits
    expected_loss = np.mean(batch.weights * -(Y * np.log(p)).sum(1))
    layer = agent.critic.net.layer0
    error = max(relative_error(float(loss.data), expected_loss),
                relative_error(layer.weight.grad, X.T @ G),
                relative_error(layer.bias.grad.reshape(-1), G.sum(0)))

    # actor: the DPG through Q = E[Z] = sum_j p_j z_j
    agent.actor.zero_grad()
    agent.actor_loss(batch.obs).backward()
    pre = batch.obs @ A + c
    mu = center + scale * np.tanh(pre)
    p_mu = softmax_rows(np.concatenate([batch.obs, mu], 1) @ W + b)
    q = p_mu @ z
    grad_a = (p_mu * (z[None, :] - q[:, None])) @ W[agent.obs_dim:].T      # grad_a Q
    g = grad_a * scale * (1.0 - np.tanh(pre) ** 2)                         # dQ / d pre
    actor_layer = agent.actor.net.layer0
    error = max(error, relative_error(actor_layer.weight.grad, -batch.obs.T @ g / M),
                relative_error(actor_layer.bias.grad.reshape(-1), -g.mean(0)))
    return formula_result(error, "d4pg: weighted cross-entropy gradient (w/M)(p - Y) with Y "
                                 "by hand, and the DPG through E[Z], linear networks")


class TwoAtomCritic:
    """A categorical critic on the atoms {v_min, v_max} whose mean is ``q_fn(s, a)``:
    logits (log(v_max - Q), log(Q - v_min)), so P(v_max) = (Q - v_min)/(v_max - v_min)."""

    def __init__(self, q_fn, v_min, v_max):
        self.q_fn, self.v_min, self.v_max = q_fn, float(v_min), float(v_max)

    def __call__(self, obs, actions):
        q = self.q_fn(obs, actions)
        if not np.all((q.data > self.v_min) & (q.data < self.v_max)):
            raise ValueError(f"TwoAtomCritic: Q outside ({self.v_min}, {self.v_max})")
        return ops.stack([ops.log(self.v_max - q), ops.log(q - self.v_min)], axis=1)


def d4pg_lqr_check(rng, n_batches=40, batch_size=256, actor_loss=None):
    """The DPG-on-LQR check (:func:`minipg.audit.offpolicy.dpg_lqr_check`) of D4PG's actor
    loss with a two-atom critic of mean Q^K; ``actor_loss(agent, obs)`` replaces
    ``agent.actor_loss`` (the tests pass a wrong one)."""
    v_min, v_max = -1e4, 1.0                 # Q^K <= 0 on lqr_2d; far above -1e4 on rho

    def loss(agent, obs):
        if not isinstance(agent.critic, TwoAtomCritic):
            agent.critic = TwoAtomCritic(agent.critic.first, v_min, v_max)
            agent.atoms = np.array([v_min, v_max])
        return (actor_loss or (lambda ag, x: ag.actor_loss(x)))(agent, obs)

    return dpg_lqr_check("d4pg", rng, n_batches=n_batches, batch_size=batch_size,
                         actor_loss=loss)


@audit_check("d4pg", "actor gradient = DPG via E[Z] (LQR)", "exact")
def _exact(full, rng):
    return d4pg_lqr_check(rng, n_batches=200 if full else 40)
