"""What a trained Glow is used for: temperature grids, interpolation, manipulation, inpainting, scoring.

Every function takes a trained `GlowModel` and works in its latent space or on its
log-density; none of them trains the model. With `z = f^{-1}(x)` the flat latent of
every level (`model.encode`) and `x = f(z)` the generative direction (`model.decode`):

- `temperature_grid`: rows `f(T_i * eps)` for one draw `eps ~ N(0, I_D)`, one row
  per temperature `T_i` (the paper's Figure 8). `T = 0` decodes the latent mode `z = 0`.
- `interpolate`: `f((1 - t) z_a + t z_b)` for `t` evenly spaced in [0, 1] (Figure 5);
  the latent of every level is interpolated, so the endpoints are `a` and `b` exactly.
- `attribute_direction` / `manipulate`: the direction `d = mean z(with) - mean
  z(without)` between the mean latents of images with and without an attribute, and
  `f(z + alpha * d)` (the paper's Section 5.2 and Figure 6).
- `inpaint`: the missing pixels `x_m` of `x = (x_o, x_m)` that maximize `log p(x)` with
  the observed pixels `x_o` fixed, by gradient ascent (or sampled from `p(x_m | x_o)` by
  Langevin dynamics).
- `score`: the density score of each image, `-(log p(x_c) - D log(num_bins)) / (D log 2)`
  with x_c the bin centres: the number used for out-of-distribution detection, in bits/dim
  units but not a bits/dim of the model (`GlowModel.bits_per_dim` estimates that).
- `flow_summary`: the flow's parameters per level, for `GlowModel.summary`.

The functions are also `GlowModel` methods (`model.interpolate(a, b, 8)` ...): `glow_model`
imports this module, which takes any model object and imports no model.

#### Examples

```python
model = tfp_glow.GlowModel.from_preset("digits")
model.fit(tfp_glow.data.load("digits", "train", 64), epochs=10)
x = tfp_glow.data.load_numpy("digits", "test")
grid = temperature_grid(model, [0.0, 0.5, 0.7, 1.0], num_per_row=8, seed=0)   # uint8 [4, 8, 8, 8, 1]
path = interpolate(model, x[0], x[1], steps=8)                                 # uint8 [8, 8, 8, 1]
mask = np.zeros(x[:16].shape, bool); mask[:, 4:] = True                        # bottom half missing
completed, scores = inpaint(model, x[:16], mask)
```

#### References

[1]: Diederik P. Kingma, Prafulla Dhariwal. Glow: Generative Flow with Invertible
     1x1 Convolutions. In _Neural Information Processing Systems_, 2018.
[2]: Chunyuan Li, Changyou Chen, David Carlson, Lawrence Carin. Preconditioned Stochastic
     Gradient Langevin Dynamics for Deep Neural Networks. In _AAAI Conference on Artificial
     Intelligence_, 2016.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfp_glow.distributions import bits_per_dim
from tfp_glow.models.labels import check_labels

__all__ = [
    "attribute_direction",
    "flow_summary",
    "inpaint",
    "interpolate",
    "manipulate",
    "score",
    "temperature_grid",
]


def temperature_grid(model, temperatures: Sequence[float], num_per_row: int = 8, seed: int = 0) -> tf.Tensor:
    """Samples at several temperatures from the same noise: one row per temperature.

    Row i is `f(T_i * eps)` with one draw `eps ~ N(0, I_D)` shared by every row, so the
    rows differ only by the temperature (the paper's Figure 8). Row i equals
    `model.sample(num_per_row, T_i, seed)`. `T = 0` decodes the latent mode `z = 0` and
    does not depend on `seed`.

    Args:
      model: a trained `GlowModel`.
      temperatures: non-empty sequence of finite Python floats >= 0.
      num_per_row: Python `int` >= 1, samples per temperature. Default 8.
      seed: Python `int`, seed of the shared noise. Default 0.

    Returns:
      uint8 `Tensor` [len(temperatures), num_per_row, H, W, C].

    Raises:
      ValueError: for an empty `temperatures`, a negative or non-finite temperature, or
        `num_per_row` < 1.
    """
    temperatures = _check_floats("temperatures", temperatures)
    for t in temperatures:
        if t < 0:
            raise ValueError(f"Every temperature must be >= 0. Received: temperatures={list(temperatures)}")
    _check_positive_int("num_per_row", num_per_row)
    _check_int("seed", seed)
    eps = tf.random.stateless_normal([int(num_per_row), model.event_size], seed=[int(seed), 0])
    scales = tf.constant(temperatures, tf.float32)[:, None, None]
    latents = tf.reshape(scales * eps[None], [-1, model.event_size])
    images = model.decode(latents)
    return tf.reshape(images, [len(temperatures), int(num_per_row), *model.image_shape])


def interpolate(model, image_a, image_b, steps: int = 8, verbose: int = 0) -> tf.Tensor:
    """`steps` images on the straight line in latent space from `image_a` to `image_b`.

        z_t = (1 - t) z_a + t z_b,   t = 0, 1/(steps - 1), ..., 1,   x_t = f(z_t)

    with `z_a = f^{-1}(a)` the flat latent of every level. The endpoints are decoded
    from `z_a` and `z_b` themselves, so they are `a` and `b` exactly.

    Args:
      model: a trained `GlowModel`.
      image_a: integer image [H, W, C], or a batch [N, H, W, C] (each image of the batch
        is interpolated to the one at the same index of `image_b`).
      image_b: integer image(s) of the same shape as `image_a`.
      steps: Python `int` >= 2, number of images including both endpoints. Default 8.
      verbose: 1 shows a progress bar over the pairs (encoding, then decoding). Default 0.

    Returns:
      uint8 `Tensor` [steps, H, W, C], or [steps, N, H, W, C] for batches.

    Raises:
      ValueError: if the shapes differ or are not images of the model, or `steps` < 2.
    """
    a, single = _image_batch(model, image_a, "image_a")
    b, _ = _image_batch(model, image_b, "image_b")
    if a.shape != b.shape:
        raise ValueError(
            f"`image_a` and `image_b` must have the same shape. "
            f"Received: image_a.shape={list(np.shape(image_a))}, image_b.shape={list(np.shape(image_b))}"
        )
    _check_int("steps", steps)
    if steps < 2:
        raise ValueError(f"`steps` must be an integer >= 2 (both endpoints). Received: steps={steps!r}")
    progress = keras.utils.Progbar(3, verbose=verbose, unit_name="pass")
    z_a = model.encode(a)
    progress.add(1)
    z_b = model.encode(b)
    progress.add(1)
    t = tf.linspace(0.0, 1.0, int(steps))[:, None, None]
    latents = (1.0 - t) * z_a[None] + t * z_b[None]  # t = 0 and 1 give z_a and z_b exactly
    images = _decode_rows(model, latents, single)
    progress.add(1)
    return images


def attribute_direction(model, images_with, images_without) -> tf.Tensor:
    """The latent direction of an attribute: the difference of the mean latents.

        d = mean_{x in with} f^{-1}(x) - mean_{x in without} f^{-1}(x)

    (the paper's Section 5.2, where `with` / `without` are the images with and without
    a binary attribute such as "smiling").

    Args:
      model: a trained `GlowModel`.
      images_with: integer images [N, H, W, C], N >= 1, that have the attribute.
      images_without: integer images [M, H, W, C], M >= 1, that do not.

    Returns:
      float32 `Tensor` [D], a direction in the flat latent space of every level.

    Raises:
      ValueError: for an empty set or images of the wrong shape.
    """
    with_ = _nonempty_batch(model, images_with, "images_with")
    without = _nonempty_batch(model, images_without, "images_without")
    return tf.reduce_mean(model.encode(with_), 0) - tf.reduce_mean(model.encode(without), 0)


def manipulate(model, image, direction, alphas: Sequence[float]) -> tf.Tensor:
    """Moves an image along a latent direction: `f(f^{-1}(x) + alpha * d)` per alpha.

    `alpha = 0` returns the image itself; `attribute_direction` gives `d`.

    Args:
      model: a trained `GlowModel`.
      image: integer image [H, W, C], or a batch [N, H, W, C].
      direction: float `Tensor` [D], D = H * W * C.
      alphas: non-empty sequence of finite Python floats.

    Returns:
      uint8 `Tensor` [len(alphas), H, W, C], or [len(alphas), N, H, W, C] for a batch.

    Raises:
      ValueError: for a direction that is not [D], an empty or non-finite `alphas`, or
        images of the wrong shape.
    """
    x, single = _image_batch(model, image, "image")
    alphas = _check_floats("alphas", alphas)
    direction = tf.convert_to_tensor(direction, tf.float32)
    if direction.shape.as_list() != [model.event_size]:
        raise ValueError(
            f"`direction` must have shape [{model.event_size}] (the flat latent). "
            f"Received: direction.shape={direction.shape.as_list()}"
        )
    z = model.encode(x)
    latents = z[None] + tf.constant(alphas, tf.float32)[:, None, None] * direction
    return _decode_rows(model, latents, single)


def inpaint(
    model,
    images,
    mask,
    steps: int = 300,
    learning_rate: float = 0.05,
    langevin: bool = False,
    seed: int = 0,
    verbose: int = 0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Fills the missing pixels of images so that the whole image is likely under the model.

    With x = (x_o, x_m) the observed and missing pixels in the model's range
    [-0.5, 0.5], the missing pixels are parametrized without constraints as
    x_m = tanh(u) / 2, started from a uniform random fill, and `u` follows

        gradient ascent (Adam):  u <- u + Adam(grad_u log p(x_o, x_m(u)))       (langevin=False)
        Langevin dynamics [2]:   u <- u + (lr / 2) G grad_u log q(u) + N(0, lr G),
                                 log q(u) = log p(x_o, x_m(u)) + sum log |dx_m/du|

    with G the RMSprop preconditioner of [2] (lr = `learning_rate`). The first finds a
    mode of p(x_m | x_o); the second samples from it (the log-Jacobian of tanh makes
    its stationary density p(x_m | x_o) in pixel space). Observed pixels are not
    variables: the returned images carry exactly the input values where `mask` is
    False, and the missing ones are quantized to the model's levels.

    Args:
      model: a trained `GlowModel`.
      images: integer images [N, H, W, C], N >= 1; the values under `mask` are ignored.
      mask: boolean array of the same shape, True where a pixel is missing.
      steps: Python `int` >= 1, optimization (or Langevin) steps. Default 300.
      learning_rate: Python `float` > 0, Adam's step (or the Langevin step size).
        Default 0.05.
      langevin: Python `bool`, Langevin sampling instead of gradient ascent. Default False.
      seed: Python `int`, seed of the initial fill and the Langevin noise. Default 0.
      verbose: 1 shows a progress bar over the steps. Default 0.

    Returns:
      `(completed, scores)`: uint8 `Tensor` [N, H, W, C] and float32 `Tensor` [N], the
      density score of each completed image (`score`).

    Raises:
      TypeError: if `mask` is not boolean.
      ValueError: if `mask` and `images` differ in shape, for empty images, or for bad
        `steps` / `learning_rate`.
    """
    images = _nonempty_batch(model, images, "images")
    mask_array = np.asarray(mask.numpy() if isinstance(mask, tf.Tensor) else mask)
    if mask_array.dtype != np.bool_:
        raise TypeError(
            f"`mask` must be boolean (True where a pixel is missing). Received: mask.dtype={mask_array.dtype}"
        )
    if mask_array.shape != tuple(images.shape):
        raise ValueError(
            f"`mask` must have the shape of `images`, {list(images.shape)}. "
            f"Received: mask.shape={list(mask_array.shape)}"
        )
    _check_positive_int("steps", steps)
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(
            f"`learning_rate` must be a finite number > 0. Received: learning_rate={learning_rate!r}"
        )
    if not isinstance(langevin, (bool, np.bool_)):
        raise TypeError(f"`langevin` must be a bool. Received: langevin={langevin!r}")
    _check_int("seed", seed)

    missing = tf.constant(mask_array)
    observed = model.preprocess(images)  # bin centres; checks the pixel values
    fill = tf.random.stateless_uniform(observed.shape, seed=[int(seed), 1], minval=-0.5, maxval=0.5)
    u = tf.Variable(tf.atanh(tf.clip_by_value(2.0 * fill, -0.999, 0.999)), name="inpaint_u")
    first_moment = tf.Variable(tf.zeros_like(u))
    second_moment = tf.Variable(tf.zeros_like(u))
    log_prob = model.distribution.log_prob
    weight = tf.cast(missing, tf.float32)
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-8

    @tf.function
    def step(t, noise_seed):
        with tf.GradientTape() as tape:
            x = tf.where(missing, 0.5 * tf.tanh(u), observed)
            objective = tf.reduce_sum(log_prob(x))
            if langevin:
                # log |d(tanh(u)/2)/du| = log(1 - tanh(u)^2) - log 2, per missing pixel.
                objective += tf.reduce_sum(weight * tf.math.log1p(-tf.square(tf.tanh(u)) + 1e-12))
        gradient = tape.gradient(objective, u) * weight  # only the missing pixels move
        second_moment.assign(beta_2 * second_moment + (1 - beta_2) * tf.square(gradient))
        v_hat = second_moment / (1 - beta_2**t)
        if langevin:
            preconditioner = 1.0 / (tf.sqrt(v_hat) + 1e-5)
            noise = tf.random.stateless_normal(tf.shape(u), seed=noise_seed)
            u.assign_add(
                weight
                * (
                    0.5 * learning_rate * preconditioner * gradient
                    + tf.sqrt(learning_rate * preconditioner) * noise
                )
            )
        else:
            first_moment.assign(beta_1 * first_moment + (1 - beta_1) * gradient)
            m_hat = first_moment / (1 - beta_1**t)
            u.assign_add(learning_rate * m_hat / (tf.sqrt(v_hat) + epsilon))
        return objective

    progress = keras.utils.Progbar(int(steps), verbose=verbose, unit_name="step")
    for t in range(1, int(steps) + 1):
        objective = step(tf.constant(float(t)), tf.constant([int(seed), t + 1], tf.int32))
        progress.update(t, values=[("log_p", float(objective) / int(images.shape[0]))])

    filled = model.postprocess(0.5 * tf.tanh(u))
    completed = tf.where(missing, filled, tf.cast(images, tf.uint8))  # observed pixels exactly
    return completed, score(model, completed)


def score(model, images, batch_size: int = 256, verbose: int = 0, labels=None) -> tf.Tensor:
    """The density score of each image, for likelihood-based detection:

        score(x) = -(log p(x_c) - D log(num_bins)) / (D log 2)

    with x_c the bin centres of the image (deterministic), `batch_size` images at a time.
    Lower is more likely; out-of-distribution inputs tend to score higher (though not always,
    see the OOD experiment). It has the units of bits/dim but is the density at one point of
    each bin, not the probability of the bin: not a bits/dim of the model, which
    `GlowModel.bits_per_dim` estimates.

    Args:
      model: a trained `GlowModel`.
      images: integer images [N, H, W, C], N >= 1.
      batch_size: Python `int` >= 1, images per forward pass. Default 256.
      verbose: 1 shows a progress bar over the images. Default 0.
      labels: a class-conditional model's labels, int [N] or one int for all: the score of
        p(x | y).

    Returns:
      float32 `Tensor` [N].

    Raises:
      ValueError: for empty images or images of the wrong shape.
    """
    images = _nonempty_batch(model, images, "images")
    _check_positive_int("batch_size", batch_size)
    labels = check_labels(labels, int(images.shape[0]), model.num_classes)
    progress = keras.utils.Progbar(int(images.shape[0]), verbose=verbose, unit_name="image")
    pieces = []
    for i in range(0, int(images.shape[0]), int(batch_size)):
        batch = images[i : i + batch_size]
        batch_labels = None if labels is None else labels[i : i + batch_size]
        log_prob = model.log_prob(batch, labels=batch_labels)
        pieces.append(bits_per_dim(log_prob, model.image_shape, model.num_bins))
        progress.add(int(batch.shape[0]))
    return tf.concat(pieces, 0)


def flow_summary(model) -> str:
    """A table of the flow's trainable parameters per level (steps, split prior) and top prior."""
    glow = model.bijector
    rows = [("flow (tfp_glow.Glow, forward = generative)", "", "")]
    for level, steps in enumerate(glow.steps):
        h, w, c = (
            glow.image_shape[0] >> (level + 1),
            glow.image_shape[1] >> (level + 1),
            steps.config.channels,
        )
        rows.append((f"level {level}: {steps.num_steps} steps of flow", f"{h}x{w}x{c}", _count(steps)))
        if level < len(glow.split_priors):
            rows.append((f"level {level}: split prior", f"{h}x{w}x{c}", _count(glow.split_priors[level])))
    if glow.top_prior is not None:
        rows.append(("top prior", "x".join(map(str, glow.latent_shapes[-1])), _count(glow.top_prior)))
    rows.append(("flow total", "", _count(glow)))
    width = max(len(name) for name, _, _ in rows) + 2
    lines = [f"{'part':<{width}}{'activations':<14}parameters"]
    lines += [f"{name:<{width}}{shape:<14}{count}" for name, shape, count in rows[1:]]
    return rows[0][0] + "\n" + "\n".join(lines)


def _count(module) -> str:
    return f"{sum(int(np.prod(v.shape)) for v in module.trainable_variables):,}"


# Checks and helpers.


def _image_batch(model, images, name: str) -> tuple[tf.Tensor, bool]:
    """`images` [H, W, C] or [N, H, W, C] as a batch, and whether it was a single image."""
    images = tf.convert_to_tensor(images)
    shape = images.shape.as_list()
    image_shape = list(model.image_shape)
    if shape == image_shape:
        return images[None], True
    if len(shape) == 4 and shape[1:] == image_shape:
        if shape[0] == 0:
            raise ValueError(f"`{name}` is empty. Received: {name}.shape={shape}")
        return images, False
    raise ValueError(
        f"`{name}` must be an image of shape {image_shape} "
        f"or a batch [N, {', '.join(map(str, image_shape))}]. "
        f"Received: {name}.shape={shape}"
    )


def _nonempty_batch(model, images, name: str) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    shape = images.shape.as_list()
    if len(shape) != 4 or shape[1:] != list(model.image_shape):
        raise ValueError(
            f"`{name}` must be a batch of images [N, {', '.join(map(str, model.image_shape))}]. "
            f"Received: {name}.shape={shape}"
        )
    if shape[0] == 0:
        raise ValueError(f"`{name}` is empty; at least one image is needed. Received: {name}.shape={shape}")
    return images


def _decode_rows(model, latents: tf.Tensor, single: bool) -> tf.Tensor:
    """Decodes latents [R, N, D] to images [R, N, H, W, C] ([R, H, W, C] when `single`)."""
    rows, num = latents.shape[0], latents.shape[1]
    images = tf.reshape(
        model.decode(tf.reshape(latents, [-1, model.event_size])), [rows, num, *model.image_shape]
    )
    return images[:, 0] if single else images


def _check_floats(name: str, values) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"`{name}` must be a sequence of numbers. Received: {name}={values!r}")
    values = [v for v in values]
    if not values:
        raise ValueError(f"`{name}` must not be empty. Received: {name}={values!r}")
    for v in values:
        if not (isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v)):
            raise ValueError(f"`{name}` must hold finite numbers. Received: {name}={values!r}")
    return [float(v) for v in values]


def _check_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer. Received: {name}={value!r}")


def _check_positive_int(name: str, value) -> None:
    _check_int(name, value)
    if value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
