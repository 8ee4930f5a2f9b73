"""The convolution layers of Glow's networks, as tf.Modules over NHWC images."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["Conv2D", "ZeroConv2D", "conv2d"]


def conv2d(x: tf.Tensor, kernel: tf.Variable | tf.Tensor) -> tf.Tensor:
    """'SAME' convolution of images with any leading batch dimensions [..., H, W, C]."""
    shape = tf.shape(x)
    flat = tf.reshape(x, tf.concat([[-1], shape[-3:]], 0))
    out = tf.nn.conv2d(flat, kernel, strides=1, padding="SAME")
    return tf.reshape(out, tf.concat([shape[:-1], tf.shape(out)[-1:]], 0))


class Conv2D(tf.Module):
    """Convolution without bias (the ActNorm that follows it has one).

    Weights start from N(0, 0.05^2), as in the reference code.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        seed: int | None = None,
        dtype: tf.DType = tf.float32,
        name: str = "conv2d",
    ):
        super().__init__(name=name)
        rng = np.random.default_rng(seed)
        shape = (kernel_size, kernel_size, in_channels, out_channels)
        with self.name_scope:
            self.kernel = tf.Variable(
                (0.05 * rng.standard_normal(shape)).astype(dtype.as_numpy_dtype), name="kernel"
            )

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return conv2d(x, self.kernel)


class ZeroConv2D(tf.Module):
    """Zero-initialized convolution whose output is scaled by exp(3 * logs) per channel.

        out = (conv(x, kernel) + bias) * exp(3 * logs)

    All three start at zero, so the output starts at exactly zero: the coupling and
    the split prior that end with it start as the identity and a standard normal.
    The factor 3 (the reference code's `logscale_factor`) speeds up the learning of
    the output scale.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        logscale_factor: float = 3.0,
        dtype: tf.DType = tf.float32,
        name: str = "zero_conv2d",
    ):
        super().__init__(name=name)
        self._logscale_factor = logscale_factor
        with self.name_scope:
            shape = (kernel_size, kernel_size, in_channels, out_channels)
            self.kernel = tf.Variable(tf.zeros(shape, dtype), name="kernel")
            self.bias = tf.Variable(tf.zeros([out_channels], dtype), name="bias")
            self.logs = tf.Variable(tf.zeros([out_channels], dtype), name="logs")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return (conv2d(x, self.kernel) + self.bias) * tf.exp(self.logs * self._logscale_factor)
