"""Run by tests/test_distribute.py in a fresh process: the CPU must be split into two
logical devices before TensorFlow touches it, which a pytest worker has already done."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

import tfp_glow  # noqa: E402
from tfp_glow import data  # noqa: E402
from tfp_glow.quantization import Quantization  # noqa: E402

# Uniform noise, replaced by the bin centre below, and no dropout: one replica's masks
# cannot be those of two replicas' half batches.
CONFIG = dict(num_levels=2, num_steps=1, hidden_channels=8, seed=0, dequantization="uniform", dropout=0.0)


def one_step(strategy):
    """ActNorm init on one global batch, then one SGD step on the same batch of 64."""
    images = data.load_numpy("digits", "train")[:64]
    with strategy.scope():
        model = tfp_glow.GlowModel.from_preset("digits", **CONFIG)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.initialize(images)
    # The first step's log_scale is slice 0 of its level's stacked variable.
    log_scale = model.bijector.steps[0].params["actnorm"]["log_scale"]
    replicas = strategy.experimental_local_results(log_scale)
    actnorm = [np.asarray(r)[0].tolist() for r in replicas]
    before = [v.numpy() for v in model.bijector.trainable_variables]
    # The bin centre instead of dequantization noise: two replicas draw noise for
    # two half batches, one replica for the whole; the averaging is what is tested.
    model.quantization.dequantize = lambda levels, seed: (
        model.quantization.centres(levels),
        tf.zeros(tf.shape(levels)[:1]),
    )
    history = model.fit(tf.data.Dataset.from_tensor_slices(images).batch(64), epochs=1, verbose=0)
    # SGD with lr 0.1: the update is -0.1 * gradient.
    gradients = [
        ((b - v.numpy()) / 0.1).tolist()
        for b, v in zip(before, model.bijector.trainable_variables, strict=True)
    ]
    return dict(
        replicas=strategy.num_replicas_in_sync,
        loss=history.history["loss"][0],
        actnorm=actnorm,
        gradients=gradients,
    )


def nonfinite_step(strategy):
    """One step on a batch whose second half gives NaN: both replicas must skip it."""
    images = data.load_numpy("digits", "train")[:64]
    with strategy.scope():
        model = tfp_glow.GlowModel.from_preset("digits", **CONFIG)
        model.compile(optimizer=keras.optimizers.Adam(0.1))
    model.initialize(images)
    before = [v.numpy() for v in model.bijector.trainable_variables]
    images[32:] = 16

    def dequantize(levels, seed):
        x = model.quantization.centres(levels)
        return tf.where(tf.reduce_all(tf.equal(levels, 16)), float("nan"), x), tf.zeros(tf.shape(levels)[:1])

    model.quantization.dequantize = dequantize
    history = model.fit(tf.data.Dataset.from_tensor_slices(images).batch(64), epochs=1, verbose=0)
    unchanged = all(
        np.array_equal(b, v.numpy()) for b, v in zip(before, model.bijector.trainable_variables, strict=True)
    )
    return dict(
        unchanged=unchanged,
        nonfinite_steps=history.history["nonfinite_steps"][0],
        iterations=int(model.optimizer.iterations.numpy()),
    )


def replica_randomness(strategy):
    """Training noise (uniform and learned) and dropout seeds drawn on each replica in one step."""
    images = data.load_numpy("digits", "train")[:4]
    with strategy.scope():
        model = tfp_glow.GlowModel.from_preset("digits", num_levels=2, num_steps=1, hidden_channels=8, seed=0)

    @tf.function
    def draw():
        levels = model.quantization.levels(images)
        uniform, _ = Quantization(model.image_shape, model.num_bins, None).dequantize(
            levels, model._noise_seed()
        )
        learned, _ = model.quantization.dequantize(levels, model._noise_seed())
        dropout_seed = model._noise_seed()
        return uniform, learned, dropout_seed

    results = strategy.run(draw)
    return {
        name: not np.array_equal(*(np.asarray(r) for r in strategy.experimental_local_results(result)))
        for name, result in zip(["uniform", "learned", "dropout_seed"], results, strict=True)
    }


if __name__ == "__main__":
    single = one_step(tf.distribute.get_strategy())
    mirrored = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    skipped = nonfinite_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    differs = replica_randomness(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    json.dump(
        {"single": single, "mirrored": mirrored, "mirrored_nonfinite": skipped, "replicas_differ": differs},
        sys.stdout,
    )
