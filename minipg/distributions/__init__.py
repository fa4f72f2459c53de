r"""Policy distributions and exploration noise, built on ``minipg.autodiff``.

* :class:`Categorical` (softmax over logits) for discrete actions;
* :class:`DiagGaussian` (mean, log-std) for continuous actions;
* :class:`TanhGaussian`, SAC's squashed Gaussian with the stable
  log-determinant correction;
* :class:`GaussianNoise`, :class:`OrnsteinUhlenbeckNoise` for DDPG/TD3
  exploration.

Reference: L. Weng, "Policy Gradient Algorithms" (2018), sections "Policy
Gradient", "TRPO", "DDPG", "TD3" and "SAC"; each module names its papers.

Common interface (where it applies)::

    d.log_prob(actions)         # Tensor (...), summed over the event axis
    d.entropy()                 # Tensor (...)   (TanhGaussian: entropy(rng, n), Monte Carlo)
    d.kl(other)                 # Tensor (...),  KL(d || other)
    d.sample(rng)               # ndarray, no gradient
    d.rsample(rng=None, eps=None)   # Tensor (TanhGaussian: (action, log_prob))
    d.mode()                    # ndarray, the deterministic action
    Cls.fisher_metric(outputs, tangents)   # for autodiff.fisher_vector_product

Parameters may be Tensors (gradients flow to them) or arrays (constants);
randomness enters as an argument (a numpy Generator, or the noise ``eps``
itself for common random numbers).
"""

from .categorical import Categorical
from .gaussian import DiagGaussian
from .noise import GaussianNoise, OrnsteinUhlenbeckNoise
from .tanh_gaussian import TanhGaussian, tanh_log_det_jacobian

__all__ = ["Categorical", "DiagGaussian", "TanhGaussian", "tanh_log_det_jacobian",
           "GaussianNoise", "OrnsteinUhlenbeckNoise"]
