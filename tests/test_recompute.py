"""Memory-efficient gradients: the same gradients as the plain path, without stored activations."""

from __future__ import annotations

import collections
import functools
import re

import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tests.bijector_test_util import MODES, compile_fn, plain_and_memory_efficient


def _pair(dtype, memory_efficient=True, **kwargs):
    return plain_and_memory_efficient(dtype, perturbation=0.02, memory_efficient=memory_efficient, **kwargs)


def _loss_and_gradients(glow, images, mode):
    def step(images):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(tfp_glow.glow_distribution(glow).log_prob(images))
        return loss, tape.gradient(loss, glow.trainable_variables)

    return compile_fn(step, mode)(images)


@functools.cache
def _plain_reference(dtype):
    """(loss, gradients) of the plain path as a tf.function: the reference for every mode of the
    loop, computed once per dtype (the plain Glow of `_pair` is the same for every mode)."""
    plain, _, images = _pair(dtype)
    loss, grads = _loss_and_gradients(plain, images, "function")
    return loss.numpy(), [g.numpy() for g in grads]


# The recomputing gradient in every mode and dtype; the reversible one shares its custom gradient,
# and differs in what the backward loop rebuilds: in float64 (exact) and in float32 under XLA.
GRADIENT_CASES = [
    *(
        pytest.param("recompute", dtype, rtol, mode, id=f"recompute-{dtype_id}-{mode}")
        for dtype, rtol, dtype_id in ((tf.float64, 1e-8, "f64"), (tf.float32, 1e-4, "f32"))
        for mode in MODES
    ),
    pytest.param("reversible", tf.float64, 1e-8, "function", id="reversible-f64-function"),
    pytest.param("reversible", tf.float32, 1e-4, "xla", id="reversible-f32-xla"),
]


@pytest.mark.parametrize("memory_efficient, dtype, rtol, mode", GRADIENT_CASES)
def test_gradients_equal_the_plain_path(memory_efficient, dtype, rtol, mode):
    _, recomputing, images = _pair(dtype, memory_efficient)
    loss, grads = _plain_reference(dtype)
    loss_r, grads_r = _loss_and_gradients(recomputing, images, mode)
    np.testing.assert_allclose(loss_r.numpy(), loss, rtol=rtol)
    assert all(g is not None for g in grads_r)
    flat = np.concatenate([np.ravel(g) for g in grads])
    flat_r = np.concatenate([np.ravel(g) for g in grads_r])
    assert np.linalg.norm(flat_r - flat) <= rtol * np.linalg.norm(flat)
    for g, g_r in zip(grads, grads_r, strict=True):
        np.testing.assert_allclose(g_r.numpy(), g, rtol=rtol * 10, atol=rtol * np.max(np.abs(flat)))


@pytest.mark.parametrize("memory_efficient", ["recompute", "reversible"])
def test_gradients_reach_the_input_too(memory_efficient):
    plain, recomputing, images = _pair(
        tf.float64, memory_efficient, coupling="additive", permutation="shuffle"
    )
    grads = []
    for glow in (plain, recomputing):
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = tf.reduce_sum(glow.inverse(images) ** 2)
        grads.append(tape.gradient(loss, images).numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-8)


def test_reconstruction_error_of_every_step_is_small():
    """The gradients rest on rebuilding each step's input from its output: check it."""
    plain, _, images = _pair(tf.float32)
    x = plain.expand.inverse(images)
    worst = 0.0
    for step in plain.steps[0]:
        y, _ = step.inverse_and_log_det(x)
        worst = max(worst, float(tf.reduce_max(tf.abs(step.forward_and_log_det(y)[0] - x))))
        x = y
    assert worst < 1e-5


def test_glow_model_option_trains_the_same():
    from tfp_glow import data

    images = data.load_numpy("digits", "train")[:64]
    losses = []
    for memory_efficient in (False, True):
        model = tfp_glow.GlowModel.from_preset(
            "digits",
            num_levels=2,
            num_steps=2,
            hidden_channels=8,
            seed=0,
            memory_efficient=memory_efficient,
        )
        assert model.get_config()["memory_efficient"] is memory_efficient
        model.compile(optimizer=tfp_glow.default_optimizer(1e-2, warmup_steps=1))
        model.initialize(images)
        losses.append(model.fit(images, batch_size=32, epochs=2, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def test_deep_levels_recompute_each_step_from_its_stored_input():
    """The recomputing gradient rebuilds no input: with these weights, rebuilding each input from
    the rebuilt input of the step after it (the reversible mode) compounds the round-off over the
    16 steps, and once gave NaN gradients."""
    plain, recomputing, images = plain_and_memory_efficient(
        tf.float32, perturbation=0.05, image_shape=(8, 8, 1), num_levels=1, num_steps=16, hidden_channels=16
    )
    loss, grads = _loss_and_gradients(plain, images, "function")
    loss_r, grads_r = _loss_and_gradients(recomputing, images, "function")
    flat = np.concatenate([np.ravel(g) for g in grads])
    flat_r = np.concatenate([np.ravel(g) for g in grads_r])
    assert np.all(np.isfinite(flat)) and np.all(np.isfinite(flat_r))
    np.testing.assert_allclose(loss_r.numpy(), loss.numpy(), rtol=1e-4)
    assert np.linalg.norm(flat_r - flat) <= 1e-3 * np.linalg.norm(flat)


def _loop_bodies(glow) -> tuple[list[collections.Counter], list[collections.Counter]]:
    """Op counts of the training gradient's while-loop bodies: (forward bodies, backward bodies).

    A backward body is one with the convolutions' gradients in it."""
    images = tf.random.stateless_uniform([2, *glow.image_shape], [0, 2], -0.5, 0.5)
    dist = tfp_glow.glow_distribution(glow)
    variables = list(glow.trainable_variables)

    @tf.function
    def gradients(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x))
        return tape.gradient(loss, variables)

    library = gradients.get_concrete_function(images).graph.as_graph_def().library
    bodies = [
        collections.Counter(n.op for n in f.node_def)
        for f in library.function
        if re.search(r"while(_\d+)?_body", f.signature.name)
    ]
    bodies = [ops for ops in bodies if ops["Conv2D"] or ops["Conv2DBackpropFilter"]]
    return [b for b in bodies if not b["Conv2DBackpropFilter"]], [
        b for b in bodies if b["Conv2DBackpropFilter"]
    ]


CONVOLUTIONS_PER_STEP = 3  # the coupling network's


def _glow(**kwargs):
    return tfp_glow.Glow((8, 8, 1), 2, 3, hidden_channels=4, seed=0, **kwargs)


def test_the_plain_loop_stores_every_activation_of_every_step():
    """What the memory-efficient tests below rule out: TF's own gradient of a while loop pushes
    each step's intermediates onto stacks (TensorListPushBack) in the forward loop."""
    forward, backward = _loop_bodies(_glow())  # unrolled: no loop
    assert not forward and not backward
    glow = _glow()
    for level in glow.steps:
        level._unroll = False
    forward, backward = _loop_bodies(glow)
    # (The library holds each forward body twice: as written, and as rewritten for its gradient.)
    assert any(body["TensorListPushBack"] > 10 for body in forward)
    # Its gradient loop recomputes nothing: it pops what the forward loop stored.
    assert all(body["Conv2D"] == 0 and body["TensorListPopBack"] > 10 for body in backward)


def test_the_recomputing_gradient_stores_one_input_per_step_and_recomputes_the_step():
    forward, backward = _loop_bodies(_glow(memory_efficient="recompute"))
    assert len(forward) == len(backward) == 2  # one loop per level each way, none rewritten
    for body in forward:
        # The step's input, written once per step; nothing accumulated for TF's own gradient.
        assert body["TensorListSetItem"] == 1 and body["TensorListPushBack"] == 0
    for body in backward:
        assert body["Conv2D"] == CONVOLUTIONS_PER_STEP and body["TensorListPopBack"] == 0


def test_the_reversible_gradient_stores_nothing_per_step_and_rebuilds_each_input():
    forward, backward = _loop_bodies(_glow(memory_efficient="reversible"))
    assert len(forward) == len(backward) == 2
    for body in forward:
        assert body["TensorListSetItem"] == 0 and body["TensorListPushBack"] == 0
    for body in backward:
        # The step's generative map rebuilds its input, then the step is recomputed from it.
        assert body["Conv2D"] == 2 * CONVOLUTIONS_PER_STEP and body["TensorListPopBack"] == 0
