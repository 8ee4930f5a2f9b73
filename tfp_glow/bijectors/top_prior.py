"""TopPrior: the learned per-channel Gaussian prior of the top (coarsest) latent."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow.bijectors._base import GlowBijector, check_image, check_int, spatial_size

__all__ = ["TopPrior"]


class TopPrior(GlowBijector):
    """Learned prior N(mu, sigma) of the top latent, per channel (the reference `learntop`).

    Forward (generative, noise -> top latent): `z = mu + sigma * eps`; inverse
    (encoding): `eps = (z - mu) / sigma`; `log|det J_forward| = H * W * sum(log sigma)`.
    mu and log sigma are trainable and start at zero, so an untrained TopPrior is
    the identity and the prior a standard normal.
    """

    def __init__(
        self,
        channels: int,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        name: str = "top_prior",
    ):
        """Creates a TopPrior.

        Args:
          channels: Python `int`, the channels C of the top latent.
          dtype: `tf.DType` of the variables and inputs. Default `tf.float32`.
          validate_args: Python `bool`, unused apart from TFP's own checks.
          name: Python `str` name prefixed to ops created by this class.
        """
        parameters = dict(locals())
        channels = check_int(channels, "channels")
        with tf.name_scope(name) as name:
            self._channels = channels
            self.mean = tf.Variable(tf.zeros([channels], dtype), name="mean")
            self.log_scale = tf.Variable(tf.zeros([channels], dtype), name="log_scale")
            super().__init__(
                forward_min_event_ndims=3,
                is_constant_jacobian=True,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=name,
            )

    def _log_det(self, t):
        return spatial_size(t) * tf.reduce_sum(self.log_scale)

    def _forward_and_log_det(self, x):
        check_image(x, self._channels, self.name)
        return self.mean + tf.exp(self.log_scale) * x, self._log_det(x)

    def _inverse_and_log_det(self, y):
        check_image(y, self._channels, self.name)
        return (y - self.mean) * tf.exp(-self.log_scale), -self._log_det(y)
