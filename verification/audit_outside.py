r"""Audit an outside implementation's gradient code with ``minipg.audit.exact``.

What it shows (issue 21, "Audit someone else's gradient"): stable-baselines3's
and sb3-contrib's own policy-gradient code paths, run unchanged on minipg's
exact test beds through small adapters, and deliberately broken variants of
them, each put through the public checks of :mod:`minipg.audit.exact`:

* ``RolloutBuffer.compute_returns_and_advantage`` (SB3's GAE; with
  ``gae_lambda = 1`` its ``returns`` are the bootstrapped Monte-Carlo returns),
  fed as SB3's ``collect_rollouts`` feeds it: ``episode_starts`` from the done
  flags, and at a time limit ``gamma V(terminal observation)`` added to the
  reward (SB3's handling of truncation).  Broken: that bootstrap left out (a
  time limit treated as a termination).
* ``A2C.train()`` itself, on a rollout buffer filled with the bed's batch: a
  stock ``A2C('MlpPolicy')`` whose policy is exactly the bed's linear softmax
  (observation = the features phi(s, .) flattened; ``net_arch`` empty, so the
  logits are ``action_net(obs)``; ``action_net.weight`` holds theta on its
  block diagonal, bias 0; learning rate 0, ``ent_coef = 0``,
  ``max_grad_norm`` 1e30 so ``clip_grad_norm_`` changes nothing).  The
  gradient with respect to theta is read from ``action_net.weight.grad``
  (the sum of its diagonal blocks: the chain rule through the tied weight)
  and, because A2C's loss is a MEAN over the N steps while the check's
  convention is a mean over the episodes, multiplied by N / n_episodes.
  Stock A2C weights every step alike -- no gamma^t -- so the check must fail
  and name the gamma^t-free quantity; with the buffer's advantages
  multiplied by gamma^t before ``train()`` it must pass.  Broken: multiplied
  by N (a sum over episodes where a mean belongs).
* ``TRPO.hessian_vector_product`` of sb3-contrib (the Fisher-vector product:
  the Hessian of the mean KL by double backward) and its
  ``conjugate_gradient_solver``, with the default ``cg_damping = 0.1`` (the
  natural-gradient check must fail and report the damping: TRPO solves
  (F + 0.1 I) x = g by design) and with ``cg_damping = 0`` (must pass).
  Broken: the KL's Hessian of KL / 2 (a factor 1/2).
* the off-policy actor gradient written with SB3's ``CategoricalDistribution``
  (``rho Q log pi`` with rho detached, a batch mean): must pass.  Broken:
  rho left out (a missing importance weight).  The emphatic one (ACE's
  follow-on trace): must pass; broken: the trace left out, whose mean is
  Off-PAC's ``g`` instead of ``grad J_beta``.
* a PyTorch DPG actor (``-Q(x, actor(x)).mean()``, the DDPG/TD3 actor loss of
  SB3, with the exact quadratic critic and a linear actor; SB3's own actor
  squashes with tanh, so the loss line is used, not SB3's network).

torch, stable-baselines3 and sb3-contrib are optional; the script skips what
is not installed and says so.  float32 as SB3 builds its models (the
statistical checks allow it; the target checks' tolerance, 1e-5 relative,
covers float32 rounding).

Run (1.5 to 3.5 minutes on a shared 2-core machine)::

    python verification/audit_outside.py      # writes results/audit_outside.md

Exit status 0 only if every row's verdict and diagnosis are as expected.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from pathlib import Path

import numpy as np

from minipg.audit import exact

try:
    import gymnasium as gym
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.buffers import RolloutBuffer
    from stable_baselines3.common.distributions import CategoricalDistribution, kl_divergence
    from stable_baselines3.common.logger import Logger
    HAVE_SB3 = True
except ImportError:                                   # pragma: no cover - optional
    HAVE_SB3 = False
try:
    from sb3_contrib import TRPO
    from sb3_contrib.common.utils import conjugate_gradient_solver
    HAVE_CONTRIB = HAVE_SB3
except ImportError:                                   # pragma: no cover - optional
    HAVE_CONTRIB = False

RESULTS = Path(__file__).resolve().parent / "results" / "audit_outside.md"


# ============================================================ SB3 models on the bed

class FeatureEnv(gym.Env if HAVE_SB3 else object):
    """Only the spaces: observation phi(s, .) flattened (A * d), actions Discrete(A)."""

    def __init__(self, n_actions, n_features):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n_actions * n_features,),
                                                dtype=np.float32)
        self.action_space = gym.spaces.Discrete(n_actions)

    def reset(self, *, seed=None, options=None):
        return np.zeros(self.observation_space.shape, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, dtype=np.float32), 0.0, True, False, {}


def quiet(model):
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def put_theta(linear, theta, n_actions):
    """action_net.weight[a, a*d:(a+1)*d] = theta, everything else (and the bias) 0."""
    d = len(theta)
    with torch.no_grad():
        linear.weight.zero_()
        for a in range(n_actions):
            linear.weight[a, a * d:(a + 1) * d] = torch.as_tensor(theta, dtype=torch.float32)
        if linear.bias is not None:
            linear.bias.zero_()


def theta_part(weight_like, n_actions, d):
    """The gradient with respect to theta from one with respect to the tied weight."""
    w = np.asarray(weight_like, dtype=np.float64).reshape(n_actions, n_actions * d)
    return sum(w[a, a * d:(a + 1) * d] for a in range(n_actions))


def sb3_buffer(obs_space, action_space, rewards, values, next_values, terminated, truncated,
               gamma, lam, observations=None, actions=None, bootstrap_truncation=True):
    """SB3's RolloutBuffer filled as collect_rollouts fills it, then SB3's own GAE."""
    N = len(rewards)
    buffer = RolloutBuffer(N, obs_space, action_space, device="cpu", gae_lambda=lam,
                           gamma=gamma, n_envs=1)
    done = terminated | truncated
    episode_start = np.r_[True, done[:-1]]
    # collect_rollouts: at a time limit, reward += gamma * V(terminal observation)
    reward = rewards + (gamma * next_values * truncated if bootstrap_truncation else 0.0)
    obs = (np.zeros((N,) + obs_space.shape, dtype=np.float32) if observations is None
           else observations)
    acts = np.zeros(N, dtype=np.int64) if actions is None else actions
    for t in range(N):
        buffer.add(obs[t][None], np.array([[acts[t]]]), np.array([reward[t]]),
                   np.array([episode_start[t]]), torch.tensor([[values[t]]]), torch.zeros(1))
    buffer.compute_returns_and_advantage(last_values=torch.tensor([[next_values[-1]]]),
                                         dones=np.array([done[-1]]))
    return buffer


SPACES = None


def spaces_for(n_actions=3, n_features=4):
    global SPACES
    if SPACES is None:
        env = FeatureEnv(n_actions, n_features)
        SPACES = (env.observation_space, env.action_space)
    return SPACES


def sb3_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """SB3's GAE advantages (RolloutBuffer.compute_returns_and_advantage)."""
    buffer = sb3_buffer(*spaces_for(), rewards, values, next_values, terminated, truncated,
                        gamma, lam)
    return buffer.advantages.reshape(-1).astype(np.float64)


def sb3_gae_no_truncation_bootstrap(rewards, values, next_values, terminated, truncated, gamma,
                                    lam):
    """Broken: SB3's GAE without collect_rollouts' bootstrap at a time limit."""
    buffer = sb3_buffer(*spaces_for(), rewards, values, next_values, terminated, truncated,
                        gamma, lam, bootstrap_truncation=False)
    return buffer.advantages.reshape(-1).astype(np.float64)


def sb3_returns(rewards, next_values, terminated, truncated, gamma):
    """SB3's returns with gae_lambda = 1 (advantages + values, values 0 here: the returns)."""
    N = len(rewards)
    buffer = sb3_buffer(*spaces_for(), rewards, np.zeros(N), next_values, terminated, truncated,
                        gamma, 1.0)
    return buffer.returns.reshape(-1).astype(np.float64)


class SB3A2CGradient:
    """The policy gradient of a stock A2C.train() on the bed's batch (see the module text)."""

    def __init__(self, gamma_t=False, per="episode"):
        self.gamma_t, self.per, self.model = gamma_t, per, None
        self.__name__ = self.__qualname__ = (
            f"SB3 A2C.train(){' with advantages x gamma^t' if gamma_t else ''}"
            f"{', x N (a sum)' if per == 'sum' else ''}")
        self.__module__ = "audit_outside"

    def build(self, n_actions, d, gamma, lam):
        env = FeatureEnv(n_actions, d)
        self.model = quiet(A2C("MlpPolicy", env, n_steps=8, learning_rate=0.0, ent_coef=0.0,
                               vf_coef=0.5, max_grad_norm=1e30, gamma=gamma, gae_lambda=lam,
                               normalize_advantage=False, device="cpu", seed=0,
                               policy_kwargs=dict(net_arch=dict(pi=[], vf=[]),
                                                  ortho_init=False)))

    def __call__(self, states, actions, rewards, values, next_values, t, terminated, truncated,
                 features, theta, gamma, lam, n_episodes):
        S, A, d = features.shape
        if self.model is None:
            self.build(A, d, gamma, lam)
        policy = self.model.policy
        put_theta(policy.action_net, theta, A)
        obs = features[states].reshape(len(states), A * d).astype(np.float32)
        buffer = sb3_buffer(self.model.observation_space, self.model.action_space, rewards,
                            values, next_values, terminated, truncated, gamma, lam, obs, actions)
        if self.gamma_t:
            buffer.advantages *= (gamma ** t).reshape(-1, 1)
        self.model.rollout_buffer = buffer
        policy.optimizer.zero_grad()
        self.model.train()                        # SB3's own loss, backward and (lr 0) step
        grad_loss = policy.action_net.weight.grad.detach().numpy()
        N = len(states)
        scale = N if self.per == "sum" else N / n_episodes   # A2C's loss is a mean over steps
        return -theta_part(grad_loss, A, d) * scale


# =============================================== off-policy with SB3's distribution

def torch_off_policy(states, actions, behaviour_probs, q_values, features, theta,
                     importance_weight=True, **_):
    """rho Q log pi with SB3's CategoricalDistribution, rho detached, a batch mean."""
    A = features.shape[1]
    th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    logits = torch.as_tensor(features[states]) @ th
    log_prob = CategoricalDistribution(A).proba_distribution(logits).log_prob(
        torch.as_tensor(actions))
    rho = torch.exp(log_prob.detach()) / torch.as_tensor(behaviour_probs)
    weight = rho if importance_weight else 1.0
    loss = -(weight * torch.as_tensor(q_values) * log_prob).mean()
    loss.backward()
    return -th.grad.numpy()


def torch_off_policy_no_ratio(**kw):
    return torch_off_policy(**kw, importance_weight=False)


def torch_emphatic(states, actions, behaviour_probs, q_values, t, features, theta, gamma,
                   n_samples, follow_on=True, **_):
    """ACE with SB3's CategoricalDistribution: rho_H M_H Q_H log pi at each history's last
    step (M_t = 1 + gamma rho_{t-1} M_{t-1}, detached), a batch mean."""
    A = features.shape[1]
    th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    logits = torch.as_tensor(features[states]) @ th
    log_prob = CategoricalDistribution(A).proba_distribution(logits).log_prob(
        torch.as_tensor(actions))
    rho = (torch.exp(log_prob.detach()) / torch.as_tensor(behaviour_probs)).reshape(n_samples,
                                                                                 -1)
    M = torch.ones(n_samples, dtype=torch.float64)
    for k in range(1, rho.shape[1]):
        M = 1.0 + gamma * rho[:, k - 1] * M
    if not follow_on:
        M = torch.ones(n_samples, dtype=torch.float64)
    last = torch.as_tensor(t == t.max())
    loss = -(rho[:, -1] * M * torch.as_tensor(q_values)[last] * log_prob[last]).mean()
    loss.backward()
    return -th.grad.numpy()


def torch_emphatic_without_follow_on(**kw):
    return torch_emphatic(**kw, follow_on=False)


# ==================================================== sb3-contrib TRPO's Fisher product

class TRPOFisher:
    """TRPO.hessian_vector_product (and conjugate_gradient_solver) on the bed's policy."""

    def __init__(self, cg_damping=0.0, kl_scale=1.0):
        self.cg_damping, self.kl_scale, self.model = cg_damping, kl_scale, None

    def build(self, n_actions, d):
        env = FeatureEnv(n_actions, d)
        self.model = quiet(TRPO("MlpPolicy", env, n_steps=8, batch_size=8, device="cpu",
                                seed=0, cg_damping=self.cg_damping,
                                policy_kwargs=dict(net_arch=dict(pi=[], vf=[]),
                                                   ortho_init=False)))
        self.model.policy.to(torch.float64)

    def product(self, features, theta, states, vector, weights=None):
        """F v in theta coordinates (the TRPO product with respect to the tied weight)."""
        S, A, d = features.shape
        if self.model is None:
            self.build(A, d)
        policy = self.model.policy
        with torch.no_grad():
            W = torch.zeros(A, A * d, dtype=torch.float64)
            for a in range(A):
                W[a, a * d:(a + 1) * d] = torch.as_tensor(theta)
            policy.action_net.weight.copy_(W)
            policy.action_net.bias.zero_()
        obs = torch.as_tensor(features[states].reshape(len(states), A * d))

        def get_distribution():
            # policy.get_distribution(obs) less its float32 cast of the observation (SB3's
            # preprocess_obs): the same modules, in float64
            latent = policy.mlp_extractor.forward_actor(policy.pi_features_extractor(obs))
            return copy.copy(policy.action_dist).proba_distribution(
                action_logits=policy.action_net(latent))
        distribution = get_distribution()
        with torch.no_grad():
            old = get_distribution()
        kl = kl_divergence(distribution, old)          # as TRPO.train computes it
        kl = kl.mean() if weights is None else (torch.as_tensor(weights) * kl).sum()
        params = [policy.action_net.weight]
        grad_kl = torch.autograd.grad(self.kl_scale * kl, params, create_graph=True)[0].reshape(-1)

        def hvp(v_theta, retain_graph=True):
            v_w = torch.zeros(A, A * d, dtype=torch.float64)
            for a in range(A):
                v_w[a, a * d:(a + 1) * d] = v_theta
            # TRPO's product in the weight's coordinates, H v_w + cg_damping v_w; its damping
            # is taken off there and put back in theta's coordinates (where T^T T = A I
            # would otherwise multiply it by A)
            out = self.model.hessian_vector_product(params, grad_kl, v_w.reshape(-1),
                                                    retain_graph=True)
            out = out - self.cg_damping * v_w.reshape(-1)
            out = torch.as_tensor(theta_part(out.detach().numpy(), A, d))
            return out + self.cg_damping * v_theta
        return hvp, torch.as_tensor(vector, dtype=torch.float64)


def trpo_fvp(cg_damping=0.0, kl_scale=1.0):
    fisher = TRPOFisher(cg_damping, kl_scale)

    def fisher_vector_product(states, features, theta, vector):
        hvp, v = fisher.product(features, theta, states, vector)
        return hvp(v).numpy()
    name = "TRPO.hessian_vector_product" + (" of KL/2" if kl_scale != 1 else "")
    fisher_vector_product.__qualname__ = fisher_vector_product.__name__ = name
    fisher_vector_product.__module__ = "audit_outside"
    return fisher_vector_product


def trpo_natural_gradient(cg_damping):
    fisher = TRPOFisher(cg_damping)

    def natural_gradient(states, state_weights, features, theta, gradient):
        hvp, _ = fisher.product(features, theta, states, gradient, weights=state_weights)
        return conjugate_gradient_solver(hvp, torch.as_tensor(gradient), max_iter=10,
                                         residual_tol=1e-20).numpy()
    name = f"conjugate_gradient_solver(TRPO hvp, cg_damping={cg_damping:g})"
    natural_gradient.__qualname__ = natural_gradient.__name__ = name
    natural_gradient.__module__ = "audit_outside"
    return natural_gradient


# ============================================================== DPG actor in torch

def torch_dpg(states, K, critic_matrix, critic_constant, total=False, **_):
    """SB3's DDPG/TD3 actor loss line, -Q(x, actor(x)).mean(), linear actor, exact critic."""
    x = torch.as_tensor(states)
    K_t = torch.tensor(K, requires_grad=True)
    u = x @ K_t.T
    z = torch.cat([x, u], dim=1)
    q = -(torch.einsum("ni,ij,nj->n", z, torch.as_tensor(critic_matrix), z) + critic_constant)
    loss = -(q.sum() if total else q.mean())
    loss.backward()
    return -K_t.grad.numpy()


def torch_dpg_sum(**kw):
    return torch_dpg(**kw, total=True)


# ==================================================================== the rows

def rows():
    """(check, estimator, expected pass, expected words in the diagnosis, note)."""
    out = []
    if HAVE_SB3:
        out += [
            ("gae", sb3_gae, True, "", "SB3 GAE as collect_rollouts feeds it"),
            ("returns", sb3_returns, True, "", "SB3 returns, gae_lambda = 1"),
            ("gae", sb3_gae_no_truncation_bootstrap, False, "no bootstrap at truncations",
             "broken: the time-limit bootstrap left out"),
            ("gae_policy_gradient", SB3A2CGradient(), False, "eta_1",
             "stock A2C: no gamma^t (a known bias, not a bug of SB3's code)"),
            ("gae_policy_gradient", SB3A2CGradient(gamma_t=True), True, "",
             "A2C with the buffer's advantages x gamma^t"),
            ("gae_policy_gradient", SB3A2CGradient(gamma_t=True, per="sum"), False,
             "batch_size x grad J", "broken: a sum over episodes where a mean belongs"),
            ("off_policy", torch_off_policy, True, "", "SB3 CategoricalDistribution, torch"),
            ("off_policy", torch_off_policy_no_ratio, False, "importance weight pi/b is missing",
             "broken: the importance weight left out"),
            ("off_policy_emphatic", torch_emphatic, True, "", "ACE follow-on trace, torch"),
            ("off_policy_emphatic", torch_emphatic_without_follow_on, False, "Off-PAC's g",
             "broken: the follow-on trace left out (g instead of grad J_beta)"),
            ("dpg", torch_dpg, True, "", "DDPG/TD3 actor loss line, torch"),
            ("dpg", torch_dpg_sum, False, "batch_size x (1 - gamma) grad_K J",
             "broken: a sum where a mean belongs"),
        ]
    if HAVE_CONTRIB:
        out += [
            ("fisher_vector_product", trpo_fvp(), True, "", "TRPO, cg_damping = 0"),
            ("fisher_vector_product", trpo_fvp(kl_scale=0.5), False, "F v / 2",
             "broken: the Hessian of KL / 2"),
            ("natural_gradient", trpo_natural_gradient(0.0), True, "", "CG, cg_damping = 0"),
            ("natural_gradient", trpo_natural_gradient(0.1), False, "(F + 0.1 I)^-1 g",
             "TRPO's default cg_damping = 0.1 (by design)"),
        ]
    return out


def run(sizes):
    results = []
    for check, fn, expect_pass, words, note in rows():
        start = time.perf_counter()
        size = {k: v for k, v in sizes.items() if k in exact.CHECKS[check].default_size}
        result = exact.check(check, fn, **size)
        seconds = time.perf_counter() - start
        as_expected = result.passed == expect_pass and (expect_pass or words in result.diagnosis)
        name = result.estimator.replace("__main__:", "audit_outside:")
        results.append((check, name, note, expect_pass, result, as_expected, seconds))
        print(f"{check:<22} {'PASS' if result.passed else 'FAIL'} "
              f"({'as expected' if as_expected else 'NOT AS EXPECTED'}) {result.statistic:.4g} "
              f"vs {result.threshold:.4g}  {note}  {result.diagnosis}", flush=True)
    return results


def report(results, seconds, sizes):
    import stable_baselines3
    lines = ["# Auditing stable-baselines3's gradient code with minipg.audit.exact", "",
             "Written by `verification/audit_outside.py` (issue 21, \"Audit someone else's "
             "gradient\").", "",
             "Command: `python verification/audit_outside.py" +
             "".join(f" --{k.replace('_', '-')} {v}" for k, v in sizes.items()) + "`", "",
             f"Python {platform.python_version()}, NumPy {np.__version__}, torch "
             f"{torch.__version__}, stable-baselines3 {stable_baselines3.__version__}"
             + (f", sb3-contrib {__import__('sb3_contrib').__version__}" if HAVE_CONTRIB else "")
             + f"; total {seconds:.0f} s.", "",
             "Each row is one public check of `minipg.audit.exact` (seed 0, 99.9% for the "
             "statistical tests) run on an adapter around SB3's own code; see the script's "
             "docstring for how each adapter feeds SB3.  Statistic and threshold: Hotelling's "
             "T^2 and its critical value, or for the deterministic checks the relative error "
             "and its tolerance.", "",
             f"All rows as expected: **{'yes' if all(r[5] for r in results) else 'NO'}**.", "",
             "| check | implementation | note | expected | statistic | threshold | verdict | "
             "diagnosis |", "|---|---|---|---|---|---|---|---|"]
    for check, name, note, expect_pass, r, ok, _ in results:
        lines.append(f"| {check} | {name} | {note} | {'PASS' if expect_pass else 'FAIL'} | "
                     f"{r.statistic:.4g} | {r.threshold:.4g} | "
                     f"{'PASS' if r.passed else 'FAIL'}{'' if ok else ' (unexpected)'} | "
                     f"{r.diagnosis.replace('|', chr(92) + '|') or '-'} |")
    lines += ["", "## The full reports", ""]
    for check, name, note, _, r, _, secs in results:
        lines += [f"### {check}: {name} ({note}; {secs:.1f} s)", "", "```", str(r), "```", ""]
    RESULTS.write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-batches", type=int, default=4000)
    parser.add_argument("--n-episodes", type=int, default=6000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not HAVE_SB3:
        print("stable-baselines3 and torch are not installed: nothing to audit")
        return 0
    torch.set_num_threads(1)
    sizes = dict(n_batches=args.n_batches, n_episodes=args.n_episodes)
    start = time.perf_counter()
    results = run(sizes)
    if not args.no_write:
        report(results, time.perf_counter() - start, sizes)
        print(f"wrote {RESULTS}")
    return 0 if all(r[5] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
