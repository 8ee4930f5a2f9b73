"""StackedFlowSteps: a level's steps as one loop over stacked parameters, and read-only views of them."""

from __future__ import annotations

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tests.bijector_test_util import fresh, perturb


def _glow(num_steps=3, dtype=tf.float64, **kwargs):
    glow = tfp_glow.Glow(
        (8, 8, 2), num_levels=2, num_steps=num_steps, hidden_channels=8, seed=1, dtype=dtype, **kwargs
    )
    images = tf.random.stateless_uniform([4, 8, 8, 2], [3, 4], -0.5, 0.5, dtype)
    glow.initialize(images)
    perturb(glow, seed=2, scale=0.05)
    return glow, glow.expand.inverse(images)


def test_loop_unrolled_and_step_by_step_are_the_same_maps():
    x = tf.random.stateless_normal([4, 4, 4, 8], [3, 4], dtype=tf.float64)
    levels = {
        unroll: tfp_glow.StackedFlowSteps(
            3, 8, 8, dropout=0.5, seed=[11, 12, 13], unroll=unroll, dtype=tf.float64
        )
        for unroll in (False, True)
    }
    for level in levels.values():
        level.initialize(x)
        perturb(level, seed=2, scale=0.05)
    # Dropout masks differ between steps (each network folds its own salt into the seed).
    seed = tf.constant([5, 6])
    expected_y, expected_log_det = x, 0.0
    for step in levels[True]:
        expected_y, log_det = step.inverse_and_log_det(expected_y, dropout_seed=seed)
        expected_log_det += log_det
    for level in levels.values():
        y, log_det = level.inverse_and_log_det(x, dropout_seed=seed)
        np.testing.assert_allclose(y.numpy(), expected_y.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(log_det.numpy(), expected_log_det.numpy(), rtol=1e-12)
        back, forward_log_det = level.forward_and_log_det(y, dropout_seed=seed)
        np.testing.assert_allclose(back.numpy(), x.numpy(), atol=1e-10)
        np.testing.assert_allclose(forward_log_det.numpy(), -log_det.numpy(), rtol=1e-10)
    # The masks matter: without the seed the map differs.
    assert np.max(np.abs(levels[False].inverse_and_log_det(x)[0].numpy() - expected_y.numpy())) > 1e-3


def test_a_steps_view_reads_its_slice_and_is_read_only():
    glow, x = _glow()
    level = glow.steps[0]
    step = level[2]
    assert isinstance(step, tfp_glow.FlowStep) and len(level) == 3
    # The level owns the variables, one stacked variable per parameter; a view owns none.
    assert {v.ref() for v in level.variables} <= {v.ref() for v in glow.variables}
    assert all(v.shape[0] == 3 for v in level.variables)
    assert {v.ref() for v in step.variables} <= {v.ref() for v in level.variables}
    # Writing the stacked variable's slice k is what step k's view reads, live.
    loc = level.params["actnorm"]["loc"]
    loc.assign_add(tf.one_hot([2], 3, dtype=tf.float64)[0][:, None] * tf.ones([3, 8], tf.float64))
    np.testing.assert_array_equal(step.actnorm.loc.numpy(), loc.numpy()[2])
    # ... and the loop and the views compute the same maps.
    expected = x
    for view in level:
        expected = view.inverse_and_log_det(expected)[0]
    np.testing.assert_allclose(level.inverse_and_log_det(fresh(x))[0].numpy(), expected.numpy(), rtol=1e-12)
    with pytest.raises(TypeError, match="read-only view of stacked parameters"):
        step.initialize(x)
    with pytest.raises(AttributeError):
        step.actnorm.loc.assign(tf.zeros([8], tf.float64))


def test_initialize_writes_every_slice():
    glow = tfp_glow.Glow((8, 8, 1), num_levels=1, num_steps=3, hidden_channels=4, seed=0)
    flags = glow.steps[0].params["actnorm"]["initialized"]
    assert not flags.numpy().any() and not bool(glow.is_initialized())
    glow.initialize(tf.random.stateless_uniform([16, 8, 8, 1], [0, 1], -0.5, 0.5))
    assert flags.numpy().all() and bool(glow.is_initialized())
    assert all(bool(a.initialized.numpy()) for a in glow.actnorms)
    log_scales = glow.steps[0].params["actnorm"]["log_scale"].numpy()
    assert len({tuple(row) for row in log_scales}) == 3  # each step initialized on its own input


def _training_graph_ops(glow, images) -> collections.Counter:
    """Op types of one Adam training step's graph (its functions included), with counts."""
    optimizer = keras.optimizers.Adam(1e-3)
    variables = list(glow.trainable_variables)
    optimizer.build(variables)
    dist = tfp_glow.glow_distribution(glow)

    @tf.function
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    graph = train_step.get_concrete_function(images).graph.as_graph_def()
    ops = collections.Counter(node.op for node in graph.node)
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    return ops


def test_memory_efficient_training_graph_does_not_grow_with_depth():
    images = tf.random.stateless_uniform([2, 8, 8, 1], [0, 2], -0.5, 0.5)
    ops = {}
    for memory_efficient in (False, True):
        for k in (1, 4):
            glow = tfp_glow.Glow(
                (8, 8, 1), 2, k, hidden_channels=4, seed=0, memory_efficient=memory_efficient
            )
            ops[memory_efficient, k] = _training_graph_ops(glow, images).total()
    # One loop body per level, one variable per weight of a level: K does not appear.
    assert abs(ops[True, 4] - ops[True, 1]) <= 0.01 * ops[True, 1]
    # Unrolled, every step adds its ops (the optimizer's and the weights' own are per level): an
    # ActNorm, a 1x1 convolution and a coupling, forward and backward, are well over 100 ops.
    assert ops[False, 4] - ops[False, 1] > 3 * 100


def test_work_on_the_weights_alone_is_done_once_per_level():
    images = tf.random.stateless_uniform([2, 8, 8, 1], [0, 2], -0.5, 0.5)
    for memory_efficient in (False, True, "reversible"):
        ops = {}
        for k in (1, 4):
            glow = tfp_glow.Glow(
                (8, 8, 1), 2, k, hidden_channels=4, seed=0, memory_efficient=memory_efficient
            )
            ops[k] = _training_graph_ops(glow, images)
        # The LU factors of the 1x1 convolutions, masked by band_part, are built for a level's K
        # matrices at once, in the forward pass and in the backward pass whatever it stores: as
        # many ops at K=4 as at K=1.
        assert ops[4]["MatrixBandPart"] == ops[1]["MatrixBandPart"] > 0, memory_efficient
        # So are the border terms of the edge-bias convolutions (an einsum per level and network).
        assert ops[4]["Einsum"] == ops[1]["Einsum"] > 0, memory_efficient


def test_bad_options_are_refused():
    with pytest.raises(
        ValueError, match=r"`memory_efficient` must be one of.*Received: memory_efficient='yes'"
    ):
        tfp_glow.StackedFlowSteps(2, 4, 8, memory_efficient="yes")
    with pytest.raises(ValueError, match=r"Expected 2 step seeds.*Received: seed=\[1\]"):
        tfp_glow.StackedFlowSteps(2, 4, 8, seed=[1])
    with pytest.raises(ValueError, match="Received: num_steps=0"):
        tfp_glow.StackedFlowSteps(0, 4, 8)
    with pytest.raises(ValueError, match="Received: channels=1"):
        tfp_glow.StackedFlowSteps(2, 1, 8)
