"""The convolutions of Glow's networks, as pure functions of their parameters, on NHWC images.

`conv2d` is a 'SAME' convolution, optionally with the reference code's edge bias: a channel of
ones joins the input, and zero padding turns it into a border indicator, so the convolution knows
where the image ends. Since conv([x, 1], K) = conv(x, K_x) + conv(1, K_1) and the second term is
the same for every image, it is computed once per image size as a `border_map` and added as a
bias. `zero_conv` is the zero-initialized output convolution of the coupling networks and split
priors, scaled by exp(3 * logs). Functions of the parameters alone take any leading axes (a level's
stacked steps).

A coupling network's 3x3 convolutions can be thin on one side: on grey images they read the 2-4
channels of x_a and write the 4-8 of (t, h), against a hidden width of 96-512. oneDNN, TensorFlow's
CPU kernels, runs such layers (and most of all their gradients on the thin side) far below its speed
on wide ones, so on CPU `image_conv2d` computes a 3x3 layer with at most `THIN_CHANNELS` (8)
channels on one side as one matrix product on the wide side and a depthwise convolution on the thin
side, which only moves the 9 taps into place (from 12 channels on, `tf.nn.conv2d` was faster at a
hidden width of 128, and the two within 5-17% either way at 512):

    few inputs:   conv(x, K) = taps(x) K_(c,tap),o         taps(x)[h, w, (c, tap ij)] = x[h+i-1, w+j-1, c]
    few outputs:  conv(x, K)[h, w, o] = sum_ij z[h+i-1, w+j-1, (o, tap ij)],   z = x K_c,(o,tap)

The same linear map (to float round-off) with the same gradients, which TensorFlow derives from
the matrix products and depthwise convolutions; `experiments/conv_forms.py` times the forms.
With a GPU or TPU visible, or under XLA, `tf.nn.conv2d`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfp_glow import _compat
from tfp_glow._checks import reshape_leading, spatial_shape

__all__ = [
    "THIN_CHANNELS",
    "in_precision",
    "border_map",
    "conv2d",
    "apply_conv",
    "conv_init_params",
    "conv_weights",
    "image_conv2d",
    "split_kernel",
    "thin_conv2d",
    "with_border",
    "zero_conv",
    "zero_conv_init_params",
    "zero_conv_weights",
]

LOGSCALE_FACTOR = 3.0

# A 3x3 layer with at most this many channels on one side and more on the other is 'thin'.
THIN_CHANNELS = 8


def conv_init_params(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    edge_bias: bool,
    seed: int | None = None,
    dtype: tf.DType = tf.float32,
) -> dict:
    """A kernel [k, k, C (+ 1), O] from N(0, 0.05^2), as in the reference code (no bias: an
    ActNorm follows)."""
    shape = (kernel_size, kernel_size, in_channels + edge_bias, out_channels)
    kernel = 0.05 * np.random.default_rng(seed).standard_normal(shape)
    return {"kernel": kernel.astype(dtype.as_numpy_dtype)}


def zero_conv_init_params(
    in_channels: int, out_channels: int, kernel_size: int, edge_bias: bool, dtype: tf.DType = tf.float32
) -> dict:
    """Kernel, bias and logs, all zero: the output starts at exactly zero."""
    numpy_dtype = dtype.as_numpy_dtype
    return {
        "kernel": np.zeros((kernel_size, kernel_size, in_channels + edge_bias, out_channels), numpy_dtype),
        "bias": np.zeros([out_channels], numpy_dtype),
        "logs": np.zeros([out_channels], numpy_dtype),
    }


def split_kernel(kernel: tf.Tensor, edge_bias: bool) -> tuple[tf.Tensor, tf.Tensor | None]:
    """(kernel of the image channels, kernel of the border indicator or None).

    `kernel` [..., k, k, C (+ 1), O]: with `edge_bias`, the last input channel is the border's.
    """
    if not edge_bias:
        return kernel, None
    channels = kernel.shape[-2] - 1
    return kernel[..., :channels, :], kernel[..., channels:, :]


def border_map(edge_kernel: tf.Tensor, height: int | tf.Tensor, width: int | tf.Tensor) -> tf.Tensor:
    """conv(1, K_1), the border indicator's part of an edge-bias convolution: [..., H, W, O].

    At pixel (h, w) it sums the taps of K_1 that fall inside the image,

        out[h, w, o] = sum_ij [0 <= h + i - p < H] [0 <= w + j - p < W] K_1[i, j, 0, o],

    p = (k - 1) // 2 ('SAME' padding). `edge_kernel` [..., k, k, 1, O].
    """
    size = edge_kernel.shape[-4]
    rows = _inside(height, size, edge_kernel.dtype)
    cols = _inside(width, size, edge_kernel.dtype)
    return tf.einsum("hi,wj,...ijo->...hwo", rows, cols, edge_kernel[..., 0, :])


def _inside(length: int | tf.Tensor, size: int, dtype: tf.DType) -> tf.Tensor:
    """[length, size]: whether tap i of a 'SAME' kernel at position t lies inside [0, length)."""
    position = tf.range(length)[:, tf.newaxis] + tf.range(size)[tf.newaxis, :] - (size - 1) // 2
    return tf.cast((position >= 0) & (position < length), dtype)


def with_border(
    bias: tf.Tensor, edge_kernel: tf.Tensor | None, height: int | tf.Tensor, width: int | tf.Tensor
) -> tf.Tensor:
    """`bias` [..., O] plus the border map of `edge_kernel`, if any: [..., H, W, O] or [..., O]."""
    if edge_kernel is None:
        return bias
    return border_map(edge_kernel, height, width) + bias[..., tf.newaxis, tf.newaxis, :]


def image_conv2d(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """'SAME' convolution without the border term, of images with any leading batch dimensions;
    thin 3x3 layers on CPU by `thin_conv2d`."""
    return apply_conv(conv_weights(kernel), x)


def conv_weights(kernel: tf.Tensor) -> dict:
    """`kernel` [..., k, k, C, O] in the form `apply_conv` multiplies by: {"kernel": kernel}, or,
    for a thin 3x3 layer where the thin form pays (CPU, outside XLA), the matrix of `thin_conv2d`:
    {"of_taps": [..., 9 C, O]} (few inputs) or {"to_taps": [..., C, 9 O]} (few outputs). With
    leading axes (a level's K steps) the kernels are rearranged once for all."""
    if not (_is_thin(kernel) and _thin_form_pays()):
        return {"kernel": kernel}
    return _thin_weights(kernel)


def _thin_weights(kernel: tf.Tensor) -> dict:
    *_, inputs, outputs = kernel.shape
    lead = kernel.shape.rank - 4
    axes = list(range(lead))
    taps = reshape_leading(kernel, kernel, lead, [9, inputs, outputs])  # tap ij = 3 i + j
    if inputs <= outputs:  # rows (c, tap), the order of `_taps`
        rows = tf.transpose(taps, [*axes, lead + 1, lead, lead + 2])
        return {"of_taps": reshape_leading(rows, kernel, lead, [inputs * 9, outputs])}
    columns = tf.transpose(taps, [*axes, lead + 1, lead + 2, lead])  # columns (o, tap)
    return {"to_taps": reshape_leading(columns, kernel, lead, [inputs, outputs * 9])}


def apply_conv(weights: dict, x: tf.Tensor) -> tf.Tensor:
    """The 'SAME' convolution of images [..., H, W, C] by `conv_weights(kernel)` of one layer."""
    if x.shape.rank == 4:  # the common case: no reshapes, fewer ops to trace
        return _apply_conv(weights, x)
    shape = tf.shape(x)
    out = _apply_conv(weights, tf.reshape(x, tf.concat([[-1], shape[-3:]], 0)))
    return tf.reshape(out, tf.concat([shape[:-1], tf.shape(out)[-1:]], 0))


def _apply_conv(weights: dict, x: tf.Tensor) -> tf.Tensor:
    if "of_taps" in weights:
        return _pixelwise_matmul(_taps(x, weights["of_taps"].shape[-2] // 9), weights["of_taps"])
    if "to_taps" in weights:
        # z[..., (o, tap ij)] = x K[i, j, :, o]; the output sums each tap of z where it lands.
        z = _pixelwise_matmul(x, weights["to_taps"])
        outputs = z.shape[-1] // 9
        shifted = tf.nn.depthwise_conv2d(z, _tap_selector(outputs * 9, 1, z.dtype), [1, 1, 1, 1], "SAME")
        return tf.reduce_sum(reshape_leading(shifted, shifted, 3, [outputs, 9]), -1)
    return tf.nn.conv2d(x, weights["kernel"], strides=1, padding="SAME")


def _is_thin(kernel: tf.Tensor) -> bool:
    size, _, inputs, outputs = kernel.shape[-4:]
    return size == 3 and min(inputs, outputs) <= THIN_CHANNELS < max(inputs, outputs)


def _thin_form_pays() -> bool:
    """On CPU, outside XLA: XLA's CPU convolutions and depthwise convolutions are slower than
    oneDNN's, and the form was slower under it; accelerators run `tf.nn.conv2d` well."""
    if _compat.in_xla_context():
        return False
    return not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def thin_conv2d(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """The 'SAME' 3x3 convolution of images [N, H, W, C] by `kernel` [3, 3, C, O] as a matrix
    product on the wider side and a depthwise convolution that places the taps (see the module
    docstring), wherever it runs: the same map as `tf.nn.conv2d`, faster on CPU where C or O is
    small."""
    if kernel.shape.rank != 4 or kernel.shape[:2] != [3, 3]:
        raise ValueError(
            f"thin_conv2d takes one 3x3 kernel [3, 3, C, O]. Received: kernel shape {kernel.shape.as_list()}"
        )
    return _apply_conv(_thin_weights(kernel), x)


def _taps(x: tf.Tensor, channels: int) -> tf.Tensor:
    """[N, H, W, C] -> [N, H, W, 9 C]: channel (c, tap ij) at (h, w) is x[h + i - 1, w + j - 1, c]
    (0 outside the image)."""
    return tf.nn.depthwise_conv2d(x, _tap_selector(channels, 9, x.dtype), [1, 1, 1, 1], "SAME")


def _tap_selector(channels: int, multiplier: int, dtype: tf.DType) -> tf.Tensor:
    """The depthwise kernel [3, 3, channels, multiplier] that copies tap ij of channel c to output
    (c, ij) (multiplier 9), or keeps of channel (o, ij) only its tap ij (multiplier 1)."""
    selector = np.zeros([3, 3, channels, multiplier], dtype.as_numpy_dtype)
    for tap in range(9):
        if multiplier == 9:
            selector[tap // 3, tap % 3, :, tap] = 1
        else:
            selector[tap // 3, tap % 3, tap::9, 0] = 1
    return tf.constant(selector)


def _pixelwise_matmul(x: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """x [N, H, W, A] times `matrix` [A, B] at every pixel: [N, H, W, B]."""
    out = tf.matmul(tf.reshape(x, [-1, matrix.shape[0]]), matrix)
    return reshape_leading(out, x, 3, [matrix.shape[1]])


def conv2d(x: tf.Tensor, kernel: tf.Tensor, edge_bias: bool = False) -> tf.Tensor:
    """'SAME' convolution of images [..., H, W, C]; with `edge_bias`, `kernel` has C + 1 input
    channels, the last one the border indicator's."""
    kernel, edge_kernel = split_kernel(kernel, edge_bias)
    out = image_conv2d(x, kernel)
    return out if edge_kernel is None else out + border_map(edge_kernel, *spatial_shape(x))


def zero_conv_weights(
    params: dict,
    height: int | tf.Tensor,
    width: int | tf.Tensor,
    edge_bias: bool,
    logscale_factor: float = LOGSCALE_FACTOR,
) -> dict:
    """The image kernel (as `conv_weights`), the bias with the border term ([..., H, W, O] with
    edge bias) and the output scale exp(logscale_factor * logs) of `zero_conv`, for images of size
    H x W."""
    kernel, edge_kernel = split_kernel(params["kernel"], edge_bias)
    return {
        "conv": conv_weights(kernel),
        "bias": with_border(params["bias"], edge_kernel, height, width),
        "scale": tf.exp(params["logs"] * logscale_factor),
    }


def zero_conv(weights: dict, x: tf.Tensor) -> tf.Tensor:
    """out = (conv(x, kernel) + bias) * exp(3 * logs); the factor 3 (the reference code's
    `logscale_factor`) speeds up the learning of the output scale."""
    return (apply_conv(weights["conv"], x) + weights["bias"]) * weights["scale"]


def in_precision(network, weights: dict, x: tf.Tensor, compute_dtype, *args, **kwargs) -> tf.Tensor:
    """`network(weights, x, ...)` computed in `compute_dtype` (mixed precision), its output back
    in x's dtype; the weights are cast at the boundary (integer leaves, as dropout salts, kept).
    With `compute_dtype` `None` or x's own dtype, simply `network(weights, x, ...)`."""
    if compute_dtype is None or tf.as_dtype(compute_dtype) == x.dtype:
        return network(weights, x, *args, **kwargs)
    low = tf.nest.map_structure(lambda t: tf.cast(t, compute_dtype) if t.dtype.is_floating else t, weights)
    return tf.cast(network(low, tf.cast(x, compute_dtype), *args, **kwargs), x.dtype)
