"""Files written by tfp-glow 0.1.0 load and give the same results (see tests/data/legacy_0_1_0/)."""

from __future__ import annotations

import os
import shutil

import keras
import numpy as np
import pytest

import tfp_glow
from tfp_glow import resume

LEGACY = os.path.join(os.path.dirname(__file__), "data", "legacy_0_1_0")


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(os.path.join(LEGACY, "expected.npz")))


@pytest.mark.parametrize("name", ["digits_tiny", "conditional_tiny"])
def test_a_keras_file_of_0_1_0_loads_with_the_same_outputs(name, expected):
    model = keras.models.load_model(os.path.join(LEGACY, f"{name}.keras"))
    conditional = model.num_classes is not None
    labels = {"labels": expected["labels"]} if conditional else {}
    np.testing.assert_allclose(
        model.log_prob(expected["images"], **labels).numpy(), expected[f"{name}/log_prob"], rtol=1e-5
    )
    np.testing.assert_allclose(
        model.encode(expected["images"], **labels).numpy(), expected[f"{name}/latents"], atol=1e-5
    )
    samples = model.sample(4, temperature=0.7, seed=1, **({"labels": 3} if conditional else {})).numpy()
    np.testing.assert_array_equal(samples, expected[f"{name}/samples"])
    # The optimizer state came back too: the step counter goes on from where it was saved.
    assert int(model.optimizer.iterations.numpy()) == int(expected[f"{name}/iterations"]) > 0


def test_a_resume_state_of_0_1_0_restores_weights_and_optimizer(expected, tmp_path):
    directory = shutil.copytree(os.path.join(LEGACY, "run", "resume"), tmp_path / "resume")
    state = resume.load_state(str(directory))
    assert (state.epoch, state.batch) == (1, 0)
    config = {k: v for k, v in state.run["config"].items() if k not in ("trainable", "dtype")}
    model = tfp_glow.GlowModel(**config)
    model.compile(optimizer=tfp_glow.default_optimizer(4e-3, ema_momentum=0.995))
    resume.restore(model, str(directory), state)
    assert int(model.optimizer.iterations.numpy()) == int(expected["run/iterations"]) == 11
    np.testing.assert_allclose(
        model.log_prob(expected["images"]).numpy(), expected["run/log_prob"], rtol=1e-5
    )
