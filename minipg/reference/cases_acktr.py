r"""Reference case of ACKTR: the K-FAC factors, the natural-gradient step and eta.

Registered with :data:`minipg.reference.case.CASES`.  The numbers come from
:class:`minipg.optim.KFAC` and :mod:`minipg.estimators.acktr`, exactly as
:class:`minipg.algorithms.acktr.ACKTR` calls them for one update from fresh
factors (the first batch initialises the running averages, so ``kfac_decay``
plays no part).  Formulas: verification/FORMULAS.md "TRPO, K-FAC, ACKTR".
"""

from __future__ import annotations

import numpy as np

from ..distributions import Categorical
from ..estimators import acktr
from ..optim import KFAC
from .case import CASES

# natural-gradient outputs go through the inverses of damped factors (condition numbers
# below ~1e3 here): two correct implementations (eigendecomposition here, linear solves
# in the torch cross-check) differ by ~1e-13 relative; 1e-9 keeps four orders of margin
SOLVE_TOLERANCE = dict(rtol=1e-9, atol=1e-12)


def _kfac_outputs(c, opt, net_name, loss, max_kl, eta_max, prefix):
    """Record A and G per layer, the direction d = F~^-1 grad per parameter, d^T F d, eta."""
    layer_names = [(lay["W"], lay["b"]) for lay in c.networks[net_name]["layers"]]
    for i, blk in enumerate(opt.layers.values()):
        c.output(f"{net_name}.layer{i}.A", blk.A,
                 f"E[abar abar^T], abar = [layer {i} input, 1], shape (n_in + 1, n_in + 1)")
        c.output(f"{net_name}.layer{i}.G", blk.G,
                 f"E[g g^T], g = d log-likelihood / d pre-activation of layer {i}")
    opt.zero_grad()
    loss.backward()
    direction = opt.natural_gradient()
    for p, piece in zip(opt.params, np.split(direction, opt.offsets[1:-1])):
        name = next(n for pair in layer_names for n in pair if c.leaves[n] is p)
        c.output(f"{prefix}_direction.{name}", piece.reshape(p.shape),
                 f"d = (A~^-1 V G~^-1) for {name}: the K-FAC natural gradient of "
                 f"{prefix}_loss", **SOLVE_TOLERANCE)
    quadratic = opt.fisher_quadratic(direction)
    c.output(f"{prefix}_quadratic", quadratic, "d^T (A (x) G) d summed over layers "
             "(the undamped K-FAC Fisher)", **SOLVE_TOLERANCE)
    c.output(f"{prefix}_eta", acktr.step_size(quadratic, max_kl, eta_max),
             "eta = min(eta_max, sqrt(2 delta / d^T F d))", **SOLVE_TOLERANCE)


@CASES.register(
    "acktr", seed=1040, section="ACKTR",
    title="ACKTR: K-FAC factors, natural-gradient directions and trust-region step sizes",
    paper="Wu et al. 2017 (ACKTR), sec. 3; Martens & Grosse 2015 (K-FAC), sec. 3, 6.3",
    estimators=["minipg.estimators.acktr.actor_loss", "minipg.estimators.acktr.critic_loss",
                "minipg.estimators.acktr.sampled_policy_log_likelihood",
                "minipg.estimators.acktr.critic_fisher_log_likelihood",
                "minipg.estimators.acktr.step_size",
                "minipg.estimators.terms.trust_region_step_size", "minipg.optim.KFAC"],
    formula=["per dense layer (W of shape (n_in, n_out), b (n_out,)): abar = [layer input, 1]; "
             "g = d/ds of the per-sample log-likelihood, s = h @ W + b the pre-activation",
             "A = mean_i abar_i abar_i^T;  G = mean_i g_i g_i^T",
             "policy log-likelihood: log pi(sampled_actions | obs) (the actions drawn from pi); "
             "critic: -(V + critic_noise - V)^2 / 2 with V held constant inside the target, so "
             "g at the output = critic_noise",
             "gamma = sqrt(damping); pi_l = sqrt((tr A / dim A) / (tr G / dim G)); "
             "A~ = A + pi_l gamma I; G~ = G + gamma / pi_l I",
             "V = [dL/dW; dL/db] (n_in + 1, n_out); direction [dW; db] = A~^-1 V G~^-1",
             "quadratic = sum over layers of sum((A D G) * D), D = [dW; db] of the direction",
             "eta = min(eta_max, sqrt(2 max_kl / quadratic))",
             "actor_loss = -mean(A log pi(a|s)) - entropy_coef mean(H);  "
             "critic_loss = mean((V - R)^2) / 2"])
def _acktr(c):
    N, k, n = 10, 3, 3
    damping, max_kl, eta_max, entropy_coef = 0.01, 0.001, 0.25, 0.01
    c.hp(damping=damping, max_kl=max_kl, eta_max=eta_max, value_max_kl=max_kl,
         value_eta_max=eta_max, entropy_coef=entropy_coef)
    obs = c.input("obs", c.rng.standard_normal((N, k)), "states")
    actions = c.input("actions", c.rng.integers(0, n, N), "actions taken")
    advantages = c.input("advantages", c.rng.standard_normal(N), "A, held constant")
    returns = c.input("returns", c.rng.standard_normal(N), "value targets R, held constant")
    policy = c.mlp("policy", [k, 5, n], "tanh", None, "obs", "logits")
    value = c.mlp("value", [k, 5, 1], "tanh", None, "obs", "V(s) = out[:, 0]")

    # the actor: curvature of log pi(a~|s), a~ drawn from pi itself
    popt = KFAC(policy, lr=eta_max, damping=damping)
    with popt.capture():
        dist = Categorical(policy(obs))
    sampled = c.input("sampled_actions", dist.sample(c.rng),
                      "a~ ~ pi(.|s), drawn from the policy for its Fisher")
    popt.update_curvature(acktr.sampled_policy_log_likelihood(dist, sampled))
    loss, _ = acktr.actor_loss(dist.log_prob(actions), advantages, dist.entropy(),
                               entropy_coef)
    c.output("actor_loss", loss, "-mean(A log pi(a|s)) - entropy_coef mean(H) (minimised)")
    c.gradient("actor_loss", loss, c.params("policy"))
    _kfac_outputs(c, popt, "policy", loss, max_kl, eta_max, "actor")

    # the critic: Gauss-Newton curvature from targets sampled around V
    vopt = KFAC(value, lr=eta_max, damping=damping)
    with vopt.capture():
        values = value(obs)[:, 0]
    noise = c.input("critic_noise", c.rng.standard_normal(N), "eps ~ N(0, 1): y~ = V + eps")
    vopt.update_curvature(acktr.critic_fisher_log_likelihood(values, noise))
    closs = acktr.critic_loss(values, returns)
    c.output("critic_loss", closs, "mean((V - R)^2) / 2 (minimised)")
    c.gradient("critic_loss", closs, c.params("value"))
    _kfac_outputs(c, vopt, "value", closs, max_kl, eta_max, "critic")
