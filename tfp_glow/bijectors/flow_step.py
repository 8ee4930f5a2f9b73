"""FlowStep: one step of flow, ActNorm -> invertible 1x1 conv -> affine coupling."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow import variables
from tfp_glow._checks import check_image, spatial_shape
from tfp_glow.bijectors._base import GlowBijector
from tfp_glow.bijectors.actnorm import ActNorm
from tfp_glow.bijectors.coupling import AffineCoupling
from tfp_glow.bijectors.invertible_conv import InvertibleConv1x1, PlainInvertibleConv1x1
from tfp_glow.bijectors.permutation import ChannelPermutation
from tfp_glow.functional import flow_step

__all__ = ["COUPLINGS", "FlowStep", "PERMUTATIONS"]

COUPLINGS = flow_step.COUPLINGS
PERMUTATIONS = flow_step.PERMUTATIONS


class FlowStep(GlowBijector):
    """One step of flow of Glow [1] on images [..., H, W, C].

    Inverse (encoding, image side -> latent), the order of the paper's Figure 2:

        actnorm -> invertible 1x1 convolution (or fixed permutation) -> coupling

    Forward (generative) runs the three inverses in the opposite order, so this is
    `tfb.Chain([actnorm, permutation, coupling])`. The log-det is the sum of the
    three, computed in the same pass (`tfp_glow.functional.flow_step`). The three
    components are its bijectors `actnorm`, `permutation` and `coupling`, each owning
    its variables.

    #### References

    [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int = 512,
        coupling: str = "affine",
        permutation: str = "conv1x1",
        lu_decomposed: bool = True,
        scale_fn: str = "sigmoid",
        seed: int | None = None,
        dropout: float = 0.0,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        params: dict | None = None,
        name: str = "flow_step",
    ):
        """Creates a FlowStep.

        Args:
          channels: Python `int` >= 2, the channels C.
          hidden_channels: Python `int`, width of the coupling's network. Default 512.
          coupling: `'affine'` (default) or `'additive'`.
          permutation: `'conv1x1'` (default, the invertible 1x1 convolution),
            `'reverse'` or `'shuffle'` (fixed channel orders, the paper's ablation).
          lu_decomposed: Python `bool`, LU form of the 1x1 convolution. Default `True`.
          scale_fn: the coupling's scale, `'sigmoid'` (default) or `'exp'`.
          seed: Python `int` or `None`, seed of the initial weights.
          dropout: Python `float` in [0, 1), dropout rate in the coupling's network
            when called with a `dropout_seed` (training). Default 0.
          dtype: `tf.DType` of the variables and inputs. Default `tf.float32`.
          validate_args: Python `bool`, check shapes at run time.
          params: optional nest of parameter tensors (as
            `tfp_glow.functional.flow_step` takes them) to use instead of new
            variables: a read-only view, such as `glow.steps[level][k]`. Default `None`.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: for an unknown `coupling` or `permutation`.
        """
        parameters = dict(locals())
        self._config = flow_step.StepConfig(
            channels,
            hidden_channels,
            coupling=coupling,
            permutation=permutation,
            lu_decomposed=lu_decomposed,
            scale_fn=scale_fn,
            dropout=dropout,
            dtype=dtype,
        )
        self._dropout_salt = flow_step.dropout_salt(seed)
        self._is_view = params is not None and variables.is_view(params)
        if params is None:
            params = flow_step.init_params(self._config, seed)
        with tf.name_scope(name) as name:
            self.actnorm = ActNorm(
                channels, dtype=dtype, validate_args=validate_args, params=params["actnorm"], name="actnorm"
            )
            self.permutation = _mixing(self._config, params["permutation"], validate_args)
            self.coupling = AffineCoupling(
                channels,
                hidden_channels,
                additive=coupling == "additive",
                scale_fn=scale_fn,
                seed=None if seed is None else seed + 7919,
                dropout=dropout,
                dtype=dtype,
                validate_args=validate_args,
                params=params["coupling"],
                name="coupling",
            )
            super().__init__(
                forward_min_event_ndims=3,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=name,
            )

    @property
    def config(self) -> flow_step.StepConfig:
        return self._config

    @property
    def params(self) -> dict:
        """The nest of the components' parameters, as `tfp_glow.functional.flow_step` takes it."""
        return {
            "actnorm": self.actnorm.params,
            "permutation": self.permutation.params,
            "coupling": self.coupling.params,
        }

    def _weights(self, x) -> dict:
        return flow_step.weights(
            variables.read(self.params), self._config, *spatial_shape(x), self._dropout_salt
        )

    def _forward_and_log_det(self, x, dropout_seed=None):
        check_image(x, self._config.channels, self.name)
        return flow_step.forward(self._weights(x), x, self._config, dropout_seed)

    def _inverse_and_log_det(self, y, dropout_seed=None):
        check_image(y, self._config.channels, self.name)
        return flow_step.inverse(self._weights(y), y, self._config, dropout_seed)

    def initialize(self, y: tf.Tensor, **conditioning) -> tf.Tensor:
        """Initializes the ActNorms (its own and the coupling network's) on `y`.

        Returns `inverse(y)` after initialization.
        """
        if self._is_view:
            raise variables.read_only(self.name)
        y = tf.convert_to_tensor(y, dtype=self.dtype, name="y")
        check_image(y, self._config.channels, self.name)
        new, x = flow_step.initialize(variables.read(self.params), y, self._config)
        self.clear_cache()
        with tf.control_dependencies(variables.assign(self.params, new)):
            return tf.identity(x)


def _mixing(config: flow_step.StepConfig, params: dict, validate_args: bool) -> GlowBijector:
    """The step's channel mixing: the 1x1 convolution (LU or plain) or a fixed permutation."""
    if config.permutation != "conv1x1":
        return ChannelPermutation(
            config.channels, validate_args=validate_args, params=params, name=config.permutation
        )
    conv = InvertibleConv1x1 if config.lu_decomposed else PlainInvertibleConv1x1
    return conv(
        config.channels, dtype=config.dtype, validate_args=validate_args, params=params, name="conv1x1"
    )
