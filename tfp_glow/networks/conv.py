"""The convolution layers of Glow's networks, as tf.Modules over NHWC images."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["Conv2D", "ZeroConv2D", "conv2d", "split_conv2d", "split_kernel"]


def conv2d(x: tf.Tensor, kernel: tf.Variable | tf.Tensor, edge_bias: bool = False) -> tf.Tensor:
    """'SAME' convolution of images with any leading batch dimensions [..., H, W, C].

    With `edge_bias`, a channel of ones joins the input: zero padding turns it into
    a border indicator, so the convolution knows where the image ends (the
    reference code's `add_edge_padding`); `kernel` then has C + 1 input channels.
    """
    return split_conv2d(x, *split_kernel(kernel, edge_bias))


def split_kernel(kernel: tf.Tensor, edge_bias: bool) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(kernel of the image channels, kernel of the border indicator or None).

    `kernel` [..., k, k, C (+ 1), O] may have leading axes (a level's stacked steps).
    """
    if not edge_bias:
        return kernel, None
    channels = kernel.shape[-2] - 1  # the last input channel is the border indicator
    return kernel[..., :channels, :], kernel[..., channels:, :]


def split_conv2d(x: tf.Tensor, kernel: tf.Tensor, edge_kernel: tf.Tensor | None = None) -> tf.Tensor:
    """`conv2d` with the kernel already split by `split_kernel`."""
    if x.shape.rank == 4:  # the common case: no reshapes, fewer ops to trace
        return _conv2d_nhwc(x, kernel, edge_kernel)
    shape = tf.shape(x)
    out = _conv2d_nhwc(tf.reshape(x, tf.concat([[-1], shape[-3:]], 0)), kernel, edge_kernel)
    return tf.reshape(out, tf.concat([shape[:-1], tf.shape(out)[-1:]], 0))


def _conv2d_nhwc(x, kernel, edge_kernel):
    out = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
    if edge_kernel is None:
        return out
    # conv([x, 1], K) = conv(x, K_x) + conv(1, K_1). The second term is the same for every image:
    # it is computed once on one [1, H, W, 1] image of ones and broadcast, instead of carrying a
    # channel of ones through every image's convolution (a copy of the input, and a wider conv).
    ones = tf.ones(tf.concat([[1], tf.shape(x)[1:3], [1]], 0), x.dtype)
    return out + tf.nn.conv2d(ones, edge_kernel, strides=1, padding="SAME")


class Conv2D(tf.Module):
    """Convolution without bias (the ActNorm that follows it has one).

    Weights start from N(0, 0.05^2), as in the reference code. `edge_bias` (default
    for kernels larger than 1x1) adds the border-indicator input of `conv2d`.
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
        rng = np.random.default_rng(seed)
        self._edge_bias = kernel_size > 1 if edge_bias is None else edge_bias
        shape = (kernel_size, kernel_size, in_channels + self._edge_bias, out_channels)
        with self.name_scope:
            self.kernel = tf.Variable(
                (0.05 * rng.standard_normal(shape)).astype(dtype.as_numpy_dtype), name="kernel"
            )

    @property
    def edge_bias(self) -> bool:
        """Whether the kernel has the border-indicator input channel (last)."""
        return self._edge_bias

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return conv2d(x, self.kernel, self._edge_bias)


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
        logscale_factor: float = 3.0,
        edge_bias: bool | None = None,
        dtype: tf.DType = tf.float32,
        name: str = "zero_conv2d",
    ):
        super().__init__(name=name)
        self._logscale_factor = logscale_factor
        self._edge_bias = kernel_size > 1 if edge_bias is None else edge_bias
        with self.name_scope:
            shape = (kernel_size, kernel_size, in_channels + self._edge_bias, out_channels)
            self.kernel = tf.Variable(tf.zeros(shape, dtype), name="kernel")
            self.bias = tf.Variable(tf.zeros([out_channels], dtype), name="bias")
            self.logs = tf.Variable(tf.zeros([out_channels], dtype), name="logs")

    # Functions of the weights alone: StepLoop computes them once for a level's stacked steps.
    _weight_functions = ("split_kernel", "output_scale")

    def split_kernel(self) -> tuple[tf.Tensor, tf.Tensor | None]:
        """The kernel split by `split_kernel` (image channels, border indicator)."""
        return split_kernel(self.kernel, self._edge_bias)

    def output_scale(self) -> tf.Tensor:
        """exp(logscale_factor * logs), per output channel."""
        return tf.exp(self.logs * self._logscale_factor)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return (split_conv2d(x, *self.split_kernel()) + self.bias) * self.output_scale()
