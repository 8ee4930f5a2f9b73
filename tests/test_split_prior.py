"""Tests of `tfp_glow.SplitPrior` beyond the generic contract: the learned prior of split2d."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.bijector_test_util import fresh, perturb
from tfp_glow import SplitPrior


def images(shape=(2, 4, 4, 4), seed=0, dtype=tf.float32):
    return tf.random.stateless_normal(shape, [seed, 17], dtype=dtype)


def test_identity_with_standard_normal_prior_at_initialization():
    prior = SplitPrior(4)
    x = images()
    mean, log_scale = prior.mean_and_log_scale(x[..., :2])
    np.testing.assert_array_equal(mean.numpy(), 0.0)
    np.testing.assert_array_equal(log_scale.numpy(), 0.0)
    y, fldj = prior.forward_and_log_det(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_array_equal(fldj.numpy(), 0.0)
    np.testing.assert_array_equal(prior.inverse(fresh(x)).numpy(), x.numpy())
    np.testing.assert_array_equal(prior.inverse_log_det_jacobian(fresh(x), event_ndims=3).numpy(), 0.0)


def test_kept_half_passes_and_log_det_is_sum_of_log_sigma():
    prior = SplitPrior(4, dtype=tf.float64)
    perturb(prior, seed=1)
    x = images(dtype=tf.float64)
    mean, log_scale = (t.numpy() for t in prior.mean_and_log_scale(x[..., :2]))
    assert np.max(np.abs(log_scale)) > 1e-2 and np.max(np.abs(mean)) > 1e-2
    y, fldj = prior.forward_and_log_det(x)
    np.testing.assert_array_equal(y[..., :2].numpy(), x[..., :2].numpy())
    np.testing.assert_allclose(y[..., 2:].numpy(), mean + np.exp(log_scale) * x[..., 2:].numpy(), rtol=1e-12)
    np.testing.assert_allclose(fldj.numpy(), log_scale.sum(axis=(1, 2, 3)), rtol=1e-12)
    z, ildj = prior.inverse_and_log_det(fresh(x))
    np.testing.assert_array_equal(z[..., :2].numpy(), x[..., :2].numpy())
    assert np.max(np.abs(z[..., 2:].numpy() - x[..., 2:].numpy())) > 1e-3
    np.testing.assert_allclose(ildj.numpy(), -log_scale.sum(axis=(1, 2, 3)), rtol=1e-12)


def test_prior_samples_encode_to_standard_normal_noise():
    prior = SplitPrior(4, dtype=tf.float64)
    perturb(prior, seed=2, scale=0.3)
    rng = np.random.default_rng(0)
    # One kept half h, repeated: z ~ N(mu(h), sigma(h)) drawn independently of the bijector.
    h = np.repeat(rng.standard_normal((1, 4, 4, 2)), 2000, axis=0)
    mean, log_scale = (t.numpy() for t in prior.mean_and_log_scale(tf.constant(h)))
    assert np.std(mean[0]) > 0.05 and np.std(log_scale[0]) > 0.05  # mu, sigma vary per position
    z = mean + np.exp(log_scale) * rng.standard_normal(mean.shape)
    eps = prior.inverse(tf.constant(np.concatenate([h, z], axis=-1)))[..., 2:].numpy()
    # Standard normal at every position and channel, and overall.
    assert abs(eps.mean()) < 0.05 and abs(eps.std() - 1.0) < 0.05
    np.testing.assert_allclose(eps.mean(axis=0), 0.0, atol=0.1)
    np.testing.assert_allclose(eps.std(axis=0), 1.0, atol=0.1)
    # The generative direction draws from the prior: noise -> N(mu(h), sigma(h)).
    noise = rng.standard_normal(mean.shape)
    samples = prior.forward(tf.constant(np.concatenate([h, noise], axis=-1)))[..., 2:].numpy()
    np.testing.assert_allclose(samples.mean(axis=0), mean[0], atol=0.1 * np.exp(log_scale[0]).max())
    np.testing.assert_allclose(samples.std(axis=0), np.exp(log_scale[0]), rtol=0.1)


def test_one_channel_is_a_value_error():
    with pytest.raises(ValueError, match=r"Received: channels=1"):
        SplitPrior(1)
