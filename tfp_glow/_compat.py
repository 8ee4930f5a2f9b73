"""Every use of a private TensorFlow, TensorFlow Probability or Keras API, in one place.

Each is here for a reason that the public API does not cover, written beside it, and
`tests/test_compat.py` checks each against the installed versions: an upgrade that renames or
removes one fails there, with a message naming it, instead of somewhere deep in training.
Tested with TensorFlow 2.21, TensorFlow Probability 0.25 and Keras 3.15.
"""

from __future__ import annotations

import importlib

import keras
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = [
    "BuildsWithoutData",
    "GreedyCacheBijector",
    "SwapEMAWeightsHook",
    "ema_variable_pairs",
    "in_multi_worker_mode",
    "in_xla_context",
    "optimizer_strategy",
    "strategy_supports_no_merge_call",
]

TESTED_WITH = "TensorFlow 2.21, TensorFlow Probability 0.25 and Keras 3.15"


class PrivateAPIError(RuntimeError):
    """A private API that tfp-glow relies on is missing from the installed version."""


def private(owner, name: str, library: str):
    """`getattr(owner, name)`, or a PrivateAPIError naming what is missing from `library`."""
    try:
        return getattr(owner, name)
    except AttributeError:
        owner_name = getattr(owner, "__name__", type(owner).__name__)
        raise PrivateAPIError(
            f"tfp-glow needs {library}'s private `{owner_name}.{name}`, which the installed version "
            f"lacks; it was tested with {TESTED_WITH}."
        ) from None


def private_module(name: str, library: str):
    """The module `name` of `library`, or a PrivateAPIError naming it when it cannot be imported."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise PrivateAPIError(
            f"tfp-glow needs {library}'s private `{name}` ({error}); it was tested with {TESTED_WITH}."
        ) from None


def _greedy_cache():
    # TFP's cache that stores the results of both directions from one pass (as tfb.FFJORD uses it):
    # Glow's networks then run once for log_prob, not once for the output and again for the log-det.
    cache_util = private_module("tensorflow_probability.python.internal.cache_util", "TensorFlow Probability")
    cache = private(cache_util, "BijectorCacheWithGreedyAttrs", "TensorFlow Probability")
    return cache(forward_name="_augmented_forward", inverse_name="_augmented_inverse")


class GreedyCacheBijector(tfp.bijectors.Bijector):
    """A `tfb.Bijector` whose TFP cache is filled by one pass in either direction.

    Subclasses implement `_augmented_forward(x) -> (y, {"ildj": ...})` and
    `_augmented_inverse(y) -> (x, {"ildj": ...})`. TFP keys its cache by a bijector's
    `_get_parameterization()` and shares entries between bijectors whose parameters compare
    equal; here each instance is its own key, since each owns its variables.
    """

    _cache = _greedy_cache()

    def _get_parameterization(self):
        return id(self)

    def clear_cache(self) -> None:
        """Forgets the cached results (after the parameters changed without a new tensor)."""
        self._cache.clear()


def strategy_supports_no_merge_call() -> bool:
    """Whether the current strategy's optimizer updates run without `merge_call` (they may then sit
    in a `tf.cond` in the replica context); TF has no public equivalent."""
    internal = private(tf, "__internal__", "TensorFlow")
    return private(internal.distribute, "strategy_supports_no_merge_call", "TensorFlow")()


def in_xla_context() -> bool:
    """Whether the graph being traced (or one it is traced into) is compiled by XLA, as under
    `tf.function(jit_compile=True)`; TF has no public equivalent. False in eager mode."""
    control_flow_util = private_module("tensorflow.python.ops.control_flow_util", "TensorFlow")
    in_xla = private(control_flow_util, "GraphOrParentsInXlaContext", "TensorFlow")
    return tf.inside_function() and in_xla(tf.compat.v1.get_default_graph())


def in_multi_worker_mode(strategy: tf.distribute.Strategy) -> bool:
    """Whether a MultiWorkerMirroredStrategy spans several workers (public only as the cluster's
    TF_CONFIG, which a strategy may have been given otherwise)."""
    return private(strategy.extended, "_in_multi_worker_mode", "TensorFlow")()


def optimizer_strategy(optimizer: keras.optimizers.Optimizer) -> tf.distribute.Strategy:
    """The strategy whose replicas hold the optimizer's variables (Keras keeps it private)."""
    return private(optimizer, "_distribution_strategy", "Keras")


def ema_variable_pairs(optimizer: keras.optimizers.Optimizer) -> list[tuple]:
    """(variable, its moving average) for each trainable variable of a `use_ema` optimizer, as
    Keras's own `SwapEMAWeights` reads them."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer  # float16: the averages are the wrapped optimizer's
    return list(
        zip(
            private(optimizer, "_trainable_variables", "Keras"),
            private(optimizer, "_model_variables_moving_average", "Keras"),
            strict=True,
        )
    )


class SwapEMAWeightsHook(keras.callbacks.SwapEMAWeights):
    """Keras's `SwapEMAWeights`, its exchange of an optimizer's variables with their averages
    (the private `_tf_swap_variables`) routed to `swap(optimizer)`: Keras decides when to swap,
    a subclass how."""

    def _tf_swap_variables(self, optimizer):
        self.swap(optimizer)

    def swap(self, optimizer: keras.optimizers.Optimizer) -> None:
        raise NotImplementedError


class BuildsWithoutData:
    """A `keras.Model` mixin for a model whose weights exist from construction.

    Under a strategy, before the first step, Keras's TF trainer builds the optimizer and metrics
    from the first batch of the training iterator (the private `_maybe_symbolic_build`), which is
    then never trained on and is all-reduced first, which MultiWorkerMirroredStrategy's
    collectives refuse for uint8 images (keras-team/keras#20585): such a model builds from
    `symbolic_build_batch()` instead. Without a strategy Keras leaves the optimizer to be built
    inside the first trace of the train step, and `tf.function` then traces the step a second
    time (a trace that creates variables cannot be the one it runs): such a model builds its
    optimizer before that trace, and the step is traced once."""

    def symbolic_build_batch(self):
        raise NotImplementedError

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if private(self, "_distribute_strategy", "Keras") is None:
            optimizer = getattr(self, "optimizer", None)
            if optimizer is not None and not optimizer.built:
                optimizer.build(self.trainable_variables)
            return
        with self.distribute_strategy.scope():
            private(self, "_symbolic_build", "Keras")(data_batch=self.symbolic_build_batch())
