"""Nothing lost: `tfp-glow train` killed with SIGKILL mid-epoch resumes where it stopped.

One module fixture trains the same tiny run twice in subprocesses: uninterrupted (A), and killed
with SIGKILL in the middle of its second epoch then started again (B). With --deterministic, B
must end exactly where A ends. The refusals (damaged or foreign resume states) run in this process
through `cli.main` on copies of B's folder.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.run_util import TINY_TRAIN_FLAGS, resume_state, resume_weights
from tfp_glow import cli

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
HERE = os.path.dirname(os.path.abspath(__file__))
# 1300 training digits in batches of 100: 13 batches per epoch, 39 in the run.
STEPS_PER_EPOCH, EPOCHS, CHECKPOINT_EVERY = 13, 3, 4
KILL_AFTER = 19  # batch 6 of epoch 2; the last commit before it is batch 16 (epoch 2, batch 3).
FLAGS = [
    f"--epochs={EPOCHS}",
    *TINY_TRAIN_FLAGS,
    "--verbose=0",
    f"--checkpoint_every={CHECKPOINT_EVERY}",
    "--seed=3",
]
TIMEOUT = 240


def _train(cwd, model_dir, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "tfp_glow.cli", "train", f"--model_dir={model_dir}", *FLAGS, *extra],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process):
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, stderr[-3000:]
    return stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Paths and records of run A (uninterrupted) and run B (killed, then resumed)."""
    cwd = tmp_path_factory.mktemp("resume")
    marker = cwd / "killed_here"
    uninterrupted = _train(cwd, "A", "--deterministic")
    doomed = subprocess.Popen(
        [
            sys.executable,
            os.path.join(HERE, "interrupted_train.py"),
            str(KILL_AFTER),
            str(marker),
            "--model_dir=B",
            *FLAGS,
            "--deterministic",
        ],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while not marker.exists():
        assert doomed.poll() is None, doomed.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run to be killed never reached its batch"
        time.sleep(0.2)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=TIMEOUT)
    doomed.stderr.close()
    killed = {
        "returncode": doomed.returncode,
        "state": resume_state(cwd / "B"),
        "files": sorted(p.name for p in (cwd / "B" / "checkpoints").iterdir()),
        "epoch_1_mtime": os.stat(cwd / "B" / "checkpoints" / "epoch_001.keras").st_mtime_ns,
    }
    resumed_stderr = _finish(_train(cwd, "B", "--deterministic"))
    _finish(uninterrupted)
    return cwd, killed, resumed_stderr


def test_the_kill_fell_mid_epoch_after_a_committed_checkpoint(runs):
    _, killed, _ = runs
    assert killed["returncode"] == -signal.SIGKILL
    state = killed["state"]
    assert (state["epoch"], state["batch"], state["steps_per_epoch"]) == (1, 3, STEPS_PER_EPOCH)
    assert state["weights"] == "step_000000016.weights.h5"
    assert len(state["history"]["bits_per_dim"]) == 1  # epoch 1 done, epoch 2 in progress
    assert killed["files"] == ["epoch_001.keras"]


def test_resumed_run_continues_the_step_counter_and_repeats_no_epoch(runs):
    cwd, killed, stderr = runs
    assert "resuming from epoch 2, batch 3 (training batch 16 of the run)" in stderr
    state = resume_state(cwd / "B")
    assert (state["epoch"], state["batch"]) == (EPOCHS, 0)
    assert state["weights"] == f"step_{EPOCHS * STEPS_PER_EPOCH:09d}.weights.h5"
    # The optimizer's step counter went on from 16, not from 0: 39 updates in all.
    assert int(resume_weights(cwd / "B")["optimizer/vars/0"]) == EPOCHS * STEPS_PER_EPOCH
    # Epoch 1 was not trained or written again; epochs 2 and 3 were written once.
    assert os.stat(cwd / "B" / "checkpoints" / "epoch_001.keras").st_mtime_ns == killed["epoch_1_mtime"]
    assert sorted(p.name for p in (cwd / "B" / "checkpoints").iterdir()) == [
        f"epoch_{e:03d}.keras" for e in range(1, EPOCHS + 1)
    ]
    with open(cwd / "B" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["epochs"] == EPOCHS
    assert all(len(values) == EPOCHS for values in metrics["history"].values())
    assert len(metrics["epoch_seconds"]) == EPOCHS


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(runs):
    cwd, _, _ = runs
    with open(cwd / "A" / "metrics.json") as f:
        expected = json.load(f)["history"]
    with open(cwd / "B" / "metrics.json") as f:
        history = json.load(f)["history"]
    # The resumed epoch reports the mean over all its batches, the ones before the kill included.
    for key, values in expected.items():
        np.testing.assert_allclose(history[key], values, rtol=1e-6, err_msg=key)
    a, b = resume_weights(cwd / "A"), resume_weights(cwd / "B")
    assert a.keys() == b.keys()
    for name in a:  # Model, optimizer moments and EMA; EMA swaps round at float precision.
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert resume_state(cwd / "A")["seed_state"] == resume_state(cwd / "B")["seed_state"]


# Refusals: nothing is trained or written.


def _snapshot(folder):
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def copy_of_b(runs, tmp_path):
    cwd, _, _ = runs
    model_dir = tmp_path / "B"
    shutil.copytree(cwd / "B", model_dir)
    return model_dir


def _main(model_dir, *extra):
    return cli.main(["tfp-glow", "train", f"--model_dir={model_dir}", *FLAGS, *extra])


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize(
    "damage, extra, status, message",
    [
        (
            lambda d: _truncate(d / "resume" / "state.json"),
            [],
            1,
            r"resume state .*state\.json is unreadable",
        ),
        (
            lambda d: _truncate(d / "resume" / "step_000000039.weights.h5"),
            [],
            1,
            r"cannot read the resume weights .*step_000000039",
        ),
        (
            lambda d: (d / "resume" / "step_000000039.weights.h5").unlink(),
            [],
            1,
            r"names step_000000039.weights.h5, which is missing",
        ),
        (lambda d: None, ["--num_steps=2"], 1, r"written by another model \(num_steps=1 there, 2 here\)"),
        (
            lambda d: None,
            ["--batch_size=50"],
            1,
            r"run on other data \(batch_size=100 there, 50 here.*--noresume",
        ),
    ],
    ids=["truncated state", "truncated weights", "missing weights", "other architecture", "other batch size"],
)
def test_a_damaged_or_foreign_resume_state_is_refused_and_nothing_is_touched(
    copy_of_b, capsys, damage, extra, status, message
):
    damage(copy_of_b)
    before = _snapshot(copy_of_b)
    assert _main(copy_of_b, *extra) == status
    assert _snapshot(copy_of_b) == before
    assert re.search(message, capsys.readouterr().err)


def test_resume_without_a_state_is_a_usage_error(tmp_path, capsys):
    assert _main(tmp_path / "empty", "--resume") == 2
    assert "resume=True, but there is no resume state in" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()


def test_a_finished_run_is_not_trained_again(copy_of_b, capsys):
    history = json.loads((copy_of_b / "metrics.json").read_text())["history"]
    checkpoints = _snapshot(copy_of_b / "checkpoints")
    assert _main(copy_of_b) == 0
    assert f"has trained {EPOCHS} epochs already" in capsys.readouterr().err
    assert _snapshot(copy_of_b / "checkpoints") == checkpoints
    assert json.loads((copy_of_b / "metrics.json").read_text())["history"] == history


def test_a_damaged_model_file_is_refused_by_evaluate(copy_of_b, capsys):
    _truncate(copy_of_b / "model.keras")
    assert cli.main(["tfp-glow", "evaluate", f"--model_dir={copy_of_b}"]) == 1
    assert "cannot load the model" in capsys.readouterr().err
