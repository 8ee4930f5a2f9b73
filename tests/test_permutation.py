"""Tests of `tfp_glow.ChannelPermutation` beyond the generic contract: which permutation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tests.bijector_test_util import fresh
from tfp_glow import ChannelPermutation


def images(channels=6, seed=0):
    return tf.random.stateless_normal([2, 3, 3, channels], [seed, 13])


def test_reverse_reverses_the_channels():
    permutation = ChannelPermutation(6, "reverse")
    x = images()
    np.testing.assert_array_equal(permutation.forward(x).numpy(), x.numpy()[..., ::-1])
    np.testing.assert_array_equal(permutation.inverse(fresh(x)).numpy(), x.numpy()[..., ::-1])
    np.testing.assert_array_equal(permutation.permutation.numpy(), [5, 4, 3, 2, 1, 0])


def test_shuffle_is_a_seeded_permutation():
    first = ChannelPermutation(8, "shuffle", seed=1).permutation.numpy()
    again = ChannelPermutation(8, "shuffle", seed=1).permutation.numpy()
    other = ChannelPermutation(8, "shuffle", seed=2).permutation.numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    for perm in (first, other):
        np.testing.assert_array_equal(np.sort(perm), np.arange(8))
        assert not np.array_equal(perm, np.arange(8))
    # The bijector applies the stored order, and its inverse undoes it.
    shuffle = ChannelPermutation(8, "shuffle", seed=1)
    x = images(8)
    y = shuffle.forward(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy()[..., first])
    np.testing.assert_array_equal(shuffle.inverse(fresh(y)).numpy(), x.numpy())


def test_explicit_permutation_matches_tfp_permute():
    perm = [2, 0, 5, 1, 4, 3]
    permutation = ChannelPermutation(6, permutation=perm)
    permute = tfp.bijectors.Permute(perm, axis=-1)
    x = images()
    np.testing.assert_array_equal(permutation.forward(x).numpy(), x.numpy()[..., perm])
    np.testing.assert_array_equal(permutation.forward(fresh(x)).numpy(), permute.forward(fresh(x)).numpy())
    np.testing.assert_array_equal(permutation.inverse(fresh(x)).numpy(), permute.inverse(fresh(x)).numpy())
    np.testing.assert_array_equal(permutation.forward_log_det_jacobian(fresh(x), event_ndims=3).numpy(), 0.0)
    np.testing.assert_array_equal(permutation.inverse_log_det_jacobian(fresh(x), event_ndims=3).numpy(), 0.0)


def test_unknown_kind_is_a_value_error():
    with pytest.raises(ValueError, match=r"Received: kind='rotate'"):
        ChannelPermutation(4, "rotate")


@pytest.mark.parametrize(
    "perm, received",
    [
        ([0, 0, 1, 2], r"\[0, 0, 1, 2\]"),
        ([0, 1, 2], r"\[0, 1, 2\]"),
        ([1, 2, 3, 4], r"\[1, 2, 3, 4\]"),
    ],
    ids=["repeated", "too_short", "out_of_range"],
)
def test_non_permutation_is_a_value_error(perm, received):
    with pytest.raises(ValueError, match=rf"range\(4\).*Received: permutation={received}"):
        ChannelPermutation(4, permutation=perm)


def test_permutation_is_a_non_trainable_variable():
    permutation = ChannelPermutation(4, "shuffle", seed=0)
    assert isinstance(permutation.permutation, tf.Variable)
    assert not permutation.permutation.trainable
    assert permutation.permutation.ref() in {v.ref() for v in permutation.variables}
    assert permutation.trainable_variables == ()
