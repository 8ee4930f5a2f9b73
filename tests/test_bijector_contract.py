"""Every bijector of the registry against the same template: round trips, log-dets, shapes, modes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tests.bijector_cases import CASES, names, shared
from tests.bijector_test_util import MODES, compile_fn, forward_jacobian_log_det, fresh, perturb

ALL = names()


def _out_ndims(bijector, case):
    return bijector.forward_event_shape(case.event_shape).rank


@pytest.mark.parametrize("name", ALL)
def test_log_det_equals_autodiff_jacobian(name):
    case = CASES[name]
    bijector = shared(name)
    x = case.sample_input([2], tf.float64)
    kwargs = case.kwargs([2])
    expected = forward_jacobian_log_det(bijector, x, len(case.event_shape), **kwargs)
    actual = bijector.forward_log_det_jacobian(fresh(x), event_ndims=len(case.event_shape), **kwargs)
    actual = np.broadcast_to(actual.numpy(), expected.shape)
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-9)


# Every case in every mode and dtype, but the Glows under XLA in float32 only: each XLA compile
# of a Glow takes seconds, and float64 holds for them in the other two modes.
ROUND_TRIPS = [
    pytest.param(name, dtype, mode, id=f"{name}-{dtype_id}-{mode}")
    for name in ALL
    for dtype, dtype_id in ((tf.float32, "f32"), (tf.float64, "f64"))
    for mode in MODES
    if not (CASES[name].is_glow and dtype == tf.float64 and mode == "xla")
]


@pytest.mark.parametrize("name, dtype, mode", ROUND_TRIPS)
def test_round_trip_and_log_det_consistency(name, dtype, mode):
    case = CASES[name]
    bijector = shared(name, dtype)
    event_ndims, out_ndims = len(case.event_shape), _out_ndims(bijector, case)
    x = case.sample_input([3], dtype)
    kwargs = case.kwargs([3])

    def forward(x):
        return bijector.forward(x, **kwargs), bijector.forward_log_det_jacobian(
            x, event_ndims=event_ndims, **kwargs
        )

    def inverse(y):
        return bijector.inverse(y, **kwargs), bijector.inverse_log_det_jacobian(
            y, event_ndims=out_ndims, **kwargs
        )

    forward, inverse = compile_fn(forward, mode), compile_fn(inverse, mode)
    y, fldj = forward(x)
    x_back, ildj = inverse(fresh(y))
    y_back, _ = forward(fresh(x_back))
    tol = 1e-4 if dtype == tf.float32 else 1e-10
    np.testing.assert_allclose(x_back.numpy(), x.numpy(), atol=tol)
    np.testing.assert_allclose(y_back.numpy(), y.numpy(), atol=tol)
    np.testing.assert_allclose(fldj.numpy(), -ildj.numpy(), rtol=tol, atol=tol)
    assert y.dtype == dtype and x_back.dtype == dtype


@pytest.mark.parametrize("batch_shape", [[], [3], [2, 3]], ids=["none", "N", "NxM"])
@pytest.mark.parametrize("name", ALL)
def test_batch_shapes(name, batch_shape):
    case = CASES[name]
    bijector = shared(name)
    x = case.sample_input(batch_shape, tf.float64)
    kwargs = case.kwargs(batch_shape)
    y = bijector.forward(x, **kwargs)
    out_event = bijector.forward_event_shape(case.event_shape)
    assert y.shape == (*batch_shape, *out_event)
    assert bijector.forward_log_det_jacobian(x, event_ndims=len(case.event_shape), **kwargs).shape in (
        tuple(batch_shape),
        (),  # constant-Jacobian bijectors may return one scalar
    )
    np.testing.assert_allclose(bijector.inverse(fresh(y), **kwargs).numpy(), x.numpy(), atol=1e-10)
    if batch_shape:
        # Each batch member is mapped on its own.
        flat_x = tf.reshape(x, [-1, *case.event_shape])
        flat_kwargs = {k: tf.reshape(v, [-1]) if k == "labels" else v for k, v in kwargs.items()}
        np.testing.assert_allclose(
            tf.reshape(y, [-1, *out_event]).numpy(),
            bijector.forward(fresh(flat_x), **flat_kwargs).numpy(),
            atol=1e-10,
        )


@pytest.mark.parametrize("name", ALL)
def test_dynamic_shapes(name):
    case = CASES[name]
    bijector = shared(name)
    x = case.sample_input([2], tf.float64)
    kwargs = case.kwargs([2])
    signature = [tf.TensorSpec([None] * (len(case.event_shape) + 1), tf.float64)]
    if case.is_glow:
        signature = [tf.TensorSpec([None, case.event_shape[0]], tf.float64)]  # D fixes the image shape
    round_trip = tf.function(
        lambda x: bijector.inverse(bijector.forward(x, **kwargs), **kwargs), input_signature=signature
    )
    np.testing.assert_allclose(round_trip(x).numpy(), x.numpy(), atol=1e-10)


@pytest.mark.parametrize("name", names(lambda case: case.has_parameters))
def test_parameters_move_the_output(name):
    case = CASES[name]
    bijector = case.build(tf.float64, perturb_parameters=False)
    x = case.sample_input([2], tf.float64)
    kwargs = case.kwargs([2])
    before = bijector.forward(x, **kwargs).numpy()
    perturb(bijector, seed=1, scale=max(case.perturbation, 0.02))
    after = bijector.forward(fresh(x), **kwargs).numpy()
    assert np.all(np.isfinite(after))
    assert np.max(np.abs(after - before)) > 1e-3


@pytest.mark.parametrize("name", names(lambda case: case.is_image_bijector))
def test_static_channel_mismatch_is_a_value_error(name):
    case = CASES[name]
    bijector = shared(name)
    wrong = tf.zeros([1, case.event_shape[0], case.event_shape[1], case.event_shape[2] + 1], tf.float64)
    with pytest.raises(ValueError, match=r"channels.*Received: shape=\[1, 4, 4, 5\]"):
        bijector.forward(wrong, **case.kwargs([1]))


@pytest.mark.parametrize("name", ALL)
def test_composes_with_tfp(name):
    """Chain, Invert and TransformedDistribution (with bijector_kwargs) accept the bijector."""
    tfb, tfd = tfp.bijectors, tfp.distributions
    case = CASES[name]
    bijector = shared(name)
    kwargs = case.kwargs([2])
    x = case.sample_input([2], tf.float64)
    chain = tfb.Chain([tfb.Shift(tf.constant(0.25, tf.float64)), bijector])
    np.testing.assert_allclose(
        chain.forward(x, **{bijector.name: kwargs}).numpy(),
        bijector.forward(fresh(x), **kwargs).numpy() + 0.25,
        atol=1e-10,
    )
    inverted = tfb.Invert(bijector)
    np.testing.assert_allclose(
        inverted.inverse(fresh(x), **kwargs).numpy(), bijector.forward(fresh(x), **kwargs).numpy(), atol=1e-10
    )
    base = tfd.Sample(tfd.Normal(tf.constant(0.0, tf.float64), 1.0), case.event_shape)
    dist = tfd.TransformedDistribution(base, bijector)
    y = dist.sample(2, seed=(1, 2), bijector_kwargs=kwargs)
    np.testing.assert_allclose(
        y.numpy(), bijector.forward(base.sample(2, seed=(1, 2)), **kwargs).numpy(), atol=1e-12
    )
    expected = base.log_prob(bijector.inverse(fresh(y), **kwargs)) + bijector.inverse_log_det_jacobian(
        fresh(y), event_ndims=_out_ndims(bijector, case), **kwargs
    )
    np.testing.assert_allclose(
        dist.log_prob(fresh(y), bijector_kwargs=kwargs).numpy(), expected.numpy(), rtol=1e-10
    )
