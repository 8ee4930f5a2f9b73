"""Keras 3 models built on the Glow bijector, their presets and applications."""

from tfp_glow.models.glow_model import GlowModel
from tfp_glow.models.presets import (
    PAPER_LEARNING_RATE,
    PRESETS,
    Preset,
    get_preset,
    preset_config,
    preset_for_dataset,
)
from tfp_glow.models.schedules import LinearWarmup, default_optimizer

__all__ = [
    "GlowModel",
    "LinearWarmup",
    "PAPER_LEARNING_RATE",
    "PRESETS",
    "Preset",
    "default_optimizer",
    "get_preset",
    "preset_config",
    "preset_for_dataset",
]
