"""The multi-scale Glow bijector: shapes, latents, initialization, exactness, parameters."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tests.bijector_test_util import forward_jacobian_log_det, fresh, perturb


def images(shape, n=8, seed=0, dtype=tf.float32):
    return tf.random.stateless_uniform((n, *shape), [seed, 3], -0.5, 0.5, dtype)


def test_log_det_of_flat_map_equals_autodiff_jacobian_float64():
    glow = tfp_glow.Glow((4, 4, 2), num_levels=2, num_steps=2, hidden_channels=8, seed=0, dtype=tf.float64)
    glow.initialize(images((4, 4, 2), dtype=tf.float64))
    perturb(glow, seed=3, scale=0.02)
    z = tf.random.stateless_normal([2, 32], [1, 2], dtype=tf.float64)
    expected = forward_jacobian_log_det(glow, z, event_ndims=1)
    np.testing.assert_allclose(
        glow.forward_log_det_jacobian(fresh(z), event_ndims=1).numpy(), expected, rtol=1e-6
    )
    # The encoding direction, image -> flat latent.
    x = glow.forward(fresh(z))
    np.testing.assert_allclose(
        glow.inverse_log_det_jacobian(fresh(x), event_ndims=3).numpy(), -expected, rtol=1e-6
    )


def test_deep_model_reconstructs_32x32x3_float32():
    glow = tfp_glow.Glow((32, 32, 3), num_levels=3, num_steps=8, hidden_channels=32, seed=1)
    x = images((32, 32, 3), n=4)
    glow.initialize(x)
    perturb(glow, seed=2, scale=0.01)
    x = images((32, 32, 3), n=4, seed=9)
    reconstruction = glow.forward(fresh(glow.inverse(x)))
    assert float(tf.reduce_max(tf.abs(reconstruction - x))) <= 1e-4


def test_latent_shapes_split_and_merge():
    glow = tfp_glow.Glow((8, 16, 3), num_levels=3, num_steps=1, hidden_channels=4)
    # level 1: 4x8x12 -> 6 leave; level 2: 2x4x24 -> 12 leave; level 3: 1x2x48 stays.
    assert glow.latent_shapes == ((4, 8, 6), (2, 4, 12), (1, 2, 48))
    assert sum(int(np.prod(s)) for s in glow.latent_shapes) == glow.event_size == 8 * 16 * 3
    z = tf.reshape(tf.range(2 * 5 * glow.event_size, dtype=tf.float32), [2, 5, glow.event_size])
    pieces = glow.split_latent(z)
    assert [p.shape for p in pieces] == [(2, 5, *s) for s in glow.latent_shapes]
    # Finest first, top last, in flat order.
    assert float(pieces[0][0, 0, 0, 0, 0]) == 0.0
    assert float(pieces[-1][0, 0, -1, -1, -1]) == glow.event_size - 1
    np.testing.assert_array_equal(glow.merge_latents(pieces).numpy(), z.numpy())
    with pytest.raises(ValueError, match="Expected 3 latents"):
        glow.merge_latents(pieces[:2])
    with pytest.raises(ValueError, match=r"Received: shape=\[2, 7\]"):
        glow.split_latent(tf.zeros([2, 7]))


def test_encoding_keeps_every_level_and_inverse_matches_pieces():
    """The flat latent is the per-level latents; zeroing one level changes the decode."""
    glow = tfp_glow.Glow((8, 8, 1), num_levels=2, num_steps=2, hidden_channels=8, seed=4)
    x = images((8, 8, 1), n=2)
    glow.initialize(x)
    pieces = glow.split_latent(glow.inverse(x))
    for level in range(2):
        edited = [tf.zeros_like(p) if i == level else p for i, p in enumerate(pieces)]
        decoded = glow.forward(glow.merge_latents(edited))
        assert float(tf.reduce_max(tf.abs(decoded - x))) > 1e-3


def test_initialize_normalizes_every_actnorm_on_real_activations_and_is_idempotent():
    glow = tfp_glow.Glow((8, 8, 2), num_levels=2, num_steps=2, hidden_channels=8, seed=5)
    actnorms = glow.actnorms
    assert len(actnorms) == 2 * 2 * 3  # one per step and two per coupling network
    assert not any(bool(a.initialized.numpy()) for a in actnorms)
    x = tf.random.stateless_normal([64, 8, 8, 2], [0, 1]) * 0.2 + 0.1
    glow.initialize(x)
    assert all(bool(a.initialized.numpy()) for a in actnorms)
    # The first step's ActNorm output is normalized per channel.
    first = glow.steps[0][0].actnorm.inverse(glow.expand.inverse(x))
    mean, var = tf.nn.moments(first, axes=[0, 1, 2])
    np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.sqrt(var.numpy()), 1.0, atol=1e-3)
    # A deeper ActNorm saw the real activations too: its own output is normalized.
    step = glow.steps[1][1]
    h = x
    latent_before = glow.inverse(x)
    # Walk the encoding up to that ActNorm by hand.
    h = glow.expand.inverse(h)
    for s in glow.steps[0]:
        h = s.inverse(h)
    h = glow.split_priors[0].inverse(h)[..., : h.shape[-1] // 2]
    h = glow.expand.inverse(h)
    h = glow.steps[1][0].inverse(h)
    mean, var = tf.nn.moments(step.actnorm.inverse(h), axes=[0, 1, 2])
    np.testing.assert_allclose(mean.numpy(), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.sqrt(var.numpy()), 1.0, atol=1e-3)
    # Idempotent: other data changes nothing.
    values = [v.numpy().copy() for v in glow.variables]
    glow.initialize(tf.random.stateless_normal([16, 8, 8, 2], [3, 4]) * 3.0)
    for before, v in zip(values, glow.variables, strict=True):
        np.testing.assert_array_equal(before, v.numpy())
    np.testing.assert_allclose(glow.inverse(fresh(x)).numpy(), latent_before.numpy(), atol=1e-6)


def test_initialize_inside_tf_function():
    glow = tfp_glow.Glow((8, 8, 1), num_levels=2, num_steps=1, hidden_channels=8, seed=6)
    x = images((8, 8, 1), n=16)
    init = tf.function(glow.initialize)
    z = init(x)
    assert all(bool(a.initialized.numpy()) for a in glow.actnorms)
    np.testing.assert_allclose(z.numpy(), glow.inverse(fresh(x)).numpy(), atol=1e-5)
    log_scales = [a.log_scale.numpy().copy() for a in glow.actnorms]
    init(x * 3.0)
    for before, a in zip(log_scales, glow.actnorms, strict=True):
        np.testing.assert_array_equal(before, a.log_scale.numpy())


def test_untrained_log_det_is_the_actnorms_alone():
    glow = tfp_glow.Glow(
        (8, 8, 2), num_levels=2, num_steps=3, hidden_channels=8, seed=7, learn_top_prior=True
    )
    x = images((8, 8, 2), n=4)
    glow.initialize(x)
    # Rotations (log|det| = 0), identity couplings, standard-normal priors:
    expected = 0.0
    for level, steps in enumerate(glow.steps):
        pixels = (8 // 2 ** (level + 1)) ** 2
        expected -= sum(pixels * float(tf.reduce_sum(s.actnorm.log_scale)) for s in steps)
    np.testing.assert_allclose(glow.inverse_log_det_jacobian(x, event_ndims=3).numpy(), expected, rtol=1e-5)


def _expected_parameters(image_shape, num_levels, num_steps, hidden, lu, split_prior, learn_top_prior):
    """(number of trainable variables, number of trainable scalars) from the architecture."""
    h, w, c = image_shape
    variables = scalars = 0
    for level in range(num_levels):
        c *= 4
        c_a, c_b = c // 2, c - c // 2
        step_vars = 2 + (3 if lu else 1) + 9
        step_scalars = (
            2 * c  # ActNorm
            + (2 * c * c + c if lu else c * c)  # 1x1 conv: lower, upper, log_s (or W)
            # 3x3 convolutions see one more input channel: the border indicator (edge bias).
            + 9 * (c_a + 1) * hidden
            + 2 * hidden  # conv3x3 + ActNorm
            + hidden * hidden
            + 2 * hidden  # conv1x1 + ActNorm
            + 9 * (hidden + 1) * 2 * c_b
            + 2 * 2 * c_b  # zero conv3x3: kernel, bias, logs
        )
        variables += step_vars  # each stacked over the level's steps
        scalars += num_steps * step_scalars
        if level < num_levels - 1:
            if split_prior:
                variables += 3
                scalars += 9 * (c_a + 1) * 2 * c_b + 2 * 2 * c_b
            c = c_a
    if learn_top_prior:
        variables += 2
        scalars += 2 * c
    return variables, scalars


@pytest.mark.parametrize(
    "lu, split_prior, learn_top_prior",
    [(True, True, False), (False, True, True), (True, False, True)],
)
def test_trainable_variables_hold_every_parameter(lu, split_prior, learn_top_prior):
    config = dict(image_shape=(8, 8, 3), num_levels=3, num_steps=2, hidden=16)
    glow = tfp_glow.Glow(
        config["image_shape"],
        config["num_levels"],
        config["num_steps"],
        hidden_channels=config["hidden"],
        lu_decomposed=lu,
        split_prior=split_prior,
        learn_top_prior=learn_top_prior,
    )
    variables, scalars = _expected_parameters(
        **config, lu=lu, split_prior=split_prior, learn_top_prior=learn_top_prior
    )
    trainable = glow.trainable_variables
    assert len(trainable) == variables
    assert len({id(v) for v in trainable}) == variables  # each once
    assert sum(int(np.prod(v.shape)) for v in trainable) == scalars
    # Non-trainable state: ActNorm flags (3 per level, stacked over its steps) and, in LU
    # form, P and sign(s).
    non_trainable = [v for v in glow.variables if not v.trainable]
    assert len(non_trainable) == 3 * 3 + (2 * 3 if lu else 0)
    assert all(v.shape[0] == config["num_steps"] for level in glow.steps for v in level.variables)


def test_gradients_reach_every_trainable_variable():
    glow = tfp_glow.Glow(
        (4, 4, 1), num_levels=2, num_steps=2, hidden_channels=4, seed=8, learn_top_prior=True
    )
    x = images((4, 4, 1), n=4)
    glow.initialize(x)
    perturb(glow, seed=1, scale=0.02)
    dist = tfp_glow.glow_distribution(glow)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(dist.log_prob(x))
    grads = tape.gradient(loss, glow.trainable_variables)
    missing = [v.name for v, g in zip(glow.trainable_variables, grads, strict=True) if g is None]
    assert not missing


@pytest.mark.parametrize("permutation", ["reverse", "shuffle"])
@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_ablation_variants_round_trip(permutation, coupling):
    glow = tfp_glow.Glow(
        (8, 8, 1), 2, 2, hidden_channels=8, coupling=coupling, permutation=permutation, seed=2
    )
    x = images((8, 8, 1), n=2)
    glow.initialize(x)
    perturb(glow, seed=4, scale=0.02)
    np.testing.assert_allclose(glow.forward(fresh(glow.inverse(x))).numpy(), x.numpy(), atol=1e-5)
    # Fixed permutations have nothing to learn; additive couplings preserve volume.
    assert not [v.name for v in glow.trainable_variables if "/permutation/" in v.name]
    if coupling == "additive":
        step = glow.steps[0][0]
        h = tf.random.stateless_normal([2, 4, 4, 4], [1, 1])
        assert float(tf.reduce_max(tf.abs(step.coupling.inverse_log_det_jacobian(h, event_ndims=3)))) == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(image_shape=(6, 8, 1), num_levels=2, num_steps=1),
            r"divisible by 2\*\*num_levels = 4.*\(6, 8, 1\)",
        ),
        (dict(image_shape=(8, 8), num_levels=1, num_steps=1), r"image_shape=\(8, 8\)"),
        (dict(image_shape=(8, 8, 0), num_levels=1, num_steps=1), r"image_shape=\(8, 8, 0\)"),
        (dict(image_shape=(8, 8, 1), num_levels=0, num_steps=1), "num_levels=0"),
        (dict(image_shape=(8, 8, 1), num_levels=1, num_steps=-2), "num_steps=-2"),
        (
            dict(image_shape=(8, 8, 1), num_levels=1, num_steps=1, hidden_channels=0),
            "hidden_channels=0",
        ),
        (
            dict(image_shape=(8, 8, 1), num_levels=1, num_steps=1, coupling="cubic"),
            "coupling='cubic'",
        ),
        (
            dict(image_shape=(8, 8, 1), num_levels=1, num_steps=1, permutation="flip"),
            "permutation='flip'",
        ),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfp_glow.Glow(**kwargs)


def test_wrong_image_shape_is_a_clear_error():
    glow = tfp_glow.Glow((8, 8, 1), 2, 1, hidden_channels=4)
    with pytest.raises(ValueError, match=r"\[\.\.\., 8, 8, 1\].*Received: shape=\[2, 8, 8, 3\]"):
        glow.inverse(tf.zeros([2, 8, 8, 3]))
    with pytest.raises(ValueError, match=r"\[\.\.\., 64\].*Received: shape=\[2, 63\]"):
        glow.forward(tf.zeros([2, 63]))
