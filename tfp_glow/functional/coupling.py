"""The affine coupling layer's maths (Kingma & Dhariwal 2018; Dinh et al. 2017), forward = generative.

The channels split into halves x = (x_a, x_b), C_a = C // 2. A conditioner reads x_a and gives a
shift t and a raw scale h for x_b:

    inverse (encoding):    s = sigmoid(h + 2) / sigmoid(2)         y_b = (x_b + t) * s,  y_a = x_a
    forward (generative):  x_b = y_b / s - t

with log|det J_inverse| = sum(log s) over H, W and C_b. The reference code's scale is
sigmoid(h + 2); dividing by the constant sigmoid(2) keeps its bounded, saturating shape
(s < 1.135) and makes an untrained coupling (h = t = 0) exactly the identity. With
`scale_fn='exp'`, log s = B tanh(h / B), bounded by B = `log_scale_bound`. Additive (NICE's):
s = 1, log-det 0.

The conditioner is any callable of x_a returning `(t, h)` or one tensor with the channels of t
and h interleaved (t = out[..., 0::2], h = out[..., 1::2], the reference layout; just t when
additive).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tfp_glow._checks import reshape_leading

__all__ = [
    "SCALE_FNS",
    "deinterleave_channels",
    "forward",
    "inverse",
    "log_scale",
    "merge_channels",
    "split_channels",
]

SCALE_FNS = ("sigmoid", "exp")


def split_channels(x: tf.Tensor, channels_first_half: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Splits [..., C] into the first `channels_first_half` channels and the rest."""
    # One Split op: its gradient is one concat, where two strided slices' gradients are two
    # zero-filled full-size tensors and their sum (a tenth of the CPU training step).
    first, rest = tf.split(x, [channels_first_half, -1], axis=-1)
    return first, rest


def merge_channels(x1: tf.Tensor, x2: tf.Tensor) -> tf.Tensor:
    """The inverse of `split_channels`."""
    return tf.concat([x1, x2], axis=-1)


def deinterleave_channels(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(x[..., 0::2], x[..., 1::2]) of [..., C], C even, by one reshape to [..., C / 2, 2] and
    an unstack (cheaper than two strided slices, forward and backward)."""
    if x.shape[-1] is None:
        return x[..., 0::2], x[..., 1::2]
    pairs = reshape_leading(x, x, x.shape.rank - 1, [x.shape[-1] // 2, 2])
    even, odd = tf.unstack(pairs, 2, axis=-1)
    return even, odd


def log_scale(h: tf.Tensor, scale_fn: str = "sigmoid", log_scale_bound: float = 3.0) -> tf.Tensor:
    """log s of the raw scale h: log sigmoid(h + 2) - log sigmoid(2), or B tanh(h / B)."""
    if scale_fn == "sigmoid":
        # sigmoid(2) by the same op in h's dtype: an untrained coupling (h = 0) is exactly the identity.
        return tf.math.log_sigmoid(h + 2.0) - tf.math.log_sigmoid(tf.constant(2.0, h.dtype))
    bound = tf.cast(log_scale_bound, h.dtype)
    return bound * tf.tanh(h / bound)


def shift_and_log_scale(
    out, additive: bool, scale_fn: str, log_scale_bound: float
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(t, log s) from a conditioner's output; log s is None for an additive coupling."""
    if isinstance(out, (tuple, list)):
        shift, h = out
    elif additive:
        shift, h = out, None
    else:
        shift, h = deinterleave_channels(out)
    if additive:
        return shift, None
    return shift, log_scale(h, scale_fn, log_scale_bound)


def _log_det(scale: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor:
    if scale is None:
        return tf.zeros([], like.dtype)  # additive: volume-preserving
    return tf.reduce_sum(scale, axis=[-3, -2, -1])


def forward(
    conditioner: Callable,
    x: tf.Tensor,
    channels_a: int,
    additive: bool = False,
    scale_fn: str = "sigmoid",
    log_scale_bound: float = 3.0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """(y, log|det J_forward|): y_b = x_b / s - t, with x_a the first `channels_a` channels."""
    y_a, y_b = split_channels(x, channels_a)
    shift, scale = shift_and_log_scale(conditioner(y_a), additive, scale_fn, log_scale_bound)
    if scale is not None:
        y_b = y_b * tf.exp(-scale)
    return merge_channels(y_a, y_b - shift), -_log_det(scale, x)


def inverse(
    conditioner: Callable,
    y: tf.Tensor,
    channels_a: int,
    additive: bool = False,
    scale_fn: str = "sigmoid",
    log_scale_bound: float = 3.0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """(x, log|det J_inverse|): x_b = (y_b + t) * s."""
    x_a, x_b = split_channels(y, channels_a)
    shift, scale = shift_and_log_scale(conditioner(x_a), additive, scale_fn, log_scale_bound)
    x_b = x_b + shift
    if scale is not None:
        x_b = x_b * tf.exp(scale)
    return merge_channels(x_a, x_b), _log_det(scale, y)
