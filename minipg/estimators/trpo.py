r"""Trust Region Policy Optimization: the surrogate, the KL, F v, CG, the step, the line search.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "TRPO".
Paper: J. Schulman, S. Levine, P. Moritz, M. Jordan, P. Abbeel, "Trust Region
Policy Optimization", ICML 2015: eq. 14 (the sample-based problem), Appendix
C (the practical step: conjugate gradient on F x = g, the maximal step, a
line search on the true KL and the surrogate).  Formulas to check against:
``verification/FORMULAS.md`` "TRPO, K-FAC, ACKTR/TRPO" and "Tabular MDP/Fisher".

The problem of one iteration, on samples s ~ rho_old, a ~ pi_old (Weng, "TRPO"):

.. math::

    \max_\theta\; L(\theta) = \mathbb{E}\Big[\frac{\pi_\theta(a|s)}{\pi_{\theta_{old}}(a|s)}
                               \hat A_{\theta_{old}}(s, a)\Big]
    \quad\text{s.t.}\quad
    \bar D_{KL}(\theta) = \mathbb{E}_s[D_{KL}(\pi_{\theta_{old}}(\cdot|s) \,\|\, \pi_\theta(\cdot|s))]
    \le \delta.

Appendix C solves it approximately in three moves:

1. the linear and quadratic models at theta_old: g = grad L(theta_old) and
   the Fisher matrix F = Hessian of KL-bar at theta_old (the batch mean of
   the policy's Fisher information, E_s[J^T M J], with M the Fisher of the
   distribution in its own parameters -- logits, or mean and log-std);
2. x = (F + lambda I)^-1 g by conjugate gradient, using only products
   (F + lambda I) v (:class:`FisherOperator`, exact: J v by forward mode,
   J^T (.) by reverse mode; the damping lambda I keeps F + lambda I positive
   definite where F is singular, e.g. softmax logits' shift direction);
3. the step s = sqrt(2 delta / x^T (F + lambda I) x) x, the largest multiple
   of x whose quadratic model of the KL, 1/2 s^T (F + lambda I) s, equals
   delta; then a backtracking line search on theta_old + f s, f = 1, c,
   c^2, ..., accepting the first f whose EXACT mean KL is <= delta and whose
   surrogate improves on L(theta_old); if none does, theta stays theta_old.

Pure functions and one small class; the algorithm (``minipg/algorithms/trpo.py``)
wires them to a policy network.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg

from minipg.autodiff import Tensor, enable_grad, ops
from minipg.autodiff.functional import fisher_product
from minipg.distributions import Categorical, DiagGaussian

from . import checks as _c
from .terms import trust_region_step_size

# the estimators (each named by a reference case); the results' dataclasses (CGResult,
# LineSearchResult), the settings' checks (check_*) and distribution_outputs are public too,
# not estimators
__all__ = ["surrogate_objective", "mean_kl", "FisherOperator", "conjugate_gradient",
           "max_step", "backtracking_line_search"]


# ------------------------------------------------------------------ settings' checks

def _real(x, name, where, accepted):
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{where}: {name} must be {accepted}; got {type(x).__name__}")
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"{where}: {name} must be {accepted}; got {x!r}")
    return x


def check_max_kl(delta, where="trpo"):
    """delta, the trust region's radius: a finite float > 0."""
    delta = _real(delta, "max_kl (delta)", where, "a finite number > 0, e.g. 0.01")
    if delta <= 0:
        raise ValueError(f"{where}: max_kl (delta) must be a finite number > 0, e.g. 0.01; "
                         f"got {delta!r}")
    return delta


def check_damping(damping, where="trpo"):
    """lambda of F + lambda I: a finite float >= 0."""
    damping = _real(damping, "cg_damping (lambda)", where, "a finite number >= 0, e.g. 0.1")
    if damping < 0:
        raise ValueError(f"{where}: cg_damping (lambda) must be a finite number >= 0, e.g. 0.1; "
                         f"got {damping!r}")
    return damping


def check_cg_iterations(n, where="trpo"):
    """The number of conjugate-gradient iterations: an integer >= 1."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{where}: cg_iterations must be an integer >= 1, e.g. 10; got {n!r}")
    return int(n)


def check_shrink(c, where="trpo"):
    """The line search's shrink factor c: a float in the open interval (0, 1)."""
    c = _real(c, "line_search_shrink", where, "a number in (0, 1), e.g. 0.8")
    if not 0.0 < c < 1.0:
        raise ValueError(f"{where}: line_search_shrink must be a number in (0, 1), e.g. 0.8; "
                         f"got {c!r}")
    return c


# ------------------------------------------------------------------ the surrogate and the KL

def surrogate_objective(log_prob, log_prob_old, advantages):
    r"""The importance-weighted surrogate :math:`L(\theta)` (Weng, "TRPO", :math:`J^{TRPO}`;
    Schulman et al. 2015, eq. 14), maximised.

    .. math::

        L(\theta) = \mathbb{E}\big[r(\theta)\, \hat A\big], \qquad
        r(\theta) = \exp(\log\pi_\theta(a|s) - \log\pi_{\theta_{old}}(a|s)).

    At :math:`\theta = \theta_{old}` its value is :math:`\mathbb{E}[\hat A]` and its
    gradient the vanilla policy gradient :math:`\mathbb{E}[\hat A \nabla\log\pi]`.

    Parameters
    ----------
    log_prob : Tensor, shape (...) -- :math:`\log\pi_\theta(a|s)`.
    log_prob_old : plain array, same shape -- :math:`\log\pi_{\theta_{old}}(a|s)`, held constant.
    advantages : plain array, same shape -- :math:`\hat A`, held constant.

    Returns
    -------
    Tensor, scalar: the batch mean (maximise it).
    """
    where = "surrogate_objective"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    log_prob_old = _c.held_constant(log_prob_old, "log_prob_old", where, log_prob.shape,
                                    log_prob.dtype)
    advantages = _c.held_constant(advantages, "advantages", where, log_prob.shape,
                                  log_prob.dtype)
    ratio = ops.exp(log_prob - log_prob_old)                      # r(theta) = pi / pi_old
    return ops.mean(ratio * advantages)                           # E[r A], eq. 14


def mean_kl(dist_old, dist_new):
    r""":math:`\bar D_{KL} = \mathbb{E}_s[D_{KL}(\pi_{old}(\cdot|s) \,\|\, \pi_\theta(\cdot|s))]`,
    the constraint of Weng's "TRPO" (Schulman et al. 2015, eq. 14), a scalar Tensor.

    ``dist_old`` is pi_old built from held-constant arrays (its logits, or its
    mean and log-std, recorded at theta_old); ``dist_new`` is pi_theta on the
    tape.  The KL is the distributions' closed form, exact (no sampling of actions).
    """
    for name, d in (("dist_old", dist_old), ("dist_new", dist_new)):
        if not hasattr(d, "kl"):
            raise TypeError(f"mean_kl: {name} must be a distribution (Categorical or "
                            f"DiagGaussian); got {type(d).__name__}")
    return ops.mean(dist_old.kl(dist_new))                        # E_s KL(pi_old || pi)


# ------------------------------------------------------------------ F v and CG

def distribution_outputs(dist):
    """(the distribution's parameters as Tensors, its Fisher metric): the logits of a
    Categorical, (mean, log_std) of a DiagGaussian (log_std as the policy holds it).

    The ``outputs`` and ``metric`` of a :class:`FisherOperator` for the policy ``dist``."""
    if isinstance(dist, Categorical):
        return dist.logits, Categorical.fisher_metric
    if isinstance(dist, DiagGaussian):
        return (dist.mean, dist.log_std), DiagGaussian.fisher_metric
    raise TypeError(f"TRPO: no Fisher metric for a {type(dist).__name__} policy; accepted: "
                    "Categorical or DiagGaussian")


class FisherOperator:
    r"""v -> (F + lambda I) v at theta_old, F the batch-mean Fisher of the policy.

    ``F v = J^T M (J v)`` (Schulman et al. 2015, Appendix C.1, where the Fisher is
    written through the Jacobian of the distribution's parameters): J is the
    Jacobian of the distribution's parameters (``outputs_fn()``: the logits,
    or the pair (mean, log_std)) with respect to ``params``, M the Fisher of
    the distribution in those parameters averaged over the batch
    (``metric``: ``Categorical.fisher_metric`` or
    ``DiagGaussian.fisher_metric``).  F is also the Hessian of the mean KL
    at theta_old (``verification/FORMULAS.md`` "Tabular MDP/Fisher").

    The forward pass is recorded ONCE, at construction (theta_old): every
    product then pushes J v forward through the recorded graph and pulls
    M J v back, with no finite differences and no double backward.  The
    parameters must not change while the operator is used.  Vectors are flat,
    in the order of ``params``.
    """

    def __init__(self, outputs_fn, params, metric, damping=0.0):
        self.params = list(params)
        self.damping = check_damping(damping, "FisherOperator")
        self.metric = metric
        with enable_grad():
            outs = outputs_fn()
        self.tuple_outputs = isinstance(outs, (tuple, list))
        self.outputs = tuple(outs) if self.tuple_outputs else (outs,)
        for o in self.outputs:
            if not isinstance(o, Tensor):
                raise TypeError("FisherOperator: outputs_fn must return a Tensor or a tuple of "
                                f"Tensors computed from params; got {type(o).__name__}")
        self.output_arrays = tuple(o.data for o in self.outputs)
        self.sizes = [p.data.size for p in self.params]
        self.size = int(sum(self.sizes))
        self.dtype = np.result_type(*[p.data.dtype for p in self.params])
        self.products = 0                     # how many products were taken (profiling)

    def fisher(self, v):
        """F v (no damping), flat."""
        v = np.asarray(v, dtype=self.dtype).reshape(-1)
        if v.shape != (self.size,):
            raise ValueError(f"FisherOperator: v has shape {v.shape}; expected ({self.size},)")
        outs = self.outputs if self.tuple_outputs else self.outputs[0]
        fv = fisher_product(outs, self.params, v, self.metric)                # J^T M J v
        self.products += 1
        return fv

    def __call__(self, v):
        """(F + lambda I) v, flat."""
        v = np.asarray(v, dtype=self.dtype).reshape(-1)
        return self.fisher(v) + self.damping * v                   # damping: F + lambda I

    def linear_operator(self):
        """The damped operator as a ``scipy.sparse.linalg.LinearOperator`` (symmetric)."""
        return LinearOperator((self.size, self.size), matvec=self, rmatvec=self,
                              dtype=self.dtype)


@dataclass
class CGResult:
    """x ~ A^-1 g, A x, the residual norm ||g - A x||, and x^T A x."""
    x: np.ndarray
    Ax: np.ndarray
    residual: float
    xAx: float


def conjugate_gradient(operator, g, iterations):
    r"""x ~ A^-1 g by ``iterations`` steps of conjugate gradient from x = 0 (Schulman et al.
    2015, Appendix C, which used 10), with ``scipy.sparse.linalg.cg``.

    ``operator`` is a callable v -> A v (A symmetric positive definite, e.g.
    a :class:`FisherOperator` with damping > 0) or a LinearOperator.  CG runs
    exactly ``iterations`` steps unless the residual reaches 1e-10 ||g||
    first (scipy's ``rtol``); ``A x`` is taken once more afterwards, to give the
    true residual and ``x^T A x`` for the step size (:func:`max_step`).
    """
    iterations = check_cg_iterations(iterations, "conjugate_gradient")
    g = np.asarray(g)
    if g.ndim != 1 or g.size == 0 or not np.all(np.isfinite(g)):
        raise ValueError("conjugate_gradient: g must be a non-empty finite flat vector; got "
                         f"shape {g.shape}")
    A = operator if isinstance(operator, LinearOperator) else LinearOperator(
        (g.size, g.size), matvec=operator, rmatvec=operator, dtype=g.dtype)
    x, _info = cg(A, g, x0=np.zeros_like(g), rtol=1e-10, atol=0.0, maxiter=iterations)
    Ax = np.asarray(A.matvec(x)).reshape(-1)
    return CGResult(x, Ax, float(np.linalg.norm(g - Ax)), float(x @ Ax))


def max_step(x, xAx, max_kl):
    r"""s = sqrt(2 delta / x^T A x) x: the multiple of x with 1/2 s^T A s = delta
    (Schulman et al. 2015, Appendix C; ``verification/FORMULAS.md`` "TRPO, K-FAC, ACKTR/TRPO").

    ``xAx`` is x^T A x with A the (damped) Fisher; returns (s, the scale
    sqrt(2 delta / x^T A x)).  A zero direction (x^T A x = 0, e.g. g = 0) gives s = 0.
    """
    delta = check_max_kl(max_kl, "max_step")
    # the shared trust-region step size (ACKTR's too), with no cap: 1/2 s^T A s = delta
    scale = trust_region_step_size(xAx, delta, where="max_step")
    if scale == 0:                                                # a zero direction
        return np.zeros_like(x), 0.0
    return scale * np.asarray(x), scale


# ------------------------------------------------------------------ the line search

@dataclass
class LineSearchResult:
    """What the line search did.

    ``theta``: the parameters to keep (theta_old itself, a copy, when nothing
    was accepted); ``fraction``: the accepted f (0 when none); ``kl`` and
    ``improvement``: the exact mean KL and L(theta) - L(theta_old) at the kept
    parameters (0 and 0 when none); ``tries``: how many fractions were evaluated.
    """
    theta: np.ndarray
    fraction: float
    kl: float
    improvement: float
    accepted: bool
    tries: int


def backtracking_line_search(evaluate, theta_old, full_step, surrogate_old, max_kl,
                             shrink=0.8, max_backtracks=10):
    r"""theta_old + f s for the first f in 1, c, c^2, ..., c^(n-1) with exact mean KL <= delta
    and L(theta) > L(theta_old) (Schulman et al. 2015, Appendix C: a backtracking line
    search on the true KL constraint and the surrogate, from the maximal step).

    ``evaluate(theta) -> (L(theta), mean KL(pi_old || pi_theta))`` computes both
    exactly on the batch; ``surrogate_old`` is L(theta_old).  When no fraction
    passes, the parameters stay theta_old (``accepted`` False, ``fraction`` 0).
    """
    delta = check_max_kl(max_kl, "backtracking_line_search")
    shrink = check_shrink(shrink, "backtracking_line_search")
    if isinstance(max_backtracks, bool) or not isinstance(max_backtracks, numbers.Integral) \
            or max_backtracks < 1:
        raise ValueError("backtracking_line_search: max_backtracks must be an integer >= 1, "
                         f"e.g. 10; got {max_backtracks!r}")
    theta_old = np.asarray(theta_old)
    full_step = np.asarray(full_step)
    if full_step.shape != theta_old.shape:
        raise ValueError(f"backtracking_line_search: full_step {full_step.shape} and theta_old "
                         f"{theta_old.shape} must have the same shape")
    surrogate_old = float(surrogate_old)
    for k in range(int(max_backtracks)):
        fraction = shrink ** k                                    # f = c^k
        theta = theta_old + fraction * full_step
        surrogate, kl = (float(v) for v in evaluate(theta))
        improvement = surrogate - surrogate_old
        if kl <= delta and improvement > 0:                       # exact KL and L both checked
            return LineSearchResult(theta, fraction, kl, improvement, True, k + 1)
    return LineSearchResult(np.array(theta_old, copy=True), 0.0, 0.0, 0.0, False,
                            int(max_backtracks))
