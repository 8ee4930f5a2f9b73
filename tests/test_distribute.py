"""GlowModel under tf.distribute: MirroredStrategy over two logical CPUs, and XLA."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tests.bijector_test_util import at_bin_centres
from tfp_glow import data

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def runs():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "mirrored_check.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_actnorm_initialization_is_identical_on_every_replica(runs):
    mirrored = runs["mirrored"]
    assert mirrored["replicas"] == 2
    first, second = (np.array(r) for r in mirrored["actnorm"])
    np.testing.assert_array_equal(first, second)
    # ...and equal to the single-device initialization on the same global batch.
    np.testing.assert_allclose(first, np.array(runs["single"]["actnorm"][0]), rtol=1e-6)


def test_two_replicas_give_the_loss_and_gradients_of_one(runs):
    single, mirrored = runs["single"], runs["mirrored"]
    assert single["replicas"] == 1
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-5)
    flat = [np.concatenate([np.ravel(g) for g in run["gradients"]]) for run in (mirrored, single)]
    assert len(flat[0]) == len(flat[1])
    # Relative to the whole gradient: single variables' gradients are tiny differences
    # of float32 weights, read back from one SGD step.
    assert np.linalg.norm(flat[0] - flat[1]) <= 1e-5 * np.linalg.norm(flat[1])
    assert np.linalg.norm(flat[1]) > 1e-2  # not trivially equal: the step moved the weights


def test_a_nan_on_one_replica_skips_the_step_on_both(runs):
    # Only the second replica's half batch is poisoned; the replicas agree to skip.
    skipped = runs["mirrored_nonfinite"]
    assert skipped["unchanged"] and skipped["iterations"] == 0
    assert skipped["nonfinite_steps"] == 1  # one global step, not one per replica


def test_each_replica_draws_its_own_noise_and_dropout_masks(runs):
    # A mirrored SeedGenerator would give both half batches the same noise and masks.
    assert runs["replicas_differ"] == {"uniform": True, "learned": True, "dropout_seed": True}


def test_xla_train_step_gives_the_same_loss():
    images = data.load_numpy("digits", "train")[:64]
    losses = []
    for jit_compile in (False, True):
        # Uniform noise, replaced by the bin centre below, and no dropout: XLA's random bits
        # for a seed need not be TensorFlow's (measured: losses 1e-3 apart with dropout).
        model = tfp_glow.GlowModel.from_preset(
            "digits",
            num_levels=2,
            num_steps=2,
            hidden_channels=8,
            seed=0,
            dequantization="uniform",
            dropout=0.0,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=jit_compile)
        model.initialize(images)
        at_bin_centres(model)
        history = model.fit(tf.data.Dataset.from_tensor_slices(images).batch(32), epochs=2, verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    assert losses[0][1] < losses[0][0]  # it trained
