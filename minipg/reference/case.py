r"""The case builder and the registry of reference cases.

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

A case is a function ``fn(c)`` of a :class:`Case`, registered with
``@CASES.register(name, seed=..., section=..., title=..., paper=...,
estimators=[...], formula=[...])`` in one of the modules :data:`CASES` lists
(one per family).  Adding a case is: write the function in its family's
module and decorate it; adding a family is: write its module and list it in
:data:`CASES`.  Nothing here imports torch; the independent PyTorch
implementation is ``verification/crosscheck_torch.py``.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Tensor, ops
from ..autodiff.functional import backward_cotangents
from ..nn import MLP
from ..registry import Registry
from .format import ATOL, DOCUMENT, INPUT_ATOL, INPUT_RTOL, RTOL, manifest_header
from .profiles import CONVENTIONS, DEFAULT_PROFILE, check_profile

__all__ = ["CASES", "Case", "build", "FORWARD", "DATA_ROLES", "float32_exact",
           "episode_flags", "q_value"]

#: the reference cases, one module per family, written in this order
CASES = Registry("reference case", "minipg.reference",
                 ("cases_classical", "cases_returns", "cases_onpolicy", "cases_a3c",
                  "cases_offpolicy", "cases_d4pg", "cases_maddpg", "cases_trpo", "cases_acer",
                  "cases_acktr"))

FORWARD = ("h_0 = input, a batch of row vectors of shape (..., n_in); for each layer i: "
           "h_{i+1} = activation_i(h_i @ W_i + b_i) with W_i of shape (n_in, n_out) and b_i of "
           "shape (n_out,); the network's output is the last h")


#: the roles of the arrays a case is computed from (data and weights, not results)
DATA_ROLES = ("input", "parameter")


def _data(x):
    return np.array(x.data if isinstance(x, Tensor) else x, copy=True)


def float32_exact(a):
    """``a`` rounded to the nearest float32, held in float64.

    Every float input and parameter goes through this, so that an
    implementation that casts its observations and weights to float32 (most
    do) computes from exactly the numbers the reference was computed from;
    the outputs and gradients stay float64 computations on those numbers.
    """
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(np.float64)


class Case:
    """Collects one case's arrays, their manifest entries, networks and hyperparameters.

    ``profile`` names the conventions the case is written in
    (:mod:`minipg.reference.profiles`); :meth:`convention` reads one and
    records it in the manifest, so the manifest lists every convention the
    case's numbers depend on.  Formula lines may hold ``{{key}}``
    placeholders, filled by :meth:`formula` from those conventions.
    """

    def __init__(self, name, spec, profile=DEFAULT_PROFILE):
        self.name = name
        self.spec = spec
        self.profile = check_profile(profile)
        self.rng = np.random.default_rng(spec["seed"])
        self.arrays = {}
        self.entries = {}
        self.hyperparameters = {}
        self.networks = {}
        self.notes = []
        self.conventions = {}
        self.formula_fields = {}
        self.leaves = {}      # parameter name -> Tensor leaf
        self.convention("float32_data")

    def convention(self, name):
        """The value of convention ``name`` under this case's profile (recorded in the manifest)."""
        conv = CONVENTIONS[name]
        value = conv.value(self.profile)
        if name not in self.conventions:
            self.conventions[name] = {"value": value, "statement": conv.statement(value)}
            if self.profile not in conv.values:
                self.notes.append(f"profile {self.profile!r} has no algorithm that the "
                                  f"convention {name!r} applies to: minipg's value is used")
        return value

    def formula(self, **lines):
        """Fill the ``{{key}}`` placeholders of the case's formula lines."""
        self.formula_fields.update(lines)

    def _add(self, name, value, role, description, rtol, atol, **extra):
        if name in self.arrays:
            raise ValueError(f"reference case {self.name}: array {name!r} recorded twice")
        a = _data(value)
        if a.dtype.kind == "f":
            a = a.astype(np.float64)
            if role in DATA_ROLES:
                a = float32_exact(a)
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
            W = self._add(w_name, W, "parameter", f"{name} layer {i} weight, shape (n_in, n_out) "
                          f"= ({n_in}, {n_out})", INPUT_RTOL, INPUT_ATOL)
            b = self._add(b_name, b, "parameter", f"{name} layer {i} bias, shape (n_out,) = "
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
        formula = []
        for line in s["formula"]:
            for key, text in self.formula_fields.items():
                line = line.replace("{{" + key + "}}", text)
            if "{{" in line:
                raise ValueError(f"reference case {self.name}: formula line {line!r} has a "
                                 "placeholder the case did not fill")
            formula.append(line)
        for net, layout in self.networks.items():
            if "{{" in layout["output"]:
                raise ValueError(f"reference case {self.name}: network {net!r} has an output "
                                 "description the case did not fill")
        return manifest_header(
            self.name, s["section"], title=s["title"], document=DOCUMENT, paper=s["paper"],
            estimators=s["estimators"], formula=formula, seed=s["seed"],
            profile=self.profile, conventions=self.conventions,
            hyperparameters=self.hyperparameters, networks=self.networks, notes=self.notes,
            arrays=self.entries)


def build(name, profile=DEFAULT_PROFILE):
    """Run case ``name`` in the conventions of ``profile``; returns ``(manifest, arrays)``."""
    entry = CASES.entry(name)
    spec = dict(entry.info, estimators=list(entry.info["estimators"]),
                formula=list(entry.info["formula"]))
    c = Case(name, spec, profile)
    entry.obj(c)
    return c.manifest(), c.arrays


# ------------------------------------------------------------------ helpers for several families

def episode_flags(T, ends):
    """A bool array of length T that is True at the indices ``ends``."""
    flags = np.zeros(T, dtype=bool)
    flags[list(ends)] = True
    return flags


def q_value(net, obs, action):
    """Q(s, a) from a critic on concat(s, a); shape (N,)."""
    return net(ops.concatenate([obs, action], axis=-1))[..., 0]
