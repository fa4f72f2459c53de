"""Layers: Linear, MLP, and a shared trunk with several heads."""

from __future__ import annotations

import numpy as np

from ..autodiff import ops
from ..autodiff.tensor import Parameter, Tensor, is_grad_enabled, no_grad, wrap
from .init import fan_in_uniform, orthogonal
from .module import Module

__all__ = ["Linear", "MLP", "SharedTrunk", "ACTIVATIONS", "get_activation"]

ACTIVATIONS = {
    "tanh": ops.tanh,
    "relu": ops.relu,
    "sigmoid": ops.sigmoid,
    "softplus": ops.softplus,
    "identity": None,
    None: None,
}


# the op behind each named activation, for MLP's no-grad path
_ACTIVATION_OPS = {ops.tanh: ops.Tanh, ops.relu: ops.Relu, ops.sigmoid: ops.Sigmoid,
                   ops.softplus: ops.Softplus, None: None}
# activations the Dense op applies itself (one tape node per layer instead of two)
_FUSED = {ops.tanh: "tanh", ops.relu: "relu", None: None}


def get_activation(activation):
    """An activation by name (see ACTIVATIONS) or a callable, unchanged."""
    if callable(activation):
        return activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; accepted: "
                         f"{sorted(k for k in ACTIVATIONS if k)} or a callable")
    return ACTIVATIONS[activation]


class Linear(Module):
    """y = x @ W + b with W of shape (in_features, out_features).

    init: "orthogonal" (gain `gain`, zero bias; the usual choice for policy
    gradient networks, e.g. PPO's implementation details) or
    "fan_in_uniform" (torch.nn.Linear's default, U(+-1/sqrt(in)) for W and b).
    rng: a numpy Generator or a seed.
    """

    INITS = ("orthogonal", "fan_in_uniform")

    def __init__(self, in_features, out_features, init="orthogonal", gain=1.0,
                 rng=None, dtype=np.float64):
        super().__init__()
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"Linear({in_features}, {out_features}): sizes must be >= 1")
        rng = np.random.default_rng(rng)
        shape = (int(in_features), int(out_features))
        if init == "orthogonal":
            weight = orthogonal(shape, gain=gain, rng=rng, dtype=dtype)
            bias = np.zeros(shape[1], dtype=dtype)
        elif init == "fan_in_uniform":
            weight = fan_in_uniform(shape, shape[0], rng=rng, dtype=dtype)
            bias = fan_in_uniform((shape[1],), shape[0], rng=rng, dtype=dtype)
        else:
            raise ValueError(f"Linear: unknown init {init!r}; accepted: {self.INITS}")
        self.weight = Parameter(weight)
        self.bias = Parameter(bias)

    @property
    def in_features(self):
        return self.weight.shape[0]

    @property
    def out_features(self):
        return self.weight.shape[1]

    def forward(self, x):
        return ops.dense(x, self.weight, self.bias)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"


class MLP(Module):
    """A multilayer perceptron: sizes = (n_in, hidden..., n_out).

    Hidden layers use `activation`, the last layer `output_activation`
    (None: linear output).  Hidden weights are initialised with gain
    `hidden_gain` (sqrt(2) by default), the output layer with `output_gain`.
    """

    def __init__(self, sizes, activation="tanh", output_activation=None, init="orthogonal",
                 hidden_gain=np.sqrt(2.0), output_gain=1.0, rng=None, dtype=np.float64):
        super().__init__()
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2:
            raise ValueError(f"MLP sizes {sizes}: need at least an input and an output size")
        rng = np.random.default_rng(rng)
        self.activation = get_activation(activation)
        self.output_activation = get_activation(output_activation)
        self.sizes = tuple(sizes)
        n_layers = len(sizes) - 1
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == n_layers - 1
            self.add_module(f"layer{i}", Linear(n_in, n_out, init=init,
                                                gain=output_gain if last else hidden_gain,
                                                rng=rng, dtype=dtype))
        # (layer name, activation) per layer, looked up at call time so that a
        # replaced layer is the one used
        self._plan = [(f"layer{i}", self.output_activation if i == n_layers - 1
                       else self.activation) for i in range(n_layers)]
        # the same with the activations' op classes, when every one has one
        act_ops = [_ACTIVATION_OPS.get(act, False) for _, act in self._plan]
        self._array_plan = (None if False in act_ops else
                            [(name, _FUSED.get(act), op)
                             for (name, act), op in zip(self._plan, act_ops)])

    @property
    def layers(self):
        return [self._modules[name] for name, _ in self._plan]

    def forward_array(self, x):
        """The MLP's output as a plain array, nothing recorded (acting's path).

        The ops' forward functions run on plain arrays: the same arithmetic as
        :meth:`forward`, without a Tensor per layer.
        """
        if self._array_plan is None:             # an activation without an op class
            with no_grad():
                return self.forward(x).data
        modules = self._modules
        h = x.data if isinstance(x, Tensor) else np.asarray(x)
        for name, fused, act_op in self._array_plan:
            layer = modules[name]
            h = ops.Dense.forward(h, layer.weight.data, layer.bias.data, fused)[0]
            if fused is None and act_op is not None:
                h = act_op.forward(h)[0]
        return h

    def forward(self, x):
        modules = self._modules
        if self._array_plan is not None and not is_grad_enabled():
            return wrap(self.forward_array(x))   # nothing is recorded: plain arrays
        for name, act in self._plan:
            layer = modules[name]
            fused = _FUSED.get(act, False)
            if fused is False:
                x = act(ops.dense(x, layer.weight, layer.bias))
            else:
                x = ops.dense(x, layer.weight, layer.bias, fused)
        return x

    def __repr__(self):
        return f"MLP({list(self.sizes)})"


class SharedTrunk(Module):
    """One trunk feeding several heads: forward(x) -> (head_1(h), ..., head_k(h)).

    E.g. an actor-critic network with shared features:
    ``SharedTrunk(MLP([4, 64, 64], output_activation="tanh"), Linear(64, 2), Linear(64, 1))``.
    All parameters still live in one flat buffer, trunk first.
    """

    def __init__(self, trunk, *heads):
        super().__init__()
        if not heads:
            raise ValueError("SharedTrunk needs at least one head")
        self.trunk = trunk
        self.heads = list(heads)
        for i, head in enumerate(heads):
            self.add_module(f"head{i}", head)

    def forward(self, x):
        h = self.trunk(x)
        return tuple(head(h) for head in self.heads)
