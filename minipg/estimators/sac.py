r"""SAC: soft value targets and losses (2018, with a V network) and the temperature loss.

References: L. Weng, "Policy Gradient Algorithms" (2018), sections "SAC" and
"SAC with Automatically Adjusted Temperature"; T. Haarnoja, A. Zhou,
P. Abbeel, S. Levine, "Soft Actor-Critic: Off-Policy Maximum Entropy Deep
Reinforcement Learning with a Stochastic Actor", ICML 2018
(arXiv:1801.01290), section 4.2, eqs. 5-13 ("SAC v1"); T. Haarnoja et al.,
"Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905 (2018b),
section 5 "Automating Entropy Adjustment", eq. 18 ("SAC-auto").

SAC v1 learns a soft value :math:`V_\psi`, a soft Q :math:`Q_w` (in practice
two, using their minimum) and a policy :math:`\pi_\theta`; with a replay
minibatch :math:`(s, a, r, s', d)` and FRESH actions :math:`\tilde a \sim
\pi_\theta(\cdot|s)` at the minibatch states:

.. math::

    J_V(\psi) &= \mathbb E_{s}\big[\tfrac12 \big(V_\psi(s) - \mathbb E_{\tilde a}
        [Q_w(s, \tilde a) - \alpha\log\pi_\theta(\tilde a|s)]\big)^2\big]   && \text{(eq. 5)}\\
    J_Q(w) &= \mathbb E\big[\tfrac12 \big(Q_w(s, a) - \hat Q(s, a)\big)^2\big], \quad
        \hat Q = r + \gamma (1 - d) V_{\bar\psi}(s')                        && \text{(eqs. 7, 8)}\\
    J_\pi(\theta) &= \mathbb E_{s, \epsilon}\big[\alpha \log\pi_\theta(f_\theta(\epsilon; s)|s)
        - Q_w(s, f_\theta(\epsilon; s))\big]                                 && \text{(eq. 12)}

The paper sets :math:`\alpha = 1` and scales the rewards instead; the
document writes :math:`\alpha` in :math:`V`; here :math:`\alpha` is an
argument.  The value target and :math:`\hat Q` are held constant (the
gradients of eqs. 6 and 9 differentiate :math:`V_\psi` and :math:`Q_w` only).

SAC-auto (2018b) drops :math:`V_\psi`: the soft target uses the two target
critics and a fresh next action :math:`a' \sim \pi(\cdot|s')`,

.. math::

    y = r + \gamma (1 - d)\big(\min_{i} Q_{\bar w_i}(s', a') - \alpha\log\pi(a'|s')\big),

and the temperature minimises :math:`J(\alpha) = \mathbb E_{a\sim\pi}[-\alpha\log\pi(a|s)
- \alpha\bar{\mathcal H}]` (eq. 18), with target entropy
:math:`\bar{\mathcal H} = -\dim\mathcal A` (:func:`default_target_entropy`).

``terminated`` is termination only (a time-limit truncation bootstraps).
Gradient-carrying inputs are Tensors; targets and the log-probabilities in
the temperature loss are held constant (plain finite arrays; a Tensor there
is refused: pass ``.data``); alpha in the target and policy losses is a
plain number (``float(np.exp(log_alpha.data))``).  Shapes must match exactly.  The policy's
action and log-prob come from ``TanhGaussian.rsample(eps=...)``, whose
log-prob carries the tanh change-of-variables correction (Appendix C, eq. 21).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autodiff import ops

from . import checks as _c
from .terms import one_step_target

__all__ = ["v_target", "value_loss", "soft_q_target", "soft_q_loss", "policy_loss",
           "soft_q_target_twin", "temperature_loss", "default_target_entropy"]


# -------------------------------------------------------------- SAC v1 (2018)

def v_target(q_min_new_actions, log_prob_new, alpha):
    r"""Value target :math:`Q(s, \tilde a) - \alpha\log\pi(\tilde a|s)`, :math:`\tilde a \sim \pi`.

    The one-sample estimate of
    :math:`\mathbb E_{\tilde a\sim\pi}[Q(s,\tilde a) - \alpha\log\pi(\tilde a|s)]`
    inside eq. 5, held constant.  ``q_min_new_actions``: :math:`\min_i Q_{w_i}(s, \tilde a)`
    (or the single critic) at actions freshly sampled from the CURRENT policy
    at the minibatch states (not the replayed actions); ``log_prob_new``:
    :math:`\log\pi(\tilde a|s)` of those actions.  Plain arrays of one
    shape; alpha >= 0 a number.  Returns a plain array.
    """
    owner = "sac.v_target"
    dtype = _c.target_dtype(q_min_new_actions, log_prob_new)
    q = _c.held_constant(q_min_new_actions, "q_min_new_actions", owner,
                       np.shape(q_min_new_actions), dtype)
    log_prob = _c.held_constant(log_prob_new, "log_prob_new", owner, q.shape, dtype)
    alpha = _c.coefficient(alpha, "alpha", owner)
    return q - alpha * log_prob                                    # Q - alpha log pi


def value_loss(v, v_target):
    r""":math:`J_V(\psi) = \frac1N\sum \tfrac12 (V_\psi(s) - \text{target})^2` (eq. 5); minimised.

    ``v`` the Tensor :math:`V_\psi(s)`, ``v_target`` the held-constant array of
    :func:`v_target` (same shape).  Gradient (eq. 6):
    :math:`\frac1N\sum \nabla_\psi V_\psi(s)\,(V_\psi(s) - Q + \alpha\log\pi)`.
    """
    owner = "sac.value_loss"
    v = _c.differentiable(v, "v", owner)
    target = _c.held_constant(v_target, "v_target", owner, v.shape, v.dtype)
    return 0.5 * ops.mean(ops.square(v - target))


def soft_q_target(rewards, terminated, v_target_next, gamma):
    r""":math:`\hat Q = r + \gamma (1 - d)\,V_{\bar\psi}(s')` (eq. 8), held constant.

    ``v_target_next`` is the TARGET value network :math:`V_{\bar\psi}` (the
    exponential moving average of :math:`\psi`) at the next states; arrays of
    one shape; ``terminated`` bool (or 0/1); gamma in [0, 1].  Returns a plain
    array.
    """
    return one_step_target(rewards, terminated, v_target_next, gamma, "v_target_next",
                           "sac.soft_q_target")


def soft_q_loss(q, q_target, *, half=True):
    r""":math:`J_Q(w) = \frac1N\sum \tfrac12 (Q_w(s, a) - \hat Q)^2` (eq. 7); minimised.

    ``q`` the Tensor :math:`Q_w(s, a)` at the REPLAYED actions, ``q_target``
    the held-constant :math:`\hat Q` of :func:`soft_q_target` or
    :func:`soft_q_target_twin`.  Gradient (eq. 9):
    :math:`\frac1N\sum \nabla_w Q_w (Q_w - \hat Q)`.  With two critics,
    add the two losses (disjoint parameters).  ``half=False`` drops the
    factor 1/2 (:math:`\frac1N\sum (Q_w - \hat Q)^2`, CleanRL's
    ``F.mse_loss``; gradient twice the above).
    """
    owner = "sac.soft_q_loss"
    q = _c.differentiable(q, "q", owner)
    target = _c.held_constant(q_target, "q_target", owner, q.shape, q.dtype)
    if not isinstance(half, (bool, np.bool_)):
        raise TypeError(f"{owner}: half must be True or False; got {type(half).__name__}")
    squared_error = ops.mean(ops.square(q - target))
    return 0.5 * squared_error if half else squared_error


def policy_loss(log_prob, q_new, alpha):
    r"""Policy loss (eq. 12; 2018b eq. 7); minimised.

    .. math::

        J_\pi(\theta) = \frac1N\sum \big[\alpha\log\pi_\theta(f_\theta(\epsilon; s)|s)
            - Q(s, f_\theta(\epsilon; s))\big]

    Both Tensors are on the tape through the REPARAMETERISED action
    :math:`a = f_\theta(\epsilon; s)`: ``action, log_prob =
    TanhGaussian(mean, log_std, low, high).rsample(eps=eps)`` and ``q_new``
    the critic (or :math:`\min_i Q_{w_i}`) at ``action``.  The gradient
    then has both paths of eq. 13: through :math:`\log\pi`'s own parameters
    and through the action into :math:`\log\pi` and :math:`Q`.  Only the
    policy's optimizer steps on it.  ``alpha`` >= 0 is held constant.
    """
    owner = "sac.policy_loss"
    log_prob = _c.differentiable(log_prob, "log_prob", owner)
    q_new = _c.differentiable(q_new, "q_new", owner, log_prob.shape)
    alpha = _c.coefficient(alpha, "alpha", owner)
    return ops.mean(alpha * log_prob - q_new)                      # E[alpha log pi - Q]


# ----------------------------------------------- SAC with automatic temperature (2018b)

def soft_q_target_twin(rewards, terminated, q1_next, q2_next, log_prob_next, alpha, gamma):
    r""":math:`y = r + \gamma (1 - d)(\min_{i=1,2} Q_{\bar w_i}(s', a') - \alpha\log\pi(a'|s'))`.

    2018b, eqs. 3 and 5 with clipped double Q: ``q1_next``, ``q2_next`` the
    two TARGET critics at :math:`(s', a')`, :math:`a' \sim \pi(\cdot|s')`
    freshly sampled from the current policy, ``log_prob_next`` its
    log-probability; plain arrays of the shape of ``rewards``;
    ``alpha`` >= 0 the current temperature (a number);
    gamma in [0, 1].  Returns a plain array.  With ``alpha = 0`` it is
    the clipped double-Q target of TD3 (without smoothing).
    """
    owner = "sac.soft_q_target_twin"
    dtype = _c.target_dtype(q1_next, q2_next, log_prob_next)
    q1 = _c.held_constant(q1_next, "q1_next", owner, np.shape(q1_next), dtype)
    q2 = _c.held_constant(q2_next, "q2_next", owner, q1.shape, dtype)
    log_prob = _c.held_constant(log_prob_next, "log_prob_next", owner, q1.shape, dtype)
    alpha = _c.coefficient(alpha, "alpha", owner)
    soft_v_next = np.minimum(q1, q2) - alpha * log_prob            # V(s') = min Q' - alpha log pi
    return one_step_target(rewards, terminated, soft_v_next, gamma, "q1_next", owner)


def temperature_loss(log_alpha, log_prob, target_entropy, *, on="alpha"):
    r"""Temperature loss :math:`J(\alpha) = \frac1N\sum[-\alpha\log\pi(a|s) - \alpha\bar H]`.

    Minimised in ``log_alpha``, :math:`\alpha = e^{\log\alpha}`.

    2018b, eq. 18 as written (the document's :math:`J(\alpha)` too), with
    :math:`\alpha = \exp(\text{log\_alpha})` so that :math:`\alpha > 0`.
    ``log_alpha`` is a Tensor with one element; ``log_prob`` the log-probs of
    actions sampled from the current policy at the minibatch states, held
    constant (a plain array, e.g. ``log_prob.data``: no gradient may reach
    the policy through this loss); ``target_entropy`` :math:`\bar{\mathcal H}` a real number.

    With :math:`\hat{\mathcal H} = -\frac1N\sum\log\pi` (the entropy estimate)
    the loss is :math:`\alpha(\hat{\mathcal H} - \bar{\mathcal H})` and

    .. math::

        \frac{\partial J}{\partial\alpha} = \hat{\mathcal H} - \bar{\mathcal H},\qquad
        \frac{\partial J}{\partial\log\alpha} = \alpha\,(\hat{\mathcal H} - \bar{\mathcal H}).

    So a descent step RAISES :math:`\alpha` when the entropy is below the
    target and lowers it when above; the fixed point is
    :math:`\hat{\mathcal H} = \bar{\mathcal H}`.

    The choice, and what others do.  This multiplies :math:`\alpha`, as
    eq. 18 does, as CleanRL (``-log_alpha.exp() * (log_pi + target_entropy)``)
    and the TF2 version of softlearning (``-alpha * stop_gradient(log_pis +
    target_entropy)``, differentiated in ``log_alpha``) do.  Stable-Baselines3
    (``-(log_ent_coef * (log_prob + target_entropy)).mean()``), rlkit and the
    original TF1 softlearning code released with 2018b multiply
    :math:`\log\alpha` instead: their gradient in :math:`\log\alpha` is
    :math:`\hat{\mathcal H} - \bar{\mathcal H}`, ours divided by :math:`\alpha`.
    Same sign, same fixed point; theirs moves :math:`\log\alpha` at a speed
    that does not shrink as :math:`\alpha \to 0`, and its value is not
    :math:`J(\alpha)`.  Spinning Up's SAC keeps :math:`\alpha` fixed.

    ``on="log_alpha"`` computes that other loss,
    :math:`\frac1N\sum[-\log\alpha\,(\log\pi(a|s) + \bar H)] =
    \log\alpha\,(\hat{\mathcal H} - \bar{\mathcal H})`, for comparison with
    those implementations; the default ``on="alpha"`` is eq. 18.
    """
    owner = "sac.temperature_loss"
    log_alpha = _c.differentiable(log_alpha, "log_alpha", owner)
    if log_alpha.size != 1:
        raise ValueError(f"{owner}: log_alpha must be a Tensor with one element, got shape "
                         f"{log_alpha.shape}")
    log_prob = _c.held_constant(log_prob, "log_prob", owner, np.shape(log_prob), log_alpha.dtype)
    if log_prob.size == 0:
        raise ValueError(f"{owner}: log_prob is empty; pass the log-probs of a minibatch")
    if isinstance(target_entropy, bool) or not isinstance(target_entropy, numbers.Real) or \
            not np.isfinite(target_entropy):
        raise ValueError(f"{owner}: target_entropy must be a finite real number (e.g. "
                         f"default_target_entropy(action_dim)), got {target_entropy!r}")
    if on not in ("alpha", "log_alpha"):
        raise ValueError(f"{owner}: on must be 'alpha' (eq. 18) or 'log_alpha' (the loss "
                         f"multiplies log alpha); got {on!r}")
    neg_log_pi_minus_target = np.mean(-log_prob - float(target_entropy))   # H_hat - H_bar
    if on == "log_alpha":
        return ops.reshape(log_alpha, ()) * neg_log_pi_minus_target   # log alpha (H_hat - H_bar)
    alpha = ops.exp(ops.reshape(log_alpha, ()))                    # alpha = e^{log alpha} > 0
    return alpha * neg_log_pi_minus_target                         # E[-alpha log pi - alpha H_bar]


def default_target_entropy(action_dim):
    r"""The target entropy :math:`\bar{\mathcal H} = -\dim\mathcal A` (2018b, hyperparameters).

    ``action_dim`` is an int >= 1 or an action shape (tuple), whose product
    is the dimension.  Returns a float.
    """
    if isinstance(action_dim, (tuple, list)):
        if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                   for s in action_dim):
            raise ValueError(f"default_target_entropy: action shape {action_dim!r} must hold ints")
        dim = int(np.prod(action_dim, dtype=np.int64))
    elif isinstance(action_dim, (int, np.integer)) and not isinstance(action_dim, bool):
        dim = int(action_dim)
    else:
        raise ValueError(f"default_target_entropy: action_dim must be an int >= 1 or an action "
                         f"shape tuple, got {action_dim!r}")
    if dim < 1:
        raise ValueError(f"default_target_entropy: the action dimension must be >= 1, got {dim}")
    return -float(dim)
