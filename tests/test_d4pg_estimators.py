"""D4PG's N-step target, critic loss and actor gradient (minipg.buffers.nstep,
minipg.estimators.d4pg).

* the N-step target: the assembler's rows turned into Y_i by the estimator equal a direct
  evaluation of Y_i = Phi(sum_{k<m} gamma^k r_{i+k} + gamma^m (1 - d) z, p'(s'_{i+m-1}))
  on random episodes of several environments with terminations and truncations inside
  the window (the direct side walks the episode lists in plain Python and projects with
  the brute-force projection of test_projection.py);
* the critic loss: its autodiff gradient in the logits equals the closed form of the
  weighted softmax cross-entropy, (w_i / M)(softmax(l_i) - Y_i);
* the actor gradient: for a linear categorical critic and a linear actor, the autodiff
  gradient of J = mean E[Z_w(s, mu(s))] equals the DPG formula with Q = E[Z] written by
  hand, (1/M) sum_i s_i^T grad_a Q(s_i, a) (Weng, "D4PG": grad_theta J = E[grad_theta mu
  E[grad_a Z]]);
* gradcheck (central differences) of both losses.

Formula-level tolerances: both sides are exact expressions of the same float64 numbers
in a different order: rtol 1e-10 (CONTRIBUTING.md, "Test tolerances": identities without
finite differences).
"""

from __future__ import annotations

import numpy as np
import pytest

from minipg.autodiff import Tensor, gradcheck
from minipg.algorithms.d4pg import CategoricalCritic
from minipg.algorithms.offpolicy_common import DeterministicActor
from minipg.buffers.nstep import NStepAssembler
from minipg.estimators import d4pg
from minipg.kernels import categorical_projection_numpy

from test_projection import brute_force


# ------------------------------------------------------------------- N-step target
def random_streams(n_envs, T, seed, p_end=0.12):
    """Per environment: obs (T, 2) = (env, t), rewards, terminated, truncated, and the
    TRUE next observation of each step: (env, t + 1) inside an episode, a distinct final
    observation (env, -(t + 1)) where the episode ended (the reset one is (env, t + 1))."""
    rng = np.random.default_rng(seed)
    obs = np.stack(np.meshgrid(np.arange(T), np.arange(n_envs))[::-1], -1).astype(float)
    obs = obs.transpose(1, 0, 2)                                  # (T, n_envs, 2)
    rewards = rng.normal(size=(T, n_envs))
    terminated = rng.random((T, n_envs)) < p_end
    truncated = (rng.random((T, n_envs)) < p_end) & ~terminated
    next_obs = obs.copy()
    next_obs[:, :, 1] += 1
    ended = terminated | truncated
    next_obs[ended, 1] = -next_obs[ended, 1]
    return obs, rng.normal(size=(T, n_envs, 1)), rewards, next_obs, terminated, truncated


def next_probs_of(next_obs, n_atoms):
    """A fixed 'target critic': p'(s') = softmax(sin(s' W))."""
    W = np.random.default_rng(123).normal(size=(2, n_atoms))
    logits = np.sin(next_obs @ W) * 2.0
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("N, seed", [(1, 0), (3, 1), (5, 2), (8, 3)])
def test_n_step_target_equals_direct_evaluation(N, seed):
    n_envs, T, gamma, v_min, v_max, n_atoms = 3, 80, 0.9, -4.0, 6.0, 11
    obs, actions, rewards, next_obs, term, trunc = random_streams(n_envs, T, seed)
    asm = NStepAssembler(n_envs, N, gamma, (2,), (1,))
    got = {}
    for t in range(T):
        rows = asm.add(obs[t], actions[t], rewards[t], next_obs[t], term[t], trunc[t])
        Y = d4pg.target_distribution(rows.rewards, rows.n_steps, rows.terminated,
                                     next_probs_of(rows.next_obs, n_atoms), gamma, v_min, v_max)
        for s, a, y in zip(rows.obs, rows.actions, Y):
            key = (int(s[0]), int(s[1]))
            assert key not in got                            # each start emitted once
            got[key] = (a, y)
    expected = {}
    for e in range(n_envs):
        for t in range(T):
            ret, k = 0.0, 0
            while True:                                      # walk the episode from t
                i = t + k
                if i >= T:
                    break
                ret += gamma ** k * rewards[i, e]
                k += 1
                if term[i, e] or trunc[i, e] or k == N:
                    break
            if i >= T:
                continue                                     # window still open at the end
            discount = 0.0 if term[i, e] else gamma ** k     # gamma^m (1 - d)
            p_next = next_probs_of(next_obs[i, e][None], n_atoms)
            expected[(e, t)] = (actions[t, e], brute_force(p_next, [ret], [discount], v_min,
                                                           v_max)[0])
    assert got.keys() == expected.keys()
    assert any(trunc[:, e].any() and term[:, e].any() for e in range(n_envs))
    for key, (a, y) in expected.items():
        np.testing.assert_array_equal(got[key][0], a)
        # float64 rounding only: the assembler sums the N-step return in another order
        # than the direct sum (<= 8 rewards N(0, 1): ~1e-14 apart), which moves the projected
        # position (Tz - v_min) / dz and so a split of mass (<= 1) by ~1e-14 per atom
        np.testing.assert_allclose(got[key][1], y, rtol=0, atol=1e-12)


def test_truncation_bootstraps_termination_does_not():
    asm = NStepAssembler(2, 3, 0.5, (1,), (1,))
    o = np.zeros((2, 1))
    asm.add(o, o, np.array([1.0, 1.0]), o + 1, np.array([False, False]), np.array([False, False]))
    rows = asm.add(o + 1, o, np.array([2.0, 2.0]), np.array([[7.0], [8.0]]),
                   np.array([True, False]), np.array([False, True]))
    np.testing.assert_allclose(rows.rewards, [1 + 0.5 * 2, 2, 1 + 0.5 * 2, 2])
    np.testing.assert_array_equal(rows.n_steps, [2, 1, 2, 1])
    np.testing.assert_array_equal(rows.terminated, [True, True, False, False])
    np.testing.assert_array_equal(rows.next_obs[:, 0], [7, 7, 8, 8])     # the TRUE final obs
    np.testing.assert_allclose(d4pg.bootstrap_discounts(rows.n_steps, rows.terminated, 0.5),
                               [0, 0, 0.25, 0.5])


def test_assembler_state_round_trip():
    asm = NStepAssembler(2, 4, 0.9, (2,), (1,))
    obs, actions, rewards, next_obs, term, trunc = random_streams(2, 11, 5)
    for t in range(6):
        asm.add(obs[t], actions[t], rewards[t], next_obs[t], term[t], trunc[t])
    other = NStepAssembler(2, 4, 0.9, (2,), (1,)).load_state_dict(asm.state_dict())
    for t in range(6, 11):
        a = asm.add(obs[t], actions[t], rewards[t], next_obs[t], term[t], trunc[t])
        b = other.add(obs[t], actions[t], rewards[t], next_obs[t], term[t], trunc[t])
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


# ----------------------------------------------------------------- critic loss
def test_critic_loss_gradient_is_the_softmax_cross_entropy_closed_form():
    rng = np.random.default_rng(0)
    M, n = 7, 9
    logits = Tensor(rng.normal(size=(M, n)) * 2, requires_grad=True)
    target = rng.dirichlet(np.ones(n), size=M)
    weights = rng.uniform(0.1, 1.0, size=M)
    loss = d4pg.critic_loss(d4pg.cross_entropy(logits, target), weights)
    loss.backward()
    p = np.exp(logits.data - logits.data.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    expected_loss = np.mean(weights * -(target * np.log(p)).sum(1))
    np.testing.assert_allclose(float(loss.data), expected_loss, rtol=1e-12)
    np.testing.assert_allclose(logits.grad, weights[:, None] / M * (p - target), rtol=1e-10,
                               atol=1e-15)


def test_critic_loss_closed_form_rejects_an_unweighted_loss():
    """The companion: the same closed form does not hold for a loss that drops w_i."""
    rng = np.random.default_rng(0)
    logits = Tensor(rng.normal(size=(5, 4)), requires_grad=True)
    target, weights = rng.dirichlet(np.ones(4), size=5), rng.uniform(0.1, 0.9, size=5)
    d4pg.critic_loss(d4pg.cross_entropy(logits, target), np.ones(5)).backward()
    p = np.exp(logits.data) / np.exp(logits.data).sum(1, keepdims=True)
    assert not np.allclose(logits.grad, weights[:, None] / 5 * (p - target), rtol=1e-3)


def test_gradcheck_of_the_losses():
    # central differences at eps 1e-6 on well-scaled float64 values: atol 1e-7, rtol 1e-6
    # (CONTRIBUTING.md, "Test tolerances")
    rng = np.random.default_rng(1)
    target, weights = rng.dirichlet(np.ones(6), size=4), rng.uniform(0.2, 1.0, size=4)
    atoms = np.linspace(-2, 3, 6)
    x = rng.normal(size=(4, 6))
    assert gradcheck(lambda l: d4pg.critic_loss(d4pg.cross_entropy(l, target), weights), (x,),
                     atol=1e-7, rtol=1e-6)
    assert gradcheck(lambda l: d4pg.actor_objective(l, atoms), (x,), atol=1e-7, rtol=1e-6)


# --------------------------------------------------------------- actor gradient
def test_actor_gradient_is_the_gradient_of_the_critics_mean():
    """Linear critic logits = [s, a] W + b over atoms z, linear actor mu(s) = s A + c.
    Q(s, a) = sum_j softmax(l)_j z_j, so grad_a Q = W_a (p * (z - Q)) (W_a the action rows
    of W), and the DPG: grad_A J = (1/M) sum_i s_i^T grad_a Q_i, grad_c J = mean grad_a Q."""
    rng = np.random.default_rng(2)
    M, obs_dim, act_dim, n = 6, 3, 2, 7
    atoms = np.linspace(-1.0, 2.0, n)
    critic = CategoricalCritic(obs_dim, act_dim, (), "relu", n, rng, np.float64)
    actor = DeterministicActor(obs_dim, act_dim, (), "relu", None, None, rng, np.float64)
    obs = rng.normal(size=(M, obs_dim))
    J = d4pg.actor_objective(critic(obs, actor(obs)), atoms)
    actor.zero_grad()
    J.backward()
    layer, critic_layer = actor.net.layers[0], critic.net.layers[0]
    A, c = layer.weight.data, layer.bias.data.reshape(-1)
    W, b = critic_layer.weight.data, critic_layer.bias.data.reshape(-1)
    a = obs @ A + c
    logits = np.concatenate([obs, a], 1) @ W + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = p @ atoms
    grad_a = (p * (atoms[None, :] - q[:, None])) @ W[obs_dim:].T           # (M, act_dim)
    np.testing.assert_allclose(float(J.data), q.mean(), rtol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, obs.T @ grad_a / M, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(layer.bias.grad.reshape(-1), grad_a.mean(0), rtol=1e-10,
                               atol=1e-14)
    # the companion: the gradient of the most probable atom's value is a different thing
    wrong = (p * (atoms[None, :] - atoms[p.argmax(1)][:, None])) @ W[obs_dim:].T
    assert not np.allclose(layer.weight.grad, obs.T @ wrong / M, rtol=1e-3)


def test_target_distribution_and_validation():
    probs = np.array([[0.2, 0.3, 0.5]])
    Y = d4pg.target_distribution(np.array([0.5]), np.array([1]), np.array([False]), probs, 0.5,
                                 0.0, 2.0)
    np.testing.assert_allclose(Y, categorical_projection_numpy(probs, [0.5], [0.5], 0.0, 2.0))
    Y = d4pg.target_distribution(np.array([0.25]), np.array([3]), np.array([True]), probs, 0.5,
                                 0.0, 2.0)
    np.testing.assert_allclose(Y, [[0.75, 0.25, 0.0]])       # all mass at r = 0.25
    with pytest.raises(ValueError, match="n_steps"):
        d4pg.bootstrap_discounts(np.array([0]), np.array([False]), 0.9)
    with pytest.raises(ValueError, match="gamma"):
        d4pg.bootstrap_discounts(np.array([1]), np.array([False]), 1.5)
    with pytest.raises(TypeError, match="plain array"):
        d4pg.cross_entropy(Tensor(np.zeros((1, 3))), Tensor(probs))
    with pytest.raises(ValueError, match="v_min"):
        d4pg.support(1.0, 1.0, 5)
    q = d4pg.q_values(Tensor(np.log(probs)), np.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(q.data, [1.3])
