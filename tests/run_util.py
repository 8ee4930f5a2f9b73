"""Reading what a `tfp-glow train` run left in its model_dir."""

from __future__ import annotations

import json
import os

import h5py

# A digits model small enough for subprocess runs of `tfp-glow train`: 13 batches per epoch of the
# 1,300 training images, and the 200 validation images to pick the best epoch.
TINY_TRAIN_FLAGS = [
    "--train_split=train",
    "--validation_split=validation",
    "--num_levels=1",
    "--num_steps=1",
    "--hidden_channels=4",
    "--batch_size=100",
    "--num=4",
    "--warmup_steps=5",
    "--test_split=",
]


def resume_state(model_dir) -> dict:
    """The committed `resume/state.json` of a run."""
    with open(os.path.join(model_dir, "resume", "state.json")) as f:
        return json.load(f)


def resume_weights(model_dir) -> dict:
    """Every array of the committed resume weights (model and optimizer state), by HDF5 path."""
    arrays = {}

    def keep(name, item):
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]
        # None: visititems stops at the first callback that returns anything else.

    path = os.path.join(model_dir, "resume", resume_state(model_dir)["weights"])
    with h5py.File(path) as f:
        f.visititems(keep)
    return arrays
