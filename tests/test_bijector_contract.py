"""Every tfp_glow bijector against the same template: round trips, log-dets, shapes, modes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tests.bijector_test_util import MODES, compile_fn, forward_jacobian_log_det, fresh, perturb

# name -> (factory(dtype) -> bijector, forward input event shape)
CASES = {
    "actnorm": (lambda dtype: tfp_glow.ActNorm(4, dtype=dtype), (4, 4, 4)),
    "conv1x1_lu": (lambda dtype: tfp_glow.InvertibleConv1x1(4, seed=1, dtype=dtype), (4, 4, 4)),
    "conv1x1_plain": (
        lambda dtype: tfp_glow.InvertibleConv1x1(4, lu_decomposed=False, seed=1, dtype=dtype),
        (4, 4, 4),
    ),
    "reverse": (lambda dtype: tfp_glow.ChannelPermutation(4, "reverse"), (4, 4, 4)),
    "shuffle": (lambda dtype: tfp_glow.ChannelPermutation(4, "shuffle", seed=3), (4, 4, 4)),
    "coupling_affine": (
        lambda dtype: tfp_glow.AffineCoupling(4, 8, seed=2, dtype=dtype),
        (4, 4, 4),
    ),
    "coupling_exp": (
        lambda dtype: tfp_glow.AffineCoupling(4, 8, scale_fn="exp", seed=2, dtype=dtype),
        (4, 4, 4),
    ),
    "coupling_additive": (
        lambda dtype: tfp_glow.AffineCoupling(4, 8, additive=True, seed=2, dtype=dtype),
        (4, 4, 4),
    ),
    "squeeze": (lambda dtype: tfp_glow.Squeeze(2), (4, 4, 2)),
    "split_prior": (lambda dtype: tfp_glow.SplitPrior(4, dtype=dtype), (4, 4, 4)),
    "top_prior": (lambda dtype: tfp_glow.TopPrior(4, dtype=dtype), (4, 4, 4)),
    "flow_step": (lambda dtype: tfp_glow.FlowStep(4, 8, seed=4, dtype=dtype), (4, 4, 4)),
    "glow": (
        lambda dtype: tfp_glow.Glow(
            (4, 4, 2),
            num_levels=2,
            num_steps=2,
            hidden_channels=8,
            seed=5,
            learn_top_prior=True,
            dtype=dtype,
        ),
        (32,),
    ),
}


def make(name, dtype=tf.float64, seed=0):
    """A bijector with its parameters moved off their identity-like initial values."""
    factory, event_shape = CASES[name]
    bijector = factory(dtype)
    if isinstance(bijector, tfp_glow.Glow):
        images = tf.random.stateless_uniform((8, *bijector.image_shape), [seed, 1], -0.5, 0.5, dtype)
        bijector.initialize(images)
        # Small moves: a deep stack compounds them, and N(0, 1) latents already sit
        # outside the range its ActNorms were initialized on.
        perturb(bijector, seed, scale=0.02)
        return bijector, event_shape
    perturb(bijector, seed)
    return bijector, event_shape


def sample_input(bijector, event_shape, batch_shape, dtype, seed=0):
    return tf.random.stateless_normal((*batch_shape, *event_shape), [seed, 7], dtype=dtype)


@pytest.mark.parametrize("name", sorted(CASES))
def test_log_det_equals_autodiff_jacobian(name):
    bijector, event_shape = make(name)
    x = sample_input(bijector, event_shape, [2], tf.float64)
    expected = forward_jacobian_log_det(bijector, x, len(event_shape))
    actual = bijector.forward_log_det_jacobian(fresh(x), event_ndims=len(event_shape))
    actual = np.broadcast_to(actual.numpy(), expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_round_trip_and_log_det_consistency(name, dtype, mode):
    bijector, event_shape = make(name, dtype)
    event_ndims = len(event_shape)
    x = sample_input(bijector, event_shape, [3], dtype)

    def forward(x):
        return bijector.forward(x), bijector.forward_log_det_jacobian(x, event_ndims=event_ndims)

    def inverse(y):
        out_ndims = bijector.forward_event_shape(x.shape[1:]).rank
        return bijector.inverse(y), bijector.inverse_log_det_jacobian(y, event_ndims=out_ndims)

    forward, inverse = compile_fn(forward, mode), compile_fn(inverse, mode)
    y, fldj = forward(x)
    x_back, ildj = inverse(fresh(y))
    y_back, _ = forward(fresh(x_back))
    tol = 1e-4 if dtype == tf.float32 else 1e-10
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), atol=tol)
    np.testing.assert_allclose(y_back.numpy(), y.numpy(), atol=tol)
    np.testing.assert_allclose(fldj.numpy(), -ildj.numpy(), rtol=tol, atol=tol)
    assert y.dtype == dtype and x_back.dtype == dtype


@pytest.mark.parametrize("batch_shape", [[], [3], [2, 3]], ids=["none", "N", "NxM"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_shapes(name, batch_shape):
    bijector, event_shape = make(name)
    x = sample_input(bijector, event_shape, batch_shape, tf.float64)
    y = bijector.forward(x)
    out_event = bijector.forward_event_shape(event_shape)
    assert y.shape == (*batch_shape, *out_event)
    assert bijector.forward_log_det_jacobian(x, event_ndims=len(event_shape)).shape in (
        tuple(batch_shape),
        (),  # constant-Jacobian bijectors may return one scalar
    )
    np.testing.assert_allclose(bijector.inverse(fresh(y)).numpy(), x.numpy(), atol=1e-10)
    if batch_shape:
        # Each batch member is mapped on its own.
        flat_x = tf.reshape(x, [-1, *event_shape])
        np.testing.assert_allclose(
            tf.reshape(y, [-1, *out_event]).numpy(),
            bijector.forward(fresh(flat_x)).numpy(),
            atol=1e-10,
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_dynamic_shapes(name):
    bijector, event_shape = make(name)
    x = sample_input(bijector, event_shape, [2], tf.float64)
    signature = [tf.TensorSpec([None] * (len(event_shape) + 1), tf.float64)]
    if name == "glow":
        signature = [tf.TensorSpec([None, event_shape[0]], tf.float64)]  # D fixes the image shape
    round_trip = tf.function(lambda x: bijector.inverse(bijector.forward(x)), input_signature=signature)
    np.testing.assert_allclose(round_trip(x).numpy(), x.numpy(), atol=1e-10)


@pytest.mark.parametrize("name", sorted(set(CASES) - {"squeeze", "reverse", "shuffle"}))
def test_parameters_move_the_output(name):
    factory, event_shape = CASES[name]
    bijector = factory(tf.float64)
    x = sample_input(bijector, event_shape, [2], tf.float64)
    if isinstance(bijector, tfp_glow.Glow):
        bijector.initialize(
            tf.random.stateless_uniform((4, *bijector.image_shape), [0, 1], -0.5, 0.5, tf.float64)
        )
    before = bijector.forward(x).numpy()
    perturb(bijector, seed=1, scale=0.02 if name == "glow" else 0.1)
    after = bijector.forward(fresh(x)).numpy()
    assert np.all(np.isfinite(after))
    assert np.max(np.abs(after - before)) > 1e-3


@pytest.mark.parametrize("name", sorted(set(CASES) - {"squeeze", "reverse", "shuffle", "glow"}))
def test_static_channel_mismatch_is_a_value_error(name):
    bijector, event_shape = make(name)
    wrong = tf.zeros([1, event_shape[0], event_shape[1], event_shape[2] + 1], tf.float64)
    with pytest.raises(ValueError, match=r"channels.*Received: shape=\[1, 4, 4, 5\]"):
        bijector.forward(wrong)


@pytest.mark.parametrize("name", sorted(CASES))
def test_composes_with_tfp(name):
    """Chain, Invert and TransformedDistribution accept the bijector."""
    import tensorflow_probability as tfp

    bijector, event_shape = make(name)
    chain = tfp.bijectors.Chain([tfp.bijectors.Shift(tf.constant(0.25, tf.float64)), bijector])
    x = sample_input(bijector, event_shape, [2], tf.float64)
    np.testing.assert_allclose(
        chain.forward(x).numpy(), bijector.forward(fresh(x)).numpy() + 0.25, atol=1e-10
    )
    inverted = tfp.bijectors.Invert(bijector)
    np.testing.assert_allclose(
        inverted.inverse(fresh(x)).numpy(), bijector.forward(fresh(x)).numpy(), atol=1e-10
    )
    base = tfp.distributions.Sample(tfp.distributions.Normal(tf.constant(0.0, tf.float64), 1.0), event_shape)
    dist = tfp.distributions.TransformedDistribution(base, bijector)
    y = dist.sample(2, seed=(1, 2))
    expected = base.log_prob(bijector.inverse(fresh(y))) + bijector.inverse_log_det_jacobian(
        fresh(y), event_ndims=len(bijector.forward_event_shape(event_shape))
    )
    np.testing.assert_allclose(dist.log_prob(fresh(y)).numpy(), expected.numpy(), rtol=1e-10)
