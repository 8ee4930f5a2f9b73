"""Pictures of a Glow run: sample grids as PNG files and the learning curve.

Images here are integer levels, as `tfp_glow.data` yields them and `GlowModel.sample`
returns them; nothing in this module knows about models or training.

#### Examples

```python
images = model.sample(64, temperature=0.7, seed=0).numpy()   # uint8 [64, 8, 8, 1], levels < 17
save_png("samples.png", image_grid(images, num_bins=17))
plot_learning_curve(history.history, "learning_curve.png")
```
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["MIN_PNG_WIDTH", "image_grid", "plot_learning_curve", "save_png"]

# `save_png` enlarges smaller images by a whole factor until they are at least this wide.
MIN_PNG_WIDTH = 256


def image_grid(
    images: np.ndarray,
    num_bins: int,
    rows: int | None = None,
    pad: int = 1,
    *,
    pad_value: int = 255,
) -> np.ndarray:
    """Tiles integer images into one `uint8` image, levels rescaled to [0, 255].

    Image `i` goes to row `i // cols`, column `i % cols`, its top-left pixel at
    `(pad + row * (H + pad), pad + col * (W + pad))`; the `pad`-pixel gaps, the border and
    any unused cells are `pad_value`. A level `k` becomes `round(k * 255 / (num_bins - 1))`,
    so `num_bins=256` leaves `uint8` images unchanged and `num_bins=17` (digits) spreads
    0..16 over 0..255. Grey images stay one channel.

    Args:
      images: integer array `[N, H, W, C]`, levels in `[0, num_bins)`.
      num_bins: Python `int` >= 2, the number of levels of `images`.
      rows: rows of the grid. Default `None`: `ceil(N / cols)` with `cols = ceil(sqrt(N))`.
      pad: pixels between images and around the grid, >= 0. Default 1.
      pad_value: level in [0, 255] of the padding, after rescaling. Default 255 (white).

    Returns:
      `uint8` array `[rows * (H + pad) + pad, cols * (W + pad) + pad, C]`.

    Raises:
      ValueError: if `images` is not a non-empty integer array of rank 4, a level is out of
        range, or an argument is invalid.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"`images` must have rank 4 [N, H, W, C]. Received: images.shape={images.shape}")
    if not np.issubdtype(images.dtype, np.integer):
        raise ValueError(f"`images` must hold integer levels. Received: images.dtype={images.dtype}")
    if not isinstance(num_bins, (int, np.integer)) or not 2 <= num_bins <= 256:
        raise ValueError(f"`num_bins` must be an integer in [2, 256]. Received: num_bins={num_bins!r}")
    if len(images) == 0:
        raise ValueError(f"`images` must not be empty. Received: images.shape={images.shape}")
    if images.min() < 0 or images.max() >= num_bins:
        raise ValueError(
            f"`images` must hold levels in [0, {num_bins}). Received: min={images.min()}, max={images.max()}"
        )
    if not isinstance(pad, (int, np.integer)) or pad < 0:
        raise ValueError(f"`pad` must be an integer >= 0. Received: pad={pad!r}")
    if not 0 <= pad_value <= 255:
        raise ValueError(f"`pad_value` must be in [0, 255]. Received: pad_value={pad_value!r}")
    n, h, w, c = images.shape
    if rows is None:
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
    elif not isinstance(rows, (int, np.integer)) or rows < 1:
        raise ValueError(f"`rows` must be a positive integer or None. Received: rows={rows!r}")
    else:
        cols = math.ceil(n / rows)

    scaled = np.round(images.astype(np.float64) * (255.0 / (num_bins - 1))).astype(np.uint8)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.uint8)
    for i, image in enumerate(scaled[: rows * cols]):
        top = pad + (i // cols) * (h + pad)
        left = pad + (i % cols) * (w + pad)
        grid[top : top + h, left : left + w] = image
    return grid


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes a `uint8` image `[H, W, C]` (C in 1, 2, 3, 4) or `[H, W]` as a PNG file.

    Images narrower than `MIN_PNG_WIDTH` (256) pixels are enlarged by the smallest whole
    factor that makes them at least that wide, repeating pixels (nearest neighbour), so
    that an 8x8 digit is still visible: an 8x8 image is written as 256x256, a 37-pixel
    grid as 259 pixels. Parent folders are created.

    Args:
      path: file to write.
      image: `uint8` array `[H, W, C]` or `[H, W]`.

    Raises:
      ValueError: if `image` is not a `uint8` image of a shape PNG can hold.
    """
    import tensorflow as tf  # Deferred: only this function needs it.

    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., np.newaxis]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4) or 0 in image.shape:
        raise ValueError(
            f"`image` must be [H, W] or [H, W, C] with C in (1, 2, 3, 4). Received: image.shape={image.shape}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"`image` must be uint8. Received: image.dtype={image.dtype}")
    factor = max(1, math.ceil(MIN_PNG_WIDTH / image.shape[1]))
    if factor > 1:
        image = np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
    _make_parent(path)
    with open(path, "wb") as f:
        f.write(tf.io.encode_png(image).numpy())


def plot_learning_curve(history: Mapping[str, Sequence[float]], path: str | os.PathLike) -> None:
    """Plots bits/dim per epoch (train, validation, test) and saves it as a PNG file.

    Reads the keys Keras's `History` uses for `GlowModel`: `bits_per_dim` (train) and
    `val_bits_per_dim`; a `test_bits_per_dim` entry (one value, or one per epoch) is drawn
    as a dashed line. Missing keys are skipped; epochs are numbered from 1.

    Args:
      history: `{name: [value per epoch]}`, for example `model.fit(...).history`.
      path: PNG file to write; parent folders are created.

    Raises:
      ValueError: if `history` holds none of the keys above.
    """
    # The Agg canvas directly, not pyplot: no display, no global figure state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    curves = [("bits_per_dim", "train"), ("val_bits_per_dim", "validation")]
    test = history.get("test_bits_per_dim")
    test = np.atleast_1d(np.asarray([] if test is None else test, np.float64))
    if not any(len(history.get(key) or ()) for key, _ in curves) and not test.size:
        raise ValueError(
            "`history` has no bits/dim to plot: expected 'bits_per_dim', 'val_bits_per_dim' or "
            f"'test_bits_per_dim'. Received: keys={sorted(history)}"
        )
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for key, label in curves:
        values = list(history.get(key) or ())
        if values:
            axes.plot(range(1, len(values) + 1), values, marker="o", markersize=3, label=label)
    if test.size == 1:
        axes.axhline(test[0], linestyle="--", color="black", label=f"test ({test[0]:.3f})")
    elif test.size > 1:
        axes.plot(range(1, test.size + 1), test, linestyle="--", color="black", label="test")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("bits/dim")
    axes.set_title("Glow learning curve")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    _make_parent(path)
    figure.savefig(os.fspath(path), format="png")


def _make_parent(path: str | os.PathLike) -> None:
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
