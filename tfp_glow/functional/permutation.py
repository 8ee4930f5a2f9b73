"""A fixed permutation of the channels (the paper's "reverse" and "shuffle" ablations).

    forward:  y[..., i] = x[..., perm[i]]           inverse:  x[..., perm[i]] = y[..., i]

Volume-preserving: both log-dets are 0. The parameter `permutation` [..., C] is an integer array
(never trained); it takes any leading axes.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["KINDS", "forward", "init_params", "inverse", "weights"]

KINDS = ("reverse", "shuffle")


def init_params(channels: int, kind: str = "reverse", seed: int | None = None) -> dict:
    """The reversed channel order, or a random one drawn from `seed` (`kind='shuffle'`)."""
    if kind == "reverse":
        permutation = np.arange(channels)[::-1]
    elif kind == "shuffle":
        permutation = np.random.default_rng(seed).permutation(channels)
    else:
        raise ValueError(f"`kind` must be one of {KINDS}. Received: kind={kind!r}")
    return {"permutation": permutation.astype(np.int32)}


def weights(params: dict) -> dict:
    """The permutation and its inverse."""
    permutation = params["permutation"]
    return {"permutation": permutation, "inverse_permutation": tf.argsort(permutation, axis=-1)}


def forward(weights: dict, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.gather(x, weights["permutation"], axis=-1), tf.zeros([], x.dtype)


def inverse(weights: dict, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.gather(y, weights["inverse_permutation"], axis=-1), tf.zeros([], y.dtype)
