"""GlowModel: a Keras 3 model that trains a Glow by maximum likelihood."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfp_glow import _compat
from tfp_glow.bijectors.glow import Glow
from tfp_glow.distributions import (
    bits_per_dim,
    glow_distribution,
    quantize,
    reduce_bits,
    to_unit_range,
)
from tfp_glow.models.dequantization import VariationalDequantizer
from tfp_glow.models.presets import preset_config
from tfp_glow.models.schedules import default_optimizer

__all__ = ["GlowModel"]


@keras.saving.register_keras_serializable(package="tfp_glow")
class GlowModel(_compat.BuildsWithoutData, keras.Model):
    """Glow [1] as a Keras 3 model over integer images.

    Input: integer images [N, H, W, C] with levels in [0, 256) (`uint8`) for an
    `n_bits` model, reduced to 2**n_bits levels inside the model; or levels in
    [0, num_bins) when `num_bins` is given (17 for scikit-learn's digits). Inside,
    levels k become x = (k + u) / num_bins - 0.5 in [-0.5, 0.5], with uniform
    dequantization noise u ~ U[0, 1) in `fit` and `evaluate` (the paper's estimate)
    and the bin centre u = 0.5 in `log_prob`, `bits_per_dim`, `encode` (deterministic).

    With `dequantization='variational'` the noise is u ~ q(u | k), a learned
    distribution trained with the flow (Flow++), and the loss is the tighter bound
    -E_q[log p(x) - log q(u | k)]; `discrete_bits_per_dim(images, num_samples=S)`
    estimates the discrete likelihood -log2 P(k) / D by importance sampling with q
    (uniform or learned) as the proposal, tighter than either one-sample figure.
    `dropout` > 0 regularizes the coupling networks in training steps only.

    `fit` minimizes the negative log-likelihood in bits per dimension (with the
    -D log(num_bins) term, comparable with the paper's figures) and reports it as
    `bits_per_dim`. The first `fit` initializes every ActNorm once from a real batch
    of `init_batch_size` images (or call `initialize(images)`); a reloaded model is
    never initialized again, since the state is saved with the weights.

    The flow is the TFP bijector `model.bijector` (a `tfp_glow.Glow`) and the model
    `model.distribution`, a `tfd.TransformedDistribution`: everything TFP offers
    works on them. Every flow variable is tracked by Keras once (`model.weights`),
    so `.keras` files and checkpoints hold the whole model.

    Class-conditional Glow (`num_classes=K`, the reference code's `ycond`): the
    learned top prior (and with `conditional_split_priors=True` every split prior)
    depends on integer class labels in [0, K), zero-initialized so that an
    untrained conditional model equals the unconditional one. `fit` and `evaluate`
    then take `(images, labels)` batches (`data.load(..., with_labels=True)`), and
    `log_prob`, `bits_per_dim`, `encode`, `decode` and `sample` take `labels=`:
    int `[N]`, or one int for every image. The same conditioning works through TFP:
    `model.distribution.log_prob(x, bijector_kwargs={"labels": labels})`. With
    `class_loss_weight` w > 0, a zero-initialized linear classifier on the spatial
    mean of the top latent (before its prior) adds w times its cross-entropy in
    bits per image (nats / ln 2, not per dimension; the reference code's `weight_y`)
    to the loss, and `fit` reports that cross-entropy as `class_loss`.

    #### Examples

    ```python
    model = tfp_glow.GlowModel.from_preset("digits")
    model.compile()                         # Adam, lr 1e-3 with linear warm-up
    model.fit(tfp_glow.data.load("digits", "train", 64), epochs=10)
    images = model.sample(16, temperature=0.7, seed=1)    # uint8 [16, 8, 8, 1]

    conditional = tfp_glow.GlowModel.from_preset("digits", num_classes=10)
    conditional.compile()
    conditional.fit(tfp_glow.data.load("digits", "train", 64, with_labels=True), epochs=10)
    sevens = conditional.sample(16, labels=7, seed=1)
    log_p = conditional.log_prob(images, labels=labels)  # log p(x | y)
    ```

    #### References

    [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_levels: int = 3,
        num_steps: int = 32,
        hidden_channels: int = 512,
        coupling: str = "affine",
        permutation: str = "conv1x1",
        lu_decomposed: bool = True,
        split_prior: bool = True,
        learn_top_prior: bool = True,
        memory_efficient: bool = False,
        scale_fn: str = "sigmoid",
        n_bits: int = 8,
        num_bins: int | None = None,
        init_batch_size: int = 256,
        on_nonfinite: str = "skip",
        seed: int | None = None,
        num_classes: int | None = None,
        conditional_split_priors: bool = False,
        class_loss_weight: float = 0.0,
        dequantization: str = "uniform",
        dropout: float = 0.0,
        **kwargs,
    ):
        """Creates a GlowModel; the arguments are configuration only.

        Args:
          image_shape: `(H, W, C)`, H and W divisible by `2**num_levels`.
          num_levels: L, number of levels. Default 3.
          num_steps: K, steps of flow per level. Default 32.
          hidden_channels: width of the coupling networks. Default 512.
          coupling: `'affine'` (default) or `'additive'`.
          permutation: `'conv1x1'` (default), `'reverse'` or `'shuffle'`.
          lu_decomposed: LU form of the 1x1 convolutions. Default `True`.
          split_prior: learned prior of the channels leaving at each split. Default `True`.
          learn_top_prior: learned mean and scale of the top latent. Default `True`.
          memory_efficient: rebuild each step's activations in the backward pass
            from its output by the exact inverse instead of storing them, so that
            training memory does not grow with depth (about one more pass of
            compute). Default `False`.
          scale_fn: coupling scale, `'sigmoid'` (default) or `'exp'`.
          n_bits: bits per pixel kept from 8-bit input (5 for the paper's CelebA).
            Default 8. Ignored when `num_bins` is given.
          num_bins: levels of the input when they are not 8-bit (17 for digits);
            input is then in [0, num_bins) and not reduced. Default `None`.
          init_batch_size: images used by the automatic ActNorm initialization.
          on_nonfinite: what a training step with a non-finite loss or gradient
            does: `'skip'` (default) leaves every weight and the optimizer state
            untouched and counts the step in the `nonfinite_steps` metric;
            `'raise'` stops `fit` with an error. Either way no NaN reaches the
            weights. (Under XLA, `'raise'` cannot raise: XLA drops assertions.)
          seed: seed of the initial weights and of the dequantization noise.
          num_classes: K, the classes of a class-conditional model (labels in
            [0, K)); `None` (default): unconditional. Needs `learn_top_prior`.
          conditional_split_priors: also condition the split priors on the label.
            Default `False`.
          class_loss_weight: weight w of the auxiliary classification loss
            (cross-entropy in bits per image). Default 0 (no classifier).
          dequantization: noise that dequantizes the images in `fit` and
            `evaluate`: `'uniform'` (default, the paper's) or `'variational'`, a
            learned q(u | k) trained with the flow (Flow++; see
            `tfp_glow.models.dequantization`), which tightens the bound on the
            discrete likelihood.
          dropout: dropout rate in [0, 1) of the coupling networks' hidden units in
            training steps (a regularizer for small datasets; each step's random
            mask fixes one invertible flow). Evaluation, sampling and serving use
            no dropout. Default 0.
          **kwargs: passed to `keras.Model` (name, dtype ...).
        """
        config = {k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__")}
        super().__init__(**kwargs)
        if num_bins is None:
            if not isinstance(n_bits, int) or not 1 <= n_bits <= 8:
                raise ValueError(f"`n_bits` must be an integer in [1, 8]. Received: n_bits={n_bits!r}")
        elif not isinstance(num_bins, int) or num_bins < 2:
            raise ValueError(f"`num_bins` must be an integer >= 2. Received: num_bins={num_bins!r}")
        if not isinstance(init_batch_size, int) or init_batch_size < 1:
            raise ValueError(
                f"`init_batch_size` must be a positive integer. Received: init_batch_size={init_batch_size!r}"
            )
        self.n_bits = None if num_bins is not None else n_bits
        self.num_bins = num_bins if num_bins is not None else 2**n_bits
        self.init_batch_size = init_batch_size
        if on_nonfinite not in ("skip", "raise"):
            raise ValueError(
                f"`on_nonfinite` must be 'skip' or 'raise'. Received: on_nonfinite={on_nonfinite!r}"
            )
        self.on_nonfinite = on_nonfinite
        if not (
            isinstance(class_loss_weight, (int, float))
            and not isinstance(class_loss_weight, bool)
            and np.isfinite(class_loss_weight)
            and class_loss_weight >= 0
        ):
            raise ValueError(
                "`class_loss_weight` must be a finite number >= 0. "
                f"Received: class_loss_weight={class_loss_weight!r}"
            )
        if class_loss_weight > 0 and num_classes is None:
            raise ValueError(
                "The classification loss needs labels: `class_loss_weight` > 0 needs `num_classes`. "
                f"Received: class_loss_weight={class_loss_weight!r}, num_classes=None"
            )
        self.class_loss_weight = float(class_loss_weight)
        if dequantization not in ("uniform", "variational"):
            raise ValueError(
                "`dequantization` must be 'uniform' or 'variational'. "
                f"Received: dequantization={dequantization!r}"
            )
        not_architecture = (
            "n_bits",
            "num_bins",
            "init_batch_size",
            "on_nonfinite",
            "class_loss_weight",
            "dequantization",
        )
        architecture = {k: config[k] for k in config if k not in not_architecture}
        self._glow = Glow(**architecture, dtype=tf.float32, name="glow")
        self.image_shape = self._glow.image_shape
        self._config = {**config, "image_shape": self.image_shape}
        # Keras 3 does not track bare tf.Variables: wrap each (same variable, not a
        # copy) so that Keras optimizes, saves and restores it.
        self.flow_variables = [
            keras.Variable(initializer=v, trainable=v.trainable, name=v.name.split(":")[0].replace("/", "_"))
            for v in self._glow.variables
        ]
        self.num_classes = self._glow.num_classes
        self.class_loss_tracker = None
        if self.class_loss_weight > 0:
            # The reference `linear_zeros`: logits = (mean_hw(z_top) W + b) * exp(3 * logs).
            top_channels = self._glow.latent_shapes[-1][-1]
            self.classifier_kernel = self.add_weight(
                shape=(top_channels, self.num_classes), initializer="zeros", name="classifier_kernel"
            )
            self.classifier_bias = self.add_weight(
                shape=(self.num_classes,), initializer="zeros", name="classifier_bias"
            )
            self.classifier_logs = self.add_weight(
                shape=(self.num_classes,), initializer="zeros", name="classifier_logs"
            )
            self.class_loss_tracker = keras.metrics.Mean(name="class_loss")
        self.dequantizer = None
        if dequantization == "variational":
            self.dequantizer = VariationalDequantizer(seed=seed, name="dequantizer")
            self.dequantizer.build((None, *self.image_shape))
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.bits_per_dim_tracker = keras.metrics.Mean(name="bits_per_dim")
        self.nonfinite_tracker = keras.metrics.Sum(name="nonfinite_steps")
        self.build((None, *self.image_shape))

    # Configuration.

    def build(self, input_shape=None):
        # Every weight exists from __init__ on; marking the model built lets Keras
        # save and restore it (optimizer state included) without a first call.
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update(self._config)
        config["image_shape"] = list(self._config["image_shape"])
        return config

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GlowModel:
        """A model of preset `name` ("digits", "mnist", "cifar10", "celeba64",
        "imagenet32", "imagenet64"; see `tfp_glow.models.PRESETS`), with `overrides`."""
        return cls(**preset_config(name, **overrides))

    def compile(self, optimizer=None, **kwargs):
        """`keras.Model.compile`; the optimizer defaults to the paper's (Adam, lr 1e-3, warm-up)."""
        super().compile(optimizer=optimizer if optimizer is not None else default_optimizer(), **kwargs)

    def compile_from_config(self, config):
        # As keras.Model's, which skips models whose compile() is overridden: a
        # reloaded model gets its optimizer back, built, so its state is restored.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    @property
    def bijector(self) -> Glow:
        """The flow, a `tfp_glow.Glow` bijector (forward = generative)."""
        return self._glow

    @property
    def distribution(self):
        """The model as `tfd.TransformedDistribution` over images in [-0.5, 0.5]."""
        return glow_distribution(self._glow)

    @property
    def event_size(self) -> int:
        return self._glow.event_size

    # Preprocessing: integer levels <-> [-0.5, 0.5].

    def _levels(self, images):
        images = tf.convert_to_tensor(images)
        if images.dtype.is_floating or images.dtype.is_bool:
            raise TypeError(
                f"GlowModel expects integer images (uint8 levels in [0, {self._input_levels()})). "
                f"Received: dtype={images.dtype.name}"
            )
        if images.shape.rank is not None and (
            images.shape.rank != 4
            or any(d is not None and d != e for d, e in zip(images.shape[1:], self.image_shape, strict=True))
        ):
            raise ValueError(
                f"GlowModel expects images of shape [batch, {', '.join(map(str, self.image_shape))}]. "
                f"Received: shape={images.shape.as_list()}"
            )
        levels = tf.cast(images, tf.int32)
        checks = [
            # Keras may trace with unknown dimensions: the shape is checked at run time too.
            tf.debugging.assert_equal(
                tf.shape(levels)[1:],
                tf.constant(self.image_shape, tf.int32),
                message=f"GlowModel expects images of shape [batch, {', '.join(map(str, self.image_shape))}]",
            ),
            tf.debugging.assert_greater_equal(levels, 0, message="Pixel values must be >= 0."),
            tf.debugging.assert_less(
                levels,
                self._input_levels(),
                message=f"Pixel values must be < {self._input_levels()}.",
            ),
        ]
        with tf.control_dependencies(checks):
            levels = tf.identity(levels)
        return levels if self.n_bits is None else reduce_bits(levels, self.n_bits)

    def _input_levels(self):
        return self.num_bins if self.n_bits is None else 256

    def preprocess(self, images, noise: bool = False) -> tf.Tensor:
        """Integer images to x in [-0.5, 0.5]; uniform dequantization noise if `noise`."""
        levels = self._levels(images)
        u = self._uniform(tf.shape(levels), self._noise_seed()) if noise else None
        return to_unit_range(levels, self.num_bins, u)

    def _noise_seed(self):
        """Where training noise comes from: the model's SeedGenerator, or on each replica of
        several a stateless seed from it folded with the replica's index. A SeedGenerator's
        state is mirrored, so every replica would draw the same noise and dropout masks for
        its share of the batch."""
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return self.seed_generator
        seed = keras.random.randint((2,), 0, 2**31 - 1, seed=self.seed_generator, dtype="int32")
        return tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)

    @staticmethod
    def _uniform(shape, seed) -> tf.Tensor:
        if isinstance(seed, keras.random.SeedGenerator):
            return keras.random.uniform(shape, seed=seed)
        return tf.random.stateless_uniform(shape, seed)

    def _dequantize(self, levels, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """(x, log q(u | k) [N]): levels k dequantized with noise u ~ q, from `seed`
        (a SeedGenerator, or a stateless [2] seed). Uniform noise has log q = 0."""
        shape = tf.shape(levels)
        if self.dequantizer is None:
            return to_unit_range(levels, self.num_bins, self._uniform(shape, seed)), tf.zeros(shape[:1])
        if isinstance(seed, keras.random.SeedGenerator):
            eps = keras.random.normal(shape, seed=seed)
        else:
            eps = tf.random.stateless_normal(shape, seed)
        u, log_q = self.dequantizer(to_unit_range(levels, self.num_bins), eps)
        return to_unit_range(levels, self.num_bins, u), log_q

    def _labels(self, labels, num_images) -> tf.Tensor | None:
        """Checked int32 labels [N] for a conditional model, `None` for an unconditional one.

        A scalar label applies to all `num_images` images. Values out of [0, K) raise
        a ValueError in eager calls and fail the graph's assertion in `fit`.
        """
        if self.num_classes is None:
            if labels is not None:
                raise ValueError(
                    "This GlowModel is unconditional (num_classes=None), so it takes no labels; "
                    "build it with `num_classes` to condition on classes. "
                    f"Received: labels of shape {np.shape(labels)}"
                )
            return None
        if labels is None:
            raise ValueError(
                f"This GlowModel is class-conditional (num_classes={self.num_classes}): pass integer "
                f"labels in [0, {self.num_classes}) (`labels=` here, or (images, labels) batches to "
                "fit and evaluate). Received: labels=None"
            )
        labels = tf.convert_to_tensor(labels)
        if not labels.dtype.is_integer:
            raise TypeError(
                f"GlowModel expects integer class labels in [0, {self.num_classes}). "
                f"Received: dtype={labels.dtype.name}"
            )
        if labels.shape.rank is not None and labels.shape.rank > 1:
            raise ValueError(
                f"GlowModel expects labels of shape [batch] (or one label for all images). "
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
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(
                    f"Class labels must be in [0, {self.num_classes}). "
                    f"Received: labels with min={values.min()}, max={values.max()}"
                )
            return labels
        checks = [
            tf.debugging.assert_equal(
                tf.size(labels),
                tf.cast(num_images, tf.int32),
                message="GlowModel expects one label per image.",
            ),
            tf.debugging.assert_non_negative(labels, message="Class labels must be >= 0."),
            tf.debugging.assert_less(
                labels, self.num_classes, message=f"Class labels must be < num_classes = {self.num_classes}."
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(labels)

    def _bijector_kwargs(self, labels) -> dict:
        return {} if labels is None else {"labels": labels}

    def postprocess(self, x) -> tf.Tensor:
        """x in [-0.5, 0.5] to uint8 images (n-bit levels scaled back to [0, 256))."""
        levels = quantize(x, self.num_bins)
        if self.n_bits is not None:
            levels = levels * 2 ** (8 - self.n_bits)
        return tf.cast(levels, tf.uint8)

    # Initialization.

    def is_initialized(self) -> bool:
        """Whether every ActNorm of the flow is initialized."""
        return bool(self._glow.is_initialized())

    def initialize(self, images, labels=None) -> None:
        """Data-dependent ActNorm initialization from a real batch; idempotent.

        A class-conditional model takes the images' `labels` but does not need
        them: they reach no ActNorm (the priors come after every step of flow).
        """
        x = self.preprocess(images, noise=True)
        if self.num_classes is not None and labels is None:
            labels = tf.zeros(tf.shape(x)[:1], tf.int32)
        self._glow.initialize(x, **self._bijector_kwargs(self._labels(labels, tf.shape(x)[0])))

    def _initialize_from(self, x) -> None:
        if self.is_initialized():
            return
        if isinstance(x, tf.data.Dataset):
            batches, count = [], 0
            for element in x:
                images = element[0] if isinstance(element, (tuple, list)) else element
                batches.append(images)
                count += int(images.shape[0])
                if count >= self.init_batch_size:
                    break
            if not batches:
                raise ValueError("Cannot initialize GlowModel from an empty dataset.")
            images = tf.concat(batches, 0)[: self.init_batch_size]
        else:
            images = x[0] if isinstance(x, (tuple, list)) else x
            images = images[: self.init_batch_size]
        self.initialize(images)

    def fit(self, x=None, *args, **kwargs):
        """`keras.Model.fit`, initializing the ActNorms from `x` first if needed."""
        if x is not None:
            self._check_data_labels(x, args[0] if args else kwargs.get("y"))
            self._initialize_from(x)
        return super().fit(x, *args, **kwargs)

    def _check_data_labels(self, x, y) -> None:
        """Labels where the model needs them, before Keras traces a step (a failed trace
        would leave `fit` unable to create the optimizer's variables on a retry)."""
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            has_labels = isinstance(spec, (tuple, list)) and len(spec) >= 2 and spec[1] is not None
        elif isinstance(x, (np.ndarray, tf.Tensor)):
            has_labels = y is not None
        else:
            return  # other inputs are checked in the step
        if has_labels and self.num_classes is None:
            raise ValueError(
                "This GlowModel is unconditional (num_classes=None) but the data has labels: build it "
                "with `num_classes` to condition on them, or pass images only."
            )
        if not has_labels and self.num_classes is not None:
            raise ValueError(
                f"This GlowModel is class-conditional (num_classes={self.num_classes}): fit it on "
                "(images, labels) batches, e.g. `data.load(..., with_labels=True)` or `fit(images, labels)`. "
                "Received: images without labels"
            )

    def symbolic_build_batch(self):
        """The batch Keras builds the optimizer from under a strategy (see `_compat.BuildsWithoutData`):
        the model is built at construction, so the image shape is all it needs."""
        return np.zeros((1, *self.image_shape), np.uint8)

    # Training.

    @property
    def metrics(self):
        metrics = [self.loss_tracker, self.bits_per_dim_tracker, self.nonfinite_tracker]
        return metrics + ([self.class_loss_tracker] if self.class_loss_tracker is not None else [])

    def call(self, images, labels=None, training=False):
        """Per-image bits per dimension (dequantization noise when training)."""
        return self._bits(images, labels, bool(training), training=bool(training))[0]

    def _bits(self, images, labels, noise, training=False):
        """Per-image bits/dim, and the classifier's cross-entropy in bits (`None` without one).

        With `noise`, the bound -E_q[log p(x) - log q(u | k)] of one noise sample; with
        `training`, through the coupling networks' dropout (if any)."""
        if noise and self.dequantizer is not None:
            x, log_q = self._dequantize(self._levels(images), self._noise_seed())
        else:
            x, log_q = self.preprocess(images, noise=noise), 0.0
        labels = self._labels(labels, tf.shape(x)[0])
        conditioning = {}
        if training and self._config["dropout"] > 0:
            seed = self._noise_seed()
            if isinstance(seed, keras.random.SeedGenerator):
                seed = keras.random.randint((2,), 0, 2**31 - 1, seed=seed, dtype="int32")
            conditioning["dropout_seed"] = seed
        log_p = self._glow_log_prob(x, labels, **conditioning)
        bpd = bits_per_dim(log_p - log_q, self.image_shape, self.num_bins)
        if self.class_loss_tracker is None:
            return bpd, None
        # The flow's top latent before its prior (the reference classifies z, not eps);
        # TFP's cache answers the inverse from the log_prob pass.
        top = self._glow.split_latent(self._glow.inverse(x, labels=labels, **conditioning))[-1]
        z_top = self._glow.top_prior.forward(top, labels=labels)
        features = tf.reduce_mean(z_top, axis=[1, 2])
        scale = tf.exp(3.0 * self.classifier_logs)
        logits = (features @ self.classifier_kernel + self.classifier_bias) * scale
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return bpd, cross_entropy / np.log(2.0)

    def _glow_log_prob(self, x, labels=None, **conditioning):
        if labels is not None:
            conditioning["labels"] = labels
        if not conditioning:
            return self.distribution.log_prob(x)
        return self.distribution.log_prob(x, bijector_kwargs=conditioning)

    def _unpack(self, data):
        """(images, labels) of a batch: images, (images,) or (images, labels[, weights])."""
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        if self.num_classes is None and labels is not None:
            raise ValueError(
                "This GlowModel is unconditional (num_classes=None) but the data has labels: build it "
                "with `num_classes` to condition on them, or pass images only. "
                f"Received: batches of (images, labels) with labels {labels!r}"
            )
        return images, labels

    def train_step(self, data):
        images, labels = self._unpack(data)
        with tf.GradientTape() as tape:
            bpd, class_bits = self._bits(images, labels, noise=True, training=True)
            loss = tf.reduce_mean(bpd)
            if class_bits is not None:
                loss += self.class_loss_weight * tf.reduce_mean(class_bits)
            # Gradients are summed over replicas: scale so that they average.
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        gradients = tape.gradient(scaled, self.trainable_variables)
        finite = self._all_replicas_finite([loss, *gradients])
        if self.on_nonfinite == "raise":
            check = tf.debugging.Assert(
                finite,
                ["GlowModel: non-finite loss or gradient; stopping (on_nonfinite='raise'). Loss:", loss],
            )
            with tf.control_dependencies([check]):
                finite = tf.identity(finite)
        self._apply_gradients_if(finite, gradients)
        # Each replica adds its share: the metric counts global steps.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.nonfinite_tracker.update_state((1.0 - tf.cast(finite, tf.float32)) / replicas)
        # A skipped step reports no loss: the running means stay finite.
        self.loss_tracker.update_state(tf.where(finite, loss, 0.0), sample_weight=tf.cast(finite, tf.float32))
        self.bits_per_dim_tracker.update_state(
            tf.where(finite, bpd, 0.0), sample_weight=tf.cast(finite, tf.float32) * tf.ones_like(bpd)
        )
        if class_bits is not None:
            self.class_loss_tracker.update_state(
                tf.where(finite, class_bits, 0.0),
                sample_weight=tf.cast(finite, tf.float32) * tf.ones_like(class_bits),
            )
        return self._logs(self.metrics)

    @staticmethod
    def _all_replicas_finite(tensors) -> tf.Tensor:
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors if t is not None])
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            # Every replica must take the same branch below.
            bad = context.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
            finite = tf.equal(bad, 0.0)
        return finite

    def _apply_gradients_if(self, finite, gradients):
        """Applies the gradients only where `finite`; otherwise nothing changes, optimizer included."""
        variables = self.trainable_variables

        def apply():
            self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
            return tf.constant(True)

        def skip():
            return tf.constant(False)

        if not tf.distribute.has_strategy() or _compat.strategy_supports_no_merge_call():
            tf.cond(finite, apply, skip)
            return

        # The optimizer's update calls merge_call, which cannot sit in a cond in a
        # replica context: decide in the cross-replica context, as Keras's
        # LossScaleOptimizer does.
        def cross_replica(distribution, finite, gradients):
            def apply_each():
                distribution.extended.call_for_each_replica(
                    lambda g: self.optimizer.apply_gradients(zip(g, variables, strict=True)),
                    args=(gradients,),
                )
                return tf.constant(True)

            tf.cond(distribution.experimental_local_results(finite)[0], apply_each, skip)

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(finite, gradients))

    def _logs(self, metrics) -> dict[str, tf.Tensor]:
        """The step's logs. Keras reduces them over the workers of a MultiWorkerMirroredStrategy
        with `reduce("MEAN", axis=0)`, which needs a batch axis that its scalar metrics lack
        (keras-team/keras#20585): there they get one."""
        logs = {m.name: m.result() for m in metrics}
        strategy = self.distribute_strategy
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        if multi_worker and _compat.in_multi_worker_mode(strategy):
            logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs

    def test_step(self, data):
        images, labels = self._unpack(data)
        # One noise sample per image: the paper's estimate (its variational bound with a learned q).
        bpd, class_bits = self._bits(images, labels, noise=True)
        loss = tf.reduce_mean(bpd)
        reported = [self.loss_tracker, self.bits_per_dim_tracker]
        if class_bits is not None:
            loss += self.class_loss_weight * tf.reduce_mean(class_bits)
            self.class_loss_tracker.update_state(class_bits)
            reported.append(self.class_loss_tracker)
        self.loss_tracker.update_state(loss)
        self.bits_per_dim_tracker.update_state(bpd)
        return self._logs(reported)

    # Using a trained model.

    def log_prob(self, images, labels=None) -> tf.Tensor:
        """log p(x) (log p(x | y) given `labels`) at the bin centres x (density on [-0.5, 0.5]^D)."""
        x = self.preprocess(images)
        labels = self._labels(labels, tf.shape(x)[0])
        if labels is None:
            return self._compiled_log_prob(x)
        return self._compiled_conditional_log_prob(x, labels)

    # Graphs of the flow for the methods above and below: eager TFP calls through
    # dozens of steps are slow. One trace per model serves every batch size, and the
    # same graph in every process gives bit-identical results after a reload.

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
    def _compiled_log_prob(self, x):
        return self._glow_log_prob(x)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
    def _compiled_encode(self, x):
        return self._glow.inverse(x)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def _compiled_decode(self, z):
        return self._glow.forward(z)

    # The same for class-conditional models, with int32 labels [N].

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, None], tf.float32), tf.TensorSpec([None], tf.int32)]
    )
    def _compiled_conditional_log_prob(self, x, labels):
        return self._glow_log_prob(x, labels)

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, None], tf.float32), tf.TensorSpec([None], tf.int32)]
    )
    def _compiled_conditional_encode(self, x, labels):
        return self._glow.inverse(x, labels=labels)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32)])
    def _compiled_conditional_decode(self, z, labels):
        return self._glow.forward(z, labels=labels)

    def bits_per_dim(self, images, labels=None) -> tf.Tensor:
        """Bits per dimension of each image (bin centres, deterministic), given `labels` if conditional."""
        return bits_per_dim(self.log_prob(images, labels), self.image_shape, self.num_bins)

    def discrete_bits_per_dim(
        self, images, labels=None, num_samples: int = 64, batch_size: int = 256, seed: int = 0
    ) -> tf.Tensor:
        """float32 [N]: -log2 P(k) / D, the discrete likelihood of each image, estimated
        by importance sampling with the dequantization noise q as the proposal:

            log P(k) ~= logsumexp_s [log p(x_s) - log q(u_s | k)] - log S - D log(num_bins),

        x_s = (k + u_s) / num_bins - 0.5, u_s ~ q(u | k), s = 1..S. Its expectation is
        a lower bound of log P(k) that tightens as S grows (S = 1 is the figure `evaluate`
        reports); the result is deterministic for a given `seed`.
        """
        for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        levels = self._levels(images)
        labels = self._labels(labels, tf.shape(levels)[0])
        pieces = []
        for start in range(0, int(levels.shape[0]), batch_size):
            batch = levels[start : start + batch_size]
            batch_labels = None if labels is None else labels[start : start + batch_size]
            log_weights = [
                self._compiled_log_weight(batch, tf.constant([seed, s]), batch_labels)
                for s in range(num_samples)
            ]
            log_p = tf.reduce_logsumexp(tf.stack(log_weights), axis=0) - np.log(num_samples)
            pieces.append(bits_per_dim(log_p, self.image_shape, self.num_bins))
        return tf.concat(pieces, 0)

    @tf.function(reduce_retracing=True)
    def _compiled_log_weight(self, levels, seed, labels):
        x, log_q = self._dequantize(levels, seed)
        return self._glow_log_prob(x, labels) - log_q

    def encode(self, images, labels=None) -> tf.Tensor:
        """Flat latents [N, D] of all levels (`model.bijector.split_latent` splits them)."""
        x = self.preprocess(images)
        labels = self._labels(labels, tf.shape(x)[0])
        if labels is None:
            return self._compiled_encode(x)
        return self._compiled_conditional_encode(x, labels)

    def decode(self, latents, labels=None) -> tf.Tensor:
        """uint8 images from flat latents [N, D]; `decode(encode(x, y), y) == x` exactly."""
        latents = tf.convert_to_tensor(latents, tf.float32)
        self._glow.split_latent(latents)  # a clear error for a wrong shape, before tracing
        latents = tf.debugging.check_numerics(
            latents, "GlowModel.decode expects finite latents; Received: latents with NaN or Inf"
        )
        labels = self._labels(labels, tf.shape(latents)[0])
        if labels is None:
            return self.postprocess(self._compiled_decode(latents))
        return self.postprocess(self._compiled_conditional_decode(latents, labels))

    def sample(self, num: int, temperature: float = 0.7, seed: int | None = None, labels=None) -> tf.Tensor:
        """`num` uint8 images at `temperature`; the same `seed` gives the same images.

        A class-conditional model samples from p(x | y) for `labels` y: int `[num]`,
        or one int for all `num` images.
        """
        if not isinstance(num, (int, np.integer)) or num < 1:
            raise ValueError(f"`num` must be a positive integer. Received: num={num!r}")
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature >= 0):
            raise ValueError(
                f"`temperature` must be a finite number >= 0. Received: temperature={temperature!r}"
            )
        shape = [int(num), self.event_size]
        if seed is None:
            eps = tf.random.normal(shape)
        else:
            eps = tf.random.stateless_normal(shape, seed=[int(seed), 0])
        return self.decode(temperature * eps, labels)

    # Applications: thin methods over tfp_glow.models.applications (imported lazily, no cycle).

    def temperature_grid(
        self, temperatures: Sequence[float], num_per_row: int = 8, seed: int = 0
    ) -> tf.Tensor:
        """uint8 [len(temperatures), num_per_row, H, W, C]: one row per temperature, same noise.

        See `tfp_glow.models.applications.temperature_grid`."""
        from tfp_glow.models import applications

        return applications.temperature_grid(self, temperatures, num_per_row, seed)

    def interpolate(self, image_a, image_b, steps: int = 8) -> tf.Tensor:
        """uint8 [steps, H, W, C] from `image_a` to `image_b`, linear in the latent of every level.

        See `tfp_glow.models.applications.interpolate`."""
        from tfp_glow.models import applications

        return applications.interpolate(self, image_a, image_b, steps)

    def attribute_direction(self, images_with, images_without) -> tf.Tensor:
        """float32 [D]: mean latent of `images_with` minus that of `images_without`.

        See `tfp_glow.models.applications.attribute_direction`."""
        from tfp_glow.models import applications

        return applications.attribute_direction(self, images_with, images_without)

    def manipulate(self, image, direction, alphas: Sequence[float]) -> tf.Tensor:
        """uint8 [len(alphas), H, W, C]: the image decoded from z + alpha * direction.

        See `tfp_glow.models.applications.manipulate`."""
        from tfp_glow.models import applications

        return applications.manipulate(self, image, direction, alphas)

    def inpaint(
        self,
        images,
        mask,
        steps: int = 300,
        learning_rate: float = 0.05,
        langevin: bool = False,
        seed: int = 0,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(uint8 completed images, their bits/dim): the pixels where `mask` is True filled by
        gradient ascent on log p (or Langevin sampling), observed pixels kept exactly.

        See `tfp_glow.models.applications.inpaint`."""
        from tfp_glow.models import applications

        return applications.inpaint(self, images, mask, steps, learning_rate, langevin, seed)

    def score(self, images, batch_size: int = 256) -> tf.Tensor:
        """float32 [N]: bits per dimension of each image, in batches of `batch_size`.

        See `tfp_glow.models.applications.score`."""
        from tfp_glow.models import applications

        return applications.score(self, images, batch_size)
