"""Keras callbacks of tfp-glow's training runs."""

from __future__ import annotations

import math
import os

import keras

__all__ = ["AtomicCheckpoint"]


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (`.keras`, optimizer state included) at each epoch's end, atomically.

    The file is written under a temporary name in the same folder and renamed over
    `path` (`os.replace`), so a crash or a full disk never leaves a half-written
    checkpoint where the last good one was. `path` may hold `{epoch}` (1-based,
    e.g. `"epoch_{epoch:03d}.keras"`). With `monitor`, only epochs that lower that
    log entry are saved (the best epoch, as `ModelCheckpoint(save_best_only=True)`).
    """

    def __init__(self, path: str, monitor: str | None = None):
        super().__init__()
        if not path.endswith(".keras"):
            raise ValueError(f"`path` must end in '.keras'. Received: path={path!r}")
        self.path = path
        self.monitor = monitor
        self.best = math.inf

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None or not math.isfinite(float(value)) or float(value) >= self.best:
                return
            self.best = float(value)
        path = self.path.format(epoch=epoch + 1)
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        temporary = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp.keras")
        try:
            self.model.save(temporary)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
