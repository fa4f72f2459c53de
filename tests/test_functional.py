"""Function transforms against closed forms: grad, value_and_grad, vjp, jvp and
the exact Fisher-vector product."""

from __future__ import annotations

import numpy as np
import pytest

from minipg.autodiff import (Tensor, fisher_vector_product, grad, jvp, ops, value_and_grad,
                             vjp)
from minipg.nn import MLP

RNG = np.random.default_rng(0)
X = RNG.standard_normal(4)
Y = RNG.standard_normal(4)
A = RNG.standard_normal((3, 4))


def f_xy(x, y):
    return (x * x * y).sum()          # df/dx = 2 x y, df/dy = x^2


# ------------------------------------------------------- grad, value_and_grad

def test_grad_with_int_argnums_matches_closed_form():
    np.testing.assert_allclose(grad(f_xy)(X, Y), 2 * X * Y, rtol=1e-15)
    np.testing.assert_allclose(grad(f_xy, argnums=1)(X, Y), X * X, rtol=1e-15)
    np.testing.assert_allclose(grad(f_xy, argnums=-1)(X, Y), X * X, rtol=1e-15)


def test_value_and_grad_with_tuple_argnums_matches_closed_form():
    value, (gx, gy) = value_and_grad(f_xy, argnums=(0, 1))(X, Y)
    assert np.shape(value) == ()
    np.testing.assert_allclose(value, np.sum(X * X * Y), rtol=1e-15)
    np.testing.assert_allclose(gx, 2 * X * Y, rtol=1e-15)
    np.testing.assert_allclose(gy, X * X, rtol=1e-15)
    value, (gy_only,) = value_and_grad(f_xy, argnums=(1,))(X, Y)
    np.testing.assert_allclose(gy_only, X * X, rtol=1e-15)


def test_value_and_grad_of_a_composite_matches_closed_form():
    # f(x) = logsumexp(A x): grad = A^T softmax(A x)
    value, g = value_and_grad(lambda x: ops.logsumexp(Tensor(A) @ x))(X)
    z = A @ X
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(value, z.max() + np.log(np.exp(z - z.max()).sum()), rtol=1e-14)
    np.testing.assert_allclose(g, A.T @ p, rtol=1e-13)


def test_grad_leaves_tensor_arguments_and_their_grad_alone():
    x = Tensor(X.copy(), requires_grad=True)
    g = grad(lambda t: (t * t).sum())(x)
    np.testing.assert_allclose(g, 2 * X, rtol=1e-15)
    assert x.grad is None
    np.testing.assert_array_equal(x.data, X)
    assert not np.shares_memory(g, x.data)


def test_grad_of_a_non_scalar_function_raises_value_error():
    with pytest.raises(ValueError, match="single-element"):
        grad(lambda x: x * 2.0)(X)


def test_grad_with_out_of_range_argnums_raises_value_error():
    with pytest.raises(ValueError, match="argnums"):
        grad(f_xy, argnums=2)(X, Y)


def test_grad_of_integer_input_is_float64():
    g = grad(lambda x: (x * x).sum())(np.array([1, 2, 3]))
    assert g.dtype == np.float64
    np.testing.assert_array_equal(g, [2.0, 4.0, 6.0])


# -------------------------------------------------------------------- vjp

def test_vjp_pullback_matches_closed_form_and_is_reusable():
    # y = (A x) * x[:3]:  J^T u = A^T (u * x[:3]) + pad(u * (A x))
    def f(x):
        return (Tensor(A) @ x) * x[:3]
    y, pullback = vjp(f, X)
    np.testing.assert_allclose(y, (A @ X) * X[:3], rtol=1e-15)

    def closed(u):
        out = A.T @ (u * X[:3])
        out[:3] += u * (A @ X)
        return out
    u1, u2 = RNG.standard_normal(3), RNG.standard_normal(3)
    (g1,) = pullback(u1)
    (g2,) = pullback(u2)
    (g1_again,) = pullback(u1)                  # the graph was kept
    np.testing.assert_allclose(g1, closed(u1), rtol=1e-13)
    np.testing.assert_allclose(g2, closed(u2), rtol=1e-13)
    np.testing.assert_array_equal(g1_again, g1)
    np.testing.assert_allclose(pullback(u1 + u2)[0], g1 + g2, rtol=1e-13, atol=1e-15)


def test_vjp_of_several_inputs_and_outputs_matches_closed_form():
    y, pullback = vjp(lambda x, y: (x * y, ops.exp(x)), X, Y)
    assert isinstance(y, tuple) and len(y) == 2
    u1, u2 = RNG.standard_normal(4), RNG.standard_normal(4)
    gx, gy = pullback((u1, u2))
    np.testing.assert_allclose(gx, u1 * Y + u2 * np.exp(X), rtol=1e-14)
    np.testing.assert_allclose(gy, u1 * X, rtol=1e-14)


def test_vjp_pullback_rejects_a_cotangent_of_the_wrong_shape():
    _, pullback = vjp(lambda x: x * 2.0, X)
    with pytest.raises(ValueError, match="shape"):
        pullback(np.ones(3))


# -------------------------------------------------------------------- jvp

def test_jvp_matches_closed_form():
    v = RNG.standard_normal(4)
    y, jv = jvp(lambda x: ops.tanh(Tensor(A) @ x), [X], [v])
    t = np.tanh(A @ X)
    np.testing.assert_allclose(y, t, rtol=1e-15)
    np.testing.assert_allclose(jv, (1 - t * t) * (A @ v), rtol=1e-13)


def test_jvp_of_several_inputs_and_outputs_matches_closed_form():
    W = RNG.standard_normal((4, 2))
    vx, vW = RNG.standard_normal(4), RNG.standard_normal((4, 2))
    (y1, y2), (j1, j2) = jvp(lambda x, W: (x @ W, (x * x).sum()), [X, W], [vx, vW])
    np.testing.assert_allclose(y1, X @ W, rtol=1e-15)
    np.testing.assert_allclose(j1, vx @ W + X @ vW, rtol=1e-13)
    np.testing.assert_allclose(j2, 2 * X @ vx, rtol=1e-13)


def test_jvp_of_an_output_independent_of_the_input_is_zero():
    c = Tensor(np.ones(3))
    (_, y2), (j1, j2) = jvp(lambda x: (x * 2.0, ops.exp(c)), [X], [np.ones(4)])
    np.testing.assert_array_equal(j1, 2.0 * np.ones(4))
    np.testing.assert_array_equal(j2, np.zeros(3))
    np.testing.assert_allclose(y2, np.e * np.ones(3))


def test_jvp_rejects_a_tangent_of_the_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        jvp(lambda x: x * 2.0, [X], [np.ones(3)])


# ---------------------------------------------------- Fisher-vector product

def _categorical_metric(logits, tangent):
    """M u for a Categorical over logits, averaged over the batch:
    (p*u - p*sum(p*u, -1)) / batch."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    return (p * tangent - p * np.sum(p * tangent, axis=-1, keepdims=True)) / logits.shape[0]


@pytest.fixture(scope="module")
def fisher_setup():
    net = MLP([3, 5, 4], rng=0)
    obs = np.random.default_rng(1).standard_normal((6, 3))
    params = net.parameters()
    n = sum(p.data.size for p in params)
    logits = net(obs).data
    p = np.exp(ops.log_softmax(Tensor(logits)).data)
    B, K = logits.shape
    F = np.zeros((n, n))
    for b in range(B):
        for a in range(K):
            net.zero_grad()
            ops.log_softmax(net(obs), axis=-1)[b, a].backward()
            score = np.concatenate([q.grad.ravel() for q in params])   # d log p(a|s_b) / d theta
            F += p[b, a] * np.outer(score, score)
    F /= B
    net.zero_grad()
    return net, obs, F


def test_explicit_fisher_is_symmetric_positive_semidefinite(fisher_setup):
    _, _, F = fisher_setup
    np.testing.assert_array_equal(F, F.T)
    eig = np.linalg.eigvalsh(F)
    assert eig.min() >= -1e-12 * eig.max()
    assert eig.max() > 0


def test_fisher_vector_product_equals_explicit_fisher_times_v(fisher_setup):
    net, obs, F = fisher_setup
    rng = np.random.default_rng(2)
    for _ in range(3):
        v = rng.standard_normal(F.shape[0])
        fv = fisher_vector_product(lambda: net(obs), net.parameters(), v, _categorical_metric)
        assert fv.shape == v.shape
        np.testing.assert_allclose(fv, F @ v, rtol=1e-10, atol=1e-10 * np.abs(F @ v).max())


def test_fisher_vector_product_with_per_parameter_pieces_and_no_grad_side_effects(
        fisher_setup):
    net, obs, F = fisher_setup
    params = net.parameters()
    v = np.random.default_rng(3).standard_normal(F.shape[0])
    pieces, start = [], 0
    for p in params:
        pieces.append(v[start:start + p.data.size].reshape(p.shape))
        start += p.data.size
    net.zero_grad()
    fv = fisher_vector_product(lambda: net(obs), params, pieces, _categorical_metric)
    assert isinstance(fv, list) and [f.shape for f in fv] == [p.shape for p in params]
    np.testing.assert_allclose(np.concatenate([f.ravel() for f in fv]), F @ v,
                               rtol=1e-10, atol=1e-10 * np.abs(F @ v).max())
    assert all(not np.any(p.grad) for p in params)          # .grad untouched


def test_fisher_vector_product_rejects_a_flat_vector_of_the_wrong_size(fisher_setup):
    net, obs, F = fisher_setup
    with pytest.raises(ValueError, match="shape"):
        fisher_vector_product(lambda: net(obs), net.parameters(), np.ones(F.shape[0] + 1),
                              _categorical_metric)
