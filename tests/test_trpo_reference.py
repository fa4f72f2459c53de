"""The TRPO reference cases (minipg/reference/cases_trpo.py) are what their formula says.

Identities between the recorded arrays (no finite differences): 1/2 s^T A s = delta
from xAx and step_scale, theta_new = theta_old + f s, and the line search's record
(every fraction tried, the first one accepted).  rtol 1e-12: a handful of float64
operations on O(1) numbers.  The cross-check against an independent torch
implementation is verification/crosscheck_torch.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from minipg.reference.case import build


@pytest.mark.parametrize("name, fraction, tries", [("trpo_categorical", 1.0, 1),
                                                   ("trpo_gaussian", 0.8, 2)])
def test_the_case_is_one_trpo_step(name, fraction, tries):
    manifest, a = build(name)
    hp = manifest["hyperparameters"]
    names = [k[len("fvp_vector."):] for k in manifest["arrays"] if k.startswith("fvp_vector.")]
    if name == "trpo_gaussian":
        assert "policy.log_std" in names                      # in the constrained parameters

    def flat(prefix):
        return np.concatenate([a[f"{prefix}{n}"].ravel() for n in names])
    theta_old, step, x = flat(""), flat("step."), flat("cg_solution.")
    assert float(a["step_scale"]) == pytest.approx(np.sqrt(2 * hp["max_kl"] / a["xAx"]),
                                                   rel=1e-12)
    np.testing.assert_allclose(step, a["step_scale"] * x, rtol=1e-12)
    assert 0.5 * float(a["step_scale"]) ** 2 * float(a["xAx"]) == pytest.approx(hp["max_kl"],
                                                                                rel=1e-12)
    assert float(a["line_search_fraction"]) == fraction and len(a["line_search_kl"]) == tries
    np.testing.assert_allclose(flat("theta_new."), theta_old + fraction * step, rtol=1e-12)
    kls, values = a["line_search_kl"], a["line_search_surrogate"]
    assert kls[-1] <= hp["max_kl"] and values[-1] > a["surrogate"]
    assert all(k > hp["max_kl"] or v <= a["surrogate"] for k, v in zip(kls[:-1], values[:-1]))
    assert float(a["kl"]) == kls[-1]
    assert float(a["surrogate_improvement"]) == pytest.approx(values[-1] - a["surrogate"],
                                                              rel=1e-12)
    g = flat("grad.surrogate.")
    assert float(a["cg_residual"]) > 1e-6 * np.linalg.norm(g)   # an iterate before convergence
