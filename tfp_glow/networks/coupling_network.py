"""The paper's coupling conditioner: conv3x3, ActNorm, ReLU, conv1x1, ActNorm, ReLU, zero conv3x3."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow import variables
from tfp_glow._checks import check_dropout, check_int, spatial_shape
from tfp_glow.functional import coupling_network

__all__ = ["CouplingNetwork"]

_PARTS = ("conv_in", "actnorm_in", "conv_hidden", "actnorm_hidden", "conv_out")


class CouplingNetwork(tf.Module):
    """The conditioner NN() of Glow's affine coupling layer [1].

        h = relu(actnorm_in(conv3x3(x)))
        h = relu(actnorm_hidden(conv1x1(h)))
        h = dropout(h, rate)             # only given a `dropout_seed` (training)
        out = zero_conv3x3(h)            # exactly 0 at initialization

    Maps [..., H, W, in_channels] to [..., H, W, out_channels]; the maths is
    `tfp_glow.functional.coupling_network`, which folds the ActNorms into the
    convolutions. The ActNorms normalize in the encoding direction and are initialized
    from data by `initialize(x)`, which `AffineCoupling.initialize` calls on the real
    activations. Its parameters are the sub-modules `conv_in`, `actnorm_in`,
    `conv_hidden`, `actnorm_hidden` and `conv_out`, each holding its variables.

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

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int = 512,
        seed: int | None = None,
        dropout: float = 0.0,
        dtype: tf.DType = tf.float32,
        params: dict | None = None,
        name: str = "coupling_network",
    ):
        super().__init__(name=name)
        hidden_channels = check_int(hidden_channels, "hidden_channels")
        self.dropout = check_dropout(dropout)
        self._dropout_salt = 0 if seed is None else seed
        self._is_view = params is not None and variables.is_view(params)
        if params is None:
            params = coupling_network.init_params(in_channels, out_channels, hidden_channels, seed, dtype)
        with self.name_scope:
            self.conv_in = variables.ParameterModule(params["conv_in"], "conv_in")
            self.actnorm_in = variables.ParameterModule(params["actnorm_in"], "actnorm_in")
            self.conv_hidden = variables.ParameterModule(params["conv_hidden"], "conv_hidden")
            self.actnorm_hidden = variables.ParameterModule(params["actnorm_hidden"], "actnorm_hidden")
            self.conv_out = variables.ParameterModule(params["conv_out"], "conv_out")

    @property
    def params(self) -> dict:
        """The parameters, as `tfp_glow.functional.coupling_network` takes them."""
        return {part: getattr(self, part).params for part in _PARTS}

    def weights(self, height: int | tf.Tensor, width: int | tf.Tensor) -> dict:
        """The folded kernels and biases for images of size H x W."""
        return coupling_network.weights(variables.read(self.params), height, width, self._dropout_salt)

    def __call__(self, x: tf.Tensor, dropout_seed: tf.Tensor | None = None) -> tf.Tensor:
        return coupling_network.apply(self.weights(*spatial_shape(x)), x, self.dropout, dropout_seed)

    def initialize(self, x: tf.Tensor, dropout_seed: tf.Tensor | None = None) -> tf.Tensor:
        """Initializes both ActNorms on the activations of `x`; returns the output (no dropout)."""
        if self._is_view:
            raise variables.read_only(self.name)
        new = coupling_network.initialize(variables.read(self.params), x)
        with tf.control_dependencies(variables.assign(self.params, new)):
            return coupling_network.apply(coupling_network.weights(new, *spatial_shape(x)), x)
