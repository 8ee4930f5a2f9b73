"""ActNorm: per-channel affine map with data-dependent initialization."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow import variables
from tfp_glow._checks import check_image, check_int
from tfp_glow.bijectors._base import GlowBijector, check_finite_for_initialization
from tfp_glow.functional import actnorm

__all__ = ["ActNorm"]


class ActNorm(GlowBijector):
    """Activation normalization: a per-channel affine map of images [..., H, W, C].

    Forward (generative, latent -> image side):

        y[..., c] = x[..., c] * exp(log_scale[c]) + loc[c]

    Inverse (encoding, image side -> latent):

        x[..., c] = (y[..., c] - loc[c]) * exp(-log_scale[c])

    with `log|det J_forward| = H * W * sum_c log_scale[c]` (`tfp_glow.functional.actnorm`).

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
        params: dict | None = None,
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
          params: optional dict of tensors `loc`, `log_scale` [C] and `initialized` to use
            instead of new variables (a read-only view, such as `glow.steps[l][k].actnorm`).
            Default `None`: the bijector creates and owns its variables.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: if `channels` is not a positive integer.
        """
        parameters = dict(locals())
        channels = check_int(channels, "channels")
        with tf.name_scope(name) as name:
            self._channels = channels
            self._epsilon = epsilon
            self._is_view = params is not None and variables.is_view(params)
            values = params if params is not None else actnorm.init_params(channels, dtype)
            created = variables.create(values)
            self.loc = created["loc"]
            self.log_scale = created["log_scale"]
            self.initialized = created["initialized"]
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
        """The parameters: `loc`, `log_scale` and `initialized`."""
        return {"loc": self.loc, "log_scale": self.log_scale, "initialized": self.initialized}

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
        if self._is_view:
            raise variables.read_only(self.name)
        y = tf.convert_to_tensor(y, dtype=self.dtype, name="y")
        check_image(y, self._channels, self.name)
        y = check_finite_for_initialization(y, f"ActNorm '{self.name}'")
        update = variables.assign(
            self.params, actnorm.initialize(variables.read(self.params), y, self._epsilon)
        )
        self.clear_cache()
        with tf.control_dependencies(update):
            return self._inverse_and_log_det(tf.identity(y))[0]

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args or is_init:
            return []
        return [
            tf.debugging.assert_equal(
                self.initialized,
                True,
                message=f"ActNorm '{self.name}' is used before initialization: call "
                "initialize(batch) on a real data batch first.",
            )
        ]

    def _checked(self, t):
        check_image(t, self._channels, self.name)
        if not self.validate_args:
            return t
        check = tf.debugging.assert_equal(
            tf.shape(t)[-1],
            self._channels,
            message=f"ActNorm '{self.name}' expects {self._channels} channels.",
        )
        with tf.control_dependencies([check]):
            return tf.identity(t)

    def _weights(self) -> dict:
        return actnorm.weights(variables.read(self.params))

    def _forward_and_log_det(self, x):
        return actnorm.forward(self._weights(), self._checked(x))

    def _inverse_and_log_det(self, y):
        return actnorm.inverse(self._weights(), self._checked(y))
