"""The independent per-pixel categorical baseline on scikit-learn's digits.

A histogram of the 17 grey levels per pixel, fitted on the training images (with
add-one smoothing so that unseen levels are not impossible), scored on the test
split in bits per dimension. Any model of the joint distribution of the pixels
should beat it by far.

    python experiments/digits_baseline.py [--train_split=train+validation]
"""

from __future__ import annotations

import argparse

import numpy as np

from tfp_glow import data


def per_pixel_bits_per_dim(train: np.ndarray, test: np.ndarray, num_bins: int, alpha: float = 1.0) -> float:
    """-mean log2 p_i(x_i) with p_i the smoothed histogram of pixel i on `train`."""
    flat_train = train.reshape(len(train), -1).astype(np.int64)
    flat_test = test.reshape(len(test), -1).astype(np.int64)
    counts = np.stack([np.bincount(column, minlength=num_bins) for column in flat_train.T])  # [D, bins]
    probs = (counts + alpha) / (counts.sum(axis=1, keepdims=True) + alpha * num_bins)
    picked = probs[np.arange(flat_test.shape[1])[None, :], flat_test]
    return float(-np.mean(np.log2(picked)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train_split", default="train+validation")
    parser.add_argument("--test_split", default="test")
    parser.add_argument("--alpha", type=float, default=1.0)
    args = parser.parse_args()
    info = data.info("digits")
    train = data.load_numpy("digits", args.train_split)
    test = data.load_numpy("digits", args.test_split)
    bpd = per_pixel_bits_per_dim(train, test, info.num_bins, args.alpha)
    print(
        f"per-pixel categorical baseline: {bpd:.3f} bits/dim "
        f"(train {args.train_split}: {len(train)}, test {args.test_split}: {len(test)}, alpha {args.alpha})"
    )


if __name__ == "__main__":
    main()
