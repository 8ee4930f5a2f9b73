"""Expand: depth-to-space, the generative direction of Glow's squeeze (forward = generative)."""

from __future__ import annotations

import warnings

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_glow._checks import check_int
from tfp_glow.bijectors._base import GlowBijector
from tfp_glow.functional import squeeze

__all__ = ["Expand", "Squeeze"]


def _div(n, k):
    return None if n is None else n // k


def _mul(n, k):
    return None if n is None else n * k


class Expand(GlowBijector):
    """Trades channels for spatial resolution: [..., H, W, C f^2] -> [..., H f, W f, C].

    Forward (generative, depth-to-space), with f = `factor`:

        y[..., i * f + a, j * f + b, c] = x[..., i, j, c * f^2 + a * f + b]

    and the inverse (encoding) is the squeeze of the reference code's `squeeze2d`
    (channel-major, unlike `tf.nn.space_to_depth`): `tfp_glow.functional.squeeze`.
    Both permute the elements: log-det 0. As `tfp.bijectors.glow.Expand`, it is the
    generative direction of Glow's squeeze, so that its forward is generative like
    every other bijector of the flow.
    """

    def __init__(self, factor: int = 2, validate_args: bool = False, name: str = "expand"):
        """Creates an Expand bijector.

        Args:
          factor: Python `int` >= 1, the spatial block size f. Default 2.
          validate_args: Python `bool`, check divisibility at run time where the
            shape is only known then.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: if `factor` is not a positive integer.
        """
        parameters = dict(locals())
        factor = check_int(factor, "factor")
        with tf.name_scope(name) as name:
            self._factor = factor
            super().__init__(
                forward_min_event_ndims=3,
                is_constant_jacobian=True,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @property
    def factor(self) -> int:
        return self._factor

    @staticmethod
    def _check_rank(t):
        if t.shape.rank is not None and t.shape.rank < 3:
            raise ValueError(
                f"Expand expects images of shape [..., height, width, channels]. "
                f"Received: shape={t.shape.as_list()}"
            )

    def _check_divisible(self, shape):
        f = self._factor
        h, w = shape[-3], shape[-2]
        if (h is not None and h % f) or (w is not None and w % f):
            raise ValueError(
                f"Squeezing by {f} (Expand's inverse) needs the image's height and width divisible by {f}. "
                f"Received: shape={list(shape)}"
            )

    def _check_channels(self, shape):
        f = self._factor
        if shape[-1] is not None and shape[-1] % (f * f):
            raise ValueError(
                f"Expand by {f} needs channels divisible by {f * f}. Received: shape={list(shape)}"
            )

    def _forward_and_log_det(self, x):
        self._check_rank(x)
        if x.shape.rank:
            self._check_channels(x.shape.as_list())
        return squeeze.unsqueeze(x, self._factor), tf.zeros([], x.dtype)

    def _inverse_and_log_det(self, y):
        f = self._factor
        self._check_rank(y)
        self._check_divisible(y.shape.as_list() if y.shape.rank else [None] * 3)
        if self.validate_args:
            shape = tf.shape(y)
            check = tf.debugging.assert_equal(
                (shape[-3] % f) + (shape[-2] % f),
                0,
                message=f"Squeezing by {f}: height and width must be divisible by {f}.",
            )
            with tf.control_dependencies([check]):
                y = tf.identity(y)
        return squeeze.squeeze(y, f), tf.zeros([], y.dtype)

    def _forward_event_shape(self, input_shape):
        self._check_channels(input_shape)
        f = self._factor
        h, w, c = input_shape[-3:]
        return input_shape[:-3].concatenate([_mul(h, f), _mul(w, f), _div(c, f * f)])

    def _forward_event_shape_tensor(self, input_shape):
        f = self._factor
        return tf.concat(
            [input_shape[:-3], [input_shape[-3] * f, input_shape[-2] * f, input_shape[-1] // (f * f)]], 0
        )

    def _inverse_event_shape(self, output_shape):
        self._check_divisible(output_shape)
        f = self._factor
        h, w, c = output_shape[-3:]
        return output_shape[:-3].concatenate([_div(h, f), _div(w, f), _mul(c, f * f)])

    def _inverse_event_shape_tensor(self, output_shape):
        f = self._factor
        return tf.concat(
            [output_shape[:-3], [output_shape[-3] // f, output_shape[-2] // f, output_shape[-1] * f * f]], 0
        )


def Squeeze(factor: int = 2, validate_args: bool = False, name: str = "squeeze") -> tfp.bijectors.Bijector:
    """Deprecated: `tfb.Invert(Expand(factor))`, whose forward is the encoding direction.

    Every other bijector of tfp-glow has a generative forward; use `Expand`, whose
    inverse is this squeeze.
    """
    warnings.warn(
        "tfp_glow.Squeeze is deprecated: its forward is the encoding direction. Use tfp_glow.Expand "
        "(forward = depth-to-space, generative), whose inverse squeezes.",
        DeprecationWarning,
        stacklevel=2,
    )
    return tfp.bijectors.Invert(Expand(factor, validate_args=validate_args), name=name)
