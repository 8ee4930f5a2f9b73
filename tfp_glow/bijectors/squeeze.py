"""Squeeze: space-to-depth in the element order of the reference Glow code."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow.bijectors._base import GlowBijector, batch_shape_of, check_int

__all__ = ["Squeeze"]


def _div(n, k):
    return None if n is None else n // k


def _mul(n, k):
    return None if n is None else n * k


def _image_dims(x):
    """(H, W, C) as Python ints where static, so that outputs keep static shapes."""
    dynamic = tf.shape(x)
    static = x.shape[-3:] if x.shape.rank is not None else [None] * 3
    return [dynamic[i - 3] if static[i] is None else static[i] for i in range(3)]


class Squeeze(GlowBijector):
    """Trades spatial resolution for channels: [..., H, W, C] <-> [..., H/f, W/f, C f^2].

    Forward (space-to-depth), with f = `factor`:

        y[..., i, j, c * f^2 + a * f + b] = x[..., i * f + a, j * f + b, c]

    the element order of `squeeze2d` in the reference code (channel-major, unlike
    `tf.nn.space_to_depth`). Inverse: depth-to-space. Both are permutations of the
    elements: log-det 0.

    In `Glow` the encoding direction squeezes, so the generative direction applies
    this bijector's inverse.
    """

    def __init__(self, factor: int = 2, validate_args: bool = False, name: str = "squeeze"):
        """Creates a Squeeze bijector.

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
                f"Squeeze expects images of shape [..., height, width, channels]. "
                f"Received: shape={t.shape.as_list()}"
            )

    def _check_divisible(self, shape, what):
        f = self._factor
        h, w = shape[-3], shape[-2]
        if (h is not None and h % f) or (w is not None and w % f):
            raise ValueError(
                f"Squeeze with factor {f} needs {what} height and width divisible by {f}. "
                f"Received: shape={list(shape)}"
            )

    def _space_to_depth(self, x):
        f = self._factor
        self._check_rank(x)
        self._check_divisible(x.shape.as_list() if x.shape.rank else [None] * 3, "the input's")
        batch, (h, w, c) = batch_shape_of(x), _image_dims(x)
        assertions = []
        if self.validate_args:
            assertions.append(
                tf.debugging.assert_equal(
                    (h % f) + (w % f),
                    0,
                    message=f"Squeeze: height and width must be divisible by {f}.",
                )
            )
        with tf.control_dependencies(assertions):
            t = tf.reshape(x, [-1, h // f, f, w // f, f, c])
        t = tf.transpose(t, [0, 1, 3, 5, 2, 4])
        if x.shape.rank == 4:
            return tf.reshape(t, [-1, h // f, w // f, c * f * f])
        return tf.reshape(t, tf.concat([batch, [h // f, w // f, c * f * f]], axis=0))

    def _depth_to_space(self, y):
        f = self._factor
        self._check_rank(y)
        if y.shape.rank and y.shape[-1] is not None and y.shape[-1] % (f * f):
            raise ValueError(
                f"Squeeze's inverse needs channels divisible by {f * f}. Received: shape={y.shape.as_list()}"
            )
        batch, (h, w, c) = batch_shape_of(y), _image_dims(y)
        t = tf.reshape(y, [-1, h, w, c // (f * f), f, f])
        t = tf.transpose(t, [0, 1, 4, 2, 5, 3])
        if y.shape.rank == 4:
            return tf.reshape(t, [-1, h * f, w * f, c // (f * f)])
        return tf.reshape(t, tf.concat([batch, [h * f, w * f, c // (f * f)]], axis=0))

    def _zeros(self, t):
        return tf.zeros([], t.dtype)

    def _forward_and_log_det(self, x):
        return self._space_to_depth(x), self._zeros(x)

    def _inverse_and_log_det(self, y):
        return self._depth_to_space(y), self._zeros(y)

    def _forward_event_shape(self, input_shape):
        self._check_divisible(input_shape, "the input's")
        f = self._factor
        h, w, c = input_shape[-3:]
        return input_shape[:-3].concatenate([_div(h, f), _div(w, f), _mul(c, f * f)])

    def _forward_event_shape_tensor(self, input_shape):
        f = self._factor
        return tf.concat(
            [
                input_shape[:-3],
                [input_shape[-3] // f, input_shape[-2] // f, input_shape[-1] * f * f],
            ],
            0,
        )

    def _inverse_event_shape(self, output_shape):
        f = self._factor
        h, w, c = output_shape[-3:]
        if c is not None and c % (f * f):
            raise ValueError(
                f"Squeeze's inverse needs channels divisible by {f * f}. Received: shape={list(output_shape)}"
            )
        return output_shape[:-3].concatenate([_mul(h, f), _mul(w, f), _div(c, f * f)])

    def _inverse_event_shape_tensor(self, output_shape):
        f = self._factor
        return tf.concat(
            [
                output_shape[:-3],
                [output_shape[-3] * f, output_shape[-2] * f, output_shape[-1] // (f * f)],
            ],
            0,
        )
