"""The convolution layers of Glow's networks, as tf.Modules over NHWC images."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow import variables
from tfp_glow._checks import spatial_shape
from tfp_glow.functional import conv

__all__ = ["Conv2D", "ZeroConv2D"]


class Conv2D(tf.Module):
    """Convolution without bias (the ActNorm that follows it has one).

    Weights start from N(0, 0.05^2), as in the reference code. `edge_bias` (default
    for kernels larger than 1x1) adds the border-indicator input of
    `tfp_glow.functional.conv.conv2d`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        edge_bias: bool | None = None,
        seed: int | None = None,
        dtype: tf.DType = tf.float32,
        name: str = "conv2d",
    ):
        super().__init__(name=name)
        self._edge_bias = kernel_size > 1 if edge_bias is None else edge_bias
        values = conv.conv_init_params(in_channels, out_channels, kernel_size, self._edge_bias, seed, dtype)
        with self.name_scope:
            self.kernel = variables.create(values)["kernel"]

    @property
    def edge_bias(self) -> bool:
        """Whether the kernel has the border-indicator input channel (last)."""
        return self._edge_bias

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return conv.conv2d(x, tf.convert_to_tensor(self.kernel), self._edge_bias)


class ZeroConv2D(tf.Module):
    """Zero-initialized convolution whose output is scaled by exp(3 * logs) per channel.

        out = (conv(x, kernel) + bias) * exp(3 * logs)

    All three start at zero, so the output starts at exactly zero: the coupling and
    the split prior that end with it start as the identity and a standard normal.
    The factor 3 (the reference code's `logscale_factor`) speeds up the learning of
    the output scale. `edge_bias` as in `Conv2D`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        logscale_factor: float = conv.LOGSCALE_FACTOR,
        edge_bias: bool | None = None,
        dtype: tf.DType = tf.float32,
        params: dict | None = None,
        name: str = "zero_conv2d",
    ):
        super().__init__(name=name)
        self._logscale_factor = logscale_factor
        self._edge_bias = kernel_size > 1 if edge_bias is None else edge_bias
        if params is None:
            params = conv.zero_conv_init_params(
                in_channels, out_channels, kernel_size, self._edge_bias, dtype
            )
        with self.name_scope:
            created = variables.create(params)
            self.kernel, self.bias, self.logs = created["kernel"], created["bias"], created["logs"]

    @property
    def params(self) -> dict:
        return {"kernel": self.kernel, "bias": self.bias, "logs": self.logs}

    def weights(self, height: int | tf.Tensor, width: int | tf.Tensor) -> dict:
        """`tfp_glow.functional.conv.zero_conv_weights` for images of size H x W."""
        return conv.zero_conv_weights(
            variables.read(self.params), height, width, self._edge_bias, self._logscale_factor
        )

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return conv.zero_conv(self.weights(*spatial_shape(x)), x)
