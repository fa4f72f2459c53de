"""MADDPG: the estimators and the algorithm's losses (issue 20, "Checks (CI)").

Each structural check (one agent = DDPG, the critic's input order, the target
policies in the critic target, the replayed actions in the actor update) is
written as a function returning True/False and is shown to return False for a
deliberately wrong variant, so no check here is one that cannot fail.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from scipy import stats

from minipg.algorithms.base import ConfigError, config_from
from minipg.algorithms.ddpg import DDPG
from minipg.algorithms.maddpg import MADDPG, JointBatch
from minipg.autodiff import Tensor, gradcheck, ops
from minipg.buffers.replay import ReplayBatch
from minipg.distributions import Categorical
from minipg.estimators import maddpg as est
from minipg.optim import Adam

BOX = gym.spaces.Box(np.array([-2.0, -0.5]), np.array([2.0, 1.5]), dtype=np.float64)


def obs_space(d):
    return gym.spaces.Box(-np.inf, np.inf, (d,), np.float64)


def make_maddpg(obs_dims, action_spaces, seed=0, **settings):
    cfg = dict(hidden=(6, 5), activation="tanh", buffer_size=64, batch_size=8,
               learning_starts=0, max_grad_norm=0.0)
    cfg.update(settings)
    config = config_from(MADDPG.Config, cfg)
    return MADDPG(config, tuple(obs_space(d) for d in obs_dims), tuple(action_spaces), seed)


def randomize(module, rng, scale=0.5):
    module.flat_params = scale * rng.standard_normal(module.flat_params.shape)


def random_joint_batch(rng, agent, n=7):
    obs = [rng.standard_normal((n, d)) for d in agent.obs_dims]
    next_obs = [rng.standard_normal((n, d)) for d in agent.obs_dims]
    actions = []
    for space, d in zip(agent.action_space, agent.action_dims):
        if isinstance(space, gym.spaces.Discrete):
            actions.append(rng.dirichlet(np.ones(d), size=n))      # relaxed one-hot samples
        else:
            actions.append(space.low + (space.high - space.low) * rng.uniform(0.05, 0.95, (n, d)))
    terminated = np.zeros(n, bool)
    terminated[::3] = True
    return JointBatch(obs, actions, rng.standard_normal((n, agent.n_agents)), next_obs,
                      terminated, np.zeros(n, bool), np.zeros((n, agent.n_agents), np.int64))


def grads_of(loss, module):
    module.zero_grad()
    loss.backward()
    return np.array(module.flat_grad, copy=True)


# ------------------------------------------------------------------ one agent = DDPG

def one_agent_matches_ddpg(critic_loss_fn=None):
    """MADDPG's losses and gradients for one agent equal DDPG's on the same data
    (relative 1e-12); ``critic_loss_fn(agent, batch)`` replaces MADDPG's critic loss."""
    rng = np.random.default_rng(3)
    ddpg_cfg = config_from(DDPG.Config, dict(hidden=(6, 5), activation="tanh", buffer_size=64,
                                             batch_size=8, gamma=0.95))
    ddpg = DDPG(ddpg_cfg, obs_space(3), BOX, 0)
    mad = make_maddpg([3], [BOX], gamma=0.95)
    for name, module in ddpg.modules().items():
        randomize(module, rng)
        mine = {"actor": mad.actors[0][0], "critic": mad.critics[0][0],
                "actor_target": mad.actor_targets[0][0],
                "critic_target": mad.critic_targets[0][0]}[name]
        mine.flat_params = module.flat_params
    batch = random_joint_batch(rng, mad)
    rb = ReplayBatch(batch.obs[0], batch.actions[0], batch.rewards[:, 0], batch.next_obs[0],
                     batch.terminated, np.arange(7))
    loss_d, _ = ddpg.critic_loss(rb)
    loss_m = (critic_loss_fn or (lambda a, b: a.critic_loss(0, b)[0]))(mad, batch)
    pairs = [(float(loss_d.data), float(loss_m.data)),
             (grads_of(loss_d, ddpg.critic), grads_of(loss_m, mad.critics[0][0]))]
    actor_d, actor_m = ddpg.actor_loss(rb.obs), mad.actor_loss(0, batch)
    pairs += [(float(actor_d.data), float(actor_m.data)),
              (grads_of(actor_d, ddpg.actor), grads_of(actor_m, mad.actors[0][0]))]
    return all(np.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in pairs)


def test_one_agent_equals_ddpg_to_1e12():
    assert one_agent_matches_ddpg()


def test_one_agent_check_rejects_a_wrong_target():
    # a wrong critic target: Q' at the REPLAYED next action instead of mu'(o')
    def wrong(agent, batch):
        y = agent.td_target(0, batch, next_actions=batch.actions)
        return est.critic_loss(agent.critic(0, 0, batch.obs, batch.actions), y)
    assert not one_agent_matches_ddpg(wrong)


# ------------------------------------------------------------------ the critic's input order

SPACES3 = (gym.spaces.Discrete(4), gym.spaces.Discrete(3), gym.spaces.Discrete(3))
OBS3 = (5, 2, 3)


def permutation_consistent(joint_input, perm=(2, 0, 1)):
    """Q(joint_input(o, a)) == Q_perm(joint_input(o[perm], a[perm])) where Q_perm's first
    layer has the rows of Q's, block by block, in the permuted agent order."""
    rng = np.random.default_rng(0)
    agent = make_maddpg(OBS3, SPACES3)
    critic = agent.critics[0][0]
    randomize(critic, rng)
    batch = random_joint_batch(rng, agent)
    obs_blocks = np.split(np.arange(sum(OBS3)), np.cumsum(OBS3)[:-1])
    act_dims = agent.action_dims
    act_blocks = np.split(sum(OBS3) + np.arange(sum(act_dims)), np.cumsum(act_dims)[:-1])
    rows = np.concatenate([obs_blocks[p] for p in perm] + [act_blocks[p] for p in perm])
    permuted = critic.copy()
    W0 = permuted.W0.data
    W0[...] = critic.W0.data[:, rows, :]     # it reads agent perm[j] in slot j
    q = critic.first(*est.joint_input(batch.obs, batch.actions)).data
    q_perm = permuted.first(*joint_input([batch.obs[p] for p in perm],
                                         [batch.actions[p] for p in perm])).data
    return np.allclose(q, q_perm, rtol=1e-12, atol=1e-14)


def test_critic_inputs_permute_with_the_agents():
    assert permutation_consistent(est.joint_input)
    assert permutation_consistent(est.joint_input, perm=(1, 2, 0))


def test_permutation_check_rejects_swapped_action_slots():
    def swapped(obs, actions):            # agent 2's action fed in agent 1's slot and back
        return est.joint_input(obs, [actions[0], actions[2], actions[1]])
    assert not permutation_consistent(swapped)


# ---------------------------------------------------- target policies, replayed actions

CONT2 = (gym.spaces.Box(0.0, 1.0, (2,), np.float64), gym.spaces.Box(0.0, 1.0, (3,), np.float64))


def target_uses_every_target_policy(td_target=None):
    """y_0 equals r_0 + gamma (1 - d) Q_0'(o', mu_0'(o'_0), mu_1'(o'_1)), computed by hand,
    and NOT the value with agent 1's ONLINE policy; ``td_target(agent, batch)`` replaces
    the algorithm's."""
    rng = np.random.default_rng(1)
    agent = make_maddpg((3, 4), CONT2)
    for module in agent.modules().values():
        randomize(module, rng)
    batch = random_joint_batch(rng, agent)
    y = (td_target or (lambda a, b: a.td_target(0, b)))(agent, batch)

    def by_hand(policies):
        a_next = [policies[j](batch.next_obs[j]).data for j in range(2)]
        x = np.concatenate(batch.next_obs + a_next, axis=1)
        q = agent.critic_targets[0][0].first(x[:, :7], x[:, 7:]).data
        return batch.rewards[:, 0] + agent.config.gamma * np.where(batch.terminated, 0.0, q)
    right = by_hand([agent.actor_targets[0][0], agent.actor_targets[1][0]])
    online = by_hand([agent.actor_targets[0][0], agent.actors[1][0]])
    return (np.allclose(y, right, rtol=1e-12, atol=1e-14)
            and not np.allclose(y, online, rtol=1e-6))


def test_critic_target_uses_every_agents_target_policy():
    assert target_uses_every_target_policy()


def test_target_check_rejects_an_online_policy():
    def wrong(agent, batch):
        a_next = [agent.actor_targets[0][0](batch.next_obs[0]).data,
                  agent.actors[1][0](batch.next_obs[1]).data]         # online, not target
        return agent.td_target(0, batch, next_actions=a_next)
    assert not target_uses_every_target_policy(wrong)


def actor_uses_replayed_actions(actor_loss=None):
    """Agent 0's actor loss changes with agent 1's REPLAYED action and does not change
    with agent 1's current policy; its gradient equals the chain rule
    (1/B) sum grad_a0 Q_0 . d mu_0 (a central difference in a_0 per sample)."""
    rng = np.random.default_rng(2)
    agent = make_maddpg((3, 4), CONT2)
    for module in agent.modules().values():
        randomize(module, rng)
    batch = random_joint_batch(rng, agent)
    loss_fn = actor_loss or (lambda a, b: a.actor_loss(0, b))
    base = float(loss_fn(agent, batch).data)
    moved = JointBatch(batch.obs, [batch.actions[0], batch.actions[1] * 0.5 + 0.2],
                       batch.rewards, batch.next_obs, batch.terminated, batch.truncated,
                       batch.subpolicy)
    reacts_to_replay = abs(float(loss_fn(agent, moved).data) - base) > 1e-8
    randomize(agent.actors[1][0], rng)
    ignores_policy_1 = float(loss_fn(agent, batch).data) == base
    return reacts_to_replay and ignores_policy_1


def test_actor_update_uses_the_replayed_actions_of_the_others():
    assert actor_uses_replayed_actions()


def test_actor_check_rejects_current_policies_of_the_others():
    def wrong(agent, batch):
        own, _ = agent.policy_action(0, agent.actors[0][0], batch.obs[0])
        other = agent.actors[1][0](batch.obs[1])                     # current, not replayed
        return -est.actor_objective(agent.critic(0, 0, batch.obs, [own, other]))
    assert not actor_uses_replayed_actions(wrong)


# ------------------------------------------------------------------ Gumbel-softmax

LOGITS = np.array([[1.2, -0.3, 0.4, 2.0, -1.0]])


def argmax_chi_square_p(probs_null, n=20_000, temperature=0.7, seed=11):
    """p-value of Pearson's chi-square: the argmax of n relaxed samples of LOGITS against
    the categorical ``probs_null``."""
    rng = np.random.default_rng(seed)
    logits = np.repeat(LOGITS, n, axis=0)
    y = est.gumbel_softmax(logits, est.gumbel_noise(rng, logits.shape), temperature).data
    counts = np.bincount(np.argmax(y, axis=1), minlength=LOGITS.shape[1])
    return stats.chisquare(counts, n * probs_null).pvalue


def test_gumbel_softmax_argmax_is_categorical_chi_square():
    # level 0.001 (a 99.9% test, fixed seed): softmax(l) is not rejected ...
    softmax = np.exp(LOGITS[0]) / np.exp(LOGITS[0]).sum()
    assert argmax_chi_square_p(softmax) > 1e-3
    # ... and a wrong distribution, softmax(l / 2) (a temperature on the logits), is
    wrong = np.exp(LOGITS[0] / 2) / np.exp(LOGITS[0] / 2).sum()
    assert argmax_chi_square_p(wrong) < 1e-3


def test_gumbel_softmax_gradient_matches_central_differences():
    # float64, noise fixed: the engine's vjp against central differences at the tight
    # tolerances of CONTRIBUTING.md, "Test tolerances"
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 5))
    noise = est.gumbel_noise(rng, logits.shape)
    weights = rng.standard_normal((4, 5))
    for temperature in (0.5, 1.0, 2.0):
        f = lambda x, T=temperature: ops.sum(est.gumbel_softmax(x, noise, T) * weights)  # noqa
        assert gradcheck(f, [logits], eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gumbel_softmax_temperature():
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((50, 5))
    noise = est.gumbel_noise(rng, logits.shape)
    for T in (0.3, 1.0, 3.0):
        z = (logits + noise) / T
        expected = np.exp(z - z.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
        x = Tensor(logits.copy(), requires_grad=True)
        y = est.gumbel_softmax(x, noise, T)
        np.testing.assert_allclose(y.data, expected, rtol=1e-12)
        # closed-form Jacobian of row 0: dy_k/dl_m = y_k (delta_km - y_m) / T
        cot = np.zeros_like(logits)
        cot[0, 2] = 1.0
        ops.sum(y * cot).backward()
        jac = expected[0, 2] * ((np.arange(5) == 2) - expected[0]) / T
        np.testing.assert_allclose(x.grad[0], jac, rtol=1e-10, atol=1e-15)
    cold = est.gumbel_softmax(logits, noise, 1e-3).data     # T -> 0: the one-hot argmax
    np.testing.assert_array_equal(np.argmax(cold, 1), np.argmax(logits + noise, 1))
    assert cold.max(1).min() > 0.999
    hot = est.gumbel_softmax(logits, noise, 1e4).data       # T -> inf: uniform
    np.testing.assert_allclose(hot, 0.2, atol=1e-3)
    with pytest.raises(ValueError, match="temperature"):
        est.gumbel_softmax(logits, noise, 0.0)


# ------------------------------------------------------------------ approximate policies

def approx_loss_linear(W, obs, actions, coef):
    dist = Categorical(ops.matmul(obs, W))
    return est.approximate_policy_loss(dist.log_prob(actions), dist.entropy(), coef)


def test_approximate_policy_loss_gradient_closed_form():
    rng = np.random.default_rng(7)
    obs, coef = rng.standard_normal((9, 4)), 0.3
    W = Tensor(rng.standard_normal((4, 5)), requires_grad=True)
    actions = rng.integers(0, 5, 9)
    approx_loss_linear(W, obs, actions, coef).backward()
    logits = obs @ W.data
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    H = -(p * np.log(p)).sum(1, keepdims=True)
    d_logprob = np.eye(5)[actions] - p                           # d log p_a / d l
    d_entropy = -p * (np.log(p) + H)                             # d H / d l
    expected = -obs.T @ (d_logprob + coef * d_entropy) / len(obs)
    np.testing.assert_allclose(W.grad, expected, rtol=1e-12, atol=1e-15)


def kl_after_fitting(sign=1.0, steps=300):
    """Mean KL(pi || mu_hat) over test states after fitting mu_hat (linear softmax) to
    samples of a fixed linear-softmax policy pi, and at the start."""
    rng = np.random.default_rng(8)
    W_true = 2.0 * rng.standard_normal((3, 4))
    W = Tensor(np.zeros((3, 4)), requires_grad=True)
    opt = Adam([W], lr=0.05)
    test_obs = rng.standard_normal((500, 3))

    def kl():
        p, q = (Categorical(test_obs @ w).probs.data for w in (W_true, W.data))
        return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))
    start = kl()
    for _ in range(steps):
        obs = rng.standard_normal((64, 3))
        actions = Categorical(obs @ W_true).sample(rng)
        opt.zero_grad()
        (sign * approx_loss_linear(W, obs, actions, 1e-3)).backward()
        opt.step()
    return start, kl()


def test_approximate_policy_kl_falls():
    start, end = kl_after_fitting()
    assert end < 0.1 * start


def test_approximate_policy_kl_check_rejects_the_wrong_sign():
    start, end = kl_after_fitting(sign=-1.0)
    assert not end < 0.1 * start


# ------------------------------------------------------------------ settings and ensembles

def test_ensemble_size_below_one_is_refused():
    with pytest.raises(ConfigError, match="ensemble_size"):
        config_from(MADDPG.Config, {"ensemble_size": 0})


def test_ensemble_update_scales_each_subpolicy_by_one_over_k():
    # the ensemble objective (1/K) sum_k J(mu^(k)): sub-policy k's gradient is (1/K) grad J
    rng = np.random.default_rng(9)
    one = make_maddpg((3, 4), CONT2, ensemble_size=1)
    three = make_maddpg((3, 4), CONT2, ensemble_size=3)
    for name, module in one.modules().items():
        randomize(module, rng)
    for i in range(2):
        three.actors[i][1].flat_params = one.actors[i][0].flat_params
        three.critics[i][1].flat_params = one.critics[i][0].flat_params
    batch = random_joint_batch(rng, one)
    g1 = grads_of(one.actor_loss(0, batch), one.actors[0][0])
    g3 = grads_of(three.actor_loss(0, batch, k=1) * (1.0 / 3), three.actors[0][1])
    np.testing.assert_allclose(g3, g1 / 3, rtol=1e-12)


def test_critic_target_uses_the_approximate_policies_when_set():
    """approx_policies=true: a'_j of another agent j is agent i's model mu_hat_i^j'
    (its target copy; for a Box agent its mean, clipped to the box), a'_i its own
    target policy; not agent j's true target policy."""
    rng = np.random.default_rng(4)
    agent = make_maddpg((3, 4), CONT2, approx_policies=True)
    for module in agent.modules().values():
        randomize(module, rng)
    batch = random_joint_batch(rng, agent)
    y = agent.td_target(0, batch)
    model = agent.approx_targets[0, 1](batch.next_obs[1]).mode()
    low, high = CONT2[1].low, CONT2[1].high

    def by_hand(a1):
        a0 = agent.actor_targets[0][0](batch.next_obs[0]).data
        x = np.concatenate(batch.next_obs + [a0, a1], axis=1)
        q = agent.critic_targets[0][0].first(x[:, :7], x[:, 7:]).data
        return batch.rewards[:, 0] + agent.config.gamma * np.where(batch.terminated, 0.0, q)
    np.testing.assert_allclose(y, by_hand(np.clip(model, low, high)), rtol=1e-12)
    true_target = agent.actor_targets[1][0](batch.next_obs[1]).data
    assert not np.allclose(y, by_hand(true_target), rtol=1e-6)


def test_ensemble_replays_hold_the_subpolicy_each_agent_ran():
    from minipg.algorithms.maddpg import JointReplay
    from minipg.envs.multiagent import MultiAgentStep
    replay = JointReplay(10, [1, 1], [1, 1])
    for t in range(6):
        step = MultiAgentStep((np.full((1, 1), t), np.full((1, 1), t)),
                              (np.zeros((1, 1)), np.zeros((1, 1))), np.zeros((1, 2)),
                              (np.zeros((1, 1)), np.zeros((1, 1))), np.zeros(1, bool),
                              np.zeros(1, bool))
        replay.add(step, np.array([[t % 2, t // 3]]))
    rng = np.random.default_rng(0)
    batch = replay.sample(50, rng, agent=0, subpolicy=1)
    assert set(batch.obs[0][:, 0]) == {1.0, 3.0, 5.0}            # agent 0 ran k = 1 at odd t
    batch = replay.sample(50, rng, agent=1, subpolicy=0)
    assert set(batch.obs[0][:, 0]) == {0.0, 1.0, 2.0}
