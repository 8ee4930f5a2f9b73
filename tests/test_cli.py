"""End-to-end tests of the `tfp-glow` command line: one command per verb, each with its own flags.

One tiny training run (a real subprocess, the console script's path) is shared by the tests of
train, evaluate and sample; the other verbs, flag errors and help run in this process through
`cli.main`, which is what the console script runs.
"""

import contextlib
import io
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_glow import cli, resume, training
from tfp_glow.callbacks import AtomicCheckpoint, CompiledSwapEMAWeights, NonFiniteLimit, SampleGrid
from tfp_glow.models import PRESETS

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TINY = [
    "--num_steps=1",
    "--hidden_channels=8",
    "--batch_size=128",
    "--num=16",
    "--warmup_steps=5",
    "--verbose=2",
]
# Keras under tf.distribute's MirroredStrategy (one replica on this CPU): the strategy path end
# to end; tests/test_distribute.py checks two replicas. Three epochs, two checkpoints kept, a
# sample grid every second epoch and after the last, the best epoch by the validation split.
RUN = [
    "--epochs=3",
    "--keep_checkpoints=2",
    "--sample_every=2",
    "--strategy=mirrored",
    "--train_split=train",
    "--validation_split=validation",
    *TINY,
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
    result = _cli(["train", "--model_dir=run", *RUN], cwd=cwd, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, cwd / "run", result


def _image_summaries(log_dir) -> list[str]:
    """The tags of the image summaries in the TensorBoard event files under `log_dir`."""
    tags = []
    for path in log_dir.rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags += [v.tag for v in event.summary.value if v.metadata.plugin_data.plugin_name == "images"]
    return tags


def test_train_writes_a_bounded_run_folder(trained):
    _, run, _ = trained
    for name in ["model.keras", "run.json", "learning_curve.png", "metrics.json", "resume/state.json"]:
        assert (run / name).is_file(), name
    # --keep_checkpoints=2: the last two epochs' checkpoints, and one resume weights file.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_002.keras", "epoch_003.keras"]
    assert len(list((run / "resume").glob("*.weights.h5"))) == 1
    # --sample_every=2: epoch 2's grid and the last epoch's, nothing else.
    assert sorted(p.name for p in run.glob("samples_epoch_*.png")) == [
        "samples_epoch_002.png",
        "samples_epoch_003.png",
    ]
    # TensorBoard: the scalars and, beside them, the same grids as images.
    assert any((run / "logs").rglob("events.out.tfevents.*"))
    assert _image_summaries(run / "logs") == ["samples", "samples"]


def test_train_pngs(trained):
    _, run, _ = trained
    for epoch in (2, 3):
        grid = _decode(run / f"samples_epoch_{epoch:03d}.png")
        assert grid.shape == GRID_16_SHAPE
        # Digit levels 0..16 scaled to 0..255, and the white padding.
        assert set(np.unique(grid)) <= {round(k * 255 / 16) for k in range(17)}
    assert _decode(run / "learning_curve.png").shape[:2] == (400, 600)


def test_train_metrics_name_both_bits_per_dim_estimates(trained):
    _, run, result = trained
    metrics = json.loads((run / "metrics.json").read_text())

    history = metrics["history"]
    assert len(history["bits_per_dim"]) == len(history["val_bits_per_dim"]) == 3
    assert metrics["epochs"] == 3 and len(metrics["epoch_seconds"]) == 3
    assert metrics["best_epoch"] == int(np.argmin(history["val_bits_per_dim"])) + 1
    one_sample = metrics["test_bits_per_dim_one_sample"]
    assert math.isfinite(one_sample) and 0 < one_sample < 8
    assert _last_line(result.stdout) == f"test bits/dim (one sample, the paper's estimate): {one_sample:.3f}"
    # The importance-sampled discrete likelihood: a tighter estimate than one sample.
    discrete = metrics["test_bits_per_dim_importance_sampled"]
    assert metrics["iw_samples"] == 64 and 0 < discrete < one_sample  # the digits preset's
    assert result.stdout.strip().splitlines()[-2] == (
        f"test bits/dim (64 importance samples, the discrete likelihood): {discrete:.3f}"
    )
    # The preset's training defaults reached the run; explicit epochs are not time-limited.
    digits = PRESETS["digits"]
    assert (metrics["learning_rate"], metrics["ema_momentum"]) == (digits.learning_rate, digits.ema_momentum)
    assert metrics["time_limit"] is None and metrics["stopped_by_time_limit"] is False
    assert metrics["wall_seconds"] > sum(metrics["epoch_seconds"])
    config = metrics["config"]
    assert (config["num_steps"], config["hidden_channels"], config["num_bins"]) == (1, 8, 17)
    assert config["image_shape"] == [8, 8, 1]
    recorded = json.loads((run / "run.json").read_text())
    assert (recorded["epochs"], recorded["dataset"], recorded["keep_checkpoints"]) == (3, "digits", 2)


def test_model_keras_is_the_best_epoch_without_optimizer_state(trained):
    _, run, _ = trained
    best = json.loads((run / "metrics.json").read_text())["best_epoch"]
    model = keras.models.load_model(run / "model.keras")
    assert not model.compiled  # for sampling and evaluation: no moments, no averages
    for epoch in (2, 3):
        checkpoint = run / "checkpoints" / f"epoch_{epoch:03d}.keras"
        same = (run / "model.keras").read_bytes() == checkpoint.read_bytes()
        assert same == (epoch == best), epoch
        assert not keras.models.load_model(checkpoint).compiled


def test_train_callbacks_swap_in_the_averages_before_the_checkpoints(tmp_path):
    config = training.TrainConfig(model_dir=str(tmp_path))
    callbacks = training._callbacks(
        str(tmp_path), config, training.resolve(config), True, {"val_bits_per_dim": [3.0, 2.5]}
    )
    kinds = [type(c) for c in callbacks]
    swap = kinds.index(CompiledSwapEMAWeights)
    every_epoch, best = (c for c in callbacks if isinstance(c, AtomicCheckpoint))
    assert swap < callbacks.index(every_epoch) < callbacks.index(best)  # copy_from runs first
    assert swap < kinds.index(SampleGrid)
    assert best.copy_from is every_epoch and every_epoch.copy_from is None
    assert (best.monitor, best.best) == ("val_bits_per_dim", 2.5)  # resumed: the best so far
    assert every_epoch.keep == 2 and not every_epoch.include_optimizer
    # A skipped non-finite step logs a loss of 0, so TerminateOnNaN could never fire: the
    # non-finite steps are counted and limited instead.
    assert keras.callbacks.TerminateOnNaN not in kinds and kinds[0] is NonFiniteLimit


def test_evaluate(trained, monkeypatch, capsys):
    cwd, _, _ = trained
    metrics = json.loads((cwd / "run" / "metrics.json").read_text())
    monkeypatch.chdir(cwd)

    # train's batch size: the importance samples are drawn per batch.
    flags = ["--verbose=0", "--batch_size=128", "--iw_samples=64"]  # evaluate's default is 0 samples
    assert cli.main(["tfp-glow", "evaluate", "--model_dir=run", *flags]) == 0

    out = capsys.readouterr().out
    line = _last_line(out)
    assert line.startswith("test bits/dim (one sample, the paper's estimate): ")
    # The same seed and batches as train's final evaluation: the same importance samples.
    discrete = out.strip().splitlines()[-2]
    assert discrete == (
        f"test bits/dim (64 importance samples, the discrete likelihood): "
        f"{metrics['test_bits_per_dim_importance_sampled']:.3f}"
    )
    # The same model on the same split (dequantization noise aside).
    assert float(line.split(": ")[1]) == pytest.approx(metrics["test_bits_per_dim_one_sample"], abs=0.05)


def test_sample_writes_a_deterministic_grid(trained, monkeypatch, capsys):
    cwd, run, _ = trained
    monkeypatch.chdir(cwd)
    common = ["tfp-glow", "sample", "--model_dir=run", "--num=9"]
    assert cli.main([*common, "--seed=3"]) == 0
    assert capsys.readouterr().out.split() == [os.path.join("run", "samples.png")]
    first = (run / "samples.png").read_bytes()
    # 9 digits: a 3x3 grid of 28 px, written 10x larger.
    assert _decode(run / "samples.png").shape == (280, 280, 1)

    # Again: the same seed gives the same file, another seed not.
    assert cli.main([*common, "--seed=3", "--out=again/same.png"]) == 0
    assert cli.main([*common, "--seed=4", "--out=again/other.png"]) == 0
    assert capsys.readouterr().out.split() == ["again/same.png", "again/other.png"]
    assert (cwd / "again" / "same.png").read_bytes() == first
    assert (cwd / "again" / "other.png").read_bytes() != first


@pytest.fixture(scope="module")
def npz_run(tmp_path_factory):
    """A run trained (in this process) on an npz file of digits (17 levels), in its own folder;
    and (exit status, stderr) of the same command without a preset."""
    cwd = tmp_path_factory.mktemp("npz_run")
    from tfp_glow import data

    np.savez(
        cwd / "digits.npz",
        x_train=data.load_numpy("digits", "train")[:256],
        x_test=data.load_numpy("digits", "test")[:64],
        num_bins=np.int64(17),
    )
    spec = f"npz:{cwd / 'digits.npz'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            refused = cli.main(["tfp-glow", "train", f"--dataset={spec}", "--model_dir=run", "--epochs=1"])
        flags = ["--preset=digits", "--model_dir=run", "--epochs=1", "--iw_samples=0", *TINY]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert cli.main(["tfp-glow", "train", f"--dataset={spec}", *flags]) == 0
    return cwd, (refused, stderr.getvalue())


def test_a_dataset_without_a_preset_needs_one(npz_run):
    _, (status, stderr) = npz_run
    assert status == 2
    assert "There is no preset for dataset 'npz:" in stderr and "preset='mnist'" in stderr


def test_every_verb_reads_the_runs_own_dataset(npz_run, monkeypatch, capsys):
    cwd, _ = npz_run
    monkeypatch.chdir(cwd)
    # No --dataset: evaluate reads npz:... from run.json (digits would be the default otherwise).
    assert cli.main(["tfp-glow", "evaluate", "--model_dir=run", "--verbose=0"]) == 0
    metrics = json.loads((cwd / "run" / "metrics.json").read_text())
    one_sample = float(_last_line(capsys.readouterr().out).split(": ")[1])
    assert one_sample == pytest.approx(metrics["test_bits_per_dim_one_sample"], abs=0.05)
    assert cli.main(["tfp-glow", "sample", "--model_dir=run", "--num=4"]) == 0
    assert (
        cli.main(["tfp-glow", "interpolate", "--model_dir=run", "--indices=0,1", "--steps=3", "--verbose=0"])
        == 0
    )
    assert cli.main(["tfp-glow", "export", "--model_dir=run", "--verbose=0"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [
        os.path.join("run", "samples.png"),
        os.path.join("run", "interpolation.png"),
        os.path.join("run", "export", "1"),
    ]


@pytest.mark.parametrize(
    "args, named",
    [
        (["train", "--epochs=-1"], ["--epochs=-1"]),
        (["train", "--preset=nope"], ["--preset=nope"]),
        (["train", "--dataset=foo:bar"], ["foo:bar"]),
        (["train", "--batch_size=0"], ["--batch_size=0"]),
        (["train", "--optimizer=sgd"], ["--optimizer=sgd"]),
        (["train", "--image_shape=8,8"], ["--image_shape=8,8"]),
        (["train", "--temperature=-0.5"], ["--temperature=-0.5"]),
        (["train", "--ema_momentum=1.5"], ["--ema_momentum=1.5"]),
        (["train", "--dropout=1.0"], ["--dropout=1.0"]),
        (["train", "--dequantization=learned"], ["--dequantization=learned"]),
        (["train", "--iw_samples=-1"], ["--iw_samples=-1"]),
        (["train", "--time_limit=-1"], ["--time_limit=-1"]),
        (["train", "--time_limit=nan"], ["--time_limit=nan"]),
        (["train", "--memory_efficient=always"], ["--memory_efficient=always"]),
        # 1 epoch of 11 batches cannot decay after 200 warm-up steps.
        (["train", "--lr_decay=cosine"], ["lr_decay='cosine' needs more training steps"]),
        (["train", "--strategy=tpu"], ["strategy='tpu' needs a TPU"]),
        (["train", "--jit_compile", "--deterministic"], ["`deterministic`"]),
        (["train", "--validation_split=nope"], ["validation_split='nope'"]),
        (["train", "--image_shape=8,8,3"], ["8, 8, 3"]),  # Digits are grey.
        (["train", "--num_levels=4"], ["num_levels"]),  # 8x8 cannot be squeezed 4 times.
        (["frobnicate"], ["frobnicate"]),
        ([], ["missing verb"]),
        (["train", "extra"], ["unexpected argument 'extra'"]),
        (["train", "--no_such_flag=1"], ["unrecognized flag --no_such_flag"]),
        (["train", "--indices=0,1"], ["--indices is not a flag of train (it is one of interpolate)"]),
        (["sample", "--epochs=3"], ["--epochs is not a flag of sample (it is one of train)"]),
        (["evaluate", "--mask=center"], ["--mask is not a flag of evaluate (it is one of inpaint)"]),
    ],
)
def test_usage_errors_exit_2_before_training(tmp_path, monkeypatch, capsys, args, named):
    monkeypatch.chdir(tmp_path)

    # Flags before the verb are the verb's, and later flags win: a bug that let one of these train
    # would still train briefly.
    status = cli.main(
        ["tfp-glow", "--epochs=1", "--model_dir=run", *args] if args[:1] == ["train"] else ["tfp-glow", *args]
    )

    assert status == 2
    err = capsys.readouterr().err
    assert all(text in err for text in named), err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_bad_flag_exits_2_in_a_real_process(tmp_path):
    result = _cli(["train", "--epochs=-1", "--model_dir=run"], cwd=tmp_path, timeout=60)

    assert result.returncode == 2
    assert "--epochs" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_help_lists_the_verbs(capsys):
    assert cli.main(["tfp-glow", "--help"]) == 0
    out = capsys.readouterr().out
    for verb in cli.VERBS:
        assert verb in out
    assert "--epochs" not in out  # each verb's flags are in its own help


@pytest.mark.parametrize("verb", list(cli.VERBS))
def test_each_verbs_help_lists_only_its_own_flags(verb, capsys):
    assert cli.main(["tfp-glow", verb, "--help"]) == 0
    out = capsys.readouterr().out
    parsers = cli._parsers()
    own = {flag for flag in parsers[verb].flags if flag.startswith("--")}
    others = set().union(*(p.flags for name, p in parsers.items() if name not in (None, verb))) - own
    shown = {flag for flag in own if flag in out}
    hidden = {"--noresume", "--nojit_compile", "--nodeterministic", "--nolangevin", "--test_split"}
    assert own - hidden <= shown, own - shown
    assert not {flag for flag in others if f"{flag} " in out or f"{flag}=" in out or f"{flag}\n" in out}


@pytest.mark.parametrize("verb", ["evaluate", "sample", "export"])
def test_missing_model_exits_1_naming_the_path(tmp_path, monkeypatch, capsys, verb):
    monkeypatch.chdir(tmp_path)
    model_dir = tmp_path / "nowhere"

    assert cli.main(["tfp-glow", verb, f"--model_dir={model_dir}"]) == 1

    err = capsys.readouterr().err
    assert str(model_dir / "model.keras") in err and "Traceback" not in err


def _compiled(flags, total_steps=500):
    config = cli._train_config(cli._parsers()["train"].parse_args(flags))
    settings = training.resolve(config)
    model = training._build_model(config, settings)
    training._compile(model, config, settings, total_steps=total_steps)
    return model, settings


def test_training_flags_reach_the_model_and_the_schedule():
    flags = ["--dequantization=variational", "--dropout=0.25", "--lr_decay=cosine", "--warmup_steps=10"]
    model, settings = _compiled([*flags, "--epochs=5"])  # epochs, no time limit: decay by step
    got = model.get_config()
    assert (got["dequantization"], got["dropout"]) == ("variational", 0.25)
    schedule = keras.saving.deserialize_keras_object(model.optimizer.get_config()["learning_rate"])
    assert (schedule.warmup_steps, schedule.decay_steps) == (10, 500)
    # No --learning_rate: the preset's, and the cosine reaches 0 at the last step.
    assert schedule.learning_rate == settings.learning_rate == PRESETS["digits"].learning_rate
    assert float(schedule(500)) == 0.0
    # The preset's time limit: no schedule, a rate that CosineDecayToTimeLimit sets by the clock.
    model, settings = _compiled(flags)
    assert settings.time_limit == PRESETS["digits"].time_limit
    assert model.optimizer.get_config()["learning_rate"] == pytest.approx(settings.learning_rate)  # float32
    assert cli._train_config(cli._parsers()["train"].parse_args([])).model_dir == os.path.join(
        "glow_runs", "digits"
    )


def test_time_limit_ends_a_train_run_early(tmp_path, monkeypatch, capsys):
    # In this process (cli.main, what the console script runs): three runs, no start-up each.
    monkeypatch.chdir(tmp_path)

    def train(*args):
        status = cli.main(["tfp-glow", "train", "--model_dir=run", *TINY, *args])
        out, err = capsys.readouterr()
        assert status == 0, err[-3000:]
        return err

    limits = ["--epochs=4", "--time_limit=0.001", "--validation_split=", "--iw_samples=0"]
    stderr = train(*limits)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # The first epoch ends past the limit, so no second one starts; model.keras is that epoch's.
    assert metrics["epochs"] == 1 and metrics["best_epoch"] == 1 and metrics["stopped_by_time_limit"]
    assert "stopping after epoch 1 of 4: another would end past the time limit of 0.001 s" in stderr
    assert (tmp_path / "run" / "model.keras").is_file()
    # The last epoch's grid is written whatever ended the run.
    assert sorted(p.name for p in (tmp_path / "run").glob("samples_epoch_*.png")) == ["samples_epoch_001.png"]
    assert math.isfinite(metrics["test_bits_per_dim_one_sample"])
    assert resume.load_state(str(tmp_path / "run" / "resume")).time_limit == 0.001

    # The same command again: the run is done, not interrupted, so nothing more is trained.
    assert "has trained 1 epochs already, until its time limit of 0.001 s" in train(*limits)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 1
    assert not (tmp_path / "run" / "checkpoints" / "epoch_002.keras").exists()

    # Another limit (0: none) trains it on from where it ended, here to --epochs=2.
    on = ["--epochs=2", "--time_limit=0", "--validation_split=", "--iw_samples=0"]
    assert "resuming from epoch 2" in train(*on)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 2
    assert (tmp_path / "run" / "checkpoints" / "epoch_002.keras").is_file()
    assert resume.load_state(str(tmp_path / "run" / "resume")).time_limit is None
