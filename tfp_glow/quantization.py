"""From integer images to Glow's continuous space and back: n-bit reduction, scaling, dequantization.

A GlowModel's input is integer images [N, H, W, C]: uint8 levels in [0, 256), reduced to
`num_bins = 2**n_bits` levels inside the model, or levels in [0, num_bins) of a source that is
not 8-bit (`num_bins=17` for scikit-learn's digits). A level k becomes

    x = (k + u) / num_bins - 0.5   in [-0.5, 0.5]

with u the dequantization noise: the bin centre u = 1/2 for deterministic figures (`centres`),
u ~ U[0, 1) (log q(u | k) = 0, the paper's), or u ~ q(u | k) from a learned dequantizer
(Flow++), in `dequantize`, the one place noise is drawn. `to_images` maps x back to uint8 images
(n-bit levels scaled back to [0, 256)).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

__all__ = ["Quantization", "quantize", "reduce_bits", "to_unit_range"]


def reduce_bits(pixels: tf.Tensor, n_bits: int) -> tf.Tensor:
    """8-bit pixels [0, 256) to n-bit levels [0, 2**n_bits), as the paper's 5-bit CelebA."""
    if not 1 <= n_bits <= 8:
        raise ValueError(f"`n_bits` must be in [1, 8]. Received: n_bits={n_bits!r}")
    return tf.cast(pixels, tf.int32) // (2 ** (8 - n_bits))


def to_unit_range(
    pixels: tf.Tensor, num_bins: int, noise: tf.Tensor | None = None, dtype: tf.DType = tf.float32
) -> tf.Tensor:
    """Integer levels k in [0, num_bins) to x = (k + u) / num_bins - 0.5 in [-0.5, 0.5).

    Args:
      pixels: integer `Tensor` of levels in [0, num_bins).
      num_bins: Python `int`, the number of levels.
      noise: optional `Tensor` u of the same shape with values in [0, 1), the
        dequantization noise; `None` uses the bin centre u = 0.5 (deterministic).
      dtype: float `tf.DType` of the result.

    Returns:
      float `Tensor` x of `pixels`' shape.
    """
    x = tf.cast(pixels, dtype)
    x += 0.5 if noise is None else tf.cast(noise, dtype)
    return x / num_bins - 0.5


def quantize(x: tf.Tensor, num_bins: int) -> tf.Tensor:
    """The inverse of `to_unit_range`: x in [-0.5, 0.5] to int32 levels in [0, num_bins)."""
    levels = tf.floor((tf.convert_to_tensor(x) + 0.5) * num_bins)
    return tf.cast(tf.clip_by_value(levels, 0, num_bins - 1), tf.int32)


class Quantization:
    """The pixel levels of a model's images and their map to [-0.5, 0.5].

    Args:
      image_shape: `(H, W, C)` of the images.
      num_bins: Python `int`, the levels the flow models: 2**n_bits, or the source's own.
      n_bits: Python `int` for 8-bit input reduced to n bits inside, or `None` for input that is
        already in [0, num_bins).
      dequantizer: optional Keras layer `dequantizer(centres, eps) -> (u, log q(u | k))` of a
        learned dequantization; `None` for uniform noise.
    """

    def __init__(self, image_shape: Sequence[int], num_bins: int, n_bits: int | None, dequantizer=None):
        self.image_shape = tuple(image_shape)
        self.num_bins = num_bins
        self.n_bits = n_bits
        self.dequantizer = dequantizer

    @property
    def input_levels(self) -> int:
        """Levels of the integer images the model takes and gives: `num_bins`, or 256 if n-bit."""
        return self.num_bins if self.n_bits is None else 256

    def levels(self, images) -> tf.Tensor:
        """int32 levels in [0, num_bins) of integer images [N, H, W, C], checked.

        Raises:
          TypeError: for images that are not integers.
          ValueError: for a static shape other than [N, H, W, C] (checked at run time too, as the
            pixel range: InvalidArgumentError).
        """
        images = tf.convert_to_tensor(images)
        if images.dtype.is_floating or images.dtype.is_bool:
            raise TypeError(
                f"GlowModel expects integer images (uint8 levels in [0, {self.input_levels})). "
                f"Received: dtype={images.dtype.name}"
            )
        expected = f"[batch, {', '.join(map(str, self.image_shape))}]"
        if images.shape.rank is not None and (
            images.shape.rank != 4
            or any(d is not None and d != e for d, e in zip(images.shape[1:], self.image_shape, strict=True))
        ):
            raise ValueError(
                f"GlowModel expects images of shape {expected}. Received: shape={images.shape.as_list()}"
            )
        levels = tf.cast(images, tf.int32)
        checks = [
            # Keras may trace with unknown dimensions: the shape is checked at run time too.
            tf.debugging.assert_equal(
                tf.shape(levels)[1:],
                tf.constant(self.image_shape, tf.int32),
                message=f"GlowModel expects images of shape {expected}",
            ),
            tf.debugging.assert_greater_equal(levels, 0, message="Pixel values must be >= 0."),
            tf.debugging.assert_less(
                levels, self.input_levels, message=f"Pixel values must be < {self.input_levels}."
            ),
        ]
        with tf.control_dependencies(checks):
            levels = tf.identity(levels)
        return levels if self.n_bits is None else reduce_bits(levels, self.n_bits)

    def centres(self, levels: tf.Tensor) -> tf.Tensor:
        """x at the centres of the levels' bins (u = 1/2): deterministic."""
        return to_unit_range(levels, self.num_bins)

    def dequantize(self, levels: tf.Tensor, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """(x, log q(u | k) [N]): the levels dequantized with noise u ~ q drawn from `seed` (a
        `keras.random.SeedGenerator`, or a stateless int32 [2] seed). Uniform noise has log q = 0."""
        shape = tf.shape(levels)
        if self.dequantizer is None:
            return to_unit_range(levels, self.num_bins, _random(keras.random.uniform, shape, seed)), tf.zeros(
                shape[:1]
            )
        eps = _random(keras.random.normal, shape, seed)
        u, log_q = self.dequantizer(self.centres(levels), eps)
        return to_unit_range(levels, self.num_bins, u), log_q

    def to_images(self, x: tf.Tensor) -> tf.Tensor:
        """x in [-0.5, 0.5] to uint8 images (n-bit levels scaled back to [0, 256))."""
        levels = quantize(x, self.num_bins)
        if self.n_bits is not None:
            levels = levels * 2 ** (8 - self.n_bits)
        return tf.cast(levels, tf.uint8)


def _random(draw, shape, seed) -> tf.Tensor:
    """`draw(shape, seed=seed)` for a SeedGenerator, the stateless TF op of it for a [2] seed."""
    if isinstance(seed, keras.random.SeedGenerator):
        return draw(shape, seed=seed)
    stateless = tf.random.stateless_uniform if draw is keras.random.uniform else tf.random.stateless_normal
    return stateless(shape, seed)
