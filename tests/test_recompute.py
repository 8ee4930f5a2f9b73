"""Memory-efficient gradients: the same gradients as the plain path, without stored activations."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tests.bijector_test_util import MODES, compile_fn, plain_and_memory_efficient


def _pair(dtype, **kwargs):
    return plain_and_memory_efficient(dtype, perturbation=0.02, **kwargs)


def _loss_and_gradients(glow, images, mode):
    def step(images):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(tfp_glow.glow_distribution(glow).log_prob(images))
        return loss, tape.gradient(loss, glow.trainable_variables)

    return compile_fn(step, mode)(images)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype, rtol", [(tf.float64, 1e-8), (tf.float32, 1e-4)], ids=["f64", "f32"])
def test_gradients_equal_the_plain_path(dtype, rtol, mode):
    plain, recomputing, images = _pair(dtype)
    # The plain path as a tf.function is the reference for every mode of the loop.
    loss, grads = _loss_and_gradients(plain, images, "function")
    loss_r, grads_r = _loss_and_gradients(recomputing, images, mode)
    np.testing.assert_allclose(loss_r.numpy(), loss.numpy(), rtol=rtol)
    assert all(g is not None for g in grads_r)
    flat = np.concatenate([np.ravel(g) for g in grads])
    flat_r = np.concatenate([np.ravel(g) for g in grads_r])
    assert np.linalg.norm(flat_r - flat) <= rtol * np.linalg.norm(flat)
    for g, g_r in zip(grads, grads_r, strict=True):
        np.testing.assert_allclose(g_r.numpy(), g.numpy(), rtol=rtol * 10, atol=rtol * np.max(np.abs(flat)))


def test_gradients_reach_the_input_too():
    plain, recomputing, images = _pair(tf.float64, coupling="additive", permutation="shuffle")
    grads = []
    for glow in (plain, recomputing):
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = tf.reduce_sum(glow.inverse(images) ** 2)
        grads.append(tape.gradient(loss, images).numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-8)


def test_reconstruction_error_of_every_step_is_small():
    """The gradients rest on rebuilding each step's input from its output: check it."""
    plain, _, images = _pair(tf.float32)
    x = tfp_glow.Squeeze().forward(images)
    worst = 0.0
    for step in plain.steps[0]:
        y, _ = step.inverse_and_log_det(x)
        worst = max(worst, float(tf.reduce_max(tf.abs(step.forward_and_log_det(y)[0] - x))))
        x = y
    assert worst < 1e-5


def test_glow_model_option_trains_the_same():
    from tfp_glow import data

    images = data.load_numpy("digits", "train")[:64]
    losses = []
    for memory_efficient in (False, True):
        model = tfp_glow.GlowModel.from_preset(
            "digits",
            num_levels=2,
            num_steps=2,
            hidden_channels=8,
            seed=0,
            memory_efficient=memory_efficient,
        )
        assert model.get_config()["memory_efficient"] is memory_efficient
        model.compile(optimizer=tfp_glow.default_optimizer(1e-2, warmup_steps=1))
        model.initialize(images)
        losses.append(model.fit(images, batch_size=32, epochs=2, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def test_deep_levels_rebuild_each_step_from_its_own_output():
    """Reconstruction errors must not compound over the K steps of a level: with these weights
    rebuilding each input from the previous rebuilt one gave NaN gradients at K=16."""
    plain, recomputing, images = plain_and_memory_efficient(
        tf.float32, perturbation=0.05, image_shape=(8, 8, 1), num_levels=1, num_steps=16, hidden_channels=16
    )
    loss, grads = _loss_and_gradients(plain, images, "function")
    loss_r, grads_r = _loss_and_gradients(recomputing, images, "function")
    flat = np.concatenate([np.ravel(g) for g in grads])
    flat_r = np.concatenate([np.ravel(g) for g in grads_r])
    assert np.all(np.isfinite(flat)) and np.all(np.isfinite(flat_r))
    np.testing.assert_allclose(loss_r.numpy(), loss.numpy(), rtol=1e-4)
    assert np.linalg.norm(flat_r - flat) <= 1e-3 * np.linalg.norm(flat)
