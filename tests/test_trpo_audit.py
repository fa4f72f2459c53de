"""minipg audit's TRPO rows: they pass, and each kind is shown to reject a wrong estimator.

The rows are those of minipg/audit/trpo.py (levels as CONTRIBUTING.md, "Verification
levels" defines them).  The negative controls: a Fisher metric without its -p p^T
term (formula level, relative error O(1) against the 1e-10 threshold); the state-uniform
Fisher instead of the d-weighted one, and a sign-flipped surrogate gradient (exact
level, Hotelling's T^2 far above its 99.9% critical value, fixed seeds).
"""

from __future__ import annotations

import numpy as np

from minipg import audit
from minipg.audit.levels import FORMULA_RTOL, relative_error
from minipg.audit.onpolicy import exact_bed, sample_transitions
from minipg.audit.stats import hotelling_test
from minipg.audit.trpo import (fisher_closed_form, fisher_product_estimates,
                               surrogate_estimates_at_theta_old, tabular_natural_gradient_error)
from minipg.autodiff import Tensor, ops
from minipg.estimators.trpo import FisherOperator


def test_trpo_rows_cover_every_level_and_pass():
    results = audit.run(["trpo"])
    assert {r.level for r in results} == {"gradcheck", "formula", "exact"}
    assert all(r.passed for r in results), audit.format_table(results)


def test_formula_row_rejects_a_fisher_metric_without_its_rank_one_term():
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((8, 3, 4))
    theta = rng.standard_normal(4)
    v = rng.standard_normal(4)
    leaf = Tensor(theta.copy(), requires_grad=True)

    def diagonal_only(logits, u):                       # diag(p) u, the -p p^T u dropped
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        return p * u / logits.shape[0]
    wrong = FisherOperator(lambda: ops.sum(phi * leaf, axis=-1), [leaf], diagonal_only)(v)
    assert relative_error(wrong, fisher_closed_form(phi, theta) @ v) > 1e3 * FORMULA_RTOL


def test_natural_gradient_row_rejects_a_cg_stopped_early():
    assert tabular_natural_gradient_error(11) <= FORMULA_RTOL
    assert tabular_natural_gradient_error(11, iterations=2) > 1e-3


def test_exact_rows_reject_a_wrong_state_weighting_and_a_sign_flip():
    mdp, policy, theta = exact_bed()
    rng = np.random.default_rng(1)
    pi = policy.probs(theta)
    d = mdp.state_distribution(pi)
    states, _ = mdp.sample_state_actions(d, pi, 20_000, rng)
    v = np.random.default_rng(0).standard_normal(theta.size)
    samples = fisher_product_estimates(policy, theta, states, v)
    assert not hotelling_test(samples, mdp.fisher_matrix(policy, theta) @ v).rejected
    uniform = np.full(len(d), 1.0 / len(d)) * (d > 0)
    uniform /= uniform.sum()
    assert hotelling_test(samples,
                          mdp.fisher_matrix(policy, theta, state_weights=uniform) @ v).rejected

    states, actions, _, Z = sample_transitions(mdp, policy, theta, 20_000, rng)
    grads = Z * surrogate_estimates_at_theta_old(mdp, policy, theta, states, actions)
    grad_J = mdp.policy_gradient(policy, theta)
    assert not hotelling_test(grads, grad_J).rejected
    assert hotelling_test(-grads, grad_J).rejected
