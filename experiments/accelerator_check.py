"""The training step on an accelerator: fp32 / bf16, with and without XLA, plain and memory-efficient.

    python experiments/accelerator_check.py [--out_dir=/tmp/accelerator_check] [--steps=10]

For the cifar10 preset (32x32x3, L=3, K=32, width 512) at batch 64 (per replica), on the first
visible GPU (or the CPU if there is none), it measures for each configuration

  precision fp32 | bf16  x  XLA off | on  x  gradients plain | memory-efficient (recompute)

the training step's images/s (median of `--steps` steps after two warm-up steps, which trace and
compile) and the peak device memory of those steps; then sampling images/s (64 at a time), the
plain fp32 and bf16 steps under MirroredStrategy over every visible GPU (global batch 64 per
replica), and whether the XLA step's first loss equals the plain step's (same weights, same
batch, same noise; relative difference <= 1e-4). It writes `accelerator_check.json` and
`accelerator_check.md` (one table) into `--out_dir` and prints the table. Budget: under 8
minutes on one GPU with the defaults. `--num_steps`, `--hidden_channels`, `--num_levels` and
`--image_shape` shrink the model (the test suite runs it that way on the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfp_glow  # noqa: E402

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out_dir", default="/tmp/accelerator_check")
    parser.add_argument("--preset", default="cifar10")
    parser.add_argument("--batch_size", type=int, default=64, help="per replica")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--num_levels", type=int, default=None)
    parser.add_argument("--num_steps", type=int, default=None)
    parser.add_argument("--hidden_channels", type=int, default=None)
    parser.add_argument("--image_shape", default=None, help="'H,W,C' (default: the preset's)")
    return parser.parse_args(argv)


def _device() -> str:
    gpus = tf.config.list_logical_devices("GPU")
    return gpus[0].name if gpus else "/CPU:0"


def _device_name() -> str:
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)} x {details.get('device_name', 'GPU')}"
    return "CPU (no GPU visible)"


def _memory(device: str) -> tuple[callable, callable]:
    """(reset, peak in MiB or None) of the device's allocator, where TensorFlow reports it."""
    name = device.split("device:")[-1].lstrip("/")
    if not name.upper().startswith("GPU"):
        return (lambda: None), (lambda: None)  # the CPU's allocator reports a peak of 0
    try:
        tf.config.experimental.reset_memory_stats(name)
    except (ValueError, tf.errors.OpError):
        return (lambda: None), (lambda: None)

    def peak():
        return tf.config.experimental.get_memory_info(name)["peak"] / 2**20

    return (lambda: tf.config.experimental.reset_memory_stats(name)), peak


def _model(args, precision: str, memory_efficient, strategy=None):
    overrides = {
        k: getattr(args, k) for k in ("num_levels", "num_steps", "hidden_channels") if getattr(args, k)
    }
    if args.image_shape:
        overrides["image_shape"] = tuple(int(d) for d in args.image_shape.split(","))
    keras.utils.set_random_seed(0)
    with strategy.scope() if strategy else _null():
        model = tfp_glow.GlowModel.from_preset(
            args.preset,
            **overrides,
            memory_efficient=memory_efficient,
            dtype_policy=POLICIES[precision],
            seed=0,
        )
    return model


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _images(model, count: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, model.input_levels, (count, *model.image_shape)).astype(np.uint8)


def time_training(args, precision, xla, memory_efficient, device, strategy=None) -> dict:
    replicas = strategy.num_replicas_in_sync if strategy else 1
    batch = args.batch_size * replicas
    with tf.device(device) if strategy is None else _null():
        model = _model(args, precision, memory_efficient, strategy)
        images = _images(model, batch * (args.steps + 2))
        model.initialize(images[:batch])
        with strategy.scope() if strategy else _null():
            model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=xla)
        dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch, drop_remainder=True)
        times, losses = [], []

        class Clock(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch_index, logs=None):
                self.start = time.perf_counter()

            def on_train_batch_end(self, batch_index, logs=None):
                times.append(time.perf_counter() - self.start)
                losses.append(float(logs["loss"]))

        reset, peak = _memory(device)
        reset()
        model.fit(dataset, epochs=1, verbose=0, callbacks=[Clock()])
    step = statistics.median(times[2:])
    return {
        "precision": precision,
        "xla": xla,
        "memory_efficient": bool(memory_efficient),
        "replicas": replicas,
        "images_per_second": batch / step,
        "step_ms": 1000 * step,
        "peak_memory_mib": peak(),
        "first_loss": losses[0],
    }


def time_sampling(args, device) -> float:
    with tf.device(device):
        model = _model(args, "fp32", False)
        model.initialize(_images(model, args.batch_size))
        model.sample(args.batch_size, seed=0)  # traces
        start = time.perf_counter()
        for seed in range(3):
            model.sample(args.batch_size, seed=seed + 1).numpy()
    return 3 * args.batch_size / (time.perf_counter() - start)


def table(results: dict) -> str:
    lines = [
        f"{results['date']}, {results['device']}, TF {results['tensorflow']}; preset {results['preset']}, "
        f"batch {results['batch_size']} per replica",
        "",
        "| precision | XLA | gradients | replicas | images/s | step | peak memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["training"]:
        memory = "n/a" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:.0f} MiB"
        lines.append(
            f"| {row['precision']} | {'on' if row['xla'] else 'off'} | "
            f"{'memory-efficient' if row['memory_efficient'] else 'plain'} | {row['replicas']} | "
            f"{row['images_per_second']:.1f} | {row['step_ms']:.0f} ms | {memory} |"
        )
    lines += [
        "",
        f"Sampling: {results['sampling_images_per_second']:.1f} images/s. XLA's first loss equals the plain "
        f"step's: {results['xla_loss_equal']} (relative difference {results['xla_loss_difference']:.1e}).",
    ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = _device()
    training = [
        time_training(args, precision, xla, memory_efficient, device)
        for precision in POLICIES
        for xla in (False, True)
        for memory_efficient in (False, "recompute")
    ]
    gpus = tf.config.list_logical_devices("GPU")
    strategy = tf.distribute.MirroredStrategy([d.name for d in gpus] if gpus else ["/cpu:0"])
    training += [time_training(args, precision, False, False, device, strategy) for precision in POLICIES]
    plain, xla = training[0], training[2]  # fp32, plain gradients, XLA off and on
    difference = abs(xla["first_loss"] - plain["first_loss"]) / abs(plain["first_loss"])
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "device": _device_name(),
        "tensorflow": tf.__version__,
        "preset": args.preset,
        "batch_size": args.batch_size,
        "training": training,
        "sampling_images_per_second": time_sampling(args, device),
        "xla_loss_difference": difference,
        "xla_loss_equal": bool(difference <= 1e-4),
    }
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "accelerator_check.json"), "w") as f:
        json.dump(results, f, indent=1)
    text = table(results)
    with open(os.path.join(args.out_dir, "accelerator_check.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()
