"""SavedModel export of a `GlowModel` for TensorFlow Serving.

`export_saved_model(model, export_dir)` writes `export_dir/<version>/`, the layout TF Serving
watches, with four signatures. They are plain TensorFlow graphs over the model's variables: loading
them needs neither this package nor Keras nor TensorFlow Probability.

  serving_default  images uint8 [N, H, W, C]  -> log_prob float32 [N], score float32 [N]
  encode           images uint8 [N, H, W, C]  -> latents float32 [N, D]
  decode           latents float32 [N, D]     -> images uint8 [N, H, W, C]
  sample           num_samples int32 [], temperature float32 [], seed int64 []
                                              -> images uint8 [num_samples, H, W, C]

A class-conditional model's signatures also take `labels`: int32 [N] (a scalar for `sample`), the
class of each image in [0, num_classes). Images are integer levels as `GlowModel` takes them: uint8
in [0, num_bins) for a `num_bins` model (17 for digits), any uint8 for an `n_bits` model (reduced to
n bits inside the graph). Every output equals the `GlowModel` method of the same name:
`serving_default`'s `log_prob` is the density of the continuous model at the bin centres and
`score` the same in bits/dim units (`model.score`), deterministic; neither is a bits/dim of the
model, which `GlowModel.bits_per_dim` estimates. `sample` draws `tf.random.stateless_normal` noise
from `[seed, 0]`, so a seed always gives the same images (`model.sample(num, temperature, seed)`).

The work one request can ask for is bounded, so that no request can exhaust the server: at most
`max_batch_size` images or latents (default 4096) and `max_num_samples` samples (default 1024).
A request over a limit is refused before anything is computed for it, with an error that names the
limit and the value received. The limits are in the SavedModel, as the int32 variables `max_batch_size`
and `max_num_samples` of the loaded object, and in `assets.extra/tfp_glow.json` with the image shape,
pixel levels and classes.

A bad request is refused by the graph, with an error that names what was expected, rather than
answered: images of another height, width or channel count ("Expected images of shape [batch, 8,
8, 1]"), pixel values >= num_bins, latents of another size or with NaN or Inf, num_samples < 1, a
negative or non-finite temperature, labels out of range. The image and latent signatures accept
any shape ([-1, -1, -1, -1] and [-1, -1]) and check it at run time, because TF Serving feeds a
request to the graph without checking its shape against the signature; a wrong dtype is refused by
the signature itself.
"""

from __future__ import annotations

import json
import os
import uuid

import keras
import tensorflow as tf

from tfp_glow import files
from tfp_glow.distributions import bits_per_dim
from tfp_glow.models.glow_model import GlowModel

__all__ = ["DEFAULT_MAX_BATCH_SIZE", "DEFAULT_MAX_NUM_SAMPLES", "SIGNATURES", "export_saved_model"]

SIGNATURES = ("serving_default", "encode", "decode", "sample")
DEFAULT_MAX_BATCH_SIZE = 4096
DEFAULT_MAX_NUM_SAMPLES = 1024
METADATA = os.path.join("assets.extra", "tfp_glow.json")


def export_saved_model(
    model: GlowModel,
    export_dir: str,
    version: int | None = None,
    max_num_samples: int = DEFAULT_MAX_NUM_SAMPLES,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    verbose: int = 0,
) -> str:
    """Writes `model` as a SavedModel for TF Serving into `export_dir/<version>/`.

    The version folder is written in full under a temporary hidden sibling
    (`export_dir/.tmp-...`, which TF Serving ignores), every file flushed to the disk, and then
    renamed, so a failed export leaves no version folder behind. An existing version is never
    overwritten.

    #### Examples

    ```python
    path = tfp_glow.export_saved_model(model, "export")      # "export/1", then "export/2"
    served = tf.saved_model.load(path)                       # no tfp_glow needed
    served.signatures["sample"](num_samples=tf.constant(4), temperature=tf.constant(0.7),
                                seed=tf.constant(1, tf.int64))["images"]   # uint8 [4, H, W, C]
    ```

    Args:
      model: a `tfp_glow.GlowModel` (trained and ActNorm-initialized, or loaded from a
        `.keras` file).
      export_dir: `str`, the model's base folder as TF Serving's `--model_base_path` names
        it; created if needed. A local folder.
      version: positive `int`, the version folder; default `None`: 1 + the largest integer
        folder in `export_dir`, or 1.
      max_num_samples: positive `int`, the most samples one `sample` request may ask for.
      max_batch_size: positive `int`, the most images or latents of one request.
      verbose: 1 shows a progress bar over the signatures traced and the files written.

    Returns:
      The path of the version folder, `export_dir/<version>`.

    Raises:
      TypeError: if `model` is not a `GlowModel`.
      ValueError: if `version` or a limit is not a positive integer.
      FileExistsError: if `export_dir/<version>` exists.
    """
    if not isinstance(model, GlowModel):
        raise TypeError(f"`model` must be a tfp_glow.GlowModel. Received: model={model!r}")
    for name, value in (
        ("version", version),
        ("max_num_samples", max_num_samples),
        ("max_batch_size", max_batch_size),
    ):
        if (value is not None or name != "version") and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    export_dir = os.fspath(export_dir)
    files.make_directories(export_dir)
    if version is None:
        version = 1 + max(_versions(export_dir), default=0)
    path = os.path.join(export_dir, str(version))
    if os.path.exists(path):
        raise FileExistsError(
            f"{path} already exists: a version is never overwritten (TF Serving may be serving it). "
            f"Export another version, or leave `version` unset to write the next one."
        )
    progress = keras.utils.Progbar(len(SIGNATURES) + 2, verbose=verbose, unit_name="part")
    module = _serving_module(_in_float32(model), max_num_samples, max_batch_size)
    signatures = {}
    for name in SIGNATURES:
        signatures[name] = getattr(module, name).get_concrete_function()
        progress.add(1)
    temporary = os.path.join(export_dir, f".tmp-{version}-{uuid.uuid4().hex}")
    try:
        tf.saved_model.save(module, temporary, signatures=signatures)
        os.makedirs(os.path.join(temporary, "assets.extra"), exist_ok=True)
        with open(os.path.join(temporary, METADATA), "w") as f:
            json.dump(_metadata(model, max_num_samples, max_batch_size), f, indent=1)
        progress.add(1)
        files.commit_directory(temporary, path)
        progress.add(1)
    finally:
        if os.path.exists(temporary):
            tf.io.gfile.rmtree(temporary)
    return path


def _in_float32(model: GlowModel) -> GlowModel:
    """The model itself, or for a mixed-precision model a float32 copy with its weights: the
    served graphs compute in float32 whatever the model was trained in."""
    if model.dtype_policy.name == "float32":
        return model
    config = {**model.get_config(), "dtype": "float32"}
    copy = type(model).from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _versions(export_dir: str) -> list[int]:
    """The integer folder names in `export_dir` (TF Serving's versions)."""
    return [int(name) for name in os.listdir(export_dir) if name.isdigit()]


def _metadata(model: GlowModel, max_num_samples: int, max_batch_size: int) -> dict:
    return {
        "signatures": list(SIGNATURES),
        "image_shape": list(model.image_shape),
        "input_levels": model.input_levels,
        "num_classes": model.num_classes,
        "event_size": model.event_size,
        "max_num_samples": max_num_samples,
        "max_batch_size": max_batch_size,
    }


def _serving_module(model: GlowModel, max_num_samples: int, max_batch_size: int) -> tf.Module:
    """A `tf.Module` holding the flow's variables and the four signature functions.

    The functions call the model's own preprocessing, flow and postprocessing (TensorFlow ops
    all), traced once here; the module references the variables themselves, not the Keras model,
    so that the SavedModel holds no Keras or TFP objects.
    """
    height, width, channels = model.image_shape
    size = model.event_size
    conditional = model.num_classes is not None
    image_shape_message = f"Expected images of shape [batch, {height}, {width}, {channels}]"
    latent_shape_message = f"Expected latents of shape [batch, {size}]"

    def checked(tensor, expected, message):
        # The signatures accept any shape: check it (rank included) before anything reshapes the
        # tensor, and the batch against the limit before anything is computed for it.
        rank = len(expected) + 1
        padded = tf.pad(tf.shape(tensor), [[0, rank]])  # a lower rank must not break the comparison
        ok = tf.equal(tf.rank(tensor), rank) & tf.reduce_all(tf.equal(padded[1:rank], expected))
        checks = [
            tf.debugging.Assert(ok, [f"{message}. Received: shape=", tf.shape(tensor)]),
            tf.debugging.Assert(
                padded[0] <= max_batch_size,
                [
                    _received(
                        f"Expected a batch of at most {max_batch_size} (max_batch_size)", "batch", padded[0]
                    )
                ],
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(tensor)

    images_spec = tf.TensorSpec([None, None, None, None], tf.uint8, name="images")
    latents_spec = tf.TensorSpec([None, None], tf.float32, name="latents")
    labels_spec = [tf.TensorSpec([None], tf.int32, name="labels")] if conditional else []

    def serving_default(images, labels=None):
        images = checked(images, [height, width, channels], image_shape_message)
        log_prob = model.log_prob(images, **_labels(labels))
        score = bits_per_dim(log_prob, model.image_shape, model.num_bins)  # as model.score
        return {"log_prob": tf.ensure_shape(log_prob, [None]), "score": tf.ensure_shape(score, [None])}

    def encode(images, labels=None):
        latents = model.encode(
            checked(images, [height, width, channels], image_shape_message), **_labels(labels)
        )
        return {"latents": tf.ensure_shape(latents, [None, size])}

    def decode_images(latents, labels):
        images = model.decode(latents, **_labels(labels))
        return tf.ensure_shape(images, [None, height, width, channels])

    def decode(latents, labels=None):
        latents = checked(latents, [size], latent_shape_message)
        check = tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(latents)),
            ["GlowModel.decode expects finite latents; Received: latents with NaN or Inf"],
        )
        with tf.control_dependencies([check]):
            return {"images": decode_images(tf.identity(latents), labels)}

    def sample(num_samples, temperature, seed, labels=None):
        checks = [
            tf.debugging.assert_greater_equal(num_samples, 1, message="Expected num_samples >= 1"),
            tf.debugging.Assert(
                num_samples <= max_num_samples,
                [
                    _received(
                        f"Expected num_samples of at most {max_num_samples} (max_num_samples)",
                        "num_samples",
                        num_samples,
                    )
                ],
            ),
            tf.debugging.Assert(
                tf.math.is_finite(temperature) & (temperature >= 0),
                ["Expected a finite temperature >= 0. Received: temperature =", temperature],
            ),
        ]
        with tf.control_dependencies(checks):
            # As GlowModel.sample: the same noise for the same seed, in any process. Nothing of
            # num_samples' size is allocated before the checks pass.
            eps = tf.random.stateless_normal(tf.stack([num_samples, size]), seed=tf.stack([seed, 0]))
            if labels is not None:
                labels = tf.fill([num_samples], labels)
        # Bounded by max_num_samples alone: the latents are the graph's own, not the request's.
        return {"images": decode_images(temperature * eps, labels)}

    sample_specs = [
        tf.TensorSpec([], tf.int32, name="num_samples"),
        tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([], tf.int64, name="seed"),
        *([tf.TensorSpec([], tf.int32, name="labels")] if conditional else []),
    ]
    module = tf.Module(name="glow_serving")
    module.flow_variables = list(model.bijector.variables)
    # Variables, so that the SavedModel keeps them: `int(served.max_num_samples)` reads the limit.
    module.max_num_samples = tf.Variable(max_num_samples, trainable=False, dtype=tf.int32)
    module.max_batch_size = tf.Variable(max_batch_size, trainable=False, dtype=tf.int32)
    module.serving_default = tf.function(serving_default, input_signature=[images_spec, *labels_spec])
    module.encode = tf.function(encode, input_signature=[images_spec, *labels_spec])
    module.decode = tf.function(decode, input_signature=[latents_spec, *labels_spec])
    module.sample = tf.function(sample, input_signature=sample_specs)
    return module


def _received(expected: str, name: str, value: tf.Tensor) -> tf.Tensor:
    """The string tensor "<expected>. Received: <name>=<value>", for an assertion's message."""
    return tf.strings.format(f"{expected}. Received: {name}={{}}", [value])


def _labels(labels) -> dict:
    """The model methods' keyword arguments for a request's labels (checked by the model)."""
    return {} if labels is None else {"labels": labels}
