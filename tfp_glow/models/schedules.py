"""The paper's learning-rate schedule: linear warm-up to a constant rate (optionally cosine decay)."""

from __future__ import annotations

import math

import keras
from keras import ops

__all__ = ["LinearWarmup", "default_optimizer"]


@keras.saving.register_keras_serializable(package="tfp_glow")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `learning_rate`, then constant (the reference code) or cosine decay.

        lr(t) = learning_rate * min(1, (t + 1) / warmup_steps)                        if no decay
        lr(t) = learning_rate * (t + 1) / warmup_steps                                 t < warmup_steps
        lr(t) = learning_rate * (1 + cos(pi * min(1, (t - w) / (decay_steps - w)))) / 2   otherwise

    with w = warmup_steps: with `decay_steps`, the rate falls to 0 at step `decay_steps`
    (the end of training, for a fixed budget of steps) and stays there.
    """

    def __init__(self, learning_rate: float = 1e-3, warmup_steps: int = 200, decay_steps: int | None = None):
        if not learning_rate > 0:
            raise ValueError(f"`learning_rate` must be positive. Received: learning_rate={learning_rate!r}")
        if warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be >= 0. Received: warmup_steps={warmup_steps!r}")
        if decay_steps is not None and not (isinstance(decay_steps, int) and decay_steps > warmup_steps):
            raise ValueError(
                "`decay_steps` must be an integer > warmup_steps (or None). "
                f"Received: decay_steps={decay_steps!r}, warmup_steps={warmup_steps!r}"
            )
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = decay_steps

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = ops.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1))
        if self.decay_steps is None:
            return self.learning_rate * warmup
        progress = ops.clip((step - self.warmup_steps) / (self.decay_steps - self.warmup_steps), 0.0, 1.0)
        return self.learning_rate * ops.minimum(warmup, 0.5 * (1.0 + ops.cos(math.pi * progress)))

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
        }


def default_optimizer(
    learning_rate: float = 1e-3,
    warmup_steps: int = 200,
    clipnorm: float | None = None,
    name: str = "adam",
    ema_momentum: float | None = None,
    decay_steps: int | None = None,
    variable_rate: bool = False,
) -> keras.optimizers.Optimizer:
    """Adam (or Adamax, `name='adamax'`) with the paper's lr 1e-3 and linear warm-up.

    Args:
      learning_rate: Python `float`, the rate after warm-up. Default 1e-3.
      warmup_steps: Python `int`, steps of the linear warm-up. Default 200.
      clipnorm: optional global gradient-norm clip (Keras's `global_clipnorm`).
      name: `'adam'` (default) or `'adamax'`.
      ema_momentum: optional decay of an exponential moving average of the weights
        (Polyak averaging, which the reference code evaluates with); Keras's
        `use_ema`. `fit` leaves the averaged weights in the model at the end, and
        `keras.callbacks.SwapEMAWeights` evaluates with them during training.
      decay_steps: optional step at which a cosine decay after the warm-up reaches
        0 (see `LinearWarmup`); default `None`, the paper's constant rate.
      variable_rate: `True` for no schedule: the rate is a variable that a callback sets
        before each step (`tfp_glow.callbacks.CosineDecayToTimeLimit`, which warms up and
        decays by itself); `warmup_steps` and `decay_steps` are then the callback's.
    """
    optimizers = {"adam": keras.optimizers.Adam, "adamax": keras.optimizers.Adamax}
    if name not in optimizers:
        raise ValueError(f"`name` must be one of {sorted(optimizers)}. Received: name={name!r}")
    ema = {} if ema_momentum is None else dict(use_ema=True, ema_momentum=ema_momentum)
    if ema_momentum is not None and not 0.0 <= ema_momentum < 1.0:
        raise ValueError(f"`ema_momentum` must be in [0, 1). Received: ema_momentum={ema_momentum!r}")
    rate = float(learning_rate) if variable_rate else LinearWarmup(learning_rate, warmup_steps, decay_steps)
    return optimizers[name](learning_rate=rate, global_clipnorm=clipnorm, **ema)
