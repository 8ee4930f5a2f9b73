"""Keras callbacks of tfp-glow's training runs, for `tfp_glow.training.train` or any `model.fit`.

- `AtomicCheckpoint`: the model after every epoch (or the best one), written atomically,
  optionally without optimizer state and keeping only the last few.
- `SampleGrid`: a grid of samples every few epochs and at the end, as PNG and in TensorBoard.
- `NonFiniteLimit`: stops a run once too many steps had a non-finite loss (GlowModel skips them).
- `TimeLimit`: stops at the end of the last epoch that ends within a time budget.
- `CosineDecayToTimeLimit`: a learning rate that anneals to 0 at the end of a time budget.
- `CompiledSwapEMAWeights`: Keras's `SwapEMAWeights`, each swap one compiled call.
- `ResumeCheckpoint`: the training state a crashed run resumes from (`tfp_glow.resume`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tfp_glow import _compat, files, plots, resume
from tfp_glow._checks import check_int

__all__ = [
    "AtomicCheckpoint",
    "CompiledSwapEMAWeights",
    "CosineDecayToTimeLimit",
    "NonFiniteLimit",
    "ResumeCheckpoint",
    "SampleGrid",
    "TimeLimit",
]


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (`.keras`) at each epoch's end, atomically and durably.

    The file is written under a temporary name in the same folder, flushed to the disk and
    renamed over `path` (`tfp_glow.files`), so a crash, a power loss or a full disk never
    leaves a half-written checkpoint where the last good one was. `path` may hold `{epoch}`
    (1-based, e.g. `"epoch_{epoch:03d}.keras"`). With `monitor`, only epochs that lower that
    log entry are saved (the best epoch, as `ModelCheckpoint(save_best_only=True)`).

    With `keep`, only the last `keep` files this callback wrote stay on disk (for a `{epoch}`
    path). With `include_optimizer=False` the file holds the model without its optimizer
    state (moments, moving averages): a model for sampling and evaluation, a quarter of the
    size with Adam and a weight average; resuming training uses `ResumeCheckpoint`'s state.

    With `copy_from`, an epoch that `copy_from` has saved is written as a copy of its file:
    the same model, for a file copy (milliseconds) instead of a second save. `copy_from`
    must come before this callback in the callback list, with no callback between them
    that changes the model, and save the same (with or without optimizer state).

    Args:
      path: the `.keras` file, optionally with `{epoch}`.
      monitor: optional log entry; only epochs that lower it are saved. Default `None`,
        every epoch.
      copy_from: optional `AtomicCheckpoint` whose file of the same epoch is copied, when
        it wrote one. Default `None`, always a save.
      keep: optional number of the most recent files to keep. Default `None`, all.
      include_optimizer: whether the file holds the optimizer's state. Default `True`.
    """

    def __init__(
        self,
        path: str,
        monitor: str | None = None,
        copy_from: AtomicCheckpoint | None = None,
        keep: int | None = None,
        include_optimizer: bool = True,
    ):
        super().__init__()
        if not path.endswith(".keras"):
            raise ValueError(f"`path` must end in '.keras'. Received: path={path!r}")
        if keep is not None:
            check_int(keep, "keep", why=" or None")
        self.path = path
        self.monitor = monitor
        self.copy_from = copy_from
        self.keep = keep
        self.include_optimizer = include_optimizer
        self.best = math.inf
        # (0-based epoch, file) of the last file written, for a callback that copies it.
        self.last_saved: tuple[int, str] | None = None
        self._written: list[str] = []
        self._inference_copy = None

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None or not math.isfinite(float(value)) or float(value) >= self.best:
                return
            self.best = float(value)
        path = self.path.format(epoch=epoch + 1)
        source = self._source(epoch)
        if source is not None:
            files.copy_file(source, path)
        else:
            with files.atomic_path(path, suffix=".keras") as temporary:
                self._model_to_save().save(temporary)
        self.last_saved = (epoch, path)
        self._forget_old(path)

    def _model_to_save(self) -> keras.Model:
        """The model, or without optimizer state a copy of it that was never compiled."""
        if self.include_optimizer or not self.model.compiled:
            return self.model
        if self._inference_copy is None or self._inference_copy[0] is not self.model:
            self._inference_copy = (self.model, type(self.model).from_config(self.model.get_config()))
        copy = self._inference_copy[1]
        copy.set_weights(self.model.get_weights())
        return copy

    def _forget_old(self, path: str) -> None:
        if path in self._written:
            self._written.remove(path)
        self._written.append(path)
        while self.keep is not None and len(self._written) > self.keep:
            old = self._written.pop(0)
            if os.path.exists(old):
                os.remove(old)

    def _source(self, epoch: int) -> str | None:
        """`copy_from`'s file of `epoch`, if it wrote one; else `None` (save the model)."""
        saved = self.copy_from.last_saved if self.copy_from is not None else None
        return saved[1] if saved is not None and saved[0] == epoch else None


class TimeLimit(keras.callbacks.Callback):
    """Stops training at the end of the last epoch that can end within a time budget.

    After each epoch it expects the next one to take as long as the longest of the last
    `window` epochs of this `fit`, leaving out the first (which also traces the step
    functions, unless it is the only one), and stops training (`model.stop_training`)
    when that epoch would end more than `seconds` after `start`. An epoch's time runs
    from the end of the one before (from the start of `fit` for the first), so it holds
    validation and the epoch-end callbacks that come before this one: put it last.

    Like any callback that stops a fit early (`EarlyStopping`), it cuts short Keras's
    `SwapEMAWeights(swap_on_epoch=True)`, which hands the averaged weights to the model only
    after the last of `epochs`: the model then ends with the trained weights, and the
    averages are in the checkpoints written with them swapped in.

    Args:
      seconds: the budget, > 0.
      start: `clock()` reading the budget counts from. Default `None`: the start of each `fit`.
      window: epochs the estimate of the next one looks back on. Default 3.
      clock: seconds as a float. Default `time.perf_counter`.
    """

    def __init__(
        self,
        seconds: float,
        start: float | None = None,
        window: int = 3,
        clock: Callable[[], float] = time.perf_counter,
    ):
        super().__init__()
        if not seconds > 0:
            raise ValueError(f"`seconds` must be > 0. Received: seconds={seconds!r}")
        self.seconds = seconds
        self.start = start
        self.window = window
        self.clock = clock
        self.stopped_epoch: int | None = None  # 0-based epoch after which it stopped training

    def on_train_begin(self, logs=None):
        self._last_end = self.clock()
        self._fit_start = self._last_end if self.start is None else self.start
        self._durations = []
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        self._durations.append(now - self._last_end)
        self._last_end = now
        recent = self._durations[1:][-self.window :] or self._durations
        if now - self._fit_start + max(recent) > self.seconds:
            self.model.stop_training = True
            self.stopped_epoch = epoch


class CosineDecayToTimeLimit(keras.callbacks.Callback):
    """Sets the learning rate before each batch: linear warm-up, then a cosine that reaches 0
    at the end of a time budget (or at `decay_steps`, if that comes first).

        lr = learning_rate * min((t + 1) / warmup_steps, (1 + cos(pi * p)) / 2)
        p  = min(1, max((t - warmup_steps) / (decay_steps - warmup_steps),
                        (now - t0) / (start + seconds - t0)))

    with t the optimizer's step and t0 the clock at the end of the first batch (which traces
    the step: the cosine runs over the time that trains). A run that a `TimeLimit` ends
    thus trains its last epochs at a rate near 0, as a step-based cosine does at its last
    step, whatever the machine's speed. The optimizer's `learning_rate` must be a variable,
    not a schedule (`default_optimizer(..., variable_rate=True)`).

    Args:
      learning_rate: the rate after the warm-up, > 0.
      warmup_steps: steps of the linear warm-up, >= 0.
      seconds: the budget, > 0.
      start: `clock()` reading the budget counts from. Default `None`: the start of each `fit`.
      decay_steps: optional step at which the rate reaches 0 regardless of the clock.
      clock: seconds as a float. Default `time.perf_counter`.
    """

    def __init__(
        self,
        learning_rate: float,
        warmup_steps: int,
        seconds: float,
        start: float | None = None,
        decay_steps: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        super().__init__()
        if not learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0. Received: learning_rate={learning_rate!r}")
        if not seconds > 0:
            raise ValueError(f"`seconds` must be > 0. Received: seconds={seconds!r}")
        self.learning_rate = float(learning_rate)
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", minimum=0)
        self.seconds = float(seconds)
        self.start = start
        self.decay_steps = decay_steps
        self.clock = clock
        self._first_batch_end = None  # kept across fits: a resumed epoch's fit goes on with the cosine

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        try:
            optimizer.learning_rate = float(optimizer.learning_rate)  # a schedule is not settable
        except TypeError:
            schedule = keras.saving.serialize_keras_object(optimizer)["config"]["learning_rate"]
            raise ValueError(
                "CosineDecayToTimeLimit sets the learning rate itself: compile with a float rate, "
                f"not a schedule. Received: {schedule.get('class_name', schedule)}"
            ) from None
        self._deadline = (self.clock() if self.start is None else self.start) + self.seconds

    def rate(self, step: int, now: float) -> float:
        """The learning rate at optimizer step `step` and clock reading `now`."""
        warmup = min(1.0, (step + 1) / max(self.warmup_steps, 1))
        progress = 0.0
        if self._first_batch_end is not None:
            progress = (now - self._first_batch_end) / max(self._deadline - self._first_batch_end, 1e-9)
        if self.decay_steps is not None:
            progress = max(progress, (step - self.warmup_steps) / (self.decay_steps - self.warmup_steps))
        progress = min(1.0, max(0.0, progress))
        return self.learning_rate * min(warmup, 0.5 * (1.0 + math.cos(math.pi * progress)))

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        optimizer.learning_rate = self.rate(int(optimizer.iterations.numpy()), self.clock())

    def on_train_batch_end(self, batch, logs=None):
        if self._first_batch_end is None:
            self._first_batch_end = self.clock()


class CompiledSwapEMAWeights(_compat.SwapEMAWeightsHook):
    """`keras.callbacks.SwapEMAWeights` with each swap one compiled call.

    Keras swaps variable by variable in eager mode, three distributed updates each
    (`a += b; b = a - b; a -= b`): ~26 ms per swap for the digits model, and
    `swap_on_epoch=True` swaps four times an epoch. Here a swap is one `tf.function`
    over all the variables, traced once per optimizer. It exchanges the values exactly
    (Keras's sums round at float precision) and, through the optimizer's
    `strategy.extended.update`, on every replica's copy under a tf.distribute strategy.
    When and what is swapped is Keras's: only the swap itself is replaced. Like Keras's own
    callback it reads the optimizer's private lists of variables and averages
    (`tfp_glow._compat`, checked against the installed Keras by tests/test_compat.py).

    Args:
      swap_on_epoch: Python `bool`, whether to swap at each epoch's end and back at the
        next one's beginning, so that the callbacks after this one see the averaged
        weights. Default `False`.
    """

    def __init__(self, swap_on_epoch: bool = False):
        super().__init__(swap_on_epoch=swap_on_epoch)
        self._swaps = {}  # id(optimizer) -> (optimizer, its compiled swap)

    def swap(self, optimizer):
        optimizer_and_swap = self._swaps.get(id(optimizer))
        if optimizer_and_swap is None or optimizer_and_swap[0] is not optimizer:
            optimizer_and_swap = self._swaps[id(optimizer)] = (optimizer, _compiled_swap(optimizer))
        optimizer_and_swap[1]()


def _compiled_swap(optimizer: keras.optimizers.Optimizer):
    """A `tf.function` that exchanges `optimizer`'s trainable variables with their moving averages."""
    strategy = _compat.optimizer_strategy(optimizer)
    pairs = [
        (_tf_variable(variable), _tf_variable(average))
        for variable, average in _compat.ema_variable_pairs(optimizer)
    ]

    def exchange(variable, average):
        # tf.function runs these in program order: each variable is read before it is written.
        value = variable.read_value()
        variable.assign(average)
        return average.assign(value)

    @tf.function(autograph=False)
    def swap():
        for variable, average in pairs:
            strategy.extended.update(variable, exchange, args=(average,), group=False)

    return swap


def _tf_variable(variable):
    """The `tf.Variable` (a distributed one under a strategy) behind a Keras variable."""
    return variable.value if isinstance(variable, keras.Variable) else variable


class SampleGrid(keras.callbacks.Callback):
    """Writes a grid of samples every `every` epochs and after the last, as PNG and to TensorBoard.

    The grid holds `num` samples at `temperature` from the same `seed` every time, so the files
    (`<directory>/samples_epoch_NNN.png`, NNN the 1-based epoch) show how the same latents decode
    as training goes on. With `log_dir`, the same grids go to TensorBoard (`tf.summary.image`
    `samples`, in `<log_dir>/samples`), beside Keras's scalars. The last epoch's grid is written
    when training ends, whether it ended at `epochs` or earlier (a time limit).

    Args:
      directory: folder of the PNG files.
      num: samples per grid. Default 64.
      temperature: sampling temperature >= 0. Default 0.7.
      seed: seed of the samples' noise. Default 0.
      every: write a grid after every `every`-th epoch. Default 1.
      log_dir: optional TensorBoard log folder. Default `None`.
    """

    def __init__(
        self,
        directory: str,
        num: int = 64,
        temperature: float = 0.7,
        seed: int = 0,
        every: int = 1,
        log_dir: str | None = None,
    ):
        super().__init__()
        check_int(every, "every")
        self.directory = directory
        self.num = num
        self.temperature = temperature
        self.seed = seed
        self.every = every
        self.log_dir = log_dir
        self._writer = None
        self._last_epoch = None
        self._last_written = None

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        if (epoch + 1) % self.every == 0:
            self.write(epoch)

    def on_train_end(self, logs=None):
        if self._last_epoch is not None and self._last_written != self._last_epoch:
            self.write(self._last_epoch)
        if self._writer is not None:
            self._writer.flush()

    def write(self, epoch: int) -> str:
        """Writes the grid of (0-based) `epoch`; returns the PNG file's path."""
        grid = plots.image_grid(
            self.model.sample(self.num, temperature=float(self.temperature), seed=self.seed).numpy(),
            self.model.input_levels,
        )
        path = os.path.join(self.directory, f"samples_epoch_{epoch + 1:03d}.png")
        plots.save_png(path, grid)
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "samples"))
            with self._writer.as_default():
                tf.summary.image("samples", grid[np.newaxis], step=epoch + 1)
        self._last_written = epoch
        return path


class NonFiniteLimit(keras.callbacks.Callback):
    """Stops training once more than `limit` steps were skipped as non-finite.

    GlowModel skips such steps (no weight or optimizer state changes) and counts them in its
    `nonfinite_steps` metric, per epoch; a few are survivable, many mean the run has diverged.

    Args:
      limit: skipped steps allowed in the whole run.
      previous: steps skipped before this `fit` (a resumed run's). Default 0.
    """

    def __init__(self, limit: int, previous: float = 0.0):
        super().__init__()
        self.limit = limit
        self.previous_epochs = float(previous)
        self.total = float(previous)

    def on_train_batch_end(self, batch, logs=None):
        self.total = self.previous_epochs + float((logs or {}).get("nonfinite_steps", 0.0))
        if self.total > self.limit and not self.model.stop_training:
            print(
                f"stopping: {self.total:.0f} training steps had a non-finite loss or gradient "
                f"(the limit is {self.limit}); the weights never took them.",
                file=sys.stderr,
            )
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.previous_epochs = self.total


class ResumeCheckpoint(keras.callbacks.Callback):
    """Commits the training state every `every_steps` batches and after every epoch.

    Place it last in the callback list: an epoch is committed after the callbacks before it have
    done that epoch's work. It measures the epoch times and keeps the whole run's history
    (`history`, `epoch_seconds`), resumed epochs included.

    Args:
      directory: folder of the state (created when needed).
      every_steps: commit every this many training batches (counted from the start of the run).
      steps_per_epoch: training batches per epoch.
      run: see `TrainingState.run`; the model's configuration is added.
      state: the state this run resumes from, or `None` for a fresh run.
    """

    def __init__(
        self,
        directory: str,
        every_steps: int,
        steps_per_epoch: int,
        run: dict,
        state: resume.TrainingState | None = None,
    ):
        super().__init__()
        if every_steps < 1:
            raise ValueError(f"`every_steps` must be >= 1. Received: every_steps={every_steps!r}")
        self.directory = directory
        self.every_steps = every_steps
        self.steps_per_epoch = steps_per_epoch
        self.run = run
        self.history: dict[str, list[float]] = {
            k: list(v) for k, v in (state.history if state else {}).items()
        }
        self.epoch_seconds: list[float] = list(state.epoch_seconds) if state else []
        # The resumed epoch starts at batch `state.batch`, with its metrics and clock so far.
        self._batch = state.batch if state else 0
        self._resumed_metrics = state.metric_states if state and state.batch else None
        self._resumed_seconds = state.seconds_in_epoch if state else 0.0
        self._weights_at_epoch_end: str | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = time.perf_counter() - self._resumed_seconds
        self._resumed_seconds = 0.0
        if self._resumed_metrics is not None:
            # Keras resets the metrics before on_epoch_begin: put back the batches already taken.
            for metric in self.model.metrics:
                for variable, value in zip(metric.variables, self._resumed_metrics[metric.name], strict=True):
                    variable.assign(value)
            self._resumed_metrics = None

    def on_train_batch_end(self, batch, logs=None):
        self._batch += 1
        step = self._epoch * self.steps_per_epoch + self._batch
        if self._batch == self.steps_per_epoch:
            # The epoch's weights, committed with its history at on_epoch_end; saved now because
            # the epoch-end callbacks may swap in averaged (EMA) weights and validation draws noise.
            self._weights_at_epoch_end = self._save_weights(step)
        elif step % self.every_steps == 0:
            metric_states = {m.name: [v.numpy().tolist() for v in m.variables] for m in self.model.metrics}
            self._commit(self._save_weights(step), self._epoch, self._batch, metric_states)

    def on_epoch_end(self, epoch, logs=None):
        complete = self._batch == self.steps_per_epoch
        self._batch = 0
        if not complete:  # Training stopped inside the epoch: it is not done.
            return
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self.epoch_seconds.append(time.perf_counter() - self._start)
        self._commit(self._weights_at_epoch_end, epoch + 1, 0, {})

    def end_at_time_limit(self, seconds: float) -> None:
        """Marks the last committed state (an epoch's end) as where the time limit `seconds` ended
        the run, for a later command to tell a finished run from an interrupted one."""
        resume.mark_time_limit(self.directory, seconds)

    def _save_weights(self, step: int) -> str:
        return resume.save_weights(self.model, self.directory, step)

    def _commit(self, weights: str, epoch: int, batch: int, metric_states: dict) -> None:
        state = resume.TrainingState(
            epoch=epoch,
            batch=batch,
            steps_per_epoch=self.steps_per_epoch,
            history=self.history,
            epoch_seconds=self.epoch_seconds,
            seconds_in_epoch=time.perf_counter() - self._start if batch else 0.0,
            metric_states=metric_states,
            seed_state=np.asarray(self.model.seed_generator.state).tolist(),
            weights=weights,
            run={**self.run, "config": resume.architecture(self.model)},
        )
        resume.commit(self.directory, state)
