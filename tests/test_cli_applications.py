"""`tfp-glow sample --temperatures`, `tfp-glow interpolate` and `tfp-glow inpaint`, end to end.

The commands run in this process through `cli.main` (what `run` does with the command line)
on a tiny digits model fitted once for the module and saved as `model.keras`, as `train`
leaves it; the PNG files they write are decoded and checked cell by cell.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tfp_glow import cli, data, training

LEVELS = 17  # digits: grey levels 0..16


def _grid_shape(rows, cols, size=8, pad=1):
    """Pixel shape of `plots.save_png(image_grid(...))` for rows x cols 8x8 digits."""
    height, width = rows * (size + pad) + pad, cols * (size + pad) + pad
    factor = -(-256 // width)  # save_png enlarges to at least 256 px wide
    return height * factor, width * factor, 1


def _cells(path, rows, cols, size=8, pad=1):
    """The images of a saved grid as levels [rows, cols, 8, 8, 1] (undoing the enlargement)."""
    grid = tf.io.decode_png(tf.io.read_file(str(path))).numpy()
    assert grid.shape == _grid_shape(rows, cols, size, pad)
    factor = grid.shape[1] // (cols * (size + pad) + pad)
    grid = grid[::factor, ::factor]
    cells = np.empty((rows, cols, size, size, 1), np.uint8)
    for r in range(rows):
        for c in range(cols):
            top, left = pad + r * (size + pad), pad + c * (size + pad)
            cells[r, c] = grid[top : top + size, left : left + size]
    levels = np.round(cells.astype(np.float64) * (LEVELS - 1) / 255).astype(np.uint8)
    np.testing.assert_array_equal(np.round(levels * (255 / (LEVELS - 1))), cells)  # exact levels only
    return levels


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A run folder holding model.keras, a tiny digits model after 24 training steps, and run.json."""
    directory = tmp_path_factory.mktemp("cli_applications")
    # tfp_glow.data's pipeline, not NumPy arrays (Keras's own is autotuned: experiments/RESULTS.md, 11).
    train = data.load("digits", "train", batch_size=64, take=512)
    model = tfp_glow.GlowModel(
        image_shape=(8, 8, 1), num_levels=2, num_steps=1, hidden_channels=8, num_bins=LEVELS, seed=0
    )
    model.compile(optimizer=tfp_glow.default_optimizer(3e-3, warmup_steps=2))
    model.fit(train, epochs=3, verbose=0)
    model.save(directory / "model.keras")
    # The run's record, as `train` leaves it: the verbs read the dataset from it.
    config = training.TrainConfig(model_dir=str(directory))
    (directory / "run.json").write_text(json.dumps(config.to_json()))
    return directory


@pytest.fixture(scope="module")
def test_images():
    return data.load_numpy("digits", "test")


def _main(model_dir, *args):
    return cli.main(["tfp-glow", f"--model_dir={model_dir}", *args])


def test_temperature_grid_rows(model_dir, tmp_path, capsys):
    temperatures = [0.0, 0.5, 1.0]
    flags = ["sample", "--temperatures=0,0.5,1", "--num_per_row=5"]
    assert _main(model_dir, *flags, "--seed=1", f"--out={tmp_path}/a.png") == 0
    assert _main(model_dir, *flags, "--seed=2", f"--out={tmp_path}/b.png") == 0
    assert capsys.readouterr().out.split() == [f"{tmp_path}/a.png", f"{tmp_path}/b.png"]

    a, b = _cells(tmp_path / "a.png", 3, 5), _cells(tmp_path / "b.png", 3, 5)
    model = keras.models.load_model(model_dir / "model.keras")
    np.testing.assert_array_equal(a, model.temperature_grid(temperatures, num_per_row=5, seed=1).numpy())
    # T = 0 is the latent mode: the same in every column and for every seed.
    assert (a[0] == a[0, :1]).all()
    np.testing.assert_array_equal(a[0], b[0])
    assert (a[2] != b[2]).any()  # at T > 0 the seed matters


def test_sample_without_temperatures_is_unchanged(model_dir, tmp_path):
    assert _main(model_dir, "sample", "--num=9", "--seed=3", f"--out={tmp_path}/s.png") == 0
    model = keras.models.load_model(model_dir / "model.keras")
    expected = model.sample(9, temperature=0.7, seed=3).numpy()
    np.testing.assert_array_equal(_cells(tmp_path / "s.png", 3, 3).reshape(9, 8, 8, 1), expected)


def test_interpolate_rows_go_from_a_to_b(model_dir, test_images, capsys):
    assert _main(model_dir, "interpolate", "--indices=0,1,5,2", "--steps=6") == 0
    out = model_dir / "interpolation.png"
    assert capsys.readouterr().out.split()[-1] == str(out)

    cells = _cells(out, 2, 6)
    for row, (a, b) in zip(cells, [(0, 1), (5, 2)], strict=True):
        np.testing.assert_array_equal(row[0], test_images[a])
        np.testing.assert_array_equal(row[-1], test_images[b])
        assert (row[2] != test_images[a]).any() and (row[2] != test_images[b]).any()


@pytest.mark.parametrize("mask", ["center", "left", "random"])
def test_inpaint_keeps_the_observed_pixels(model_dir, test_images, tmp_path, capsys, mask):
    out = tmp_path / f"{mask}.png"
    args = ["inpaint", f"--mask={mask}", "--num=5", "--num_per_row=3", "--inpaint_steps=40", f"--out={out}"]
    assert _main(model_dir, *args) == 0

    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(out)
    numbers = dict(line.split(": ") for line in lines[-4:-1])
    inpainted = float(numbers["inpainted score"])
    assert 0 < inpainted < float(numbers["random-fill score"])
    assert float(numbers["original score"]) > 0

    # Two blocks of three rows (originals, masked, inpainted), a blank row between them.
    cells = _cells(out, 7, 3)
    blank = np.full((8, 8, 1), LEVELS - 1)
    np.testing.assert_array_equal(cells[3], np.broadcast_to(blank, (3, 8, 8, 1)))
    np.testing.assert_array_equal(cells[6, 2], blank)  # the second block holds 2 images
    originals = np.concatenate([cells[0], cells[4, :2]])
    masked = np.concatenate([cells[1], cells[5, :2]])
    completed = np.concatenate([cells[2], cells[6, :2]])
    hidden = cli.inpainting_mask(mask, originals.shape, seed=0)
    assert hidden.any() and not hidden.all()
    np.testing.assert_array_equal(originals, test_images[:5])
    np.testing.assert_array_equal(masked, np.where(hidden, (LEVELS - 1) // 2, test_images[:5]))
    np.testing.assert_array_equal(completed[~hidden], test_images[:5][~hidden])
    assert (completed[hidden] != test_images[:5][hidden]).any()


def test_inpainting_masks():
    shape = (2, 8, 8, 1)
    center = cli.inpainting_mask("center", shape)
    assert center.sum() == 2 * 16 and center[:, 2:6, 2:6].all()
    left = cli.inpainting_mask("left", shape)
    assert left[:, :, :4].all() and not left[:, :, 4:].any()
    random = cli.inpainting_mask("random", (2, 8, 8, 3), seed=5)
    assert 0.3 < random.mean() < 0.7
    assert (random == random[..., :1]).all()  # a pixel is hidden in all its channels
    np.testing.assert_array_equal(random, cli.inpainting_mask("random", (2, 8, 8, 3), seed=5))


@pytest.mark.parametrize(
    "args, named",
    [
        (["sample", "--temperatures=0,-0.5"], "--temperatures=0,-0.5"),
        (["sample", "--temperatures=0,nan"], "finite numbers >= 0"),
        (["sample", "--temperatures="], "--temperatures="),
        (["sample", "--temperatures=0.7", "--num_per_row=0"], "--num_per_row=0"),
        (["interpolate", "--steps=1"], "--steps=1: expected an integer >= 2"),
        (["interpolate", "--indices=0,1,2"], "even number"),
        (["interpolate", "--indices=0,x"], "--indices=0,x"),
        (["interpolate", "--indices=-1,2"], "--indices=-1,2"),
        (["inpaint", "--mask=top"], "--mask=top"),
        (["inpaint", "--inpaint_steps=0"], "--inpaint_steps=0"),
        (["inpaint", "extra"], "extra"),
    ],
)
def test_usage_errors_exit_2_before_loading_a_model(tmp_path, capsys, args, named):
    # No model.keras there: a command that got as far as loading one would exit 1.
    status = cli.main(["tfp-glow", f"--model_dir={tmp_path}", *args])

    assert status == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_index_out_of_range_exits_2(model_dir, capsys):
    assert _main(model_dir, "interpolate", "--indices=0,5000", f"--out={model_dir}/never.png") == 2
    err = capsys.readouterr().err
    assert "index 5000 is out of range" in err and "297 images" in err
    assert not (model_dir / "never.png").exists()


def test_help_lists_the_commands_and_each_commands_flags(capsys):
    assert cli.main(["tfp-glow", "--help"]) == 0
    out = capsys.readouterr().out
    assert "interpolate" in out and "inpaint" in out
    for verb, flags in [
        ("sample", ["--temperatures"]),
        ("interpolate", ["--indices"]),
        ("inpaint", ["--mask", "--langevin"]),
    ]:
        assert cli.main(["tfp-glow", verb, "--help"]) == 0
        out = capsys.readouterr().out
        assert all(flag in out for flag in flags), (verb, out)
