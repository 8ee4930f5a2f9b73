"""Glow: the multi-scale flow from a flat latent vector to an image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfp_glow._checks import check_dropout, check_int
from tfp_glow.bijectors._base import GlowBijector, check_finite_for_initialization
from tfp_glow.bijectors.flow_step import COUPLINGS, PERMUTATIONS
from tfp_glow.bijectors.split_prior import SplitPrior
from tfp_glow.bijectors.squeeze import Expand
from tfp_glow.bijectors.stacked_flow_steps import StackedFlowSteps, check_memory_efficient
from tfp_glow.bijectors.top_prior import TopPrior
from tfp_glow.functional import squeeze
from tfp_glow.functional.coupling import merge_channels, split_channels

__all__ = ["Glow"]


def _per_example(log_det, flat_batch, batch_shape):
    """A log-det summed as scalars and [N] vectors, shaped as the caller's batch."""
    log_det = tf.broadcast_to(tf.cast(log_det, flat_batch.dtype), tf.shape(flat_batch)[:1])
    return tf.reshape(log_det, batch_shape)


class Glow(GlowBijector):
    """The multi-scale Glow [1]: a flat latent [..., D] <-> an image [..., H, W, C].

    Inverse (encoding, image -> latent), for levels l = 1..L:

        x <- squeeze(x)                          # [H/2^l, W/2^l, ...]
        x <- step_K(...step_1(x))                # K steps of flow
        if l < L: (x, z_l) <- split(x)           # z_l leaves, whitened by SplitPrior
        else:     z_L <- x                       # (whitened by TopPrior if learned)
        z = concat(flatten(z_1), ..., flatten(z_L))

    Forward (generative) runs the same maps backwards: it is the map from the
    standard-normal latent to images, and `TransformedDistribution(N(0, I_D), glow)`
    is the model (see `glow_distribution`). `D = H * W * C`. The flat latent holds
    every level's piece, finest first and coarsest (top) last, so that decoding a
    latent reproduces the image exactly; `split_latent` / `merge_latents` convert
    between the flat vector and the per-level images of shapes `latent_shapes`.

    Class-conditional Glow (`num_classes=K`, the reference code's `ycond`): the
    learned top prior, and with `conditional_split_priors=True` every split prior,
    depend on the class through a zero-initialized linear map of the one-hot label
    (see `TopPrior`, `SplitPrior`). The label is the bijector's keyword argument
    `labels`: integer class indices in [0, K) whose shape broadcasts to the batch
    shape (a scalar conditions the whole batch). It goes to the priors only;
    the steps of flow stay unconditional. Through TFP: `dist.log_prob(x,
    bijector_kwargs={"labels": y})` and `dist.sample(n, bijector_kwargs={"labels":
    y})`. Untrained, a conditional Glow equals the unconditional one.

    The K steps of a level are one bijector, `steps[level]` (`StackedFlowSteps`),
    which owns each parameter of the level as one variable stacked over the steps,
    [K, ...]: the optimizer, the moving averages and checkpoints see one step's
    variables per level whatever K is. `steps[level][k]` is a read-only `FlowStep`
    view of step k. With `memory_efficient` the steps of a level run as one
    `tf.while_loop` (the graph holds one step per level) whose gradient rebuilds
    the activations instead of storing them; otherwise they are unrolled.

    Every ActNorm is initialized by `initialize(images)`, level by level on the real
    activations; before that they are the identity (see `ActNorm`). With zero
    initial output convolutions, an initialized untrained Glow's log-det is the
    ActNorms' alone.

    #### Examples

    ```python
    glow = tfp_glow.Glow(image_shape=(32, 32, 3), num_levels=3, num_steps=8,
                         hidden_channels=64)
    glow.initialize(images)            # once, on a real batch in [-0.5, 0.5]
    dist = tfp_glow.glow_distribution(glow)
    nll = -dist.log_prob(images)       # images: [N, 32, 32, 3]
    samples = tfp_glow.glow_distribution(glow, temperature=0.7).sample(16)

    conditional = tfp_glow.Glow(image_shape=(32, 32, 3), num_levels=3, num_steps=8,
                                learn_top_prior=True, num_classes=10)
    conditional.initialize(images, labels=labels)         # labels: int [N]
    dist = tfp_glow.glow_distribution(conditional)
    nll = -dist.log_prob(images, bijector_kwargs={"labels": labels})
    sevens = dist.sample(16, bijector_kwargs={"labels": 7})
    ```

    #### References

    [1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
         1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
         https://arxiv.org/abs/1807.03039
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_levels: int,
        num_steps: int,
        hidden_channels: int = 512,
        coupling: str = "affine",
        permutation: str = "conv1x1",
        lu_decomposed: bool = True,
        split_prior: bool = True,
        learn_top_prior: bool = False,
        memory_efficient: bool | str = False,
        scale_fn: str = "sigmoid",
        seed: int | None = None,
        num_classes: int | None = None,
        conditional_split_priors: bool = False,
        dropout: float = 0.0,
        dtype: tf.DType = tf.float32,
        validate_args: bool = False,
        name: str = "glow",
        compute_dtype: str | None = None,
    ):
        """Creates a Glow bijector.

        Args:
          image_shape: `(H, W, C)`; H and W must be divisible by `2**num_levels`.
          num_levels: Python `int` L >= 1, the number of levels (scales).
          num_steps: Python `int` K >= 1, steps of flow per level.
          hidden_channels: Python `int`, width of the coupling networks. Default 512.
          coupling: `'affine'` (default) or `'additive'`.
          permutation: `'conv1x1'` (default), `'reverse'` or `'shuffle'`.
          lu_decomposed: Python `bool`, LU form of the 1x1 convolutions. Default `True`.
          split_prior: Python `bool`, learned prior N(mu(h), sigma(h)) for the
            channels that leave at each split (default `True`); `False` models them
            as standard normal.
          learn_top_prior: Python `bool`, learned per-channel mean and scale of the
            top latent (default `False`: standard normal).
          memory_efficient: what the backward pass of the encoding direction
            (training) stores (`StackedFlowSteps`): `False` (default) every
            activation; `True` or `"recompute"` each step's input only, recomputing
            the step in the backward pass (exact gradients, about one more pass of
            compute); `"reversible"` nothing per step, rebuilding each step's input
            by the exact inverse (memory independent of depth, round-off compounds
            over a level). Memory-efficient levels run as one `tf.while_loop`, so the
            graph holds one step per level whatever K is.
          scale_fn: the couplings' scale, `'sigmoid'` (default) or `'exp'`.
          seed: Python `int` or `None`, seed of all initial weights.
          num_classes: Python `int` K or `None` (default, unconditional): a
            class-conditional top prior for `labels` in [0, K); needs
            `learn_top_prior=True`.
          conditional_split_priors: Python `bool`, also condition every split
            prior on the label. Default `False`; needs `num_classes` and
            `split_prior=True`.
          dropout: Python `float` in [0, 1), dropout rate of the coupling networks'
            hidden units in calls given a `dropout_seed` keyword argument (an int32
            [2] stateless seed; `GlowModel` passes one in training steps only).
            Each seed fixes one invertible map. Default 0.
          dtype: `tf.DType` of the variables and images. Default `tf.float32`.
          compute_dtype: dtype the coupling and split-prior networks compute in, for mixed
            precision ('bfloat16' or 'float16'); `None` (default): `dtype`. Variables, inputs,
            outputs and log-dets stay `dtype`.
          validate_args: Python `bool`, run-time checks of shapes and ActNorm
            initialization. Default `False`.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: for a malformed `image_shape`, H or W not divisible by
            `2**num_levels`, `num_levels` or `num_steps` < 1, an unknown
            `coupling` or `permutation`, or conditioning options that do not fit
            together (see `num_classes`, `conditional_split_priors`).
        """
        parameters = dict(locals())
        image_shape = tuple(image_shape) if isinstance(image_shape, (list, tuple)) else image_shape
        if not (
            isinstance(image_shape, tuple)
            and len(image_shape) == 3
            and all(
                isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in image_shape
            )
        ):
            raise ValueError(
                f"`image_shape` must be (height, width, channels) of positive integers. "
                f"Received: image_shape={image_shape!r}"
            )
        num_levels = check_int(num_levels, "num_levels")
        num_steps = check_int(num_steps, "num_steps")
        check_int(hidden_channels, "hidden_channels")
        check_memory_efficient(memory_efficient)
        check_dropout(dropout)
        height, width, channels = (int(n) for n in image_shape)
        factor = 2**num_levels
        if height % factor or width % factor:
            raise ValueError(
                f"Glow with num_levels={num_levels} squeezes {num_levels} times, so the image "
                f"height and width must be divisible by 2**num_levels = {factor}. "
                f"Received: image_shape={image_shape!r}"
            )
        if coupling not in COUPLINGS:
            raise ValueError(f"`coupling` must be one of {COUPLINGS}. Received: coupling={coupling!r}")
        if permutation not in PERMUTATIONS:
            raise ValueError(
                f"`permutation` must be one of {PERMUTATIONS}. Received: permutation={permutation!r}"
            )
        if num_classes is not None:
            num_classes = check_int(num_classes, "num_classes")
            if not learn_top_prior:
                raise ValueError(
                    "A class-conditional Glow conditions its learned top prior on the label: "
                    "`num_classes` needs `learn_top_prior=True`. "
                    f"Received: num_classes={num_classes}, learn_top_prior={learn_top_prior!r}"
                )
        if conditional_split_priors and (num_classes is None or not split_prior or num_levels == 1):
            raise ValueError(
                "`conditional_split_priors=True` needs `num_classes`, `split_prior=True` and "
                "num_levels >= 2 (split priors exist between levels). "
                f"Received: num_classes={num_classes!r}, split_prior={split_prior!r}, num_levels={num_levels}"
            )

        self._image_shape = (height, width, channels)
        self._num_levels = num_levels
        self._num_steps = num_steps
        self._memory_efficient = memory_efficient
        self._num_classes = num_classes
        rng = np.random.default_rng(seed)
        with tf.name_scope(name) as name:
            self.expand = Expand(2, validate_args=validate_args)
            self.steps = []
            self.split_priors = []
            latent_shapes = []
            self._kept_channels = []
            h, w, c = height, width, channels
            for level in range(num_levels):
                h, w, c = h // 2, w // 2, c * 4
                self.steps.append(
                    StackedFlowSteps(
                        num_steps,
                        c,
                        hidden_channels,
                        coupling=coupling,
                        permutation=permutation,
                        lu_decomposed=lu_decomposed,
                        scale_fn=scale_fn,
                        dropout=dropout,
                        seed=[int(rng.integers(2**31 - 2**16)) for _ in range(num_steps)],
                        memory_efficient=memory_efficient,
                        dtype=dtype,
                        compute_dtype=compute_dtype,
                        validate_args=validate_args,
                        name=f"level{level}_steps",
                    )
                )
                if level < num_levels - 1:
                    if split_prior:
                        self.split_priors.append(
                            SplitPrior(
                                c,
                                num_classes=num_classes if conditional_split_priors else None,
                                dtype=dtype,
                                compute_dtype=compute_dtype,
                                validate_args=validate_args,
                                name=f"level{level}_split_prior",
                            )
                        )
                    latent_shapes.append((h, w, c - c // 2))
                    c = c // 2
                    self._kept_channels.append(c)
                else:
                    latent_shapes.append((h, w, c))
            self.top_prior = None
            if learn_top_prior:
                self.top_prior = TopPrior(
                    c, num_classes=num_classes, dtype=dtype, validate_args=validate_args, name="top_prior"
                )
            self._latent_shapes = tuple(latent_shapes)
            super().__init__(
                forward_min_event_ndims=1,
                inverse_min_event_ndims=3,
                validate_args=validate_args,
                dtype=dtype,
                parameters=parameters,
                name=name,
            )

    # Shapes.

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._image_shape

    @property
    def num_levels(self) -> int:
        return self._num_levels

    @property
    def num_steps(self) -> int:
        return self._num_steps

    @property
    def memory_efficient(self) -> bool | str:
        """What the encoding direction's backward pass stores (see `StackedFlowSteps`)."""
        return self._memory_efficient

    @property
    def num_classes(self) -> int | None:
        """K for a class-conditional Glow, else `None`."""
        return self._num_classes

    @property
    def event_size(self) -> int:
        """D = H * W * C, the size of the flat latent."""
        return int(np.prod(self._image_shape))

    @property
    def latent_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """Shapes of the per-level latents, finest first and the top level last."""
        return self._latent_shapes

    def split_latent(self, z: tf.Tensor) -> list[tf.Tensor]:
        """Views a flat latent [..., D] as per-level latents [..., h_l, w_l, c_l].

        The pieces are in the order of `latent_shapes`: the latent that leaves at
        the first (finest) split first, the top (coarsest) latent last.
        """
        z = tf.convert_to_tensor(z, dtype=self.dtype, name="z")
        self._check_flat(z)
        sizes = [int(np.prod(s)) for s in self._latent_shapes]
        batch = tf.shape(z)[:-1]
        return [
            tf.reshape(piece, tf.concat([batch, shape], 0))
            for piece, shape in zip(tf.split(z, sizes, axis=-1), self._latent_shapes, strict=True)
        ]

    def merge_latents(self, latents: Sequence[tf.Tensor]) -> tf.Tensor:
        """The inverse of `split_latent`: per-level latents to the flat [..., D]."""
        if len(latents) != self._num_levels:
            raise ValueError(
                f"Expected {self._num_levels} latents, one per level, of shapes {list(self._latent_shapes)}. "
                f"Received: {len(latents)} latents"
            )
        flat = []
        for latent, shape in zip(latents, self._latent_shapes, strict=True):
            latent = tf.convert_to_tensor(latent, dtype=self.dtype)
            if (
                latent.shape.rank is not None
                and tuple(latent.shape[-3:]) != shape
                and None not in latent.shape[-3:]
            ):
                raise ValueError(
                    f"Expected latents of shapes {list(self._latent_shapes)}. "
                    f"Received: shape={latent.shape.as_list()}"
                )
            flat.append(tf.reshape(latent, tf.concat([tf.shape(latent)[:-3], [-1]], 0)))
        return tf.concat(flat, axis=-1)

    def _check_flat(self, z):
        if z.shape.rank == 0 or (z.shape.rank is not None and z.shape[-1] not in (None, self.event_size)):
            raise ValueError(
                f"Glow expects flat latents of shape [..., {self.event_size}]. "
                f"Received: shape={z.shape.as_list()}"
            )

    def _check_image(self, x):
        shape = x.shape
        if shape.rank is not None and (
            shape.rank < 3
            or any(d is not None and d != e for d, e in zip(shape[-3:], self._image_shape, strict=True))
        ):
            raise ValueError(
                f"Glow expects images of shape [..., {', '.join(map(str, self._image_shape))}]. "
                f"Received: shape={shape.as_list()}"
            )

    def _forward_event_shape(self, input_shape):
        return input_shape[:-1].concatenate(self._image_shape)

    def _forward_event_shape_tensor(self, input_shape):
        return tf.concat([input_shape[:-1], self._image_shape], 0)

    def _inverse_event_shape(self, output_shape):
        return output_shape[:-3].concatenate([self.event_size])

    def _inverse_event_shape_tensor(self, output_shape):
        return tf.concat([output_shape[:-3], [self.event_size]], 0)

    # The two directions. Both work on one flat batch dimension (fewer ops to trace and run)
    # and restore the caller's batch shape at the end.

    def _flat_labels(self, labels, batch_shape):
        """`labels` broadcast to the caller's batch shape and flattened like the batch."""
        if self._num_classes is None:
            if labels is not None:
                raise ValueError(
                    f"{self.name} is not class-conditional (num_classes=None), so it takes no labels. "
                    f"Received: labels={labels!r}"
                )
            return None
        if labels is None:
            raise ValueError(
                f"{self.name} is class-conditional (num_classes={self._num_classes}): pass integer class "
                f"labels in [0, {self._num_classes}) as the `labels` keyword argument (with TFP: "
                "bijector_kwargs={'labels': labels}). Received: labels=None"
            )
        labels = tf.convert_to_tensor(labels, name="labels")
        return tf.reshape(tf.broadcast_to(labels, batch_shape), [-1])

    def _prior_labels(self, prior, labels):
        # Only conditional priors take labels.
        return {} if prior.num_classes is None else {"labels": labels}

    def _leave(self, level, x, labels):
        """The end of level `level` < L - 1 in the encoding direction: the split prior's
        inverse, then the split. Returns (kept channels, leaving latent z, log-det)."""
        log_det = 0.0
        if self.split_priors:
            prior = self.split_priors[level]
            x, log_det = prior.inverse_and_log_det(x, **self._prior_labels(prior, labels))
        x, z = split_channels(x, self._kept_channels[level])
        return x, z, log_det

    def _top(self, x, labels):
        """The top latent in the encoding direction, and its prior's log-det."""
        if self.top_prior is None:
            return x, 0.0
        return self.top_prior.inverse_and_log_det(x, **self._prior_labels(self.top_prior, labels))

    def _flat_latent(self, latents, batch_shape):
        flat = self.merge_latents(latents)
        return flat, tf.reshape(flat, tf.concat([batch_shape, [self.event_size]], 0))

    def _inverse_and_log_det(self, y, labels=None, **conditioning):
        self._check_image(y)
        batch_shape = tf.shape(y)[:-3]
        labels = self._flat_labels(labels, batch_shape)
        x = tf.reshape(y, [-1, *self._image_shape])
        latents = []
        log_det = 0.0
        for level in range(self._num_levels):
            x = squeeze.squeeze(x)
            x, step_log_det = self.steps[level].inverse_and_log_det(x, **conditioning)
            log_det += step_log_det
            if level < self._num_levels - 1:
                x, z, prior_log_det = self._leave(level, x, labels)
                log_det += prior_log_det
                latents.append(z)
        x, top_log_det = self._top(x, labels)
        latents.append(x)
        flat, z = self._flat_latent(latents, batch_shape)
        return z, _per_example(log_det + top_log_det, flat, batch_shape)

    def _forward_and_log_det(self, z, labels=None, **conditioning):
        self._check_flat(z)
        batch_shape = tf.shape(z)[:-1]
        labels = self._flat_labels(labels, batch_shape)
        latents = self.split_latent(tf.reshape(z, [-1, self.event_size]))
        x = latents[-1]
        log_det = 0.0
        if self.top_prior is not None:
            x, ldj = self.top_prior.forward_and_log_det(x, **self._prior_labels(self.top_prior, labels))
            log_det += ldj
        for level in reversed(range(self._num_levels)):
            if level < self._num_levels - 1:
                x = merge_channels(x, latents[level])
                if self.split_priors:
                    prior = self.split_priors[level]
                    x, ldj = prior.forward_and_log_det(x, **self._prior_labels(prior, labels))
                    log_det += ldj
            x, ldj = self.steps[level].forward_and_log_det(x, **conditioning)
            log_det += ldj
            x = squeeze.unsqueeze(x)
        images = tf.reshape(x, tf.concat([batch_shape, self._image_shape], 0))
        return images, _per_example(log_det, x, batch_shape)

    def initialize(self, images: tf.Tensor, labels=None, **conditioning) -> tf.Tensor:
        """Data-dependent initialization of every ActNorm, level by level; idempotent.

        Runs the encoding direction on a real batch, initializing each ActNorm (in
        the steps and in the coupling networks) on the activations that actually
        reach it. ActNorms already initialized keep their parameters.

        Args:
          images: float `Tensor` [N, H, W, C], a real batch (the paper uses a few
            hundred images) in the model's input range.
          labels: integer class labels of the images, required by (and only by)
            a class-conditional Glow. They reach no ActNorm (the priors come
            after every step), only the returned latent.
          **conditioning: conditioning inputs of the couplings, if any (ignored:
            initialization uses no dropout).

        Returns:
          The flat latent `inverse(images)` after initialization.
        """
        images = tf.convert_to_tensor(images, dtype=self.dtype, name="images")
        self._check_image(images)
        images = check_finite_for_initialization(images, f"Glow '{self.name}'")
        self.clear_cache()
        batch_shape = tf.shape(images)[:-3]
        labels = self._flat_labels(labels, batch_shape)
        x = tf.reshape(images, [-1, *self._image_shape])
        latents = []
        for level in range(self._num_levels):
            x = self.steps[level].initialize(squeeze.squeeze(x))
            if level < self._num_levels - 1:
                x, z, _ = self._leave(level, x, labels)
                latents.append(z)
        latents.append(self._top(x, labels)[0])
        return self._flat_latent(latents, batch_shape)[1]

    def is_initialized(self) -> tf.Tensor:
        """Whether every ActNorm of the flow is initialized (a boolean scalar)."""
        return tf.reduce_all([level.is_initialized() for level in self.steps])

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args or is_init:
            return []
        return [
            tf.debugging.Assert(
                self.is_initialized(),
                [
                    f"Glow '{self.name}' is used before its ActNorms were initialized: call "
                    "initialize(batch) on a real data batch first."
                ],
            )
        ]

    @property
    def actnorms(self) -> list:
        """Read-only views of every ActNorm, in encoding order: each step's own (an `ActNorm`),
        then its coupling network's two (modules with `loc`, `log_scale` and `initialized`)."""
        found = []
        for level in self.steps:
            for step in level:
                network = step.coupling.conditioner
                found.extend([step.actnorm, network.actnorm_in, network.actnorm_hidden])
        return found
