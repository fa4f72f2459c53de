"""minipg's reverse-mode (and forward-mode) automatic differentiation engine.

>>> import numpy as np
>>> from minipg.autodiff import Tensor, ops
>>> x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
>>> y = ops.tanh(x * x).sum()
>>> y.backward()
>>> x.grad.round(6)
array([0.839949, 0.005364])
"""

from . import ops
from .functional import (backward_cotangents, fisher_vector_product, forward_tangents, grad,
                         jvp, value_and_grad, vjp)
from .gradcheck import GradcheckError, gradcheck
from .tensor import (DEFAULT_DTYPE, GraphFreedError, InplaceModificationError, Parameter,
                     Tensor, as_tensor, enable_grad, is_grad_enabled, no_grad)

__all__ = [
    "Tensor", "Parameter", "as_tensor", "ops", "no_grad", "enable_grad", "is_grad_enabled",
    "grad", "value_and_grad", "vjp", "jvp", "fisher_vector_product", "forward_tangents",
    "backward_cotangents", "gradcheck", "GradcheckError", "InplaceModificationError",
    "GraphFreedError", "DEFAULT_DTYPE",
]
