"""Applications of a trained Glow: temperature grids, interpolation, manipulation, inpainting, scoring."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tfp_glow import data
from tfp_glow.models import applications


@pytest.fixture(scope="module")
def trained():
    """A tiny digits model after 40 training steps (shared by every test of the module)."""
    # tfp_glow.data's pipeline, not NumPy arrays: Keras's own is autotuned, and an autotuned
    # iterator can hold the process for seconds when it is collected (experiments/RESULTS.md, 11).
    train = data.load("digits", "train", batch_size=64, take=512)
    test = data.load_numpy("digits", "test")[:32]
    model = tfp_glow.GlowModel(
        image_shape=(8, 8, 1), num_levels=2, num_steps=2, hidden_channels=8, num_bins=17, seed=0
    )
    model.compile(optimizer=tfp_glow.default_optimizer(3e-3, warmup_steps=2))
    model.fit(train, epochs=5, verbose=0)
    return model, test


def test_temperature_grid_rows_share_the_noise_and_zero_is_the_mode(trained):
    model, _ = trained
    temperatures = [0.0, 0.5, 1.0]
    grid = model.temperature_grid(temperatures, num_per_row=4, seed=3).numpy()
    assert grid.shape == (3, 4, 8, 8, 1) and grid.dtype == np.uint8
    # Every row is the same noise scaled by its temperature (and equals model.sample).
    eps = tf.random.stateless_normal([4, model.event_size], seed=[3, 0])
    for row, t in zip(grid, temperatures, strict=True):
        np.testing.assert_array_equal(row, model.decode(t * eps).numpy())
        np.testing.assert_array_equal(row, model.sample(4, temperature=t, seed=3).numpy())
    # T = 0: the decoded latent mode z = 0, whatever the seed and in every column.
    other = applications.temperature_grid(model, [0.0, 1.0], num_per_row=4, seed=7).numpy()
    np.testing.assert_array_equal(grid[0], other[0])
    assert (grid[0] == grid[0, :1]).all()
    np.testing.assert_array_equal(grid[0, 0], model.decode(tf.zeros([1, model.event_size]))[0].numpy())
    # At T > 0 the seed matters and so does the temperature.
    assert (grid[2] != other[1]).any()
    assert (grid[1] != grid[2]).any()


def test_interpolation_endpoints_are_the_inputs(trained):
    model, test = trained
    path = model.interpolate(test[0], test[1], steps=5).numpy()
    assert path.shape == (5, 8, 8, 1) and path.dtype == np.uint8
    np.testing.assert_array_equal(path[0], test[0])
    np.testing.assert_array_equal(path[-1], test[1])
    assert (path[2] != test[0]).any() and (path[2] != test[1]).any()
    # Batches: each image goes to the one at the same index.
    batch = model.interpolate(test[:3], test[3:6], steps=4).numpy()
    assert batch.shape == (4, 3, 8, 8, 1)
    np.testing.assert_array_equal(batch[0], test[:3])
    np.testing.assert_array_equal(batch[-1], test[3:6])


def test_interpolation_is_linear_in_the_latent_of_every_level(trained):
    model, test = trained
    steps = 5
    path = model.interpolate(test[0], test[1], steps=steps).numpy()
    z_a, z_b = model.encode(test[:1]).numpy()[0], model.encode(test[1:2]).numpy()[0]
    latents = np.stack([(1 - t) * z_a + t * z_b for t in np.linspace(0, 1, steps)]).astype(np.float32)
    # The images are the decoded straight line (all levels move, not only the top one).
    np.testing.assert_array_equal(path, model.decode(latents).numpy())
    for level in model.bijector.split_latent(latents):
        level = level.numpy()
        assert np.abs(level[0] - level[-1]).max() > 0.1
        np.testing.assert_allclose(level[2], 0.5 * (level[0] + level[-1]), atol=1e-5)
    # Quantization moves each decoded image off the line, but it re-encodes nearest to its own point.
    encoded = model.encode(path).numpy()
    distances = np.linalg.norm(encoded[:, None] - latents[None], axis=-1)
    np.testing.assert_array_equal(distances.argmin(axis=1), np.arange(steps))
    assert distances[np.arange(steps), np.arange(steps)].max() < 0.2 * np.linalg.norm(z_a - z_b)


def test_attribute_direction_and_manipulation(trained):
    model, test = trained
    with_, without = test[:8], test[8:16]
    direction = model.attribute_direction(with_, without).numpy()
    expected = model.encode(with_).numpy().mean(0) - model.encode(without).numpy().mean(0)
    assert direction.shape == (model.event_size,)
    np.testing.assert_allclose(direction, expected, atol=1e-5)
    np.testing.assert_allclose(model.attribute_direction(without, with_).numpy(), -direction, atol=1e-5)

    images = model.manipulate(test[20], direction, alphas=[0.0, 1.0, -1.0]).numpy()
    assert images.shape == (3, 8, 8, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], test[20])  # alpha = 0: the image itself
    z = model.encode(test[20:21]).numpy()
    np.testing.assert_array_equal(images[1], model.decode(z + direction).numpy()[0])
    assert (images[1] != test[20]).any() and (images[2] != images[1]).any()
    # The mean latent of the "without" images moved by +1 direction is the mean of the "with" ones.
    batch = model.manipulate(without, direction, alphas=[0.0, 1.0]).numpy()
    assert batch.shape == (2, 8, 8, 8, 1)
    np.testing.assert_array_equal(batch[0], without)


def test_inpainting_keeps_observed_pixels_and_beats_a_random_fill(trained):
    model, test = trained
    images = test[:16]
    mask = np.zeros(images.shape, bool)
    mask[:, 4:] = True  # bottom half missing
    rng = np.random.default_rng(0)
    random_fill = np.where(mask, rng.integers(0, 17, images.shape), images).astype(np.uint8)
    random_bpd = float(tf.reduce_mean(model.score(random_fill)))
    # Garbage in the missing pixels of the input changes nothing.
    for langevin in (False, True):
        completed, bpd = model.inpaint(random_fill, mask, steps=60, langevin=langevin, seed=1)
        completed = completed.numpy()
        assert completed.shape == images.shape and completed.dtype == np.uint8
        np.testing.assert_array_equal(completed[~mask], images[~mask])
        assert completed.max() < 17
        np.testing.assert_allclose(bpd.numpy(), model.score(completed).numpy(), rtol=1e-6)
        assert float(tf.reduce_mean(bpd)) < random_bpd - 1.0, (
            langevin,
            float(tf.reduce_mean(bpd)),
            random_bpd,
        )
    # Gradient ascent reaches at least the likelihood of the true bottom halves.
    completed, bpd = applications.inpaint(model, images, mask, steps=100)
    assert float(tf.reduce_mean(bpd)) < float(tf.reduce_mean(model.score(images)))


def test_inpainting_with_nothing_missing_returns_the_images(trained):
    model, test = trained
    completed, bpd = model.inpaint(test[:4], np.zeros(test[:4].shape, bool), steps=2)
    np.testing.assert_array_equal(completed.numpy(), test[:4])
    np.testing.assert_allclose(bpd.numpy(), model.score(test[:4]).numpy(), rtol=1e-6)


def test_score_is_the_per_image_density_score_in_batches(trained):
    model, test = trained
    scores = model.score(test, batch_size=5)
    assert scores.dtype == tf.float32 and scores.shape == (len(test),)
    at_centres = -(model.log_prob(test).numpy() - 64 * np.log(17)) / (64 * np.log(2))
    np.testing.assert_allclose(scores.numpy(), at_centres, rtol=1e-5)
    noise = np.random.default_rng(0).integers(0, 17, test.shape).astype(np.uint8)
    assert float(tf.reduce_mean(model.score(noise))) > float(tf.reduce_mean(scores)) + 1.0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, x: m.interpolate(x[0], x[1], steps=1), ValueError, r"steps.*>= 2.*Received: steps=1"),
        (lambda m, x: m.interpolate(x[0], x[:2], steps=3), ValueError, r"same shape"),
        (lambda m, x: m.interpolate(x[0, :4], x[1, :4]), ValueError, r"\[8, 8, 1\].*Received"),
        (lambda m, x: m.interpolate(x[:0], x[:0]), ValueError, r"empty"),
        (lambda m, x: m.temperature_grid([0.5, -1.0]), ValueError, r">= 0.*Received: temperatures"),
        (lambda m, x: m.temperature_grid([]), ValueError, r"must not be empty"),
        (lambda m, x: m.temperature_grid([float("nan")]), ValueError, r"finite"),
        (lambda m, x: m.temperature_grid([1.0], num_per_row=0), ValueError, r"num_per_row=0"),
        (lambda m, x: m.attribute_direction(x[:0], x[:2]), ValueError, r"images_with.*empty"),
        (lambda m, x: m.manipulate(x[0], np.zeros(5), [1.0]), ValueError, r"\[64\].*Received"),
        (lambda m, x: m.manipulate(x[0], np.zeros(64), []), ValueError, r"alphas.*empty"),
        (lambda m, x: m.inpaint(x[:2], np.zeros((2, 8, 8, 1), np.int32)), TypeError, r"boolean.*int32"),
        (lambda m, x: m.inpaint(x[:2], np.zeros((3, 8, 8, 1), bool)), ValueError, r"\[2, 8, 8, 1\].*\[3, 8"),
        (lambda m, x: m.inpaint(x[:2], np.zeros((2, 8, 8, 1), bool), steps=0), ValueError, r"steps=0"),
        (
            lambda m, x: m.inpaint(x[:2], np.zeros((2, 8, 8, 1), bool), learning_rate=-1.0),
            ValueError,
            r"learning_rate=-1.0",
        ),
        (lambda m, x: m.score(x[:0]), ValueError, r"empty"),
        (lambda m, x: m.score(x[0]), ValueError, r"batch of images.*Received: images.shape=\[8, 8, 1\]"),
        (lambda m, x: m.score(x.astype(np.float32)), TypeError, r"integer images"),
    ],
)
def test_errors_name_what_was_received(trained, call, error, match):
    model, test = trained
    with pytest.raises(error, match=match):
        call(model, test)


@pytest.mark.parametrize(
    "work, unit",
    [
        (lambda m, x: m.score(x, verbose=1), "image"),
        (lambda m, x: m.bits_per_dim(x, num_samples=2, verbose=1), "pass"),
        (lambda m, x: m.inpaint(x[:2], np.ones(x[:2].shape, bool), steps=2, verbose=1), "step"),
        (lambda m, x: m.interpolate(x[0], x[1], steps=3, verbose=1), ""),
    ],
)
def test_long_work_shows_a_keras_progress_bar_unless_verbose_is_0(trained, capsys, work, unit):
    model, test = trained
    capsys.readouterr()
    work(model, test)
    shown = capsys.readouterr().out
    assert "━" in shown and unit in shown, shown  # Keras's Progbar
    verbose_0 = {"verbose": 0}
    model.score(test, **verbose_0)
    assert capsys.readouterr().out == ""
