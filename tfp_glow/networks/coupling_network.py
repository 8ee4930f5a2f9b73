"""The paper's coupling conditioner: conv3x3, ActNorm, ReLU, conv1x1, ActNorm, ReLU, zero conv3x3."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow.bijectors._base import check_dropout, check_int, spatial_shape
from tfp_glow.bijectors.actnorm import ActNorm
from tfp_glow.networks.conv import Conv2D, ZeroConv2D, image_conv2d, split_kernel, with_border

__all__ = ["CouplingNetwork"]


class CouplingNetwork(tf.Module):
    """The conditioner NN() of Glow's affine coupling layer [1].

        h = relu(actnorm_1(conv3x3(x)))
        h = relu(actnorm_2(conv1x1(h)))
        h = dropout(h, rate)             # only given a `dropout_seed` (training)
        out = zero_conv3x3(h)            # exactly 0 at initialization

    Maps [..., H, W, in_channels] to [..., H, W, out_channels]. The ActNorms
    normalize in the encoding direction (their `inverse`) and are initialized from
    data by `initialize(x)`, which `AffineCoupling.initialize` calls on the real
    activations.

    With `dropout` > 0, a call with a `dropout_seed` (an int32 [2] seed, from the
    bijectors' conditioning keyword arguments) zeroes each hidden unit before the
    output convolution with probability `dropout` (scaling the others by
    1 / (1 - dropout)). The mask is stateless, a function of the seed and of this
    network's `seed`: the same seed gives the same function, so the memory-efficient
    backward pass rebuilds exactly the map of the forward pass, and every step's
    map stays invertible. Without a seed (evaluation, sampling) there is no dropout.

    #### References

    [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
    """

    # The dropout salt differs between the steps of a level: StepLoop stacks it like a weight.
    _per_step_constants = ("_dropout_salt",)
    # Functions of the weights alone (the spatial ones of the input's H and W too): StepLoop
    # computes them once for a level's stacked steps.
    _weight_functions = ("folded_in", "folded_hidden")
    _spatial_weight_functions = ("input_bias",)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 512,
        seed: int | None = None,
        dropout: float = 0.0,
        dtype: tf.DType = tf.float32,
        name: str = "coupling_network",
    ):
        super().__init__(name=name)
        hidden_channels = check_int(hidden_channels, "hidden_channels")
        self.dropout = check_dropout(dropout)
        self._dropout_salt = 0 if seed is None else seed
        seed2 = None if seed is None else seed + 1
        with self.name_scope:
            self.conv_in = Conv2D(in_channels, hidden_channels, 3, seed=seed, dtype=dtype, name="conv_in")
            self.actnorm_in = ActNorm(hidden_channels, dtype=dtype, name="actnorm_in")
            self.conv_hidden = Conv2D(
                hidden_channels, hidden_channels, 1, seed=seed2, dtype=dtype, name="conv_hidden"
            )
            self.actnorm_hidden = ActNorm(hidden_channels, dtype=dtype, name="actnorm_hidden")
            self.conv_out = ZeroConv2D(hidden_channels, out_channels, 3, dtype=dtype, name="conv_out")

    def folded_in(self) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
        """(kernel, border kernel, bias) of actnorm_in.inverse(conv_in(x)); see `_folded`."""
        return _folded(self.conv_in, self.actnorm_in)

    def folded_hidden(self) -> tuple[tf.Tensor, None, tf.Tensor]:
        """(kernel, None, bias) of actnorm_hidden.inverse(conv_hidden(h)); see `_folded`."""
        return _folded(self.conv_hidden, self.actnorm_hidden)

    def input_bias(self, height: int | tf.Tensor, width: int | tf.Tensor) -> tf.Tensor:
        """The bias of the folded conv_in with its border term, [H, W, hidden]."""
        _, edge_kernel, bias = self.folded_in()
        return with_border(bias, edge_kernel, height, width)

    def __call__(self, x: tf.Tensor, dropout_seed: tf.Tensor | None = None) -> tf.Tensor:
        kernel = self.folded_in()[0]
        h = tf.nn.relu(image_conv2d(x, kernel) + self.input_bias(*spatial_shape(x)))
        kernel, _, bias = self.folded_hidden()
        h = tf.nn.relu(image_conv2d(h, kernel) + bias)
        if self.dropout > 0 and dropout_seed is not None:
            seed = tf.random.experimental.stateless_fold_in(dropout_seed, self._dropout_salt)
            h = tf.nn.experimental.stateless_dropout(h, self.dropout, seed)
        return self.conv_out(h)

    def initialize(self, x: tf.Tensor, dropout_seed: tf.Tensor | None = None) -> tf.Tensor:
        """Initializes both ActNorms on the activations of `x`; returns the output."""
        h = tf.nn.relu(self.actnorm_in.initialize(self.conv_in(x)))
        h = tf.nn.relu(self.actnorm_hidden.initialize(self.conv_hidden(h)))
        return self.conv_out(h)


def _folded(conv: Conv2D, actnorm: ActNorm) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor]:
    """The kernels and the bias of `actnorm.inverse(conv(x))`, with the ActNorm folded in:

        (conv(x, K) - loc) * exp(-log_scale) = conv(x, K * exp(-log_scale)) - loc * exp(-log_scale)

    The per-channel scale goes into the kernel (its size, not the activations') and the shift
    into one bias add, so the activations are written once instead of three times. The same
    function of the same variables: gradients are unchanged. Leading axes of the variables
    (a level's stacked steps) carry through.
    """
    scale = actnorm.inverse_scale()
    kernel = conv.kernel * scale[..., tf.newaxis, tf.newaxis, tf.newaxis, :]
    return (*split_kernel(kernel, conv.edge_bias), -actnorm.loc * scale)
