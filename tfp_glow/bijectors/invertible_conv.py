"""The invertible 1x1 convolution, Glow's learned channel mixing: in LU form, or a free matrix."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow import variables
from tfp_glow._checks import check_image, check_int
from tfp_glow.bijectors._base import GlowBijector
from tfp_glow.functional import invertible_conv

__all__ = ["InvertibleConv1x1", "PlainInvertibleConv1x1"]


class _Conv1x1(GlowBijector):
    """The same C x C matrix W at every pixel of images [..., H, W, C].

    Inverse (encoding, image side -> latent): `x[..., :] = W y[..., :]`; forward
    (generative): `y[..., :] = W^{-1} x[..., :]`; `log|det J_forward| = -H * W_img *
    log|det W|` (`tfp_glow.functional.invertible_conv`). Subclasses choose the
    parameterization of W.
    """

    def __init__(self, channels, values, dtype, validate_args, parameters, name):
        channels = check_int(channels, "channels")
        with tf.name_scope(name) as name:
            self._channels = channels
            for key, value in variables.create(values).items():
                setattr(self, key, value)
            self._keys = tuple(values)
            super().__init__(
                forward_min_event_ndims=3,
                is_constant_jacobian=True,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=name,
            )

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def params(self) -> dict:
        """The parameters of W."""
        return {key: getattr(self, key) for key in self._keys}

    def _conv_weights(self) -> dict:
        raise NotImplementedError

    def matrix(self) -> tf.Tensor:
        """W, the matrix of the encoding direction."""
        return self._conv_weights()["matrix"]

    def inverse_matrix(self) -> tf.Tensor:
        """W^{-1}, the matrix of the generative direction."""
        return self._conv_weights()["inverse_matrix"]

    def log_abs_det(self) -> tf.Tensor:
        """log|det W| (per pixel)."""
        return self._conv_weights()["log_det"]

    def _checked(self, t):
        check_image(t, self._channels, self.name)
        if not self.validate_args:
            return t
        check = tf.debugging.assert_equal(
            tf.shape(t)[-1], self._channels, message=f"{self.name} expects {self._channels} channels."
        )
        with tf.control_dependencies([check]):
            return tf.identity(t)

    def _forward_and_log_det(self, x):
        return invertible_conv.forward(self._conv_weights(), self._checked(x))

    def _inverse_and_log_det(self, y):
        return invertible_conv.inverse(self._conv_weights(), self._checked(y))


class InvertibleConv1x1(_Conv1x1):
    """Invertible 1x1 convolution in the paper's LU form [1].

        W = P L (U + diag(sign_s * exp(log_s)))

    with a fixed permutation P, unit-lower-triangular L, strictly upper U, a fixed
    sign vector and a trained `log_s`: `log|det W| = sum(log_s)` costs nothing, and
    the diagonal can never cross zero, so W never becomes singular. It starts as a
    random rotation (`log|det W| = 0`) drawn from `seed`. P and `sign_s` are
    non-trainable variables, so that checkpoints keep them. The free-matrix form is
    `PlainInvertibleConv1x1`.

    #### References

    [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
         https://arxiv.org/abs/1807.03039
    """

    def __init__(
        self,
        channels: int,
        seed: int | None = None,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        params: dict | None = None,
        name: str = "invertible_conv1x1",
    ):
        """Creates an InvertibleConv1x1 bijector.

        Args:
          channels: Python `int`, the number of channels C.
          seed: Python `int` or `None`, seed of the random rotation W starts from.
          dtype: `tf.DType` of the variables and inputs. Default `tf.float32`.
          validate_args: Python `bool`, check the channel count at run time.
          params: optional dict of tensors `permutation`, `sign_s`, `lower`, `upper`,
            `log_s` to use instead of new variables (a read-only view). Default `None`.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: if `channels` is not a positive integer.
        """
        parameters = dict(locals())
        check_int(channels, "channels")
        values = params if params is not None else invertible_conv.lu_init_params(channels, seed, dtype)
        super().__init__(channels, values, dtype, validate_args, parameters, name)

    def _conv_weights(self) -> dict:
        return invertible_conv.lu_weights(variables.read(self.params))


class PlainInvertibleConv1x1(_Conv1x1):
    """Invertible 1x1 convolution with a free matrix W [1] (the paper's non-LU variant).

    `log|det W|` and `W^{-1}` are computed in float64, the log-det from a QR
    decomposition (XLA compiles QR, not slogdet). W starts as a random rotation drawn
    from `seed`; nothing keeps it from becoming singular in training, which the LU form
    (`InvertibleConv1x1`) rules out.

    #### References

    [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
    """

    def __init__(
        self,
        channels: int,
        seed: int | None = None,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        params: dict | None = None,
        name: str = "invertible_conv1x1",
    ):
        """Creates a PlainInvertibleConv1x1 bijector.

        Args:
          channels: Python `int`, the number of channels C.
          seed: Python `int` or `None`, seed of the random rotation W starts from.
          dtype: `tf.DType` of the variables and inputs. Default `tf.float32`.
          validate_args: Python `bool`, check the channel count at run time.
          params: optional dict with the tensor `weight` [C, C] to use instead of a new
            variable (a read-only view). Default `None`.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: if `channels` is not a positive integer.
        """
        parameters = dict(locals())
        check_int(channels, "channels")
        values = params if params is not None else invertible_conv.plain_init_params(channels, seed, dtype)
        super().__init__(channels, values, dtype, validate_args, parameters, name)

    def _conv_weights(self) -> dict:
        return invertible_conv.plain_weights(variables.read(self.params))
