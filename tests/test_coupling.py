"""Tests of `tfp_glow.AffineCoupling` beyond the generic contract: conditioners and scales."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.bijector_test_util import fresh, perturb
from tfp_glow import AffineCoupling, CouplingNetwork
from tfp_glow.functional import conv, coupling

SHAPE = [2, 4, 4, 4]  # C_a = C_b = 2


def var_refs(variables):
    return {v.ref() for v in variables}


def images(dtype=tf.float32, seed=0, shape=SHAPE):
    return tf.random.stateless_normal(shape, [seed, 11], dtype=dtype)


class ConstantConditioner(tf.Module):
    """Returns `value` for every shift and raw scale, as one interleaved tensor."""

    def __init__(self, value, channels_b=2):
        super().__init__()
        self.value, self.channels_b = value, channels_b

    def __call__(self, x_a):
        shape = tf.concat([tf.shape(x_a)[:-1], [2 * self.channels_b]], 0)
        return tf.fill(shape, tf.cast(self.value, x_a.dtype))


class TupleConditioner(tf.Module):
    """A 1x1 linear map of x_a to (shift, h), returned as a tuple."""

    def __init__(self, channels_a=2, channels_b=2):
        super().__init__()
        rng = np.random.default_rng(0)
        self.shift_kernel = tf.Variable(rng.standard_normal((channels_a, channels_b)).astype(np.float32))
        self.scale_kernel = tf.Variable(rng.standard_normal((channels_a, channels_b)).astype(np.float32))
        self.calls = 0

    def __call__(self, x_a):
        self.calls += 1
        return tf.einsum("...c,cd->...d", x_a, self.shift_kernel), tf.einsum(
            "...c,cd->...d", x_a, self.scale_kernel
        )


class LabelConditioner(tf.Module):
    """Shift and raw scale from a per-example class label (and x_a)."""

    def __init__(self, num_classes=3, channels_b=2):
        super().__init__()
        rng = np.random.default_rng(1)
        self.embedding = tf.Variable(rng.standard_normal((num_classes, 2 * channels_b)).astype(np.float32))
        self.labels_seen = []

    def __call__(self, x_a, label):
        self.labels_seen.append(label)
        bias = tf.gather(self.embedding, label)[:, None, None, :]
        return 0.1 * tf.reduce_sum(x_a, axis=-1, keepdims=True) + bias


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scale_fn", ["sigmoid", "exp"])
def test_default_coupling_is_exactly_the_identity_at_initialization(scale_fn, dtype):
    coupling = AffineCoupling(4, 8, scale_fn=scale_fn, seed=0, dtype=dtype)
    x = images(dtype)
    y, fldj = coupling.forward_and_log_det(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_array_equal(fldj.numpy(), np.zeros([2]))
    x_back, ildj = coupling.inverse_and_log_det(x)
    np.testing.assert_array_equal(x_back.numpy(), x.numpy())
    np.testing.assert_array_equal(ildj.numpy(), np.zeros([2]))


@pytest.mark.parametrize("additive", [False, True], ids=["affine", "additive"])
def test_first_half_passes_unchanged_second_half_changes(additive):
    coupling = AffineCoupling(4, 8, additive=additive, seed=0)
    perturb(coupling, seed=1)
    x = images()
    for y in (coupling.forward(x), coupling.inverse(fresh(x))):
        np.testing.assert_array_equal(y[..., :2].numpy(), x[..., :2].numpy())
        assert np.min(np.max(np.abs(y[..., 2:].numpy() - x[..., 2:].numpy()), axis=(0, 1, 2))) > 1e-3


def test_additive_log_det_is_exactly_zero_after_perturbation():
    coupling = AffineCoupling(4, 8, additive=True, seed=0)
    perturb(coupling, seed=2, scale=0.5)
    x = images()
    assert np.max(np.abs(coupling.forward(x).numpy() - x.numpy())) > 1e-3
    np.testing.assert_array_equal(coupling.forward_log_det_jacobian(fresh(x), event_ndims=3).numpy(), 0.0)
    np.testing.assert_array_equal(coupling.inverse_log_det_jacobian(fresh(x), event_ndims=3).numpy(), 0.0)


@pytest.mark.parametrize("value", [1e4, -1e4])
def test_exp_scale_is_bounded_for_huge_conditioner_outputs(value):
    bound = 3.0
    coupling = AffineCoupling(
        4, scale_fn="exp", log_scale_bound=bound, conditioner=ConstantConditioner(value)
    )
    x = images()
    limit = 4 * 4 * 2 * bound  # H * W * C_b * B
    for direction in (coupling.forward_and_log_det, coupling.inverse_and_log_det):
        out, log_det = direction(fresh(x))
        assert np.all(np.isfinite(out.numpy()))
        assert np.all(np.isfinite(log_det.numpy()))
        assert np.all(np.abs(log_det.numpy()) <= limit * (1 + 1e-6))
    # tanh saturates: the bound is reached, not just respected.
    _, ildj = coupling.inverse_and_log_det(fresh(x))
    np.testing.assert_allclose(ildj.numpy(), np.sign(value) * limit, rtol=1e-6)


@pytest.mark.parametrize("value", [1e4, -1e4])
def test_sigmoid_scale_is_finite_in_the_encoding_direction_for_huge_h(value):
    coupling = AffineCoupling(4, conditioner=ConstantConditioner(value))
    x = images()
    z, ildj = coupling.inverse_and_log_det(x)
    assert np.all(np.isfinite(z.numpy()))
    assert np.all(np.isfinite(ildj.numpy()))
    assert np.all(np.isfinite(coupling.inverse_log_det_jacobian(fresh(x), event_ndims=3).numpy()))
    # s = sigmoid(h + 2) / sigmoid(2) < 1 / sigmoid(2): the log-det is bounded above.
    upper = 4 * 4 * 2 * np.log1p(np.exp(-2.0))
    assert np.all(ildj.numpy() <= upper * (1 + 1e-5))
    if value > 0:
        np.testing.assert_allclose(ildj.numpy(), upper, rtol=1e-5)
    else:  # s underflows to 0 without overflowing: log s = h + 2 - log sigmoid(2)
        np.testing.assert_allclose(
            ildj.numpy(), 4 * 4 * 2 * (value + 2.0 + np.log1p(np.exp(-2.0))), rtol=1e-5
        )


def test_tuple_conditioner_is_used_and_tracked():
    conditioner = TupleConditioner()
    coupling = AffineCoupling(4, conditioner=conditioner)
    assert conditioner.calls == 0
    x = images()
    z, ildj = coupling.inverse_and_log_det(x)
    assert conditioner.calls == 1
    # Independent computation: t, h from the tuple, s = sigmoid(h + 2) / sigmoid(2).
    x_np = x.numpy().astype(np.float64)
    shift = x_np[..., :2] @ conditioner.shift_kernel.numpy()
    h = x_np[..., :2] @ conditioner.scale_kernel.numpy()
    log_s = -np.log1p(np.exp(-(h + 2.0))) + np.log1p(np.exp(-2.0))
    np.testing.assert_allclose(
        z[..., 2:].numpy(), (x_np[..., 2:] + shift) * np.exp(log_s), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(ildj.numpy(), log_s.sum(axis=(1, 2, 3)), rtol=1e-5)
    assert var_refs([conditioner.shift_kernel, conditioner.scale_kernel]) <= var_refs(
        coupling.trainable_variables
    )


def test_keras_layer_conditioner_variables_are_tracked_and_trained():
    layer = keras.layers.Conv2D(4, 3, padding="same", kernel_initializer="random_normal")
    layer.build((None, 4, 4, 2))
    coupling = AffineCoupling(4, conditioner=layer)
    trainable = var_refs(coupling.trainable_variables)
    underlying = [w.value for w in layer.trainable_weights]
    assert all(isinstance(v, tf.Variable) for v in underlying)
    assert var_refs(underlying) <= trainable
    assert var_refs(underlying) <= var_refs(coupling.variables)

    x = images()
    with tf.GradientTape() as tape:
        z = coupling.inverse(x)
        log_prob = -0.5 * tf.reduce_sum(tf.square(z), axis=[1, 2, 3]) + coupling.inverse_log_det_jacobian(
            x, event_ndims=3
        )
        loss = -tf.reduce_mean(log_prob)
    grads = tape.gradient(loss, coupling.trainable_variables)
    assert len(grads) == len(coupling.trainable_variables) >= 2
    for g in grads:
        assert g is not None
        assert np.max(np.abs(g.numpy())) > 0


def test_conditioning_kwargs_reach_the_conditioner():
    conditioner = LabelConditioner()
    coupling = AffineCoupling(4, conditioner=conditioner)
    x = images()
    label_a, label_b = tf.constant([0, 1]), tf.constant([2, 2])
    y_a = coupling.forward(x, label=label_a)
    assert conditioner.labels_seen[-1] is label_a
    y_b = coupling.forward(fresh(x), label=label_b)
    assert conditioner.labels_seen[-1] is label_b
    assert np.max(np.abs(y_a.numpy() - y_b.numpy())) > 1e-3
    np.testing.assert_allclose(coupling.inverse(fresh(y_a), label=label_a).numpy(), x.numpy(), atol=1e-5)
    # The wrong label does not invert it.
    assert np.max(np.abs(coupling.inverse(fresh(y_a), label=label_b).numpy() - x.numpy())) > 1e-3


def test_one_channel_is_a_value_error():
    with pytest.raises(ValueError, match=r"Received: channels=1"):
        AffineCoupling(1)


def test_unknown_scale_fn_is_a_value_error():
    with pytest.raises(ValueError, match=r"Received: scale_fn='softplus'"):
        AffineCoupling(4, scale_fn="softplus")


def test_initialize_initializes_the_conditioner_actnorms():
    coupling = AffineCoupling(4, 8, seed=0)
    network = coupling.conditioner
    actnorms = (network.actnorm_in, network.actnorm_hidden)
    assert not any(bool(a.initialized.numpy()) for a in actnorms)
    y = images() * 3.0 + 1.0
    z = coupling.initialize(y)
    assert all(bool(a.initialized.numpy()) for a in actnorms)
    assert all(np.max(np.abs(a.log_scale.numpy())) > 0 for a in actnorms)
    # The zero-initialized output conv keeps it the identity; initialize returns inverse(y).
    np.testing.assert_allclose(z.numpy(), coupling.inverse(fresh(y)).numpy(), atol=1e-6)
    np.testing.assert_allclose(z.numpy(), y.numpy(), atol=1e-5)


@pytest.mark.parametrize("shape", [[2, 5, 6, 2], [3, 2, 4, 4, 2]], ids=["NHWC", "leading-dims"])
def test_the_folded_network_equals_the_unfolded_one_with_perturbed_actnorms(shape):
    """The conditioner folds its ActNorms into the convolutions and adds the edge-bias border
    term as a bias: the same map as the paper's network written out step by step."""
    network = CouplingNetwork(2, 4, hidden_channels=6, seed=3, dtype=tf.float64)
    x = tf.random.stateless_normal(shape, [4, 5], dtype=tf.float64)
    network.initialize(x)
    perturb(network, seed=6, scale=0.3)  # every ActNorm, kernel and the zero convolution off its start
    assert np.max(np.abs(network.actnorm_in.log_scale.numpy())) > 0.1

    def actnorm_inverse(actnorm, h):
        return (h - actnorm.loc) * tf.exp(-actnorm.log_scale)

    h = tf.nn.relu(
        actnorm_inverse(network.actnorm_in, conv.conv2d(x, network.conv_in.kernel, edge_bias=True))
    )
    h = tf.nn.relu(actnorm_inverse(network.actnorm_hidden, conv.conv2d(h, network.conv_hidden.kernel)))
    out = network.conv_out
    expected = (conv.conv2d(h, out.kernel, edge_bias=True) + out.bias) * tf.exp(3.0 * out.logs)
    np.testing.assert_allclose(network(x).numpy(), expected.numpy(), rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(expected.numpy())) > 0.1


@pytest.mark.parametrize("shape", [[2, 3, 3, 6], [5, 2, 4, 4, 8], [4]])
def test_split_and_deinterleave_equal_the_slices_with_their_gradients(shape):
    x = tf.random.stateless_normal(shape, [3, 4])
    weights = [tf.random.stateless_normal(shape[:-1] + [shape[-1] // 2], [i, 5]) for i in range(4)]

    def through(pieces):
        return sum(tf.reduce_sum(w * tf.sin(p)) for w, p in zip(weights, pieces, strict=True))

    def ours(x):
        return [*coupling.split_channels(x, shape[-1] // 2), *coupling.deinterleave_channels(x)]

    def slices(x):
        half = shape[-1] // 2
        return [x[..., :half], x[..., half:], x[..., 0::2], x[..., 1::2]]

    leading_unknown = tf.TensorSpec([None] * (len(shape) - 1) + [shape[-1]])
    all_unknown = tf.TensorSpec([None] * len(shape))
    for fn in (ours, *(tf.function(ours, input_signature=[spec]) for spec in (leading_unknown, all_unknown))):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            got, want = fn(x), slices(x)
            got_loss, want_loss = through(got), through(want)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(tape.gradient(got_loss, x), tape.gradient(want_loss, x))
