"""A training run as a Python API: a `TrainConfig` in, a trained model and its figures out.

    from tfp_glow.training import TrainConfig, train
    result = train(TrainConfig())              # the default run: the digits preset on digits
    result.test_bits_per_dim                   # the paper's one-sample estimate
    result.test_discrete_bits_per_dim          # 64 importance samples: the discrete likelihood
    result.model                               # the best epoch's GlowModel

`train` builds `GlowModel.from_preset(config.preset)` (the preset of the dataset by default)
with the config's architecture overrides, fits it with Keras in a `tf.distribute` strategy and
writes into `config.model_dir`:

  run.json                     the run's config, which `load_run` (and every CLI verb) reads
  model.keras                  the best epoch by validation bits/dim (the last epoch without a
                               validation split), without optimizer state
  checkpoints/epoch_NNN.keras  the model after the last `keep_checkpoints` epochs (NNN from 001)
  resume/                      the training state (weights, optimizer, step, data position),
                               every `checkpoint_every` batches and every epoch; a later `train`
                               of the same model_dir continues from it
  samples_epoch_NNN.png        a grid of samples every `sample_every` epochs and after the last
  logs/                        TensorBoard scalars and the sample grids (`samples`)
  learning_curve.png           train / validation / test bits/dim per epoch
  metrics.json                 history, best epoch, test figures, times, config

Every per-preset default (learning rate, moving-average decay, epochs or time limit, dropout,
importance samples, threads) is the preset's (`tfp_glow.models.presets`); a field of the config
that is `None` takes it. Resuming, the time limit, the weight average, the non-finite limit,
checkpoints and sample grids are the Keras callbacks of `tfp_glow.callbacks`.
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

from tfp_glow import data, files, plots, resume
from tfp_glow.bijectors.stacked_flow_steps import check_memory_efficient
from tfp_glow.callbacks import (
    AtomicCheckpoint,
    CompiledSwapEMAWeights,
    CosineDecayToTimeLimit,
    NonFiniteLimit,
    ResumeCheckpoint,
    SampleGrid,
    TimeLimit,
)
from tfp_glow.models import PRESETS, GlowModel, Preset, default_optimizer, get_preset, preset_for_dataset

__all__ = [
    "ARCHITECTURE",
    "MODEL_FILE",
    "Run",
    "RunError",
    "TrainConfig",
    "TrainResult",
    "UsageError",
    "load_run",
    "make_strategy",
    "test_figures",
    "train",
]

MODEL_FILE = "model.keras"
RUN_FILE = "run.json"
RESUME_DIR = "resume"
# GlowModel arguments a run may override in its preset.
ARCHITECTURE = ("num_levels", "num_steps", "hidden_channels", "dequantization", "dropout", "memory_efficient")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
# TrainConfig.precision -> the GlowModel's Keras dtype policy.
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# About this many sample grids per run when `sample_every` is not given.
SAMPLE_GRIDS = 10


class UsageError(ValueError):
    """A config that cannot train: a bad value, or a model_dir whose state does not fit it."""


class RunError(RuntimeError):
    """A valid config whose run cannot go on: a damaged file, a model that cannot be read."""


@dataclasses.dataclass
class TrainConfig:
    """What a training run does; `None` fields take the preset's defaults.

    Attributes:
      dataset: dataset spec (`tfp_glow.data`): 'digits', 'tfds:<name>', 'folder:<path>', 'npz:<path>'.
      preset: the model configuration (`tfp_glow.models.PRESETS`); `None`: the dataset's preset.
      model_dir: folder of the run (see the module docstring).
      architecture: `GlowModel` arguments that override the preset's (of `ARCHITECTURE`).
      image_shape: `(H, W, C)` the data is resized to; `None`: the dataset's own.
      epochs: training epochs (at most, with a time limit); `None`: the preset's.
      time_limit: seconds from the start of `train` within which training ends (no epoch starts
        that would end later); 0 for none. `None`: the preset's when `epochs` is `None`, else none.
      batch_size: images per training and evaluation batch (the global batch under a strategy).
      learning_rate: the rate after the linear warm-up; `None`: the preset's.
      warmup_steps: steps of the linear warm-up.
      lr_decay: 'constant' (the paper's) or 'cosine' (to 0 at the end of training: the last
        of `epochs`, or with a time limit the end of the limit, by the clock, whichever comes
        first).
      clipnorm: optional global gradient-norm clip.
      optimizer: 'adam' or 'adamax'.
      ema_momentum: decay of the weights' moving average used for validation, checkpoints,
        samples and the final model; 0 for none; `None`: the preset's.
      jit_compile: compile the train and test steps with XLA.
      precision: 'fp32', or mixed precision 'bf16' / 'fp16' (the model's dtype policy
        'mixed_bfloat16' / 'mixed_float16', see `GlowModel`).
      intra_op_threads: threads per TensorFlow op (0: TensorFlow's default); `None`: the
        preset's, unless TF_NUM_INTRAOP_THREADS is set. It takes effect only before TensorFlow
        first runs in the process.
      strategy: 'default', 'mirrored' (every local GPU), 'multi_worker' (the cluster of
        TF_CONFIG) or 'tpu' (the TPU `tpu`).
      tpu: the TPU's name or address for strategy='tpu' ('local' on a TPU VM).
      max_nonfinite_steps: skipped non-finite steps after which training stops.
      resume: continue from model_dir's resume state: `None` (when there is one), `True`
        (required), `False` (start afresh, replacing it).
      checkpoint_every: training batches between resume commits (also after every epoch).
      keep_checkpoints: epoch checkpoints kept on disk (0: none).
      sample_every: epochs between sample grids (the last epoch's is always written); `None`:
        about ten grids per run.
      num_samples: samples per grid.
      temperature: temperature of the grids' samples.
      deterministic: TensorFlow's op determinism (the same weights for the same seed,
        interrupted or not; not with `jit_compile`).
      seed: seed of the initial weights, the data order and the samples.
      train_split: the split to train on; `None`: the preset's for its own dataset, else 'train'.
      validation_split, test_split: splits to pick the best epoch by (`None`: the preset's for
        its own dataset, else none; '' for none), and of the final test figures ('' to skip).
      iw_samples: importance samples of the final discrete bits/dim (0: skipped); `None`: the
        preset's.
      data_dir: TensorFlow Datasets data directory.
      verbose: Keras verbosity (0 silent, 1 progress bar, 2 one line per epoch).
    """

    dataset: str = "digits"
    preset: str | None = None
    model_dir: str = os.path.join("glow_runs", "digits")
    architecture: dict = dataclasses.field(default_factory=dict)
    image_shape: tuple[int, int, int] | None = None
    epochs: int | None = None
    time_limit: float | None = None
    batch_size: int = 64
    learning_rate: float | None = None
    warmup_steps: int = 200
    lr_decay: str = "constant"
    clipnorm: float | None = None
    optimizer: str = "adam"
    ema_momentum: float | None = None
    jit_compile: bool = False
    precision: str = "fp32"
    intra_op_threads: int | None = None
    strategy: str = "default"
    tpu: str | None = None
    max_nonfinite_steps: int = 20
    resume: bool | None = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    sample_every: int | None = None
    num_samples: int = 64
    temperature: float = 0.7
    deterministic: bool = False
    seed: int = 0
    train_split: str | None = None
    validation_split: str | None = None
    test_split: str = "test"
    iw_samples: int | None = None
    data_dir: str | None = None
    verbose: int = 1

    def __post_init__(self):
        if self.image_shape is not None:
            self.image_shape = tuple(self.image_shape)
        _check(self)

    def to_json(self) -> dict:
        """The config as JSON values (`from_json` reads it back)."""
        fields = dataclasses.asdict(self)
        fields["image_shape"] = None if self.image_shape is None else list(self.image_shape)
        return fields

    @classmethod
    def from_json(cls, fields: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in known})


@dataclasses.dataclass
class TrainResult:
    """What a run gave.

    Attributes:
      model: the best epoch's model (`model_path`), reloaded.
      history: per-epoch logs of the whole run (resumed epochs included).
      epochs: epochs trained in all.
      best_epoch: 1-based epoch of `model`.
      test_bits_per_dim: the test split's bits/dim with one dequantization sample per image (the
        paper's estimate, an upper bound), or `None` without a test split.
      test_discrete_bits_per_dim: the same with `iw_samples` importance samples, the discrete
        likelihood's estimate, or `None` when skipped.
      iw_samples: the importance samples of `test_discrete_bits_per_dim`.
      stopped_by_time_limit: whether the time limit ended training before `epochs`.
      model_dir, model_path, metrics_path: where the run is.
      wall_seconds: the run's time, from the start of `train`.
    """

    model: GlowModel
    history: dict
    epochs: int
    best_epoch: int
    test_bits_per_dim: float | None
    test_discrete_bits_per_dim: float | None
    iw_samples: int
    stopped_by_time_limit: bool
    model_dir: str
    model_path: str
    metrics_path: str
    wall_seconds: float


@dataclasses.dataclass(frozen=True)
class _Settings:
    """A config with every preset default resolved."""

    preset: Preset
    epochs: int
    time_limit: float
    learning_rate: float
    ema_momentum: float
    iw_samples: int
    intra_op_threads: int | None
    train_split: str
    validation_split: str
    sample_every: int


def resolve(config: TrainConfig) -> _Settings:
    """The config's preset and its defaults for every `None` field.

    Raises:
      UsageError: for a dataset without a preset when none is named.
    """
    preset = get_preset(config.preset) if config.preset else preset_for_dataset(config.dataset)
    if preset is None:
        dataset_info(config.dataset, config.image_shape, config.data_dir)  # an unknown spec first
        raise UsageError(
            f"There is no preset for dataset {config.dataset!r}: name one, such as preset='mnist' "
            f"(one of {sorted(PRESETS)}). Received: dataset={config.dataset!r}, preset=None"
        )
    epochs = config.epochs or preset.epochs
    if config.time_limit is not None:
        time_limit = config.time_limit
    else:
        time_limit = preset.time_limit if config.epochs is None and preset.time_limit else 0.0
    ema_momentum = preset.ema_momentum if config.ema_momentum is None else config.ema_momentum
    same_data = preset_for_dataset(config.dataset) is preset
    if config.validation_split is not None:
        validation_split = config.validation_split
    else:
        validation_split = (preset.validation_split or "") if same_data else ""
    train_split = config.train_split or (preset.train_split if same_data else "train")
    threads = config.intra_op_threads
    if threads is None and not os.environ.get("TF_NUM_INTRAOP_THREADS"):
        threads = preset.intra_op_threads
    return _Settings(
        preset=preset,
        epochs=epochs,
        time_limit=time_limit,
        learning_rate=config.learning_rate or preset.learning_rate,
        ema_momentum=ema_momentum or 0.0,
        iw_samples=preset.iw_samples if config.iw_samples is None else config.iw_samples,
        intra_op_threads=threads,
        train_split=train_split,
        validation_split=validation_split,
        sample_every=config.sample_every or max(1, epochs // SAMPLE_GRIDS),
    )


def train(
    config: TrainConfig | None = None, callbacks: Sequence[keras.callbacks.Callback] = ()
) -> TrainResult:
    """Trains a GlowModel as `config` says, resuming from its model_dir's state if there is one.

    Everything that can be wrong with the config or the resume state is found before any
    training and before anything is written.

    Args:
      config: the run; default `TrainConfig()`, the default run (digits).
      callbacks: more Keras callbacks for `fit`, after tfp-glow's own.

    Returns:
      A `TrainResult`.

    Raises:
      UsageError: for a config that cannot train (a bad value, a dataset or image shape the
        preset cannot model, a resume state of another run).
    """
    start = time.perf_counter()
    config = config or TrainConfig()
    settings = resolve(config)
    _set_intra_op_threads(settings.intra_op_threads, explicit=config.intra_op_threads is not None)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(config.strategy, config.tpu)
    model_dir = worker_model_dir(strategy, config.model_dir)
    with strategy.scope():
        model = _build_model(config, settings)
    datasets = _datasets(config, settings, model)
    with strategy.scope():
        _compile(model, config, settings, settings.epochs * datasets.steps_per_epoch)
        # In the scope: restoring builds the optimizer, whose variables are the strategy's.
        state = _resume_state(model, config, datasets, model_dir)
    files.write_text(os.path.join(model_dir, RUN_FILE), json.dumps(config.to_json(), indent=1) + "\n")
    history, epoch_seconds, stopped = _fit(
        model, config, settings, datasets, model_dir, state, start, callbacks
    )
    return _finish(config, settings, model_dir, datasets, history, epoch_seconds, stopped, start)


@dataclasses.dataclass(frozen=True)
class _Datasets:
    train: Callable[[int], tf.data.Dataset]  # epoch -> the training batches from that epoch on
    train_split: str
    steps_per_epoch: int
    validation: tf.data.Dataset | None
    test: tf.data.Dataset | None


def _build_model(config: TrainConfig, settings: _Settings) -> GlowModel:
    """The preset's GlowModel with the config's architecture and the dataset's levels."""
    info = dataset_info(config.dataset, config.image_shape, config.data_dir)
    overrides = dict(image_shape=info.image_shape, seed=config.seed)
    if info.num_bins != 256:
        overrides.update(num_bins=info.num_bins)
    else:
        # 8-bit data: the preset's bit depth (8 when it names none, as the digits preset).
        overrides.update(num_bins=None, n_bits=settings.preset.model.get("n_bits", 8))
    overrides.update(config.architecture)
    overrides.update(dtype_policy=PRECISIONS[config.precision])
    keras.utils.set_random_seed(config.seed)
    try:
        return GlowModel.from_preset(settings.preset.name, **overrides)
    except ValueError as error:
        raise UsageError(
            f"The preset {settings.preset.name!r} cannot model the data of dataset={config.dataset!r} "
            f"(images {'x'.join(map(str, info.image_shape))}): {error}"
        ) from None


def dataset_info(spec: str, image_shape, data_dir: str | None) -> data.DatasetInfo:
    try:
        return data.info(spec, image_shape=image_shape, data_dir=data_dir)
    except (ValueError, OSError) as error:
        hint = " (give an image_shape)" if image_shape is None and "image_shape" in str(error) else ""
        raise UsageError(f"dataset={spec!r}: {error}{hint}") from None


def load_split(
    model: GlowModel,
    spec: str,
    split: str,
    batch_size: int,
    *,
    data_dir: str | None = None,
    seed: int = 0,
    shuffle: bool | None = None,
    start_epoch: int | None = None,
    drop_remainder: bool = False,
    what: str = "split",
) -> tf.data.Dataset:
    """The batched split at the model's image shape, checked to have the model's pixel levels.

    With `start_epoch`, the split repeats indefinitely from that epoch on (see `data.load`).
    """
    info = dataset_info(spec, model.image_shape, data_dir)
    if info.num_bins != model.input_levels:
        raise UsageError(
            f"dataset={spec!r} has {info.num_bins} pixel levels but the model expects {model.input_levels}"
        )
    try:
        return data.load(
            spec,
            split,
            batch_size,
            image_shape=model.image_shape,
            shuffle=shuffle,
            seed=seed,
            repeat=start_epoch is not None,
            start_epoch=start_epoch or 0,
            drop_remainder=drop_remainder,
            data_dir=data_dir,
        )
    except (ValueError, OSError) as error:
        raise UsageError(f"{what}={split!r}: {error}") from None


def _datasets(config: TrainConfig, settings: _Settings, model: GlowModel) -> _Datasets:
    def load(split, what, **kwargs):
        return load_split(
            model,
            config.dataset,
            split,
            config.batch_size,
            data_dir=config.data_dir,
            seed=config.seed,
            # TPUs compile for one static batch shape.
            drop_remainder=config.strategy == "tpu",
            what=what,
            **kwargs,
        )

    one_epoch = load(settings.train_split, "train_split", shuffle=True)
    return _Datasets(
        train=lambda epoch: load(settings.train_split, "train_split", shuffle=True, start_epoch=epoch),
        train_split=settings.train_split,
        steps_per_epoch=data.num_batches(one_epoch),
        validation=load(settings.validation_split, "validation_split") if settings.validation_split else None,
        test=load(config.test_split, "test_split") if config.test_split else None,
    )


def _decay_steps(config: TrainConfig, settings: _Settings, total_steps: int) -> int | None:
    """The step at which lr_decay='cosine' reaches 0: the run's last (`total_steps`), or `None`
    for a constant rate, or when a time limit alone ends the decay (too few steps to decay by)."""
    if config.lr_decay != "cosine":
        return None
    if total_steps > config.warmup_steps:
        return total_steps
    if settings.time_limit:
        return None
    raise UsageError(
        f"lr_decay='cosine' needs more training steps ({settings.epochs} epochs of "
        f"{total_steps // settings.epochs} batches = {total_steps}) than "
        f"warmup_steps={config.warmup_steps}"
    )


def _compile(model: GlowModel, config: TrainConfig, settings: _Settings, total_steps: int) -> None:
    model.compile(
        optimizer=default_optimizer(
            settings.learning_rate,
            config.warmup_steps,
            config.clipnorm,
            name=config.optimizer,
            ema_momentum=settings.ema_momentum or None,
            decay_steps=_decay_steps(config, settings, total_steps),
            # With a time limit, a callback sets the rate by the clock (`_fit`).
            variable_rate=_anneals_by_time(config, settings),
        ),
        jit_compile=config.jit_compile,
    )


def _anneals_by_time(config: TrainConfig, settings: _Settings) -> bool:
    return config.lr_decay == "cosine" and bool(settings.time_limit)


def _run_identity(config: TrainConfig, datasets: _Datasets) -> dict:
    """What a resume state must share with this run for its data position to mean the same."""
    return {
        "dataset": config.dataset,
        "train_split": datasets.train_split,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "steps_per_epoch": datasets.steps_per_epoch,
    }


def _resume_state(model, config: TrainConfig, datasets: _Datasets, model_dir: str):
    """Restores model_dir's resume state into `model` (per `config.resume`); `None` for a fresh run."""
    directory = os.path.join(model_dir, RESUME_DIR)
    if config.resume is False:
        return None
    try:
        state = resume.load_state(directory)
        if state is None:
            if config.resume:
                raise UsageError(f"resume=True, but there is no resume state in {directory}")
            return None
        saved = {k: v for k, v in state.run.items() if k != "config"}
        current = _run_identity(config, datasets)
        if saved != current:
            changed = ", ".join(
                f"{k}={saved.get(k)!r} there, {v!r} here" for k, v in current.items() if saved.get(k) != v
            )
            raise ValueError(
                f"the resume state in {directory} is of a run on other data ({changed}); "
                "train into a new model_dir, or start this one afresh (resume=False, --noresume)"
            )
        resume.restore(model, directory, state)
    except ValueError as error:
        if isinstance(error, UsageError):
            raise
        raise RunError(str(error)) from None
    print(
        f"resuming from epoch {state.epoch + 1}, batch {state.batch} "
        f"(training batch {state.global_step} of the run) in {directory}",
        file=sys.stderr,
    )
    return state


def _fit(model, config: TrainConfig, settings: _Settings, datasets, model_dir, state, start, extra_callbacks):
    """Fits `model` up to the epochs from `state`, within the time limit of `start`; returns the
    run's history (lists per epoch), epoch times and whether the time limit stopped it.

    A state in the middle of an epoch is continued by a `fit` over that epoch's remaining batches,
    then one over the remaining epochs, with the same callbacks. A resumed run has its time limit
    anew, except that a run which its time limit ended is done: the same limit again trains no
    further (another limit does).
    """
    spe = datasets.steps_per_epoch
    epochs, time_limit = settings.epochs, settings.time_limit
    epoch, batch = (state.epoch, state.batch) if state else (0, 0)
    checkpoint = ResumeCheckpoint(
        os.path.join(model_dir, RESUME_DIR),
        config.checkpoint_every,
        spe,
        _run_identity(config, datasets),
        state,
    )
    fits = []  # (first epoch, epochs, batches per epoch)
    if state is not None and not batch and state.time_limit == time_limit:
        print(
            f"{model_dir} has trained {epoch} epochs already, until its time limit of "
            f"{state.time_limit:g} s; give another time limit (0 for none) to train it further",
            file=sys.stderr,
        )
    else:
        if batch:
            fits.append((epoch, epoch + 1, spe - batch))
        if epoch + bool(batch) < epochs:
            fits.append((epoch + bool(batch), epochs, spe))
        elif not batch:
            print(f"{model_dir} has trained {epoch} epochs already (epochs={epochs})", file=sys.stderr)
    # Last, so that the epoch times it measures hold every other callback's work.
    limit = [TimeLimit(time_limit, start=start)] if time_limit else []
    anneal = []
    if _anneals_by_time(config, settings):
        decay_steps = _decay_steps(config, settings, epochs * spe)
        anneal.append(
            CosineDecayToTimeLimit(
                settings.learning_rate, config.warmup_steps, time_limit, start=start, decay_steps=decay_steps
            )
        )
    stopped = False
    for i, (first, last, steps) in enumerate(fits):
        if i:
            # Keras ends a fit by writing the averaged (EMA) weights over the trained ones (or, when
            # a callback stopped it, the trained ones over the averages swapped in): the next fit
            # goes on from the committed trained weights, as an uninterrupted run does.
            resume.restore(model, checkpoint.directory, resume.load_state(checkpoint.directory))
        model.fit(
            datasets.train(first).skip(spe - steps),
            validation_data=datasets.validation,
            initial_epoch=first,
            epochs=last,
            steps_per_epoch=steps,
            callbacks=[
                *_callbacks(model_dir, config, settings, datasets.validation is not None, checkpoint.history),
                *anneal,
                checkpoint,
                *limit,
                *extra_callbacks,
            ],
            verbose=config.verbose,
            shuffle=False,  # tfp_glow.data shuffles every epoch, by (seed, epoch).
        )
        if model.stop_training:
            done = limit[0].stopped_epoch if limit else None
            if done is not None and done + 1 < epochs:
                checkpoint.end_at_time_limit(time_limit)
                stopped = True
                print(
                    f"stopping after epoch {done + 1} of {epochs}: another would end past the time "
                    f"limit of {time_limit:g} s",
                    file=sys.stderr,
                )
            break
    return checkpoint.history, checkpoint.epoch_seconds, stopped


def _callbacks(model_dir, config: TrainConfig, settings: _Settings, has_validation: bool, history: dict):
    """tfp-glow's callbacks of a run; `history` holds the epochs done before this process (resuming)."""
    callbacks = [NonFiniteLimit(config.max_nonfinite_steps, previous=sum(history.get("nonfinite_steps", [])))]
    if settings.ema_momentum:
        # First, so that validation and the callbacks below see the averaged weights.
        callbacks.append(CompiledSwapEMAWeights(swap_on_epoch=True))
    every_epoch = AtomicCheckpoint(
        os.path.join(model_dir, "checkpoints", "epoch_{epoch:03d}.keras"),
        keep=config.keep_checkpoints or 1,
        include_optimizer=False,
    )
    # The best epoch by validation bits/dim; without validation, every epoch (so the last).
    # A copy of the epoch's checkpoint, just written, rather than a second save.
    best = AtomicCheckpoint(
        os.path.join(model_dir, MODEL_FILE),
        monitor="val_bits_per_dim" if has_validation else None,
        copy_from=every_epoch,
        include_optimizer=False,
    )
    if has_validation:
        best.best = resume.best_of(history, "val_bits_per_dim")
    logs = os.path.join(model_dir, "logs")
    callbacks += [
        every_epoch,
        best,
        SampleGrid(
            model_dir,
            num=config.num_samples,
            temperature=config.temperature,
            seed=config.seed,
            every=settings.sample_every,
            log_dir=logs,
        ),
        keras.callbacks.TensorBoard(logs),
    ]
    if not config.keep_checkpoints:
        callbacks.append(_RemoveCheckpoints(os.path.join(model_dir, "checkpoints")))
    return callbacks


class _RemoveCheckpoints(keras.callbacks.Callback):
    """With keep_checkpoints=0, the epoch checkpoint the best model copies is removed at the end."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def on_train_end(self, logs=None):
        if os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                os.remove(os.path.join(self.directory, name))
            os.rmdir(self.directory)


def _best_epoch(history: dict[str, list[float]]) -> int:
    """1-based epoch of model.keras: the first lowest val_bits_per_dim, else the last epoch."""
    values = np.asarray(history.get("val_bits_per_dim", []), np.float64)
    if values.size and np.isfinite(values).any():
        return int(np.nanargmin(np.where(np.isfinite(values), values, np.nan))) + 1
    return len(history["bits_per_dim"])


def _finish(config, settings, model_dir, datasets, history, epoch_seconds, stopped, start) -> TrainResult:
    """Reloads the best model, evaluates it on the test split, writes the plots and metrics.json."""
    if not history.get("bits_per_dim"):
        raise RunError("training stopped before the end of the first epoch (non-finite loss?)")
    best_epoch = _best_epoch(history)
    model_path = os.path.join(model_dir, MODEL_FILE)
    if not os.path.isfile(model_path):
        raise RunError(f"no epoch had a finite val_bits_per_dim, so {model_path} was not written")
    best = load_model(model_path)
    one_sample = discrete = None
    if datasets.test is not None:
        one_sample, discrete = test_figures(
            best, datasets.test, settings.iw_samples, config.seed, config.verbose
        )
    plots.plot_learning_curve(
        {**history, "test_bits_per_dim": [] if one_sample is None else [one_sample]},
        os.path.join(model_dir, "learning_curve.png"),
    )
    wall = time.perf_counter() - start
    metrics = {
        "history": history,
        "epochs": len(history["bits_per_dim"]),
        "epoch_seconds": epoch_seconds,
        "best_epoch": best_epoch,
        "best_by": "val_bits_per_dim" if datasets.validation is not None else "last epoch",
        "stopped_by_time_limit": stopped,
        "test_split": config.test_split or None,
        "test_bits_per_dim_one_sample": one_sample,
        "test_bits_per_dim_importance_sampled": discrete,
        "iw_samples": settings.iw_samples if discrete is not None else None,
        "learning_rate": settings.learning_rate,
        "lr_decay": config.lr_decay,
        "ema_momentum": settings.ema_momentum,
        "time_limit": settings.time_limit or None,
        "wall_seconds": wall,
        "preset": settings.preset.name,
        "config": best.get_config(),
        "run": config.to_json(),
    }
    metrics_path = os.path.join(model_dir, "metrics.json")
    files.write_text(metrics_path, json.dumps(metrics, indent=2, default=str) + "\n")
    return TrainResult(
        model=best,
        history=history,
        epochs=len(history["bits_per_dim"]),
        best_epoch=best_epoch,
        test_bits_per_dim=one_sample,
        test_discrete_bits_per_dim=discrete,
        iw_samples=settings.iw_samples if discrete is not None else 0,
        stopped_by_time_limit=stopped,
        model_dir=model_dir,
        model_path=model_path,
        metrics_path=metrics_path,
        wall_seconds=wall,
    )


def test_figures(model: GlowModel, dataset, iw_samples: int, seed: int = 0, verbose: int = 0):
    """(one-sample test bits/dim, importance-sampled discrete bits/dim or `None`) over `dataset`.

    The first is `evaluate`'s (one dequantization sample per image, the paper's estimate); the
    second `model.bits_per_dim` with `iw_samples` samples, skipped for 0.
    """
    if not model.compiled:
        model.compile()
    one_sample = float(model.evaluate(dataset, return_dict=True, verbose=verbose)["bits_per_dim"])
    if not iw_samples:
        return one_sample, None
    batches = [batch if isinstance(batch, (tuple, list)) else (batch, None) for batch in dataset]
    progress = keras.utils.Progbar(len(batches), verbose=verbose, unit_name="batch")
    total, count = 0.0, 0
    for images, labels in batches:
        bpd = model.bits_per_dim(images, labels, num_samples=iw_samples, seed=seed)
        total += float(tf.reduce_sum(bpd))
        count += int(bpd.shape[0])
        progress.add(1)
    return one_sample, total / count


def load_model(path: str) -> GlowModel:
    """The GlowModel of a `.keras` file, or a RunError naming the file."""
    if not os.path.isfile(path):
        raise RunError(f"no trained model at {path} (train one, or point model_dir at a run)")
    try:
        model = keras.models.load_model(path)
    except Exception as error:  # Any failure to read the file is the user's to fix, not a bug.
        raise RunError(f"cannot load the model {path}: {error}") from error
    if not isinstance(model, GlowModel):
        raise RunError(f"{path} holds a {type(model).__name__}, not a GlowModel")
    return model


@dataclasses.dataclass(frozen=True)
class Run:
    """A trained run: its folder, the config it was trained with, and its best model's file.

    `config` is `None` for a folder without a record of its config (only a model file).
    """

    model_dir: str
    config: TrainConfig | None
    model_path: str

    def model(self) -> GlowModel:
        return load_model(self.model_path)


def load_run(model_dir: str) -> Run:
    """The run in `model_dir`: its `run.json` (or the flags a run of 0.1.0 recorded in
    metrics.json) and its model file.

    Raises:
      RunError: if there is no model file.
    """
    model_path = os.path.join(model_dir, MODEL_FILE)
    if not os.path.isfile(model_path):
        raise RunError(f"no trained model at {model_path} (train one, or point model_dir at a run)")
    config = None
    record = os.path.join(model_dir, RUN_FILE)
    if os.path.isfile(record):
        with open(record) as f:
            config = TrainConfig.from_json(json.load(f))
    else:
        metrics = os.path.join(model_dir, "metrics.json")
        if os.path.isfile(metrics):
            with open(metrics) as f:
                flags = json.load(f).get("flags", {})
            config = TrainConfig.from_json(
                {k: flags[k] for k in ("dataset", "data_dir", "preset", "test_split", "seed") if k in flags}
            )
    return Run(model_dir, config, model_path)


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """The tf.distribute strategy `name` ('default', 'mirrored', 'multi_worker', 'tpu')."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        # The cluster and this worker's place in it come from TF_CONFIG; without one, one worker.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        if not tpu:
            raise UsageError("strategy='tpu' needs a TPU (a TPU name, a grpc:// address, or 'local')")
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            raise RunError(f"cannot use the TPU {tpu!r}: {error}") from None
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


def _set_intra_op_threads(threads: int | None, explicit: bool) -> None:
    """Applies the threads per op before TensorFlow runs its first op."""
    if threads is None or tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow already ran in this process: its threads are fixed. Only a setting the user
        # asked for is worth a word.
        if explicit:
            print(
                f"warning: TensorFlow is already running in this process, so intra_op_threads={threads} "
                "has no effect",
                file=sys.stderr,
            )


def _check(config: TrainConfig) -> None:
    """Raises a UsageError naming the first field of `config` with a bad value."""

    def positive_int(name, minimum=1):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UsageError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")

    def number(name, lower, upper=math.inf, allow_none=True, closed_upper=False):
        value = getattr(config, name)
        if value is None and allow_none:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and value >= lower and (value <= upper if closed_upper else value < upper)
        if not ok:
            bound = (
                f"in [{lower}, {upper}{']' if closed_upper else ')'}" if upper != math.inf else f">= {lower}"
            )
            raise UsageError(f"`{name}` must be a finite number {bound}. Received: {name}={value!r}")

    for name in ("batch_size", "checkpoint_every", "num_samples"):
        positive_int(name)
    for name in ("warmup_steps", "keep_checkpoints", "seed", "max_nonfinite_steps"):
        positive_int(name, 0)
    for name in ("epochs", "sample_every"):
        if getattr(config, name) is not None:
            positive_int(name)
    for name in ("iw_samples", "intra_op_threads"):
        if getattr(config, name) is not None:
            positive_int(name, 0)
    number("time_limit", 0)
    number("ema_momentum", 0, 1)
    number("temperature", 0, allow_none=False)
    if config.learning_rate is not None and not (
        isinstance(config.learning_rate, (int, float))
        and math.isfinite(config.learning_rate)
        and config.learning_rate > 0
    ):
        raise UsageError(
            f"`learning_rate` must be a finite number > 0. Received: learning_rate={config.learning_rate!r}"
        )
    if config.clipnorm is not None and not (math.isfinite(config.clipnorm) and config.clipnorm > 0):
        raise UsageError(f"`clipnorm` must be a finite number > 0. Received: clipnorm={config.clipnorm!r}")
    choices = {
        "lr_decay": ("constant", "cosine"),
        "optimizer": ("adam", "adamax"),
        "strategy": STRATEGIES,
        "precision": tuple(PRECISIONS),
    }
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise UsageError(f"`{name}` must be one of {allowed}. Received: {name}={getattr(config, name)!r}")
    if config.verbose not in (0, 1, 2):
        raise UsageError(f"`verbose` must be 0, 1 or 2. Received: verbose={config.verbose!r}")
    unknown = sorted(set(config.architecture) - set(ARCHITECTURE))
    if unknown:
        raise UsageError(
            f"`architecture` may override {list(ARCHITECTURE)} of the preset. Received: {unknown}"
        )
    if "memory_efficient" in config.architecture:
        try:
            check_memory_efficient(config.architecture["memory_efficient"])
        except ValueError as error:
            raise UsageError(str(error)) from None
    if config.image_shape is not None and (
        len(config.image_shape) != 3
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in config.image_shape)
    ):
        raise UsageError(
            f"`image_shape` must be (H, W, C) of positive integers. Received: {config.image_shape!r}"
        )
    if config.deterministic and config.jit_compile:
        # Keras would silently train without XLA: it turns jit_compile off under op determinism.
        raise UsageError("`jit_compile` cannot be combined with `deterministic` (Keras runs no XLA then)")
    if config.preset is not None:
        try:
            get_preset(config.preset)
        except ValueError as error:
            raise UsageError(str(error)) from None
