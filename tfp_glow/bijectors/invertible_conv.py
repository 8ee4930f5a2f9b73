"""InvertibleConv1x1: the learned channel mixing of Glow, in LU form or plain."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import tensorflow as tf

from tfp_glow.bijectors._base import GlowBijector, check_image, check_int, spatial_size

__all__ = ["InvertibleConv1x1", "random_rotation"]


def random_rotation(channels: int, seed: int | None = None) -> np.ndarray:
    """A random orthogonal [C, C] matrix (the paper's initialization of W), float64."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((channels, channels)))
    # Fixing the signs of R's diagonal makes q Haar-distributed.
    return q * np.sign(np.diag(r))


class InvertibleConv1x1(GlowBijector):
    """Invertible 1x1 convolution: the same C x C matrix W at every pixel.

    Inverse (encoding, image side -> latent), at every pixel:

        x[..., :] = W y[..., :]

    Forward (generative, latent -> image side):

        y[..., :] = W^{-1} x[..., :]

    so `log|det J_forward| = -H * W_img * log|det W|`.

    With `lu_decomposed=True` (the default, the paper's LU form),

        W = P L (U + diag(sign_s * exp(log_s)))

    with a fixed permutation P, unit-lower-triangular L, strictly upper U, a fixed
    sign vector and a trained `log_s`: `log|det W| = sum(log_s)` costs nothing, and
    the diagonal can never cross zero, so W never becomes singular.

    With `lu_decomposed=False`, W is a free matrix and `log|det W|` is computed in
    float64 from a QR decomposition (XLA compiles QR, not slogdet); W^{-1} likewise.

    Both start as a random rotation (`log|det W| = 0`), drawn from `seed`.

    #### References

    [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
         https://arxiv.org/abs/1807.03039
    """

    def __init__(
        self,
        channels: int,
        lu_decomposed: bool = True,
        seed: int | None = None,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        name: str = "invertible_conv1x1",
    ):
        """Creates an InvertibleConv1x1 bijector.

        Args:
          channels: Python `int`, the number of channels C.
          lu_decomposed: Python `bool`, the LU parameterization (default `True`) or a
            free matrix (`False`).
          seed: Python `int` or `None`, seed of the random rotation W starts from.
          dtype: `tf.DType` of the variables and inputs. Default `tf.float32`.
          validate_args: Python `bool`, check the channel count at run time.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: if `channels` is not a positive integer.
        """
        parameters = dict(locals())
        channels = check_int(channels, "channels")
        with tf.name_scope(name) as name:
            self._channels = channels
            self._lu_decomposed = lu_decomposed
            w = random_rotation(channels, seed)
            if lu_decomposed:
                p, lower, upper = scipy.linalg.lu(w)  # w = p @ lower @ upper
                s = np.diag(upper)
                # Fixed parts are non-trainable variables, so that checkpoints keep them.
                self.permutation = tf.Variable(
                    p.astype(dtype.as_numpy_dtype), trainable=False, name="permutation"
                )
                self.sign_s = tf.Variable(
                    np.sign(s).astype(dtype.as_numpy_dtype), trainable=False, name="sign_s"
                )
                self.lower = tf.Variable(np.tril(lower, -1).astype(dtype.as_numpy_dtype), name="lower")
                self.upper = tf.Variable(np.triu(upper, 1).astype(dtype.as_numpy_dtype), name="upper")
                self.log_s = tf.Variable(np.log(np.abs(s)).astype(dtype.as_numpy_dtype), name="log_s")
            else:
                self.weight = tf.Variable(w.astype(dtype.as_numpy_dtype), name="weight")
            super().__init__(
                forward_min_event_ndims=3,
                is_constant_jacobian=True,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=name,
            )

    # Functions of the weights alone, written for any leading axes: StepLoop computes them
    # once for a level's stacked steps.
    _weight_functions = ("matrix", "inverse_matrix", "log_abs_det")

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def lu_decomposed(self) -> bool:
        return self._lu_decomposed

    def _triangular_factors(self):
        eye = tf.eye(self._channels, dtype=self.dtype)
        # Masks keep L unit-lower and U strictly upper whatever the optimizer does.
        lower = tf.linalg.band_part(self.lower, -1, 0) - tf.linalg.band_part(self.lower, 0, 0) + eye
        upper = tf.linalg.band_part(self.upper, 0, -1) - tf.linalg.band_part(self.upper, 0, 0)
        upper = upper + tf.linalg.diag(self.sign_s * tf.exp(self.log_s))
        return lower, upper

    def matrix(self) -> tf.Tensor:
        """W, the matrix of the encoding direction."""
        if not self._lu_decomposed:
            return tf.convert_to_tensor(self.weight)
        lower, upper = self._triangular_factors()
        return tf.matmul(self.permutation, tf.matmul(lower, upper))

    def inverse_matrix(self) -> tf.Tensor:
        """W^{-1}, the matrix of the generative direction."""
        if not self._lu_decomposed:
            w = self.weight
            if w.dtype == tf.float32:
                return tf.cast(tf.linalg.inv(tf.cast(w, tf.float64)), tf.float32)
            return tf.linalg.inv(w)
        lower, upper = self._triangular_factors()
        # W^{-1} = U^{-1} L^{-1} P^T by two triangular solves.
        eye = tf.broadcast_to(tf.eye(self._channels, dtype=self.dtype), tf.shape(lower))
        l_inv = tf.linalg.triangular_solve(lower, eye, lower=True)
        u_inv_l_inv = tf.linalg.triangular_solve(upper, l_inv, lower=False)
        return tf.matmul(u_inv_l_inv, self.permutation, transpose_b=True)

    def log_abs_det(self) -> tf.Tensor:
        """log|det W| (per pixel)."""
        if self._lu_decomposed:
            return tf.reduce_sum(self.log_s, axis=-1)
        # log|det W| = sum log|diag(R)| for W = QR: QR compiles with XLA, slogdet does not.
        w = tf.cast(self.weight, tf.float64)
        r = tf.linalg.qr(w)[1]
        return tf.cast(tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(r))), axis=-1), self.dtype)

    def _apply(self, matrix, t):
        check_image(t, self._channels, self.name)
        assertions = []
        if self.validate_args:
            assertions.append(
                tf.debugging.assert_equal(
                    tf.shape(t)[-1],
                    self._channels,
                    message=f"{self.name} expects {self._channels} channels.",
                )
            )
        with tf.control_dependencies(assertions):
            flat = tf.reshape(t, [-1, self._channels])
            out = tf.matmul(flat, matrix, transpose_b=True)  # out_i = sum_j M_ij t_j
            return tf.reshape(out, tf.shape(t))

    def _log_det(self, t):
        return spatial_size(t) * self.log_abs_det()

    def _forward_and_log_det(self, x):
        return self._apply(self.inverse_matrix(), x), -self._log_det(x)

    def _inverse_and_log_det(self, y):
        return self._apply(self.matrix(), y), self._log_det(y)
