"""Linear probe: how linearly separable are the digit classes in Glow's latent space?

    python -m experiments.linear_probe [--model_dir=/tmp/glow_digits] [--epochs=20]

Loads the digits model in --model_dir (model.keras, as `tfp-glow train` writes it), or
trains one there first with `tfp-glow train --epochs=E` (unsupervised: no labels). Then
fits the same multinomial logistic regression (scikit-learn, standardized features) on
the digits train split, once on the raw pixels and once on the model's latents
z = f^{-1}(x) (`model.encode`, all levels, D = 64), and on the top level's latent alone;
prints the test accuracy of each as a Markdown table for experiments/RESULTS.md.

The flow is a bijection, so the latents hold exactly the information of the pixels: a
probe can only gain from a representation that makes the classes more linear.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def trained_digits_model(model_dir: str, epochs: int, seed: int = 0):
    """The GlowModel of `model_dir`/model.keras, trained there by `tfp-glow train` if missing."""
    import keras

    from tfp_glow import cli, training

    path = os.path.join(model_dir, training.MODEL_FILE)
    if not os.path.isfile(path):
        start = time.perf_counter()
        argv = ["tfp-glow", "train", f"--model_dir={model_dir}", f"--epochs={epochs}", f"--seed={seed}"]
        status = cli.main([*argv, "--verbose=0"])
        if status != 0:
            raise SystemExit(f"{' '.join(argv)} failed with status {status}")
        print(f"trained: {' '.join(argv)} ({time.perf_counter() - start:.0f} s)")
    return keras.models.load_model(path)


def probe_accuracy(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
    """Test accuracy of a standardized multinomial logistic regression fitted on the train set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    probe.fit(train_x.reshape(len(train_x), -1), train_y)
    return float(probe.score(test_x.reshape(len(test_x), -1), test_y))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", default="/tmp/glow_digits", help="run folder with model.keras")
    parser.add_argument("--epochs", type=int, default=20, help="epochs if the model must be trained")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np

    from tfp_glow import data

    model = trained_digits_model(args.model_dir, args.epochs, args.seed)
    train_x, train_y = data.load_numpy("digits", "train", with_labels=True)
    test_x, test_y = data.load_numpy("digits", "test", with_labels=True)
    z_train, z_test = model.encode(train_x).numpy(), model.encode(test_x).numpy()
    top = lambda z: model.bijector.split_latent(z)[-1].numpy()  # noqa: E731
    features = {
        "raw pixels": (train_x.astype(np.float32), test_x.astype(np.float32)),
        "Glow latents, all levels": (z_train, z_test),
        "Glow latent, top level only": (top(z_train), top(z_test)),
    }
    print(
        f"model: {args.model_dir}, test bits/dim {float(np.mean(model.score(test_x))):.3f}; "
        f"probe trained on {len(train_x)} digits, tested on {len(test_x)}"
    )
    print("| features | dimensions | test accuracy |")
    print("|---|---|---|")
    for name, (train_f, test_f) in features.items():
        accuracy = probe_accuracy(train_f, train_y, test_f, test_y, args.seed)
        print(f"| {name} | {int(np.prod(train_f.shape[1:]))} | {accuracy:.3f} |")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
