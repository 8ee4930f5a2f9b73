"""Argument checks and image-shape helpers shared by every layer of the package."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = [
    "batch_shape_of",
    "check_dropout",
    "check_image",
    "check_int",
    "reshape_leading",
    "spatial_shape",
    "spatial_size",
]


def check_int(value, name: str, minimum: int = 1, why: str = "") -> int:
    """`value` as an int, or a ValueError naming it when it is not an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {expected}{why}. Received: {name}={value!r}")
    return int(value)


def check_dropout(value) -> float:
    """`value` as a float, or a ValueError when it is not a dropout rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value < 1:
        raise ValueError(f"`dropout` must be a number in [0, 1). Received: dropout={value!r}")
    return float(value)


def check_image(x: tf.Tensor, channels: int, name: str) -> None:
    """Raises a ValueError where the static shape of `x` is not [..., H, W, channels]."""
    shape = x.shape
    if shape.rank is not None and shape.rank < 3:
        raise ValueError(
            f"{name} expects images of shape [..., height, width, {channels}]. "
            f"Received: shape={shape.as_list()}"
        )
    if shape.rank is not None and shape[-1] is not None and shape[-1] != channels:
        raise ValueError(
            f"{name} expects {channels} channels in the last dimension. Received: shape={shape.as_list()}"
        )


def spatial_size(x: tf.Tensor) -> float | tf.Tensor:
    """H * W of an NHWC tensor (a Python number where static): per-pixel log-dets scale by it."""
    if x.shape.rank is not None and x.shape[-3] is not None and x.shape[-2] is not None:
        return float(x.shape[-3] * x.shape[-2])
    shape = tf.shape(x)
    return tf.cast(shape[-3] * shape[-2], x.dtype)


def spatial_shape(x: tf.Tensor) -> tuple:
    """(H, W) of images [..., H, W, C]: Python ints where static, else scalar tensors."""
    dynamic = tf.shape(x)
    return tuple(x.shape[i] if x.shape[i] is not None else dynamic[i] for i in (-3, -2))


def reshape_leading(t: tf.Tensor, like: tf.Tensor, leading: int, trailing: list) -> tf.Tensor:
    """`t` reshaped to the first `leading` dimensions of `like` followed by `trailing`: a static
    shape where those are known (no shape ops to trace), else read at run time."""
    if like.shape[:leading].is_fully_defined():
        return tf.reshape(t, [*like.shape[:leading], *trailing])
    return tf.reshape(t, tf.concat([tf.shape(like)[:leading], trailing], 0))


def batch_shape_of(x: tf.Tensor) -> tf.Tensor:
    """The leading (batch) dimensions of an image tensor [..., H, W, C]."""
    return tf.shape(x)[:-3]
