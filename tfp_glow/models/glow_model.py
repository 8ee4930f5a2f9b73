"""GlowModel: a Keras 3 model that trains a Glow by maximum likelihood."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfp_glow import _compat
from tfp_glow import pretrained as pretrained_weights
from tfp_glow.bijectors.glow import Glow
from tfp_glow.distributions import bits_per_dim, glow_distribution
from tfp_glow.models import applications
from tfp_glow.models.dequantization import VariationalDequantizer
from tfp_glow.models.labels import check_data_has_labels, check_labels
from tfp_glow.models.presets import preset_config
from tfp_glow.models.schedules import default_optimizer
from tfp_glow.quantization import Quantization

__all__ = ["DTYPE_POLICIES", "GlowModel"]

# Keras dtype policies a GlowModel trains under (see `GlowModel`'s `dtype_policy`).
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


@keras.saving.register_keras_serializable(package="tfp_glow")
class GlowModel(_compat.BuildsWithoutData, keras.Model):
    """Glow [1] as a Keras 3 model over integer images.

    Input: integer images [N, H, W, C] with levels in [0, 256) (`uint8`) for an
    `n_bits` model, reduced to 2**n_bits levels inside the model; or levels in
    [0, num_bins) when `num_bins` is given (17 for scikit-learn's digits). Inside,
    levels k become x = (k + u) / num_bins - 0.5 in [-0.5, 0.5]
    (`tfp_glow.quantization`), with dequantization noise u ~ q(u | k) in `fit`
    and `evaluate`: uniform (the paper's) or, with `dequantization='variational'`, a
    learned q trained with the flow (Flow++).

    Two figures are bits/dim of the model, -log2 P(k) / D of the discrete images:
    `evaluate`'s and `fit`'s `bits_per_dim` metric, the paper's estimate with one noise
    sample per image (an upper bound), and `bits_per_dim(images, num_samples=S)`, the
    same bound with S importance samples of q, which tightens towards the discrete
    likelihood as S grows (`discrete_bits_per_dim` takes S = 64). `log_prob` and `score`
    are the density of the continuous model at the bin centres (deterministic, for
    serving and out-of-distribution scores), which is not a probability of the image.
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
        memory_efficient: bool | str = False,
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
        dtype_policy: str | None = None,
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
          memory_efficient: what the training backward pass stores: `False`
            (default) every activation; `True` or `"recompute"` each step's input,
            recomputing the step (exact gradients); `"reversible"` nothing per step,
            rebuilding inputs by the exact inverse (see `tfp_glow.StackedFlowSteps`).
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
          dtype_policy: Keras's dtype policy of the model: `'float32'`, `'mixed_bfloat16'`
            or `'mixed_float16'` (Keras's `dtype=` argument, saved with the model). Default
            `None`: Keras's global policy (`keras.mixed_precision.set_global_policy`). Under a
            mixed policy the coupling and split-prior networks compute in bfloat16 / float16;
            ActNorm, the 1x1 convolutions and their log-dets, the couplings' scale and shift,
            the priors' log-densities, the loss and every variable stay float32, so encoding,
            decoding and sampling stay exactly invertible. `compile` adds loss scaling for
            float16 (Keras's `LossScaleOptimizer`); a step whose scaled gradients overflow is
            skipped by it and is not counted as a non-finite step.
          **kwargs: passed to `keras.Model` (name, dtype ...).

        Raises:
          ValueError: for another dtype policy.
        """
        config = {
            k: v for k, v in locals().items() if k not in ("self", "kwargs", "__class__", "dtype_policy")
        }
        if dtype_policy is not None:
            kwargs["dtype"] = dtype_policy
        super().__init__(**kwargs)
        if self.dtype_policy.name not in DTYPE_POLICIES:
            raise ValueError(
                f"GlowModel supports the dtype policies {DTYPE_POLICIES}. "
                f"Received: dtype_policy={self.dtype_policy.name!r}"
            )
        compute_dtype = None if self.dtype_policy.name == "float32" else self.dtype_policy.compute_dtype
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
        self._glow = Glow(**architecture, dtype=tf.float32, compute_dtype=compute_dtype, name="glow")
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
            # float32 under any policy: its log q(u | k) is part of the loss.
            self.dequantizer = VariationalDequantizer(seed=seed, name="dequantizer", dtype="float32")
            self.dequantizer.build((None, *self.image_shape))
        self.quantization = Quantization(self.image_shape, self.num_bins, self.n_bits, self.dequantizer)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.bits_per_dim_tracker = keras.metrics.Mean(name="bits_per_dim")
        self.nonfinite_tracker = keras.metrics.Sum(name="nonfinite_steps")
        self._compile_graphs()
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
    def from_preset(cls, name: str, pretrained: bool = False, **overrides) -> GlowModel:
        """A model of preset `name` ("digits", "mnist", "cifar10", "celeba64",
        "imagenet32", "imagenet64"; see `tfp_glow.models.PRESETS`), with `overrides`.

        With `pretrained=True`, the weights trained on the preset's dataset that ship with
        the package (the digits preset's, `tfp_glow.pretrained`), for inference: no
        download, and no overrides of the architecture.
        """
        if not pretrained:
            return cls(**preset_config(name, **overrides))
        config = pretrained_weights.info(name)["config"]
        changed = sorted(k for k in overrides if k not in pretrained_weights.NOT_ARCHITECTURE)
        if changed:
            raise ValueError(
                "A pretrained model keeps the architecture it was trained with; only "
                f"{list(pretrained_weights.NOT_ARCHITECTURE)} may be overridden. Received: {changed}"
            )
        model = cls(**{**config, **overrides})
        model.load_weights(pretrained_weights.weights_path(name))
        return model

    def compile(self, optimizer=None, loss=None, metrics=None, jit_compile: bool = False, **kwargs):
        """`keras.Model.compile`; the optimizer defaults to the paper's (Adam, lr 1e-3, warm-up).

        The loss is the model's own (bits per dimension) and so are its metrics, so `loss` and
        `metrics` are refused. `jit_compile` is `False` unless asked for: Keras's default
        ("auto") would turn XLA on whenever a GPU is visible.
        """
        for name, value in (("loss", loss), ("metrics", metrics)):
            if value is not None:
                raise ValueError(
                    f"GlowModel trains on its own loss (the negative log-likelihood in bits per "
                    f"dimension) and reports its own metrics, so it takes no `{name}`. "
                    f"Received: {name}={value!r}"
                )
        super().compile(
            optimizer=optimizer if optimizer is not None else default_optimizer(),
            jit_compile=jit_compile,
            **kwargs,
        )

    def compile_from_config(self, config):
        # As keras.Model's, which skips models whose compile() is overridden: a
        # reloaded model gets its optimizer back, built, so its state is restored.
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def summary(self, print_fn=None, **kwargs):
        """Keras's summary, then the flow's parameters per level (its variables are not layers)."""
        super().summary(print_fn=print_fn, **kwargs)
        (print_fn or print)(applications.flow_summary(self))

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

    @property
    def input_levels(self) -> int:
        """Levels of the integer images the model takes and samples: `num_bins`, or 256 if n-bit."""
        return self.quantization.input_levels

    # Integer images <-> [-0.5, 0.5].

    def preprocess(self, images) -> tf.Tensor:
        """Integer images to x in [-0.5, 0.5] at the centres of their levels' bins (checked)."""
        return self.quantization.centres(self.quantization.levels(images))

    def postprocess(self, x) -> tf.Tensor:
        """x in [-0.5, 0.5] to uint8 images (n-bit levels scaled back to [0, 256))."""
        return self.quantization.to_images(x)

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

    def _labels(self, labels, num_images) -> tf.Tensor | None:
        return check_labels(labels, num_images, self.num_classes)

    # Initialization.

    def is_initialized(self) -> bool:
        """Whether every ActNorm of the flow is initialized."""
        return bool(self._glow.is_initialized())

    def initialize(self, images, labels=None) -> None:
        """Data-dependent ActNorm initialization from a real batch; idempotent.

        The batch is dequantized with uniform noise (a learned dequantizer is untrained
        then). A class-conditional model takes the images' `labels` but does not need
        them: they reach no ActNorm (the priors come after every step of flow).
        """
        levels = self.quantization.levels(images)
        x = Quantization(self.image_shape, self.num_bins, self.n_bits).dequantize(
            levels, self.seed_generator
        )[0]
        if self.num_classes is not None and labels is None:
            labels = tf.zeros(tf.shape(x)[:1], tf.int32)
        labels = self._labels(labels, tf.shape(x)[0])
        self._glow.initialize(x, **({} if labels is None else {"labels": labels}))

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
        """`keras.Model.fit`, initializing the ActNorms from `x` first if needed.

        A `tf.data.Dataset` is taken in its own order (it shuffles itself, as
        `tfp_glow.data.load` does): `shuffle` defaults to False for it, which is what Keras
        does with a dataset anyway, without its warning that `shuffle=True` is ignored.
        """
        if x is not None:
            self._check_data_labels(x, args[0] if args else kwargs.get("y"))
            self._initialize_from(x)
        # `shuffle` is fit's 9th parameter: the 8th after x.
        if isinstance(x, tf.data.Dataset) and len(args) < 8:
            kwargs.setdefault("shuffle", False)
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
        check_data_has_labels(has_labels, self.num_classes)

    def symbolic_build_batch(self):
        """The batch Keras builds the optimizer from under a strategy (see
        `_compat.BuildsWithoutData`): the model is built at construction, so the image shape
        is all it needs."""
        return np.zeros((1, *self.image_shape), np.uint8)

    # Training.

    @property
    def metrics(self):
        metrics = [self.loss_tracker, self.bits_per_dim_tracker, self.nonfinite_tracker]
        return metrics + ([self.class_loss_tracker] if self.class_loss_tracker is not None else [])

    def call(self, images, labels=None, training=False):
        """Per-image bits per dimension: the one-sample bound, with dequantization noise."""
        return self._one_sample_bits(images, labels, training=bool(training))[0]

    def _one_sample_bits(self, images, labels, training=False):
        """Per-image bits/dim of one noise sample, -(log p(x) - log q(u | k)) / D in bits with the
        -D log(num_bins) term, and the classifier's cross-entropy in bits (`None` without one).
        With `training`, through the coupling networks' dropout (if any)."""
        x, log_q = self.quantization.dequantize(self.quantization.levels(images), self._noise_seed())
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
            bpd, class_bits = self._one_sample_bits(images, labels, training=True)
            loss = tf.reduce_mean(bpd)
            if class_bits is not None:
                loss += self.class_loss_weight * tf.reduce_mean(class_bits)
            # Gradients are summed over replicas: scale so that they average. Under float16 the
            # optimizer (a LossScaleOptimizer) scales the loss up and unscales the gradients.
            scaled = self.optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)
        gradients = tape.gradient(scaled, self.trainable_variables)
        # A loss-scaling optimizer skips a step whose scaled gradients overflow, and lowers the
        # scale: that is not a failed step. Any optimizer's step is skipped for a non-finite loss.
        loss_scaling = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        finite = self._all_replicas_finite([loss] if loss_scaling else [loss, *gradients])
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
        bpd, class_bits = self._one_sample_bits(images, labels)
        loss = tf.reduce_mean(bpd)
        reported = [self.loss_tracker, self.bits_per_dim_tracker]
        if class_bits is not None:
            loss += self.class_loss_weight * tf.reduce_mean(class_bits)
            self.class_loss_tracker.update_state(class_bits)
            reported.append(self.class_loss_tracker)
        self.loss_tracker.update_state(loss)
        self.bits_per_dim_tracker.update_state(bpd)
        return self._logs(reported)

    # Compiled graphs of the flow: eager TFP calls through dozens of steps are slow. One graph per
    # job, traced once per model for every batch size, with the labels of a conditional model as
    # a second input; the same graph in every process gives bit-identical results after a reload.

    def _compile_graphs(self) -> None:
        labels = [tf.TensorSpec([None], tf.int32)] if self.num_classes is not None else []
        images = tf.TensorSpec([None, *self.image_shape], tf.float32)
        levels = tf.TensorSpec([None, *self.image_shape], tf.int32)
        latents = tf.TensorSpec([None, self.event_size], tf.float32)
        seed = tf.TensorSpec([2], tf.int32)

        def compiled(function, *specs):
            return tf.function(function, input_signature=[*specs, *labels])

        self._log_prob_graph = compiled(lambda x, labels=None: self._glow_log_prob(x, labels), images)
        self._encode_graph = compiled(lambda x, labels=None: self._glow.inverse(x, **_kwargs(labels)), images)
        self._decode_graph = compiled(
            lambda z, labels=None: self._glow.forward(z, **_kwargs(labels)), latents
        )
        self._log_weight_graph = compiled(self._log_weight, levels, seed)

    def _log_weight(self, levels, seed, labels=None):
        """log p(x_s) - log q(u_s | k) of one noise sample per image, from a stateless seed."""
        x, log_q = self.quantization.dequantize(levels, seed)
        return self._glow_log_prob(x, labels) - log_q

    def _call_graph(self, graph, inputs, labels, num_images):
        labels = self._labels(labels, num_images)
        return graph(inputs) if labels is None else graph(inputs, labels)

    # Using a trained model.

    def log_prob(self, images, labels=None) -> tf.Tensor:
        """log p(x) (log p(x | y) given `labels`) of the continuous model at the bin centres x.

        A density on [-0.5, 0.5]^D, deterministic: what serving and `score` use. It is not the
        probability of the discrete image; `bits_per_dim` estimates that.
        """
        x = self.preprocess(images)
        return self._call_graph(self._log_prob_graph, x, labels, tf.shape(x)[0])

    def bits_per_dim(
        self,
        images,
        labels=None,
        num_samples: int = 1,
        seed: int = 0,
        batch_size: int = 256,
        verbose: int = 0,
    ) -> tf.Tensor:
        """float32 [N]: -log2 P(k) / D of each image, estimated with `num_samples` samples u_s of
        the dequantization noise q:

            log P(k) >= logsumexp_s [log p(x_s) - log q(u_s | k)] - log S,   x_s = (k + u_s) / num_bins - 0.5

        (then bits per dimension with the -D log(num_bins) term). One sample is the paper's
        estimate, the figure `evaluate` reports; more importance samples tighten the bound
        towards the discrete likelihood. Deterministic for a given `seed`. `verbose=1` shows a
        progress bar over the batches of `batch_size` images.
        """
        for name, value in (("num_samples", num_samples), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        levels = self.quantization.levels(images)
        labels = self._labels(labels, tf.shape(levels)[0])
        num_images = int(levels.shape[0])
        progress = keras.utils.Progbar(num_images * num_samples, verbose=verbose, unit_name="pass")
        pieces = []
        for start in range(0, num_images, batch_size):
            batch = levels[start : start + batch_size]
            batch_labels = () if labels is None else (labels[start : start + batch_size],)
            log_weights = []
            for s in range(num_samples):
                log_weights.append(self._log_weight_graph(batch, tf.constant([seed, s]), *batch_labels))
                progress.add(int(batch.shape[0]))
            log_p = tf.reduce_logsumexp(tf.stack(log_weights), axis=0) - np.log(num_samples)
            pieces.append(bits_per_dim(log_p, self.image_shape, self.num_bins))
        return tf.concat(pieces, 0)

    def discrete_bits_per_dim(self, images, labels=None, num_samples: int = 64, **kwargs) -> tf.Tensor:
        """`bits_per_dim` with 64 importance samples by default: the discrete likelihood's estimate."""
        return self.bits_per_dim(images, labels, num_samples=num_samples, **kwargs)

    def encode(self, images, labels=None) -> tf.Tensor:
        """Flat latents [N, D] of all levels (`model.bijector.split_latent` splits them)."""
        x = self.preprocess(images)
        return self._call_graph(self._encode_graph, x, labels, tf.shape(x)[0])

    def decode(self, latents, labels=None) -> tf.Tensor:
        """uint8 images from flat latents [N, D]; `decode(encode(x, y), y) == x` exactly."""
        latents = tf.convert_to_tensor(latents, tf.float32)
        self._glow.split_latent(latents)  # a clear error for a wrong shape, before tracing
        latents = tf.debugging.check_numerics(
            latents, "GlowModel.decode expects finite latents; Received: latents with NaN or Inf"
        )
        return self.postprocess(self._call_graph(self._decode_graph, latents, labels, tf.shape(latents)[0]))

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

    # Applications: thin methods over tfp_glow.models.applications.

    def temperature_grid(
        self, temperatures: Sequence[float], num_per_row: int = 8, seed: int = 0
    ) -> tf.Tensor:
        """uint8 [len(temperatures), num_per_row, H, W, C]: one row per temperature, same noise.

        See `tfp_glow.models.applications.temperature_grid`."""
        return applications.temperature_grid(self, temperatures, num_per_row, seed)

    def interpolate(self, image_a, image_b, steps: int = 8, verbose: int = 0) -> tf.Tensor:
        """uint8 [steps, H, W, C] from `image_a` to `image_b`, linear in the latent of every level.

        See `tfp_glow.models.applications.interpolate`."""
        return applications.interpolate(self, image_a, image_b, steps, verbose=verbose)

    def attribute_direction(self, images_with, images_without) -> tf.Tensor:
        """float32 [D]: mean latent of `images_with` minus that of `images_without`.

        See `tfp_glow.models.applications.attribute_direction`."""
        return applications.attribute_direction(self, images_with, images_without)

    def manipulate(self, image, direction, alphas: Sequence[float]) -> tf.Tensor:
        """uint8 [len(alphas), H, W, C]: the image decoded from z + alpha * direction.

        See `tfp_glow.models.applications.manipulate`."""
        return applications.manipulate(self, image, direction, alphas)

    def inpaint(
        self,
        images,
        mask,
        steps: int = 300,
        learning_rate: float = 0.05,
        langevin: bool = False,
        seed: int = 0,
        verbose: int = 0,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(uint8 completed images, their scores): the pixels where `mask` is True filled by
        gradient ascent on log p (or Langevin sampling), observed pixels kept exactly.

        See `tfp_glow.models.applications.inpaint`."""
        return applications.inpaint(self, images, mask, steps, learning_rate, langevin, seed, verbose=verbose)

    def score(self, images, labels=None, batch_size: int = 256, verbose: int = 0) -> tf.Tensor:
        """float32 [N]: the density score of each image, -log2 p(x) / D at the bin centres plus
        log2(num_bins) (bits/dim units, not a bits/dim of the model), in batches of `batch_size`.

        See `tfp_glow.models.applications.score`."""
        return applications.score(self, images, batch_size, verbose=verbose, labels=labels)


def _kwargs(labels) -> dict:
    return {} if labels is None else {"labels": labels}
