"""Tests of the networks' convolutions: the edge-bias (border indicator) term and its stacked form."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfp_glow.functional.conv import border_map, conv2d


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_edge_bias_is_a_channel_of_ones_under_zero_padding(size):
    x = tf.random.stateless_normal([2, 5, 6, 3], [0, 1], dtype=tf.float64)
    kernel = tf.random.stateless_normal([size, size, 4, 7], [0, 2], dtype=tf.float64)
    with_ones = tf.concat([x, tf.ones_like(x[..., :1])], -1)
    expected = tf.nn.conv2d(with_ones, kernel, strides=1, padding="SAME")
    np.testing.assert_allclose(conv2d(x, kernel, edge_bias=True), expected, rtol=1e-12, atol=1e-12)


def test_edge_bias_with_leading_batch_dimensions():
    x = tf.random.stateless_normal([2, 3, 4, 4, 2], [0, 3], dtype=tf.float64)
    kernel = tf.random.stateless_normal([3, 3, 3, 5], [0, 4], dtype=tf.float64)
    flat = conv2d(tf.reshape(x, [6, 4, 4, 2]), kernel, edge_bias=True)
    np.testing.assert_allclose(conv2d(x, kernel, edge_bias=True), tf.reshape(flat, [2, 3, 4, 4, 5]))


def test_border_map_of_stacked_kernels_is_each_kernels_map():
    kernels = tf.random.stateless_normal([4, 3, 3, 1, 6], [0, 5], dtype=tf.float64)
    stacked = border_map(kernels, 5, 7)
    assert stacked.shape == [4, 5, 7, 6]
    for k in range(4):
        ones = tf.ones([1, 5, 7, 1], tf.float64)
        expected = tf.nn.conv2d(ones, kernels[k], strides=1, padding="SAME")[0]
        np.testing.assert_allclose(stacked[k], expected, rtol=1e-12, atol=1e-12)


def test_border_map_of_a_dynamic_image_size():
    kernel = tf.random.stateless_normal([3, 3, 1, 2], [0, 6], dtype=tf.float64)
    compute = tf.function(
        lambda x: border_map(kernel, tf.shape(x)[1], tf.shape(x)[2]),
        input_signature=[tf.TensorSpec([None, None, None, 1], tf.float64)],
    )
    expected = tf.nn.conv2d(tf.ones([1, 4, 6, 1], tf.float64), kernel, strides=1, padding="SAME")[0]
    np.testing.assert_allclose(compute(tf.zeros([1, 4, 6, 1], tf.float64)), expected, rtol=1e-12, atol=1e-12)
