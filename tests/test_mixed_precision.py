"""Mixed precision: bfloat16 / float16 coupling and prior networks, everything else float32."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tfp_glow import data

CONFIG = dict(num_steps=1, hidden_channels=8, seed=0, dequantization="uniform", dropout=0.0)
EPOCHS = 15  # 21 batches of 64 digits each: 315 training steps


@pytest.fixture(scope="module")
def digits():
    return data.load_numpy("digits", "train"), data.load_numpy("digits", "test")


def _trained(policy, images, epochs=EPOCHS, optimizer=None):
    keras.utils.set_random_seed(0)
    model = tfp_glow.GlowModel.from_preset("digits", **CONFIG, dtype_policy=policy)
    model.compile(optimizer=optimizer or tfp_glow.default_optimizer(3e-3, warmup_steps=20))
    history = model.fit(images, batch_size=64, epochs=epochs, shuffle=False, verbose=0)
    return model, history.history


@pytest.fixture(scope="module")
def trained(digits):
    train, _ = digits
    return {policy: _trained(policy, train) for policy in ("float32", "mixed_bfloat16", "mixed_float16")}


def _in_float32(model):
    copy = tfp_glow.GlowModel.from_preset("digits", **CONFIG)
    copy.set_weights(model.get_weights())
    return copy


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_low_precision_training_lowers_the_loss_with_float32_variables(trained, policy):
    model, history = trained[policy]
    assert history["bits_per_dim"][-1] < history["bits_per_dim"][0] - 0.5
    assert history["nonfinite_steps"] == [0.0] * EPOCHS
    assert {v.dtype for v in model.trainable_variables} == {"float32"}
    assert {v.dtype for v in model.weights} == {"float32", "bool"}  # and the ActNorm flags
    assert model.dtype_policy.name == policy
    # The networks did compute in the low precision: another trajectory than float32's.
    assert history["bits_per_dim"] != trained["float32"][1]["bits_per_dim"]
    is_loss_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_loss_scaled == (policy == "mixed_float16")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_after_300_steps_low_precision_is_within_0_05_bits_per_dim_of_float32(trained, digits, policy):
    _, test = digits
    figures = {
        name: float(tf.reduce_mean(_in_float32(trained[name][0]).bits_per_dim(test, seed=0)))
        for name in ("float32", policy)
    }
    assert abs(figures[policy] - figures["float32"]) <= 0.05, figures


def test_a_bfloat16_trained_model_reconstructs_in_float32_inference(trained, digits):
    _, test = digits
    model = _in_float32(trained["mixed_bfloat16"][0])
    x = model.preprocess(test)
    error = float(tf.reduce_max(tf.abs(model.bijector.forward(model.bijector.inverse(x)) - x)))
    assert error <= 1e-4
    np.testing.assert_array_equal(model.decode(model.encode(test)).numpy(), test)


def test_a_float16_overflow_is_skipped_without_touching_the_weights_and_not_counted(digits):
    train, _ = digits
    keras.utils.set_random_seed(0)
    model = tfp_glow.GlowModel.from_preset("digits", **CONFIG, dtype_policy="mixed_float16")
    # A loss scale so large that the scaled gradients overflow float32.
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3), initial_scale=2.0**120)
    model.compile(optimizer=optimizer)
    model.initialize(train[:256])
    before = [v.numpy().copy() for v in model.trainable_variables]
    history = model.fit(train[:64], batch_size=64, epochs=1, verbose=0)
    after = [v.numpy() for v in model.trainable_variables]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**119  # halved by the overflow
    assert history.history["nonfinite_steps"] == [0.0]
    assert np.isfinite(history.history["loss"][0])
    # At a scale that fits, the same steps train.
    optimizer.dynamic_scale.assign(2.0**10)
    model.fit(train[:64], batch_size=64, epochs=1, verbose=0)
    assert any(
        not np.array_equal(a, v.numpy()) for a, v in zip(before, model.trainable_variables, strict=True)
    )


def test_the_global_policy_applies_and_another_policy_is_refused():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = tfp_glow.GlowModel.from_preset("digits", **CONFIG)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.dtype_policy.name == "mixed_bfloat16"
    assert model.dequantizer is None or model.dequantizer.dtype_policy.name == "float32"
    with pytest.raises(ValueError, match=r"dtype policies .*Received: dtype_policy='float16'"):
        tfp_glow.GlowModel.from_preset("digits", **CONFIG, dtype_policy="float16")


def test_a_mixed_precision_model_is_served_in_float32(trained, tmp_path):
    model, _ = trained["mixed_bfloat16"]
    served = tf.saved_model.load(tfp_glow.export_saved_model(model, str(tmp_path)))
    images = data.load_numpy("digits", "test")[:8]
    out = served.signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(
        out["log_prob"].numpy(), _in_float32(model).log_prob(images).numpy(), rtol=1e-5
    )


def test_precision_is_a_training_option():
    from tfp_glow import training

    config = training.TrainConfig(precision="bf16", architecture=dict(num_steps=1, hidden_channels=4))
    model = training._build_model(config, training.resolve(config))
    assert model.dtype_policy.name == "mixed_bfloat16"
    with pytest.raises(training.UsageError, match="Received: precision='int8'"):
        training.TrainConfig(precision="int8")
