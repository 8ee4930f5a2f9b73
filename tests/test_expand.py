"""Tests of `tfp_glow.Expand` beyond the generic contract: its inverse is the reference squeeze."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tests.bijector_test_util import fresh
from tfp_glow import Expand


def reference_squeeze2d(x, factor=2):
    """numpy transcription of `squeeze2d` in openai/glow's tfops.py."""
    _, height, width, channels = x.shape
    x = np.reshape(x, [-1, height // factor, factor, width // factor, factor, channels])
    x = np.transpose(x, [0, 1, 3, 5, 2, 4])
    return np.reshape(x, [-1, height // factor, width // factor, channels * factor * factor])


def random_images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (2, 4, 6, 2)])
def test_inverse_matches_the_reference_squeeze2d(shape):
    x = random_images(shape)
    y = Expand(2).inverse(tf.constant(x))
    np.testing.assert_array_equal(y.numpy(), reference_squeeze2d(x))


def test_order_differs_from_space_to_depth_for_several_channels():
    x = random_images((2, 4, 4, 3))
    y = Expand(2).inverse(tf.constant(x)).numpy()
    space_to_depth = tf.nn.space_to_depth(tf.constant(x), 2).numpy()
    assert y.shape == space_to_depth.shape
    assert not np.allclose(y, space_to_depth)
    # The same elements, in another order within each pixel.
    np.testing.assert_array_equal(np.sort(y, axis=-1), np.sort(space_to_depth, axis=-1))
    # With one channel the two orders coincide.
    x1 = random_images((2, 4, 4, 1), seed=1)
    np.testing.assert_array_equal(
        Expand(2).inverse(tf.constant(x1)).numpy(),
        tf.nn.space_to_depth(tf.constant(x1), 2).numpy(),
    )


def test_factor_three():
    x = random_images((2, 6, 9, 2))
    expand = Expand(3)
    y = expand.inverse(tf.constant(x))
    assert y.shape == (2, 2, 3, 18)
    np.testing.assert_array_equal(y.numpy(), reference_squeeze2d(x, factor=3))
    np.testing.assert_array_equal(expand.forward(fresh(y)).numpy(), x)


@pytest.mark.parametrize("factor", [2, 3])
def test_round_trips_are_exact(factor):
    expand = Expand(factor)
    x = random_images((2, 6, 6, 2))
    np.testing.assert_array_equal(expand.forward(fresh(expand.inverse(tf.constant(x)))).numpy(), x)
    y = random_images((2, 2, 2, 2 * factor * factor), seed=1)
    np.testing.assert_array_equal(expand.inverse(fresh(expand.forward(tf.constant(y)))).numpy(), y)


def test_event_shapes():
    expand = Expand(2)
    assert expand.inverse_event_shape([4, 6, 3]) == [2, 3, 12]
    assert expand.inverse_event_shape([5, 4, 6, 3]) == [5, 2, 3, 12]
    assert expand.inverse_event_shape(tf.TensorShape([None, 6, 3])).as_list() == [None, 3, 12]
    assert expand.forward_event_shape([2, 3, 12]) == [4, 6, 3]
    assert expand.forward_event_shape(tf.TensorShape([2, None, 12])).as_list() == [4, None, 3]
    np.testing.assert_array_equal(expand.inverse_event_shape_tensor([4, 6, 3]).numpy(), [2, 3, 12])
    np.testing.assert_array_equal(expand.forward_event_shape_tensor([2, 3, 12]).numpy(), [4, 6, 3])
    expand3 = Expand(3)
    np.testing.assert_array_equal(expand3.inverse_event_shape_tensor([6, 9, 2]).numpy(), [2, 3, 18])
    np.testing.assert_array_equal(expand3.forward_event_shape_tensor([2, 3, 18]).numpy(), [6, 9, 2])
    # The static shapes agree with what forward and inverse produce.
    y = tf.zeros([2, 3, 18])
    assert expand3.forward(y).shape == expand3.forward_event_shape(y.shape)


@pytest.mark.parametrize("shape", [[2, 5, 4, 2], [2, 4, 7, 2]])
def test_indivisible_height_or_width_in_the_inverse_is_a_value_error(shape):
    expand = Expand(2)
    received = rf"Received: shape=\[{', '.join(map(str, shape))}\]"
    with pytest.raises(ValueError, match=received):
        expand.inverse(tf.zeros(shape))
    with pytest.raises(ValueError, match=rf"Received: shape=\[{', '.join(map(str, shape[1:]))}\]"):
        expand.inverse_event_shape(shape[1:])


def test_log_det_is_zero():
    expand = Expand(2)
    x = tf.constant(random_images((2, 4, 4, 3)))
    np.testing.assert_array_equal(expand.inverse_log_det_jacobian(x, event_ndims=3).numpy(), 0.0)
    y = expand.inverse(fresh(x))
    np.testing.assert_array_equal(expand.forward_log_det_jacobian(fresh(y), event_ndims=3).numpy(), 0.0)


def test_indivisible_channels_in_the_forward_is_a_value_error():
    expand = Expand(2)
    with pytest.raises(ValueError, match=r"Received: shape=\[1, 2, 2, 6\]"):
        expand.forward(tf.zeros([1, 2, 2, 6]))
    # The static shape function agrees with the map: no silent [4, 4, 1] (6 // 4 channels).
    with pytest.raises(ValueError, match=r"Received: shape=\[2, 2, 6\]"):
        expand.forward_event_shape([2, 2, 6])


def test_the_deprecated_squeeze_is_the_inverted_expand():
    with pytest.warns(DeprecationWarning, match="Use tfp_glow.Expand"):
        squeeze = tfp_glow.Squeeze(2)
    x = random_images((2, 4, 4, 3))
    np.testing.assert_array_equal(squeeze.forward(tf.constant(x)).numpy(), reference_squeeze2d(x))
    assert "Squeeze" not in tfp_glow.__all__
