"""Tests of `tfp_glow.data`: real digits, TFDS via `tfds.testing.mock_data`, real files."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from tfp_glow import data

DIGITS_SIZES = {"train": 1300, "validation": 200, "test": 297, "train+validation": 1500}


def _as_bytes(images):
    return [image.tobytes() for image in images]


def _collect(ds, with_labels=False):
    batches = list(ds.as_numpy_iterator())
    if with_labels:
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    return np.concatenate(batches)


def _write_png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(image))


def _random_images(n, shape, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=(n, *shape)).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# digits


def test_digits_info():
    assert data.info("digits") == data.DatasetInfo(
        image_shape=(8, 8, 1), num_bins=17, num_examples=DIGITS_SIZES, num_classes=10
    )


@pytest.mark.parametrize("split,size", sorted(DIGITS_SIZES.items()))
def test_digits_split_sizes_dtype_and_range(split, size):
    images, labels = data.load_numpy("digits", split, with_labels=True)
    assert images.shape == (size, 8, 8, 1)
    assert images.dtype == np.uint8
    assert labels.shape == (size,) and labels.dtype == np.int32
    # Raw levels: 0..16, not rescaled.
    assert images.min() == 0 and images.max() == 16
    assert set(np.unique(labels)) == set(range(10))


def test_digits_split_is_the_documented_permutation():
    bunch = load_digits()
    order = np.random.RandomState(0).permutation(1797)
    expected_images = bunch.images[order].astype(np.uint8)[..., None]
    expected_labels = bunch.target[order]
    for split, (start, stop) in {"train": (0, 1300), "validation": (1300, 1500)}.items():
        images, labels = data.load_numpy("digits", split, with_labels=True)
        np.testing.assert_array_equal(images, expected_images[start:stop])
        np.testing.assert_array_equal(labels, expected_labels[start:stop])
    np.testing.assert_array_equal(data.load_numpy("digits", "test"), expected_images[1500:])


def test_digits_splits_are_disjoint_and_compose():
    train = data.load_numpy("digits", "train")
    validation = data.load_numpy("digits", "validation")
    test = data.load_numpy("digits", "test")
    train_bytes, validation_bytes, test_bytes = map(set, map(_as_bytes, (train, validation, test)))
    assert not train_bytes & test_bytes
    assert not validation_bytes & test_bytes
    assert not train_bytes & validation_bytes
    np.testing.assert_array_equal(
        data.load_numpy("digits", "train+validation"), np.concatenate([train, validation])
    )


def test_digits_batches_have_static_shape():
    ds = data.load("digits", "train", batch_size=64)
    assert ds.element_spec == tf.TensorSpec([None, 8, 8, 1], tf.uint8)
    sizes = [len(b) for b in ds.as_numpy_iterator()]
    assert sizes == [64] * 20 + [1300 - 64 * 20]

    dropped = data.load("digits", "train", batch_size=64, drop_remainder=True)
    assert dropped.element_spec.shape == (64, 8, 8, 1)
    assert sum(1 for _ in dropped) == 1300 // 64


@pytest.mark.parametrize("spec, repeat", [("digits", False), ("digits", True), ("tfds:mnist", False)])
def test_pipelines_run_without_tf_data_autotuning(spec, repeat):
    # An autotuned iterator runs a model thread, which on a busy machine held the iterator's
    # destruction for seconds; the pipelines have fixed parallelism instead.
    with tfds.testing.mock_data(num_examples=10):
        ds = data.load(spec, "train", batch_size=4, repeat=repeat)
        assert ds.options().autotune.enabled is False
        assert ds.take(2).options().autotune.enabled is False  # what a user adds keeps it
        assert [len(batch) for batch in ds.take(2)] == [4, 4]


def test_digits_loads_are_deterministic():
    first = _collect(data.load("digits", "train", batch_size=100, seed=3))
    second = _collect(data.load("digits", "train", batch_size=100, seed=3))
    other_seed = _collect(data.load("digits", "train", batch_size=100, seed=4))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other_seed)


def test_digits_shuffles_only_train_by_default():
    stored_train = data.load_numpy("digits", "train")
    shuffled = _collect(data.load("digits", "train", batch_size=100))
    assert not np.array_equal(shuffled, stored_train)
    assert sorted(_as_bytes(shuffled)) == sorted(_as_bytes(stored_train))
    unshuffled = _collect(data.load("digits", "train", batch_size=100, shuffle=False))
    np.testing.assert_array_equal(unshuffled, stored_train)

    for split in ("validation", "test"):
        np.testing.assert_array_equal(
            _collect(data.load("digits", split, batch_size=100)), data.load_numpy("digits", split)
        )
    forced = _collect(data.load("digits", "test", batch_size=100, shuffle=True))
    assert not np.array_equal(forced, data.load_numpy("digits", "test"))


def test_digits_repeat_reshuffles_every_epoch():
    ds = data.load("digits", "validation", batch_size=200, shuffle=True, repeat=True)
    iterator = ds.as_numpy_iterator()
    epoch1, epoch2 = next(iterator), next(iterator)
    assert not np.array_equal(epoch1, epoch2)
    assert sorted(_as_bytes(epoch1)) == sorted(_as_bytes(epoch2))


def test_repeat_batches_each_epoch_on_its_own_and_start_epoch_replays_its_order():
    # 200 validation images in batches of 64: 4 batches per epoch, the last of 8 images.
    ds = data.load("digits", "validation", batch_size=64, shuffle=True, seed=3, repeat=True)
    batches = list(ds.take(12).as_numpy_iterator())
    assert [len(b) for b in batches] == [64, 64, 64, 8] * 3
    epochs = [np.concatenate(batches[i : i + 4]) for i in (0, 4, 8)]
    stored = sorted(_as_bytes(data.load_numpy("digits", "validation")))
    assert all(sorted(_as_bytes(epoch)) == stored for epoch in epochs)
    assert not np.array_equal(epochs[1], epochs[2])
    # Starting at epoch 1 gives epochs 1 and 2 again: what a resumed run reads.
    restarted = data.load(
        "digits", "validation", batch_size=64, shuffle=True, seed=3, repeat=True, start_epoch=1
    )
    np.testing.assert_array_equal(
        np.concatenate(list(restarted.take(8).as_numpy_iterator())), np.concatenate(epochs[1:])
    )
    assert data.num_batches(data.load("digits", "validation", batch_size=64)) == 4
    with pytest.raises(ValueError, match="finite dataset"):
        data.num_batches(ds)
    with pytest.raises(ValueError, match=r"`start_epoch` to be an integer >= 0. Received: start_epoch=-1"):
        data.load("digits", "validation", repeat=True, start_epoch=-1)


def test_digits_labels_follow_images_through_shuffle():
    stored_images, stored_labels = data.load_numpy("digits", "test", with_labels=True)
    label_of = dict(zip(_as_bytes(stored_images), stored_labels, strict=True))
    ds = data.load("digits", "test", batch_size=50, shuffle=True, with_labels=True)
    assert ds.element_spec[1] == tf.TensorSpec([None], tf.int32)
    images, labels = _collect(ds, with_labels=True)
    assert [label_of[b] for b in _as_bytes(images)] == labels.tolist()


def test_take_keeps_the_first_examples_before_shuffling():
    stored = data.load_numpy("digits", "train")
    taken = _collect(data.load("digits", "train", batch_size=4, take=10, shuffle=False))
    np.testing.assert_array_equal(taken, stored[:10])
    shuffled = _collect(data.load("digits", "train", batch_size=4, take=10))
    assert len(shuffled) == 10
    assert sorted(_as_bytes(shuffled)) == sorted(_as_bytes(stored[:10]))


def test_digits_resize_keeps_levels():
    images = data.load_numpy("digits", "test", image_shape=(16, 12, 1))
    assert images.shape == (297, 16, 12, 1)
    assert images.max() <= 16
    assert data.info("digits", image_shape=(16, 12, 1)).image_shape == (16, 12, 1)


# --------------------------------------------------------------------------------------------------
# tfds (offline, through tfds.testing.mock_data)


def test_tfds_repeat_batches_per_epoch_and_start_epoch_reads_on_from_there():
    with tfds.testing.mock_data(num_examples=10):
        ds = data.load("tfds:mnist", "train", batch_size=4, shuffle=True, seed=1, repeat=True)
        batches = list(ds.take(6).as_numpy_iterator())
        later = data.load(
            "tfds:mnist", "train", batch_size=4, shuffle=True, seed=1, repeat=True, start_epoch=1
        )
        restarted = list(later.take(3).as_numpy_iterator())
    assert [len(b) for b in batches] == [4, 4, 2] * 2
    np.testing.assert_array_equal(np.concatenate(restarted), np.concatenate(batches[3:]))


def test_tfds_mnist_with_labels():
    with tfds.testing.mock_data(num_examples=10):
        assert data.info("tfds:mnist") == data.DatasetInfo((28, 28, 1), 256, {}, 10)
        ds = data.load("tfds:mnist", "train", batch_size=4, with_labels=True)
        assert ds.element_spec == (
            tf.TensorSpec([None, 28, 28, 1], tf.uint8),
            tf.TensorSpec([None], tf.int32),
        )
        images, labels = _collect(ds, with_labels=True)
        raw = list(tfds.load("mnist", split="train").as_numpy_iterator())
    assert images.shape == (10, 28, 28, 1)
    assert labels.min() >= 0 and labels.max() < 10
    # The mock yields the same examples to every pipeline: the loader keeps raw levels and pairing.
    by_bytes = {e["image"].tobytes(): e["label"] for e in raw}
    assert sorted(by_bytes) == sorted(_as_bytes(images))
    assert [by_bytes[b] for b in _as_bytes(images)] == labels.tolist()
    assert images.max() > 1  # Not rescaled to [0, 1].


def test_tfds_test_split_is_not_shuffled_and_take_limits():
    with tfds.testing.mock_data(num_examples=6):
        images = _collect(data.load("tfds:mnist", "test", batch_size=4))
        raw = np.stack([e["image"] for e in tfds.load("mnist", split="test").as_numpy_iterator()])
        taken = _collect(data.load("tfds:mnist", "test", batch_size=4, take=3))
    np.testing.assert_array_equal(images, raw)
    np.testing.assert_array_equal(taken, raw[:3])


def test_tfds_cifar10_resize_and_crop():
    with tfds.testing.mock_data(num_examples=3):
        assert data.info("tfds:cifar10", image_shape=(16, 8, 3)).image_shape == (16, 8, 3)
        raw = np.stack([e["image"] for e in tfds.load("cifar10", split="test").as_numpy_iterator()])
        square = _collect(data.load("tfds:cifar10", "test", image_shape=(16, 16, 3)))
        tall = _collect(data.load("tfds:cifar10", "test", batch_size=2, image_shape=(16, 8, 3)))
    assert square.dtype == np.uint8 and square.shape == (3, 16, 16, 3)
    expected = np.round(tf.image.resize(raw.astype(np.float32), (16, 16), method="area").numpy())
    np.testing.assert_array_equal(square, expected.astype(np.uint8))
    # 32x32 -> aspect 2:1 keeps the center 32x16 columns, then halves each side.
    center = raw[:, :, 8:24].astype(np.float32)
    expected = np.round(tf.image.resize(center, (16, 8), method="area").numpy())
    np.testing.assert_array_equal(tall, expected.astype(np.uint8))


@pytest.mark.parametrize("spec", ["tfds:imagenet_resized:32x32", "tfds:imagenet_resized/32x32"])
def test_tfds_config_spellings(spec):
    with tfds.testing.mock_data(num_examples=2):
        assert data.info(spec) == data.DatasetInfo((32, 32, 3), 256, {}, 1000)
        assert _collect(data.load(spec, "train")).shape == (2, 32, 32, 3)


def test_tfds_without_label_feature():
    with tfds.testing.mock_data(num_examples=2):
        assert data.info("tfds:celeb_a").num_classes is None
        with pytest.raises(ValueError, match="with_labels=True"):
            data.load("tfds:celeb_a", with_labels=True)
        with pytest.raises(ValueError, match=r"image_shape=\(28, 28, 3\)"):
            data.load("tfds:mnist", image_shape=(28, 28, 3))


# --------------------------------------------------------------------------------------------------
# folder


def test_folder_round_trips_png_files(tmp_path):
    images = _random_images(4, (5, 6, 3))
    names = ["b.png", "a.PNG", "sub/c.png", "sub/deeper/d.png"]
    for name, image in zip(names, images, strict=True):
        _write_png(str(tmp_path / name), image)
    (tmp_path / "notes.txt").write_text("not an image")
    spec = f"folder:{tmp_path}"
    assert data.info(spec) == data.DatasetInfo((5, 6, 3), 256, {"train": 4}, None)
    # Files are sorted by path: a.PNG, b.png, sub/c.png, sub/deeper/d.png.
    np.testing.assert_array_equal(data.load_numpy(spec), images[[1, 0, 2, 3]])
    ds = data.load(spec, batch_size=3)
    assert ds.element_spec == tf.TensorSpec([None, 5, 6, 3], tf.uint8)
    assert sorted(_as_bytes(_collect(ds))) == sorted(_as_bytes(images))


def test_folder_grey_and_jpeg(tmp_path):
    grey = _random_images(2, (4, 4, 1))
    for i, image in enumerate(grey):
        _write_png(str(tmp_path / f"{i}.png"), image)
    tf.io.write_file(str(tmp_path / "2.JPEG"), tf.io.encode_jpeg(np.full((4, 4, 1), 77, np.uint8)))
    loaded = data.load_numpy(f"folder:{tmp_path}")
    assert loaded.shape == (3, 4, 4, 1)
    np.testing.assert_array_equal(loaded[:2], grey)
    assert np.abs(loaded[2].astype(int) - 77).max() <= 2  # JPEG is lossy.
    # Decoding with the requested channels turns grey into RGB.
    rgb = data.load_numpy(f"folder:{tmp_path}", image_shape=(4, 4, 3))
    np.testing.assert_array_equal(rgb[:2], np.repeat(grey, 3, axis=-1))


def test_folder_train_test_subfolders(tmp_path):
    train, test = _random_images(3, (4, 4, 3), seed=1), _random_images(2, (4, 4, 3), seed=2)
    for i, image in enumerate(train):
        _write_png(str(tmp_path / "train" / f"{i}.png"), image)
    for i, image in enumerate(test):
        _write_png(str(tmp_path / "test" / f"{i}.png"), image)
    spec = f"folder:{tmp_path}"
    assert data.info(spec).num_examples == {"train": 3, "test": 2}
    np.testing.assert_array_equal(data.load_numpy(spec, "train"), train)
    np.testing.assert_array_equal(data.load_numpy(spec, "test"), test)
    with pytest.raises(ValueError, match="split='validation'"):
        data.load(spec, "validation")

    _write_png(str(tmp_path / "validation" / "0.png"), test[0])
    np.testing.assert_array_equal(data.load_numpy(spec, "validation"), test[:1])


def test_folder_without_subfolders_has_only_train(tmp_path):
    _write_png(str(tmp_path / "x.png"), _random_images(1, (2, 2, 1))[0])
    with pytest.raises(ValueError, match="split='test'"):
        data.load(f"folder:{tmp_path}", "test")


def test_folder_center_crop_and_resize(tmp_path):
    images = _random_images(2, (6, 4, 3))
    for i, image in enumerate(images):
        _write_png(str(tmp_path / f"{i}.png"), image)
    spec = f"folder:{tmp_path}"
    # Square target: the center 4x4 rows, exactly.
    np.testing.assert_array_equal(data.load_numpy(spec, image_shape=(4, 4, 3)), images[:, 1:5])
    # Shrinking 4x4 to 3x3 averages areas (bilinear sampling would differ).
    small = data.load_numpy(spec, image_shape=(3, 3, 3))
    expected = tf.image.resize(images[:, 1:5].astype(np.float32), (3, 3), method="area")
    np.testing.assert_array_equal(small, np.round(expected.numpy()).astype(np.uint8))
    large = data.load(spec, image_shape=(9, 12, 3))
    assert large.element_spec.shape == (None, 9, 12, 3)
    # Aspect 3:4 keeps the center 3x4 rows (1:4), then enlarges bilinearly.
    center = images[:, 1:4].astype(np.float32)
    expected = tf.image.resize(center, (9, 12), method="bilinear", antialias=True)
    np.testing.assert_array_equal(_collect(large), np.round(expected.numpy()).astype(np.uint8))


def test_folder_mismatched_shapes_name_the_file(tmp_path):
    _write_png(str(tmp_path / "a.png"), _random_images(1, (4, 4, 1))[0])
    _write_png(str(tmp_path / "b_odd.png"), _random_images(1, (5, 4, 1))[0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="b_odd.png"):
        data.load_numpy(f"folder:{tmp_path}")
    # With an explicit image_shape every file is cropped and resized to it.
    assert data.load_numpy(f"folder:{tmp_path}", image_shape=(4, 4, 1)).shape == (2, 4, 4, 1)


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match="no image files"):
        data.load(f"folder:{tmp_path / 'empty'}")
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="missing"):
        data.load(f"folder:{missing}")
    with pytest.raises(FileNotFoundError, match="missing"):
        data.info(f"folder:{missing}")
    with pytest.raises(ValueError, match="with_labels=True"):
        _write_png(str(tmp_path / "one" / "x.png"), _random_images(1, (2, 2, 1))[0])
        data.load(f"folder:{tmp_path / 'one'}", with_labels=True)


# --------------------------------------------------------------------------------------------------
# npz


def test_npz_keras_convention(tmp_path):
    x_train = _random_images(5, (4, 3), seed=1)
    x_test = _random_images(2, (4, 3), seed=2)
    y_train = np.array([[0], [3], [1], [3], [2]], np.uint8)  # Keras stores some labels as [N, 1].
    y_test = np.array([4, 0], np.int64)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    spec = f"npz:{path}"
    assert data.info(spec) == data.DatasetInfo((4, 3, 1), 256, {"train": 5, "test": 2}, 5)
    images, labels = data.load_numpy(spec, "train", with_labels=True)
    np.testing.assert_array_equal(images, x_train[..., None])
    np.testing.assert_array_equal(labels, y_train[:, 0])
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(data.load_numpy(spec, "test"), x_test[..., None])
    both = data.load_numpy(spec, "train+test")
    np.testing.assert_array_equal(both, np.concatenate([x_train, x_test])[..., None])


@pytest.mark.parametrize("image_key,label_key", [("images", "labels"), ("x", "y"), ("images", None)])
def test_npz_single_array(tmp_path, image_key, label_key):
    images = _random_images(3, (2, 2, 3))
    arrays = {image_key: images.astype(np.int32)}
    if label_key:
        arrays[label_key] = np.array([1, 0, 1])
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    spec = f"npz:{path}"
    assert data.info(spec).num_classes == (2 if label_key else None)
    loaded = _collect(data.load(spec, batch_size=2, shuffle=False))
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, images)
    with pytest.raises(ValueError, match="split='test'"):
        data.load(spec, "test")


def test_npz_num_bins_entry(tmp_path):
    path = tmp_path / "d.npz"
    images = np.arange(32).reshape(2, 4, 4) % 32
    np.savez(path, images=images, num_bins=np.int64(32))
    assert data.info(f"npz:{path}").num_bins == 32
    np.testing.assert_array_equal(data.load_numpy(f"npz:{path}"), images[..., None])
    np.savez(path, images=images, num_bins=np.int64(16))
    with pytest.raises(ValueError, match="max=31"):
        data.load(f"npz:{path}")


@pytest.mark.parametrize(
    "arrays,match",
    [
        ({"images": np.zeros((2, 4, 4), np.float32)}, "dtype=float32"),
        ({"images": np.full((2, 4, 4), 256, np.int16)}, "max=256"),
        ({"images": np.full((2, 4, 4), -1, np.int16)}, "min=-1"),
        ({"images": np.zeros((2, 4), np.uint8)}, r"shape=\(2, 4\)"),
        ({"images": np.zeros((2, 4, 4, 1, 1), np.uint8)}, r"shape=\(2, 4, 4, 1, 1\)"),
        ({"pixels": np.zeros((2, 4, 4), np.uint8)}, r"keys=\['pixels'\]"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(3, int)}, r"shape=\(3,\)"),
        ({"images": np.zeros((2, 4, 4), np.uint8), "num_bins": np.int64(300)}, "num_bins=300"),
    ],
)
def test_npz_errors(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match):
        data.load(f"npz:{path}")


def test_npz_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        data.info(f"npz:{tmp_path / 'nothing.npz'}")


# --------------------------------------------------------------------------------------------------
# argument errors, raised when `load` is called


@pytest.mark.parametrize(
    "spec,kwargs,match",
    [
        ("foo", {}, r"Unknown dataset spec 'foo'\. Expected 'digits', 'tfds:<name>\[:<config>\]'"),
        ("tfds:", {}, "Unknown dataset spec 'tfds:'"),
        ("csv:/tmp/x", {}, "Unknown dataset spec 'csv:/tmp/x'"),
        ("digits", {"image_shape": (8, 8)}, r"image_shape=\(8, 8\)"),
        ("digits", {"image_shape": (8, 0, 1)}, r"image_shape=\(8, 0, 1\)"),
        ("digits", {"image_shape": (8, 8, 1.0)}, r"image_shape=\(8, 8, 1.0\)"),
        ("digits", {"image_shape": 8}, "image_shape=8"),
        ("digits", {"image_shape": (8, 8, 3)}, r"1 channel.*image_shape=\(8, 8, 3\)"),
        ("digits", {"batch_size": 0}, "batch_size=0"),
        ("digits", {"batch_size": 2.5}, "batch_size=2.5"),
        ("digits", {"take": 0}, "take=0"),
        ("digits", {"split": "training"}, r"Expected one of \['train', .*split='training'"),
        ("digits", {"split": "train+tset"}, "split='train\\+tset'"),
    ],
)
def test_argument_errors(spec, kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load(spec, **kwargs)


def test_info_rejects_bad_image_shape():
    with pytest.raises(ValueError, match=r"image_shape=\[8, -8, 1\]"):
        data.info("digits", image_shape=[8, -8, 1])
