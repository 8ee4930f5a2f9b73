"""Variational dequantization: a learned noise distribution q(u | k) inside the bins.

A flow is a density on continuous x, images are integer levels k. Training on
x = (k + u) / num_bins - 0.5 bounds the discrete likelihood from below for any
noise density q(u | k) on the bin [0, 1)^D (Jensen's inequality, Flow++ [1]):

    log P(k) = log E_q[p(x) / (num_bins^D q(u | k))]
            >= E_q[log p(x) - log q(u | k)] - D log(num_bins).

Uniform noise (q = 1, the paper's estimate) leaves the gap KL(q || p(u | k)),
which is large where the data sit on a few levels: a smooth flow cannot put a
flat density on a whole bin. A learned q narrows it. Here q is the conditional
logit-normal of each pixel given the whole image,

    u = sigmoid(h),   h = mu(k) + sigma(k) * eps,   eps ~ N(0, I),
    log q(u | k) = sum_i [log N(eps_i) - log sigma_i - log sigmoid(h_i) - log(1 - sigmoid(h_i))],

with mu and log sigma from a small convolutional network of the bin centres,
zero-initialized at the output (mu = 0, sigma = 1 before training). With
`num_couplings` > 0, conditional affine couplings on checkerboard masks follow
the mean-field map, as Flow++'s conditional flow: pixels of one colour shift and
scale by a network of the other colour and of the image's features,

    h <- m * h + (1 - m) * (h * exp(s) + t),   (s, t) = NN(m * h, features(k)),

alternating the colour, each adding sum (1 - m) * s to log |dh / d eps|. Every
coupling's output layer is zero-initialized, so an untrained q is still the
logit-normal above.

The same q is the proposal of the importance-weighted estimate of log P(k)
(`GlowModel.discrete_bits_per_dim`), which tightens as samples are added.

#### References

[1]: Jonathan Ho, Xi Chen, Aravind Srinivas, Yan Duan, Pieter Abbeel. Flow++:
     Improving Flow-Based Generative Models with Variational Dequantization and
     Architecture Design. In _International Conference on Machine Learning_, 2019.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

__all__ = ["VariationalDequantizer"]

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


@keras.saving.register_keras_serializable(package="tfp_glow")
class VariationalDequantizer(keras.layers.Layer):
    """q(u | k): per-pixel logit-normal noise in (0, 1), conditioned on the image.

    `call(centres, eps)` maps standard-normal noise `eps` to dequantization noise
    u = sigmoid(h(eps)) and returns `(u, log q(u | k))`, the latter summed over each
    image. `centres` are the bin centres x_c = (k + 0.5) / num_bins - 0.5 of the
    images, the networks' only view of the image.
    """

    def __init__(self, hidden_channels: int = 32, num_couplings: int = 0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        for name, value, minimum in (
            ("hidden_channels", hidden_channels, 1),
            ("num_couplings", num_couplings, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
        self.hidden_channels = hidden_channels
        self.num_couplings = num_couplings
        self.seed = seed  # of the initial weights: the same seed, the same q

    def _kernel_initializer(self, index: int):
        return keras.initializers.GlorotUniform(seed=None if self.seed is None else self.seed + index)

    def build(self, input_shape):
        channels = input_shape[-1]
        hidden = dict(kernel_size=3, padding="same", activation="relu")
        self.hidden = [
            keras.layers.Conv2D(
                self.hidden_channels,
                kernel_initializer=self._kernel_initializer(i),
                name=f"hidden_{i + 1}",
                **hidden,
            )
            for i in range(2)
        ]
        # Zero output: q starts as sigmoid(N(0, 1)) in every pixel, whatever the image.
        self.out = keras.layers.Conv2D(
            2 * channels, 3, padding="same", kernel_initializer="zeros", name="out"
        )
        shape = tuple(input_shape)
        for layer in self.hidden:
            layer.build(shape)
            shape = (*shape[:-1], self.hidden_channels)
        self.out.build(shape)
        self.couplings = []
        for i in range(self.num_couplings):
            layers = [
                keras.layers.Conv2D(
                    self.hidden_channels,
                    kernel_initializer=self._kernel_initializer(2 + i),
                    name=f"coupling{i}_hidden",
                    **hidden,
                ),
                keras.layers.Conv2D(
                    2 * channels, 3, padding="same", kernel_initializer="zeros", name=f"coupling{i}_out"
                ),
            ]
            layers[0].build((*input_shape[:-1], channels + self.hidden_channels))
            layers[1].build((*input_shape[:-1], self.hidden_channels))
            self.couplings.append(layers)

    def call(self, centres, eps):
        features = centres
        for layer in self.hidden:
            features = layer(features)
        mu, log_sigma = tf.split(self.out(features), 2, axis=-1)
        h = mu + tf.exp(log_sigma) * eps
        log_det = log_sigma  # log |dh / d eps| per pixel
        for i, (hidden, out) in enumerate(self.couplings):
            mask = _checkerboard(tf.shape(h), parity=i % 2, dtype=h.dtype)
            s, t = tf.split(out(hidden(tf.concat([h * mask, features], axis=-1))), 2, axis=-1)
            s = tf.tanh(s)  # bounded scales keep q from collapsing in one step
            h = mask * h + (1.0 - mask) * (h * tf.exp(s) + t)
            log_det += (1.0 - mask) * s
        u = tf.sigmoid(h)
        # log sigmoid(h) + log(1 - sigmoid(h)) = -softplus(-h) - softplus(h), stable for any h.
        log_q = -0.5 * tf.square(eps) - _LOG_SQRT_2PI - log_det + tf.nn.softplus(-h) + tf.nn.softplus(h)
        return u, tf.reduce_sum(log_q, axis=[1, 2, 3])

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_channels": self.hidden_channels,
            "num_couplings": self.num_couplings,
            "seed": self.seed,
        }


def _checkerboard(shape, parity: int, dtype) -> tf.Tensor:
    """[1, H, W, 1] of 1 where (row + column) % 2 == parity, else 0."""
    rows = tf.range(shape[1])[:, None]
    columns = tf.range(shape[2])[None, :]
    board = tf.cast(tf.equal((rows + columns) % 2, parity), dtype)
    return board[None, :, :, None]
