"""The one check of class labels for a class-conditional GlowModel (and of their absence)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["check_labels", "check_data_has_labels"]


def check_labels(labels, num_images, num_classes: int | None) -> tf.Tensor | None:
    """Checked int32 labels [N] for a conditional model, `None` for an unconditional one.

    A scalar label applies to all `num_images` images. Values out of [0, K) raise a ValueError in
    eager calls and fail the graph's assertion in a compiled step (InvalidArgumentError).

    Raises:
      ValueError: labels for an unconditional model, none for a conditional one, a shape other
        than [N] or [], or (eagerly) values out of range.
      TypeError: labels that are not integers.
    """
    if num_classes is None:
        if labels is not None:
            raise ValueError(
                "This GlowModel is unconditional (num_classes=None), so it takes no labels; "
                "build it with `num_classes` to condition on classes. "
                f"Received: labels of shape {np.shape(labels)}"
            )
        return None
    if labels is None:
        raise ValueError(
            f"This GlowModel is class-conditional (num_classes={num_classes}): pass integer "
            f"labels in [0, {num_classes}) (`labels=` here, or (images, labels) batches to "
            "fit and evaluate). Received: labels=None"
        )
    labels = tf.convert_to_tensor(labels)
    if not labels.dtype.is_integer:
        raise TypeError(
            f"GlowModel expects integer class labels in [0, {num_classes}). "
            f"Received: dtype={labels.dtype.name}"
        )
    if labels.shape.rank is not None and labels.shape.rank > 1:
        raise ValueError(
            "GlowModel expects labels of shape [batch] (or one label for all images). "
            f"Received: shape={labels.shape.as_list()}"
        )
    labels = tf.cast(labels, tf.int32)
    if labels.shape.rank == 0:
        labels = tf.fill([num_images], labels)
    static = tf.get_static_value(num_images)
    if labels.shape[0] is not None and static is not None and labels.shape[0] != static:
        raise ValueError(
            f"GlowModel expects one label per image: {static} images. "
            f"Received: shape={labels.shape.as_list()}"
        )
    if tf.executing_eagerly():
        values = labels.numpy()
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"Class labels must be in [0, {num_classes}). "
                f"Received: labels with min={values.min()}, max={values.max()}"
            )
        return labels
    checks = [
        tf.debugging.assert_equal(
            tf.size(labels), tf.cast(num_images, tf.int32), message="GlowModel expects one label per image."
        ),
        tf.debugging.assert_non_negative(labels, message="Class labels must be >= 0."),
        tf.debugging.assert_less(
            labels, num_classes, message=f"Class labels must be < num_classes = {num_classes}."
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(labels)


def check_data_has_labels(has_labels: bool, num_classes: int | None) -> None:
    """Raises a ValueError when training data has labels and the model takes none, or the reverse."""
    if has_labels and num_classes is None:
        raise ValueError(
            "This GlowModel is unconditional (num_classes=None) but the data has labels: build it "
            "with `num_classes` to condition on them, or pass images only."
        )
    if not has_labels and num_classes is not None:
        raise ValueError(
            f"This GlowModel is class-conditional (num_classes={num_classes}): fit it on "
            "(images, labels) batches, e.g. `data.load(..., with_labels=True)` or `fit(images, labels)`. "
            "Received: images without labels"
        )
