"""Policy and value networks shared by the stochastic-policy algorithms.

* :class:`CategoricalPolicy`: an MLP of logits, pi(.|s) = softmax(logits(s));
* :class:`GaussianPolicy`: an MLP of means and a state-independent log-std
  vector, pi(.|s) = N(mu(s), diag(exp(2 log_std)));
* :class:`ValueNet`: an MLP of V(s) (one output, squeezed);
* :class:`SharedActorCritic`: one trunk with a policy head and a value head
  (A2C's optional shared network, Mnih et al. 2016);
* :class:`ObservationNormalizer`: running mean/std normalisation of
  observations held by the agent (PPO's continuous-control detail, Huang et
  al. 2022), so evaluation uses the trained statistics.

Initialization follows the PPO implementation details (Huang et al. 2022):
orthogonal weights, gain sqrt(2) in hidden layers, 0.01 on the policy's
output (near-uniform initial policy) and 1 on the value output.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Parameter
from ..distributions import Categorical, DiagGaussian
from ..nn import MLP, Linear, Module, SharedTrunk

__all__ = ["CategoricalPolicy", "GaussianPolicy", "ValueNet", "make_policy", "SharedActorCritic",
           "ObservationNormalizer"]


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


# --- additions for A2C / PPO (issue 4): a shared trunk and observation normalisation ------
class SharedActorCritic(Module):
    """One trunk MLP, a policy head and a value head: forward(obs) -> (distribution, V(s)).

    The trunk's last hidden layer keeps its activation; the heads are linear
    (policy gain 0.01, value gain 1, as the separate networks above).  A
    Gaussian policy keeps its state-independent ``log_std`` vector.  Built on
    :class:`minipg.nn.SharedTrunk`, so all parameters sit in one flat buffer.
    """

    def __init__(self, kind, obs_dim, n_actions, hidden=(64, 64), activation="tanh", rng=None,
                 dtype=np.float64, init_log_std=0.0):
        super().__init__()
        if kind not in ("discrete", "continuous"):
            raise ValueError(f"SharedActorCritic: kind must be 'discrete' or 'continuous', "
                             f"got {kind!r}")
        rng = np.random.default_rng(rng)
        width = int(hidden[-1])
        trunk = MLP([obs_dim, *hidden], activation=activation, output_activation=activation,
                    output_gain=np.sqrt(2.0), rng=rng, dtype=dtype)
        self.body = SharedTrunk(trunk, Linear(width, n_actions, gain=0.01, rng=rng, dtype=dtype),
                                Linear(width, 1, gain=1.0, rng=rng, dtype=dtype))
        self.kind = kind
        if kind == "continuous":
            self.log_std = Parameter(np.full(n_actions, init_log_std, dtype=dtype))

    def forward(self, obs):
        head_out, values = self.body(obs)
        dist = (Categorical(head_out) if self.kind == "discrete"
                else DiagGaussian(head_out, self.log_std))
        return dist, values.reshape(-1)


class ObservationNormalizer:
    """o -> clip((o - mean) / sqrt(var + eps), -clip, clip), statistics held by the agent.

    The running mean and variance are gymnasium's own
    (``gymnasium.wrappers.utils.RunningMeanStd``, the statistics of
    ``gymnasium.wrappers.NormalizeObservation``), shared by all parallel
    environments.  The agent holds them (instead of a wrapper on each
    training environment) so that acting for evaluation -- a fresh
    environment, or a run directory reloaded by ``minipg evaluate`` -- uses
    the trained statistics, frozen, and a checkpoint carries them.
    """

    def __init__(self, shape, clip=10.0, epsilon=1e-8, dtype=np.float64):
        from gymnasium.wrappers.utils import RunningMeanStd
        self.rms = RunningMeanStd(shape=tuple(shape), dtype=np.float64)
        self.clip = float(clip)
        self.epsilon = float(epsilon)
        self.dtype = np.dtype(dtype)

    def __call__(self, obs, update=False):
        """Normalised ``obs`` (batch, ...); the statistics absorb it first when ``update``."""
        obs = np.asarray(obs)
        if update:
            self.rms.update(obs)
        z = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.epsilon)
        return np.clip(z, -self.clip, self.clip).astype(self.dtype, copy=False)

    def state(self):
        return {"obs_rms/mean": np.array(self.rms.mean), "obs_rms/var": np.array(self.rms.var),
                "obs_rms/count": np.asarray(float(self.rms.count))}

    def load_state(self, arrays):
        self.rms.mean = np.array(arrays["obs_rms/mean"], dtype=np.float64)
        self.rms.var = np.array(arrays["obs_rms/var"], dtype=np.float64)
        self.rms.count = float(arrays["obs_rms/count"])
