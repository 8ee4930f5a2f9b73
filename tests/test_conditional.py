"""Class-conditional Glow: conditional priors (bijectors), GlowModel(num_classes=...), TFP kwargs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_glow
from tests.bijector_cases import CASES, NUM_CLASSES, names, shared
from tests.bijector_test_util import fresh
from tfp_glow import data

tfb, tfd = tfp.bijectors, tfp.distributions

TINY = dict(num_levels=2, num_steps=1, hidden_channels=8, seed=0)
# The conditional bijectors of the registry; the generic contract (test_bijector_contract.py)
# runs them with labels too.
CONDITIONAL = names(lambda case: case.conditional)


def test_every_conditional_bijector_is_in_the_registry():
    assert {"glow_conditional", "split_prior_conditional", "top_prior_conditional"} <= set(CONDITIONAL)


@pytest.mark.parametrize("name", CONDITIONAL)
def test_the_log_det_depends_on_the_class(name):
    case = CASES[name]
    bijector = shared(name)
    x = case.sample_input([1], tf.float64)
    # The same input, one copy per class: the classes' log-dets differ.
    same_x = tf.repeat(x, NUM_CLASSES, axis=0)
    per_class = bijector.forward_log_det_jacobian(
        same_x, event_ndims=len(case.event_shape), labels=tf.range(NUM_CLASSES)
    )
    assert len(set(np.round(per_class.numpy(), 6))) == NUM_CLASSES


@pytest.mark.parametrize("name", CONDITIONAL)
def test_another_label_gives_another_output_for_the_same_input(name):
    case = CASES[name]
    bijector = shared(name)
    x = case.sample_input([3], tf.float64)
    labels = tf.constant([2, 0, 1])
    y = bijector.forward(x, labels=labels)
    y_other = bijector.forward(fresh(x), labels=(labels + 1) % NUM_CLASSES)
    assert np.min(np.max(np.abs(y_other.numpy() - y.numpy()).reshape(3, -1), axis=1)) > 1e-3


@pytest.mark.parametrize("batch_shape", [[], [3], [2, 3]], ids=["none", "N", "NxM"])
@pytest.mark.parametrize("name", CONDITIONAL)
def test_a_scalar_label_conditions_the_whole_batch(name, batch_shape):
    case = CASES[name]
    bijector = shared(name)
    x = case.sample_input(batch_shape, tf.float64)
    y_scalar = bijector.forward(x, labels=tf.constant(1))
    y_filled = bijector.forward(fresh(x), labels=tf.fill(batch_shape, 1))
    np.testing.assert_allclose(y_scalar.numpy(), y_filled.numpy(), atol=1e-12)


def _unconditional_twin(name):
    """The unconditional bijector of the conditional case `name`'s architecture."""
    if name == "glow_conditional":
        return CASES["glow"].factory(tf.float64, False)
    return CASES[name.removesuffix("_conditional")].factory(tf.float64, False)


@pytest.mark.parametrize("name", CONDITIONAL)
def test_untrained_conditional_bijector_is_the_unconditional_one(name):
    case = CASES[name]
    conditional = case.factory(tf.float64, False)
    unconditional = _unconditional_twin(name)
    # The same initial weights: every variable of the unconditional one has a twin.
    twins = {v.name: v for v in unconditional.variables}
    assert set(twins) < {v.name for v in conditional.variables}
    x = case.sample_input([3], tf.float64)
    if case.is_glow:
        images = case.initialization_batch(conditional, tf.float64)
        conditional.initialize(images, labels=tf.zeros([8], tf.int32))
        unconditional.initialize(images)
    for v in conditional.variables:
        if v.name in twins:
            np.testing.assert_array_equal(v.numpy(), twins[v.name].numpy())
    expected = unconditional.forward(x).numpy()
    for k in range(NUM_CLASSES):
        np.testing.assert_array_equal(conditional.forward(fresh(x), labels=tf.fill([3], k)).numpy(), expected)


def test_top_prior_class_projection_shifts_mean_and_log_scale():
    prior = tfp_glow.TopPrior(2, num_classes=NUM_CLASSES, dtype=tf.float64)
    # Class 1 gets mean (1, 2) and log-scale (0.5, -0.5): the first C outputs shift the mean.
    kernel = np.zeros((1, 1, NUM_CLASSES, 4))
    kernel[0, 0, 1] = [1.0, 2.0, 0.5, -0.5]
    prior.class_projection.linear.kernel.assign(kernel)
    eps = tf.ones([1, 3, 3, 2], tf.float64)
    z = prior.forward(eps, labels=[1])
    np.testing.assert_allclose(z.numpy()[0, 0, 0], [1.0 + np.exp(0.5), 2.0 + np.exp(-0.5)])
    np.testing.assert_allclose(prior.forward(fresh(eps), labels=[0]).numpy(), eps.numpy())
    fldj = prior.forward_log_det_jacobian(eps, event_ndims=3, labels=[1])
    np.testing.assert_allclose(fldj.numpy(), [9 * (0.5 - 0.5)])


def test_bijector_label_errors():
    conditional = shared("top_prior_conditional")
    x = tf.zeros([2, 4, 4, 4], tf.float64)
    with pytest.raises(ValueError, match=r"class-conditional \(num_classes=3\).*Received: labels=None"):
        conditional.forward(x)
    with pytest.raises(TypeError, match="integer class labels.*Received: labels.dtype=float32"):
        conditional.forward(x, labels=tf.constant([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"not class-conditional \(num_classes=None\)"):
        tfp_glow.TopPrior(4, dtype=tf.float64).forward(x, labels=[0, 1])
    with pytest.raises(ValueError, match=r"not class-conditional \(num_classes=None\)"):
        tfp_glow.SplitPrior(4, dtype=tf.float64).inverse(x, labels=[0, 1])
    glow = shared("glow_conditional")
    with pytest.raises(ValueError, match=r"bijector_kwargs=\{'labels': labels\}"):
        glow.inverse(tf.zeros([2, 4, 4, 2], tf.float64))
    unconditional = tfp_glow.Glow((4, 4, 2), 2, 1, 8, learn_top_prior=True, dtype=tf.float64)
    with pytest.raises(ValueError, match="takes no labels"):
        unconditional.inverse(tf.zeros([2, 4, 4, 2], tf.float64), labels=[0, 1])
    # One-hot of an out-of-range label is the zero vector: validate_args catches it.
    checked = tfp_glow.TopPrior(4, num_classes=NUM_CLASSES, dtype=tf.float64, validate_args=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Class labels must be < num_classes = 3"):
        checked.forward(x, labels=[0, 3])


def test_glow_constructor_checks_conditioning_options():
    with pytest.raises(ValueError, match="needs `learn_top_prior=True`"):
        tfp_glow.Glow((4, 4, 1), 2, 1, 8, num_classes=3)
    with pytest.raises(ValueError, match="`conditional_split_priors=True` needs `num_classes`"):
        tfp_glow.Glow((4, 4, 1), 2, 1, 8, learn_top_prior=True, conditional_split_priors=True)
    with pytest.raises(ValueError, match=r"Received: num_classes=0"):
        tfp_glow.Glow((4, 4, 1), 2, 1, 8, learn_top_prior=True, num_classes=0)
    glow = tfp_glow.Glow(
        (4, 4, 1), 2, 1, 8, learn_top_prior=True, num_classes=3, conditional_split_priors=True
    )
    assert glow.num_classes == 3
    assert glow.top_prior.num_classes == 3 and [p.num_classes for p in glow.split_priors] == [3]
    assert (
        tfp_glow.Glow((4, 4, 1), 2, 1, 8, learn_top_prior=True, num_classes=3).split_priors[0].num_classes
        is None
    )


# GlowModel(num_classes=...).


@pytest.fixture(scope="module")
def digits():
    images, labels = data.load_numpy("digits", "train", with_labels=True)
    return images[:512], labels[:512]


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """A tiny class-conditional digits model after a short fit on (image, label) batches."""
    images, labels = digits
    model = tfp_glow.GlowModel.from_preset(
        "digits", num_classes=10, conditional_split_priors=True, class_loss_weight=0.1, **TINY
    )
    model.compile(optimizer=tfp_glow.default_optimizer(3e-3, warmup_steps=2))
    model.initialize(images)
    initialized = model.bits_per_dim(images, labels=labels).numpy().mean()
    initial_eval = model.evaluate(images[:64], labels[:64], batch_size=64, verbose=0, return_dict=True)
    ds = data.load("digits", "train", batch_size=64, with_labels=True, take=512)
    history = model.fit(ds, epochs=5, verbose=0)
    path = tmp_path_factory.mktemp("conditional") / "model.keras"
    model.save(path)
    return dict(
        model=model,
        path=path,
        initialized=initialized,
        initial_eval=initial_eval,
        history=history.history,
    )


def _class_log_likelihoods(model, images):
    """log p(x | y) for every class y: [N, K]."""
    return np.stack([model.log_prob(images, labels=k).numpy() for k in range(model.num_classes)], axis=1)


def test_untrained_conditional_model_equals_unconditional(digits):
    images, labels = digits
    conditional = tfp_glow.GlowModel.from_preset(
        "digits", num_classes=10, conditional_split_priors=True, **TINY
    )
    unconditional = tfp_glow.GlowModel.from_preset("digits", **TINY)
    conditional.initialize(images[:128], labels[:128])
    unconditional.initialize(images[:128])
    expected = unconditional.log_prob(images[:16]).numpy()
    np.testing.assert_array_equal(conditional.log_prob(images[:16], labels=labels[:16]).numpy(), expected)
    np.testing.assert_array_equal(conditional.log_prob(images[:16], labels=7).numpy(), expected)
    np.testing.assert_array_equal(
        conditional.sample(4, seed=3, labels=[0, 1, 2, 3]).numpy(), unconditional.sample(4, seed=3).numpy()
    )
    np.testing.assert_array_equal(
        conditional.encode(images[:4], labels=labels[:4]).numpy(), unconditional.encode(images[:4]).numpy()
    )


def test_fit_on_labelled_digits_lowers_bits_per_dim_and_learns_the_classes(trained, digits):
    images, labels = digits
    model, history = trained["model"], trained["history"]
    assert set(history) == {"loss", "bits_per_dim", "class_loss", "nonfinite_steps"}
    assert history["nonfinite_steps"] == [0.0] * 5
    after = model.bits_per_dim(images, labels=labels).numpy().mean()
    assert after < trained["initialized"] - 0.3
    assert history["bits_per_dim"][-1] < history["bits_per_dim"][0]
    assert history["class_loss"][-1] < history["class_loss"][0]
    # argmax_y log p(x | y) classifies the training images far better than chance (10%).
    accuracy = np.mean(_class_log_likelihoods(model, images).argmax(axis=1) == labels)
    assert accuracy > 0.3, accuracy


def test_class_loss_is_the_cross_entropy_in_bits_added_with_its_weight(trained):
    initial = trained["initial_eval"]
    # Zero-initialized classifier: uniform over 10 classes, log2(10) bits per image.
    np.testing.assert_allclose(initial["class_loss"], np.log2(10), rtol=1e-5)
    np.testing.assert_allclose(
        initial["loss"], initial["bits_per_dim"] + 0.1 * initial["class_loss"], rtol=1e-5
    )


def test_model_log_prob_equals_tfp_log_prob_with_bijector_kwargs(trained, digits):
    images, labels = digits
    model = trained["model"]
    x = model.preprocess(images[:16])
    labels = tf.constant(labels[:16])
    through_tfp = model.distribution.log_prob(x, bijector_kwargs={"labels": labels})
    np.testing.assert_allclose(
        model.log_prob(images[:16], labels=labels).numpy(), through_tfp.numpy(), rtol=1e-5
    )
    # Different labels, different likelihoods, once trained.
    other = model.log_prob(images[:16], labels=(labels + 1) % 10).numpy()
    assert np.min(np.abs(other - through_tfp.numpy())) > 1e-3
    samples = model.distribution.sample(3, seed=(1, 2), bijector_kwargs={"labels": tf.constant([4, 5, 6])})
    assert samples.shape == (3, 8, 8, 1)


def test_samples_are_deterministic_and_depend_on_the_label(trained):
    model = trained["model"]
    first = model.sample(8, temperature=0.7, seed=5, labels=3).numpy()
    np.testing.assert_array_equal(first, model.sample(8, temperature=0.7, seed=5, labels=3).numpy())
    assert first.dtype == np.uint8 and first.shape == (8, 8, 8, 1)
    other = model.sample(8, temperature=0.7, seed=5, labels=8).numpy()
    assert np.any(first != other)
    # One label per image conditions each image on its own class.
    eps = 0.7 * tf.random.stateless_normal([2, model.event_size], seed=[1, 0])
    per_image = model.bijector.forward(eps, labels=[3, 8]).numpy()
    np.testing.assert_allclose(per_image[:1], model.bijector.forward(eps[:1], labels=3).numpy(), atol=1e-5)
    np.testing.assert_allclose(per_image[1:], model.bijector.forward(eps[1:], labels=8).numpy(), atol=1e-5)


def test_encode_decode_round_trip_needs_the_same_label(trained, digits):
    images, labels = digits
    model = trained["model"]
    latents = model.encode(images[:8], labels=labels[:8])
    np.testing.assert_array_equal(model.decode(latents, labels=labels[:8]).numpy(), images[:8])
    wrong = model.encode(images[:8], labels=(labels[:8] + 1) % 10)
    assert np.max(np.abs(wrong.numpy() - latents.numpy())) > 1e-3


def test_saved_and_reloaded_conditional_model_gives_identical_log_prob(trained, digits):
    images, labels = digits
    model = trained["model"]
    reloaded = keras.models.load_model(trained["path"])
    config = reloaded.get_config()
    assert (config["num_classes"], config["conditional_split_priors"], config["class_loss_weight"]) == (
        10,
        True,
        0.1,
    )
    np.testing.assert_array_equal(
        reloaded.log_prob(images[:32], labels=labels[:32]).numpy(),
        model.log_prob(images[:32], labels=labels[:32]).numpy(),
    )
    np.testing.assert_array_equal(
        reloaded.sample(4, seed=1, labels=2).numpy(), model.sample(4, seed=1, labels=2).numpy()
    )
    # The classifier's weights come back too.
    np.testing.assert_array_equal(reloaded.classifier_kernel.numpy(), model.classifier_kernel.numpy())


def test_fit_accepts_arrays_of_images_and_labels(digits):
    images, labels = digits
    model = tfp_glow.GlowModel.from_preset("digits", num_classes=10, **TINY)
    model.compile()
    history = model.fit(images[:128], labels[:128], batch_size=64, epochs=1, verbose=0)
    assert set(history.history) == {"loss", "bits_per_dim", "nonfinite_steps"}
    assert model.is_initialized()


def test_bad_labels_raise_clear_errors(digits):
    images, labels = digits
    model = tfp_glow.GlowModel.from_preset("digits", num_classes=10, **TINY)
    unconditional = tfp_glow.GlowModel.from_preset("digits", **TINY)
    model.compile()
    unconditional.compile()
    with pytest.raises(ValueError, match=r"class-conditional \(num_classes=10\).*Received: labels=None"):
        model.log_prob(images[:4])
    with pytest.raises(ValueError, match=r"class-conditional \(num_classes=10\)"):
        model.sample(2, seed=0)
    with pytest.raises(
        ValueError, match=r"Class labels must be in \[0, 10\). Received: labels with min=0, max=10"
    ):
        model.log_prob(images[:2], labels=[0, 10])
    with pytest.raises(ValueError, match=r"Class labels must be in \[0, 10\)"):
        model.sample(2, labels=-1)
    with pytest.raises(ValueError, match=r"one label per image: 4 images. Received: shape=\[3\]"):
        model.bits_per_dim(images[:4], labels=labels[:3])
    with pytest.raises(ValueError, match=r"labels of shape \[batch\]"):
        model.encode(images[:2], labels=[[0], [1]])
    with pytest.raises(TypeError, match="integer class labels.*Received: dtype=float32"):
        model.log_prob(images[:2], labels=np.array([0.0, 1.0], np.float32))
    with pytest.raises(ValueError, match=r"unconditional \(num_classes=None\), so it takes no labels"):
        unconditional.log_prob(images[:2], labels=[0, 1])
    with pytest.raises(ValueError, match=r"class-conditional \(num_classes=10\)"):
        model.fit(images[:64], batch_size=64, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"unconditional \(num_classes=None\) but the data has labels"):
        unconditional.fit(images[:64], labels[:64], batch_size=64, epochs=1, verbose=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Class labels must be < num_classes = 10"):
        model.fit(images[:64], np.full(64, 12), batch_size=64, epochs=1, verbose=0)


def test_model_constructor_checks_conditioning_options():
    with pytest.raises(ValueError, match="`class_loss_weight` > 0 needs `num_classes`"):
        tfp_glow.GlowModel.from_preset("digits", class_loss_weight=1.0, **TINY)
    with pytest.raises(ValueError, match=r"Received: class_loss_weight=-1"):
        tfp_glow.GlowModel.from_preset("digits", num_classes=10, class_loss_weight=-1, **TINY)
    with pytest.raises(ValueError, match="needs `learn_top_prior=True`"):
        tfp_glow.GlowModel.from_preset("digits", num_classes=10, learn_top_prior=False, **TINY)
    model = tfp_glow.GlowModel.from_preset("digits", num_classes=10, **TINY)
    # Without a classification loss, no classifier weights: every weight is a flow variable
    # or one of the (digits preset's) learned dequantization.
    dequantizer = len(model.dequantizer.trainable_weights)
    assert len(model.trainable_variables) == len(model.bijector.trainable_variables) + dequantizer
    assert [m.name for m in model.metrics] == ["loss", "bits_per_dim", "nonfinite_steps"]
