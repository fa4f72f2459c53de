r"""Off-policy actor-critic (Off-PAC) with linear features and a fixed behaviour policy.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "Off-Policy
Policy Gradient".  Paper: T. Degris, M. White and R. S. Sutton, "Off-Policy
Actor-Critic", ICML 2012 (arXiv:1205.4839), Algorithm 1 ("Off-PAC").

The agent *acts* by a fixed, known behaviour policy :math:`\beta` (Degris et
al. write :math:`b`) and *learns* a different target policy, a linear
softmax :math:`\pi_u(a|s) = \mathrm{softmax}_a(x(s)^\top U)` with
:math:`u = \mathrm{vec}(U)`, by ascending the approximate off-policy gradient
(Weng's last line of "Off-Policy Policy Gradient")

.. math::

    g(u) = \mathbb{E}_{s \sim d^\beta,\, a \sim \beta}\Big[
        \frac{\pi_u(a|s)}{\beta(a|s)}\, Q^\pi(s, a)\, \nabla_u \ln \pi_u(a|s)\Big].

The features :math:`x(s)` are the environment's observation vector (for the
one-hot observations of ``minipg/RandomMDP-v0`` this is the tabular case).
The critic is linear, :math:`\hat v(s) = v^\top x(s)`, learned off-policy by
GTD(:math:`\lambda`) with its second weight vector :math:`w`.

Algorithm 1, one box step per environment step (the line that implements
each is marked in :meth:`OffPolicyActorCritic.learn`):

1. choose :math:`a \sim \beta(\cdot|s)`; store :math:`\beta(a|s)` now, at
   sampling time;
2. observe :math:`r, s'`;
3. :math:`\delta \leftarrow r + \gamma(s')\, v^\top x(s') - v^\top x(s)`
   (:math:`\gamma(s') = 0` when :math:`s'` is terminal; a time-limit
   truncation bootstraps from the true final observation);
4. :math:`\rho \leftarrow \pi_u(a|s) / \beta(a|s)`;
5. critic, GTD(:math:`\lambda`):
   :math:`e_v \leftarrow \rho (x_s + \gamma\lambda e_v)`,
   :math:`v \leftarrow v + \alpha_v[\delta e_v - \gamma(s')(1-\lambda)(w^\top e_v) x_{s'}]`,
   :math:`w \leftarrow w + \alpha_w[\delta e_v - (w^\top x_s) x_s]`;
6. actor: :math:`e_u \leftarrow \rho(\psi + \gamma\lambda e_u)` with
   :math:`\psi = \nabla_u \ln\pi_u(a|s)`, :math:`u \leftarrow u + \alpha_u \delta e_u`;
7. :math:`s \leftarrow s'`; at an episode's first state both traces are 0
   (the paper's :math:`\gamma(s) = 0` there).

Steps 5 and 6 are :func:`minipg.estimators.off_policy.gtd_lambda_update` and
:func:`minipg.estimators.off_policy.offpac_actor_update`; the ratio of step 4
enters both traces.  The score of the linear softmax is written in closed
form, :math:`\nabla_U \ln\pi_u(a|s) = x(s)\,(e_a - \pi_u(\cdot|s))^\top`
(:func:`minipg.algorithms.linear_models.linear_softmax_score`; the tests
check it against the autodiff gradient).

Behaviour policies (``behaviour``): ``"uniform"`` (default,
:math:`\beta(a|s) = 1/|A|`), or ``"mixture"``:
:math:`\beta(\cdot|s) = \epsilon / |A| + (1 - \epsilon)\, \mathrm{softmax}(x(s)^\top U_\beta)`
with a *given* fixed linear-softmax policy whose weights :math:`U_\beta`
(shape ``(obs_dim, n_actions)``) are read from the ``.npy`` file
``behaviour_logits`` (for one-hot observations: a table of logits).
:math:`\epsilon > 0` keeps every action possible, so :math:`\rho` is finite
and every action of the target policy is covered.  A subclass may override
:meth:`OffPolicyActorCritic.behaviour_probs` for any other fixed
:math:`\beta`.

Acting: ``learn`` acts by :math:`\beta`; ``act(obs, deterministic=True)`` is
the TARGET policy's greedy action (what evaluation measures), and
``act(obs)`` samples from the target policy.

Step sizes: the paper's three, :math:`\alpha_v, \alpha_w, \alpha_u`, and
:math:`\lambda`.  Its convergence analysis wants the actor on the slower
time scale (:math:`\alpha_u \ll \alpha_v`) and :math:`\alpha_w` small; the
defaults are tuned for ``minipg/RandomMDP-v0`` (Degris et al. tuned theirs per
problem by a sweep); with them the target policy's exact return is within 1%
of the optimum after 15,000-17,500 steps of uniform behaviour (3 seeds,
``verification/classical_control.py``).  A behaviour far from the target
(ratios up to 10) needs ``lam=0`` and a smaller ``alpha_u`` (see there).

With ``n_envs > 1`` each environment keeps its own traces and the ``n_envs``
transitions of a vector step are applied one after another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..distributions import Categorical
from ..estimators.actor_critic import td_error
from ..estimators.off_policy import gtd_lambda_update, importance_weights, offpac_actor_update
from . import ALGORITHMS
from .base import Algorithm, BaseConfig, ConfigError, setting
from .linear_models import LinearWeights, feature_dim, linear_softmax_probs, linear_softmax_score

__all__ = ["OffPolicyActorCriticConfig", "OffPolicyActorCritic"]


@dataclass
class OffPolicyActorCriticConfig(BaseConfig):
    """Settings of Off-PAC (defaults: minipg/RandomMDP-v0)."""
    total_steps: int = setting(50_000, "environment steps to train for", low=1)
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0, low_open=True)
    lam: float = setting(0.4, "lambda, trace decay of the critic's and the actor's traces",
                         low=0.0, high=1.0)
    alpha_v: float = setting(0.1, "alpha_v, the critic's (value weights') step size", low=0.0,
                             low_open=True)
    alpha_w: float = setting(0.01, "alpha_w, step size of GTD's second weight vector w",
                             low=0.0)
    alpha_u: float = setting(0.05, "alpha_u, the actor's step size (slower than alpha_v)",
                             low=0.0, low_open=True)
    behaviour: str = setting("uniform", "behaviour policy beta: 'uniform' or 'mixture' "
                             "(epsilon-uniform mixed with the fixed policy in behaviour_logits)",
                             choices=("uniform", "mixture"))
    behaviour_epsilon: float = setting(0.1, "mixture: weight of the uniform policy in beta "
                                       "(> 0 keeps every action possible)", low=0.0, high=1.0,
                                       low_open=True)
    behaviour_logits: str = setting("", "mixture: .npy file of the given policy's weights "
                                    "U_beta, shape (obs_dim, n_actions)")

    def check(self):
        if self.behaviour == "mixture" and not self.behaviour_logits:
            raise ConfigError("behaviour='mixture' needs behaviour_logits: a .npy file of the "
                              "given policy's weights, shape (obs_dim, n_actions)")
        if self.behaviour == "uniform" and self.behaviour_logits:
            raise ConfigError("behaviour_logits is only used with behaviour='mixture'")


@ALGORITHMS.register("off_policy_ac")
class OffPolicyActorCritic(Algorithm):
    """Off-PAC (Degris, White & Sutton 2012, Algorithm 1); see the module docstring."""

    name = "off_policy_ac"
    Config = OffPolicyActorCriticConfig
    action_kinds = ("discrete",)
    default_env = "minipg/RandomMDP-v0"
    description = ("off-policy actor-critic (Degris et al. 2012): linear softmax target, "
                   "GTD(lambda) critic, fixed behaviour policy")
    presets = {"minipg/RandomMDP-v0": {"gamma": 0.9}}

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        d = feature_dim(observation_space, self.name)
        self.policy = LinearWeights(self.dtype, U=(d, self.n_actions))     # target pi_u
        self.critic = LinearWeights(self.dtype, v=(d,), w=(d,))          # v^T x(s), GTD's w
        self.trace_v = self.trace_u = None          # e_v (n_envs, d), e_u (n_envs, d*A)
        self.behaviour_weights = None
        if config.behaviour == "mixture":
            self.behaviour_weights = self._read_behaviour(config.behaviour_logits, d)

    def _read_behaviour(self, path, d):
        if not os.path.exists(path):
            raise ConfigError(f"behaviour_logits {path!r}: no such file; accepted: a .npy file of "
                              f"shape ({d}, {self.n_actions})")
        try:
            weights = np.load(path, allow_pickle=False)
        except Exception as exc:  # not an .npy, pickled objects
            raise ConfigError(f"behaviour_logits {path!r}: cannot read it as a .npy array "
                              f"({type(exc).__name__}: {exc})") from None
        if weights.shape != (d, self.n_actions) or weights.dtype.kind not in "fiu" \
                or not np.all(np.isfinite(weights)):
            raise ConfigError(f"behaviour_logits {path!r}: got {weights.dtype} array of shape "
                              f"{weights.shape}; accepted: finite numbers, shape "
                              f"({d}, {self.n_actions}) (obs_dim, n_actions)")
        return weights.astype(np.float64)

    # --- the two policies ------------------------------------------------------------
    def target_probs(self, obs):
        """pi_u(.|s) for observations (n, d) -> (n, A)."""
        return linear_softmax_probs(np.asarray(obs, dtype=np.float64), self.policy.U.data)

    def behaviour_probs(self, obs):
        """beta(.|s) for observations (n, d) -> (n, A); fixed, never learned."""
        obs = np.asarray(obs, dtype=np.float64)
        uniform = np.full((len(obs), self.n_actions), 1.0 / self.n_actions)
        if self.config.behaviour == "uniform":
            return uniform
        eps = self.config.behaviour_epsilon
        return eps * uniform + (1.0 - eps) * linear_softmax_probs(obs, self.behaviour_weights)

    def act(self, obs, deterministic=False):
        """The TARGET policy: greedy (deterministic) or sampled.  learn() acts by beta."""
        logits = np.asarray(obs, dtype=np.float64) @ self.policy.U.data     # x(s)^T U
        if deterministic:
            return np.argmax(logits, axis=-1)
        return Categorical(logits).sample(self.rng)

    def policy_matrix(self, observations):
        """pi_u(.|s) for each row of ``observations`` (for a one-hot task: the (S, A) policy)."""
        return self.target_probs(observations)

    # --- run-loop plumbing -------------------------------------------------------------
    def modules(self):
        return {"policy": self.policy, "critic": self.critic}

    def extra_state(self):
        out = {}
        if self.trace_v is not None:
            out.update(trace_v=self.trace_v, trace_u=self.trace_u)
        if self.behaviour_weights is not None:
            out["behaviour_weights"] = self.behaviour_weights
        return out

    def load_extra_state(self, arrays):
        if "trace_v" in arrays:
            self.trace_v = np.array(arrays["trace_v"], dtype=np.float64)
            self.trace_u = np.array(arrays["trace_u"], dtype=np.float64)
        if "behaviour_weights" in arrays:
            self.behaviour_weights = np.array(arrays["behaviour_weights"], dtype=np.float64)

    # --- one step of Algorithm 1 per environment -------------------------------------
    def learn(self, collector):
        cfg = self.config
        n = collector.n_envs
        if self.trace_v is None:             # e_v = e_u = 0 at the first state
            self.trace_v = np.zeros((n, self.policy.U.shape[0]))
            self.trace_u = np.zeros((n, self.policy.U.data.size))

        behaviour = self.behaviour_probs(collector.obs)
        actions = _sample(behaviour, self.rng)                       # 1. a ~ beta(.|s)
        behaviour_prob = behaviour[np.arange(n), actions]            #    beta(a|s), stored now
        step = collector.step(actions)                               # 2. r, s'
        x, x_next = np.asarray(step.obs, np.float64), np.asarray(step.next_obs, np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            values = np.concatenate([step.rewards, x @ self.critic.v.data,
                                     x_next @ self.critic.v.data])
        if not np.all(np.isfinite(values)):          # a non-finite diagnostic stops the run loop
            return {"transition_or_value": float(values[~np.isfinite(values)][0])}

        td_errors, ratios, entropies = np.empty(n), np.empty(n), np.empty(n)
        for i in range(n):
            U, v, w = self.policy.U.data, self.critic.v.data, self.critic.w.data
            pi = linear_softmax_probs(x[i:i + 1], U)                     # pi_u(.|s)
            delta = td_error(step.rewards[i], x_next[i] @ v, x[i] @ v, cfg.gamma,
                             step.terminated[i])           # 3. r + gamma(s') v'x' - v'x
            rho = importance_weights(pi_prob=pi[0, actions[i]],
                                     behaviour_prob=behaviour_prob[i])   # 4. pi_u(a|s)/beta(a|s)
            # 5. critic, GTD(lambda): e_v <- rho (x + gamma lam e_v); v, w steps
            v_new, w_new, self.trace_v[i] = gtd_lambda_update(
                v, w, self.trace_v[i], x[i], x_next[i], step.rewards[i], cfg.gamma, cfg.lam,
                rho, cfg.alpha_v, cfg.alpha_w, step.terminated[i])
            # 6. actor: e_u <- rho (psi + gamma lam e_u); u <- u + alpha_u delta e_u
            psi = linear_softmax_score(x[i:i + 1], actions[i:i + 1], pi)[0]
            u_new, self.trace_u[i] = offpac_actor_update(
                U.reshape(-1), self.trace_u[i], psi, delta, cfg.gamma, cfg.lam, rho, cfg.alpha_u)
            self.critic.v.data[...] = v_new
            self.critic.w.data[...] = w_new
            self.policy.U.data[...] = u_new.reshape(U.shape)
            td_errors[i], ratios[i] = delta, rho
            entropies[i] = -np.sum(pi * np.log(np.clip(pi, 1e-300, None)))
        # 7. s <- s'; where an episode ended the next state starts one: traces restart at 0
        done = step.terminated | step.truncated
        self.trace_v[done] = 0.0
        self.trace_u[done] = 0.0

        return {"td_error_abs": float(np.mean(np.abs(td_errors))),
                "rho_mean": float(np.mean(ratios)),
                "target_entropy": float(np.mean(entropies))}


def _sample(probs, rng):
    """One action per row of ``probs`` (n, A), by the Categorical distribution's sampler."""
    with np.errstate(divide="ignore"):
        return Categorical(np.log(probs)).sample(rng)

