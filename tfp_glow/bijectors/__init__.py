"""Glow's components as TensorFlow Probability bijectors (forward = generative)."""

from tfp_glow.bijectors.actnorm import ActNorm
from tfp_glow.bijectors.coupling import AffineCoupling
from tfp_glow.bijectors.flow_step import FlowStep
from tfp_glow.bijectors.glow import Glow
from tfp_glow.bijectors.invertible_conv import InvertibleConv1x1
from tfp_glow.bijectors.permutation import ChannelPermutation
from tfp_glow.bijectors.split_prior import SplitPrior
from tfp_glow.bijectors.squeeze import Squeeze
from tfp_glow.bijectors.top_prior import TopPrior

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "ChannelPermutation",
    "FlowStep",
    "Glow",
    "InvertibleConv1x1",
    "SplitPrior",
    "Squeeze",
    "TopPrior",
]
