"""ActNorm's maths: a per-channel affine map of images [..., H, W, C] (forward = generative).

    forward:  y = x * exp(log_scale) + loc          log|det J_forward| = H * W * sum_c log_scale[c]
    inverse:  x = (y - loc) * exp(-log_scale)

Parameters: `loc` and `log_scale` [..., C], and the flag `initialized` [...] (any leading axes: a
level's stacked steps). The data-dependent initialization sets them from a real batch in the
encoding direction, so that `inverse(y)` has mean 0 and standard deviation 1 per channel.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfp_glow._checks import spatial_size

__all__ = ["forward", "init_params", "initialize", "inverse", "weights"]


def init_params(channels: int, dtype: tf.DType = tf.float32) -> dict:
    """The identity, not yet initialized: loc 0, log_scale 0."""
    zeros = np.zeros([channels], dtype.as_numpy_dtype)
    return {"loc": zeros, "log_scale": zeros.copy(), "initialized": np.array(False)}


def weights(params: dict) -> dict:
    """What both directions use, from the parameters alone: the scale, its inverse and
    log|det| per pixel, sum_c log_scale[c]. Any leading axes."""
    log_scale = params["log_scale"]
    return {
        "loc": params["loc"],
        "scale": tf.exp(log_scale),
        "inverse_scale": tf.exp(-log_scale),
        "log_det": tf.reduce_sum(log_scale, axis=-1),
    }


def forward(weights: dict, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(y, log|det J_forward|); the log-det is a scalar (constant Jacobian)."""
    return x * weights["scale"] + weights["loc"], spatial_size(x) * weights["log_det"]


def inverse(weights: dict, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(x, log|det J_inverse|)."""
    return (y - weights["loc"]) * weights["inverse_scale"], -spatial_size(y) * weights["log_det"]


def initialize(params: dict, y: tf.Tensor, epsilon: float = 1e-6) -> dict:
    """The parameters initialized from a batch `y` [..., H, W, C] of the activations that enter
    in the encoding direction: loc = mean(y), log_scale = log(std(y) + epsilon) per channel.
    Parameters already initialized are kept (the initialization is idempotent)."""
    axes = list(range(y.shape.rank - 1))
    mean, variance = tf.nn.moments(y, axes=axes)
    done = params["initialized"]
    return {
        "loc": tf.where(done, params["loc"], tf.cast(mean, params["loc"].dtype)),
        "log_scale": tf.where(
            done, params["log_scale"], tf.cast(tf.math.log(tf.sqrt(variance) + epsilon), params["loc"].dtype)
        ),
        "initialized": tf.ones_like(done),
    }
