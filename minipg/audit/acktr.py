r"""``minipg audit`` rows of ACKTR: its losses and the K-FAC curvature they are stepped with.

Document: L. Weng, "Policy Gradient Algorithms" (2018), section "ACKTR"; Wu
et al. 2017 (section 3), Martens & Grosse 2015 (section 3).  The
estimators are those of :mod:`minipg.estimators.acktr` and the curvature
:class:`minipg.optim.KFAC`, as the algorithm calls them.  What each row takes:

gradcheck
    the actor loss -E[A log pi] - c_H E[H] and the critic loss 1/2 E[(V - R)^2]
    through small tanh MLPs (the fused dense op), against central differences.
formula
    * the actor loss's gradient for a linear-softmax policy, by hand:
      -(1/N) sum A psi - c_H (1/N) sum grad H (psi = grad log pi);
    * K-FAC's block of a dense softmax layer fed ONE input, with y enumerated
      (weights pi(y|x)): A (x) G equals the exact Fisher
      abar abar^T (x) (diag p - p p^T) (verification/FORMULAS.md "TRPO, K-FAC,
      ACKTR/K-FAC": exact for one input when y is drawn from the model);
    * the critic's Gauss-Newton block: for a linear critic, K-FAC's A (x) G with
      the target noise enumerated (eps = +-1) equals E[abar abar^T] = J^T J / N.
exact
    * the actor loss with the exact advantages A^pi on the tabular bed of
      :mod:`minipg.audit.onpolicy` ((s, a) ~ eta pi / Z): Z times minus its
      per-sample gradients has mean grad J (Hotelling's T^2 at 99.9%);
    * K-FAC's G from actions sampled from the policy
      (:func:`~minipg.estimators.acktr.sampled_policy_log_likelihood`): the
      per-sample g g^T of a softmax output layer over several states has mean
      (1/N) sum_s (diag p_s - p_s p_s^T) (Hotelling's T^2 at 99.9% on the
      independent entries); the empirical Fisher of greedy actions is shown
      rejected in the row's text.
"""

from __future__ import annotations

import numpy as np

from ..autodiff import ops, value_and_grad
from ..distributions import Categorical
from ..estimators.acktr import (actor_loss, critic_fisher_log_likelihood, critic_loss,
                                sampled_policy_log_likelihood)
from ..nn import MLP, Linear
from ..optim import KFAC
from . import audit_check
from .beds import split_gradient
from .levels import exact_result, formula_result, gradcheck_module, relative_error
from .onpolicy import (EXACT_SAMPLES, exact_gradient_result, linear_softmax_batch,
                       linear_softmax_distribution, linear_softmax_pieces)
from .stats import hotelling_test

__all__ = ["actor_closed_form", "kfac_one_input_error", "gauss_newton_error",
           "sampled_fisher_estimates"]

ENTROPY_COEF = 0.05


def actor_closed_form(phi, theta, actions, advantages, entropy_coef):
    """-(1/N) sum A psi - c_H (1/N) sum grad H for pi(a|s) ∝ exp(theta^T phi(s,a)), by hand:
    psi = phi(s,a) - sum_b pi(b|s) phi(s,b); grad H = -sum_a pi (log pi + H) phi(s,a)."""
    _, _, psi, grad_H = linear_softmax_pieces(phi, theta, actions)
    return -(advantages @ psi) / len(actions) - entropy_coef * grad_H.mean(axis=0)


def _actor_fn(phi, actions, advantages):
    def fn(theta):
        dist = linear_softmax_distribution(phi, theta)
        return actor_loss(dist.log_prob(actions), advantages, dist.entropy(), ENTROPY_COEF)[0]
    return fn


def kfac_one_input_error(rng):
    """max |A (x) G - exact Fisher| / max |exact| for a 3 -> 4 softmax layer fed one input
    (y enumerated with weights pi(y|x))."""
    layer = Linear(3, 4, init="fan_in_uniform", rng=rng)
    x = rng.standard_normal((1, 3))
    opt = KFAC(layer)
    with opt.capture():
        dist = Categorical(layer(np.repeat(x, 4, axis=0)))
    y = np.arange(4)
    opt.update_curvature(dist.log_prob(y), sample_weights=dist.probs.data[y, y])
    (blk,) = opt.layers.values()
    p = dist.probs.data[0]
    abar = np.append(x[0], 1.0)
    exact = np.kron(np.outer(abar, abar), np.diag(p) - np.outer(p, p))
    return float(np.abs(np.kron(blk.A, blk.G) - exact).max() / np.abs(exact).max())


def gauss_newton_error(rng, n=10):
    """max |A (x) G - J^T J / N| / max |J^T J / N| for a linear critic, eps = +-1 enumerated."""
    critic = Linear(3, 1, init="fan_in_uniform", rng=rng)
    X = rng.standard_normal((n, 3))
    opt = KFAC(critic)
    with opt.capture():
        values = critic(np.repeat(X, 2, axis=0)).reshape(-1)
    opt.update_curvature(critic_fisher_log_likelihood(values, np.tile([1.0, -1.0], n)),
                         sample_weights=np.full(2 * n, 1.0 / (2 * n)))
    (blk,) = opt.layers.values()
    J = np.hstack([X, np.ones((n, 1))])                       # dV/d[w; b] per sample
    exact = J.T @ J / n
    return float(np.abs(np.kron(blk.A, blk.G) - exact).max() / np.abs(exact).max())


def sampled_fisher_estimates(layer, states, X, rng, actions=None):
    """Per-sample entries (0,0), (0,1), (1,1) of g g^T (the independent ones: g sums to 0),
    g = d log pi(a~|x)/d logits with x = X[states[i]] and a~ ~ pi(.|x) (or the given
    ``actions``), through K-FAC's capture; with the exact target, the mean over the rows of
    X of diag p - p p^T (``states`` uniform on them)."""
    Xr = X[states]
    opt = KFAC(layer)
    cap = opt.capture()
    with cap:
        dist = Categorical(layer(Xr))
    if actions is None:
        actions = dist.sample(rng)
    ll = sampled_policy_log_likelihood(dist, actions)
    cap.recording = True
    ops.sum(ll).backward()
    cap.recording = False
    g = cap.grads[id(layer.weight)]
    samples = np.stack([g[:, 0] * g[:, 0], g[:, 0] * g[:, 1], g[:, 1] * g[:, 1]], axis=1)
    p = Categorical(layer(X)).probs.data
    target = np.mean(np.stack([p[:, 0] - p[:, 0] ** 2, -p[:, 0] * p[:, 1],
                               p[:, 1] - p[:, 1] ** 2], axis=1), axis=0)
    return samples, target


# ----------------------------------------------------------------- level 1: gradcheck
@audit_check("acktr", "actor_loss", "gradcheck")
def actor_gradcheck(full, rng):
    policy = MLP([3, 5, 3], activation="tanh", rng=rng)
    obs = rng.standard_normal((8, 3))
    actions, adv = rng.integers(3, size=8), rng.standard_normal(8)

    def loss():
        dist = Categorical(policy(obs))
        return actor_loss(dist.log_prob(actions), adv, dist.entropy(), ENTROPY_COEF)[0]
    return gradcheck_module(loss, policy, "actor loss through a tanh MLP (fused dense op)")


@audit_check("acktr", "critic_loss", "gradcheck")
def critic_gradcheck(full, rng):
    value = MLP([3, 5, 1], activation="tanh", rng=rng)
    obs, returns = rng.standard_normal((8, 3)), rng.standard_normal(8)
    return gradcheck_module(lambda: critic_loss(value(obs).reshape(-1), returns), value,
                            "1/2 E[(V - R)^2] through a tanh MLP (fused dense op)")


# ----------------------------------------------------------------- level 2: formula
@audit_check("acktr", "actor_loss", "formula")
def actor_formula(full, rng):
    worst = 0.0
    for _ in range(20 if full else 5):
        phi, _, theta, _, actions = linear_softmax_batch(rng)
        adv = rng.standard_normal(len(actions))
        _, grad = value_and_grad(_actor_fn(phi, actions, adv))(theta)
        closed = actor_closed_form(phi, theta, actions, adv, ENTROPY_COEF)
        worst = max(worst, relative_error(grad, closed))
    return formula_result(worst, "(-mean A psi - c_H mean grad H), linear softmax")


@audit_check("acktr", "K-FAC policy block (one input)", "formula")
def kfac_block_formula(full, rng):
    worst = max(kfac_one_input_error(rng) for _ in range(10 if full else 3))
    return formula_result(worst, "A (x) G with y enumerated vs abar abar^T (x) (diag p - p p^T)"
                                 ", 3 -> 4 softmax layer")


@audit_check("acktr", "K-FAC critic block (Gauss-Newton)", "formula")
def gauss_newton_formula(full, rng):
    worst = max(gauss_newton_error(rng) for _ in range(10 if full else 3))
    return formula_result(worst, "A (x) G with eps = +-1 enumerated vs J^T J / N, linear critic")


# ----------------------------------------------------------------- level 3: exact
@audit_check("acktr", "actor_loss", "exact")
def actor_exact(full, rng):
    def estimates(mdp, policy, theta, states, actions):
        pi = policy.probs(theta)
        advantages = mdp.advantage(pi)[states, actions]
        n = len(states)

        def objective(log_prob):             # minus the loss: the policy-gradient ascent
            return -actor_loss(log_prob, advantages, np.zeros(n), 0.0)[0]

        return split_gradient(objective, policy, theta, states, actions, np.arange(n), n,
                              scale=n)

    return exact_gradient_result(estimates, full, rng, "-grad of the actor loss with A^pi")


@audit_check("acktr", "sampled_policy_log_likelihood (K-FAC G)", "exact")
def sampled_fisher_exact(full, rng):
    layer = Linear(2, 3, init="fan_in_uniform", rng=rng)
    X = rng.standard_normal((4, 2))
    states = rng.integers(4, size=EXACT_SAMPLES[full])            # i.i.d. uniform states
    samples, target = sampled_fisher_estimates(layer, states, X, rng)
    greedy = np.argmax(Categorical(layer(X[states])).probs.data, axis=1)
    wrong, _ = sampled_fisher_estimates(layer, states, X, rng, actions=greedy)
    return exact_result(hotelling_test(samples, target), "exact E[diag p - p p^T]",
                        f" (g g^T of a 2 -> 3 softmax layer, a~ ~ pi, 4 uniform states); the "
                        f"empirical Fisher of greedy actions T^2 "
                        f"{hotelling_test(wrong, target).t2:.3g}")
