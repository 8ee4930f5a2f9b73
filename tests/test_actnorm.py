"""Tests of `tfp_glow.ActNorm` beyond the generic contract: data-dependent initialization."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.bijector_test_util import fresh
from tfp_glow import ActNorm

# Per-channel statistics far from (0, 1), so that an initialization that did nothing fails.
MEANS = np.array([2.0, -3.0, 0.5], np.float32)
STDS = np.array([5.0, 0.25, 2.0], np.float32)


def data_batch(seed=0, shape=(8, 4, 4, 3), means=MEANS, stds=STDS):
    noise = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return tf.constant(noise * stds + means)


def per_channel_moments(t):
    t = np.asarray(t, np.float64).reshape(-1, t.shape[-1])
    return t.mean(axis=0), t.std(axis=0)


def var_refs(variables):
    return {v.ref() for v in variables}


def test_initialize_normalizes_the_batch_per_channel():
    actnorm = ActNorm(3)
    y = data_batch()
    actnorm.initialize(y)
    mean, std = per_channel_moments(actnorm.inverse(fresh(y)))
    np.testing.assert_allclose(mean, 0.0, atol=1e-3)
    np.testing.assert_allclose(std, 1.0, atol=1e-3)
    # The parameters are the batch statistics (forward maps N(0, 1) back to the data's scale).
    expected_mean, expected_std = per_channel_moments(y)
    np.testing.assert_allclose(actnorm.loc.numpy(), expected_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.exp(actnorm.log_scale.numpy()), expected_std, rtol=1e-4)


def test_initialize_returns_the_inverse():
    actnorm = ActNorm(3)
    y = data_batch()
    z = actnorm.initialize(y)
    np.testing.assert_allclose(z.numpy(), actnorm.inverse(fresh(y)).numpy(), rtol=1e-6, atol=1e-6)
    mean, std = per_channel_moments(z)
    np.testing.assert_allclose(mean, 0.0, atol=1e-3)
    np.testing.assert_allclose(std, 1.0, atol=1e-3)


def test_initialize_is_idempotent():
    actnorm = ActNorm(3)
    actnorm.initialize(data_batch(seed=0))
    loc, log_scale = actnorm.loc.numpy().copy(), actnorm.log_scale.numpy().copy()
    other = data_batch(seed=1, means=-MEANS * 3.0, stds=STDS * 7.0)
    z = actnorm.initialize(other)
    np.testing.assert_array_equal(actnorm.loc.numpy(), loc)
    np.testing.assert_array_equal(actnorm.log_scale.numpy(), log_scale)
    # The second call still returns inverse(y) with the first batch's parameters.
    np.testing.assert_allclose(z.numpy(), (other.numpy() - loc) * np.exp(-log_scale), rtol=1e-5, atol=1e-5)


def test_initialized_is_a_non_trainable_variable():
    actnorm = ActNorm(3)
    assert isinstance(actnorm.initialized, tf.Variable)
    assert actnorm.initialized.dtype == tf.bool
    assert not actnorm.initialized.trainable
    assert not bool(actnorm.initialized.numpy())
    assert actnorm.initialized.ref() in var_refs(actnorm.variables)
    assert actnorm.initialized.ref() not in var_refs(actnorm.trainable_variables)
    assert var_refs(actnorm.trainable_variables) == var_refs([actnorm.loc, actnorm.log_scale])
    actnorm.initialize(data_batch())
    assert bool(actnorm.initialized.numpy())


def test_checkpoint_restore_is_never_initialized_again(tmp_path):
    actnorm = ActNorm(3)
    actnorm.initialize(data_batch(seed=0))
    path = tf.train.Checkpoint(actnorm=actnorm).save(str(tmp_path / "ckpt"))

    restored = ActNorm(3)
    tf.train.Checkpoint(actnorm=restored).restore(path).assert_consumed()
    assert bool(restored.initialized.numpy())
    np.testing.assert_array_equal(restored.loc.numpy(), actnorm.loc.numpy())
    np.testing.assert_array_equal(restored.log_scale.numpy(), actnorm.log_scale.numpy())

    # A data pipeline that calls initialize() after loading must not overwrite the weights.
    restored.initialize(data_batch(seed=1, means=MEANS + 10.0, stds=STDS * 3.0))
    np.testing.assert_array_equal(restored.loc.numpy(), actnorm.loc.numpy())
    np.testing.assert_array_equal(restored.log_scale.numpy(), actnorm.log_scale.numpy())


def test_identity_with_zero_log_det_before_initialization():
    actnorm = ActNorm(3, validate_args=False)
    x = data_batch()
    np.testing.assert_array_equal(actnorm.forward(x).numpy(), x.numpy())
    np.testing.assert_array_equal(actnorm.inverse(fresh(x)).numpy(), x.numpy())
    np.testing.assert_array_equal(actnorm.forward_log_det_jacobian(fresh(x), event_ndims=3).numpy(), 0.0)
    assert not bool(actnorm.initialized.numpy())  # using it does not initialize it


def test_validate_args_rejects_use_before_initialization():
    actnorm = ActNorm(3, validate_args=True)
    x = data_batch()
    with pytest.raises(tf.errors.InvalidArgumentError, match="initialize"):
        actnorm.forward(x)
    with pytest.raises(tf.errors.InvalidArgumentError, match="initialize"):
        actnorm.inverse(fresh(x))
    # Once initialized, the same checks pass.
    actnorm.initialize(x)
    y = actnorm.forward(fresh(x))
    assert np.all(np.isfinite(y.numpy()))


def test_initialize_inside_tf_function_is_idempotent():
    actnorm = ActNorm(3)
    initialize = tf.function(actnorm.initialize)
    y = data_batch(seed=0)
    z = initialize(y)
    assert bool(actnorm.initialized.numpy())
    mean, std = per_channel_moments(z)
    np.testing.assert_allclose(mean, 0.0, atol=1e-3)
    np.testing.assert_allclose(std, 1.0, atol=1e-3)
    loc, log_scale = actnorm.loc.numpy().copy(), actnorm.log_scale.numpy().copy()

    # Same trace, different data: nothing changes, and the output uses the first parameters.
    other = data_batch(seed=1, means=-MEANS, stds=STDS * 4.0)
    z_other = initialize(other)
    np.testing.assert_array_equal(actnorm.loc.numpy(), loc)
    np.testing.assert_array_equal(actnorm.log_scale.numpy(), log_scale)
    np.testing.assert_allclose(
        z_other.numpy(), (other.numpy() - loc) * np.exp(-log_scale), rtol=1e-5, atol=1e-5
    )


def test_log_det_is_spatial_size_times_sum_of_log_scale():
    actnorm = ActNorm(3, dtype=tf.float64)
    log_scale = np.array([0.3, -1.2, 0.7])
    actnorm.log_scale.assign(log_scale)
    actnorm.loc.assign([1.0, -2.0, 0.5])
    # H != W, so that H * H or W * W would be caught.
    x = tf.random.stateless_normal([2, 3, 5, 3], [1, 2], dtype=tf.float64)
    expected = 3 * 5 * log_scale.sum()
    fldj = actnorm.forward_log_det_jacobian(x, event_ndims=3).numpy()
    np.testing.assert_allclose(np.broadcast_to(fldj, [2]), expected, rtol=1e-12)
    ildj = actnorm.inverse_log_det_jacobian(fresh(x), event_ndims=3).numpy()
    np.testing.assert_allclose(np.broadcast_to(ildj, [2]), -expected, rtol=1e-12)


def test_zero_channels_is_a_value_error():
    with pytest.raises(ValueError, match=r"Received: channels=0"):
        ActNorm(0)
