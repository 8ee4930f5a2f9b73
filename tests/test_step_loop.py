"""StepLoop: a level's steps as one loop over stacked weights, and the steps as views of them."""

from __future__ import annotations

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tests.bijector_test_util import perturb
from tfp_glow.bijectors.step_loop import StepLoop, StepSlice, _shadowed


def _glow(num_steps=3, dtype=tf.float64, **kwargs):
    glow = tfp_glow.Glow(
        (8, 8, 2), num_levels=2, num_steps=num_steps, hidden_channels=8, seed=1, dtype=dtype, **kwargs
    )
    images = tf.random.stateless_uniform([4, 8, 8, 2], [3, 4], -0.5, 0.5, dtype)
    glow.initialize(images)
    perturb(glow, seed=2, scale=0.05)
    return glow, tfp_glow.Squeeze().forward(images)


def test_loop_unrolled_and_step_by_step_are_the_same_maps():
    glow, x = _glow(dropout=0.5)
    loop = glow.step_loops[0]
    # Dropout masks differ between steps (each network folds its own salt into the seed).
    seed = tf.constant([5, 6])
    expected_y, expected_log_det = x, 0.0
    for step in glow.steps[0]:
        expected_y, log_det = step.inverse_and_log_det(expected_y, dropout_seed=seed)
        expected_log_det += log_det
    for unroll in (False, True):
        y, log_det = loop.inverse_and_log_det(x, unroll=unroll, dropout_seed=seed)
        np.testing.assert_allclose(y.numpy(), expected_y.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(log_det.numpy(), expected_log_det.numpy(), rtol=1e-12)
        back, forward_log_det = loop.forward_and_log_det(y, unroll=unroll, dropout_seed=seed)
        np.testing.assert_allclose(back.numpy(), x.numpy(), atol=1e-10)
        np.testing.assert_allclose(forward_log_det.numpy(), -log_det.numpy(), rtol=1e-10)
    # The masks matter: without the seed the map differs.
    assert np.max(np.abs(loop.inverse_and_log_det(x)[0].numpy() - expected_y.numpy())) > 1e-3


def test_steps_are_views_of_the_stacked_variables():
    glow, x = _glow()
    loop = glow.step_loops[0]
    assert not any(step.variables for step in loop.steps)
    assert {id(v) for v in loop.stacked} <= {id(v) for v in glow.variables}
    step = glow.steps[0][2]
    assert isinstance(step.actnorm.loc, StepSlice)
    # Writing a view writes the slice of its step, and only that ...
    variable = step.actnorm.loc.stacked
    old = variable.numpy().copy()
    step.actnorm.loc.assign_add(tf.ones([8], tf.float64))
    np.testing.assert_allclose(variable.numpy()[2], old[2] + 1)
    np.testing.assert_array_equal(np.delete(variable.numpy(), 2, axis=0), np.delete(old, 2, axis=0))
    np.testing.assert_array_equal(step.actnorm.loc.numpy(), variable.numpy()[2])
    # ... and the loop and the step read the same weights.
    expected = x
    for s in glow.steps[0]:
        expected = s.inverse_and_log_det(expected)[0]
    np.testing.assert_allclose(loop.inverse_and_log_det(x)[0].numpy(), expected.numpy(), rtol=1e-12)


def test_initialize_writes_every_slice():
    glow = tfp_glow.Glow((8, 8, 1), num_levels=1, num_steps=3, hidden_channels=4, seed=0)
    flags = next(v for v in glow.variables if v.name.endswith("/actnorm/initialized:0"))
    assert not flags.numpy().any()
    glow.initialize(tf.random.stateless_uniform([16, 8, 8, 1], [0, 1], -0.5, 0.5))
    assert flags.numpy().all() and all(bool(a.initialized.numpy()) for a in glow.actnorms)
    log_scales = next(v for v in glow.variables if v.name.endswith("/actnorm/log_scale:0")).numpy()
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
    # Unrolled, every step adds its ops (the optimizer's and the weights' own are per level).
    assert ops[False, 4] > 1.3 * ops[False, 1]


def test_work_on_the_weights_alone_is_done_once_per_level():
    images = tf.random.stateless_uniform([2, 8, 8, 1], [0, 2], -0.5, 0.5)
    ops = {}
    for k in (1, 4):
        glow = tfp_glow.Glow((8, 8, 1), 2, k, hidden_channels=4, seed=0)
        ops[k] = _training_graph_ops(glow, images)
    # Unrolled, each step has its own ops; but the LU factors of the 1x1 convolutions, masked by
    # band_part, are built for a level's K matrices at once: as many ops at K=4 as at K=1.
    assert ops[4]["MatrixBandPart"] == ops[1]["MatrixBandPart"] > 0
    # So are the border terms of the edge-bias convolutions (an einsum per level and network).
    assert ops[4]["Einsum"] == ops[1]["Einsum"] > 0


def test_a_failing_step_leaves_no_computed_weight_function_behind():
    glow, _ = _glow()
    loop = glow.step_loops[0]
    with pytest.raises(ValueError, match="channels"):
        loop.inverse_and_log_det(tf.zeros([1, 4, 4, 3], tf.float64), unroll=True)  # 8 channels expected
    step = loop.steps[0]
    for path, name, _ in loop._functions:
        module = step
        for attribute in path:
            module = getattr(module, attribute)
        assert name not in vars(module), f"{path}.{name} still shadowed"
    # The methods compute again: the step is usable on its own.
    assert step.permutation.matrix().shape == [8, 8]


def test_a_variable_out_of_reach_is_refused():
    step = tfp_glow.FlowStep(4, hidden_channels=4, seed=0)
    step.coupling.extra = [tf.Variable(1.0)]  # in a list: the loop could not stack it
    with pytest.raises(ValueError, match="reaches 19 of the 20 variables"):
        StepLoop([step])


def test_steps_of_other_shapes_are_refused():
    steps = [tfp_glow.FlowStep(4, hidden_channels=4), tfp_glow.FlowStep(6, hidden_channels=4)]
    with pytest.raises(ValueError, match="same structure and shapes"):
        StepLoop(steps)
    with pytest.raises(ValueError, match="at least one step"):
        StepLoop([])


def test_a_computed_border_term_is_only_used_at_its_image_size():
    conv = tfp_glow.ZeroConv2D(2, 3)
    conv.kernel.assign(tf.random.stateless_normal(conv.kernel.shape, [0, 9]))
    computed = tf.fill([4, 4, 3], 7.0)
    with _shadowed(conv, [((), "output_bias", True)], [computed], (4, 4)):
        assert conv.output_bias(4, 4) is computed
        np.testing.assert_array_equal(conv.output_bias(5, 6), tfp_glow.ZeroConv2D.output_bias(conv, 5, 6))
    assert "output_bias" not in vars(conv)
