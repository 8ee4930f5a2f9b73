"""Resumable training: the state that lets an interrupted `fit` continue where it stopped.

A run's resume state lives in one folder (`<model_dir>/resume/`):

  state.json                 what was done: epoch, batch within the epoch, history, metric
                             and RNG states, the model's configuration, which weights file
  step_NNNNNNNNN.weights.h5  the model's weights with the optimizer state (step counter, moments,
                             EMA), ActNorm state included, after NNNNNNNNN training batches

Every file is written under a temporary name and renamed into place; `state.json` is written last
and names its weights file, so a crash at any moment leaves the previous consistent state (the
commit point is the rename of `state.json`). Weights files that no `state.json` names are removed
after each commit.

`ResumeCheckpoint` commits every `every_steps` training batches and at the end of every epoch, after
the callbacks listed before it (the epoch's checkpoints, samples, best model) have run. The data
position is the pair (epoch, batch in epoch): with `tfp_glow.data.load(..., repeat=True,
start_epoch=e)` epoch e's order depends on the seed and e only, so skipping the batches already
seen puts a resumed run on exactly the batches it would have seen. With op determinism on
(`tf.config.experimental.enable_op_determinism()`), a resumed run ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np

__all__ = ["ResumeCheckpoint", "TrainingState", "load_state", "restore"]

STATE_FILE = "state.json"
_FORMAT = 1


@dataclasses.dataclass
class TrainingState:
    """Where a run stands.

    Attributes:
      epoch: 0-based epoch in progress (the number of completed epochs when `batch` is 0).
      batch: training batches of `epoch` already taken.
      steps_per_epoch: training batches per epoch.
      history: per-epoch logs of the completed epochs, as `keras.callbacks.History`.
      epoch_seconds: wall seconds of each completed epoch.
      seconds_in_epoch: wall seconds spent in `epoch` so far.
      metric_states: values of each metric's variables in the middle of `epoch` (so that a resumed
        epoch reports the mean over all its batches), by metric name.
      seed_state: the model's dequantization-noise SeedGenerator state.
      weights: the weights file, relative to the state's folder.
      run: what must not change for the data position to stay valid (model configuration,
        dataset, batch size, seed).
      time_limit: the time limit (seconds) that ended the run after `epoch` epochs, or `None`
        while nothing ended it early (a run still going, interrupted, or done with its epochs).
    """

    epoch: int
    batch: int
    steps_per_epoch: int
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    seconds_in_epoch: float
    metric_states: dict[str, list]
    seed_state: list[int]
    weights: str
    run: dict
    time_limit: float | None = None

    @property
    def global_step(self) -> int:
        """Training batches taken since the start of the run."""
        return self.epoch * self.steps_per_epoch + self.batch


def load_state(directory: str) -> TrainingState | None:
    """The committed state in `directory`, or `None` when there is none.

    Raises:
      ValueError: If `state.json` or the weights file it names is missing, truncated or not a
        resume state (the message names the file).
    """
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            fields = json.load(f)
        if fields.pop("format", None) != _FORMAT:
            raise ValueError(f"not a format-{_FORMAT} resume state")
        state = TrainingState(**fields)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"the resume state {path} is unreadable ({error})") from None
    if not os.path.isfile(os.path.join(directory, state.weights)):
        raise ValueError(f"the resume state {path} names {state.weights}, which is missing")
    return state


def restore(model: keras.Model, directory: str, state: TrainingState) -> None:
    """Loads the weights and optimizer state of `state` into the compiled `model`.

    Raises:
      ValueError: If the state was written by a model of another configuration, or its weights
        file cannot be read; `model` is then left as it was built.
    """
    config = _architecture(model)
    if state.run.get("config") != config:
        differences = _differences(state.run.get("config") or {}, config)
        raise ValueError(
            f"the resume state in {directory} was written by another model ({differences}); "
            "train into a new --model_dir, or pass --noresume to start this one afresh"
        )
    path = os.path.join(directory, state.weights)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    before = [v.numpy() for v in model.variables]
    try:
        model.load_weights(path)
    except Exception as error:  # h5py and Keras raise many types for a damaged file.
        for variable, value in zip(model.variables, before, strict=True):
            variable.assign(value)
        raise ValueError(f"cannot read the resume weights {path}: {error}") from error
    seed_generator = getattr(model, "seed_generator", None)
    if seed_generator is not None:
        seed_generator.state.assign(np.asarray(state.seed_state, seed_generator.state.dtype))


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
        state: TrainingState | None = None,
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
        path = os.path.join(self.directory, STATE_FILE)
        with open(path) as f:
            fields = json.load(f)
        _write_json_atomically(path, {**fields, "time_limit": seconds})

    # Files.

    def _save_weights(self, step: int) -> str:
        os.makedirs(self.directory, exist_ok=True)
        name = f"step_{step:09d}.weights.h5"
        temporary = os.path.join(self.directory, f".{os.getpid()}.tmp.weights.h5")
        try:
            self.model.save_weights(temporary)
            os.replace(temporary, os.path.join(self.directory, name))
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        return name

    def _commit(self, weights: str, epoch: int, batch: int, metric_states: dict) -> None:
        state = TrainingState(
            epoch=epoch,
            batch=batch,
            steps_per_epoch=self.steps_per_epoch,
            history=self.history,
            epoch_seconds=self.epoch_seconds,
            seconds_in_epoch=time.perf_counter() - self._start if batch else 0.0,
            metric_states=metric_states,
            seed_state=np.asarray(self.model.seed_generator.state).tolist(),
            weights=weights,
            run={**self.run, "config": _architecture(self.model)},
        )
        _write_json_atomically(
            os.path.join(self.directory, STATE_FILE), {"format": _FORMAT, **dataclasses.asdict(state)}
        )
        for name in os.listdir(self.directory):
            if name.endswith(".weights.h5") and name != weights and not name.startswith("."):
                os.remove(os.path.join(self.directory, name))


def _write_json_atomically(path: str, value: dict) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as f:
            json.dump(value, f, indent=1, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _architecture(model: keras.Model) -> dict:
    """The model's configuration as it reads back from JSON, less its name (Keras numbers those)."""
    config = {k: v for k, v in model.get_config().items() if k != "name"}
    return json.loads(json.dumps(config, default=str))


def _differences(saved: dict, current: dict) -> str:
    keys = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    return ", ".join(f"{k}={saved.get(k)!r} there, {current.get(k)!r} here" for k in keys) or "unknown"


def best_of(history: dict[str, list[float]], key: str) -> float:
    """The lowest finite value of `history[key]`, `inf` when there is none."""
    finite = [v for v in history.get(key, []) if math.isfinite(v)]
    return min(finite, default=math.inf)
