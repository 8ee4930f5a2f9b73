"""The Glow distribution over images, and bits per dimension of discrete images."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_glow.bijectors.glow import Glow

tfd = tfp.distributions

__all__ = ["glow_distribution", "bits_per_dim"]


def glow_distribution(glow: Glow, temperature: float | tf.Tensor = 1.0) -> tfd.TransformedDistribution:
    """The model `TransformedDistribution(N(0, T^2 I_D), glow)` over images.

    The base is a standard normal over the flat latent of every level, scaled by
    the temperature T (T < 1 samples from the sharper p(x)^(1/T^2)-like
    distribution of the paper's Figure 8; the reference code applies T at every
    level, which this does since every level's noise is part of the base). `log_prob`
    runs `glow.inverse` (encoding), `sample` runs `glow.forward` (generation).

    Args:
      glow: a `tfp_glow.Glow` bijector.
      temperature: Python `float` or scalar `Tensor` >= 0. Default 1. At 0, `sample`
        returns `glow.forward` of the zero latent.

    Returns:
      A `tfd.TransformedDistribution` with event shape `glow.image_shape`.

    Raises:
      TypeError: if `glow` is not a `tfp_glow.Glow`.
      ValueError: if `temperature` (a Python number, or a tensor whose value is known
        statically) is negative or not finite. A tensor known only at run time is
        checked then (InvalidArgumentError) when `glow.validate_args`.
    """
    if not isinstance(glow, Glow):
        raise TypeError(f"`glow` must be a tfp_glow.Glow. Received: glow={glow!r}")
    message = "`temperature` must be a finite number >= 0. Received: temperature="
    static = tf.get_static_value(temperature) if tf.is_tensor(temperature) else temperature
    if isinstance(static, (int, float, np.number, np.ndarray)) and not (
        np.all(np.isfinite(static)) and np.all(np.asarray(static) >= 0)
    ):
        raise ValueError(f"{message}{np.asarray(static).tolist()!r}")
    temperature = tf.cast(temperature, glow.dtype)
    if glow.validate_args and static is None:
        check = tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(temperature) & (temperature >= 0)), [message, temperature]
        )
        with tf.control_dependencies([check]):
            temperature = tf.identity(temperature)
    base = tfd.Sample(
        tfd.Normal(loc=tf.zeros([], glow.dtype), scale=temperature),
        sample_shape=[glow.event_size],
    )
    return tfd.TransformedDistribution(base, glow, name="glow_distribution")


def bits_per_dim(log_prob: tf.Tensor, image_shape: Sequence[int], num_bins: int) -> tf.Tensor:
    """Bits per dimension of discrete images from the density of their dequantized values.

        bpd = -(log p(x) - D * log(num_bins)) / (D * log 2),    D = H * W * C

    `log p(x)` is the density of the dequantized image x in [-0.5, 0.5]^D (see
    `to_unit_range`): each of the num_bins levels is a bin of width 1/num_bins, so
    the probability of the discrete image is about p(x) / num_bins^D. This is the
    figure the paper reports (3.35 on CIFAR-10).

    Args:
      log_prob: float `Tensor`, log-densities of dequantized images.
      image_shape: `(H, W, C)` of the images.
      num_bins: Python `int`, the pixel levels: 2**n_bits for n-bit images, 17 for
        scikit-learn's digits.

    Returns:
      `Tensor` of bits per dimension, shaped like `log_prob`.
    """
    if not isinstance(num_bins, (int, np.integer)) or num_bins < 2:
        raise ValueError(f"`num_bins` must be an integer >= 2. Received: num_bins={num_bins!r}")
    if len(image_shape) != 3 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in image_shape):
        raise ValueError(
            f"`image_shape` must be (height, width, channels) of positive integers. "
            f"Received: image_shape={image_shape!r}"
        )
    d = float(np.prod(image_shape))
    log_prob = tf.convert_to_tensor(log_prob)
    return -(log_prob - d * math.log(num_bins)) / (d * math.log(2.0))
