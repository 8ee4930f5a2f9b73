"""export_saved_model: TF Serving's layout, the four signatures, bad requests, `tfp-glow export`.

The SavedModel is loaded in a separate Python process that cannot import tfp_glow, TensorFlow
Probability or Keras, and with `saved_model_cli` (which loads it in a TF1 session, as TF Serving
does); both must give the in-process model's numbers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tfp_glow import cli, data
from tfp_glow.export import SIGNATURES, export_saved_model

TINY = dict(num_levels=2, num_steps=1, hidden_channels=8, seed=0)
SAMPLE = dict(num_samples=3, temperature=0.7, seed=5)
# A process where tfp_glow, TFP and Keras cannot be imported, not even by TensorFlow.
CLEAN_ENV = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
BLOCK_IMPORTS = (
    "import sys\n"
    "for name in ('tfp_glow', 'tensorflow_probability', 'keras', 'tf_keras'):\n"
    "    sys.modules[name] = None  # any import of them fails\n"
)


def _perturbed_model(images, **config):
    """A tiny model, initialized on `images`, with every trainable weight moved off its
    initial value (so couplings and priors are not the identity)."""
    model = tfp_glow.GlowModel.from_preset("digits", **{**TINY, **config})
    model.initialize(images)
    rng = np.random.default_rng(1)
    for v in model.bijector.trainable_variables:
        v.assign_add(0.05 * rng.standard_normal(v.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    images = data.load_numpy("digits", "train")[:64]
    model = _perturbed_model(images)
    export_dir = tmp_path_factory.mktemp("export")
    path = export_saved_model(model, str(export_dir))
    return dict(model=model, images=images, export_dir=export_dir, path=path)


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported["path"])


def _saved_model_cli(*args) -> subprocess.CompletedProcess:
    """Runs TensorFlow's own saved_model_cli."""
    return subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", *args],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


# Layout.


def test_layout_and_versions(exported, tmp_path):
    export_dir = exported["export_dir"]
    assert exported["path"] == os.path.join(str(export_dir), "1")
    assert (export_dir / "1" / "saved_model.pb").is_file()
    assert (export_dir / "1" / "variables").is_dir()
    # Next free version, after the largest integer folder; other names do not count.
    (export_dir / "7").mkdir()
    (export_dir / "notes").mkdir()
    assert export_saved_model(exported["model"], str(export_dir)) == os.path.join(str(export_dir), "8")
    assert (export_dir / "8" / "saved_model.pb").is_file()
    with pytest.raises(FileExistsError, match=r"1 already exists"):
        export_saved_model(exported["model"], str(export_dir), version=1)
    assert sorted(p.name for p in export_dir.iterdir()) == ["1", "7", "8", "notes"]  # no temporaries
    with pytest.raises(ValueError, match="Received: version=0"):
        export_saved_model(exported["model"], str(tmp_path), version=0)


def test_failed_export_leaves_nothing(exported, tmp_path, monkeypatch):
    def fail(module, path, signatures):
        os.makedirs(os.path.join(path, "variables"))
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(exported["model"], str(tmp_path / "export"))
    assert os.listdir(tmp_path / "export") == []


def test_export_rejects_what_is_not_a_glow_model(tmp_path):
    with pytest.raises(TypeError, match="GlowModel"):
        export_saved_model(tf.Module(), str(tmp_path))


# The signatures, in a process that cannot import tfp_glow.


def test_signatures_in_a_process_without_tfp_glow(exported, tmp_path):
    model, images = exported["model"], exported["images"][:10]
    latents = model.encode(images).numpy() + 0.1 * np.random.default_rng(2).standard_normal(
        (10, model.event_size)
    ).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", images=images, latents=latents)
    script = BLOCK_IMPORTS + textwrap.dedent(
        f"""
        import numpy as np
        import tensorflow as tf

        served = tf.saved_model.load({exported["path"]!r})
        inputs = np.load("inputs.npz")
        images = tf.constant(inputs["images"])
        default = served.signatures["serving_default"](images=images)
        sample = dict(num_samples=tf.constant({SAMPLE["num_samples"]}),
                      temperature=tf.constant({SAMPLE["temperature"]}),
                      seed=tf.constant({SAMPLE["seed"]}, tf.int64))
        other_seed = {{**sample, "seed": tf.constant(6, tf.int64)}}
        outputs = dict(
            signatures=np.array(sorted(served.signatures)),
            log_prob=default["log_prob"],
            score=default["score"],
            latents=served.signatures["encode"](images=images)["latents"],
            decoded=served.signatures["decode"](latents=tf.constant(inputs["latents"]))["images"],
            samples=served.signatures["sample"](**sample)["images"],
            samples_again=served.sample(**sample)["images"],
            other_seed=served.signatures["sample"](**other_seed)["images"],
        )
        np.savez("outputs.npz", **{{k: np.asarray(v) for k, v in outputs.items()}})
        print("blocked:", [m for m in ("tfp_glow", "tensorflow_probability", "keras") if sys.modules[m]])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "blocked: []" in result.stdout
    out = np.load(tmp_path / "outputs.npz")
    assert sorted(out["signatures"]) == sorted(SIGNATURES)
    np.testing.assert_allclose(out["log_prob"], model.log_prob(images).numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["score"], model.score(images).numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["latents"], model.encode(images).numpy(), rtol=1e-5, atol=1e-6)
    assert out["decoded"].dtype == np.uint8
    np.testing.assert_array_equal(out["decoded"], model.decode(latents).numpy())
    expected = model.sample(SAMPLE["num_samples"], SAMPLE["temperature"], SAMPLE["seed"]).numpy()
    assert out["samples"].dtype == np.uint8 and out["samples"].shape == (3, 8, 8, 1)
    np.testing.assert_array_equal(out["samples"], expected)
    np.testing.assert_array_equal(out["samples_again"], expected)  # the same seed, the same images
    assert not np.array_equal(out["other_seed"], expected)


def test_oversized_requests_cannot_take_down_a_memory_limited_server(exported, tmp_path):
    # As a container would: the serving process may not map more than 4 GiB. Each oversized
    # request must be refused quickly by the limits, not by the allocator (or a crash), and the
    # process must answer a normal request afterwards.
    script = BLOCK_IMPORTS + textwrap.dedent(
        f"""
        import json, resource, time
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        import tensorflow as tf

        served = tf.saved_model.load({exported["path"]!r})
        sample = served.signatures["sample"]

        def request(num_samples):
            return sample(num_samples=tf.constant(num_samples, tf.int32), temperature=tf.constant(0.7),
                          seed=tf.constant(5, tf.int64))

        refused = {{}}
        for num_samples in (2**30, 2**22, 2**31 - 1):
            start = time.perf_counter()
            try:
                request(num_samples)
                refused[num_samples] = "answered"
            except tf.errors.InvalidArgumentError as error:
                refused[num_samples] = [error.message, time.perf_counter() - start]
        start = time.perf_counter()
        try:
            served.signatures["serving_default"](images=tf.zeros([8192, 8, 8, 1], tf.uint8))
            refused["batch"] = "answered"
        except tf.errors.InvalidArgumentError as error:
            refused["batch"] = [error.message, time.perf_counter() - start]
        after = request(3)["images"].numpy().tolist()
        print(json.dumps(dict(refused=refused, after=after)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=CLEAN_ENV, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for num_samples in (2**30, 2**22, 2**31 - 1):
        message, seconds = out["refused"][str(num_samples)]
        assert f"at most 1024 (max_num_samples). Received: num_samples={num_samples}" in message
        assert seconds < 10
    message, seconds = out["refused"]["batch"]
    assert "at most 4096 (max_batch_size). Received: batch=8192" in message and seconds < 10
    expected = exported["model"].sample(SAMPLE["num_samples"], SAMPLE["temperature"], SAMPLE["seed"])
    np.testing.assert_array_equal(np.array(out["after"], np.uint8), expected.numpy())


def test_saved_model_cli_shows_and_runs_the_signatures(exported, tmp_path):
    path = exported["path"]
    zeros = np.zeros((2, 8, 8, 1), np.uint8)
    np.save(tmp_path / "zeros.npy", zeros)
    shown = _saved_model_cli("show", "--dir", path, "--all")
    assert shown.returncode == 0, shown.stderr[-3000:]
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in shown.stdout
    assert "DT_UINT8" in shown.stdout and "shape: (-1, 8, 8, 1)" in shown.stdout
    # As TF Serving does: a TF1 session over the MetaGraph, fed the signature's tensors.
    ran = _saved_model_cli(
        "run",
        "--dir",
        path,
        "--tag_set",
        "serve",
        "--signature_def",
        "serving_default",
        "--inputs",
        f"images={tmp_path / 'zeros.npy'}",
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    printed = re.search(r"Result for output key score:\s*\[([^\]]*)\]", ran.stdout)
    assert printed, ran.stdout
    np.testing.assert_allclose(
        np.array(printed.group(1).split(), np.float32),
        exported["model"].score(zeros).numpy(),
        rtol=1e-5,
    )


# Bad requests are refused with an error that names what was expected.


@pytest.mark.parametrize("signature", ["serving_default", "encode"])
@pytest.mark.parametrize("shape", [(1, 4, 4, 1), (1, 8, 8, 3), (2, 4, 16, 1)])
def test_wrong_image_shape_is_refused(loaded, signature, shape):
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=re.escape("Expected images of shape [batch, 8, 8, 1]")
    ):
        loaded.signatures[signature](images=tf.zeros(shape, tf.uint8))


@pytest.mark.parametrize("signature", ["serving_default", "encode"])
def test_pixel_values_out_of_range_are_refused(loaded, signature):
    images = np.zeros((2, 8, 8, 1), np.uint8)
    images[1, 3, 4, 0] = 17  # digits have 17 levels: 0..16
    with pytest.raises(tf.errors.InvalidArgumentError, match="Pixel values must be < 17"):
        loaded.signatures[signature](images=tf.constant(images))


def test_wrong_latent_size_is_refused(loaded):
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=re.escape("Expected latents of shape [batch, 64]")
    ):
        loaded.signatures["decode"](latents=tf.zeros([2, 10]))


@pytest.mark.parametrize(
    "request_, message",
    [
        (dict(temperature=-0.5), "finite temperature >= 0"),
        (dict(temperature=float("nan")), "finite temperature >= 0"),
        (dict(num_samples=0), "num_samples >= 1"),
    ],
)
def test_bad_sample_requests_are_refused(loaded, request_, message):
    request_ = {**SAMPLE, **request_}
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["sample"](
            num_samples=tf.constant(request_["num_samples"]),
            temperature=tf.constant(request_["temperature"]),
            seed=tf.constant(request_["seed"], tf.int64),
        )


def _sample_request(loaded, num_samples, **extra):
    return loaded.signatures["sample"](
        num_samples=tf.constant(num_samples),
        temperature=tf.constant(0.7),
        seed=tf.constant(0, tf.int64),
        **extra,
    )


def test_a_request_over_a_limit_is_refused_naming_the_limit_and_the_value(loaded):
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=re.escape("at most 1024 (max_num_samples). Received: num_samples=1073741824"),
    ):
        _sample_request(loaded, 2**30)
    too_many = tf.zeros([4097, 8, 8, 1], tf.uint8)
    for signature in ("serving_default", "encode"):
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match=re.escape("at most 4096 (max_batch_size). Received: batch=4097"),
        ):
            loaded.signatures[signature](images=too_many)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("Received: batch=4097")):
        loaded.signatures["decode"](latents=tf.zeros([4097, 64]))
    # At the limit, a request is answered.
    assert _sample_request(loaded, 1024)["images"].shape == (1024, 8, 8, 1)


def test_the_limits_are_options_recorded_in_the_saved_model(exported, tmp_path):
    path = export_saved_model(exported["model"], str(tmp_path), max_num_samples=5, max_batch_size=3)
    metadata = json.loads((tmp_path / "1" / "assets.extra" / "tfp_glow.json").read_text())
    assert (metadata["max_num_samples"], metadata["max_batch_size"]) == (5, 3)
    assert metadata["image_shape"] == [8, 8, 1] and metadata["input_levels"] == 17
    served = tf.saved_model.load(path)
    assert (int(served.max_num_samples), int(served.max_batch_size)) == (5, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("Received: num_samples=6")):
        _sample_request(served, 6)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("Received: batch=4")):
        served.signatures["serving_default"](images=tf.zeros([4, 8, 8, 1], tf.uint8))
    # A sample request is bounded by max_num_samples alone, above max_batch_size too.
    assert _sample_request(served, 5)["images"].shape == (5, 8, 8, 1)
    with pytest.raises(ValueError, match="Received: max_num_samples=0"):
        export_saved_model(exported["model"], str(tmp_path), max_num_samples=0)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_decode_refuses_non_finite_latents(loaded, value):
    latents = np.zeros((2, 64), np.float32)
    latents[1, 5] = value
    with pytest.raises(tf.errors.InvalidArgumentError, match="finite latents"):
        loaded.signatures["decode"](latents=tf.constant(latents))


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    """A tiny class-conditional model, its export loaded, and 32 digits with labels."""
    images = data.load_numpy("digits", "train")[:32]
    labels = np.arange(32, dtype=np.int32) % 10
    model = _perturbed_model(images, num_classes=10)
    served = tf.saved_model.load(export_saved_model(model, str(tmp_path_factory.mktemp("conditional"))))
    return dict(model=model, served=served, images=images, labels=labels)


def test_a_class_conditional_model_exports_with_labels(conditional):
    model, served, images, labels = (conditional[k] for k in ("model", "served", "images", "labels"))
    out = served.signatures["serving_default"](images=tf.constant(images), labels=tf.constant(labels))
    np.testing.assert_allclose(
        out["log_prob"].numpy(), model.log_prob(images, labels=labels).numpy(), rtol=1e-5
    )
    np.testing.assert_allclose(out["score"].numpy(), model.score(images, labels=labels).numpy(), rtol=1e-5)
    latents = served.signatures["encode"](images=tf.constant(images), labels=tf.constant(labels))["latents"]
    np.testing.assert_allclose(latents.numpy(), model.encode(images, labels=labels).numpy(), atol=1e-5)
    moved = latents + 0.3  # latents that are no image's encoding
    decoded = served.signatures["decode"](latents=moved, labels=tf.constant(labels))["images"]
    np.testing.assert_array_equal(decoded.numpy(), model.decode(moved, labels=labels).numpy())
    decoded = served.signatures["decode"](latents=latents, labels=tf.constant(labels))["images"]
    np.testing.assert_array_equal(decoded.numpy(), images)
    sevens = _sample_request(served, 4, labels=tf.constant(7))["images"].numpy()
    np.testing.assert_array_equal(sevens, model.sample(4, 0.7, 0, labels=7).numpy())
    assert not np.array_equal(sevens, _sample_request(served, 4, labels=tf.constant(3))["images"].numpy())


def test_a_class_conditional_export_refuses_bad_labels_in_every_signature(conditional):
    served, images = conditional["served"], tf.constant(conditional["images"][:2])
    latents = tf.zeros([2, 64])
    requests = [
        lambda labels: served.signatures["serving_default"](images=images, labels=labels),
        lambda labels: served.signatures["encode"](images=images, labels=labels),
        lambda labels: served.signatures["decode"](latents=latents, labels=labels),
    ]
    for request in requests:
        with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes = 10"):
            request(tf.constant([0, 10]))
        with pytest.raises(tf.errors.InvalidArgumentError, match=">= 0"):
            request(tf.constant([-1, 0]))
        with pytest.raises(tf.errors.InvalidArgumentError, match="one label per image"):
            request(tf.constant([0, 1, 2]))
    for label in (10, -1):
        with pytest.raises(tf.errors.InvalidArgumentError, match="Class labels must be"):
            _sample_request(served, 2, labels=tf.constant(label))


@pytest.mark.parametrize("signature", ["serving_default", "encode"])
def test_float_images_are_refused_by_the_signature(loaded, signature):
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8 tensor"):
        loaded.signatures[signature](images=tf.zeros([1, 8, 8, 1], tf.float32))


def test_n_bit_model_reduces_bits_inside_the_graph(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
    model = _perturbed_model(images, num_bins=None, n_bits=3)
    served = tf.saved_model.load(export_saved_model(model, str(tmp_path)))
    bpd = served.signatures["serving_default"](images=tf.constant(images))["score"].numpy()
    np.testing.assert_allclose(bpd, model.score(images).numpy(), rtol=1e-5)
    # 3-bit levels: pixels that differ only below the top 3 bits are the same image.
    np.testing.assert_allclose(
        served.signatures["serving_default"](images=tf.constant(images | 0x1F))["score"].numpy(),
        bpd,
        rtol=1e-6,
    )
    samples = served.signatures["sample"](
        num_samples=tf.constant(4), temperature=tf.constant(1.0), seed=tf.constant(0, tf.int64)
    )["images"].numpy()
    np.testing.assert_array_equal(samples, model.sample(4, 1.0, 0).numpy())
    assert np.all(samples % 32 == 0)


# tfp-glow export.


def test_cli_export(exported, tmp_path, capsys):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    exported["model"].save(model_dir / "model.keras")
    assert cli.main(["tfp-glow", "export", f"--model_dir={model_dir}"]) == 0
    version = model_dir / "export" / "1"
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(version)
    served = tf.saved_model.load(str(version))
    images = exported["images"][:4]
    np.testing.assert_allclose(
        served.signatures["serving_default"](images=tf.constant(images))["score"].numpy(),
        exported["model"].score(images).numpy(),
        rtol=1e-5,
    )
    # An explicit folder and version; an existing version is a run-time error (exit 1).
    args = [
        "tfp-glow",
        "export",
        f"--model_dir={model_dir}",
        f"--export_dir={tmp_path / 'serving'}",
        "--export_version=3",
        "--max_num_samples=7",
        "--max_batch_size=5",
    ]
    assert cli.main(args) == 0
    assert (tmp_path / "serving" / "3" / "saved_model.pb").is_file()
    metadata = json.loads((tmp_path / "serving" / "3" / "assets.extra" / "tfp_glow.json").read_text())
    assert (metadata["max_num_samples"], metadata["max_batch_size"]) == (7, 5)
    served = tf.saved_model.load(str(tmp_path / "serving" / "3"))
    assert (int(served.max_num_samples), int(served.max_batch_size)) == (7, 5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape("Received: num_samples=8")):
        _sample_request(served, 8)
    assert cli.main(args) == 1
    assert "already exists" in capsys.readouterr().err
