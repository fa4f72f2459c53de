"""Off-PAC and COPDAC-Q (DPG) through the shared run loop, judged by EXACT returns.

Both train on the exact test beds, so "did it learn" is a linear solve, not a
sampled return: the target policy's J on ``minipg/RandomMDP-v0``
(``TabularMDP.expected_return``) and the gain's discounted cost on
``minipg/LQR2D-v0`` (``LQR.cost``, a Lyapunov solve).  Runs are short (a few
thousand steps) and seeded, so each check is deterministic; every learning
check is also shown to reject a deliberately wrong update (sign-flipped actor,
sign-flipped compatible features).  The full learning evidence (within 1% of
the optimum, 3 seeds) is verification/classical_control.py.
"""

import csv
import io
import os

import gymnasium as gym
import numpy as np
import pytest

import minipg.algorithms.dpg as dpg_module
import minipg.algorithms.off_policy_ac as offpac_module
from minipg.algorithms import get
from minipg.algorithms.base import ConfigError
from minipg.algorithms.dpg import policy_jacobian, quadratic_features
from minipg.algorithms.linear_models import (feature_dim, linear_softmax_probs,
                                             linear_softmax_score)
from minipg.autodiff import Tensor
from minipg.cli import main
from minipg.distributions import Categorical
from minipg.envs.vector import Collector, make_vector_env
from minipg.run import CHECKPOINT, PROGRESS, NonFiniteError, load_run, read_checkpoint, train

MDP_ID, LQR_ID = "minipg/RandomMDP-v0", "minipg/LQR2D-v0"
QUIET = {"eval_episodes": 1, "log_every": 1000, "checkpoint_every": 1000}


def exact_mdp():
    return gym.make(MDP_ID).unwrapped.mdp


def exact_lqr():
    return gym.make(LQR_ID).unwrapped.lqr


def run(algo, env_id, steps, out, seed=0, **overrides):
    return train(algo, env_id, total_steps=steps, seed=seed, out=str(out), force=True,
                 overrides=dict(QUIET, **overrides), stream=io.StringIO())


def progress(out, after=0):
    """progress.csv rows past step ``after``, without the wall-clock columns."""
    with open(os.path.join(out, PROGRESS), newline="") as fh:
        return [{k: v for k, v in r.items() if k not in ("wall_s", "steps_per_s")}
                for r in csv.DictReader(fh) if int(r["step"]) > after]


# ----------------------------------------------------------------------------- Off-PAC

def target_return(out):
    """Exact J of the learned target policy pi_u (the softmax, not its greedy action)."""
    agent, _ = load_run(out)
    mdp = exact_mdp()
    return mdp.expected_return(agent.policy_matrix(np.eye(mdp.n_states)))


def offpac_improves(out):
    """The learning check: the target policy closes at least HALF of the gap from its
    initial (uniform, u = 0) policy's J to the optimal J*.  Seeds 0-4 close 87-88% of it
    in 2000 steps (measured while writing this test), so one half is a wide margin."""
    mdp = exact_mdp()
    j_initial = mdp.expected_return(np.full((mdp.n_states, mdp.n_actions), 1 / mdp.n_actions))
    return target_return(out) >= j_initial + 0.5 * (mdp.optimal_return() - j_initial)


def test_offpac_improves_the_exact_target_return(tmp_path):
    assert offpac_improves(run("off_policy_ac", MDP_ID, 2000, tmp_path / "offpac"))


def test_offpac_check_rejects_a_sign_flipped_actor(tmp_path, monkeypatch):
    real = offpac_module.offpac_actor_update

    def flipped(u, e_u, psi, delta, *args):           # descends instead of ascending
        return real(u, e_u, psi, -np.asarray(delta), *args)

    monkeypatch.setattr(offpac_module, "offpac_actor_update", flipped)
    assert not offpac_improves(run("off_policy_ac", MDP_ID, 2000, tmp_path / "flipped"))


def test_offpac_acts_by_beta_and_evaluates_the_target_greedily():
    """learn() draws actions from beta (uniform) even when the target policy is nearly
    deterministic; act(deterministic=True) is the target's argmax.  Chi-square test of
    the 600 behaviour actions against uniform at the 0.1% level (critical value 13.82 for
    2 degrees of freedom); the same test rejects the target policy's own actions."""
    envs = make_vector_env(MDP_ID, 1)
    cls = get("off_policy_ac")
    agent = cls(cls.Config(gamma=0.9, alpha_u=1e-12, alpha_v=1e-12, alpha_w=0.0),
                envs.single_observation_space, envs.single_action_space, seed=0)
    agent.policy.U.data[:, 2] = 20.0                     # pi_u(2|s) ~ 1 in every state
    collector = Collector(envs, seed=0)
    taken, real_step = [], collector.step

    def recording_step(actions):
        taken.append(int(actions[0]))
        return real_step(actions)

    collector.step = recording_step
    for _ in range(600):
        agent.learn(collector)
    collector.close()

    def chi_square(actions):
        counts = np.bincount(actions, minlength=3)
        return float(np.sum((counts - len(actions) / 3) ** 2 / (len(actions) / 3)))

    assert chi_square(taken) < 13.82
    greedy = agent.act(np.eye(6), deterministic=True)
    assert np.all(greedy == 2)
    assert chi_square(list(greedy) * 100) > 13.82      # the check can fail
    assert chi_square(list(agent.act(np.tile(np.eye(6), (100, 1))))) > 13.82


def test_behaviour_mixture_probabilities_and_bad_files(tmp_path):
    envs = make_vector_env(MDP_ID, 1)
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    envs.close()
    cls = get("off_policy_ac")
    logits = np.random.default_rng(1).standard_normal((6, 3))
    np.save(tmp_path / "beta.npy", logits)
    config = cls.Config(behaviour="mixture", behaviour_epsilon=0.2,
                        behaviour_logits=str(tmp_path / "beta.npy"))
    agent = cls(config, obs_space, act_space, seed=0)
    given = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(agent.behaviour_probs(np.eye(6)), 0.2 / 3 + 0.8 * given,
                               rtol=1e-12)
    np.save(tmp_path / "wrong.npy", np.zeros((6, 4)))
    with pytest.raises(ConfigError, match=r"shape \(6, 3\)"):
        cls(cls.Config(behaviour="mixture", behaviour_logits=str(tmp_path / "wrong.npy")),
            obs_space, act_space, seed=0)
    with pytest.raises(ConfigError, match="no such file"):
        cls(cls.Config(behaviour="mixture", behaviour_logits=str(tmp_path / "none.npy")),
            obs_space, act_space, seed=0)
    with pytest.raises(ConfigError, match="needs behaviour_logits"):
        cls.Config(behaviour="mixture").check()


def test_linear_softmax_score_equals_the_autodiff_gradient():
    """psi = x (e_a - pi)^T, flattened like U, against reverse mode through Categorical's
    log_prob.  No finite differences: agreement to float64 round-off (rtol 1e-12)."""
    rng = np.random.default_rng(0)
    x, U = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    actions = np.array([0, 2, 1, 1, 0])
    psi = linear_softmax_score(x, actions, linear_softmax_probs(x, U))
    for i in range(5):
        weights = Tensor(U, requires_grad=True)
        Categorical(Tensor(x[i:i + 1]) @ weights).log_prob(actions[i:i + 1]).sum().backward()
        np.testing.assert_allclose(psi[i], weights.grad.reshape(-1), rtol=1e-12, atol=1e-14)


def test_offpac_resume_continues_exactly(tmp_path):
    """The traces (extra_state) and the weights (modules) round-trip through checkpoint.npz."""
    kw = dict(log_every=200, checkpoint_every=500)
    full = progress(run("off_policy_ac", MDP_ID, 1000, tmp_path / "full", **kw))
    part = run("off_policy_ac", MDP_ID, 500, tmp_path / "part", **kw)
    assert "extra/trace_u" in read_checkpoint(os.path.join(part, CHECKPOINT))
    train("off_policy_ac", total_steps=1000, out=part, resume=True, stream=io.StringIO())
    resumed = progress(part, after=500)
    assert resumed and resumed == [r for r in full if int(r["step"]) > 500]


# ----------------------------------------------------------------------------- DPG

def dpg_moves_toward_k_star(out):
    """The learning check: the learned gain stabilises the LQR and its exact excess cost
    C(K) - C(K*) is under a quarter of the initial gain's (K = 0).  Seeds 0-2 bring it
    under 1% of that in 3000 steps, either critic (measured while writing this test)."""
    lqr = exact_lqr()
    agent, _ = load_run(out)
    gain = agent.policy.K.data
    if not lqr.is_stable(gain):
        return False
    c_star = lqr.cost(lqr.optimal_gain())
    return lqr.cost(gain) - c_star < 0.25 * (lqr.cost(np.zeros_like(gain)) - c_star)


@pytest.mark.parametrize("critic", ["q_learning", "sarsa"])
def test_dpg_gain_moves_toward_the_optimal_gain(tmp_path, critic):
    out = run("dpg", LQR_ID, 3000, tmp_path / critic, critic=critic, critic_warmup=1000)
    assert dpg_moves_toward_k_star(out)


def test_dpg_check_rejects_sign_flipped_compatible_features(tmp_path, monkeypatch):
    """phi = -grad mu (a - mu) makes w estimate minus the natural gradient: the gain walks
    away from K* (or off the stable region, which the run loop reports)."""
    real = dpg_module.copdac_q_update

    def flipped(theta, w, v, a, mu, *args):           # a - mu -> -(a - mu)
        return real(theta, w, v, 2 * np.asarray(mu) - np.asarray(a), mu, *args)

    monkeypatch.setattr(dpg_module, "copdac_q_update", flipped)
    try:
        out = run("dpg", LQR_ID, 3000, tmp_path / "flipped", critic_warmup=1000)
    except NonFiniteError:
        return                                          # diverged: rejected
    assert not dpg_moves_toward_k_star(out)


def test_policy_jacobian_and_quadratic_features():
    """d(K s)_i / dK_kl = delta_ik s_l in the estimators' layout (m, m n); and an LQR value
    x^T P x + c is exactly linear in the quadratic features (what makes the critic exact)."""
    rng = np.random.default_rng(0)
    s, K = rng.standard_normal(3), rng.standard_normal((2, 3))
    jac = policy_jacobian(s, 2)
    for j in range(6):                                  # mu is linear: exact directional change
        step = np.zeros(6)
        step[j] = 1.0
        np.testing.assert_allclose((K + step.reshape(2, 3)) @ s - K @ s, jac[:, j], rtol=1e-12,
                                   atol=1e-15)
    P = rng.standard_normal((3, 3))
    P = P + P.T
    weights = np.array([P[0, 0], 2 * P[0, 1], 2 * P[0, 2], P[1, 1], 2 * P[1, 2], P[2, 2], 1.5])
    assert quadratic_features(s) @ weights == pytest.approx(s @ P @ s + 1.5, rel=1e-12)


def test_dpg_sarsa_resume_continues_exactly(tmp_path):
    """The carried next action (extra_state) round-trips: Sarsa resumes step for step."""
    kw = dict(critic="sarsa", critic_warmup=200, log_every=200, checkpoint_every=500)
    full = progress(run("dpg", LQR_ID, 1000, tmp_path / "full", **kw))
    part = run("dpg", LQR_ID, 500, tmp_path / "part", **kw)
    train("dpg", total_steps=1000, out=part, resume=True, stream=io.StringIO())
    resumed = progress(part, after=500)
    assert resumed and resumed == [r for r in full if int(r["step"]) > 500]


@pytest.mark.parametrize("algo, env_id, overrides", [
    ("off_policy_ac", MDP_ID, {}),
    ("dpg", LQR_ID, {"critic": "sarsa", "actor_update": "vanilla", "critic_warmup": 100})])
def test_several_environments_train_and_checkpoint(tmp_path, algo, env_id, overrides):
    """n_envs = 2 (transitions applied one after another, a trace / next action per env)."""
    out = run(algo, env_id, 600, tmp_path / "two", n_envs=2, **overrides)
    arrays = read_checkpoint(os.path.join(out, CHECKPOINT))
    assert all(np.all(np.isfinite(arrays[k])) for k in arrays if k.startswith("module/"))
    assert int(arrays["collector/steps"]) == 600


# ----------------------------------------------------------------------------- bad input

def test_linear_algorithms_need_vector_observations():
    with pytest.raises(ConfigError, match="needs a Box observation space"):
        feature_dim(gym.spaces.Discrete(4), "off_policy_ac")


@pytest.mark.parametrize("algo, env_id, kind", [("off_policy_ac", LQR_ID, "discrete"),
                                                 ("dpg", MDP_ID, "continuous")])
def test_wrong_action_kind_is_a_clear_cli_error(tmp_path, capsys, algo, env_id, kind):
    code = main(["train", algo, "--env", env_id, "--total-steps", "10",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"works with {kind} actions" in err and "Traceback" not in err
