"""ActNorm: per-channel affine map with data-dependent initialization."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow.bijectors._base import GlowBijector, check_image, check_int, spatial_size

__all__ = ["ActNorm"]


class ActNorm(GlowBijector):
    """Activation normalization: a per-channel affine map of images [..., H, W, C].

    Forward (generative, latent -> image side):

        y[..., c] = x[..., c] * exp(log_scale[c]) + loc[c]

    Inverse (encoding, image side -> latent):

        x[..., c] = (y[..., c] - loc[c]) * exp(-log_scale[c])

    with `log|det J_forward| = H * W * sum_c log_scale[c]`.

    `initialize(y)` sets `loc` and `log_scale` from a batch `y` in the data (image)
    direction, so that `inverse(y)` has per-channel mean 0 and standard deviation 1
    (the data-dependent initialization of [1]). It is explicit and idempotent: the
    state lives in the non-trainable variable `initialized`, which checkpoints and
    SavedModels save, so a reloaded model is never initialized again.

    Before `initialize`, ActNorm is the identity (loc 0, log_scale 0); it never
    initializes itself from whatever it sees first (sampling first would initialize
    from noise). With `validate_args=True`, using it uninitialized is an error.

    #### Examples

    ```python
    actnorm = tfp_glow.ActNorm(channels=3)
    images = tf.random.normal([16, 8, 8, 3]) * 5. + 2.
    z = actnorm.initialize(images)   # == actnorm.inverse(images): mean 0, std 1
    ```

    #### References

    [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
         https://arxiv.org/abs/1807.03039
    """

    def __init__(
        self,
        channels: int,
        epsilon: float = 1e-6,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        name: str = "act_norm",
    ):
        """Creates an ActNorm bijector.

        Args:
          channels: Python `int`, the number of channels C (last dimension).
          epsilon: Python `float` added to the standard deviation at initialization,
            so that a constant channel does not give an infinite scale. Default 1e-6.
          dtype: `tf.DType` of the variables and of the inputs. Default `tf.float32`.
          validate_args: Python `bool`, whether to check at run time that the
            bijector was initialized and that the input has `channels` channels.
            Default `False`.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: if `channels` is not a positive integer.
        """
        parameters = dict(locals())
        channels = check_int(channels, "channels")
        with tf.name_scope(name) as name:
            self._channels = channels
            self._epsilon = epsilon
            self.loc = tf.Variable(tf.zeros([channels], dtype), name="loc")
            self.log_scale = tf.Variable(tf.zeros([channels], dtype), name="log_scale")
            self.initialized = tf.Variable(False, trainable=False, name="initialized")
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

    def initialize(self, y: tf.Tensor) -> tf.Tensor:
        """Data-dependent initialization from a batch `y` (image side); idempotent.

        Sets `loc = mean(y)` and `log_scale = log(std(y) + epsilon)` per channel,
        unless already initialized, and returns `inverse(y)`.

        Args:
          y: float `Tensor` of shape [..., H, W, C], a real batch of the activations
            that enter this ActNorm in the encoding direction.

        Returns:
          x: `inverse(y)` with the initialized parameters.
        """
        y = tf.convert_to_tensor(y, dtype=self.dtype, name="y")
        check_image(y, self._channels, self.name)
        # Always checked: parameters initialized from NaN or Inf would stay so for good.
        y = tf.debugging.check_numerics(
            y, f"ActNorm '{self.name}' must be initialized from finite values; Received: NaN or Inf"
        )

        def assign():
            axes = list(range(y.shape.rank - 1)) if y.shape.rank is not None else None
            mean, variance = tf.nn.moments(y, axes=axes)
            return tf.group(
                self.loc.assign(mean),
                self.log_scale.assign(tf.math.log(tf.sqrt(variance) + self._epsilon)),
                self.initialized.assign(True),
            )

        if tf.executing_eagerly():
            if not bool(self.initialized.numpy()):
                assign()
        else:
            tf.cond(self.initialized, tf.no_op, assign)
        self._cache.clear()
        with tf.control_dependencies([self.initialized.read_value()]):
            return self._inverse_and_log_det(tf.identity(y))[0]

    def _assertions(self, t):
        if not self.validate_args:
            return []
        return [
            tf.debugging.assert_equal(
                self.initialized,
                True,
                message=f"ActNorm '{self.name}' is used before initialization: call "
                "initialize(batch) on a real data batch first.",
            ),
            tf.debugging.assert_equal(
                tf.shape(t)[-1],
                self._channels,
                message=f"ActNorm '{self.name}' expects {self._channels} channels.",
            ),
        ]

    # Functions of the weights alone: StepLoop computes them once for a level's stacked steps.
    _weight_functions = ("scale", "inverse_scale", "log_abs_det")

    def scale(self) -> tf.Tensor:
        """exp(log_scale), per channel."""
        return tf.exp(self.log_scale)

    def inverse_scale(self) -> tf.Tensor:
        """exp(-log_scale), per channel."""
        return tf.exp(-self.log_scale)

    def log_abs_det(self) -> tf.Tensor:
        """sum_c log_scale[c]: log|det J_forward| per pixel."""
        return tf.reduce_sum(self.log_scale, axis=-1)

    def _log_det(self, t):
        return spatial_size(t) * self.log_abs_det()

    def _forward_and_log_det(self, x):
        check_image(x, self._channels, self.name)
        with tf.control_dependencies(self._assertions(x)):
            y = x * self.scale() + self.loc
        return y, self._log_det(x)

    def _inverse_and_log_det(self, y):
        check_image(y, self._channels, self.name)
        with tf.control_dependencies(self._assertions(y)):
            x = (y - self.loc) * self.inverse_scale()
        return x, -self._log_det(y)
