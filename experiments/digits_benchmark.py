"""The default `tfp-glow train` on digits against the per-pixel categorical baseline.

    python experiments/digits_benchmark.py [--model_dir=/tmp/digits_benchmark] [-- extra train flags]

Runs the README's main job exactly as a user would (a subprocess of the console
script, defaults only, unless extra flags follow `--`), times it from the outside,
reads its metrics.json and prints one Markdown table row for experiments/RESULTS.md
next to the baseline of experiments/digits_baseline.py on the same test split. Columns:
date, command, wall time, epochs (best), test bits/dim (one noise sample per image: the paper's
estimate with uniform noise, its variational bound with the digits preset's learned noise),
discrete test bits/dim (importance-sampled), per-pixel baseline, machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_dir", default="/tmp/digits_benchmark")
    parser.add_argument("extra", nargs="*", help="flags passed on to tfp-glow train (after --)")
    args = parser.parse_args()
    shutil.rmtree(args.model_dir, ignore_errors=True)
    command = ["tfp-glow", "train", f"--model_dir={args.model_dir}", "--verbose=0", *args.extra]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    with open(os.path.join(args.model_dir, "metrics.json")) as f:
        metrics = json.load(f)

    import tensorflow as tf

    from experiments.digits_baseline import per_pixel_bits_per_dim
    from tfp_glow import data

    baseline = per_pixel_bits_per_dim(
        data.load_numpy("digits", "train"), data.load_numpy("digits", "test"), data.info("digits").num_bins
    )
    flags = " ".join(args.extra) or "(defaults)"
    # The importance-sampled discrete likelihood (absent with --iw_samples=0 or from older runs).
    discrete = metrics.get("test_bits_per_dim_importance_sampled")
    discrete = "n/a" if discrete is None else f"{discrete:.3f} ({metrics['iw_samples']} samples)"
    print(
        f"| {time.strftime('%Y-%m-%d')} | `tfp-glow train {flags}` | {wall:.0f} s "
        f"| {metrics['epochs']} (best {metrics['best_epoch']}) "
        f"| {metrics['test_bits_per_dim_one_sample']:.3f} | {discrete} | {baseline:.3f} "
        f"| {platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__} |"
    )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
