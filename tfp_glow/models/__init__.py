"""Keras 3 models built on the Glow bijector."""

from tfp_glow.models.glow_model import GlowModel
from tfp_glow.models.presets import EMA_MOMENTA, LEARNING_RATES, PAPER_LEARNING_RATE, PRESETS, preset_config
from tfp_glow.models.schedules import LinearWarmup, default_optimizer

__all__ = [
    "EMA_MOMENTA",
    "GlowModel",
    "LEARNING_RATES",
    "LinearWarmup",
    "PAPER_LEARNING_RATE",
    "PRESETS",
    "default_optimizer",
    "preset_config",
]
