"""A level's K steps of flow as one loop over their stacked weights, with a recomputing gradient."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfp_glow.bijectors._base import spatial_shape

__all__ = ["StepLoop", "StepSlice"]


class StepLoop(tf.Module):
    """The K steps of flow of one level, with their weights stacked: one variable per weight.

    The steps of a level have the same structure and shapes, and differ only in
    their weights. StepLoop owns each weight of the level as one variable
    stacked over the steps, `W[k]` for step k, and leaves each step a
    `StepSlice` view of its slice in place of its own variable, so the steps
    still compute on their own (and `initialize` assigns through the views),
    but their state is saved with the level's variables, not with a step. A
    level of K steps thus has the variables of one step, each K times larger:
    the optimizer's update, the moving averages and the checkpoint have as many
    ops and entries at K=32 as at K=1. The encoding direction of the level is

        x_0 = y;   x_{k+1}, ldj_k = step(W[k]).inverse(x_k),  k = 0..K-1
        log|det| = sum_k ldj_k

    run as one `tf.while_loop` whose body is one step, so the traced graph holds
    one step of ops whatever K is (unrolled, the graph grows linearly in K, and at
    K=32 the graph, not the activations, is most of the training memory; see
    experiments/RESULTS.md). The body runs the first step's own methods with each
    view replaced by the slice `W[k]`, so the maths is the code of the steps.
    `unroll=True` runs the same maps as K copies instead (a bigger graph, and
    Grappler can optimize across steps).

    `inverse_and_log_det(y, recompute=True)` also stores none of the steps'
    activations for the backward pass ([1], Section 3 of [2]), only each step's
    output x_{k+1} ([N, h, w, c], far smaller than a coupling network's hidden
    activations). A step is exactly invertible, so the gradient loop runs the
    steps in reverse, k = K-1..0, rebuilds each step's input from its stored
    output by the generative map, x_k' = step(W[k]).forward(x_{k+1}), and
    backpropagates through that one step under a tape. Activation memory is one
    step's plus the K step outputs, at the cost of about one more forward and
    inverse pass; the gradients equal the plain path's up to one step's
    reconstruction error |x_k' - x_k|, which tests check. (Rebuilding x_k from
    the rebuilt x_{k+1} instead would store nothing per step, but the errors
    compound over the level.)

    Per-step constants that are not variables (a network's dropout salt) are
    listed by their module in a `_per_step_constants` class attribute and
    stacked the same way, as constants.

    Work on the weights alone (the LU product of a 1x1 convolution and its
    inverse, ActNorm scales, the coupling network's folded kernels and border
    terms) is done once per level, not per step: a module lists such methods,
    written for any leading axes, in a `_weight_functions` class attribute (no
    arguments) or `_spatial_weight_functions` (the H and W of the level's
    activations); the loop calls each on the stacked weights, `f(W)` [K, ...],
    and step k's call of the method returns `f(W)[k]`. A level then has one LU
    product of K matrices instead of K products, in the forward pass and in its
    plain gradient: a fifth fewer ops for the digits model, and half its tracing
    time (experiments/RESULTS.md). The recomputing gradient below still computes
    them per step, in its loop over the steps.

    #### References

    [1]: Aidan N. Gomez, Mengye Ren, Raquel Urtasun, Roger B. Grosse. The Reversible
         Residual Network: Backpropagation Without Storing Activations. In _Neural
         Information Processing Systems_, 2017.
    [2]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
    """

    def __init__(self, steps: Sequence[tf.Module], name: str = "step_loop"):
        """Stacks the variables of `steps` (new, non-empty FlowSteps of one structure).

        Each step's variables are replaced by views of the stacked ones: the steps
        must not have been handed to anything that kept their own variables.
        """
        super().__init__(name=name)
        if not steps:
            raise ValueError("StepLoop needs at least one step. Received: steps=[]")
        steps = list(steps)
        paths = _leaf_paths(steps[0])
        for step in steps:
            if _leaf_paths(step) != paths or any(
                np.shape(_get(step, path)) != np.shape(_get(steps[0], path)) for path in paths
            ):
                raise ValueError(
                    "StepLoop stacks the weights of steps of the same structure and shapes; "
                    f"Received: {step.name} differs from {steps[0].name}"
                )
            found = sum(isinstance(_get(step, path), tf.Variable) for path in paths)
            if found != len(step.variables):
                # A variable out of reach (in a list, say) would silently keep step 0's value.
                raise ValueError(
                    f"StepLoop reaches {found} of the {len(step.variables)} variables of {step.name}: "
                    "every variable must be an attribute of the step or of one of its tf.Modules"
                )
        self._steps = steps
        self._paths = paths
        self._functions = _weight_function_paths(steps[0])
        variables = []
        # Per-step constants by leaf index; a tuple, so that tf.Module does not track it.
        constants = []
        with self.name_scope:
            for i, path in enumerate(paths):
                first = _get(steps[0], path)
                stacked = [_get(step, path) for step in steps]
                if isinstance(first, tf.Variable):
                    name = "/".join(p.lstrip("_") for p in path)
                    variables.append(tf.Variable(tf.stack(stacked), trainable=first.trainable, name=name))
                else:
                    # As the step would convert it (a Python int is int32): the dtype of a
                    # dropout salt changes the stream that stateless_fold_in draws.
                    constants.append((i, np.stack([tf.convert_to_tensor(v).numpy() for v in stacked])))
        self.stacked = variables
        self._constants = tuple(constants)
        leaves = self._in_path_order(variables)
        self._trainable = tuple(
            isinstance(leaf, tf.Variable) and leaf.trainable and leaf.dtype.is_floating for leaf in leaves
        )
        for k, step in enumerate(steps):
            for path, leaf in zip(paths, leaves, strict=True):
                if isinstance(leaf, tf.Variable):
                    owner = _get(step, path[:-1])
                    # delattr drops the step's checkpoint dependency on its own variable.
                    delattr(owner, path[-1])
                    object.__setattr__(owner, path[-1], StepSlice(leaf, k))

    def _in_path_order(self, variables):
        """The stacked variables (or tensors of them) and the constants, in path order."""
        variables = iter(variables)
        leaves = []
        constants = dict(self._constants)
        for i in range(len(self._paths)):
            leaves.append(constants[i] if i in constants else next(variables))
        return leaves

    @property
    def steps(self) -> list:
        """The K steps, whose weights are views of this loop's stacked variables."""
        return list(self._steps)

    @property
    def num_steps(self) -> int:
        return len(self._steps)

    def _leaves(self) -> list[tf.Tensor]:
        """Every leaf read once: [K, *leaf_shape] each, in path order."""
        return [tf.convert_to_tensor(leaf) for leaf in self._in_path_order(self.stacked)]

    def _weight_terms(self, leaves, x) -> list:
        """Every weight function of the steps on the stacked `leaves`: [K, ...] each (nests);
        the spatial ones for the H and W of the level's activations `x`."""
        step = self._steps[0]
        spatial = spatial_shape(x)
        terms = []
        with _substituted(step, self._paths, leaves), contextlib.ExitStack() as shadows:
            for function in self._functions:
                path, name, is_spatial = function
                terms.append(getattr(_get(step, path), name)(*(spatial if is_spatial else ())))
                # A later function that calls this one (a bias from the folded kernel) reuses it.
                shadows.enter_context(_shadowed(step, [function], [terms[-1]], spatial))
        return terms

    def _step(self, method: str, step_leaves, x, conditioning, step_terms=None):
        """`getattr(step, method)(x)` of the step whose leaves are `step_leaves` (one step's
        slices); with `step_terms` (its slices of `_weight_terms`), its weight functions return
        those instead of computing them."""
        step = self._steps[0]
        functions = self._functions if step_terms is not None else ()
        spatial = spatial_shape(x)
        with _substituted(step, self._paths, step_leaves), _shadowed(step, functions, step_terms, spatial):
            x, log_det = getattr(step, method)(x, **conditioning)
        return x, tf.broadcast_to(log_det, tf.shape(x)[:1])

    def _run(self, method: str, leaves, x, reverse: bool, unroll: bool, conditioning, record=False):
        """(x, log_det) after the K steps; with `record`, also every step's output, [K, *x.shape]."""
        num_steps = self.num_steps
        log_det = tf.zeros(tf.shape(x)[:1], x.dtype)
        terms = self._weight_terms(leaves, x)
        flat_terms = tf.nest.flatten(terms)  # None (no border kernel, say) stays None

        def step_terms(k, flat):
            return tf.nest.pack_sequence_as(terms, [None if t is None else t[k] for t in flat])

        if unroll:
            # Unstacked once: the gradient of each leaf is one stack, not K slices' scatters.
            leaves = [tf.unstack(leaf, num_steps) for leaf in leaves]
            flat_terms = [None if t is None else tf.unstack(t, num_steps) for t in flat_terms]
            outputs = []
            for k in reversed(range(num_steps)) if reverse else range(num_steps):
                x, step_log_det = self._step(
                    method, [leaf[k] for leaf in leaves], x, conditioning, step_terms(k, flat_terms)
                )
                log_det += step_log_det
                outputs.append(x)
            return (x, log_det, tf.stack(outputs)) if record else (x, log_det)

        def body(i, x, log_det, *outputs):
            k = num_steps - 1 - i if reverse else i
            x, step_log_det = self._step(
                method, [leaf[k] for leaf in leaves], x, conditioning, step_terms(k, flat_terms)
            )
            return (i + 1, x, log_det + step_log_det, *(array.write(i, x) for array in outputs))

        outputs = [tf.TensorArray(x.dtype, size=num_steps, element_shape=x.shape)] if record else []
        _, x, log_det, *outputs = tf.while_loop(
            lambda i, *_: i < num_steps,
            body,
            (tf.constant(0), x, log_det, *outputs),
            maximum_iterations=num_steps,
        )
        return (x, log_det, outputs[0].stack()) if record else (x, log_det)

    def forward_and_log_det(
        self, x: tf.Tensor, unroll: bool = False, **conditioning
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The generative direction: steps K-1..0 forward; log-det per example [N]. x: [N, h, w, c]."""
        return self._run("forward_and_log_det", self._leaves(), x, True, unroll, conditioning)

    def inverse_and_log_det(
        self, y: tf.Tensor, recompute: bool = False, unroll: bool = False, **conditioning
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The encoding direction: steps 0..K-1 inverse; log-det per example [N]. y: [N, h, w, c].

        With `recompute=True` the gradient rebuilds the activations (see the class
        docstring) instead of the loop storing them; `unroll` then applies to the
        forward pass only.
        """
        leaves = self._leaves()
        if not recompute:
            return self._run("inverse_and_log_det", leaves, y, False, unroll, conditioning)
        trainable = self._trainable
        fixed = [leaf for leaf, t in zip(leaves, trainable, strict=True) if not t]

        def merged(weights):
            weights, fixed_leaves = iter(weights), iter(fixed)
            return [next(weights) if t else next(fixed_leaves) for t in trainable]

        # Only the trainable weights are inputs of the custom gradient. Every other
        # read of a variable inside it would be an error of tf.custom_gradient (no
        # `variables` argument): a leaf the substitution missed cannot go unnoticed.
        @tf.custom_gradient
        def encode(y, *weights):
            x, log_det, outputs = self._run(
                "inverse_and_log_det", merged(weights), y, False, unroll, conditioning, record=True
            )

            def gradient(dx, dlog_det):
                return self._recomputed_gradient(
                    outputs, dx, dlog_det, merged(weights), trainable, conditioning
                )

            return (x, log_det), gradient

        return encode(y, *(leaf for leaf, t in zip(leaves, trainable, strict=True) if t))

    def _recomputed_gradient(self, outputs, dx, dlog_det, leaves, trainable, conditioning):
        """Gradients of the encoding loop; `outputs` [K, ...] holds each step's output."""
        num_steps = self.num_steps
        weights = [leaf for leaf, t in zip(leaves, trainable, strict=True) if t]
        # Not before the gradient arrives: graph executors run ops as soon as their inputs
        # are ready, and a recomputation scheduled during the forward pass would hold its
        # activations as long as the plain path does.
        with tf.control_dependencies([dx, dlog_det]):
            outputs = tf.identity(tf.stop_gradient(outputs))
        dlog_det = tf.broadcast_to(dlog_det, tf.shape(dx)[:1])
        arrays = [
            tf.TensorArray(w.dtype, size=num_steps, element_shape=w.shape[1:], clear_after_read=False)
            for w in weights
        ]

        def body(i, dx, arrays):
            k = num_steps - 1 - i
            step_leaves = [leaf[k] for leaf in leaves]
            # Step k's input, rebuilt from its own stored output: one step's reconstruction
            # error, which does not compound over the level as rebuilding from the rebuilt
            # input of step k + 1 would (NaN at K=16 with perturbed float32 weights).
            x_in = tf.stop_gradient(
                self._step("forward_and_log_det", step_leaves, outputs[k], conditioning)[0]
            )
            step_weights = [leaf for leaf, t in zip(step_leaves, trainable, strict=True) if t]
            with tf.GradientTape() as tape:
                tape.watch([x_in, *step_weights])
                x_again, log_det = self._step("inverse_and_log_det", step_leaves, x_in, conditioning)
            grads = tape.gradient(
                [x_again, log_det],
                [x_in, *step_weights],
                output_gradients=[dx, dlog_det],
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            arrays = [a.write(k, g) for a, g in zip(arrays, grads[1:], strict=True)]
            return i + 1, grads[0], arrays

        _, dy, arrays = tf.while_loop(
            lambda i, *_: i < num_steps,
            body,
            (tf.constant(0), dx, arrays),
            maximum_iterations=num_steps,
        )
        return (dy, *(a.stack() for a in arrays))


class StepSlice:
    """Step k's view of a stacked variable: reads as `stacked[k]`, assigns into that slice.

    It converts to a tensor wherever TensorFlow expects one and has the
    arithmetic operators of a tensor, so a step's code reads it as it would its
    own variable; `assign`, `assign_add` and `assign_sub` write the slice (ActNorm's
    initialization uses `assign`) and return the update of the stacked variable.
    """

    def __init__(self, stacked: tf.Variable, index: int):
        self.stacked = stacked
        self.index = index

    @property
    def dtype(self) -> tf.DType:
        return self.stacked.dtype

    @property
    def shape(self) -> tf.TensorShape:
        return self.stacked.shape[1:]

    @property
    def trainable(self) -> bool:
        return self.stacked.trainable

    @property
    def name(self) -> str:
        return f"{self.stacked.name}[{self.index}]"

    def value(self) -> tf.Tensor:
        return self.stacked[self.index]

    read_value = value

    def numpy(self):
        return self.value().numpy()

    def assign(self, value):
        value = tf.convert_to_tensor(value, self.dtype)
        return self.stacked.scatter_update(tf.IndexedSlices(value[tf.newaxis], [self.index]))

    def __bool__(self):
        return bool(self.value())

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.numpy(), dtype)

    def assign_add(self, delta):
        delta = tf.convert_to_tensor(delta, self.dtype)
        return self.stacked.scatter_add(tf.IndexedSlices(delta[tf.newaxis], [self.index]))

    def assign_sub(self, delta):
        delta = tf.convert_to_tensor(delta, self.dtype)
        return self.stacked.scatter_sub(tf.IndexedSlices(delta[tf.newaxis], [self.index]))

    def __tf_tensor__(self, dtype=None, name=None):
        return tf.convert_to_tensor(self.value(), dtype=dtype, name=name)

    def __repr__(self):
        return f"<StepSlice {self.name} shape={self.shape} dtype={self.dtype.name}>"


def _delegate(operator):
    return lambda self, *args: getattr(self.value(), operator)(*args)


for _operator in (
    "__neg__ __abs__ __add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ "
    "__pow__ __rpow__ __matmul__ __rmatmul__ __getitem__ __lt__ __le__ __gt__ __ge__ __invert__"
).split():
    setattr(StepSlice, _operator, _delegate(_operator))


def _leaf_paths(module: tf.Module) -> list[tuple[str, ...]]:
    """Attribute paths of every tf.Variable and per-step constant of `module`, sorted."""
    paths = []
    for name, value in sorted(vars(module).items()):
        if name in ("_cache", "_parameters", "_graph_parents"):
            continue
        if isinstance(value, tf.Variable):
            paths.append((name,))
        elif isinstance(value, tf.Module):
            paths.extend((name, *p) for p in _leaf_paths(value))
    paths.extend((name,) for name in getattr(type(module), "_per_step_constants", ()))
    return paths


def _weight_function_paths(module: tf.Module, prefix=()) -> list[tuple[tuple[str, ...], str, bool]]:
    """(module path, method name, spatial) of every weight function of `module` and its tf.Modules."""
    found = [(prefix, name, False) for name in getattr(type(module), "_weight_functions", ())]
    found += [(prefix, name, True) for name in getattr(type(module), "_spatial_weight_functions", ())]
    for name, value in sorted(vars(module).items()):
        if isinstance(value, tf.Module) and name not in ("_cache", "_parameters", "_graph_parents"):
            found.extend(_weight_function_paths(value, (*prefix, name)))
    return found


def _get(module, path):
    for name in path:
        module = getattr(module, name)
    return module


# Substitution rewrites attributes of a shared step: one thread at a time.
_SUBSTITUTION_LOCK = threading.RLock()


@contextlib.contextmanager
def _substituted(module, paths, values):
    """`module` with the leaf at each path replaced by a tensor, restored on exit."""
    saved = []
    with _SUBSTITUTION_LOCK:
        try:
            for path, value in zip(paths, values, strict=True):
                owner = _get(module, path[:-1])
                saved.append((owner, path[-1], getattr(owner, path[-1])))
                # object.__setattr__: not tf.Module's tracking, which would record the tensor.
                object.__setattr__(owner, path[-1], value)
            yield
        finally:
            for owner, name, original in reversed(saved):
                object.__setattr__(owner, name, original)


class _Computed:
    """A weight function's value computed beforehand, standing in for the method.

    A spatial function called for another image size than the value's (a module that
    convolves at another resolution) gets the method's own result instead.
    """

    def __init__(self, method, value, spatial=None):
        self._method = method
        self._value = value
        self._spatial = spatial

    def __call__(self, *args, **kwargs):
        if self._spatial is not None:
            asked = tuple(args) + tuple(kwargs.values())
            if any(
                isinstance(a, int) and isinstance(b, int) and a != b
                for a, b in zip(asked, self._spatial, strict=True)
            ):
                return self._method(*args, **kwargs)
        return self._value


@contextlib.contextmanager
def _shadowed(module, functions, values, spatial):
    """`module` whose weight function at each (path, name, is_spatial) of `functions` returns
    the matching value (the spatial ones for images of size `spatial`, (H, W))."""
    shadowed = []
    with _SUBSTITUTION_LOCK:
        try:
            for (path, name, is_spatial), value in zip(functions, values or (), strict=True):
                owner = _get(module, path)
                computed = _Computed(getattr(owner, name), value, spatial if is_spatial else None)
                # An instance attribute hides the method; object.__setattr__, not tf.Module's tracking.
                object.__setattr__(owner, name, computed)
                shadowed.append((owner, name))
            yield
        finally:
            for owner, name in reversed(shadowed):
                object.__delattr__(owner, name)
