r"""Audit someone else's gradient: minipg's exact test beds as a public API.

An outside estimator -- written in PyTorch, JAX or NumPy -- is passed as a
plain Python function on NumPy arrays.  A check draws seeded batches from one
of minipg's exact test beds (:mod:`minipg.audit.beds`: a tabular MDP solved by
linear solves, an LQR solved by Lyapunov equations), calls the function on
each batch and compares what it returns with the exact quantity::

    from minipg.audit import exact

    def my_reinforce(states, actions, rewards, t, terminated, truncated, features,
                     theta, gamma, n_episodes, **unused):
        ...                                    # your code: a gradient estimate
        return grad                            # a NumPy array of shape theta.shape

    result = exact.check("reinforce", my_reinforce)
    print(result)                              # statistic, threshold, target, mean, verdict
    assert result.passed

The function receives the batch as keyword arguments; it may name only the
ones it uses (or take ``**kwargs``).  The tabular policy-gradient checks
take ``policy="linear"`` (default: pi(a|s) ∝ exp(phi(s,a)^T theta) with 4
random features) or ``policy="tabular"`` (the same pi with one-hot features,
theta its logits ``theta[s * A + a]``; the logits of a state never acted in
are constant, equal to the target there, and left out of the test).
:func:`describe` lists, for each check, every argument and what must be
returned; :data:`CHECKS` holds the checks in order and
:func:`minipg_estimator` returns minipg's own correct estimator of each (its
reference implementation, the one the checks are shown to pass).

The checks
----------
Statistical (the function is called on ``n_batches`` independent seeded
batches; its estimates g_1 .. g_n are tested with Hotelling's T^2 of
:func:`minipg.audit.stats.hotelling_test`, H0 "E[g] = exact target", at
:data:`~minipg.audit.stats.CONFIDENCE` = 99.9%, in the span of the samples):

``reinforce``, ``reinforce_no_gamma_t``, ``actor_critic``, ``gae_policy_gradient``
    episodes of a linear-softmax policy on an episodic tabular MDP; the
    estimate is the per-episode mean of ``sum_t [gamma^t] psi_t grad log
    pi(a_t|s_t)`` with psi the Monte-Carlo return, the exact Q^pi, or GAE
    advantages from the exact V^pi.  Target: ``grad J``
    (``reinforce_no_gamma_t``: the gamma^t-free quantity ``sum_s eta_1(s)
    sum_a grad pi Q_gamma``).
``off_policy``
    i.i.d. (s, a) ~ d_b(s) b(a|s) on a continuing MDP, behaviour b uniform,
    exact Q^pi; the estimate is the sample mean of ``rho Q grad log pi``.
    Target: Degris et al.'s ``g = sum_s d_b(s) sum_a grad pi Q^pi``.
``off_policy_emphatic``
    histories of 21 behaviour steps from d_b (b = (pi + 3 uniform) / 4); the
    estimate is ACE's ``rho_H M_H Q^pi grad log pi`` at each history's last
    step, with the follow-on trace ``M_t = 1 + gamma rho_{t-1} M_{t-1}``.
    Target: the emphatic gradient to that horizon, ``sum_{k<=20} gamma^k
    d_b^T P_pi^k [sum_a grad pi Q^pi]`` (-> grad J_beta, Imani et al. 2018);
    Off-PAC's ``g`` is the wrong target named when the trace is left out.
``dpg``
    states from the normalised discounted state distribution of an LQR
    policy u = K x, with the exact critic Q^K (its action gradient and its
    quadratic form); the estimate is the sample mean of ``grad_u Q x^T``.
    Target: ``E_{x ~ rho/|rho|}[...] = (1 - gamma) grad_K J``.
``fisher_vector_product``
    states s ~ d (normalised discounted visitation) and actions a ~ pi; the
    estimate is the batch Fisher (or KL Hessian) times a fixed vector v.
    Target: ``F v`` with the exact ``F = sum_s d(s) sum_a pi grad log pi
    grad log pi^T``.

Deterministic (no sampling noise in the target; compared entry by entry):

``natural_gradient``
    the exact gradient, the state weights and the policy; the function
    returns ``F^-1 g``.  Relative tolerance 1e-6: a float64 solve, direct or
    by conjugate gradient to a small residual (CG on this 4-dimensional F
    converges in 4 steps to ~1e-15); a float32 computation may not reach it.
``returns``, ``gae``, ``n_step``, ``retrace``
    random episodes of the tabular MDP, back to back in one 1-D rollout, with
    terminations AND truncations (a time limit).  Two calls: (1) with an
    arbitrary critic (random values, nonzero even at terminal states, so that
    bootstrapping past a termination shows) the targets must equal the
    definition (``verification/FORMULAS.md``; minipg's kernels
    :func:`~minipg.kernels.discounted_returns`, :func:`~minipg.kernels.gae`,
    :func:`~minipg.kernels.n_step_returns`; Retrace by its recursion,
    "Retrace and ACER/ACER recursion") within a relative 1e-5, which float32
    arithmetic meets (episodes of at most 12 steps: float32 rounding of ~12
    accumulated terms is < 1e-6; stable-baselines3's float32 buffer is at
    1.3e-7) while every known wrong variant misses by more than 1e-2 (the
    report gives the nearest one's distance; the critic is at least 1 at the
    terminal state); (2) with the exact critic, the targets must be
    unbiased for the exact Q^pi(s_t, a_t) (A^pi for GAE): Hotelling's T^2 of
    the per-episode sums of ``target_t - exact_t``, one component per state,
    against 0.

Each result (:class:`AuditResult`) carries the statistic, its threshold, the
exact target, the estimator's mean, PASS/FAIL and, on a failure, the known
wrong targets the mean matches (a dropped gamma^t, a missing importance
weight, a sum where a mean belongs, a sign flip, ``g`` in place of ``grad
J_beta`` ...), each tested at the same level.  A correct estimator fails a
statistical check with probability 1 - confidence = 0.001 per seed.

Bad output from the function (an exception inside it, a non-array, a wrong
shape, a non-real dtype, NaN or inf) raises :class:`EstimatorError` naming the
function and what was expected.
"""

from __future__ import annotations

import inspect
import numbers
import traceback
from dataclasses import dataclass, field

import numpy as np

from minipg.autodiff import Tensor, grad, ops
from minipg.autodiff.functional import fisher_vector_product
from minipg.distributions import Categorical
from minipg.envs.tabular import LinearSoftmaxPolicy, one_hot_features
from minipg.estimators.actor_critic import actor_objective
from minipg.estimators.dpg import dpg_actor_gradient
from minipg.estimators.off_policy import off_policy_actor_objective
from minipg.estimators.reinforce import episode_discounts, reinforce_objective
from minipg.kernels import discounted_returns, gae, n_step_returns

from .beds import continuing_bed, dpg_linear_jacobian, episodic_bed, lqr_bed, step_log_prob
from .stats import CONFIDENCE, SingularCovarianceError, check_confidence, hotelling_test

__all__ = [
    "CHECKS", "ExactCheck", "AuditResult", "WrongTarget", "EstimatorError", "UnknownCheckError",
    "UsageError", "USER_ERRORS", "check", "check_names", "describe", "minipg_estimator",
    "call_estimator", "load_estimator", "function_name",
    "DEFINITION_RTOL", "NATURAL_GRADIENT_RTOL",
    "retrace_targets",
    "minipg_reinforce", "minipg_reinforce_no_gamma_t", "minipg_actor_critic",
    "minipg_gae_policy_gradient", "minipg_off_policy", "minipg_off_policy_emphatic", "minipg_dpg",
    "minipg_fisher_vector_product", "minipg_natural_gradient", "minipg_returns", "minipg_gae",
    "minipg_n_step", "minipg_retrace",
]

# the target checks: float32 rounding over <= ~30 accumulated terms stays below 2e-6
DEFINITION_RTOL = 1e-5
# natural gradient: a CG solve stopped at its usual residual, or float32 products
NATURAL_GRADIENT_RTOL = 1e-6


class EstimatorError(ValueError):
    """The audited function raised, or returned something other than what the check
    expects; the message names the function and what was expected."""


class UnknownCheckError(KeyError):
    """A check name that does not exist (the message lists the names accepted)."""

    def __str__(self):
        return str(self.args[0])


class UsageError(ValueError):
    """A command-line usage mistake of ``minipg audit --estimator/--check``."""


# what the command line reports in one line (exit status 2) instead of a traceback
USER_ERRORS = (EstimatorError, UnknownCheckError, UsageError, ValueError)


def load_estimator(spec):
    """The function named by ``"package.module:function"`` (dots after the colon reach an
    attribute: ``module:Class.method``).  The current directory is searched too, as
    ``python -m`` would.  Raises :class:`EstimatorError` naming what could not be found."""
    import importlib
    import os
    import sys
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise EstimatorError(f"the estimator must be given as MODULE:FUNCTION (for example "
                             f"mypackage.grads:reinforce_gradient); got {spec!r}")
    module_name, attribute = spec.split(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:
        raise EstimatorError(f"cannot import module {module_name!r} of {spec!r}: "
                             f"{type(exc).__name__}: {exc}") from exc
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise EstimatorError(f"module {module_name!r} has no attribute {attribute!r} "
                                 f"(from {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise EstimatorError(f"{spec} is a {type(obj).__name__}, not a function")
    return obj


# ================================================================== results

@dataclass(frozen=True)
class WrongTarget:
    """A known wrong target: what a common mistake makes the mean equal."""
    name: str
    explanation: str


@dataclass
class AuditResult:
    r"""The outcome of one check of an outside estimator.

    ``statistic`` is compared with ``threshold`` (``passed``: statistic <=
    threshold, and every further condition in ``details``); ``target`` is the
    exact quantity (for the target checks: the definition's targets on the
    audit episodes) and ``mean`` the estimator's mean (its output there);
    ``matches`` the known wrong targets the mean is consistent with, at the
    same level, when the check failed; ``diagnosis`` one sentence saying so.
    ``str(result)`` is a readable report."""
    check: str
    estimator: str
    passed: bool
    statistic: float
    threshold: float
    test: str
    target: np.ndarray
    mean: np.ndarray
    target_name: str
    confidence: float
    n: int
    matches: list = field(default_factory=list)
    diagnosis: str = ""
    details: list = field(default_factory=list)

    def __str__(self):
        def vec(a):
            a = np.asarray(a)
            if a.size > 8:
                first = np.array2string(a.ravel()[:6], precision=4)
                return f"array of shape {a.shape}, first {first}"
            return np.array2string(a, precision=5, suppress_small=False)
        lines = [f"check {self.check}: {self.estimator}  ->  {'PASS' if self.passed else 'FAIL'}",
                 f"  test        {self.test}",
                 f"  statistic   {self.statistic:.4g}  (threshold {self.threshold:.4g})",
                 f"  target      {self.target_name}: {vec(self.target)}",
                 f"  mean        {vec(self.mean)}"]
        lines += [f"  also        {d}" for d in self.details]
        if self.diagnosis:
            lines.append(f"  diagnosis   {self.diagnosis}")
        return "\n".join(lines)


# ======================================================= calling the audited function

def function_name(fn):
    """``module:qualified name`` of the audited function (as the reports name it)."""
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}:{name}"


def call_estimator(fn, inputs, shape, expected):
    r"""``fn(**inputs)`` checked: a finite real NumPy array of ``shape`` (float64 copy).

    ``fn`` receives only the arguments its signature names, unless it takes
    ``**kwargs`` (then all of them); a required parameter that is not among
    ``inputs`` is an :class:`EstimatorError` listing the arguments on offer.
    An exception inside ``fn`` becomes an :class:`EstimatorError` naming the
    function, the exception and the line of ``fn``'s code that raised it
    (chained, so the original traceback stays available).  ``expected`` says
    in words what the check expects (it is quoted in every error)."""
    name = function_name(fn)
    if not callable(fn):
        raise EstimatorError(f"the estimator must be a function; got {type(fn).__name__}")
    kwargs = select_arguments(fn, name, inputs)
    try:
        out = fn(**kwargs)
    except Exception as exc:  # the user's code failed: say where, and what was expected
        where = where_it_raised(exc)
        raise EstimatorError(f"{name} raised {type(exc).__name__}: {exc}{where}; it was called "
                             f"with {', '.join(sorted(kwargs))} and should return "
                             f"{expected}") from exc
    if not isinstance(out, np.ndarray) and not isinstance(out, np.generic):
        hint = (" (a torch tensor: return t.detach().cpu().numpy())"
                if type(out).__module__.startswith("torch") else "")
        raise EstimatorError(f"{name} returned a {type(out).__name__}; expected {expected}, as a "
                             f"NumPy array{hint}")
    out = np.asarray(out)
    if out.dtype.kind not in "fiu":
        raise EstimatorError(f"{name} returned an array of dtype {out.dtype}; expected {expected}"
                             f" (real numbers: float64 or float32)")
    if out.shape != tuple(shape):
        raise EstimatorError(f"{name} returned shape {out.shape}; expected {expected}, shape "
                             f"{tuple(shape)}")
    bad = ~np.isfinite(out)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise EstimatorError(f"{name} returned {int(bad.sum())} non-finite entries (NaN or inf; "
                             f"the first at index {first}); expected {expected}, all finite")
    return out.astype(np.float64)


def where_it_raised(exc):
    """The text ' at FILE:LINE' of the innermost frame of the audited code (not minipg's
    call), and of the innermost frame of all when that is in a library it called."""
    frames = traceback.extract_tb(exc.__traceback__)[1:]        # [0] is call_estimator
    if not frames:
        return ""
    here = frames[-1]
    text = f" at {here.filename}:{here.lineno}"
    library = ("site-packages", "dist-packages", "/lib/python")
    own = [f for f in frames if not any(part in f.filename for part in library)]
    if own and own[-1] is not here:
        text = f" at {own[-1].filename}:{own[-1].lineno} (raised in {here.filename}:{here.lineno})"
    return text


def select_arguments(fn, name, inputs):
    """The subset of ``inputs`` that ``fn``'s signature accepts (copies: fn may write)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):          # a builtin without a signature: pass everything
        parameters = None
    copy = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in inputs.items()}
    if parameters is None or any(p.kind is p.VAR_KEYWORD for p in parameters):
        return copy
    accepted = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [p.name for p in parameters if p.default is p.empty and p.name not in inputs
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        raise EstimatorError(f"{name} requires {', '.join(missing)}, which this check does not "
                             f"supply; it supplies (as keyword arguments) "
                             f"{', '.join(inputs)}")
    return {k: v for k, v in copy.items() if k in accepted}


# ============================================================== the statistical tests

def safe_hotelling(samples, target, confidence, size_name="n_batches"):
    """Hotelling's T^2 in the samples' span, or None when it cannot be formed (a constant
    component: the estimates do not vary).  Too few samples for the test is the caller's
    setting, not the estimator's fault: a ValueError naming ``size_name`` and its minimum."""
    n, p = np.shape(samples)
    if n <= p + 1:
        raise ValueError(f"{size_name}={n} is too small for Hotelling's T^2 on {p} "
                         f"components; accepted: {size_name} >= {p + 2}")
    try:
        return hotelling_test(samples, target, confidence, span_only=True)
    except SingularCovarianceError:      # only that: any other ValueError is a real error
        return None


def mean_check(name, fn, samples, target, target_name, wrong, confidence, what):
    """A statistical check's result: Hotelling's T^2 of ``samples`` against ``target``,
    and on a failure the wrong targets (name -> (WrongTarget, value)) not rejected."""
    samples = np.asarray(samples, dtype=np.float64)
    flat = samples.reshape(len(samples), -1)
    target = np.asarray(target, dtype=np.float64)
    mean = flat.mean(axis=0).reshape(target.shape)
    # components that never vary and equal the target exactly (the logits of a state that is
    # never acted in, with a tabular policy) agree exactly; the test is on the others
    constant = np.all(flat == flat[0], axis=0) & (flat[0] == target.ravel())
    keep = ~constant if not constant.all() else np.ones_like(constant)
    flat = flat[:, keep]
    test = safe_hotelling(flat, target.ravel()[keep], confidence)
    if test is None:                     # constant estimates: no T^2, and certainly no pass
        statistic, threshold, passed = float("inf"), 0.0, False
        described = (f"Hotelling T^2 cannot be formed: a component of the estimates is constant "
                     f"over the {len(flat)} batches (n={len(flat)}, {100 * confidence:g}%)")
    else:
        statistic, threshold = test.t2, test.threshold
        described = test.describe()
        passed = not test.rejected
    matches = []
    if not passed:
        for wrong_target, value in wrong:
            value = np.asarray(value, dtype=np.float64).ravel()[keep]
            w_test = safe_hotelling(flat, value, confidence)
            close = (np.allclose(flat.mean(axis=0), value, rtol=1e-9, atol=1e-12)
                     if w_test is None else not w_test.rejected)
            if close:
                matches.append(wrong_target)
    if constant.any() and not constant.all():
        what += f"; {int(constant.sum())} components constant and exact (not tested)"
    return AuditResult(name, function_name(fn), passed, statistic, threshold,
                       f"{described}; {what}", target, mean, target_name, confidence, len(flat),
                       matches, diagnose(passed, matches, "mean"))


def diagnose(passed, matches, noun):
    if passed:
        return ""
    if not matches:
        return (f"the {noun} matches none of the known wrong targets of this check (see "
                f"exact.describe for them)")
    said = "; or ".join(f"{m.name} -- {m.explanation}" for m in matches)
    return f"the {noun} matches {said}"


# ================================================================ the check registry

@dataclass(frozen=True)
class ExactCheck:
    """One public check: its name, a summary, the keyword arguments the function
    receives (name -> description), what it must return, the known wrong targets
    (diagnosed on a failure), and the runner ``run(fn, rng, size, confidence)``."""
    name: str
    summary: str
    arguments: dict
    returns: str
    wrong_targets: tuple
    run: object
    reference: object
    default_size: dict
    policies: tuple = ("linear",)


CHECKS = {}


def register(name, summary, arguments, returns, wrong_targets, reference,
             policies=("linear",), **default_size):
    def wrap(run):
        CHECKS[name] = ExactCheck(name, summary, dict(arguments), returns, tuple(wrong_targets),
                                  run, reference, default_size, tuple(policies))
        return run
    return wrap


BOTH = ("linear", "tabular")


def as_policy(kind, policy, theta):
    """The bed's policy pi as a linear softmax (its random features, ``"linear"``) or as a
    tabular softmax (``"tabular"``: one-hot features phi(s, a) = e_{s A + a}, theta the
    logits of the same pi, so that every exact quantity of pi is unchanged)."""
    if kind == "linear":
        return policy, theta
    tabular = LinearSoftmaxPolicy(one_hot_features(policy.n_states, policy.n_actions))
    return tabular, policy.logits(theta).reshape(-1)


def policy_words(policy):
    d = policy.n_params
    tabular = np.array_equal(policy.features,
                             one_hot_features(policy.n_states, policy.n_actions))
    return f"tabular softmax ({d} logits)" if tabular else f"linear softmax with {d} features"


def check_names():
    """The names of the public checks, in order."""
    return list(CHECKS)


def get_check(name):
    if name not in CHECKS:
        raise UnknownCheckError(f"no exact check named {name!r}; accepted: "
                                f"{', '.join(CHECKS)}")
    return CHECKS[name]


def describe(name):
    """A text saying what the check does, the arguments the function receives, what it must
    return and the known wrong targets it diagnoses."""
    c = get_check(name)
    width = max(len(k) for k in c.arguments)
    lines = [f"{c.name}: {c.summary}", "", "keyword arguments:"]
    lines += [f"  {k:<{width}}  {v}" for k, v in c.arguments.items()]
    lines += ["", f"returns: {c.returns}", "", "known wrong targets (named on a failure):"]
    lines += [f"  {w.name}: {w.explanation}" for w in c.wrong_targets]
    sizes = ", ".join(f"{k}={v}" for k, v in c.default_size.items())
    lines += ["", f"default sample size: {sizes or 'none (deterministic)'}",
              f"policies: {', '.join(c.policies)}"]
    return "\n".join(lines)


def minipg_estimator(name):
    """minipg's own correct estimator for the check ``name`` (a plain function)."""
    return get_check(name).reference


def check(name, fn, seed=0, confidence=CONFIDENCE, policy="linear", **size):
    r"""Run the check ``name`` on the outside estimator ``fn``; an :class:`AuditResult`.

    ``seed`` fixes every batch (the same seed gives the same batches, so a
    decision is reproducible); ``confidence`` is 1 - alpha of the statistical
    tests; ``size`` overrides the default sample size (``n_batches`` and
    ``batch_size`` of the statistical checks, ``n_episodes`` of the target
    checks; see :func:`describe`).  ``policy``: ``"linear"`` (a linear softmax
    with random features) or, for the tabular policy-gradient checks,
    ``"tabular"`` (one-hot features: theta are the logits theta[s * A + a]) --
    the same policy pi either way.  Raises :class:`UnknownCheckError` for an
    unknown name and :class:`EstimatorError` for bad output from ``fn``."""
    c = get_check(name)
    if policy not in c.policies:
        raise ValueError(f"check {name!r} takes policy {' or '.join(map(repr, c.policies))}; "
                         f"got {policy!r}")
    confidence = check_confidence(confidence)
    unknown = [k for k in size if k not in c.default_size]
    if unknown:
        raise ValueError(f"check {name!r} has no size setting {', '.join(unknown)}; accepted: "
                         f"{', '.join(c.default_size)}")
    settings = dict(c.default_size)
    for k, v in size.items():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{k} must be a positive integer; got {v!r}")
        settings[k] = int(v)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    rng = np.random.default_rng([int(seed), *name.encode("utf-8")])
    if len(c.policies) > 1:
        settings["policy"] = policy
    return c.run(fn, rng, confidence, **settings)


# ============================================== on-policy policy gradients (tabular)

POLICY_ARGUMENTS = {
    "states": "int64 (N,): s_t of every step of the batch's episodes, episode after episode",
    "actions": "int64 (N,): a_t ~ pi(.|s_t)",
    "rewards": "float64 (N,): r_t = R[s_t, a_t]",
    "next_states": "int64 (N,): s_{t+1}",
    "t": "int64 (N,): the step's time index within its episode (0, 1, ...)",
    "episode": "int64 (N,): the step's episode within the batch (0 .. n_episodes-1)",
    "terminated": "bool (N,): s_{t+1} is terminal (the episode's last step)",
    "truncated": "bool (N,): the episode was cut after this step (never, on this bed)",
    "action_probs": "float64 (N,): pi(a_t|s_t)",
    "n_episodes": "int: the number of episodes in the batch",
    "gamma": "float: the discount, 0.8",
    "features": "float64 (S, A, d): phi(s, a) of the policy pi(a|s) ∝ exp(phi(s,a)^T theta)",
    "theta": "float64 (d,): the policy's parameters",
}
GRADIENT_RETURNS = ("the gradient estimate of this batch, a NumPy array shaped like theta: the "
                    "MEAN over the batch's episodes of each episode's sum over its steps")


def sign_flip(what):
    return WrongTarget(f"-{what}", "the sign is flipped (the gradient of a loss to minimise "
                                   "returned as the ascent direction, or the reverse)")


def batch_sum(what, unit="episodes"):
    return WrongTarget(f"batch_size x {what}", f"a sum over the batch's {unit} where their mean "
                                               f"belongs")


NO_GAMMA_T = WrongTarget("sum_s eta_1(s) sum_a grad pi Q_gamma",
                         "gamma^t (or I_t) dropped: the gamma^t-free quantity, undiscounted "
                         "visitation eta_1 = mu0^T (I - P_pi)^-1 weighting the discounted Q "
                         "(Thomas 2014; Nota & Thomas 2020)")
WITH_GAMMA_T = WrongTarget("grad J", "gamma^t kept: this check audits the gamma^t-free variant")


def episode_batches(mdp, pi, n_batches, batch_size, rng):
    """The episodes of all batches, sampled at once, and the step slices of each batch."""
    episodes = mdp.sample_episodes(pi, n_batches * batch_size, rng)
    starts = np.searchsorted(episodes.episode, np.arange(0, n_batches * batch_size + 1,
                                                         batch_size))
    starts[-1] = len(episodes.states)
    return episodes, starts


def policy_gradient_check(name, fn, rng, confidence, n_batches, batch_size, policy_kind,
                          signal=None, discounted=True, lam=None):
    """The four on-policy checks: the bed's batches, the targets, the wrong targets."""
    mdp, policy, theta = episodic_bed()
    policy, theta = as_policy(policy_kind, policy, theta)
    pi = policy.probs(theta)
    grad_J = mdp.policy_gradient(policy, theta)
    eta_1_quantity = mdp.reinforce_gradient_without_gamma_t(policy, theta)
    Q, V = mdp.q_value(pi), mdp.value(pi)
    episodes, starts = episode_batches(mdp, pi, n_batches, batch_size, rng)
    d = len(theta)
    samples = np.empty((n_batches, d))
    expected = GRADIENT_RETURNS
    for b in range(n_batches):
        steps = slice(starts[b], starts[b + 1])
        s, a = episodes.states[steps], episodes.actions[steps]
        inputs = dict(states=s, actions=a, rewards=episodes.rewards[steps],
                      next_states=episodes.next_states[steps], t=episodes.t[steps],
                      episode=episodes.episode[steps] - b * batch_size,
                      terminated=episodes.terminated[steps], truncated=episodes.truncated[steps],
                      action_probs=episodes.action_probs[steps], n_episodes=batch_size,
                      gamma=mdp.gamma, features=policy.features, theta=theta)
        if signal == "q":
            inputs["q_values"] = Q[s, a]
        elif signal == "gae":
            inputs.update(values=V[s], next_values=V[episodes.next_states[steps]], lam=lam)
        samples[b] = call_estimator(fn, inputs, (d,), expected)
    target, target_name = ((grad_J, "grad J (exact, policy gradient theorem)") if discounted else
                           (eta_1_quantity, "sum_s eta_1(s) sum_a grad pi Q_gamma (exact)"))
    w = CHECKS[name].wrong_targets            # as registered (and listed by describe)
    wrong = [(w[0], eta_1_quantity if discounted else grad_J), (w[1], -target),
             (w[2], batch_size * target)]
    what = (f"{n_batches} batches of {batch_size} episodes of random_mdp(6, 3, seed=0, gamma=0.8,"
            f" 1 terminal), {policy_words(policy)}")
    return mean_check(name, fn, samples, target, target_name, wrong, confidence, what)


def minipg_policy_gradient(states, actions, weights, features, theta, n_episodes, discounts):
    """(1/n_episodes) sum_t d_t w_t grad log pi(a_t|s_t) by minipg's reinforce_objective."""
    def objective(th):
        log_prob = step_log_prob(features, th, states, actions)
        return reinforce_objective(log_prob, weights, discounts, None, n_episodes)
    return grad(objective)(np.asarray(theta, dtype=np.float64))


def minipg_reinforce(states, actions, rewards, t, terminated, truncated, features, theta, gamma,
                     n_episodes):
    """minipg's REINFORCE: (1/n) sum_t gamma^t G_t grad log pi, through reinforce_objective."""
    returns = discounted_returns(rewards, terminated, truncated, gamma)
    return minipg_policy_gradient(states, actions, returns, features, theta, n_episodes,
                                  episode_discounts(t, gamma))


def minipg_reinforce_no_gamma_t(states, actions, rewards, terminated, truncated, features, theta,
                                gamma, n_episodes):
    """minipg's REINFORCE without gamma^t: (1/n) sum_t G_t grad log pi."""
    returns = discounted_returns(rewards, terminated, truncated, gamma)
    return minipg_policy_gradient(states, actions, returns, features, theta, n_episodes, None)


def minipg_actor_critic(states, actions, q_values, t, features, theta, gamma, n_episodes):
    """minipg's actor step with a given critic: actor_objective's gradient (a mean over the N
    steps of I_t Q_t grad log pi, I_t = gamma^t) times N / n_episodes (a mean over episodes)."""
    def objective(th):
        return actor_objective(step_log_prob(features, th, states, actions), q_values,
                               episode_discounts(t, gamma))
    return grad(objective)(np.asarray(theta, dtype=np.float64)) * len(states) / n_episodes


def minipg_gae_policy_gradient(states, actions, rewards, values, next_values, t, terminated,
                               truncated, features, theta, gamma, lam, n_episodes):
    """minipg's policy gradient with GAE advantages: (1/n) sum_t gamma^t A_t grad log pi."""
    advantages = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    return minipg_policy_gradient(states, actions, advantages, features, theta, n_episodes,
                                  episode_discounts(t, gamma))


@register("reinforce", "REINFORCE with gamma^t: mean = grad J",
          POLICY_ARGUMENTS, GRADIENT_RETURNS,
          [NO_GAMMA_T, sign_flip("grad J"), batch_sum("grad J")], minipg_reinforce,
          policies=BOTH, n_batches=2000, batch_size=5)
def run_reinforce(fn, rng, confidence, n_batches, batch_size, policy):
    return policy_gradient_check("reinforce", fn, rng, confidence, n_batches, batch_size,
                                 policy)


@register("reinforce_no_gamma_t",
          "REINFORCE without gamma^t: mean = sum_s eta_1(s) sum_a grad pi Q_gamma (biased for "
          "grad J; audit an implementation that means to drop gamma^t)",
          POLICY_ARGUMENTS, GRADIENT_RETURNS,
          [WITH_GAMMA_T, sign_flip(NO_GAMMA_T.name), batch_sum(NO_GAMMA_T.name)],
          minipg_reinforce_no_gamma_t, policies=BOTH, n_batches=2000, batch_size=5)
def run_reinforce_no_gamma_t(fn, rng, confidence, n_batches, batch_size, policy):
    return policy_gradient_check("reinforce_no_gamma_t", fn, rng, confidence, n_batches,
                                 batch_size, policy, discounted=False)


@register("actor_critic", "actor step with the exact critic Q^pi and I_t = gamma^t: mean = grad J",
          {**POLICY_ARGUMENTS, "q_values": "float64 (N,): the exact Q^pi(s_t, a_t)"},
          GRADIENT_RETURNS, [NO_GAMMA_T, sign_flip("grad J"), batch_sum("grad J")],
          minipg_actor_critic, policies=BOTH, n_batches=2000, batch_size=5)
def run_actor_critic(fn, rng, confidence, n_batches, batch_size, policy):
    return policy_gradient_check("actor_critic", fn, rng, confidence, n_batches, batch_size,
                                 policy, signal="q")


@register("gae_policy_gradient",
          "policy gradient sum_t gamma^t A_t grad log pi with GAE(lambda) advantages A_t from the "
          "exact V^pi: mean = grad J",
          {**POLICY_ARGUMENTS, "values": "float64 (N,): the exact V^pi(s_t)",
           "next_values": "float64 (N,): the exact V^pi(s_{t+1}) (0 at a terminal state)",
           "lam": "float: the GAE lambda, 0.9"},
          GRADIENT_RETURNS, [NO_GAMMA_T, sign_flip("grad J"), batch_sum("grad J")],
          minipg_gae_policy_gradient, policies=BOTH, n_batches=2000, batch_size=5)
def run_gae_policy_gradient(fn, rng, confidence, n_batches, batch_size, policy):
    return policy_gradient_check("gae_policy_gradient", fn, rng, confidence, n_batches,
                                 batch_size, policy, signal="gae", lam=0.9)


# ============================================================== off-policy (tabular)

def minipg_off_policy(states, actions, behaviour_probs, q_values, features, theta):
    """minipg's off-policy actor: the gradient of off_policy_actor_objective (the mean of
    rho Q grad log pi with rho = pi / b held constant)."""
    def objective(th):
        return off_policy_actor_objective(step_log_prob(features, th, states, actions),
                                          behaviour_probs, q_values)
    return grad(objective)(np.asarray(theta, dtype=np.float64))


NO_RATIO = WrongTarget("sum_s d_b(s) sum_a b(a|s) Q^pi grad log pi",
                       "the importance weight pi/b is missing (on-policy formula on off-policy "
                       "data)")
INVERTED_RATIO = WrongTarget("sum_s d_b(s) sum_a b(a|s) (b/pi) Q^pi grad log pi",
                             "the importance weight is inverted (b/pi instead of pi/b)")
EMPHATIC = WrongTarget("(1 - gamma) grad J_beta",
                       "the true gradient of the excursion objective J_beta (emphatic "
                       "weighting m^T = d_b^T (I - gamma P_pi)^-1, Imani et al. 2018): an "
                       "emphatic estimator, not Off-PAC's g")
ON_POLICY = WrongTarget("(1 - gamma) grad J_pi", "the on-policy gradient (states weighted by "
                                                  "pi's own distribution instead of d_b)")


@register("off_policy",
          "off-policy actor with importance weights (Degris et al. 2012): mean = g = sum_s "
          "d_b(s) sum_a grad pi Q^pi",
          {"states": "int64 (n,): s_i ~ d_b, the behaviour's stationary distribution (i.i.d.)",
           "actions": "int64 (n,): a_i ~ b(.|s_i), b uniform",
           "behaviour_probs": "float64 (n,): b(a_i|s_i)",
           "q_values": "float64 (n,): the exact Q^pi(s_i, a_i) of the target policy",
           "n_samples": "int: n", "gamma": "float: the discount, 0.8",
           "features": POLICY_ARGUMENTS["features"], "theta": POLICY_ARGUMENTS["theta"]},
          "the gradient estimate, shaped like theta (d,): the MEAN over the n samples of "
          "rho_i Q_i grad log pi(a_i|s_i), rho_i = pi(a_i|s_i) / b(a_i|s_i)",
          [NO_RATIO, INVERTED_RATIO, EMPHATIC, ON_POLICY, sign_flip("g"),
           batch_sum("g", "samples")], minipg_off_policy, policies=BOTH, n_batches=2000,
          batch_size=10)
def run_off_policy(fn, rng, confidence, n_batches, batch_size, policy):
    mdp, policy_obj, theta, behaviour, d_b = continuing_bed()
    policy, theta = as_policy(policy, policy_obj, theta)
    pi = policy.probs(theta)
    Q = mdp.q_value(pi)
    score = policy.grad_log_prob(theta)
    g = mdp.off_policy_gradient(policy, theta, d_b)
    states, actions = mdp.sample_state_actions(d_b, behaviour, n_batches * batch_size, rng)
    d = len(theta)
    samples = np.empty((n_batches, d))
    expected = f"the gradient estimate (the mean over the samples), shape ({d},)"
    for b in range(n_batches):
        s = states[b * batch_size:(b + 1) * batch_size]
        a = actions[b * batch_size:(b + 1) * batch_size]
        inputs = dict(states=s, actions=a, behaviour_probs=behaviour[s, a], q_values=Q[s, a],
                      n_samples=batch_size, gamma=mdp.gamma, features=policy.features,
                      theta=theta)
        samples[b] = call_estimator(fn, inputs, (d,), expected)
    wrong = [(NO_RATIO, np.einsum("s,sa,sa,sai->i", d_b, behaviour, Q, score)),
             (INVERTED_RATIO, np.einsum("s,sa,sa,sai->i", d_b, behaviour ** 2 / pi, Q, score)),
             (EMPHATIC, (1 - mdp.gamma) * mdp.excursion_gradient(policy, theta, d_b)),
             (ON_POLICY, (1 - mdp.gamma) * mdp.policy_gradient(policy, theta)),   # mu0 = d_pi
             (sign_flip("g"), -g), (batch_sum("g", "samples"), batch_size * g)]
    what = (f"{n_batches} batches of {batch_size} samples of random_mdp(5, 3, seed=0, gamma=0.8, "
            f"concentration=0.3), b uniform, {policy_words(policy)}")
    return mean_check("off_policy", fn, samples, g, "g = sum_s d_b(s) sum_a grad pi Q^pi "
                      "(exact, Degris et al. 2012)", wrong, confidence, what)


# ================================================ emphatic off-policy gradient (tabular)

EMPHATIC_HORIZON = 20                      # steps of history before each sample


def emphatic_bed():
    """(mdp, policy, theta, behaviour, d_b): the continuing bed with b = (pi + 3 uniform) / 4:
    gamma^2 E_b[rho^2] = 0.92 < 1, so the follow-on trace has a bounded variance, and b is
    far enough from pi for g and grad J_beta to differ clearly (b uniform: 1.19, unbounded)."""
    mdp, policy, theta, uniform, _ = continuing_bed()
    behaviour = 0.25 * policy.probs(theta) + 0.75 * uniform
    return mdp, policy, theta, behaviour, mdp.stationary_distribution(behaviour)


def minipg_off_policy_emphatic(actions, states, behaviour_probs, q_values, episode, features,
                               theta, gamma, n_samples):
    r"""minipg's emphatic actor gradient (Imani et al. 2018, ACE with interest 1): along each
    history the follow-on trace M_0 = 1, M_t = 1 + gamma rho_{t-1} M_{t-1}; the sample's
    estimate is rho_H M_H Q_H grad log pi(a_H|s_H) at the history's last step H, through
    off_policy_actor_objective with the weights M_H Q_H; the mean over the samples.  The
    histories have equal lengths (as the bed draws them)."""
    log_pi = step_log_prob(features, Tensor(theta), states, actions).data
    rho = (np.exp(log_pi) / behaviour_probs).reshape(n_samples, -1)   # equal-length histories
    M = np.ones(n_samples)
    for t in range(1, rho.shape[1]):
        M = 1.0 + gamma * rho[:, t - 1] * M                            # M_t, all histories
    last = np.r_[episode[1:] != episode[:-1], True]
    s, a = states[last], actions[last]

    def objective(th):
        return off_policy_actor_objective(step_log_prob(features, th, s, a),
                                          behaviour_probs[last], M * q_values[last])
    return grad(objective)(np.asarray(theta, dtype=np.float64))


G_NOT_EMPHATIC = WrongTarget("g = sum_s d_b(s) sum_a grad pi Q^pi", "Off-PAC's g: the "
                             "follow-on trace left out (M = 1), so states keep the behaviour's "
                             "weighting d_b instead of the emphatic m")
TRACE_WITHOUT_RATIO = WrongTarget("(1 - gamma^(H+1)) / (1 - gamma) g", "the follow-on trace "
                                  "without the ratios (M_t = 1 + gamma M_{t-1}): d_b weighting, "
                                  "scaled")


@register("off_policy_emphatic",
          "emphatic off-policy actor (ACE, Imani et al. 2018): mean = sum_{k<=H} gamma^k "
          "d_b^T P_pi^k [sum_a grad pi Q^pi] -> grad J_beta (H = 20; the sum is the exact "
          "target, the gamma^21 ~ 1% rest is not asked for)",
          {"states": "int64 (n (H+1),): n histories of H + 1 = 21 behaviour steps each, the "
                     "first state ~ d_b (stationary), back to back",
           "actions": "int64: a_t ~ b(.|s_t), b = (pi + 3 uniform) / 4",
           "behaviour_probs": "float64: b(a_t|s_t)",
           "q_values": "float64: the exact Q^pi(s_t, a_t)",
           "t": "int64: the step within its history (0 .. H)",
           "episode": "int64: the history (0 .. n-1)",
           "n_samples": "int: n", "gamma": "float: the discount, 0.8",
           "features": POLICY_ARGUMENTS["features"], "theta": POLICY_ARGUMENTS["theta"]},
          "the gradient estimate, shaped like theta: the MEAN over the n histories of "
          "rho_H M_H Q_H grad log pi(a_H|s_H) at each history's last step, with the follow-on "
          "trace M_0 = 1, M_t = 1 + gamma rho_{t-1} M_{t-1}",
          [G_NOT_EMPHATIC, TRACE_WITHOUT_RATIO, sign_flip("grad J_beta (to H)"),
           batch_sum("grad J_beta (to H)", "histories")],
          minipg_off_policy_emphatic, policies=BOTH, n_batches=2000, batch_size=10)
def run_off_policy_emphatic(fn, rng, confidence, n_batches, batch_size, policy):
    mdp, policy_obj, theta, behaviour, d_b = emphatic_bed()
    policy, theta = as_policy(policy, policy_obj, theta)
    H = EMPHATIC_HORIZON
    pi = policy.probs(theta)
    Q = mdp.q_value(pi)
    f = np.einsum("sa,sa,sai->si", pi, Q, policy.grad_log_prob(theta))   # sum_a grad pi Q
    P_pi, weights, term = mdp.transition_matrix(pi), np.zeros(mdp.n_states), d_b.copy()
    for k in range(H + 1):                          # sum_{k<=H} gamma^k d_b^T P_pi^k
        weights += mdp.gamma ** k * term
        term = term @ P_pi
    target = weights @ f
    g = d_b @ f
    histories = mdp.sample_episodes(behaviour, n_batches * batch_size, rng, max_steps=H + 1,
                                    start=d_b)
    steps = (H + 1) * batch_size                   # every history has H + 1 steps
    d = len(theta)
    samples = np.empty((n_batches, d))
    expected = "the gradient estimate (the mean over the histories), shape (d,)"
    for b in range(n_batches):
        rows = slice(b * steps, (b + 1) * steps)
        s, a = histories.states[rows], histories.actions[rows]
        inputs = dict(states=s, actions=a, behaviour_probs=behaviour[s, a], q_values=Q[s, a],
                      t=histories.t[rows], episode=histories.episode[rows] - b * batch_size,
                      n_samples=batch_size, gamma=mdp.gamma, features=policy.features,
                      theta=theta)
        samples[b] = call_estimator(fn, inputs, (d,), expected)
    w = CHECKS["off_policy_emphatic"].wrong_targets
    wrong = [(w[0], g), (w[1], (1 - mdp.gamma ** (H + 1)) / (1 - mdp.gamma) * g),
             (w[2], -target), (w[3], batch_size * target)]
    what = (f"{n_batches} batches of {batch_size} histories of {H + 1} steps of random_mdp(5, "
            f"3, seed=0, gamma=0.8, concentration=0.3), b = (pi + 3 uniform)/4, "
            f"{policy_words(policy)}")
    return mean_check("off_policy_emphatic", fn, samples, target, "grad J_beta to H = "
                      f"{H}: sum_(k<={H}) gamma^k d_b^T P_pi^k [sum_a grad pi Q^pi] (exact)",
                      wrong, confidence, what)


# ======================================================================== DPG (LQR)

def minipg_dpg(states, K, grad_u_q):
    """minipg's DPG actor gradient for mu(x) = K x: dpg_actor_gradient, the mean of
    grad_u Q(x_i, K x_i) x_i^T, shape (m, n)."""
    x = np.asarray(states, dtype=np.float64)
    m, n = np.shape(K)
    jacobian = dpg_linear_jacobian(x, m)                        # d mu / d K
    return dpg_actor_gradient(grad_u_q, jacobian).reshape(m, n)


@register("dpg",
          "deterministic policy gradient of u = K x on an LQR with the exact critic: mean = "
          "E_{x ~ rho/|rho|}[grad_u Q(x, Kx) x^T] = (1 - gamma) grad_K J",
          {"states": "float64 (n, n_state): x_i from the normalised discounted state "
                     "distribution rho/|rho| of u = K x",
           "K": "float64 (m, n_state): the actor's gain, u = K x",
           "grad_u_q": "float64 (n, m): grad_u Q^K(x_i, u) at u = K x_i (rewards, exact)",
           "critic_matrix": "float64 (n_state+m, n_state+m): H of the exact critic "
                            "Q(x, u) = -([x;u]^T H [x;u] + c) (rewards)",
           "critic_constant": "float: c", "gamma": "float: the discount, 0.9",
           "n_samples": "int: n"},
          "the actor gradient dJ/dK estimate, shape (m, n_state): the MEAN over the n states of "
          "grad_u Q(x_i, K x_i) x_i^T (ascent on the reward)",
          [WrongTarget("grad_K J", "the 1/(1 - gamma) of the unnormalised discounted "
                                   "distribution applied (or states weighted by rho, not "
                                   "rho/|rho|)"),
           sign_flip("(1 - gamma) grad_K J"),
           batch_sum("(1 - gamma) grad_K J", "states")], minipg_dpg,
          n_batches=2000, batch_size=8)      # 8, not 10 = 1/(1 - gamma): a sum stays distinct
def run_dpg(fn, rng, confidence, n_batches, batch_size):
    lqr, K = lqr_bed()
    x = lqr.sample_states(K, n_batches * batch_size, rng)
    grad_u_q = lqr.q_value_grad_u(K, x, x @ K.T)
    H, c = lqr.q_matrix(K), lqr.q_constant(K)
    samples = np.empty((n_batches,) + K.shape)
    expected = f"the actor gradient estimate (mean over the states), shape {K.shape}"
    for b in range(n_batches):
        rows = slice(b * batch_size, (b + 1) * batch_size)
        inputs = dict(states=x[rows], K=K, grad_u_q=grad_u_q[rows], critic_matrix=H,
                      critic_constant=c, gamma=lqr.gamma, n_samples=batch_size)
        samples[b] = call_estimator(fn, inputs, K.shape, expected)
    target = (1.0 - lqr.gamma) * lqr.return_gradient(K)
    wrong = [(CHECKS["dpg"].wrong_targets[0], lqr.return_gradient(K)),
             (CHECKS["dpg"].wrong_targets[1], -target),
             (CHECKS["dpg"].wrong_targets[2], batch_size * target)]
    what = (f"{n_batches} batches of {batch_size} states of random_lqr(3, 2, seed=0, gamma=0.9), "
            f"K = K*/2")
    return mean_check("dpg", fn, samples, target, "(1 - gamma) grad_K J (exact, Lyapunov "
                      "equations)", wrong, confidence, what)


# ====================================================== Fisher and natural gradient

def linear_softmax_logits(features, states):
    """The logits of the batch's states as a function of theta (minipg ops)."""
    def logits(theta_t):
        return ops.matmul(features[states], theta_t)           # (K, A)
    return logits


def minipg_fisher_vector_product(states, features, theta, vector):
    """minipg's FVP: fisher_vector_product with Categorical.fisher_metric, forward then reverse
    mode, the batch mean over the states of J_s^T (diag pi_s - pi_s pi_s^T) J_s v."""
    theta_t = Tensor(np.asarray(theta, dtype=np.float64), requires_grad=True)
    logits = linear_softmax_logits(np.asarray(features, dtype=np.float64), states)
    return fisher_vector_product(lambda: logits(theta_t), [theta_t], np.asarray(vector),
                                 Categorical.fisher_metric)


def fisher(features, theta, state_weights):
    """F = sum_s w(s) sum_a pi(a|s) grad log pi grad log pi^T of the linear softmax."""
    return LinearSoftmaxPolicy(features).fisher_matrix(theta, state_weights)


def minipg_natural_gradient(features, theta, state_weights, gradient):
    """minipg's natural gradient: F^-1 g with the exact state-weighted Fisher."""
    return np.linalg.solve(fisher(features, theta, state_weights), gradient)


@register("fisher_vector_product",
          "Fisher-vector product (or KL Hessian-vector product) from sampled states: mean = F v "
          "with the exact F = sum_s d(s) sum_a pi grad log pi grad log pi^T",
          {"states": "int64 (n,): s_i ~ d, the normalised discounted visitation",
           "actions": "int64 (n,): a_i ~ pi(.|s_i) (for an empirical Fisher; a KL Hessian "
                      "needs only the states)",
           "features": POLICY_ARGUMENTS["features"], "theta": POLICY_ARGUMENTS["theta"],
           "vector": "float64 (d,): v", "n_samples": "int: n"},
          "the product estimate, shape (d,): the MEAN over the n states of F_s v (or of "
          "grad log pi (grad log pi^T v))",
          [WrongTarget("v", "no Fisher applied (the identity)"),
           WrongTarget("F v / 2", "a factor 1/2 too few (the Hessian of KL/2, or of a squared "
                                  "error halved twice)"),
           WrongTarget("E[phi phi^T] v", "raw features where the score (phi minus its mean "
                                          "under pi) belongs"),
           sign_flip("F v"), batch_sum("F v", "states")],
          minipg_fisher_vector_product, policies=BOTH, n_batches=2000, batch_size=10)
def run_fisher_vector_product(fn, rng, confidence, n_batches, batch_size, policy):
    mdp, policy_obj, theta = episodic_bed()
    policy, theta = as_policy(policy, policy_obj, theta)
    pi = policy.probs(theta)
    d_states = mdp.state_distribution(pi)
    F = mdp.fisher_matrix(policy, theta)
    v = rng.standard_normal(len(theta))
    states, actions = mdp.sample_state_actions(d_states, pi, n_batches * batch_size, rng)
    d = len(theta)
    samples = np.empty((n_batches, d))
    expected = f"the Fisher-vector product estimate (mean over the states), shape ({d},)"
    for b in range(n_batches):
        rows = slice(b * batch_size, (b + 1) * batch_size)
        inputs = dict(states=states[rows], actions=actions[rows], features=policy.features,
                      theta=theta, vector=v, n_samples=batch_size)
        samples[b] = call_estimator(fn, inputs, (d,), expected)
    target = F @ v
    phi = policy.features
    raw = np.einsum("s,sa,sai,saj->ij", d_states, pi, phi, phi) @ v
    w = CHECKS["fisher_vector_product"].wrong_targets
    wrong = [(w[0], v), (w[1], target / 2), (w[2], raw), (w[3], -target),
             (w[4], batch_size * target)]
    what = (f"{n_batches} batches of {batch_size} states of random_mdp(6, 3, seed=0, gamma=0.8, "
            f"1 terminal), {policy_words(policy)}")
    return mean_check("fisher_vector_product", fn, samples, target, "F v (exact Fisher)",
                      wrong, confidence, what)


@register("natural_gradient",
          "natural gradient F^-1 g with the exact Fisher of the tabular bed (deterministic)",
          {"features": POLICY_ARGUMENTS["features"], "theta": POLICY_ARGUMENTS["theta"],
           "state_weights": "float64 (S,): w(s), the Fisher's state weighting (sums to 1)",
           "gradient": "float64 (d,): g, the exact grad J",
           "states": "int64 (S,): every state, 0 .. S-1 (weight state s by state_weights[s])"},
          "F^-1 g, shape (d,), with F = sum_s w(s) sum_a pi(a|s) grad log pi grad log pi^T",
          [WrongTarget("g", "no preconditioning"),
           WrongTarget("F g", "the Fisher applied instead of its inverse"),
           WrongTarget("F_uniform^-1 g", "the state weights ignored (every state weighted "
                                         "alike)"),
           WrongTarget("(F + lambda I)^-1 g", "damping lambda > 0 added (the value is "
                                              "reported)"),
           sign_flip("F^-1 g")], minipg_natural_gradient)
def run_natural_gradient(fn, rng, confidence):
    mdp, policy, theta = episodic_bed()
    pi = policy.probs(theta)
    weights = mdp.state_distribution(pi)
    g = mdp.policy_gradient(policy, theta)
    F = mdp.fisher_matrix(policy, theta, weights)
    target = np.linalg.solve(F, g)
    d = len(theta)
    inputs = dict(features=policy.features, theta=theta, state_weights=weights, gradient=g,
                  states=np.arange(mdp.n_states))
    out = call_estimator(fn, inputs, (d,), f"the natural gradient F^-1 g, shape ({d},)")
    scale = float(np.max(np.abs(target)))
    error = float(np.max(np.abs(out - target))) / scale
    passed = error <= NATURAL_GRADIENT_RTOL
    matches, details = [], []
    if not passed:
        w = CHECKS["natural_gradient"].wrong_targets
        uniform = np.where(mdp.terminal, 0.0, 1.0)
        uniform = uniform / uniform.sum()
        for wt, value in [(w[0], g), (w[1], F @ g),
                          (w[2], np.linalg.solve(fisher(policy.features, theta, uniform), g)),
                          (w[4], -target)]:
            if np.max(np.abs(out - value)) <= NATURAL_GRADIENT_RTOL * np.max(np.abs(value)):
                matches.append(wt)
        damping = float(out @ (g - F @ out) / (out @ out))   # least squares: (F + l I) x = g
        damped = np.linalg.solve(F + damping * np.eye(d), g) if damping > 0 else None
        if damped is not None and np.max(np.abs(out - damped)) <= 1e-6 * np.max(np.abs(damped)):
            matches.append(WrongTarget(f"(F + {damping:.4g} I)^-1 g", w[3].explanation))
    return AuditResult("natural_gradient", function_name(fn), passed, error,
                       NATURAL_GRADIENT_RTOL, "max |returned - F^-1 g| / max |F^-1 g|, "
                       "deterministic (float64 exact solve on random_mdp(6, 3, seed=0), "
                       f"linear softmax with {d} features)", target, out,
                       "F^-1 g (exact Fisher, weights d)", confidence, 1, matches,
                       diagnose(passed, matches, "result"), details)


# ========================================================= return and advantage targets

def retrace_targets(rewards, q_values, next_values, target_probs, behaviour_probs, terminated,
                    truncated, gamma, lam, trace="retrace"):
    r"""Retrace targets by their recursion (``verification/FORMULAS.md``, "Retrace and
    ACER/ACER recursion", with c = lam min(1, rho); Munos et al. 2016), 1-D rollout layout:

        Q^ret_t = r_t + gamma [c_{t+1} (Q^ret_{t+1} - Q(s_{t+1}, a_{t+1})) + V(s_{t+1})]

    inside an episode; ``r_t`` after a termination; ``r_t + gamma V(s'_t)`` after a
    truncation or at the rollout's end.  ``q_values[t] = Q(s_t, a_t)``,
    ``next_values[t] = V(s'_t) = sum_a pi(a|s'_t) Q(s'_t, a)``.  ``trace`` picks c:
    "retrace" lam min(1, rho), "importance" lam rho, "none" lam (Q(lambda) without
    correction), "tree_backup" lam pi."""
    r = np.asarray(rewards, dtype=np.float64)
    rho = np.asarray(target_probs, dtype=np.float64) / np.asarray(behaviour_probs,
                                                                  dtype=np.float64)
    c = {"retrace": lam * np.minimum(1.0, rho), "importance": lam * rho,
         "none": lam * np.ones_like(rho),
         "tree_backup": lam * np.asarray(target_probs, dtype=np.float64)}[trace]
    q = np.asarray(q_values, dtype=np.float64)
    nv = np.asarray(next_values, dtype=np.float64)
    out = np.empty_like(r)
    T = len(r)
    for t in range(T - 1, -1, -1):
        if terminated[t]:
            out[t] = r[t]
        elif truncated[t] or t == T - 1:
            out[t] = r[t] + gamma * nv[t]
        else:
            out[t] = r[t] + gamma * (c[t + 1] * (out[t + 1] - q[t + 1]) + nv[t])
    return out


def minipg_returns(rewards, next_values, terminated, truncated, gamma):
    """minipg's discounted returns (bootstrapped at truncations): the kernel."""
    return discounted_returns(rewards, terminated, truncated, gamma, next_values)


def minipg_gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    """minipg's GAE advantages: the kernel."""
    return gae(rewards, values, next_values, terminated, truncated, gamma, lam)


def minipg_n_step(rewards, next_values, terminated, truncated, gamma, n):
    """minipg's n-step returns: the kernel."""
    return n_step_returns(rewards, next_values, terminated, truncated, gamma, n)


def minipg_retrace(rewards, q_values, next_values, target_probs, behaviour_probs, terminated,
                   truncated, gamma, lam):
    """minipg's Retrace targets: :func:`retrace_targets`."""
    return retrace_targets(rewards, q_values, next_values, target_probs, behaviour_probs,
                           terminated, truncated, gamma, lam)


TARGET_ARGUMENTS = {
    "rewards": "float64 (T,): r_t of random episodes laid back to back (1-D rollout layout)",
    "terminated": "bool (T,): s'_t is terminal: no bootstrap, and the episode ends",
    "truncated": "bool (T,): the episode was cut after step t by a time limit (12 steps): "
                 "bootstrap from next_values[t], and the episode ends",
    "gamma": "float: the discount, 0.8",
    "states": "int64 (T,): s_t (for reference; the targets need not use it)",
    "actions": "int64 (T,): a_t",
    "next_states": "int64 (T,): s'_t",
}
BOOTSTRAP_PAST_TERMINATION = WrongTarget("bootstrapped at terminations", "V(s') of a terminal "
                                         "s' used (termination treated like truncation)")
NO_BOOTSTRAP_AT_TRUNCATION = WrongTarget("no bootstrap at truncations", "a time limit treated "
                                         "as a termination (V(s') dropped at a truncation)")
CROSSES_EPISODES = WrongTarget("episode ends ignored", "the recursion runs across episode "
                               "boundaries (the done flags unused)")


def target_episodes(mdp, pi, n_episodes, rng):
    """Episodes with terminations and truncations (time limit 12) for the target checks."""
    return mdp.sample_episodes(pi, n_episodes, rng, max_steps=12)


def target_check(name, fn, rng, confidence, n_episodes, kind):
    """The four target checks: (1) the definition on an arbitrary critic; (2) unbiasedness for
    the exact Q^pi (A^pi) with the exact critic."""
    mdp, policy, theta = episodic_bed()
    pi = policy.probs(theta)
    behaviour = np.full_like(pi, 1.0 / pi.shape[1])
    episodes = target_episodes(mdp, behaviour if kind == "retrace" else pi, n_episodes, rng)
    s, a, s2 = episodes.states, episodes.actions, episodes.next_states
    term, trunc = episodes.terminated, episodes.truncated
    Q_exact, V_exact = mdp.q_value(pi), mdp.value(pi)
    lam, n_step = 0.9, 3
    # an arbitrary critic, nonzero at the terminal state (so a bootstrap there shows)
    Q_any = Q_exact + rng.standard_normal(Q_exact.shape)
    Q_any[mdp.terminal] = 1.0 + np.abs(Q_any[mdp.terminal])      # at least 1 at a terminal s'
    V_any = V_exact + rng.standard_normal(V_exact.shape) if kind != "retrace" else (
        np.sum(pi * Q_any, axis=1))
    V_any[mdp.terminal] = 1.0 + np.abs(V_any[mdp.terminal])

    def inputs_for(Q, V):
        base = dict(rewards=episodes.rewards, terminated=term, truncated=trunc, gamma=mdp.gamma,
                    states=s, actions=a, next_states=s2)
        if kind == "gae":
            base.update(values=V[s], next_values=V[s2], lam=lam)
        elif kind == "n_step":
            base.update(next_values=V[s2], n=n_step)
        elif kind == "returns":
            base.update(next_values=V[s2])
        else:
            base.update(q_values=Q[s, a], next_values=V[s2], target_probs=pi[s, a],
                        behaviour_probs=behaviour[s, a], lam=lam)
        return base

    def variants(inp, terminated, truncated):
        r, g = inp["rewards"], inp["gamma"]
        if kind == "returns":
            return discounted_returns(r, terminated, truncated, g, inp["next_values"])
        if kind == "gae":
            return gae(r, inp["values"], inp["next_values"], terminated, truncated, g, lam)
        if kind == "n_step":
            return n_step_returns(r, inp["next_values"], terminated, truncated, g, n_step)
        return retrace_targets(r, inp["q_values"], inp["next_values"], inp["target_probs"],
                               inp["behaviour_probs"], terminated, truncated, g, lam)

    T = len(s)
    expected = f"the {name} targets, one per step, shape ({T},)"
    arbitrary = inputs_for(Q_any, V_any)
    out = call_estimator(fn, arbitrary, (T,), expected)
    reference = variants(arbitrary, term, trunc)
    no = np.zeros(T, dtype=bool)
    last = no.copy()
    last[-1] = True                      # done flags unused, the rollout's end bootstrapped or not
    wrong = [(BOOTSTRAP_PAST_TERMINATION, variants(arbitrary, no, term | trunc)),
             (NO_BOOTSTRAP_AT_TRUNCATION, variants(arbitrary, term | trunc, no)),
             (CROSSES_EPISODES, variants(arbitrary, no, no)),
             (CROSSES_EPISODES, variants(arbitrary, last, no))]
    r, nv, g = arbitrary["rewards"], arbitrary["next_values"], mdp.gamma
    if kind == "returns":
        wrong.append((WrongTarget("undiscounted returns", "gamma not applied"),
                      discounted_returns(r, term, trunc, 1.0, nv)))
    elif kind == "gae":
        for lam_wrong, why in ((1.0, "lambda ignored (lambda = 1: Monte-Carlo advantages)"),
                               (0.0, "lambda ignored (lambda = 0: the one-step TD error)")):
            wrong.append((WrongTarget(f"GAE with lambda = {lam_wrong:g}", why),
                          gae(r, arbitrary["values"], nv, term, trunc, g, lam_wrong)))
        wrong.append((WrongTarget("lambda-returns (advantages + values)", "the value target "
                                  "returned where the advantage belongs"),
                      reference + arbitrary["values"]))
    elif kind == "n_step":
        for k in (n_step - 1, n_step + 1):
            wrong.append((WrongTarget(f"{k}-step returns", f"an off-by-one window ({k} rewards "
                                      f"instead of {n_step})"),
                          n_step_returns(r, nv, term, trunc, g, k)))
    else:
        for trace, what in (("importance", "c = lambda rho: the ratio not truncated at 1 "
                                           "(importance-sampled Q(lambda))"),
                            ("none", "c = lambda: no importance correction (Q(lambda) of "
                                     "Harutyunyan et al.)"),
                            ("tree_backup", "c = lambda pi: tree backup")):
            wrong.append((WrongTarget(f"traces {trace}", what),
                          retrace_targets(r, arbitrary["q_values"], nv, arbitrary["target_probs"],
                                          arbitrary["behaviour_probs"], term, trunc, g, lam,
                                          trace)))
    scale = max(1.0, float(np.max(np.abs(reference))))
    error = float(np.max(np.abs(out - reference))) / scale
    matches = list(dict.fromkeys(w for w, value in wrong
                                 if float(np.max(np.abs(out - value))) / scale <= DEFINITION_RTOL))
    margins = [(float(np.max(np.abs(reference - value))) / scale, w.name) for w, value in wrong]
    nearest = min(margins)
    details = [f"the nearest known wrong variant ({nearest[1]}) differs from the definition "
               f"by {nearest[0]:.3g} (relative), {nearest[0] / DEFINITION_RTOL:.3g} x the "
               f"tolerance"]
    if error > DEFINITION_RTOL:
        worst = int(np.argmax(np.abs(out - reference)))
        details.append(f"largest difference at step {worst} (t = {episodes.t[worst]} in its "
                       f"episode, terminated={bool(term[worst])}, truncated="
                       f"{bool(trunc[worst])}): {out[worst]:.6g} vs {reference[worst]:.6g}")
    # (2) with the exact critic: unbiased for Q^pi(s_t, a_t) (GAE: A^pi)
    exact_inputs = inputs_for(Q_exact, V_exact if kind != "retrace" else
                              np.sum(pi * Q_exact, axis=1))
    out_exact = call_estimator(fn, exact_inputs, (T,), expected)
    truth = (Q_exact - V_exact[:, None] if kind == "gae" else Q_exact)[s, a]
    n_live = int(np.sum(~mdp.terminal))
    residual_sums = np.zeros((n_episodes, n_live))
    np.add.at(residual_sums, (episodes.episode, s), out_exact - truth)
    test = safe_hotelling(residual_sums, np.zeros(n_live), confidence, "n_episodes")
    unbiased = test is not None and not test.rejected
    exact_name = "A^pi(s_t, a_t)" if kind == "gae" else "Q^pi(s_t, a_t)"
    details.append(f"with the exact critic, per-episode sums of (target - {exact_name}) per "
                   f"state vs 0: " + ("no test (a constant component)" if test is None else
                                      test.describe()) + (" -- unbiased" if unbiased else
                                                          " -- BIASED"))
    passed = error <= DEFINITION_RTOL and unbiased
    diagnosis = diagnose(passed, matches, "output")
    if not passed and error <= DEFINITION_RTOL:
        diagnosis = (f"the targets follow the definition on an arbitrary critic but are biased "
                     f"for {exact_name} with the exact one")
    mu = "behaviour b uniform, " if kind == "retrace" else ""
    return AuditResult(name, function_name(fn), passed, error, DEFINITION_RTOL,
                       f"max |returned - definition| / max(1, max |definition|) on {n_episodes} "
                       f"episodes ({T} steps, {int(term.sum())} terminations, "
                       f"{int(trunc.sum())} truncations; {mu}random_mdp(6, 3, seed=0, gamma=0.8),"
                       f" a random critic)", reference, out,
                       "the definition's targets (verification/FORMULAS.md, minipg.kernels)",
                       confidence, T, matches, diagnosis, details)


@register("returns", "discounted returns G_t = r_t + gamma G_{t+1}, cut at terminations, "
                     "bootstrapped from V(s') at truncations",
          {**TARGET_ARGUMENTS, "next_values": "float64 (T,): the critic's V(s'_t)"},
          "the returns, float (T,)",
          [BOOTSTRAP_PAST_TERMINATION, NO_BOOTSTRAP_AT_TRUNCATION, CROSSES_EPISODES,
           WrongTarget("undiscounted returns", "gamma not applied")], minipg_returns,
          n_episodes=3000)
def run_returns(fn, rng, confidence, n_episodes):
    return target_check("returns", fn, rng, confidence, n_episodes, "returns")


@register("gae", "GAE(lambda) advantages (Schulman et al. 2016, eq. 16), lambda = 0.9",
          {**TARGET_ARGUMENTS, "values": "float64 (T,): the critic's V(s_t)",
           "next_values": "float64 (T,): the critic's V(s'_t)", "lam": "float: 0.9"},
          "the advantages, float (T,)",
          [BOOTSTRAP_PAST_TERMINATION, NO_BOOTSTRAP_AT_TRUNCATION, CROSSES_EPISODES,
           WrongTarget("GAE with lambda = 1 or 0", "lambda ignored"),
           WrongTarget("lambda-returns (advantages + values)", "the value target returned")],
          minipg_gae, n_episodes=3000)
def run_gae(fn, rng, confidence, n_episodes):
    return target_check("gae", fn, rng, confidence, n_episodes, "gae")


@register("n_step", "n-step returns (n = 3), cut at episode ends, bootstrapped from V(s') "
                    "after n rewards or a truncation",
          {**TARGET_ARGUMENTS, "next_values": "float64 (T,): the critic's V(s'_t)",
           "n": "int: 3"},
          "the n-step returns, float (T,)",
          [BOOTSTRAP_PAST_TERMINATION, NO_BOOTSTRAP_AT_TRUNCATION, CROSSES_EPISODES,
           WrongTarget("(n - 1)- or (n + 1)-step returns", "an off-by-one window")],
          minipg_n_step, n_episodes=3000)
def run_n_step(fn, rng, confidence, n_episodes):
    return target_check("n_step", fn, rng, confidence, n_episodes, "n_step")


@register("retrace", "Retrace targets with c = lambda min(1, pi/b), lambda = 0.9 (Munos et al. "
                     "2016; verification/FORMULAS.md \"Retrace and ACER\"), on behaviour data",
          {**TARGET_ARGUMENTS,
           "actions": "int64 (T,): a_t ~ b(.|s_t), the behaviour b uniform",
           "q_values": "float64 (T,): the critic's Q(s_t, a_t)",
           "next_values": "float64 (T,): V(s'_t) = sum_a pi(a|s'_t) Q(s'_t, a)",
           "target_probs": "float64 (T,): pi(a_t|s_t)",
           "behaviour_probs": "float64 (T,): b(a_t|s_t)", "lam": "float: 0.9"},
          "the Retrace targets Q^ret_t, float (T,)",
          [BOOTSTRAP_PAST_TERMINATION, NO_BOOTSTRAP_AT_TRUNCATION, CROSSES_EPISODES,
           WrongTarget("traces importance", "c = lambda rho, not truncated at 1"),
           WrongTarget("traces none", "c = lambda, no importance correction"),
           WrongTarget("traces tree_backup", "c = lambda pi")], minipg_retrace, n_episodes=3000)
def run_retrace(fn, rng, confidence, n_episodes):
    return target_check("retrace", fn, rng, confidence, n_episodes, "retrace")
