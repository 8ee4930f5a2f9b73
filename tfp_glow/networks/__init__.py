"""The small convolutional networks that Glow's bijectors own."""

from tfp_glow.networks.conv import Conv2D, ZeroConv2D
from tfp_glow.networks.coupling_network import CouplingNetwork

__all__ = ["Conv2D", "CouplingNetwork", "ZeroConv2D"]
