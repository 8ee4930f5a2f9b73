"""StackedFlowSteps: a level's K steps of flow as one bijector over stacked parameters."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_glow import variables
from tfp_glow._checks import check_image, check_int, spatial_shape
from tfp_glow.bijectors._base import GlowBijector, check_finite_for_initialization
from tfp_glow.bijectors.flow_step import FlowStep
from tfp_glow.functional import flow_step, scan

__all__ = ["MEMORY_EFFICIENT", "StackedFlowSteps", "check_memory_efficient"]

# What the backward pass of the encoding direction keeps (see `StackedFlowSteps`).
MEMORY_EFFICIENT = (False, True, "recompute", "reversible")


class StackedFlowSteps(GlowBijector):
    """The K steps of flow of one Glow level, as one bijector over stacked parameters.

    The steps of a level have the same structure and differ only in their
    parameters, so this bijector owns each parameter of the level as one variable
    stacked over the steps, `params[...][k]` for step k (`params` is the nest of
    `tfp_glow.functional.flow_step`, every leaf [K, ...]). The optimizer's update,
    the moving averages and a checkpoint then have as many variables at K=32 as at
    K=1. Its encoding direction (inverse) is

        x_0 = y;   x_{k+1}, ldj_k = flow_step.inverse(weights[k], x_k),  k = 0..K-1
        log|det J_inverse| = sum_k ldj_k

    and its generative direction (forward) runs the steps' forward maps for k =
    K-1..0. `weights = flow_step.weights(params)` (the LU products and their
    inverses, ActNorm scales, the conditioners' folded kernels and border maps) is
    computed once for the K steps at a time. The steps run as one `tf.while_loop`
    (`tfp_glow.functional.scan`; the graph holds one step whatever K is) or, with
    `unroll=True`, as K copies (a bigger graph that Grappler optimizes across steps).

    What the backward pass of the encoding direction (training) stores:

    - `memory_efficient=False`: every activation, as any TF graph.
    - `True` or `"recompute"`: each step's input x_k only; the gradient recomputes each
      step from it ([N, h, w, c] per step instead of the conditioner's hidden
      activations), at the cost of one more pass through the steps. Exact gradients.
    - `"reversible"`: nothing per step; the gradient rebuilds each step's input from its
      output by the exact inverse ([1]), so memory does not grow with K, at the cost of
      one more pass in each direction and of round-off that compounds over the steps.

    `steps[k]` (or `self[k]`) is a read-only `FlowStep` view of step k, for
    inspection: its parameters are `tfp.util.DeferredTensor`s of the stacked
    variables' slices.

    #### References

    [1]: Aidan N. Gomez, Mengye Ren, Raquel Urtasun, Roger B. Grosse. The Reversible
         Residual Network: Backpropagation Without Storing Activations. In _Neural
         Information Processing Systems_, 2017.
    """

    def __init__(
        self,
        num_steps: int,
        channels: int,
        hidden_channels: int = 512,
        coupling: str = "affine",
        permutation: str = "conv1x1",
        lu_decomposed: bool = True,
        scale_fn: str = "sigmoid",
        dropout: float = 0.0,
        seed: int | Sequence[int] | None = None,
        memory_efficient: bool | str = False,
        unroll: bool | None = None,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        name: str = "flow_steps",
        compute_dtype: str | None = None,
    ):
        """Creates the K steps of a level.

        Args:
          num_steps: Python `int` K >= 1.
          channels: Python `int` >= 2, the channels C of the level.
          hidden_channels, coupling, permutation, lu_decomposed, scale_fn, dropout: as
            `FlowStep`, the same for every step.
          seed: Python `int` (seeds K step seeds), a sequence of K step seeds (step k is
            initialized as `FlowStep(seed=seed[k])`), or `None`.
          memory_efficient: `False` (default), `True` / `"recompute"` or `"reversible"`:
            what the encoding direction's backward pass stores (see above).
          unroll: Python `bool`, K copies of the step in the graph instead of a loop.
            Default `None`: unrolled unless `memory_efficient`.
          dtype: `tf.DType` of the variables and inputs. Default `tf.float32`.
          compute_dtype: dtype the coupling networks compute in, for mixed precision ('bfloat16' or
            'float16'); `None` (default): `dtype`. Variables, inputs, outputs and log-dets stay
            `dtype`.
          validate_args: Python `bool`, check that every ActNorm was initialized and that
            inputs are finite, at run time.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: for a bad `num_steps`, `memory_efficient`, or step option.
        """
        parameters = dict(locals())
        num_steps = check_int(num_steps, "num_steps")
        check_memory_efficient(memory_efficient)
        self._config = flow_step.StepConfig(
            channels,
            hidden_channels,
            coupling=coupling,
            permutation=permutation,
            lu_decomposed=lu_decomposed,
            scale_fn=scale_fn,
            dropout=dropout,
            dtype=dtype,
            compute_dtype=compute_dtype,
        )
        self._seeds = _step_seeds(seed, num_steps)
        self._memory_efficient = "recompute" if memory_efficient is True else memory_efficient
        self._unroll = (not memory_efficient) if unroll is None else bool(unroll)
        self._dropout_salts = np.array([flow_step.dropout_salt(s) for s in self._seeds], np.int32)
        with tf.name_scope(name) as name:
            self.params = variables.create(
                variables.stack([flow_step.init_params(self._config, s) for s in self._seeds])
            )
            super().__init__(
                forward_min_event_ndims=3,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=name,
            )

    @property
    def config(self) -> flow_step.StepConfig:
        """The configuration every step shares."""
        return self._config

    @property
    def num_steps(self) -> int:
        return len(self._seeds)

    @property
    def memory_efficient(self) -> bool | str:
        return self._memory_efficient

    def __len__(self) -> int:
        return self.num_steps

    def __getitem__(self, k: int) -> FlowStep:
        """A read-only `FlowStep` view of step k."""
        k = range(self.num_steps)[k]

        def view(leaf):
            return tfp.util.DeferredTensor(leaf, lambda stacked: stacked[k], shape=leaf.shape[1:])

        params = tf.nest.map_structure(view, _as_dicts(self.params))
        config = self._config
        return FlowStep(
            config.channels,
            config.hidden_channels,
            coupling=config.coupling,
            permutation=config.permutation,
            lu_decomposed=config.lu_decomposed,
            scale_fn=config.scale_fn,
            seed=self._seeds[k],
            dropout=config.dropout,
            dtype=config.dtype,
            validate_args=self.validate_args,
            params=params,
            name=f"{self.name}_step{k}",
        )

    def __iter__(self):
        return (self[k] for k in range(self.num_steps))

    @property
    def steps(self) -> list[FlowStep]:
        """Read-only `FlowStep` views of the K steps."""
        return list(self)

    def is_initialized(self) -> tf.Tensor:
        """Whether every ActNorm of every step is initialized (a boolean scalar)."""
        flags = [flags for path, flags in _flat_with_paths(self.params) if path.endswith("initialized")]
        return tf.reduce_all([tf.reduce_all(f) for f in flags])

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args or is_init:
            return []
        return [
            tf.debugging.Assert(
                self.is_initialized(),
                [f"ActNorms of {self.name} are used before initialization: call initialize(batch) first."],
            )
        ]

    def _weights(self, x) -> dict:
        """`flow_step.weights` of the K steps at once, [K, ...] each."""
        params = variables.read(self.params)
        return flow_step.weights(params, self._config, *spatial_shape(x), dropout_salt=self._dropout_salts)

    def _flat_batch(self, x):
        check_image(x, self._config.channels, self.name)
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[-3:]], 0)) if x.shape.rank != 4 else x

    def _forward_and_log_det(self, x, dropout_seed=None):
        flat = self._flat_batch(x)

        def step(weights, x):
            return flow_step.forward(weights, x, self._config, dropout_seed)

        y, log_det = scan.scan(step, self._weights(flat), flat, reverse=True, unroll=self._unroll)
        return tf.reshape(y, tf.shape(x)), tf.reshape(log_det, tf.shape(x)[:-3])

    def _inverse_and_log_det(self, y, dropout_seed=None):
        flat = self._flat_batch(y)
        weights = self._weights(flat)

        def step(weights, y):
            return flow_step.inverse(weights, y, self._config, dropout_seed)

        if self._memory_efficient == "recompute":
            x, log_det = scan.scan_recomputing(step, weights, flat)
        elif self._memory_efficient == "reversible":

            def rebuild(weights, x):
                return flow_step.forward(weights, x, self._config, dropout_seed)

            x, log_det = scan.scan_reversible(step, rebuild, weights, flat)
        else:
            x, log_det = scan.scan(step, weights, flat, unroll=self._unroll)
        return tf.reshape(x, tf.shape(y)), tf.reshape(log_det, tf.shape(y)[:-3])

    def initialize(self, y: tf.Tensor, **conditioning) -> tf.Tensor:
        """Initializes every step's ActNorms, step by step on the real activations of `y`.

        Step k's ActNorms see the output of steps 0..k-1 after their initialization, as
        in the paper; ActNorms already initialized keep their parameters (idempotent).

        Args:
          y: float `Tensor` [N, H, W, C], a real batch entering the level's first step in
            the encoding direction.
          **conditioning: ignored (initialization uses no dropout).

        Returns:
          The level's encoding of `y` after initialization.
        """
        y = tf.convert_to_tensor(y, dtype=self.dtype, name="y")
        y = check_finite_for_initialization(self._flat_batch(y), f"ActNorms of {self.name}")
        params = variables.read(self.params)
        initialized = []
        for k in range(self.num_steps):
            step_params = tf.nest.map_structure(lambda t, k=k: t[k], params)
            step_params, y = flow_step.initialize(step_params, y, self._config)
            initialized.append(step_params)
        stacked = tf.nest.map_structure(lambda *leaves: tf.stack(leaves), *initialized)
        self.clear_cache()
        with tf.control_dependencies(variables.assign(self.params, stacked)):
            return tf.identity(y)


def check_memory_efficient(value) -> None:
    """Raises a ValueError unless `value` is one of `MEMORY_EFFICIENT` (booleans as booleans)."""
    if not (isinstance(value, bool) or value in ("recompute", "reversible")):
        raise ValueError(
            f"`memory_efficient` must be one of {MEMORY_EFFICIENT}. Received: memory_efficient={value!r}"
        )


def _step_seeds(seed, num_steps: int) -> list[int | None]:
    if seed is None:
        return [None] * num_steps
    if isinstance(seed, (int, np.integer)):
        rng = np.random.default_rng(seed)
        return [int(rng.integers(2**31 - 2**16)) for _ in range(num_steps)]
    seeds = [None if s is None else int(s) for s in seed]
    if len(seeds) != num_steps:
        raise ValueError(f"Expected {num_steps} step seeds, one per step. Received: seed={list(seed)!r}")
    return seeds


def _as_dicts(nest):
    """A tracked nest (tf.Module wraps dicts) as plain dicts, for tf.nest."""
    return {key: _as_dicts(value) if hasattr(value, "items") else value for key, value in nest.items()}


def _flat_with_paths(nest, prefix=""):
    for key, value in nest.items():
        if hasattr(value, "items"):
            yield from _flat_with_paths(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value
