"""Parameters as nests: initial values, the variables made from them, their values read at once.

The pure functions of `tfp_glow.functional` take parameters as nests (dicts) of tensors, and each
component describes its initial parameters as a nest of numpy arrays (`init_params`). This module
turns such a nest into `tf.Variable`s (named by their paths, so that the names read as the nest),
reads a nest of variables as tensors, and assigns new values to it. An initial value marked
`fixed` is part of the parameterization that training never changes (the permutation of an LU
1x1 convolution): its variable is not trainable, and neither is one of an integer or boolean
value (ActNorm's `initialized` flag, a fixed channel order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

__all__ = ["Fixed", "ParameterModule", "assign", "create", "fixed", "is_view", "read", "read_only", "stack"]


class Fixed:
    """An initial value that is a constant of the parameterization, not a parameter to train."""

    def __init__(self, value):
        self.value = np.asarray(value)

    def __repr__(self):
        return f"Fixed({self.value!r})"


def fixed(value) -> Fixed:
    """Marks `value` as a fixed (non-trainable) initial value."""
    return Fixed(value)


def _is_initial(leaf) -> bool:
    return isinstance(leaf, (Fixed, np.ndarray, np.generic))


def is_view(values: Mapping) -> bool:
    """Whether a nest holds existing tensors (a view of other variables) rather than initial values."""
    return any(
        is_view(value) if isinstance(value, Mapping) else not _is_initial(value) for value in values.values()
    )


def stack(values: Sequence[Mapping]) -> dict:
    """One nest of initial values whose leaves stack those of `values` along a new first axis [K, ...]."""
    first = values[0]
    stacked = {}
    for key in first:
        leaves = [v[key] for v in values]
        if isinstance(first[key], Mapping):
            stacked[key] = stack(leaves)
        elif isinstance(first[key], Fixed):
            stacked[key] = Fixed(np.stack([leaf.value for leaf in leaves]))
        else:
            stacked[key] = np.stack(leaves)
    return stacked


def create(values: Mapping, prefix: str = "") -> dict:
    """A nest of `tf.Variable`s for a nest of initial values, in the current name scope.

    Each variable is named by its path in the nest (`"conditioner/conv_in/kernel"`). A leaf that
    is not an initial value (a variable, a tensor or a `tfp.util.DeferredTensor`) is kept as it is.
    """
    created = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            created[key] = create(value, f"{path}/")
        elif _is_initial(value):
            array = value.value if isinstance(value, Fixed) else np.asarray(value)
            trainable = not isinstance(value, Fixed) and array.dtype.kind == "f"
            created[key] = tf.Variable(array, trainable=trainable, name=path)
        else:
            created[key] = value
    return created


def read(params: Mapping) -> dict:
    """The nest `params` (of variables, tensors or DeferredTensors) as a plain dict of tensors."""
    return {
        key: read(value) if isinstance(value, Mapping) else tf.convert_to_tensor(value)
        for key, value in params.items()
    }


def assign(variables: Mapping, values: Mapping) -> list:
    """Assigns every leaf of `values` to the variable at the same path; returns the assign ops."""
    ops = []
    for key, value in values.items():
        if isinstance(variables[key], Mapping):
            ops.extend(assign(variables[key], value))
        else:
            ops.append(variables[key].assign(value))
    return ops


class ParameterModule(tf.Module):
    """A `tf.Module` holding a nest of parameters: each key an attribute, a nested dict a sub-module.

    Built from initial values (`create` makes the variables) or from existing tensors (a view of
    another module's variables), so that attribute paths, variable names and checkpoint paths all
    follow the nest.

    Args:
      values: the nest, as `create` takes it.
      name: Python `str`, the module's name and name scope.
    """

    def __init__(self, values: Mapping, name: str):
        super().__init__(name=name)
        self._keys = tuple(values)
        with self.name_scope:
            for key, value in values.items():
                if isinstance(value, Mapping):
                    setattr(self, key, ParameterModule(value, name=key))
                else:
                    setattr(self, key, create({key: value})[key])

    @property
    def params(self) -> dict:
        """The nest of parameters (variables, or the tensors this module was built from)."""
        return {
            key: value.params if isinstance(value, ParameterModule) else value
            for key, value in ((k, getattr(self, k)) for k in self._keys)
        }


def read_only(name: str) -> TypeError:
    """The error of writing to a view of another module's parameters."""
    return TypeError(
        f"{name} is a read-only view of stacked parameters (such as `glow.steps[level][k]`): "
        "initialize or assign through the module that owns them (`glow.initialize`, "
        "`glow.steps[level].params`)."
    )
