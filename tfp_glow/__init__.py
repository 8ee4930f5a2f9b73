"""tfp-glow: Glow (Kingma & Dhariwal, 2018) as TensorFlow Probability bijectors.

Direction convention, as `tfp.bijectors.Glow`: forward is generative (latent ->
image), inverse is encoding (image -> latent).
"""

from tfp_glow import data, functional
from tfp_glow.bijectors import (
    ActNorm,
    AffineCoupling,
    ChannelPermutation,
    Expand,
    FlowStep,
    Glow,
    InvertibleConv1x1,
    PlainInvertibleConv1x1,
    SplitPrior,
    Squeeze,  # noqa: F401 (deprecated, not exported: use Expand)
    StackedFlowSteps,
    TopPrior,
)
from tfp_glow.distributions import bits_per_dim, glow_distribution
from tfp_glow.export import export_saved_model
from tfp_glow.models import PRESETS, GlowModel, LinearWarmup, default_optimizer
from tfp_glow.networks import CouplingNetwork, ZeroConv2D
from tfp_glow.quantization import quantize, reduce_bits, to_unit_range

__version__ = "0.1.0"

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "ChannelPermutation",
    "CouplingNetwork",
    "Expand",
    "FlowStep",
    "Glow",
    "GlowModel",
    "LinearWarmup",
    "PRESETS",
    "InvertibleConv1x1",
    "PlainInvertibleConv1x1",
    "SplitPrior",
    "StackedFlowSteps",
    "TopPrior",
    "ZeroConv2D",
    "bits_per_dim",
    "data",
    "default_optimizer",
    "export_saved_model",
    "functional",
    "glow_distribution",
    "quantize",
    "reduce_bits",
    "to_unit_range",
]
