"""Every commit point flushes the file to the disk before its rename, and the folder after it.

A spy on `os.fsync`, `os.replace` and `os.rename` records each call with the path it touches (for
fsync, the path of the descriptor); the tests check the order on real writes of the package:
a text file, a resume commit (weights, then state.json), an epoch checkpoint and an export.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

import tfp_glow
from tfp_glow import export, files, resume
from tfp_glow.callbacks import AtomicCheckpoint


@pytest.fixture
def calls(monkeypatch):
    """The recorded calls: ("fsync", path), ("rename", source, target)."""
    recorded = []
    fsync, replace, rename = os.fsync, os.replace, os.rename

    def spy_fsync(descriptor):
        recorded.append(("fsync", os.path.realpath(os.readlink(f"/proc/self/fd/{descriptor}"))))
        return fsync(descriptor)

    def spy(kind, function):
        def renamed(source, target, *args, **kwargs):
            recorded.append(("rename", os.path.realpath(source), os.path.realpath(target)))
            return function(source, target, *args, **kwargs)

        return renamed

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy("replace", replace))
    monkeypatch.setattr(os, "rename", spy("rename", rename))
    return recorded


def _check_commits(calls, expected_targets):
    """Each rename to one of `expected_targets` comes after an fsync of its source (every file
    under it, for a folder) and before an fsync of the target's folder; returns the renames."""
    renames = [(i, c) for i, c in enumerate(calls) if c[0] == "rename" and c[2] in expected_targets]
    assert [c[2] for _, c in renames] == list(expected_targets)
    for i, (_, source, target) in renames:
        synced_before = {c[1] for c in calls[:i] if c[0] == "fsync"}
        if os.path.isdir(target):
            inside = {
                os.path.join(source, os.path.relpath(os.path.join(d, n), target))
                for d, _, names in os.walk(target)
                for n in names
            }
            assert inside and inside <= synced_before, inside - synced_before
        else:
            assert source in synced_before, (source, calls[:i])
        synced_after = [c[1] for c in calls[i + 1 :] if c[0] == "fsync"]
        assert os.path.dirname(target) in synced_after, (target, calls[i + 1 :])
    return renames


def test_a_text_file_is_synced_before_its_rename_and_its_folder_after(tmp_path, calls):
    path = str(tmp_path / "metrics.json")
    files.write_text(path, "{}")
    _check_commits(calls, [os.path.realpath(path)])


def test_new_folders_are_synced_into_their_parents_before_a_commit_in_them(tmp_path, calls):
    path = tmp_path / "run" / "checkpoints" / "metrics.json"
    files.write_text(str(path), "{}")
    (i, _), *_ = _check_commits(calls, [os.path.realpath(path)])
    synced = [c[1] for c in calls[:i] if c[0] == "fsync"]
    holds_run, holds_checkpoints = os.path.realpath(tmp_path), os.path.realpath(tmp_path / "run")
    # The entry of run/ (in tmp_path), then of checkpoints/ (in run/), before the file is renamed.
    assert holds_run in synced and holds_checkpoints in synced
    assert synced.index(holds_run) < synced.index(holds_checkpoints)


def test_make_directories_keeps_existing_folders_and_refuses_a_file(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "kept.txt").write_text("x")
    files.make_directories(str(tmp_path / "a"))
    assert (tmp_path / "a" / "kept.txt").read_text() == "x"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        files.make_directories(str(tmp_path / "file"))


def test_a_resume_commit_makes_its_weights_durable_before_the_state_names_them(tmp_path, calls):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    directory = str(tmp_path / "resume")
    os.makedirs(directory)
    name = resume.save_weights(model, directory, step=7)
    state = resume.TrainingState(
        epoch=0,
        batch=7,
        steps_per_epoch=10,
        history={},
        epoch_seconds=[],
        seconds_in_epoch=1.0,
        metric_states={},
        seed_state=[0, 0],
        weights=name,
        run={},
    )
    resume.commit(directory, state)
    weights, state = (os.path.realpath(os.path.join(directory, n)) for n in (name, resume.STATE_FILE))
    (i, _), (j, _) = _check_commits(calls, [weights, state])
    # The state is renamed into place only after the weights' folder entry is on the disk.
    assert ("fsync", os.path.realpath(directory)) in calls[i + 1 : j]


def test_an_epoch_checkpoint_and_the_best_models_copy_are_durable(tmp_path, calls):
    model = tfp_glow.GlowModel.from_preset("digits", num_levels=1, num_steps=1, hidden_channels=4)
    every = AtomicCheckpoint(str(tmp_path / "epoch_{epoch:03d}.keras"), include_optimizer=False)
    best = AtomicCheckpoint(str(tmp_path / "model.keras"), copy_from=every, include_optimizer=False)
    for callback in (every, best):
        callback.set_model(model)
        callback.on_epoch_end(0, {"bits_per_dim": 1.0})
    targets = [os.path.realpath(str(tmp_path / n)) for n in ("epoch_001.keras", "model.keras")]
    _check_commits(calls, targets)


def test_an_export_is_synced_file_by_file_before_the_version_folder_is_renamed(tmp_path, calls):
    model = tfp_glow.GlowModel.from_preset("digits", num_levels=1, num_steps=1, hidden_channels=4)
    model.initialize(np.zeros((4, 8, 8, 1), np.uint8))
    path = export.export_saved_model(model, str(tmp_path))
    _check_commits(calls, [os.path.realpath(path)])
