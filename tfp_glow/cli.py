"""`tfp-glow`: train, evaluate, sample and use Glow models from the command line.

Usage:
  tfp-glow train       [--dataset=digits] [--preset=digits] [--model_dir=glow_runs/digits] [flags]
  tfp-glow evaluate    [--model_dir=DIR] [--dataset=digits] [--test_split=test]
  tfp-glow sample      [--model_dir=DIR] [--num=64] [--temperature=0.7] [--seed=0] [--out=FILE]
  tfp-glow sample      --temperatures=0,0.5,0.7,1.0 [--num_per_row=8] [--seed=0] [--out=FILE]
  tfp-glow interpolate [--model_dir=DIR] [--dataset=digits] [--split=test] [--indices=0,1,2,3]
                       [--steps=8] [--out=FILE]
  tfp-glow inpaint     [--model_dir=DIR] [--mask=center|left|random] [--num=64] [--num_per_row=8]
                       [--inpaint_steps=300] [--langevin] [--seed=0] [--out=FILE]
  tfp-glow export      [--model_dir=DIR] [--export_dir=DIR/export] [--export_version=N]

`train` builds `GlowModel.from_preset(--preset)` (with the architecture flags as overrides),
fits it with Keras for --epochs (the default run, digits without --epochs: as many of its
DIGITS_EPOCHS as end within --time_limit, 255 s, which leaves the imports and the final
evaluation 45 s of the run's 5 minutes on 2 CPU cores) and writes into --model_dir:
  model.keras                  the best epoch by validation bits/dim (the last epoch when there
                               is no validation split); `evaluate` and `sample` load it
  checkpoints/epoch_NNN.keras  the whole model after every epoch (NNN counts from 001)
  resume/                      the training state (weights, optimizer, step, data position),
                               every --checkpoint_every batches and every epoch; a later `train`
                               with the same --model_dir continues from it (see --resume)
  samples_epoch_NNN.png        --num samples at --temperature with seed --seed, every epoch
  logs/                        TensorBoard logs (needs the `tensorboard` package)
  learning_curve.png           train / validation / test bits/dim per epoch
  metrics.json                 history, best_epoch, test_bits_per_dim, test_discrete_bits_per_dim,
                               times, config, flags
and prints `test bits/dim: X.XXX` last, measured on --test_split with model.keras: one sample of
dequantization noise per image (the paper's estimate with uniform noise; with a learned noise
distribution, its variational bound), after the discrete likelihood's importance-sampled estimate
with --iw_samples samples (`discrete test bits/dim (S samples): X.XXX`), which is tighter.

`sample` writes a grid of --num samples at --temperature; with --temperatures it writes one row
of --num_per_row samples per temperature instead, every row from the same noise (so the rows
differ only by the temperature, and the temperature-0 row is the latent mode whatever --seed).

`interpolate` takes the images of --split at --indices in pairs A,B and writes one row per pair:
--steps images on the straight line in latent space from A to B, both ends included.

`inpaint` takes the first --num images of --split, hides the pixels of --mask (center: the
middle half of each side; left: the left half; random: each pixel with probability 1/2, drawn
with --seed), fills them by --inpaint_steps of gradient ascent on log p (or Langevin sampling
with --langevin), and writes blocks of three rows, --num_per_row images wide: the originals,
the masked images (hidden pixels mid-grey) and the inpainted ones. It prints the mean bits/dim
of the inpainted images, of the same images with the hidden pixels filled at random, and of
the originals.

`sample`, `interpolate` and `inpaint` print the PNG file they wrote, last.

`export` writes model.keras as a SavedModel for TF Serving into --export_dir/<version>/ (see
tfp_glow.export) and prints that folder.

The model's image shape is --image_shape, else the dataset's own (`tfp_glow.data.info`); its
levels are the dataset's: `num_bins` for sources that are not 8-bit (17 for digits), else the
preset's `n_bits`.

Exit status: 0 on success, 1 on a run-time error (such as no model.keras in --model_dir),
2 on a usage error (unknown command, bad flag value), reported before any training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from tfp_glow import data, plots, resume
from tfp_glow.callbacks import AtomicCheckpoint, CompiledSwapEMAWeights, TimeLimit
from tfp_glow.export import export_saved_model
from tfp_glow.models import (
    EMA_MOMENTA,
    LEARNING_RATES,
    PAPER_LEARNING_RATE,
    PRESETS,
    GlowModel,
    default_optimizer,
)

__all__ = [
    "DEFAULT_EPOCHS",
    "DIGITS_EPOCHS",
    "DIGITS_TIME_LIMIT",
    "COMMANDS",
    "INTRA_OP_THREADS",
    "main",
    "run",
]

# The default run (digits preset on digits, no --epochs) trains for DIGITS_TIME_LIMIT seconds
# (at most DIGITS_EPOCHS epochs), so that the whole command takes at most 5 minutes on a 2-core CPU
# where the imports and the final evaluation take at most 45 s more: 16 s on the AMD build machine,
# about 27 s on the earlier, slower Intel one (experiments/RESULTS.md).
# Other presets train DEFAULT_EPOCHS by default, with no time limit.
DIGITS_EPOCHS = 300
DIGITS_TIME_LIMIT = 255.0
DEFAULT_EPOCHS = 50
DEFAULT_EMA_MOMENTUM = 0.99
DIGITS_IW_SAMPLES = 64
# Threads per op by preset (TensorFlow's default: one per core). The digits model's ops are so
# small that splitting one over two threads costs more than it gains; running independent ops
# side by side instead makes its training step 25% faster on 2 cores (experiments/RESULTS.md).
INTRA_OP_THREADS = {"digits": 1}
DEFAULT_CHECKPOINT_EVERY = 500
COMMANDS = ("train", "evaluate", "sample", "interpolate", "inpaint", "export")
PROGRAM = "tfp-glow"
EXIT_ERROR = 1
EXIT_USAGE = 2
MODEL_FILE = "model.keras"
RESUME_DIR = "resume"

_HELP_ARGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "dataset",
    "digits",
    "Dataset spec: 'digits' (scikit-learn's 8x8 digits, offline), 'tfds:<name>[:<config>]', "
    "'folder:<path>' or 'npz:<path>' (see tfp_glow.data).",
)
flags.DEFINE_string("data_dir", None, "TensorFlow Datasets data directory (default: TFDS's own).")
flags.DEFINE_enum("preset", "digits", sorted(PRESETS), "Model configuration, see tfp_glow.PRESETS.")
flags.DEFINE_string(
    "model_dir",
    "glow_runs/digits",
    "Folder of the run: train writes model.keras, checkpoints, samples, logs and metrics there; "
    "evaluate and sample read model.keras from it.",
)
flags.DEFINE_integer(
    "epochs",
    None,
    f"Training epochs (at most, with --time_limit). Default: {DIGITS_EPOCHS} for --preset=digits "
    f"(the 5-minute default run, which --time_limit ends sooner), else {DEFAULT_EPOCHS}.",
    lower_bound=1,
)
flags.DEFINE_float(
    "time_limit",
    None,
    "train: seconds from the start of the command's work (after its imports) within which training "
    "ends: no epoch starts that would be expected to end later (each is expected to take as long as "
    "the slowest of the last three); the first epoch always runs, and the final evaluation follows. "
    "A resumed run has the limit anew; the same limit again in a run that it ended trains no "
    "further. 0 for none. Default: "
    f"{DIGITS_TIME_LIMIT:g} for the default run (--preset=digits without --epochs), which leaves the "
    "imports and the final evaluation 45 s of the 5 minutes the run has on 2 CPU cores; else none.",
    lower_bound=0,
)
flags.DEFINE_integer("batch_size", 64, "Images per training and evaluation batch.", lower_bound=1)
flags.DEFINE_float(
    "learning_rate",
    None,
    "Learning rate after the linear warm-up (> 0). Default: the preset's, "
    "tfp_glow.models.LEARNING_RATES (4e-3 for digits), else the paper's 1e-3.",
)
flags.DEFINE_integer("warmup_steps", 200, "Steps of linear learning-rate warm-up.", lower_bound=0)
flags.DEFINE_enum(
    "lr_decay",
    "constant",
    ["constant", "cosine"],
    "Learning rate after the warm-up: 'constant' (the paper's) or 'cosine' (down to 0 at the end of "
    "--epochs, which --time_limit may stop short of).",
)
flags.DEFINE_float("clipnorm", None, "Global gradient-norm clip (> 0); default: no clipping.")
flags.DEFINE_enum("optimizer", "adam", ["adam", "adamax"], "Optimizer.")
flags.DEFINE_float(
    "ema_momentum",
    None,
    "Decay of the moving average of the weights used for validation, checkpoints, samples and the final "
    "model (Polyak averaging, as the reference code); 0 turns it off. Default: the preset's, "
    f"tfp_glow.models.EMA_MOMENTA (0.995 for digits), else {DEFAULT_EMA_MOMENTUM}.",
)
flags.DEFINE_bool("jit_compile", False, "Compile the train and test steps with XLA.")
flags.DEFINE_integer(
    "intra_op_threads",
    None,
    "Threads that one TensorFlow op may use (independent ops still run side by side); 0 for "
    "TensorFlow's default (one per core). Default: for train, the preset's, "
    "tfp_glow.cli.INTRA_OP_THREADS (1 for digits, whose ops are too small to split), else 0; "
    "TF_NUM_INTRAOP_THREADS in the environment takes precedence over the preset's.",
    lower_bound=0,
)
flags.DEFINE_bool(
    "memory_efficient",
    False,
    "Rebuild activations in the backward pass from each step's output (exact inverse) instead of storing "
    "them: training memory independent of depth, about one more pass of compute.",
)
flags.DEFINE_float(
    "dropout",
    None,
    "Dropout rate in [0, 1) of the coupling networks' hidden units in training steps (a regularizer "
    "for small datasets; evaluation and sampling use none). Default: the preset's.",
)
flags.DEFINE_enum(
    "dequantization",
    None,
    ["uniform", "variational"],
    "Dequantization noise of training and evaluation: 'uniform' (the paper's) or 'variational' (a "
    "learned q(u | k), Flow++). Default: the preset's.",
)
flags.DEFINE_enum(
    "strategy",
    "default",
    ["default", "mirrored", "multi_worker", "tpu"],
    "tf.distribute strategy, data parallel, --batch_size being the global batch: 'default' (one "
    "device), 'mirrored' (every local GPU), 'multi_worker' (every worker of the cluster in the "
    "TF_CONFIG environment variable; run the same command on each, the chief, task 0, writes "
    "--model_dir and the others <model_dir>/worker_<index>), 'tpu' (the TPU named by --tpu).",
)
flags.DEFINE_string(
    "tpu",
    None,
    "With --strategy=tpu: the TPU's name or address as tf.distribute.cluster_resolver."
    "TPUClusterResolver takes it ('local' for a TPU VM's own chips, or a name or grpc:// address).",
)
flags.DEFINE_integer(
    "max_nonfinite_steps",
    20,
    "Training steps with a non-finite loss or gradient are skipped (the weights stay as they were); "
    "after this many in one run, training stops with a message.",
    lower_bound=0,
)
flags.DEFINE_bool(
    "resume",
    None,
    "Continue from the last checkpoint in --model_dir/resume (the default when there is one); "
    "--noresume starts afresh and replaces it.",
)
flags.DEFINE_integer(
    "checkpoint_every",
    DEFAULT_CHECKPOINT_EVERY,
    "Training batches between resume checkpoints (also written after every epoch).",
    lower_bound=1,
)
flags.DEFINE_bool(
    "deterministic",
    False,
    "Turn on TensorFlow's op determinism: a run, interrupted and resumed or not, gives the same "
    "weights for the same --seed (slower on GPUs; no XLA, so not with --jit_compile).",
)
flags.DEFINE_integer(
    "seed",
    0,
    "Seed of the initial weights, the data order and the samples (the per-epoch grids use the "
    "same seed every epoch).",
    lower_bound=0,
)
flags.DEFINE_integer("num_levels", None, "L, levels of the flow (default: the preset's).", lower_bound=1)
flags.DEFINE_integer("num_steps", None, "K, steps per level (default: the preset's).", lower_bound=1)
flags.DEFINE_integer(
    "hidden_channels",
    None,
    "Width of the coupling networks (default: the preset's).",
    lower_bound=1,
)
flags.DEFINE_string(
    "image_shape",
    None,
    "Model image shape 'H,W,C', for example '32,32,3'; the data is center-cropped and resized to "
    "it. Default: the dataset's own shape.",
)
flags.DEFINE_string("train_split", "train", "Split to train on ('+' joins splits).")
flags.DEFINE_string(
    "validation_split",
    None,
    "Split evaluated after every epoch, which picks the best epoch; '' for none. "
    "Default: 'validation' for digits, otherwise none.",
)
flags.DEFINE_string("test_split", "test", "Split of the final test bits/dim; '' to skip it in train.")
flags.DEFINE_integer(
    "iw_samples",
    None,
    "train, evaluate: importance samples of the discrete test bits/dim (-log2 P(x) / D, "
    "GlowModel.discrete_bits_per_dim), reported next to the one-sample figure; each sample is one more "
    f"pass over the test split, so the default is {DIGITS_IW_SAMPLES} for `train --preset=digits` and 0 "
    "(skipped) otherwise.",
    lower_bound=0,
)
flags.DEFINE_float("temperature", 0.7, "Sampling temperature (scale of the latent), >= 0.")
flags.DEFINE_integer("num", 64, "Number of samples in each sample grid.", lower_bound=1)
flags.DEFINE_string(
    "out",
    None,
    "sample, interpolate, inpaint: PNG file of the grid (default: <model_dir>/samples.png, "
    "interpolation.png, inpainting.png).",
)
flags.DEFINE_string(
    "temperatures",
    None,
    "sample: comma-separated temperatures >= 0, such as '0,0.5,0.7,1.0': one row of --num_per_row "
    "samples per temperature, all rows from the same noise (replaces --num and --temperature).",
)
flags.DEFINE_integer(
    "num_per_row",
    8,
    "sample --temperatures: samples per temperature row; inpaint: images per row (in blocks of "
    "three rows: originals, masked, inpainted).",
    lower_bound=1,
)
flags.DEFINE_string("split", "test", "interpolate, inpaint: split whose images are used.")
flags.DEFINE_string(
    "indices",
    "0,1,2,3,4,5,6,7",
    "interpolate: comma-separated image indices in --split, taken in pairs A,B (one row each).",
)
flags.DEFINE_integer(
    "steps",
    8,
    "interpolate: images per row, both ends included (>= 2).",
)
flags.DEFINE_enum(
    "mask",
    "center",
    ["center", "left", "random"],
    "inpaint: the pixels hidden and filled in: 'center' (the middle half of each side), 'left' "
    "(the left half) or 'random' (each pixel with probability 1/2, drawn with --seed).",
)
flags.DEFINE_integer("inpaint_steps", 300, "inpaint: gradient-ascent (or Langevin) steps.", lower_bound=1)
flags.DEFINE_bool(
    "langevin",
    False,
    "inpaint: sample the hidden pixels by Langevin dynamics instead of maximizing log p.",
)
flags.DEFINE_string("export_dir", None, "export: SavedModel base folder (default: <model_dir>/export).")
flags.DEFINE_integer(
    "export_version",
    None,
    "export: version folder to write (default: 1 + the largest existing one, or 1).",
    lower_bound=1,
)
flags.DEFINE_integer(
    "verbose",
    1,
    "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.",
    lower_bound=0,
    upper_bound=2,
)


def _parse_image_shape(value: str | None) -> tuple[int, int, int] | None:
    if value is None:
        return None
    try:
        dims = tuple(int(d) for d in value.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"expected three positive integers 'H,W,C', such as '32,32,3'; got {value!r}")
    return dims


def _check_image_shape(value: str | None) -> bool:
    try:
        _parse_image_shape(value)
    except ValueError as error:
        raise flags.ValidationError(str(error)) from None
    return True


flags.register_validator("image_shape", _check_image_shape)
flags.register_validator(
    "learning_rate",
    lambda v: v is None or (math.isfinite(v) and v > 0),
    message="--learning_rate must be a finite number > 0",
)
flags.register_validator(
    "clipnorm",
    lambda v: v is None or (math.isfinite(v) and v > 0),
    message="--clipnorm must be a finite number > 0",
)
flags.register_validator(
    "dropout",
    lambda v: v is None or 0 <= v < 1,
    message="--dropout must be in [0, 1)",
)
flags.register_validator(
    "time_limit",
    lambda v: v is None or (math.isfinite(v) and v >= 0),
    message="--time_limit must be a finite number of seconds >= 0",
)
flags.register_validator(
    "ema_momentum",
    lambda v: v is None or 0 <= v < 1,
    message="--ema_momentum must be in [0, 1)",
)
flags.register_validator(
    "temperature",
    lambda v: math.isfinite(v) and v >= 0,
    message="--temperature must be a finite number >= 0",
)


def _parse_temperatures(value: str) -> list[float]:
    try:
        temperatures = [float(t) for t in value.split(",")]
    except ValueError:
        temperatures = []
    if not temperatures or not all(math.isfinite(t) and t >= 0 for t in temperatures):
        raise ValueError(
            "--temperatures must be comma-separated finite numbers >= 0, such as '0,0.5,0.7,1.0'; "
            f"got {value!r}"
        )
    return temperatures


def _parse_indices(value: str) -> list[tuple[int, int]]:
    try:
        indices = [int(i) for i in value.split(",")]
    except ValueError:
        indices = []
    if not indices or len(indices) % 2 or min(indices) < 0:
        raise ValueError(
            "--indices must be an even number of comma-separated integers >= 0, pairs A,B of "
            f"images to interpolate between, such as '0,1,2,3'; got {value!r}"
        )
    return list(zip(indices[::2], indices[1::2], strict=True))


def _validator(parse: Callable[[str], object]) -> Callable[[str | None], bool]:
    def check(value: str | None) -> bool:
        try:
            if value is not None:
                parse(value)
        except ValueError as error:
            raise flags.ValidationError(str(error)) from None
        return True

    return check


flags.register_validator("temperatures", _validator(_parse_temperatures))
flags.register_validator("indices", _validator(_parse_indices))
flags.register_validator(
    "steps",
    lambda v: v >= 2,
    message="--steps must be an integer >= 2 (the images of a row, both ends included)",
)


class _UsageError(Exception):
    """A bad command or flag value: exit status 2."""


class _RunError(Exception):
    """A failure while running a valid command: exit status 1."""


# --------------------------------------------------------------------------------------------------
# Entry points.


def run(argv: Sequence[str] | None = None) -> None:
    """The `tfp-glow` console script: parses the flags, runs the command and exits."""
    app.run(_main, argv=None if argv is None else list(argv), flags_parser=_parse_flags)


def main(argv: Sequence[str]) -> int:
    """Runs `tfp-glow` in this process and returns its exit status.

    Args:
      argv: the command line, program name first, as `sys.argv`.
    """
    try:
        args = _parse_flags(list(argv))
    except SystemExit as exit_:
        return 0 if exit_.code is None else int(exit_.code)
    return _main(args)


def _parse_flags(argv: list[str]) -> list[str]:
    """Parses `argv` into FLAGS; `--help` prints the usage and exits 0, a bad flag exits 2.

    absl's own parser exits 1 on both; this one exits as command-line tools do.
    """
    options = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
    if any(arg in _HELP_ARGS for arg in options):
        print(_usage(full=True))
        sys.exit(0)
    FLAGS.unparse_flags()  # Values of an earlier parse in this process must not leak into this one.
    try:
        return FLAGS(argv)
    except flags.Error as error:
        FLAGS.unparse_flags()  # Nor may the flags parsed before the bad one stay set.
        _print_usage_error(str(error))
        sys.exit(EXIT_USAGE)


def _main(argv: Sequence[str]) -> int:
    """Dispatches the command; `argv` is what is left after the flags (program name first)."""
    try:
        if len(argv) < 2:
            raise _UsageError(f"missing command: expected one of {', '.join(COMMANDS)}")
        command, extra = argv[1], list(argv[2:])
        if command not in COMMANDS:
            raise _UsageError(f"unknown command {command!r}: expected one of {', '.join(COMMANDS)}")
        if extra:
            raise _UsageError(f"unexpected arguments after {command!r}: {' '.join(extra)}")
        _set_intra_op_threads(command)
        return {
            "train": _train,
            "evaluate": _evaluate,
            "sample": _sample,
            "interpolate": _interpolate,
            "inpaint": _inpaint,
            "export": _export,
        }[command]()
    except _UsageError as error:
        _print_usage_error(str(error))
        return EXIT_USAGE
    except _RunError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return EXIT_ERROR


def _set_intra_op_threads(command: str) -> None:
    """Applies --intra_op_threads before TensorFlow runs its first op; without it, `train` takes
    the preset's (the other commands load a model of any preset, and keep TensorFlow's default),
    unless the environment variable TF_NUM_INTRAOP_THREADS says otherwise."""
    threads = FLAGS.intra_op_threads
    explicit = threads is not None
    if not explicit:
        if command != "train" or os.environ.get("TF_NUM_INTRAOP_THREADS"):
            return
        threads = INTRA_OP_THREADS.get(FLAGS.preset, 0)
    if tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow already ran in this process (`main` called again, as tests do): its
        # threads are fixed. Only a setting the user asked for is worth a word.
        if explicit:
            print(
                f"{PROGRAM}: warning: TensorFlow is already running in this process, so "
                f"--intra_op_threads={threads} has no effect",
                file=sys.stderr,
            )


def _usage(full: bool) -> str:
    text = __doc__.strip()
    if full:
        module = FLAGS.find_module_defining_flag("dataset")
        # module_help's first line names the module file: the program name says it better.
        text += "\n\nFlags:\n" + FLAGS.module_help(module).split("\n", 1)[-1]
    return text


def _print_usage_error(message: str) -> None:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    print(f"Run '{PROGRAM} --help' for the commands and flags.", file=sys.stderr)


def _flag_values() -> dict:
    """This module's flags and their values (what a run records in metrics.json)."""
    module = FLAGS.find_module_defining_flag("dataset")
    return {flag.name: flag.value for flag in FLAGS.flags_by_module_dict()[module]}


# --------------------------------------------------------------------------------------------------
# train.


@dataclasses.dataclass(frozen=True)
class _Datasets:
    train: Callable[[int], tf.data.Dataset]  # epoch -> the training batches from that epoch on
    steps_per_epoch: int
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None


def _train() -> int:
    start = time.perf_counter()
    if FLAGS.deterministic and FLAGS.jit_compile:
        # Keras would silently train without XLA: it turns jit_compile off under op determinism.
        raise _UsageError("--jit_compile cannot be combined with --deterministic (Keras runs no XLA then)")
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    # Everything that can be wrong with the flags or the resume state is found here, before any
    # training and before anything is written.
    strategy = make_strategy(FLAGS.strategy, FLAGS.tpu)
    model_dir = worker_model_dir(strategy, FLAGS.model_dir)
    with strategy.scope():
        model = _build_model()
    datasets = _train_datasets(model)
    with strategy.scope():
        _compile(model, _epochs() * datasets.steps_per_epoch)
        # In the scope: restoring builds the optimizer, whose variables are the strategy's.
        state = _resume_state(model, datasets, model_dir)
    history, epoch_seconds = _fit(model, datasets, model_dir, state, start)
    return _finish(model_dir, datasets, history, epoch_seconds, start)


def _run_identity(datasets: _Datasets) -> dict:
    """What a resume state must share with this run for its data position to mean the same."""
    return {
        "dataset": FLAGS.dataset,
        "train_split": FLAGS.train_split,
        "batch_size": FLAGS.batch_size,
        "seed": FLAGS.seed,
        "steps_per_epoch": datasets.steps_per_epoch,
    }


def _resume_state(model: GlowModel, datasets: _Datasets, model_dir: str) -> resume.TrainingState | None:
    """Restores `model_dir`'s resume state into `model` (per --resume); `None` for a fresh run."""
    directory = os.path.join(model_dir, RESUME_DIR)
    if FLAGS.resume is False:
        return None
    try:
        state = resume.load_state(directory)
        if state is None:
            if FLAGS.resume:
                raise _UsageError(f"--resume: there is no resume state in {directory}")
            return None
        saved = {k: v for k, v in state.run.items() if k != "config"}
        current = _run_identity(datasets)
        if saved != current:
            changed = ", ".join(
                f"{k}={saved.get(k)!r} there, {v!r} here" for k, v in current.items() if saved.get(k) != v
            )
            raise ValueError(
                f"the resume state in {directory} is of a run on other data ({changed}); "
                "train into a new --model_dir, or pass --noresume to start this one afresh"
            )
        resume.restore(model, directory, state)
    except ValueError as error:
        raise _RunError(str(error)) from None
    print(
        f"{PROGRAM}: resuming from epoch {state.epoch + 1}, batch {state.batch} "
        f"(training batch {state.global_step} of the run) in {directory}",
        file=sys.stderr,
    )
    return state


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """The tf.distribute strategy of --strategy (and --tpu); Keras trains in its scope."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # The cluster and this worker's place in it come from TF_CONFIG; without one, one worker.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        if not tpu:
            raise _UsageError("--strategy=tpu needs --tpu (a TPU name, a grpc:// address, or 'local')")
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            raise _RunError(f"cannot use the TPU --tpu={tpu}: {error}") from None
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def worker_model_dir(strategy: tf.distribute.Strategy, model_dir: str) -> str:
    """Where this worker writes: `model_dir` for the chief (or the only worker), else
    `<model_dir>/<task type>_<index>`.

    Every worker saves, as Keras asks of multi-worker training, but only the chief's files are the
    run's; the others keep theirs for resuming. The chief is the `chief` task if the cluster has
    one, else worker 0.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return model_dir
    task_id = resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0):
        return model_dir
    return os.path.join(model_dir, f"{task_type}_{task_id}")


def _compile(model: GlowModel, total_steps: int) -> None:
    decay_steps = None
    if FLAGS.lr_decay == "cosine":
        if total_steps <= FLAGS.warmup_steps:
            raise _UsageError(
                f"--lr_decay=cosine needs more training steps ({_epochs()} epochs of "
                f"{total_steps // _epochs()} batches = {total_steps}) than "
                f"--warmup_steps={FLAGS.warmup_steps}"
            )
        decay_steps = total_steps
    model.compile(
        optimizer=default_optimizer(
            _learning_rate(),
            FLAGS.warmup_steps,
            FLAGS.clipnorm,
            name=FLAGS.optimizer,
            ema_momentum=_ema_momentum() or None,
            decay_steps=decay_steps,
        ),
        jit_compile=FLAGS.jit_compile,
    )


def _finish(model_dir: str, datasets, history, epoch_seconds, start: float) -> int:
    """Reloads the best model, evaluates it on the test split, writes the plots and metrics.json."""
    if not history.get("bits_per_dim"):
        raise _RunError("training stopped before the end of the first epoch (non-finite loss?)")
    best_epoch = _best_epoch(history)

    model_path = os.path.join(model_dir, MODEL_FILE)
    if not os.path.isfile(model_path):
        raise _RunError(f"no epoch had a finite val_bits_per_dim, so {model_path} was not written")
    best = _load_model(model_path)
    test_bpd = discrete_bpd = None
    if datasets.test is not None:
        test_bpd = _test_bits_per_dim(best, datasets.test)
        discrete_bpd = _discrete_bits_per_dim(best, datasets.test, _iw_samples(train=True))
    plots.plot_learning_curve(
        {**history, "test_bits_per_dim": [] if test_bpd is None else [test_bpd]},
        os.path.join(model_dir, "learning_curve.png"),
    )
    metrics = {
        "history": history,
        "epochs": len(history["bits_per_dim"]),
        "epoch_seconds": epoch_seconds,
        "best_epoch": best_epoch,
        "best_by": "val_bits_per_dim" if datasets.validation is not None else "last epoch",
        "test_split": FLAGS.test_split or None,
        "test_bits_per_dim": test_bpd,
        "test_discrete_bits_per_dim": discrete_bpd,
        "iw_samples": _iw_samples(train=True) if discrete_bpd is not None else None,
        "learning_rate": _learning_rate(),
        "ema_momentum": _ema_momentum(),
        "wall_seconds": time.perf_counter() - start,
        "config": best.get_config(),
        "flags": _flag_values(),
    }
    with open(os.path.join(model_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, default=str)
        f.write("\n")
    print(f"best epoch: {best_epoch}, model: {model_path}")
    if discrete_bpd is not None:
        print(f"discrete test bits/dim ({_iw_samples(train=True)} samples): {discrete_bpd:.3f}")
    print("test bits/dim: " + ("n/a (no --test_split)" if test_bpd is None else f"{test_bpd:.3f}"))
    return 0


def _build_model() -> GlowModel:
    """GlowModel.from_preset(--preset) with the architecture flags and the dataset's levels."""
    preset = PRESETS[FLAGS.preset]
    info = _dataset_info(FLAGS.dataset, _parse_image_shape(FLAGS.image_shape))
    overrides = dict(image_shape=info.image_shape, seed=FLAGS.seed)
    if info.num_bins != 256:
        overrides["num_bins"] = info.num_bins
    else:
        # 8-bit data: the preset's bit depth (8 when it names none, as the digits preset).
        overrides.update(num_bins=None, n_bits=preset.get("n_bits", 8))
    if FLAGS.memory_efficient:
        overrides["memory_efficient"] = True
    for name in ("num_levels", "num_steps", "hidden_channels", "dequantization", "dropout"):
        if FLAGS[name].value is not None:
            overrides[name] = FLAGS[name].value
    keras.utils.set_random_seed(FLAGS.seed)
    try:
        return GlowModel.from_preset(FLAGS.preset, **overrides)
    except ValueError as error:
        raise _UsageError(
            f"--preset={FLAGS.preset} cannot model this data with "
            f"image_shape={','.join(map(str, info.image_shape))}: {error}"
        ) from None


def _train_datasets(model: GlowModel) -> _Datasets:
    validation_split = FLAGS.validation_split
    if validation_split is None:
        validation_split = "validation" if FLAGS.dataset == "digits" else ""
    one_epoch = _load(model, "train_split", FLAGS.train_split, shuffle=True)
    return _Datasets(
        train=lambda epoch: _load(model, "train_split", FLAGS.train_split, shuffle=True, start_epoch=epoch),
        steps_per_epoch=data.num_batches(one_epoch),
        validation=_load(model, "validation_split", validation_split) if validation_split else None,
        test=_load(model, "test_split", FLAGS.test_split) if FLAGS.test_split else None,
    )


def _fit(
    model: GlowModel,
    datasets: _Datasets,
    model_dir: str,
    state: resume.TrainingState | None,
    start: float,
):
    """Fits `model` up to --epochs from `state`, within --time_limit of `start` (`time.perf_counter`);
    returns the run's history (lists per epoch) and epoch times.

    A state in the middle of an epoch is continued by a `fit` over that epoch's remaining batches,
    then one over the remaining epochs, with the same callbacks. A resumed run has its time limit
    anew, except that a run which its time limit ended is done: the same limit again trains no
    further (another limit does).
    """
    spe = datasets.steps_per_epoch
    epoch, batch = (state.epoch, state.batch) if state else (0, 0)
    checkpoint = resume.ResumeCheckpoint(
        os.path.join(model_dir, RESUME_DIR), FLAGS.checkpoint_every, spe, _run_identity(datasets), state
    )
    fits = []  # (first epoch, epochs, batches per epoch)
    if state is not None and not batch and state.time_limit == _time_limit():
        print(
            f"{PROGRAM}: {model_dir} has trained {epoch} epochs already, until its time limit of "
            f"{state.time_limit:g} s; pass another --time_limit (0 for none) to train it further",
            file=sys.stderr,
        )
    else:
        if batch:
            fits.append((epoch, epoch + 1, spe - batch))
        if epoch + bool(batch) < _epochs():
            fits.append((epoch + bool(batch), _epochs(), spe))
        elif not batch:
            print(
                f"{PROGRAM}: {model_dir} has trained {epoch} epochs already (--epochs={_epochs()})",
                file=sys.stderr,
            )
    # Last, so that the epoch times it measures hold every other callback's work.
    time_limit = [TimeLimit(_time_limit(), start=start)] if _time_limit() else []
    for i, (first, epochs, steps) in enumerate(fits):
        if i:
            # Keras ends a fit by writing the averaged (EMA) weights over the trained ones (or, when
            # a callback stopped it, the trained ones over the averages swapped in): the next fit
            # goes on from the committed trained weights, as an uninterrupted run does.
            resume.restore(model, checkpoint.directory, resume.load_state(checkpoint.directory))
        model.fit(
            datasets.train(first).skip(spe - steps),
            validation_data=datasets.validation,
            initial_epoch=first,
            epochs=epochs,
            steps_per_epoch=steps,
            callbacks=[
                *_train_callbacks(model_dir, datasets.validation is not None, checkpoint.history),
                checkpoint,
                *time_limit,
            ],
            verbose=FLAGS.verbose,
            shuffle=False,  # tfp_glow.data shuffles every epoch, by (seed, epoch).
        )
        if model.stop_training:
            stopped = time_limit[0].stopped_epoch if time_limit else None
            if stopped is not None and stopped + 1 < _epochs():
                checkpoint.end_at_time_limit(_time_limit())
                print(
                    f"{PROGRAM}: stopping after epoch {stopped + 1} of {_epochs()}: another would end past "
                    f"--time_limit={_time_limit():g} s",
                    file=sys.stderr,
                )
            break
    return checkpoint.history, checkpoint.epoch_seconds


def _train_callbacks(
    model_dir: str, has_validation: bool, history: dict[str, list[float]]
) -> list[keras.callbacks.Callback]:
    """The callbacks of `train`; `history` holds the epochs done before this process (resuming)."""
    nonfinite = NonFiniteLimit(FLAGS.max_nonfinite_steps)
    nonfinite.previous_epochs = nonfinite.total = float(sum(history.get("nonfinite_steps", [])))
    callbacks = [keras.callbacks.TerminateOnNaN(), nonfinite]
    if _ema_momentum():
        # First, so that validation and the callbacks below see the averaged weights.
        callbacks.append(CompiledSwapEMAWeights(swap_on_epoch=True))
    every_epoch = AtomicCheckpoint(os.path.join(model_dir, "checkpoints", "epoch_{epoch:03d}.keras"))
    # The best epoch by validation bits/dim; without validation, every epoch (so the last).
    # A copy of the epoch's checkpoint, just written, rather than a second save.
    best = AtomicCheckpoint(
        os.path.join(model_dir, MODEL_FILE),
        monitor="val_bits_per_dim" if has_validation else None,
        copy_from=every_epoch,
    )
    if has_validation:
        best.best = resume.best_of(history, "val_bits_per_dim")
    callbacks += [
        every_epoch,
        best,
        SampleGrid(model_dir, num=FLAGS.num, temperature=FLAGS.temperature, seed=FLAGS.seed),
    ]
    callbacks.append(keras.callbacks.TensorBoard(os.path.join(model_dir, "logs")))
    return callbacks


def _best_epoch(history: dict[str, list[float]]) -> int:
    """1-based epoch of model.keras: the first lowest val_bits_per_dim, else the last epoch."""
    values = np.asarray(history.get("val_bits_per_dim", []), np.float64)
    if values.size and np.isfinite(values).any():
        return int(np.nanargmin(np.where(np.isfinite(values), values, np.nan))) + 1
    return len(history["bits_per_dim"])


class SampleGrid(keras.callbacks.Callback):
    """Writes `samples_epoch_NNN.png` (NNN: 1-based epoch) after every epoch.

    The grid holds `num` samples at `temperature` from the same `seed` every epoch, so the
    files show how the same latents decode as training goes on.
    """

    def __init__(self, directory: str, num: int = 64, temperature: float = 0.7, seed: int = 0):
        super().__init__()
        self.directory = directory
        self.num = num
        self.temperature = temperature
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        path = os.path.join(self.directory, f"samples_epoch_{epoch + 1:03d}.png")
        _write_samples(self.model, path, self.num, self.temperature, self.seed)


class NonFiniteLimit(keras.callbacks.Callback):
    """Stops training once more than `limit` steps were skipped as non-finite.

    GlowModel skips such steps and counts them per epoch (`nonfinite_steps`); a few
    are survivable, many mean the run has diverged.
    """

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit
        self.previous_epochs = 0.0
        self.total = 0.0

    def on_train_batch_end(self, batch, logs=None):
        self.total = self.previous_epochs + float((logs or {}).get("nonfinite_steps", 0.0))
        if self.total > self.limit and not self.model.stop_training:
            print(
                f"{PROGRAM}: stopping: {self.total:.0f} training steps had a non-finite loss or gradient "
                f"(--max_nonfinite_steps={self.limit}); the weights never took them.",
                file=sys.stderr,
            )
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.previous_epochs = self.total


# --------------------------------------------------------------------------------------------------
# evaluate, sample and export.


def _evaluate() -> int:
    if not FLAGS.test_split:
        raise _UsageError("--test_split must name a split to evaluate on")
    model = _load_model(os.path.join(FLAGS.model_dir, MODEL_FILE))
    dataset = _load(model, "test_split", FLAGS.test_split)
    samples = _iw_samples(train=False)
    discrete_bpd = _discrete_bits_per_dim(model, dataset, samples)
    if discrete_bpd is not None:
        print(f"discrete test bits/dim ({samples} samples): {discrete_bpd:.3f}")
    print(f"test bits/dim: {_test_bits_per_dim(model, dataset):.3f}")
    return 0


def _sample() -> int:
    model = _load_model(os.path.join(FLAGS.model_dir, MODEL_FILE))
    out = FLAGS.out or os.path.join(FLAGS.model_dir, "samples.png")
    if FLAGS.temperatures is None:
        _write_samples(model, out, FLAGS.num, FLAGS.temperature, FLAGS.seed)
    else:
        grid = model.temperature_grid(
            _parse_temperatures(FLAGS.temperatures), num_per_row=FLAGS.num_per_row, seed=FLAGS.seed
        ).numpy()
        plots.save_png(out, _rows_grid(list(grid), _input_levels(model)))
    print(out)
    return 0


def _interpolate() -> int:
    pairs = _parse_indices(FLAGS.indices)
    model = _load_model(os.path.join(FLAGS.model_dir, MODEL_FILE))
    images = _split_images(model)
    _check_indices(pairs, len(images))
    a, b = (images[[pair[i] for pair in pairs]] for i in (0, 1))
    path = model.interpolate(a, b, steps=FLAGS.steps).numpy()  # [steps, pairs, H, W, C]
    out = FLAGS.out or os.path.join(FLAGS.model_dir, "interpolation.png")
    plots.save_png(out, _rows_grid(list(path.swapaxes(0, 1)), _input_levels(model)))
    print(out)
    return 0


def _inpaint() -> int:
    model = _load_model(os.path.join(FLAGS.model_dir, MODEL_FILE))
    images = _split_images(model)[: FLAGS.num]
    if not len(images):
        raise _UsageError(f"--split={FLAGS.split} of --dataset={FLAGS.dataset} has no images")
    levels = _input_levels(model)
    mask = inpainting_mask(FLAGS.mask, images.shape, FLAGS.seed)
    completed, bits = model.inpaint(
        images, mask, steps=FLAGS.inpaint_steps, langevin=FLAGS.langevin, seed=FLAGS.seed
    )
    completed = completed.numpy()
    # The baseline: the same hidden pixels filled with uniformly random levels.
    noise = np.random.default_rng(FLAGS.seed).integers(0, levels, images.shape)
    random_fill = np.where(mask, noise, images).astype(np.uint8)
    masked = np.where(mask, (levels - 1) // 2, images).astype(np.uint8)  # hidden pixels mid-grey
    rows = []
    for start in range(0, len(images), FLAGS.num_per_row):
        block = slice(start, start + FLAGS.num_per_row)
        if rows:
            rows.append(images[:0])  # an empty row between blocks
        rows += [images[block], masked[block], completed[block]]
    out = FLAGS.out or os.path.join(FLAGS.model_dir, "inpainting.png")
    plots.save_png(out, _rows_grid(rows, levels))
    print(f"inpainted bits/dim: {float(np.mean(bits)):.3f}")
    print(f"random-fill bits/dim: {float(np.mean(model.score(random_fill))):.3f}")
    print(f"original bits/dim: {float(np.mean(model.score(images))):.3f}")
    print(out)
    return 0


def inpainting_mask(kind: str, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """The boolean mask of `tfp-glow inpaint --mask=kind` for images [N, H, W, C], True where hidden.

    'center' hides rows and columns [n // 4, n // 4 + n // 2) of each side n (the middle half),
    'left' the columns [0, W // 2), 'random' each pixel (all its channels) with probability 1/2
    from `seed`.
    """
    n, h, w, c = shape
    mask = np.zeros(shape, bool)
    if kind == "center":
        mask[:, h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = True
    elif kind == "left":
        mask[:, :, : w // 2] = True
    elif kind == "random":
        mask[:] = np.random.default_rng(seed).random((n, h, w, 1)) < 0.5
    else:
        raise ValueError(f"unknown mask {kind!r}: expected 'center', 'left' or 'random'")
    return mask


def _export() -> int:
    model = _load_model(os.path.join(FLAGS.model_dir, MODEL_FILE))
    export_dir = FLAGS.export_dir or os.path.join(FLAGS.model_dir, "export")
    try:
        path = export_saved_model(model, export_dir, FLAGS.export_version)
    except OSError as error:  # FileExistsError for an existing version
        raise _RunError(f"cannot export to {export_dir}: {error}") from error
    print(path)
    return 0


# --------------------------------------------------------------------------------------------------
# Helpers.


def _dataset_info(spec: str, image_shape: tuple[int, int, int] | None) -> data.DatasetInfo:
    try:
        return data.info(spec, image_shape=image_shape, data_dir=FLAGS.data_dir)
    except (ValueError, OSError) as error:
        hint = " (set --image_shape=H,W,C)" if image_shape is None and "image_shape" in str(error) else ""
        raise _UsageError(f"--dataset={spec}: {error}{hint}") from None


def _load(
    model: GlowModel, flag: str, split: str, shuffle: bool | None = None, start_epoch: int | None = None
):
    """The batched split for `model`, resized to its image shape; checks the levels match.

    With `start_epoch`, the split repeats indefinitely from that epoch on (see `data.load`).
    """
    spec = FLAGS.dataset
    info = _dataset_info(spec, model.image_shape)
    levels = _input_levels(model)
    if info.num_bins != levels:
        raise _UsageError(f"--dataset={spec} has {info.num_bins} pixel levels but the model expects {levels}")
    try:
        return data.load(
            spec,
            split,
            FLAGS.batch_size,
            image_shape=model.image_shape,
            shuffle=shuffle,
            seed=FLAGS.seed,
            repeat=start_epoch is not None,
            start_epoch=start_epoch or 0,
            drop_remainder=FLAGS.strategy == "tpu",  # TPUs compile for one static batch shape
            data_dir=FLAGS.data_dir,
        )
    except (ValueError, OSError) as error:
        raise _UsageError(f"--{flag}={split}: {error}") from None


def _input_levels(model: GlowModel) -> int:
    """Levels of the model's integer images (input and samples): num_bins, or 256 if n-bit."""
    return model.num_bins if model.n_bits is None else 256


def _load_model(path: str) -> GlowModel:
    if not os.path.isfile(path):
        raise _RunError(
            f"no trained model at {path} (train one with `{PROGRAM} train --model_dir=...`, "
            "or point --model_dir at a run)"
        )
    try:
        model = keras.models.load_model(path)
    except Exception as error:  # Any failure to read the file is the user's to fix, not a bug.
        raise _RunError(f"cannot load the model {path}: {error}") from error
    if not isinstance(model, GlowModel):
        raise _RunError(f"{path} holds a {type(model).__name__}, not a GlowModel")
    return model


def _test_bits_per_dim(model: GlowModel, dataset) -> float:
    result = model.evaluate(dataset, return_dict=True, verbose=FLAGS.verbose)
    return float(result["bits_per_dim"])


def _iw_samples(train: bool) -> int:
    """--iw_samples, or its default: DIGITS_IW_SAMPLES for `train --preset=digits`, else 0."""
    if FLAGS.iw_samples is not None:
        return FLAGS.iw_samples
    return DIGITS_IW_SAMPLES if train and FLAGS.preset == "digits" else 0


def _epochs() -> int:
    """--epochs, or its default: DIGITS_EPOCHS for --preset=digits, else DEFAULT_EPOCHS."""
    return FLAGS.epochs or (DIGITS_EPOCHS if FLAGS.preset == "digits" else DEFAULT_EPOCHS)


def _ema_momentum() -> float:
    """--ema_momentum, or the preset's."""
    if FLAGS.ema_momentum is not None:
        return FLAGS.ema_momentum
    return EMA_MOMENTA.get(FLAGS.preset, DEFAULT_EMA_MOMENTUM)


def _time_limit() -> float:
    """--time_limit, or its default: DIGITS_TIME_LIMIT for the default run (--preset=digits without
    --epochs), else 0 (none)."""
    if FLAGS.time_limit is not None:
        return FLAGS.time_limit
    return DIGITS_TIME_LIMIT if FLAGS.preset == "digits" and FLAGS.epochs is None else 0.0


def _learning_rate() -> float:
    """--learning_rate, or the preset's."""
    return FLAGS.learning_rate or LEARNING_RATES.get(FLAGS.preset, PAPER_LEARNING_RATE)


def _discrete_bits_per_dim(model: GlowModel, dataset, samples: int) -> float | None:
    """Mean importance-sampled discrete bits/dim over `dataset` (`None` for 0 samples)."""
    if not samples:
        return None
    total, count = 0.0, 0
    for batch in dataset:
        images, labels = batch if isinstance(batch, (tuple, list)) else (batch, None)
        bpd = model.discrete_bits_per_dim(images, labels, num_samples=samples, seed=FLAGS.seed)
        total += float(tf.reduce_sum(bpd))
        count += int(bpd.shape[0])
    return total / count


def _split_images(model: GlowModel) -> np.ndarray:
    """All images of --split, at the model's image shape (interpolate and inpaint)."""
    if not FLAGS.split:
        raise _UsageError("--split must name a split of --dataset")
    info = _dataset_info(FLAGS.dataset, model.image_shape)
    levels = _input_levels(model)
    if info.num_bins != levels:
        raise _UsageError(
            f"--dataset={FLAGS.dataset} has {info.num_bins} pixel levels but the model expects {levels}"
        )
    try:
        return data.load_numpy(
            FLAGS.dataset, FLAGS.split, image_shape=model.image_shape, data_dir=FLAGS.data_dir
        )
    except (ValueError, OSError) as error:
        raise _UsageError(f"--split={FLAGS.split}: {error}") from None


def _check_indices(pairs: list[tuple[int, int]], num_images: int) -> None:
    largest = max(max(pair) for pair in pairs)
    if largest >= num_images:
        raise _UsageError(
            f"--indices={FLAGS.indices}: index {largest} is out of range; --split={FLAGS.split} "
            f"of --dataset={FLAGS.dataset} has {num_images} images (indices 0 to {num_images - 1})"
        )


def _rows_grid(rows: list[np.ndarray], levels: int) -> np.ndarray:
    """One grid row per entry of `rows` (images [n_i, H, W, C]); short rows end in blank cells."""
    cols = max(len(row) for row in rows)
    shape = next(row.shape[1:] for row in rows if len(row))
    blank = np.full((1, *shape), levels - 1, np.uint8)  # drawn as 255, as the padding
    cells = [np.concatenate([row.astype(np.uint8), *[blank] * (cols - len(row))]) for row in rows]
    return plots.image_grid(np.concatenate(cells), levels, rows=len(rows))


def _write_samples(model: GlowModel, path: str, num: int, temperature: float, seed: int) -> None:
    images = model.sample(num, temperature=float(temperature), seed=seed).numpy()
    plots.save_png(path, plots.image_grid(images, _input_levels(model)))


if __name__ == "__main__":
    run()
