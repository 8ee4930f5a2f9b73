"""Tests of `tfp_glow.Squeeze` beyond the generic contract: element order and shapes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.bijector_test_util import fresh
from tfp_glow import Squeeze


def reference_squeeze2d(x, factor=2):
    """numpy transcription of `squeeze2d` in openai/glow's tfops.py."""
    _, height, width, channels = x.shape
    x = np.reshape(x, [-1, height // factor, factor, width // factor, factor, channels])
    x = np.transpose(x, [0, 1, 3, 5, 2, 4])
    return np.reshape(x, [-1, height // factor, width // factor, channels * factor * factor])


def random_images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (2, 4, 6, 2)])
def test_forward_matches_the_reference_squeeze2d(shape):
    x = random_images(shape)
    y = Squeeze(2).forward(tf.constant(x))
    np.testing.assert_array_equal(y.numpy(), reference_squeeze2d(x))


def test_order_differs_from_space_to_depth_for_several_channels():
    x = random_images((2, 4, 4, 3))
    y = Squeeze(2).forward(tf.constant(x)).numpy()
    space_to_depth = tf.nn.space_to_depth(tf.constant(x), 2).numpy()
    assert y.shape == space_to_depth.shape
    assert not np.allclose(y, space_to_depth)
    # The same elements, in another order within each pixel.
    np.testing.assert_array_equal(np.sort(y, axis=-1), np.sort(space_to_depth, axis=-1))
    # With one channel the two orders coincide.
    x1 = random_images((2, 4, 4, 1), seed=1)
    np.testing.assert_array_equal(
        Squeeze(2).forward(tf.constant(x1)).numpy(),
        tf.nn.space_to_depth(tf.constant(x1), 2).numpy(),
    )


def test_factor_three():
    x = random_images((2, 6, 9, 2))
    squeeze = Squeeze(3)
    y = squeeze.forward(tf.constant(x))
    assert y.shape == (2, 2, 3, 18)
    np.testing.assert_array_equal(y.numpy(), reference_squeeze2d(x, factor=3))
    np.testing.assert_array_equal(squeeze.inverse(fresh(y)).numpy(), x)


@pytest.mark.parametrize("factor", [2, 3])
def test_inverse_is_exact(factor):
    squeeze = Squeeze(factor)
    x = random_images((2, 6, 6, 2))
    np.testing.assert_array_equal(squeeze.inverse(fresh(squeeze.forward(tf.constant(x)))).numpy(), x)
    y = random_images((2, 2, 2, 2 * factor * factor), seed=1)
    np.testing.assert_array_equal(squeeze.forward(fresh(squeeze.inverse(tf.constant(y)))).numpy(), y)


def test_event_shapes():
    squeeze = Squeeze(2)
    assert squeeze.forward_event_shape([4, 6, 3]) == [2, 3, 12]
    assert squeeze.forward_event_shape([5, 4, 6, 3]) == [5, 2, 3, 12]
    assert squeeze.forward_event_shape(tf.TensorShape([None, 6, 3])).as_list() == [None, 3, 12]
    assert squeeze.inverse_event_shape([2, 3, 12]) == [4, 6, 3]
    assert squeeze.inverse_event_shape(tf.TensorShape([2, None, 12])).as_list() == [4, None, 3]
    np.testing.assert_array_equal(squeeze.forward_event_shape_tensor([4, 6, 3]).numpy(), [2, 3, 12])
    np.testing.assert_array_equal(squeeze.inverse_event_shape_tensor([2, 3, 12]).numpy(), [4, 6, 3])
    squeeze3 = Squeeze(3)
    np.testing.assert_array_equal(squeeze3.forward_event_shape_tensor([6, 9, 2]).numpy(), [2, 3, 18])
    np.testing.assert_array_equal(squeeze3.inverse_event_shape_tensor([2, 3, 18]).numpy(), [6, 9, 2])
    # The static shapes agree with what forward and inverse produce.
    x = tf.zeros([6, 9, 2])
    assert squeeze3.forward(x).shape == squeeze3.forward_event_shape(x.shape)


@pytest.mark.parametrize("shape", [[2, 5, 4, 2], [2, 4, 7, 2]])
def test_indivisible_height_or_width_is_a_value_error(shape):
    squeeze = Squeeze(2)
    received = rf"Received: shape=\[{', '.join(map(str, shape))}\]"
    with pytest.raises(ValueError, match=received):
        squeeze.forward(tf.zeros(shape))
    with pytest.raises(ValueError, match=rf"Received: shape=\[{', '.join(map(str, shape[1:]))}\]"):
        squeeze.forward_event_shape(shape[1:])


def test_log_det_is_zero():
    squeeze = Squeeze(2)
    x = tf.constant(random_images((2, 4, 4, 3)))
    np.testing.assert_array_equal(squeeze.forward_log_det_jacobian(x, event_ndims=3).numpy(), 0.0)
    y = squeeze.forward(fresh(x))
    np.testing.assert_array_equal(squeeze.inverse_log_det_jacobian(fresh(y), event_ndims=3).numpy(), 0.0)


def test_indivisible_channels_in_the_inverse_is_a_value_error():
    squeeze = Squeeze(2)
    with pytest.raises(ValueError, match=r"Received: shape=\[1, 2, 2, 6\]"):
        squeeze.inverse(tf.zeros([1, 2, 2, 6]))
    # The static shape function agrees with the map: no silent [4, 4, 1] (6 // 4 channels).
    with pytest.raises(ValueError, match=r"Received: shape=\[2, 2, 6\]"):
        squeeze.inverse_event_shape([2, 2, 6])
