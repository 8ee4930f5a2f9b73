"""experiments/accelerator_check.py runs end to end (on the CPU, with a tiny model), so that it
is ready for an accelerator: every configuration measured, the JSON and the table written."""

from __future__ import annotations

import json

from experiments import accelerator_check


def test_the_accelerator_check_measures_every_configuration(tmp_path):
    argv = [
        f"--out_dir={tmp_path}",
        "--num_levels=1",
        "--num_steps=1",
        "--hidden_channels=4",
        "--image_shape=8,8,3",
        "--batch_size=4",
        "--steps=3",
    ]
    results = accelerator_check.main(argv)
    rows = results["training"]
    configurations = {(r["precision"], r["xla"], r["memory_efficient"], r["replicas"]) for r in rows}
    expected = {(p, x, m, 1) for p in ("fp32", "bf16") for x in (False, True) for m in (False, True)}
    assert expected | {("fp32", False, False, 1), ("bf16", False, False, 1)} == configurations
    assert all(r["images_per_second"] > 0 and r["step_ms"] > 0 for r in rows)
    # A GPU's allocator reports its peak; the CPU's has none to report ("n/a", not 0 MiB).
    on_cpu = results["device"] == "CPU (no GPU visible)"
    assert all((r["peak_memory_mib"] is None) == on_cpu for r in rows)
    assert results["xla_loss_equal"] and results["sampling_images_per_second"] > 0
    assert json.loads((tmp_path / "accelerator_check.json").read_text()) == json.loads(json.dumps(results))
    table = (tmp_path / "accelerator_check.md").read_text()
    assert table.count("\n| ") == len(rows) + 1  # the header and one row per measurement
