"""SavedModel export of a `GlowModel` for TensorFlow Serving.

`export_saved_model(model, export_dir)` writes `export_dir/<version>/`, the layout TF Serving
watches, with four signatures. They are plain TensorFlow graphs over the model's variables: loading
them needs neither this package nor Keras nor TensorFlow Probability.

  serving_default  images uint8 [N, H, W, C] -> log_prob float32 [N], bits_per_dim float32 [N]
  encode           images uint8 [N, H, W, C] -> latents float32 [N, D]
  decode           latents float32 [N, D]    -> images uint8 [N, H, W, C]
  sample           num_samples int32 [], temperature float32 [], seed int64 []
                                             -> images uint8 [num_samples, H, W, C]

Images are integer levels as `GlowModel` takes them: uint8 in [0, num_bins) for a `num_bins`
model (17 for digits), any uint8 for an `n_bits` model (reduced to n bits inside the graph).
Every output equals the `GlowModel` method of the same name: `serving_default` and `encode` are
deterministic, the dequantization noise replaced by the bin centre (`model.log_prob`,
`model.bits_per_dim`, `model.encode`); `sample` draws `tf.random.stateless_normal` noise from
`[seed, 0]`, so a seed always gives the same images (`model.sample(num, temperature, seed)`).

A bad request is refused by the graph, with an error that names what was expected, rather than
answered: images of another height, width or channel count ("Expected images of shape [batch, 8,
8, 1]"), pixel values >= num_bins, latents of another size, num_samples < 1, a negative or
non-finite temperature. The image and latent signatures accept any shape ([-1, -1, -1, -1] and
[-1, -1]) and check it at run time, because TF Serving feeds a request to the graph without
checking its shape against the signature; a wrong dtype is refused by the signature itself.
"""

from __future__ import annotations

import os
import uuid

import tensorflow as tf

from tfp_glow.distributions import bits_per_dim
from tfp_glow.models.glow_model import GlowModel

__all__ = ["SIGNATURES", "export_saved_model"]

SIGNATURES = ("serving_default", "encode", "decode", "sample")


def export_saved_model(model: GlowModel, export_dir: str, version: int | None = None) -> str:
    """Writes `model` as a SavedModel for TF Serving into `export_dir/<version>/`.

    The version folder is written in full under a temporary hidden sibling
    (`export_dir/.tmp-...`, which TF Serving ignores) and then renamed, so a failed export
    leaves no version folder behind (the rename is atomic on local file systems). An existing
    version is never overwritten.

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
        it; created if needed. Local or any file system `tf.io.gfile` supports.
      version: positive `int`, the version folder; default `None`: 1 + the largest integer
        folder in `export_dir`, or 1.

    Returns:
      The path of the version folder, `export_dir/<version>`.

    Raises:
      TypeError: if `model` is not a `GlowModel`.
      NotImplementedError: if `model` is class-conditional (`num_classes`): the
        signatures take no labels.
      ValueError: if `version` is not a positive integer.
      FileExistsError: if `export_dir/<version>` exists.
    """
    if not isinstance(model, GlowModel):
        raise TypeError(f"`model` must be a tfp_glow.GlowModel. Received: model={model!r}")
    if model.num_classes is not None:
        raise NotImplementedError(
            "Exporting a class-conditional GlowModel is not supported: the serving signatures take "
            f"no labels. Received: a model with num_classes={model.num_classes}"
        )
    if version is not None and (not isinstance(version, int) or isinstance(version, bool) or version < 1):
        raise ValueError(f"`version` must be a positive integer. Received: version={version!r}")
    export_dir = os.fspath(export_dir)
    tf.io.gfile.makedirs(export_dir)
    if version is None:
        version = 1 + max(_versions(export_dir), default=0)
    path = os.path.join(export_dir, str(version))
    if tf.io.gfile.exists(path):
        raise FileExistsError(
            f"{path} already exists: a version is never overwritten (TF Serving may be serving it). "
            f"Export another version, or leave `version` unset to write the next one."
        )
    module = _serving_module(model)
    temporary = os.path.join(export_dir, f".tmp-{version}-{uuid.uuid4().hex}")
    try:
        tf.saved_model.save(
            module, temporary, signatures={name: getattr(module, name) for name in SIGNATURES}
        )
        tf.io.gfile.rename(temporary, path, overwrite=False)
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.rmtree(temporary)
    return path


def _versions(export_dir: str) -> list[int]:
    """The integer folder names in `export_dir` (TF Serving's versions)."""
    names = (name.rstrip("/") for name in tf.io.gfile.listdir(export_dir))
    return [int(name) for name in names if name.isdigit()]


def _serving_module(model: GlowModel) -> tf.Module:
    """A `tf.Module` holding the flow's variables and the four signature functions.

    The functions call the model's own preprocessing, flow and postprocessing (TensorFlow ops
    all), traced once here; the module references the variables themselves, not the Keras model,
    so that the SavedModel holds no Keras or TFP objects.
    """
    height, width, channels = model.image_shape
    size = model.event_size
    image_shape_message = f"Expected images of shape [batch, {height}, {width}, {channels}]"
    latent_shape_message = f"Expected latents of shape [batch, {size}]"

    def checked(tensor, expected, message):
        # The signatures accept any shape: check it (rank included) before anything reshapes the tensor.
        rank = len(expected) + 1
        padded = tf.pad(tf.shape(tensor), [[0, rank]])  # a lower rank must not break the comparison
        ok = tf.equal(tf.rank(tensor), rank) & tf.reduce_all(tf.equal(padded[1:rank], expected))
        check = tf.debugging.Assert(ok, [f"{message}. Received: shape=", tf.shape(tensor)])
        with tf.control_dependencies([check]):
            return tf.identity(tensor)

    images_spec = tf.TensorSpec([None, None, None, None], tf.uint8, name="images")
    latents_spec = tf.TensorSpec([None, None], tf.float32, name="latents")

    @tf.function(input_signature=[images_spec])
    def serving_default(images):
        log_prob = model.log_prob(checked(images, [height, width, channels], image_shape_message))
        return {
            "log_prob": tf.ensure_shape(log_prob, [None]),
            "bits_per_dim": tf.ensure_shape(
                bits_per_dim(log_prob, model.image_shape, model.num_bins), [None]
            ),
        }

    @tf.function(input_signature=[images_spec])
    def encode(images):
        latents = model.encode(checked(images, [height, width, channels], image_shape_message))
        return {"latents": tf.ensure_shape(latents, [None, size])}

    def decode_images(latents):
        images = model.decode(checked(latents, [size], latent_shape_message))
        return tf.ensure_shape(images, [None, height, width, channels])

    @tf.function(input_signature=[latents_spec])
    def decode(latents):
        return {"images": decode_images(latents)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.int32, name="num_samples"),
            tf.TensorSpec([], tf.float32, name="temperature"),
            tf.TensorSpec([], tf.int64, name="seed"),
        ]
    )
    def sample(num_samples, temperature, seed):
        checks = [
            tf.debugging.assert_greater_equal(num_samples, 1, message="Expected num_samples >= 1"),
            tf.debugging.Assert(
                tf.math.is_finite(temperature) & (temperature >= 0),
                ["Expected a finite temperature >= 0. Received: temperature =", temperature],
            ),
        ]
        with tf.control_dependencies(checks):
            # As GlowModel.sample: the same noise for the same seed, in any process.
            eps = tf.random.stateless_normal(tf.stack([num_samples, size]), seed=tf.stack([seed, 0]))
        return {"images": decode_images(temperature * eps)}

    module = tf.Module(name="glow_serving")
    module.flow_variables = list(model.bijector.variables)
    module.serving_default = serving_default
    module.encode = encode
    module.decode = decode
    module.sample = sample
    return module
