"""minipg: a NumPy reference implementation of policy-gradient reinforcement learning.

Every algorithm of "Policy Gradient Algorithms" (L. Weng, 2018) on a small
reverse-mode autodiff engine of its own (``minipg.autodiff``), with layers
whose parameters live in one flat buffer (``minipg.nn``), fused optimizers
(``minipg.optim``), distributions (``minipg.distributions``) and
numba-compiled kernels with plain-NumPy twins (``minipg.kernels``).
"""

__version__ = "0.1.0"
