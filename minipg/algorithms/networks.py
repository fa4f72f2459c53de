"""Policy and value networks shared by the stochastic-policy algorithms.

* :class:`CategoricalPolicy`: an MLP of logits, pi(.|s) = softmax(logits(s));
* :class:`GaussianPolicy`: an MLP of means and a state-independent log-std
  vector, pi(.|s) = N(mu(s), diag(exp(2 log_std)));
* :class:`ValueNet`: an MLP of V(s) (one output, squeezed).

Initialization follows the PPO implementation details (Huang et al. 2022):
orthogonal weights, gain sqrt(2) in hidden layers, 0.01 on the policy's
output (near-uniform initial policy) and 1 on the value output.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Parameter
from ..distributions import Categorical, DiagGaussian
from ..nn import MLP, Module

__all__ = ["CategoricalPolicy", "GaussianPolicy", "ValueNet", "make_policy"]


class CategoricalPolicy(Module):
    """pi(a|s) = softmax(MLP(s))_a over ``n_actions`` actions."""

    def __init__(self, obs_dim, n_actions, hidden=(64, 64), activation="tanh", rng=None,
                 dtype=np.float64):
        super().__init__()
        self.net = MLP([obs_dim, *hidden, n_actions], activation=activation, output_gain=0.01,
                       rng=rng, dtype=dtype)

    def forward(self, obs):
        return Categorical(self.net(obs))


class GaussianPolicy(Module):
    """pi(a|s) = N(MLP(s), diag(exp(log_std))^2), log_std a free parameter vector."""

    def __init__(self, obs_dim, action_dim, hidden=(64, 64), activation="tanh", rng=None,
                 dtype=np.float64, init_log_std=0.0):
        super().__init__()
        self.net = MLP([obs_dim, *hidden, action_dim], activation=activation, output_gain=0.01,
                       rng=rng, dtype=dtype)
        self.log_std = Parameter(np.full(action_dim, init_log_std, dtype=dtype))

    def forward(self, obs):
        return DiagGaussian(self.net(obs), self.log_std)  # (d,) log-std broadcasts


class ValueNet(Module):
    """V(s) = MLP(s), shape (batch,)."""

    def __init__(self, obs_dim, hidden=(64, 64), activation="tanh", rng=None, dtype=np.float64):
        super().__init__()
        self.net = MLP([obs_dim, *hidden, 1], activation=activation, output_gain=1.0, rng=rng,
                       dtype=dtype)

    def forward(self, obs):
        return self.net(obs).reshape(-1)


def make_policy(kind, obs_dim, n_actions, hidden, activation, rng, dtype, init_log_std=0.0):
    """A CategoricalPolicy for 'discrete' actions, a GaussianPolicy for 'continuous'."""
    if kind == "discrete":
        return CategoricalPolicy(obs_dim, n_actions, hidden, activation, rng, dtype)
    return GaussianPolicy(obs_dim, n_actions, hidden, activation, rng, dtype, init_log_std)
