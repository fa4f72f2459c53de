r"""Reference cases of TRPO: the surrogate, the KL, F v, CG, the step and the line search.

Registered with :data:`minipg.reference.case.CASES`.  One case per policy head
(categorical logits; a diagonal Gaussian with its state-independent log-std
among the constrained parameters).  The flat parameter vector of a case is its
parameter arrays in the order the manifest's formula names them, each
flattened row-major; every vector-valued output is recorded per parameter array
(``<output>.<parameter>``) in that split.
"""

from __future__ import annotations

import numpy as np

from ..distributions import Categorical, DiagGaussian
from ..estimators import trpo
from .case import CASES

FORMULA = [
    "theta: the flat vector of the parameter arrays {{params}}, each row-major",
    "ratio = exp(log pi_theta(a|s) - log_prob_old);  surrogate L(theta) = mean(ratio A)  "
    "(maximised; at theta_old the ratios are 1 up to the float32 rounding of log_prob_old)",
    "g = grad L at theta_old  (recorded per parameter as grad.surrogate.<param>)",
    "mean_kl(theta) = mean_s KL(pi_theta_old(.|s) || pi_theta(.|s)), closed form: {{kl}}",
    "F = the Hessian of mean_kl at theta_old = mean_s J_s^T M_s J_s, M the Fisher of the "
    "distribution in {{dist_params}};  fvp = F fvp_vector (no damping)",
    "A = F + cg_damping I;  cg_solution = x_k: k = cg_iterations steps of conjugate gradient "
    "(Hestenes-Stiefel, x_0 = 0, r_0 = p_0 = g) on A x = g, no early stop",
    "cg_residual = ||g - A x_k||;  xAx = x_k^T A x_k;  step_scale = sqrt(2 max_kl / xAx);  "
    "step = step_scale x_k",
    "line search: f_j = line_search_shrink^j, j = 0, 1, ..., line_search_max_steps - 1; "
    "theta_j = theta_old + f_j step; accept the first j with mean_kl(theta_j) <= max_kl and "
    "L(theta_j) > L(theta_old); line_search_kl[j], line_search_surrogate[j] for every j tried",
    "line_search_fraction = f_j accepted (0 if none);  theta_new = theta_old + f_j step "
    "(theta_old if none);  kl = mean_kl(theta_new);  surrogate_improvement = "
    "L(theta_new) - L(theta_old)",
]

# A decision of the line search (KL <= delta, L improves) is compared between two
# implementations: each tried fraction's KL and improvement must be this far (relative)
# from the boundary, so that rounding (~1e-14) cannot flip it.
DECISION_MARGIN = 1e-6
# CG's recorded iterate x_k must be an iterate before convergence: its relative residual
# at least this (rounding then perturbs x_k by ~1e-14 relative, not by the ~1e-9 that
# iterating on a converged residual gives)
CG_RESIDUAL_FLOOR = 1e-6


def _set_theta(leaves, theta):
    """Write the flat vector theta into the parameter leaves (row-major pieces, in order)."""
    start = 0
    for leaf in leaves:
        n = leaf.data.size
        leaf.data[...] = theta[start:start + n].reshape(leaf.shape)
        leaf.mark_modified()
        start += n


def _split(c, name, vector, names, description):
    """Record a flat vector as one output per parameter array, ``name.<param>``."""
    start = 0
    for p in names:
        shape = c.arrays[p].shape
        n = int(np.prod(shape))
        c.output(f"{name}.{p}", vector[start:start + n].reshape(shape),
                 f"{description}: the piece of parameter {p}")
        start += n


def _trpo_case(c, kind):
    N, k = 10, 3
    # delta: the categorical case's full step is accepted; the Gaussian's (a wide trust
    # region, 0.3) overshoots the KL at f = 1 and is accepted at f = 0.8
    delta = 0.02 if kind == "categorical" else 0.3
    damping, shrink, max_steps = 0.1, 0.8, 10
    # CG steps: few enough that the residual stays far above scipy's stopping rule
    # (||r|| <= 1e-10 ||g||; checked below): past convergence the iterates are rounding
    # noise that two correct implementations need not share
    iterations = 10 if kind == "categorical" else 5
    c.hp(max_kl=delta, cg_damping=damping, cg_iterations=iterations, line_search_shrink=shrink,
         line_search_max_steps=max_steps)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    if kind == "categorical":
        n = 3
        policy = c.mlp("policy", [k, 8, n], "tanh", None, "obs", "logits", gain=1.5)
        names = c.params("policy")

        def distribution():
            return Categorical(policy(obs))
        with_grad = distribution()
        actions = c.input("actions", with_grad.sample(c.rng), "actions, drawn from pi_theta_old")
        c.formula(params=", ".join(names), kl="sum_a p_a (log p_a - log q_a)",
                  dist_params="its logits: M = diag(p) - p p^T")
    else:
        m = 2
        policy = c.mlp("policy", [k, 8, m], "tanh", None, "obs", "mean of the Gaussian",
                       gain=1.5)
        log_std = c.parameter("policy.log_std", np.array([-0.3, 0.2]),
                              "state-independent log sigma, shape (2,), a constrained parameter")
        names = c.params("policy") + ["policy.log_std"]

        def distribution():
            return DiagGaussian(policy(obs), log_std)
        with_grad = distribution()
        actions = c.input("actions", with_grad.sample(c.rng), "actions, drawn from pi_theta_old")
        c.formula(params=", ".join(names),
                  kl="sum_i [log(sigma_q,i / sigma_p,i) + (sigma_p,i^2 + (mu_p,i - mu_q,i)^2) "
                     "/ (2 sigma_q,i^2) - 1/2]",
                  dist_params="(mean, log_std): M = diag(1 / sigma^2) for the mean, 2 I for the "
                              "shared log_std")
    leaves = [c.leaves[p] for p in names]
    log_prob = with_grad.log_prob(actions)
    log_prob_old = c.input("log_prob_old", log_prob.data,
                           "log pi_theta_old(a|s) of the acting policy (rounded to float32)")
    advantages = c.input("advantages", c.rng.standard_normal(N), "A, held constant")
    surrogate = trpo.surrogate_objective(log_prob, log_prob_old, advantages)
    c.output("log_prob", log_prob, "log pi_theta_old(a|s)")
    c.output("surrogate", surrogate, "L(theta_old) = mean(ratio A)")
    c.gradient("surrogate", surrogate, names, "g, at theta_old")
    g = np.concatenate([c.arrays[f"grad.surrogate.{p}"].ravel() for p in names])

    outputs, metric = trpo.distribution_outputs(with_grad)
    fisher = trpo.FisherOperator(lambda: outputs, leaves, metric, damping)
    pieces = [c.input(f"fvp_vector.{p}", c.rng.standard_normal(c.arrays[p].shape),
                      f"a vector v for F v: the piece of parameter {p}") for p in names]
    _split(c, "fvp", fisher.fisher(np.concatenate([x.ravel() for x in pieces])), names,
           "F fvp_vector (no damping)")

    cg_result = trpo.conjugate_gradient(fisher, g, iterations)
    if cg_result.residual < CG_RESIDUAL_FLOOR * np.linalg.norm(g):
        raise RuntimeError(f"reference case {c.name}: CG converged to a relative residual "
                           f"below {CG_RESIDUAL_FLOOR}; take fewer iterations")
    _split(c, "cg_solution", cg_result.x, names, "x_k, k = cg_iterations CG steps")
    c.output("cg_residual", cg_result.residual, "||g - (F + cg_damping I) x_k||")
    c.output("xAx", cg_result.xAx, "x_k^T (F + cg_damping I) x_k")
    step, scale = trpo.max_step(cg_result.x, cg_result.xAx, delta)
    c.output("step_scale", scale, "sqrt(2 max_kl / xAx)")
    _split(c, "step", step, names, "step_scale x_k, the full step")

    theta_old = np.concatenate([leaf.data.ravel() for leaf in leaves])
    dist_old = Categorical(with_grad.logits.data.copy()) if kind == "categorical" else \
        DiagGaussian(with_grad.mean.data.copy(), with_grad.log_std.data.copy())
    tried = []

    def evaluate(theta):
        _set_theta(leaves, theta)
        new = distribution()
        value = float(trpo.surrogate_objective(new.log_prob(actions), log_prob_old,
                                               advantages).data)
        kl = float(trpo.mean_kl(dist_old, new).data)
        tried.append((value, kl))
        return value, kl

    surrogate_old = float(surrogate.data)
    search = trpo.backtracking_line_search(evaluate, theta_old, step, surrogate_old, delta,
                                           shrink, max_steps)
    _set_theta(leaves, theta_old)
    for value, kl in tried:
        if abs(kl - delta) < DECISION_MARGIN * delta or \
                abs(value - surrogate_old) < DECISION_MARGIN * abs(surrogate_old):
            raise RuntimeError(f"reference case {c.name}: a line-search decision is within "
                               f"{DECISION_MARGIN} of its boundary; change the seed")
    c.output("line_search_kl", np.array([kl for _, kl in tried]),
             "mean_kl(theta_j) for each fraction tried")
    c.output("line_search_surrogate", np.array([v for v, _ in tried]),
             "L(theta_j) for each fraction tried")
    c.output("line_search_fraction", search.fraction, "the accepted fraction (0: none)")
    _split(c, "theta_new", search.theta, names, "the parameters after the step")
    c.output("kl", search.kl, "mean_kl(theta_new)")
    c.output("surrogate_improvement", search.improvement, "L(theta_new) - L(theta_old)")


@CASES.register(
    "trpo_categorical", seed=1051, section="TRPO",
    title="TRPO step, categorical policy: surrogate, F v, CG, step size, KL line search",
    paper="Schulman et al. 2015, eq. 14 and Appendix C",
    estimators=["minipg.estimators.trpo.surrogate_objective", "minipg.estimators.trpo.mean_kl",
                "minipg.estimators.trpo.FisherOperator",
                "minipg.estimators.trpo.conjugate_gradient", "minipg.estimators.trpo.max_step",
                "minipg.estimators.trpo.backtracking_line_search"],
    formula=FORMULA)
def _trpo_categorical(c):
    _trpo_case(c, "categorical")


@CASES.register(
    "trpo_gaussian", seed=1052, section="TRPO",
    title="TRPO step, diagonal-Gaussian policy with its log-std among the constrained "
          "parameters",
    paper="Schulman et al. 2015, eq. 14 and Appendix C",
    estimators=["minipg.estimators.trpo.surrogate_objective", "minipg.estimators.trpo.mean_kl",
                "minipg.estimators.trpo.FisherOperator",
                "minipg.estimators.trpo.conjugate_gradient", "minipg.estimators.trpo.max_step",
                "minipg.estimators.trpo.backtracking_line_search"],
    formula=FORMULA)
def _trpo_gaussian(c):
    _trpo_case(c, "gaussian")
