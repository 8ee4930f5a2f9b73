"""Prints the README's table of GlowModel presets with their parameter counts.

    python experiments/preset_table.py

Each preset is built (weights created, nothing trained) and its trainable scalars
counted, so the table is measured, not computed by hand.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfp_glow  # noqa: E402


def main() -> None:
    print("| preset | image | levels L | steps K | width | coupling | input levels | parameters |")
    print("|---|---|---|---|---|---|---|---|")
    for name, preset in tfp_glow.PRESETS.items():
        config = preset.model
        model = tfp_glow.GlowModel.from_preset(name)
        count = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
        levels = f"{config['num_bins']}" if config.get("num_bins") else f"{config.get('n_bits', 8)}-bit"
        h, w, c = config["image_shape"]
        print(
            f"| `{name}` | {h}x{w}x{c} | {config['num_levels']} | {config['num_steps']} | "
            f"{config['hidden_channels']} | {config.get('coupling', 'affine')} | {levels} | "
            f"{count / 1e6:.2f} M |"
        )
        del model


if __name__ == "__main__":
    main()
