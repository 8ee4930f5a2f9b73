"""The Keras training step of the digits preset: time per step, graph ops, first call.

The default `tfp-glow train` spends most of its 5 minutes in this step (21 per epoch at
batch 64), and at 8x8 images a step is bound by per-op overhead, not arithmetic: the
graph's op count matters as much as its FLOPs. Times the compiled `train_function` of a
`GlowModel.from_preset("digits")` after one epoch of `fit` (tracing and warm-up), and
counts the ops of its train step's graph.

    python experiments/digits_step.py [--batch_sizes=64,128] [--steps=30]

To compare with an older commit, run the same script with that commit's package first
on the path: `PYTHONPATH=/path/to/old/checkout python experiments/digits_step.py`.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfp_glow  # noqa: E402
from tfp_glow import data  # noqa: E402
from tfp_glow.models import PRESETS, GlowModel, default_optimizer  # noqa: E402


def graph_ops(model: GlowModel, batch) -> collections.Counter:
    """Op types (with counts) of one train step's graph, its functions included."""
    graph = tf.function(model.train_step).get_concrete_function(batch).graph.as_graph_def()
    ops = collections.Counter(node.op for node in graph.node)
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    return ops


def measure(batch_size: int, steps: int) -> dict:
    model = GlowModel.from_preset("digits", seed=0)
    train = data.load("digits", "train", batch_size, shuffle=True)
    model.compile(optimizer=default_optimizer(PRESETS["digits"].learning_rate, 200, None, ema_momentum=0.99))
    start = time.perf_counter()
    model.fit(train, epochs=1, verbose=0)
    first_epoch = time.perf_counter() - start
    batches = iter(train.repeat())
    for _ in range(3):
        model.train_function(batches)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_function(batches)
        times.append(time.perf_counter() - start)
    ops = graph_ops(model, next(iter(train)))
    return dict(
        batch_size=batch_size,
        ms_per_step=1e3 * float(np.median(times)),
        min_ms_per_step=1e3 * float(np.min(times)),
        first_epoch_s=first_epoch,
        graph_ops=sum(ops.values()),
        graph_ops_without_constants=sum(ops.values()) - ops["Const"],
    )


def _commit() -> str:
    folder = os.path.dirname(os.path.dirname(os.path.abspath(tfp_glow.__file__)))
    try:
        return subprocess.run(
            ["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch_sizes", default="64", help="comma-separated")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (median reported)")
    args = parser.parse_args()
    print(
        f"tfp_glow from {os.path.dirname(tfp_glow.__file__)} (commit {_commit()}), "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print("| batch | ms / step (median) | min | first epoch (s) | graph ops | without Const |")
    print("|---|---|---|---|---|---|")
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        r = measure(batch_size, args.steps)
        print(
            f"| {r['batch_size']} | {r['ms_per_step']:.1f} | {r['min_ms_per_step']:.1f} | "
            f"{r['first_epoch_s']:.1f} | {r['graph_ops']:,} | {r['graph_ops_without_constants']:,} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
