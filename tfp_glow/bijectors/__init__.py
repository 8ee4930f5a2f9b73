"""Glow's components as TensorFlow Probability bijectors (forward = generative).

Each bijector owns its variables and computes with the pure functions of
`tfp_glow.functional`; none of them trains, reads files or knows about Keras.
"""

from tfp_glow.bijectors.actnorm import ActNorm
from tfp_glow.bijectors.coupling import AffineCoupling
from tfp_glow.bijectors.flow_step import FlowStep
from tfp_glow.bijectors.glow import Glow
from tfp_glow.bijectors.invertible_conv import InvertibleConv1x1, PlainInvertibleConv1x1
from tfp_glow.bijectors.permutation import ChannelPermutation
from tfp_glow.bijectors.split_prior import SplitPrior
from tfp_glow.bijectors.squeeze import (
    Expand,
    Squeeze,  # noqa: F401 (deprecated, not exported: use Expand)
)
from tfp_glow.bijectors.stacked_flow_steps import StackedFlowSteps
from tfp_glow.bijectors.top_prior import TopPrior

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "ChannelPermutation",
    "Expand",
    "FlowStep",
    "Glow",
    "InvertibleConv1x1",
    "PlainInvertibleConv1x1",
    "SplitPrior",
    "StackedFlowSteps",
    "TopPrior",
]
