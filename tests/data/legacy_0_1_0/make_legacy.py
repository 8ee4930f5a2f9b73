"""Writes the files of tfp-glow 0.1.0 (before the functional core) that later versions must load."""

import os
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

import tfp_glow
from tfp_glow import data

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
images, labels = data.load_numpy("digits", "train", with_labels=True)
images, labels = images[:256], labels[:256]
test = data.load_numpy("digits", "test")[:8]
test_labels = data.load_numpy("digits", "test", with_labels=True)[1][:8]
tf.keras.utils.set_random_seed(0)
expected = {}
specs = {
    "digits_tiny": dict(kwargs=dict(num_levels=2, num_steps=2, hidden_channels=8, seed=0), fit_labels=False),
    "conditional_tiny": dict(
        kwargs=dict(
            num_levels=2,
            num_steps=3,
            hidden_channels=8,
            seed=1,
            num_classes=10,
            conditional_split_priors=True,
            class_loss_weight=0.1,
            lu_decomposed=False,
            coupling="additive",
            dequantization="uniform",
            dropout=0.0,
        ),
        fit_labels=True,
    ),
}
for name, spec in specs.items():
    model = tfp_glow.GlowModel.from_preset("digits", **spec["kwargs"])
    model.compile(optimizer=tfp_glow.default_optimizer(3e-3, warmup_steps=2, ema_momentum=0.9))
    if spec["fit_labels"]:
        model.fit(images, labels, batch_size=64, epochs=1, verbose=0)
    else:
        model.fit(images, batch_size=64, epochs=1, verbose=0)
    model.save(os.path.join(out, f"{name}.keras"))
    model.save_weights(os.path.join(out, f"{name}.weights.h5"))
    kw = {"labels": test_labels} if spec["fit_labels"] else {}
    expected[f"{name}/log_prob"] = model.log_prob(test, **kw).numpy()
    expected[f"{name}/latents"] = model.encode(test, **kw).numpy()
    expected[f"{name}/samples"] = model.sample(
        4, temperature=0.7, seed=1, **({"labels": 3} if spec["fit_labels"] else {})
    ).numpy()
    expected[f"{name}/iterations"] = np.asarray(model.optimizer.iterations.numpy())
    expected[f"{name}/num_weights"] = np.asarray(len(model.weights))
np.savez(os.path.join(out, "expected.npz"), images=test, labels=test_labels, **expected)
print(sorted(os.listdir(out)))
