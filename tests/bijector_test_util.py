"""The test template every tfp_glow bijector goes through (see STYLE.md)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import tfp_glow

MODES = ("eager", "function", "xla")


def compile_fn(fn, mode, input_signature=None):
    """`fn` run eagerly, as a tf.function, or as an XLA-compiled tf.function."""
    if mode == "eager":
        return fn
    return tf.function(fn, jit_compile=mode == "xla", input_signature=input_signature, reduce_retracing=True)


def perturb(module: tf.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Moves every trainable variable away from its (often zero) initial value."""
    rng = np.random.default_rng(seed)
    for v in module.trainable_variables:
        v.assign_add((scale * rng.standard_normal(v.shape)).astype(v.dtype.as_numpy_dtype))


def plain_and_memory_efficient(dtype, perturbation: float, memory_efficient=True, **kwargs):
    """(plain Glow, memory-efficient Glow with the same weights, their images [6, *image_shape]).

    Initialized on the images, then every variable moved by `perturbation` (zero
    output layers would hide most of the networks)."""
    config = dict(image_shape=(8, 8, 2), num_levels=2, num_steps=3, hidden_channels=8, seed=3, dtype=dtype)
    config.update(kwargs)
    plain = tfp_glow.Glow(**config)
    recomputing = tfp_glow.Glow(**config, memory_efficient=memory_efficient)
    images = tf.random.stateless_uniform([6, *config["image_shape"]], [1, 2], -0.5, 0.5, dtype)
    plain.initialize(images)
    perturb(plain, seed=5, scale=perturbation)
    for source, target in zip(plain.variables, recomputing.variables, strict=True):
        target.assign(source)
    return plain, recomputing, images


def fresh(t: tf.Tensor) -> tf.Tensor:
    """A new tensor with t's value, so that TFP's bijector cache cannot answer."""
    return tf.constant(np.array(t))


def forward_jacobian_log_det(bijector, x, event_ndims: int, **kwargs) -> np.ndarray:
    """log|det d forward / dx| per batch member, from the autodiff Jacobian.

    x: [N, *event] (float64); the forward map is flattened to R^d -> R^d.
    """
    n = x.shape[0]
    event_shape = list(x.shape[1:])
    flat = tf.reshape(x, [n, -1])
    with tf.GradientTape() as tape:
        tape.watch(flat)
        y = bijector.forward(tf.reshape(flat, [n] + event_shape), **kwargs)
        y_flat = tf.reshape(y, [n, -1])
    jacobian = tape.batch_jacobian(y_flat, flat).numpy()
    assert jacobian.shape[1] == jacobian.shape[2], "the flattened map must be square"
    sign, log_det = np.linalg.slogdet(jacobian)
    assert np.all(sign != 0), "singular Jacobian"
    return log_det


def at_bin_centres(model):
    """Makes `model` dequantize every level at its bin centre (no noise, log q = 0), so that a
    training step is deterministic; returns the model."""
    quantization = model.quantization
    quantization.dequantize = lambda levels, seed: (
        quantization.centres(levels),
        tf.zeros(tf.shape(levels)[:1]),
    )
    return model
