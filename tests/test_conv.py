"""Tests of the networks' convolutions: the edge-bias (border indicator) term and its stacked form."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfp_glow.functional.conv import apply_conv, border_map, conv2d, conv_weights, image_conv2d, thin_conv2d


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


def _conv_and_gradients(conv, x, kernel):
    with tf.GradientTape() as tape:
        tape.watch([x, kernel])
        out = conv(x, kernel)
        loss = tf.reduce_sum(tf.sin(out))
    return [out, *tape.gradient(loss, [x, kernel])]


@pytest.mark.parametrize(
    "image, kernel_shape",
    [
        ([3, 5, 6, 2], [3, 3, 2, 16]),  # few inputs: x_a into the hidden width
        ([3, 5, 6, 16], [3, 3, 16, 4]),  # few outputs: the hidden width into (t, h)
        ([2, 1, 1, 3], [3, 3, 3, 12]),  # every tap but the centre off the image
        ([2, 2, 7, 12], [3, 3, 12, 8]),
    ],
)
def test_thin_conv2d_is_conv2d_with_its_gradients(image, kernel_shape):
    x = tf.random.stateless_normal(image, [1, 1], dtype=tf.float64)
    kernel = tf.random.stateless_normal(kernel_shape, [1, 2], dtype=tf.float64)
    for got, want in zip(
        _conv_and_gradients(thin_conv2d, x, kernel),
        _conv_and_gradients(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"), x, kernel),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16, tf.float16])
def test_thin_conv2d_in_low_precision_and_an_unknown_batch(dtype):
    x = tf.random.stateless_normal([4, 6, 6, 12], [2, 1])
    kernel = 0.1 * tf.random.stateless_normal([3, 3, 12, 4], [2, 2])
    compute = tf.function(
        thin_conv2d,
        input_signature=[tf.TensorSpec([None, None, None, 12], dtype), tf.TensorSpec([3, 3, 12, 4], dtype)],
    )
    out = compute(tf.cast(x, dtype), tf.cast(kernel, dtype))
    assert out.dtype == dtype and out.shape == [4, 6, 6, 4]
    tolerance = {tf.float32: 1e-5, tf.bfloat16: 5e-2, tf.float16: 5e-3}[dtype]
    want = tf.nn.conv2d(x, kernel, 1, "SAME")
    np.testing.assert_allclose(tf.cast(out, tf.float32), want, rtol=tolerance, atol=tolerance)


def _op_types(fn, *args) -> set:
    return {op.type for op in tf.function(fn).get_concrete_function(*args).graph.get_operations()}


@pytest.mark.parametrize(
    "kernel_shape, thin",
    [([3, 3, 2, 16], True), ([3, 3, 16, 4], True), ([3, 3, 2, 4], False), ([3, 3, 16, 16], False)]
    + [([1, 1, 2, 16], False), ([5, 5, 2, 16], False)],
)
def test_image_conv2d_takes_the_thin_form_for_thin_3x3_kernels_on_cpu(kernel_shape, thin, monkeypatch):
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])  # a CPU-only machine
    x = tf.zeros([2, 4, 4, kernel_shape[2]])
    ops = _op_types(image_conv2d, x, tf.zeros(kernel_shape))
    assert ("DepthwiseConv2dNative" in ops) == thin
    assert ("Conv2D" in ops) == (not thin)


def test_image_conv2d_keeps_conv2d_under_xla():
    x, kernel = tf.zeros([2, 4, 4, 2]), tf.zeros([3, 3, 2, 16])
    ops = {
        op.type
        for op in tf.function(image_conv2d, jit_compile=True)
        .get_concrete_function(x, kernel)
        .graph.get_operations()
    }
    assert "Conv2D" in ops and "DepthwiseConv2dNative" not in ops


def test_image_conv2d_keeps_conv2d_where_an_accelerator_is_visible(monkeypatch):
    monkeypatch.setattr(
        tf.config, "list_logical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else []
    )
    ops = _op_types(image_conv2d, tf.zeros([2, 4, 4, 2]), tf.zeros([3, 3, 2, 16]))
    assert "Conv2D" in ops and "DepthwiseConv2dNative" not in ops


def test_image_conv2d_of_thin_kernels_with_leading_batch_dimensions():
    x = tf.random.stateless_normal([2, 3, 4, 5, 2], [3, 1], dtype=tf.float64)
    kernel = tf.random.stateless_normal([3, 3, 2, 16], [3, 2], dtype=tf.float64)
    flat = tf.nn.conv2d(tf.reshape(x, [6, 4, 5, 2]), kernel, 1, "SAME")
    np.testing.assert_allclose(
        image_conv2d(x, kernel), tf.reshape(flat, [2, 3, 4, 5, 16]), rtol=1e-10, atol=1e-10
    )


def test_thin_conv2d_refuses_a_kernel_that_is_not_3x3():
    with pytest.raises(
        ValueError, match=r"3x3 kernel \[3, 3, C, O\]. Received: kernel shape \[1, 1, 2, 16\]"
    ):
        thin_conv2d(tf.zeros([1, 4, 4, 2]), tf.zeros([1, 1, 2, 16]))


def test_conv_weights_of_stacked_thin_kernels_are_each_kernels(monkeypatch):
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])  # a CPU-only machine
    kernels = tf.random.stateless_normal([5, 3, 3, 2, 16], [4, 1], dtype=tf.float64)
    outputs = tf.random.stateless_normal([5, 3, 3, 16, 4], [4, 2], dtype=tf.float64)
    x = tf.random.stateless_normal([2, 4, 4, 2], [4, 3], dtype=tf.float64)
    h = tf.random.stateless_normal([2, 4, 4, 16], [4, 4], dtype=tf.float64)
    stacked_in, stacked_out = conv_weights(kernels), conv_weights(outputs)
    assert set(stacked_in) == {"of_taps"} and set(stacked_out) == {"to_taps"}
    for k in range(5):
        one_in = {"of_taps": stacked_in["of_taps"][k]}
        one_out = {"to_taps": stacked_out["to_taps"][k]}
        np.testing.assert_allclose(apply_conv(one_in, x), tf.nn.conv2d(x, kernels[k], 1, "SAME"), atol=1e-10)
        np.testing.assert_allclose(apply_conv(one_out, h), tf.nn.conv2d(h, outputs[k], 1, "SAME"), atol=1e-10)


def test_thin_form_with_an_unknown_channel_count(monkeypatch):
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])  # a CPU-only machine
    kernel = tf.random.stateless_normal([3, 3, 2, 16], [5, 1])
    compute = tf.function(
        lambda x: apply_conv(conv_weights(kernel), x), input_signature=[tf.TensorSpec([None] * 4)]
    )
    x = tf.random.stateless_normal([2, 4, 5, 2], [5, 2])
    np.testing.assert_allclose(compute(x), tf.nn.conv2d(x, kernel, 1, "SAME"), atol=1e-5)
