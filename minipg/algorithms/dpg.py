r"""Deterministic policy gradient with the compatible linear critic (COPDAC-Q).

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "DPG".
Paper: D. Silver, G. Lever, N. Heess, T. Degris, D. Wierstra and
M. Riedmiller, "Deterministic Policy Gradient Algorithms", ICML 2014:
Theorem 1 (eq. 9), the on-policy Sarsa critic (sec. 4.1, eqs. 11-13), the
off-policy Q-learning critic (sec. 4.2, eqs. 16-18), compatible function
approximation (sec. 4.3, Theorem 3) and COPDAC-Q (eqs. 19-22).

Policy: linear and deterministic, :math:`\mu_\theta(s) = K s` with
:math:`\theta = \mathrm{vec}(K)` (``K`` of shape ``(m, n)``, row-major), so
:math:`\partial\mu_i(s)/\partial K_{kl} = \delta_{ik} s_l`, i.e. the Jacobian
``grad_theta_mu = kron(I_m, s^T)`` (shape ``(m, m n)``; the estimators'
convention ``[..., i, j] = d mu_i / d theta_j``).  On the LQR test bed
(``minipg/LQR2D-v0``) this is the gain ``u = K x`` whose exact return is
``LQR.expected_return(K)``.

Critic: the compatible one of Silver et al. sec. 4.3,

.. math::

    Q^w(s, a) = (a - \mu_\theta(s))^\top \nabla_\theta\mu_\theta(s)^\top w + V^v(s),
    \qquad V^v(s) = v^\top x(s),

whose action gradient :math:`\nabla_a Q^w = \nabla_\theta\mu^\top w` makes the
DPG step unbiased (Theorem 3).  :math:`V` is linear in state features
:math:`x(s)`; ``value_features="quadratic"`` (default) uses all products
:math:`s_i s_j` (:math:`i \le j`) and a constant, because on an LQR the value
of a linear policy IS quadratic plus a constant (:math:`V^K(s) = -(s^\top P_K s + c)`),
so this critic can represent it exactly; ``"linear"`` uses :math:`(s, 1)`.

Behaviour: a fixed Gaussian exploration noise around the current policy,
:math:`a = \mu_\theta(s) + \sigma\epsilon`, :math:`\epsilon \sim N(0, I)`
(``exploration_std`` = :math:`\sigma`).  The two critics of Weng's DPG
section (``critic``):

* ``"q_learning"`` (default; off-policy, COPDAC-Q eq. 19):
  :math:`\delta_t = r_t + \gamma Q^w(s_{t+1}, \mu_\theta(s_{t+1})) - Q^w(s_t, a_t)`,
  the next action being the TARGET policy's; since the compatible features
  vanish at :math:`a = \mu(s)`, :math:`Q^w(s', \mu(s')) = V^v(s')`;
* ``"sarsa"`` (on-policy, eq. 11):
  :math:`\delta_t = r_t + \gamma Q^w(s_{t+1}, a_{t+1}) - Q^w(s_t, a_t)` at
  the next action actually taken.  With strictly deterministic actions the
  compatible features :math:`(a - \mu(s))` would be 0 and :math:`w` would
  never move (Silver et al. sec. 4.1: the on-policy form needs noise from
  somewhere), so this variant also acts with the Gaussian noise, and
  :math:`a_{t+1}` is drawn at :math:`s_{t+1}` before the update and then
  taken.  The Sarsa target exceeds eq. 19's by
  :math:`\gamma\,\phi(s_{t+1}, a_{t+1})^\top w`; adding that to the reward
  turns :func:`~minipg.estimators.dpg.copdac_q_update` into the Sarsa step.

One step per transition (COPDAC-Q, eqs. 19-22, via
:func:`minipg.estimators.dpg.copdac_q_update`):

.. math::

    \theta &\leftarrow \theta + \alpha_\theta \nabla_\theta\mu_\theta(s)
        \big(\nabla_\theta\mu_\theta(s)^\top w\big)    && (20) \\
    w &\leftarrow w + \alpha_w \delta\, \phi(s, a),\ \
        \phi(s, a) = \nabla_\theta\mu_\theta(s)(a - \mu_\theta(s))   && (21) \\
    v &\leftarrow v + \alpha_v \delta\, x(s)                          && (22)

``actor_update="natural"`` (default) replaces eq. 20 by the natural
deterministic policy gradient step :math:`\theta \leftarrow \theta + \alpha_\theta w`
(Silver et al. sec. 4.3: with the compatible critic, :math:`w` is the natural
gradient, :math:`M_\mu(\theta)^{-1}\nabla_\theta J` with the metric
:math:`M_\mu(\theta) = \mathbb{E}[\nabla_\theta\mu\nabla_\theta\mu^\top]`);
its size does not depend on the scale of the states, which on an LQR shrink
by orders of magnitude as the policy improves.  ``"vanilla"`` is eq. 20.

Two choices that are ours, not the paper's, and why:

* ``normalized_critic`` (default on): the critic's step sizes are divided
  by the squared size of their features, :math:`\alpha_v / \|x(s)\|^2` and
  :math:`\alpha_w / (\sigma^2 m (1 + \|s\|^2))` (the expected
  :math:`\|\phi\|^2 = \sigma^2 m \|s\|^2`, plus :math:`\sigma^2 m` so that
  tiny states do not blow the step up): normalized LMS.  Quadratic features of
  LQR states span 4-5 orders of magnitude (:math:`|s|^2 \sim 10^3` while the
  initial gain K = 0 lets the position drift, :math:`\sim 10^{-2}` at the
  noise floor of a good gain), and no single plain step size is both stable
  at the start and useful at the end (``normalized_critic=false`` gives the
  paper's plain steps; with alpha_v = alpha_w = 1e-3 they diverge on
  LQR2D from K = 0).  A state-dependent step size reweights the states in the
  critic's fixed point; since the compatible critic represents the
  advantage's linear part exactly and :math:`V` is exact for quadratic
  features, the fixed point :math:`w^* = \mathrm{vec}(-2E_K)`
  (verification/FORMULAS.md, section "LQR, deterministic linear policy") is
  the same.
* ``critic_warmup`` steps: only the critic learns at first (the actor waits
  for a critic whose :math:`w` means something).  Without it an early,
  still-wrong :math:`w` can push the gain into the unstable region, where
  the state diverges geometrically.

Defaults (tuned on ``minipg/LQR2D-v0``): the exact return of the learned gain
is within 1% of J(K*) after 60,000-80,000 steps and stays there (3 seeds,
``verification/classical_control.py``).

Continuous actions only; on a task with a bounded action box the collector
clips the action it sends, while the update uses the action as drawn.  With
``n_envs > 1`` the ``n_envs`` transitions of a vector step are applied one
after another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..estimators.dpg import compatible_features, copdac_q_update
from . import ALGORITHMS
from .base import Algorithm, BaseConfig, setting
from .linear_models import LinearWeights, feature_dim

__all__ = ["DPGConfig", "DPG", "quadratic_features", "linear_features", "policy_jacobian"]


def quadratic_features(s):
    r"""x(s) = (s_i s_j for i <= j, 1): V(s) = s^T P s + c is linear in them.

    (n,) -> (n(n+1)/2 + 1,).
    """
    rows, cols = np.triu_indices(len(s))
    return np.concatenate([s[rows] * s[cols], [1.0]])


def linear_features(s):
    """x(s) = (s, 1).  (n,) -> (n + 1,)."""
    return np.concatenate([s, [1.0]])


def policy_jacobian(s, n_actions):
    r"""grad_theta mu(s) for mu(s) = K s, theta = vec(K) row-major: kron(I_m, s^T), (m, m n)."""
    return np.kron(np.eye(n_actions), s[None, :])        # d mu_i / d K_kl = delta_ik s_l


_FEATURES = {"quadratic": quadratic_features, "linear": linear_features}


@dataclass
class DPGConfig(BaseConfig):
    """Settings of COPDAC-Q (defaults: minipg/LQR2D-v0)."""
    total_steps: int = setting(200_000, "environment steps to train for", low=1)
    log_every: int = setting(10_000, "environment steps between progress rows", low=1)
    gamma: float = setting(0.99, "discount factor", low=0.0, high=1.0, low_open=True)
    critic: str = setting("q_learning", "'q_learning' (off-policy, eq. 19) or 'sarsa' "
                          "(on-policy, eq. 11)", choices=("q_learning", "sarsa"))
    actor_update: str = setting("natural", "'natural': theta += alpha_theta w; 'vanilla': "
                                "eq. 20", choices=("natural", "vanilla"))
    exploration_std: float = setting(1.0, "sigma of the Gaussian behaviour noise a = mu(s) + "
                                     "sigma eps", low=0.0, low_open=True)
    alpha_theta: float = setting(2e-4, "alpha_theta, the actor's step size", low=0.0)
    alpha_w: float = setting(0.03, "alpha_w, step size of the compatible weights w", low=0.0,
                             low_open=True)
    alpha_v: float = setting(0.3, "alpha_v, step size of the value weights v", low=0.0,
                             low_open=True)
    normalized_critic: bool = setting(True, "divide the critic's step sizes by the squared "
                                      "size of its features (normalized LMS)")
    value_features: str = setting("quadratic", "features of V^v(s): 'quadratic' (s_i s_j, 1) "
                                  "or 'linear' (s, 1)", choices=("quadratic", "linear"))
    critic_warmup: int = setting(10_000, "steps during which only the critic learns", low=0)


@ALGORITHMS.register("dpg")
class DPG(Algorithm):
    """COPDAC-Q with a linear deterministic policy; see the module docstring."""

    name = "dpg"
    Config = DPGConfig
    action_kinds = ("continuous",)
    default_env = "minipg/LQR2D-v0"
    description = ("deterministic policy gradient with the compatible linear critic "
                   "(COPDAC-Q, Silver et al. 2014), linear policy")
    presets = {"minipg/LQR2D-v0": {"gamma": 0.95}}

    def __init__(self, config, observation_space, action_space, seed):
        super().__init__(config, observation_space, action_space, seed)
        n, m = feature_dim(observation_space, self.name), self.n_actions
        self.features = _FEATURES[config.value_features]
        k = len(self.features(np.zeros(n)))
        self.policy = LinearWeights(self.dtype, K=(m, n))                # mu(s) = K s
        self.critic = LinearWeights(self.dtype, w=(m * n,), v=(k,))      # Q^w = phi'w + v'x(s)
        self.next_actions = None                    # Sarsa: a_{t+1}, drawn before the update

    def modules(self):
        return {"policy": self.policy, "critic": self.critic}

    def extra_state(self):
        return {} if self.next_actions is None else {"next_actions": self.next_actions}

    def load_extra_state(self, arrays):
        if "next_actions" in arrays:
            self.next_actions = np.array(arrays["next_actions"], dtype=np.float64)

    def act(self, obs, deterministic=False):
        """mu(s) = K s (deterministic: the target policy) or the behaviour mu(s) + sigma eps."""
        obs = np.asarray(obs, dtype=np.float64)
        mu = obs @ self.policy.K.data.T
        if deterministic:
            return mu
        return mu + self.config.exploration_std * self.rng.standard_normal(mu.shape)

    def learn(self, collector):
        cfg = self.config
        n_envs, m = collector.n_envs, self.n_actions
        sarsa = cfg.critic == "sarsa"
        actions = self.next_actions if sarsa and self.next_actions is not None \
            else self.act(collector.obs)                                # a = mu(s) + sigma eps
        step = collector.step(actions)
        diverged = _diverged(step, self.features, self.critic.v.data)
        if diverged:
            return diverged                      # a non-finite diagnostic: the run loop stops
        actor_on = collector.steps > cfg.critic_warmup
        next_actions = self.act(step.next_obs) if sarsa else None     # a_{t+1} at s_{t+1}

        td_errors = np.empty(n_envs)
        for i in range(n_envs):
            K, w, v = self.policy.K.data, self.critic.w.data, self.critic.v.data
            s, s_next = step.obs[i], step.next_obs[i]
            a = np.asarray(step.actions[i], dtype=np.float64).reshape(m)
            mu = K @ s                                                   # mu_theta(s)
            jac = policy_jacobian(s, m)                                  # grad_theta mu(s)
            x, x_next = self.features(s), self.features(s_next)          # V^v features
            reward = step.rewards[i]
            if sarsa and not step.terminated[i]:
                # Sarsa target: + gamma phi(s', a')^T w (eq. 11 vs eq. 19)
                phi_next = compatible_features(next_actions[i], K @ s_next,
                                               policy_jacobian(s_next, m))
                reward = reward + cfg.gamma * float(phi_next @ w)
            alpha_w, alpha_v = cfg.alpha_w, cfg.alpha_v
            if cfg.normalized_critic:
                alpha_w /= cfg.exploration_std ** 2 * m * (1.0 + s @ s)   # ~ E||phi||^2
                alpha_v /= x @ x                                           # ||x(s)||^2
            vanilla_step = cfg.alpha_theta if actor_on and cfg.actor_update == "vanilla" else 0.0
            theta, w_new, v_new, delta = copdac_q_update(               # eqs. 19-22
                K.reshape(-1), w, v, a, mu, jac, x, x_next, reward, cfg.gamma,
                step.terminated[i], vanilla_step, alpha_w, alpha_v)
            if actor_on and cfg.actor_update == "natural":
                theta = K.reshape(-1) + cfg.alpha_theta * w              # theta += alpha w_t
            self.policy.K.data[...] = theta.reshape(K.shape)
            self.critic.w.data[...] = w_new
            self.critic.v.data[...] = v_new
            td_errors[i] = delta

        if sarsa:   # a <- a'; where an episode ended, the next state is a reset: fresh action
            done = step.terminated | step.truncated
            self.next_actions = np.array(next_actions, dtype=np.float64)
            if done.any():
                self.next_actions[done] = self.act(collector.obs[done])
        return {"td_error_abs": float(np.mean(np.abs(td_errors))),
                "critic_w_norm": float(np.linalg.norm(self.critic.w.data))}


def _diverged(step, features, v):
    """{name: non-finite value} when the transition or the critic's values at its states
    overflowed (an unstable gain lets the state grow geometrically), else {}."""
    with np.errstate(over="ignore", invalid="ignore"):
        checks = {"reward": step.rewards,
                  "critic_value": [features(s) @ v for s in (*step.obs, *step.next_obs)]}
    for name, values in checks.items():
        values = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(values)):
            return {name: float(values[~np.isfinite(values)][0])}
    return {}

