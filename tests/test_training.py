"""`tfp_glow.training` as a Python user calls it, and what `GlowModel.compile` and `summary` do."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest

import tfp_glow
from tfp_glow import training
from tfp_glow.training import TrainConfig

TINY = dict(num_levels=1, num_steps=1, hidden_channels=4)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_compile_refuses_a_loss_or_metrics_it_would_ignore():
    model = tfp_glow.GlowModel.from_preset("digits", **TINY)
    with pytest.raises(ValueError, match="takes no `loss`. Received: loss='mse'"):
        model.compile(loss="mse")
    with pytest.raises(ValueError, match=r"takes no `metrics`. Received: metrics=\['accuracy'\]"):
        model.compile(metrics=["accuracy"])
    model.compile()
    assert model.jit_compile is False  # not Keras's "auto", which turns XLA on with a GPU
    model.compile(jit_compile=True)
    assert model.jit_compile is True


def test_summary_shows_the_flows_parameters_per_level():
    model = tfp_glow.GlowModel.from_preset("digits", num_steps=2, hidden_channels=8)
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    text = "\n".join(lines)
    glow = model.bijector

    def count(module):
        return f"{sum(int(np.prod(v.shape)) for v in module.trainable_variables):,}"

    for level, steps in enumerate(glow.steps):
        row = next(line for line in text.splitlines() if line.startswith(f"level {level}: 2 steps of flow"))
        assert row.split()[-1] == count(steps)
    split = next(line for line in text.splitlines() if line.startswith("level 0: split prior"))
    assert split.split()[-1] == count(glow.split_priors[0])
    total = next(line for line in text.splitlines() if line.startswith("flow total"))
    assert total.split()[-1] == count(glow)


@pytest.mark.parametrize(
    "dataset, preset",
    [
        ("digits", "digits"),
        ("tfds:mnist", "mnist"),
        ("tfds:cifar10:3.0.2", "cifar10"),
        ("tfds:celeb_a", "celeba64"),
        ("tfds:imagenet_resized/32x32", "imagenet32"),
        ("tfds:imagenet_resized/64x64:0.1.0", "imagenet64"),
    ],
)
def test_a_dataset_chooses_its_own_preset(dataset, preset):
    settings = training.resolve(TrainConfig(dataset=dataset))
    assert settings.preset.name == preset
    # The preset's training defaults come with it.
    assert settings.learning_rate == tfp_glow.PRESETS[preset].learning_rate


def test_a_preset_that_cannot_model_the_images_is_refused_before_anything_is_written(tmp_path):
    # celeba64 squeezes 4 times: 8x8 digits cannot be halved that often.
    config = TrainConfig(dataset="digits", preset="celeba64", epochs=1, model_dir=str(tmp_path / "run"))
    with pytest.raises(training.UsageError, match=r"preset 'celeba64' cannot model .*8x8x1"):
        training.train(config)
    assert not (tmp_path / "run").exists()


def test_a_bad_config_value_is_refused_naming_it():
    with pytest.raises(training.UsageError, match="Received: batch_size=0"):
        TrainConfig(batch_size=0)
    with pytest.raises(training.UsageError, match=r"Received: \['num_bins'\]"):
        TrainConfig(architecture={"num_bins": 3})


def _weights(path) -> dict:
    """Every array of a .keras file's weights, by HDF5 path."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as f:
        f.visititems(
            lambda name, item: arrays.setdefault(name, item[()]) if isinstance(item, h5py.Dataset) else None
        )
    return arrays


def test_the_python_api_trains_what_the_cli_trains(tmp_path):
    flags = dict(
        epochs=2,
        batch_size=100,
        warmup_steps=5,
        num_samples=4,
        test_split="",
        deterministic=True,
        verbose=0,
    )
    python = (
        "from tfp_glow.training import TrainConfig, train\n"
        f"train(TrainConfig(model_dir='api', architecture={TINY!r}, **{flags!r}))\n"
    )
    cli = [
        "--model_dir=cli",
        *(f"--{k}={v}" for k, v in TINY.items()),
        "--epochs=2",
        "--batch_size=100",
        "--warmup_steps=5",
        "--num=4",
        "--test_split=",
        "--deterministic",
        "--verbose=0",
    ]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", python], cwd=tmp_path, env=ENV, stderr=subprocess.PIPE, text=True
        ),
        subprocess.Popen(
            [sys.executable, "-m", "tfp_glow.cli", "train", *cli],
            cwd=tmp_path,
            env=ENV,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-3000:]
    api, cli_run = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("api", "cli"))
    assert api["history"] == cli_run["history"] and api["best_epoch"] == cli_run["best_epoch"]
    assert api["run"] == {**cli_run["run"], "model_dir": "api"}
    # The same weights in the best model, and the run trained (it is not the initial model).
    api_weights, cli_weights = (_weights(tmp_path / name / "model.keras") for name in ("api", "cli"))
    assert api_weights.keys() == cli_weights.keys()
    for name, value in api_weights.items():
        np.testing.assert_array_equal(value, cli_weights[name], err_msg=name)
    assert api["history"]["bits_per_dim"][1] < api["history"]["bits_per_dim"][0]


def test_cosine_decay_under_a_time_limit_is_set_per_batch_and_ends_at_the_last_step(tmp_path):
    rates = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            rates.append(float(self.model.optimizer.learning_rate))

    config = TrainConfig(
        model_dir=str(tmp_path),
        architecture=TINY,
        epochs=2,  # 13 batches each: the cosine's last step, 26, comes long before 600 s
        time_limit=600,
        lr_decay="cosine",
        learning_rate=1e-2,
        warmup_steps=2,
        batch_size=100,
        train_split="train",
        validation_split="",
        test_split="",
        iw_samples=0,
        verbose=0,
    )
    result = training.train(config, callbacks=[Record()])
    assert json.loads(open(result.metrics_path).read())["lr_decay"] == "cosine"
    assert len(rates) == 26
    # Warm-up by step, then (CosineDecayToTimeLimit, by the clock or the steps, whichever is
    # further on) down at every step, to about 0 at the last.
    np.testing.assert_allclose(rates[:2], [5e-3, 1e-2], rtol=1e-6)
    assert all(a >= b for a, b in itertools.pairwise(rates[1:]))
    assert all(a > b for a, b in itertools.pairwise(rates[3:]))
    assert rates[-1] < 1e-2 * 0.01
