"""Squeezing: space-to-depth in the element order of the reference code's `squeeze2d`.

    squeeze:    [..., H, W, C] -> [..., H/f, W/f, C f^2]
                out[..., i, j, c f^2 + a f + b] = x[..., i f + a, j f + b, c]
    unsqueeze:  its inverse (depth-to-space)

channel-major, unlike `tf.nn.space_to_depth`. Both permute the elements: log-det 0. Glow's
encoding direction squeezes; its generative direction unsqueezes.
"""

from __future__ import annotations

import tensorflow as tf

from tfp_glow._checks import batch_shape_of

__all__ = ["squeeze", "unsqueeze"]


def _image_dims(x: tf.Tensor) -> list:
    """(H, W, C) as Python ints where static, so that outputs keep static shapes."""
    dynamic = tf.shape(x)
    static = x.shape[-3:] if x.shape.rank is not None else [None] * 3
    return [dynamic[i - 3] if static[i] is None else static[i] for i in range(3)]


def squeeze(x: tf.Tensor, factor: int = 2) -> tf.Tensor:
    """Space-to-depth by `factor` (H and W must be divisible by it)."""
    f = factor
    batch, (h, w, c) = batch_shape_of(x), _image_dims(x)
    t = tf.reshape(x, [-1, h // f, f, w // f, f, c])
    t = tf.transpose(t, [0, 1, 3, 5, 2, 4])
    if x.shape.rank == 4:
        return tf.reshape(t, [-1, h // f, w // f, c * f * f])
    return tf.reshape(t, tf.concat([batch, [h // f, w // f, c * f * f]], axis=0))


def unsqueeze(y: tf.Tensor, factor: int = 2) -> tf.Tensor:
    """Depth-to-space by `factor` (C must be divisible by factor^2): the inverse of `squeeze`."""
    f = factor
    batch, (h, w, c) = batch_shape_of(y), _image_dims(y)
    t = tf.reshape(y, [-1, h, w, c // (f * f), f, f])
    t = tf.transpose(t, [0, 1, 4, 2, 5, 3])
    if y.shape.rank == 4:
        return tf.reshape(t, [-1, h * f, w * f, c // (f * f)])
    return tf.reshape(t, tf.concat([batch, [h * f, w * f, c // (f * f)]], axis=0))
