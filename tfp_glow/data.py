"""Datasets of integer images for Glow.

`load(spec, split, ...)` returns a batched `tf.data.Dataset` of `uint8` images `[batch, H, W, C]`,
optionally with `int32` labels. The pixels are the raw integer levels of the source, in
`[0, num_bins)`: this module never rescales, n-bit-reduces or dequantizes. `GlowModel` does that
preprocessing in one place, so that the same data serves every bit depth and the
`-D * log(num_bins)` term of bits/dim has a single owner.

A dataset is named by a spec string:

- `digits`: scikit-learn's bundled 8x8 handwritten digits (1797 images, 17 grey levels, 10
  classes). Works offline; a fixed permutation splits it into `train` (1300), `validation` (200)
  and `test` (297).
- `tfds:<name>[:<config>]` or `tfds:<name>/<config>`: a TensorFlow Datasets image dataset (its
  `image` feature, and its `label` feature when that is a class label). The split string is passed
  to TFDS, so `"train[:90%]"` works.
- `folder:<path>`: the `.png`/`.jpg`/`.jpeg` files under a directory, searched recursively. With
  `train/` and `test/` (and optionally `validation/`) subfolders, `split` selects one; otherwise
  all files are `train`.
- `npz:<path>`: a NumPy `.npz` with `x_<split>` (and optional `y_<split>`) arrays, as Keras
  datasets store them, or a single `images`/`x` array (optional `labels`/`y`) that is split
  `train`. An optional scalar `num_bins` entry declares the number of pixel levels (default 256).

For `digits`, `folder` and `npz`, split names can be joined with `+` (`"train+validation"`).

When `image_shape=(H, W, C)` is given, every image is center-cropped to the aspect ratio `H / W`,
resized (area averaging when shrinking, bilinear when enlarging), rounded and cast back to
`uint8`; an image that is already `H x W` is passed through unchanged.

#### Examples

```python
ds = load("digits", "train", batch_size=64)                 # uint8 [64, 8, 8, 1], values in [0, 17)
ds = load("tfds:cifar10", "train[:90%]", with_labels=True)  # (uint8 [64, 32, 32, 3], int32 [64])
ds = load("folder:~/faces", image_shape=(64, 64, 3), repeat=True)
x_test = load_numpy("digits", "test")                       # uint8 [297, 8, 8, 1]
```
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

__all__ = ["DatasetInfo", "info", "load", "load_numpy", "num_batches"]

_SPEC_HELP = "Expected 'digits', 'tfds:<name>[:<config>]', 'folder:<path>' or 'npz:<path>'."
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_FOLDER_SPLITS = ("train", "validation", "test")
# Shuffle buffer for sources that are not held in memory (TFDS); in-memory sources shuffle fully.
_STREAM_SHUFFLE_BUFFER = 10_000
_NO_LABEL = -1
# Fixed parallelism instead of tf.data's autotuning: an autotuned iterator runs a model thread
# that, with other processes busy on the machine, held the iterator's destruction (at a garbage
# collection, in the middle of other work) for 10-15 s at a time. Decoding uses every core the
# process may run on; the prefetch keeps two batches ahead of the training step.
_PARALLEL_CALLS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_PREFETCH_BATCHES = 2

# Deterministic split of scikit-learn's digits: permute with RandomState(0), then these ranges.
_DIGITS_SPLITS = {
    "train": (0, 1300),
    "validation": (1300, 1500),
    "test": (1500, 1797),
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset before seeing it.

    Attributes:
      image_shape: `(H, W, C)` of the images that `load` yields (after any resizing).
      num_bins: Number of integer pixel levels; pixel values are in `[0, num_bins)`.
      num_examples: Examples per split, where known. May be empty (for instance for a TFDS dataset
        that is not prepared yet).
      num_classes: Number of classes when the source has labels, else `None`.
        `load(..., with_labels=True)` works exactly when this is not `None`.
    """

    image_shape: tuple[int, int, int]
    num_bins: int
    num_examples: dict[str, int]
    num_classes: int | None


@dataclasses.dataclass(frozen=True)
class _Source:
    """A resolved spec: static facts plus how to stream one split.

    `examples(split, shuffle, seed)` yields `(item, label)` pairs, unshuffled unless the source
    shuffles its own files; `decode(item)` turns an item into a `uint8` `[h, w, C]` image. Splitting
    the two lets a folder shuffle file names before it pays for decoding.
    """

    info: DatasetInfo
    examples: Callable[[str, bool, int], tf.data.Dataset]
    decode: Callable[[tf.Tensor], tf.Tensor]
    shuffle_buffer: int | None  # None: shuffle the whole split.


def info(
    spec: str,
    *,
    image_shape: Sequence[int] | None = None,
    data_dir: str | None = None,
) -> DatasetInfo:
    """Describes a dataset without reading its examples.

    Args:
      spec: Dataset spec string; see the module docstring.
      image_shape: Optional `(H, W, C)` the images are resized to. Default value: `None` (the
        source's own shape).
      data_dir: Optional TFDS data directory. Default value: `None` (TFDS's default).

    Returns:
      A `DatasetInfo`.

    Raises:
      ValueError: If the spec or `image_shape` is invalid.
      FileNotFoundError: If a `folder:` or `npz:` path does not exist.
    """
    return _resolve(spec, _check_image_shape(image_shape), data_dir).info


def load(
    spec: str,
    split: str = "train",
    batch_size: int = 64,
    *,
    image_shape: Sequence[int] | None = None,
    shuffle: bool | None = None,
    seed: int = 0,
    repeat: bool = False,
    start_epoch: int = 0,
    drop_remainder: bool = False,
    with_labels: bool = False,
    data_dir: str | None = None,
    take: int | None = None,
) -> tf.data.Dataset:
    """Loads a split as a batched, prefetched `tf.data.Dataset` of integer images.

    The elements are `uint8` tensors `[batch, H, W, C]` (NHWC, `C` explicit even for grey images),
    or `(images, labels)` with `int32` labels `[batch]` when `with_labels=True`. Pixel values are
    the source's raw levels in `[0, num_bins)`; scaling and n-bit reduction belong to the model.

    Args:
      spec: Dataset spec string; see the module docstring.
      split: Split name. Default value: `"train"`.
      batch_size: Examples per batch, at least 1. Default value: 64.
      image_shape: Optional `(H, W, C)` to center-crop and resize to. Default value: `None` (the
        source's own shape; a folder takes its first train image's shape and requires all others to
        match).
      shuffle: Whether to shuffle. Default value: `None` (shuffle the `train` split only).
      seed: Seed of the shuffle (and of TFDS file shuffling). Default value: 0.
      repeat: Whether to repeat indefinitely. Each pass over the split (epoch) is batched on its
        own, and its order depends on `seed` and the epoch number alone: epoch e is the same
        whether it is reached by iterating or by starting there with `start_epoch=e`, which is
        what resuming an interrupted run needs. In-memory sources (digits, npz, folder) draw
        each epoch's permutation from the stateless seed `(e, seed)`, so starting at epoch e
        costs nothing; TFDS streams read (and drop) the epochs before e. Default value: `False`.
      start_epoch: With `repeat`, the number of the first epoch. Default value: 0.
      drop_remainder: Whether to drop a last, smaller batch. Default value: `False`.
      with_labels: Whether to yield `(images, labels)`. Default value: `False`.
      data_dir: Optional TFDS data directory. Default value: `None` (TFDS's default).
      take: Optional number of examples to keep, taken from the split before shuffling (so the
        subset is the same in every epoch). Default value: `None` (all).

    Returns:
      A `tf.data.Dataset` whose image shape is static except for the batch dimension. It runs
      with fixed parallelism and tf.data's autotuning off (`options().autotune.enabled` is
      False); `ds.with_options(...)` sets other options.

    Raises:
      ValueError: If an argument is invalid, the split is unknown, the source's arrays are not
        integer images in range, or `with_labels=True` for a source without labels.
      FileNotFoundError: If a `folder:` or `npz:` path does not exist.
    """
    _check_positive_int("batch_size", batch_size)
    _check_non_negative_int("start_epoch", start_epoch)
    if take is not None:
        _check_positive_int("take", take)
    if not isinstance(split, str) or not split:
        raise ValueError(f"Expected `split` to be a non-empty string. Received: split={split!r}")
    source = _resolve(spec, _check_image_shape(image_shape), data_dir)
    if with_labels and source.info.num_classes is None:
        raise ValueError(f"Dataset {spec!r} has no labels. Received: with_labels={with_labels!r}")
    if shuffle is None:
        shuffle = split == "train"

    ds = source.examples(split, bool(shuffle), seed)
    if take is not None:
        ds = ds.take(take)
    buffer = source.shuffle_buffer
    if buffer is None:
        buffer = max(int(ds.cardinality()), 1)

    target = source.info.image_shape

    def prepare(item, label):
        image = _center_crop_and_resize(source.decode(item), target[:2])
        image.set_shape(target)
        if with_labels:
            return image, tf.cast(label, tf.int32)
        return image

    def batched(examples):
        examples = examples.map(prepare, num_parallel_calls=_PARALLEL_CALLS)
        return examples.batch(batch_size, drop_remainder=drop_remainder)

    if repeat and shuffle and source.shuffle_buffer is None:
        # In memory: epoch e is a permutation drawn from the stateless seed (seed, e) alone.
        everything = ds.batch(max(int(ds.cardinality()), 1)).get_single_element()

        def epoch(number):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(tf.nest.flatten(everything)[0])[0]), seed=tf.stack([number, seed])
            )
            permuted = tf.nest.map_structure(lambda t: tf.gather(t, order), everything)
            return batched(tf.data.Dataset.from_tensor_slices(permuted))

        ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch)
        ds = ds.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
    elif repeat:
        # Streamed: one seeded sequence of epochs; reaching epoch e means reading the e before it.
        one_epoch = batched(ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True) if shuffle else ds)
        ds = one_epoch.repeat()
        if start_epoch:
            ds = ds.skip(start_epoch * num_batches(one_epoch))
    else:
        if shuffle:
            # A new order each time the dataset is iterated (each epoch of a Keras `fit`).
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        ds = batched(ds)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(_PREFETCH_BATCHES).with_options(options)


def num_batches(dataset: tf.data.Dataset) -> int:
    """The number of batches of a finite dataset: its cardinality, counted when TF does not know it.

    Raises:
      ValueError: If `dataset` is infinite.
    """
    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise ValueError("Expected a finite dataset. Received: a dataset that repeats indefinitely")
    if cardinality == tf.data.UNKNOWN_CARDINALITY:
        cardinality = int(dataset.reduce(np.int64(0), lambda count, _: count + 1))
    return cardinality


def load_numpy(
    spec: str,
    split: str = "train",
    *,
    image_shape: Sequence[int] | None = None,
    data_dir: str | None = None,
    with_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Loads a whole split into memory, in stored order (for small data: baselines, probes, init).

    Args:
      spec: Dataset spec string; see the module docstring.
      split: Split name. Default value: `"train"`.
      image_shape: Optional `(H, W, C)` to center-crop and resize to. Default value: `None`.
      data_dir: Optional TFDS data directory. Default value: `None`.
      with_labels: Whether to also return the labels. Default value: `False`.

    Returns:
      `uint8` images `[N, H, W, C]`, or `(images, labels)` with `int32` labels `[N]`.

    Raises:
      The errors of `load`.
    """
    ds = load(
        spec,
        split,
        batch_size=1024,
        image_shape=image_shape,
        shuffle=False,
        with_labels=bool(with_labels),
        data_dir=data_dir,
    )
    batches = list(ds.as_numpy_iterator())
    # Start from empty arrays so that an empty split still has the right shape and dtype.
    image_spec = tf.nest.flatten(ds.element_spec)[0]
    no_images = np.zeros((0, *image_spec.shape[1:]), np.uint8)
    if with_labels:
        images = np.concatenate([no_images] + [batch[0] for batch in batches])
        labels = np.concatenate([np.zeros((0,), np.int32)] + [batch[1] for batch in batches])
        return images, labels
    return np.concatenate([no_images] + batches)


# --------------------------------------------------------------------------------------------------
# Spec resolution.


def _resolve(spec: str, image_shape: tuple[int, int, int] | None, data_dir: str | None) -> _Source:
    if not isinstance(spec, str):
        raise ValueError(f"Unknown dataset spec {spec!r}. {_SPEC_HELP}")
    scheme, sep, rest = spec.partition(":")
    if spec == "digits":
        return _digits_source(image_shape)
    if sep and rest:
        if scheme == "tfds":
            return _tfds_source(rest, image_shape, data_dir)
        if scheme == "folder":
            return _folder_source(spec, rest, image_shape)
        if scheme == "npz":
            return _npz_source(spec, rest, image_shape)
    raise ValueError(f"Unknown dataset spec {spec!r}. {_SPEC_HELP}")


def _digits_source(image_shape: tuple[int, int, int] | None) -> _Source:
    from sklearn.datasets import load_digits  # Deferred: scikit-learn is slow to import.

    bunch = load_digits()
    order = np.random.RandomState(0).permutation(len(bunch.images))
    # Levels are stored as float64 integers 0..16.
    images = bunch.images[order].astype(np.uint8)[..., np.newaxis]
    labels = bunch.target[order].astype(np.int32)
    arrays = {
        name: (images[start:stop], labels[start:stop]) for name, (start, stop) in _DIGITS_SPLITS.items()
    }
    return _in_memory_source("digits", arrays, num_bins=17, num_classes=10, image_shape=image_shape)


def _in_memory_source(
    spec: str,
    arrays: dict[str, tuple[np.ndarray, np.ndarray | None]],
    *,
    num_bins: int,
    num_classes: int | None,
    image_shape: tuple[int, int, int] | None,
) -> _Source:
    """A source over `{split: (uint8 images [N, H, W, C], int32 labels [N] or None)}`."""
    shapes = {name: images.shape[1:] for name, (images, _) in arrays.items()}
    native = next(iter(shapes.values()))
    if image_shape is None:
        mismatched = {name: shape for name, shape in shapes.items() if shape != native}
        if mismatched:
            raise ValueError(
                f"Dataset {spec!r} has splits of different image shapes {shapes}; pass image_shape "
                f"to resize them to one. Received: image_shape=None"
            )
        image_shape = native
    _check_channels(spec, native[-1], image_shape)
    num_examples = {name: len(images) for name, (images, _) in arrays.items()}
    if {"train", "validation"} <= set(arrays):
        num_examples["train+validation"] = num_examples["train"] + num_examples["validation"]

    def examples(split: str, shuffle: bool, seed: int) -> tf.data.Dataset:
        del shuffle, seed  # Shuffled in memory by `load`.
        names = _parse_split(spec, split, tuple(arrays))
        images = np.concatenate([arrays[name][0] for name in names])
        if num_classes is None:
            labels = np.full(len(images), _NO_LABEL, np.int32)
        else:
            labels = np.concatenate([arrays[name][1] for name in names])
        return tf.data.Dataset.from_tensor_slices((images, labels))

    return _Source(
        info=DatasetInfo(tuple(image_shape), num_bins, num_examples, num_classes),
        examples=examples,
        decode=tf.identity,
        shuffle_buffer=None,
    )


def _tfds_source(name: str, image_shape: tuple[int, int, int] | None, data_dir: str | None) -> _Source:
    import tensorflow_datasets as tfds  # Deferred: TFDS is slow to import.

    # `name:config` is this module's spelling; TFDS's own `name/config[:version]` passes through.
    if "/" not in name and ":" in name:
        name = name.replace(":", "/", 1)
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    spec = f"tfds:{name}"
    if "image" not in features:
        raise ValueError(
            f"TFDS dataset {name!r} has no 'image' feature; its features are "
            f"{sorted(features.keys())}. Received: spec={spec!r}"
        )
    image_feature = features["image"]
    if tf.as_dtype(image_feature.np_dtype) != tf.uint8:
        raise ValueError(
            f"TFDS dataset {name!r} has images of dtype "
            f"{tf.as_dtype(image_feature.np_dtype).name}; expected uint8. Received: spec={spec!r}"
        )
    native = tuple(image_feature.shape)
    if len(native) != 3:
        raise ValueError(
            f"TFDS dataset {name!r} has images of shape {native}; expected (H, W, C). Received: spec={spec!r}"
        )
    if image_shape is None:
        if None in native:
            raise ValueError(
                f"TFDS dataset {name!r} has images of variable shape {native}; pass image_shape to "
                f"resize them. Received: image_shape=None"
            )
        image_shape = native
    _check_channels(spec, native[-1], image_shape)
    label = features["label"] if "label" in features else None
    # Only a class label counts as a label: its `num_classes` is what conditional models need.
    num_classes = getattr(label, "num_classes", None) if label is not None else None
    num_examples = {
        split_name: int(split_info.num_examples) for split_name, split_info in builder.info.splits.items()
    }

    def examples(split: str, shuffle: bool, seed: int) -> tf.data.Dataset:
        builder.download_and_prepare()
        ds = builder.as_dataset(
            split=split,
            shuffle_files=shuffle,
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )

        def to_pair(example):
            if num_classes is None:
                return example["image"], tf.constant(_NO_LABEL, tf.int32)
            return example["image"], tf.cast(example["label"], tf.int32)

        return ds.map(to_pair, num_parallel_calls=_PARALLEL_CALLS)

    return _Source(
        info=DatasetInfo(tuple(image_shape), 256, num_examples, num_classes),
        examples=examples,
        decode=tf.identity,
        shuffle_buffer=_STREAM_SHUFFLE_BUFFER,
    )


def _folder_source(spec: str, path: str, image_shape: tuple[int, int, int] | None) -> _Source:
    root = os.path.expanduser(path)
    if not os.path.exists(root):
        raise FileNotFoundError(f"Image folder {root!r} does not exist. Received: spec={spec!r}")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"{root!r} is not a folder. Received: spec={spec!r}")
    if all(os.path.isdir(os.path.join(root, name)) for name in ("train", "test")):
        split_dirs = {
            name: os.path.join(root, name)
            for name in _FOLDER_SPLITS
            if os.path.isdir(os.path.join(root, name))
        }
    else:
        split_dirs = {"train": root}
    files = {name: _list_images(directory) for name, directory in split_dirs.items()}
    for name, names in files.items():
        if not names:
            raise ValueError(
                f"Found no image files ({', '.join(_IMAGE_SUFFIXES)}) under {split_dirs[name]!r} "
                f"(split {name!r}). Received: spec={spec!r}"
            )

    first_file = files["train"][0] if "train" in files else next(iter(files.values()))[0]
    if image_shape is None:
        # Every split follows the first train image, so that all splits fit one model.
        first = tf.io.decode_image(tf.io.read_file(first_file), expand_animations=False)
        image_shape = tuple(int(d) for d in first.shape)
        expected = tf.constant(image_shape, tf.int32)
    else:
        expected = None
    channels = image_shape[-1]

    def decode(filename: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(
            tf.io.read_file(filename), channels=channels, dtype=tf.uint8, expand_animations=False
        )
        if expected is not None:
            # The file name is only known inside the pipeline, so the check is an assertion there.
            check = tf.debugging.Assert(
                tf.reduce_all(tf.equal(tf.shape(image), expected)),
                [
                    "Image file",
                    filename,
                    "has shape",
                    tf.shape(image),
                    "but the first image",
                    first_file,
                    "has shape",
                    expected,
                    "; pass image_shape to resize all images to one shape.",
                ],
            )
            with tf.control_dependencies([check]):
                image = tf.identity(image)
        return image

    def examples(split: str, shuffle: bool, seed: int) -> tf.data.Dataset:
        del shuffle, seed  # File names are shuffled by `load` before decoding.
        names = _parse_split(spec, split, tuple(files))
        filenames = [filename for name in names for filename in files[name]]
        labels = np.full(len(filenames), _NO_LABEL, np.int32)
        return tf.data.Dataset.from_tensor_slices((filenames, labels))

    return _Source(
        info=DatasetInfo(tuple(image_shape), 256, {name: len(names) for name, names in files.items()}, None),
        examples=examples,
        decode=decode,
        shuffle_buffer=None,
    )


def _npz_source(spec: str, path: str, image_shape: tuple[int, int, int] | None) -> _Source:
    filename = os.path.expanduser(path)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"File {filename!r} does not exist. Received: spec={spec!r}")
    try:
        npz = np.load(filename, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("one array, not named arrays")
        with npz:
            contents = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{filename} is not a readable NumPy .npz file of named arrays ({error}). Received: spec={spec!r}"
        ) from None

    num_bins = 256
    if "num_bins" in contents:
        value = contents["num_bins"]
        if value.shape != () or not np.issubdtype(value.dtype, np.integer) or not 2 <= value <= 256:
            raise ValueError(
                f"{filename}: 'num_bins' must be a scalar integer in [2, 256] (images are uint8). "
                f"Received: num_bins={value.tolist()!r}"
            )
        num_bins = int(value)

    split_keys = {m.group(1): key for key in contents if (m := re.fullmatch(r"x_(\w+)", key))}
    if split_keys:
        pairs = {split: (key, f"y_{split}") for split, key in split_keys.items()}
    else:
        image_key = next((k for k in ("images", "x") if k in contents), None)
        if image_key is None:
            raise ValueError(
                f"{filename}: expected arrays 'x_train'/'x_test' (optionally 'y_train'/'y_test') "
                f"or 'images'/'x' (optionally 'labels'/'y'). Received: keys={sorted(contents)}"
            )
        label_key = next((k for k in ("labels", "y") if k in contents), "")
        pairs = {"train": (image_key, label_key)}

    arrays = {}
    for split, (image_key, label_key) in pairs.items():
        images = _check_npz_images(filename, image_key, contents[image_key], num_bins)
        labels = None
        if label_key in contents:
            labels = _check_npz_labels(filename, label_key, contents[label_key], len(images))
        arrays[split] = (images, labels)

    has_labels = [labels is not None for _, labels in arrays.values()]
    if any(has_labels) and not all(has_labels):
        missing = [split for split, (_, labels) in arrays.items() if labels is None]
        raise ValueError(
            f"{filename}: labels are given for some splits but not for {missing}. "
            f"Received: keys={sorted(contents)}"
        )
    num_classes = None
    if all(has_labels):
        num_classes = int(max(labels.max(initial=-1) for _, labels in arrays.values())) + 1
    return _in_memory_source(
        spec, arrays, num_bins=num_bins, num_classes=num_classes, image_shape=image_shape
    )


# --------------------------------------------------------------------------------------------------
# Helpers.


def _center_crop_and_resize(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Center-crops `image` [h, w, C] to the aspect ratio of `size` and resizes it to `size`."""
    if tuple(image.shape[:2]) == tuple(size):
        return image  # Already the right size: keep the exact levels.
    target_h, target_w = size
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    # The largest centered window with the target aspect ratio (rounded to whole pixels).
    crop_h = tf.clip_by_value((w * target_h + target_w // 2) // target_w, 1, h)
    crop_w = tf.clip_by_value((h * target_w + target_h // 2) // target_h, 1, w)
    image = image[(h - crop_h) // 2 :, (w - crop_w) // 2 :][:crop_h, :crop_w]

    def resize():
        x = tf.cast(image, tf.float32)
        # Area averaging when shrinking avoids aliasing; bilinear when enlarging.
        x = tf.cond(
            tf.logical_and(crop_h >= target_h, crop_w >= target_w),
            lambda: tf.image.resize(x, size, method="area"),
            lambda: tf.image.resize(x, size, method="bilinear", antialias=True),
        )
        # Interpolation is a convex combination: rounding keeps values within the source's levels.
        return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)

    same = tf.logical_and(tf.equal(crop_h, target_h), tf.equal(crop_w, target_w))
    return tf.cond(same, lambda: tf.identity(image), resize)


def _list_images(directory: str) -> list[str]:
    found = []
    for parent, _, names in os.walk(directory):
        found.extend(
            os.path.join(parent, name)
            for name in names
            if os.path.splitext(name)[1].lower() in _IMAGE_SUFFIXES
        )
    return sorted(found)


def _parse_split(spec: str, split: str, available: Sequence[str]) -> list[str]:
    names = split.split("+")
    if not all(name in available for name in names):
        raise ValueError(
            f"Unknown split for dataset {spec!r}. Expected one of {list(available)} or several "
            f"joined with '+'. Received: split={split!r}"
        )
    return names


def _check_image_shape(image_shape: Sequence[int] | None) -> tuple[int, int, int] | None:
    if image_shape is None:
        return None
    try:
        dims = tuple(image_shape)
    except TypeError:
        dims = ()
    if len(dims) != 3 or not all(_is_int(d) and d > 0 for d in dims):
        raise ValueError(
            "Expected `image_shape` to be a tuple of 3 positive integers (H, W, C). "
            f"Received: image_shape={image_shape!r}"
        )
    return tuple(int(d) for d in dims)


def _check_channels(spec: str, source_channels: int, image_shape: tuple[int, int, int]) -> None:
    if image_shape[-1] != source_channels:
        raise ValueError(
            f"Dataset {spec!r} has images with {source_channels} channel(s); resizing does not "
            f"change the channel count. Received: image_shape={image_shape!r}"
        )


def _check_positive_int(name: str, value) -> None:
    if not _is_int(value) or value < 1:
        raise ValueError(f"Expected `{name}` to be an integer >= 1. Received: {name}={value!r}")


def _check_non_negative_int(name: str, value) -> None:
    if not _is_int(value) or value < 0:
        raise ValueError(f"Expected `{name}` to be an integer >= 0. Received: {name}={value!r}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_npz_images(filename: str, key: str, array: np.ndarray, num_bins: int) -> np.ndarray:
    if array.ndim not in (3, 4):
        raise ValueError(
            f"{filename}: array {key!r} must be [N, H, W] or [N, H, W, C]. Received: shape={array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{filename}: array {key!r} must hold integer pixel levels in [0, {num_bins}); convert "
            f"scaled float images back to levels first. Received: dtype={array.dtype}"
        )
    if array.size and (array.min() < 0 or array.max() >= num_bins):
        raise ValueError(
            f"{filename}: array {key!r} must hold values in [0, {num_bins}). "
            f"Received: min={array.min()}, max={array.max()}"
        )
    if 0 in array.shape[1:]:
        raise ValueError(
            f"{filename}: array {key!r} must hold images of positive height, width and channels. "
            f"Received: shape={array.shape}"
        )
    if array.ndim == 3:
        array = array[..., np.newaxis]  # Grey images: make C explicit.
    return array.astype(np.uint8)


def _check_npz_labels(filename: str, key: str, array: np.ndarray, num_images: int) -> np.ndarray:
    # Keras datasets store some labels as [N, 1].
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or len(array) != num_images:
        raise ValueError(
            f"{filename}: labels {key!r} must have shape [{num_images}] to match the images. "
            f"Received: shape={array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer) or (array.size and array.min() < 0):
        raise ValueError(
            f"{filename}: labels {key!r} must be non-negative integers. "
            f"Received: dtype={array.dtype}, min={array.min() if array.size else None}"
        )
    return array.astype(np.int32)
