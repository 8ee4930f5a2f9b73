"""The learned priors of Glow's latents as bijectors' maths (forward = generative, noise -> latent).

Split prior (the reference code's `split2d`): of the channels at the end of a level, the half h
that stays (C_h = C // 2) predicts the mean and log-scale of the half z that leaves, through a
zero-initialized 3x3 convolution (with edge bias):

    forward:  (h, eps) -> (h, z),   z = mu(h) + sigma(h) * eps       log|det J_forward| = sum(log sigma(h))
    inverse:  (h, z) -> (h, eps),   eps = (z - mu(h)) / sigma(h)

Top prior (the reference `learntop`): a per-channel mean and log-scale of the top latent,
z = mu + sigma * eps, log|det J_forward| = H * W * sum(log sigma).

Class-conditional (the reference `ycond`): a zero-initialized linear map of the one-hot label,
(onehot(y) W + b) * exp(3 * logs), adds to the convolution's output (split prior: [mu, log sigma]
interleaved) or to [mu, log sigma] (top prior: the first C outputs shift the mean, the last C the
log-scale). Every prior starts as a standard normal: its bijector is the identity.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfp_glow._checks import spatial_size
from tfp_glow.functional import conv
from tfp_glow.functional.coupling import deinterleave_channels, merge_channels, split_channels

__all__ = [
    "class_projection",
    "class_projection_init_params",
    "split_prior_forward",
    "split_prior_mean_and_log_scale",
    "split_prior_init_params",
    "split_prior_inverse",
    "top_prior_forward",
    "top_prior_init_params",
    "top_prior_inverse",
    "top_prior_mean_and_log_scale",
]


def split_prior_init_params(channels: int, dtype: tf.DType = tf.float32) -> dict:
    """The zero convolution from the C // 2 kept channels to mu and log sigma of the others."""
    kept = channels // 2
    return conv.zero_conv_init_params(kept, 2 * (channels - kept), 3, True, dtype)


def top_prior_init_params(channels: int, dtype: tf.DType = tf.float32) -> dict:
    zeros = np.zeros([channels], dtype.as_numpy_dtype)
    return {"mean": zeros, "log_scale": zeros.copy()}


def class_projection_init_params(num_classes: int, out_channels: int, dtype: tf.DType = tf.float32) -> dict:
    """A zero 1x1 convolution of the one-hot label (the reference code's `linear_zeros`)."""
    return conv.zero_conv_init_params(num_classes, out_channels, 1, False, dtype)


def class_projection(params: dict, labels: tf.Tensor, num_classes: int) -> tf.Tensor:
    """(onehot(labels) W + b) * exp(3 * logs): [..., 1, 1, out_channels] for integer labels [...]."""
    one_hot = tf.one_hot(labels, num_classes, dtype=params["kernel"].dtype)[..., tf.newaxis, tf.newaxis, :]
    return conv.zero_conv(conv.zero_conv_weights(params, 1, 1, edge_bias=False), one_hot)


def split_prior_mean_and_log_scale(
    weights: dict, h: tf.Tensor, class_term: tf.Tensor | None = None, compute_dtype=None
) -> tuple[tf.Tensor, tf.Tensor]:
    """mu(h) and log sigma(h) of the leaving channels, given the kept ones h; the network in
    `compute_dtype` (mixed precision), mu and log sigma in h's dtype."""
    out = conv.in_precision(conv.zero_conv, weights, h, compute_dtype)
    if class_term is not None:
        out += class_term
    return deinterleave_channels(out)


def split_prior_forward(
    weights: dict, x: tf.Tensor, channels_kept: int, class_term: tf.Tensor | None = None, compute_dtype=None
) -> tuple[tf.Tensor, tf.Tensor]:
    """(h, eps) -> ((h, z), sum log sigma); `weights` are `conv.zero_conv_weights` at h's size."""
    h, eps = split_channels(x, channels_kept)
    mean, log_scale = split_prior_mean_and_log_scale(weights, h, class_term, compute_dtype)
    return merge_channels(h, mean + tf.exp(log_scale) * eps), tf.reduce_sum(log_scale, axis=[-3, -2, -1])


def split_prior_inverse(
    weights: dict, y: tf.Tensor, channels_kept: int, class_term: tf.Tensor | None = None, compute_dtype=None
) -> tuple[tf.Tensor, tf.Tensor]:
    """(h, z) -> ((h, eps), -sum log sigma)."""
    h, z = split_channels(y, channels_kept)
    mean, log_scale = split_prior_mean_and_log_scale(weights, h, class_term, compute_dtype)
    return merge_channels(h, (z - mean) * tf.exp(-log_scale)), -tf.reduce_sum(log_scale, axis=[-3, -2, -1])


def top_prior_mean_and_log_scale(
    params: dict, class_term: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """mu and log sigma: [C], or [..., 1, 1, C] with a class term."""
    if class_term is None:
        return params["mean"], params["log_scale"]
    channels = params["mean"].shape[-1]
    return params["mean"] + class_term[..., :channels], params["log_scale"] + class_term[..., channels:]


def _top_log_det(t, log_scale, conditional):
    # Each of the H * W positions adds sum(log sigma); per example when conditional.
    return spatial_size(t) * tf.reduce_sum(log_scale, axis=[-3, -2, -1] if conditional else None)


def top_prior_forward(
    params: dict, x: tf.Tensor, class_term: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """eps -> z = mu + sigma * eps; the log-det is a scalar unless conditional."""
    mean, log_scale = top_prior_mean_and_log_scale(params, class_term)
    return mean + tf.exp(log_scale) * x, _top_log_det(x, log_scale, class_term is not None)


def top_prior_inverse(
    params: dict, y: tf.Tensor, class_term: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """z -> eps = (z - mu) / sigma."""
    mean, log_scale = top_prior_mean_and_log_scale(params, class_term)
    return (y - mean) * tf.exp(-log_scale), -_top_log_det(y, log_scale, class_term is not None)
