"""Reconstruction error of a deep Glow (L=3, K=32, float32) at initialization and after training.

    python -m experiments.deep_reconstruction [--num_levels=3] [--num_steps=32] [--hidden_channels=16]
                                              [--train_steps=200] [--batch_size=32] [--perturb=0.02]

The reliability issue's figure: a model of the paper's depth (L=3, K=32, 96 steps of flow) on
scikit-learn's digits (8x8x1, 17 levels; 8 is divisible by 2**3) must reconstruct its input,
`forward(inverse(x))`, to 1e-4 after random initialization and after 200 training steps. The
width is small (the CPU budget), the depth is the paper's. Reported, as max |x' - x| over the
297 test digits (bin centres, x in [-0.5, 0.5]):

  init        the model as `GlowModel` initializes it (random rotations in the 1x1 convolutions,
              random conv kernels, data-dependent ActNorm, zero output convolutions)
  perturbed   the same with every trainable weight moved by N(0, perturb^2) (couplings and
              priors no longer the identity); the weights are restored before training
  trained     after `train_steps` Adam steps of `GlowModel.fit` (batch `batch_size`)

and the float64 error of the same round trip (the float32 error's floor), the bits/dim before
and after training, and the times.

With the trained weights it also measures what the reversible memory-efficient gradient
(`memory_efficient="reversible"`, which stores nothing per step and rebuilds each step's input
from its output) costs in accuracy, against the recomputing one (which stores each step's input,
exact): per level, the largest error of the inputs it rebuilds, max |x_k' - x_k| over the level's
K steps (its first step's input carries the round-off of all K: the level's own round trip), and
the relative error of the whole gradient, ||g_reversible - g_recompute|| / ||g_recompute||, on a
batch of test digits. One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--num_levels", type=int, default=3)
    parser.add_argument("--num_steps", type=int, default=32)
    parser.add_argument("--hidden_channels", type=int, default=16)
    parser.add_argument("--train_steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--perturb", type=float, default=0.02)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf
    import tensorflow_probability as tfp

    from tfp_glow import GlowModel, data

    start = time.perf_counter()
    train, test = data.load_numpy("digits", "train"), data.load_numpy("digits", "test")
    model = GlowModel.from_preset(
        "digits",
        num_levels=args.num_levels,
        num_steps=args.num_steps,
        hidden_channels=args.hidden_channels,
        seed=0,
    )
    model.initialize(train[:256])
    glow = model.bijector
    x = model.preprocess(test)
    round_trip = tf.function(lambda x: glow.forward(tf.identity(glow.inverse(x))))

    def error() -> float:
        return float(tf.reduce_max(tf.abs(round_trip(x) - x)))

    def bits() -> float:
        return float(tf.reduce_mean(model.bits_per_dim(test)))

    figures = {"init": error()}
    traced = time.perf_counter()
    figures["bits_per_dim_init"] = bits()

    saved = [v.numpy() for v in glow.trainable_variables]
    rng = np.random.default_rng(1)
    for v in glow.trainable_variables:
        v.assign_add((args.perturb * rng.standard_normal(v.shape)).astype(np.float32))
    figures["perturbed"] = error()
    for v, value in zip(glow.trainable_variables, saved, strict=True):
        v.assign(value)

    model.compile()
    dataset = data.load("digits", "train", batch_size=args.batch_size, repeat=True, drop_remainder=True)
    fit_start = time.perf_counter()
    history = model.fit(dataset, epochs=1, steps_per_epoch=args.train_steps, verbose=0).history
    fit_seconds = time.perf_counter() - fit_start
    figures["trained"] = error()
    figures["bits_per_dim_trained"] = bits()
    figures["nonfinite_steps"] = history["nonfinite_steps"][-1]

    # The same round trip in float64 (weights copied): how much of the error is float32 round-off.
    glow64 = type(glow)(
        (8, 8, 1),
        args.num_levels,
        args.num_steps,
        hidden_channels=args.hidden_channels,
        learn_top_prior=True,
        seed=0,
        dtype=tf.float64,
    )
    for v64, v in zip(glow64.variables, glow.variables, strict=True):
        v64.assign(tf.cast(v, v64.dtype))
    x64 = tf.cast(x, tf.float64)
    # tf.identity: a fresh tensor, or TFP's bijector cache answers forward(inverse(x)) with x itself.
    x64_again = glow64.forward(tf.identity(glow64.inverse(x64)))
    figures["trained_float64"] = float(tf.reduce_max(tf.abs(x64_again - x64)))

    reversible = _reversible_gradient_error(glow, args, x[: args.batch_size])

    print(
        json.dumps(
            {
                "config": vars(args) | {"image_shape": [8, 8, 1], "num_bins": 17, "dtype": "float32"},
                "max_abs_error": {k: figures[k] for k in ("init", "perturbed", "trained", "trained_float64")},
                "reversible_gradient": reversible,
                "bits_per_dim": {k: round(figures[f"bits_per_dim_{k}"], 4) for k in ("init", "trained")},
                "nonfinite_steps": figures["nonfinite_steps"],
                "optimizer_steps": int(model.optimizer.iterations.numpy()),
                "seconds": {
                    "first_round_trip_with_trace": round(traced - start, 1),
                    "fit": round(fit_seconds, 1),
                    "total": round(time.perf_counter() - start, 1),
                },
                "versions": {
                    "python": platform.python_version(),
                    "tensorflow": tf.__version__,
                    "tensorflow_probability": tfp.__version__,
                    "keras": keras.__version__,
                },
            }
        )
    )


def _reversible_gradient_error(glow, args, x) -> dict:
    """The reversible gradient against the recomputing (exact) one, on the weights of `glow`."""
    import numpy as np
    import tensorflow as tf

    import tfp_glow

    def copy(memory_efficient):
        other = tfp_glow.Glow(
            (8, 8, 1),
            args.num_levels,
            args.num_steps,
            hidden_channels=args.hidden_channels,
            learn_top_prior=True,
            memory_efficient=memory_efficient,
            seed=0,
        )
        for target, source in zip(other.variables, glow.variables, strict=True):
            target.assign(source)
        return other

    def gradients(flow):
        @tf.function
        def run(x):
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(tfp_glow.glow_distribution(flow).log_prob(x))
            return tape.gradient(loss, flow.trainable_variables)

        return np.concatenate([np.ravel(g) for g in run(x)])

    exact = gradients(copy("recompute"))
    rebuilt = gradients(copy("reversible"))
    # The rebuilt inputs of each level: its round trip, from the level's output back to its input.
    level_errors = []
    h = x
    for level in range(glow.num_levels):
        h = glow.expand.inverse(h)
        y = glow.steps[level].inverse(h)
        level_errors.append(float(tf.reduce_max(tf.abs(glow.steps[level].forward(tf.identity(y)) - h))))
        h = y
        if level < glow.num_levels - 1:
            h = glow.split_priors[level].inverse(h)[..., : glow.split_priors[level].channels_kept]
    return {
        "batch": int(x.shape[0]),
        "rebuilt_input_max_abs_error_per_level": level_errors,
        "relative_error": float(np.linalg.norm(rebuilt - exact) / np.linalg.norm(exact)),
        "max_abs_error": float(np.max(np.abs(rebuilt - exact))),
        "max_abs_gradient": float(np.max(np.abs(exact))),
        "finite": bool(np.all(np.isfinite(rebuilt))),
    }


if __name__ == "__main__":
    main()
