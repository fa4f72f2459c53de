"""The Retrace kernel (minipg.kernels.retrace): twin against kernel, the explicit sum of
trace-weighted TD errors, and the expected operator on an exact tabular MDP.

* the numba kernel and its NumPy twin agree on random segments (hypothesis; 1e-12
  relative: the same float64 operations in the same order);
* the backward recursion equals the document's Delta Q^ret form, the explicit sum
  Q^ret_t = Q_t + sum_k gamma^(k-t) (prod_{t<i<=k} c_i) delta_k, on random segments with
  terminations and truncations (an independent double loop written here);
* on a random tabular MDP (minipg/envs/tabular.py), the EXPECTED target E_mu[Q^ret_0 |
  x_0, a_0], computed exactly by enumerating every segment the kernel can see, equals
  the T-step Retrace operator Q + sum_{t<T} (gamma P^{c mu})^t (T^pi Q - Q)
  (verification/FORMULAS.md "Retrace and ACER/Retrace"), has Q^pi as its fixed point, and
  is a gamma-contraction around Q^pi for random mu, pi and Q -- while a kernel whose
  traces ignore pi/mu (c = 1 always, off-policy) is not a contraction.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minipg.audit.acer import contraction_modulus, expected_retrace, retrace_operator
from minipg.envs.tabular import random_mdp
from minipg.kernels import retrace, retrace_numba, retrace_numpy



def random_segment(seed, shape, p_term=0.15, p_trunc=0.1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    r, q, v, nv = (rng.normal(size=shape).astype(dtype) for _ in range(4))
    traces = rng.uniform(0.0, 1.0, size=shape).astype(dtype)
    term = rng.random(shape) < p_term
    trunc = (rng.random(shape) < p_trunc) & ~term
    return r, q, v, nv, traces, term, trunc


@st.composite
def segments(draw, dtype=np.float64):
    T = draw(st.integers(1, 25))
    shape = (T,) if draw(st.booleans()) else (T, draw(st.integers(1, 4)))
    return random_segment(draw(st.integers(0, 2**31 - 1)), shape,
                          draw(st.sampled_from([0.0, 0.2])), draw(st.sampled_from([0.0, 0.2])),
                          dtype)


@settings(deadline=None)
@given(segments(), st.floats(0.0, 1.0))
def test_retrace_twins_agree(seg, gamma):
    a = retrace_numba(*seg, gamma)
    b = retrace_numpy(*seg, gamma)
    # identities without finite differences: 1e-12 relative (CONTRIBUTING.md "Test tolerances")
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(retrace(*seg, gamma), a, rtol=0, atol=0)


@settings(deadline=None, max_examples=25)
@given(segments(dtype=np.float32), st.floats(0.0, 1.0))
def test_float32_in_float32_out(seg, gamma):
    out = retrace(*seg, gamma)
    assert out.dtype == np.float32
    ref = retrace_numpy(*[x.astype(np.float64) if x.dtype.kind == "f" else x for x in seg],
                        gamma)
    np.testing.assert_allclose(out, ref.astype(np.float32), rtol=1e-6, atol=1e-6)


def explicit_sum(rewards, q, values, next_values, traces, terminated, truncated, gamma):
    """The Delta Q^ret form, a direct double loop over one column (T,)."""
    T = len(rewards)
    out = np.empty(T)
    for t in range(T):
        total, discount, trace = q[t], 1.0, 1.0
        for k in range(t, T):
            if k > t:
                trace *= traces[k]                         # prod_{t < i <= k} c_i
            if terminated[k]:
                bootstrap = 0.0
            elif truncated[k] or k == T - 1:
                bootstrap = next_values[k]
            else:
                bootstrap = values[k + 1]
            delta = rewards[k] + gamma * bootstrap - q[k]  # TD error with V = E_pi Q
            total += discount * trace * delta
            discount *= gamma
            if terminated[k] or truncated[k]:
                break
        out[t] = total
    return out


@pytest.mark.parametrize("seed", range(20))
def test_recursion_equals_explicit_sum_of_trace_weighted_td_errors(seed):
    seg = random_segment(seed, (30, 3), p_term=0.1, p_trunc=0.1)
    gamma = 0.97
    out = retrace(*seg, gamma)
    assert seg[5].any() and seg[6].any()                   # both kinds of ends occur
    for j in range(3):
        column = [x[:, j] for x in seg]
        np.testing.assert_allclose(out[:, j], explicit_sum(*column, gamma), rtol=1e-12,
                                   atol=1e-12)


def test_ends_bootstrap_as_the_document_says():
    """Termination: r only; truncation: r + gamma V(x'); the last step: r + gamma V(x')."""
    r = np.array([1.0, 2.0, 3.0, 4.0])
    q = np.array([10.0, 20.0, 30.0, 40.0])
    v = np.array([11.0, 21.0, 31.0, 41.0])
    nv = np.array([100.0, 200.0, 300.0, 400.0])
    term = np.array([False, True, False, False])
    trunc = np.array([False, False, True, False])
    c = np.full(4, 0.5)
    out = retrace(r, q, v, nv, c, term, trunc, 0.9)
    assert out[1] == 2.0                                   # no bootstrap at termination
    assert out[2] == 3.0 + 0.9 * 300.0                     # V(x') at truncation
    assert out[3] == 4.0 + 0.9 * 400.0                     # V(x') at the segment's end
    assert out[0] == 1.0 + 0.9 * (0.5 * (2.0 - 20.0) + 21.0)


def test_lambda_zero_traces_give_one_step_targets():
    """c = 0: Q^ret_t = r_t + gamma V(x_{t+1}) (FORMULAS.md "Retrace and ACER/ACER recursion")."""
    r, q, v, nv, _, _, _ = random_segment(3, (12,))
    out = retrace(r, q, v, nv, np.zeros(12), np.zeros(12, bool), np.zeros(12, bool), 0.8)
    np.testing.assert_allclose(out[:-1], r[:-1] + 0.8 * v[1:], rtol=1e-14)


def test_bad_inputs_are_refused():
    seg = list(random_segment(0, (5,)))
    seg[4] = -seg[4]
    with pytest.raises(ValueError, match="traces"):
        retrace(*seg, 0.9)
    with pytest.raises(ValueError, match="gamma"):
        retrace(*random_segment(0, (5,)), 1.5)


def test_numba_disable_jit_subprocess(run_without_jit):
    code = (
        "import numpy as np, numba\n"
        "assert numba.config.DISABLE_JIT\n"
        "from minipg.kernels import retrace_numba, retrace_numpy\n"
        "rng = np.random.default_rng(0)\n"
        "r, q, v, nv, c = rng.uniform(size=(5, 6, 2))\n"
        "te = np.zeros((6, 2), bool); te[2, 0] = True\n"
        "tr = np.zeros((6, 2), bool); tr[4, 1] = True\n"
        "a = retrace_numba(r, q, v, nv, c, te, tr, 0.9)\n"
        "b = retrace_numpy(r, q, v, nv, c, te, tr, 0.9)\n"
        "np.testing.assert_allclose(a, b, rtol=1e-12)\n"
        "print('ok')\n"
    )
    run_without_jit(code)


# ---------------------------------------------------------------- the exact tabular bed
# expected_retrace (every segment enumerated, the kernel on all of them), retrace_operator
# (the closed form) and contraction_modulus are minipg/audit/acer.py's, used by its rows too

def random_policies(rng, S, A):
    return rng.dirichlet(np.ones(A), size=S), rng.dirichlet(np.ones(A), size=S)


@pytest.mark.parametrize("seed", range(4))
def test_expected_kernel_target_is_the_retrace_operator_and_contracts_around_q_pi(seed):
    rng = np.random.default_rng(seed)
    mdp = random_mdp(3, 2, seed=seed, gamma=0.9)
    pi, mu = random_policies(rng, 3, 2)
    q_pi = mdp.q_value(pi)
    T = 3
    # Q^pi is the fixed point (exact up to rounding)
    np.testing.assert_allclose(expected_retrace(mdp, pi, mu, q_pi, T), q_pi, rtol=1e-12,
                               atol=1e-12)
    for _ in range(5):
        Q = q_pi + rng.normal(scale=3.0, size=q_pi.shape)
        RQ = expected_retrace(mdp, pi, mu, Q, T)
        np.testing.assert_allclose(RQ, retrace_operator(mdp, pi, mu, Q, T), rtol=1e-12,
                                   atol=1e-12)
        # ||RQ - Q^pi||_inf <= gamma ||Q - Q^pi||_inf (Munos et al. 2016, Theorem 1)
        assert np.max(np.abs(RQ - q_pi)) <= mdp.gamma * np.max(np.abs(Q - q_pi)) + 1e-12


def test_retrace_contracts_where_untruncated_traces_do_not():
    """pi and mu far apart (pi nearly deterministic, mu its opposite): Retrace's modulus is
    at most gamma; the same check rejects a wrong kernel whose traces ignore pi/mu (c = 1,
    off-policy Q(lambda = 1)), whose modulus exceeds gamma (and 1).  (Every choice of c
    keeps Q^pi as the fixed point -- FORMULAS.md "Retrace and ACER/Retrace" -- so the
    contraction is what tells them apart.)"""
    mdp = random_mdp(3, 2, seed=0, gamma=0.9)
    pi = np.array([[0.95, 0.05], [0.05, 0.95], [0.9, 0.1]])
    mu = 1.0 - pi
    assert contraction_modulus(mdp, pi, mu, 3) <= mdp.gamma
    wrong = contraction_modulus(mdp, pi, mu, 3, trace_fn=lambda p, m: np.ones_like(p))
    assert wrong > 1.0
