"""GlowModel: Keras tracking, training, saving, sampling, encoding."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_glow
from tfp_glow import data

TINY = dict(num_levels=2, num_steps=1, hidden_channels=8, seed=0)


@pytest.fixture(scope="module")
def digits():
    return data.load_numpy("digits", "train")[:256], data.load_numpy("digits", "test")[:64]


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A tiny digits model after a short fit, saved as .keras and as a checkpoint."""
    train, test = digits
    model = tfp_glow.GlowModel.from_preset("digits", **TINY)
    model.compile(optimizer=tfp_glow.default_optimizer(3e-3, warmup_steps=2))
    before = float(tf.reduce_mean(model.bits_per_dim(train)))  # identity-like flow, uninitialized
    model.initialize(train)
    initialized = float(tf.reduce_mean(model.bits_per_dim(train)))
    weights_before_fit = {v.path: v.numpy() for v in model.trainable_variables}
    traces = []  # each trace of the train step calls train_step once
    train_step = tfp_glow.GlowModel.train_step
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            tfp_glow.GlowModel, "train_step", lambda self, data: traces.append(1) or train_step(self, data)
        )
        history = model.fit(train, batch_size=64, epochs=3, verbose=0)
    folder = tmp_path_factory.mktemp("trained")
    model.save(folder / "model.keras")
    tf.train.Checkpoint(model=model).write(str(folder / "ckpt"))
    return dict(
        model=model,
        folder=folder,
        before=before,
        initialized=initialized,
        weights_before_fit=weights_before_fit,
        history=history.history,
        traces=len(traces),
    )


def test_fit_traces_the_training_step_once(trained):
    # The optimizer is built before the first trace: a trace that created its variables would be
    # traced again (tf.function), doubling the first epoch's tracing time.
    assert trained["traces"] == 1
    assert trained["model"].optimizer.iterations.numpy() == 12  # 3 epochs of 4 batches, all traced once


def test_fit_on_a_dataset_warns_of_shuffle_only_when_shuffle_is_asked_for(digits):
    train, _ = digits
    model = tfp_glow.GlowModel.from_preset("digits", **TINY)
    model.compile(optimizer=tfp_glow.default_optimizer(3e-3, warmup_steps=2))
    batches = tf.data.Dataset.from_tensor_slices(train[:64]).batch(32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(batches, epochs=1, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]
    with pytest.warns(UserWarning, match="shuffle=True"):  # an explicit request still reaches Keras
        model.fit(batches, epochs=1, verbose=0, shuffle=True)


def test_every_flow_variable_is_tracked_by_keras_once():
    model = tfp_glow.GlowModel.from_preset("digits", **TINY)
    glow = model.bijector
    # The flow's variables, and the learned dequantization of the digits preset (a Keras layer).
    dequantizer = [w.value for w in model.dequantizer.weights]
    assert len(model.trainable_variables) == len(glow.trainable_variables) + len(dequantizer)
    underlying = [v.value for v in model.weights if isinstance(v, keras.Variable)]
    assert len({id(v) for v in underlying}) == len(underlying)  # each once
    flow_and_dequantizer = {id(v) for v in [*glow.variables, *dequantizer]}
    assert {id(v) for v in underlying} == flow_and_dequantizer
    trainable = {id(v) for v in [*glow.trainable_variables, *dequantizer]}
    assert {id(v.value) for v in model.trainable_variables} == trainable
    # ActNorm state is saved with the weights, but never trained.
    flags = {id(level.params[part]["initialized"]) for level in glow.steps for part in ("actnorm",)}
    flags |= {
        id(level.params["coupling"]["conditioner"][part]["initialized"])
        for level in glow.steps
        for part in ("actnorm_in", "actnorm_hidden")
    }
    assert len(flags) == 3 * len(glow.steps)  # each stacked over its level's steps
    assert flags <= {id(v.value) for v in model.non_trainable_variables}


def test_fit_lowers_bits_per_dim_and_moves_every_weight(trained, digits):
    train, _ = digits
    model = trained["model"]
    after = float(tf.reduce_mean(model.bits_per_dim(train)))
    assert after < trained["initialized"] - 0.05
    assert trained["history"]["bits_per_dim"][-1] < trained["history"]["bits_per_dim"][0]
    assert set(trained["history"]) == {"loss", "bits_per_dim", "nonfinite_steps"}
    assert trained["history"]["nonfinite_steps"] == [0.0, 0.0, 0.0]
    # ActNorm initialization alone already beats the identity-like uninitialized flow.
    assert trained["initialized"] < trained["before"]
    # Every trainable weight (the flow's and the learned dequantization's) moved.
    before = trained["weights_before_fit"]
    assert len(before) == len(model.trainable_variables) > 20
    unmoved = [v.path for v in model.trainable_variables if np.array_equal(v.numpy(), before[v.path])]
    assert unmoved == []


def test_keras_file_round_trip_is_exact(trained, digits):
    _, test = digits
    model = trained["model"]
    loaded = keras.models.load_model(trained["folder"] / "model.keras")
    assert isinstance(loaded, tfp_glow.GlowModel)
    np.testing.assert_array_equal(loaded.log_prob(test).numpy(), model.log_prob(test).numpy())
    np.testing.assert_array_equal(loaded.sample(4, seed=3).numpy(), model.sample(4, seed=3).numpy())
    assert loaded.is_initialized()
    # The optimizer came back built, with its state.
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) > 0


def test_checkpoint_round_trip_is_exact(trained, digits):
    _, test = digits
    fresh = tfp_glow.GlowModel.from_preset("digits", **{**TINY, "seed": 99})
    assert not fresh.is_initialized()
    tf.train.Checkpoint(model=fresh).read(str(trained["folder"] / "ckpt")).assert_existing_objects_matched()
    assert fresh.is_initialized()
    np.testing.assert_array_equal(fresh.log_prob(test).numpy(), trained["model"].log_prob(test).numpy())


def test_actnorm_is_never_initialized_again(trained, digits, monkeypatch):
    train, _ = digits
    loaded = keras.models.load_model(trained["folder"] / "model.keras")

    def fail(*args, **kwargs):
        raise AssertionError("ActNorm re-initialized")

    monkeypatch.setattr(loaded.bijector, "initialize", fail)
    loaded.fit(train[:64], batch_size=64, epochs=1, verbose=0)  # a second fit, after a reload
    values = [a.loc.numpy().copy() for a in trained["model"].bijector.actnorms]
    trained["model"].initialize(train[::-1] // 2)  # explicit: idempotent
    for before, a in zip(values, trained["model"].bijector.actnorms, strict=True):
        np.testing.assert_array_equal(before, a.loc.numpy())


def test_sample_is_deterministic_for_a_seed_and_in_range(trained):
    model = trained["model"]
    a, b, c = model.sample(6, seed=1), model.sample(6, seed=1), model.sample(6, seed=2)
    assert a.dtype == tf.uint8 and a.shape == (6, 8, 8, 1)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    assert int(tf.reduce_max(a)) < 17
    # Temperature 0 decodes the zero latent.
    np.testing.assert_array_equal(
        model.sample(2, temperature=0.0, seed=5).numpy(), model.decode(tf.zeros([2, 64])).numpy()
    )


def test_decode_of_encode_is_exact(trained, digits):
    _, test = digits
    model = trained["model"]
    z = model.encode(test)
    assert z.shape == (len(test), 64)
    assert [p.shape[1:] for p in model.bijector.split_latent(z)] == [(4, 4, 2), (2, 2, 8)]
    np.testing.assert_array_equal(model.decode(z).numpy(), test)
    x = model.preprocess(test)
    assert float(tf.reduce_max(tf.abs(model.bijector.forward(z) - x))) <= 1e-4


def test_score_is_log_prob_at_the_bin_centres_in_bits():
    model = tfp_glow.GlowModel.from_preset("digits", **TINY)
    images = data.load_numpy("digits", "test")[:4]
    expected = -(model.log_prob(images).numpy() - 64 * np.log(17)) / (64 * np.log(2))
    np.testing.assert_allclose(model.score(images).numpy(), expected, rtol=1e-5)


def test_bits_per_dim_is_the_dequantized_bound_of_its_seed():
    model = tfp_glow.GlowModel.from_preset("digits", **TINY, dequantization="uniform")
    images = data.load_numpy("digits", "test")[:4]
    levels = model.quantization.levels(images)
    x, log_q = model.quantization.dequantize(levels, tf.constant([3, 0]))
    expected = -(model.distribution.log_prob(x).numpy() - log_q.numpy() - 64 * np.log(17)) / (64 * np.log(2))
    np.testing.assert_allclose(model.bits_per_dim(images, seed=3).numpy(), expected, rtol=1e-5)
    # Another seed is another noise sample; more samples tighten the bound (Jensen).
    assert not np.allclose(model.bits_per_dim(images, seed=4).numpy(), expected, rtol=1e-5)
    one = np.mean([model.bits_per_dim(images, seed=s).numpy() for s in range(8)], axis=0)
    tighter = model.bits_per_dim(images, num_samples=8, seed=0).numpy()
    assert np.all(tighter <= one + 0.02)


def test_n_bit_reduction_happens_inside_the_model():
    model = tfp_glow.GlowModel((8, 8, 3), num_levels=1, num_steps=1, hidden_channels=4, n_bits=5, seed=0)
    assert model.num_bins == 32
    images = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3)).astype(np.uint8)
    x = model.preprocess(images)
    np.testing.assert_allclose(x.numpy(), (images // 8 + 0.5) / 32 - 0.5, atol=1e-6)
    decoded = model.decode(model.encode(images)).numpy()
    np.testing.assert_array_equal(decoded, (images // 8) * 8)  # 5-bit levels back on the 8-bit scale


def test_config_round_trip():
    model = tfp_glow.GlowModel.from_preset("digits", **TINY)
    config = model.get_config()
    clone = tfp_glow.GlowModel.from_config(config)
    assert clone.get_config() == config
    assert config["num_bins"] == 17 and config["image_shape"] == [8, 8, 1]
    assert len(clone.trainable_variables) == len(model.trainable_variables)


def test_presets():
    assert set(tfp_glow.PRESETS) == {
        "digits",
        "mnist",
        "cifar10",
        "celeba64",
        "imagenet32",
        "imagenet64",
    }
    cifar = tfp_glow.PRESETS["cifar10"].model
    assert (cifar["num_levels"], cifar["num_steps"], cifar["hidden_channels"]) == (3, 32, 512)
    model = tfp_glow.GlowModel.from_preset("mnist", num_steps=1, hidden_channels=4)
    assert model.image_shape == (28, 28, 1) and model.bijector.num_levels == 2
    with pytest.raises(ValueError, match="Unknown preset 'nope'"):
        tfp_glow.GlowModel.from_preset("nope")


def test_learned_top_prior_starts_at_zero_and_trains(trained):
    glow = trained["model"].bijector
    assert glow.top_prior is not None
    fresh_prior = tfp_glow.GlowModel.from_preset("digits", **TINY).bijector.top_prior
    assert not np.any(fresh_prior.mean.numpy()) and not np.any(fresh_prior.log_scale.numpy())
    assert np.any(glow.top_prior.mean.numpy() != 0.0)


def test_warmup_schedule_and_default_optimizer():
    schedule = tfp_glow.LinearWarmup(1e-3, warmup_steps=10)
    np.testing.assert_allclose(float(schedule(0)), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(9)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(1000)), 1e-3, rtol=1e-6)
    # Cosine decay after the warm-up: half the rate half-way, 0 at decay_steps and after.
    decaying = tfp_glow.LinearWarmup(1e-3, warmup_steps=10, decay_steps=110)
    np.testing.assert_allclose(float(decaying(0)), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(float(decaying(10)), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(float(decaying(60)), 0.5e-3, rtol=1e-5)
    np.testing.assert_allclose([float(decaying(110)), float(decaying(500))], 0.0, atol=1e-12)
    rates = [float(decaying(t)) for t in range(10, 111)]
    assert all(a >= b for a, b in zip(rates[:-1], rates[1:], strict=True))
    assert tfp_glow.LinearWarmup.from_config(decaying.get_config()).decay_steps == 110
    with pytest.raises(ValueError, match="decay_steps=10, warmup_steps=10"):
        tfp_glow.LinearWarmup(1e-3, warmup_steps=10, decay_steps=10)
    optimizer = tfp_glow.default_optimizer(2e-3, 5, clipnorm=1.0, name="adamax")
    assert isinstance(optimizer, keras.optimizers.Adamax) and optimizer.global_clipnorm == 1.0
    with pytest.raises(ValueError, match="name='sgd'"):
        tfp_glow.default_optimizer(name="sgd")
    averaged = tfp_glow.default_optimizer(ema_momentum=0.99)
    assert averaged.use_ema and averaged.ema_momentum == 0.99
    assert not tfp_glow.default_optimizer().use_ema
    with pytest.raises(ValueError, match="ema_momentum=1.0"):
        tfp_glow.default_optimizer(ema_momentum=1.0)


@pytest.mark.parametrize(
    "images, error, message",
    [
        (np.zeros([2, 8, 8, 1], np.float32), TypeError, "integer images.*Received: dtype=float32"),
        (
            np.zeros([2, 8, 8, 3], np.uint8),
            ValueError,
            r"\[batch, 8, 8, 1\].*Received: shape=\[2, 8, 8, 3\]",
        ),
        (np.full([2, 8, 8, 1], 17, np.uint8), tf.errors.InvalidArgumentError, "must be < 17"),
        (np.full([2, 8, 8, 1], -1, np.int32), tf.errors.InvalidArgumentError, "must be >= 0"),
    ],
)
def test_bad_images(images, error, message):
    model = tfp_glow.GlowModel.from_preset("digits", **TINY)
    with pytest.raises(error, match=message):
        model.log_prob(images)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_bits=9), "n_bits=9"),
        (dict(num_bins=1), "num_bins=1"),
        (dict(init_batch_size=0), "init_batch_size=0"),
        (dict(num_levels=0), "num_levels=0"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfp_glow.GlowModel((8, 8, 1), **{"num_steps": 1, "hidden_channels": 4, **kwargs})


def test_bad_sample_arguments():
    model = tfp_glow.GlowModel.from_preset("digits", **TINY)
    with pytest.raises(ValueError, match="num=0"):
        model.sample(0)
    with pytest.raises(ValueError, match="temperature=-1"):
        model.sample(2, temperature=-1)


def _poisoned(model):
    """The model's dequantization, with NaN for any batch whose every pixel is 16."""
    original = model.quantization.dequantize

    def dequantize(levels, seed):
        x, log_q = original(levels, seed)
        poisoned = tf.reduce_all(tf.equal(levels, 16))
        return tf.where(poisoned, tf.fill(tf.shape(x), float("nan")), x), log_q

    model.quantization.dequantize = dequantize
    return model


def _batches_with_a_nan_batch():
    good = data.load_numpy("digits", "train")[:64]
    return np.concatenate([good[:32], np.full([32, 8, 8, 1], 16, np.uint8), good[32:]])


def test_a_nonfinite_step_is_skipped_and_counted():
    images = _batches_with_a_nan_batch()
    model = tfp_glow.GlowModel.from_preset("digits", **TINY, dequantization="uniform")
    model.compile(optimizer=tfp_glow.default_optimizer(1e-2, warmup_steps=1, ema_momentum=0.9))
    model.initialize(images[:32])
    _poisoned(model)
    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots.append(([v.numpy().copy() for v in model.bijector.trainable_variables], dict(logs)))

    model.fit(images, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[Snapshot()])
    (after_good, logs_1), (after_bad, logs_2), (after_last, logs_3) = snapshots
    for a, b in zip(after_good, after_bad, strict=True):
        np.testing.assert_array_equal(a, b)  # the bad batch changed nothing
    assert any(
        not np.array_equal(a, b) for a, b in zip(after_bad, after_last, strict=True)
    )  # training went on
    assert (
        logs_1["nonfinite_steps"] == 0 and logs_2["nonfinite_steps"] == 1 and logs_3["nonfinite_steps"] == 1
    )
    assert np.isfinite(logs_3["loss"]) and np.isfinite(logs_3["bits_per_dim"])
    assert int(model.optimizer.iterations.numpy()) == 2  # the optimizer state skipped the step too
    assert all(np.all(np.isfinite(v.numpy())) for v in model.bijector.variables)


def test_a_nonfinite_step_can_stop_training_instead():
    images = _batches_with_a_nan_batch()
    model = tfp_glow.GlowModel.from_preset("digits", **TINY, on_nonfinite="raise", dequantization="uniform")
    model.compile()
    model.initialize(images[:32])
    _poisoned(model)
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-finite loss or gradient"):
        model.fit(images, batch_size=32, epochs=1, shuffle=False, verbose=0)
    with pytest.raises(ValueError, match="on_nonfinite='ignore'"):
        tfp_glow.GlowModel.from_preset("digits", **TINY, on_nonfinite="ignore")
