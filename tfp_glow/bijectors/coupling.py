"""AffineCoupling: Glow's affine (or additive) coupling layer with a pluggable conditioner."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tfp_glow.bijectors._base import GlowBijector, check_image, check_int
from tfp_glow.networks.coupling_network import CouplingNetwork

__all__ = ["AffineCoupling", "split_channels", "merge_channels"]

_SCALE_FNS = ("sigmoid", "exp")


def split_channels(x: tf.Tensor, channels_first_half: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Splits [..., C] into the first `channels_first_half` channels and the rest."""
    return x[..., :channels_first_half], x[..., channels_first_half:]


def merge_channels(x1: tf.Tensor, x2: tf.Tensor) -> tf.Tensor:
    """The inverse of `split_channels`."""
    return tf.concat([x1, x2], axis=-1)


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
    overflow. With `additive=True`, s = 1 (NICE's additive coupling, log-det 0).

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
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: if `channels` < 2, or `scale_fn` is unknown.
        """
        parameters = dict(locals())
        channels = check_int(channels, "channels", minimum=2, why=" (the coupling splits them in halves)")
        if scale_fn not in _SCALE_FNS:
            raise ValueError(f"`scale_fn` must be one of {_SCALE_FNS}. Received: scale_fn={scale_fn!r}")
        if not log_scale_bound > 0:
            raise ValueError(
                f"`log_scale_bound` must be positive. Received: log_scale_bound={log_scale_bound!r}"
            )
        with tf.name_scope(name) as name:
            self._channels = channels
            self._channels_a = channels // 2
            self._additive = additive
            self._scale_fn = scale_fn
            self._log_scale_bound = log_scale_bound
            if conditioner is None:
                channels_b = channels - self._channels_a
                conditioner = CouplingNetwork(
                    self._channels_a,
                    channels_b if additive else 2 * channels_b,
                    hidden_channels,
                    seed=seed,
                    dropout=dropout,
                    dtype=dtype,
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

    def _shift_and_log_scale(self, x_a, conditioning, initialize=False):
        if initialize and hasattr(self.conditioner, "initialize"):
            out = self.conditioner.initialize(x_a, **conditioning)
        else:
            out = self.conditioner(x_a, **conditioning)
        if isinstance(out, (tuple, list)):
            shift, h = out
        elif self._additive:
            shift, h = out, None
        else:
            shift, h = out[..., 0::2], out[..., 1::2]
        if self._additive:
            return shift, None
        if self._scale_fn == "sigmoid":
            # Dividing by sigmoid(2), computed by the same op in h's dtype, makes an
            # untrained coupling (h = 0) exactly the identity.
            log_scale = tf.math.log_sigmoid(h + 2.0) - tf.math.log_sigmoid(tf.constant(2.0, h.dtype))
        else:
            bound = tf.cast(self._log_scale_bound, h.dtype)
            log_scale = bound * tf.tanh(h / bound)
        return shift, log_scale

    def _log_det(self, log_scale, like):
        if log_scale is None:
            return tf.zeros([], like.dtype)  # additive: volume-preserving
        return tf.reduce_sum(log_scale, axis=[-3, -2, -1])

    def _forward_and_log_det(self, x, **conditioning):
        check_image(x, self._channels, self.name)
        y_a, y_b = split_channels(x, self._channels_a)
        shift, log_scale = self._shift_and_log_scale(y_a, conditioning)
        if log_scale is not None:
            y_b = y_b * tf.exp(-log_scale)
        out = merge_channels(y_a, y_b - shift)
        return out, -self._log_det(log_scale, x)

    def _inverse_and_log_det(self, y, initialize=False, **conditioning):
        check_image(y, self._channels, self.name)
        x_a, x_b = split_channels(y, self._channels_a)
        shift, log_scale = self._shift_and_log_scale(x_a, conditioning, initialize)
        x_b = x_b + shift
        if log_scale is not None:
            x_b = x_b * tf.exp(log_scale)
        return merge_channels(x_a, x_b), self._log_det(log_scale, y)

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
        self._cache.clear()
        return self._inverse_and_log_det(y, initialize=True, **conditioning)[0]
