"""Glow's maths as pure functions: the one place each formula lives.

Every component (ActNorm, the invertible 1x1 convolution, the coupling and its conditioner, the
split and top priors, a step of flow) is a module of functions of its parameters:

    init_params(...)            -> params    initial values, a nest (dict) of numpy arrays
    weights(params, ...)        -> weights   the work on the parameters alone (W = P L U and its
                                             inverse, exp(log_scale), folded kernels, border maps)
    forward(weights, x, ...)    -> (y, log_det)   the generative direction (latent -> image)
    inverse(weights, y, ...)    -> (x, log_det)   the encoding direction (image -> latent)
    initialize(params, y, ...)  -> params    data-dependent ActNorm initialization

Parameters are what is trained (the variables' values); weights are what the maps multiply and
add. Every function of the parameters takes any leading axes, so a level computes `weights` once
for its K steps stacked [K, ...] and `scan` runs the step function over them. Nothing here holds
state: the bijectors in `tfp_glow.bijectors` own the variables and call these functions with them.
"""

from tfp_glow.functional import (
    actnorm,
    conv,
    coupling,
    coupling_network,
    flow_step,
    invertible_conv,
    permutation,
    priors,
    scan,
    squeeze,
)

__all__ = [
    "actnorm",
    "conv",
    "coupling",
    "coupling_network",
    "flow_step",
    "invertible_conv",
    "permutation",
    "priors",
    "scan",
    "squeeze",
]
