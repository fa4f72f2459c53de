r"""``minipg audit`` checks of the off-policy actor-critics: DDPG, TD3, SAC v1, SAC.

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "DPG",
"DDPG", "TD3", "SAC" and "SAC with Automatically Adjusted Temperature";
Silver et al. 2014 (the DPG theorem), Lillicrap et al. 2015, Fujimoto et al.
2018, Haarnoja et al. 2018 and 2018b.  Every check runs the ALGORITHM's own
loss methods (``critic_loss``, ``actor_loss``, ``temperature_loss``,
``losses``), which call the estimators of :mod:`minipg.estimators`, so what
is audited is what training uses.  What each level
(:mod:`minipg.audit.levels`) takes here:

gradcheck
    each loss in the parameters of the network it trains (every coordinate
    of the module's flat parameter vector), small tanh networks (no ReLU
    kinks), the noise (exploration, smoothing, reparameterisation) fixed.
formula
    with LINEAR networks (``hidden = ()``: mu(s) = center + scale tanh(s W +
    b), [mean, log_std] = s W + b, Q_k = [s, a] . w_k + c_k, V = s . v + c)
    the closed forms by hand in NumPy (``verification/FORMULAS.md``,
    "Losses"): critic losses -(2/N) X^T (y - Q) (DDPG, TD3; y from the target
    networks recomputed by hand, with TD3's smoothing and min), (1/N) X^T
    (Q - y) (SAC), the DPG actor gradient (1/N) sum s (w_a * scale * (1 -
    tanh^2))^T, the SAC policy gradient through the reparameterised
    TanhGaussian (d log pi / d mean = 2 tanh u, d log pi / d log_std = -1 + 2
    tanh(u) sigma eps, d a / d u = scale (1 - tanh^2 u)), dJ(alpha)/dlog
    alpha = alpha (H_hat - H_bar), and SAC v1's (1/N) X^T (V - [min Q - alpha
    log pi]).  Statistic: the largest of the relative errors of the pieces.
exact
    * DDPG, TD3: the DPG theorem on the LQR test bed
      (:mod:`minipg.envs.lqr`, ``lqr_2d``; ``verification/FORMULAS.md``,
      "LQR, deterministic linear policy").  A linear actor u = K x (the
      algorithm's DeterministicActor with no hidden layer, on the LQR's
      unbounded action box) and the EXACT Q^K (in rewards) in place of the
      critic; states drawn from the normalised discounted distribution rho
      (``LQR.sample_states``).  The actor gradient the algorithm computes on
      a batch, -grad(actor_loss) = (1/N) sum grad_a Q(x, a)|_{a = K x}
      grad_K mu, has expectation (1 - gamma) grad_K J (rho normalised;
      grad_K J = -grad_K C from Lyapunov equations) and zero for the bias.
      The means over independent batches are compared with it by
      :func:`minipg.audit.stats.t_test_bonferroni` (99.9%).  Also, on the
      first batch, the autodiff gradient must equal (1/N) sum_i x_i grad_u
      Q^K(x_i, K x_i)^T in closed form (relative 1e-10): the samples are the
      actor's gradient.  For TD3 the second critic is a different function
      (smaller everywhere, so a minimum would pick it): the actor must use
      critic 1 only.
    * SAC, SAC v1: the reparameterised policy gradient against its exact
      expectation.  Every state of the batch has the same policy parameters
      (mean m, log_std l, one parameter pair per state so the per-state
      gradients are i.i.d. samples), the box is [-2, 2] as in Pendulum, the
      critics are Q_1(a) = f(a) >= 0 and Q_2 = 2 f + 5 (so min = Q_1); the
      exact gradient of E_eps[alpha log pi(a) - f(a)] in (m, l) is computed
      by 120-node Gauss-Hermite quadrature of a density written
      independently (log N(u) - log(1 - tanh^2 u) - log 2) and central
      differences of the quadrature (errors ~1e-11).  The per-state
      gradients are compared with it by
      :func:`minipg.audit.stats.z_test_bonferroni` (99.9%; n = 20,000).

Each check takes under ~3 s in quick mode; ``--full`` uses larger samples.
:func:`dpg_lqr_check` and :func:`sac_quadrature_check` accept a loss to use
instead of the algorithm's, so the tests can show that a deliberately wrong
one (a sign flip, the wrong critic) is rejected by the same check.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from ..autodiff import Parameter, Tensor, no_grad, ops
from ..buffers.replay import ReplayBatch
from ..distributions import TanhGaussian
from ..envs.lqr import lqr_2d
from ..nn import Module
from . import audit_check
from .levels import FORMULA_RTOL, exact_result, formula_result, gradcheck_module, relative_error
from .stats import t_test_bonferroni, z_test_bonferroni

__all__ = ["make_agent", "random_batch", "ExactLQRCritic", "dpg_lqr_check",
           "sac_quadrature_check"]

LOW, HIGH = np.array([-2.0, -0.5]), np.array([2.0, 1.5])   # an asymmetric 2-D box
OBS_DIM = 3


def _algorithm(name):
    from ..algorithms import get
    return get(name)


# ------------------------------------------------------------------- small agents
def make_agent(name, hidden=(5,), bounded=True, obs_dim=OBS_DIM, low=LOW, high=HIGH, seed=0,
               **settings):
    """A float64 agent of algorithm ``name`` with tanh ``hidden`` layers (() = linear)."""
    cls = _algorithm(name)
    config = cls.Config(hidden=tuple(hidden), activation="tanh", buffer_size=64, batch_size=8,
                        dtype="float64", **settings)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
    if bounded:
        act_space = gym.spaces.Box(np.asarray(low, float), np.asarray(high, float),
                                   dtype=np.float64)
    else:
        act_space = gym.spaces.Box(-np.inf, np.inf, (len(low),), np.float64)
    return cls(config, obs_space, act_space, seed)


def random_batch(rng, n, agent):
    """A ReplayBatch of ``n`` random transitions (some terminated) inside the agent's box."""
    d = agent.action_dim
    low = agent.low if agent.low is not None else -np.ones(d)
    high = agent.high if agent.high is not None else np.ones(d)
    actions = low + (high - low) * rng.uniform(0.05, 0.95, size=(n, d))
    terminated = np.zeros(n, bool)
    terminated[::3] = True
    return ReplayBatch(rng.standard_normal((n, agent.obs_dim)), actions,
                       rng.standard_normal(n), rng.standard_normal((n, agent.obs_dim)),
                       terminated, np.arange(n))


def _randomize(module, rng, scale=0.5):
    """Parameters drawn N(0, scale^2), so no test depends on the initialisation."""
    module.flat_params = scale * rng.standard_normal(module.flat_params.shape)


# --------------------------------------------------------------- 1. gradcheck
def _check_deterministic(name, loss, rng):
    agent = make_agent(name)
    for m in agent.modules().values():
        _randomize(m, rng)
    batch = random_batch(rng, 16, agent)
    if loss == "critic":
        if name == "td3":
            noise = agent.smoothing_noise(batch.actions.shape)
            fn = lambda: agent.critic_loss(batch, noise)[0]          # noqa: E731
        else:
            fn = lambda: agent.critic_loss(batch)[0]                 # noqa: E731
        return gradcheck_module(fn, agent.critic, f"{name}.critic_loss in the critic's "
                                                  f"parameters")
    fn = lambda: agent.actor_loss(batch.obs)                         # noqa: E731
    return gradcheck_module(fn, agent.actor, f"{name}.actor_loss in the actor's parameters")


@audit_check("ddpg", "critic_loss (L, Alg. 1)", "gradcheck")
def _ddpg_critic_gradcheck(full, rng):
    return _check_deterministic("ddpg", "critic", rng)


@audit_check("ddpg", "actor_loss (sampled DPG)", "gradcheck")
def _ddpg_actor_gradcheck(full, rng):
    return _check_deterministic("ddpg", "actor", rng)


@audit_check("td3", "critic_loss (clipped double Q)", "gradcheck")
def _td3_critic_gradcheck(full, rng):
    return _check_deterministic("td3", "critic", rng)


@audit_check("td3", "actor_loss (DPG via Q_1)", "gradcheck")
def _td3_actor_gradcheck(full, rng):
    return _check_deterministic("td3", "actor", rng)


def _sac_agent(rng, name="sac", hidden=(5,)):
    agent = make_agent(name, hidden=hidden)
    for m in agent.modules().values():
        if m is not getattr(agent, "temperature", None):
            _randomize(m, rng)
    return agent, random_batch(rng, 16, agent)


@audit_check("sac", "critic_loss (J_Q, twin soft target)", "gradcheck")
def _sac_critic_gradcheck(full, rng):
    agent, batch = _sac_agent(rng)
    eps = rng.standard_normal(batch.actions.shape)
    return gradcheck_module(lambda: agent.critic_loss(batch, 0.3, eps)[0], agent.critic,
                            "sac.critic_loss in the critics' parameters")


@audit_check("sac", "actor_loss (J_pi, eq. 7)", "gradcheck")
def _sac_actor_gradcheck(full, rng):
    agent, batch = _sac_agent(rng)
    eps = rng.standard_normal(batch.actions.shape)
    return gradcheck_module(lambda: agent.actor_loss(batch.obs, 0.3, eps)[0], agent.actor,
                            "sac.actor_loss in the policy's parameters")


@audit_check("sac", "temperature_loss (J(alpha), eq. 18)", "gradcheck")
def _sac_alpha_gradcheck(full, rng):
    agent, batch = _sac_agent(rng)
    agent.temperature.flat_params = np.array([math.log(0.7)])
    log_prob = rng.standard_normal(16)
    return gradcheck_module(lambda: agent.temperature_loss(log_prob), agent.temperature,
                            "sac.temperature_loss in log alpha")


def _v1_check(which, rng):
    agent, batch = _sac_agent(rng, "sac_v1")
    eps = rng.standard_normal(batch.actions.shape)
    index, module = {"value": (0, agent.value), "q": (1, agent.critic),
                     "policy": (2, agent.actor)}[which]
    return gradcheck_module(lambda: agent.losses(batch, eps)[index], module,
                            f"sac_v1 {which} loss in its network's parameters")


@audit_check("sac_v1", "value loss (J_V, eq. 5)", "gradcheck")
def _v1_value_gradcheck(full, rng):
    return _v1_check("value", rng)


@audit_check("sac_v1", "soft Q loss (J_Q, eq. 7)", "gradcheck")
def _v1_q_gradcheck(full, rng):
    return _v1_check("q", rng)


@audit_check("sac_v1", "policy loss (J_pi, eq. 12)", "gradcheck")
def _v1_policy_gradcheck(full, rng):
    return _v1_check("policy", rng)


# ----------------------------------------------------------------- 2. formula
def _linear_critics(agent):
    """(w (K, n_in), c (K,)) of a CriticEnsemble without hidden layers."""
    return agent.critic.W0.data[:, :, 0], agent.critic.b0.data[:, 0, 0]


def _linear_critic_grads(agent):
    return agent.critic.W0.grad[:, :, 0], agent.critic.b0.grad[:, 0, 0]


def _deterministic_mu(obs, W, b, center, scale):
    z = obs @ W + b
    return center + scale * np.tanh(z), z


def _deterministic_formula(name, rng):
    agent = make_agent(name, hidden=())
    for m in agent.modules().values():
        _randomize(m, rng)
    batch = random_batch(rng, 16, agent)
    n = len(batch.rewards)
    gamma = agent.config.gamma
    center, scale = agent.center, agent.scale
    layer = agent.actor.net.layer0
    W, b = layer.weight.data, layer.bias.data
    tl = agent.actor_target.net.layer0
    w, c = _linear_critics(agent)
    wt = agent.critic_target.W0.data[:, :, 0]
    ct = agent.critic_target.b0.data[:, 0, 0]

    # critic: y by hand from the target networks
    mu_next, _ = _deterministic_mu(batch.next_obs, tl.weight.data, tl.bias.data, center, scale)
    if name == "td3":
        noise = agent.smoothing_noise(batch.actions.shape)
        c_clip = agent.config.target_noise_clip * scale
        a_next = np.clip(mu_next + np.clip(noise, -c_clip, c_clip), agent.low, agent.high)
        q_next = np.min(np.concatenate([batch.next_obs, a_next], 1) @ wt.T + ct, axis=1)
        loss, _ = agent.critic_loss(batch, noise)
    else:
        q_next = np.concatenate([batch.next_obs, mu_next], 1) @ wt[0] + ct[0]
        loss, _ = agent.critic_loss(batch)
    y = batch.rewards + gamma * np.where(batch.terminated, 0.0, q_next)
    agent.critic.zero_grad()
    loss.backward()
    X = np.concatenate([batch.obs, batch.actions], 1)
    q = X @ w.T + c                                              # (N, K)
    expected_w = -2.0 / n * (y[:, None] - q).T @ X               # -(2/N) X^T (y - Q_k)
    expected_c = -2.0 / n * np.sum(y[:, None] - q, axis=0)
    got_w, got_c = _linear_critic_grads(agent)
    error = max(relative_error(got_w, expected_w), relative_error(got_c, expected_c))

    # actor: grad of -(1/N) sum Q_1(s, mu(s)) = -(1/N) sum s (w_a scale (1 - tanh^2))^T
    agent.actor.zero_grad()
    agent.actor_loss(batch.obs).backward()
    _, z = _deterministic_mu(batch.obs, W, b, center, scale)
    w_a = w[0, agent.obs_dim:]
    g_z = w_a * scale * (1.0 - np.tanh(z) ** 2)                  # dQ_1/dz per sample
    error = max(error, relative_error(layer.weight.grad, -batch.obs.T @ g_z / n),
                relative_error(layer.bias.grad, -g_z.mean(axis=0)))
    return formula_result(error, f"{name}: critic loss and DPG actor gradient, linear "
                                 f"networks on an asymmetric box")


@audit_check("ddpg", "critic_loss + actor_loss", "formula")
def _ddpg_formula(full, rng):
    return _deterministic_formula("ddpg", rng)


@audit_check("td3", "critic_loss + actor_loss", "formula")
def _td3_formula(full, rng):
    return _deterministic_formula("td3", rng)


def _tanh_gaussian_by_hand(out, eps, low, high, d):
    """(a, log pi, u, sigma) of the squashed Gaussian, written out in NumPy."""
    mean, log_std = out[:, :d], np.clip(out[:, d:], -20.0, 2.0)
    sigma = np.exp(log_std)
    u = mean + sigma * eps
    scale = (high - low) / 2.0
    a = low + (np.tanh(u) + 1.0) * scale
    # log(1 - tanh^2 u) = -2 log cosh u = 2 (log 2 - |u| - log(1 + e^{-2|u|})): log1p(-tanh^2)
    # would lose ~1e-16 / (1 - tanh^2 u) relative, ~1e-12 at |u| = 5
    log_det = 2.0 * (math.log(2.0) - np.abs(u) - np.log1p(np.exp(-2.0 * np.abs(u))))
    log_pi = np.sum(-0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi) - log_det
                    - np.log(scale), axis=1)
    return a, log_pi, u, sigma


def _policy_grad_by_hand(obs, eps, u, sigma, w_min_a, scale, alpha):
    """d/d(W, b) of (1/N) sum [alpha log pi - Q_min(s, a)], linear [mean, log_std] = s W + b.

    w_min_a (N, d): the action weights of the critic that is the smaller per sample."""
    n = len(obs)
    t = np.tanh(u)
    da_du = scale * (1.0 - t ** 2)
    g_mean = alpha * 2.0 * t - w_min_a * da_du                       # d/d mean
    g_log_std = alpha * (-1.0 + 2.0 * t * sigma * eps) - w_min_a * da_du * sigma * eps
    g_out = np.concatenate([g_mean, g_log_std], axis=1) / n
    return obs.T @ g_out, g_out.sum(axis=0)


@audit_check("sac", "critic_loss + actor_loss + temperature_loss", "formula")
def _sac_formula(full, rng):
    agent, batch = _sac_agent(rng, "sac", hidden=())
    alpha, gamma, d, n = 0.3, agent.config.gamma, agent.action_dim, len(batch.rewards)
    low, high, scale = agent.low, agent.high, (agent.high - agent.low) / 2.0
    layer = agent.actor.net.layer0
    w, c = _linear_critics(agent)
    wt = agent.critic_target.W0.data[:, :, 0]
    ct = agent.critic_target.b0.data[:, 0, 0]

    # critic: y = r + gamma (1 - d)(min_i Q'_i(s', a') - alpha log pi(a'|s'))
    eps_next = rng.standard_normal(batch.actions.shape)
    out_next = batch.next_obs @ layer.weight.data + layer.bias.data
    a_next, log_pi_next, _, _ = _tanh_gaussian_by_hand(out_next, eps_next, low, high, d)
    q_next = np.concatenate([batch.next_obs, a_next], 1) @ wt.T + ct
    y = batch.rewards + gamma * np.where(batch.terminated, 0.0,
                                         q_next.min(axis=1) - alpha * log_pi_next)
    loss, _ = agent.critic_loss(batch, alpha, eps_next)
    agent.critic.zero_grad()
    loss.backward()
    X = np.concatenate([batch.obs, batch.actions], 1)
    q = X @ w.T + c
    got_w, got_c = _linear_critic_grads(agent)
    error = max(relative_error(got_w, (q - y[:, None]).T @ X / n),
                relative_error(got_c, np.mean(q - y[:, None], axis=0)))

    # policy
    eps = rng.standard_normal(batch.actions.shape)
    agent.actor.zero_grad()
    actor_loss, log_prob = agent.actor_loss(batch.obs, alpha, eps)
    actor_loss.backward()
    out = batch.obs @ layer.weight.data + layer.bias.data
    a, log_pi, u, sigma = _tanh_gaussian_by_hand(out, eps, low, high, d)
    q_new = np.concatenate([batch.obs, a], 1) @ w.T + c
    w_min_a = w[np.argmin(q_new, axis=1), agent.obs_dim:]
    gW, gb = _policy_grad_by_hand(batch.obs, eps, u, sigma, w_min_a, scale, alpha)
    error = max(error, relative_error(layer.weight.grad, gW), relative_error(layer.bias.grad, gb),
                relative_error(log_prob.data, log_pi))

    # temperature: dJ/dlog alpha = alpha (H_hat - H_bar)
    agent.temperature.flat_params = np.array([math.log(alpha)])
    agent.temperature.zero_grad()
    agent.temperature_loss(log_pi).backward()
    expected = alpha * (-np.mean(log_pi) - agent.target_entropy)
    error = max(error, relative_error(agent.temperature.log_alpha.grad, [expected]))
    return formula_result(error, "sac: J_Q, J_pi (reparameterised TanhGaussian), J(alpha); "
                                 "linear networks, box [-2, 2] x [-0.5, 1.5]")


@audit_check("sac_v1", "value + soft Q + policy losses", "formula")
def _v1_formula(full, rng):
    agent, batch = _sac_agent(rng, "sac_v1", hidden=())
    alpha, gamma, d, n = agent.config.alpha, agent.config.gamma, agent.action_dim, len(batch.obs)
    low, high, scale = agent.low, agent.high, (agent.high - agent.low) / 2.0
    layer = agent.actor.net.layer0
    w, c = _linear_critics(agent)
    v_layer, vt_layer = agent.value.layer0, agent.value_target.layer0
    eps = rng.standard_normal(batch.actions.shape)
    for m in (agent.value, agent.critic, agent.actor):
        m.zero_grad()
    value_loss, q_loss, policy_loss, _, _ = agent.losses(batch, eps)
    for loss in (value_loss, q_loss, policy_loss):
        loss.backward()

    # J_Q: Q^ = r + gamma (1 - d) V_target(s')
    v_next = (batch.next_obs @ vt_layer.weight.data + vt_layer.bias.data)[:, 0]
    q_hat = batch.rewards + gamma * np.where(batch.terminated, 0.0, v_next)
    X = np.concatenate([batch.obs, batch.actions], 1)
    q = X @ w.T + c
    got_w, got_c = _linear_critic_grads(agent)
    error = max(relative_error(got_w, (q - q_hat[:, None]).T @ X / n),
                relative_error(got_c, np.mean(q - q_hat[:, None], axis=0)))

    # J_V: target min_i Q_i(s, a~) - alpha log pi(a~|s)
    out = batch.obs @ layer.weight.data + layer.bias.data
    a, log_pi, u, sigma = _tanh_gaussian_by_hand(out, eps, low, high, d)
    q_new = np.concatenate([batch.obs, a], 1) @ w.T + c
    v_tgt = q_new.min(axis=1) - alpha * log_pi
    v = (batch.obs @ v_layer.weight.data + v_layer.bias.data)[:, 0]
    error = max(error, relative_error(v_layer.weight.grad[:, 0], batch.obs.T @ (v - v_tgt) / n),
                relative_error(v_layer.bias.grad, [np.mean(v - v_tgt)]))

    # J_pi
    w_min_a = w[np.argmin(q_new, axis=1), agent.obs_dim:]
    gW, gb = _policy_grad_by_hand(batch.obs, eps, u, sigma, w_min_a, scale, alpha)
    error = max(error, relative_error(layer.weight.grad, gW), relative_error(layer.bias.grad, gb))
    return formula_result(error, "sac_v1: J_V, J_Q (target V), J_pi; linear networks")


# ------------------------------------------------------------ 3. exact: DPG on LQR
class ExactLQRCritic:
    r"""The exact action value Q^K(x, u) of an LQR (in rewards) as a differentiable function.

    ``first(x, u)`` = -(z^T H z + q0), z = [x; u], H = ``LQR.q_matrix(K)``;
    calling it returns (2, N): critic 1 exact and critic 2 = critic 1 - 1 -
    |u|^2, smaller everywhere, so code that takes a minimum (or uses critic 2)
    gets a different gradient from TD3's critic-1-only DPG.
    """

    def __init__(self, lqr, K):
        self.H = lqr.q_matrix(K)
        self.q0 = lqr.q_constant(K)

    def first(self, obs, actions):
        z = ops.concatenate([obs, actions], axis=-1)
        return -(ops.sum(ops.matmul(z, self.H) * z, axis=1) + self.q0)

    def __call__(self, obs, actions):
        q1 = self.first(obs, actions)
        q2 = q1 - 1.0 - ops.sum(actions * actions, axis=1)
        return ops.stack([q1, q2], axis=0)


LQR_GAIN = np.array([[-1.0, -1.5]])       # stabilising for lqr_2d: u = K x


def dpg_lqr_check(name, rng, n_batches=40, batch_size=256, actor_loss=None):
    """The DPG-on-LQR check of DDPG or TD3 (see the module docstring); returns a Result.

    ``actor_loss(agent, obs)`` replaces ``agent.actor_loss(obs)`` (a deliberately
    wrong version for the tests); the gradient taken is minus its gradient."""
    lqr = lqr_2d()
    K = LQR_GAIN
    agent = make_agent(name, hidden=(), bounded=False, obs_dim=lqr.n_state,
                       low=np.zeros(lqr.n_action), seed=int(rng.integers(2 ** 31)))
    layer = agent.actor.net.layer0
    with no_grad():
        layer.weight.data[...] = K.T                # mu(x) = x W + b = K x
        layer.bias.data[...] = 0.0
    agent.critic = ExactLQRCritic(lqr, K)
    loss_of = actor_loss or (lambda ag, x: ag.actor_loss(x))
    samples, identity_error = [], None
    for i in range(n_batches):
        x = lqr.sample_states(K, batch_size, rng)
        agent.actor.zero_grad()
        loss_of(agent, x).backward()
        ascent = -np.array(agent.actor.flat_grad, copy=True)      # (W entries, then b)
        samples.append(ascent)
        if i == 0:
            grad_u = lqr.q_value_grad_u(K, x, x @ K.T)            # grad_u Q^K at u = K x
            closed = np.concatenate([(x.T @ grad_u / batch_size).ravel(), grad_u.mean(axis=0)])
            identity_error = relative_error(ascent, closed)
    exact = np.concatenate([(1.0 - lqr.gamma) * lqr.return_gradient(K).T.ravel(),
                            np.zeros(lqr.n_action)])
    test = t_test_bonferroni(np.array(samples), exact)
    return exact_result(test, f"(1-gamma) grad_K J and 0 for the bias (lqr_2d, K={K.tolist()}, "
                              f"{n_batches} batches x {batch_size} states from rho)",
                        f"; autodiff vs closed form on batch 0: {identity_error:.1e} (pass "
                        f"needs <= {FORMULA_RTOL:g})", passed=identity_error <= FORMULA_RTOL)


@audit_check("ddpg", "actor gradient = DPG (LQR)", "exact")
def _ddpg_exact(full, rng):
    return dpg_lqr_check("ddpg", rng, n_batches=200 if full else 40)


@audit_check("td3", "actor gradient = DPG via Q_1 (LQR)", "exact")
def _td3_exact(full, rng):
    return dpg_lqr_check("td3", rng, n_batches=200 if full else 40)


# ----------------------------------------------- 3. exact: SAC reparameterised gradient
GH_NODES, GH_WEIGHTS = hermegauss(120)
GH_WEIGHTS = GH_WEIGHTS / math.sqrt(2.0 * math.pi)      # E[g(z)], z ~ N(0, 1)
SAC_M0, SAC_LOG_STD0, SAC_ALPHA = 0.3, -0.4, 0.5
SAC_LOW, SAC_HIGH = -2.0, 2.0                           # Pendulum's box


def _f(a):
    """f(a) = exp(-(a - 0.5)^2) + 0.3 a + 1 (>= 0 on [-2, 2]); arrays or Tensors."""
    if isinstance(a, Tensor):
        return ops.exp(-ops.square(a - 0.5)) + 0.3 * a + 1.0
    return np.exp(-(a - 0.5) ** 2) + 0.3 * a + 1.0


class _PerStatePolicy(Module):
    """One (mean, log_std) pair per state, all equal: per-state gradients are i.i.d."""

    def __init__(self, n):
        super().__init__()
        self.mean = Parameter(np.full((n, 1), SAC_M0))
        self.log_std = Parameter(np.full((n, 1), SAC_LOG_STD0))

    def forward(self, obs):
        return TanhGaussian(self.mean, self.log_std, np.array([SAC_LOW]), np.array([SAC_HIGH]))


class _KnownCritics:
    """Q_1(s, a) = f(a), Q_2 = 2 f(a) + 5 > Q_1: the minimum is Q_1."""

    def __call__(self, obs, actions):
        q1 = _f(actions)[:, 0]
        return ops.stack([q1, 2.0 * q1 + 5.0], axis=0)


def _expected_policy_loss(m, log_std):
    """E_eps[alpha log pi(a) - f(a)], a = low + (tanh(m + sigma eps) + 1) scale, by quadrature,
    with log pi = log N(u; m, sigma) - log(1 - tanh^2 u) - log scale written out here."""
    sigma, scale = math.exp(log_std), (SAC_HIGH - SAC_LOW) / 2.0
    z = GH_NODES
    u = m + sigma * z
    a = SAC_LOW + (np.tanh(u) + 1.0) * scale
    log_det = 2.0 * (math.log(2.0) - u - np.logaddexp(0.0, -2.0 * u))   # log(1 - tanh^2 u)
    log_pi = -0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi) - log_det - math.log(scale)
    return float(np.sum(GH_WEIGHTS * (SAC_ALPHA * log_pi - _f(a))))


def _exact_policy_gradient():
    h = 1e-5        # central differences of the quadrature: errors ~1e-11
    f = _expected_policy_loss
    return np.array([(f(SAC_M0 + h, SAC_LOG_STD0) - f(SAC_M0 - h, SAC_LOG_STD0)) / (2 * h),
                     (f(SAC_M0, SAC_LOG_STD0 + h) - f(SAC_M0, SAC_LOG_STD0 - h)) / (2 * h)])


def sac_quadrature_check(name, rng, n=20_000, policy_loss=None):
    """The reparameterised-gradient check of SAC or SAC v1 (module docstring); a Result.

    ``policy_loss(agent, batch, eps)`` replaces the algorithm's policy loss
    (a deliberately wrong version, for the tests)."""
    agent = make_agent(name, hidden=(), obs_dim=1, low=[SAC_LOW], high=[SAC_HIGH])
    if name == "sac_v1":
        agent.config.alpha = SAC_ALPHA
    agent.actor = _PerStatePolicy(n)
    agent.critic = _KnownCritics()
    batch = ReplayBatch(np.zeros((n, 1)), np.zeros((n, 1)), np.zeros(n), np.zeros((n, 1)),
                        np.zeros(n, bool), np.arange(n))
    eps = rng.standard_normal((n, 1))
    if policy_loss is not None:
        loss = policy_loss(agent, batch, eps)
    elif name == "sac":
        loss = agent.actor_loss(batch.obs, SAC_ALPHA, eps)[0]
    else:
        loss = agent.losses(batch, eps)[2]
    (loss * float(n)).backward()                       # mean -> sum: per-state gradients
    per_state = np.stack([agent.actor.mean.grad[:, 0], agent.actor.log_std.grad[:, 0]], axis=1)
    test = z_test_bonferroni(per_state, _exact_policy_gradient())
    return exact_result(test, f"the Gauss-Hermite exact gradient in (mean, log_std) (box "
                              f"[-2, 2], alpha {SAC_ALPHA}, one state per sample)")


@audit_check("sac", "policy gradient (reparameterised)", "exact")
def _sac_exact(full, rng):
    return sac_quadrature_check("sac", rng, n=200_000 if full else 20_000)


@audit_check("sac_v1", "policy gradient (reparameterised)", "exact")
def _v1_exact(full, rng):
    return sac_quadrature_check("sac_v1", rng, n=200_000 if full else 20_000)
