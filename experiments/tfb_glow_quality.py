"""Test bits/dim of tfp_glow's Glow against `tfp.bijectors.Glow` on digits, trained the same way.

    python -m experiments.tfb_glow_quality [--epochs=60] [--num_steps=8] [--hidden_channels=96]

Both flows have the digits shape (8x8x1, 17 levels), L=2 levels of K steps (affine coupling,
1x1 convolutions, ActNorm initialized on a real batch) and a coupling network of the given width,
each its own: TFP's `GlowDefaultNetwork` and exit networks over a standard normal, or the paper's
network and learned split and top priors (tfp_glow). Both train
with the one loop below, so that only the flows differ: uniform dequantization x = (k + u) / 17 -
0.5, Adam at lr 1e-3 with a linear warm-up of 100 steps, batch 64 over the 1,500 non-test digits
in one shuffled order per epoch, the mean bits/dim as the loss; no dropout, no weight average.
After each of a few epochs it reports the test bits/dim (the paper's one-sample estimate, the same
noise for both flows), and at the end the median ms per step; one flow at a time, each in this
process. The figures go in experiments/RESULTS.md, section 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NUM_BINS = 17
IMAGE_SHAPE = (8, 8, 1)
WARMUP_STEPS = 100


def dequantized(images, seed):
    """x = (k + u) / num_bins - 0.5, u ~ U[0, 1)^D from a stateless seed."""
    import tensorflow as tf

    from tfp_glow.quantization import to_unit_range

    return to_unit_range(images, NUM_BINS, tf.random.stateless_uniform(tf.shape(images), seed=seed))


def train_and_evaluate(flow: str, args, train, test) -> dict:
    """Trains one flow (`'tfp_glow'` or `'tfb_glow'`) and returns its test bits/dim by epoch."""
    import keras
    import numpy as np
    import tensorflow as tf

    import tfp_glow
    from experiments import benchmark

    config = SimpleNamespace(
        image_shape=IMAGE_SHAPE,
        num_levels=2,
        num_steps=args.num_steps,
        hidden_channels=args.hidden_channels,
        seed=args.seed,
    )
    first_batch = dequantized(tf.constant(train[: args.batch_size]), [args.seed, 0])
    build = benchmark._build_tfp_glow if flow == "tfp_glow" else benchmark._build_tfb_glow
    glow, distribution = build(config, first_batch)
    variables = list(glow.trainable_variables)
    schedule = keras.optimizers.schedules.PolynomialDecay(
        1e-3 / WARMUP_STEPS, WARMUP_STEPS, 1e-3, power=1.0
    )  # a linear ramp to 1e-3 over the warm-up, then constant
    optimizer = keras.optimizers.Adam(learning_rate=schedule)

    def mean_bits_per_dim(x):
        return tf.reduce_mean(tfp_glow.bits_per_dim(distribution.log_prob(x), IMAGE_SHAPE, NUM_BINS))

    @tf.function
    def train_step(images, seed):
        with tf.GradientTape() as tape:
            loss = mean_bits_per_dim(dequantized(images, seed))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    evaluate = tf.function(mean_bits_per_dim)
    test_x = dequantized(tf.constant(test), [args.seed + 1, 0])  # the same noise for both flows
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = len(train) // args.batch_size
    report_epochs = {e for e in (1, 5, 10, 20, 40, 60, 80, 100, 150, 200) if e <= args.epochs} | {args.epochs}
    result = {"flow": flow, "parameters": int(sum(np.prod(v.shape) for v in variables)), "test": {}}
    step_seconds, step = [], 0
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(train))
        for i in range(steps_per_epoch):
            batch = tf.constant(train[order[i * args.batch_size : (i + 1) * args.batch_size]])
            begin = time.perf_counter()
            loss = float(train_step(batch, tf.constant([args.seed, 2 + step])))  # float() waits
            step_seconds.append(time.perf_counter() - begin)
            step += 1
            if not np.isfinite(loss):
                raise FloatingPointError(f"{flow}: non-finite loss at epoch {epoch}, step {step}")
        if epoch in report_epochs:
            result["test"][epoch] = float(evaluate(test_x))
            print(f"{flow} epoch {epoch}: train {loss:.3f}, test {result['test'][epoch]:.3f}", flush=True)
    after_first_epoch = step_seconds[steps_per_epoch:] or step_seconds  # its steps trace the graph
    result["step_ms"] = 1e3 * statistics.median(after_first_epoch)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--num_steps", type=int, default=8, help="K, steps per level")
    parser.add_argument("--hidden_channels", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flows", default="tfp_glow,tfb_glow", help="comma-separated: tfp_glow, tfb_glow")
    args = parser.parse_args()
    from tfp_glow import data

    train = data.load_numpy("digits", "train+validation")
    test = data.load_numpy("digits", "test")
    results = [train_and_evaluate(flow, args, train, test) for flow in args.flows.split(",")]
    epochs = sorted({e for r in results for e in r["test"]})
    size = f"L=2, K={args.num_steps}, width {args.hidden_channels}, batch {args.batch_size}"
    print(f"\n{args.epochs} epochs, {size}; test bits/dim (one sample) after each epoch named")
    print("| flow | parameters | " + " | ".join(f"epoch {e}" for e in epochs) + " | ms / step |")
    print("|---|---|" + "---|" * len(epochs) + "---|")
    for r in results:
        cells = " | ".join(f"{r['test'][e]:.3f}" for e in epochs)
        print(f"| `{r['flow']}` | {r['parameters']:,} | {cells} | {r['step_ms']:.1f} |")


if __name__ == "__main__":
    main()
