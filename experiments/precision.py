"""fp32 against mixed bfloat16 and float16 on this machine: training step time and bits/dim.

    python experiments/precision.py [--steps=300] [--num_steps=8] [--hidden_channels=96]

Trains the same digits model (the digits preset's architecture with uniform dequantization and
no dropout, batch 64, Adam 3e-3) for `--steps` steps under each Keras dtype policy, from the
same initial weights and data order, then evaluates each in float32 (its weights copied into a
float32 model) on the test split with the same noise. Prints one Markdown row per policy: the
median step time after the first epoch (tracing excluded), the test bits/dim, and its difference
from fp32's. bfloat16 only pays where the CPU has bfloat16 units (AVX-512 BF16, AMX); float16
convolutions run emulated on most CPUs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfp_glow  # noqa: E402
from tfp_glow import data  # noqa: E402

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


class StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def cpu() -> str:
    info = open("/proc/cpuinfo").read()
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    features = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in info]
    name = names[0] if names else platform.processor()
    return f"{name}, {os.cpu_count()} cores, {' '.join(features) or 'no AVX-512'}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--num_steps", type=int, default=8)
    parser.add_argument("--hidden_channels", type=int, default=96)
    args = parser.parse_args()
    train, test = data.load_numpy("digits", "train"), data.load_numpy("digits", "test")
    config = dict(
        num_steps=args.num_steps,
        hidden_channels=args.hidden_channels,
        seed=0,
        dequantization="uniform",
        dropout=0.0,
    )
    steps_per_epoch = len(train) // 64
    epochs = max(2, -(-args.steps // steps_per_epoch))
    rows, figures = [], {}
    for policy in POLICIES:
        keras.utils.set_random_seed(0)
        model = tfp_glow.GlowModel.from_preset("digits", **config, dtype_policy=policy)
        model.compile(optimizer=tfp_glow.default_optimizer(3e-3, warmup_steps=20))
        times = StepTimes()
        model.fit(
            train[: steps_per_epoch * 64],
            batch_size=64,
            epochs=epochs,
            shuffle=False,
            verbose=0,
            callbacks=[times],
        )
        in_float32 = tfp_glow.GlowModel.from_preset("digits", **config)
        in_float32.set_weights(model.get_weights())
        figures[policy] = float(tf.reduce_mean(in_float32.bits_per_dim(test, seed=0)))
        step = statistics.median(times.times[steps_per_epoch:])
        rows.append((policy, step, figures[policy]))
    print(
        f"{time.strftime('%Y-%m-%d')}, {cpu()}, TF {tf.__version__}, Keras {keras.__version__}; "
        f"{epochs * steps_per_epoch} steps, L=2 K={args.num_steps} width {args.hidden_channels}, batch 64\n"
    )
    print("| policy | step (median) | vs fp32 | test bits/dim (one sample, in float32) | vs fp32 |")
    print("|---|---|---|---|---|")
    for policy, step, bpd in rows:
        print(
            f"| `{policy}` | {1000 * step:.1f} ms | {step / rows[0][1]:.2f}x | {bpd:.3f} | "
            f"{bpd - figures['float32']:+.3f} |"
        )


if __name__ == "__main__":
    main()
