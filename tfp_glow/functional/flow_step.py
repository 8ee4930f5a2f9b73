"""One step of flow as pure functions (Kingma & Dhariwal 2018, Figure 2), forward = generative.

    inverse (encoding):    actnorm -> invertible 1x1 convolution (or fixed permutation) -> coupling
    forward (generative):  the three inverses in the opposite order

The log-det is the sum of the three, computed in the same pass. Parameters, a nest with any
leading axes (a level's stacked steps [K, ...]):

    {"actnorm": {loc, log_scale, initialized},
     "permutation": {permutation, sign_s, lower, upper, log_s} | {weight} | {permutation} (fixed order),
     "coupling": {"conditioner": coupling network parameters}}

`weights(params, config, H, W)` is the work on the parameters alone (the LU product and its
inverse, ActNorm scales, the conditioner's folded kernels and border maps); `forward` and
`inverse` use its result, so a level computes it once for its K steps.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from tfp_glow._checks import check_dropout, check_int, spatial_shape
from tfp_glow.functional import actnorm, conv, coupling, coupling_network, invertible_conv, permutation

__all__ = [
    "COUPLINGS",
    "PERMUTATIONS",
    "StepConfig",
    "dropout_salt",
    "forward",
    "init_params",
    "initialize",
    "inverse",
    "weights",
]

COUPLINGS = ("affine", "additive")
PERMUTATIONS = ("conv1x1", "reverse", "shuffle")


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """The static configuration of a step of flow (what is not a parameter).

    Attributes:
      channels: C >= 2.
      hidden_channels: width of the coupling's conditioner.
      coupling: `'affine'` or `'additive'`.
      permutation: `'conv1x1'` (the invertible 1x1 convolution), `'reverse'` or `'shuffle'`.
      lu_decomposed: the LU form of the 1x1 convolution.
      scale_fn: the coupling's scale, `'sigmoid'` or `'exp'`.
      log_scale_bound: B of the `'exp'` scale.
      dropout: dropout rate of the conditioner's hidden units, given a dropout seed.
      dtype: dtype of the parameters.
      compute_dtype: dtype the conditioner network computes in (mixed precision: 'bfloat16' or
        'float16'); `None` for the parameters' own. Everything else of the step (ActNorm, the
        1x1 convolution, the coupling's scale and shift, every log-det) stays in `dtype`.
    """

    channels: int
    hidden_channels: int = 512
    coupling: str = "affine"
    permutation: str = "conv1x1"
    lu_decomposed: bool = True
    scale_fn: str = "sigmoid"
    log_scale_bound: float = 3.0
    dropout: float = 0.0
    dtype: tf.DType = tf.float32
    compute_dtype: str | None = None

    def __post_init__(self):
        check_int(self.channels, "channels", minimum=2, why=" (the coupling splits them in halves)")
        check_int(self.hidden_channels, "hidden_channels")
        check_dropout(self.dropout)
        if self.coupling not in COUPLINGS:
            raise ValueError(f"`coupling` must be one of {COUPLINGS}. Received: coupling={self.coupling!r}")
        if self.permutation not in PERMUTATIONS:
            raise ValueError(
                f"`permutation` must be one of {PERMUTATIONS}. Received: permutation={self.permutation!r}"
            )
        if self.scale_fn not in coupling.SCALE_FNS:
            raise ValueError(
                f"`scale_fn` must be one of {coupling.SCALE_FNS}. Received: scale_fn={self.scale_fn!r}"
            )

    @property
    def channels_a(self) -> int:
        """C // 2, the channels the coupling's conditioner reads."""
        return self.channels // 2

    @property
    def additive(self) -> bool:
        return self.coupling == "additive"

    @property
    def conditioner_channels(self) -> tuple[int, int]:
        """(input, output) channels of the conditioner: t, and h unless additive, for C - C // 2."""
        channels_b = self.channels - self.channels_a
        return self.channels_a, channels_b if self.additive else 2 * channels_b


def _seeds(seed: int | None) -> tuple[int | None, int | None]:
    """Seeds of the 1x1 convolution (or channel order) and of the coupling's conditioner."""
    return (None, None) if seed is None else (seed, seed + 7919)


def dropout_salt(seed: int | None) -> int:
    """The conditioner's dropout salt of the step made from `seed`: its own seed, or 0."""
    return _seeds(seed)[1] or 0


def permutation_init_params(config: StepConfig, seed: int | None) -> dict:
    """Initial parameters of the step's channel mixing."""
    if config.permutation != "conv1x1":
        return permutation.init_params(config.channels, config.permutation, seed)
    if config.lu_decomposed:
        return invertible_conv.lu_init_params(config.channels, seed, config.dtype)
    return invertible_conv.plain_init_params(config.channels, seed, config.dtype)


def init_params(config: StepConfig, seed: int | None = None) -> dict:
    """Initial parameters: identity ActNorm, a random rotation, an identity coupling."""
    mixing_seed, conditioner_seed = _seeds(seed)
    in_channels, out_channels = config.conditioner_channels
    return {
        "actnorm": actnorm.init_params(config.channels, config.dtype),
        "permutation": permutation_init_params(config, mixing_seed),
        "coupling": {
            "conditioner": coupling_network.init_params(
                in_channels, out_channels, config.hidden_channels, conditioner_seed, config.dtype
            )
        },
    }


def permutation_weights(params: dict, config: StepConfig) -> dict:
    if config.permutation != "conv1x1":
        return permutation.weights(params)
    return (
        invertible_conv.lu_weights(params) if config.lu_decomposed else invertible_conv.plain_weights(params)
    )


def weights(
    params: dict, config: StepConfig, height: int | tf.Tensor, width: int | tf.Tensor, dropout_salt=0
) -> dict:
    """What the step's maps use, from the parameters alone, for activations of size H x W."""
    return {
        "actnorm": actnorm.weights(params["actnorm"]),
        "permutation": permutation_weights(params["permutation"], config),
        "coupling": coupling_network.weights(params["coupling"]["conditioner"], height, width, dropout_salt),
    }


def _mixing(config: StepConfig):
    return permutation if config.permutation != "conv1x1" else invertible_conv


def _conditioner(weights, config: StepConfig, dropout_seed):
    return lambda x_a: conv.in_precision(
        coupling_network.apply, weights["coupling"], x_a, config.compute_dtype, config.dropout, dropout_seed
    )


def _coupling_options(config: StepConfig) -> dict:
    return dict(additive=config.additive, scale_fn=config.scale_fn, log_scale_bound=config.log_scale_bound)


def forward(
    weights: dict, x: tf.Tensor, config: StepConfig, dropout_seed: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """The generative map of the step: (y, log|det J_forward|)."""
    x, log_det_coupling = coupling.forward(
        _conditioner(weights, config, dropout_seed), x, config.channels_a, **_coupling_options(config)
    )
    x, log_det_mixing = _mixing(config).forward(weights["permutation"], x)
    x, log_det_actnorm = actnorm.forward(weights["actnorm"], x)
    return x, log_det_coupling + log_det_mixing + log_det_actnorm


def inverse(
    weights: dict, y: tf.Tensor, config: StepConfig, dropout_seed: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """The encoding map of the step: (x, log|det J_inverse|)."""
    y, log_det_actnorm = actnorm.inverse(weights["actnorm"], y)
    y, log_det_mixing = _mixing(config).inverse(weights["permutation"], y)
    y, log_det_coupling = coupling.inverse(
        _conditioner(weights, config, dropout_seed), y, config.channels_a, **_coupling_options(config)
    )
    return y, log_det_actnorm + log_det_mixing + log_det_coupling


def initialize(params: dict, y: tf.Tensor, config: StepConfig) -> tuple[dict, tf.Tensor]:
    """(the parameters with every ActNorm initialized on the real activations of `y`, the step's
    encoding of `y` with them). ActNorms already initialized are kept."""
    params = {**params, "actnorm": actnorm.initialize(params["actnorm"], y)}
    x = actnorm.inverse(actnorm.weights(params["actnorm"]), y)[0]
    x = _mixing(config).inverse(permutation_weights(params["permutation"], config), x)[0]
    conditioner = coupling_network.initialize(
        params["coupling"]["conditioner"], coupling.split_channels(x, config.channels_a)[0]
    )
    params = {**params, "coupling": {**params["coupling"], "conditioner": conditioner}}
    conditioner_weights = coupling_network.weights(conditioner, *spatial_shape(x))
    x = coupling.inverse(
        lambda x_a: coupling_network.apply(conditioner_weights, x_a),
        x,
        config.channels_a,
        **_coupling_options(config),
    )[0]
    return params, x
