"""The small networks that Glow's bijectors own: their variables, calling `tfp_glow.functional`."""

from tfp_glow.networks.class_projection import ClassProjection
from tfp_glow.networks.conv import Conv2D, ZeroConv2D
from tfp_glow.networks.coupling_network import CouplingNetwork

__all__ = ["ClassProjection", "Conv2D", "CouplingNetwork", "ZeroConv2D"]
