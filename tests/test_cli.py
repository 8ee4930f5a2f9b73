"""End-to-end tests of the `tfp-glow` command line.

One tiny training run (a real subprocess) is shared by the tests of train, evaluate and
sample; flag errors run in this process through `cli.main`, which is what `run` does after
absl's start-up, so that each costs no TensorFlow import.
"""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tfp_glow import cli, resume
from tfp_glow.callbacks import AtomicCheckpoint, CompiledSwapEMAWeights

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = [
    "--epochs=2",
    "--num_steps=1",
    "--hidden_channels=8",
    "--batch_size=128",
    "--num=16",
    "--warmup_steps=5",
    "--verbose=2",
    # Keras under tf.distribute's MirroredStrategy (one replica on this CPU): the
    # strategy path end to end; tests/test_distribute.py checks two replicas.
    "--strategy=mirrored",
]
# 16 digits of 8x8 in a 4x4 grid with 1-px padding: 37 px, written 7x larger (>= 256 px).
GRID_16_SHAPE = (37 * 7, 37 * 7, 1)


def _cli(args, cwd, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "tfp_glow.cli", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _decode(path):
    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()


def _last_line(text):
    return text.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(cwd, model_dir, CompletedProcess) of `tfp-glow train` with a tiny model."""
    cwd = tmp_path_factory.mktemp("cli")
    result = _cli(["train", "--model_dir=run", *TINY], cwd=cwd, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, cwd / "run", result


def test_train_writes_the_run(trained):
    _, run, _ = trained
    for name in [
        "model.keras",
        "checkpoints/epoch_001.keras",
        "checkpoints/epoch_002.keras",
        "samples_epoch_001.png",
        "samples_epoch_002.png",
        "learning_curve.png",
        "metrics.json",
    ]:
        assert (run / name).is_file(), name
    assert not (run / "samples_epoch_003.png").exists()
    assert any((run / "logs").rglob("events.out.tfevents.*"))  # TensorBoard


def test_train_pngs(trained):
    _, run, _ = trained
    for epoch in (1, 2):
        grid = _decode(run / f"samples_epoch_{epoch:03d}.png")
        assert grid.shape == GRID_16_SHAPE
        # Digit levels 0..16 scaled to 0..255, and the white padding.
        assert set(np.unique(grid)) <= {round(k * 255 / 16) for k in range(17)}
    assert _decode(run / "learning_curve.png").shape[:2] == (400, 600)


def test_train_metrics(trained):
    _, run, result = trained
    metrics = json.loads((run / "metrics.json").read_text())

    history = metrics["history"]
    assert len(history["bits_per_dim"]) == len(history["val_bits_per_dim"]) == 2
    assert metrics["epochs"] == 2 and len(metrics["epoch_seconds"]) == 2
    assert metrics["best_epoch"] == int(np.argmin(history["val_bits_per_dim"])) + 1
    test_bpd = metrics["test_bits_per_dim"]
    assert math.isfinite(test_bpd) and 0 < test_bpd < 8
    assert _last_line(result.stdout) == f"test bits/dim: {test_bpd:.3f}"
    # The importance-sampled discrete likelihood: a tighter estimate than one sample.
    discrete = metrics["test_discrete_bits_per_dim"]
    assert metrics["iw_samples"] == 64 and 0 < discrete < test_bpd  # the digits default
    assert metrics["learning_rate"] == tfp_glow.models.LEARNING_RATES["digits"]
    assert metrics["ema_momentum"] == tfp_glow.models.EMA_MOMENTA["digits"]
    assert result.stdout.strip().splitlines()[-2] == f"discrete test bits/dim (64 samples): {discrete:.3f}"
    assert metrics["wall_seconds"] > sum(metrics["epoch_seconds"])
    config = metrics["config"]
    assert (config["num_steps"], config["hidden_channels"], config["num_bins"]) == (1, 8, 17)
    assert config["image_shape"] == [8, 8, 1]
    assert metrics["flags"]["epochs"] == 2 and metrics["flags"]["dataset"] == "digits"


def test_model_keras_is_the_best_epoch(trained):
    _, run, _ = trained
    best = json.loads((run / "metrics.json").read_text())["best_epoch"]
    model = keras.models.load_model(run / "model.keras")
    for epoch in (1, 2):
        checkpoint = keras.models.load_model(run / "checkpoints" / f"epoch_{epoch:03d}.keras")
        pairs = zip(model.get_weights(), checkpoint.get_weights(), strict=True)
        same = all(np.array_equal(a, b) for a, b in pairs)
        assert same == (epoch == best), epoch
    # A copy of the best epoch's file, not a second save.
    assert (run / "model.keras").read_bytes() == (
        run / "checkpoints" / f"epoch_{best:03d}.keras"
    ).read_bytes()


def test_train_callbacks_swap_in_the_averages_before_the_checkpoints(tmp_path):
    cli.FLAGS(["tfp-glow"])  # the default --ema_momentum
    try:
        callbacks = cli._train_callbacks(str(tmp_path), True, {"val_bits_per_dim": [3.0, 2.5]})
    finally:
        cli.FLAGS.unparse_flags()
    kinds = [type(c) for c in callbacks]
    swap = kinds.index(CompiledSwapEMAWeights)
    every_epoch, best = (c for c in callbacks if isinstance(c, AtomicCheckpoint))
    assert swap < callbacks.index(every_epoch) < callbacks.index(best)  # copy_from runs first
    assert best.copy_from is every_epoch and every_epoch.copy_from is None
    assert (best.monitor, best.best) == ("val_bits_per_dim", 2.5)  # resumed: the best so far


def test_evaluate(trained):
    cwd, _, _ = trained
    metrics = json.loads((cwd / "run" / "metrics.json").read_text())

    # train's batch size: the importance samples are drawn per batch.
    flags = ["--verbose=0", "--batch_size=128", "--iw_samples=64"]  # evaluate's default is 0 samples
    result = _cli(["evaluate", "--model_dir=run", *flags], cwd=cwd)

    assert result.returncode == 0, result.stderr[-3000:]
    line = _last_line(result.stdout)
    assert line.startswith("test bits/dim: ")
    # The same seed and batches as train's final evaluation: the same importance samples.
    discrete = result.stdout.strip().splitlines()[-2]
    assert discrete == f"discrete test bits/dim (64 samples): {metrics['test_discrete_bits_per_dim']:.3f}"
    # The same model on the same split (dequantization noise aside).
    assert float(line.split(": ")[1]) == pytest.approx(metrics["test_bits_per_dim"], abs=0.05)


def test_sample_writes_a_deterministic_grid(trained, monkeypatch, capsys):
    cwd, run, _ = trained
    result = _cli(["sample", "--model_dir=run", "--num=9", "--seed=3"], cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _last_line(result.stdout) == os.path.join("run", "samples.png")
    first = (run / "samples.png").read_bytes()
    # 9 digits: a 3x3 grid of 28 px, written 10x larger.
    assert _decode(run / "samples.png").shape == (280, 280, 1)

    # A second run, in this process: the same seed gives the same file, another seed not.
    monkeypatch.chdir(cwd)
    common = ["tfp-glow", "sample", "--model_dir=run", "--num=9"]
    assert cli.main([*common, "--seed=3", "--out=again/same.png"]) == 0
    assert cli.main([*common, "--seed=4", "--out=again/other.png"]) == 0
    assert capsys.readouterr().out.split() == ["again/same.png", "again/other.png"]
    assert (cwd / "again" / "same.png").read_bytes() == first
    assert (cwd / "again" / "other.png").read_bytes() != first


@pytest.mark.parametrize(
    "args, named",
    [
        (["train", "--epochs=-1"], "--epochs=-1"),
        (["train", "--preset=nope"], "--preset=nope"),
        (["train", "--dataset=foo:bar"], "foo:bar"),
        (["train", "--batch_size=0"], "--batch_size=0"),
        (["train", "--optimizer=sgd"], "--optimizer=sgd"),
        (["train", "--image_shape=8,8"], "8,8"),
        (["train", "--temperature=-0.5"], "--temperature=-0.5"),
        (["train", "--ema_momentum=1.5"], "--ema_momentum=1.5"),
        (["train", "--dropout=1.0"], "--dropout=1.0"),
        (["train", "--dequantization=learned"], "--dequantization=learned"),
        (["train", "--iw_samples=-1"], "--iw_samples=-1"),
        (["train", "--time_limit=-1"], "--time_limit=-1"),
        (["train", "--time_limit=nan"], "--time_limit=nan"),
        # 1 epoch of 21 batches cannot decay after 200 warm-up steps.
        (["train", "--lr_decay=cosine"], "--lr_decay=cosine needs more training steps"),
        (["train", "--strategy=tpu"], "--strategy=tpu"),
        (["train", "--jit_compile", "--deterministic"], "--deterministic"),
        (["train", "--validation_split=nope"], "nope"),
        (["train", "--image_shape=8,8,3"], "8, 8, 3"),  # Digits are grey.
        (["train", "--num_levels=4"], "num_levels"),  # 8x8 cannot be squeezed 4 times.
        (["frobnicate"], "frobnicate"),
        ([], "missing command"),
        (["train", "extra"], "extra"),
        (["train", "--no_such_flag=1"], "no_such_flag"),
    ],
)
def test_usage_errors_exit_2_before_training(tmp_path, monkeypatch, capsys, args, named):
    monkeypatch.chdir(tmp_path)

    # Later flags win: a bug that let one of these train would still train briefly.
    status = cli.main(["tfp-glow", "--epochs=1", "--model_dir=run", *args])

    assert status == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_flag_exits_2_in_a_real_process(tmp_path):
    result = _cli(["train", "--epochs=-1", "--model_dir=run"], cwd=tmp_path, timeout=60)

    assert result.returncode == 2
    assert "--epochs=-1" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_help_exits_0_and_lists_the_flags(tmp_path):
    result = _cli(["--help"], cwd=tmp_path, timeout=60)

    assert result.returncode == 0, result.stderr[-3000:]
    for text in ["train", "evaluate", "sample", "--dataset", "--preset", "--model_dir", "--epochs"]:
        assert text in result.stdout


@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_missing_model_exits_1_naming_the_path(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    model_dir = tmp_path / "nowhere"

    assert cli.main(["tfp-glow", command, f"--model_dir={model_dir}"]) == 1

    err = capsys.readouterr().err
    assert str(model_dir / "model.keras") in err and "Traceback" not in err


def test_nonfinite_limit_stops_training_after_the_limit(capsys):
    limit = cli.NonFiniteLimit(2)
    limit.set_model(keras.Sequential([keras.layers.Dense(1)]))
    limit.model.stop_training = False
    limit.on_train_batch_end(0, {"nonfinite_steps": 1.0})
    limit.on_epoch_end(0)
    limit.on_train_batch_end(0, {"nonfinite_steps": 1.0})  # 2 in all: still within the limit
    assert not limit.model.stop_training
    limit.on_train_batch_end(1, {"nonfinite_steps": 2.0})  # 3 in all
    assert limit.model.stop_training
    assert "--max_nonfinite_steps=2" in capsys.readouterr().err


def test_strategies():
    assert isinstance(cli.make_strategy("mirrored"), tf.distribute.MirroredStrategy)
    assert cli.make_strategy("default") is tf.distribute.get_strategy()


def test_training_flags_reach_the_model_and_the_schedule():
    argv = [
        "tfp-glow",
        "--dequantization=variational",
        "--dropout=0.25",
        "--lr_decay=cosine",
        "--warmup_steps=10",
    ]
    cli.FLAGS(argv)
    try:
        model = cli._build_model()
        cli._compile(model, total_steps=500)
    finally:
        cli.FLAGS.unparse_flags()
    config = model.get_config()
    assert (config["dequantization"], config["dropout"]) == ("variational", 0.25)
    schedule = model.optimizer._learning_rate  # the LearningRateSchedule itself
    assert (schedule.warmup_steps, schedule.decay_steps) == (10, 500)
    # No --learning_rate: the preset's.
    assert (
        schedule.learning_rate
        == tfp_glow.models.LEARNING_RATES["digits"]
        != tfp_glow.models.PAPER_LEARNING_RATE
    )
    assert float(schedule(500)) == 0.0


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], cli.DIGITS_EPOCHS),  # the default run: digits, sized to its 5-minute budget
        (["--preset=mnist", "--dataset=tfds:mnist"], cli.DEFAULT_EPOCHS),
        (["--epochs=3"], 3),
    ],
)
def test_epochs_default_to_the_presets(flags, expected):
    cli.FLAGS(["tfp-glow", *flags])
    try:
        assert cli._epochs() == expected
    finally:
        cli.FLAGS.unparse_flags()
    assert cli.DIGITS_EPOCHS != cli.DEFAULT_EPOCHS


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], tfp_glow.models.EMA_MOMENTA["digits"]),
        (["--preset=mnist", "--dataset=tfds:mnist"], cli.DEFAULT_EMA_MOMENTUM),
        (["--ema_momentum=0.9"], 0.9),
        (["--ema_momentum=0"], None),  # no averaging
    ],
)
def test_ema_momentum_defaults_to_the_presets(flags, expected):
    cli.FLAGS(["tfp-glow", *flags])
    try:
        model = cli._build_model()
        cli._compile(model, total_steps=500)
    finally:
        cli.FLAGS.unparse_flags()
    assert tfp_glow.models.EMA_MOMENTA["digits"] != cli.DEFAULT_EMA_MOMENTUM
    if expected is None:
        assert not model.optimizer.use_ema
    else:
        assert model.optimizer.use_ema and model.optimizer.ema_momentum == expected


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], cli.DIGITS_TIME_LIMIT),  # the default run: the command in at most 5 minutes
        (["--epochs=3"], 0.0),  # epochs asked for are trained
        (["--epochs=3", "--time_limit=10"], 10.0),
        (["--preset=mnist", "--dataset=tfds:mnist"], 0.0),
        (["--time_limit=0"], 0.0),
    ],
)
def test_time_limit_defaults_to_the_default_runs(flags, expected):
    cli.FLAGS(["tfp-glow", *flags])
    try:
        assert cli._time_limit() == expected
    finally:
        cli.FLAGS.unparse_flags()
    # Room for the imports and the final evaluation within the 5 minutes.
    assert 0 < cli.DIGITS_TIME_LIMIT < 300


def test_time_limit_ends_a_train_run_early(tmp_path):
    limits = ["--epochs=4", "--time_limit=0.001", "--validation_split=", "--iw_samples=0"]
    result = _cli(["train", "--model_dir=run", *TINY, *limits], cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # The first epoch ends past the limit, so no second one starts; model.keras is that epoch's.
    assert metrics["epochs"] == 1 and metrics["best_epoch"] == 1
    assert "stopping after epoch 1 of 4: another would end past --time_limit=0.001 s" in result.stderr
    assert (tmp_path / "run" / "model.keras").is_file()
    assert not (tmp_path / "run" / "samples_epoch_002.png").exists()
    assert math.isfinite(metrics["test_bits_per_dim"])
    assert resume.load_state(str(tmp_path / "run" / "resume")).time_limit == 0.001

    # The same command again: the run is done, not interrupted, so nothing more is trained.
    again = _cli(["train", "--model_dir=run", *TINY, *limits], cwd=tmp_path, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "has trained 1 epochs already, until its time limit of 0.001 s" in again.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 1
    assert not (tmp_path / "run" / "checkpoints" / "epoch_002.keras").exists()

    # Another limit (0: none) trains it on from where it ended, here to --epochs=2.
    on = ["--epochs=2", "--time_limit=0", "--validation_split=", "--iw_samples=0"]
    further = _cli(["train", "--model_dir=run", *TINY, *on], cwd=tmp_path, timeout=240)
    assert further.returncode == 0, further.stderr[-3000:]
    assert "resuming from epoch 2" in further.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 2
    assert (tmp_path / "run" / "checkpoints" / "epoch_002.keras").is_file()
    assert resume.load_state(str(tmp_path / "run" / "resume")).time_limit is None


_THREADS_SCRIPT = """
import sys
import tensorflow as tf
from tfp_glow import cli
cli.FLAGS(["tfp-glow", *sys.argv[2:]])
cli._set_intra_op_threads(sys.argv[1])
tf.constant(1.0) + 1.0  # TensorFlow starts with the setting
print(tf.config.threading.get_intra_op_parallelism_threads())
"""


@pytest.mark.parametrize(
    "command, flags, env, expected",
    [
        ("train", [], {}, cli.INTRA_OP_THREADS["digits"]),  # the digits preset's ops are too small to split
        ("train", ["--preset=mnist"], {}, 0),  # TensorFlow's default
        ("train", ["--intra_op_threads=2"], {}, 2),
        # The user's environment wins over the preset: the CLI sets nothing (TensorFlow reads it).
        ("train", [], {"TF_NUM_INTRAOP_THREADS": "2"}, 0),
        ("evaluate", [], {}, 0),  # loads a model of any preset: TensorFlow's default
        ("sample", ["--intra_op_threads=1"], {}, 1),
    ],
)
def test_intra_op_threads_default_to_the_presets(tmp_path, command, flags, env, expected):
    result = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT, command, *flags],
        cwd=tmp_path,
        env={**ENV, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == str(expected)


def test_intra_op_threads_asked_for_once_tensorflow_runs_is_a_warning(capsys):
    tf.constant(1.0)  # TensorFlow is running in this process
    current = tf.config.threading.get_intra_op_parallelism_threads()
    for flags, warned in (([], False), ([f"--intra_op_threads={current + 3}"], True)):
        cli.FLAGS(["tfp-glow", *flags])
        try:
            cli._set_intra_op_threads("train")
        finally:
            cli.FLAGS.unparse_flags()
        assert ("has no effect" in capsys.readouterr().err) == warned
    assert tf.config.threading.get_intra_op_parallelism_threads() == current
