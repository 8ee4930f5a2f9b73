"""The base class shared by tfp_glow's bijectors: one pass computes output and log-det."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import cache_util

tfb = tfp.bijectors


class GlowBijector(tfb.Bijector):
    """A `tfb.Bijector` whose subclasses compute output and log-det together.

    Every Glow step needs its conditioner network to compute both the output and the
    log-det-Jacobian, so subclasses implement

      _forward_and_log_det(x, **kwargs) -> (y, forward_log_det)
      _inverse_and_log_det(y, **kwargs) -> (x, inverse_log_det)

    with the log-det reduced over the last three (image) dimensions (a scalar where
    the Jacobian is constant: TFP broadcasts it over the batch), and this class
    derives TFP's `_forward`, `_inverse` and log-det methods from them. TFP's cache is
    filled greedily (as `tfb.FFJORD` does), so `TransformedDistribution.log_prob` runs
    the network once, not twice.

    `forward_and_log_det` / `inverse_and_log_det` are public (as in distrax) and skip
    TFP's cache: composites such as `Glow` call them on fresh intermediate tensors.

    Each instance owns its variables, so two instances never share a cache entry even
    when their constructor arguments are equal (TFP shares caches between bijectors
    whose `parameters` compare equal).
    """

    _cache = cache_util.BijectorCacheWithGreedyAttrs(
        forward_name="_augmented_forward", inverse_name="_augmented_inverse"
    )

    def _get_parameterization(self):
        return id(self)

    # Public single-pass API.

    def forward_and_log_det(self, x, **kwargs):
        """Returns `(forward(x), forward_log_det_jacobian(x, event_ndims=3))`."""
        return self._forward_and_log_det(self._finite(x), **kwargs)

    def inverse_and_log_det(self, y, **kwargs):
        """Returns `(inverse(y), inverse_log_det_jacobian(y, event_ndims=3))`."""
        return self._inverse_and_log_det(self._finite(y), **kwargs)

    def _finite(self, t):
        """`t`, checked to be finite at run time when `validate_args` (InvalidArgumentError)."""
        if not self.validate_args or not getattr(t, "dtype", tf.float32).is_floating:
            return t
        return tf.debugging.check_numerics(
            t, f"{self.name} (validate_args=True) expects finite input; Received: a tensor with NaN or Inf"
        )

    # TFP's hooks, all derived from the two methods above.

    def _augmented_forward(self, x, **kwargs):
        y, fldj = self.forward_and_log_det(x, **kwargs)
        return y, {"ildj": -fldj}

    def _augmented_inverse(self, y, **kwargs):
        x, ildj = self.inverse_and_log_det(y, **kwargs)
        return x, {"ildj": ildj}

    def _forward(self, x, **kwargs):
        return self.forward_and_log_det(x, **kwargs)[0]

    def _inverse(self, y, **kwargs):
        return self.inverse_and_log_det(y, **kwargs)[0]

    def _forward_log_det_jacobian(self, x, **kwargs):
        return self.forward_and_log_det(x, **kwargs)[1]

    def _inverse_log_det_jacobian(self, y, **kwargs):
        return self.inverse_and_log_det(y, **kwargs)[1]


def check_int(value, name: str, minimum: int = 1, why: str = "") -> int:
    """`value` as an int, or a ValueError naming it when it is not an integer >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {expected}{why}. Received: {name}={value!r}")
    return int(value)


def check_dropout(value) -> float:
    """`value` as a float, or a ValueError when it is not a dropout rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value < 1:
        raise ValueError(f"`dropout` must be a number in [0, 1). Received: dropout={value!r}")
    return float(value)


def check_image(x: tf.Tensor, channels: int, name: str) -> None:
    """Raises a ValueError where the static shape of `x` is not [..., H, W, channels]."""
    shape = x.shape
    if shape.rank is not None and shape.rank < 3:
        raise ValueError(
            f"{name} expects images of shape [..., height, width, {channels}]. "
            f"Received: shape={shape.as_list()}"
        )
    if shape.rank is not None and shape[-1] is not None and shape[-1] != channels:
        raise ValueError(
            f"{name} expects {channels} channels in the last dimension. Received: shape={shape.as_list()}"
        )


def spatial_size(x: tf.Tensor) -> float | tf.Tensor:
    """H * W of an NHWC tensor (a Python number where static): per-pixel log-dets scale by it."""
    if x.shape.rank is not None and x.shape[-3] is not None and x.shape[-2] is not None:
        return float(x.shape[-3] * x.shape[-2])
    shape = tf.shape(x)
    return tf.cast(shape[-3] * shape[-2], x.dtype)


def spatial_shape(x: tf.Tensor) -> tuple:
    """(H, W) of images [..., H, W, C]: Python ints where static, else scalar tensors."""
    dynamic = tf.shape(x)
    return tuple(x.shape[i] if x.shape[i] is not None else dynamic[i] for i in (-3, -2))


def batch_shape_of(x: tf.Tensor) -> tf.Tensor:
    """The leading (batch) dimensions of an image tensor [..., H, W, C]."""
    return tf.shape(x)[:-3]
