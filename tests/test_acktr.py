"""ACKTR: its estimators (minipg.estimators.acktr) and the algorithm (minipg.algorithms.acktr).

K-FAC itself is tested in tests/test_kfac.py.  Tolerances: identities with no
finite differences (autodiff against a closed form, the trust-region
equality) rtol 1e-12 in float64; the Monte-Carlo Fisher check is stated at
its test.  Learning is measured in verification/acktr_learning.py.
"""

import csv
import io
import os

import gymnasium as gym
import numpy as np
import pytest

from minipg.algorithms.acktr import ACKTR, ACKTRConfig
from minipg.algorithms.base import ConfigError, config_from
from minipg.algorithms.onpolicy_common import RolloutBatch
from minipg.autodiff import Tensor, gradcheck, ops
from minipg.distributions import Categorical
from minipg.estimators import acktr as E
from minipg.estimators.terms import trust_region_step_size
from minipg.nn import Linear
from minipg.optim import KFAC
from minipg.run import CHECKPOINT, read_checkpoint, resolve_config, train

IDENTITY = dict(rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ estimators
def test_actor_loss_gradient_is_the_policy_gradient_formula():
    """Linear-softmax policy: grad of -E[A log pi(a|s)] = -(1/N) sum A_i phi_i (e_a - pi_i)^T."""
    rng = np.random.default_rng(0)
    N, d, n = 7, 3, 4
    phi, theta = rng.normal(size=(N, d)), rng.normal(size=(d, n))
    a, adv = rng.integers(n, size=N), rng.normal(size=N)
    W = Tensor(theta, requires_grad=True)
    dist = Categorical(ops.matmul(Tensor(phi), W))
    loss, diag = E.actor_loss(dist.log_prob(a), adv, dist.entropy().data, 0.0)
    loss.backward()
    p = np.exp(phi @ theta)
    p /= p.sum(1, keepdims=True)
    expected = -(phi * adv[:, None]).T @ (np.eye(n)[a] - p) / N
    np.testing.assert_allclose(W.grad, expected, **IDENTITY)
    assert set(diag) == {"policy_loss", "entropy"}
    # with the entropy bonus on the tape: against central differences
    gradcheck(lambda w: E.actor_loss(Categorical(ops.matmul(Tensor(phi), w)).log_prob(a), adv,
                                     Categorical(ops.matmul(Tensor(phi), w)).entropy(),
                                     0.3)[0],
              (Tensor(theta, requires_grad=True),), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_critic_loss_is_half_mse_with_the_gauss_newton_gradient():
    rng = np.random.default_rng(1)
    v, R = Tensor(rng.normal(size=6), requires_grad=True), rng.normal(size=6)
    loss = E.critic_loss(v, R)
    loss.backward()
    np.testing.assert_allclose(float(loss.data), 0.5 * np.mean((v.data - R) ** 2), **IDENTITY)
    np.testing.assert_allclose(v.grad, (v.data - R) / 6, **IDENTITY)     # E[(V - R) dV]


def test_critic_fisher_log_likelihood_gradient_is_the_noise():
    rng = np.random.default_rng(2)
    v, eps = Tensor(rng.normal(size=5), requires_grad=True), rng.normal(size=5)
    ll = E.critic_fisher_log_likelihood(v, eps)
    np.testing.assert_allclose(ll.data, -0.5 * eps ** 2, **IDENTITY)
    ops.sum(ll).backward()
    np.testing.assert_allclose(v.grad, eps, **IDENTITY)       # d log N(V + eps; V, 1) / dV


def test_critic_kfac_block_is_the_gauss_newton_matrix_of_a_linear_critic():
    """V = x w + b: the Gauss-Newton matrix E[abar abar^T] equals K-FAC's A (x) G with G from
    the noise enumerated (eps = +-1, weight 1/2 each: E[eps^2] = 1 exactly)."""
    rng = np.random.default_rng(3)
    critic = Linear(3, 1, init="fan_in_uniform", rng=rng)
    X = rng.normal(size=(8, 3))
    Xr = np.repeat(X, 2, axis=0)
    eps = np.tile([1.0, -1.0], 8)
    opt = KFAC(critic)
    with opt.capture():
        values = critic(Xr).reshape(-1)
    opt.update_curvature(E.critic_fisher_log_likelihood(values, eps),
                         sample_weights=np.full(16, 1 / 16))
    (layer,) = opt.layers.values()
    abar = np.hstack([X, np.ones((8, 1))])
    np.testing.assert_allclose(np.kron(layer.A, layer.G), abar.T @ abar / 8, **IDENTITY)


def test_policy_fisher_uses_actions_sampled_from_the_policy():
    """G of a softmax output layer from a~ ~ pi (one state, N = 40000 draws) matches the
    exact diag(p) - p p^T: each entry is a mean of terms bounded by 1, so its standard error
    is <= 1/sqrt(N) = 0.005 and 0.02 is 4 standard errors.  The empirical Fisher of other
    actions (here all a = 0, as a nearly greedy behaviour would give) is far from it."""
    rng = np.random.default_rng(4)
    layer = Linear(2, 3, init="fan_in_uniform", rng=rng)
    x = np.repeat(rng.normal(size=(1, 2)), 40000, axis=0)
    opt = KFAC(layer)
    with opt.capture():
        dist = Categorical(layer(x))
    opt.update_curvature(E.sampled_policy_log_likelihood(dist, dist.sample(rng)))
    G = next(iter(opt.layers.values())).G
    p = dist.probs.data[0]
    exact = np.diag(p) - np.outer(p, p)
    assert np.abs(G - exact).max() < 0.02
    empirical = KFAC(layer)
    with empirical.capture():
        dist = Categorical(layer(x))
    empirical.update_curvature(dist.log_prob(np.zeros(40000, dtype=np.int64)))
    assert np.abs(next(iter(empirical.layers.values())).G - exact).max() > 0.1


def test_step_size_is_the_shared_trust_region_rule():
    assert E.step_size(2.0, 1e-3, 0.25) == trust_region_step_size(2.0, 1e-3, 0.25)
    assert E.step_size(1e-9, 1e-3, 0.25) == 0.25
    with pytest.raises(ValueError, match="acktr.step_size: delta"):
        E.step_size(1.0, -1.0, 0.25)


# ------------------------------------------------------------------ the algorithm
QUICK = {"n_envs": "4", "n_steps": "8", "hidden": "16,16", "log_every": "256",
         "checkpoint_every": "512", "eval_episodes": "2"}
WALL = ("wall_s", "steps_per_s", "kfac_time_fraction")


def rows(out):
    with open(os.path.join(out, "progress.csv"), newline="") as fh:
        return [{k: v for k, v in r.items() if k not in WALL} for r in csv.DictReader(fh)]


def quick(env, out, steps, **extra):
    over = dict(QUICK, **{k: str(v) for k, v in extra.items()})
    return train(ACKTR, env, total_steps=steps, seed=0, out=str(out), overrides=over,
                 stream=io.StringIO())


@pytest.mark.parametrize("env, extra", [("CartPole-v1", {}),
                                        ("Pendulum-v1", {"advantage": "gae",
                                                         "gae_lambda": 0.95, "momentum": 0.5})])
def test_smoke_training_discrete_and_continuous(tmp_path, env, extra):
    progress = rows(quick(env, tmp_path / "run", 1024, **extra))
    assert int(progress[-1]["step"]) >= 1024
    for row in progress:
        for key, value in row.items():
            assert value != "" or key in ("return_mean", "return_std", "length_mean"), key
            if value and key not in ("step", "episodes"):
                assert np.isfinite(float(value)), key


def test_resume_continues_exactly(tmp_path):
    full = rows(quick("CartPole-v1", tmp_path / "full", 2048, anneal_lr=False))
    part = quick("CartPole-v1", tmp_path / "part", 1024, anneal_lr=False)
    k = int(read_checkpoint(os.path.join(part, CHECKPOINT))["collector/steps"])
    train(ACKTR, total_steps=2048, out=part, resume=True, stream=io.StringIO())
    after = [r for r in rows(part) if int(r["step"]) > k]
    assert after and after == [r for r in full if int(r["step"]) > k]


def make_agent(kind="discrete", **over):
    config = config_from(ACKTRConfig, {"hidden": "8,8", "n_envs": 2, "n_steps": 3, **over})
    obs_space = gym.spaces.Box(-1, 1, (3,))
    act_space = gym.spaces.Discrete(2) if kind == "discrete" else gym.spaces.Box(-1, 1, (2,))
    return ACKTR(config, obs_space, act_space, seed=0)


def fake_batch(agent, rng, n=6):
    kind = agent.kind
    actions = rng.integers(2, size=n) if kind == "discrete" else rng.normal(size=(n, 2))
    return RolloutBatch(rng.normal(size=(n, 3)), actions, np.zeros(n), np.zeros(n),
                        rng.normal(size=n), rng.normal(size=n))


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_policy_step_is_eta_times_the_kfac_direction_inside_the_trust_region(kind):
    """With momentum 0, theta_1 - theta_0 = -eta d and 1/2 eta^2 d^T F d = delta (F the K-FAC
    approximation) whenever eta < eta_max; the critic's step likewise with its own delta."""
    rng = np.random.default_rng(5)
    agent = make_agent(kind, momentum=0.0, lr=100.0, value_lr=100.0, max_kl=1e-3,
                       value_max_kl=2e-3)
    batch = fake_batch(agent, rng)
    for module, step, opt, delta in ((agent.policy, agent.policy_step,
                                      agent.policy_optimizer, 1e-3),
                                     (agent.value, agent.value_step,
                                      agent.value_optimizer, 2e-3)):
        before = module.flat_params.copy()
        diag = step(batch)
        delta_theta = module.flat_params - before
        eta = diag["policy_eta" if module is agent.policy else "value_eta"]
        assert eta < 100.0
        np.testing.assert_allclose(0.5 * opt.fisher_quadratic(delta_theta), delta, rtol=1e-10)
    if kind == "continuous":   # the log-std is in the step, with its Fisher 2 I
        assert agent.policy_optimizer.diagonal


def test_presets_and_defaults():
    assert ACKTR.default_env == "CartPole-v1" and set(ACKTR.action_kinds) == {"discrete",
                                                                              "continuous"}
    for env_id in ("CartPole-v1", "Acrobot-v1", "InvertedPendulum-v5"):
        assert resolve_config(ACKTR, env_id, {}).total_steps == \
            ACKTR.presets[env_id]["total_steps"]


@pytest.mark.parametrize("setting, value", [("damping", 0), ("damping", -1e-3),
                                            ("refresh_every", 0), ("kfac_decay", 1.0),
                                            ("kfac_decay", -0.5), ("max_kl", 0),
                                            ("value_max_kl", -1), ("momentum", 1.0)])
def test_bad_settings_name_the_setting(setting, value):
    with pytest.raises(ConfigError, match=setting):
        config_from(ACKTRConfig, {setting: value})


# ------------------------------------------------------------------ audit rows
def test_audit_rows_cover_the_three_levels_and_pass():
    from minipg import audit
    results = audit.run(["acktr"])
    assert {r.level for r in results} == {"gradcheck", "formula", "exact"}
    failed = [audit.format_row(r) for r in results if not r.passed]
    assert not failed, failed


def test_audit_exact_fisher_row_rejects_the_empirical_fisher():
    """The same statistic on g g^T of greedy actions (an empirical Fisher) is far past the
    99.9% critical value: the row can fail."""
    from minipg.audit import acktr as acktr_audit
    from minipg.audit.stats import hotelling_test
    rng = np.random.default_rng(8)
    layer = Linear(2, 3, init="fan_in_uniform", rng=rng)
    X = rng.normal(size=(4, 2))
    states = rng.integers(4, size=5000)
    greedy = np.argmax(Categorical(layer(X[states])).probs.data, axis=1)
    wrong, target = acktr_audit.sampled_fisher_estimates(layer, states, X, rng, greedy)
    assert hotelling_test(wrong, target).rejected
