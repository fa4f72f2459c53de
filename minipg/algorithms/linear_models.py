r"""Linear models of the classical algorithms: weights without a tape, features, linear softmax.

Off-PAC (:mod:`minipg.algorithms.off_policy_ac`; Degris, White & Sutton
2012) learns a linear softmax policy
:math:`\pi_u(a|s) = \mathrm{softmax}_a(x(s)^\top U)` and a linear critic
:math:`v^\top x(s)`; DPG (:mod:`minipg.algorithms.dpg`; Silver et al. 2014)
a linear deterministic policy :math:`\mu(s) = K s` and the compatible
linear critic.  Both keep their weights in :class:`LinearWeights` and update
them in place by their closed-form rules (no autodiff), with the
observation vector as the features x(s) (:func:`feature_dim`).

* :func:`linear_softmax_probs`  :math:`\pi_u(\cdot|s) = \mathrm{softmax}(x(s)^\top U)`;
* :func:`linear_softmax_score`  the score in closed form,
  :math:`\nabla_U \ln\pi_u(a|s) = x(s)\,(e_a - \pi_u(\cdot|s))^\top`
  (the tests check it against the autodiff gradient).
"""

from __future__ import annotations

import numpy as np

from ..autodiff import Parameter
from ..nn import Module
from .base import ConfigError

__all__ = ["LinearWeights", "feature_dim", "linear_softmax_probs", "linear_softmax_score"]


class LinearWeights(Module):
    """Named weight arrays as Parameters of one Module (one flat buffer).

    ``LinearWeights(dtype, v=(d,), w=(d,))`` holds zero-initialised arrays
    ``self.v``, ``self.w``; the run loop checkpoints them and stops on a
    non-finite entry like any network's.  The linear algorithms update them in
    place (``weights.v.data[...] = new_v``): no tape is involved.
    """

    def __init__(self, dtype=np.float64, **shapes):
        super().__init__()
        if not shapes:
            raise ValueError("LinearWeights: give at least one name=shape")
        for name, shape in shapes.items():
            setattr(self, name, Parameter(np.zeros(shape, dtype=dtype)))

    def forward(self, *args, **kwargs):
        raise TypeError("LinearWeights holds weights; it is not called")


def feature_dim(observation_space, algorithm):
    """Length of the feature vector x(s) = the observation; a Box observation is required."""
    shape = getattr(observation_space, "shape", None)
    if not shape or not hasattr(observation_space, "low"):
        raise ConfigError(
            f"{algorithm} uses the observation vector as linear features x(s), so it needs a Box "
            f"observation space; got {observation_space}. Use one-hot observations "
            f"(e.g. minipg/RandomMDP-v0) or a Box task.")
    return int(np.prod(shape))


def linear_softmax_probs(x, U):
    r"""pi(.|s) = softmax(x(s)^T U) for features x (n, d) and weights U (d, A) -> (n, A)."""
    logits = x @ U
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))     # shifted: no overflow
    return z / z.sum(axis=-1, keepdims=True)


def linear_softmax_score(x, actions, probs):
    r"""psi = grad_U ln pi(a|s) = x(s) (e_a - pi(.|s))^T, flattened row-major like U.

    x (n, d), integer actions (n,), probs (n, A) -> (n, d * A).
    """
    centred = -probs.copy()
    centred[np.arange(len(actions)), actions] += 1.0          # e_a - pi(.|s)
    return (x[:, :, None] * centred[:, None, :]).reshape(len(actions), -1)
