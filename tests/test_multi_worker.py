"""`tfp-glow train --strategy=multi_worker`: two worker processes on loopback, as on two hosts.

The README's multi-worker command, run twice with a TF_CONFIG each (free ports on 127.0.0.1), on
a tiny model: both workers must finish, with identical weights (MultiWorkerMirroredStrategy
all-reduces the gradients), and training must lower the loss. The chief writes --model_dir, the
other worker <model_dir>/worker_1.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.run_util import TINY_TRAIN_FLAGS, resume_weights

TIMEOUT = 240
FLAGS = [
    "--strategy=multi_worker",
    "--model_dir=run",
    "--epochs=2",
    *TINY_TRAIN_FLAGS,
    "--verbose=2",
    "--seed=1",
]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("multi_worker")
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(tf_config)}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tfp_glow.cli", "train", *FLAGS],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
            results.append((process.returncode, stdout, stderr))
    finally:
        for process in processes:
            process.kill()
    return cwd / "run", results


def test_both_workers_finish_and_only_the_chief_writes_the_run(cluster_run):
    run, results = cluster_run
    for returncode, _, stderr in results:
        assert returncode == 0, stderr[-3000:]
    assert (
        results[0][1]
        .strip()
        .endswith("test bits/dim (one sample, the paper's estimate): n/a (no --test_split)")
    )
    assert "model: run/model.keras" in results[0][1]
    assert "model: run/worker_1/model.keras" in results[1][1]
    for folder in (run, run / "worker_1"):
        assert (folder / "model.keras").is_file() and (folder / "checkpoints" / "epoch_002.keras").is_file()
    assert not (run / "worker_0").exists()


def test_workers_end_with_identical_weights_and_a_lower_loss(cluster_run):
    run, _ = cluster_run
    chief, other = resume_weights(run), resume_weights(run / "worker_1")
    assert chief.keys() == other.keys()
    for name in chief:  # model and optimizer state, updated by the same all-reduced gradients
        np.testing.assert_array_equal(chief[name], other[name], err_msg=name)
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert history["bits_per_dim"][1] < history["bits_per_dim"][0]
    assert history["val_bits_per_dim"][1] < history["val_bits_per_dim"][0]
    assert json.loads((run / "worker_1" / "metrics.json").read_text())["history"] == history
