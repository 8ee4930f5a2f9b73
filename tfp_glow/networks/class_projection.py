"""ClassProjection: the zero-initialized linear map from a class label to prior parameters."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow import variables
from tfp_glow._checks import check_int
from tfp_glow.functional import priors

__all__ = ["ClassProjection", "class_term"]


class ClassProjection(tf.Module):
    """A class label's contribution to a prior's parameters (the reference `ycond`).

        out = (onehot(y) W + b) * exp(3 * logs)          # [..., 1, 1, out_channels]

    W, b and logs start at zero (the reference code's `linear_zeros`), so an
    untrained class-conditional prior equals the unconditional one. The output has
    two unit spatial dimensions so that it adds channelwise to a prior's
    [..., H, W, out_channels] parameters (a 1x1 zero convolution over the one-hot
    label seen as a 1x1 image; its variables are in the sub-module `linear`).

    Labels are integer class indices y in [0, num_classes) of any shape that
    broadcasts against the batch shape (a scalar conditions a whole batch on one
    class). `tf.one_hot` maps an out-of-range index to the zero vector, silently
    dropping the condition: `validate_args=True` asserts the range instead.
    """

    def __init__(
        self,
        num_classes: int,
        out_channels: int,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        name: str = "class_projection",
    ):
        """Creates a ClassProjection.

        Args:
          num_classes: Python `int` >= 1, the number of classes K.
          out_channels: Python `int`, the channels of the output.
          dtype: `tf.DType` of the variables and the output. Default `tf.float32`.
          validate_args: Python `bool`, assert at run time that labels are in range.
          name: Python `str` name of the module.
        """
        super().__init__(name=name)
        self._num_classes = check_int(num_classes, "num_classes")
        self._validate_args = validate_args
        with self.name_scope:
            self.linear = variables.ParameterModule(
                priors.class_projection_init_params(self._num_classes, out_channels, dtype), "linear"
            )

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def __call__(self, labels, owner: str = "ClassProjection") -> tf.Tensor:
        """The projection [..., 1, 1, out_channels] of integer `labels` [...].

        Args:
          labels: integer `Tensor` of class indices; `None` raises.
          owner: Python `str`, the name used in error messages.

        Raises:
          ValueError: if `labels` is `None`.
          TypeError: if `labels` are not integers.
        """
        if labels is None:
            raise ValueError(
                f"{owner} is class-conditional (num_classes={self._num_classes}): pass integer class "
                f"labels in [0, {self._num_classes}) as the `labels` keyword argument. Received: labels=None"
            )
        labels = tf.convert_to_tensor(labels, name="labels")
        if not labels.dtype.is_integer:
            raise TypeError(
                f"{owner} expects integer class labels in [0, {self._num_classes}). "
                f"Received: labels.dtype={labels.dtype.name}"
            )
        if self._validate_args:
            checks = [
                tf.debugging.assert_non_negative(labels, message="Class labels must be >= 0."),
                tf.debugging.assert_less(
                    labels,
                    tf.cast(self._num_classes, labels.dtype),
                    message=f"Class labels must be < num_classes = {self._num_classes}.",
                ),
            ]
            with tf.control_dependencies(checks):
                labels = tf.identity(labels)
        return priors.class_projection(variables.read(self.linear.params), labels, self._num_classes)


def class_term(projection: ClassProjection | None, labels, owner: str) -> tf.Tensor | None:
    """`projection(labels)`, or `None` for an unconditional prior (`projection` None), which
    refuses labels with a ValueError naming `owner`."""
    if projection is not None:
        return projection(labels, owner=owner)
    if labels is not None:
        raise ValueError(
            f"{owner} is not class-conditional (num_classes=None), so it takes no labels. "
            f"Received: labels={labels!r}"
        )
    return None
