"""TopPrior: the learned per-channel Gaussian prior of the top (coarsest) latent."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow import variables
from tfp_glow._checks import check_image, check_int
from tfp_glow.bijectors._base import GlowBijector
from tfp_glow.functional import priors
from tfp_glow.networks.class_projection import ClassProjection, class_term

__all__ = ["TopPrior"]


class TopPrior(GlowBijector):
    """Learned prior N(mu, sigma) of the top latent, per channel (the reference `learntop`).

    Forward (generative, noise -> top latent): `z = mu + sigma * eps`; inverse
    (encoding): `eps = (z - mu) / sigma`; `log|det J_forward| = H * W * sum(log sigma)`
    (`tfp_glow.functional.priors`). mu and log sigma are trainable and start at zero, so
    an untrained TopPrior is the identity and the prior a standard normal.

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
            created = variables.create(priors.top_prior_init_params(channels, dtype))
            self.mean, self.log_scale = created["mean"], created["log_scale"]
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

    @property
    def params(self) -> dict:
        return {"mean": self.mean, "log_scale": self.log_scale}

    def _class_term(self, labels):
        return class_term(self.class_projection, labels, self.name)

    def mean_and_log_scale(self, labels=None) -> tuple[tf.Tensor, tf.Tensor]:
        """mu and log sigma: [C], or [..., 1, 1, C] given `labels` [...]."""
        return priors.top_prior_mean_and_log_scale(variables.read(self.params), self._class_term(labels))

    def _forward_and_log_det(self, x, labels=None):
        check_image(x, self._channels, self.name)
        return priors.top_prior_forward(variables.read(self.params), x, self._class_term(labels))

    def _inverse_and_log_det(self, y, labels=None):
        check_image(y, self._channels, self.name)
        return priors.top_prior_inverse(variables.read(self.params), y, self._class_term(labels))
