"""Named configurations of GlowModel: the paper's models and small ones for CPUs."""

from __future__ import annotations

__all__ = ["EMA_MOMENTA", "LEARNING_RATES", "PAPER_LEARNING_RATE", "PRESETS", "preset_config"]

# Paper (Kingma & Dhariwal 2018, Table 2 and Appendix): CIFAR-10 L=3, K=32, width 512,
# affine; ImageNet 32x32 L=3, K=48; ImageNet 64x64 L=4, K=48; CelebA-HQ 5-bit, additive.
PRESETS: dict[str, dict] = {
    # scikit-learn's 8x8 digits, 17 grey levels: small enough to train in minutes on a CPU.
    # With 1,300 training images overfitting is the enemy: dropout, and a learned dequantization
    # (experiments/RESULTS.md, the default run).
    "digits": dict(
        image_shape=(8, 8, 1),
        num_levels=2,
        num_steps=8,
        hidden_channels=96,
        num_bins=17,
        learn_top_prior=True,
        dequantization="variational",
        dropout=0.5,
    ),
    "mnist": dict(image_shape=(28, 28, 1), num_levels=2, num_steps=16, hidden_channels=128, n_bits=8),
    "cifar10": dict(image_shape=(32, 32, 3), num_levels=3, num_steps=32, hidden_channels=512, n_bits=8),
    "celeba64": dict(
        image_shape=(64, 64, 3),
        num_levels=4,
        num_steps=32,
        hidden_channels=512,
        n_bits=5,
        coupling="additive",
    ),
    "imagenet32": dict(image_shape=(32, 32, 3), num_levels=3, num_steps=48, hidden_channels=512, n_bits=8),
    "imagenet64": dict(image_shape=(64, 64, 3), num_levels=4, num_steps=48, hidden_channels=512, n_bits=8),
}


PAPER_LEARNING_RATE = 1e-3
# Learning rates of `tfp-glow train` where a preset trains best with another than the paper's
# (measured in experiments/RESULTS.md: digits in its 5-minute budget).
LEARNING_RATES: dict[str, float] = {"digits": 4e-3}
# Decay of the weights' moving average in `tfp-glow train` where a preset trains best with another
# than the CLI's default (0.99): digits' long time-limited runs (140-250 epochs on 2 cores) gain from
# a longer average.
EMA_MOMENTA: dict[str, float] = {"digits": 0.995}


def preset_config(name: str, **overrides) -> dict:
    """The constructor arguments of preset `name`, updated with `overrides`."""
    if name not in PRESETS:
        raise ValueError(
            f"Unknown preset {name!r}. Expected one of {sorted(PRESETS)}. Received: name={name!r}"
        )
    config = dict(PRESETS[name])
    config.update(overrides)
    return config
