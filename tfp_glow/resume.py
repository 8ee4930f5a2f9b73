"""Resumable training: the state that lets an interrupted `fit` continue where it stopped.

A run's resume state lives in one folder (`<model_dir>/resume/`):

  state.json                 what was done: epoch, batch within the epoch, history, metric
                             and RNG states, the model's configuration, which weights file
  step_NNNNNNNNN.weights.h5  the model's weights with the optimizer state (step counter, moments,
                             EMA), ActNorm state included, after NNNNNNNNN training batches

Every file is written under a temporary name, flushed to the disk and renamed into place, and its
folder synced (`tfp_glow.files`); `state.json` is written last and names its weights file, so a
crash or a power loss at any moment leaves the previous consistent state (the commit point is the
rename of `state.json`, after the weights it names are on the disk). Weights files that no
`state.json` names are removed after each commit.

`tfp_glow.callbacks.ResumeCheckpoint` commits every `every_steps` training batches and at the end
of every epoch, after the callbacks listed before it (the epoch's checkpoints, samples, best model)
have run. The data
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

import keras
import numpy as np

from tfp_glow import files

__all__ = [
    "TrainingState",
    "architecture",
    "best_of",
    "commit",
    "load_state",
    "mark_time_limit",
    "restore",
    "save_weights",
]

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
    config = architecture(model)
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


def save_weights(model: keras.Model, directory: str, step: int) -> str:
    """Writes the model's weights and optimizer state after `step` training batches into
    `directory`, durably (`tfp_glow.files`); returns the file's name."""
    name = f"step_{step:09d}.weights.h5"
    with files.atomic_path(os.path.join(directory, name), suffix=".weights.h5") as temporary:
        model.save_weights(temporary)
    return name


def commit(directory: str, state: TrainingState) -> None:
    """Makes `state` the committed one (the rename of `state.json`, after its weights file is on
    the disk), then removes the weights files no state names."""
    _write_json_atomically(
        os.path.join(directory, STATE_FILE), {"format": _FORMAT, **dataclasses.asdict(state)}
    )
    for name in os.listdir(directory):
        if name.endswith(".weights.h5") and name != state.weights and not name.startswith("."):
            os.remove(os.path.join(directory, name))


def mark_time_limit(directory: str, seconds: float) -> None:
    """Marks the committed state (an epoch's end) as where the time limit `seconds` ended the run,
    for a later command to tell a finished run from an interrupted one."""
    path = os.path.join(directory, STATE_FILE)
    with open(path) as f:
        fields = json.load(f)
    _write_json_atomically(path, {**fields, "time_limit": seconds})


def _write_json_atomically(path: str, value: dict) -> None:
    files.write_text(path, json.dumps(value, indent=1, allow_nan=True))


def architecture(model: keras.Model) -> dict:
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
