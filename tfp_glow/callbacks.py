"""Keras callbacks of tfp-glow's training runs."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable

import keras
import tensorflow as tf

from tfp_glow import _compat

__all__ = ["AtomicCheckpoint", "CompiledSwapEMAWeights", "TimeLimit"]


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (`.keras`, optimizer state included) at each epoch's end, atomically.

    The file is written under a temporary name in the same folder and renamed over
    `path` (`os.replace`), so a crash or a full disk never leaves a half-written
    checkpoint where the last good one was. `path` may hold `{epoch}` (1-based,
    e.g. `"epoch_{epoch:03d}.keras"`). With `monitor`, only epochs that lower that
    log entry are saved (the best epoch, as `ModelCheckpoint(save_best_only=True)`).

    With `copy_from`, an epoch that `copy_from` has saved is written as a copy of its
    file: the same model, for a file copy (milliseconds) instead of a second `model.save`
    (~75 ms for the digits model). `copy_from` must come before this callback in the
    callback list, with no callback between them that changes the model.

    Args:
      path: the `.keras` file, optionally with `{epoch}`.
      monitor: optional log entry; only epochs that lower it are saved. Default `None`,
        every epoch.
      copy_from: optional `AtomicCheckpoint` whose file of the same epoch is copied, when
        it wrote one. Default `None`, always `model.save`.
    """

    def __init__(self, path: str, monitor: str | None = None, copy_from: AtomicCheckpoint | None = None):
        super().__init__()
        if not path.endswith(".keras"):
            raise ValueError(f"`path` must end in '.keras'. Received: path={path!r}")
        self.path = path
        self.monitor = monitor
        self.copy_from = copy_from
        self.best = math.inf
        # (0-based epoch, file) of the last file written, for a callback that copies it.
        self.last_saved: tuple[int, str] | None = None

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None or not math.isfinite(float(value)) or float(value) >= self.best:
                return
            self.best = float(value)
        path = self.path.format(epoch=epoch + 1)
        source = self._source(epoch)
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp.keras")
        try:
            if source is None:
                self.model.save(temporary)
            else:
                shutil.copyfile(source, temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        self.last_saved = (epoch, path)

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
