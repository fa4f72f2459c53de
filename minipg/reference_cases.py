r"""The reference cases of ``minipg reference``: one per estimator or target.

Each case draws small networks and a batch from its own fixed seed, runs the
minipg estimators on them, and records (see ``verification/reference/SCHEMA.md``):

* ``input``     -- batch arrays (observations, actions, rewards, flags, noise, ...);
* ``parameter`` -- network weights, one array per layer tensor, with the layer
  layout in the manifest's ``networks`` (``W`` of shape ``(n_in, n_out)``,
  ``b`` of shape ``(n_out,)``, ``h <- activation(h @ W + b)``);
* ``output``    -- losses, objectives, targets and intermediates (log-probs,
  ratios, advantages, TD errors, ...);
* ``gradient``  -- ``grad.<of>.<wrt>``: the derivative of the scalar output
  ``<of>`` with respect to the parameter or input ``<wrt>``, with every
  held-constant quantity (targets, advantages, old log-probs, importance
  weights, sampled noise) held constant exactly as the estimator's docstring
  says.

Document: L. Weng, "Policy Gradient Algorithms" (2018); each case names its
section and the paper its formula comes from.  Nothing here imports torch;
the independent PyTorch implementation is ``verification/crosscheck_torch.py``.
"""

from __future__ import annotations

import numpy as np

from .autodiff import Tensor, ops
from .autodiff.functional import backward_cotangents
from .distributions import Categorical, DiagGaussian, TanhGaussian
from .estimators import a2c, actor_critic, ddpg, dpg, off_policy, ppo, reinforce, sac, td3
from .kernels import discounted_returns, gae, n_step_returns
from .nn import MLP
from .reference import ATOL, INPUT_ATOL, INPUT_RTOL, RTOL, manifest_header

__all__ = ["CASES", "build"]

DOCUMENT = 'L. Weng, "Policy Gradient Algorithms" (2018)'

FORWARD = ("h_0 = input, a batch of row vectors of shape (..., n_in); for each layer i: "
           "h_{i+1} = activation_i(h_i @ W_i + b_i) with W_i of shape (n_in, n_out) and b_i of "
           "shape (n_out,); the network's output is the last h")

CASES = {}


def _case(name, *, seed, section, title, paper, estimators, formula):
    """Register ``fn(c)`` as the case ``name`` (``c`` a :class:`_Case`)."""
    def register(fn):
        CASES[name] = (fn, dict(seed=seed, section=section, title=title, paper=paper,
                                estimators=list(estimators), formula=list(formula)))
        return fn
    return register


def _data(x):
    return np.array(x.data if isinstance(x, Tensor) else x, copy=True)


class _Case:
    """Collects one case's arrays, their manifest entries, networks and hyperparameters."""

    def __init__(self, name, spec):
        self.name = name
        self.spec = spec
        self.rng = np.random.default_rng(spec["seed"])
        self.arrays = {}
        self.entries = {}
        self.hyperparameters = {}
        self.networks = {}
        self.notes = []
        self.leaves = {}      # parameter name -> Tensor leaf

    def _add(self, name, value, role, description, rtol, atol, **extra):
        if name in self.arrays:
            raise ValueError(f"reference case {self.name}: array {name!r} recorded twice")
        a = _data(value)
        if a.dtype.kind == "f":
            a = a.astype(np.float64)
        elif a.dtype.kind in "iu":
            a = a.astype(np.int64)
        self.arrays[name] = a
        entry = dict(role=role, description=description, rtol=rtol, atol=atol, **extra)
        if role in ("output", "gradient") and a.ndim == 0 and a.dtype.kind == "f":
            entry["value"] = float(a)
        self.entries[name] = entry
        return a

    def input(self, name, value, description):
        return self._add(name, value, "input", description, INPUT_RTOL, INPUT_ATOL)

    def parameter(self, name, value, description):
        a = self._add(name, value, "parameter", description, INPUT_RTOL, INPUT_ATOL)
        leaf = Tensor(a.copy(), requires_grad=True)
        self.leaves[name] = leaf
        return leaf

    def output(self, name, value, description, rtol=RTOL, atol=ATOL):
        self._add(name, value, "output", description, rtol, atol)
        return value

    def hp(self, **values):
        self.hyperparameters.update(values)

    def gradient(self, of, loss, wrt, description="", rtol=RTOL, atol=ATOL):
        """Record d ``of`` / d x for each x in ``wrt`` (names of parameters, or name -> leaf)."""
        if of not in self.arrays:
            raise ValueError(f"reference case {self.name}: record the output {of!r} first")
        if not isinstance(wrt, dict):
            wrt = {n: self.leaves[n] for n in wrt}
        grads = backward_cotangents(loss, np.ones(loss.shape), list(wrt.values()))
        for (name, _), g in zip(wrt.items(), grads):
            text = f"d {of} / d {name}" + (f"; {description}" if description else "")
            self._add(f"grad.{of}.{name}", g, "gradient", text, rtol, atol, of=of, wrt=name)

    def mlp(self, name, sizes, activation, output_activation, input_desc, output_desc,
            gain=1.0, bias=0.3):
        """A minipg MLP with weights drawn here: W ~ N(0, gain^2 / n_in), b ~ U(-bias, bias)."""
        acts = [activation] * (len(sizes) - 2) + [output_activation]
        net = MLP(sizes, activation=activation, output_activation=output_activation,
                  init="fan_in_uniform", rng=0)
        state, layers = {}, []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            W = self.rng.standard_normal((n_in, n_out)) * gain / np.sqrt(n_in)
            b = self.rng.uniform(-bias, bias, n_out)
            w_name, b_name = f"{name}.layer{i}.W", f"{name}.layer{i}.b"
            self._add(w_name, W, "parameter", f"{name} layer {i} weight, shape (n_in, n_out) = "
                      f"({n_in}, {n_out})", INPUT_RTOL, INPUT_ATOL)
            self._add(b_name, b, "parameter", f"{name} layer {i} bias, shape (n_out,) = "
                      f"({n_out},)", INPUT_RTOL, INPUT_ATOL)
            state[f"layer{i}.weight"], state[f"layer{i}.bias"] = W, b
            layers.append({"W": w_name, "b": b_name, "activation": acts[i] or "identity"})
        net.load_state_dict(state)
        named = dict(net.named_parameters())
        for i in range(len(sizes) - 1):
            self.leaves[f"{name}.layer{i}.W"] = named[f"layer{i}.weight"]
            self.leaves[f"{name}.layer{i}.b"] = named[f"layer{i}.bias"]
        self.networks[name] = {"sizes": list(sizes), "layers": layers, "input": input_desc,
                               "output": output_desc, "forward": FORWARD}
        return net

    def params(self, net_name):
        """The parameter names of a network, in its flat order (layer by layer, W then b)."""
        return [n for layer in self.networks[net_name]["layers"] for n in (layer["W"], layer["b"])]

    def manifest(self):
        s = self.spec
        return manifest_header(
            self.name, s["section"], title=s["title"], document=DOCUMENT, paper=s["paper"],
            estimators=s["estimators"], formula=s["formula"], seed=s["seed"],
            hyperparameters=self.hyperparameters, networks=self.networks, notes=self.notes,
            arrays=self.entries)


def build(name):
    """Run case ``name``; returns ``(manifest, arrays)``."""
    fn, spec = CASES[name]
    c = _Case(name, spec)
    fn(c)
    return c.manifest(), c.arrays


# ------------------------------------------------------------------ helpers

def _episodes_flags(T, ends):
    flags = np.zeros(T, dtype=bool)
    flags[list(ends)] = True
    return flags


def _ratio_targets(rng, n, clip_eps, margin=0.04):
    """Ratios in three regions (below, inside, above the clip range), each >= margin from a kink."""
    lo, hi = 1.0 - clip_eps, 1.0 + clip_eps
    regions = [(0.55, lo - margin), (lo + margin, hi - margin), (hi + margin, 1.5)]
    r = np.array([rng.uniform(*regions[i % 3]) for i in range(n)])
    signs = np.array([1.0 if (i % 6) < 3 else -1.0 for i in range(n)])
    perm = rng.permutation(n)
    return r[perm], signs[perm]


def _value_offsets(rng, n, clip_eps_value, margin=0.04):
    """V - V_old, half inside the value clip range and half outside, each >= margin from it."""
    inside = rng.uniform(0.0, clip_eps_value - margin, n)
    outside = rng.uniform(clip_eps_value + margin, 2.5 * clip_eps_value, n)
    mag = np.where(np.arange(n) % 2 == 0, inside, outside)
    return rng.permutation(mag * np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0))


def _q(net, obs, action):
    """Q(s, a) from a critic on concat(s, a); shape (N,)."""
    return net(ops.concatenate([obs, action], axis=-1))[..., 0]


def _tanh_gaussian(net, obs, d, low, high):
    out = net(obs)
    mean, log_std = out[..., :d], out[..., d:]
    ls = log_std.data
    if not (np.all(ls > -19.0) and np.all(ls < 1.9)):
        raise RuntimeError("reference case: policy log-std too close to the clamp (-20, 2)")
    return TanhGaussian(mean, log_std, low, high)


SAC_POLICY_OUT = ("concat(mean, log_std) of the pre-tanh Gaussian, each of shape (N, d): "
                  "mean = out[:, :d], log_std = out[:, d:] (clamped to [-20, 2], never active "
                  "here); u = mean + exp(log_std) * eps; "
                  "a = low + (tanh(u) + 1) * (high - low) / 2")
SAC_LOG_PROB = ("log pi(a|s) = sum_i [-eps_i^2 / 2 - log_std_i - log(2 pi) / 2 "
                "- log(1 - tanh(u_i)^2) - log((high_i - low_i) / 2)]")


# ------------------------------------------------------------------ REINFORCE

@_case("reinforce", seed=1001, section="REINFORCE",
       title="REINFORCE with Monte-Carlo returns, the gamma^t-free variant, linear-softmax policy",
       paper="R. J. Williams 1992; Sutton & Barto 2018, sec. 13.3",
       estimators=["minipg.kernels.discounted_returns",
                   "minipg.estimators.reinforce.reinforce_objective"],
       formula=["G_t = r_t + gamma * G_{t+1}, cut at episode ends (G = r at a terminated step)",
                "log pi(a|s) = log_softmax(s @ W + b)[a]",
                "objective = (1 / n_episodes) * sum_t G_t * log pi(a_t|s_t)   (maximised)",
                "grad = (1 / n_episodes) * sum_t G_t * grad log pi(a_t|s_t)"])
def _reinforce(c):
    T, k, n = 10, 3, 3
    gamma, n_episodes = 0.9, 2
    c.hp(gamma=gamma, n_episodes=n_episodes)
    obs = c.input("obs", c.rng.standard_normal((T, k)), "state features s_t, two episodes laid "
                  "end to end (steps 0-5 and 6-9)")
    actions = c.input("actions", c.rng.integers(0, n, T), "actions a_t in {0, 1, 2}")
    rewards = c.input("rewards", c.rng.standard_normal(T), "rewards r_t")
    terminated = c.input("terminated", _episodes_flags(T, [5, 9]), "True where s_{t+1} is "
                         "terminal (episode ends)")
    truncated = c.input("truncated", np.zeros(T, dtype=bool), "no time-limit truncations")
    policy = c.mlp("policy", [k, n], None, None, "obs (T, 3)",
                   "logits of a linear-softmax policy, shape (T, 3)")
    returns = c.output("returns", discounted_returns(rewards, terminated, truncated, gamma),
                       "Monte-Carlo returns G_t")
    log_prob = Categorical(policy(obs)).log_prob(actions)
    c.output("log_prob", log_prob, "log pi(a_t|s_t)")
    objective = reinforce.reinforce_objective(log_prob, returns, n_episodes=n_episodes)
    c.output("objective", objective, "REINFORCE surrogate (maximised)")
    c.gradient("objective", objective, c.params("policy"), "the REINFORCE estimate")


@_case("reinforce_baseline", seed=1002, section="REINFORCE",
       title="REINFORCE with gamma^t and a learned state-value baseline, MLP policy, (T, N) layout",
       paper="Sutton & Barto 2018, sec. 13.4 (REINFORCE with baseline)",
       estimators=["minipg.kernels.discounted_returns",
                   "minipg.estimators.reinforce.episode_time_index",
                   "minipg.estimators.reinforce.episode_discounts",
                   "minipg.estimators.reinforce.reinforce_objective",
                   "minipg.estimators.reinforce.value_baseline_loss"],
       formula=["G_t = r_t + gamma * X_t; X_t = 0 if terminated_t, V(s'_t) = next_values_t if "
                "truncated_t or t = T-1, else G_{t+1}",
                "t_index: the step within its episode (0 after every episode end)",
                "discounts = gamma ** t_index",
                "objective = (1 / n_episodes) * sum_{t,env} gamma^t (G_t - V(s_t)) log pi(a_t|s_t)"
                "  with V(s_t) held constant (maximised)",
                "value_loss = mean_{t,env} (V_w(s_t) - G_t)^2  (minimised, no factor 1/2)"])
def _reinforce_baseline(c):
    T, E, k, n = 8, 2, 3, 3
    gamma, n_episodes = 0.95, 5
    c.hp(gamma=gamma, n_episodes=n_episodes)
    obs = c.input("obs", c.rng.standard_normal((T, E, k)), "states s_t, shape (T, envs, 3)")
    actions = c.input("actions", c.rng.integers(0, n, (T, E)), "actions a_t in {0, 1, 2}")
    rewards = c.input("rewards", c.rng.standard_normal((T, E)), "rewards r_t")
    terminated = np.zeros((T, E), dtype=bool)
    terminated[[2, 6], 0] = True
    terminated[4, 1] = True
    truncated = np.zeros((T, E), dtype=bool)
    truncated[1, 1] = True
    terminated = c.input("terminated", terminated, "True where s'_t is terminal")
    truncated = c.input("truncated", truncated, "True where the episode was cut at t (time "
                        "limit): the return bootstraps from next_values")
    next_values = c.input("next_values", c.rng.standard_normal((T, E)),
                          "V(s'_t) of the true next state; read only at truncations and at "
                          "the last row")
    policy = c.mlp("policy", [k, 8, 8, n], "tanh", None, "obs (T, E, 3)", "logits (T, E, 3)")
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs (T, E, 3)",
                  "V_w(s), shape (T, E, 1); the baseline is out[..., 0]")
    returns = c.output("returns", discounted_returns(rewards, terminated, truncated, gamma,
                                                     next_values), "returns G_t")
    t_index = c.output("t_index", reinforce.episode_time_index(terminated, truncated),
                       "step within the episode (int64)")
    discounts = c.output("discounts", reinforce.episode_discounts(t_index, gamma), "gamma^t")
    values = value(obs)[..., 0]
    c.output("values", values, "V_w(s_t), the baseline")
    log_prob = Categorical(policy(obs)).log_prob(actions)
    c.output("log_prob", log_prob, "log pi(a_t|s_t)")
    objective = reinforce.reinforce_objective(log_prob, returns, discounts=discounts,
                                              baseline=values.data, n_episodes=n_episodes)
    c.output("objective", objective, "REINFORCE-with-baseline surrogate (maximised)")
    c.gradient("objective", objective, c.params("policy"), "the baseline is held constant")
    loss = reinforce.value_baseline_loss(values, returns)
    c.output("value_loss", loss, "baseline loss mean (V - G)^2 (minimised)")
    c.gradient("value_loss", loss, c.params("value"))


# ------------------------------------------------------------------ actor-critic

@_case("actor_critic", seed=1003, section="Actor-Critic",
       title="Action-value actor-critic: TD target, TD error, actor objectives, critic losses",
       paper="Sutton & Barto 2018, sec. 13.5 (one-step actor-critic)",
       estimators=["minipg.estimators.actor_critic.td_target",
                   "minipg.estimators.actor_critic.td_error",
                   "minipg.estimators.actor_critic.actor_objective",
                   "minipg.estimators.actor_critic.critic_loss",
                   "minipg.estimators.actor_critic.critic_semi_gradient_loss",
                   "minipg.estimators.reinforce.episode_discounts"],
       formula=["Q_w(s, a) = Q_net(s)[a]; q_next = Q_w(s', a') with a' ~ pi(.|s') given, held "
                "constant",
                "td_target y = r + gamma * (1 - terminated) * q_next",
                "td_error delta = y - Q_w(s, a)",
                "actor_objective = mean_t Q_w(s_t, a_t) log pi(a_t|s_t), Q held constant "
                "(Weng step 2.3; maximised)",
                "actor_objective_td = mean_t gamma^t delta_t log pi(a_t|s_t), delta held constant "
                "(Sutton & Barto's actor with I = gamma^t; maximised)",
                "critic_loss = mean_t (y_t - Q_w(s_t, a_t))^2 / 2 (minimised)",
                "critic_semi_gradient_loss = -mean_t delta_t Q_w(s_t, a_t), delta held constant "
                "(same gradient as critic_loss)"])
def _actor_critic(c):
    N, k, n = 6, 3, 3
    gamma = 0.9
    c.hp(gamma=gamma)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    actions = c.input("actions", c.rng.integers(0, n, N), "actions a")
    rewards = c.input("rewards", c.rng.standard_normal(N), "rewards r")
    next_obs = c.input("next_obs", c.rng.standard_normal((N, k)), "next states s'")
    next_actions = c.input("next_actions", c.rng.integers(0, n, N), "next actions a' ~ pi(.|s')")
    terminated = c.input("terminated", _episodes_flags(N, [3]), "True where s' is terminal")
    t_index = c.input("t_index", np.array([0, 1, 2, 3, 0, 1]), "step within the episode")
    policy = c.mlp("policy", [k, 8, 8, n], "tanh", None, "obs", "logits")
    critic = c.mlp("critic", [k, 8, 8, n], "tanh", None, "obs",
                   "Q_w(s, .) for every action; Q_w(s, a) = out[a]")
    q = ops.gather(critic(obs), actions[:, None], axis=-1)[:, 0]
    q_next = ops.gather(critic(next_obs), next_actions[:, None], axis=-1)[:, 0].data
    c.output("q", q, "Q_w(s, a)")
    c.output("q_next", q_next, "Q_w(s', a')")
    y = c.output("td_target", actor_critic.td_target(rewards, q_next, gamma, terminated), "y")
    delta = actor_critic.td_error(rewards, q_next, q, gamma, terminated)
    c.output("td_error", delta, "delta = y - Q_w(s, a)")
    log_prob = Categorical(policy(obs)).log_prob(actions)
    c.output("log_prob", log_prob, "log pi(a|s)")
    discount_I = c.output("discount_I", reinforce.episode_discounts(t_index, gamma),
                          "I = gamma^t")
    objective = actor_critic.actor_objective(log_prob, q.data)
    c.output("actor_objective", objective, "mean Q log pi (maximised)")
    c.gradient("actor_objective", objective, c.params("policy"))
    objective_td = actor_critic.actor_objective(log_prob, delta.data, discount_I=discount_I)
    c.output("actor_objective_td", objective_td, "mean gamma^t delta log pi (maximised)")
    c.gradient("actor_objective_td", objective_td, c.params("policy"))
    loss = actor_critic.critic_loss(q, y)
    c.output("critic_loss", loss, "mean (y - Q)^2 / 2 (minimised)")
    c.gradient("critic_loss", loss, c.params("critic"))
    semi = actor_critic.critic_semi_gradient_loss(q, delta.data)
    c.output("critic_semi_gradient_loss", semi, "-mean delta Q (minimised)")
    c.gradient("critic_semi_gradient_loss", semi, c.params("critic"))


# ------------------------------------------------------------------ off-policy

@_case("off_policy_actor", seed=1004, section="Off-Policy Policy Gradient",
       title="Importance weights and the off-policy actor objective (plain and truncated rho)",
       paper="Degris, White & Sutton 2012 (Off-PAC), sec. 2",
       estimators=["minipg.estimators.off_policy.importance_weights",
                   "minipg.estimators.off_policy.off_policy_actor_objective"],
       formula=["log pi(a|s) = log_softmax(s @ W + b)[a]",
                "rho = pi(a|s) / beta(a|s) = exp(log pi(a|s) - log beta(a|s)), held constant",
                "objective = mean_t rho_t Q_t log pi(a_t|s_t)   (maximised)",
                "rho_clipped = min(rho, clip); objective_clipped likewise"])
def _off_policy_actor(c):
    N, k, n = 8, 3, 4
    clip = 1.0
    c.hp(clip=clip)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s ~ d^beta")
    beta_logits = c.rng.standard_normal((N, n))
    beta = np.exp(beta_logits - beta_logits.max(-1, keepdims=True))
    beta /= beta.sum(-1, keepdims=True)
    actions = c.input("actions", [c.rng.choice(n, p=p) for p in beta], "actions a ~ beta(.|s)")
    behaviour_prob = c.input("behaviour_prob", beta[np.arange(N), actions],
                             "beta(a|s) recorded when acting")
    q_values = c.input("q_values", c.rng.standard_normal(N), "the critic's Q(s, a), held constant")
    policy = c.mlp("policy", [k, n], None, None, "obs", "logits of the target policy pi")
    log_prob = Categorical(policy(obs)).log_prob(actions)
    c.output("log_prob", log_prob, "log pi(a|s)")
    rho = off_policy.importance_weights(log_prob=log_prob.data, behaviour_prob=behaviour_prob)
    if np.min(np.abs(rho - clip)) < 1e-2:
        raise RuntimeError("reference case off_policy_actor: a weight is at the clip")
    c.output("rho", rho, "importance weights pi / beta")
    objective = off_policy.off_policy_actor_objective(log_prob, behaviour_prob, q_values)
    c.output("objective", objective, "mean rho Q log pi (maximised)")
    c.gradient("objective", objective, c.params("policy"), "rho held constant")
    c.output("rho_clipped", off_policy.importance_weights(
        log_prob=log_prob.data, behaviour_prob=behaviour_prob, clip=clip), "min(rho, clip)")
    clipped = off_policy.off_policy_actor_objective(log_prob, behaviour_prob, q_values, clip=clip)
    c.output("objective_clipped", clipped, "mean min(rho, clip) Q log pi (maximised)")
    c.gradient("objective_clipped", clipped, c.params("policy"), "rho held constant")


@_case("offpac_step", seed=1005, section="Off-Policy Policy Gradient",
       title="One Off-PAC step: GTD(lambda) critic and the actor with eligibility traces",
       paper="Degris, White & Sutton 2012 (Off-PAC), Algorithm 1",
       estimators=["minipg.estimators.actor_critic.td_error",
                   "minipg.estimators.off_policy.importance_weights",
                   "minipg.estimators.off_policy.gtd_lambda_update",
                   "minipg.estimators.off_policy.offpac_actor_update"],
       formula=["B independent learners (leading axis); features x = x(s), x_next = x(s')",
                "delta = r + gamma (1 - terminated) v.x_next - v.x",
                "rho = pi_u(a|s) / b(a|s), pi_u = softmax(x @ W + b), u = concat(W.ravel(), b)",
                "e_v' = rho (x + gamma lam e_v)",
                "v' = v + alpha_v [delta e_v' - gamma (1 - terminated) (1 - lam) (w.e_v') x_next]",
                "w' = w + alpha_w [delta e_v' - (w.x) x]",
                "psi = grad_u log pi_u(a|s)",
                "e_u' = rho (psi + gamma lam e_u);  u' = u + alpha_u delta e_u'"])
def _offpac_step(c):
    B, d, n = 4, 5, 3
    gamma, lam, alpha_v, alpha_w, alpha_u = 0.9, 0.7, 0.1, 0.05, 0.2
    c.hp(gamma=gamma, lam=lam, alpha_v=alpha_v, alpha_w=alpha_w, alpha_u=alpha_u)
    x = c.input("x", c.rng.standard_normal((B, d)), "features x(s_t)")
    x_next = c.input("x_next", c.rng.standard_normal((B, d)), "features x(s_{t+1})")
    reward = c.input("reward", c.rng.standard_normal(B), "r_{t+1}")
    terminated = c.input("terminated", _episodes_flags(B, [2]), "True where s_{t+1} is terminal")
    v = c.input("v", c.rng.standard_normal((B, d)) * 0.5, "value weights")
    w = c.input("w", c.rng.standard_normal((B, d)) * 0.5, "GTD second weights")
    e = c.input("e_v", c.rng.standard_normal((B, d)) * 0.5, "critic trace")
    actions = c.input("actions", c.rng.integers(0, n, B), "actions taken by the behaviour")
    behaviour_prob = c.input("behaviour_prob", c.rng.uniform(0.2, 0.6, B), "b(a|s)")
    e_u = c.input("e_u", c.rng.standard_normal((B, d * n + n)) * 0.5, "actor trace")
    policy = c.mlp("policy", [d, n], None, None, "x", "logits; u = concat(W.ravel(), b), "
                   "the order of psi, e_u and u")
    log_prob = Categorical(policy(x)).log_prob(actions)
    c.output("log_prob", log_prob, "log pi_u(a|s)")
    W, b = c.leaves["policy.layer0.W"], c.leaves["policy.layer0.b"]
    psi = []
    for i in range(B):
        onehot = np.zeros(B)
        onehot[i] = 1.0
        gW, gb = backward_cotangents(log_prob, onehot, [W, b])
        psi.append(np.concatenate([gW.ravel(), gb]))
    psi = c.output("psi", np.array(psi), "grad_u log pi_u(a|s), one row per learner")
    u = np.tile(np.concatenate([W.data.ravel(), b.data]), (B, 1))
    rho = c.output("rho", off_policy.importance_weights(log_prob=log_prob.data,
                                                        behaviour_prob=behaviour_prob), "rho")
    delta = c.output("td_error", actor_critic.td_error(
        reward, np.sum(v * x_next, -1), np.sum(v * x, -1), gamma, terminated), "delta")
    v_new, w_new, e_new = off_policy.gtd_lambda_update(
        v, w, e, x, x_next, reward, gamma, lam, rho, alpha_v, alpha_w, terminated)
    c.output("v_new", v_new, "v after the step")
    c.output("w_new", w_new, "w after the step")
    c.output("e_v_new", e_new, "e_v after the step")
    u_new, e_u_new = off_policy.offpac_actor_update(u, e_u, psi, delta, gamma, lam, rho, alpha_u)
    c.output("u_new", u_new, "policy parameters after the step (u = concat(W.ravel(), b))")
    c.output("e_u_new", e_u_new, "e_u after the step")


# ------------------------------------------------------------------ DPG

@_case("dpg", seed=1006, section="DPG",
       title="Deterministic policy gradient: actor objective, its Jacobian form, Sarsa and "
             "Q-learning TD errors",
       paper="Silver et al. 2014, Theorem 1 (eq. 9), eqs. 11 and 16",
       estimators=["minipg.estimators.dpg.dpg_actor_objective",
                   "minipg.estimators.dpg.dpg_actor_gradient",
                   "minipg.estimators.dpg.sarsa_td_error",
                   "minipg.estimators.dpg.q_learning_td_error"],
       formula=["mu = actor(s); Q(s, a) = critic(concat(s, a))[0]",
                "objective = mean_i Q(s_i, mu(s_i)), critic fixed (maximised)",
                "grad_theta objective = (1/N) sum_i J_i^T grad_a Q(s_i, a)|_{a = mu(s_i)} "
                "with J_i[k, j] = d mu_k(s_i) / d theta_j",
                "theta = concat of the actor's tensors in order layer0.W (row-major), layer0.b, "
                "layer1.W, ...",
                "sarsa_td_error = r + gamma (1 - terminated) Q(s', a') - Q(s, a)",
                "q_learning_td_error = r + gamma (1 - terminated) Q(s', mu(s')) - Q(s, a)"])
def _dpg(c):
    N, k, m = 5, 3, 2
    gamma = 0.9
    c.hp(gamma=gamma)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    actions = c.input("actions", c.rng.uniform(-1, 1, (N, m)), "actions taken a")
    rewards = c.input("rewards", c.rng.standard_normal(N), "rewards r")
    next_obs = c.input("next_obs", c.rng.standard_normal((N, k)), "next states s'")
    next_actions = c.input("next_actions", c.rng.uniform(-1, 1, (N, m)), "next actions taken a'")
    terminated = c.input("terminated", _episodes_flags(N, [1]), "True where s' is terminal")
    actor = c.mlp("actor", [k, 8, 8, m], "tanh", "tanh", "obs", "mu(s), shape (N, 2)")
    critic = c.mlp("critic", [k + m, 8, 8, 1], "tanh", None, "concat(obs, action), shape (N, 5)",
                   "Q(s, a) = out[:, 0]")
    mu = actor(obs)
    c.output("mu", mu, "mu(s)")
    q_of_mu = _q(critic, obs, mu)
    c.output("q_of_mu", q_of_mu, "Q(s, mu(s))")
    objective = dpg.dpg_actor_objective(q_of_mu)
    c.output("objective", objective, "mean Q(s, mu(s)) (maximised)")
    c.gradient("objective", objective, c.params("actor"), "through mu, critic fixed")
    a_leaf = Tensor(mu.data.copy(), requires_grad=True)
    objective_at_a = dpg.dpg_actor_objective(_q(critic, obs, a_leaf))
    c.gradient("objective", objective_at_a, {"mu": a_leaf},
               "the objective as a function of the actions, at a = mu(s): grad_a Q / N")
    grad_a_q = backward_cotangents(ops.sum(_q(critic, obs, a_leaf)), np.ones(()), [a_leaf])[0]
    c.output("grad_a_q", grad_a_q, "grad_a Q(s_i, a) at a = mu(s_i), one row per sample")
    leaves = [c.leaves[p] for p in c.params("actor")]
    jac = np.zeros((N, m, sum(leaf.data.size for leaf in leaves)))
    for i in range(N):
        mu_i = actor(obs[i:i + 1])
        for j in range(m):
            cot = np.zeros((1, m))
            cot[0, j] = 1.0
            jac[i, j] = np.concatenate([g.ravel() for g in backward_cotangents(mu_i, cot, leaves)])
    c.output("grad_theta_mu", jac, "J[i, k, j] = d mu_k(s_i) / d theta_j (theta order: see "
             "formula)")
    c.output("dpg_actor_gradient", dpg.dpg_actor_gradient(grad_a_q, jac),
             "(1/N) sum_i J_i^T grad_a Q, flat theta order; equals the objective's gradient")
    q = _q(critic, obs, actions)
    c.output("q", q, "Q(s, a) at the actions taken")
    q_next = _q(critic, next_obs, next_actions).data
    q_next_mu = _q(critic, next_obs, actor(next_obs)).data
    c.output("q_next", q_next, "Q(s', a')")
    c.output("q_next_at_mu", q_next_mu, "Q(s', mu(s'))")
    c.output("sarsa_td_error", dpg.sarsa_td_error(rewards, q_next, q.data, gamma, terminated),
             "on-policy TD error (eq. 11)")
    c.output("q_learning_td_error", dpg.q_learning_td_error(rewards, q_next_mu, q.data, gamma,
                                                            terminated),
             "off-policy TD error (eq. 16)")


@_case("copdac_q", seed=1007, section="DPG",
       title="COPDAC-Q: compatible features, compatible critic and one update (eqs. 19-22)",
       paper="Silver et al. 2014, sec. 4.3, eqs. 19-22",
       estimators=["minipg.estimators.dpg.compatible_features",
                   "minipg.estimators.dpg.compatible_q",
                   "minipg.estimators.dpg.copdac_q_update"],
       formula=["B independent learners; linear policy mu_theta(s) = x(s) @ theta.reshape(k, m)",
                "grad_theta_mu[b, i, j] = d mu_i / d theta_j (given)",
                "phi = grad_theta_mu^T (a - mu)   (compatible features)",
                "q = phi.w + v.x(s)",
                "delta = r + gamma (1 - terminated) v.x(s') - q   (eq. 19)",
                "theta' = theta + alpha_theta J^T (J w)   (eq. 20)",
                "w' = w + alpha_w delta phi   (eq. 21);  v' = v + alpha_v delta x(s)   (eq. 22)",
                "grad.q_sum.a = d sum_b q_b / d a = J w (Theorem 3, condition 1)"])
def _copdac_q(c):
    B, k, m = 3, 4, 2
    n = k * m
    gamma, a_t, a_w, a_v = 0.9, 0.1, 0.2, 0.3
    c.hp(gamma=gamma, alpha_theta=a_t, alpha_w=a_w, alpha_v=a_v)
    x = c.input("x", c.rng.standard_normal((B, k)), "x(s_t), used by the policy and by V")
    x_next = c.input("x_next", c.rng.standard_normal((B, k)), "x(s_{t+1})")
    theta = c.input("theta", c.rng.standard_normal((B, n)) * 0.5, "policy parameters")
    w = c.input("w", c.rng.standard_normal((B, n)) * 0.5, "advantage weights")
    v = c.input("v", c.rng.standard_normal((B, k)) * 0.5, "value weights")
    mu = c.input("mu", np.einsum("bj,bji->bi", x, theta.reshape(B, k, m)),
                 "mu_theta(s_t) = x @ theta.reshape(k, m)")
    jac = np.zeros((B, m, n))
    for i in range(m):
        jac[:, i, i::m] = x                                       # d mu_i / d theta[j*m + i]
    jac = c.input("grad_theta_mu", jac, "d mu_i / d theta_j")
    a = c.input("a", mu + 0.3 * c.rng.standard_normal((B, m)), "actions taken (behaviour)")
    reward = c.input("reward", c.rng.standard_normal(B), "r_t")
    terminated = c.input("terminated", _episodes_flags(B, [1]), "True where s_{t+1} is terminal")
    phi = c.output("phi", dpg.compatible_features(a, mu, jac), "compatible features")
    c.output("q", dpg.compatible_q(phi, w, np.sum(v * x, -1)), "Q^w(s_t, a_t)")
    theta_new, w_new, v_new, delta = dpg.copdac_q_update(
        theta, w, v, a, mu, jac, x, x_next, reward, gamma, terminated, a_t, a_w, a_v)
    c.output("td_error", delta, "delta (eq. 19)")
    c.output("theta_new", theta_new, "theta after eq. 20")
    c.output("w_new", w_new, "w after eq. 21")
    c.output("v_new", v_new, "v after eq. 22")
    a_leaf = Tensor(a.copy(), requires_grad=True)
    q_sum = ops.sum(dpg.compatible_q(dpg.compatible_features(a_leaf, mu, jac), w,
                                     np.sum(v * x, -1)))
    c.output("q_sum", q_sum, "sum_b Q^w(s_b, a_b)")
    c.gradient("q_sum", q_sum, {"a": a_leaf}, "equals J w per learner")


# ------------------------------------------------------------------ returns and advantages

def _rollout(c, T=10, N=3):
    c.input("rewards", c.rng.standard_normal((T, N)), "r_t, shape (T, envs)")
    term = np.zeros((T, N), dtype=bool)
    trunc = np.zeros((T, N), dtype=bool)
    term[[3, 8], 0] = True
    term[5, 1] = True
    trunc[6, 2] = True
    trunc[2, 1] = True
    c.input("terminated", term, "True where s'_t is terminal (no bootstrap)")
    c.input("truncated", trunc, "True where the episode was cut at t (bootstrap from "
            "next_values)")
    c.input("next_values", c.rng.standard_normal((T, N)), "V(s'_t) of the true next state")
    return [c.arrays[n] for n in ("rewards", "terminated", "truncated", "next_values")]


@_case("gae", seed=1008, section="Proof of Policy Gradient Theorem",
       title="Generalized advantage estimation GAE(gamma, lambda) over a (T, N) rollout (the "
             "advantage estimates PPO and A2C use)",
       paper="Schulman et al. 2016 (GAE), eq. 16",
       estimators=["minipg.kernels.gae"],
       formula=["delta_t = r_t + gamma (1 - terminated_t) V(s'_t) - V(s_t)",
                "A_t = delta_t + gamma lam (1 - done_t) A_{t+1}, A_T = 0, "
                "done = terminated or truncated"])
def _gae(c):
    gamma, lam = 0.99, 0.95
    c.hp(gamma=gamma, lam=lam)
    rewards, term, trunc, next_values = _rollout(c)
    values = c.input("values", c.rng.standard_normal(rewards.shape), "V(s_t)")
    c.output("advantages", gae(rewards, values, next_values, term, trunc, gamma, lam), "A_t")


@_case("n_step_returns", seed=1009, section="A3C",
       title="n-step bootstrapped returns over a (T, N) rollout",
       paper="Mnih et al. 2016 (A3C); Sutton & Barto 2018, sec. 7.1",
       estimators=["minipg.kernels.n_step_returns"],
       formula=["G_t = sum_{k<m} gamma^k r_{t+k} + [not terminated_{t+m-1}] gamma^m "
                "V(s'_{t+m-1}), m <= n stopping at the first episode end or the rollout end"])
def _n_step(c):
    gamma, n = 0.9, 3
    c.hp(gamma=gamma, n=n)
    rewards, term, trunc, next_values = _rollout(c)
    c.output("returns", n_step_returns(rewards, next_values, term, trunc, gamma, n), "G_t^(n)")


@_case("discounted_returns", seed=1010, section="REINFORCE",
       title="Discounted returns over a (T, N) rollout, with and without bootstrap values",
       paper="Sutton & Barto 2018, sec. 3.3",
       estimators=["minipg.kernels.discounted_returns"],
       formula=["G_t = r_t + gamma X_t; X_t = 0 if terminated_t; V(s'_t) if truncated_t or "
                "t = T-1; else G_{t+1}",
                "returns_no_bootstrap: the same with V = 0"])
def _discounted(c):
    gamma = 0.95
    c.hp(gamma=gamma)
    rewards, term, trunc, next_values = _rollout(c)
    c.output("returns", discounted_returns(rewards, term, trunc, gamma, next_values), "G_t")
    c.output("returns_no_bootstrap", discounted_returns(rewards, term, trunc, gamma),
             "G_t with next_values = 0")


# ------------------------------------------------------------------ A2C

@_case("a2c", seed=1011, section="A2C",
       title="A2C loss: policy gradient term, value loss and entropy bonus",
       paper="Mnih et al. 2016 (A3C), sec. 4",
       estimators=["minipg.estimators.a2c.policy_gradient_objective",
                   "minipg.estimators.a2c.value_loss", "minipg.estimators.a2c.entropy_bonus",
                   "minipg.estimators.a2c.a2c_loss"],
       formula=["advantages = returns - V(s), held constant",
                "policy_objective = mean(A log pi(a|s)); value_loss = mean((V(s) - R)^2); "
                "entropy_mean = mean(H(pi(.|s)))",
                "loss = -policy_objective + value_coef value_loss - entropy_coef entropy_mean"
                "   (minimised)",
                "H(pi(.|s)) = -sum_a pi(a|s) log pi(a|s)"])
def _a2c(c):
    N, k, n = 8, 3, 4
    value_coef, entropy_coef = 0.5, 0.01
    c.hp(value_coef=value_coef, entropy_coef=entropy_coef)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    actions = c.input("actions", c.rng.integers(0, n, N), "actions")
    returns = c.input("returns", c.rng.standard_normal(N), "value targets R (e.g. n-step returns)")
    policy = c.mlp("policy", [k, 8, 8, n], "tanh", None, "obs", "logits")
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs", "V(s) = out[:, 0]")
    dist = Categorical(policy(obs))
    log_prob, entropy = dist.log_prob(actions), dist.entropy()
    values = value(obs)[:, 0]
    c.output("log_prob", log_prob, "log pi(a|s)")
    c.output("entropy", entropy, "H(pi(.|s))")
    c.output("values", values, "V(s)")
    advantages = c.output("advantages", returns - values.data, "R - V(s), held constant")
    loss, _ = a2c.a2c_loss(log_prob, values, entropy, advantages, returns, value_coef,
                           entropy_coef)
    c.output("loss", loss, "the A2C loss (minimised)")
    c.output("policy_objective", a2c.policy_gradient_objective(log_prob, advantages),
             "mean(A log pi) (maximised)")
    c.output("value_loss", a2c.value_loss(values, returns), "mean (V - R)^2 (minimised)")
    c.output("entropy_mean", a2c.entropy_bonus(entropy), "mean H (maximised)")
    c.gradient("loss", loss, c.params("policy") + c.params("value"))


# ------------------------------------------------------------------ PPO

@_case("ppo_clip", seed=1012, section="PPO",
       title="PPO clipped surrogate J^CLIP with a diagonal-Gaussian policy",
       paper="Schulman et al. 2017, eq. 7",
       estimators=["minipg.estimators.ppo.clip_objective", "minipg.estimators.ppo.approx_kl",
                   "minipg.estimators.ppo.clip_fraction"],
       formula=["log pi(a|s) = sum_i [-((a_i - mean_i) / sigma_i)^2 / 2 - log_std_i "
                "- log(2 pi) / 2], mean = policy(s), sigma = exp(log_std)",
                "ratio = exp(log pi(a|s) - log_prob_old)",
                "clip_objective = mean min(ratio A, clip(ratio, 1 - eps, 1 + eps) A)  (maximised)",
                "approx_kl = mean((ratio - 1) - log ratio);  clip_fraction = mean(|ratio - 1| > "
                "eps)"])
def _ppo_clip(c):
    N, k, m = 12, 3, 2
    eps = 0.2
    c.hp(clip_eps=eps)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    actions = c.input("actions", c.rng.standard_normal((N, m)), "actions taken")
    policy = c.mlp("policy", [k, 8, 8, m], "tanh", None, "obs", "mean of the Gaussian")
    log_std = c.parameter("policy.log_std", np.array([-0.3, 0.2]),
                          "state-independent log sigma, shape (2,)")
    dist = DiagGaussian(policy(obs), log_std)
    log_prob = dist.log_prob(actions)
    r, signs = _ratio_targets(c.rng, N, eps)
    log_prob_old = c.input("log_prob_old", log_prob.data - np.log(r),
                           "log pi_old(a|s), chosen so that the ratios lie in all three regions, "
                           ">= 0.04 from the kinks 1 +- eps")
    advantages = c.input("advantages", signs * c.rng.uniform(0.2, 1.5, N), "A, held constant")
    c.output("log_prob", log_prob, "log pi(a|s)")
    c.output("ratio", ops.exp(log_prob - log_prob_old), "r = pi / pi_old")
    objective = ppo.clip_objective(log_prob, log_prob_old, advantages, eps)
    c.output("clip_objective", objective, "J^CLIP (maximised)")
    c.gradient("clip_objective", objective, c.params("policy") + ["policy.log_std"])
    c.output("approx_kl", ppo.approx_kl(log_prob.data, log_prob_old), "k3 estimate of KL")
    c.output("clip_fraction", ppo.clip_fraction(log_prob.data, log_prob_old, eps),
             "fraction with |r - 1| > eps")


@_case("ppo_value_clip", seed=1013, section="PPO",
       title="PPO value loss, plain and clipped (PPO2's pessimistic form)",
       paper="Schulman et al. 2017, eq. 9; Huang et al. 2022 (value function loss clipping)",
       estimators=["minipg.estimators.ppo.clipped_value_loss"],
       formula=["value_loss = mean (V - R)^2   (minimised, no factor 1/2)",
                "V_clip = V_old + clip(V - V_old, -eps_v, eps_v)",
                "value_loss_clipped = mean max((V - R)^2, (V_clip - R)^2)"])
def _ppo_value_clip(c):
    N, k = 10, 3
    eps_v = 0.2
    c.hp(clip_eps_value=eps_v)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs", "V(s) = out[:, 0]")
    values = value(obs)[:, 0]
    values_old = c.input("values_old", values.data - _value_offsets(c.rng, N, eps_v),
                         "V_old(s) at collection time; |V - V_old| is >= 0.04 from eps_v")
    returns = c.input("returns", values.data + c.rng.standard_normal(N) * 0.5, "R")
    c.output("values", values, "V(s)")
    plain = ppo.clipped_value_loss(values, None, returns)
    c.output("value_loss", plain, "mean (V - R)^2")
    c.gradient("value_loss", plain, c.params("value"))
    clipped = ppo.clipped_value_loss(values, values_old, returns, eps_v)
    c.output("value_loss_clipped", clipped, "mean max((V - R)^2, (V_clip - R)^2)")
    c.gradient("value_loss_clipped", clipped, c.params("value"))


@_case("ppo_objective", seed=1014, section="PPO",
       title="PPO's full objective J^CLIP' with value clipping, entropy and normalised advantages",
       paper="Schulman et al. 2017, eq. 9; Huang et al. 2022",
       estimators=["minipg.estimators.ppo.normalize_advantages",
                   "minipg.estimators.ppo.ppo_objective"],
       formula=["A_norm = (A - mean A) / (std A + 1e-8), std with ddof = 0",
                "ratio = exp(log pi(a|s) - log_prob_old)",
                "J^CLIP = mean min(ratio A_norm, clip(ratio, 1 - eps, 1 + eps) A_norm)",
                "L^VF = mean max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2)",
                "objective = J^CLIP - c1 L^VF + c2 mean H(pi(.|s))   (maximised)"])
def _ppo_objective(c):
    N, k, n = 12, 3, 3
    eps, eps_v, c1, c2 = 0.2, 0.2, 0.5, 0.01
    c.hp(clip_eps=eps, clip_eps_value=eps_v, c1=c1, c2=c2, advantage_eps=1e-8)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    actions = c.input("actions", c.rng.integers(0, n, N), "actions")
    policy = c.mlp("policy", [k, 8, 8, n], "tanh", None, "obs", "logits")
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs", "V(s) = out[:, 0]")
    dist = Categorical(policy(obs))
    log_prob, entropy = dist.log_prob(actions), dist.entropy()
    values = value(obs)[:, 0]
    r, signs = _ratio_targets(c.rng, N, eps)
    raw = signs * c.rng.uniform(0.3, 2.0, N)
    raw = c.input("advantages", raw, "A before normalisation")
    adv = c.output("advantages_normalized", ppo.normalize_advantages(raw), "A_norm")
    log_prob_old = c.input("log_prob_old", log_prob.data - np.log(r),
                           "log pi_old(a|s), ratios >= 0.04 from the kinks")
    values_old = c.input("values_old", values.data - _value_offsets(c.rng, N, eps_v),
                         "V_old(s); |V - V_old| >= 0.04 from eps_v")
    returns = c.input("returns", values.data + c.rng.standard_normal(N) * 0.5, "R")
    c.output("log_prob", log_prob, "log pi(a|s)")
    c.output("entropy", entropy, "H(pi(.|s))")
    c.output("values", values, "V(s)")
    c.output("ratio", ops.exp(log_prob - log_prob_old), "pi / pi_old")
    objective, diag = ppo.ppo_objective(log_prob, log_prob_old, adv, values, returns, entropy,
                                        c1, c2, eps, values_old=values_old, clip_eps_value=eps_v)
    c.output("objective", objective, "J^CLIP' (maximised)")
    for key in ("policy_objective", "value_loss", "approx_kl", "clip_fraction"):
        c.output(key, diag[key], f"diagnostic {key}")
    c.output("entropy_mean", diag["entropy"], "mean H")
    c.gradient("objective", objective, c.params("policy") + c.params("value"))


# ------------------------------------------------------------------ DDPG / TD3

def _ddpg_nets(c, k, m, critics=("critic",), actors=("actor",)):
    nets = {}
    for a in actors:
        nets[a] = c.mlp(a, [k, 8, 8, m], "tanh", "tanh", "obs", "mu(s) in (-1, 1)^2")
    for q in critics:
        nets[q] = c.mlp(q, [k + m, 8, 8, 1], "tanh", None, "concat(obs, action), shape (N, 5)",
                        "Q(s, a) = out[:, 0]")
    return nets


def _transitions(c, N, k, m):
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    actions = c.input("actions", c.rng.uniform(-1, 1, (N, m)), "replayed actions a")
    rewards = c.input("rewards", c.rng.standard_normal(N), "rewards r")
    next_obs = c.input("next_obs", c.rng.standard_normal((N, k)), "next states s'")
    terminated = c.input("terminated", _episodes_flags(N, [2]), "True where s' is terminal "
                         "(truncations bootstrap)")
    return obs, actions, rewards, next_obs, terminated


@_case("ddpg_critic", seed=1015, section="DDPG",
       title="DDPG critic: target from the target actor and critic, and the critic loss",
       paper="Lillicrap et al. 2016, Algorithm 1",
       estimators=["minipg.estimators.ddpg.critic_target", "minipg.estimators.ddpg.critic_loss"],
       formula=["y = r + gamma (1 - terminated) Q'(s', mu'(s'))",
                "loss = mean (y - Q(s, a))^2   (minimised), y held constant"])
def _ddpg_critic(c):
    N, k, m = 6, 3, 2
    gamma = 0.99
    c.hp(gamma=gamma)
    obs, actions, rewards, next_obs, terminated = _transitions(c, N, k, m)
    nets = _ddpg_nets(c, k, m, critics=("critic", "target_critic"), actors=("target_actor",))
    mu_next = c.output("target_actions", nets["target_actor"](next_obs), "mu'(s')")
    q_next = c.output("q_next_target", _q(nets["target_critic"], next_obs, mu_next.data),
                      "Q'(s', mu'(s'))")
    y = c.output("y", ddpg.critic_target(rewards, terminated, q_next.data, gamma), "target y")
    q = _q(nets["critic"], obs, actions)
    c.output("q", q, "Q(s, a)")
    loss = ddpg.critic_loss(q, y)
    c.output("critic_loss", loss, "mean (y - Q)^2")
    c.gradient("critic_loss", loss, c.params("critic"))


@_case("ddpg_actor", seed=1016, section="DDPG",
       title="DDPG actor objective: the sampled deterministic policy gradient",
       paper="Lillicrap et al. 2016, Algorithm 1; Silver et al. 2014",
       estimators=["minipg.estimators.ddpg.actor_objective"],
       formula=["objective = mean_i Q(s_i, mu(s_i)), critic fixed (maximised)",
                "grad.objective.mu = d objective / d a at a = mu(s) = grad_a Q(s_i, a) / N"])
def _ddpg_actor(c):
    N, k, m = 6, 3, 2
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    nets = _ddpg_nets(c, k, m)
    mu = c.output("mu", nets["actor"](obs), "mu(s)")
    objective = ddpg.actor_objective(_q(nets["critic"], obs, mu))
    c.output("objective", objective, "mean Q(s, mu(s)) (maximised)")
    c.gradient("objective", objective, c.params("actor"))
    a_leaf = Tensor(mu.data.copy(), requires_grad=True)
    c.gradient("objective", ddpg.actor_objective(_q(nets["critic"], obs, a_leaf)),
               {"mu": a_leaf}, "the objective as a function of the actions, at a = mu(s)")


@_case("td3_critic", seed=1017, section="TD3",
       title="TD3 critic: target policy smoothing, clipped double-Q target, twin critic loss",
       paper="Fujimoto et al. 2018, Algorithm 1, secs. 4.2 and 5.3",
       estimators=["minipg.estimators.td3.smoothed_target_actions",
                   "minipg.estimators.td3.clipped_double_q_target",
                   "minipg.estimators.td3.twin_critic_loss"],
       formula=["a~ = clip(mu'(s') + clip(noise, -c, c), low, high)",
                "y = r + gamma (1 - terminated) min(Q'_1(s', a~), Q'_2(s', a~))",
                "loss = mean (y - Q_1(s, a))^2 + mean (y - Q_2(s, a))^2   (minimised)"])
def _td3_critic(c):
    N, k, m = 6, 3, 2
    gamma, noise_clip, low, high, noise_std = 0.99, 0.5, -1.0, 1.0, 0.4
    c.hp(gamma=gamma, noise_clip=noise_clip, low=low, high=high, noise_std=noise_std)
    obs, actions, rewards, next_obs, terminated = _transitions(c, N, k, m)
    noise = c.input("noise", noise_std * c.rng.standard_normal((N, m)),
                    "smoothing noise eps ~ N(0, 0.4^2) in action units (some beyond c)")
    nets = _ddpg_nets(c, k, m, critics=("critic1", "critic2", "target_critic1", "target_critic2"),
                      actors=("target_actor",))
    mu_next = c.output("target_actions", nets["target_actor"](next_obs), "mu'(s')")
    smoothed = c.output("smoothed_actions", td3.smoothed_target_actions(
        mu_next.data, noise, noise_clip, low, high), "a~")
    q1n = c.output("q1_next", _q(nets["target_critic1"], next_obs, smoothed), "Q'_1(s', a~)")
    q2n = c.output("q2_next", _q(nets["target_critic2"], next_obs, smoothed), "Q'_2(s', a~)")
    y = c.output("y", td3.clipped_double_q_target(rewards, terminated, q1n.data, q2n.data,
                                                  gamma), "clipped double-Q target")
    q1 = _q(nets["critic1"], obs, actions)
    q2 = _q(nets["critic2"], obs, actions)
    c.output("q1", q1, "Q_1(s, a)")
    c.output("q2", q2, "Q_2(s, a)")
    loss = td3.twin_critic_loss(q1, q2, y)
    c.output("critic_loss", loss, "sum of both critics' mean squared errors")
    c.gradient("critic_loss", loss, c.params("critic1") + c.params("critic2"))


@_case("td3_actor", seed=1018, section="TD3",
       title="TD3 actor objective (first critic only)",
       paper="Fujimoto et al. 2018, Algorithm 1",
       estimators=["minipg.estimators.td3.actor_objective"],
       formula=["objective = mean_i Q_1(s_i, mu(s_i)), critic fixed (maximised)"])
def _td3_actor(c):
    N, k, m = 6, 3, 2
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    nets = _ddpg_nets(c, k, m, critics=("critic1",))
    mu = c.output("mu", nets["actor"](obs), "mu(s)")
    objective = td3.actor_objective(_q(nets["critic1"], obs, mu))
    c.output("objective", objective, "mean Q_1(s, mu(s)) (maximised)")
    c.gradient("objective", objective, c.params("actor"))
    a_leaf = Tensor(mu.data.copy(), requires_grad=True)
    c.gradient("objective", td3.actor_objective(_q(nets["critic1"], obs, a_leaf)),
               {"mu": a_leaf}, "the objective as a function of the actions, at a = mu(s)")


# ------------------------------------------------------------------ SAC

def _sac_policy_net(c, k, d):
    return c.mlp("policy", [k, 8, 8, 2 * d], "tanh", None, "obs", SAC_POLICY_OUT, gain=0.8)


def _sac_critic_net(c, name, k, d):
    return c.mlp(name, [k + d, 8, 8, 1], "tanh", None, "concat(obs, action), shape (N, 5)",
                 "Q(s, a) = out[:, 0]")


_BOX = dict(low=-2.0, high=2.0)


@_case("sac_value", seed=1019, section="SAC",
       title="SAC v1 soft value loss J_V with fresh reparameterised actions",
       paper="Haarnoja et al. 2018, eqs. 5-6",
       estimators=["minipg.distributions.TanhGaussian.rsample", "minipg.estimators.sac.v_target",
                   "minipg.estimators.sac.value_loss"],
       formula=["a~, log pi(a~|s) from the tanh-Gaussian policy with noise eps: " + SAC_LOG_PROB,
                "v_target = min(Q_1(s, a~), Q_2(s, a~)) - alpha log pi(a~|s), held constant",
                "J_V = mean (V(s) - v_target)^2 / 2   (minimised)"])
def _sac_value(c):
    N, k, d = 6, 3, 2
    alpha = 0.2
    c.hp(alpha=alpha, **_BOX)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    eps = c.input("eps", c.rng.standard_normal((N, d)), "standard normal noise")
    policy = _sac_policy_net(c, k, d)
    q1, q2 = _sac_critic_net(c, "critic1", k, d), _sac_critic_net(c, "critic2", k, d)
    value = c.mlp("value", [k, 8, 8, 1], "tanh", None, "obs", "V(s) = out[:, 0]")
    low, high = np.full(d, _BOX["low"]), np.full(d, _BOX["high"])
    action, log_prob = _tanh_gaussian(policy, obs, d, low, high).rsample(eps=eps)
    c.output("new_actions", action, "a~ = f(eps; s)")
    c.output("log_prob_new", log_prob, "log pi(a~|s)")
    q1n = c.output("q1_new", _q(q1, obs, action.data), "Q_1(s, a~)")
    q2n = c.output("q2_new", _q(q2, obs, action.data), "Q_2(s, a~)")
    target = c.output("v_target", sac.v_target(np.minimum(q1n.data, q2n.data), log_prob.data,
                                               alpha), "min Q - alpha log pi")
    v = value(obs)[:, 0]
    c.output("v", v, "V(s)")
    loss = sac.value_loss(v, target)
    c.output("J_V", loss, "soft value loss (minimised)")
    c.gradient("J_V", loss, c.params("value"))


@_case("sac_q", seed=1020, section="SAC",
       title="SAC v1 soft Q loss J_Q with the target value network",
       paper="Haarnoja et al. 2018, eqs. 7-9",
       estimators=["minipg.estimators.sac.soft_q_target", "minipg.estimators.sac.soft_q_loss"],
       formula=["q_hat = r + gamma (1 - terminated) V_target(s'), held constant",
                "J_Q1 = mean (Q_1(s, a) - q_hat)^2 / 2;  J_Q2 likewise   (minimised)"])
def _sac_q(c):
    N, k, d = 6, 3, 2
    gamma = 0.99
    c.hp(gamma=gamma)
    obs, actions, rewards, next_obs, terminated = _transitions(c, N, k, d)
    q1, q2 = _sac_critic_net(c, "critic1", k, d), _sac_critic_net(c, "critic2", k, d)
    target_value = c.mlp("target_value", [k, 8, 8, 1], "tanh", None, "obs",
                         "V_target(s) = out[:, 0]")
    v_next = c.output("v_next", target_value(next_obs)[:, 0], "V_target(s')")
    q_hat = c.output("q_hat", sac.soft_q_target(rewards, terminated, v_next.data, gamma),
                     "q_hat")
    for i, net in ((1, q1), (2, q2)):
        q = _q(net, obs, actions)
        c.output(f"q{i}", q, f"Q_{i}(s, a)")
        loss = sac.soft_q_loss(q, q_hat)
        c.output(f"J_Q{i}", loss, f"soft Q loss of critic {i} (minimised)")
        c.gradient(f"J_Q{i}", loss, c.params(f"critic{i}"))


@_case("sac_policy", seed=1021, section="SAC",
       title="SAC policy loss J_pi through the reparameterised action, two critics",
       paper="Haarnoja et al. 2018, eqs. 12-13; Appendix C, eq. 21",
       estimators=["minipg.distributions.TanhGaussian.rsample",
                   "minipg.estimators.sac.policy_loss"],
       formula=["u = mean + exp(log_std) eps; a = low + (tanh(u) + 1)(high - low)/2",
                SAC_LOG_PROB,
                "J_pi = mean [alpha log pi(a|s) - min(Q_1(s, a), Q_2(s, a))]   (minimised)",
                "grad.J_pi.eps: J_pi as a function of eps (policy fixed): the noise path",
                "grad.q_new_mean.action: d mean_i min(Q_1, Q_2)(s_i, a_i) / d a at the sampled a"])
def _sac_policy(c):
    N, k, d = 6, 3, 2
    alpha = 0.2
    c.hp(alpha=alpha, **_BOX)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    eps = c.input("eps", c.rng.standard_normal((N, d)), "standard normal noise")
    policy = _sac_policy_net(c, k, d)
    q1, q2 = _sac_critic_net(c, "critic1", k, d), _sac_critic_net(c, "critic2", k, d)
    low, high = np.full(d, _BOX["low"]), np.full(d, _BOX["high"])
    dist = _tanh_gaussian(policy, obs, d, low, high)
    action, log_prob = dist.rsample(eps=eps)
    c.output("action", action, "a = f(eps; s)")
    c.output("log_prob", log_prob, "log pi(a|s)")
    q_new = ops.minimum(_q(q1, obs, action), _q(q2, obs, action))
    c.output("q_new", q_new, "min(Q_1, Q_2)(s, a)")
    loss = sac.policy_loss(log_prob, q_new, alpha)
    c.output("J_pi", loss, "policy loss (minimised)")
    c.gradient("J_pi", loss, c.params("policy"), "both paths: log pi's parameters and the action")
    # the noise path: J_pi as a function of eps with the policy's outputs fixed
    eps_leaf = Tensor(eps.copy(), requires_grad=True)
    fixed = TanhGaussian(dist.mean.data, dist.log_std.data, low, high)
    u = eps_leaf * dist.std.data + dist.mean.data
    a_eps = (ops.tanh(u) + 1.0) * fixed.scale + low
    loss_eps = sac.policy_loss(fixed.log_prob_from_pre_tanh(u),
                               ops.minimum(_q(q1, obs, a_eps), _q(q2, obs, a_eps)), alpha)
    c.gradient("J_pi", loss_eps, {"eps": eps_leaf}, "the reparameterised noise path")
    a_leaf = Tensor(action.data.copy(), requires_grad=True)
    q_mean = ops.mean(ops.minimum(_q(q1, obs, a_leaf), _q(q2, obs, a_leaf)))
    c.output("q_new_mean", q_mean, "mean min(Q_1, Q_2)(s, a)")
    c.gradient("q_new_mean", q_mean, {"action": a_leaf}, "the critics' action gradient / N")


@_case("sac_q_twin", seed=1022, section="SAC with Automatically Adjusted Temperature",
       title="SAC (2018b) soft Q target from two target critics and a fresh next action",
       paper="Haarnoja et al. 2018b, eqs. 3 and 5 with clipped double Q",
       estimators=["minipg.distributions.TanhGaussian.rsample",
                   "minipg.estimators.sac.soft_q_target_twin",
                   "minipg.estimators.sac.soft_q_loss"],
       formula=["a', log pi(a'|s') from the policy at s' with noise eps_next: " + SAC_LOG_PROB,
                "y = r + gamma (1 - terminated) (min(Q'_1(s', a'), Q'_2(s', a')) - alpha log "
                "pi(a'|s')), held constant",
                "J_Q1 = mean (Q_1(s, a) - y)^2 / 2;  J_Q2 likewise   (minimised)"])
def _sac_q_twin(c):
    N, k, d = 6, 3, 2
    gamma, alpha = 0.99, 0.2
    c.hp(gamma=gamma, alpha=alpha, **_BOX)
    obs, actions, rewards, next_obs, terminated = _transitions(c, N, k, d)
    eps_next = c.input("eps_next", c.rng.standard_normal((N, d)), "noise for a' ~ pi(.|s')")
    policy = _sac_policy_net(c, k, d)
    q1, q2 = _sac_critic_net(c, "critic1", k, d), _sac_critic_net(c, "critic2", k, d)
    t1, t2 = _sac_critic_net(c, "target_critic1", k, d), _sac_critic_net(c, "target_critic2", k, d)
    low, high = np.full(d, _BOX["low"]), np.full(d, _BOX["high"])
    a_next, logp_next = _tanh_gaussian(policy, next_obs, d, low, high).rsample(eps=eps_next)
    c.output("next_actions", a_next, "a' ~ pi(.|s')")
    c.output("log_prob_next", logp_next, "log pi(a'|s')")
    q1n = c.output("q1_next", _q(t1, next_obs, a_next.data), "Q'_1(s', a')")
    q2n = c.output("q2_next", _q(t2, next_obs, a_next.data), "Q'_2(s', a')")
    y = c.output("y", sac.soft_q_target_twin(rewards, terminated, q1n.data, q2n.data,
                                             logp_next.data, alpha, gamma), "soft target")
    for i, net in ((1, q1), (2, q2)):
        q = _q(net, obs, actions)
        c.output(f"q{i}", q, f"Q_{i}(s, a)")
        loss = sac.soft_q_loss(q, y)
        c.output(f"J_Q{i}", loss, f"soft Q loss of critic {i} (minimised)")
        c.gradient(f"J_Q{i}", loss, c.params(f"critic{i}"))


@_case("sac_temperature", seed=1023, section="SAC with Automatically Adjusted Temperature",
       title="SAC temperature loss J(alpha), alpha = exp(log_alpha)",
       paper="Haarnoja et al. 2018b, eq. 18",
       estimators=["minipg.estimators.sac.default_target_entropy",
                   "minipg.estimators.sac.temperature_loss"],
       formula=["log pi(a|s) of fresh actions (held constant): " + SAC_LOG_PROB,
                "J(alpha) = mean [-alpha log pi(a|s) - alpha H_target], alpha = exp(log_alpha), "
                "H_target = -dim(A)   (minimised in log_alpha)"])
def _sac_temperature(c):
    N, k, d = 6, 3, 2
    target_entropy = sac.default_target_entropy(d)
    c.hp(target_entropy=target_entropy, **_BOX)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states s")
    eps = c.input("eps", c.rng.standard_normal((N, d)), "standard normal noise")
    policy = _sac_policy_net(c, k, d)
    log_alpha = c.parameter("log_alpha", np.array([-1.3]), "log of the temperature, shape (1,)")
    low, high = np.full(d, _BOX["low"]), np.full(d, _BOX["high"])
    _, log_prob = _tanh_gaussian(policy, obs, d, low, high).rsample(eps=eps)
    c.output("log_prob", log_prob, "log pi(a|s), held constant")
    loss = sac.temperature_loss(log_alpha, log_prob.data, target_entropy)
    c.output("J_alpha", loss, "temperature loss (minimised)")
    c.gradient("J_alpha", loss, ["log_alpha"])
