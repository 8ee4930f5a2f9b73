"""AtomicCheckpoint (whole-model checkpoints never half-written), CompiledSwapEMAWeights, TimeLimit,
CosineDecayToTimeLimit."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_glow import files
from tfp_glow.callbacks import AtomicCheckpoint, CompiledSwapEMAWeights, CosineDecayToTimeLimit, TimeLimit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def _count_saves(model, monkeypatch):
    saves = []
    save = model.save

    def counted(filepath, *args, **kwargs):
        saves.append(os.path.basename(filepath))
        return save(filepath, *args, **kwargs)

    monkeypatch.setattr(model, "save", counted)
    return saves


def test_the_best_model_is_a_copy_of_the_epochs_checkpoint(tmp_path, monkeypatch):
    model = _model()
    saves = _count_saves(model, monkeypatch)
    every_epoch = AtomicCheckpoint(str(tmp_path / "checkpoints" / "epoch_{epoch:03d}.keras"))
    best = AtomicCheckpoint(str(tmp_path / "model.keras"), monitor="val_bits_per_dim", copy_from=every_epoch)
    x = np.ones([4, 2], np.float32)
    for epoch, value in enumerate([3.0, 3.5]):  # the second epoch is worse
        model.fit(x, x[:, :1], epochs=1, verbose=0)
        for callback in (every_epoch, best):
            callback.set_model(model)
            callback.on_epoch_end(epoch, {"val_bits_per_dim": value})
    assert len(saves) == 2  # one model.save per epoch: the best model was copied
    first, second = (tmp_path / "checkpoints" / f"epoch_{e:03d}.keras" for e in (1, 2))
    assert (tmp_path / "model.keras").read_bytes() == first.read_bytes() != second.read_bytes()
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert int(loaded.optimizer.iterations.numpy()) == 1  # epoch 1's state, not epoch 2's
    assert sorted(os.listdir(tmp_path)) == ["checkpoints", "model.keras"]


def test_the_best_model_is_saved_when_there_is_nothing_to_copy(tmp_path, monkeypatch):
    model = _model()
    saves = _count_saves(model, monkeypatch)
    every_epoch = AtomicCheckpoint(str(tmp_path / "epoch_{epoch:03d}.keras"))
    best = AtomicCheckpoint(str(tmp_path / "model.keras"), copy_from=every_epoch)
    for callback in (every_epoch, best):
        callback.set_model(model)
    every_epoch.on_epoch_end(0)
    best.on_epoch_end(1)  # epoch 2's checkpoint is not written (yet): no copy of epoch 1's
    assert [name.split(".keras.")[0] for name in saves] == [".epoch_001", ".model"]


def test_a_failed_copy_keeps_the_last_good_best_model(tmp_path, monkeypatch):
    model = _model()
    every_epoch = AtomicCheckpoint(str(tmp_path / "epoch_{epoch:03d}.keras"))
    best = AtomicCheckpoint(str(tmp_path / "model.keras"), copy_from=every_epoch)
    for callback in (every_epoch, best):
        callback.set_model(model)
        callback.on_epoch_end(0)
    every_epoch.on_epoch_end(1)

    def crash(source, destination):
        with open(destination, "wb") as f:
            f.write(b"half a zip")  # a crash in the middle of copying
        raise OSError("disk full")

    monkeypatch.setattr(files.shutil, "copyfile", crash)
    with pytest.raises(OSError, match="disk full"):
        best.on_epoch_end(1)
    assert (tmp_path / "model.keras").read_bytes() == (tmp_path / "epoch_001.keras").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["epoch_001.keras", "epoch_002.keras", "model.keras"]


def _ema_model(strategy, seed=0):
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
        model.compile(optimizer=keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=0.5), loss="mse")
    return model


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=[32, 3]).astype(np.float32)
    return x, x @ np.array([[1.0], [-2.0], [0.5]], np.float32)


def swap_twice(strategy) -> dict[str, bool]:
    """Swaps a trained model's weights with their averages twice; what held, on every replica."""
    model = _ema_model(strategy)
    x, y = _data()
    for _ in range(3):  # not `fit`: it ends by copying the averages into the model
        model.train_on_batch(x, y)
    optimizer = model.optimizer

    def values(variables):
        # Every replica's copy of every variable.
        return [np.asarray(r) for v in variables for r in strategy.experimental_local_results(v.value)]

    weights, averages = values(model.trainable_variables), values(optimizer._model_variables_moving_average)
    swap = CompiledSwapEMAWeights()
    swap.set_model(model)
    swap._swap_variables()
    swapped = (values(model.trainable_variables), values(optimizer._model_variables_moving_average))
    swap._swap_variables()
    restored = (values(model.trainable_variables), values(optimizer._model_variables_moving_average))

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    return {
        "replicas": strategy.num_replicas_in_sync,
        "averages_differ": not same(weights, averages),  # else a swap would change nothing
        "swapped": same(swapped[0], averages) and same(swapped[1], weights),
        "restored": same(restored[0], weights) and same(restored[1], averages),
        "traced_once": len(swap._swaps) == 1,
    }


def test_a_swap_exchanges_the_weights_and_their_averages_exactly():
    assert swap_twice(tf.distribute.get_strategy()) == {
        "replicas": 1,
        "averages_differ": True,
        "swapped": True,
        "restored": True,
        "traced_once": True,
    }


def test_a_swap_exchanges_every_replicas_copy_under_mirrored_strategy():
    # Two logical CPUs must be made before TensorFlow starts: a fresh process.
    script = (
        "import json, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from tests.test_callbacks import swap_twice\n"
        "print(json.dumps(swap_twice(tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "replicas": 2,
        "averages_differ": True,
        "swapped": True,
        "restored": True,
        "traced_once": True,
    }


def test_a_fit_validates_with_the_averages_as_with_keras_swap():
    x, y = _data()
    histories = {}
    for name, swap in [
        ("keras", keras.callbacks.SwapEMAWeights(swap_on_epoch=True)),
        ("compiled", CompiledSwapEMAWeights(swap_on_epoch=True)),
        ("none", None),
    ]:
        model = _ema_model(tf.distribute.get_strategy())
        history = model.fit(
            x,
            y,
            batch_size=8,
            epochs=3,
            validation_data=_data(seed=1),
            callbacks=[swap] if swap else [],
            verbose=0,
            shuffle=False,
        )
        histories[name] = history.history
    # Keras's swap by sums rounds at float precision; training goes on from those weights.
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(
            histories["compiled"][key], histories["keras"][key], rtol=1e-5, err_msg=key
        )
    # Not trivially equal: validation with the trained weights gives another figure.
    assert not np.allclose(histories["none"]["val_loss"], histories["keras"]["val_loss"], rtol=1e-3)


class _Clock:
    """A clock that reads `now`, moved by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _epochs_within(limit: TimeLimit, clock: _Clock, durations) -> int:
    """Drives `limit` as a fit of len(durations) epochs would; returns the epochs it lets run."""
    limit.set_model(_model())
    limit.model.stop_training = False
    limit.on_train_begin()
    for epoch, seconds in enumerate(durations):
        clock.now += seconds
        limit.on_epoch_end(epoch)
        if limit.model.stop_training:
            assert limit.stopped_epoch == epoch
            return epoch + 1
    assert limit.stopped_epoch is None
    return len(durations)


def test_time_limit_runs_every_epoch_that_is_expected_to_end_within_it():
    clock = _Clock()
    # Epochs end at 1, 2, ..., 5 s: after the fifth, a sixth would end at 6 > 5.5.
    assert _epochs_within(TimeLimit(5.5, clock=clock), clock, [1.0] * 10) == 5
    # Exactly at the limit is within it.
    assert _epochs_within(TimeLimit(6.0, clock=clock), clock, [1.0] * 10) == 6


def test_time_limit_does_not_judge_the_next_epoch_by_the_first():
    clock = _Clock()
    # The first epoch traces (4 s), the others take 1 s: epochs end at 4, 5, ..., 9, and only
    # after the one ending at 9 would the next end past 9. Were the first epoch's 4 s part of the
    # estimate, the one ending at 5 would be the last (5 + 4 > 9).
    durations = [4.0] + [1.0] * 9
    assert _epochs_within(TimeLimit(9.0, clock=clock), clock, durations) == 6
    # After the first epoch alone, its own time is the estimate: 4 + 4 > 7.5.
    assert _epochs_within(TimeLimit(7.5, clock=clock), clock, durations) == 1


def test_time_limit_expects_the_slowest_of_the_recent_epochs():
    clock = _Clock()
    # Ends at 5, 6, 9, 10: after the fourth, the last three took 1, 3, 1 s, so 10 + 3 > 12.
    durations = [5.0, 1.0, 3.0, 1.0, 1.0, 1.0]
    assert _epochs_within(TimeLimit(12.0, clock=clock), clock, durations) == 4
    # With a window of one epoch, the last (1 s) is the estimate: 10 + 1 <= 12, 11 + 1 <= 12, then 13 > 12.
    assert _epochs_within(TimeLimit(12.0, window=1, clock=clock), clock, durations) == 6


def test_time_limit_counts_from_start():
    clock = _Clock()
    # The budget began 3 s before the fit: epochs end at 4, 5, 6 s of it, and 6 + 1 > 6.5.
    limit = TimeLimit(6.5, start=clock.now - 3.0, clock=clock)
    assert _epochs_within(limit, clock, [1.0] * 10) == 3


def test_time_limit_stops_a_keras_fit():
    model = _model()
    x = np.ones([4, 2], np.float32)
    # Any epoch takes longer than a microsecond: the first one ends past the limit.
    limit = TimeLimit(1e-6)
    history = model.fit(x, x[:, :1], epochs=5, verbose=0, callbacks=[limit])
    assert len(history.history["loss"]) == 1 and limit.stopped_epoch == 0


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan")])
def test_time_limit_rejects_a_budget_that_is_not_positive(seconds):
    with pytest.raises(ValueError, match=f"seconds={seconds}"):
        TimeLimit(seconds)


def _rates(anneal: CosineDecayToTimeLimit, model, clock: _Clock, seconds: list[float]):
    """Drives `anneal` over batches that take `seconds` each; the rates it set."""
    anneal.set_model(model)
    anneal.on_train_begin()
    rates = []
    for duration in seconds:
        anneal.on_train_batch_begin(0)
        rates.append(float(model.optimizer.learning_rate))
        model.optimizer.iterations.assign_add(1)
        clock.now += duration
        anneal.on_train_batch_end(0)
    return rates


def _compiled_model(learning_rate):
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_cosine_decay_warms_up_by_step_and_reaches_zero_at_the_time_limit():
    clock = _Clock()
    # 10 s of budget, 1 s spent before the fit and 1 s in the first batch, which traces: the
    # cosine runs over the 8 s that train, the 80 batches of 0.1 s after the first, and the
    # warm-up over the first 4 steps.
    anneal = CosineDecayToTimeLimit(1.0, warmup_steps=4, seconds=10.0, start=clock.now - 1.0, clock=clock)
    rates = _rates(anneal, _compiled_model(1.0), clock, [1.0] + [0.1] * 99)
    np.testing.assert_allclose(rates[:3], [0.25, 0.5, 0.75])
    # At half of the trained time, half the rate; at its end and after it, 0.
    np.testing.assert_allclose(rates[41], 0.5, atol=1e-6)
    np.testing.assert_allclose(rates[81:], 0.0, atol=1e-6)
    assert rates[80] > 0
    assert all(a >= b for a, b in itertools.pairwise(rates[3:]))  # only down after the warm-up


def test_cosine_decay_ends_at_decay_steps_when_they_come_before_the_time_limit():
    clock = _Clock()
    # A slow budget (1000 s) and 20 steps: the steps end first, at step 20.
    anneal = CosineDecayToTimeLimit(2.0, warmup_steps=0, seconds=1000.0, decay_steps=20, clock=clock)
    rates = _rates(anneal, _compiled_model(2.0), clock, [0.1] * 25)
    np.testing.assert_allclose(rates[10], 1.0, atol=1e-6)
    np.testing.assert_allclose(rates[20:], 0.0, atol=1e-6)


def test_cosine_decay_needs_a_rate_that_is_a_variable():
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(1.0, 10, 0.5)))
    anneal = CosineDecayToTimeLimit(1.0, warmup_steps=0, seconds=5.0)
    anneal.set_model(model)
    with pytest.raises(
        ValueError, match="compile with a float rate, not a schedule. Received: ExponentialDecay"
    ):
        anneal.on_train_begin()
