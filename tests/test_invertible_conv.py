"""Tests of the invertible 1x1 convolutions beyond the generic contract: W, its factors, log-det."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.bijector_test_util import fresh, perturb
from tfp_glow import InvertibleConv1x1, PlainInvertibleConv1x1

VARIANTS = {"lu": InvertibleConv1x1, "plain": PlainInvertibleConv1x1}


def var_refs(variables):
    return {v.ref() for v in variables}


def lu_factors(conv):
    """P, L, U of the LU parameterization, rebuilt in numpy from the variables."""
    p = conv.permutation.numpy().astype(np.float64)
    lower = np.tril(conv.lower.numpy().astype(np.float64), -1) + np.eye(conv.channels)
    s = conv.sign_s.numpy().astype(np.float64) * np.exp(conv.log_s.numpy().astype(np.float64))
    upper = np.triu(conv.upper.numpy().astype(np.float64), 1) + np.diag(s)
    return p, lower, upper


@pytest.mark.parametrize("conv_class", VARIANTS.values(), ids=VARIANTS.keys())
def test_starts_as_a_rotation(conv_class):
    conv = conv_class(4, seed=3)
    w = conv.matrix().numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-6)
    np.testing.assert_allclose(conv.log_abs_det().numpy(), 0.0, atol=1e-6)
    # Not a trivial rotation: the channels are really mixed.
    assert np.max(np.abs(w - np.eye(4))) > 0.1


def test_lu_matrix_is_p_l_u():
    conv = InvertibleConv1x1(4, seed=3, dtype=tf.float64)
    perturb(conv, seed=1, scale=0.3)
    p, lower, upper = lu_factors(conv)
    # L unit-lower, U upper, P a permutation matrix.
    np.testing.assert_array_equal(np.diag(lower), 1.0)
    np.testing.assert_array_equal(np.sort(p.sum(axis=0)), 1.0)
    np.testing.assert_array_equal(np.sort(p.ravel())[:-4], 0.0)
    np.testing.assert_allclose(conv.matrix().numpy(), p @ lower @ upper, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.inverse_matrix().numpy() @ conv.matrix().numpy(), np.eye(4), atol=1e-10)


@pytest.mark.parametrize("conv_class", VARIANTS.values(), ids=VARIANTS.keys())
def test_inverse_matrix_inverts_matrix_after_training(conv_class):
    conv = conv_class(4, seed=3)
    perturb(conv, seed=2, scale=0.3)
    w, w_inv = conv.matrix().numpy(), conv.inverse_matrix().numpy()
    np.testing.assert_allclose(w_inv @ w, np.eye(4), atol=1e-5)
    np.testing.assert_allclose(w_inv, np.linalg.inv(w.astype(np.float64)), rtol=1e-4, atol=1e-5)


def test_lu_log_det_formula():
    conv = InvertibleConv1x1(4, seed=3, dtype=tf.float64)
    perturb(conv, seed=4, scale=0.5)
    log_s = conv.log_s.numpy()
    assert abs(log_s.sum()) > 0.1
    x = tf.random.stateless_normal([2, 3, 5, 4], [0, 1], dtype=tf.float64)  # H != W
    fldj = conv.forward_log_det_jacobian(x, event_ndims=3).numpy()
    np.testing.assert_allclose(np.broadcast_to(fldj, [2]), -3 * 5 * log_s.sum(), rtol=1e-12)
    ildj = conv.inverse_log_det_jacobian(fresh(x), event_ndims=3).numpy()
    np.testing.assert_allclose(np.broadcast_to(ildj, [2]), 3 * 5 * log_s.sum(), rtol=1e-12)
    # ... which is log|det W| per pixel.
    np.testing.assert_allclose(log_s.sum(), np.linalg.slogdet(conv.matrix().numpy())[1], rtol=1e-10)


def test_trainable_variables():
    lu = InvertibleConv1x1(4, seed=0)
    assert var_refs(lu.trainable_variables) == var_refs([lu.lower, lu.upper, lu.log_s])
    for fixed in (lu.permutation, lu.sign_s):
        assert not fixed.trainable
        assert fixed.ref() in var_refs(lu.variables)  # checkpoints keep them
    plain = PlainInvertibleConv1x1(4, seed=0)
    assert var_refs(plain.trainable_variables) == var_refs([plain.weight])


@pytest.mark.parametrize("value", [-30.0, 30.0])
def test_extreme_log_s_keeps_w_invertible_and_log_det_finite(value):
    conv = InvertibleConv1x1(4, seed=3, dtype=tf.float64)
    p, _, _ = lu_factors(conv)
    sign_s = conv.sign_s.numpy()
    conv.log_s.assign(tf.fill([4], tf.constant(value, tf.float64)))
    x = tf.random.stateless_normal([2, 2, 2, 4], [0, 2], dtype=tf.float64)
    fldj = conv.forward_log_det_jacobian(x, event_ndims=3).numpy()
    ildj = conv.inverse_log_det_jacobian(fresh(x), event_ndims=3).numpy()
    assert np.all(np.isfinite(fldj)) and np.all(np.isfinite(ildj))
    np.testing.assert_allclose(np.broadcast_to(fldj, [2]), -2 * 2 * 4 * value, rtol=1e-12)
    np.testing.assert_allclose(np.broadcast_to(ildj, [2]), 2 * 2 * 4 * value, rtol=1e-12)
    # W = P L U still holds, with U's diagonal sign_s * exp(log_s): it shrinks or grows
    # but keeps its signs, so det W = det(P) * prod(diag U) never reaches or crosses zero.
    _, lower, upper = lu_factors(conv)
    np.testing.assert_array_equal(np.sign(np.diag(upper)), sign_s)
    assert np.all(np.diag(upper) != 0)
    w, w_inv = conv.matrix().numpy(), conv.inverse_matrix().numpy()
    np.testing.assert_allclose(w, p @ lower @ upper, rtol=1e-12, atol=1e-12)
    assert np.all(np.isfinite(w)) and np.all(np.isfinite(w_inv))
    if value > 0:  # well conditioned: W^{-1} = U^{-1} L^{-1} P^T numerically too
        np.testing.assert_allclose(upper @ w_inv @ p @ lower, np.eye(4), atol=1e-8)
        y = conv.inverse(fresh(x))
        np.testing.assert_allclose(conv.forward(fresh(y)).numpy(), x.numpy(), rtol=1e-8, atol=1e-8)


def test_masks_ignore_the_other_triangles():
    conv = InvertibleConv1x1(4, seed=3)
    perturb(conv, seed=5, scale=0.3)
    w, w_inv = conv.matrix().numpy(), conv.inverse_matrix().numpy()
    x = tf.random.stateless_normal([2, 2, 2, 4], [0, 3])
    y = conv.forward(x).numpy()
    garbage = 100.0 * np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    # The upper triangle and diagonal of `lower`, the lower triangle and diagonal of `upper`.
    conv.lower.assign(np.tril(conv.lower.numpy(), -1) + np.triu(garbage))
    conv.upper.assign(np.triu(conv.upper.numpy(), 1) + np.tril(garbage))
    np.testing.assert_array_equal(conv.matrix().numpy(), w)
    np.testing.assert_array_equal(conv.inverse_matrix().numpy(), w_inv)
    np.testing.assert_array_equal(conv.forward(fresh(x)).numpy(), y)


def test_plain_log_det_matches_numpy_slogdet():
    conv = PlainInvertibleConv1x1(4, seed=3, dtype=tf.float32)
    perturb(conv, seed=6, scale=0.5)
    expected = np.linalg.slogdet(conv.weight.numpy().astype(np.float64))[1]
    assert abs(expected) > 0.1  # far from the rotation's 0
    np.testing.assert_allclose(conv.log_abs_det().numpy(), expected, rtol=1e-5, atol=1e-5)
    x = tf.random.stateless_normal([2, 3, 5, 4], [0, 4])
    fldj = conv.forward_log_det_jacobian(x, event_ndims=3).numpy()
    np.testing.assert_allclose(np.broadcast_to(fldj, [2]), -15 * expected, rtol=1e-5)


@pytest.mark.parametrize("conv_class", VARIANTS.values(), ids=VARIANTS.keys())
def test_seed_determines_w(conv_class):
    first = conv_class(4, seed=7).matrix().numpy()
    again = conv_class(4, seed=7).matrix().numpy()
    other = conv_class(4, seed=8).matrix().numpy()
    np.testing.assert_array_equal(first, again)
    assert np.max(np.abs(first - other)) > 0.1


@pytest.mark.parametrize("conv_class", VARIANTS.values(), ids=VARIANTS.keys())
def test_xla_matches_eager_including_gradients(conv_class):
    conv = conv_class(4, seed=3)
    perturb(conv, seed=8, scale=0.3)
    x = tf.random.stateless_normal([2, 2, 2, 4], [0, 5])

    def step(x):
        with tf.GradientTape(persistent=True) as tape:
            z = conv.inverse(x)
            ildj = conv.inverse_log_det_jacobian(x, event_ndims=3)
            nll = tf.reduce_sum(0.5 * tf.square(z)) - tf.reduce_sum(ildj)
            log_abs_det = conv.log_abs_det()
        grads = tape.gradient(nll, conv.trainable_variables)
        log_det_grads = tape.gradient(log_abs_det, conv.trainable_variables)
        return z, conv.forward(z), ildj, grads, log_det_grads

    z, x_back, ildj, grads, log_det_grads = tf.function(step, jit_compile=True)(x)
    z_eager, _, ildj_eager, grads_eager, _ = step(fresh(x))
    np.testing.assert_allclose(z.numpy(), z_eager.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ildj.numpy(), ildj_eager.numpy(), rtol=1e-5, atol=1e-5)
    for g, g_eager in zip(grads, grads_eager, strict=True):
        assert g is not None
        np.testing.assert_allclose(g.numpy(), g_eager.numpy(), rtol=1e-4, atol=1e-4)
    if conv_class is InvertibleConv1x1:
        # d sum(log_s) / d log_s = 1.
        index = [v.ref() for v in conv.trainable_variables].index(conv.log_s.ref())
        np.testing.assert_allclose(log_det_grads[index].numpy(), 1.0, rtol=1e-6)
    else:
        # d log|det W| / dW = W^{-T}.
        w = conv.weight.numpy().astype(np.float64)
        np.testing.assert_allclose(log_det_grads[0].numpy(), np.linalg.inv(w).T, rtol=1e-4, atol=1e-4)
