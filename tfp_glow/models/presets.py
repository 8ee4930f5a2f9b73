"""Named configurations: the paper's models and a small one for CPUs, each with its training defaults.

A preset is the architecture of a `GlowModel` (`Preset.model`) and how `tfp_glow.training.train`
trains it when the `TrainConfig` does not say otherwise: learning rate, moving-average decay,
epochs or time limit, importance samples of the final evaluation, threads per op, validation
split. `GlowModel.from_preset(name)` builds the architecture; `TrainConfig(preset=name)` also takes
the training defaults.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping

__all__ = ["PAPER_LEARNING_RATE", "PRESETS", "Preset", "get_preset", "preset_config", "preset_for_dataset"]

# Paper (Kingma & Dhariwal 2018, Table 2 and Appendix): Adam, lr 1e-3 after a linear warm-up.
PAPER_LEARNING_RATE = 1e-3


@dataclasses.dataclass(frozen=True)
class Preset:
    """A model architecture and its training defaults.

    Attributes:
      name: the preset's name.
      model: `GlowModel` constructor arguments (the image shape is the data's at training time).
      dataset: the dataset spec the preset is made for (`tfp_glow.data`), or `None`.
      learning_rate: the rate after the linear warm-up.
      ema_momentum: decay of the weights' moving average that validation, checkpoints and samples
        use; `None` for none.
      epochs: training epochs (at most, with a time limit).
      time_limit: seconds within which a run without explicit epochs ends (`None`: no limit).
      iw_samples: importance samples of the final discrete bits/dim (0: skipped).
      intra_op_threads: threads per TensorFlow op in training (0: TensorFlow's default).
      train_split: the split a run on the preset's own dataset trains on.
      validation_split: the split that picks the best epoch (`None`: the last epoch is the model).
    """

    name: str
    model: Mapping
    dataset: str | None = None
    learning_rate: float = PAPER_LEARNING_RATE
    ema_momentum: float | None = 0.99
    epochs: int = 50
    time_limit: float | None = None
    iw_samples: int = 0
    intra_op_threads: int = 0
    train_split: str = "train"
    validation_split: str | None = None


def _architecture(**arguments) -> Mapping:
    """A preset's GlowModel arguments, read-only (a preset is shared by every run)."""
    return types.MappingProxyType(arguments)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        # scikit-learn's 8x8 digits, 17 grey levels: small enough to train in minutes on a CPU. With
        # 1,500 images to train on overfitting is the enemy: dropout, a learned dequantization, a long
        # weight average, and the validation images trained on too (200 more images gain more than
        # a judge of the best epoch does). Trained for as many of 300 epochs as fit in 255 s, so that
        # the whole default run (imports and final evaluation included) takes at most 5 minutes on 2
        # CPU cores; its ops are too small to split over two threads, and running independent ops side
        # by side instead is faster (experiments/RESULTS.md for both).
        Preset(
            "digits",
            _architecture(
                image_shape=(8, 8, 1),
                num_levels=2,
                num_steps=8,
                hidden_channels=96,
                num_bins=17,
                learn_top_prior=True,
                dequantization="variational",
                dropout=0.5,
            ),
            dataset="digits",
            learning_rate=4e-3,
            ema_momentum=0.995,
            epochs=300,
            time_limit=255.0,
            iw_samples=64,
            intra_op_threads=1,
            train_split="train+validation",
        ),
        Preset(
            "mnist",
            _architecture(image_shape=(28, 28, 1), num_levels=2, num_steps=16, hidden_channels=128, n_bits=8),
            dataset="tfds:mnist",
        ),
        Preset(
            "cifar10",
            _architecture(image_shape=(32, 32, 3), num_levels=3, num_steps=32, hidden_channels=512, n_bits=8),
            dataset="tfds:cifar10",
        ),
        Preset(
            "celeba64",
            _architecture(
                image_shape=(64, 64, 3),
                num_levels=4,
                num_steps=32,
                hidden_channels=512,
                n_bits=5,
                coupling="additive",
            ),
            dataset="tfds:celeb_a",
        ),
        Preset(
            "imagenet32",
            _architecture(image_shape=(32, 32, 3), num_levels=3, num_steps=48, hidden_channels=512, n_bits=8),
            dataset="tfds:imagenet_resized/32x32",
        ),
        Preset(
            "imagenet64",
            _architecture(image_shape=(64, 64, 3), num_levels=4, num_steps=48, hidden_channels=512, n_bits=8),
            dataset="tfds:imagenet_resized/64x64",
        ),
    ]
}


def get_preset(name: str) -> Preset:
    """The preset `name`, or a ValueError naming the presets there are."""
    if name not in PRESETS:
        raise ValueError(
            f"Unknown preset {name!r}. Expected one of {sorted(PRESETS)}. Received: name={name!r}"
        )
    return PRESETS[name]


def preset_config(name: str, **overrides) -> dict:
    """The `GlowModel` arguments of preset `name`, updated with `overrides`."""
    return {**get_preset(name).model, **overrides}


def preset_for_dataset(spec: str) -> Preset | None:
    """The preset made for the dataset `spec` (`tfds:mnist` -> mnist), or `None` where there is none.

    A TFDS spec matches with `:` or `/` before its config, and with anything after what the
    preset names (a version).
    """
    parts = spec.strip().replace(":", "/").split("/")
    for preset in PRESETS.values():
        wanted = (preset.dataset or "").replace(":", "/").split("/")
        if preset.dataset and parts[: len(wanted)] == wanted:
            return preset
    return None
