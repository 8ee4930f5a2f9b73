"""The paper's Table 2 (test bits/dim): CIFAR-10 3.35, ImageNet 32x32 4.09, ImageNet 64x64 3.81.

    python -m experiments.table2 --presets=cifar10 [--model_dir=glow_runs/table2] [--epochs=N] [--dry_run]

For accelerators: trains `tfp-glow train` once per preset with the paper's model and the
reference code's training setup, then prints the measured test bits/dim next to the
paper's. The data comes from TensorFlow Datasets and is downloaded on first use (no
download on the build machines; `--dry_run` checks everything else there: it builds each
model, counts its parameters and prints the command it would run).

| preset | data (TFDS) | test split | model (paper, Table 2 / reference README) |
|---|---|---|---|
| cifar10 | cifar10 | test | L=3, K=32, width 512, affine, 1x1 conv (LU), learned top prior |
| imagenet32 | downsampled_imagenet/32x32 | validation | L=3, K=48, width 512, affine, 1x1 conv |
| imagenet64 | downsampled_imagenet/64x64 | validation | L=4, K=48, width 512, affine, 1x1 conv |

Training as the reference code's commands for these results (`mpiexec -n 8 python train.py
... --flow_permutation 2 --flow_coupling 1 --learntop --lr 0.001 --n_bits_x 8`): 8-bit
images, Adamax with lr 1e-3 and a linear warm-up (the reference warms up over 10 epochs of
50,000 images), 64 images per replica (`--strategy=mirrored` over every local GPU),
Polyak averaging of the weights. `downsampled_imagenet` is the van den Oord et al. (2016)
version of ImageNet the paper used (`imagenet-oord`); `--dataset` can point elsewhere
(`tfds:imagenet_resized/32x32`, a different downsampling, gives figures that are not
comparable). The paper gives no epoch count (the reference trains until stopped): the
default --epochs below are a budget, not the paper's; the figures are reached after days
on 8 GPUs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of Table 2: the preset, its data and the paper's test bits/dim."""

    preset: str
    dataset: str
    test_split: str
    expected_bits_per_dim: float
    default_epochs: int
    train_images: int


ROWS = {
    "cifar10": Row("cifar10", "tfds:cifar10", "test", 3.35, 1000, 50_000),
    "imagenet32": Row("imagenet32", "tfds:downsampled_imagenet/32x32", "validation", 4.09, 60, 1_281_149),
    "imagenet64": Row("imagenet64", "tfds:downsampled_imagenet/64x64", "validation", 3.81, 30, 1_281_149),
}
# The reference README's Table 2 commands: --flow_coupling 1 (affine), --flow_permutation 2 (1x1 conv).
PAPER_MODEL = dict(coupling="affine", permutation="conv1x1", learn_top_prior=True, n_bits=8)
WARMUP_IMAGES = 10 * 50_000  # the reference's 10 warm-up epochs of n_train = 50,000 images


def train_command(row: Row, args, replicas: int) -> list[str]:
    """The `tfp-glow train` command line of one row."""
    epochs = args.epochs if args.epochs is not None else row.default_epochs
    batch_size = args.batch_size_per_replica * replicas
    return [
        "tfp-glow",
        "train",
        f"--dataset={args.dataset or row.dataset}",
        f"--preset={row.preset}",
        f"--model_dir={os.path.join(args.model_dir, row.preset)}",
        f"--epochs={epochs}",
        f"--batch_size={batch_size}",
        "--optimizer=adamax",
        "--learning_rate=1e-3",
        f"--warmup_steps={WARMUP_IMAGES // batch_size}",
        "--strategy=mirrored",
        "--validation_split=",
        f"--test_split={row.test_split}",
        *([f"--data_dir={args.data_dir}"] if args.data_dir else []),
        *(["--memory_efficient"] if args.memory_efficient else []),
        "--verbose=2",
    ]


def check_model(row: Row) -> int:
    """Builds the row's GlowModel (nothing trained) and returns its number of trainable parameters."""
    import numpy as np

    import tfp_glow

    config = tfp_glow.models.preset_config(row.preset)
    for key, value in PAPER_MODEL.items():
        if config.get(key, value) != value:
            raise SystemExit(f"preset {row.preset!r} has {key}={config[key]!r}; Table 2 needs {value!r}")
    model = tfp_glow.GlowModel.from_preset(row.preset, **PAPER_MODEL)
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="cifar10,imagenet32,imagenet64", help="comma-separated rows")
    parser.add_argument("--model_dir", default="glow_runs/table2", help="one run folder per preset under it")
    parser.add_argument("--epochs", type=int, default=None, help="default: the row's budget (see the table)")
    parser.add_argument("--batch_size_per_replica", type=int, default=64)
    parser.add_argument("--dataset", default=None, help="override the row's TFDS dataset spec")
    parser.add_argument("--data_dir", default=None, help="TFDS data directory")
    parser.add_argument("--memory_efficient", action="store_true", help="O(1) activation memory in depth")
    parser.add_argument("--dry_run", action="store_true", help="build the models and print the plan only")
    args = parser.parse_args()
    names = [name for name in args.presets.split(",") if name]
    unknown = [name for name in names if name not in ROWS]
    if unknown or not names:
        parser.error(f"--presets must name rows of {sorted(ROWS)}. Received: --presets={args.presets}")

    import tensorflow as tf
    import tensorflow_datasets as tfds

    replicas = max(len(tf.config.list_logical_devices("GPU")), 1)
    registered = set(tfds.list_builders())
    results = []
    for name in names:
        row = ROWS[name]
        command = train_command(row, args, replicas)
        parameters = check_model(row)
        builder = (args.dataset or row.dataset).removeprefix("tfds:").split("/")[0].split(":")[0]
        print(
            f"{name}: {parameters / 1e6:.1f} M parameters; data {args.dataset or row.dataset} "
            f"({'registered in TFDS' if builder in registered else 'NOT a TFDS builder'}; "
            f"{row.train_images:,} train images); {replicas} replica(s); paper: {row.expected_bits_per_dim}"
        )
        print("  " + " ".join(command))
        if args.dry_run:
            results.append((row, parameters, None, None))
            continue
        from tfp_glow import cli

        start = time.perf_counter()
        status = cli.main(command)
        if status != 0:
            raise SystemExit(f"{name}: tfp-glow train failed with status {status}")
        with open(os.path.join(args.model_dir, name, "metrics.json")) as f:
            metrics = json.load(f)
        results.append(
            (row, parameters, metrics["test_bits_per_dim_one_sample"], time.perf_counter() - start)
        )

    print("\n| dataset | paper test bits/dim | measured test bits/dim | parameters | train hours |")
    print("|---|---|---|---|---|")
    for row, parameters, measured, seconds in results:
        print(
            f"| {row.preset} | {row.expected_bits_per_dim:.2f} | "
            f"{'(dry run)' if measured is None else f'{measured:.3f}'} | {parameters / 1e6:.1f} M | "
            f"{'-' if seconds is None else f'{seconds / 3600:.1f}'} |"
        )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
