"""K-FAC (minipg.optim.KFAC) and the engine's opt-in dense capture.

The Fisher blocks are checked against the engine's exact Fisher-vector
product applied to every basis vector (``fisher_vector_product`` with
``Categorical.fisher_metric``), in float64.  Identities without finite
differences use rtol 1e-10 (a few matrix products and an eigendecomposition
of matrices of size <= 8 with condition numbers below ~1e3 lose far less).
verification/FORMULAS.md "TRPO, K-FAC, ACKTR/K-FAC".
"""

import numpy as np
import pytest

from minipg.autodiff import Parameter, Tensor, fisher_vector_product, ops
from minipg.autodiff.functional import backward_cotangents
from minipg.distributions import Categorical
from minipg.estimators.terms import trust_region_step_size
from minipg.nn import MLP, Linear, Module
from minipg.optim import KFAC
from minipg.optim.kfac import factored_damping_pi, kfac_damped_inverse

N_IN, N_OUT = 3, 4          # a non-square layer: (n_in + 1) x n_out = 4 x 4 would hide
N_IN_RECT = 2               # nothing, so the pitfall tests use n_in + 1 = 3 != n_out = 4


def exact_fisher(layer, X):
    """The exact Fisher of softmax(x W + b) averaged over the rows of X, in the flat order
    [vec_r(W), b] of the layer's buffer, by the exact Fisher-vector product on each basis
    vector."""
    n = layer.num_parameters
    return np.stack([fisher_vector_product(lambda: layer(X), layer.parameters(), e,
                                           Categorical.fisher_metric)
                     for e in np.eye(n)], axis=1)


def enumerated_factors(layer, X, **kw):
    """K-FAC's A and G through KFAC.update_curvature, with y enumerated: each input repeated
    once per class y, weighted p(y|x) / len(X), so G is the exact expectation over y."""
    opt = KFAC(layer, **kw)
    n_cls = layer.out_features
    Xr = np.repeat(X, n_cls, axis=0)
    y = np.tile(np.arange(n_cls), len(X))
    with opt.capture():
        dist = Categorical(layer(Xr))
    w = dist.probs.data[np.arange(len(y)), y] / len(X)
    opt.update_curvature(dist.log_prob(y), sample_weights=w)
    (lay,) = opt.layers.values()
    return opt, lay.A, lay.G


def test_kfac_block_equals_exact_fisher_for_one_input():
    rng = np.random.default_rng(0)
    layer = Linear(N_IN_RECT, N_OUT, init="fan_in_uniform", rng=rng)
    X = rng.normal(size=(1, N_IN_RECT))
    _, A, G = enumerated_factors(layer, X)
    F = exact_fisher(layer, X)
    np.testing.assert_allclose(np.kron(A, G), F, rtol=0, atol=1e-10 * np.abs(F).max())
    # the row-major pitfall: the column-major order G (x) A is a different matrix here
    assert np.abs(np.kron(G, A) - F).max() > 0.1 * np.abs(F).max()


def test_kfac_block_differs_from_exact_fisher_for_several_inputs():
    rng = np.random.default_rng(1)
    layer = Linear(N_IN, N_OUT, init="fan_in_uniform", rng=rng)
    X = rng.normal(size=(5, N_IN))
    _, A, G = enumerated_factors(layer, X)
    F = exact_fisher(layer, X)
    rel = np.linalg.norm(np.kron(A, G) - F) / np.linalg.norm(F)
    # E[abar abar^T (x) g g^T] != E[abar abar^T] (x) E[g g^T]: the approximation error,
    # measured here at 10-60% in Frobenius norm (seed 1: about 0.3); not a rounding effect
    print(f"K-FAC vs exact Fisher, 5 inputs: relative Frobenius difference {rel:.3f}")
    assert 0.05 < rel < 0.9
    # ... while each input alone is factored exactly (the sum of per-input blocks)
    per_input = sum(np.kron(*enumerated_factors(layer, X[i:i + 1])[1:]) for i in range(5)) / 5
    np.testing.assert_allclose(per_input, F, rtol=0, atol=1e-10 * np.abs(F).max())


def dense_solve_direction(opt, layer, g):
    """The damped K-FAC system solved densely: (A~ (x) G~) d = g in the flat order."""
    (lay,) = opt.layers.values()
    gamma = np.sqrt(opt.damping)
    pi = factored_damping_pi(lay.A, lay.G)
    A_d = lay.A + pi * gamma * np.eye(len(lay.A))
    G_d = lay.G + gamma / pi * np.eye(len(lay.G))
    return np.linalg.solve(np.kron(A_d, G_d), g)


def setup_rect(seed=2, n=20):
    rng = np.random.default_rng(seed)
    layer = Linear(N_IN_RECT, N_OUT, init="fan_in_uniform", rng=rng)
    X = rng.normal(size=(n, N_IN_RECT))
    opt = KFAC(layer, lr=0.1, damping=1e-2, refresh_every=1)
    with opt.capture():
        dist = Categorical(layer(X))
    opt.update_curvature(dist.log_prob(dist.sample(rng)))
    g = rng.normal(size=layer.num_parameters)
    return rng, layer, X, opt, g


def test_factored_inverse_equals_dense_solve():
    _, layer, _, opt, g = setup_rect()
    d = opt.natural_gradient(g)
    np.testing.assert_allclose(d, dense_solve_direction(opt, layer, g), rtol=1e-10, atol=1e-12)


def column_major_direction(opt, g):
    """The pitfall: the factors applied as for a column-major vec (G and A swapped)."""
    (lay,) = opt.layers.values()
    A_inv, G_inv = lay.A_inv, lay.G_inv
    V = g.reshape(len(G_inv), len(A_inv))          # reading the flat buffer column-major
    return (G_inv @ V @ A_inv).ravel()


def test_row_major_pitfall_column_major_order_fails():
    _, layer, _, opt, g = setup_rect()
    right = dense_solve_direction(opt, layer, g)
    np.testing.assert_allclose(opt.natural_gradient(g), right, rtol=1e-10, atol=1e-12)
    wrong = column_major_direction(opt, g)
    assert not np.allclose(wrong, right, rtol=1e-3, atol=0)


def test_inverses_refreshed_every_k_steps_and_reused_between():
    rng = np.random.default_rng(3)
    layer = Linear(N_IN, N_OUT, init="fan_in_uniform", rng=rng)
    opt = KFAC(layer, lr=1e-3, damping=1e-2, decay=0.5, refresh_every=3)
    inverses = []
    for step in range(7):
        X = rng.normal(size=(16, N_IN)) * (1 + step)    # the factors change every step
        with opt.capture():
            dist = Categorical(layer(X))
        opt.update_curvature(dist.log_prob(dist.sample(rng)))
        g = rng.normal(size=layer.num_parameters)
        d = opt.natural_gradient(g)
        (lay,) = opt.layers.values()
        fresh = kfac_damped_inverse(lay.A, lay.G, opt.damping)
        used = (lay.A_inv.copy(), lay.G_inv.copy())
        inverses.append(used)
        if step % 3 == 0:                                   # refreshed at steps 0, 3, 6
            np.testing.assert_allclose(used[0], fresh[0], rtol=1e-12)
        else:                                               # the stored ones in between
            assert used[0] is not fresh[0]
            np.testing.assert_array_equal(used[0], inverses[step - step % 3][0])
            assert not np.allclose(used[0], fresh[0], rtol=1e-3)
        V = np.concatenate([g[:N_IN * N_OUT].reshape(N_IN, N_OUT), g[None, N_IN * N_OUT:]])
        np.testing.assert_allclose(d, (used[0] @ V @ used[1]).ravel(), rtol=1e-12)
        opt.step(d)


@pytest.mark.parametrize("seed", range(5))
def test_trust_region_step_size_rule(seed):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(6, 6))
    F = M @ M.T
    d = rng.normal(size=6) * 10.0 ** rng.uniform(-3, 1)
    delta, eta_max = 10.0 ** rng.uniform(-4, -1), 10.0 ** rng.uniform(-2, 0)
    quad = d @ F @ d
    eta = trust_region_step_size(quad, delta, eta_max)
    assert 0.5 * eta ** 2 * quad <= delta * (1 + 1e-12)
    if eta < eta_max:
        np.testing.assert_allclose(0.5 * eta ** 2 * quad, delta, rtol=1e-12)
    else:
        assert eta == eta_max
    # without a cap it is always the boundary (TRPO's step)
    np.testing.assert_allclose(0.5 * trust_region_step_size(quad, delta) ** 2 * quad, delta,
                               rtol=1e-12)


def test_trust_region_step_size_bad_input():
    with pytest.raises(ValueError, match="delta"):
        trust_region_step_size(1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="d\\^T F d"):
        trust_region_step_size(-1.0, 0.01, 1.0)
    with pytest.raises(ValueError, match="eta_max"):
        trust_region_step_size(1.0, 0.01, 0.0)
    assert trust_region_step_size(0.0, 0.01, 0.5) == 0.5


def test_fisher_quadratic_is_kfac_kron_form():
    _, layer, _, opt, g = setup_rect()
    (lay,) = opt.layers.values()
    np.testing.assert_allclose(opt.fisher_quadratic(g), g @ np.kron(lay.A, lay.G) @ g,
                               rtol=1e-12)


class TwoStacked(Module):
    """K = 2 stacked dense layers (an ensemble's layout: W (K, n_in, n_out), b (K, 1, n_out))."""

    def __init__(self, rng):
        super().__init__()
        self.W = Parameter(rng.normal(size=(2, N_IN, N_OUT)))
        self.b = Parameter(rng.normal(size=(2, 1, N_OUT)))

    def forward(self, x):
        return ops.dense(x, self.W, self.b, "tanh")


def test_stacked_layers_get_one_factor_pair_per_member():
    rng = np.random.default_rng(4)
    net = TwoStacked(rng)
    X = rng.normal(size=(8, N_IN))
    eps = rng.normal(size=(2, 8, N_OUT))
    opt = KFAC(net, damping=1e-2)
    with opt.capture():
        out = net(X)
    opt.update_curvature(ops.sum(-0.5 * (out - (out.data + eps)) ** 2, axis=2))  # Gauss-Newton
    (lay,) = opt.layers.values()
    g = rng.normal(size=net.num_parameters)
    d = opt.natural_gradient(g)
    for k in range(2):                                  # the same as member k alone
        single = Linear(N_IN, N_OUT)
        single.weight.data[...] = net.W.data[k]
        single.bias.data[...] = net.b.data[k, 0]
        o1 = KFAC(single, damping=1e-2)
        with o1.capture():
            z = ops.dense(X, single.weight, single.bias, "tanh")
        o1.update_curvature(ops.sum(-0.5 * (z - (z.data + eps[k])) ** 2, axis=1))
        (l1,) = o1.layers.values()
        np.testing.assert_allclose(lay.A[k], l1.A, rtol=1e-12)
        np.testing.assert_allclose(lay.G[k], l1.G, rtol=1e-12)
        gk = np.concatenate([g[:2 * N_IN * N_OUT].reshape(2, N_IN, N_OUT)[k].ravel(),
                             g[2 * N_IN * N_OUT:].reshape(2, N_OUT)[k]])
        dk = o1.natural_gradient(gk)
        np.testing.assert_allclose(d[:2 * N_IN * N_OUT].reshape(2, -1)[k], dk[:N_IN * N_OUT],
                                   rtol=1e-10)
        np.testing.assert_allclose(d[2 * N_IN * N_OUT:].reshape(2, -1)[k], dk[N_IN * N_OUT:],
                                   rtol=1e-10)


def test_fused_activation_pre_activation_gradients():
    """The captured g of a fused tanh layer is d log p / ds, s = x W + b (before tanh)."""
    rng = np.random.default_rng(5)
    mlp = MLP([N_IN, 5, N_OUT], activation="tanh", rng=rng)
    X = rng.normal(size=(6, N_IN))
    y = rng.integers(N_OUT, size=6)
    opt = KFAC(mlp)
    cap = opt.capture()
    with cap:
        ll = Categorical(mlp(X)).log_prob(y)
    cap.recording = True
    backward_cotangents(ll, np.ones(6), [])
    h0 = cap.grads[id(mlp.layer0.weight)]
    # independently: s as a leaf, tanh and the output layer as separate ops
    s = Tensor(X @ mlp.layer0.weight.data + mlp.layer0.bias.data, requires_grad=True)
    logits = ops.dense(ops.tanh(s), mlp.layer1.weight.data, mlp.layer1.bias.data)
    (ref,) = backward_cotangents(Categorical(logits).log_prob(y), np.ones(6), [s])
    np.testing.assert_allclose(h0, ref, rtol=1e-12, atol=1e-15)


def test_capture_is_opt_in_and_gradients_unchanged():
    rng = np.random.default_rng(6)
    mlp = MLP([N_IN, 5, N_OUT], activation="relu", rng=rng)
    X = rng.normal(size=(4, N_IN))
    out = mlp(X)
    assert out._node[0] is ops.Dense                      # no capture: the plain fused op
    mlp.zero_grad()
    ops.sum(out * out).backward()
    g_plain = mlp.flat_grad.copy()
    opt = KFAC(mlp)
    with opt.capture():
        out2 = mlp(X)
    assert out2._node[0].__name__ == "CapturedDense"
    assert mlp(X)._node[0].__name__ == "Dense"             # outside the block: the plain op
    mlp.zero_grad()
    ops.sum(out2 * out2).backward()
    np.testing.assert_array_equal(mlp.flat_grad, g_plain)


def test_natural_gradient_step_descends_a_regression():
    """Sanity: K-FAC with the Gauss-Newton Fisher fits a linear least-squares problem in a
    few steps (for a linear model with unit-variance Gaussian output the K-FAC block is the
    exact Gauss-Newton matrix A (x) I up to the sampling noise of G, so one undamped step
    nearly solves it, whatever the conditioning of A)."""
    rng = np.random.default_rng(7)
    layer = Linear(N_IN, 2, init="fan_in_uniform", rng=rng)
    X = rng.normal(size=(64, N_IN)) * np.array([1.0, 10.0, 0.1])    # badly conditioned
    Y = X @ rng.normal(size=(N_IN, 2)) + 1.0
    opt = KFAC(layer, lr=1.0, damping=1e-8, refresh_every=1)
    mse0 = float(np.mean((layer(X).data - Y) ** 2))
    for _ in range(3):
        with opt.capture():
            out = layer(X)
        opt.update_curvature(ops.sum(-0.5 * (out - (out.data + rng.normal(size=out.shape)))
                                     ** 2, axis=1))
        opt.zero_grad()
        ops.mean(ops.sum((out - Y) ** 2, axis=1) * 0.5).backward()
        opt.step()
    assert float(np.mean((layer(X).data - Y) ** 2)) < 1e-3 * mse0


@pytest.mark.parametrize("kw,match", [
    ({"damping": 0.0}, "damping"), ({"damping": -1.0}, "damping"),
    ({"refresh_every": 0}, "refresh_every"), ({"refresh_every": 1.5}, "refresh_every"),
    ({"decay": 1.0}, "decay"), ({"decay": -0.1}, "decay"), ({"momentum": 1.0}, "momentum"),
    ({"lr": 0.0}, "lr")])
def test_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        KFAC(Linear(2, 2), **kw)


class WithScale(Module):
    """A dense layer and an elementwise scale K-FAC cannot factor."""

    def __init__(self):
        super().__init__()
        self.lin = Linear(2, 3)
        self.scale = Parameter(np.ones(3))

    def forward(self, x):
        return self.lin(x) * self.scale


def test_unknown_layer_is_an_error_naming_it():
    net = WithScale()
    opt = KFAC(net)
    with opt.capture():
        dist = Categorical(net(np.ones((4, 2))))
    with pytest.raises(ValueError, match="KFAC cannot factor 'scale'"):
        opt.update_curvature(dist.log_prob(np.zeros(4, dtype=int)))
    # the same parameter with a diagonal Fisher value is accepted
    opt = KFAC(net, diagonal=[(net.scale, 1.0)])
    with opt.capture():
        dist = Categorical(net(np.ones((4, 2))))
    opt.update_curvature(dist.log_prob(np.zeros(4, dtype=int)))
    with pytest.raises(ValueError, match="diagonal Fisher of 'scale'"):
        KFAC(net, diagonal=[(net.scale, 0.0)])


def test_update_curvature_needs_a_capture_and_steps_need_curvature():
    layer = Linear(2, 2)
    opt = KFAC(layer)
    with pytest.raises(RuntimeError, match="capture"):
        opt.update_curvature(Categorical(layer(np.ones((3, 2)))).log_prob(np.zeros(3, int)))
    with pytest.raises(RuntimeError, match="update_curvature"):
        opt.step()


def test_state_dict_round_trip():
    _, layer, X, opt, g = setup_rect()
    opt.step(opt.natural_gradient(g))
    state = {k: np.array(v) for k, v in opt.state_dict().items()}
    other = KFAC(layer, lr=0.1, damping=1e-2, refresh_every=1)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.natural_gradient(g), opt.natural_gradient(g))


def test_kfac_on_the_off_policy_critic_ensemble():
    """minipg's CriticEnsemble (stacked (K, n_in, n_out) layers, fused relu): K-FAC finds its
    layers, keeps (K, n_in + 1, n_in + 1) and (K, n_out, n_out) factors, and one Gauss-Newton
    step on a regression lowers the loss of every member."""
    from minipg.algorithms.offpolicy_common import CriticEnsemble
    rng = np.random.default_rng(9)
    critics = CriticEnsemble(3, 1, (6,), "relu", 2, rng, np.float64)
    obs, act = rng.normal(size=(32, 3)), rng.normal(size=(32, 1))
    target = np.sin(obs[:, 0]) + act[:, 0]
    opt = KFAC(critics, lr=1.0, damping=1e-2)

    def losses():
        return np.mean((critics(obs, act).data - target) ** 2, axis=1)

    before = losses()
    with opt.capture():
        q = critics(obs, act)
    opt.update_curvature(-0.5 * (q - (q.data + rng.normal(size=q.shape))) ** 2)
    assert [lay.A.shape for lay in opt.layers.values()] == [(2, 5, 5), (2, 7, 7)]
    assert [lay.G.shape for lay in opt.layers.values()] == [(2, 6, 6), (2, 1, 1)]
    opt.zero_grad()
    ops.mean(0.5 * (q - target) ** 2).backward()
    opt.step(eta=0.5)
    assert np.all(losses() < before)


def test_recording_pass_collects_h_and_gives_the_layers_no_gradient():
    """The curvature pass exists to collect h: the captured weights and biases get no
    gradient from it (their matrix products are skipped); a later pass is unaffected."""
    rng = np.random.default_rng(10)
    mlp = MLP([N_IN, 5, N_OUT], activation="tanh", rng=rng)
    X, y = rng.normal(size=(6, N_IN)), rng.integers(N_OUT, size=6)
    opt = KFAC(mlp)
    cap = opt.capture()
    with cap:
        ll = Categorical(mlp(X)).log_prob(y)
    mlp.zero_grad()
    cap.recording = True
    ops.sum(ll).backward(retain_graph=True)
    cap.recording = False
    assert len(cap.grads) == 2 and not np.any(mlp.flat_grad)
    ops.sum(ll).backward()
    reference = MLP([N_IN, 5, N_OUT], activation="tanh", rng=0)
    reference.flat_params = mlp.flat_params
    ops.sum(Categorical(reference(X)).log_prob(y)).backward()
    np.testing.assert_array_equal(mlp.flat_grad, reference.flat_grad)
