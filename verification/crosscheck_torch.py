r"""An independent PyTorch implementation of every ``minipg reference`` case, and the check.

What it shows: the reference files are usable by another implementation.
For each case, this script reads only the reference's *inputs* (batch arrays
and network weights) and the manifest's network layout and hyperparameters,
rebuilds the networks in torch float64, computes every output and gradient
from the formulas of the document (L. Weng, "Policy Gradient Algorithms",
2018) and the papers named in each manifest -- with torch.autograd, never by
calling minipg's estimators, distributions, kernels or autodiff -- writes
them in the same format, and runs ``minipg reference --check`` on the two
directories.  Goal (issue 7): at most 1e-10 relative error for every case.

Every case is checked in each profile (``minipg reference --profile minipg``,
``sb3``, ``cleanrl``): the torch code reads the conventions from the
manifest's ``conventions`` (advantage std, value-clip form, factors 1/2,
SAC's action space, tanh log-det epsilon, log-std head, temperature loss)
and implements each one itself.  Every float input and parameter is cast to
float32 and back before use, as an implementation that stores observations
and weights in float32 does; the reference draws them so that this cast is
exact (the script stops if it is not).

minipg is used here for file input/output and for the comparison only
(``minipg.reference``: writing the reference, ``save_case``, ``load_array``,
``check``).  torch is an optional extra: minipg itself never imports it.

Run (about 10 s on a laptop CPU)::

    python verification/crosscheck_torch.py              # writes verification/reference/RESULTS.md
    python verification/crosscheck_torch.py --keep DIR   # also keeps DIR/<profile>/{minipg,torch}
    python verification/crosscheck_torch.py --profiles sb3

Exit status 0 only if every case agrees.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minipg import __version__ as MINIPG_VERSION  # noqa: E402
from minipg import reference  # noqa: E402  (file format and checker only)

torch.set_default_dtype(torch.float64)
F64 = torch.float64
LOG_2PI = math.log(2.0 * math.pi)

# Negative controls: deliberately wrong variants of a few formulas.  Each must be
# rejected by the same check (see NEGATIVE_CONTROLS); empty for the real run.
WRONG = set()
NEGATIVE_CONTROLS = [     # (key, case, profile, what)
    ("reinforce_no_gamma_t", "reinforce_baseline", "minipg",
     "REINFORCE without the gamma^t factor"),
    ("ac_residual_gradient", "actor_critic", "minipg",
     "critic differentiated through Q(s', a') too"),
    ("ppo_no_clip", "ppo_clip", "minipg", "PPO surrogate without clipping (mean r A)"),
    ("ddpg_bootstrap_terminal", "ddpg_critic", "minipg",
     "DDPG target bootstraps through termination"),
    ("maddpg_replayed_next_actions", "maddpg_critic", "minipg",
     "MADDPG target at the replayed actions instead of every agent's target policy"),
    ("sac_v_target_no_entropy", "sac_value", "minipg", "SAC value target without -alpha log pi"),
    ("sac_no_tanh_correction", "sac_policy", "minipg", "SAC log-prob without the tanh correction"),
    ("acktr_empirical_fisher", "acktr", "minipg",
     "ACKTR's K-FAC G from the taken actions (the empirical Fisher)"),
    ("trpo_kl_reversed", "trpo_gaussian", "minipg",
     "TRPO's line search on KL(pi_new || pi_old), the reversed KL (same Hessian at theta_old)"),
    ("acer_no_correction", "acer_discrete", "minipg",
     "ACER without the bias-correction term (truncated importance weights only)"),
    # a convention of another profile applied where the manifest states a different one
    ("ignore_profile_std", "ppo_objective", "sb3",
     "sb3 profile computed with the population std (ddof = 0)"),
    ("ignore_profile_value_clip", "ppo_value_clip", "sb3",
     "sb3 profile computed with the larger of the two value errors"),
    ("ignore_profile_action_space", "sac_policy", "sb3",
     "sb3 profile computed with the density of the action on the box"),
    ("ignore_profile_q_half", "sac_q_twin", "cleanrl",
     "cleanrl profile computed with 0.5 on the critic losses"),
    ("ignore_profile_temperature", "sac_temperature", "sb3",
     "sb3 profile computed with the temperature loss on alpha"),
]


# ------------------------------------------------------------------ plumbing

class Ctx:
    """One case: reads the reference inputs, collects torch outputs and gradients."""

    def __init__(self, ref_dir, name):
        self.dir = Path(ref_dir) / name
        self.name = name
        self.manifest = reference.load_manifest(self.dir)
        self.hp = self.manifest["hyperparameters"]
        self.conventions = {k: v["value"] for k, v in self.manifest.get("conventions", {}).items()}
        self.inputs = {}
        for array, entry in self.manifest["arrays"].items():
            if entry["role"] in ("input", "parameter"):
                self.inputs[array] = as_float32_and_back(reference.load_array(self.dir, array),
                                                         f"{name}/{array}")
        self.leaves = {n: torch.tensor(a, dtype=F64, requires_grad=True)
                       for n, a in self.inputs.items()
                       if self.manifest["arrays"][n]["role"] == "parameter"}
        self.results = {}

    def conv(self, name):
        """The manifest's value of convention ``name`` (minipg's when the manifest has none)."""
        return self.conventions.get(name, MINIPG_CONVENTIONS[name])

    # inputs
    def np(self, name):
        return self.inputs[name]

    def t(self, name):
        a = self.inputs[name]
        if a.dtype == np.bool_:
            return torch.tensor(a)
        if a.dtype.kind in "iu":
            return torch.tensor(a, dtype=torch.int64)
        return torch.tensor(a, dtype=F64)

    def leaf(self, name):
        return self.leaves[name]

    def net(self, name):
        return Net(self.manifest["networks"][name], self.leaves)

    def params(self, net_name):
        return [x for layer in self.manifest["networks"][net_name]["layers"]
                for x in (layer["W"], layer["b"])]

    # results
    def out(self, name, value):
        v = value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        self.results[name] = np.array(v, dtype=np.float64 if v.dtype.kind == "f" else v.dtype)
        return value

    def grad(self, of, loss, wrt):
        """d loss / d x for x in wrt (parameter names, or a dict name -> leaf tensor)."""
        if not isinstance(wrt, dict):
            wrt = {n: self.leaves[n] for n in wrt}
        gs = torch.autograd.grad(loss, list(wrt.values()), retain_graph=True, allow_unused=True)
        for (n, x), g in zip(wrt.items(), gs):
            self.out(f"grad.{of}.{n}", torch.zeros_like(x) if g is None else g)

    def save(self, out_dir):
        expected = {n for n, e in self.manifest["arrays"].items()
                    if e["role"] in ("output", "gradient")}
        produced = set(self.results)
        if produced != expected:
            raise RuntimeError(f"{self.name}: torch produced {sorted(produced - expected)} "
                               f"not in the manifest and lacks {sorted(expected - produced)}")
        manifest = json.loads(json.dumps(self.manifest))
        manifest["producer"] = (f"verification/crosscheck_torch.py, torch {torch.__version__}, "
                                "independent of minipg's estimators")
        arrays = dict(self.inputs)
        arrays.update(self.results)
        for n, e in manifest["arrays"].items():
            e.pop("value", None)
            if e["role"] in ("output", "gradient") and np.ndim(arrays[n]) == 0 \
                    and np.asarray(arrays[n]).dtype.kind == "f":
                e["value"] = float(arrays[n])
        reference.save_case(Path(out_dir) / self.name, manifest, arrays)


ACT = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda x: x}

# minipg's conventions, for a manifest written before they were stated
MINIPG_CONVENTIONS = {
    "advantage_normalization": {"ddof": 0, "eps": 1e-8}, "ppo_value_clip": "max",
    "ppo_value_loss_scale": 1.0, "sac_action_space": "box", "tanh_log_det": {"form": "exact"},
    "sac_log_std": "clamp(-20, 2)", "sac_q_loss_scale": 0.5, "sac_value_loss_scale": 0.5,
    "temperature_loss": "alpha"}


def as_float32_and_back(a, what):
    """``a`` as an implementation storing float32 sees it; the reference makes this exact."""
    if a.dtype.kind != "f":
        return a
    b = torch.tensor(a, dtype=torch.float32).to(F64).numpy()
    if not np.array_equal(a, b):
        raise RuntimeError(f"{what}: casting to float32 changes it; the reference promises "
                           "float32 inputs and parameters")
    return b


class Net:
    """h <- activation(h @ W + b), layer by layer, from the manifest's layout."""

    def __init__(self, layout, leaves):
        self.layers = [(leaves[lay["W"]], leaves[lay["b"]], ACT[lay["activation"]])
                       for lay in layout["layers"]]

    def __call__(self, x):
        for W, b, act in self.layers:
            x = act(x @ W + b)
        return x


def critic(net, obs, action):
    """Q(s, a) = net(concat(s, a))[:, 0]."""
    return net(torch.cat([obs, action], dim=-1))[..., 0]


def log_softmax_pick(logits, actions):
    """log pi(a|s) for a softmax policy: logits[a] - log sum_b exp(logits[b])."""
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return torch.gather(logp, -1, actions.unsqueeze(-1)).squeeze(-1)


def softmax_entropy(logits):
    """H = -sum_a p_a log p_a."""
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return -(logp.exp() * logp).sum(-1)


def policy_value_outputs(c):
    """log pi(a|s), H and V(s) of the case's softmax "policy" and "value" networks on its
    "obs" and "actions", written as the outputs log_prob, entropy and values."""
    logits = c.net("policy")(c.t("obs"))
    log_prob = log_softmax_pick(logits, c.t("actions"))
    H = softmax_entropy(logits)
    V = c.net("value")(c.t("obs"))[:, 0]
    c.out("log_prob", log_prob)
    c.out("entropy", H)
    c.out("values", V)
    return log_prob, H, V


def squashed_gaussian(c, out, eps, low, high):
    """SAC's policy: (a, log pi(a|s)) from the network output concat(mean, log_std) and eps.

    u = mean + sigma eps, y = tanh u, and by the change of variables (Haarnoja et al. 2018,
    appendix C, eq. 21) log pi = sum_i [log N(u_i; mean_i, sigma_i) - log |da_i/du_i|], in the
    manifest's conventions:
    sac_log_std  clamp(-20, 2): log_std = clamp(out, -20, 2) (stable-baselines3, minipg);
                 tanh(-5, 2): log_std = -5 + 3.5 (tanh(out) + 1) (CleanRL);
    sac_action_space  box: a = low + (y + 1)(high - low)/2 (minipg, CleanRL); unit: a = y
                 (stable-baselines3's normalised action);
    tanh_log_det exact: log(1 - y^2) (+ log scale on the box); stable-baselines3:
                 log(1 - y^2 + 1e-6); CleanRL: log(scale (1 - y^2) + 1e-6).
    """
    d = out.shape[-1] // 2
    mean, raw = out[..., :d], out[..., d:]
    if c.conv("sac_log_std") == "tanh(-5, 2)":
        log_std = -5.0 + 0.5 * (2.0 - (-5.0)) * (torch.tanh(raw) + 1.0)
    else:
        log_std = torch.clamp(raw, -20.0, 2.0)
    u = mean + torch.exp(log_std) * eps
    y = torch.tanh(u)
    scale = (high - low) / 2.0
    box = c.conv("sac_action_space") == "box" or "ignore_profile_action_space" in WRONG
    action = low + (y + 1.0) * scale if box else y
    gauss = (-0.5 * eps ** 2 - log_std - 0.5 * LOG_2PI).sum(-1)   # (u - mean)/sigma = eps
    log_det = c.conv("tanh_log_det")
    if log_det["form"] == "exact" or "ignore_profile_action_space" in WRONG:
        correction = torch.log(1.0 - y ** 2).sum(-1) + (torch.log(scale).sum(-1) if box else 0.0)
    elif log_det["form"] == "log(1 - tanh(u)^2 + eps)":
        correction = torch.log(1.0 - y ** 2 + log_det["eps"]).sum(-1)
    else:
        correction = torch.log(scale * (1.0 - y ** 2) + log_det["eps"]).sum(-1)
    log_prob = gauss - correction
    if "sac_no_tanh_correction" in WRONG:
        log_prob = gauss - torch.log(scale).sum(-1)
    return action, log_prob


def discounted_returns(r, term, trunc, gamma, next_values=None):
    """G_t = r_t + gamma X_t.

    X_t = 0 at termination, V(s'_t) at truncation or t = T-1, else G_{t+1}.
    """
    T = r.shape[0]
    nv = np.zeros_like(r) if next_values is None else next_values
    G = np.zeros_like(r)
    for t in reversed(range(T)):
        for j in np.ndindex(r.shape[1:]):
            if term[(t,) + j]:
                x = 0.0
            elif trunc[(t,) + j] or t == T - 1:
                x = nv[(t,) + j]
            else:
                x = G[(t + 1,) + j]
            G[(t,) + j] = r[(t,) + j] + gamma * x
    return G


# ------------------------------------------------------------------ the cases

CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


@case
def reinforce(c):
    g, n_ep = c.hp["gamma"], c.hp["n_episodes"]
    G = discounted_returns(c.np("rewards"), c.np("terminated"), c.np("truncated"), g)
    c.out("returns", G)
    log_prob = log_softmax_pick(c.net("policy")(c.t("obs")), c.t("actions"))
    c.out("log_prob", log_prob)
    objective = (torch.tensor(G) * log_prob).sum() / n_ep
    c.out("objective", objective)
    c.grad("objective", objective, c.params("policy"))


@case
def reinforce_baseline(c):
    g, n_ep = c.hp["gamma"], c.hp["n_episodes"]
    term, trunc = c.np("terminated"), c.np("truncated")
    G = discounted_returns(c.np("rewards"), term, trunc, g, c.np("next_values"))
    c.out("returns", G)
    t_index = np.zeros(term.shape, dtype=np.int64)            # restarts after every episode end
    for t in range(1, term.shape[0]):
        t_index[t] = np.where(term[t - 1] | trunc[t - 1], 0, t_index[t - 1] + 1)
    c.out("t_index", t_index)
    disc = g ** t_index.astype(np.float64)
    c.out("discounts", disc)
    if "reinforce_no_gamma_t" in WRONG:
        disc = np.ones_like(disc)
    V = c.net("value")(c.t("obs"))[..., 0]
    c.out("values", V)
    log_prob = log_softmax_pick(c.net("policy")(c.t("obs")), c.t("actions"))
    c.out("log_prob", log_prob)
    Gt = torch.tensor(G)
    objective = (torch.tensor(disc) * (Gt - V.detach()) * log_prob).sum() / n_ep
    c.out("objective", objective)
    c.grad("objective", objective, c.params("policy"))
    value_loss = ((V - Gt) ** 2).mean()
    c.out("value_loss", value_loss)
    c.grad("value_loss", value_loss, c.params("value"))


@case
def actor_critic(c):
    g = c.hp["gamma"]
    Qnet = c.net("critic")
    q = Qnet(c.t("obs")).gather(-1, c.t("actions")[:, None])[:, 0]
    q_next = Qnet(c.t("next_obs")).gather(-1, c.t("next_actions")[:, None])[:, 0]
    if "ac_residual_gradient" not in WRONG:
        q_next = q_next.detach()                               # the semi-gradient
    c.out("q", q)
    c.out("q_next", q_next)
    y = c.t("rewards") + g * (~c.t("terminated")).to(F64) * q_next
    c.out("td_target", y)
    delta = y - q
    c.out("td_error", delta)
    log_prob = log_softmax_pick(c.net("policy")(c.t("obs")), c.t("actions"))
    c.out("log_prob", log_prob)
    I = g ** c.t("t_index").to(F64)
    c.out("discount_I", I)
    obj = (q.detach() * log_prob).mean()                      # Weng, actor-critic step 2.3
    c.out("actor_objective", obj)
    c.grad("actor_objective", obj, c.params("policy"))
    obj_td = (I * delta.detach() * log_prob).mean()           # Sutton & Barto, I delta grad log pi
    c.out("actor_objective_td", obj_td)
    c.grad("actor_objective_td", obj_td, c.params("policy"))
    loss = 0.5 * ((y - q) ** 2).mean()
    c.out("critic_loss", loss)
    c.grad("critic_loss", loss, c.params("critic"))
    semi = -(delta.detach() * q).mean()
    c.out("critic_semi_gradient_loss", semi)
    c.grad("critic_semi_gradient_loss", semi, c.params("critic"))


@case
def off_policy_actor(c):
    clip = c.hp["clip"]
    log_prob = log_softmax_pick(c.net("policy")(c.t("obs")), c.t("actions"))
    c.out("log_prob", log_prob)
    rho = log_prob.detach().exp() / c.t("behaviour_prob")      # pi / beta, held constant
    c.out("rho", rho)
    Q = c.t("q_values")
    obj = (rho * Q * log_prob).mean()
    c.out("objective", obj)
    c.grad("objective", obj, c.params("policy"))
    rho_c = torch.clamp(rho, max=clip)
    c.out("rho_clipped", rho_c)
    obj_c = (rho_c * Q * log_prob).mean()
    c.out("objective_clipped", obj_c)
    c.grad("objective_clipped", obj_c, c.params("policy"))


@case
def offpac_step(c):
    g, lam = c.hp["gamma"], c.hp["lam"]
    av, aw, au = c.hp["alpha_v"], c.hp["alpha_w"], c.hp["alpha_u"]
    x, xn, r = c.t("x"), c.t("x_next"), c.t("reward")
    v, w, e, e_u = c.t("v"), c.t("w"), c.t("e_v"), c.t("e_u")
    gamma_next = g * (~c.t("terminated")).to(F64)
    log_prob = log_softmax_pick(c.net("policy")(x), c.t("actions"))
    c.out("log_prob", log_prob)
    W, b = c.leaf("policy.layer0.W"), c.leaf("policy.layer0.b")
    psi = torch.stack([torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(
        log_prob[i], [W, b], retain_graph=True)]) for i in range(x.shape[0])])
    c.out("psi", psi)
    rho = log_prob.detach().exp() / c.t("behaviour_prob")
    c.out("rho", rho)
    delta = r + gamma_next * (v * xn).sum(-1) - (v * x).sum(-1)
    c.out("td_error", delta)
    e_new = rho[:, None] * (x + g * lam * e)                  # Degris et al., Algorithm 1
    v_new = v + av * (delta[:, None] * e_new
                      - (gamma_next * (1 - lam) * (w * e_new).sum(-1))[:, None] * xn)
    w_new = w + aw * (delta[:, None] * e_new - (w * x).sum(-1)[:, None] * x)
    c.out("v_new", v_new)
    c.out("w_new", w_new)
    c.out("e_v_new", e_new)
    u = torch.cat([W.detach().reshape(-1), b.detach()]).expand(x.shape[0], -1)
    e_u_new = rho[:, None] * (psi + g * lam * e_u)
    c.out("e_u_new", e_u_new)
    c.out("u_new", u + au * delta[:, None] * e_u_new)


@case
def dpg(c):
    g = c.hp["gamma"]
    actor, Q = c.net("actor"), c.net("critic")
    obs = c.t("obs")
    mu = actor(obs)
    c.out("mu", mu)
    q_mu = critic(Q, obs, mu)
    c.out("q_of_mu", q_mu)
    obj = q_mu.mean()
    c.out("objective", obj)
    c.grad("objective", obj, c.params("actor"))
    a = mu.detach().clone().requires_grad_(True)
    c.grad("objective", critic(Q, obs, a).mean(), {"mu": a})
    grad_a_q, = torch.autograd.grad(critic(Q, obs, a).sum(), [a])
    c.out("grad_a_q", grad_a_q)
    theta = [c.leaf(n) for n in c.params("actor")]
    N, m = mu.shape
    jac = torch.stack([torch.stack([torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(
        mu[i, k], theta, retain_graph=True)]) for k in range(m)]) for i in range(N)])
    c.out("grad_theta_mu", jac)
    c.out("dpg_actor_gradient", torch.einsum("ikj,ik->j", jac, grad_a_q) / N)   # Silver eq. 9
    q = critic(Q, obs, c.t("actions"))
    c.out("q", q)
    cont = (~c.t("terminated")).to(F64)
    q_next = critic(Q, c.t("next_obs"), c.t("next_actions")).detach()
    q_next_mu = critic(Q, c.t("next_obs"), actor(c.t("next_obs"))).detach()
    c.out("q_next", q_next)
    c.out("q_next_at_mu", q_next_mu)
    r = c.t("rewards")
    c.out("sarsa_td_error", r + g * cont * q_next - q)
    c.out("q_learning_td_error", r + g * cont * q_next_mu - q)


@case
def copdac_q(c):
    g = c.hp["gamma"]
    at, aw, av = c.hp["alpha_theta"], c.hp["alpha_w"], c.hp["alpha_v"]
    x, xn, theta, w, v = c.t("x"), c.t("x_next"), c.t("theta"), c.t("w"), c.t("v")
    J, mu, r = c.t("grad_theta_mu"), c.t("mu"), c.t("reward")
    a = c.t("a").requires_grad_(True)
    phi = torch.einsum("bij,bi->bj", J, a - mu)                 # grad_theta mu (a - mu)
    q = (phi * w).sum(-1) + (v * x).sum(-1)
    c.out("phi", phi)
    c.out("q", q)
    delta = r + g * (~c.t("terminated")).to(F64) * (v * xn).sum(-1) - q      # eq. 19
    c.out("td_error", delta)
    c.out("theta_new", theta + at * torch.einsum("bij,bk,bik->bj", J, w, J))  # eq. 20
    c.out("w_new", w + aw * delta[:, None] * phi)              # eq. 21
    c.out("v_new", v + av * delta[:, None] * x)                # eq. 22
    q_sum = q.sum()
    c.out("q_sum", q_sum)
    c.grad("q_sum", q_sum, {"a": a})


def _rollout(c):
    return (c.np("rewards"), c.np("terminated"), c.np("truncated"), c.np("next_values"))


@case
def gae(c):
    g, lam = c.hp["gamma"], c.hp["lam"]
    r, term, trunc, nv = _rollout(c)
    V = c.np("values")
    T = r.shape[0]
    delta = r + g * np.where(term, 0.0, nv) - V                # Schulman et al. 2016, eq. 16
    A = np.zeros_like(r)
    nxt = np.zeros(r.shape[1:])
    for t in reversed(range(T)):
        nxt = delta[t] + g * lam * np.where(term[t] | trunc[t], 0.0, nxt)
        A[t] = nxt
    c.out("advantages", A)


@case
def n_step_returns(c):
    g, n = c.hp["gamma"], c.hp["n"]
    r, term, trunc, nv = _rollout(c)
    T, E = r.shape
    G = np.zeros_like(r)
    for j in range(E):
        for t in range(T):
            total, k = 0.0, 0
            while True:
                i = t + k
                total += g ** k * r[i, j]
                k += 1
                if term[i, j]:
                    break
                if trunc[i, j] or i == T - 1 or k == n:
                    total += g ** k * nv[i, j]
                    break
            G[t, j] = total
    c.out("returns", G)


@case
def discounted_returns_case(c):
    g = c.hp["gamma"]
    r, term, trunc, nv = _rollout(c)
    c.out("returns", discounted_returns(r, term, trunc, g, nv))
    c.out("returns_no_bootstrap", discounted_returns(r, term, trunc, g))


@case
def a2c(c):
    cv, ch = c.hp["value_coef"], c.hp["entropy_coef"]
    log_prob, H, V = policy_value_outputs(c)
    R = c.t("returns")
    A = (R - V).detach()
    c.out("advantages", A)
    pg, vl, hm = (A * log_prob).mean(), ((V - R) ** 2).mean(), H.mean()
    loss = -pg + cv * vl - ch * hm                             # Mnih et al. 2016, sec. 4
    c.out("loss", loss)
    c.out("policy_objective", pg)
    c.out("value_loss", vl)
    c.out("entropy_mean", hm)
    c.grad("loss", loss, c.params("policy") + c.params("value"))


def _ppo_policy_terms(log_prob, log_prob_old, A, eps):
    ratio = torch.exp(log_prob - log_prob_old)
    surrogate = torch.min(ratio * A, torch.clamp(ratio, 1 - eps, 1 + eps) * A).mean()
    if "ppo_no_clip" in WRONG:
        surrogate = (ratio * A).mean()
    r = ratio.detach()
    kl = ((r - 1) - torch.log(r)).mean()
    frac = ((r - 1).abs() > eps).to(F64).mean()
    return ratio, surrogate, kl, frac


@case
def ppo_clip(c):
    eps = c.hp["clip_eps"]
    mean = c.net("policy")(c.t("obs"))
    log_std = c.leaf("policy.log_std")
    z = (c.t("actions") - mean) / torch.exp(log_std)
    log_prob = (-0.5 * z ** 2 - log_std - 0.5 * LOG_2PI).sum(-1)
    c.out("log_prob", log_prob)
    ratio, obj, kl, frac = _ppo_policy_terms(log_prob, c.t("log_prob_old"), c.t("advantages"), eps)
    c.out("ratio", ratio)
    c.out("clip_objective", obj)
    c.grad("clip_objective", obj, c.params("policy") + ["policy.log_std"])
    c.out("approx_kl", kl)
    c.out("clip_fraction", frac)


def _value_losses(c, V, V_old, R, eps_v):
    """PPO's value loss, plain and clipped, in the manifest's conventions."""
    k = c.conv("ppo_value_loss_scale")
    plain = k * ((V - R) ** 2).mean()
    V_clip = V_old + torch.clamp(V - V_old, -eps_v, eps_v)
    if c.conv("ppo_value_clip") == "max" or "ignore_profile_value_clip" in WRONG:
        clipped = k * torch.max((V - R) ** 2, (V_clip - R) ** 2).mean()   # PPO2, CleanRL
    else:
        clipped = k * ((V_clip - R) ** 2).mean()                          # stable-baselines3
    return plain, clipped


@case
def ppo_value_clip(c):
    V = c.net("value")(c.t("obs"))[:, 0]
    c.out("values", V)
    plain, clipped = _value_losses(c, V, c.t("values_old"), c.t("returns"),
                                   c.hp["clip_eps_value"])
    c.out("value_loss", plain)
    c.grad("value_loss", plain, c.params("value"))
    c.out("value_loss_clipped", clipped)
    c.grad("value_loss_clipped", clipped, c.params("value"))


@case
def ppo_objective(c):
    eps, eps_v, c1, c2 = c.hp["clip_eps"], c.hp["clip_eps_value"], c.hp["c1"], c.hp["c2"]
    A = c.t("advantages")
    norm = c.conv("advantage_normalization")
    sample_std = norm["ddof"] == 1 and "ignore_profile_std" not in WRONG
    A = (A - A.mean()) / (A.std(unbiased=sample_std) + norm["eps"])
    c.out("advantages_normalized", A)
    log_prob, H, V = policy_value_outputs(c)
    ratio, surrogate, kl, frac = _ppo_policy_terms(log_prob, c.t("log_prob_old"), A, eps)
    c.out("ratio", ratio)
    _, vl = _value_losses(c, V, c.t("values_old"), c.t("returns"), eps_v)
    obj = surrogate - c1 * vl + c2 * H.mean()                  # J^CLIP', Schulman et al. eq. 9
    c.out("objective", obj)
    c.out("policy_objective", surrogate)
    c.out("value_loss", vl)
    c.out("approx_kl", kl)
    c.out("clip_fraction", frac)
    c.out("entropy_mean", H.mean())
    c.grad("objective", obj, c.params("policy") + c.params("value"))


def _cont(c):
    return (~c.t("terminated")).to(F64)


@case
def ddpg_critic(c):
    g = c.hp["gamma"]
    next_obs = c.t("next_obs")
    mu_next = c.net("target_actor")(next_obs).detach()
    c.out("target_actions", mu_next)
    q_next = critic(c.net("target_critic"), next_obs, mu_next).detach()
    c.out("q_next_target", q_next)
    cont = torch.ones(q_next.shape) if "ddpg_bootstrap_terminal" in WRONG else _cont(c)
    y = c.t("rewards") + g * cont * q_next                     # Lillicrap et al., Algorithm 1
    c.out("y", y)
    q = critic(c.net("critic"), c.t("obs"), c.t("actions"))
    c.out("q", q)
    loss = ((y - q) ** 2).mean()
    c.out("critic_loss", loss)
    c.grad("critic_loss", loss, c.params("critic"))


def _deterministic_actor(c, critic_name):
    obs = c.t("obs")
    Q = c.net(critic_name)
    mu = c.net("actor")(obs)
    c.out("mu", mu)
    obj = critic(Q, obs, mu).mean()
    c.out("objective", obj)
    c.grad("objective", obj, c.params("actor"))
    a = mu.detach().clone().requires_grad_(True)
    c.grad("objective", critic(Q, obs, a).mean(), {"mu": a})


@case
def ddpg_actor(c):
    _deterministic_actor(c, "critic")


@case
def td3_critic(c):
    g, nc, low, high = c.hp["gamma"], c.hp["noise_clip"], c.hp["low"], c.hp["high"]
    next_obs = c.t("next_obs")
    mu_next = c.net("target_actor")(next_obs).detach()
    c.out("target_actions", mu_next)
    a_tilde = torch.clamp(mu_next + torch.clamp(c.t("noise"), -nc, nc), low, high)
    c.out("smoothed_actions", a_tilde)
    q1n = critic(c.net("target_critic1"), next_obs, a_tilde).detach()
    q2n = critic(c.net("target_critic2"), next_obs, a_tilde).detach()
    c.out("q1_next", q1n)
    c.out("q2_next", q2n)
    y = c.t("rewards") + g * _cont(c) * torch.min(q1n, q2n)    # Fujimoto et al., Algorithm 1
    c.out("y", y)
    q1 = critic(c.net("critic1"), c.t("obs"), c.t("actions"))
    q2 = critic(c.net("critic2"), c.t("obs"), c.t("actions"))
    c.out("q1", q1)
    c.out("q2", q2)
    loss = ((y - q1) ** 2).mean() + ((y - q2) ** 2).mean()
    c.out("critic_loss", loss)
    c.grad("critic_loss", loss, c.params("critic1") + c.params("critic2"))


@case
def td3_actor(c):
    _deterministic_actor(c, "critic1")


def _q_loss_scale(c):
    return 0.5 if "ignore_profile_q_half" in WRONG else c.conv("sac_q_loss_scale")


def _box(c, d):
    return (torch.full((d,), float(c.hp["low"])), torch.full((d,), float(c.hp["high"])))


@case
def sac_value(c):
    alpha = c.hp["alpha"]
    obs, eps = c.t("obs"), c.t("eps")
    low, high = _box(c, eps.shape[-1])
    a, logp = squashed_gaussian(c, c.net("policy")(obs), eps, low, high)
    c.out("new_actions", a)
    c.out("log_prob_new", logp)
    q1 = critic(c.net("critic1"), obs, a).detach()
    q2 = critic(c.net("critic2"), obs, a).detach()
    c.out("q1_new", q1)
    c.out("q2_new", q2)
    target = torch.min(q1, q2) - alpha * logp.detach()        # E[Q - alpha log pi], eq. 5
    if "sac_v_target_no_entropy" in WRONG:
        target = torch.min(q1, q2)
    c.out("v_target", target)
    V = c.net("value")(obs)[:, 0]
    c.out("v", V)
    J_V = c.conv("sac_value_loss_scale") * ((V - target) ** 2).mean()
    c.out("J_V", J_V)
    c.grad("J_V", J_V, c.params("value"))


@case
def sac_q(c):
    g = c.hp["gamma"]
    v_next = c.net("target_value")(c.t("next_obs"))[:, 0].detach()
    c.out("v_next", v_next)
    q_hat = c.t("rewards") + g * _cont(c) * v_next              # eq. 8
    c.out("q_hat", q_hat)
    for i in (1, 2):
        q = critic(c.net(f"critic{i}"), c.t("obs"), c.t("actions"))
        c.out(f"q{i}", q)
        J = _q_loss_scale(c) * ((q - q_hat) ** 2).mean()        # eq. 7
        c.out(f"J_Q{i}", J)
        c.grad(f"J_Q{i}", J, c.params(f"critic{i}"))


@case
def sac_policy(c):
    alpha = c.hp["alpha"]
    obs = c.t("obs")
    eps = c.t("eps").requires_grad_(True)
    low, high = _box(c, eps.shape[-1])
    a, logp = squashed_gaussian(c, c.net("policy")(obs), eps, low, high)
    c.out("action", a)
    c.out("log_prob", logp)
    Q1, Q2 = c.net("critic1"), c.net("critic2")
    q_new = torch.min(critic(Q1, obs, a), critic(Q2, obs, a))
    c.out("q_new", q_new)
    J = (alpha * logp - q_new).mean()                          # eq. 12
    c.out("J_pi", J)
    c.grad("J_pi", J, c.params("policy"))
    c.grad("J_pi", J, {"eps": eps})
    a_leaf = a.detach().clone().requires_grad_(True)
    q_mean = torch.min(critic(Q1, obs, a_leaf), critic(Q2, obs, a_leaf)).mean()
    c.out("q_new_mean", q_mean)
    c.grad("q_new_mean", q_mean, {"action": a_leaf})


@case
def sac_q_twin(c):
    g, alpha = c.hp["gamma"], c.hp["alpha"]
    next_obs, eps = c.t("next_obs"), c.t("eps_next")
    low, high = _box(c, eps.shape[-1])
    a_next, logp_next = squashed_gaussian(c, c.net("policy")(next_obs), eps, low, high)
    a_next, logp_next = a_next.detach(), logp_next.detach()
    c.out("next_actions", a_next)
    c.out("log_prob_next", logp_next)
    q1n = critic(c.net("target_critic1"), next_obs, a_next).detach()
    q2n = critic(c.net("target_critic2"), next_obs, a_next).detach()
    c.out("q1_next", q1n)
    c.out("q2_next", q2n)
    y = c.t("rewards") + g * _cont(c) * (torch.min(q1n, q2n) - alpha * logp_next)
    c.out("y", y)
    for i in (1, 2):
        q = critic(c.net(f"critic{i}"), c.t("obs"), c.t("actions"))
        c.out(f"q{i}", q)
        J = _q_loss_scale(c) * ((q - y) ** 2).mean()
        c.out(f"J_Q{i}", J)
        c.grad(f"J_Q{i}", J, c.params(f"critic{i}"))


@case
def sac_temperature(c):
    obs, eps = c.t("obs"), c.t("eps")
    low, high = _box(c, eps.shape[-1])
    _, logp = squashed_gaussian(c, c.net("policy")(obs), eps, low, high)
    logp = logp.detach()
    c.out("log_prob", logp)
    log_alpha = c.leaf("log_alpha")
    if c.conv("temperature_loss") == "alpha" or "ignore_profile_temperature" in WRONG:
        alpha = torch.exp(log_alpha[0])                        # 2018b, eq. 18
    else:
        alpha = log_alpha[0]                                   # stable-baselines3: on log alpha
    J = (-alpha * logp - alpha * c.hp["target_entropy"]).mean()
    c.out("J_alpha", J)
    c.grad("J_alpha", J, ["log_alpha"])


def _layers_with_pre_activations(c, net_name, x):
    """The network's output, each dense layer's input and its pre-activation s = h W + b."""
    inputs, pre, h = [], [], x
    for lay in c.manifest["networks"][net_name]["layers"]:
        inputs.append(h.detach())
        s = h @ c.leaf(lay["W"]) + c.leaf(lay["b"])
        pre.append(s)
        h = ACT[lay["activation"]](s)
    return h, inputs, pre


def _kfac_step(c, net_name, prefix, log_lik, loss, inputs, pre, max_kl, eta_max):
    """K-FAC (Martens & Grosse 2015, sec. 3 and 6.3) written out in torch: A = E[abar abar^T],
    G = E[g g^T] with g the per-sample gradient of log_lik at the pre-activation; damped
    factors by linear solves (minipg uses eigendecompositions); eta (Wu et al. 2017, 3.2)."""
    layers = c.manifest["networks"][net_name]["layers"]
    n = log_lik.shape[0]
    g_rows = torch.autograd.grad(log_lik.sum(), pre, retain_graph=True)
    names = [x for lay in layers for x in (lay["W"], lay["b"])]
    grads = dict(zip(names, torch.autograd.grad(loss, [c.leaf(x) for x in names],
                                                retain_graph=True)))
    gamma = math.sqrt(c.hp["damping"])
    quadratic = torch.zeros((), dtype=F64)
    for i, (lay, a, g) in enumerate(zip(layers, inputs, g_rows)):
        abar = torch.cat([a, torch.ones(n, 1, dtype=F64)], dim=1)
        A, G = abar.T @ abar / n, g.T @ g / n
        c.out(f"{net_name}.layer{i}.A", A)
        c.out(f"{net_name}.layer{i}.G", G)
        pi = torch.sqrt((torch.trace(A) / A.shape[0]) / (torch.trace(G) / G.shape[0]))
        A_d = A + pi * gamma * torch.eye(A.shape[0], dtype=F64)
        G_d = G + gamma / pi * torch.eye(G.shape[0], dtype=F64)
        V = torch.cat([grads[lay["W"]], grads[lay["b"]][None, :]], dim=0)
        D = torch.linalg.solve(G_d, torch.linalg.solve(A_d, V).T).T     # A~^-1 V G~^-1
        c.out(f"{prefix}_direction.{lay['W']}", D[:-1])
        c.out(f"{prefix}_direction.{lay['b']}", D[-1])
        quadratic = quadratic + ((A @ D @ G) * D).sum()
    c.out(f"{prefix}_quadratic", quadratic)
    c.out(f"{prefix}_eta", min(eta_max, math.sqrt(2 * max_kl / float(quadratic))))


@case
def acktr(c):
    obs = c.t("obs")
    logits, inputs, pre = _layers_with_pre_activations(c, "policy", obs)
    fisher_actions = c.t("actions" if "acktr_empirical_fisher" in WRONG else "sampled_actions")
    log_lik = log_softmax_pick(logits, fisher_actions)              # a~ ~ pi: the true Fisher
    A = c.t("advantages")
    loss = -(A * log_softmax_pick(logits, c.t("actions"))).mean() \
        - c.hp["entropy_coef"] * softmax_entropy(logits).mean()
    c.out("actor_loss", loss)
    c.grad("actor_loss", loss, c.params("policy"))
    _kfac_step(c, "policy", "actor", log_lik, loss, inputs, pre, c.hp["max_kl"],
               c.hp["eta_max"])
    out, inputs, pre = _layers_with_pre_activations(c, "value", obs)
    V = out[:, 0]
    y = V.detach() + c.t("critic_noise")                            # targets sampled around V
    log_lik = -0.5 * (y - V) ** 2                                   # log N(y; V, 1) + const
    closs = 0.5 * ((V - c.t("returns")) ** 2).mean()
    c.out("critic_loss", closs)
    c.grad("critic_loss", closs, c.params("value"))
    _kfac_step(c, "value", "critic", log_lik, closs, inputs, pre, c.hp["value_max_kl"],
               c.hp["value_eta_max"])


# ------------------------------------------------------------------ TRPO

def _trpo_policy(c, kind, params):
    """(log pi(a|s), the old-policy quantities' builder) of the case's policy from the
    parameter tensors ``params`` (name -> tensor)."""
    out = Net(c.manifest["networks"]["policy"], params)(c.t("obs"))
    if kind == "categorical":
        logp_all = out - torch.logsumexp(out, dim=-1, keepdim=True)
        return torch.gather(logp_all, -1, c.t("actions").unsqueeze(-1)).squeeze(-1), \
            (logp_all,)
    log_std = params["policy.log_std"]
    z = (c.t("actions") - out) / torch.exp(log_std)
    return (-0.5 * z ** 2 - log_std - 0.5 * LOG_2PI).sum(-1), (out, log_std)


def _trpo_mean_kl(kind, old, new):
    """mean_s KL(pi_old || pi_new), closed form (old held constant)."""
    if kind == "categorical":
        (lp,), (lq,) = old, new
        if "trpo_kl_reversed" in WRONG:
            lp, lq = lq, lp
        return (lp.exp() * (lp - lq)).sum(-1).mean()
    (mp, sp), (mq, sq) = old, new
    if "trpo_kl_reversed" in WRONG:
        (mp, sp), (mq, sq) = (mq, sq), (mp, sp)
    per_dim = sq - sp + (torch.exp(2 * sp) + (mp - mq) ** 2) / (2 * torch.exp(2 * sq)) - 0.5
    return per_dim.sum(-1).mean()


def _trpo(c, kind):
    """Schulman et al. 2015, eq. 14 and Appendix C: F v by double backward of the mean KL,
    CG written out (Hestenes-Stiefel), the step and the KL-checked line search."""
    hp = c.hp
    names = c.params("policy") + (["policy.log_std"] if kind == "gaussian" else [])
    leaves = [c.leaf(n) for n in names]
    shapes = [x.shape for x in leaves]
    sizes = [x.numel() for x in leaves]

    def flat(ts):
        return torch.cat([t.reshape(-1) for t in ts])

    def split(v):
        return dict(zip(names, (p.reshape(s) for p, s in zip(torch.split(v, sizes), shapes))))

    log_prob_old, A = c.t("log_prob_old"), c.t("advantages")
    log_prob, old_terms = _trpo_policy(c, kind, dict(zip(names, leaves)))
    c.out("log_prob", log_prob)
    surrogate = (torch.exp(log_prob - log_prob_old) * A).mean()
    c.out("surrogate", surrogate)
    c.grad("surrogate", surrogate, names)
    g = flat(torch.autograd.grad(surrogate, leaves, retain_graph=True)).detach()
    old = tuple(t.detach() for t in old_terms)

    kl = _trpo_mean_kl(kind, old, old_terms)                      # 0 at theta_old, Hessian F
    grad_kl = flat(torch.autograd.grad(kl, leaves, create_graph=True))

    def fvp(v):                                                   # F v = d(grad_kl . v)
        return flat(torch.autograd.grad((grad_kl * v).sum(), leaves, retain_graph=True))

    for name, value in split(fvp(flat([c.t(f"fvp_vector.{n}") for n in names]))).items():
        c.out(f"fvp.{name}", value)

    def A_of(v):
        return fvp(v) + hp["cg_damping"] * v

    x = torch.zeros_like(g)
    r, p = g.clone(), g.clone()
    rr = r @ r
    for _ in range(hp["cg_iterations"]):
        Ap = A_of(p)
        alpha = rr / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    for name, value in split(x).items():
        c.out(f"cg_solution.{name}", value)
    Ax = A_of(x)
    c.out("cg_residual", torch.linalg.norm(g - Ax))
    xAx = x @ Ax
    c.out("xAx", xAx)
    scale = torch.sqrt(2 * hp["max_kl"] / xAx)
    c.out("step_scale", scale)
    step = scale * x
    for name, value in split(step).items():
        c.out(f"step.{name}", value)

    theta_old = flat(leaves).detach()
    kls, values, fraction, theta_new, kl_new, improvement = [], [], 0.0, theta_old, 0.0, 0.0
    with torch.no_grad():
        for j in range(hp["line_search_max_steps"]):
            f = hp["line_search_shrink"] ** j
            theta = theta_old + f * step
            lp, terms = _trpo_policy(c, kind, split(theta))
            value = (torch.exp(lp - log_prob_old) * A).mean()
            kl_j = _trpo_mean_kl(kind, old, terms)
            kls.append(kl_j)
            values.append(value)
            if kl_j <= hp["max_kl"] and value > surrogate:
                fraction, theta_new, kl_new, improvement = f, theta, kl_j, value - surrogate
                break
    c.out("line_search_kl", torch.stack(kls))
    c.out("line_search_surrogate", torch.stack(values))
    c.out("line_search_fraction", fraction)
    for name, value in split(theta_new).items():
        c.out(f"theta_new.{name}", value)
    c.out("kl", kl_new)
    c.out("surrogate_improvement", improvement)


@case
def trpo_categorical(c):
    _trpo(c, "categorical")


@case
def trpo_gaussian(c):
    _trpo(c, "gaussian")


# --- ACER ---
# Wang et al. 2017 (eqs. 5, 9-14, Algorithms 2-3); Munos et al. 2016.  Q^ret is computed
# here in the document's Delta Q^ret form (an explicit sum of trace-weighted TD errors),
# not by a backward recursion like minipg's kernel.

def acer_retrace_sum(r, q, v, nv, traces, term, trunc, gamma):
    """Q^ret_t = q_t + sum_{k>=t} gamma^(k-t) (prod_{t<i<=k} c_i) delta_k per column,
    delta_k = r_k + gamma B_k - q_k, B_k = 0 (terminated), nv_k (truncated or last step),
    v_{k+1} (otherwise); the sum stops at the episode's or the segment's end."""
    T = r.shape[0]
    out = np.zeros_like(r)
    for j in np.ndindex(r.shape[1:]):
        for t in range(T):
            total, weight = q[(t,) + j], 1.0
            for k in range(t, T):
                if k > t:
                    weight *= gamma * traces[(k,) + j]
                if term[(k,) + j]:
                    boot = 0.0
                elif trunc[(k,) + j] or k == T - 1:
                    boot = nv[(k,) + j]
                else:
                    boot = v[(k + 1,) + j]
                total += weight * (r[(k,) + j] + gamma * boot - q[(k,) + j])
                if term[(k,) + j] or trunc[(k,) + j]:
                    break
            out[(t,) + j] = total
    return out


def acer_projection(g, k, delta):
    """z* = g - max(0, (k.g - delta)/||k||^2) k per row (Wang et al. eq. 13)."""
    scale = torch.clamp((k * g).sum(-1) - delta, min=0.0) / (k * k).sum(-1)
    return g - scale[:, None] * k, scale


@case
def acer_retrace(c):
    rho = c.t("pi_taken") / c.t("mu_taken")
    traces = torch.clamp(rho, max=1.0)
    c.out("rho", rho)
    c.out("traces", traces)
    c.out("q_ret", acer_retrace_sum(c.np("rewards"), c.np("q"), c.np("values"),
                                    c.np("next_values"), traces.numpy(), c.np("terminated"),
                                    c.np("truncated"), c.hp["gamma"]))


@case
def acer_discrete(c):
    cc, delta, beta = c.hp["c"], c.hp["delta"], c.hp["entropy_coef"]
    a, mu, q_ret = c.t("actions"), c.t("mu_probs"), c.t("q_ret")
    f = torch.softmax(c.net("policy")(c.t("obs")), dim=-1)
    q_all = c.net("critic")(c.t("obs"))
    fd, qd = f.detach(), q_all.detach()
    V = (fd * qd).sum(-1)
    rho_all = fd / mu
    rho = rho_all.gather(-1, a[:, None])[:, 0]
    for name, value in (("probs", f), ("q", q_all), ("values", V), ("rho", rho)):
        c.out(name, value)
    leaf = fd.clone().requires_grad_(True)
    log_f = torch.log(leaf)
    truncated = torch.clamp(rho, max=cc) * (q_ret - V) * log_f.gather(-1, a[:, None])[:, 0]
    weight = torch.clamp(1.0 - cc / rho_all, min=0.0) * fd * (qd - V[:, None])
    if "acer_no_correction" in WRONG:
        weight = torch.zeros_like(weight)
    correction = (weight * log_f).sum(-1)
    c.out("truncated", truncated)
    c.out("correction", correction)
    entropy = -(leaf * log_f).sum(-1)
    (g,) = torch.autograd.grad((truncated + correction + beta * entropy).sum(), leaf)
    c.out("g", g)
    k = -c.t("avg_probs") / fd                                 # d KL(f_avg || f) / d f
    c.out("k", k)
    z, scale = acer_projection(g, k, delta)
    c.out("trust_region_scale", scale)
    c.out("z", z)
    surrogate = (z * f).sum() / f.shape[0]
    c.out("surrogate", surrogate)
    c.grad("surrogate", surrogate, c.params("policy"))
    critic_loss = 0.5 * ((q_ret - q_all.gather(-1, a[:, None])[:, 0]) ** 2).mean()
    c.out("critic_loss", critic_loss)
    c.grad("critic_loss", critic_loss, c.params("critic"))


def _gauss_log_prob(x, mean, log_std):
    return (-0.5 * ((x - mean) / torch.exp(log_std)) ** 2 - log_std - 0.5 * LOG_2PI).sum(-1)


@case
def acer_continuous(c):
    hp = c.hp
    cc, delta, beta, gamma, T, B = (hp[k] for k in ("c", "delta", "entropy_coef", "gamma", "T",
                                                    "B"))
    obs, actions, sampled, u = c.t("obs"), c.t("actions"), c.t("sampled"), c.t("u")
    N, d = actions.shape
    mean = c.net("policy")(obs)
    log_std = c.leaf("policy.log_std")
    stats = torch.cat([mean, log_std.expand(N, d)], dim=-1)
    md, sd = mean.detach(), log_std.detach().expand(N, d)
    mu_m, mu_s = c.t("mu_mean"), c.t("mu_log_std")
    rho = torch.exp(_gauss_log_prob(actions, md, sd) - _gauss_log_prob(actions, mu_m, mu_s))
    rho_s = torch.exp(_gauss_log_prob(sampled, md, sd) - _gauss_log_prob(sampled, mu_m, mu_s))
    traces = torch.clamp(rho ** (1.0 / d), max=1.0)
    c.out("rho", rho)
    c.out("rho_sampled", rho_s)
    c.out("traces", traces)
    V = c.net("value")(obs)[:, 0]
    adv = c.net("advantage")
    A_taken = adv(torch.cat([obs, actions], -1))[:, 0]
    A_u = adv(torch.cat([obs.expand(u.shape[0], N, obs.shape[1]), u], -1))[..., 0]
    q_tilde = V + A_taken - A_u.mean(0)                      # eq. 14
    q_sampled = (V + adv(torch.cat([obs, sampled], -1))[:, 0] - A_u.mean(0)).detach()
    c.out("values", V)
    c.out("q_tilde", q_tilde)
    c.out("q_sampled", q_sampled)
    Vd, qd = V.detach().numpy(), q_tilde.detach().numpy()
    args = (c.np("rewards"), qd.reshape(T, B), Vd.reshape(T, B), c.np("next_values"))
    flags = (c.np("terminated"), c.np("truncated"), gamma)
    q_ret = torch.tensor(acer_retrace_sum(*args, traces.numpy().reshape(T, B), *flags)
                         .reshape(N))
    q_opc = torch.tensor(acer_retrace_sum(*args, np.ones((T, B)), *flags).reshape(N))
    c.out("q_ret", q_ret)
    c.out("q_opc", q_opc)
    leaf = stats.detach().clone().requires_grad_(True)
    lm, ls = leaf[:, :d], leaf[:, d:]
    Vt = V.detach()
    gain = (torch.clamp(rho, max=cc) * (q_opc - Vt) * _gauss_log_prob(actions, lm, ls)
            + torch.clamp(1.0 - cc / rho_s, min=0.0) * (q_sampled - Vt)
            * _gauss_log_prob(sampled, lm, ls))
    entropy = ls.sum(-1) + d * 0.5 * (1.0 + LOG_2PI)
    (g,) = torch.autograd.grad((gain + beta * entropy).sum(), leaf)
    c.out("g", g)
    var = torch.exp(2 * sd)
    am, asd = c.t("avg_mean"), c.t("avg_log_std")
    k = torch.cat([(md - am) / var, 1.0 - (torch.exp(2 * asd) + (am - md) ** 2) / var], -1)
    c.out("k", k)
    z, scale = acer_projection(g, k, delta)
    c.out("trust_region_scale", scale)
    c.out("z", z)
    surrogate = (z * stats).sum() / N
    c.out("surrogate", surrogate)
    c.grad("surrogate", surrogate, c.params("policy") + ["policy.log_std"])
    v_target = Vt + traces * (q_ret - q_tilde.detach())
    c.out("v_target", v_target)
    critic_loss = 0.5 * ((q_ret - q_tilde) ** 2).mean() + 0.5 * ((v_target - V) ** 2).mean()
    c.out("critic_loss", critic_loss)
    c.grad("critic_loss", critic_loss, c.params("value") + c.params("advantage"))
# --- end ACER ---


# --- A3C ---------------------------------------------------------------------------------
# One worker's segment (Weng, "A3C", steps 5-6; Mnih et al. 2016, Algorithm S3): the
# returns R_i = r_i + gamma R_{i+1} from R = 0 (terminal) or V(s_t), and the summed loss
# whose gradients are -d theta and d w.

def _a3c_segment(c):
    g, beta = c.hp["gamma"], c.hp["entropy_coef"]
    rewards, term = c.np("rewards"), c.np("terminated")
    with torch.no_grad():
        bootstrap = c.net("value")(c.t("bootstrap_obs"))[:, 0]
    c.out("bootstrap_value", bootstrap)
    R = 0.0 if term[-1] else float(bootstrap[0])
    returns = np.zeros_like(rewards)
    for i in reversed(range(len(rewards))):            # for i = t-1 .. t_start
        R = rewards[i] + g * R
        returns[i] = R
    c.out("returns", returns)
    log_prob, H, V = policy_value_outputs(c)
    A = (torch.tensor(returns) - V).detach()
    c.out("advantages", A)
    loss = -(A * log_prob).sum() + ((torch.tensor(returns) - V) ** 2).sum() - beta * H.sum()
    c.out("loss", loss)
    c.grad("loss", loss, c.params("policy") + c.params("value"))


@case
def a3c_segment_terminal(c):
    _a3c_segment(c)


@case
def a3c_segment_bootstrap(c):
    _a3c_segment(c)


# --- D4PG ---------------------------------------------------------------------------------
# Barth-Maron et al. 2018, Algorithm 1; Bellemare et al. 2017 (the projection, in the robust
# form of verification/FORMULAS.md "Losses/C51/D4PG projection", written densely here).

NEGATIVE_CONTROLS.append(("d4pg_floor_ceil_projection", "d4pg_projection", "minipg",
                          "textbook floor/ceil projection (loses an atom landing on a "
                          "support point)"))


def _d4pg_atoms(c):
    return torch.linspace(c.hp["v_min"], c.hp["v_max"], c.hp["n_atoms"], dtype=F64)


def _d4pg_project(c, probs, rewards, discounts):
    """m_i = sum_j p_j clip(1 - |clip(r + d z_j) - z_i| / dz, 0, 1)."""
    z = _d4pg_atoms(c)
    v_min, v_max = c.hp["v_min"], c.hp["v_max"]
    dz = (v_max - v_min) / (c.hp["n_atoms"] - 1)
    tz = torch.clamp(rewards[:, None] + discounts[:, None] * z[None, :], v_min, v_max)
    if "d4pg_floor_ceil_projection" in WRONG:
        b = (tz - v_min) / dz
        lo, up = torch.floor(b), torch.ceil(b)
        onehot = lambda k: torch.nn.functional.one_hot(k.long(), len(z)).to(F64)  # noqa: E731
        w = onehot(lo) * (up - b)[..., None] + onehot(up) * (b - lo)[..., None]
    else:
        w = torch.clamp(1.0 - (tz[:, :, None] - z[None, None, :]).abs() / dz, 0.0, 1.0)
    return (probs[:, :, None] * w).sum(1)


@case
def d4pg_projection(c):
    z = _d4pg_atoms(c)
    c.out("atoms", z)
    m = _d4pg_project(c, c.t("probs"), c.t("rewards"), c.t("discounts"))
    c.out("projected", m)
    c.out("projected_mean", m @ z)


@case
def d4pg_nstep_target(c):
    g, N = c.hp["gamma"], c.hp["n_step"]
    r, term, trunc = c.np("rewards"), c.np("terminated"), c.np("truncated")
    returns, n_steps, discounts = [], [], []
    for b in range(r.shape[0]):
        total, k = 0.0, 0
        while k < N:
            total += g ** k * r[b, k]
            k += 1
            if term[b, k - 1] or trunc[b, k - 1]:
                break
        returns.append(total)
        n_steps.append(k)
        discounts.append(0.0 if term[b, k - 1] else g ** k)
    returns, discounts = torch.tensor(returns), torch.tensor(discounts)
    c.out("atoms", _d4pg_atoms(c))
    c.out("returns", returns)
    c.out("n_steps", np.array(n_steps, dtype=np.int64))
    c.out("bootstrap_discounts", discounts)
    next_obs = c.t("next_obs")
    mu = c.net("target_actor")(next_obs)
    c.out("target_actions", mu)
    probs = torch.softmax(c.net("target_critic")(torch.cat([next_obs, mu], -1)), -1)
    c.out("next_probs", probs)
    target = _d4pg_project(c, probs, returns, discounts)
    c.out("target", target)
    c.out("target_mean", target @ _d4pg_atoms(c))


@case
def d4pg_critic(c):
    c.out("atoms", _d4pg_atoms(c))
    logits = c.net("critic")(torch.cat([c.t("obs"), c.t("actions")], -1))
    c.out("logits", logits)
    ce = -(c.t("target") * torch.log_softmax(logits, -1)).sum(-1)
    c.out("cross_entropies", ce)
    loss = (c.t("weights") * ce).mean()
    c.out("critic_loss", loss)
    c.grad("critic_loss", loss, c.params("critic"))


@case
def d4pg_actor(c):
    z = _d4pg_atoms(c)
    c.out("atoms", z)
    obs = c.t("obs")
    Z = c.net("critic")
    mu = c.net("actor")(obs)
    c.out("mu", mu)
    q = torch.softmax(Z(torch.cat([obs, mu], -1)), -1) @ z          # E[Z(x, mu(x))]
    c.out("q", q)
    c.out("objective", q.mean())
    c.grad("objective", q.mean(), c.params("actor"))
    a = mu.detach().clone().requires_grad_(True)
    c.grad("objective", (torch.softmax(Z(torch.cat([obs, a], -1)), -1) @ z).mean(), {"mu": a})


# --- end of D4PG ---------------------------------------------------------------------------


# --- MADDPG ---------------------------------------------------------------------------
# Lowe et al. 2017, section 4: centralized critic Q_1(concat(o_1, o_2, a_1, a_2)); the
# Gumbel-softmax relaxed action softmax((l + g) / T) (Jang et al. 2017, eq. 2).

def gumbel_softmax_torch(logits, noise, T):
    return torch.softmax((logits + noise) / T, dim=-1)


def joint_q(net, obs, actions):
    """Q(concat(o_1..o_N, a_1..a_N))[:, 0], agent order, observations first."""
    return net(torch.cat(list(obs) + list(actions), dim=-1))[..., 0]


@case
def maddpg_critic(c):
    g, T = c.hp["gamma"], c.hp["temperature"]
    next_obs = [c.t("next_obs_1"), c.t("next_obs_2")]
    a_next = [gumbel_softmax_torch(c.net(f"target_actor_{j}")(next_obs[j - 1]),
                                   c.t(f"next_noise_{j}"), T).detach() for j in (1, 2)]
    if "maddpg_replayed_next_actions" in WRONG:
        a_next = [c.t("actions_1"), c.t("actions_2")]
    for j in (1, 2):
        c.out(f"target_actions_{j}", a_next[j - 1])
    q_next = joint_q(c.net("target_critic"), next_obs, a_next).detach()
    c.out("q_next_target", q_next)
    y = c.t("rewards_1") + g * _cont(c) * q_next
    c.out("y", y)
    q = joint_q(c.net("critic"), [c.t("obs_1"), c.t("obs_2")],
                [c.t("actions_1"), c.t("actions_2")])
    c.out("q", q)
    loss = ((q - y) ** 2).mean()
    c.out("critic_loss", loss)
    c.grad("critic_loss", loss, c.params("critic"))


@case
def maddpg_actor(c):
    T = c.hp["temperature"]
    obs = [c.t("obs_1"), c.t("obs_2")]
    a1 = gumbel_softmax_torch(c.net("actor_1")(obs[0]), c.t("noise_1"), T)
    c.out("a_1", a1)
    Q = c.net("critic")
    objective = joint_q(Q, obs, [a1, c.t("actions_2")]).mean()     # a_2 as replayed
    c.out("objective", objective)
    c.grad("objective", objective, c.params("actor_1"))
    leaf = a1.detach().clone().requires_grad_(True)
    c.grad("objective", joint_q(Q, obs, [leaf, c.t("actions_2")]).mean(), {"a_1": leaf})
    logits = c.net("actor_1")(obs[0])
    actor_loss = -objective + c.hp["policy_reg"] * (logits ** 2).mean()
    c.out("actor_loss", actor_loss)
    c.grad("actor_loss", actor_loss, c.params("actor_1"))


@case
def gumbel_softmax(c):
    logits = c.t("logits").clone().requires_grad_(True)
    y = gumbel_softmax_torch(logits, c.t("noise"), c.hp["temperature"])
    c.out("y", y)
    weighted = (y * c.t("weights")).sum()
    c.out("weighted", weighted)
    c.grad("weighted", weighted, {"logits": logits})


@case
def maddpg_approximate_policy(c):
    logits = c.net("approx")(c.t("obs_2"))
    log_prob = log_softmax_pick(logits, c.t("actions_2"))
    H = softmax_entropy(logits)
    c.out("log_prob", log_prob)
    c.out("entropy", H)
    loss = -(log_prob.mean() + c.hp["entropy_coef"] * H.mean())     # Lowe et al., eq. 7
    c.out("loss", loss)
    c.grad("loss", loss, c.params("approx"))
# --- end MADDPG -----------------------------------------------------------------------


# ------------------------------------------------------------------ main

def torch_case(name):
    """The torch function for a case (``discounted_returns`` is named ..._case here)."""
    return CASES.get(name) or CASES[f"{name}_case"]


PROFILES = ("minipg", "sb3", "cleanrl")


def results_markdown(results, controls, elapsed):
    """RESULTS.md: per profile a per-case table, the negative controls, every array (minipg)."""
    import numpy
    n_arrays = sum(len(rows) for rows, _ in results.values())
    worst = max((r.max_rel for rows, _ in results.values() for r in rows
                 if r.checked and not math.isnan(r.max_rel)), default=0.0)
    lines = [
        "# Reference outputs: minipg against an independent PyTorch implementation",
        "",
        "Produced by `python verification/crosscheck_torch.py` (issue 7; profiles and float32",
        "inputs: issue 12).  The script reads the inputs of every `minipg reference` case,",
        "recomputes every output and gradient with an independent PyTorch float64",
        "implementation written from the formulas (torch.autograd; no minipg estimator,",
        "distribution, kernel or autodiff is called), writes them in the same format and",
        "compares with `minipg reference --check` (tolerances from the manifests; see",
        "`SCHEMA.md`).  Goal: at most 1e-10 relative error for every case, in every profile.",
        "",
        "Each profile (`--profile minipg`, `sb3`, `cleanrl`) is written and checked: the torch",
        "code reads the conventions each manifest states and implements each one itself.",
        "Every float input and parameter is cast to float32 and back before use, as an",
        "implementation storing float32 observations and weights does; the cast is exact",
        "(checked), so the comparison is the same as with the float64 files.",
        "",
        f"minipg {MINIPG_VERSION}, torch {torch.__version__}, numpy {numpy.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()}; "
        f"{n_arrays} arrays compared over {len(results)} profiles in {elapsed:.1f} s; "
        f"worst relative error {worst:.2e}.",
        "",
        "Relative error of an entry: |b - a| / max(|a|, |b|) (0 when both are 0); the worst",
        "over every output and gradient entry of the case.",
        "",
    ]
    for profile, (rows, notes) in results.items():
        cases = reference.summarize(rows)
        lines += [f"## Per case, profile `{profile}`", "",
                  f"{sum(r.passed for r in rows if r.checked)}/{sum(r.checked for r in rows)} "
                  f"arrays agree; {sum(c[4] for c in cases)}/{len(cases)} cases pass.", "",
                  reference.format_summary(rows, markdown=True), ""]
        if notes:
            lines += [f"note: {n}" for n in notes] + [""]
    lines += ["## Negative controls", "",
              "Deliberately wrong variants of the torch implementation, each run on its case and",
              "compared by the same check: every one must be rejected.  The last ones apply",
              "minipg's convention where the manifest states another profile's.", "",
              format_controls(controls, markdown=True), ""]
    rows, _ = results.get("minipg", next(iter(results.values())))
    compared = [r for r in rows if r.checked and (r.role in ("output", "gradient")
                                                  or not r.passed)]
    lines += ["## Every output and gradient (profile `minipg`)", "",
              "(Inputs and parameters are copied, and compare with error 0.)", "",
              reference.format_table(compared, markdown=True), ""]
    return "\n".join(lines)


def crosscheck(ref, out):
    """The torch outputs of every case of the reference directory ``ref``, checked."""
    names = sorted(d.name for d in Path(ref).iterdir() if (d / "manifest.json").exists())
    for name in names:
        ctx = Ctx(ref, name)
        torch_case(name)(ctx)
        ctx.save(out)
    return reference.check(ref, out)


def main(argv=None):
    import time
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", default=None, help="an existing minipg reference directory, "
                   "checked in its own profile (default: write a fresh one per profile)")
    p.add_argument("--profiles", nargs="+", choices=PROFILES, default=list(PROFILES),
                   help="the profiles to write and check (default: all)")
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="keep the references in DIR/<profile>/minipg and the torch outputs in "
                        "DIR/<profile>/torch")
    p.add_argument("--results", default=str(ROOT / "verification" / "reference" / "RESULTS.md"),
                   help="where to write the results table ('-' for none)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        if args.ref:
            profile = json.loads(next(Path(args.ref).glob("*/manifest.json")).read_text()).get(
                "profile", "minipg")
            results[profile] = crosscheck(Path(args.ref), base / profile / "torch")
        else:
            for profile in args.profiles:
                ref = base / profile / "minipg"
                reference.write(ref, profile=profile)
                results[profile] = crosscheck(ref, base / profile / "torch")
        controls = run_negative_controls(base / "controls")
        elapsed = time.perf_counter() - start
        for profile, (rows, notes) in results.items():
            print(f"== profile {profile}")
            print(reference.report(rows, notes))
            print()
        print(format_controls(controls))
        if args.results != "-":
            Path(args.results).parent.mkdir(parents=True, exist_ok=True)
            Path(args.results).write_text(results_markdown(results, controls, elapsed))
            print(f"wrote {args.results}")
    ok = all(r.passed for rows, _ in results.values() for r in rows) and \
        all(not c["passed"] for c in controls)
    return 0 if ok else 1


def run_negative_controls(out):
    """Run each deliberately wrong variant on its case; the check must reject every one."""
    results = []
    for key, name, profile, what in NEGATIVE_CONTROLS:
        ref = Path(out) / profile / "minipg"
        if not (ref / name).exists():
            reference.write(ref, only=[name], profile=profile)
        WRONG.clear()
        WRONG.add(key)
        try:
            ctx = Ctx(ref, name)
            torch_case(name)(ctx)
            ctx.save(Path(out) / "wrong" / key)
        finally:
            WRONG.clear()
        rows, _ = reference.check(ref, Path(out) / "wrong" / key, only=[name])
        bad = [r for r in rows if not r.passed]
        worst = max(bad, key=lambda r: r.max_rel) if bad else None
        results.append(dict(control=key, case=name, profile=profile, what=what,
                            passed=not bad, failed_arrays=len(bad), worst=worst))
    return results


def format_controls(controls, markdown=False):
    header = ("negative control", "case", "profile", "arrays failing", "worst array",
              "its rel err", "check says")
    body = [(c["control"] + (f" ({c['what']})" if markdown else ""), c["case"], c["profile"],
             str(c["failed_arrays"]), c["worst"].array if c["worst"] else "-",
             f"{c['worst'].max_rel:.2e}" if c["worst"] else "-",
             "FAIL (rejected, as it must)" if not c["passed"] else "PASS (NOT rejected!)")
            for c in controls]
    return reference.render_table(header, body, markdown)


if __name__ == "__main__":
    sys.exit(main())
