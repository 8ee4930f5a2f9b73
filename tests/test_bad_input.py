# ruff: noqa: E501  (the table of cases: one case a line)
"""Every public entry point refuses bad input with an error that names it.

One table: (entry point, bad input, expected exception type, a regex of the message that
names the received value and what was expected). Static problems are `ValueError` /
`TypeError` at the call; tensor-valued problems are run-time assertions
(`tf.errors.InvalidArgumentError`) under `validate_args=True` for the bijectors, and always
for `GlowModel`'s input checks, the data pipeline's in-graph checks and the SavedModel's
signatures. The CLI turns a bad flag into exit status 2 with the message on stderr.

Each case is a callable of `env`, the module's shared objects (built once): an initialized
`Glow` and ActNorm with `validate_args=True`, a tiny `GlowModel`, its exported and reloaded
SavedModel, and a folder of bad files.
"""

from __future__ import annotations

import contextlib
import io
import re
import types

import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tfp_glow import (
    ActNorm,
    AffineCoupling,
    ChannelPermutation,
    Expand,
    FlowStep,
    Glow,
    GlowModel,
    InvertibleConv1x1,
    SplitPrior,
    TopPrior,
    bits_per_dim,
    cli,
    data,
    glow_distribution,
)
from tfp_glow.export import export_saved_model

IAE = tf.errors.InvalidArgumentError
TINY = dict(num_levels=2, num_steps=1, hidden_channels=4, seed=0)
IMAGE = (8, 8, 1)  # digits
D = 64


class CliExit(Exception):
    """`tfp-glow` returned a non-zero status; the message is 'exit <status>: <stderr>'."""


def _cli(*args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli.main(["tfp-glow", "--model_dir=run", "--epochs=1", *args])
    if status != 0:
        raise CliExit(f"exit {status}: {err.getvalue()}")
    return status


def _zeros(shape, dtype=tf.float32):
    return tf.zeros(shape, dtype)


def _full(shape, value, dtype=tf.float32):
    return tf.fill(shape, tf.constant(value, dtype))


def _dynamic(fn, rank):
    """`fn` as a tf.function whose input shape is unknown until run time."""
    return tf.function(fn, input_signature=[tf.TensorSpec([None] * rank, tf.float32)])


def _fresh_model(images=None):
    """A compiled tiny model, ActNorm-initialized on `images` unless None (then `fit` does it)."""
    model = GlowModel.from_preset("digits", **TINY)
    if images is not None:
        model.initialize(images)
    model.compile()
    return model


def _signature(env, name, **inputs):
    return env.served.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})


def _sample_request(num_samples=2, temperature=0.7, seed=1):
    return dict(num_samples=np.int32(num_samples), temperature=np.float32(temperature), seed=np.int64(seed))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    images = data.load_numpy("digits", "train")[:32]
    glow = Glow(IMAGE, validate_args=True, **TINY)
    glow.initialize(tfp_glow.to_unit_range(images, 17))
    actnorm = ActNorm(2, validate_args=True)
    actnorm.initialize(tf.random.stateless_normal([4, 4, 4, 2], seed=[0, 0]))
    model = GlowModel.from_preset("digits", **TINY)
    model.initialize(images)
    export_dir = tmp_path_factory.mktemp("export")
    served = tf.saved_model.load(export_saved_model(model, str(export_dir)))

    files = tmp_path_factory.mktemp("files")
    np.savez(files / "float.npz", images=np.random.default_rng(0).random((4, 8, 8)).astype(np.float32))
    np.savez(files / "range.npz", images=np.full((4, 8, 8), 300, np.int32))
    np.savez(files / "negative.npz", x_train=np.full((4, 8, 8), -1, np.int64))
    np.savez(files / "rank.npz", images=np.zeros((4, 8), np.uint8))
    np.savez(files / "empty_images.npz", images=np.zeros((4, 0, 8), np.uint8))
    np.savez(files / "bins.npz", images=np.zeros((4, 8, 8), np.uint8), num_bins=np.int64(1))
    (files / "garbage.npz").write_bytes(b"not a zip file")
    np.savez(files / "plain.npz", images=np.zeros((4, 8, 8), np.uint8))
    np.save(files / "one_array.npy", np.zeros((4, 8, 8), np.uint8))
    (files / "empty_folder").mkdir()
    return types.SimpleNamespace(
        images=images, glow=glow, actnorm=actnorm, model=model, served=served, files=files
    )


# (id, callable of env, expected exception, regex of the message)
# fmt: off
CASES = [
    # Bijector constructors: static problems, ValueError.
    ("actnorm-channels-0", lambda e: ActNorm(0), ValueError, r"`channels` must be a positive integer.*Received: channels=0"),
    ("actnorm-channels-float", lambda e: ActNorm(2.5), ValueError, r"positive integer.*Received: channels=2\.5"),
    ("conv1x1-channels-negative", lambda e: InvertibleConv1x1(-1), ValueError, r"positive integer.*Received: channels=-1"),
    ("permutation-kind", lambda e: ChannelPermutation(3, kind="random"), ValueError, r"one of \('reverse', 'shuffle'\).*Received: kind='random'"),
    ("permutation-not-a-permutation", lambda e: ChannelPermutation(3, permutation=[0, 0, 1]), ValueError, r"permutation of range\(3\).*Received: permutation=\[0, 0, 1\]"),
    ("coupling-channels-1", lambda e: AffineCoupling(1), ValueError, r"integer >= 2.*Received: channels=1"),
    ("coupling-scale-fn", lambda e: AffineCoupling(4, scale_fn="softplus"), ValueError, r"one of \('sigmoid', 'exp'\).*Received: scale_fn='softplus'"),
    ("coupling-log-scale-bound", lambda e: AffineCoupling(4, log_scale_bound=-1.0), ValueError, r"positive.*Received: log_scale_bound=-1\.0"),
    ("coupling-hidden-0", lambda e: AffineCoupling(4, hidden_channels=0), ValueError, r"positive integer.*Received: hidden_channels=0"),
    ("expand-factor-0", lambda e: Expand(0), ValueError, r"positive integer.*Received: factor=0"),
    ("split-prior-channels-1", lambda e: SplitPrior(1), ValueError, r"integer >= 2.*Received: channels=1"),
    ("top-prior-channels-0", lambda e: TopPrior(0), ValueError, r"positive integer.*Received: channels=0"),
    ("flow-step-coupling", lambda e: FlowStep(4, coupling="volume"), ValueError, r"one of \('affine', 'additive'\).*Received: coupling='volume'"),
    ("flow-step-permutation", lambda e: FlowStep(4, permutation="random"), ValueError, r"one of \('conv1x1'.*Received: permutation='random'"),
    ("glow-num-levels-0", lambda e: Glow(IMAGE, 0, 1), ValueError, r"`num_levels` must be a positive integer.*Received: num_levels=0"),
    ("glow-num-levels-negative", lambda e: Glow(IMAGE, -2, 1), ValueError, r"Received: num_levels=-2"),
    ("glow-num-steps-0", lambda e: Glow(IMAGE, 1, 0), ValueError, r"positive integer.*Received: num_steps=0"),
    ("glow-not-divisible", lambda e: Glow((12, 8, 1), 3, 1), ValueError, r"divisible by 2\*\*num_levels = 8.*Received: image_shape=\(12, 8, 1\)"),
    ("glow-image-shape-rank", lambda e: Glow((8, 8), 1, 1), ValueError, r"\(height, width, channels\).*Received: image_shape=\(8, 8\)"),
    ("glow-image-shape-zero", lambda e: Glow((8, 0, 1), 1, 1), ValueError, r"positive integers.*Received: image_shape=\(8, 0, 1\)"),
    ("glow-coupling", lambda e: Glow(IMAGE, 1, 1, coupling="x"), ValueError, r"Received: coupling='x'"),
    # Bijector methods: static shapes and dtypes, ValueError at the call.
    ("actnorm-rank", lambda e: e.actnorm.forward(_zeros([4, 2])), ValueError, r"images of shape \[\.\.\., height, width, 2\].*Received: shape=\[4, 2\]"),
    ("actnorm-channels", lambda e: e.actnorm.inverse(_zeros([1, 4, 4, 3])), ValueError, r"expects 2 channels.*Received: shape=\[1, 4, 4, 3\]"),
    ("actnorm-dtype", lambda e: e.actnorm.forward(_zeros([1, 4, 4, 2], tf.float64)), ValueError, r"requested dtype float32 for Tensor with dtype float64"),
    ("actnorm-integer-dtype", lambda e: e.actnorm.inverse(_zeros([1, 4, 4, 2], tf.int32)), ValueError, r"requested dtype float32 for Tensor with dtype int32"),
    ("conv1x1-channels", lambda e: InvertibleConv1x1(4).inverse(_zeros([1, 2, 2, 3])), ValueError, r"expects 4 channels.*Received: shape=\[1, 2, 2, 3\]"),
    ("conv1x1-dtype", lambda e: InvertibleConv1x1(4, dtype=tf.float64).forward(_zeros([1, 2, 2, 4])), ValueError, r"requested dtype float64 for Tensor with dtype float32"),
    ("permutation-channels", lambda e: ChannelPermutation(3).forward(_zeros([1, 2, 2, 4])), ValueError, r"expects 3 channels.*Received: shape=\[1, 2, 2, 4\]"),
    ("coupling-rank", lambda e: AffineCoupling(4, hidden_channels=2).forward(_zeros([2, 4])), ValueError, r"\[\.\.\., height, width, 4\].*Received: shape=\[2, 4\]"),
    ("coupling-channels", lambda e: AffineCoupling(4, hidden_channels=2).inverse(_zeros([1, 2, 2, 6])), ValueError, r"expects 4 channels.*Received: shape=\[1, 2, 2, 6\]"),
    ("expand-inverse-odd-height", lambda e: Expand().inverse(_zeros([1, 3, 4, 1])), ValueError, r"divisible by 2.*Received: shape=\[1, 3, 4, 1\]"),
    ("expand-inverse-rank", lambda e: Expand().inverse(_zeros([4, 4])), ValueError, r"\[\.\.\., height, width, channels\].*Received: shape=\[4, 4\]"),
    ("expand-rank", lambda e: Expand().forward(_zeros([4])), ValueError, r"Received: shape=\[4\]"),
    ("expand-channels", lambda e: Expand().forward(_zeros([1, 2, 2, 3])), ValueError, r"channels divisible by 4.*Received: shape=\[1, 2, 2, 3\]"),
    ("split-prior-channels", lambda e: SplitPrior(4).forward(_zeros([1, 2, 2, 3])), ValueError, r"expects 4 channels.*Received: shape=\[1, 2, 2, 3\]"),
    ("top-prior-channels", lambda e: TopPrior(2).inverse(_zeros([1, 2, 2, 3])), ValueError, r"expects 2 channels.*Received: shape=\[1, 2, 2, 3\]"),
    ("flow-step-channels", lambda e: FlowStep(4, hidden_channels=2).forward(_zeros([1, 2, 2, 2])), ValueError, r"expects 4 channels.*Received: shape=\[1, 2, 2, 2\]"),
    ("glow-image-channels", lambda e: e.glow.inverse(_zeros([1, 8, 8, 3])), ValueError, r"images of shape \[\.\.\., 8, 8, 1\].*Received: shape=\[1, 8, 8, 3\]"),
    ("glow-image-rank", lambda e: e.glow.inverse(_zeros([8, 8])), ValueError, r"\[\.\.\., 8, 8, 1\].*Received: shape=\[8, 8\]"),
    ("glow-image-height", lambda e: e.glow.inverse(_zeros([1, 6, 8, 1])), ValueError, r"\[\.\.\., 8, 8, 1\].*Received: shape=\[1, 6, 8, 1\]"),
    ("glow-latent-size", lambda e: e.glow.forward(_zeros([2, 10])), ValueError, r"flat latents of shape \[\.\.\., 64\].*Received: shape=\[2, 10\]"),
    ("glow-image-dtype", lambda e: e.glow.inverse(_zeros([1, *IMAGE], tf.float64)), ValueError, r"requested dtype float32 for Tensor with dtype float64"),
    ("glow-merge-latents-count", lambda e: e.glow.merge_latents([_zeros([1, 4, 4, 2])]), ValueError, r"Expected 2 latents.*Received: 1 latents"),
    ("glow-initialize-shape", lambda e: Glow(IMAGE, **TINY).initialize(_zeros([2, 8, 8, 2])), ValueError, r"\[\.\.\., 8, 8, 1\].*Received: shape=\[2, 8, 8, 2\]"),
    # Bijector methods: tensor-valued problems, run-time assertions under validate_args=True.
    ("actnorm-uninitialized", lambda e: ActNorm(2, validate_args=True).forward(_zeros([1, 2, 2, 2])), IAE, r"used before initialization: call initialize"),
    ("actnorm-dynamic-channels", lambda e: _dynamic(e.actnorm.forward, 4)(_zeros([1, 2, 2, 3])), IAE, r"expects 2 channels.*\[3\]"),
    ("conv1x1-dynamic-channels", lambda e: _dynamic(InvertibleConv1x1(4, validate_args=True).forward, 4)(_zeros([1, 2, 2, 3])), IAE, r"expects 4 channels.*\[3\]"),
    ("expand-dynamic-odd-width", lambda e: _dynamic(Expand(validate_args=True).inverse, 4)(_zeros([1, 4, 5, 1])), IAE, r"height and width must be divisible by 2"),
    ("actnorm-nan", lambda e: e.actnorm.forward(_full([1, 2, 2, 2], np.nan)), IAE, r"expects finite input; Received: a tensor with NaN or Inf"),
    ("coupling-inf", lambda e: AffineCoupling(4, hidden_channels=2, validate_args=True).inverse(_full([1, 2, 2, 4], np.inf)), IAE, r"expects finite input; Received: a tensor with NaN or Inf"),
    ("glow-image-nan", lambda e: e.glow.inverse(_full([1, *IMAGE], np.nan)), IAE, r"glow.*expects finite input; Received: a tensor with NaN"),
    ("glow-latent-inf", lambda e: e.glow.forward(_full([1, D], -np.inf)), IAE, r"glow.*expects finite input; Received: a tensor with NaN or Inf"),
    ("glow-log-prob-nan", lambda e: glow_distribution(e.glow).log_prob(_full([1, *IMAGE], np.nan)), IAE, r"expects finite input"),
    # Initialization from non-finite data is always refused: it would poison the parameters.
    ("actnorm-initialize-nan", lambda e: ActNorm(2).initialize(_full([2, 2, 2, 2], np.nan)), IAE, r"initialized from finite values; Received: NaN or Inf"),
    ("glow-initialize-inf", lambda e: Glow(IMAGE, **TINY).initialize(_full([2, *IMAGE], np.inf)), IAE, r"initialized from finite values; Received: NaN or Inf"),
    # glow_distribution and bits_per_dim.
    ("distribution-negative-temperature", lambda e: glow_distribution(e.glow, -1.0), ValueError, r"finite number >= 0.*Received: temperature=-1\.0"),
    ("distribution-nan-temperature", lambda e: glow_distribution(e.glow, float("nan")), ValueError, r"finite number >= 0.*Received: temperature=nan"),
    ("distribution-negative-tensor-temperature", lambda e: glow_distribution(e.glow, tf.constant(-0.5)), ValueError, r"finite number >= 0.*Received: temperature=-0\.5"),
    ("distribution-negative-variable-temperature", lambda e: glow_distribution(e.glow, tf.Variable(-0.5)), IAE, r"finite number >= 0.*Received: temperature=.*-0\.5"),
    ("distribution-not-a-glow", lambda e: glow_distribution(ActNorm(1)), TypeError, r"must be a tfp_glow\.Glow.*Received: glow=.*act_norm"),
    ("bits-per-dim-num-bins", lambda e: bits_per_dim(_zeros([1]), IMAGE, 1), ValueError, r"integer >= 2.*Received: num_bins=1"),
    ("bits-per-dim-image-shape", lambda e: bits_per_dim(_zeros([1]), (8, 8), 17), ValueError, r"\(height, width, channels\).*Received: image_shape=\(8, 8\)"),
    # GlowModel: constructor and presets.
    ("model-unknown-preset", lambda e: GlowModel.from_preset("cifar100"), ValueError, r"Unknown preset 'cifar100'\. Expected one of \[.*'digits'.*Received: name='cifar100'"),
    ("model-num-levels-0", lambda e: GlowModel.from_preset("digits", num_levels=0), ValueError, r"positive integer.*Received: num_levels=0"),
    ("model-not-divisible", lambda e: GlowModel.from_preset("digits", num_levels=4), ValueError, r"2\*\*num_levels = 16.*Received: image_shape=\(8, 8, 1\)"),
    ("model-image-shape", lambda e: GlowModel((8, 8), num_levels=1), ValueError, r"Received: image_shape=\(8, 8\)"),
    ("model-num-bins", lambda e: GlowModel(IMAGE, num_levels=1, num_bins=1), ValueError, r"integer >= 2.*Received: num_bins=1"),
    ("model-n-bits", lambda e: GlowModel(IMAGE, num_levels=1, n_bits=9), ValueError, r"in \[1, 8\].*Received: n_bits=9"),
    ("model-on-nonfinite", lambda e: GlowModel(IMAGE, num_levels=1, on_nonfinite="ignore"), ValueError, r"'skip' or 'raise'.*Received: on_nonfinite='ignore'"),
    ("model-init-batch-size", lambda e: GlowModel(IMAGE, num_levels=1, init_batch_size=0), ValueError, r"positive integer.*Received: init_batch_size=0"),
    # GlowModel methods: checks on by default.
    ("model-log-prob-float", lambda e: e.model.log_prob(e.images.astype(np.float32)), TypeError, r"integer images \(uint8 levels in \[0, 17\)\).*Received: dtype=float32"),
    ("model-log-prob-bool", lambda e: e.model.log_prob(e.images > 3), TypeError, r"integer images.*Received: dtype=bool"),
    ("model-log-prob-too-large", lambda e: e.model.log_prob(e.images + 17), IAE, r"Pixel values must be < 17.*\[(17|\d\d)"),
    ("model-log-prob-negative", lambda e: e.model.log_prob(e.images.astype(np.int32) - 1), IAE, r"Pixel values must be >= 0.*-1"),
    ("model-bits-per-dim-channels", lambda e: e.model.bits_per_dim(np.zeros((2, 8, 8, 3), np.uint8)), ValueError, r"\[batch, 8, 8, 1\].*Received: shape=\[2, 8, 8, 3\]"),
    ("model-encode-rank", lambda e: e.model.encode(np.zeros(IMAGE, np.uint8)), ValueError, r"\[batch, 8, 8, 1\].*Received: shape=\[8, 8, 1\]"),
    ("model-encode-height", lambda e: e.model.encode(np.zeros((2, 6, 8, 1), np.uint8)), ValueError, r"\[batch, 8, 8, 1\].*Received: shape=\[2, 6, 8, 1\]"),
    ("model-encode-too-large", lambda e: e.model.encode(np.full((1, *IMAGE), 200, np.uint8)), IAE, r"Pixel values must be < 17.*200"),
    ("model-decode-size", lambda e: e.model.decode(np.zeros((2, 10), np.float32)), ValueError, r"\[\.\.\., 64\].*Received: shape=\[2, 10\]"),
    ("model-decode-nan", lambda e: e.model.decode(np.full((2, D), np.nan, np.float32)), IAE, r"expects finite latents; Received: latents with NaN or Inf"),
    ("model-sample-num-0", lambda e: e.model.sample(0), ValueError, r"positive integer.*Received: num=0"),
    ("model-sample-negative-temperature", lambda e: e.model.sample(2, -1.0), ValueError, r"finite number >= 0.*Received: temperature=-1\.0"),
    ("model-sample-inf-temperature", lambda e: e.model.sample(2, float("inf")), ValueError, r"finite number >= 0.*Received: temperature=inf"),
    ("model-fit-float", lambda e: _fresh_model().fit(e.images.astype(np.float32), epochs=1, verbose=0), TypeError, r"integer images.*Received: dtype=float32"),
    ("model-fit-too-large", lambda e: _fresh_model().fit(e.images + 17, epochs=1, verbose=0), IAE, r"Pixel values must be < 17"),
    ("model-fit-channels", lambda e: _fresh_model(e.images).fit(np.zeros((4, 8, 8, 3), np.uint8), epochs=1, verbose=0), ValueError, r"\[batch, 8, 8, 1\].*Received: shape=\[None, 8, 8, 3\]"),
    ("model-fit-traced-too-large", lambda e: _fresh_model(e.images).fit(e.images + 17, epochs=1, verbose=0), IAE, r"Pixel values must be < 17"),
    ("model-evaluate-float", lambda e: _fresh_model(e.images).evaluate(e.images.astype(np.float16), verbose=0), TypeError, r"integer images.*Received: dtype=float(16|32)"),
    ("model-evaluate-channels", lambda e: _fresh_model(e.images).evaluate(np.zeros((4, 8, 8, 3), np.uint8), verbose=0), (ValueError, IAE), r"images of shape \[batch, 8, 8, 1\]"),
    ("model-evaluate-too-large", lambda e: _fresh_model(e.images).evaluate(e.images + 17, verbose=0), IAE, r"Pixel values must be < 17"),
    # Data loaders.
    ("data-unknown-spec", lambda e: data.load("foo:bar"), ValueError, r"Unknown dataset spec 'foo:bar'\. Expected 'digits', 'tfds:"),
    ("data-unknown-name", lambda e: data.load("cifar10"), ValueError, r"Unknown dataset spec 'cifar10'\. Expected"),
    ("data-spec-not-a-string", lambda e: data.load(None), ValueError, r"Unknown dataset spec None"),
    ("data-info-unknown-spec", lambda e: data.info("folder:"), ValueError, r"Unknown dataset spec 'folder:'"),
    ("data-unknown-split", lambda e: data.load("digits", "valid"), ValueError, r"Expected one of \['train', 'validation', 'test'\].*Received: split='valid'"),
    ("data-empty-split", lambda e: data.load("digits", ""), ValueError, r"non-empty string.*Received: split=''"),
    ("data-batch-size-0", lambda e: data.load("digits", batch_size=0), ValueError, r"integer >= 1.*Received: batch_size=0"),
    ("data-batch-size-float", lambda e: data.load("digits", batch_size=8.0), ValueError, r"integer >= 1.*Received: batch_size=8\.0"),
    ("data-take-0", lambda e: data.load("digits", take=0), ValueError, r"integer >= 1.*Received: take=0"),
    ("data-image-shape-rank", lambda e: data.load("digits", image_shape=(8, 8)), ValueError, r"3 positive integers.*Received: image_shape=\(8, 8\)"),
    ("data-image-shape-channels", lambda e: data.load("digits", image_shape=(8, 8, 3)), ValueError, r"1 channel\(s\).*Received: image_shape=\(8, 8, 3\)"),
    ("data-labels-without-labels", lambda e: data.load(f"npz:{e.files / 'plain.npz'}", with_labels=True), ValueError, r"has no labels\. Received: with_labels=True"),
    ("data-missing-folder", lambda e: data.load(f"folder:{e.files / 'nowhere'}"), FileNotFoundError, r"does not exist\. Received: spec='folder:.*nowhere'"),
    ("data-folder-is-a-file", lambda e: data.load(f"folder:{e.files / 'float.npz'}"), NotADirectoryError, r"is not a folder\. Received: spec='folder:"),
    ("data-folder-without-images", lambda e: data.load(f"folder:{e.files / 'empty_folder'}"), ValueError, r"Found no image files \(\.png, \.jpg, \.jpeg\).*Received: spec="),
    ("data-missing-npz", lambda e: data.load(f"npz:{e.files / 'nowhere.npz'}"), FileNotFoundError, r"does not exist\. Received: spec='npz:"),
    ("data-npz-float", lambda e: data.load(f"npz:{e.files / 'float.npz'}"), ValueError, r"integer pixel levels in \[0, 256\).*Received: dtype=float32"),
    ("data-npz-out-of-range", lambda e: data.load(f"npz:{e.files / 'range.npz'}"), ValueError, r"values in \[0, 256\)\. Received: min=300, max=300"),
    ("data-npz-negative", lambda e: data.load(f"npz:{e.files / 'negative.npz'}"), ValueError, r"values in \[0, 256\)\. Received: min=-1"),
    ("data-npz-rank", lambda e: data.load(f"npz:{e.files / 'rank.npz'}"), ValueError, r"\[N, H, W\] or \[N, H, W, C\]\. Received: shape=\(4, 8\)"),
    ("data-npz-empty-images", lambda e: data.load(f"npz:{e.files / 'empty_images.npz'}"), ValueError, r"positive height, width and channels\. Received: shape=\(4, 0, 8\)"),
    ("data-npz-num-bins", lambda e: data.load(f"npz:{e.files / 'bins.npz'}"), ValueError, r"scalar integer in \[2, 256\].*Received: num_bins=1"),
    ("data-npz-garbage", lambda e: data.load(f"npz:{e.files / 'garbage.npz'}"), ValueError, r"not a readable NumPy \.npz file.*Received: spec='npz:"),
    ("data-npz-single-array", lambda e: data.load(f"npz:{e.files / 'one_array.npy'}"), ValueError, r"not a readable NumPy \.npz file of named arrays.*Received: spec="),
    # CLI flags: exit status 2, the message on stderr, before any training.
    ("cli-unknown-preset", lambda e: _cli("train", "--preset=cifar100"), CliExit, r"^exit 2: .*--preset=cifar100"),
    ("cli-unknown-dataset", lambda e: _cli("train", "--dataset=foo:bar"), CliExit, r"^exit 2: .*Unknown dataset spec 'foo:bar'"),
    ("cli-negative-temperature", lambda e: _cli("train", "--temperature=-0.5"), CliExit, r"^exit 2: .*--temperature=-0\.5.*finite number >= 0"),
    ("cli-nan-temperature", lambda e: _cli("sample", "--temperature=nan"), CliExit, r"^exit 2: .*--temperature=nan"),
    ("cli-num-levels-0", lambda e: _cli("train", "--num_levels=0"), CliExit, r"^exit 2: .*--num_levels=0"),
    ("cli-num-levels-not-divisible", lambda e: _cli("train", "--num_levels=4"), CliExit, r"^exit 2: .*2\*\*num_levels = 16.*Received: image_shape=\(8, 8, 1\)"),
    ("cli-image-shape-rank", lambda e: _cli("train", "--image_shape=8,8"), CliExit, r"^exit 2: .*--image_shape=8,8: .*'H,W,C'"),
    ("cli-image-shape-channels", lambda e: _cli("train", "--image_shape=8,8,3"), CliExit, r"^exit 2: .*8, 8, 3"),
    ("cli-batch-size-0", lambda e: _cli("train", "--batch_size=0"), CliExit, r"^exit 2: .*--batch_size=0"),
    ("cli-epochs-not-a-number", lambda e: _cli("train", "--epochs=many"), CliExit, r"^exit 2: .*--epochs=many"),
    ("cli-unknown-split", lambda e: _cli("train", "--train_split=valid"), CliExit, r"^exit 2: .*Received: split='valid'"),
    # SavedModel signatures: the graph refuses a bad request (TF Serving feeds unchecked shapes).
    ("export-image-size", lambda e: _signature(e, "serving_default", images=np.zeros((1, 4, 4, 1), np.uint8)), IAE, r"Expected images of shape \[batch, 8, 8, 1\]"),
    ("export-image-channels", lambda e: _signature(e, "encode", images=np.zeros((1, 8, 8, 3), np.uint8)), IAE, r"Expected images of shape \[batch, 8, 8, 1\]"),
    ("export-image-rank", lambda e: e.served.signatures["encode"](images=tf.zeros([8, 8, 1], tf.uint8)), IAE, r"Expected images of shape \[batch, 8, 8, 1\]. Received: shape=.*\[8 8 1\]"),
    ("export-pixel-out-of-range", lambda e: _signature(e, "serving_default", images=np.full((1, *IMAGE), 17, np.uint8)), IAE, r"Pixel values must be < 17.*17"),
    ("export-image-dtype", lambda e: _signature(e, "serving_default", images=np.zeros((1, *IMAGE), np.float32)), (TypeError, IAE), r"expected to be a uint8 tensor"),
    ("export-latent-size", lambda e: _signature(e, "decode", latents=np.zeros((2, 10), np.float32)), IAE, r"Expected latents of shape \[batch, 64\]"),
    ("export-latent-nan", lambda e: _signature(e, "decode", latents=np.full((2, D), np.nan, np.float32)), IAE, r"expects finite latents; Received: latents with NaN or Inf"),
    ("export-negative-temperature", lambda e: _signature(e, "sample", **_sample_request(temperature=-0.5)), IAE, r"finite temperature >= 0.*-0\.5"),
    ("export-nan-temperature", lambda e: _signature(e, "sample", **_sample_request(temperature=np.nan)), IAE, r"finite temperature >= 0.*nan"),
    ("export-num-samples-0", lambda e: _signature(e, "sample", **_sample_request(num_samples=0)), IAE, r"num_samples >= 1"),
    ("export-not-a-model", lambda e: export_saved_model(tf.Module(), str(e.files / "export")), TypeError, r"must be a tfp_glow\.GlowModel.*Received: model="),
    ("export-version-0", lambda e: export_saved_model(e.model, str(e.files / "export"), version=0), ValueError, r"positive integer.*Received: version=0"),
]
# fmt: on


@pytest.mark.parametrize("call, error, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_clear_error(env, tmp_path, monkeypatch, call, error, message):
    monkeypatch.chdir(tmp_path)  # the CLI's --model_dir=run

    with pytest.raises(error) as raised:
        call(env)

    assert re.search(message, str(raised.value), re.DOTALL), str(raised.value)[:2000]
    assert not (tmp_path / "run").exists()  # no CLI case started a run


def test_the_table_covers_every_public_entry_point():
    names = " ".join(c[0] for c in CASES)
    for prefix in [
        "actnorm",
        "conv1x1",
        "permutation",
        "coupling",
        "expand",
        "split-prior",
        "top-prior",
        "flow-step",
        "glow",
        "distribution",
        "bits-per-dim",
        "model-unknown",
        "model-fit",
        "model-evaluate",
        "model-sample",
        "model-encode",
        "model-decode",
        "model-log-prob",
        "data",
        "cli",
        "export",
    ]:
        assert f"{prefix}-" in names, prefix
    assert len({c[0] for c in CASES}) == len(CASES)
