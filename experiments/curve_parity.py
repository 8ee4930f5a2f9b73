"""Same learning curve with and without XLA and memory-efficient gradients.

    python -m experiments.curve_parity [--epochs=10] [--out_dir=/tmp/curve_parity]

Trains the default digits run (`tfp-glow train`, same seed) four times: plain,
`--jit_compile`, `--memory_efficient`, and both, each with the validation split held out
(`--train_split=train --validation_split=validation`, as the default run trains on it too);
prints per-epoch train and validation bits/dim
of each as a Markdown table for experiments/RESULTS.md, and the largest difference from the
plain run. XLA and the recomputed backward pass change the order of floating-point operations,
so the curves may differ by round-off that training then carries along: "the same" means
differences far below the epoch-to-epoch change. (Not --deterministic: Keras turns XLA off under
op determinism.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = {
    "plain": [],
    "XLA": ["--jit_compile"],
    "memory-efficient": ["--memory_efficient"],
    "XLA + memory-efficient": ["--jit_compile", "--memory_efficient"],
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out_dir", default="/tmp/curve_parity")
    args = parser.parse_args()
    histories = {}
    for name, flags in CONFIGS.items():
        model_dir = os.path.join(args.out_dir, name.replace(" ", "").replace("+", "_"))
        command = [
            sys.executable,
            "-m",
            "tfp_glow.cli",
            "train",
            f"--model_dir={model_dir}",
            f"--epochs={args.epochs}",
            "--noresume",
            "--verbose=0",
            "--train_split=train",
            "--validation_split=validation",
            *flags,
        ]
        subprocess.run(command, check=True)
        with open(os.path.join(model_dir, "metrics.json")) as f:
            metrics = json.load(f)
        histories[name] = metrics["history"]
        print(f"{name}: test bits/dim {metrics['test_bits_per_dim_one_sample']:.4f}", flush=True)

    print("\n| epoch | " + " | ".join(f"{n} train / val" for n in CONFIGS) + " |")
    print("|---|" + "---|" * len(CONFIGS))
    for epoch in range(args.epochs):
        cells = [
            f"{h['bits_per_dim'][epoch]:.4f} / {h['val_bits_per_dim'][epoch]:.4f}" for h in histories.values()
        ]
        print(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    plain = histories["plain"]
    for name, history in histories.items():
        gap = max(
            abs(a - b)
            for key in ("bits_per_dim", "val_bits_per_dim")
            for a, b in zip(history[key], plain[key], strict=True)
        )
        print(f"largest difference from plain, {name}: {gap:.2e} bits/dim")
    change = min(
        abs(a - b) for a, b in zip(plain["bits_per_dim"][1:], plain["bits_per_dim"][:-1], strict=True)
    )
    print(f"smallest epoch-to-epoch change of the plain train curve: {change:.2e} bits/dim")


if __name__ == "__main__":
    main()
