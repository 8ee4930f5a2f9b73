"""Peak training memory against depth, with and without memory-efficient gradients.

    python experiments/memory.py [--steps_per_level=4,32] [--image_shape=28,28,1] [--num_levels=2]
                                 [--hidden_channels=128] [--batch_size=64] [--train_steps=3]

Each configuration trains for a few steps (loss, gradients, Adam update in one
tf.function) in its own process, and reports that process's peak RSS; the ratio
K=32 / K=4 is the figure of the performance issue's target (at most 1.3 with
memory-efficient gradients). RSS includes TensorFlow itself (a constant few
hundred MB) and the weights (linear in K either way).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _worker(config: dict) -> dict:
    import keras
    import tensorflow as tf

    import tfp_glow

    glow = tfp_glow.Glow(
        tuple(config["image_shape"]),
        config["num_levels"],
        config["num_steps"],
        hidden_channels=config["hidden_channels"],
        memory_efficient=config["memory_efficient"],
        seed=0,
    )
    images = tf.random.stateless_uniform([config["batch_size"], *config["image_shape"]], [0, 1], -0.5, 0.5)
    glow.initialize(images)
    dist = tfp_glow.glow_distribution(glow)
    optimizer = keras.optimizers.Adam(1e-3)
    variables = list(glow.trainable_variables)
    optimizer.build(variables)
    after_build = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @tf.function
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    # Tracing alone (no run): the graph itself also grows with K.
    train_step.get_concrete_function(images)
    after_trace = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for _ in range(config["train_steps"]):
        loss = float(train_step(images))
    return dict(
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        rss_before_training_mb=after_build / 1024,
        peak_rss_after_tracing_mb=after_trace / 1024,
        seconds=time.perf_counter() - start,
        loss=loss,
        parameters=sum(int(v.shape.num_elements()) for v in variables),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps_per_level", default="4,32")
    parser.add_argument("--image_shape", default="28,28,1")
    parser.add_argument("--num_levels", type=int, default=2)
    parser.add_argument("--hidden_channels", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--train_steps", type=int, default=3)
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        print(json.dumps(_worker(json.loads(args._worker))))
        return
    rows = []
    for memory_efficient in (False, True):
        for k in (int(n) for n in args.steps_per_level.split(",")):
            config = dict(
                image_shape=[int(n) for n in args.image_shape.split(",")],
                num_levels=args.num_levels,
                num_steps=k,
                hidden_channels=args.hidden_channels,
                batch_size=args.batch_size,
                train_steps=args.train_steps,
                memory_efficient=memory_efficient,
            )
            out = subprocess.run(
                [sys.executable, __file__, f"--_worker={json.dumps(config)}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            rows.append((memory_efficient, k, result))
            print(f"memory_efficient={memory_efficient} K={k}: {result}", file=sys.stderr, flush=True)
    print(
        f"`python experiments/memory.py {' '.join(sys.argv[1:])}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, load {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| gradients | K | parameters | peak RSS (MB) | before training (MB) | after tracing (MB) "
        "| growth in the steps (MB) | s / step |"
    )
    print("|---|---|---|---|---|---|---|---|")
    growth = {}
    for memory_efficient, k, r in rows:
        grown = r["peak_rss_mb"] - r["peak_rss_after_tracing_mb"]
        growth[(memory_efficient, k)] = r["peak_rss_mb"]
        print(
            f"| {'memory-efficient' if memory_efficient else 'plain'} | {k} | {r['parameters']:,} | "
            f"{r['peak_rss_mb']:.0f} | {r['rss_before_training_mb']:.0f} | "
            f"{r['peak_rss_after_tracing_mb']:.0f} | "
            f"{grown:.0f} | "
            f"{r['seconds'] / args.train_steps:.2f} |"
        )
    ks = sorted({k for _, k, _ in rows})
    for memory_efficient in (False, True):
        ratio = growth[(memory_efficient, ks[-1])] / growth[(memory_efficient, ks[0])]
        kind = "memory-efficient" if memory_efficient else "plain"
        print(f"\npeak RSS ratio K={ks[-1]} / K={ks[0]}, {kind}: {ratio:.2f}")


if __name__ == "__main__":
    main()
