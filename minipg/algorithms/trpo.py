r"""TRPO: natural-gradient policy steps inside a KL trust region, V fitted separately.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "TRPO".
Papers: J. Schulman, S. Levine, P. Moritz, M. Jordan, P. Abbeel, "Trust
Region Policy Optimization", ICML 2015 (eq. 14 and Appendix C, the practical
algorithm); J. Schulman, P. Moritz, S. Levine, M. Jordan, P. Abbeel,
"High-Dimensional Continuous Control Using Generalized Advantage
Estimation", ICLR 2016 (GAE, eq. 16, and the separately fitted V).
The mathematics is in :mod:`minipg.estimators.trpo`.

Each iteration (:meth:`TRPO.learn`, the shape of
:class:`~minipg.algorithms.onpolicy_common.SeparateStepsAlgorithm`):

1. run pi_old for T = ``n_steps`` steps in each of N environments (s, a,
   log pi_old(a|s), V_old(s), r and both episode-end flags);
2. A = GAE(gamma, lambda), bootstrapping a truncation from V(true last
   state) and a termination from nothing; value targets R = A + V_old;
   the advantages standardised over the whole batch (``normalize_advantages``);
3. the policy step (:meth:`TRPO.policy_step`), on the whole batch:

   * g = grad L(theta_old), L(theta) = E[pi_theta / pi_old A] (eq. 14);
   * F v = J^T M J v exactly, at theta_old (the engine's forward and reverse
     modes, :class:`~minipg.estimators.trpo.FisherOperator`), damped:
     (F + lambda I) v with lambda = ``cg_damping``;
   * x ~ (F + lambda I)^-1 g by ``cg_iterations`` steps of conjugate
     gradient (``scipy.sparse.linalg.cg``);
   * s = sqrt(2 delta / x^T (F + lambda I) x) x, delta = ``max_kl``;
   * the backtracking line search over theta_old + f s, f = c^k (c =
     ``line_search_shrink``, k < ``line_search_max_steps``), accepting the
     first f with exact mean KL(pi_old || pi_theta) <= delta AND L(theta) >
     L(theta_old); when none passes, theta stays theta_old and
     ``line_search_accepted`` is logged as 0;

   every policy parameter is in the step: with a Gaussian policy, the
   state-independent log-std too (its Fisher block is 2 I);
4. the value step (:meth:`TRPO.value_step`): ``value_epochs`` passes of
   Adam minibatch steps on E[(V(s) - R)^2] (no factor 1/2), the value
   network's own optimizer, so the policy step stays a pure natural-gradient step.

progress.csv columns: ``kl`` (the exact mean KL reached; 0 when the step was
refused), ``line_search_fraction`` (f; 0 when refused),
``line_search_accepted``, ``line_search_tries``, ``cg_residual`` (||g - (F
+ lambda I) x||) and ``cg_residual_relative`` (divided by ||g||),
``surrogate_improvement`` (L(theta_new) - L(theta_old)), ``policy_objective``
(L(theta_old) = mean advantage), ``step_scale`` (sqrt(2 delta / x^T A x)),
``grad_norm`` (||g||), ``entropy``, ``value_loss`` (mean over the value
step's minibatches), ``explained_variance``.

Choices, against the references:

* The GAE paper (Schulman et al. 2016, sec. 5) fitted V by a trust-region
  step of its own solved by conjugate gradient, and the authors' code by
  L-BFGS; here, as in stable-baselines3-contrib's TRPO, V is fitted by Adam
  minibatches (``value_lr``, ``value_epochs``,
  ``value_minibatch_size``); the policy step is the paper's.
* The defaults are sb3-contrib's (max_kl 0.01, 15 CG steps, damping 0.1,
  shrink 0.8, 10 line-search steps, 2048-step rollouts, GAE lambda 0.95,
  Adam 1e-3 with 10 value epochs of 128-sample minibatches, eps 1e-5); the
  paper used 10 CG steps, damping 0.1 and a halving line search.
  sb3-contrib accepts KL < delta strictly; here KL <= delta.  The advantages are
  standardised with the population standard deviation (sb3-contrib: the sample one,
  ddof = 1; a factor sqrt((n - 1) / n), 0.9995 for n = 1024).
* The damped operator gives both x and the step length, as in the paper's
  code and sb3-contrib: 1/2 s^T (F + lambda I) s = delta, so the quadratic
  model of the KL at s, 1/2 s^T F s, is at most delta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..autodiff import backward_cotangents, no_grad
from ..distributions import Categorical, DiagGaussian
from ..estimators.ppo import normalize_advantages
from ..estimators.terms import value_loss
from ..estimators.trpo import (FisherOperator, backtracking_line_search, conjugate_gradient,
                               distribution_outputs, max_step, mean_kl, surrogate_objective)
from ..optim import Adam
from . import ALGORITHMS
from .base import ConfigError, setting
from .onpolicy_common import OnPolicyConfig, SeparateStepsAlgorithm

__all__ = ["TRPOConfig", "TRPO", "distribution_outputs", "frozen_distribution"]


@dataclass
class TRPOConfig(OnPolicyConfig):
    """Settings of TRPO (defaults: stable-baselines3-contrib's; presets per task below)."""
    total_steps: int = setting(1_000_000, "environment steps to train for", low=1)
    n_envs: int = setting(1, "parallel environments N", low=1, high=1024)
    n_steps: int = setting(2048, "steps T per environment in one rollout", low=1)
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0, low_open=True)
    gae_lambda: float = setting(0.95, "GAE lambda", low=0.0, high=1.0)
    max_kl: float = setting(0.01, "delta: the trust region, mean KL(pi_old || pi) <= delta",
                            low=0.0, low_open=True)
    cg_iterations: int = setting(15, "conjugate-gradient iterations for x = F^-1 g", low=1)
    cg_damping: float = setting(0.1, "lambda: CG solves (F + lambda I) x = g", low=0.0)
    line_search_shrink: float = setting(0.8, "c: the line search tries the fractions c^k",
                                        low=0.0, high=1.0, low_open=True, high_open=True)
    line_search_max_steps: int = setting(10, "fractions tried, c^0 .. c^(n-1)", low=1)
    normalize_advantages: bool = setting(True, "standardise the advantages over the batch")
    value_lr: float = setting(1e-3, "Adam learning rate of the value function", low=0.0,
                              low_open=True)
    value_epochs: int = setting(10, "passes of the value step over each rollout", low=1)
    value_minibatch_size: int = setting(128, "samples per value minibatch", low=1)
    adam_eps: float = setting(1e-5, "Adam epsilon of the value optimizer", low=0.0)

    def check(self):
        if self.value_minibatch_size > self.n_steps * self.n_envs:
            raise ConfigError(f"settings 'value_minibatch_size' ({self.value_minibatch_size}), "
                              f"'n_steps' ({self.n_steps}) and 'n_envs' ({self.n_envs}): a value "
                              "minibatch is larger than a rollout; accepted: "
                              "value_minibatch_size <= n_steps * n_envs")


def frozen_distribution(dist):
    """pi_old: ``dist`` rebuilt from copies of its parameters' arrays (held constant)."""
    if isinstance(dist, Categorical):
        return Categorical(dist.logits.data.copy())
    return DiagGaussian(dist.mean.data.copy(), dist.log_std.data.copy())


@ALGORITHMS.register("trpo")
class TRPO(SeparateStepsAlgorithm):
    """TRPO with GAE and a separately fitted V; see the module docstring."""

    name = "trpo"
    Config = TRPOConfig
    description = ("trust region policy optimization: CG natural gradient, KL line search "
                   "(Schulman et al. 2015)")
    presets = {
        # rl-baselines3-zoo's CartPole-v1 TRPO settings (also the speed benchmark's)
        "CartPole-v1": {"n_envs": 2, "n_steps": 512, "value_minibatch_size": 512,
                        "cg_damping": 1e-3, "gae_lambda": 0.98, "gamma": 0.99,
                        "value_lr": 1e-3, "value_epochs": 20, "total_steps": 100_000},
        # rl-zoo's Acrobot-v1 settings (normalised observations and rewards)
        "Acrobot-v1": {"n_envs": 2, "n_steps": 1024, "normalize_obs": True,
                       "normalize_reward": True, "total_steps": 100_000},
        # rl-zoo's Pendulum-v1 settings without gSDE (not implemented here)
        "Pendulum-v1": {"n_envs": 2, "n_steps": 1024, "gamma": 0.9, "value_epochs": 15,
                        "normalize_obs": True, "total_steps": 100_000},
        # rl-zoo's MuJoCo TRPO settings (normalised observations and rewards)
        "InvertedPendulum-v5": {"n_envs": 2, "n_steps": 1024, "value_minibatch_size": 128,
                                "cg_iterations": 25, "cg_damping": 0.1, "value_epochs": 20,
                                "normalize_obs": True, "normalize_reward": True,
                                "total_steps": 100_000},
    }

    def make_policy_optimizer(self, policy):
        return None                       # the policy step solves for its own update

    def make_value_optimizer(self, value):
        return Adam(value, lr=self.config.value_lr, eps=self.config.adam_eps)

    # ------------------------------------------------------------ the policy step
    def policy_step(self, batch):
        """One TRPO step of the policy on the whole batch (module docstring, step 3)."""
        cfg = self.config
        policy = self.policy
        params = policy.parameters()
        advantages = (normalize_advantages(batch.advantages) if cfg.normalize_advantages
                      else batch.advantages)
        theta_old = policy.flat_params.copy()

        # one forward pass at theta_old, recorded: the surrogate's gradient and F v use it
        dist = policy(batch.obs)
        log_prob = dist.log_prob(batch.actions, validate=False)        # sampled by us
        objective = surrogate_objective(log_prob, batch.log_prob_old, advantages)   # eq. 14
        g = np.concatenate([x.ravel() for x in backward_cotangents(
            objective, np.ones_like(objective.data), params)])          # g = grad L(theta_old)
        surrogate_old = float(objective.data)
        outputs, metric = distribution_outputs(dist)
        fisher = FisherOperator(lambda: outputs, params, metric, cfg.cg_damping)   # F + lambda I
        dist_old = frozen_distribution(dist)

        cg_result = conjugate_gradient(fisher, g, cfg.cg_iterations)   # x ~ (F + lambda I)^-1 g
        step, scale = max_step(cg_result.x, cg_result.xAx, cfg.max_kl)  # 1/2 s^T A s = delta

        def evaluate(theta):
            """(L(theta), exact mean KL(pi_old || pi_theta)) on the batch."""
            policy.flat_params = theta
            with no_grad():
                new = policy(batch.obs)
                surrogate = surrogate_objective(new.log_prob(batch.actions, validate=False),
                                                batch.log_prob_old, advantages)
                return float(surrogate.data), float(mean_kl(dist_old, new).data)

        search = backtracking_line_search(evaluate, theta_old, step, surrogate_old, cfg.max_kl,
                                          cfg.line_search_shrink, cfg.line_search_max_steps)
        policy.flat_params = search.theta                  # theta_old itself when refused
        with no_grad():
            entropy = float(dist_old.entropy().data.mean())
        g_norm = float(np.linalg.norm(g))
        return {"policy_objective": surrogate_old, "kl": search.kl,
                "line_search_fraction": search.fraction,
                "line_search_accepted": float(search.accepted),
                "line_search_tries": float(search.tries),
                "cg_residual": cg_result.residual,
                "cg_residual_relative": cg_result.residual / g_norm if g_norm > 0 else 0.0,
                "surrogate_improvement": search.improvement, "step_scale": scale,
                "grad_norm": g_norm, "fisher_products": float(fisher.products),
                "entropy": entropy}

    # ------------------------------------------------------------ the value step
    def value_step(self, batch):
        """``value_epochs`` passes of Adam minibatch steps on E[(V(s) - R)^2] (step 4)."""
        cfg = self.config
        n, size = len(batch), cfg.value_minibatch_size
        total, steps = 0.0, 0
        for _ in range(cfg.value_epochs):
            order = self.rng.permutation(n)
            for start in range(0, n, size):
                idx = order[start:start + size]
                loss = value_loss(self.value(batch.obs[idx]), batch.returns[idx])  # E[(V-R)^2]
                self.value_optimizer.zero_grad()
                loss.backward()
                self.value_optimizer.step()
                total += float(loss.data)
                steps += 1
        return {"value_loss": total / steps}
