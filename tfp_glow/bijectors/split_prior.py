"""SplitPrior: the learned prior of the half of the channels that leaves the flow."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow._checks import check_image, check_int, spatial_shape
from tfp_glow.bijectors._base import GlowBijector
from tfp_glow.functional import priors
from tfp_glow.networks.class_projection import ClassProjection, class_term
from tfp_glow.networks.conv import ZeroConv2D

__all__ = ["SplitPrior"]


class SplitPrior(GlowBijector):
    """The learned prior N(mu(h), sigma(h)) of the channels that leave at a split.

    At the end of every Glow level but the last, the channels split into the half h
    that stays (C_h = C // 2) and the half z that leaves. The reference code's
    `split2d` models z as N(mu(h), sigma(h)), with mu and log sigma from a
    zero-initialized 3x3 convolution over h. As a bijector on [..., H, W, C]:

    Forward (generative, noise -> latent), for standard-normal noise eps:

        (h, eps) -> (h, z),      z = mu(h) + sigma(h) * eps

    Inverse (encoding):

        (h, z) -> (h, eps),      eps = (z - mu(h)) / sigma(h)

    `log|det J_forward| = sum(log sigma(h))` (`tfp_glow.functional.priors`). So the base
    distribution of the whole model stays a standard normal and temperature is the
    scale of that base. At initialization mu = 0 and sigma = 1: the prior is a standard
    normal and the bijector the identity.

    Class-conditional (`num_classes=K`): a zero-initialized linear map of the
    one-hot label y adds to the convolution's output, channelwise at every
    position, so that mu(h, y) and log sigma(h, y) depend on the class:

        [mu, log sigma](h, y) = conv(h) + (onehot(y) W + b) * exp(3 * logs)

    The label is the keyword argument `labels`, integer class indices in [0, K)
    whose shape broadcasts against the batch shape: `prior.inverse(y, labels=c)`.
    Untrained, it equals the unconditional prior for every label.

    #### References

    [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int | None = None,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        name: str = "split_prior",
        compute_dtype: str | None = None,
    ):
        """Creates a SplitPrior.

        Args:
          channels: Python `int` >= 2, the channels C before the split.
          num_classes: Python `int` K or `None` (default, unconditional): the
            number of classes of the `labels` keyword argument.
          dtype: `tf.DType` of the variables and inputs. Default `tf.float32`.
          compute_dtype: dtype its network computes in, for mixed precision ('bfloat16' or
            'float16'); `None` (default): `dtype`. Variables, inputs, outputs and log-dets stay
            `dtype`.
          validate_args: Python `bool`, check shapes and labels at run time.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: if `channels` < 2, or `num_classes` is not a positive integer.
        """
        parameters = dict(locals())
        channels = check_int(channels, "channels", minimum=2)
        with tf.name_scope(name) as name:
            self._channels = channels
            self._compute_dtype = compute_dtype
            self._channels_kept = channels // 2
            self.prior_network = ZeroConv2D(
                self._channels_kept,
                2 * (channels - self._channels_kept),
                3,
                dtype=dtype,
                params=priors.split_prior_init_params(channels, dtype),
                name="prior_conv",
            )
            self.class_projection = None
            if num_classes is not None:
                self.class_projection = ClassProjection(
                    num_classes,
                    2 * (channels - self._channels_kept),
                    dtype=dtype,
                    validate_args=validate_args,
                )
            super().__init__(
                forward_min_event_ndims=3,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=name,
            )

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def channels_kept(self) -> int:
        """C // 2, the channels that stay in the flow."""
        return self._channels_kept

    @property
    def num_classes(self) -> int | None:
        """K for a class-conditional prior, else `None`."""
        return None if self.class_projection is None else self.class_projection.num_classes

    def _class_term(self, labels):
        return class_term(self.class_projection, labels, self.name)

    def _network_weights(self, x):
        return self.prior_network.weights(*spatial_shape(x))

    def mean_and_log_scale(self, h: tf.Tensor, labels=None) -> tuple[tf.Tensor, tf.Tensor]:
        """mu(h) and log sigma(h) of the leaving channels, given the kept ones (and the labels)."""
        return priors.split_prior_mean_and_log_scale(
            self._network_weights(h), h, self._class_term(labels), self._compute_dtype
        )

    def _forward_and_log_det(self, x, labels=None):
        check_image(x, self._channels, self.name)
        return priors.split_prior_forward(
            self._network_weights(x), x, self._channels_kept, self._class_term(labels), self._compute_dtype
        )

    def _inverse_and_log_det(self, y, labels=None):
        check_image(y, self._channels, self.name)
        return priors.split_prior_inverse(
            self._network_weights(y), y, self._channels_kept, self._class_term(labels), self._compute_dtype
        )
