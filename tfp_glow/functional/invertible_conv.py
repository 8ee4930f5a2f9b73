"""The invertible 1x1 convolution's maths: one C x C matrix W at every pixel (forward = generative).

    inverse (encoding):   x = W y           log|det J_inverse| = H * W_img * log|det W|
    forward (generative): y = W^{-1} x

Two parameterizations of W:
  - LU (the paper's): W = P L (U + diag(sign_s * exp(log_s))), with a fixed permutation P, unit
    lower-triangular L, strictly upper U and a fixed sign vector: log|det W| = sum(log_s), and the
    diagonal cannot cross zero, so W is never singular. Parameters `permutation` and `sign_s`
    (fixed), `lower`, `upper`, `log_s`.
  - plain: a free W (`weight`); log|det W| and W^{-1} are computed in float64, the log-det from a
    QR decomposition (XLA compiles QR, not slogdet).
Both start as a random rotation (log|det W| = 0). Every function of the parameters takes any
leading axes (a level's stacked steps).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfp_glow._checks import spatial_size
from tfp_glow.variables import fixed

__all__ = [
    "forward",
    "inverse",
    "lu_init_params",
    "lu_weights",
    "plain_init_params",
    "plain_weights",
    "random_rotation",
]


def random_rotation(channels: int, seed: int | None = None) -> np.ndarray:
    """A random orthogonal [C, C] matrix (the paper's initialization of W), float64."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((channels, channels)))
    # Fixing the signs of R's diagonal makes q Haar-distributed.
    return q * np.sign(np.diag(r))


def lu_init_params(channels: int, seed: int | None = None, dtype: tf.DType = tf.float32) -> dict:
    """The LU factors of a random rotation: W = P L U with partial pivoting."""
    w = random_rotation(channels, seed)
    packed, rows = tf.linalg.lu(tf.constant(w, tf.float64))
    packed, rows = packed.numpy(), rows.numpy()
    lower = np.tril(packed, -1) + np.eye(channels)
    upper = np.triu(packed)
    # tf.linalg.lu factors the rows of W in the order `rows`: W[rows] = L U, so W = P L U with
    # P = I[rows]^T.
    permutation = np.eye(channels)[rows].T
    s = np.diag(upper)
    numpy_dtype = dtype.as_numpy_dtype
    return {
        "permutation": fixed(permutation.astype(numpy_dtype)),
        "sign_s": fixed(np.sign(s).astype(numpy_dtype)),
        "lower": np.tril(lower, -1).astype(numpy_dtype),
        "upper": np.triu(upper, 1).astype(numpy_dtype),
        "log_s": np.log(np.abs(s)).astype(numpy_dtype),
    }


def plain_init_params(channels: int, seed: int | None = None, dtype: tf.DType = tf.float32) -> dict:
    """A random rotation as the free matrix W."""
    return {"weight": random_rotation(channels, seed).astype(dtype.as_numpy_dtype)}


def lu_factors(params: dict) -> tuple[tf.Tensor, tf.Tensor]:
    """(L, U + diag(sign_s * exp(log_s))); masks keep L unit-lower and U strictly upper whatever
    the optimizer does to the other triangles."""
    lower, upper = params["lower"], params["upper"]
    eye = tf.eye(lower.shape[-1], dtype=lower.dtype)
    lower = tf.linalg.band_part(lower, -1, 0) - tf.linalg.band_part(lower, 0, 0) + eye
    upper = tf.linalg.band_part(upper, 0, -1) - tf.linalg.band_part(upper, 0, 0)
    return lower, upper + tf.linalg.diag(params["sign_s"] * tf.exp(params["log_s"]))


def lu_weights(params: dict) -> dict:
    """W = P L U, W^{-1} = U^{-1} L^{-1} P^T (two triangular solves) and log|det W| = sum(log_s)."""
    lower, upper = lu_factors(params)
    permutation = params["permutation"]
    eye = tf.broadcast_to(tf.eye(lower.shape[-1], dtype=lower.dtype), tf.shape(lower))
    lower_inverse = tf.linalg.triangular_solve(lower, eye, lower=True)
    upper_inverse_lower_inverse = tf.linalg.triangular_solve(upper, lower_inverse, lower=False)
    return {
        "matrix": tf.matmul(permutation, tf.matmul(lower, upper)),
        "inverse_matrix": tf.matmul(upper_inverse_lower_inverse, permutation, transpose_b=True),
        "log_det": tf.reduce_sum(params["log_s"], axis=-1),
    }


def plain_weights(params: dict) -> dict:
    """W, W^{-1} and log|det W| = sum log|diag(R)| for W = QR, both in float64."""
    w = params["weight"]
    w64 = tf.cast(w, tf.float64)
    r = tf.linalg.qr(w64)[1]
    log_det = tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(r))), axis=-1)
    return {
        "matrix": w,
        "inverse_matrix": tf.cast(tf.linalg.inv(w64), w.dtype),
        "log_det": tf.cast(log_det, w.dtype),
    }


def _apply(matrix: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """out[..., i] = sum_j M[i, j] t[..., j] at every pixel."""
    flat = tf.reshape(t, [-1, matrix.shape[-1]])
    return tf.reshape(tf.matmul(flat, matrix, transpose_b=True), tf.shape(t))


def forward(weights: dict, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(W^{-1} x, -H W log|det W|) per pixel; the log-det is a scalar."""
    return _apply(weights["inverse_matrix"], x), -spatial_size(x) * weights["log_det"]


def inverse(weights: dict, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(W y, H W log|det W|) per pixel."""
    return _apply(weights["matrix"], y), spatial_size(y) * weights["log_det"]
