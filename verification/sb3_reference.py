r"""Stock stable-baselines3 against ``minipg reference --profile sb3``: weights copied, nothing else.

What it shows (issue 12, "reference outputs another implementation can use as
they are"): for every reference case of PPO, A2C, SAC, TD3 and DDPG, this
script writes the case in the ``sb3`` convention profile, builds a STOCK
stable-baselines3 model (``PPO``, ``A2C``, ``SAC``, ``TD3``, ``DDPG`` with
``MlpPolicy`` and the case's layer sizes and activation), copies ONLY the
weights from the case's parameter arrays, fills SB3's rollout or replay buffer
with the case's inputs, runs SB3's own ``train()`` once (one gradient step on
the full batch; learning rate 0 and ``tau = 0`` so that the step and the
target update change nothing; ``max_grad_norm = 1e30``, so that
``clip_grad_norm_`` multiplies by exactly 1), captures what SB3 computed,
writes it as a second reference directory in the same format (with the
weights read back from SB3's modules after the step), and runs minipg's
checker (``present_only=True``) on the arrays SB3 produced.  Arrays SB3 does
not compute are absent from its directory and listed as unchecked with the
reason -- never counted as passed.  A negative control runs SB3 the same way
on the ``minipg``-profile cases whose conventions differ: they must fail.

How SB3's numbers are read, without changing SB3's code:

* parameter gradients: a ``register_step_pre_hook`` on each optimizer copies
  every ``.grad`` at the moment of ``step()`` (in SAC and TD3 the actor's
  backward later adds into the critics' ``.grad``, so reading ``.grad`` after
  ``train()`` would be wrong);
* losses and intermediates: ``sys.settrace`` on the frame of SB3's ``train``
  records every value each local variable takes (``ratio``, ``advantages``,
  ``target_q_values``, ``next_q_values``, ...); forward hooks on the actors
  record their outputs, and tensor hooks record the gradient SB3's backward
  sends into an action (``grad.objective.mu``, the critics' action gradient);
* the rows the rollout buffer permutes are put back in order with the indices
  ``RolloutBuffer._get_samples`` received (recorded, SB3's call unchanged);
  the replay buffer is read in order with SB3's own ``_get_samples(arange(N))``
  (``sample`` draws with replacement);
* sampled randomness is an input of the case: SAC's standard-normal draws
  (``torch.distributions.normal._standard_normal``, called by
  ``Normal.rsample``) and TD3's smoothing noise (``Tensor.normal_``) return the
  case's ``eps`` / ``noise`` while ``train()`` runs; SB3's own arithmetic
  (``loc + eps * scale``, the clamps) is untouched.

The one change to SB3's computation: SB3 casts Box observations to float32
(``preprocess_obs`` returns ``obs.float()``); the name ``preprocess_obs`` in
``stable_baselines3.common.policies`` is wrapped so that its float32 result is
cast back to float64.  SB3's cast still happens, so this is exact only because
every reference input is a float32 number (the point of issue 12); it is a
dtype cast, no mathematics.  Everything else runs in float64
(``torch.set_default_dtype(torch.float64)`` before the models are built).

torch and stable-baselines3 are optional; minipg itself never imports them.

Run (about 5 s)::

    python verification/sb3_reference.py               # writes results/sb3_reference.md
    python verification/sb3_reference.py --keep DIR    # also keeps DIR/sb3-profile and DIR/sb3

Exit status 0 only if every array SB3 produced agrees.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minipg import __version__ as MINIPG_VERSION  # noqa: E402
from minipg import reference  # noqa: E402  (writing the cases, file format, checker)

PROFILE = "sb3"
BIG_NORM = 1e30            # max_grad_norm: clip_grad_norm_ multiplies by min(1, 1e30/norm) = 1.0


# ---------------------------------------------------------------- optional imports

def _imports():
    try:
        import gymnasium
        import stable_baselines3
        import torch
    except ImportError as exc:          # pragma: no cover - depends on the machine
        raise SystemExit(f"sb3_reference.py needs torch, gymnasium and stable-baselines3 "
                         f"({exc})") from None
    return torch, gymnasium, stable_baselines3


torch, gym, sb3 = _imports()
import torch.nn.functional as F  # noqa: E402
from gymnasium import spaces  # noqa: E402
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3  # noqa: E402
from stable_baselines3.common import policies as sb3_policies  # noqa: E402
from stable_baselines3.common.logger import Logger  # noqa: E402

torch.set_default_dtype(torch.float64)
F64 = torch.float64


# ---------------------------------------------------------------- the one dtype shim

_ORIGINAL_PREPROCESS = sb3_policies.preprocess_obs


def _preprocess_obs_float64(obs, observation_space, normalize_images=True):
    """SB3's preprocess_obs (which returns ``obs.float()``), its result cast back to float64."""
    out = _ORIGINAL_PREPROCESS(obs, observation_space, normalize_images=normalize_images)
    return out.to(F64)


sb3_policies.preprocess_obs = _preprocess_obs_float64


# ---------------------------------------------------------------- observation tools

class LocalsRecorder:
    """Records every value each local variable of one function takes while it runs.

    ``sys.settrace`` with a local trace function for the frames of ``code``
    only; at every line event (and at return) each local that holds a tensor,
    a tuple of tensors or a number is copied when it is a new object.
    ``history[name]`` is the list of values in the order they were assigned.
    """

    def __init__(self, function):
        self.code = getattr(function, "__code__", None) or function.__func__.__code__
        self.history = {}
        self._last = {}

    def _take(self, frame):
        for name, value in frame.f_locals.items():
            if self._last.get(name, None) is value:
                continue
            copy = _snapshot(value)
            if copy is None:
                continue
            self._last[name] = value
            self.history.setdefault(name, []).append(copy)

    def _local(self, frame, event, arg):
        if event in ("line", "return"):
            self._take(frame)
        return self._local

    def _global(self, frame, event, arg):
        if event == "call" and frame.f_code is self.code:
            return self._local
        return None

    def __enter__(self):
        self._previous = sys.gettrace()
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc):
        sys.settrace(self._previous)
        return False

    def last(self, name):
        return self.history[name][-1]

    def first(self, name):
        return self.history[name][0]


def _snapshot(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple) and value and all(isinstance(v, torch.Tensor) for v in value):
        return tuple(v.detach().clone() for v in value)
    if isinstance(value, (float, np.floating)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.ndim == 0:
        return float(value)
    return None


class GradSnapshots:
    """A step pre-hook on each optimizer: the ``.grad`` of every parameter at ``step()``."""

    def __init__(self, **optimizers):
        self.grads = {}                  # optimizer label -> {id(param): grad copy}
        self._handles = []
        for label, opt in optimizers.items():
            self._handles.append(opt.register_step_pre_hook(self._hook(label)))

    def _hook(self, label):
        def hook(opt, args, kwargs):
            self.grads[label] = {id(p): (None if p.grad is None else p.grad.detach().clone())
                                 for group in opt.param_groups for p in group["params"]}
        return hook

    def of(self, label, param):
        g = self.grads[label][id(param)]
        return torch.zeros_like(param) if g is None else g

    def remove(self):
        for h in self._handles:
            h.remove()


class OutputRecorder:
    """Forward hook: the outputs of a module (and, when they need a gradient, that gradient)."""

    def __init__(self, module, input_grad=False):
        self.outputs, self.output_grads, self.input_grads = [], [], []
        self._input_grad = input_grad
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        k = len(self.outputs)
        self.outputs.append(output.detach().clone())
        self.output_grads.append(None)
        self.input_grads.append(None)
        if output.requires_grad:
            output.register_hook(lambda g, k=k: self.output_grads.__setitem__(k, g.detach().clone()))
        x = inputs[0]
        if self._input_grad and isinstance(x, torch.Tensor) and x.requires_grad:
            x.register_hook(lambda g, k=k: self.input_grads.__setitem__(k, g.detach().clone()))

    def remove(self):
        self._handle.remove()


@contextlib.contextmanager
def standard_normals(draws, leaf_index=None):
    """``Normal.rsample``'s standard-normal draws return ``draws[0]``, ``draws[1]``, ... in order.

    The draw ``leaf_index`` is returned as a leaf that requires grad, so that
    autograd reports the derivative of SB3's loss with respect to it.
    """
    import torch.distributions.normal as normal_module
    original = normal_module._standard_normal
    leaves, calls = {}, [0]

    def draw(shape, dtype, device):
        k = calls[0]
        calls[0] += 1
        e = torch.as_tensor(np.asarray(draws[k]), dtype=dtype, device=device)
        if tuple(e.shape) != tuple(shape):
            raise RuntimeError(f"standard-normal draw {k}: SB3 asks for {tuple(shape)}, the case "
                               f"has {tuple(e.shape)}")
        if k == leaf_index:
            e = e.clone().requires_grad_(True)
            leaves[k] = e
        return e

    normal_module._standard_normal = draw
    try:
        yield leaves
    finally:
        normal_module._standard_normal = original
    if calls[0] != len(draws):
        raise RuntimeError(f"SB3 drew {calls[0]} standard-normal batches, the case has "
                           f"{len(draws)}")


@contextlib.contextmanager
def smoothing_noise(noise, std):
    """TD3's ``tensor.normal_(0, target_policy_noise)`` fills the tensor with the case's noise."""
    original = torch.Tensor.normal_
    calls = [0]

    def fill(self, mean=0.0, sd=1.0, *args, **kwargs):
        if mean != 0.0 or abs(sd - std) > 1e-15 * std:
            raise RuntimeError(f"normal_({mean}, {sd}): expected normal_(0, {std})")
        calls[0] += 1
        with torch.no_grad():
            self.copy_(torch.as_tensor(noise, dtype=self.dtype))
        return self

    torch.Tensor.normal_ = fill
    try:
        yield
    finally:
        torch.Tensor.normal_ = original
    if calls[0] != 1:
        raise RuntimeError(f"TD3 drew smoothing noise {calls[0]} times, expected once")


# ---------------------------------------------------------------- models

class CaseEnv(gym.Env):
    """A do-nothing environment that only carries the case's observation and action spaces."""

    def __init__(self, obs_dim, action_space):
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape), 0.0, False, False, {}


ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


def layout(manifest, net):
    """(sizes, hidden activation, output activation) of a network of the manifest."""
    spec = manifest["networks"][net]
    acts = [layer["activation"] for layer in spec["layers"]]
    hidden = set(acts[:-1])
    if len(hidden) > 1:
        raise ValueError(f"{net}: mixed hidden activations {acts}")
    return spec["sizes"], (acts[0] if len(acts) > 1 else "identity"), acts[-1]


def _quiet_logger():
    return Logger(folder=None, output_formats=[])


#: the models built for the current case, as ``Class('MlpPolicy', env, settings)`` text
MODELS = []


def _describe(value):
    if isinstance(value, type):
        return (f"nn.{value.__name__}" if issubclass(value, torch.nn.Module)
                else f"{value.__module__}.{value.__name__}")
    if isinstance(value, dict):
        return "dict(" + ", ".join(f"{k}={_describe(v)}" for k, v in value.items()) + ")"
    return repr(value)


def _make(cls, env, settings):
    """A stock SB3 model (MlpPolicy, CPU), its settings recorded for the results."""
    space = env.action_space
    space = (f"Discrete({space.n})" if isinstance(space, spaces.Discrete)
             else f"Box({space.low[0]:g}, {space.high[0]:g}, {space.shape})")
    MODELS.append(f"{cls.__name__}('MlpPolicy', obs Box{env.observation_space.shape}, "
                  f"actions {space}, " + ", ".join(f"{k}={_describe(v)}"
                                                    for k, v in settings.items()) + ")")
    model = cls("MlpPolicy", env, device="cpu", seed=0, **settings)
    model.set_logger(_quiet_logger())
    dtypes = {p.dtype for p in model.policy.parameters()}
    if dtypes != {F64}:
        raise RuntimeError(f"SB3 built parameters of dtype {dtypes}, expected float64")
    return model


def _t(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


#: the parameters copied into SB3 for the current case: array name -> a function that reads the
#: tensor back from SB3's module after train() (checked like any array: that the weights SB3
#: ran with, and still holds after its lr-0 step, are the case's, transposed and split rightly)
BOUND = {}


def bind(name, read):
    BOUND[name] = read


def copy_linear(linear, W, b, names=None, cols=None):
    """torch Linear from minipg's layer: weight = W.T, bias = b (W has shape (n_in, n_out))."""
    W, b = np.asarray(W), np.asarray(b)
    if tuple(linear.weight.shape) != (W.shape[1], W.shape[0]):
        raise ValueError(f"Linear {tuple(linear.weight.shape)} vs W {W.shape}")
    with torch.no_grad():
        linear.weight.copy_(_t(W.T))
        linear.bias.copy_(_t(b))
    if names is not None:
        bind(names[0], lambda: _np(linear.weight).T)
        bind(names[1], lambda: _np(linear.bias))


def linears(seq):
    return [m for m in seq if isinstance(m, torch.nn.Linear)]


def copy_mlp(layers_torch, manifest, arrays, net):
    """Copy every layer of manifest network ``net`` into the given torch Linear layers."""
    spec = manifest["networks"][net]["layers"]
    if len(spec) != len(layers_torch):
        raise ValueError(f"{net}: {len(spec)} layers in the case, {len(layers_torch)} in SB3")
    for layer, lin in zip(spec, layers_torch):
        copy_linear(lin, arrays[layer["W"]], arrays[layer["b"]], (layer["W"], layer["b"]))


def grad_mlp(out, snaps, label, layers_torch, manifest, net, sign=1.0):
    """grad.<of>.<net>.layer<i>.{W,b} from the snapshot of SB3's optimizer ``label``."""
    for layer, lin in zip(manifest["networks"][net]["layers"], layers_torch):
        out[layer["W"]] = sign * snaps.of(label, lin.weight).numpy().T
        out[layer["b"]] = sign * snaps.of(label, lin.bias).numpy()


def _np(x):
    return x.detach().cpu().numpy().astype(np.float64) if isinstance(x, torch.Tensor) else \
        np.asarray(x, dtype=np.float64)


def _hp(manifest, *names, default=None):
    hp = manifest["hyperparameters"]
    for n in names:
        if n in hp:
            return hp[n]
    return default


# ---------------------------------------------------------------- on-policy: PPO and A2C

def _onpolicy_model(cls, manifest, obs_dim, action_space, N, pi_net, vf_net, **kwargs):
    """A stock PPO or A2C whose MlpPolicy has the case's layer sizes and activation."""
    pi_sizes, act, _ = layout(manifest, pi_net) if pi_net else (None, None, None)
    vf_sizes, vact, _ = layout(manifest, vf_net) if vf_net else (None, None, None)
    act = act or vact or "tanh"
    if vact and vact != act:
        raise ValueError("policy and value networks with different activations")
    pi_hidden = list(pi_sizes[1:-1]) if pi_sizes else list(vf_sizes[1:-1])
    vf_hidden = list(vf_sizes[1:-1]) if vf_sizes else list(pi_sizes[1:-1])
    policy_kwargs = dict(net_arch=dict(pi=pi_hidden, vf=vf_hidden),
                         activation_fn=ACTIVATIONS[act], ortho_init=False)
    env = CaseEnv(obs_dim, action_space)
    settings = dict(n_steps=N, learning_rate=0.0, max_grad_norm=BIG_NORM,
                    policy_kwargs=policy_kwargs, **kwargs)
    return _make(cls, env, settings)


def _onpolicy_copy(model, manifest, arrays, pi_net, vf_net):
    pol = model.policy
    if pi_net:
        copy_mlp(linears(pol.mlp_extractor.policy_net) + [pol.action_net], manifest, arrays,
                 pi_net)
    if vf_net:
        copy_mlp(linears(pol.mlp_extractor.value_net) + [pol.value_net], manifest, arrays,
                 vf_net)
    if "policy.log_std" in arrays:
        with torch.no_grad():
            pol.log_std.copy_(_t(arrays["policy.log_std"]))
        bind("policy.log_std", lambda: _np(pol.log_std))


def _fill_rollout(model, obs, actions, advantages=None, returns=None, values=None,
                  log_probs=None):
    """The rollout buffer as collect_rollouts leaves it (one environment, n_steps = N)."""
    buf = model.rollout_buffer
    buf.reset()
    N = obs.shape[0]
    col = lambda a: np.asarray(a, dtype=np.float64).reshape(N, 1)  # noqa: E731
    buf.observations = np.asarray(obs, dtype=np.float64).reshape(N, 1, -1)
    buf.actions = np.asarray(actions, dtype=np.float64).reshape(N, 1, -1)
    zeros = np.zeros(N)
    buf.advantages = col(zeros if advantages is None else advantages)
    buf.returns = col(zeros if returns is None else returns)
    buf.values = col(zeros if values is None else values)
    buf.log_probs = col(zeros if log_probs is None else log_probs)
    buf.rewards = col(zeros)
    buf.episode_starts = col(zeros)
    buf.pos, buf.full, buf.generator_ready = buf.buffer_size, True, False


def _run_onpolicy(model):
    """SB3's train() once; returns (locals recorder, grad snapshots, row order)."""
    order = []
    buf = model.rollout_buffer
    original = buf._get_samples

    def recording(batch_inds, env=None):
        order.append(np.array(batch_inds))
        return original(batch_inds, env)

    buf._get_samples = recording
    snaps = GradSnapshots(policy=model.policy.optimizer)
    try:
        with LocalsRecorder(type(model).train) as rec:
            model.train()
    finally:
        snaps.remove()
        del buf._get_samples
    if len(order) != 1:
        raise RuntimeError(f"SB3 made {len(order)} minibatches; expected one full batch")
    return rec, snaps, order[0]


def _unpermute(x, order):
    x = _np(x).reshape(len(order), *np.shape(_np(x))[1:]) if np.ndim(_np(x)) else _np(x)
    out = np.empty_like(x)
    out[order] = x
    return out


def _policy_layers(model):
    pol = model.policy
    return linears(pol.mlp_extractor.policy_net) + [pol.action_net]


def _value_layers(model):
    pol = model.policy
    return linears(pol.mlp_extractor.value_net) + [pol.value_net]


def _action_space_of(manifest, arrays, pi_net="policy"):
    if "policy.log_std" in arrays or arrays["actions"].dtype.kind == "f":
        m = arrays["actions"].shape[-1]
        return spaces.Box(-1.0, 1.0, (m,), np.float32)
    n = manifest["networks"][pi_net]["sizes"][-1]
    return spaces.Discrete(n)


def sb3_ppo_clip(manifest, arrays):
    """ppo_clip: PPO's clipped surrogate alone (vf_coef = ent_coef = 0, advantages as given)."""
    obs, actions = arrays["obs"], arrays["actions"]
    N, k = obs.shape
    model = _onpolicy_model(PPO, manifest, k, _action_space_of(manifest, arrays), N, "policy",
                            None, batch_size=N, n_epochs=1, ent_coef=0.0, vf_coef=0.0,
                            clip_range=_hp(manifest, "clip_eps", "clip_range"), clip_range_vf=None,
                            normalize_advantage=False)
    _onpolicy_copy(model, manifest, arrays, "policy", None)
    _fill_rollout(model, obs, actions, advantages=arrays["advantages"],
                  log_probs=arrays["log_prob_old"])
    rec, snaps, order = _run_onpolicy(model)
    return _ppo_outputs(manifest, model, rec, snaps, order, policy=True, value=False)


def sb3_ppo_value_clip(manifest, arrays):
    """ppo_value_clip: the value loss alone (zero advantages, ent_coef 0, vf_coef 1), twice."""
    obs = arrays["obs"]
    N, k = obs.shape
    out = {}
    eps_v = _hp(manifest, "clip_eps_value", "clip_range_vf")
    for name, clip in (("value_loss", None), ("value_loss_clipped", eps_v)):
        model = _onpolicy_model(PPO, manifest, k, spaces.Discrete(2), N, None, "value",
                                batch_size=N, n_epochs=1, ent_coef=0.0, vf_coef=1.0,
                                clip_range=0.2, clip_range_vf=clip, normalize_advantage=False)
        _onpolicy_copy(model, manifest, arrays, None, "value")
        _fill_rollout(model, obs, np.zeros(N), returns=arrays["returns"],
                      values=arrays["values_old"] if clip is not None else None)
        rec, snaps, order = _run_onpolicy(model)
        out["values"] = _unpermute(rec.first("values").flatten(), order)
        out[name] = _np(rec.last("value_loss"))
        grad_mlp(out, snaps, "policy", _value_layers(model), manifest, "value")
        for layer in manifest["networks"]["value"]["layers"]:
            for p in ("W", "b"):
                out[f"grad.{name}.{layer[p]}"] = out.pop(layer[p])
    return out


def sb3_ppo_objective(manifest, arrays):
    """ppo_objective: PPO's whole loss with normalised advantages and value clipping."""
    obs, actions = arrays["obs"], arrays["actions"]
    N, k = obs.shape
    hp = manifest["hyperparameters"]
    model = _onpolicy_model(PPO, manifest, k, _action_space_of(manifest, arrays), N, "policy",
                            "value", batch_size=N, n_epochs=1,
                            ent_coef=_hp(manifest, "c2", "ent_coef"),
                            vf_coef=_hp(manifest, "c1", "vf_coef"),
                            clip_range=_hp(manifest, "clip_eps", "clip_range"),
                            clip_range_vf=_hp(manifest, "clip_eps_value", "clip_range_vf"),
                            normalize_advantage=True)
    if hp.get("advantage_eps", 1e-8) != 1e-8:
        raise ValueError("SB3 adds 1e-8 to the standard deviation")
    _onpolicy_copy(model, manifest, arrays, "policy", "value")
    _fill_rollout(model, obs, actions, advantages=arrays["advantages"],
                  returns=arrays["returns"], values=arrays["values_old"],
                  log_probs=arrays["log_prob_old"])
    rec, snaps, order = _run_onpolicy(model)
    return _ppo_outputs(manifest, model, rec, snaps, order, policy=True, value=True)


def _ppo_outputs(manifest, model, rec, snaps, order, policy, value):
    """PPO's recorded locals under the case's names (minimised SB3 loss = -objective)."""
    out = {}
    out["log_prob"] = _unpermute(rec.first("log_prob"), order)
    out["ratio"] = _unpermute(rec.first("ratio"), order)
    out["approx_kl"] = np.float64(rec.last("approx_kl_div"))
    out["clip_fraction"] = np.float64(rec.last("clip_fraction"))
    policy_objective = -_np(rec.last("policy_loss"))
    names = manifest["arrays"]
    if value:
        out["values"] = _unpermute(rec.first("values").flatten(), order)
        out["entropy"] = _unpermute(rec.first("entropy"), order)
        adv = rec.history["advantages"]
        if len(adv) != 2:
            raise RuntimeError("expected the advantages before and after normalisation")
        out["advantages_normalized"] = _unpermute(adv[1], order)
        out["policy_objective"] = policy_objective
        out["value_loss"] = _np(rec.last("value_loss"))
        out["entropy_mean"] = -_np(rec.last("entropy_loss"))
        of = "objective"
        out[of] = -_np(rec.last("loss"))
    else:
        of = "clip_objective"
        out[of] = policy_objective
    grads = {}
    grad_mlp(grads, snaps, "policy", _policy_layers(model), manifest, "policy", sign=-1.0)
    if value:
        grad_mlp(grads, snaps, "policy", _value_layers(model), manifest, "value", sign=-1.0)
    if "policy.log_std" in names:
        grads["policy.log_std"] = -snaps.of("policy", model.policy.log_std).numpy()
    for wrt, g in grads.items():
        out[f"grad.{of}.{wrt}"] = g
    return out


def sb3_a2c(manifest, arrays):
    """a2c: A2C's loss; advantages R - V(s) from SB3's compute_returns_and_advantage."""
    obs, actions, returns = arrays["obs"], arrays["actions"], arrays["returns"]
    N, k = obs.shape
    # gamma = 0 makes GAE's advantage r_t - V(s_t): with rewards = the case's returns R this
    # is the case's A = R - V(s), computed by SB3 (returns = A + V, R up to one rounding)
    model = _onpolicy_model(A2C, manifest, k, _action_space_of(manifest, arrays), N, "policy",
                            "value", gamma=0.0, gae_lambda=1.0,
                            ent_coef=_hp(manifest, "entropy_coef", "ent_coef"),
                            vf_coef=_hp(manifest, "value_coef", "vf_coef"),
                            normalize_advantage=False)
    _onpolicy_copy(model, manifest, arrays, "policy", "value")
    buf = model.rollout_buffer
    _fill_rollout(model, obs, actions)
    with torch.no_grad():   # collect_rollouts' values: the policy's V(s) at collection time
        values = model.policy.predict_values(torch.as_tensor(obs, dtype=F64)).numpy().reshape(N, 1)
    buf.values = values
    buf.rewards = np.asarray(returns, dtype=np.float64).reshape(N, 1)
    buf.compute_returns_and_advantage(last_values=torch.zeros(1), dones=np.zeros(1))
    advantages = buf.advantages.copy()
    rec, snaps, order = _run_onpolicy(model)
    out = {"advantages": advantages.reshape(N),
           "log_prob": _unpermute(rec.first("log_prob"), order),
           "entropy": _unpermute(rec.first("entropy"), order),
           "values": _unpermute(rec.first("values").flatten(), order),
           "loss": _np(rec.last("loss")),
           "policy_objective": -_np(rec.last("policy_loss")),
           "value_loss": _np(rec.last("value_loss")),
           "entropy_mean": -_np(rec.last("entropy_loss"))}
    grads = {}
    grad_mlp(grads, snaps, "policy", _policy_layers(model), manifest, "policy")
    grad_mlp(grads, snaps, "policy", _value_layers(model), manifest, "value")
    for wrt, g in grads.items():
        out[f"grad.loss.{wrt}"] = g
    return out


# ---------------------------------------------------------------- off-policy: SAC, TD3, DDPG

def _offpolicy_model(cls, manifest, obs_dim, act_dim, N, actor_net, critic_net, **kwargs):
    sizes_pi, act_pi, _ = layout(manifest, actor_net)
    # a case without a critic (sac_temperature): SB3's critics get the actor's hidden sizes
    sizes_q, act_q, _ = layout(manifest, critic_net or actor_net)
    if act_pi != act_q:
        raise ValueError("actor and critic with different activations")
    policy_kwargs = dict(net_arch=dict(pi=list(sizes_pi[1:-1]), qf=list(sizes_q[1:-1])),
                         activation_fn=ACTIVATIONS[act_pi])
    policy_kwargs.update(kwargs.pop("policy_kwargs", {}))
    low, high = kwargs.pop("box", (-1.0, 1.0))
    env = CaseEnv(obs_dim, spaces.Box(low, high, (act_dim,), np.float32))
    # tau = 0: the target networks' Polyak update after the step changes nothing either
    settings = dict(learning_rate=0.0, buffer_size=N, batch_size=N, tau=0.0, learning_starts=0,
                    policy_kwargs=policy_kwargs, **kwargs)
    return _make(cls, env, settings)


def _fill_replay(model, obs, actions, rewards, next_obs, terminated):
    buf = model.replay_buffer
    N = obs.shape[0]
    if buf.buffer_size != N:
        raise RuntimeError(f"replay buffer of size {buf.buffer_size}, case has {N} rows")
    buf.observations = np.asarray(obs, dtype=np.float64).reshape(N, 1, -1)
    buf.next_observations = np.asarray(next_obs, dtype=np.float64).reshape(N, 1, -1)
    buf.actions = np.asarray(actions, dtype=np.float64).reshape(N, 1, -1)
    buf.rewards = np.asarray(rewards, dtype=np.float64).reshape(N, 1)
    buf.dones = np.asarray(terminated, dtype=np.float64).reshape(N, 1)
    buf.timeouts = np.zeros((N, 1))     # truncations are not dones in SB3; the cases have none
    buf.pos, buf.full = 0, True


@contextlib.contextmanager
def _in_order(model):
    """replay_buffer.sample(N) returns every row once, in order (SB3's own _get_samples)."""
    buf = model.replay_buffer

    def sample(batch_size, env=None):
        if batch_size != buf.buffer_size:
            raise RuntimeError("expected a full-batch sample")
        return buf._get_samples(np.arange(batch_size), env=env)

    buf.sample = sample
    try:
        yield
    finally:
        del buf.sample


def _critics_copy(critic, manifest, arrays, nets):
    for q_net, name in zip(critic.q_networks, nets):
        if name is not None:
            copy_mlp(linears(q_net), manifest, arrays, name)


def _transitions(arrays, N, k, m):
    """The case's batch, or neutral stand-ins for a case without one (its outputs unchecked)."""
    obs = arrays["obs"]
    return (obs, arrays.get("actions", np.zeros((N, m))), arrays.get("rewards", np.zeros(N)),
            arrays.get("next_obs", obs), arrays.get("terminated", np.zeros(N)))


def _sac_dims(manifest, arrays):
    obs = arrays["obs"]
    N, k = obs.shape
    m = manifest["networks"]["policy"]["sizes"][-1] // 2
    return N, k, m


#: the negative control runs SB3 on minipg-profile SAC cases too (they must then fail)
CONTROL = {"any_box": False}


def _sac_box(manifest):
    """SB3's SAC works in normalised actions: the case must be written so (sb3 profile)."""
    if CONTROL["any_box"]:
        return
    conv = manifest.get("conventions", {}).get("sac_action_space")
    if conv is not None:
        if conv["value"] != "unit":
            raise ValueError(f"the case's SAC action space is {conv['value']!r}; SB3's critics "
                             "and log-density take the normalised action tanh(u) ('unit')")
        return
    low, high = _hp(manifest, "low", default=-1.0), _hp(manifest, "high", default=1.0)
    if (low, high) != (-1.0, 1.0):
        raise ValueError(f"the case's action box is [{low}, {high}]; SB3 works in normalised "
                         "actions [-1, 1] (the sb3 profile should write the case so)")


def _sac_model(manifest, arrays, critics, ent_coef):
    N, k, m = _sac_dims(manifest, arrays)
    critic_net = next((c for pair in critics for c in pair if c is not None), None)
    model = _offpolicy_model(SAC, manifest, k, m, N, "policy", critic_net, ent_coef=ent_coef,
                             gamma=_hp(manifest, "gamma", default=0.99), target_entropy="auto",
                             box=(_hp(manifest, "low", default=-1.0),
                                  _hp(manifest, "high", default=1.0)))
    actor = model.actor
    spec = manifest["networks"]["policy"]["layers"]
    copy_mlp(linears(actor.latent_pi), {"networks": {"p": {"layers": spec[:-1]}}}, arrays, "p")
    W, b = arrays[spec[-1]["W"]], arrays[spec[-1]["b"]]    # concat(mean, log_std): split
    copy_linear(actor.mu, W[:, :m], b[:m])
    copy_linear(actor.log_std, W[:, m:], b[m:])
    bind(spec[-1]["W"], lambda: np.concatenate([_np(actor.mu.weight).T,
                                                _np(actor.log_std.weight).T], axis=1))
    bind(spec[-1]["b"], lambda: np.concatenate([_np(actor.mu.bias), _np(actor.log_std.bias)]))
    _critics_copy(model.critic, manifest, arrays, critics[0])
    _critics_copy(model.critic_target, manifest, arrays, critics[1])
    return model


def _sac_policy_grads(out, of, snaps, model, manifest, m):
    actor = model.actor
    spec = manifest["networks"]["policy"]["layers"]
    hidden = linears(actor.latent_pi)
    for layer, lin in zip(spec[:-1], hidden):
        out[f"grad.{of}.{layer['W']}"] = snaps.of("actor", lin.weight).numpy().T
        out[f"grad.{of}.{layer['b']}"] = snaps.of("actor", lin.bias).numpy()
    last = spec[-1]
    out[f"grad.{of}.{last['W']}"] = np.concatenate(
        [snaps.of("actor", actor.mu.weight).numpy().T,
         snaps.of("actor", actor.log_std.weight).numpy().T], axis=1)
    out[f"grad.{of}.{last['b']}"] = np.concatenate(
        [snaps.of("actor", actor.mu.bias).numpy(), snaps.of("actor", actor.log_std.bias).numpy()])


def _run_sac(model, draws, leaf_index=None):
    snaps = GradSnapshots(actor=model.actor.optimizer, critic=model.critic.optimizer,
                          **({"alpha": model.ent_coef_optimizer}
                             if model.ent_coef_optimizer is not None else {}))
    critic_in = OutputRecorder(model.critic.q_networks[0], input_grad=True)
    mse = []
    original_mse = F.mse_loss

    def recording_mse(*args, **kwargs):
        value = original_mse(*args, **kwargs)
        mse.append(value.detach().clone())
        return value

    F.mse_loss = recording_mse
    try:
        with _in_order(model), standard_normals(draws, leaf_index) as leaves, \
                LocalsRecorder(SAC.train) as rec:
            model.train(gradient_steps=1, batch_size=model.replay_buffer.buffer_size)
    finally:
        F.mse_loss = original_mse
        snaps.remove()
        critic_in.remove()
    return rec, snaps, leaves, critic_in, mse


def sb3_sac_q_twin(manifest, arrays):
    """sac_q_twin: SAC's critic update (fixed alpha), the next action from eps_next."""
    _sac_box(manifest)
    N, k, m = _sac_dims(manifest, arrays)
    model = _sac_model(manifest, arrays, (("critic1", "critic2"),
                                          ("target_critic1", "target_critic2")),
                       ent_coef=float(_hp(manifest, "alpha")))
    _fill_replay(model, *_transitions(arrays, N, k, m))
    # SB3 draws for pi(.|s) first (the actor loss; not part of this case: zeros), then for s'
    rec, snaps, _, _, mse = _run_sac(model, [np.zeros((N, m)), arrays["eps_next"]])
    out = {"next_actions": _np(rec.first("next_actions")),
           "log_prob_next": _np(rec.first("next_log_prob")),
           "y": _np(rec.last("target_q_values")).reshape(N)}
    both = _np(rec.first("next_q_values"))          # cat of the two target critics, (N, 2)
    out["q1_next"], out["q2_next"] = both[:, 0], both[:, 1]
    q1, q2 = rec.last("current_q_values")
    out["q1"], out["q2"] = _np(q1).reshape(N), _np(q2).reshape(N)
    # critic_loss = 0.5 * (mse_1 + mse_2): SB3's two mse terms, each with SB3's factor 1/2
    if len(mse) != 2:
        raise RuntimeError(f"SAC called mse_loss {len(mse)} times, expected 2")
    names = manifest["arrays"]
    if "critic_loss" in names:
        out["critic_loss"] = _np(rec.last("critic_loss"))
    for i, q_net in ((1, model.critic.q_networks[0]), (2, model.critic.q_networks[1])):
        of = f"J_Q{i}"
        out[of] = 0.5 * _np(mse[i - 1])
        grads = {}
        grad_mlp(grads, snaps, "critic", linears(q_net), manifest, f"critic{i}")
        for wrt, g in grads.items():
            out[f"grad.{of}.{wrt}"] = g
            if "critic_loss" in names:
                out[f"grad.critic_loss.{wrt}"] = g
    return out


def sb3_sac_policy(manifest, arrays):
    """sac_policy: SAC's actor loss with fixed alpha (the case has no transitions: stand-ins)."""
    _sac_box(manifest)
    N, k, m = _sac_dims(manifest, arrays)
    model = _sac_model(manifest, arrays, (("critic1", "critic2"), (None, None)),
                       ent_coef=float(_hp(manifest, "alpha")))
    _fill_replay(model, *_transitions(arrays, N, k, m))
    rec, snaps, leaves, critic_in, _ = _run_sac(model, [arrays["eps"], np.zeros((N, m))],
                                                leaf_index=0)
    out = {"action": _np(rec.first("actions_pi")),
           "log_prob": _np(rec.first("log_prob")).reshape(N),
           "q_new": _np(rec.last("min_qf_pi")).reshape(N),
           "J_pi": _np(rec.last("actor_loss"))}
    _sac_policy_grads(out, "J_pi", snaps, model, manifest, m)
    out["grad.J_pi.eps"] = _np(leaves[0].grad)
    # the critics' input gradient in SB3's actor backward: d actor_loss / d concat(s, a) through
    # the critics only; actor_loss = mean(alpha log pi - min Q), so its action columns are
    # -d mean_i min(Q_1, Q_2)(s_i, a_i) / d a
    g = [x for x in critic_in.input_grads if x is not None]
    if len(g) != 1:
        raise RuntimeError(f"{len(g)} critic input gradients recorded, expected 1")
    out["grad.q_new_mean.action"] = -_np(g[0])[:, k:]
    return out


def sb3_sac_temperature(manifest, arrays):
    """sac_temperature: SAC's entropy-coefficient loss on log alpha, target entropy 'auto'."""
    _sac_box(manifest)
    N, k, m = _sac_dims(manifest, arrays)
    model = _sac_model(manifest, arrays, ((None, None), (None, None)), ent_coef="auto")
    with torch.no_grad():
        model.log_ent_coef.copy_(_t(arrays["log_alpha"]))
    bind("log_alpha", lambda: _np(model.log_ent_coef))
    if model.target_entropy != _hp(manifest, "target_entropy"):
        raise ValueError(f"SB3's target entropy {model.target_entropy}, the case's "
                         f"{_hp(manifest, 'target_entropy')}")
    _fill_replay(model, *_transitions(arrays, N, k, m))
    rec, snaps, _, _, _ = _run_sac(model, [arrays["eps"], np.zeros((N, m))])
    return {"log_prob": _np(rec.first("log_prob")).reshape(N),
            "J_alpha": _np(rec.last("ent_coef_loss")),
            "grad.J_alpha.log_alpha": snaps.of("alpha", model.log_ent_coef).numpy()}


def _td3_model(cls, manifest, arrays, actors, critics, **kwargs):
    obs = arrays["obs"]
    N, k = obs.shape
    actor_net = actors[0] or actors[1]
    m = manifest["networks"][actor_net]["sizes"][-1]
    critic_net = next(c for c in critics[0] + critics[1] if c is not None)
    model = _offpolicy_model(cls, manifest, k, m, N, actor_net, critic_net,
                             gamma=_hp(manifest, "gamma", default=0.99), **kwargs)
    for module, name in ((model.actor, actors[0]), (model.actor_target, actors[1])):
        if name is not None:
            copy_mlp(linears(module.mu), manifest, arrays, name)
    _critics_copy(model.critic, manifest, arrays, critics[0])
    _critics_copy(model.critic_target, manifest, arrays, critics[1])
    _fill_replay(model, *_transitions(arrays, N, k, m))
    return model, N, k, m


def _run_td3(model, noise=None, std=0.0):
    snaps = GradSnapshots(actor=model.actor.optimizer, critic=model.critic.optimizer)
    actor_out = OutputRecorder(model.actor)
    target_out = OutputRecorder(model.actor_target)
    model._n_updates = model.policy_delay - 1     # this step is one with an actor update
    noise_ctx = smoothing_noise(noise, std) if noise is not None else contextlib.nullcontext()
    try:
        with _in_order(model), noise_ctx, LocalsRecorder(TD3.train) as rec:
            model.train(gradient_steps=1, batch_size=model.replay_buffer.buffer_size)
    finally:
        snaps.remove()
        actor_out.remove()
        target_out.remove()
    return rec, snaps, actor_out, target_out


def _critic_outputs(out, rec, snaps, target_out, model, manifest, N, critics):
    out["target_actions"] = _np(target_out.outputs[0])
    nxt = rec.history["next_q_values"]
    both = _np(nxt[0])                                   # cat of the target critics, (N, n)
    out["y"] = _np(rec.last("target_q_values")).reshape(N)
    current = rec.last("current_q_values")
    out["critic_loss"] = _np(rec.last("critic_loss"))
    if len(critics) == 1:
        out["q_next_target"] = both[:, 0]
        out["q"] = _np(current[0]).reshape(N)
    else:
        out["smoothed_actions"] = _np(rec.first("next_actions"))
        out["q1_next"], out["q2_next"] = both[:, 0], both[:, 1]
        out["q1"], out["q2"] = _np(current[0]).reshape(N), _np(current[1]).reshape(N)
    for q_net, name in zip(model.critic.q_networks, critics):
        grads = {}
        grad_mlp(grads, snaps, "critic", linears(q_net), manifest, name)
        for wrt, g in grads.items():
            out[f"grad.critic_loss.{wrt}"] = g
    return out


def _actor_outputs(out, rec, snaps, actor_out, model, manifest, actor):
    """objective = mean Q_1(s, mu(s)) (maximised) = -SB3's actor_loss; gradients negated."""
    outs = [o for o, g in zip(actor_out.outputs, actor_out.output_grads) if g is not None]
    grads = [g for g in actor_out.output_grads if g is not None]
    if len(grads) != 1:
        raise RuntimeError(f"{len(grads)} actor outputs with a gradient, expected 1")
    out["mu"] = _np(outs[0])
    out["objective"] = -_np(rec.last("actor_loss"))
    g = {}
    grad_mlp(g, snaps, "actor", linears(model.actor.mu), manifest, actor, sign=-1.0)
    for wrt, v in g.items():
        out[f"grad.objective.{wrt}"] = v
    out["grad.objective.mu"] = -_np(grads[0])
    return out


def sb3_td3_critic(manifest, arrays):
    """td3_critic: TD3's critic update with the case's smoothing noise."""
    std = _hp(manifest, "noise_std", "target_policy_noise")
    clip = _hp(manifest, "noise_clip", "target_noise_clip")
    model, N, k, m = _td3_model(TD3, manifest, arrays, (None, "target_actor"),
                                (("critic1", "critic2"), ("target_critic1", "target_critic2")),
                                target_policy_noise=std, target_noise_clip=clip)
    rec, snaps, _, target_out = _run_td3(model, arrays["noise"], std)
    return _critic_outputs({}, rec, snaps, target_out, model, manifest, N, ("critic1", "critic2"))


def sb3_td3_actor(manifest, arrays):
    """td3_actor: TD3's actor loss on the first critic (policy_delay's update step)."""
    model, N, k, m = _td3_model(TD3, manifest, arrays, ("actor", None),
                                (("critic1", None), (None, None)))
    rec, snaps, actor_out, _ = _run_td3(model, np.zeros((N, m)), model.target_policy_noise)
    return _actor_outputs({}, rec, snaps, actor_out, model, manifest, "actor")


def sb3_ddpg_critic(manifest, arrays):
    """ddpg_critic: DDPG's critic update (SB3's DDPG: TD3 with one critic and no noise)."""
    model, N, k, m = _td3_model(DDPG, manifest, arrays, (None, "target_actor"),
                                (("critic",), ("target_critic",)))
    rec, snaps, _, target_out = _run_td3(model)
    return _critic_outputs({}, rec, snaps, target_out, model, manifest, N, ("critic",))


def sb3_ddpg_actor(manifest, arrays):
    """ddpg_actor: DDPG's actor loss."""
    model, N, k, m = _td3_model(DDPG, manifest, arrays, ("actor", None), (("critic",), (None,)))
    rec, snaps, actor_out, _ = _run_td3(model)
    return _actor_outputs({}, rec, snaps, actor_out, model, manifest, "actor")


# ---------------------------------------------------------------- the cases

#: case -> (SB3 class, the function that runs SB3 on it)
SB3_CASES = {
    "a2c": ("A2C", sb3_a2c),
    "ppo_clip": ("PPO", sb3_ppo_clip),
    "ppo_value_clip": ("PPO", sb3_ppo_value_clip),
    "ppo_objective": ("PPO", sb3_ppo_objective),
    "ddpg_critic": ("DDPG", sb3_ddpg_critic),
    "ddpg_actor": ("DDPG", sb3_ddpg_actor),
    "td3_critic": ("TD3", sb3_td3_critic),
    "td3_actor": ("TD3", sb3_td3_actor),
    "sac_q_twin": ("SAC", sb3_sac_q_twin),
    "sac_policy": ("SAC", sb3_sac_policy),
    "sac_temperature": ("SAC", sb3_sac_temperature),
}

#: cases of these algorithms that stock SB3 has no counterpart for
NO_COUNTERPART = {
    "sac_value": "SAC v1's state-value network V(s) and its loss J_V: SB3's SAC is the 2018b "
                 "version without a value network",
    "sac_q": "SAC v1's Q loss against a target value network V'(s'): SB3's SAC has no value "
             "network (its targets come from target critics, case sac_q_twin)",
}

#: why an array of a case is not produced by SB3 (arrays not named here and absent are
#: reported as "not recorded")
NOT_COMPUTED = {
    "sac_policy": {"q_new_mean": "SB3 never forms mean min(Q_1, Q_2)(s, a) on its own; its "
                                 "action gradient is checked (grad.q_new_mean.action)"},
}


#: arrays SB3 computes in float32 whatever the default dtype: when they differ, the results say
#: whether SB3's value is exactly the reference's rounded to float32
FLOAT32_ARRAYS = ("clip_fraction",)

#: arrays where SB3 and the reference differ for a reason stated here (still counted as FAIL
#: when they fail: the tolerances are the manifest's, never widened)
DIFFERENCES = {
    "clip_fraction": "SB3 computes the clip fraction in float32: th.mean((|ratio - 1| > "
                     "clip_range).float()), and .float() is float32 whatever the default dtype, "
                     "so the count k/N is rounded to float32 (relative error up to 6e-8; the "
                     "manifest's atol 1e-6 with rtol 0 accepts that and rejects any other "
                     "count); a logged diagnostic, not differentiated",
}


#: the document's sections of the algorithms stock SB3 has
SB3_SECTIONS = ("A2C", "PPO", "DDPG", "TD3", "SAC", "SAC with Automatically Adjusted Temperature")


def uncovered_cases():
    """Registered cases of those sections that this script neither runs nor explains."""
    return [n for n in reference.case_names()
            if reference.CASES.entry(n).info["section"] in SB3_SECTIONS
            and n not in SB3_CASES and n not in NO_COUNTERPART]


def write_cases(out, names):
    """Write the cases in the sb3 profile (minipg's public API); returns how, for the results."""
    reference.write(out, only=names, profile=PROFILE)
    return f"`minipg.reference.write(out, only=[...], profile={PROFILE!r})`"


def load_case(directory):
    manifest = reference.load_manifest(directory)
    arrays = {name: reference.load_array(directory, name) for name in manifest["arrays"]}
    return manifest, arrays


def run_case(name, ref_dir, sb3_dir):
    """Run SB3 on one case and write what it computed (and the weights it holds) to sb3_dir."""
    manifest, arrays = load_case(ref_dir / name)
    BOUND.clear()
    MODELS.clear()
    produced = SB3_CASES[name][1](manifest, arrays)
    produced.update({n: read() for n, read in BOUND.items()})
    entries = manifest["arrays"]
    unknown = sorted(set(produced) - set(entries))
    if unknown:
        raise RuntimeError(f"{name}: SB3 arrays not in the case: {unknown}")
    result = {n: np.asarray(v, dtype=np.float64).reshape(np.shape(arrays[n]))
              for n, v in produced.items()}
    sb3_manifest = dict(manifest, producer=f"stable-baselines3 {sb3.__version__} "
                        f"{SB3_CASES[name][0]}.train() (verification/sb3_reference.py)")
    sb3_manifest["arrays"] = {}
    for n, e in entries.items():
        if n in result:
            sb3_manifest["arrays"][n] = dict(e, value=float(result[n])) if "value" in e else e
    reference.save_case(sb3_dir / name, sb3_manifest, result)
    return list(MODELS)


def check_case(name, ref_dir, sb3_dir):
    """minipg's checker on the arrays SB3's directory holds; (rows checked, unchecked -> why)."""
    rows, _notes = reference.check(ref_dir, sb3_dir, only=[name], present_only=True)
    reasons = NOT_COMPUTED.get(name, {})
    checked = [r for r in rows if r.checked]
    unchecked = {r.array: reasons.get(r.array, "not computed by SB3's train()")
                 for r in rows if not r.checked and r.role in ("output", "gradient")}
    return checked, unchecked


def run_all(names, ref_dir, sb3_dir):
    results = []
    for name in names:
        manifest = reference.load_manifest(ref_dir / name)
        models = []
        try:
            models = run_case(name, ref_dir, sb3_dir)
            rows, unchecked = check_case(name, ref_dir, sb3_dir)
            error = None
        except Exception as exc:     # report the case, go on with the others
            unchecked, rows, error = {}, [], f"{type(exc).__name__}: {exc}"
        evidence = {}
        for row in rows:
            if row.array in FLOAT32_ARRAYS and row.checked and row.index is not None:
                a = reference.load_array(ref_dir / name, row.array)
                b = reference.load_array(sb3_dir / name, row.array)
                same = bool(np.all(a.astype(np.float32).astype(np.float64) == b))
                evidence[row.array] = (f"SB3's value {float(b)!r} is {'exactly' if same else 'NOT'}"
                                       f" the reference {float(a)!r} rounded to float32")
        results.append(dict(name=name, manifest=manifest, rows=rows, unchecked=unchecked,
                            error=error, models=models, evidence=evidence))
    return results


def negative_control(names, base):
    """The same SB3 runs against the cases of the minipg profile, where conventions differ."""
    differing = []
    for name in names:
        conv = {p: reference.build(name, profile=p)[0].get("conventions", {})
                for p in ("minipg", PROFILE)}
        diff = sorted(k for k in conv[PROFILE] if conv[PROFILE][k] != conv["minipg"].get(k))
        if diff:
            differing.append((name, diff))
    ref_dir, sb3_dir = base / "minipg-profile", base / "sb3-on-minipg-profile"
    reference.write(ref_dir, only=[n for n, _ in differing], profile="minipg")
    sb3_dir.mkdir(parents=True, exist_ok=True)
    CONTROL["any_box"] = True
    try:
        results = run_all([n for n, _ in differing], ref_dir, sb3_dir)
    finally:
        CONTROL["any_box"] = False
    return [(r, diff) for r, (_, diff) in zip(results, differing)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keep", default=None, metavar="DIR",
                   help="keep DIR/sb3-profile (minipg's cases) and DIR/sb3 (SB3's arrays)")
    p.add_argument("--results", default=str(ROOT / "verification" / "results" /
                                            "sb3_reference.md"))
    p.add_argument("--only", nargs="+", default=None, help="only these cases")
    args = p.parse_args(argv)

    names = [n for n in SB3_CASES if not args.only or n in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        ref_dir, sb3_dir = base / "sb3-profile", base / "sb3"
        how = write_cases(ref_dir, names)
        sb3_dir.mkdir(parents=True, exist_ok=True)
        results = run_all(names, ref_dir, sb3_dir)
        control = negative_control(names, base)
        text = render(results, how, control)
    print(text)
    Path(args.results).write_text(text)
    ok = all(r["error"] is None and r["rows"] and all(row.passed for row in r["rows"])
             for r in results) and not uncovered_cases()
    return 0 if ok else 1


def _fmt(x):
    return "-" if x != x else f"{x:.1e}"


def _summary_row(r):
    algo = SB3_CASES[r["name"]][0]
    if r["error"]:
        return f"| `{r['name']}` | {algo} | ERROR: {r['error']} | | | | |"
    values = [row for row in r["rows"] if row.role in ("output", "gradient")]
    weights = [row for row in r["rows"] if row.role == "parameter"]
    worst = max(values, key=lambda row: row.max_rel, default=None)
    worst = "-" if worst is None else f"{_fmt(worst.max_rel)} (`{worst.array}`)"
    return (f"| `{r['name']}` | {algo} | {len(values)} | {sum(row.passed for row in values)} | "
            f"{worst} | {len(weights)} ({sum(row.passed for row in weights)}) | "
            f"{', '.join(f'`{n}`' for n in r['unchecked']) or '-'} |")


HOW = """\
## How SB3 was run

For each case: a stock SB3 model (`MlpPolicy`, the case's hidden sizes and activation), built
after `torch.set_default_dtype(torch.float64)`; only its weights are copied from the case
(torch `Linear.weight = W.T`; SAC's actor has separate `mu` and `log_std` layers, which get the
two halves of the case's last layer; PPO's state-independent `log_std`; SAC's `log_ent_coef`
from `log_alpha`); its rollout or replay buffer is filled with the case's inputs; its own
`train()` runs once: one gradient step on the full batch (`n_epochs=1`, `batch_size=N`,
`n_steps=N`), learning rate 0 and `tau=0` so that nothing changes, `max_grad_norm=1e30` so that
`clip_grad_norm_` multiplies the gradients by exactly 1.  What it computed is read without
changing its code (the script's docstring says how: optimizer step pre-hooks for the
gradients, `sys.settrace` for the local variables of `train()`, forward and tensor hooks for
the actors' outputs and the action gradients).  Sampled noise is an input of the case: SAC's
standard-normal draws and TD3's smoothing noise return the case's `eps` / `noise`.

**The one change to SB3's computation** is a dtype cast: SB3 casts Box observations to float32
(`preprocess_obs` returns `obs.float()`), and the name `preprocess_obs` in
`stable_baselines3.common.policies` is wrapped so that its float32 result is cast back to
float64.  SB3's own cast still happens: the observations survive it because every reference
input is a float32 number (convention `float32_data`).  No mathematics is changed.  (PPO's
rollout buffer casts the actions to float32 too, `RolloutBuffer._get_samples`; nothing is done
about it, and nothing needs to be, for the same reason.)

A case that holds one part of SB3's loss gets SB3 settings that leave that part alone:
`ppo_clip` runs with `vf_coef = ent_coef = 0` (SB3's loss is then its `policy_loss`; the value
network, absent from the case, keeps SB3's own initial weights and contributes exact zeros),
`ppo_value_clip` with zero advantages, `ent_coef = 0` and `vf_coef = 1` (SB3's loss is then its
`value_loss`), once with `clip_range_vf=None` and once with the case's clip.  SB3's `train()`
needs inputs that some cases do not have; they get neutral stand-ins whose results are not part
of the case and are not compared: `sac_policy` and `sac_temperature` have no transitions
(rewards 0, `next_obs = obs`, the draw for `s'` zeros), `sac_q_twin` has no noise for the actor
loss's draw at `s` (zeros), `td3_actor` and `ddpg_actor` have no transitions or target networks
(SB3's initial weights), `sac_temperature` has no critics (SB3's initial weights).

Derived by a sign or a name only (SB3 minimises; the case's `*_objective` / `objective` is
maximised, gradients of the quantity as named): `clip_objective`, `policy_objective` and
`objective` are minus SB3's `policy_loss` / `loss` / `actor_loss`, their gradients minus the
gradients at SB3's optimizer step; `entropy_mean` is minus SB3's `entropy_loss`.  In SAC, SB3's
`critic_loss` is `0.5 * (mse_1 + mse_2)`: `J_Q1` and `J_Q2` are 0.5 times the two
`F.mse_loss` values SB3 computed (recorded as it calls them), and the gradient at the critic's
step is, per critic, that of its own `J_Q`.  `grad.q_new_mean.action` is minus the action
columns of the gradient SB3's actor backward sends into the critics' input `concat(s, a)`
(`actor_loss = mean(alpha log pi - min Q)`).  A2C's `advantages` are computed by SB3's
`RolloutBuffer.compute_returns_and_advantage` with `gamma = 0` and the case's returns as
rewards, the values from SB3's policy as `collect_rollouts` stores them: GAE then gives
`A = R - V(s)`, the case's definition.
"""


def summary_line(results):
    values = [row for r in results for row in r["rows"] if row.role in ("output", "gradient")]
    weights = [row for r in results for row in r["rows"] if row.role == "parameter"]
    rest = [row.max_rel for row in values if row.array not in FLOAT32_ARRAYS]
    f32 = [row.max_rel for row in values if row.array in FLOAT32_ARRAYS]
    errors = [r["name"] for r in results if r["error"]]
    unchecked = sum(len(r["unchecked"]) for r in results)
    return (f"**{sum(row.passed for row in values)} of {len(values)} outputs and gradients "
            f"SB3 computed agree** (and {sum(row.passed for row in weights)} of {len(weights)} "
            f"weight arrays read back), in {len(results) - len(errors)} cases"
            + (f" ({len(errors)} failed to run: {', '.join(errors)})" if errors else "")
            + f"; worst relative error {_fmt(max(rest, default=float('nan')))}"
            + (f" ({_fmt(max(f32))} for `clip_fraction`, which SB3 computes in float32)"
               if f32 else "")
            + f"; not checked: {unchecked} array(s) of these cases that SB3 does not compute "
              "(listed below), and SAC v1's two cases, which have no SB3 counterpart.")


def render(results, how, control):
    lines = ["# Stock stable-baselines3 against `minipg reference --profile sb3`", "",
             "Written by `verification/sb3_reference.py`.", "",
             f"minipg {MINIPG_VERSION}, stable-baselines3 {sb3.__version__}, torch "
             f"{torch.__version__}, Python {platform.python_version()} ({platform.machine()}); "
             f"cases written with {how}; compared with `minipg.reference.check(..., "
             "present_only=True)` and the manifests' tolerances (rtol 1e-10, atol 1e-12 for "
             "outputs and gradients, rtol 0, atol 1e-6 for the count `clip_fraction`; rtol "
             "1e-13, atol 0 for parameters).", "",
             summary_line(results), "",
             "## Per case", "",
             "Outputs and gradients: those SB3 computed.  Weights: every parameter array of the "
             "case, read back from SB3's modules after its step -- the weights it ran with and "
             "still holds, transposed and split back into the case's layout.", "",
             "| case | SB3 | outputs and gradients checked | passed | worst relative error | "
             "weights checked (passed) | not checked |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [_summary_row(r) for r in results]
    for name, why in NO_COUNTERPART.items():
        lines.append(f"| `{name}` | - | 0 | - | - | - | every array: {why} |")

    failed = [(r, row) for r in results for row in r["rows"] if not row.passed]
    lines += ["", "## Arrays that differ", ""]
    if not failed and not any(r["error"] for r in results):
        lines.append("None: every array SB3 produced agrees within the manifest's tolerances.")
    for r, row in failed:
        why = DIFFERENCES.get(row.array, "not explained")
        extra = r["evidence"].get(row.array)
        lines.append(f"* `{r['name']}` / `{row.array}`: relative error {_fmt(row.max_rel)}"
                     f"{' (' + row.note + ')' if row.note else ''}. {why}"
                     f"{'; ' + extra if extra else ''}.")

    float32 = [(r, a, text) for r in results for a, text in r["evidence"].items()]
    if float32:
        lines += ["", "## Computed in float32 by SB3", ""]
        for r, a, text in float32:
            entry = r["manifest"]["arrays"][a]
            lines.append(f"* `{r['name']}` / `{a}` (rtol {entry['rtol']:g}, atol "
                         f"{entry['atol']:g}): {DIFFERENCES[a]}; {text}.")
    lines += ["", "## Arrays not checked", ""]
    for r in results:
        for n, why in r["unchecked"].items():
            lines.append(f"* `{r['name']}` / `{n}`: {why}.")
    for name, why in NO_COUNTERPART.items():
        lines.append(f"* `{name}` (every array): {why}.")
    for name in uncovered_cases():
        lines.append(f"* `{name}` (every array): NOT RUN -- a case of an SB3 algorithm's section "
                     "that this script has no harness for yet.")

    lines += ["", HOW, "## The SB3 models", "", "| case | model |", "| --- | --- |"]
    for r in results:
        for text in r["models"]:
            lines.append(f"| `{r['name']}` | `{text}` |")

    lines += ["", "## Negative control: the same SB3 runs against the `minipg` profile", "",
              "The cases whose conventions differ between the `minipg` and `sb3` profiles, "
              "written in the `minipg` profile, and SB3 run on them exactly as above: the "
              "arrays that depend on a differing convention must fail.", "",
              "| case | conventions that differ | outputs and gradients checked | passed | "
              "worst relative error |", "| --- | --- | --- | --- | --- |"]
    for r, diff in control:
        values = [row for row in r["rows"] if row.role in ("output", "gradient")]
        worst = max((row.max_rel for row in values), default=float("nan"))
        state = (f"ERROR: {r['error']}" if r["error"] else
                 f"{len(values)} | {sum(row.passed for row in values)} | {_fmt(worst)}")
        lines.append(f"| `{r['name']}` | {', '.join(diff)} | {state} |")

    lines += ["", "## Conventions of the cases (as their manifests state them)", "",
              "| case | profile | conventions |", "| --- | --- | --- |"]
    for r in results:
        m = r["manifest"]
        conv = ", ".join(f"{k} = {json.dumps(v['value'], sort_keys=True)}"
                         for k, v in sorted(m.get("conventions", {}).items()))
        lines.append(f"| `{r['name']}` | {m.get('profile', '(none)')} | {conv or '(none)'} |")

    lines += ["", "## Every array compared", "",
              "| case | array | role | worst abs. error | worst rel. error | result |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for row in r["rows"]:
            lines.append(f"| `{r['name']}` | `{row.array}` | {row.role} | {_fmt(row.max_abs)} | "
                         f"{_fmt(row.max_rel)} | {'PASS' if row.passed else 'FAIL ' + row.note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
