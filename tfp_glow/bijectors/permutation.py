"""ChannelPermutation: the fixed channel orders of the paper's ablation (reverse, shuffle)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfp_glow import variables
from tfp_glow._checks import check_image, check_int
from tfp_glow.bijectors._base import GlowBijector
from tfp_glow.functional import permutation as permutation_lib

__all__ = ["ChannelPermutation"]


class ChannelPermutation(GlowBijector):
    """A fixed permutation of the channels of images [..., H, W, C].

    Forward (generative): `y[..., i] = x[..., perm[i]]`; inverse (encoding):
    `x[..., perm[i]] = y[..., i]`. Volume-preserving: both log-dets are 0.

    `kind='reverse'` reverses the channels (RealNVP's fixed permutation, the paper's
    "reverse" baseline); `kind='shuffle'` draws a fixed random permutation from
    `seed`; or pass an explicit `permutation`. The permutation is stored in a
    non-trainable variable, so a checkpoint keeps the order it was trained with.
    It is the same map as `tfb.Permute(permutation, axis=-1)` on the channel axis.
    """

    def __init__(
        self,
        channels: int,
        kind: str = "reverse",
        permutation: Sequence[int] | None = None,
        seed: int | None = None,
        validate_args: bool = False,
        params: dict | None = None,
        name: str = "channel_permutation",
    ):
        """Creates a ChannelPermutation.

        Args:
          channels: Python `int`, the number of channels C.
          kind: `'reverse'` (default) or `'shuffle'`; ignored when `permutation` is given.
          permutation: optional explicit permutation of `range(channels)`.
          seed: Python `int` or `None`, seed of the `'shuffle'` order.
          validate_args: Python `bool`, unused apart from TFP's own checks.
          params: optional dict with the int32 tensor `permutation` [C] to use instead of
            a new variable (a read-only view). Default `None`.
          name: Python `str` name prefixed to ops created by this class.

        Raises:
          ValueError: for an unknown `kind` or a `permutation` that is not one of
            `range(channels)`.
        """
        parameters = dict(locals())
        channels = check_int(channels, "channels")
        if params is None:
            if permutation is None:
                params = permutation_lib.init_params(channels, kind, seed)
            else:
                order = np.asarray(permutation)
                if sorted(order.tolist()) != list(range(channels)):
                    raise ValueError(
                        f"`permutation` must be a permutation of range({channels}). "
                        f"Received: permutation={order.tolist()}"
                    )
                params = {"permutation": order.astype(np.int32)}
        with tf.name_scope(name) as name:
            self._channels = channels
            self.permutation = variables.create(params)["permutation"]
            super().__init__(
                forward_min_event_ndims=3,
                is_constant_jacobian=True,
                validate_args=validate_args,
                parameters=parameters,
                name=name,
            )

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def params(self) -> dict:
        return {"permutation": self.permutation}

    def _weights(self) -> dict:
        return permutation_lib.weights(variables.read(self.params))

    def _forward_and_log_det(self, x):
        check_image(x, self._channels, self.name)
        return permutation_lib.forward(self._weights(), x)

    def _inverse_and_log_det(self, y):
        check_image(y, self._channels, self.name)
        return permutation_lib.inverse(self._weights(), y)
