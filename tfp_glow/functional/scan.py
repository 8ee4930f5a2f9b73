"""A level's K steps of flow as one loop of a step function over stacked weights.

`step(weights_k, x) -> (x, log_det)` is one step's map; `weights` a nest whose leaves all carry
the step axis first, [K, ...]. The loop runs

    x_0 = x;   x_{k+1}, ldj_k = step(weights[k], x_k),  k = 0..K-1 (reversed with `reverse`)
    log|det| = sum_k ldj_k

as one `tf.while_loop` whose body is one step, so the graph holds one step whatever K is, or
unrolled into K copies (`unroll=True`: a bigger graph that Grappler can optimize across steps).
It is the pattern of `flax.linen.scan` over stacked parameters, and the two memory-efficient
variants are rematerialization around the step function (`nn.remat`), as in reversible networks
([1], Section 3 of [2]):

- `scan_recomputing` stores each step's input x_k ([N, h, w, c]: far smaller than the
  conditioner's hidden activations) and nothing inside the steps; the gradient loop recomputes
  step k from x_k under a tape and backpropagates through it. Gradients equal the plain loop's.
- `scan_reversible` stores nothing per step: a step is exactly invertible, so the gradient loop
  rebuilds each input from the step's output, x_k = rebuild(weights[k], x_{k+1}), and recomputes
  the step from it. Memory does not grow with K, but each rebuilt input carries the round-off of
  every step after it, so its gradients drift from the plain loop's with depth
  (experiments/RESULTS.md measures it).

Every loop takes a flat batch, x: [N, ...]; the log-dets are per example, [N].

#### References

[1]: Aidan N. Gomez, Mengye Ren, Raquel Urtasun, Roger B. Grosse. The Reversible Residual Network:
     Backpropagation Without Storing Activations. In _Neural Information Processing Systems_, 2017.
[2]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible 1x1
     Convolutions. In _Neural Information Processing Systems_, 2018.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

__all__ = ["num_steps", "scan", "scan_recomputing", "scan_reversible"]

Step = Callable[[dict, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def num_steps(weights) -> int:
    """K, the leading dimension of every leaf of `weights`."""
    return int(tf.nest.flatten(weights)[0].shape[0])


def _slice(flat, k):
    return [t[k] for t in flat]


def _per_example(log_det: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    return tf.broadcast_to(log_det, tf.shape(x)[:1])


def scan(step: Step, weights, x: tf.Tensor, reverse: bool = False, unroll: bool = False):
    """(x after the K steps, the summed log-det [N])."""
    count = num_steps(weights)
    flat = tf.nest.flatten(weights)
    log_det = tf.zeros(tf.shape(x)[:1], x.dtype)
    if unroll:
        # Unstacked once: the gradient of each leaf is one stack, not K slices' scatters.
        unstacked = [tf.unstack(t, count) for t in flat]
        for k in reversed(range(count)) if reverse else range(count):
            x, step_log_det = step(tf.nest.pack_sequence_as(weights, [t[k] for t in unstacked]), x)
            log_det += _per_example(step_log_det, x)
        return x, log_det

    def body(i, x, log_det):
        k = count - 1 - i if reverse else i
        x, step_log_det = step(tf.nest.pack_sequence_as(weights, _slice(flat, k)), x)
        return i + 1, x, log_det + _per_example(step_log_det, x)

    _, x, log_det = tf.while_loop(
        lambda i, *_: i < count, body, (tf.constant(0), x, log_det), maximum_iterations=count
    )
    return x, log_det


def _inputs_recorded(step: Step, weights, x: tf.Tensor):
    """The plain loop, also returning every step's input x_k, [K, N, ...]."""
    count = num_steps(weights)
    flat = tf.nest.flatten(weights)

    def body(i, x, log_det, inputs):
        inputs = inputs.write(i, x)
        x, step_log_det = step(tf.nest.pack_sequence_as(weights, _slice(flat, i)), x)
        return i + 1, x, log_det + _per_example(step_log_det, x), inputs

    inputs = tf.TensorArray(x.dtype, size=count, element_shape=x.shape)
    _, x, log_det, inputs = tf.while_loop(
        lambda i, *_: i < count,
        body,
        (tf.constant(0), x, tf.zeros(tf.shape(x)[:1], x.dtype), inputs),
        maximum_iterations=count,
    )
    return x, log_det, inputs.stack()


def _rematerialized(step: Step, weights, x: tf.Tensor, run_forward, step_input):
    """The loop as a `tf.custom_gradient` of x and the floating-point leaves of `weights` (the
    others, an integer dropout salt or channel order, are constants of the loop).

    `run_forward(weights, x) -> (y, log_det, saved)` runs the steps and returns what the backward
    pass keeps; `step_input(k, weights_k, x_out, saved) -> x_k` gives step k's input in the
    backward loop, k = K-1..0, from the step's output x_out (y at k = K-1). Each step is recomputed
    from its input under a tape, and the upstream gradient backpropagated through it.
    """
    flat = tf.nest.flatten(weights)
    floating = [t.dtype.is_floating for t in flat]
    count = num_steps(weights)

    # Only tensors are its inputs: a variable read inside would be an error of tf.custom_gradient.
    @tf.custom_gradient
    def run(x, *values):
        values = iter(values)
        leaves = [next(values) if is_floating else t for t, is_floating in zip(flat, floating, strict=True)]
        y, log_det, saved = run_forward(tf.nest.pack_sequence_as(weights, leaves), x)

        def gradient(dy, dlog_det):
            # Not before the gradient arrives: graph executors run ops as soon as their inputs are
            # ready, and a recomputation scheduled during the forward pass would hold its
            # activations as long as the plain loop does.
            with tf.control_dependencies([dy, dlog_det]):
                kept = tf.nest.map_structure(lambda t: tf.identity(tf.stop_gradient(t)), (y, saved))
            dlog_det = tf.broadcast_to(dlog_det, tf.shape(dy)[:1])
            trained = [t for t, is_floating in zip(leaves, floating, strict=True) if is_floating]
            arrays = [
                tf.TensorArray(t.dtype, size=count, element_shape=t.shape[1:], clear_after_read=False)
                for t in trained
            ]

            def body(i, x_out, dx, arrays):
                k = count - 1 - i
                step_leaves = _slice(leaves, k)
                step_weights = tf.nest.pack_sequence_as(weights, step_leaves)
                x_in = tf.stop_gradient(step_input(k, step_weights, x_out, kept[1]))
                watched = [t for t, is_floating in zip(step_leaves, floating, strict=True) if is_floating]
                with tf.GradientTape() as tape:
                    tape.watch([x_in, *watched])
                    x_again, step_log_det = step(step_weights, x_in)
                    step_log_det = _per_example(step_log_det, x_again)
                grads = tape.gradient(
                    [x_again, step_log_det],
                    [x_in, *watched],
                    output_gradients=[dx, dlog_det],
                    unconnected_gradients=tf.UnconnectedGradients.ZERO,
                )
                arrays = [array.write(k, g) for array, g in zip(arrays, grads[1:], strict=True)]
                return i + 1, x_in, grads[0], arrays

            _, _, dx, arrays = tf.while_loop(
                lambda i, *_: i < count, body, (tf.constant(0), kept[0], dy, arrays), maximum_iterations=count
            )
            return (dx, *(array.stack() for array in arrays))

        return (y, log_det), gradient

    return run(x, *(t for t, is_floating in zip(flat, floating, strict=True) if is_floating))


def scan_recomputing(step: Step, weights, x: tf.Tensor):
    """`scan` (k = 0..K-1) storing only the steps' inputs for the backward pass, which recomputes
    each step from its stored input: the same gradients as `scan`, without the activations
    inside the steps."""
    return _rematerialized(
        step,
        weights,
        x,
        lambda weights, x: _inputs_recorded(step, weights, x),
        lambda k, step_weights, x_out, inputs: inputs[k],
    )


def scan_reversible(step: Step, rebuild: Step, weights, x: tf.Tensor):
    """`scan` (k = 0..K-1) storing nothing per step: the backward pass rebuilds step k's input
    from its output by `rebuild(weights[k], x_{k+1})`, the step's exact inverse, and recomputes
    the step from it."""
    return _rematerialized(
        step,
        weights,
        x,
        lambda weights, x: (*scan(step, weights, x), ()),
        lambda k, step_weights, x_out, _: rebuild(step_weights, x_out)[0],
    )
