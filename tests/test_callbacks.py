"""AtomicCheckpoint: whole-model checkpoints that are never half-written."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from tfp_glow.callbacks import AtomicCheckpoint


def _model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_saves_every_epoch_and_leaves_no_temporary_files(tmp_path):
    model = _model()
    x = np.ones([4, 2], np.float32)
    model.fit(
        x,
        x[:, :1],
        epochs=2,
        verbose=0,
        callbacks=[AtomicCheckpoint(str(tmp_path / "ckpt" / "e{epoch:02d}.keras"))],
    )
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["e01.keras", "e02.keras"]
    loaded = keras.models.load_model(tmp_path / "ckpt" / "e02.keras")
    np.testing.assert_array_equal(loaded.layers[0].kernel.numpy(), model.layers[0].kernel.numpy())
    assert int(loaded.optimizer.iterations.numpy()) == 2  # optimizer state included


def test_a_failed_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    model = _model()
    path = tmp_path / "model.keras"
    callback = AtomicCheckpoint(str(path))
    callback.set_model(model)
    callback.on_epoch_end(0)
    good = path.read_bytes()

    def crash(filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a zip")  # a crash in the middle of writing
        raise OSError("disk full")

    monkeypatch.setattr(model, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        callback.on_epoch_end(1)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["model.keras"]


def test_monitor_keeps_only_the_best_epoch(tmp_path):
    model = _model()
    path = tmp_path / "best.keras"
    callback = AtomicCheckpoint(str(path), monitor="val_bits_per_dim")
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_bits_per_dim": 3.0})
    first = os.path.getmtime(path)
    os.utime(path, (first - 100, first - 100))
    callback.on_epoch_end(1, {"val_bits_per_dim": 3.5})  # worse: not saved
    assert os.path.getmtime(path) == first - 100
    callback.on_epoch_end(2, {"val_bits_per_dim": float("nan")})  # not finite: not saved
    assert os.path.getmtime(path) == first - 100
    callback.on_epoch_end(3, {"val_bits_per_dim": 2.0})
    assert os.path.getmtime(path) > first - 100
    with pytest.raises(ValueError, match="path='model.h5'"):
        AtomicCheckpoint("model.h5")
