"""Variational dequantization (Flow++) and the importance-sampled discrete likelihood."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_glow
from tfp_glow import data
from tfp_glow.models.dequantization import VariationalDequantizer

tfb, tfd = tfp.bijectors, tfp.distributions

TINY = dict(num_levels=2, num_steps=1, hidden_channels=8, seed=0)


@pytest.fixture(scope="module")
def digits():
    return data.load_numpy("digits", "train")[:256]


@pytest.fixture(scope="module")
def variational(digits, tmp_path_factory):
    """A tiny digits model with variational dequantization after a short fit, and its .keras file."""
    model = tfp_glow.GlowModel.from_preset("digits", dequantization="variational", **TINY)
    before = [w.numpy().copy() for w in model.dequantizer.weights]
    model.compile(optimizer=tfp_glow.default_optimizer(3e-3, warmup_steps=2))
    history = model.fit(digits, batch_size=64, epochs=3, verbose=0)
    path = tmp_path_factory.mktemp("variational") / "model.keras"
    model.save(path)
    return dict(model=model, before=before, history=history.history, path=path)


def _randomized_dequantizer(shape, seed=0, num_couplings=0):
    layer = VariationalDequantizer(hidden_channels=4, num_couplings=num_couplings)
    layer.build((None, *shape))
    rng = np.random.default_rng(seed)
    for weight in layer.weights:  # the output layer starts at zero: give q a shape
        weight.assign(rng.normal(scale=0.15, size=weight.shape).astype(np.float32))
    return layer


def test_log_q_is_the_density_of_the_sigmoid_of_a_gaussian():
    layer = _randomized_dequantizer((4, 4, 2))
    centres = tf.random.stateless_uniform([3, 4, 4, 2], [1, 2], -0.5, 0.5)
    eps = tf.random.stateless_normal([3, 4, 4, 2], [3, 4])
    u, log_q = layer(centres, eps)

    # mu and sigma of the network, read back from the noise it maps: eps = 0 gives
    # sigmoid(mu), eps = 1 gives sigmoid(mu + sigma).
    def logit(u):
        u = np.float64(u)
        return np.log(u) - np.log1p(-u)

    mu = logit(layer(centres, tf.zeros_like(eps))[0])
    sigma = logit(layer(centres, tf.ones_like(eps))[0]) - mu
    assert np.all(sigma > 0) and np.ptp(sigma) > 0.1 and np.ptp(mu) > 0.1  # a non-trivial q
    expected = tfd.TransformedDistribution(tfd.Normal(mu, sigma), tfb.Sigmoid()).log_prob(np.float64(u))
    np.testing.assert_allclose(log_q, tf.reduce_sum(expected, [1, 2, 3]), rtol=1e-4, atol=1e-3)
    assert np.all((u.numpy() > 0) & (u.numpy() < 1))
    assert log_q.shape == [3]


@pytest.mark.parametrize("num_couplings", [0, 1, 3])
def test_log_q_is_the_change_of_variables_of_the_standard_normal(num_couplings):
    # log q(u) = log N(eps) - log |det du / deps|, the Jacobian by autodiff (2x2x2: 8 dims).
    layer = _randomized_dequantizer((2, 2, 2), seed=2, num_couplings=num_couplings)
    centres = tf.random.stateless_uniform([3, 2, 2, 2], [5, 6], -0.5, 0.5, tf.float32)
    eps = tf.random.stateless_normal([3, 2, 2, 2], [7, 8])
    with tf.GradientTape() as tape:
        tape.watch(eps)
        u, log_q = layer(centres, eps)
    jacobian = tape.batch_jacobian(u, eps).numpy().reshape(3, 8, 8).astype(np.float64)
    log_normal = tfd.Normal(0.0, 1.0).log_prob(eps).numpy().reshape(3, 8).sum(-1)
    expected = log_normal - np.linalg.slogdet(jacobian)[1]
    np.testing.assert_allclose(log_q, expected, rtol=1e-4, atol=1e-3)
    if num_couplings:  # the couplings do move the noise
        plain = VariationalDequantizer(hidden_channels=4)
        plain.build((None, 2, 2, 2))
        for source, target in zip(layer.weights[: len(plain.weights)], plain.weights, strict=True):
            target.assign(source)
        assert np.abs(plain(centres, eps)[0] - u).max() > 1e-3


def test_q_is_a_density_on_the_unit_interval():
    # One pixel: integrate q(u | k) over (0, 1) numerically from the layer's own log q.
    layer = _randomized_dequantizer((1, 1, 1), seed=1)
    centres = tf.fill([1, 1, 1, 1], 0.1)
    eps = tf.reshape(tf.linspace(-8.0, 8.0, 20001), [-1, 1, 1, 1])
    u, log_q = layer(tf.repeat(centres, 20001, axis=0), eps)
    u, q = u.numpy().ravel(), np.exp(log_q.numpy())
    assert np.trapezoid(q, u) == pytest.approx(1.0, abs=1e-3)


def test_untrained_dequantizer_is_the_logit_normal():
    layer = VariationalDequantizer()
    layer.build((None, 8, 8, 1))
    eps = tf.random.stateless_normal([2, 8, 8, 1], [0, 1])
    u, log_q = layer(tf.zeros([2, 8, 8, 1]), eps)
    np.testing.assert_allclose(u, tf.sigmoid(eps), rtol=1e-6)
    expected = tfd.TransformedDistribution(tfd.Normal(0.0, 1.0), tfb.Sigmoid()).log_prob(u)
    np.testing.assert_allclose(log_q, tf.reduce_sum(expected, [1, 2, 3]), rtol=1e-5)


def test_variational_fit_trains_the_dequantizer_with_the_flow(variational):
    model, history = variational["model"], variational["history"]
    assert history["bits_per_dim"][-1] < history["bits_per_dim"][0]
    glow_variables = len(model.bijector.trainable_variables)
    assert len(model.trainable_variables) == glow_variables + len(model.dequantizer.trainable_weights)
    after = model.dequantizer.weights
    assert all(not np.allclose(b, w.numpy()) for b, w in zip(variational["before"], after, strict=True))


def test_variational_model_round_trips_through_keras_file(variational, digits):
    model = variational["model"]
    reloaded = keras.models.load_model(variational["path"])
    assert reloaded.get_config()["dequantization"] == "variational"
    for a, b in zip(model.dequantizer.weights, reloaded.dequantizer.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(
        reloaded.discrete_bits_per_dim(digits[:16], num_samples=4),
        model.discrete_bits_per_dim(digits[:16], num_samples=4),
        rtol=1e-5,
    )


@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_discrete_bits_per_dim_is_the_importance_sampled_log_likelihood(dequantization, variational, digits):
    model = (
        variational["model"]
        if dequantization == "variational"
        else tfp_glow.GlowModel.from_preset("digits", **TINY, dequantization="uniform")
    )
    model.initialize(digits)  # idempotent for the trained one
    images, samples, seed = digits[:12], 6, 5
    estimate = model.discrete_bits_per_dim(images, num_samples=samples, seed=seed).numpy()
    # In batches: each batch is estimated as if alone.
    batched = model.discrete_bits_per_dim(images, num_samples=samples, seed=seed, batch_size=5).numpy()
    np.testing.assert_allclose(batched[:5], estimate[:5], rtol=1e-6)  # other conv batch shapes
    alone = model.discrete_bits_per_dim(images[5:10], None, samples, seed=seed)
    np.testing.assert_allclose(batched[5:10], alone, rtol=1e-6)

    # The same estimate from the distribution, with the same noise drawn by hand.
    levels = tf.constant(images, tf.int32)
    log_weights = []
    for s in range(samples):
        shape = levels.shape
        if dequantization == "uniform":
            u, log_q = tf.random.stateless_uniform(shape, [seed, s]), 0.0
        else:
            eps = tf.random.stateless_normal(shape, [seed, s])
            u, log_q = model.dequantizer(tfp_glow.to_unit_range(levels, 17), eps)
        x = tfp_glow.to_unit_range(levels, 17, u)
        log_weights.append(model.distribution.log_prob(x) - log_q)
    log_weights = np.stack(log_weights)
    dims = 64
    log_p = np.logaddexp.reduce(log_weights, axis=0) - np.log(samples)
    np.testing.assert_allclose(estimate, -(log_p - dims * np.log(17)) / (dims * np.log(2)), rtol=1e-5)
    # Jensen: the mean of the log weights bounds the estimate from below (in bits, above).
    one_sample = -(log_weights.mean(axis=0) - dims * np.log(17)) / (dims * np.log(2))
    assert np.all(estimate <= one_sample + 1e-6)
    assert np.mean(estimate) < np.mean(one_sample) - 1e-3


def test_discrete_bits_per_dim_is_deterministic_for_a_seed(variational, digits):
    model = variational["model"]
    a = model.discrete_bits_per_dim(digits[:8], num_samples=3, seed=1)
    b = model.discrete_bits_per_dim(digits[:8], num_samples=3, seed=1)
    c = model.discrete_bits_per_dim(digits[:8], num_samples=3, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_variational_evaluate_reports_the_variational_bound(variational, digits):
    # evaluate's figure: -E_q[log p(x) - log q(u | k)], one sample per image; in expectation it
    # cannot beat the importance-sampled estimate with many samples.
    model = variational["model"]
    bound = model.evaluate(digits, batch_size=256, verbose=0, return_dict=True)["bits_per_dim"]
    many = float(np.mean(model.discrete_bits_per_dim(digits, num_samples=32)))
    assert many < bound


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dequantization="learned"), r"`dequantization` must be 'uniform' or 'variational'.*'learned'"),
        (dict(dequantization=None), r"`dequantization` must be .*None"),
    ],
)
def test_bad_dequantization(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tfp_glow.GlowModel.from_preset("digits", **TINY, **kwargs)


@pytest.mark.parametrize("name, value", [("num_samples", 0), ("num_samples", 2.5), ("batch_size", -1)])
def test_discrete_bits_per_dim_bad_arguments(name, value, digits):
    model = tfp_glow.GlowModel.from_preset("digits", **TINY)
    with pytest.raises(ValueError, match=rf"`{name}` must be a positive integer. Received: {name}={value}"):
        model.discrete_bits_per_dim(digits[:4], **{name: value})


def test_bad_hidden_channels_of_the_dequantizer():
    with pytest.raises(
        ValueError, match=r"`hidden_channels` must be an integer >= 1. Received: hidden_channels=0"
    ):
        VariationalDequantizer(hidden_channels=0)


def test_the_model_seed_fixes_the_dequantizer_initial_weights():
    first, again, other = (
        tfp_glow.GlowModel.from_preset("digits", dequantization="variational", **{**TINY, "seed": seed})
        for seed in (3, 3, 4)
    )
    for a, b in zip(first.dequantizer.weights, again.dequantizer.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(first.dequantizer.weights[0].numpy(), other.dequantizer.weights[0].numpy())
