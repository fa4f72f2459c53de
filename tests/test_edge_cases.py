"""Edge cases of the engine, modules and optimizers (each once a real defect)."""

import numpy as np
import pytest

from minipg.autodiff import (GraphFreedError, InplaceModificationError, Parameter, Tensor,
                             backward_cotangents, forward_tangents, jvp, no_grad, ops, vjp)
from minipg.nn import MLP, Linear, SharedTrunk
from minipg.optim import SGD, clip_grad_norm, global_grad_norm


def leaf(values):
    return Tensor(np.array(values, dtype=np.float64), requires_grad=True)


def test_dense_refuses_a_bias_that_is_not_n_out():
    x = np.ones((4, 3))
    W = leaf(np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"b \(n_out,\).*got x \(4, 3\), W \(3, 1\) and "
                                         r"b \(4, 1\)"):
        ops.dense(x, W, leaf(np.zeros((4, 1))))
    with pytest.raises(ValueError, match=r"accepted shapes are x \(\.\.\., n_in\), W "
                                         r"\(n_in, n_out\)"):
        ops.dense(x, leaf(np.ones(3)), leaf(np.zeros(1)))


def test_grad_norm_and_clipping_count_a_shared_trunk_once():
    trunk = MLP([2, 4], rng=0)
    a = SharedTrunk(trunk, Linear(4, 2, rng=1))
    c = SharedTrunk(trunk, Linear(4, 1, rng=2))
    x = np.ones((1, 2))
    (a(x)[0].sum() + c(x)[0].sum()).backward()
    unique = {id(p): p for p in a.parameters() + c.parameters()}
    true_norm = np.sqrt(sum(np.sum(p.grad ** 2) for p in unique.values()))
    assert global_grad_norm([a, c]) == pytest.approx(true_norm, rel=1e-12)
    clip_grad_norm([a, c], 0.1)
    after = np.sqrt(sum(np.sum(p.grad ** 2) for p in unique.values()))
    assert after == pytest.approx(0.1, rel=1e-4)
    assert SGD([a, c], lr=0.1).data.size == sum(p.data.size for p in unique.values())


def test_optimizer_notices_any_module_moved_to_another_buffer():
    actor, critic = MLP([2, 3, 1], rng=0), MLP([2, 3, 1], rng=1)
    opt = SGD([actor, critic], lr=0.1)
    critic.flatten()                             # the second module, not the first
    with pytest.raises(RuntimeError, match="moved to another buffer"):
        opt.step()


def test_a_tensor_made_from_a_tensor_shares_its_version():
    x = leaf([1.0, 2.0])
    loss = (x * x).sum()
    with no_grad():
        Tensor(x).add_(1.0)                      # writes into x's data
    with pytest.raises(InplaceModificationError, match="'Mul'"):
        loss.backward()


def test_writing_a_root_output_through_a_detached_view_is_detected():
    x = leaf([0.5, 1.0])
    y = ops.exp(x)                               # Exp saves its own output
    with no_grad():
        y.detach().fill_(0.0)
    with pytest.raises(InplaceModificationError, match="output of op 'Exp'"):
        y.backward(np.ones(2))


def test_list_constants_are_arrays():
    x = leaf([[1.0, 2.0]])
    y = x @ [[1.0], [2.0]]
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [[1.0, 2.0]])
    z = Linear(2, 3, rng=0)([1.0, 2.0])
    assert z.shape == (3,)
    np.testing.assert_allclose((x ** [2.0, 3.0]).data, [[1.0, 8.0]])


def test_equality_is_elementwise_like_the_other_comparisons():
    x = Tensor([0.0, 1.0])
    np.testing.assert_array_equal(x == 0, [True, False])
    np.testing.assert_array_equal(x != 0, [False, True])
    picked = ops.where(x == 0, 5.0, x)
    np.testing.assert_array_equal(picked.data, [5.0, 1.0])
    assert len({x, Tensor([0.0, 1.0])}) == 2    # still hashable, by identity


def test_forward_tangents_refuse_freed_or_modified_graphs():
    x = leaf([1.0, 2.0])
    y = ops.square(x)
    y.sum().backward()                           # frees the graph
    with pytest.raises(GraphFreedError):
        forward_tangents(y, {id(x): np.ones(2)})
    x2 = leaf([1.0, 2.0])
    y2 = ops.square(x2)
    with no_grad():
        x2[0] = 10.0
    with pytest.raises(InplaceModificationError, match="'Square'"):
        forward_tangents(y2, {id(x2): np.ones(2)})


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        Parameter(np.array([1, 2]), dtype=np.int64)
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.array([1, 2]), dtype=np.int64).requires_grad_()


def test_flat_params_of_a_non_contiguous_module_is_a_read_only_copy():
    trunk = MLP([2, 4], rng=0)
    a = SharedTrunk(trunk, Linear(4, 2, rng=1))
    SharedTrunk(trunk, Linear(4, 1, rng=2))      # re-flattens the trunk elsewhere
    flat = a.flat_params
    with pytest.raises(ValueError, match="read-only"):
        flat += 1.0
    a.flat_params = flat + 1.0                   # assignment still works
    np.testing.assert_array_equal(a.flat_params, flat + 1.0)


def test_a_replaced_layer_is_the_one_forward_uses():
    net = MLP([2, 3, 1], rng=0)
    new = Linear(3, 1, rng=5)
    net.layer1 = new
    assert net.layers[1] is new
    assert any(p is new.weight for p in net.parameters())
    h = np.tanh(np.ones((1, 2)) @ net.layer0.weight.data + net.layer0.bias.data)
    np.testing.assert_allclose(net(np.ones((1, 2))).data, h @ new.weight.data + new.bias.data)


def test_assigning_a_non_parameter_unregisters_the_name():
    layer = Linear(2, 2, rng=0)
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]


def test_cotangent_shapes_are_checked_up_front():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    with pytest.raises(ValueError, match=r"cotangent shape \(3,\)"):
        backward_cotangents(y, np.ones(3), [x])
    with pytest.raises(ValueError, match="2 cotangents for 1 outputs"):
        backward_cotangents(y, [np.ones(2), np.ones(2)], [x])


def test_functions_returning_a_list_work_with_vjp_and_jvp():
    value, pullback = vjp(lambda x: [x * 2.0, ops.exp(x)], np.array([0.0, 1.0]))
    assert isinstance(value, tuple) and len(value) == 2
    (g,) = pullback((np.ones(2), np.ones(2)))
    np.testing.assert_allclose(g, 2.0 + np.exp([0.0, 1.0]))
    _, tangents = jvp(lambda x: [x * 2.0, x], [np.array([1.0])], [np.array([1.0])])
    np.testing.assert_array_equal(tangents[0], [2.0])


def test_mean_over_an_empty_axis_has_a_zero_gradient():
    x = leaf(np.zeros((0, 3)))
    with np.errstate(invalid="ignore"):
        m = ops.mean(x, axis=0)
    assert np.all(np.isnan(m.data))
    m.backward(np.ones(3))
    assert x.grad.shape == (0, 3)


def test_logsumexp_of_all_minus_inf_is_minus_inf_and_0d_works():
    x = Tensor(np.array([[-np.inf, -np.inf], [0.0, 0.0]]))
    with np.errstate(divide="ignore", invalid="ignore"):   # log(0) = -inf is the answer
        out = ops.logsumexp(x, axis=-1)
    np.testing.assert_allclose(out.data, [-np.inf, np.log(2.0)])
    s = leaf(1.5)
    out = ops.logsumexp(s)
    assert out.data == 1.5
    out.backward()
    assert s.grad == 1.0


def test_transpose_takes_axes_as_arguments_or_a_tuple():
    x = Tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(x.transpose(1, 0).data, x.data.T)
    np.testing.assert_array_equal(x.transpose((1, 0)).data, x.data.T)
    np.testing.assert_array_equal(x.transpose().data, x.data.T)


def test_iterating_a_tensor_gives_rows_and_a_0d_tensor_refuses():
    x = leaf([[1.0, 2.0], [3.0, 4.0]])
    rows = list(x)
    assert len(rows) == 2 and rows[1].shape == (2,)
    (rows[0].sum() * 2.0 + rows[1].sum()).backward()
    np.testing.assert_array_equal(x.grad, [[2.0, 2.0], [1.0, 1.0]])
    with pytest.raises(TypeError, match="0-d"):
        iter(Tensor(1.0))
