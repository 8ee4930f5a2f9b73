"""The digits model that ships with the package: it loads offline and gives the README's figures."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import tfp_glow
from tfp_glow import cli, pretrained

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _readme_figures() -> list[str]:
    """The lines the README says `tfp-glow evaluate --pretrained=digits --iw_samples=64` prints."""
    with open(README) as f:
        text = f.read()
    block = re.search(r"<!-- pretrained-figures -->\n```\n(.*?)```", text, re.S)
    assert block, "the README's pretrained figures are missing"
    return block.group(1).strip().splitlines()


def test_the_pretrained_model_gives_the_figures_the_readme_states(capsys):
    assert cli.main(["tfp-glow", "evaluate", "--pretrained=digits", "--iw_samples=64", "--verbose=0"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-2:]
    assert printed == _readme_figures()
    # The figures the package records for it, as experiments/pretrained.py wrote them.
    recorded = pretrained.info("digits")["figures"]["evaluate"]
    assert [f"{name}: {value:.3f}" for name, value in recorded.items()] == printed


def test_the_pretrained_model_is_the_digits_preset_trained_for_inference():
    model = tfp_glow.GlowModel.from_preset("digits", pretrained=True)
    preset = tfp_glow.PRESETS["digits"].model
    config = model.get_config()
    assert all(config[k] == (list(v) if isinstance(v, tuple) else v) for k, v in preset.items())
    assert model.is_initialized() and not model.compiled
    assert os.path.getsize(pretrained.weights_path("digits")) <= 2 * 1024**2
    samples = model.sample(8, temperature=0.7, seed=1).numpy()
    assert samples.shape == (8, 8, 8, 1) and samples.max() <= 16
    np.testing.assert_array_equal(samples, model.sample(8, temperature=0.7, seed=1).numpy())


def test_a_pretrained_model_keeps_its_architecture():
    with pytest.raises(ValueError, match=r"keeps the architecture.*Received: \['num_steps'\]"):
        tfp_glow.GlowModel.from_preset("digits", pretrained=True, num_steps=2)
    with pytest.raises(ValueError, match=r"for \['digits'\] only. Received: name='mnist'"):
        tfp_glow.GlowModel.from_preset("mnist", pretrained=True)
