"""Fuzz tests (hypothesis, bounded) of the bijectors and the data pipeline.

Bijectors: for valid images of any batch shape, dtype and values, encoding then decoding is
exact and finite and the log-dets are finite and agree; for arbitrary input (any rank, size, dtype,
NaN/Inf) with `validate_args=True`, a bijector either answers finitely or raises one of the
documented errors: ValueError/TypeError for static problems, InvalidArgumentError for
tensor-valued ones. Data: `.npz` files and image folders of random shapes, dtypes and values
either load as exactly the integer images written, or raise the documented error.

The bijectors are the registry's (tests/bijector_cases.py), each built once per configuration
and run eagerly, so no example retraces.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.bijector_cases import CASES, names, shared
from tfp_glow import data

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples in every run: CI failures reproduce
)
DOCUMENTED = (ValueError, TypeError, tf.errors.InvalidArgumentError)

# Every bijector of the registry on images (the Glows are fuzzed below, on their own shapes).
KINDS = names(lambda case: not case.is_glow)
DTYPES = {"float32": tf.float32, "float64": tf.float64}
# Round-trip tolerance relative to the input's magnitude.
RTOL = {"float32": 2e-4, "float64": 1e-10}


def bijector(kind: str, dtype_name: str, validate_args: bool = False):
    """The registry's bijector of `kind`, initialized, every parameter moved off its initial value."""
    return shared(kind, DTYPES[dtype_name], validate_args)


def kwargs(kind: str, batch_shape=()) -> dict:
    """The conditioning keyword arguments `kind` needs, for inputs of batch shape `batch_shape`."""
    return CASES[kind].kwargs(batch_shape)


def _assert_close(actual, expected, dtype_name):
    scale = 1.0 + np.max(np.abs(expected), initial=0.0)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=RTOL[dtype_name] * scale)


@st.composite
def valid_images(draw):
    """(kind, dtype name, images [*batch, H, W, C]) of finite values for a bijector of kind."""
    kind = draw(st.sampled_from(KINDS))
    dtype_name = draw(st.sampled_from(sorted(DTYPES)))
    channels = CASES[kind].event_shape[-1]
    batch = draw(st.sampled_from([(), (1,), (3,), (2, 1)]))
    height, width = draw(st.sampled_from([2, 4])), draw(st.sampled_from([2, 4]))
    magnitude = draw(st.sampled_from([1e-3, 1.0, 10.0]))
    values = draw(
        hnp.arrays(
            np.float64,
            (*batch, height, width, channels),
            elements=st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False),
        )
    )
    return kind, dtype_name, (magnitude * values).astype(DTYPES[dtype_name].as_numpy_dtype)


@FUZZ
@given(valid_images())
def test_bijectors_round_trip_valid_images_exactly_with_finite_log_det(case):
    # From the data side, as a flow is used: encode, then decode. The generative direction divides
    # by the coupling scale, so a stack of steps grows doubly exponentially in its input and
    # overflows on a latent of 10 everywhere, far outside what the base distribution draws.
    kind, dtype_name, x = case
    b = bijector(kind, dtype_name)
    conditioning = kwargs(kind, x.shape[:-3])

    z = b.inverse(tf.constant(x), **conditioning)
    ildj = b.inverse_log_det_jacobian(tf.constant(x), event_ndims=3, **conditioning)
    x_again = b.forward(tf.constant(z.numpy()), **conditioning)  # a fresh tensor: TFP's cache cannot answer
    fldj = b.forward_log_det_jacobian(tf.constant(z.numpy()), event_ndims=3, **conditioning)

    assert z.dtype == DTYPES[dtype_name] and np.all(np.isfinite(z.numpy()))
    _assert_close(x_again.numpy(), x, dtype_name)
    assert np.all(np.isfinite(fldj.numpy())) and np.all(np.isfinite(ildj.numpy()))
    np.testing.assert_allclose(
        np.broadcast_to(fldj.numpy(), x.shape[:-3]),
        np.broadcast_to(-ildj.numpy(), x.shape[:-3]),
        rtol=1e-4 if dtype_name == "float32" else 1e-10,
        atol=1e-4 if dtype_name == "float32" else 1e-10,
    )


@FUZZ
@given(
    dtype_name=st.sampled_from(sorted(DTYPES)),
    batch=st.sampled_from([(), (1,), (3,), (2, 2)]),
    seed=st.integers(0, 2**31 - 1),
    magnitude=st.sampled_from([1e-4, 0.1, 0.5]),  # images in the documented [-0.5, 0.5]
)
def test_glow_round_trip_and_log_prob_are_finite(dtype_name, batch, seed, magnitude):
    g = shared("glow", DTYPES[dtype_name])
    dtype = DTYPES[dtype_name]
    images = magnitude * tf.random.stateless_uniform([*batch, 4, 4, 2], [seed, 0], -1.0, 1.0, dtype=dtype)

    z, ildj = g.inverse_and_log_det(images)
    images_again, fldj = g.forward_and_log_det(tf.constant(z.numpy()))

    assert z.shape == (*batch, 32)
    _assert_close(images_again.numpy(), images.numpy(), dtype_name)
    assert np.all(np.isfinite(ildj.numpy())) and ildj.shape == batch
    np.testing.assert_allclose(fldj.numpy(), -ildj.numpy(), rtol=1e-4, atol=1e-3)


ANY_DTYPES = ["float16", "float32", "float64", "int32", "uint8", "bool"]


@st.composite
def arbitrary_tensors(draw):
    """Arrays of any rank 0-5, sizes 0-5, dtypes and values (NaN and Inf included)."""
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=5)))
    dtype = np.dtype(draw(st.sampled_from(ANY_DTYPES)))
    if dtype.kind == "f":
        elements = st.floats(width=16 if dtype.itemsize == 2 else 32, allow_nan=True, allow_infinity=True)
    elif dtype.kind == "b":
        elements = st.booleans()
    else:
        elements = st.integers(int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
    return draw(hnp.arrays(dtype, shape, elements=elements))


@FUZZ
@given(kind=st.sampled_from(KINDS), direction=st.sampled_from(["forward", "inverse"]), x=arbitrary_tensors())
def test_bijectors_refuse_arbitrary_input_only_with_documented_errors(kind, direction, x):
    b = bijector(kind, "float32", validate_args=True)
    # One label for the whole batch, whatever its shape.
    conditioning = {k: tf.constant(1) if k == "labels" else v for k, v in kwargs(kind).items()}
    try:
        y = getattr(b, direction)(x, **conditioning)
        log_det = getattr(b, f"{direction}_log_det_jacobian")(x, event_ndims=3, **conditioning)
    except DOCUMENTED:
        return
    # Accepted: it was a valid input (an image batch of finite values), so the answer is finite.
    assert x.ndim >= 3
    assert np.all(np.isfinite(x.astype(np.float64)))
    if x.size:
        assert np.all(np.isfinite(y.numpy())) and np.all(np.isfinite(log_det.numpy()))


@FUZZ
@given(direction=st.sampled_from(["forward", "inverse"]), x=arbitrary_tensors())
def test_glow_refuses_arbitrary_input_only_with_documented_errors(direction, x):
    g = shared("glow", tf.float32, validate_args=True)
    try:
        y = getattr(g, direction)(x)
    except DOCUMENTED:
        return
    assert np.all(np.isfinite(x.astype(np.float64)))
    if x.size:
        assert np.all(np.isfinite(y.numpy()))


# The data pipeline.

NPZ_DTYPES = ["uint8", "uint16", "int8", "int32", "int64", "float32", "float64", "bool"]


@st.composite
def npz_contents(draw):
    dtype = np.dtype(draw(st.sampled_from(NPZ_DTYPES)))
    shape = (
        draw(st.integers(0, 4)),
        draw(st.integers(0, 5)),
        draw(st.integers(1, 5)),
        *draw(st.sampled_from([(), (1,), (3,), (0,)])),
    )
    num_bins = draw(st.sampled_from([None, 2, 17, 256, 300]))
    high = draw(st.sampled_from([2, 17, 256, 1000]))
    low = draw(st.sampled_from([0, 0, -3]))
    if dtype.kind == "b":
        images = draw(hnp.arrays(dtype, shape))
    else:
        info = np.iinfo(dtype) if dtype.kind in "iu" else None
        lo = low if info is None else max(low, int(info.min))
        hi = high if info is None else min(high, int(info.max) + 1)
        images = draw(hnp.arrays(np.int64, shape, elements=st.integers(lo, hi - 1))).astype(dtype)
    layout = draw(st.sampled_from(["images", "x_train", "x"]))
    return images, num_bins, layout


@FUZZ
@given(npz_contents())
def test_npz_loads_exact_integer_images_or_refuses_with_value_error(contents):
    images, num_bins, layout = contents
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        arrays = {layout: images}
        if num_bins is not None:
            arrays["num_bins"] = np.int64(num_bins)
        np.savez(path, **arrays)
        bins = 256 if num_bins is None else num_bins
        valid = (
            images.dtype.kind in "iu"
            and 2 <= bins <= 256
            and images.ndim in (3, 4)
            and 0 not in images.shape[1:]
            and (images.size == 0 or (images.min() >= 0 and images.max() < bins))
        )
        try:
            loaded = data.load_numpy(f"npz:{path}", "train")
            info = data.info(f"npz:{path}")
        except ValueError as error:
            assert not valid, error
            assert "Received:" in str(error)
            return
    assert valid
    expected = images if images.ndim == 4 else images[..., np.newaxis]
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, expected)
    assert info.num_bins == bins and info.image_shape == expected.shape[1:]


@st.composite
def image_folders(draw):
    channels = draw(st.sampled_from([1, 3, 4]))
    shapes = draw(
        st.lists(
            st.tuples(st.integers(1, 6), st.integers(1, 6)),
            min_size=1,
            max_size=4,
        )
    )
    seed = draw(st.integers(0, 2**31 - 1))
    suffix = draw(st.sampled_from([".png", ".PNG"]))
    image_shape = draw(st.sampled_from([None, (4, 4), (2, 6), (7, 3)]))
    return channels, shapes, seed, suffix, image_shape


@FUZZ
@given(image_folders())
def test_folder_loads_exact_images_or_refuses_with_a_documented_error(folder):
    channels, shapes, seed, suffix, image_shape = folder
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (h, w, channels), dtype=np.uint8) for h, w in shapes]
    target = None if image_shape is None else (*image_shape, channels)
    with tempfile.TemporaryDirectory() as tmp:
        for i, image in enumerate(images):
            with open(os.path.join(tmp, f"{i:02d}{suffix}"), "wb") as f:
                f.write(tf.io.encode_png(image).numpy())
        try:
            loaded = data.load_numpy(f"folder:{tmp}", "train", image_shape=target)
        except tf.errors.InvalidArgumentError as error:
            # Files of different shapes without image_shape: refused while reading, naming both.
            assert target is None and len({im.shape for im in images}) > 1, error
            assert "pass image_shape" in str(error)
            return
    assert loaded.dtype == np.uint8 and len(loaded) == len(images)
    if target is None:
        np.testing.assert_array_equal(loaded, np.stack(images))
    else:
        assert loaded.shape[1:] == target
        # Resizing averages: every output level lies within its source image's levels.
        for out, image in zip(loaded, images, strict=True):
            if image.shape == target:
                np.testing.assert_array_equal(out, image)
            assert out.min() >= image.min() and out.max() <= image.max()


@pytest.mark.parametrize("spec", ["", ":", "digits:", "npz:", "tfds", "Digits", "folder"])
def test_malformed_specs_are_value_errors(spec):
    with pytest.raises(ValueError, match="Unknown dataset spec"):
        data.load(spec)
