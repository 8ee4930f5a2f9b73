"""FlowStep: one step of flow, ActNorm -> invertible 1x1 conv -> affine coupling."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow.bijectors._base import GlowBijector
from tfp_glow.bijectors.actnorm import ActNorm
from tfp_glow.bijectors.coupling import AffineCoupling
from tfp_glow.bijectors.invertible_conv import InvertibleConv1x1
from tfp_glow.bijectors.permutation import ChannelPermutation

__all__ = ["FlowStep", "COUPLINGS", "PERMUTATIONS"]

COUPLINGS = ("affine", "additive")
PERMUTATIONS = ("conv1x1", "reverse", "shuffle")


class FlowStep(GlowBijector):
    """One step of flow of Glow [1] on images [..., H, W, C].

    Inverse (encoding, image side -> latent), the order of the paper's Figure 2:

        actnorm -> invertible 1x1 convolution (or fixed permutation) -> coupling

    Forward (generative) runs the three inverses in the opposite order, so this is
    `tfb.Chain([actnorm, permutation, coupling])`. The log-det is the sum of the
    three, computed in the same pass.

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
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: for an unknown `coupling` or `permutation`.
        """
        parameters = dict(locals())
        if coupling not in COUPLINGS:
            raise ValueError(f"`coupling` must be one of {COUPLINGS}. Received: coupling={coupling!r}")
        if permutation not in PERMUTATIONS:
            raise ValueError(
                f"`permutation` must be one of {PERMUTATIONS}. Received: permutation={permutation!r}"
            )
        seeds = [None, None] if seed is None else [seed, seed + 7919]
        with tf.name_scope(name) as name:
            self.actnorm = ActNorm(channels, dtype=dtype, validate_args=validate_args, name="actnorm")
            if permutation == "conv1x1":
                self.permutation = InvertibleConv1x1(
                    channels,
                    lu_decomposed,
                    seed=seeds[0],
                    dtype=dtype,
                    validate_args=validate_args,
                    name="conv1x1",
                )
            else:
                self.permutation = ChannelPermutation(
                    channels,
                    kind=permutation,
                    seed=seeds[0],
                    validate_args=validate_args,
                    name=permutation,
                )
            self.coupling = AffineCoupling(
                channels,
                hidden_channels,
                additive=coupling == "additive",
                scale_fn=scale_fn,
                seed=seeds[1],
                dropout=dropout,
                dtype=dtype,
                validate_args=validate_args,
                name="coupling",
            )
            super().__init__(
                forward_min_event_ndims=3,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=name,
            )

    def _forward_and_log_det(self, x, **conditioning):
        x, ldj_coupling = self.coupling.forward_and_log_det(x, **conditioning)
        x, ldj_permutation = self.permutation.forward_and_log_det(x)
        x, ldj_actnorm = self.actnorm.forward_and_log_det(x)
        return x, ldj_coupling + ldj_permutation + ldj_actnorm

    def _inverse_and_log_det(self, y, **conditioning):
        y, ldj_actnorm = self.actnorm.inverse_and_log_det(y)
        y, ldj_permutation = self.permutation.inverse_and_log_det(y)
        y, ldj_coupling = self.coupling.inverse_and_log_det(y, **conditioning)
        return y, ldj_actnorm + ldj_permutation + ldj_coupling

    def initialize(self, y: tf.Tensor, **conditioning) -> tf.Tensor:
        """Initializes the ActNorms (its own and the coupling network's) on `y`.

        Returns `inverse(y)` after initialization.
        """
        y = self.actnorm.initialize(y)
        y = self.permutation.inverse_and_log_det(y)[0]
        self._cache.clear()
        return self.coupling.initialize(y, **conditioning)
