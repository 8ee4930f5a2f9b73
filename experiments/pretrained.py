"""Makes the pretrained digits model that ships in `tfp_glow/pretrained/`.

    python experiments/pretrained.py [--model_dir=/tmp/pretrained_digits]

Runs the README's main job, `tfp-glow train` with its defaults (the digits preset on scikit-learn's
digits), into `--model_dir` unless a finished run is already there, then writes

  tfp_glow/pretrained/digits.weights.h5  the best epoch's weights (the moving average the run
                                         validates with), no optimizer state
  tfp_glow/pretrained/digits.json        the model's configuration, the run's test figures and
                                         those `tfp-glow evaluate --pretrained=digits
                                         --iw_samples=64` prints, its epochs and wall time, the
                                         machine and the versions

and prints the run folder's size on disk. `GlowModel.from_preset("digits", pretrained=True)` and
`tfp-glow VERB --pretrained=digits` load the files; `tfp-glow evaluate --pretrained=digits
--iw_samples=64` reproduces the figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tfp_glow", "pretrained")
# GlowModel.get_config keys of Keras itself, not arguments of the architecture.
KERAS_KEYS = ("name", "trainable", "dtype")


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    flags = open("/proc/cpuinfo").read()
    return f"{names[0] if names else platform.processor()}, {os.cpu_count()} cores, " + (
        "AVX-512" if "avx512f" in flags else "no AVX-512"
    )


def folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(path) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", default="/tmp/pretrained_digits")
    args = parser.parse_args()
    metrics_path = os.path.join(args.model_dir, "metrics.json")
    wall = None
    if not os.path.isfile(metrics_path):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "tfp_glow.cli", "train", f"--model_dir={args.model_dir}", "--verbose=2"],
            check=True,
        )
        wall = time.perf_counter() - start
    with open(metrics_path) as f:
        metrics = json.load(f)

    import keras
    import tensorflow as tf

    import tfp_glow  # noqa: F401 - registers GlowModel with Keras

    model = keras.models.load_model(os.path.join(args.model_dir, "model.keras"))
    config = {k: v for k, v in model.get_config().items() if k not in KERAS_KEYS}
    weights = os.path.join(FOLDER, "digits.weights.h5")
    model.save_weights(weights)
    record = {
        "config": config,
        "figures": {
            "test_bits_per_dim_one_sample": metrics["test_bits_per_dim_one_sample"],
            "test_bits_per_dim_importance_sampled": metrics["test_bits_per_dim_importance_sampled"],
            "iw_samples": metrics["iw_samples"],
        },
        "epochs": metrics["epochs"],
        "best_epoch": metrics["best_epoch"],
        "command": "tfp-glow train",
        "wall_seconds": wall if wall is not None else metrics["wall_seconds"],
        "date": datetime.date.today().isoformat(),
        "machine": cpu_model(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    with open(os.path.join(FOLDER, "digits.json"), "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    # What a user gets from the shipped files (the README states it): the same model, evaluated
    # in batches of 256 rather than the run's 64, so other noise draws than the run's figures.
    evaluated = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfp_glow.cli",
            "evaluate",
            "--pretrained=digits",
            "--iw_samples=64",
            "--verbose=0",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    record["figures"]["evaluate"] = {
        line.split(": ")[0]: float(line.split(": ")[1]) for line in evaluated.strip().splitlines()[-2:]
    }
    with open(os.path.join(FOLDER, "digits.json"), "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(json.dumps(record["figures"]))
    print(
        f"epochs {record['epochs']} (best {record['best_epoch']}), {record['wall_seconds']:.0f} s, "
        f"{record['machine']}; weights {os.path.getsize(weights) / 1e6:.2f} MB; "
        f"run folder {folder_size(args.model_dir) / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    main()
