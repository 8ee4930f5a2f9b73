"""The paper's coupling conditioner NN() as pure functions (Kingma & Dhariwal 2018, Section 3.3):

    h = relu(actnorm_in^{-1}(conv3x3(x)))
    h = relu(actnorm_hidden^{-1}(conv1x1(h)))
    h = dropout(h, rate)                   # only given a dropout seed (training)
    out = zero_conv3x3(h)                  # exactly 0 at initialization

Its ActNorms normalize in the encoding direction and are folded into the convolutions before
use (`weights`): (conv(x, K) - loc) * exp(-log_scale) = conv(x, K * exp(-log_scale)) -
loc * exp(-log_scale), so the per-channel scale goes into the kernel (its size, not the
activations') and the shift into one bias add. The 3x3 convolutions have the edge-bias border
term, added as a per-pixel bias. The map is the same function of the same parameters, folded or
not: gradients are unchanged.

Parameters: `conv_in` {kernel}, `actnorm_in`, `conv_hidden` {kernel}, `actnorm_hidden` (ActNorm
parameters) and `conv_out` {kernel, bias, logs}, with any leading axes (a level's stacked steps).

Dropout is stateless: the mask is a function of the dropout seed and of the network's own
`dropout_salt` (one per step), so the same seed gives the same map, every step's map stays
invertible, and a backward pass that recomputes a step rebuilds exactly its forward pass.
"""

from __future__ import annotations

import tensorflow as tf

from tfp_glow.functional import actnorm, conv

__all__ = ["apply", "init_params", "initialize", "weights"]


def init_params(
    in_channels: int,
    out_channels: int,
    hidden_channels: int,
    seed: int | None = None,
    dtype: tf.DType = tf.float32,
) -> dict:
    """Random N(0, 0.05^2) kernels (from `seed` and `seed + 1`), identity ActNorms, and a zero
    output convolution."""
    hidden_seed = None if seed is None else seed + 1
    return {
        "conv_in": conv.conv_init_params(in_channels, hidden_channels, 3, True, seed, dtype),
        "actnorm_in": actnorm.init_params(hidden_channels, dtype),
        "conv_hidden": conv.conv_init_params(hidden_channels, hidden_channels, 1, False, hidden_seed, dtype),
        "actnorm_hidden": actnorm.init_params(hidden_channels, dtype),
        "conv_out": conv.zero_conv_init_params(hidden_channels, out_channels, 3, True, dtype),
    }


def _folded(kernel: tf.Tensor, actnorm_params: dict) -> tuple[tf.Tensor, tf.Tensor]:
    """The kernel and bias of actnorm^{-1}(conv(x, kernel)) with the ActNorm folded in."""
    inverse_scale = tf.exp(-actnorm_params["log_scale"])
    folded = kernel * inverse_scale[..., tf.newaxis, tf.newaxis, tf.newaxis, :]
    return folded, -actnorm_params["loc"] * inverse_scale


def weights(
    params: dict, height: int | tf.Tensor, width: int | tf.Tensor, dropout_salt: int | tf.Tensor = 0
) -> dict:
    """The folded kernels and biases (with the border terms of images of size H x W) and the
    dropout salt, from the parameters alone. Stacked params [K, ...] give stacked weights; one
    salt for all is broadcast to the K steps."""
    in_kernel, in_bias = _folded(params["conv_in"]["kernel"], params["actnorm_in"])
    in_kernel, edge_kernel = conv.split_kernel(in_kernel, edge_bias=True)
    hidden_kernel, hidden_bias = _folded(params["conv_hidden"]["kernel"], params["actnorm_hidden"])
    return {
        "in_conv": conv.conv_weights(in_kernel),
        "in_bias": conv.with_border(in_bias, edge_kernel, height, width),
        "hidden_conv": conv.conv_weights(hidden_kernel),
        "hidden_bias": hidden_bias,
        "out": conv.zero_conv_weights(params["conv_out"], height, width, edge_bias=True),
        # The kernel is [3, 3, in, out] of one step, [K, 3, 3, in, out] of a level's K.
        "dropout_salt": tf.broadcast_to(
            tf.convert_to_tensor(dropout_salt, tf.int32), tf.shape(params["conv_hidden"]["kernel"])[:-4]
        ),
    }


def apply(
    weights: dict, x: tf.Tensor, dropout: float = 0.0, dropout_seed: tf.Tensor | None = None
) -> tf.Tensor:
    """NN(x): [..., H, W, in_channels] -> [..., H, W, out_channels]; with `dropout` > 0 and an
    int32 [2] `dropout_seed`, each hidden unit is dropped with probability `dropout`."""
    h = tf.nn.relu(conv.apply_conv(weights["in_conv"], x) + weights["in_bias"])
    h = tf.nn.relu(conv.apply_conv(weights["hidden_conv"], h) + weights["hidden_bias"])
    if dropout > 0 and dropout_seed is not None:
        seed = tf.random.experimental.stateless_fold_in(dropout_seed, weights["dropout_salt"])
        h = tf.nn.experimental.stateless_dropout(h, dropout, seed)
    return conv.zero_conv(weights["out"], h)


def initialize(params: dict, x: tf.Tensor) -> dict:
    """The parameters with both ActNorms initialized on the activations of a real batch `x` that
    reach them (unfolded, no dropout); ActNorms already initialized are kept."""
    h = conv.conv2d(x, params["conv_in"]["kernel"], edge_bias=True)
    actnorm_in = actnorm.initialize(params["actnorm_in"], h)
    h = tf.nn.relu(actnorm.inverse(actnorm.weights(actnorm_in), h)[0])
    h = conv.conv2d(h, params["conv_hidden"]["kernel"])
    actnorm_hidden = actnorm.initialize(params["actnorm_hidden"], h)
    return {**params, "actnorm_in": actnorm_in, "actnorm_hidden": actnorm_hidden}
