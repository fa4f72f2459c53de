"""Numerical kernels of minipg: return/advantage estimators, Retrace targets, fused optimizer
updates, the row-wise log-softmax and sampling of Categorical policies, a dense layer's relu
passes, the categorical projection of D4PG's distributional critic and the sum tree of
prioritized replay.

Every kernel exists three times: ``<name>_numba`` (``@njit(cache=True)``,
no fastmath, no validation), ``<name>_numpy`` (an independently written
plain-NumPy twin, no validation) and the public ``<name>``, which validates
its inputs and calls the numba kernel.  Setting ``NUMBA_DISABLE_JIT=1`` runs
the numba kernels as plain Python.
"""

from .dense import (
    bias_relu,
    bias_relu_numba,
    bias_relu_numpy,
    relu_mask,
    relu_mask_numba,
    relu_mask_numpy,
)
from .gae import gae, gae_numba, gae_numpy
from .nstep import n_step_returns, n_step_returns_numba, n_step_returns_numpy
from .optim_updates import (
    adam_update,
    adam_update_numba,
    adam_update_numpy,
    rmsprop_update,
    rmsprop_update_numba,
    rmsprop_update_numpy,
    sgd_update,
    sgd_update_numba,
    sgd_update_numpy,
)
from .projection import (
    categorical_projection,
    categorical_projection_numba,
    categorical_projection_numpy,
)
from .polyak import (
    polyak_update_kernel,
    polyak_update_kernel_numba,
    polyak_update_kernel_numpy,
)
from .retrace import retrace, retrace_numba, retrace_numpy
from .returns import (
    discounted_returns,
    discounted_returns_numba,
    discounted_returns_numpy,
)
from .softmax import (
    categorical_sample_rows,
    categorical_sample_rows_numba,
    categorical_sample_rows_numpy,
    log_softmax_rows,
    log_softmax_rows_numba,
    log_softmax_rows_numpy,
    log_softmax_rows_vjp,
    log_softmax_rows_vjp_numba,
    log_softmax_rows_vjp_numpy,
)
from .sumtree import (
    sum_tree_find,
    sum_tree_find_numba,
    sum_tree_find_numpy,
    sum_tree_leaves,
    sum_tree_update,
    sum_tree_update_numba,
    sum_tree_update_numpy,
)

__all__ = [
    "gae",
    "gae_numba",
    "gae_numpy",
    "discounted_returns",
    "discounted_returns_numba",
    "discounted_returns_numpy",
    "n_step_returns",
    "n_step_returns_numba",
    "n_step_returns_numpy",
    "retrace",
    "retrace_numba",
    "retrace_numpy",
    "sgd_update",
    "sgd_update_numba",
    "sgd_update_numpy",
    "adam_update",
    "adam_update_numba",
    "adam_update_numpy",
    "rmsprop_update",
    "rmsprop_update_numba",
    "rmsprop_update_numpy",
    "polyak_update_kernel",
    "polyak_update_kernel_numba",
    "polyak_update_kernel_numpy",
    "log_softmax_rows",
    "log_softmax_rows_numba",
    "log_softmax_rows_numpy",
    "log_softmax_rows_vjp",
    "log_softmax_rows_vjp_numba",
    "log_softmax_rows_vjp_numpy",
    "categorical_sample_rows",
    "categorical_sample_rows_numba",
    "categorical_sample_rows_numpy",
    "bias_relu",
    "bias_relu_numba",
    "bias_relu_numpy",
    "relu_mask",
    "relu_mask_numba",
    "relu_mask_numpy",


    "categorical_projection",
    "categorical_projection_numba",
    "categorical_projection_numpy",
    "sum_tree_update",
    "sum_tree_update_numba",
    "sum_tree_update_numpy",
    "sum_tree_find",
    "sum_tree_find_numba",
    "sum_tree_find_numpy",
    "sum_tree_leaves",
]
