"""AffineCoupling: Glow's affine (or additive) coupling layer with a pluggable conditioner."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tfp_glow._checks import check_image, check_int
from tfp_glow.bijectors._base import GlowBijector
from tfp_glow.functional import coupling
from tfp_glow.networks.coupling_network import CouplingNetwork

__all__ = ["AffineCoupling"]


class AffineCoupling(GlowBijector):
    """Glow's affine coupling layer on images [..., H, W, C].

    The channels split into halves, x = (x_a, x_b) with C_a = C // 2. A conditioner
    reads x_a and gives a shift t and a raw scale h for x_b, then

    Inverse (encoding, image side -> latent), as in the reference code:

        s = sigmoid(h + 2) / sigmoid(2)          (scale_fn='sigmoid', the default)
        y_b = (x_b + t) * s,      y_a = x_a

    Forward (generative):

        x_b = y_b / s - t

    `log|det J_inverse| = sum(log s)` over H, W and C_b. With `scale_fn='exp'`,
    `log s = B * tanh(h / B)` with `B = log_scale_bound`, bounded so that it cannot
    overflow. With `additive=True`, s = 1 (NICE's additive coupling, log-det 0). The
    maths is `tfp_glow.functional.coupling`.

    The reference code uses s = sigmoid(h + 2); dividing by the constant sigmoid(2)
    keeps its bounded, saturating shape (s < 1.135) while making an untrained coupling
    (h = t = 0) exactly the identity.

    The conditioner is any callable `conditioner(x_a, **conditioning)` returning
    either a tuple `(t, h)` (h ignored when additive) or one tensor with the
    channels of t and h interleaved (`t = out[..., 0::2]`, `h = out[..., 1::2]`, the
    reference layout; just t when additive). The default is the paper's network,
    `CouplingNetwork` (conv3x3 -> ActNorm -> ReLU -> conv1x1 -> ActNorm -> ReLU ->
    zero-initialized conv3x3). Its variables, or those of a `tf.Module` or Keras 3
    layer passed in, appear in this bijector's `trainable_variables`. Conditioning
    inputs (for example class labels) reach the conditioner as the bijector's
    keyword arguments: `coupling.forward(x, label=y)`.

    #### References

    [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
    [2]: Laurent Dinh, Jascha Sohl-Dickstein, Samy Bengio. Density estimation using
         Real NVP. In _International Conference on Learning Representations_, 2017.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int = 512,
        additive: bool = False,
        scale_fn: str = "sigmoid",
        log_scale_bound: float = 3.0,
        conditioner: Callable | None = None,
        seed: int | None = None,
        dropout: float = 0.0,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        params: dict | None = None,
        name: str = "affine_coupling",
    ):
        """Creates an AffineCoupling bijector.

        Args:
          channels: Python `int` >= 2, the number of channels C.
          hidden_channels: Python `int`, width of the default conditioner. Default 512.
          additive: Python `bool`, additive coupling (s = 1). Default `False`.
          scale_fn: `'sigmoid'` (default, the reference code's) or `'exp'`.
          log_scale_bound: Python `float`, the bound B of log s when `scale_fn='exp'`.
          conditioner: optional callable replacing the default network; see above.
          seed: Python `int` or `None`, seed of the default network's initial weights.
          dropout: Python `float` in [0, 1), dropout rate of the default network's
            hidden units when called with a `dropout_seed` (training). Default 0.
          dtype: `tf.DType` of the variables and inputs. Default `tf.float32`.
          validate_args: Python `bool`, check shapes at run time.
          params: optional dict `{"conditioner": ...}` of the default network's parameter
            tensors, to use instead of new variables (a read-only view). Default `None`.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: if `channels` < 2, or `scale_fn` is unknown.
        """
        parameters = dict(locals())
        channels = check_int(channels, "channels", minimum=2, why=" (the coupling splits them in halves)")
        if scale_fn not in coupling.SCALE_FNS:
            raise ValueError(
                f"`scale_fn` must be one of {coupling.SCALE_FNS}. Received: scale_fn={scale_fn!r}"
            )
        if not log_scale_bound > 0:
            raise ValueError(
                f"`log_scale_bound` must be positive. Received: log_scale_bound={log_scale_bound!r}"
            )
        with tf.name_scope(name) as name:
            self._channels = channels
            self._channels_a = channels // 2
            self._additive = additive
            self._options = dict(additive=additive, scale_fn=scale_fn, log_scale_bound=log_scale_bound)
            if conditioner is None:
                channels_b = channels - self._channels_a
                conditioner = CouplingNetwork(
                    self._channels_a,
                    channels_b if additive else 2 * channels_b,
                    hidden_channels,
                    seed=seed,
                    dropout=dropout,
                    dtype=dtype,
                    params=None if params is None else params["conditioner"],
                    name="conditioner",
                )
            self.conditioner = conditioner
            super().__init__(
                forward_min_event_ndims=3,
                is_constant_jacobian=additive,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=name,
            )

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def additive(self) -> bool:
        return self._additive

    @property
    def params(self) -> dict:
        """`{"conditioner": ...}`, the default network's parameters (`CouplingNetwork.params`)."""
        if not isinstance(self.conditioner, CouplingNetwork):
            raise TypeError(
                f"{self.name} has a custom conditioner, whose parameters are its own. "
                f"Received: conditioner={self.conditioner!r}"
            )
        return {"conditioner": self.conditioner.params}

    # tf.Module finds the variables of tf.Modules; Keras 3 layers are not tf.Modules.
    def _keras_variables(self, trainable_only):
        weights = getattr(self.conditioner, "trainable_weights" if trainable_only else "weights", None)
        if weights is None or isinstance(self.conditioner, tf.Module):
            return ()
        return tuple(w.value for w in weights)

    @property
    def trainable_variables(self):
        return tuple(super().trainable_variables) + self._keras_variables(True)

    @property
    def variables(self):
        return tuple(super().variables) + self._keras_variables(False)

    def _network(self, conditioning):
        return lambda x_a: self.conditioner(x_a, **conditioning)

    def _forward_and_log_det(self, x, **conditioning):
        check_image(x, self._channels, self.name)
        return coupling.forward(self._network(conditioning), x, self._channels_a, **self._options)

    def _inverse_and_log_det(self, y, **conditioning):
        check_image(y, self._channels, self.name)
        return coupling.inverse(self._network(conditioning), y, self._channels_a, **self._options)

    def shift_and_log_scale(self, x_a: tf.Tensor, **conditioning) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(t, log s) for the first half `x_a` of the channels; log s is None when additive."""
        return coupling.shift_and_log_scale(self.conditioner(x_a, **conditioning), **self._options)

    def initialize(self, y: tf.Tensor, **conditioning) -> tf.Tensor:
        """Initializes the conditioner's ActNorms on the real activations of `y`.

        Args:
          y: float `Tensor` [..., H, W, C], a real batch entering this coupling in the
            encoding direction.
          **conditioning: conditioning inputs of the conditioner.

        Returns:
          `inverse(y)` after initialization.
        """
        y = tf.convert_to_tensor(y, dtype=self.dtype, name="y")
        check_image(y, self._channels, self.name)
        self.clear_cache()
        if hasattr(self.conditioner, "initialize"):
            out = self.conditioner.initialize(y[..., : self._channels_a], **conditioning)
            return coupling.inverse(lambda _: out, y, self._channels_a, **self._options)[0]
        return self._inverse_and_log_det(y, **conditioning)[0]
