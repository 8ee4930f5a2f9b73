"""TopPrior: the learned per-channel Gaussian prior of the top (coarsest) latent."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow.bijectors._base import GlowBijector, check_image, check_int, spatial_size
from tfp_glow.bijectors.class_projection import ClassProjection

__all__ = ["TopPrior"]


class TopPrior(GlowBijector):
    """Learned prior N(mu, sigma) of the top latent, per channel (the reference `learntop`).

    Forward (generative, noise -> top latent): `z = mu + sigma * eps`; inverse
    (encoding): `eps = (z - mu) / sigma`; `log|det J_forward| = H * W * sum(log sigma)`.
    mu and log sigma are trainable and start at zero, so an untrained TopPrior is
    the identity and the prior a standard normal.

    Class-conditional (`num_classes=K`, the reference `ycond`): a zero-initialized
    linear map of the one-hot label y adds to both, per channel,

        [mu(y), log sigma(y)] = [mu, log sigma] + (onehot(y) W + b) * exp(3 * logs)

    and the label is the bijector's keyword argument `labels`, integer class
    indices in [0, K) whose shape broadcasts against the batch shape:
    `prior.forward(eps, labels=y)`, or through TFP,
    `TransformedDistribution(base, prior).log_prob(z, bijector_kwargs={"labels": y})`.
    The log-det then depends on y (per example). Untrained, it equals the
    unconditional prior for every label.

    #### Examples

    ```python
    prior = tfp_glow.TopPrior(channels=8, num_classes=10)
    z = prior.forward(eps, labels=[3, 7])      # eps: [2, 4, 4, 8]
    ```
    """

    def __init__(
        self,
        channels: int,
        num_classes: int | None = None,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        name: str = "top_prior",
    ):
        """Creates a TopPrior.

        Args:
          channels: Python `int`, the channels C of the top latent.
          num_classes: Python `int` K or `None` (default, unconditional): the
            number of classes of the `labels` keyword argument.
          dtype: `tf.DType` of the variables and inputs. Default `tf.float32`.
          validate_args: Python `bool`, assert at run time that labels are in
            [0, num_classes). Default `False`.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: if `channels` or `num_classes` is not a positive integer.
        """
        parameters = dict(locals())
        channels = check_int(channels, "channels")
        with tf.name_scope(name) as name:
            self._channels = channels
            self.mean = tf.Variable(tf.zeros([channels], dtype), name="mean")
            self.log_scale = tf.Variable(tf.zeros([channels], dtype), name="log_scale")
            self.class_projection = None
            if num_classes is not None:
                self.class_projection = ClassProjection(
                    num_classes, 2 * channels, dtype=dtype, validate_args=validate_args
                )
            super().__init__(
                forward_min_event_ndims=3,
                # The conditional log-det depends on the label, not on the input.
                is_constant_jacobian=num_classes is None,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=name,
            )

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def num_classes(self) -> int | None:
        """K for a class-conditional prior, else `None`."""
        return None if self.class_projection is None else self.class_projection.num_classes

    def mean_and_log_scale(self, labels=None) -> tuple[tf.Tensor, tf.Tensor]:
        """mu and log sigma: [C], or [..., 1, 1, C] given `labels` [...]."""
        if self.class_projection is None:
            if labels is not None:
                raise ValueError(
                    f"{self.name} is not class-conditional (num_classes=None), so it takes no labels. "
                    f"Received: labels={labels!r}"
                )
            return self.mean, self.log_scale
        out = self.class_projection(labels, owner=self.name)
        # As the reference code: the first C channels shift the mean, the last C the log-scale.
        return self.mean + out[..., : self._channels], self.log_scale + out[..., self._channels :]

    def _log_det(self, t, log_scale):
        # Each of the H * W positions adds sum(log sigma); per example when conditional.
        axis = None if self.class_projection is None else [-3, -2, -1]
        return spatial_size(t) * tf.reduce_sum(log_scale, axis=axis)

    def _forward_and_log_det(self, x, labels=None):
        check_image(x, self._channels, self.name)
        mean, log_scale = self.mean_and_log_scale(labels)
        return mean + tf.exp(log_scale) * x, self._log_det(x, log_scale)

    def _inverse_and_log_det(self, y, labels=None):
        check_image(y, self._channels, self.name)
        mean, log_scale = self.mean_and_log_scale(labels)
        return (y - mean) * tf.exp(-log_scale), -self._log_det(y, log_scale)
