"""Out-of-distribution detection by likelihood: digits test images against noise and transformed digits.

    python -m experiments.ood [--model_dir=/tmp/glow_digits] [--epochs=20]

Loads (or trains, as experiments/linear_probe.py does) the digits model in --model_dir
and scores images by their bits per dimension (`model.score`, higher = less likely). The
in-distribution set is the digits test split; each out-of-distribution set has as many
images:

- uniform noise: every pixel uniform over the 17 levels;
- upside-down: the test digits flipped vertically;
- mirrored: the test digits flipped horizontally;
- inverted: the test digits with levels k -> 16 - k (white digit on black becomes black on white).

For each set, the AUROC of "bits/dim > threshold => out of distribution"
(`sklearn.metrics.roc_auc_score`, 1 = perfect, 0.5 = chance, below 0.5 = the OOD set is
*more* likely), next to the same AUROC for the independent per-pixel categorical model
of experiments/digits_baseline.py, which sees no spatial structure. Prints a Markdown table
for experiments/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def per_pixel_bits_per_dim_each(train, images, num_bins: int, alpha: float = 1.0):
    """Bits/dim of each image under the smoothed per-pixel histogram of `train` (the baseline)."""
    import numpy as np

    flat_train = train.reshape(len(train), -1).astype(np.int64)
    flat = images.reshape(len(images), -1).astype(np.int64)
    counts = np.stack([np.bincount(column, minlength=num_bins) for column in flat_train.T])
    probs = (counts + alpha) / (counts.sum(axis=1, keepdims=True) + alpha * num_bins)
    return -np.log2(probs[np.arange(flat.shape[1])[None, :], flat]).mean(axis=1)


def ood_sets(test, num_bins: int, seed: int = 0) -> dict:
    """The out-of-distribution image sets, each shaped like `test` (uint8 levels in [0, num_bins))."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {
        "uniform noise": rng.integers(0, num_bins, test.shape).astype(np.uint8),
        "upside-down digits": test[:, ::-1].copy(),
        "mirrored digits": test[:, :, ::-1].copy(),
        "inverted digits (16 - k)": (num_bins - 1 - test).astype(np.uint8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", default="/tmp/glow_digits", help="run folder with model.keras")
    parser.add_argument("--epochs", type=int, default=20, help="epochs if the model must be trained")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    from sklearn.metrics import roc_auc_score

    from experiments.linear_probe import trained_digits_model
    from tfp_glow import data

    model = trained_digits_model(args.model_dir, args.epochs, args.seed)
    num_bins = data.info("digits").num_bins
    train = data.load_numpy("digits", "train")
    test = data.load_numpy("digits", "test")
    glow_in = model.score(test).numpy()
    pixel_in = per_pixel_bits_per_dim_each(train, test, num_bins)
    print(f"model: {args.model_dir}; in-distribution: digits test ({len(test)} images)")
    print(
        "| images | Glow bits/dim (mean) | Glow AUROC | per-pixel model bits/dim (mean) | per-pixel AUROC |"
    )
    print("|---|---|---|---|---|")
    print(f"| digits test (in-distribution) | {glow_in.mean():.3f} | - | {pixel_in.mean():.3f} | - |")
    labels = np.concatenate([np.zeros(len(test)), np.ones(len(test))])
    for name, images in ood_sets(test, num_bins, args.seed).items():
        glow_out = model.score(images).numpy()
        pixel_out = per_pixel_bits_per_dim_each(train, images, num_bins)
        glow_auroc = roc_auc_score(labels, np.concatenate([glow_in, glow_out]))
        pixel_auroc = roc_auc_score(labels, np.concatenate([pixel_in, pixel_out]))
        print(
            f"| {name} | {glow_out.mean():.3f} | {glow_auroc:.3f} "
            f"| {pixel_out.mean():.3f} | {pixel_auroc:.3f} |"
        )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
