"""The base class of tfp_glow's bijectors: one pass computes the output and the log-det."""

from __future__ import annotations

import tensorflow as tf

from tfp_glow import _compat

__all__ = ["GlowBijector", "check_finite_for_initialization"]


class GlowBijector(_compat.GreedyCacheBijector):
    """A `tfb.Bijector` whose subclasses compute output and log-det together.

    Every Glow step needs its conditioner network for both the output and the
    log-det-Jacobian, so subclasses implement

      _forward_and_log_det(x, **kwargs) -> (y, forward_log_det)
      _inverse_and_log_det(y, **kwargs) -> (x, inverse_log_det)

    with the log-det reduced over the event dimensions (a scalar where the Jacobian is
    constant: TFP broadcasts it over the batch), and this class derives TFP's `_forward`,
    `_inverse` and log-det methods from them. TFP's cache is filled greedily (as `tfb.FFJORD`
    does), so `TransformedDistribution.log_prob` runs the networks once, not twice.

    `forward_and_log_det` / `inverse_and_log_det` are public (as in distrax) and skip TFP's
    cache: composites call them on fresh intermediate tensors. Under `validate_args` they check
    the parameters (`_parameter_control_dependencies`, TFP's convention) and that the input is
    finite, as TFP's own methods do.
    """

    # Public single-pass API.

    def forward_and_log_det(self, x, **kwargs):
        """Returns `(forward(x), forward_log_det_jacobian(x))` in one pass."""
        with tf.control_dependencies(self._parameter_control_dependencies(is_init=False)):
            return self._forward_and_log_det(self._finite(x), **kwargs)

    def inverse_and_log_det(self, y, **kwargs):
        """Returns `(inverse(y), inverse_log_det_jacobian(y))` in one pass."""
        with tf.control_dependencies(self._parameter_control_dependencies(is_init=False)):
            return self._inverse_and_log_det(self._finite(y), **kwargs)

    def _finite(self, t):
        """`t`, checked to be finite at run time when `validate_args` (InvalidArgumentError)."""
        if not self.validate_args or not getattr(t, "dtype", tf.float32).is_floating:
            return t
        return tf.debugging.check_numerics(
            t, f"{self.name} (validate_args=True) expects finite input; Received: a tensor with NaN or Inf"
        )

    def _parameter_control_dependencies(self, is_init):
        return []

    # TFP's hooks, all derived from the two methods above. TFP calls them inside its own scope,
    # which holds `_parameter_control_dependencies` already.

    def _augmented_forward(self, x, **kwargs):
        y, fldj = self._forward_and_log_det(self._finite(x), **kwargs)
        return y, {"ildj": -fldj}

    def _augmented_inverse(self, y, **kwargs):
        x, ildj = self._inverse_and_log_det(self._finite(y), **kwargs)
        return x, {"ildj": ildj}

    def _forward(self, x, **kwargs):
        return self._forward_and_log_det(self._finite(x), **kwargs)[0]

    def _inverse(self, y, **kwargs):
        return self._inverse_and_log_det(self._finite(y), **kwargs)[0]

    def _forward_log_det_jacobian(self, x, **kwargs):
        return self._forward_and_log_det(self._finite(x), **kwargs)[1]

    def _inverse_log_det_jacobian(self, y, **kwargs):
        return self._inverse_and_log_det(self._finite(y), **kwargs)[1]


def check_finite_for_initialization(t: tf.Tensor, name: str) -> tf.Tensor:
    """`t`, checked to be finite (always): parameters initialized from NaN or Inf would stay so."""
    return tf.debugging.check_numerics(
        t, f"{name} must be initialized from finite values; Received: NaN or Inf"
    )
