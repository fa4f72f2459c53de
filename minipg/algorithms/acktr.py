r"""ACKTR: actor-critic with Kronecker-factored trust regions (K-FAC natural gradients).

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "ACKTR".
Paper: Y. Wu, E. Mansimov, S. Liao, R. Grosse, J. Ba, "Scalable trust-region
method for deep reinforcement learning using Kronecker-factored
approximation", NeurIPS 2017 (section 3); K-FAC: J. Martens and
R. Grosse, "Optimizing Neural Networks with Kronecker-factored Approximate
Curvature", ICML 2015.  The mathematics is in :mod:`minipg.estimators.acktr`
and :class:`minipg.optim.KFAC`; formulas in verification/FORMULAS.md
"TRPO, K-FAC, ACKTR".

Each iteration (:class:`~minipg.algorithms.onpolicy_common.SeparateStepsAlgorithm`):

1. A2C's data: T = ``n_steps`` steps in each of N environments (s, a, V(s),
   r and both episode-end flags);
2. A2C's targets, held constant: ``advantage="nstep"`` (A3C's n-step returns R,
   A = R - V) or ``"gae"`` (GAE(gamma, lambda), R = A + V), bootstrapping a
   truncation from V(true last state) and a termination from nothing;
3. the actor step (:meth:`ACKTR.policy_step`):

   * one forward pass of pi inside the K-FAC capture; a~ ~ pi(.|s) drawn
     afresh, and K-FAC's running factors A, G updated from
     log pi(a~|s) (the policy's own Fisher, Wu et al. 3.1);
   * the gradient of L_pi = -E[A log pi(a|s)] - c_H E[H];
   * dtheta = F~^-1 grad per layer, vec_r(A~^-1 V G~^-1) (F~ the damped K-FAC
     approximation); a Gaussian policy's log-std has the exact Fisher 2 I;
   * eta = min(eta_max, sqrt(2 delta / (dtheta^T F dtheta))) with F the K-FAC
     approximation (section 3.2); theta <- theta - eta dtheta (through
     K-FAC's momentum buffer when ``momentum`` > 0, as in baselines' ACKTR);

4. the critic step (:meth:`ACKTR.value_step`): the same with
   L_V = 1/2 E[(V - R)^2], its Fisher the Gauss-Newton matrix of a Gaussian
   output N(V, 1), K-FAC's G from targets y~ = V + eps sampled around V
   (section 3.1), and its own trust region (``value_max_kl``, ``value_lr``).

eta_max is annealed linearly to 0 with ``anneal_lr`` (baselines' ACKTR).

Choices, against the references: separate actor and critic networks, each
with its own K-FAC and trust region (the on-policy base's separate-steps
shape; on Atari the paper shared a trunk between actor and critic, which
this shape does not allow); eta_max 0.25, damping 0.01 and entropy 0.01
are OpenAI baselines' ACKTR values, delta = 0.001 (baselines' ``kfac_clip``
0.001 is 2 delta in this notation's 1/2 dtheta^T F dtheta <= delta).  Two
departures, both from CartPole trials (verification/results/acktr_learning.md):
no momentum by default (baselines: 0.9; the trust region bounds each new
step, not the momentum sum, and with 0.9 the policy collapsed to a
deterministic one within 20k steps) and a statistics decay of 0.95
(baselines: 0.99): with a near-uniform initial policy (output gain 0.01) the
hidden layers' G grows by orders of magnitude as the output weights grow, so
slowly averaged factors underestimate dtheta^T F dtheta (by 50x and more in
the trials: a step meant to move the policy by KL 0.001 moved it by 0.05).
minipg refreshes the inverses every ``refresh_every`` updates from the start
(baselines waits for a few cold iterations).

progress.csv columns: ``policy_loss``, ``entropy``, ``policy_eta`` (the
step size taken), ``policy_quadratic`` (dtheta^T F dtheta), ``value_loss``,
``value_eta``, ``value_quadratic``, ``kfac_time_fraction`` (the share of the
updates' wall time, over every update of the process so far, spent in
K-FAC: the curvature backward, the factors, the inverses, the
preconditioning, the quadratic form and the step), ``lr``,
``explained_variance``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..autodiff import no_grad
from ..estimators.acktr import (actor_loss, critic_fisher_log_likelihood, critic_loss,
                                sampled_policy_log_likelihood, step_size)
from ..optim import KFAC
from . import ALGORITHMS
from .base import setting
from .onpolicy_common import (OnPolicyConfig, SeparateStepsAlgorithm, explained_variance,
                              linear_decay)

__all__ = ["ACKTRConfig", "ACKTR"]


@dataclass
class ACKTRConfig(OnPolicyConfig):
    """Settings of ACKTR (defaults: baselines' ACKTR; presets per task below)."""
    total_steps: int = setting(500_000, "environment steps to train for", low=1)
    n_envs: int = setting(16, "parallel environments N (synchronous actors)", low=1, high=1024)
    n_steps: int = setting(20, "steps T per environment between updates", low=1)
    advantage: str = setting("nstep", "'nstep' (A3C's n-step returns) or 'gae' (GAE(lambda))",
                             choices=("nstep", "gae"))
    lr: float = setting(0.25, "eta_max of the actor (initial value when annealed)", low=0.0,
                        low_open=True)
    max_kl: float = setting(0.001, "delta: the actor's trust region, 1/2 dtheta^T F dtheta",
                            low=0.0, low_open=True)
    value_lr: float = setting(0.25, "eta_max of the critic (annealed with lr)", low=0.0,
                              low_open=True)
    value_max_kl: float = setting(0.001, "the critic's trust region (Gauss-Newton metric)",
                                  low=0.0, low_open=True)
    anneal_lr: bool = setting(True, "decay eta_max linearly to 0 over total_steps")
    damping: float = setting(0.01, "lambda: K-FAC's Tikhonov damping (factored)", low=0.0,
                             low_open=True)
    kfac_decay: float = setting(0.95, "running-average weight of the old K-FAC factors",
                                low=0.0, high=1.0, high_open=True)
    refresh_every: int = setting(10, "k: recompute the damped inverses every k updates",
                                 low=1)
    momentum: float = setting(0.0, "momentum of the K-FAC step (baselines: 0.9)", low=0.0,
                              high=1.0, high_open=True)
    entropy_coef: float = setting(0.01, "c_H: weight of the entropy bonus", low=0.0)


@ALGORITHMS.register("acktr")
class ACKTR(SeparateStepsAlgorithm):
    """Actor-critic with K-FAC natural gradients and trust-region steps; see the module."""

    name = "acktr"
    Config = ACKTRConfig
    description = "actor-critic with Kronecker-factored trust regions (Wu et al. 2017)"
    presets = {
        # A2C's presets' rollouts, longer (n_steps 16: 128 or 256 samples for the factors),
        # with A2C's reward scaling and observation normalisation
        "CartPole-v1": {"n_envs": 8, "n_steps": 16, "entropy_coef": 0.0,
                        "normalize_reward": True, "total_steps": 100_000},
        "Acrobot-v1": {"n_envs": 16, "n_steps": 16, "entropy_coef": 0.0, "normalize_obs": True,
                       "normalize_reward": True, "total_steps": 300_000},
        "InvertedPendulum-v5": {"n_envs": 8, "n_steps": 32, "entropy_coef": 0.0,
                                "advantage": "gae", "gae_lambda": 0.95,
                                "normalize_obs": True, "total_steps": 300_000},
    }

    def __init__(self, config, observation_space, action_space, seed):
        self.advantage_method = config.advantage
        self.kfac_total = self.update_seconds = 0.0
        super().__init__(config, observation_space, action_space, seed)

    def _kfac(self, module, lr, diagonal=()):
        cfg = self.config
        return KFAC(module, lr=lr, damping=cfg.damping, decay=cfg.kfac_decay,
                    refresh_every=cfg.refresh_every, momentum=cfg.momentum, diagonal=diagonal)

    def make_policy_optimizer(self, policy):
        # a Gaussian's state-independent log-std: its exact Fisher is 2 per entry
        diagonal = [(policy.log_std, 2.0)] if hasattr(policy, "log_std") else []
        return self._kfac(policy, self.config.lr, diagonal)

    def make_value_optimizer(self, value):
        return self._kfac(value, self.config.value_lr)

    def _trust_region_step(self, opt, loss, max_kl, eta_max):
        """grad of ``loss``, the K-FAC direction, eta and the step; (eta, d^T F d)."""
        opt.zero_grad()
        loss.backward()
        t0 = time.perf_counter()
        direction = opt.natural_gradient()                    # F~^-1 grad
        quadratic = opt.fisher_quadratic(direction)           # dtheta^T F dtheta
        eta = step_size(quadratic, max_kl, eta_max)           # Wu et al. 3.2
        opt.step(direction, eta)
        self.kfac_total += time.perf_counter() - t0
        return eta, quadratic

    def policy_step(self, batch):
        cfg, opt = self.config, self.policy_optimizer
        with opt.capture():
            dist = self.policy(batch.obs)
        t0 = time.perf_counter()
        with no_grad():
            sampled = dist.sample(self.rng)                    # a~ ~ pi(.|s): the true Fisher
        opt.update_curvature(sampled_policy_log_likelihood(dist, sampled))
        self.kfac_total += time.perf_counter() - t0
        log_prob = dist.log_prob(batch.actions, validate=False)
        loss, diagnostics = actor_loss(log_prob, batch.advantages, self.entropy_of(dist),
                                       cfg.entropy_coef)
        eta, quadratic = self._trust_region_step(opt, loss, cfg.max_kl, opt.lr)
        diagnostics.update(policy_eta=eta, policy_quadratic=quadratic)
        return diagnostics

    def value_step(self, batch):
        cfg, opt = self.config, self.value_optimizer
        with opt.capture():
            values = self.value(batch.obs)
        t0 = time.perf_counter()
        noise = self.rng.standard_normal(values.shape)        # y~ = V + eps, eps ~ N(0, 1)
        opt.update_curvature(critic_fisher_log_likelihood(values, noise))
        self.kfac_total += time.perf_counter() - t0
        loss = critic_loss(values, batch.returns)
        eta, quadratic = self._trust_region_step(opt, loss, cfg.value_max_kl, opt.lr)
        return {"value_loss": float(loss.data), "value_eta": eta,
                "value_quadratic": quadratic}

    def set_learning_rate(self, steps_done):
        cfg = self.config
        scale = linear_decay(1.0, steps_done, cfg.total_steps) if cfg.anneal_lr else 1.0
        # KFAC refuses lr = 0: the last iteration keeps a tiny positive eta_max
        self.policy_optimizer.lr = max(cfg.lr * scale, 1e-12)
        self.value_optimizer.lr = max(cfg.value_lr * scale, 1e-12)
        return self.policy_optimizer.lr

    def learn(self, collector):
        lr = self.set_learning_rate(collector.steps)
        batch = self.collect_batch(collector, self.advantage_method)
        t0 = time.perf_counter()
        metrics = dict(self.policy_step(batch))
        metrics.update(self.value_step(batch))
        self.update_seconds += time.perf_counter() - t0
        # over every update of this process so far (one update is too short to time alone)
        metrics["kfac_time_fraction"] = self.kfac_total / self.update_seconds
        metrics["lr"] = lr
        metrics["explained_variance"] = explained_variance(batch.values_old, batch.returns)
        return metrics
