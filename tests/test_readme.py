"""The README's TFP examples run as written."""

from __future__ import annotations

import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _block(containing: str) -> str:
    """The README's Python block that contains `containing`."""
    with open(README) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    matching = [block for block in blocks if containing in block]
    assert len(matching) == 1, f"{len(matching)} Python blocks of the README contain {containing!r}"
    return matching[0]


def test_composing_example_runs():
    namespace = {}
    exec(compile(_block("tfb.Chain("), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["log_prob"].shape == (64,)
    assert np.all(np.isfinite(namespace["bpd"].numpy()))
    assert namespace["samples"].shape == (16, 32, 32, 3)
    assert [tuple(z.shape[1:]) for z in namespace["latents"]] == [(16, 16, 6), (8, 8, 12), (4, 4, 48)]
    # The pure functions compute what the level's bijector computes.
    exec(compile(_block("scan.scan("), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    level, x = namespace["level"], namespace["x"]
    expected, expected_log_det = level.inverse_and_log_det(x)
    np.testing.assert_allclose(namespace["z"].numpy(), expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(namespace["log_det"].numpy(), expected_log_det.numpy(), rtol=1e-5)
