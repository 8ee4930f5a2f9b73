"""Numerical safety: deep models reconstruct exactly; extreme parameters stay finite.

(a) A deep-but-small digits model (L=2, K=8, float32) reconstructs its input to 1e-4 after
    random initialization (every weight moved off its zero or identity start by N(0, 0.02^2))
    and after 200 training steps. The big configuration (L=3, K=32) is measured by
    experiments/deep_reconstruction.py and reported in experiments/RESULTS.md.
(b) Parameters driven to extreme values: what the design bounds stays bounded, and the
    log-dets, log-probabilities and gradients stay finite:
    - the sigmoid coupling scale s = sigmoid(h + 2) / sigmoid(2) lies in (0, 1.135] for any h,
      so the encoding direction (training) can never overflow, even for h = +-1e4;
    - the exp variant's log-scale B tanh(h / B) lies in [-B, B]: both directions finite;
    - the LU 1x1 convolution's log-det is sum(log|s|) and the sign of det W never changes,
      whatever log|s| is (it cannot cross zero);
    - ActNorm, split prior and top prior log-dets are linear in their log-scales: finite for
      any finite parameter.
    What is not bounded, by design (the reference code's maths): the sigmoid scale's lower end.
    Where h << 0 (about h < -15 in float32), s ~ e^h squeezes x_b below float32's resolution
    relative to the other channels, so the encoding stays finite but generation, which divides
    by s, cannot recover x_b. A model perturbed at random by N(0, 0.05^2) reaches h ~ -22 at L=2,
    K=8 and reconstructs NaN; training from the zero-initialized convolutions did not go there
    (test (a) and experiments/deep_reconstruction.py). The exp variant bounds both ends.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tfp_glow import (
    ActNorm,
    AffineCoupling,
    Glow,
    GlowModel,
    InvertibleConv1x1,
    SplitPrior,
    TopPrior,
    data,
    glow_distribution,
)

DEEP = dict(num_levels=2, num_steps=8, hidden_channels=16, seed=0)  # 16 steps of flow
TOLERANCE = 1e-4
SIGMOID_SCALE_MAX = 1.0 / (1.0 / (1.0 + math.exp(-2.0)))  # 1 / sigmoid(2) = 1.1353


def _reconstruction_error(model: GlowModel, images: np.ndarray) -> float:
    """max |forward(inverse(x)) - x| over the preprocessed images x (bin centres)."""
    x = model.preprocess(images)
    return float(tf.reduce_max(tf.abs(_round_trip(model.bijector)(x) - x)))


def _round_trip(glow):
    # One graph per flow, traced once: the variables are read at every call.
    if not hasattr(glow, "_test_round_trip"):
        glow._test_round_trip = tf.function(lambda x: glow.forward(tf.identity(glow.inverse(x))))
    return glow._test_round_trip


@pytest.fixture(scope="module")
def digits():
    return data.load_numpy("digits", "train"), data.load_numpy("digits", "test")


@pytest.mark.slow
def test_deep_model_reconstructs_after_random_init_and_after_200_training_steps(digits):
    train, test = digits
    model = GlowModel.from_preset("digits", **DEEP)
    model.initialize(train[:256])
    # Random initialization: every weight away from the zero convolutions' identity start.
    rng = np.random.default_rng(1)
    for v in model.bijector.trainable_variables:
        v.assign_add((0.02 * rng.standard_normal(v.shape)).astype(np.float32))
    assert len(model.bijector.steps[0]) == 8
    at_init = _reconstruction_error(model, test)
    weights_at_init = [v.numpy() for v in model.bijector.trainable_variables]

    model.compile()
    dataset = data.load("digits", "train", batch_size=32, repeat=True, drop_remainder=True)
    history = model.fit(dataset, epochs=2, steps_per_epoch=100, verbose=0).history
    trained = _reconstruction_error(model, test)

    assert at_init < TOLERANCE, at_init
    assert trained < TOLERANCE, trained
    assert model.optimizer.iterations.numpy() == 200
    # It did train, with no skipped step: the weights moved and the loss went down.
    assert history["nonfinite_steps"] == [0.0, 0.0]
    assert history["bits_per_dim"][1] < history["bits_per_dim"][0] - 0.1, history["bits_per_dim"]
    variables = model.bijector.trainable_variables
    assert all(np.any(v.numpy() != w) for v, w in zip(variables, weights_at_init, strict=True))


# (b) Extreme parameters.


def _uniform(shape, seed=0, dtype=tf.float32):
    return tf.random.stateless_uniform(shape, [seed, 7], -1.0, 1.0, dtype=dtype)


def _finite(*tensors):
    return all(bool(tf.reduce_all(tf.math.is_finite(t))) for t in tensors)


@pytest.mark.parametrize("log_scale", [-40.0, 40.0])
def test_actnorm_extreme_log_scale(log_scale):
    actnorm = ActNorm(3)
    actnorm.initialize(_uniform([4, 4, 4, 3]))
    actnorm.log_scale.assign([log_scale, -log_scale, 0.0])
    x = _uniform([2, 4, 4, 3], 1)

    y, fldj = actnorm.forward_and_log_det(x)
    x_again, ildj = actnorm.inverse_and_log_det(y)

    assert _finite(y, x_again, fldj, ildj)
    assert float(fldj) == 0.0  # +-log_scale cancel exactly
    # The log-det is linear in log_scale: finite however large it gets.
    actnorm.log_scale.assign([1e6, 1e6, -3e6])
    assert float(actnorm.forward_log_det_jacobian(x, event_ndims=3)) == pytest.approx(16 * -1e6, rel=1e-6)


def _coupling_with_huge_h(scale_fn, h, kernel_scale=1.0):
    """An AffineCoupling whose conditioner's last convolution gives h ~ `h` (+- the kernel's part)."""
    coupling = AffineCoupling(4, hidden_channels=8, scale_fn=scale_fn, seed=0)
    coupling.initialize(_uniform([8, 4, 4, 4]))
    out = coupling.conditioner.conv_out
    rng = np.random.default_rng(0)
    out.kernel.assign((kernel_scale * rng.standard_normal(out.kernel.shape)).astype(np.float32))
    out.bias.assign(np.tile([0.0, h], out.bias.shape[0] // 2).astype(np.float32))
    return coupling


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("kernel_scale", [1.0, 1e4])
def test_sigmoid_coupling_scale_is_bounded_for_huge_h(sign, kernel_scale):
    # kernel_scale 1e4: h of both signs up to ~1e5 at every pixel; 1: h = sign * 1e4 +- a few.
    coupling = _coupling_with_huge_h("sigmoid", sign * 1e4, kernel_scale)
    x = _uniform([2, 4, 4, 4], 3)
    h = coupling.conditioner(x[..., :2])[..., 1::2]
    assert float(tf.reduce_max(tf.abs(h))) > 1e3  # the network really is extreme

    with tf.GradientTape() as tape:
        z, ildj = coupling.inverse_and_log_det(x)
        loss = tf.reduce_sum(z**2) - tf.reduce_sum(ildj)
    gradients = tape.gradient(loss, coupling.trainable_variables)
    log_scale = coupling.shift_and_log_scale(x[..., :2])[1]

    # Encoding (training direction): s <= 1 / sigmoid(2), so z cannot overflow.
    assert float(tf.reduce_max(log_scale)) <= math.log(SIGMOID_SCALE_MAX) + 1e-6
    assert _finite(z, ildj, log_scale, *gradients)
    if sign > 0 and kernel_scale == 1.0:
        # Saturated at the upper bound: the generative direction is finite too, and exact.
        # (Where h << 0, s underflows towards 0: the encoding stays finite, but generation
        # divides by s; see the module docstring.)
        x_again = coupling.forward(tf.identity(z))
        assert _finite(x_again)
        np.testing.assert_allclose(x_again.numpy(), x.numpy(), atol=1e-2)  # shifts of ~1e4


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_exp_coupling_log_scale_is_bounded_both_ways(sign):
    coupling = _coupling_with_huge_h("exp", sign * 1e4, kernel_scale=1e4)
    x = _uniform([2, 4, 4, 4], 4)

    z, ildj = coupling.inverse_and_log_det(x)
    x_again, fldj = coupling.forward_and_log_det(tf.identity(z))
    log_scale = coupling.shift_and_log_scale(x[..., :2])[1]

    assert float(tf.reduce_max(tf.abs(log_scale))) <= 3.0 + 1e-6  # B = log_scale_bound = 3
    assert _finite(z, ildj, x_again, fldj)
    assert np.all(np.abs(ildj.numpy()) <= 3.0 * 4 * 4 * 2 + 1e-3)
    np.testing.assert_allclose(fldj.numpy(), -ildj.numpy(), rtol=1e-6)


@pytest.mark.parametrize("log_s", [-30.0, 30.0])
def test_lu_conv_extreme_log_s_keeps_log_det_and_sign(log_s):
    conv = InvertibleConv1x1(4, seed=2)
    conv.log_s.assign([log_s, -log_s, log_s, 0.5 * log_s])
    x = _uniform([2, 3, 3, 4], 5)

    y, fldj = conv.forward_and_log_det(x)
    z, ildj = conv.inverse_and_log_det(x)

    assert _finite(y, z, fldj, ildj)
    assert float(ildj) == pytest.approx(9 * 1.5 * log_s, rel=1e-6)  # H*W*sum(log_s)


def test_lu_conv_det_keeps_its_sign_whatever_log_s():
    # float64, so that slogdet of the assembled W measures the parameterization, not round-off.
    conv = InvertibleConv1x1(6, seed=3, dtype=tf.float64)
    sign_at_init = np.linalg.slogdet(conv.matrix().numpy())[0]
    rng = np.random.default_rng(0)
    for _ in range(10):
        conv.log_s.assign(3.0 * rng.standard_normal(6))
        conv.lower.assign_add(0.3 * rng.standard_normal((6, 6)))
        conv.upper.assign_add(0.3 * rng.standard_normal((6, 6)))
        sign, log_abs_det = np.linalg.slogdet(conv.matrix().numpy())
        assert sign == sign_at_init  # never crosses zero
        assert log_abs_det == pytest.approx(float(conv.log_abs_det()), abs=1e-6)


@pytest.mark.parametrize("log_scale", [-30.0, 30.0])
def test_split_and_top_prior_extreme_log_scale(log_scale):
    split = SplitPrior(4)
    out = split.prior_network
    out.bias.assign(np.tile([0.0, log_scale], 2).astype(np.float32))  # mean 0, log sigma
    top = TopPrior(4)
    top.log_scale.assign([log_scale] * 4)
    x = _uniform([2, 2, 2, 4], 6)

    for prior in (split, top):
        y, fldj = prior.forward_and_log_det(x)
        x_again, ildj = prior.inverse_and_log_det(y)
        assert _finite(y, x_again, fldj, ildj)
        np.testing.assert_allclose(x_again.numpy(), x.numpy(), rtol=1e-5, atol=1e-6)
    assert np.all(split.forward_log_det_jacobian(x, event_ndims=3).numpy() == 2 * 2 * 2 * log_scale)


def _extreme_glow(images, huge_h=True, others=0.0):
    """A small Glow initialized on `images`, every coupling's h ~ +-1e5 (`huge_h`), and every
    ActNorm, LU and prior log-scale moved by +-`others`."""
    glow = Glow((8, 8, 1), num_levels=2, num_steps=2, hidden_channels=8, learn_top_prior=True, seed=0)
    glow.initialize(images)
    rng = np.random.default_rng(2)

    def signs(variable):
        return rng.choice([-others, others], variable.shape).astype(np.float32)

    for level in glow.steps:  # each parameter stacked over the level's steps
        params = level.params
        params["actnorm"]["log_scale"].assign_add(signs(params["actnorm"]["log_scale"]))
        params["permutation"]["log_s"].assign_add(signs(params["permutation"]["log_s"]))
        if huge_h:
            kernel = params["coupling"]["conditioner"]["conv_out"]["kernel"]
            kernel.assign((1e4 * rng.standard_normal(kernel.shape)).astype(np.float32))
    for prior in glow.split_priors:
        prior.prior_network.bias.assign(signs(prior.prior_network.bias))
    glow.top_prior.log_scale.assign(signs(glow.top_prior.log_scale))
    return glow


def test_glow_log_prob_and_gradients_stay_finite_with_huge_coupling_outputs(digits):
    x = tfp_glow.to_unit_range(digits[0][:16], 17)
    glow = _extreme_glow(x, huge_h=True, others=1.0)

    with tf.GradientTape() as tape:
        log_prob = glow_distribution(glow).log_prob(x)
        loss = -tf.reduce_mean(log_prob)
    gradients = tape.gradient(loss, glow.trainable_variables)

    assert _finite(log_prob, *[g for g in gradients if g is not None])
    assert float(tf.reduce_min(log_prob)) < -1e4  # the couplings really are extreme


# e^+-5 per ActNorm and per LU diagonal entry, at every step: beyond that the activations
# themselves leave float32's range (e^88) after a few steps, whatever the parameterization.
@pytest.mark.parametrize("others", [2.0, 5.0])
def test_glow_log_det_stays_finite_with_every_parameter_extreme(digits, others):
    x = tfp_glow.to_unit_range(digits[0][:16], 17)
    glow = _extreme_glow(x, huge_h=True, others=others)

    z, log_det = glow.inverse_and_log_det(x)

    assert _finite(log_det)
    assert float(tf.reduce_max(tf.abs(log_det))) > 100.0
