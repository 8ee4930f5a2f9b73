"""Dropout in the coupling networks: one invertible flow per seed, none without a seed."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tests.bijector_test_util import at_bin_centres, fresh, perturb, plain_and_memory_efficient
from tfp_glow import data

CONFIG = dict(image_shape=(8, 8, 2), num_levels=2, num_steps=2, hidden_channels=8, seed=3)


def _glow(dropout, **kwargs):
    glow = tfp_glow.Glow(**CONFIG, dropout=dropout, **kwargs)
    images = tf.random.stateless_uniform([6, 8, 8, 2], [1, 2], -0.5, 0.5)
    glow.initialize(images)
    perturb(glow, seed=5, scale=0.05)  # the networks' zero output layers would hide any mask
    return glow, images


def _log_prob(glow, images, **conditioning):
    distribution = tfp_glow.glow_distribution(glow)
    return distribution.log_prob(fresh(images), bijector_kwargs=conditioning).numpy()


def test_a_seed_fixes_the_mask_and_no_seed_means_no_dropout():
    glow, images = _glow(0.3)
    seed = tf.constant([1, 2])
    same = _log_prob(glow, images, dropout_seed=seed)
    np.testing.assert_array_equal(same, _log_prob(glow, images, dropout_seed=seed))
    assert not np.allclose(same, _log_prob(glow, images, dropout_seed=tf.constant([1, 3])), atol=1e-3)

    # Without a seed: exactly the network without dropout, same weights.
    plain, _ = _glow(0.0)
    for source, target in zip(glow.variables, plain.variables, strict=True):
        target.assign(source)
    np.testing.assert_array_equal(_log_prob(glow, images), _log_prob(plain, images))
    # dropout=0 ignores the seed.
    np.testing.assert_array_equal(_log_prob(plain, images, dropout_seed=seed), _log_prob(plain, images))


def test_each_seed_gives_an_invertible_flow():
    glow, images = _glow(0.3)
    seed = tf.constant([4, 5])
    z = glow.inverse(fresh(images), dropout_seed=seed)
    rebuilt = glow.forward(fresh(z), dropout_seed=seed)  # fresh: TFP's cache cannot answer
    np.testing.assert_allclose(rebuilt, images, atol=1e-5)
    other = glow.forward(fresh(z), dropout_seed=tf.constant([4, 6]))
    assert np.abs(other - images).max() > 1e-3


@pytest.mark.parametrize("dtype, rtol", [(tf.float64, 1e-8), (tf.float32, 1e-4)], ids=["f64", "f32"])
def test_memory_efficient_gradients_rebuild_the_same_mask(dtype, rtol):
    plain, recomputing, images = plain_and_memory_efficient(
        dtype, perturbation=0.05, num_steps=2, dropout=0.3
    )

    def loss_and_gradients(glow):
        with tf.GradientTape() as tape:
            distribution = tfp_glow.glow_distribution(glow)
            loss = -tf.reduce_mean(distribution.log_prob(images, bijector_kwargs={"dropout_seed": [7, 8]}))
        return loss, tape.gradient(loss, glow.trainable_variables)

    loss, gradients = loss_and_gradients(plain)
    loss_r, gradients_r = loss_and_gradients(recomputing)
    np.testing.assert_allclose(loss_r, loss, rtol=rtol)
    for g, g_r in zip(gradients, gradients_r, strict=True):
        np.testing.assert_allclose(g_r, g, rtol=rtol, atol=rtol * float(tf.reduce_max(tf.abs(g))))


def test_glow_model_drops_out_in_training_steps_only(tmp_path):
    images = data.load_numpy("digits", "train")[:128]
    model = tfp_glow.GlowModel.from_preset("digits", num_steps=1, hidden_channels=8, seed=0, dropout=0.5)
    assert model.get_config()["dropout"] == 0.5
    model.compile(optimizer=tfp_glow.default_optimizer(3e-3, warmup_steps=2))
    history = model.fit(images, batch_size=64, epochs=3, verbose=0)
    assert history.history["bits_per_dim"][-1] < history.history["bits_per_dim"][0]

    # Inference has no dropout: the same figures as the same weights without it.
    plain = tfp_glow.GlowModel.from_preset("digits", num_steps=1, hidden_channels=8, seed=0)
    plain.set_weights(model.get_weights())
    np.testing.assert_array_equal(model.bits_per_dim(images[:16]), plain.bits_per_dim(images[:16]))
    np.testing.assert_array_equal(model.score(images[:16]), plain.score(images[:16]))
    # training=True draws a new mask (and new noise) at every call.
    first, second = model(images[:16], training=True), model(images[:16], training=True)
    assert not np.allclose(first, second)

    model.save(tmp_path / "model.keras")
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert reloaded.get_config()["dropout"] == 0.5
    np.testing.assert_array_equal(reloaded.bits_per_dim(images[:16]), model.bits_per_dim(images[:16]))


def test_glow_model_training_mode_is_the_one_with_dropout():
    # Noise off (uniform noise at the bin centre): training mode differs from inference by the
    # dropout alone, and a model without dropout has none.
    images = data.load_numpy("digits", "train")[:64]
    config = dict(num_steps=1, hidden_channels=8, seed=0, dequantization="uniform")
    model = tfp_glow.GlowModel.from_preset("digits", **config, dropout=0.5)
    model.initialize(images)
    perturb(model.bijector, seed=1, scale=0.05)  # the zero output convs would hide any mask
    plain = tfp_glow.GlowModel.from_preset("digits", **config, dropout=0.0)
    plain.set_weights(model.get_weights())
    for m in (model, plain):
        at_bin_centres(m)
    np.testing.assert_array_equal(model(images), plain(images))
    np.testing.assert_array_equal(plain(images, training=True), plain(images))
    assert np.abs(model(images, training=True) - model(images)).max() > 1e-3


@pytest.mark.parametrize("dropout", [-0.1, 1.0, "0.5", True, None])
def test_bad_dropout(dropout):
    with pytest.raises(
        ValueError, match=rf"`dropout` must be a number in \[0, 1\). Received: dropout={dropout!r}"
    ):
        tfp_glow.Glow(**CONFIG, dropout=dropout)
    with pytest.raises(ValueError, match=r"`dropout` must be a number in \[0, 1\)"):
        tfp_glow.GlowModel.from_preset("digits", dropout=dropout)
