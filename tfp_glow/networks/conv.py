"""The convolution layers of Glow's networks, as tf.Modules over NHWC images."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfp_glow.bijectors._base import spatial_shape

__all__ = [
    "Conv2D",
    "ZeroConv2D",
    "border_map",
    "conv2d",
    "image_conv2d",
    "split_kernel",
    "with_border",
]


def conv2d(x: tf.Tensor, kernel: tf.Variable | tf.Tensor, edge_bias: bool = False) -> tf.Tensor:
    """'SAME' convolution of images with any leading batch dimensions [..., H, W, C].

    With `edge_bias`, a channel of ones joins the input: zero padding turns it into
    a border indicator, so the convolution knows where the image ends (the
    reference code's `add_edge_padding`); `kernel` then has C + 1 input channels.
    """
    kernel, edge_kernel = split_kernel(kernel, edge_bias)
    out = image_conv2d(x, kernel)
    return out if edge_kernel is None else out + border_map(edge_kernel, *spatial_shape(x))


def split_kernel(kernel: tf.Tensor, edge_bias: bool) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(kernel of the image channels, kernel of the border indicator or None).

    `kernel` [..., k, k, C (+ 1), O] may have leading axes (a level's stacked steps).
    """
    if not edge_bias:
        return kernel, None
    channels = kernel.shape[-2] - 1  # the last input channel is the border indicator
    return kernel[..., :channels, :], kernel[..., channels:, :]


def border_map(edge_kernel: tf.Tensor, height: int | tf.Tensor, width: int | tf.Tensor) -> tf.Tensor:
    """conv(1, K_1), the border indicator's part of an edge-bias convolution: [..., H, W, O].

    conv([x, 1], K) = conv(x, K_x) + conv(1, K_1), and the second term is the same for
    every image: at pixel (h, w) it sums the taps of K_1 that fall inside the image,

        out[h, w, o] = sum_ij [0 <= h + i - p < H] [0 <= w + j - p < W] K_1[i, j, 0, o],

    p = (k - 1) // 2 ('SAME' padding). A map per output channel instead of a channel of
    ones carried through every image's convolution; `edge_kernel` [..., k, k, 1, O] may
    have leading axes (a level's stacked steps).
    """
    size = edge_kernel.shape[-4]
    rows = _inside(height, size, edge_kernel.dtype)
    cols = _inside(width, size, edge_kernel.dtype)
    return tf.einsum("hi,wj,...ijo->...hwo", rows, cols, edge_kernel[..., 0, :])


def _inside(length: int | tf.Tensor, size: int, dtype: tf.DType) -> tf.Tensor:
    """[length, size]: whether tap i of a 'SAME' kernel at position t lies inside [0, length)."""
    position = tf.range(length)[:, tf.newaxis] + tf.range(size)[tf.newaxis, :] - (size - 1) // 2
    return tf.cast((position >= 0) & (position < length), dtype)


def image_conv2d(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """'SAME' convolution without the border term, of images with any leading batch dimensions."""
    if x.shape.rank == 4:  # the common case: no reshapes, fewer ops to trace
        return tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
    shape = tf.shape(x)
    out = tf.nn.conv2d(tf.reshape(x, tf.concat([[-1], shape[-3:]], 0)), kernel, strides=1, padding="SAME")
    return tf.reshape(out, tf.concat([shape[:-1], tf.shape(out)[-1:]], 0))


def with_border(
    bias: tf.Tensor, edge_kernel: tf.Tensor | None, height: int | tf.Tensor, width: int | tf.Tensor
) -> tf.Tensor:
    """`bias` [..., O] plus the border map of `edge_kernel`, if any: [..., H, W, O] or [..., O]."""
    if edge_kernel is None:
        return bias
    return border_map(edge_kernel, height, width) + bias[..., tf.newaxis, tf.newaxis, :]


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

    # Functions of the weights alone (the spatial ones of the input's H and W too): StepLoop
    # computes them once for a level's stacked steps.
    _weight_functions = ("image_kernel", "output_scale")
    _spatial_weight_functions = ("output_bias",)

    def image_kernel(self) -> tf.Tensor:
        """The kernel of the image channels (without the border indicator's)."""
        return split_kernel(self.kernel, self._edge_bias)[0]

    def output_bias(self, height: int | tf.Tensor, width: int | tf.Tensor) -> tf.Tensor:
        """bias plus the border term of the kernel: [H, W, O] with edge bias, else [O]."""
        return with_border(self.bias, split_kernel(self.kernel, self._edge_bias)[1], height, width)

    def output_scale(self) -> tf.Tensor:
        """exp(logscale_factor * logs), per output channel."""
        return tf.exp(self.logs * self._logscale_factor)

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        out = image_conv2d(x, self.image_kernel()) + self.output_bias(*spatial_shape(x))
        return out * self.output_scale()
