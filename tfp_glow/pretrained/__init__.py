"""Trained weights that ship with the package, for inference without training or a download.

`digits`: the digits preset trained by the default run (`tfp-glow train`) on scikit-learn's
digits, as `python experiments/pretrained.py` makes it: `digits.weights.h5` (the weight average
of the best epoch, no optimizer state) and `digits.json` (the model's configuration and its test
figures). `GlowModel.from_preset("digits", pretrained=True)` and the CLI's `--pretrained=digits`
load them; this module only finds the files.
"""

from __future__ import annotations

import json
import os

__all__ = ["NAMES", "NOT_ARCHITECTURE", "info", "weights_path"]

FOLDER = os.path.dirname(os.path.abspath(__file__))
NAMES = ("digits",)
# Arguments of GlowModel that change no variable, which a pretrained model may still take.
NOT_ARCHITECTURE = ("memory_efficient", "on_nonfinite", "init_batch_size")


def _check(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"There are pretrained weights for {list(NAMES)} only. Received: name={name!r}")


def weights_path(name: str) -> str:
    _check(name)
    return os.path.join(FOLDER, f"{name}.weights.h5")


def info(name: str) -> dict:
    """The record of the pretrained model `name`: its `config` and its test `figures`."""
    _check(name)
    with open(os.path.join(FOLDER, f"{name}.json")) as f:
        return json.load(f)
