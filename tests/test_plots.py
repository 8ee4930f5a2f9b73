"""Tests of tfp_glow.plots: sample grids, PNG files and the learning curve."""

import numpy as np
import pytest
import tensorflow as tf

from tfp_glow import plots

W = 255  # The grid's padding.


def _decode(path):
    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()


def test_image_grid_places_and_scales_each_image():
    images = np.array(
        [
            [[0, 1], [2, 3]],
            [[4, 4], [0, 0]],
            [[1, 0], [0, 4]],
        ],
        np.uint8,
    )[..., np.newaxis]
    # 3 images -> 2 columns, 2 rows; level k -> round(k * 255 / 4): 0, 64, 128, 191, 255.
    expected = np.array(
        [
            [W, W, W, W, W, W, W],
            [W, 0, 64, W, 255, 255, W],
            [W, 128, 191, W, 0, 0, W],
            [W, W, W, W, W, W, W],
            [W, 64, 0, W, W, W, W],
            [W, 0, 255, W, W, W, W],
            [W, W, W, W, W, W, W],
        ],
        np.uint8,
    )[..., np.newaxis]

    grid = plots.image_grid(images, num_bins=5)

    assert grid.dtype == np.uint8
    np.testing.assert_array_equal(grid, expected)


@pytest.mark.parametrize(
    "n, rows, pad, expected_shape",
    [
        (3, 1, 1, (4, 10, 1)),  # One row of three.
        (3, 3, 1, (10, 4, 1)),  # One column.
        (64, None, 1, (8 * 3 + 1, 8 * 3 + 1, 1)),  # Square by default.
        (5, None, 0, (2 * 2, 3 * 2, 1)),  # ceil(sqrt(5)) = 3 columns, 2 rows, no padding.
        (5, 2, 2, (2 * 4 + 2, 3 * 4 + 2, 1)),
    ],
)
def test_image_grid_shape(n, rows, pad, expected_shape):
    images = np.zeros((n, 2, 2, 1), np.uint8)
    assert plots.image_grid(images, num_bins=17, rows=rows, pad=pad).shape == expected_shape


def test_image_grid_keeps_8_bit_colour_levels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 3, 4, 3), dtype=np.uint8)

    grid = plots.image_grid(images, num_bins=256, rows=1, pad=0, pad_value=0)

    assert grid.shape == (3, 8, 3)
    np.testing.assert_array_equal(grid[:, :4], images[0])
    np.testing.assert_array_equal(grid[:, 4:], images[1])


@pytest.mark.parametrize(
    "images, num_bins, match",
    [
        (np.zeros((2, 8, 8), np.uint8), 17, "rank 4"),
        (np.zeros((8, 8, 1), np.uint8), 17, "rank 4"),
        (np.zeros((1, 2, 2, 1), np.float32), 17, "integer"),
        (np.full((1, 2, 2, 1), 17, np.uint8), 17, r"\[0, 17\)"),
        (np.zeros((0, 2, 2, 1), np.uint8), 17, "empty"),
        (np.zeros((1, 2, 2, 1), np.uint8), 1, "num_bins"),
    ],
)
def test_image_grid_errors(images, num_bins, match):
    with pytest.raises(ValueError, match=match):
        plots.image_grid(images, num_bins=num_bins)


def test_save_png_enlarges_small_images_by_a_whole_factor(tmp_path):
    image = np.arange(64, dtype=np.uint8).reshape(8, 8, 1) * 4
    path = tmp_path / "new" / "folder" / "digit.png"

    plots.save_png(path, image)

    decoded = _decode(path)
    assert decoded.shape == (256, 256, 1)  # 8 px x 32.
    np.testing.assert_array_equal(decoded, np.repeat(np.repeat(image, 32, 0), 32, 1))


def test_save_png_grid_width_and_grey_2d_input(tmp_path):
    grid = np.full((37, 37), 128, np.uint8)  # A 4x4 grid of 8x8 images with 1-px padding.

    plots.save_png(tmp_path / "grid.png", grid)

    decoded = _decode(tmp_path / "grid.png")
    assert decoded.shape == (37 * 7, 37 * 7, 1)  # The smallest factor reaching 256 px: 7.
    assert (decoded == 128).all()


def test_save_png_keeps_wide_images(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, size=(20, 300, 3), dtype=np.uint8)

    plots.save_png(tmp_path / "wide.png", image)

    np.testing.assert_array_equal(_decode(tmp_path / "wide.png"), image)


@pytest.mark.parametrize(
    "image",
    [np.zeros((2, 2, 5), np.uint8), np.zeros((2, 2, 1), np.float32), np.zeros((2,), np.uint8)],
)
def test_save_png_errors(tmp_path, image):
    with pytest.raises(ValueError, match="image"):
        plots.save_png(tmp_path / "bad.png", image)
    assert not (tmp_path / "bad.png").exists()


def test_plot_learning_curve_writes_a_png(tmp_path):
    history = {
        "bits_per_dim": [3.5, 2.5, 2.0],
        "loss": [3.5, 2.5, 2.0],
        "val_bits_per_dim": [3.0, 2.4, 2.2],
    }
    path = tmp_path / "plots" / "learning_curve.png"

    plots.plot_learning_curve({**history, "test_bits_per_dim": [2.25]}, path)

    image = _decode(path)
    assert image.shape[:2] == (400, 600)  # 6 x 4 inches at 100 dpi.
    assert image.std() > 0  # Not a blank canvas.
    # Each curve is drawn: leaving one out changes the picture.
    plots.plot_learning_curve({"bits_per_dim": history["bits_per_dim"]}, tmp_path / "train.png")
    assert (tmp_path / "train.png").read_bytes() != path.read_bytes()


def test_plot_learning_curve_needs_bits_per_dim(tmp_path):
    with pytest.raises(ValueError, match="bits_per_dim"):
        plots.plot_learning_curve({"loss": [1.0]}, tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()
