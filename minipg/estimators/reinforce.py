r"""REINFORCE: the Monte-Carlo policy gradient, with and without a baseline.

Document: L. Weng, "Policy Gradient Algorithms" (2018), sections "Policy
Gradient Theorem" and "REINFORCE".  Book: R. S. Sutton and A. G. Barto,
*Reinforcement Learning: An Introduction*, 2nd ed. (2018), sec. 13.3
("REINFORCE: Monte Carlo Policy Gradient", the update
:math:`\theta \leftarrow \theta + \alpha \gamma^t G_t \nabla \ln\pi(A_t|S_t,\theta)`)
and sec. 13.4 ("REINFORCE with Baseline",
:math:`\theta \leftarrow \theta + \alpha^\theta \gamma^t (G_t - \hat v(S_t,w))
\nabla \ln\pi(A_t|S_t,\theta)` and
:math:`w \leftarrow w + \alpha^w (G_t - \hat v(S_t,w)) \nabla \hat v(S_t,w)`).

The estimate of :math:`\nabla_\theta J` from ``n_episodes`` sampled episodes is

.. math::

    \hat g = \frac{1}{n_\text{episodes}} \sum_{\text{episodes}} \sum_t
             \gamma^t\, (G_t - b_t)\, \nabla_\theta \log \pi_\theta(a_t|s_t),

with :math:`t` counted from each episode's first step (``episode_discounts``),
:math:`G_t = \sum_k \gamma^k r_{t+k}` the Monte-Carlo return
(:func:`minipg.kernels.discounted_returns`) and :math:`b_t` any baseline that
does not depend on :math:`a_t` (held constant here).  It is unbiased for
:math:`\nabla_\theta J(\theta) = \nabla_\theta \mathbb{E}[G_0]`, the gradient
of the discounted return from the start distribution.

**The** :math:`\gamma^t` **-free variant** (``discounts=None``), the one most
code uses (it is what :math:`\mathbb{E}_\pi[G_t \nabla_\theta \ln\pi_\theta(A_t|S_t)]`
gives when every visited step is weighted alike; Weng's step 3.2 keeps the
:math:`\gamma^t`), is *biased* for :math:`\gamma < 1`: its mean is

.. math::

    \sum_s \eta_1(s) \sum_a \nabla_\theta \pi_\theta(a|s)\, Q^\pi_\gamma(s, a),
    \qquad \eta_1^\top = \mu_0^\top (I - P_\pi)^{-1},

the *undiscounted* visitation :math:`\eta_1` weighting the discounted
:math:`Q_\gamma` (needs termination or a horizon), instead of the discounted
visitation :math:`\eta_\gamma^\top = \mu_0^\top (I - \gamma P_\pi)^{-1}` of the
true gradient.  Later states are over-weighted by :math:`\gamma^{-t}`.
P. Thomas, "Bias in Natural Actor-Critic Algorithms", ICML 2014, showed this
bias; C. Nota and P. Thomas, "Is the Policy Gradient a Gradient?", AAMAS
2020, showed that this expected update is not the gradient of *any*
function (its Jacobian is not symmetric).  With :math:`\gamma = 1` the two
variants coincide.

Shapes: every per-step input has one and the same shape (any shape; usually
``(N,)`` for ``N`` steps of several episodes laid end to end, or ``(T, E)``
for ``E`` padded episodes, with zero-weight padding).  Nothing broadcasts
except a scalar baseline.  Sums run over all entries, so batches of
:math:`10^5` steps cost one multiply and one sum on the tape.
"""

from __future__ import annotations

import numbers

import numpy as np

from minipg.autodiff import Tensor, ops

from . import checks as _c
from .terms import value_loss

__all__ = ["reinforce_objective", "episode_discounts", "episode_time_index",
           "value_baseline_loss"]


def episode_discounts(t_index, gamma):
    r"""The factors :math:`\gamma^t` of REINFORCE (Sutton & Barto sec. 13.3).

    Parameters
    ----------
    t_index : integer array, any shape -- the time step of each sample
        *within its episode* (0 at an episode's first step); see
        :func:`episode_time_index`.
    gamma : float in [0, 1].

    Returns
    -------
    float64 array, same shape: ``gamma ** t_index`` (``0 ** 0 = 1``).  The
    same numbers are the :math:`I` of Sutton & Barto's one-step actor-critic
    (sec. 13.5: :math:`I \leftarrow 1` at the start, :math:`I \leftarrow \gamma I`
    after each step).
    """
    where = "episode_discounts"
    gamma = _c.discount(gamma, where)
    t = np.asarray(t_index)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{where}: t_index must be an integer array (time steps within the "
                        f"episode); got dtype {t.dtype}")
    if t.size and t.min() < 0:
        raise ValueError(f"{where}: t_index must be >= 0 (0 at an episode's first step); got "
                         f"minimum {int(t.min())}")
    return np.power(gamma, t.astype(np.float64))                 # gamma^t


def episode_time_index(terminated, truncated, start_index=0):
    r"""Time step of each sample within its episode, from the episode-end flags.

    Uses the rollout layout of :mod:`minipg.kernels` (time on axis 0,
    optionally ``N`` environments on axis 1): after a step that ends an
    episode (``terminated`` or ``truncated``) the count restarts at 0.

    Parameters
    ----------
    terminated, truncated : bool (or 0/1) arrays, shape (T,) or (T, N).
    start_index : int or integer array of shape (N,) -- the within-episode
        step of the rollout's first row (0 when the rollout starts with fresh
        episodes).

    Returns
    -------
    int64 array of the flags' shape.
    """
    where = "episode_time_index"
    term = np.asarray(terminated)
    if term.ndim not in (1, 2):
        raise ValueError(f"{where}: terminated must have shape (T,) or (T, N); got shape "
                         f"{term.shape}")
    term = _c.flags(term, "terminated", term.shape)
    trunc = _c.flags(truncated, "truncated", term.shape)
    start = np.asarray(start_index)
    if start.dtype.kind not in "iu" or (start.ndim and start.shape != term.shape[1:]):
        raise ValueError(f"{where}: start_index must be an int or an integer array of shape "
                         f"{term.shape[1:]}; got {start_index!r}")
    if start.size and start.min() < 0:
        raise ValueError(f"{where}: start_index must be >= 0; got {start_index!r}")
    ends = term | trunc
    out = np.empty(term.shape, dtype=np.int64)
    t = np.broadcast_to(start, term.shape[1:]).astype(np.int64)
    for k in range(term.shape[0]):
        out[k] = t
        t = np.where(ends[k], 0, t + 1)                           # restart after an episode end
    return out


def reinforce_objective(log_prob, returns, discounts=None, baseline=None, n_episodes=None):
    r"""REINFORCE surrogate (maximised); its gradient is the REINFORCE estimate.

    .. math::

        \mathcal{L}(\theta) = \frac{1}{n_\text{episodes}} \sum_t
            d_t\, (G_t - b_t)\, \log\pi_\theta(a_t|s_t),
        \qquad
        \nabla_\theta \mathcal{L} = \frac{1}{n_\text{episodes}} \sum_t
            d_t\, (G_t - b_t)\, \nabla_\theta \log\pi_\theta(a_t|s_t)

    (Weng, "REINFORCE", step 3.2; Sutton & Barto eq. in sec. 13.3 and, with
    :math:`b_t = \hat v(S_t, w)`, sec. 13.4), summed over all steps given.

    Parameters
    ----------
    log_prob : Tensor, any shape -- :math:`\log\pi_\theta(a_t|s_t)`, one entry
        per step; the gradient flows through it.
    returns : plain array, same shape -- :math:`G_t`, held constant (e.g.
        ``minipg.kernels.discounted_returns(rewards, terminated, truncated, gamma)``).
    discounts : plain array, same shape, or None -- :math:`d_t = \gamma^t`
        with :math:`t` counted within each episode
        (``episode_discounts(episode_time_index(...), gamma)``): the unbiased
        estimator.  ``None`` means :math:`d_t = 1`, the common
        :math:`\gamma^t`-free variant, which is biased for
        :math:`\gamma < 1` (see the module docstring: Thomas 2014; Nota &
        Thomas 2020).
    baseline : plain array of the same shape, a number, or None --
        :math:`b_t`, held constant (e.g. ``values.data``).  Any baseline that
        does not depend on the action leaves the mean unchanged.
    n_episodes : int >= 1 or None -- the number of episodes the steps come
        from; the sum is divided by it, so the result estimates
        :math:`\nabla J` per episode.  ``None`` means 1 (the sum over the
        steps given: one episode's update of Sutton & Barto's loop).

    Returns
    -------
    Tensor, scalar (maximise it).
    """
    where = "reinforce_objective"
    log_prob = _c.differentiable(log_prob, "log_prob", where)
    shape, dtype = log_prob.shape, log_prob.dtype
    weights = _c.held_constant(returns, "returns", where, shape, np.float64)
    if baseline is not None:
        if not isinstance(baseline, Tensor) and np.ndim(baseline) == 0:
            baseline = np.full(shape, baseline)                   # a constant baseline b
        weights = weights - _c.held_constant(baseline, "baseline", where, shape, np.float64)
    if discounts is not None:
        discounts = _c.held_constant(discounts, "discounts", where, shape, np.float64)
        weights = discounts * weights                             # gamma^t (G_t - b_t)
    if n_episodes is None:
        n_episodes = 1
    if (isinstance(n_episodes, (bool, np.bool_)) or not isinstance(n_episodes, numbers.Integral)
            or n_episodes < 1):
        raise ValueError(f"{where}: n_episodes must be an integer >= 1 (the number of episodes "
                         f"the steps come from) or None; got {n_episodes!r}")
    weights = (weights / n_episodes).astype(dtype, copy=False)
    return ops.sum(log_prob * weights)                            # (1/n) sum_t w_t log pi


def value_baseline_loss(values, returns):
    r"""Mean squared error of a learned baseline :math:`\hat v(S_t, w)` (minimised).

    .. math:: L(w) = \frac1N \sum_t (\hat v(S_t, w) - G_t)^2,
       \qquad \nabla_w L = -\frac2N \sum_t \delta_t \nabla_w \hat v(S_t, w),
       \quad \delta_t = G_t - \hat v(S_t, w).

    Sutton & Barto's critic step :math:`w \leftarrow w + \alpha^w \delta_t
    \nabla \hat v(S_t, w)` (sec. 13.4; no :math:`\gamma^t` there in the 2nd
    edition) is therefore an SGD step of size :math:`\alpha^w/2` on the
    loss of one sample.  The same function as
    :func:`minipg.estimators.terms.value_loss` (written once, there).

    Parameters
    ----------
    values : Tensor, any shape -- :math:`\hat v(S_t, w)`.
    returns : plain array, same shape -- :math:`G_t`, held constant.

    Returns
    -------
    Tensor, scalar (minimise it).
    """
    return value_loss(values, returns)
