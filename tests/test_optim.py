"""Optimizers: single steps against the closed-form update, utilities, state."""

import numpy as np
import pytest

from minipg.autodiff import Parameter, ops
from minipg.nn import MLP
from minipg.optim import SGD, Adam, RMSprop, clip_grad_norm, global_grad_norm, polyak_update


def _net_with_grad(seed=0, dtype=np.float64):
    net = MLP([3, 4, 2], rng=seed, dtype=dtype)
    x = np.random.default_rng(seed).standard_normal((5, 3)).astype(dtype)
    ops.square(net(x)).mean().backward()
    return net


def test_sgd_plain_and_momentum_steps_match_closed_form():
    net = _net_with_grad()
    p0, g = net.flat_params.copy(), net.flat_grad.copy()
    opt = SGD(net, lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.step()                                   # buf = g + wd p0 on the first step
    d1 = g + 0.01 * p0
    np.testing.assert_allclose(net.flat_params, p0 - 0.1 * d1, rtol=1e-14, atol=1e-16)
    p1 = net.flat_params.copy()
    opt.step()                                   # same gradient again
    buf = 0.9 * d1 + (g + 0.01 * p1)
    np.testing.assert_allclose(net.flat_params, p1 - 0.1 * buf, rtol=1e-14, atol=1e-16)


def test_sgd_nesterov_matches_closed_form():
    net = _net_with_grad(1)
    p0, g = net.flat_params.copy(), net.flat_grad.copy()
    opt = SGD(net, lr=0.05, momentum=0.5, nesterov=True)
    opt.step()
    np.testing.assert_allclose(net.flat_params, p0 - 0.05 * (g + 0.5 * g), rtol=1e-14)
    with pytest.raises(ValueError, match="nesterov"):
        SGD(net, lr=0.1, nesterov=True)


def test_adam_two_steps_match_closed_form():
    net = _net_with_grad(2)
    p, g = net.flat_params.copy(), net.flat_grad.copy()
    lr, b1, b2, eps = 1e-2, 0.8, 0.99, 1e-8
    opt = Adam(net, lr=lr, betas=(b1, b2), eps=eps)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t in (1, 2):
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(net.flat_params, p, rtol=1e-13, atol=1e-16)
    # the first Adam step moves every coordinate by about lr * sign(g)
    assert opt.step_count == 2


def test_rmsprop_centered_with_momentum_matches_closed_form():
    net = _net_with_grad(3)
    p, g = net.flat_params.copy(), net.flat_grad.copy()
    lr, alpha, eps, mom = 1e-2, 0.9, 1e-5, 0.5
    opt = RMSprop(net, lr=lr, alpha=alpha, eps=eps, momentum=mom, centered=True)
    s = np.zeros_like(p)
    c = np.zeros_like(p)
    buf = np.zeros_like(p)
    for _ in range(2):
        opt.step()
        s = alpha * s + (1 - alpha) * g * g
        c = alpha * c + (1 - alpha) * g
        buf = mom * buf + g / (np.sqrt(s - c * c) + eps)
        p = p - lr * buf
        np.testing.assert_allclose(net.flat_params, p, rtol=1e-12, atol=1e-15)


def test_rmsprop_can_share_its_statistics():
    a, b = _net_with_grad(4), _net_with_grad(4)
    shared = np.zeros(a.num_parameters)
    opt_a = RMSprop(a, lr=1e-3, square_avg=shared)
    opt_b = RMSprop(b, lr=1e-3, square_avg=shared)
    opt_a.step()
    after_a = shared.copy()
    assert np.any(after_a > 0)
    opt_b.step()                                 # b's step sees and updates a's statistics
    np.testing.assert_allclose(shared, 0.99 * after_a + 0.01 * b.flat_grad ** 2, rtol=1e-14)
    with pytest.raises(ValueError, match="square_avg must have shape"):
        RMSprop(a, square_avg=np.zeros(3))


def test_optimizer_matches_torch_when_available():
    torch = pytest.importorskip("torch")
    net = _net_with_grad(5)
    p0, g = net.flat_params.copy(), net.flat_grad.copy()
    tp = torch.nn.Parameter(torch.tensor(p0))
    topt = torch.optim.Adam([tp], lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    opt = Adam(net, lr=3e-3, weight_decay=0.1)
    for _ in range(3):
        tp.grad = torch.tensor(g)
        topt.step()
        opt.step()
    np.testing.assert_allclose(net.flat_params, tp.detach().numpy(), rtol=1e-12, atol=1e-15)


def test_optimizer_over_two_modules_and_stale_buffer_error():
    actor, critic = MLP([3, 4, 2], rng=0), MLP([3, 4, 1], rng=1)
    opt = Adam([actor, critic], lr=1e-3)
    assert opt.data.size == actor.num_parameters + critic.num_parameters
    x = np.ones((2, 3))
    (actor(x).sum() + critic(x).sum()).backward()
    before = actor.flat_params.copy(), critic.flat_params.copy()
    opt.step()
    assert not np.array_equal(actor.flat_params, before[0])
    assert not np.array_equal(critic.flat_params, before[1])
    actor.flatten()                               # moves actor's parameters elsewhere
    with pytest.raises(RuntimeError, match="moved to another buffer"):
        opt.step()


def test_step_invalidates_graphs_that_used_the_old_parameters():
    from minipg.autodiff import InplaceModificationError
    net = MLP([2, 3, 1], rng=0)
    opt = SGD(net, lr=0.1)
    loss = net(np.ones((1, 2))).sum()
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(InplaceModificationError, match="modified in place"):
        loss.backward()


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1.0), r"lr=-1.0 is out of range"),
    (dict(lr=0.0), r"lr=0.0 is out of range"),
    (dict(lr=1e-3, betas=(0.9, 1.0)), r"betas\[1\]=1.0 is out of range; accepted: \[0.0, 1.0\)"),
    (dict(lr=1e-3, eps=-1.0), r"eps=-1.0 is out of range"),
])
def test_bad_hyperparameters_name_the_value_and_the_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Adam(MLP([2, 1], rng=0), **kwargs)


def test_clip_grad_norm_scales_to_max_norm_and_reports_the_old_norm():
    net = _net_with_grad(6)
    g = net.flat_grad.copy()
    norm = np.linalg.norm(g)
    assert global_grad_norm(net) == pytest.approx(norm, rel=1e-14)
    returned = clip_grad_norm(net, max_norm=norm / 4)
    assert returned == pytest.approx(norm, rel=1e-14)
    np.testing.assert_allclose(net.flat_grad, g * (norm / 4) / (norm + 1e-6), rtol=1e-14)
    # below the threshold nothing changes
    g2 = net.flat_grad.copy()
    clip_grad_norm(net, max_norm=10 * norm)
    np.testing.assert_array_equal(net.flat_grad, g2)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(net, 0.0)


def test_polyak_update_moves_target_by_tau():
    source, target = MLP([3, 4, 2], rng=0), MLP([3, 4, 2], rng=1)
    s, t = source.flat_params.copy(), target.flat_params.copy()
    polyak_update(target, source, tau=0.005)
    np.testing.assert_allclose(target.flat_params, 0.995 * t + 0.005 * s, rtol=1e-14)
    np.testing.assert_array_equal(source.flat_params, s)
    polyak_update(target, source, tau=1.0)
    np.testing.assert_array_equal(target.flat_params, s)
    with pytest.raises(ValueError, match="tau"):
        polyak_update(target, source, tau=1.5)
    with pytest.raises(ValueError, match="polyak_update"):
        polyak_update(MLP([3, 2], rng=0), source, tau=0.1)


def test_state_dict_restores_an_identical_continuation():
    def run(split):
        net = _net_with_grad(7)
        opt = Adam(net, lr=1e-2)
        for _ in range(2):
            opt.step()
        if split:
            state, params = opt.state_dict(), net.flat_params.copy()
            net = _net_with_grad(7)
            net.flat_params = params
            opt = Adam(net, lr=1e-2).load_state_dict(state)
        for _ in range(2):
            opt.step()
        return net.flat_params.copy()
    np.testing.assert_array_equal(run(False), run(True))


def test_float32_optimizer_keeps_float32():
    net = _net_with_grad(8, dtype=np.float32)
    opt = Adam(net, lr=1e-3)
    opt.step()
    assert net.flat_params.dtype == np.float32 and opt.m.dtype == np.float32


def test_optimizer_on_a_list_of_parameters():
    w = Parameter(np.ones(3))
    b = Parameter(np.zeros(1))
    opt = SGD([w, b], lr=0.5)
    (ops.square(w).sum() + b.sum()).backward()
    opt.step()
    np.testing.assert_allclose(w.data, np.ones(3) - 0.5 * 2.0)
    np.testing.assert_allclose(b.data, [-0.5])
    with pytest.raises(ValueError, match="no parameters"):
        SGD([], lr=0.1)
