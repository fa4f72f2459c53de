r"""Proximal Policy Optimization: the clipped surrogate and its companions.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "PPO".
Paper: J. Schulman, F. Wolski, P. Dhariwal, A. Radford, O. Klimov, "Proximal
Policy Optimization Algorithms", arXiv:1707.06347 (2017), eq. 7 (clipped
surrogate) and eq. 9 (combined objective).  Conventions for value clipping,
advantage normalisation and the diagnostics follow OpenAI baselines' PPO2 as
described in S. Huang et al., "The 37 Implementation Details of Proximal
Policy Optimization" (ICLR blog track, 2022).

With the probability ratio :math:`r(\theta) = \pi_\theta(a|s) / \pi_{\theta_{old}}(a|s)`,

.. math::

    J^{CLIP}(\theta) &= \mathbb{E}[\min(r(\theta)\hat A,\;
                        \mathrm{clip}(r(\theta), 1-\epsilon, 1+\epsilon)\hat A)]
                        && \text{(eq. 7)} \\
    J^{CLIP'}(\theta) &= \mathbb{E}[J^{CLIP}(\theta) - c_1 (V_\theta(s) - V_{target})^2
                        + c_2 H(s, \pi_\theta(\cdot))]  && \text{(eq. 9)}

Both are objectives (maximised); the training code minimises their negative.
The derivative of the clipped term, per sample (the closed form the tests
check): :math:`\partial/\partial r = \hat A` where
(:math:`\hat A > 0` and :math:`r < 1+\epsilon`) or (:math:`\hat A < 0` and
:math:`r > 1-\epsilon`), else 0.  At :math:`\theta = \theta_{old}` (r = 1)
it is the vanilla policy gradient.

Same conventions as :mod:`minipg.estimators.a2c`: gradient-carrying inputs
are Tensors, held-constant ones (``log_prob_old``, ``advantages``,
``returns``, ``values_old``) plain arrays; every per-sample input has one
and the same shape; means are over the whole minibatch.
"""

from __future__ import annotations

import numbers

import numpy as np

from minipg.autodiff import Tensor, ops

from . import checks as _c
from .terms import entropy_bonus

__all__ = [
    "clip_objective", "clipped_value_loss", "ppo_objective", "normalize_advantages",
    "approx_kl", "clip_fraction",
]


def _clip_range(eps, name, where):
    """A clipping range: a finite float with 0 < eps < 1 (the paper uses 0.1 to 0.3)."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{where}: {name} must be a float in (0, 1), e.g. 0.2; "
                        f"got {type(eps).__name__}")
    eps = float(eps)
    if not (0.0 < eps < 1.0):
        raise ValueError(f"{where}: {name} must be a float in (0, 1), e.g. 0.2; got {eps!r}")
    return eps


def _log_prob_arrays(log_prob, log_prob_old, where):
    """Both log-probabilities as float64 arrays of one shape (diagnostics only)."""
    new = np.asarray(log_prob.data if isinstance(log_prob, Tensor) else log_prob, dtype=np.float64)
    old = np.asarray(log_prob_old.data if isinstance(log_prob_old, Tensor) else log_prob_old,
                     dtype=np.float64)
    if new.shape != old.shape or new.size == 0:
        raise ValueError(f"{where}: log_prob {new.shape} and log_prob_old {old.shape} must be "
                         "non-empty and of the same shape")
    return new, old


# ------------------------------------------------------------------ objectives

def clip_objective(log_prob, log_prob_old, advantages, clip_eps):
    r""":math:`J^{CLIP}` (Weng, "PPO"; Schulman et al. 2017, eq. 7), maximised.

    .. math::

        J^{CLIP} = \mathbb{E}[\min(r \hat A, \mathrm{clip}(r, 1-\epsilon, 1+\epsilon) \hat A)],
        \qquad r = \exp(\log\pi_\theta - \log\pi_{\theta_{old}}).

    Kinks follow the engine's conventions: ``clip`` passes the gradient on
    its closed interval and ``minimum`` splits a tie 1/2 each.  Inside the
    range the two terms are equal, so the halves add up to the full
    :math:`\hat A r / N`; at :math:`r = 1 \pm \epsilon` exactly the terms
    still tie and the clip still passes, so the gradient there is also
    :math:`\hat A r / N` (the one-sided limit from inside the range),
    whatever the sign of :math:`\hat A`.

    Parameters
    ----------
    log_prob : Tensor, shape (...) -- :math:`\log\pi_\theta(a|s)`.
    log_prob_old : plain array, same shape -- :math:`\log\pi_{\theta_{old}}(a|s)`,
        recorded when the actions were sampled, held constant.
    advantages : plain array, same shape -- :math:`\hat A`, held constant
        (normalise them first with :func:`normalize_advantages` if wanted).
    clip_eps : float in (0, 1) -- :math:`\epsilon` (the paper's best: 0.2).

    Returns
    -------
    Tensor, scalar (maximise it).
    """
    where = "clip_objective"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    log_prob_old = _c.held_constant(log_prob_old, "log_prob_old", where, log_prob.shape,
                                  log_prob.dtype)
    advantages = _c.held_constant(advantages, "advantages", where, log_prob.shape, log_prob.dtype)
    clip_eps = _clip_range(clip_eps, "clip_eps", where)

    ratio = ops.exp(log_prob - log_prob_old)                      # r(theta)
    clipped = ops.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return ops.minimum(ratio * advantages, clipped).mean()        # E[min(...)], eq. 7


def clipped_value_loss(values, values_old, returns, clip_eps_value=None, *, clip_mode="max",
                       half=False):
    r"""Value loss :math:`\mathbb{E}[(V - V_{target})^2]`, optionally clipped; minimised.

    Without clipping (``clip_eps_value=None``) it is the :math:`L^{VF}` of
    Schulman et al. 2017, eq. 9, a mean squared error with **no** factor 1/2
    (Weng writes :math:`c_1 (V_\theta(s) - V_{target})^2`).  With clipping it
    is PPO2's pessimistic form (baselines ``ppo2/model.py``; Huang et al.
    2022, detail "Value Function Loss Clipping"):

    .. math::

        V^{clip} = V_{old} + \mathrm{clip}(V - V_{old}, -\epsilon_v, \epsilon_v),
        \qquad
        L = \mathbb{E}[\max((V - V_{target})^2, (V^{clip} - V_{target})^2)].

    Per sample, :math:`\partial L/\partial V = 2 (V - V_{target})` unless
    :math:`|V - V_{old}| > \epsilon_v` and the clipped error is the larger,
    where it is 0.  PPO2 multiplies this by 0.5 and then by ``vf_coef = 0.5``:
    its effective :math:`c_1` on the formula here is 0.25.

    Parameters
    ----------
    values : Tensor, shape (...) -- :math:`V_\theta(s)`.
    values_old : plain array, same shape, or None -- the critic's values when
        the data were collected (held constant); needed only for clipping.
    returns : plain array, same shape -- :math:`V_{target}`, held constant.
    clip_eps_value : None, or a float > 0 -- :math:`\epsilon_v` (PPO2 uses the
        policy's ``clip_eps``; note the scale: it is in units of return).
    clip_mode : ``"max"`` (default) or ``"clipped"`` -- with clipping, the
        larger of the two errors (above), or the clipped error alone,
        :math:`\mathbb{E}[(V^{clip} - V_{target})^2]`, as stable-baselines3's
        PPO computes it (``F.mse_loss(returns, values_pred)``); its gradient
        is 0 wherever :math:`|V - V_{old}| > \epsilon_v`.
    half : bool -- multiply the loss by 1/2 (CleanRL's ``0.5 * v_loss_max.mean()``);
        default False, no factor.

    Returns
    -------
    Tensor, scalar (minimise it).
    """
    where = "clipped_value_loss"
    values = _c.differentiable(values, "values", where)
    returns = _c.held_constant(returns, "returns", where, values.shape, values.dtype)
    if clip_mode not in ("max", "clipped"):
        raise ValueError(f"{where}: clip_mode must be 'max' (the larger error) or 'clipped' "
                         f"(the clipped error alone); got {clip_mode!r}")
    if not isinstance(half, (bool, np.bool_)):
        raise TypeError(f"{where}: half must be True or False; got {type(half).__name__}")
    if clip_eps_value is None:
        loss = ops.mean(ops.square(values - returns))             # L^VF, eq. 9
        return 0.5 * loss if half else loss
    if isinstance(clip_eps_value, (bool, np.bool_)) or not isinstance(clip_eps_value,
                                                                      numbers.Real):
        raise TypeError(f"{where}: clip_eps_value must be None or a float > 0; "
                        f"got {type(clip_eps_value).__name__}")
    clip_eps_value = float(clip_eps_value)
    if not (np.isfinite(clip_eps_value) and clip_eps_value > 0.0):
        raise ValueError(f"{where}: clip_eps_value must be None or a finite float > 0; "
                         f"got {clip_eps_value!r}")
    if values_old is None:
        raise ValueError(f"{where}: value clipping (clip_eps_value={clip_eps_value}) needs "
                         "values_old, the critic's values at collection time; got None")
    values_old = _c.held_constant(values_old, "values_old", where, values.shape, values.dtype)

    values_clipped = values_old + ops.clip(values - values_old, -clip_eps_value, clip_eps_value)
    unclipped_error = ops.square(values - returns)
    clipped_error = ops.square(values_clipped - returns)
    if clip_mode == "max":
        loss = ops.maximum(unclipped_error, clipped_error).mean()  # pessimistic: the larger
    else:
        loss = clipped_error.mean()                                # the clipped error alone
    return 0.5 * loss if half else loss


def ppo_objective(log_prob, log_prob_old, advantages, values, returns, entropy, c1, c2,
                  clip_eps, *, values_old=None, clip_eps_value=None, value_clip_mode="max",
                  value_half=False):
    r""":math:`J^{CLIP'}` (Weng, "PPO"; Schulman et al. 2017, eq. 9), maximised.

    .. math::

        J^{CLIP'} = \mathbb{E}[J^{CLIP} - c_1 (V_\theta(s) - V_{target})^2
                    + c_2 H(s, \pi_\theta(\cdot))]

    exactly as Weng writes it: the squared error has no factor 1/2, and the
    value term is :func:`clipped_value_loss` (plain unless
    ``clip_eps_value`` is given).  Advantages are used as given: normalise
    them per minibatch beforehand (:func:`normalize_advantages`) if wanted.

    Parameters
    ----------
    log_prob : Tensor (...) -- :math:`\log\pi_\theta(a|s)`.
    log_prob_old : plain array, same shape -- held constant.
    advantages : plain array, same shape -- held constant.
    values : Tensor, same shape -- :math:`V_\theta(s)`.
    returns : plain array, same shape -- :math:`V_{target}`, held constant.
    entropy : Tensor, same shape -- :math:`H(s, \pi_\theta(\cdot))`.
    c1, c2 : floats >= 0 -- value and entropy coefficients (paper, Atari:
        c1 = 1, c2 = 0.01).
    clip_eps : float in (0, 1) -- :math:`\epsilon` of :math:`J^{CLIP}`.
    values_old, clip_eps_value : optional value clipping, see
        :func:`clipped_value_loss`.
    value_clip_mode, value_half : the value loss's conventions, passed to
        :func:`clipped_value_loss` as ``clip_mode`` and ``half`` (defaults:
        the larger error, no factor 1/2).

    Returns
    -------
    (objective, diagnostics) -- ``objective`` a scalar Tensor to maximise
    (minimise ``-objective``); ``diagnostics`` a dict of Python floats:
    ``policy_objective`` (:math:`J^{CLIP}`), ``value_loss``, ``entropy``
    (batch mean), ``approx_kl`` (:func:`approx_kl`, the k3 estimate of
    KL(old || new)) and ``clip_fraction`` (:func:`clip_fraction`).
    """
    where = "ppo_objective"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    values = _c.differentiable(values, "values", where, log_prob.shape)
    entropy = _c.differentiable(entropy, "entropy", where, log_prob.shape)
    c1 = _c.coefficient(c1, "c1", where)
    c2 = _c.coefficient(c2, "c2", where)

    policy_objective = clip_objective(log_prob, log_prob_old, advantages, clip_eps)
    critic_loss = clipped_value_loss(values, values_old, returns, clip_eps_value,
                                     clip_mode=value_clip_mode, half=value_half)
    mean_entropy = entropy_bonus(entropy)
    objective = policy_objective - c1 * critic_loss + c2 * mean_entropy      # eq. 9
    diagnostics = {
        "policy_objective": float(policy_objective.data),
        "value_loss": float(critic_loss.data),
        "entropy": float(mean_entropy.data),
        "approx_kl": approx_kl(log_prob.data, log_prob_old),
        "clip_fraction": clip_fraction(log_prob.data, log_prob_old, clip_eps),
    }
    return objective, diagnostics


# ------------------------------------------------------------------ advantages

def normalize_advantages(advantages, eps=1e-8, *, ddof=0):
    r"""Per-minibatch advantage normalisation :math:`(\hat A - \mu) / (\sigma + \varepsilon)`.

    Huang et al. 2022, detail "Normalization of Advantages" (PPO2 does it per
    minibatch).  By default :math:`\sigma` is the population standard
    deviation (``ddof=0``, as PPO2's ``advs.std()``),
    :math:`\sigma^2 = \frac1n\sum(\hat A - \mu)^2`; ``ddof=1`` gives the
    sample standard deviation, :math:`\sigma^2 = \frac1{n-1}\sum(\hat A -
    \mu)^2`, as torch's ``Tensor.std()`` in stable-baselines3 and CleanRL
    (undefined for one sample: torch gives NaN, here the rule below applies).

    Decision for degenerate minibatches: when :math:`\sigma = 0` (a single
    sample, or all advantages equal) the advantages carry no relative
    information and the result is **centring only**, :math:`\hat A - \mu`,
    which is mathematically 0; it is returned as exact zeros (not the
    rounding residue of the mean divided by ``eps``).  Such a minibatch then
    contributes no policy gradient, the limit of the formula as
    :math:`\sigma \to 0^+` for every :math:`\varepsilon > 0`.  Never NaN or inf.

    Parameters
    ----------
    advantages : plain float array, any non-empty shape (statistics over all
        entries); a Tensor is refused (advantages are held constant).
    eps : float >= 0 -- added to :math:`\sigma` (PPO2: 1e-8).
    ddof : 0 or 1 -- population (default) or sample standard deviation.

    Returns
    -------
    ndarray of the input's float dtype (integers give float64), same shape.
    """
    where = "normalize_advantages"
    if isinstance(advantages, Tensor):
        raise TypeError(f"{where}: advantages are held constant and must be a plain array, not a "
                        "Tensor; pass advantages.data")
    a = np.asarray(advantages)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{where}: advantages must be a real numeric array; got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{where}: advantages is empty; accepted: a non-empty minibatch")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: advantages contains non-finite values (nan or inf)")
    eps = _c.coefficient(eps, "eps", where)
    if isinstance(ddof, (bool, np.bool_)) or ddof not in (0, 1):
        raise ValueError(f"{where}: ddof must be 0 (population std) or 1 (sample std); "
                         f"got {ddof!r}")
    dtype = a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)
    x = a.astype(np.float64)                                      # statistics in float64
    centred = x - x.mean()
    if a.size - ddof < 1:                                         # one sample, ddof = 1
        return np.zeros(a.shape, dtype=dtype)                     # centring only (see above)
    if ddof == 0:
        std = np.sqrt(np.mean(centred * centred))                 # population std
    else:
        std = np.sqrt(np.sum(centred * centred) / (a.size - 1))   # sample std
    if std == 0.0:
        return np.zeros(a.shape, dtype=dtype)                     # centring only (see above)
    return (centred / (std + eps)).astype(dtype, copy=False)


# ------------------------------------------------------------------ diagnostics

def approx_kl(log_prob, log_prob_old):
    r"""k3 estimate of :math:`\mathrm{KL}(\pi_{\theta_{old}} \,\|\, \pi_\theta)`, a float.

    .. math::

        \hat{\mathrm{KL}} = \mathbb{E}[(r - 1) - \log r],
        \qquad \log r = \log\pi_\theta(a|s) - \log\pi_{\theta_{old}}(a|s).

    With :math:`a \sim \pi_{\theta_{old}}`: :math:`\mathbb{E}[r] = 1`, so the
    mean is :math:`-\mathbb{E}[\log r] = \mathrm{KL}(old \| new)`
    (unbiased), and every term is :math:`\ge 0` because
    :math:`e^x \ge 1 + x`.  This is the ``approx_kl`` of Huang et al. 2022
    (J. Schulman, "Approximating KL Divergence", 2020); PPO2's older
    ``0.5 E[(log r)^2]`` is biased.  Computed as ``expm1(x) - x`` (no
    cancellation for small x) in float64; a term that rounds below 0 is set
    to 0.

    Parameters
    ----------
    log_prob, log_prob_old : arrays (or Tensors, read without gradient) of one shape.
    """
    new, old = _log_prob_arrays(log_prob, log_prob_old, "approx_kl")
    log_ratio = new - old
    k3 = np.maximum(np.expm1(log_ratio) - log_ratio, 0.0)        # (r - 1) - log r >= 0
    return float(np.mean(k3))


def clip_fraction(log_prob, log_prob_old, clip_eps):
    r"""Fraction of samples whose ratio lies outside the clip range, a float.

    :math:`\mathbb{E}[\mathbf 1(|r - 1| > \epsilon)]`, the ``clipfrac`` of PPO2
    (strict inequality: a ratio exactly on the boundary is not counted).  It
    counts clipped ratios whatever the sign of the advantage; the gradient is
    zeroed only for the half of those on the side the min keeps clipped.

    Parameters
    ----------
    log_prob, log_prob_old : arrays (or Tensors, read without gradient) of one shape.
    clip_eps : float in (0, 1).
    """
    clip_eps = _clip_range(clip_eps, "clip_eps", "clip_fraction")
    new, old = _log_prob_arrays(log_prob, log_prob_old, "clip_fraction")
    ratio = np.exp(new - old)
    return float(np.mean(np.abs(ratio - 1.0) > clip_eps))
