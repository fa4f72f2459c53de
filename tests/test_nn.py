"""Modules: parameters as views of one flat buffer, layers, init, state."""

import numpy as np
import pytest

from minipg.autodiff import Tensor, gradcheck, ops
from minipg.nn import MLP, Linear, Module, SharedTrunk, contiguous_buffers, flatten_parameters
from minipg.nn.init import fan_in_uniform, orthogonal


def _base_of(a):
    return a.base if a.base is not None else a


def test_mlp_parameters_are_views_of_one_flat_buffer():
    net = MLP([4, 8, 3], rng=0)
    params = net.parameters()
    flat, flat_grad = net.flat_params, net.flat_grad
    assert flat.shape == (4 * 8 + 8 + 8 * 3 + 3,)
    for p in params:
        assert np.shares_memory(p.data, flat)
        assert np.shares_memory(p.grad, flat_grad)
    # writing through the flat vector changes the layers and the other way round
    flat[:] = np.arange(flat.size)
    assert net.layer0.weight.data[0, 0] == 0.0 and net.layer1.bias.data[-1] == flat.size - 1
    net.layer1.bias.data[0] = -5.0
    assert net.flat_params[4 * 8 + 8 + 8 * 3] == -5.0


def test_flat_grad_is_the_concatenated_gradient():
    rng = np.random.default_rng(0)
    net = MLP([3, 5, 2], rng=1)
    x = rng.standard_normal((7, 3))
    loss = ops.square(net(x)).sum()
    loss.backward()
    expected = np.concatenate([p.grad.ravel() for p in net.parameters()])
    np.testing.assert_array_equal(net.flat_grad, expected)
    assert np.any(expected != 0)
    net.zero_grad()
    assert not np.any(net.flat_grad)


def test_mlp_gradient_matches_finite_differences_through_the_flat_vector():
    rng = np.random.default_rng(2)
    net = MLP([3, 4, 2], activation="tanh", rng=3)
    x = rng.standard_normal((5, 3))
    sizes = [p.data.size for p in net.parameters()]
    shapes = [p.data.shape for p in net.parameters()]

    def loss_of_flat(theta):
        # rebuild the forward pass from a flat parameter tensor
        pieces, start = [], 0
        for n, s in zip(sizes, shapes):
            pieces.append(ops.reshape(theta[start:start + n], s))
            start += n
        h = ops.tanh(ops.dense(x, pieces[0], pieces[1]))
        return ops.log_softmax(ops.dense(h, pieces[2], pieces[3])).sum()

    # tight tolerances: float64 central differences are accurate to ~1e-10 here
    assert gradcheck(loss_of_flat, [net.flat_params.copy()], atol=1e-8, rtol=1e-7)
    # and the module's own backward gives the same gradient as the functional one
    net.zero_grad()
    ops.log_softmax(net(x)).sum().backward()
    theta = Tensor(net.flat_params.copy(), requires_grad=True)
    loss_of_flat(theta).backward()
    np.testing.assert_allclose(net.flat_grad, theta.grad, rtol=1e-12, atol=1e-14)


def test_flat_params_setter_and_shape_error():
    net = MLP([2, 3, 1], rng=0)
    new = np.linspace(-1, 1, net.num_parameters)
    net.flat_params = new
    np.testing.assert_array_equal(net.flat_params, new)
    with pytest.raises(ValueError, match=r"expected a vector of shape \(13,\)"):
        net.flat_params = np.zeros(5)


def test_shared_trunk_keeps_one_buffer_and_child_views():
    trunk = MLP([4, 6], output_activation="tanh", rng=0)
    net = SharedTrunk(trunk, Linear(6, 2, rng=1), Linear(6, 1, rng=2))
    assert contiguous_buffers(net.parameters()) is not None
    # the trunk's flat view is a slice of the parent's buffer, not a copy
    assert np.shares_memory(trunk.flat_params, net.flat_params)
    logits, value = net(np.ones((3, 4)))
    assert logits.shape == (3, 2) and value.shape == (3, 1)
    (logits.sum() + value.sum()).backward()
    assert np.any(trunk.flat_grad != 0)
    with pytest.raises(ValueError, match="at least one head"):
        SharedTrunk(trunk)


def test_optimizer_style_flatten_of_two_modules_keeps_values():
    a, b = MLP([2, 3], rng=0), MLP([3, 1], rng=1)
    before = np.concatenate([a.flat_params, b.flat_params])
    data, grad = flatten_parameters(a.parameters() + b.parameters())
    np.testing.assert_array_equal(data, before)
    # each module still reports its parameters (now a view into the joint buffer)
    np.testing.assert_array_equal(a.flat_params, before[:a.num_parameters])
    assert np.shares_memory(a.flat_params, data) and np.shares_memory(b.flat_params, data)


def test_state_dict_round_trip_and_clear_errors():
    net = MLP([3, 4, 2], rng=0)
    state = net.state_dict()
    assert list(state) == ["layer0.weight", "layer0.bias", "layer1.weight", "layer1.bias"]
    other = MLP([3, 4, 2], rng=99)
    assert not np.array_equal(other.flat_params, net.flat_params)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.flat_params, net.flat_params)
    # the load wrote in place: still one buffer
    assert contiguous_buffers(other.parameters()) is not None
    with pytest.raises(KeyError, match="missing keys"):
        other.load_state_dict({"layer0.weight": state["layer0.weight"]})
    bad = dict(state)
    bad["layer0.bias"] = np.zeros(7)
    with pytest.raises(ValueError, match=r"'layer0.bias' has shape \(7,\)"):
        other.load_state_dict(bad)


def test_copy_is_independent_with_its_own_buffer():
    net = MLP([3, 4, 2], rng=0)
    target = net.copy()
    np.testing.assert_array_equal(target.flat_params, net.flat_params)
    assert not np.shares_memory(target.flat_params, net.flat_params)
    net.flat_params += 1.0
    assert not np.array_equal(target.flat_params, net.flat_params)
    assert target(np.ones((1, 3))).shape == (1, 2)


def test_float32_module_and_conversion():
    net = MLP([3, 4, 2], rng=0, dtype=np.float32)
    assert net.flat_params.dtype == np.float32
    y = net(np.ones((2, 3), dtype=np.float32))
    assert y.dtype == np.float32
    y.sum().backward()
    assert net.flat_grad.dtype == np.float32
    net.to(np.float64)
    assert net.flat_params.dtype == np.float64 and net(np.ones((1, 3))).dtype == np.float64


def test_orthogonal_init_is_orthogonal_with_gain():
    W = orthogonal((8, 3), gain=2.0, rng=0)          # n_in=8 >= n_out=3: orthonormal columns
    np.testing.assert_allclose(W.T @ W, 4.0 * np.eye(3), atol=1e-12)
    W = orthogonal((3, 8), gain=1.0, rng=0)          # n_in < n_out: orthonormal rows
    np.testing.assert_allclose(W @ W.T, np.eye(3), atol=1e-12)
    layer = Linear(5, 4, rng=0)
    assert not np.any(layer.bias.data)


def test_fan_in_uniform_bounds():
    W = fan_in_uniform((100, 50), fan_in=100, rng=0)
    assert np.all(np.abs(W) <= 0.1) and np.abs(W).max() > 0.09
    layer = Linear(16, 4, init="fan_in_uniform", rng=0)
    assert np.all(np.abs(layer.bias.data) <= 0.25)


def test_bad_layer_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        Linear(2, 3, init="xavier")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        MLP([2, 3], activation="gelu")
    with pytest.raises(ValueError, match="need at least an input and an output size"):
        MLP([2])
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        Linear(0, 3)


def test_module_subclass_must_call_super_init():
    class Bad(Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(RuntimeError, match="must call super"):
        Bad()


def test_same_seed_same_network():
    a, b = MLP([3, 8, 2], rng=7), MLP([3, 8, 2], rng=7)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert _base_of(a.flat_params) is not _base_of(b.flat_params)


@pytest.mark.parametrize("activation, dtype", [("tanh", np.float64), ("relu", np.float32),
                                               ("sigmoid", np.float64), ("softplus", np.float32)])
def test_no_grad_forward_is_bitwise_the_recorded_forward(activation, dtype):
    from minipg.autodiff import no_grad
    net = MLP([3, 5, 2], activation=activation, output_activation="tanh", rng=0, dtype=dtype)
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(dtype)
    recorded = net(x)
    assert recorded.requires_grad
    with no_grad():
        acted = net(x)
    assert not acted.requires_grad and acted.dtype == dtype
    np.testing.assert_array_equal(acted.data, recorded.data)
    # a custom activation has no array path and still works without grad
    custom = MLP([3, 2], activation=lambda h: h * 2.0, output_activation=lambda h: h * 3.0,
                 rng=0)
    x64 = x.astype(np.float64)
    recorded = custom(x64)
    with no_grad():
        np.testing.assert_array_equal(custom(x64).data, recorded.data)
    # one layer: only the output activation applies
    expected = 3.0 * (x64 @ custom.layer0.weight.data + custom.layer0.bias.data)
    np.testing.assert_allclose(recorded.data, expected, rtol=1e-15)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_mlp_forward_array_equals_forward(activation):
    """The acting path (plain arrays) gives the recorded forward's values bit for bit."""
    mlp = MLP([4, 16, 16, 2], activation=activation, rng=0)
    x = np.random.default_rng(1).normal(size=(5, 4))
    out = mlp.forward_array(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, mlp(Tensor(x)).data)
    mlp_callable = MLP([4, 8, 1], activation=lambda t: ops.tanh(t) * 2.0, rng=0)
    np.testing.assert_array_equal(mlp_callable.forward_array(x), mlp_callable(Tensor(x)).data)


def test_flat_views_are_remembered_only_while_they_are_the_parameters_buffers():
    """Module.flat_params finds the flat buffer once and reuses it while the parameters
    keep their arrays; after flatten(), to(), a deep copy or a rebound parameter it
    looks again, so writes through it always reach the parameters."""
    import copy

    net = MLP([3, 8, 2], rng=0)
    first = net.flat_params
    assert net.flat_params is first                      # remembered
    net.flatten()                                         # a new buffer
    assert net.flat_params is not first
    net.flat_params[...] = 1.0
    assert all((p.data == 1.0).all() for p in net.parameters())
    clone = copy.deepcopy(net)                            # its own arrays, not one buffer
    assert not clone.flat_params.flags.writeable         # a read-only copy, not stale views
    clone.flatten()
    clone.flat_params[...] = 2.0
    assert all((p.data == 2.0).all() for p in clone.parameters())
    assert all((p.data == 1.0).all() for p in net.parameters())
    net.to(np.float32)
    net.flat_params[...] = 3.0
    assert all(p.data.dtype == np.float32 and (p.data == 3.0).all() for p in net.parameters())
    layer = net.layers[0]
    layer.weight.data = np.zeros_like(layer.weight.data)  # rebound: no longer one buffer
    assert not net.flat_params.flags.writeable
