"""glow_distribution, bits per dimension and (de)quantization."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_glow
from tests.bijector_test_util import fresh, perturb


@pytest.fixture(scope="module")
def glow():
    glow = tfp_glow.Glow((8, 8, 1), num_levels=2, num_steps=2, hidden_channels=8, seed=0)
    glow.initialize(tf.random.stateless_uniform([32, 8, 8, 1], [0, 1], -0.5, 0.5))
    perturb(glow, seed=1, scale=0.02)
    return glow


def test_log_prob_is_base_log_prob_plus_inverse_log_det(glow):
    dist = tfp_glow.glow_distribution(glow)
    assert dist.event_shape == (8, 8, 1)
    x = tf.random.stateless_uniform([3, 8, 8, 1], [2, 3], -0.5, 0.5)
    z = glow.inverse(fresh(x))
    normal = tfp.distributions.Normal(0.0, 1.0)
    expected = tf.reduce_sum(normal.log_prob(z), -1) + glow.inverse_log_det_jacobian(fresh(x), event_ndims=3)
    np.testing.assert_allclose(dist.log_prob(fresh(x)).numpy(), expected.numpy(), rtol=1e-5)


def test_sample_and_temperature(glow):
    samples = tfp_glow.glow_distribution(glow, temperature=0.7).sample(5, seed=(4, 2))
    assert samples.shape == (5, 8, 8, 1) and np.all(np.isfinite(samples.numpy()))
    again = tfp_glow.glow_distribution(glow, temperature=0.7).sample(5, seed=(4, 2))
    np.testing.assert_array_equal(samples.numpy(), again.numpy())
    cold = tfp_glow.glow_distribution(glow, temperature=0.0).sample(2, seed=(1, 1))
    mode = glow.forward(tf.zeros([2, glow.event_size]))
    np.testing.assert_allclose(cold.numpy(), mode.numpy(), atol=1e-6)
    # Temperature scales the base at every level: the latent of a sample at T is T * eps.
    z_hot = glow.inverse(fresh(tfp_glow.glow_distribution(glow, temperature=1.0).sample(2, seed=(7, 7))))
    z_cold = glow.inverse(fresh(tfp_glow.glow_distribution(glow, temperature=0.5).sample(2, seed=(7, 7))))
    np.testing.assert_allclose(z_cold.numpy(), 0.5 * z_hot.numpy(), atol=1e-4)


@pytest.mark.parametrize("temperature", [-0.1, float("nan"), float("inf")])
def test_bad_temperature(glow, temperature):
    with pytest.raises(ValueError, match="temperature"):
        tfp_glow.glow_distribution(glow, temperature)


def test_glow_distribution_needs_a_glow():
    with pytest.raises(TypeError, match="Received: glow="):
        tfp_glow.glow_distribution(tfp.bijectors.Identity())


def test_bits_per_dim_formula():
    d = 8 * 8 * 3
    # A uniform density over [-0.5, 0.5]^D has log p = 0: each of the 256 levels is equally likely,
    # which is exactly 8 bits per dimension.
    np.testing.assert_allclose(tfp_glow.bits_per_dim(0.0, (8, 8, 3), 256).numpy(), 8.0)
    np.testing.assert_allclose(tfp_glow.bits_per_dim(0.0, (8, 8, 1), 17).numpy(), math.log2(17))
    log_prob = tf.constant([-100.0, 50.0])
    expected = (-(log_prob.numpy() - d * math.log(256)) / (d * math.log(2))).astype(np.float32)
    np.testing.assert_allclose(tfp_glow.bits_per_dim(log_prob, (8, 8, 3), 256).numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="num_bins=1"):
        tfp_glow.bits_per_dim(0.0, (8, 8, 3), 1)


def test_unit_range_round_trip_and_dequantization():
    pixels = tf.constant([[0, 1, 16]])
    centre = tfp_glow.to_unit_range(pixels, 17)
    np.testing.assert_allclose(centre.numpy(), (np.array([[0, 1, 16]]) + 0.5) / 17 - 0.5, rtol=1e-6)
    noise = tf.constant([[0.0, 0.999, 0.5]])
    x = tfp_glow.to_unit_range(pixels, 17, noise)
    assert np.all(x.numpy() >= -0.5) and np.all(x.numpy() < 0.5)
    np.testing.assert_array_equal(tfp_glow.quantize(x, 17).numpy(), pixels.numpy())
    np.testing.assert_array_equal(tfp_glow.quantize(tf.constant([-3.0, 3.0]), 17).numpy(), [0, 16])
    np.testing.assert_array_equal(tfp_glow.reduce_bits(tf.constant([0, 7, 8, 255]), 5).numpy(), [0, 0, 1, 31])
    with pytest.raises(ValueError, match="n_bits=9"):
        tfp_glow.reduce_bits(pixels, 9)
