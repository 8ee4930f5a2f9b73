"""The private TensorFlow, TFP and Keras APIs tfp-glow uses still behave as it relies on.

Each lives in `tfp_glow._compat`; these tests fail, naming it, when an upgrade renames or
changes one, and `test_no_private_api_outside_compat` keeps every other module off them.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import pkgutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_glow
from tfp_glow import _compat
from tfp_glow.bijectors._base import GlowBijector

PACKAGE = pathlib.Path(tfp_glow.__file__).parent


class CountingShift(GlowBijector):
    """y = x + 1 on vectors, counting the passes through its maps."""

    def __init__(self):
        self.passes = 0
        super().__init__(forward_min_event_ndims=1, is_constant_jacobian=True, name="counting_shift")

    def _forward_and_log_det(self, x):
        self.passes += 1
        return x + 1.0, tf.zeros([], x.dtype)

    def _inverse_and_log_det(self, y):
        self.passes += 1
        return y - 1.0, tf.zeros([], y.dtype)


def test_the_greedy_cache_answers_the_log_det_from_the_pass_that_gave_the_output():
    shift = CountingShift()
    dist = tfp.distributions.TransformedDistribution(
        tfp.distributions.MultivariateNormalDiag(tf.zeros(3)), shift
    )
    dist.log_prob(tf.ones([2, 3]))
    assert shift.passes == 1  # the inverse and its log-det from one call
    # Each instance has its own entries, even with equal parameters.
    other = CountingShift()
    y = shift.forward(tf.zeros([1, 3]))
    other.inverse(y)
    assert other.passes == 1
    shift.clear_cache()


def test_strategy_supports_no_merge_call_answers():
    assert _compat.strategy_supports_no_merge_call() in (True, False)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        assert _compat.strategy_supports_no_merge_call() in (True, False)


def test_in_xla_context_is_true_only_while_tracing_for_xla():
    seen = []

    def record(x):
        seen.append(_compat.in_xla_context())
        return x

    tf.function(record, jit_compile=True)(tf.ones([1]))
    tf.function(lambda x: tf.function(record)(x), jit_compile=True)(tf.ones([2]))  # a function inside one
    tf.function(record)(tf.ones([3]))
    record(tf.ones([1]))
    assert seen == [True, True, False, False]


def test_in_multi_worker_mode_answers_for_a_single_worker_strategy():
    # In its own process: a MultiWorkerMirroredStrategy configures collective ops at start-up.
    code = (
        "import tensorflow as tf; from tfp_glow import _compat; "
        "print(_compat.in_multi_worker_mode(tf.distribute.MultiWorkerMirroredStrategy()))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


def _ema_optimizer():
    variables = [keras.Variable(np.ones([2, 3], np.float32)), keras.Variable(np.zeros([4], np.float32))]
    optimizer = keras.optimizers.Adam(use_ema=True, ema_momentum=0.5)
    optimizer.build(variables)
    return optimizer, variables


def test_the_optimizer_lists_its_variables_and_their_moving_averages():
    optimizer, variables = _ema_optimizer()
    pairs = _compat.ema_variable_pairs(optimizer)
    assert [v for v, _ in pairs] == variables
    assert [a.shape for _, a in pairs] == [v.shape for v in variables]
    assert isinstance(_compat.optimizer_strategy(optimizer), tf.distribute.Strategy)


def test_keras_swaps_through_the_hook():
    swapped = []

    class Recording(_compat.SwapEMAWeightsHook):
        def swap(self, optimizer):
            swapped.append(optimizer)

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(use_ema=True), loss="mse")
    model.fit(
        np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0, callbacks=[Recording(swap_on_epoch=True)]
    )
    assert swapped and all(o is model.optimizer for o in swapped)


def test_keras_builds_from_the_models_own_batch_under_a_strategy():
    calls = []

    class Model(_compat.BuildsWithoutData, keras.Sequential):
        def symbolic_build_batch(self):
            calls.append(1)
            return np.zeros((1, 2), np.float32), np.zeros((1, 1), np.float32)

    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = Model([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, verbose=0)
    assert calls and model.optimizer.built


def test_a_missing_private_api_is_named_in_the_error():
    with pytest.raises(_compat.PrivateAPIError, match=r"Keras's private `object._nowhere`.*tested with"):
        _compat.private(object(), "_nowhere", "Keras")
    with pytest.raises(
        _compat.PrivateAPIError, match=r"TensorFlow's private `tensorflow.python.nowhere`.*tested"
    ):
        _compat.private_module("tensorflow.python.nowhere", "TensorFlow")


# TFP's documented subclass hooks of tfb.Bijector (its "implement these" methods).
BIJECTOR_HOOKS = {
    "_forward",
    "_inverse",
    "_forward_log_det_jacobian",
    "_inverse_log_det_jacobian",
    "_forward_event_shape",
    "_forward_event_shape_tensor",
    "_inverse_event_shape",
    "_inverse_event_shape_tensor",
    "_parameter_control_dependencies",
}


def _own_modules():
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="tfp_glow."):
        if info.name != "tfp_glow._compat":
            yield importlib.import_module(info.name)


def _defined_names() -> set[str]:
    """Every name this package itself defines (outside _compat): functions, classes, attributes,
    parameters."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
    return names


def test_no_private_api_outside_compat():
    defined = _defined_names()
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                if node.attr not in defined:
                    found.append(f"{path.name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "__internal__":
                found.append(f"{path.name}:{node.lineno} .__internal__")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and (
                    ".internal" in node.module
                    or "keras.src" in node.module
                    or "tensorflow.python" in node.module
                )
            ):
                found.append(f"{path.name}:{node.lineno} from {node.module}")
    # A method that overrides a private method of another library's class is a private API too.
    for module in _own_modules():
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if not cls.__module__.startswith("tfp_glow.") or cls.__module__ == "tfp_glow._compat":
                continue
            for name, value in vars(cls).items():
                if not name.startswith("_") or name.startswith("__") or name in BIJECTOR_HOOKS:
                    continue
                if not inspect.isfunction(value):  # what the class body defines, not its metaclass
                    continue
                for base in cls.__mro__[1:]:
                    if not base.__module__.startswith("tfp_glow") and name in vars(base):
                        found.append(f"{cls.__module__}.{cls.__name__}.{name} overrides {base.__name__}'s")
    assert not found, "private APIs of other libraries outside tfp_glow/_compat.py: " + "; ".join(
        sorted(set(found))
    )
