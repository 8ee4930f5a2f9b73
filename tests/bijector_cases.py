"""The one registry of bijector cases that the generic tests draw from.

Each case builds a tfp_glow bijector (initialized on data where it has ActNorms, every
parameter moved off its identity-like start) and says what its calls need: the forward
input's event shape, and the conditioning keyword arguments (class labels, a dropout
seed) for a batch of a given shape. The contract (tests/test_bijector_contract.py),
conditioning (tests/test_conditional.py) and fuzz (tests/test_fuzz.py) tests run every
case, or every case of a kind; a new bijector or option is one more entry here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import tensorflow as tf

import tfp_glow
from tests.bijector_test_util import perturb

NUM_CLASSES = 3
DROPOUT_SEED = (3, 4)


@dataclasses.dataclass(frozen=True)
class Case:
    """A bijector of the registry.

    Attributes:
      name: the test id.
      factory: `factory(dtype, validate_args) -> bijector`, untrained.
      event_shape: the forward input's event shape.
      conditional: whether calls take class `labels` (in [0, NUM_CLASSES)).
      dropout: whether calls take a `dropout_seed` (one seed fixes one invertible map).
      perturbation: the scale of the random moves of every trainable variable.
      has_parameters: whether it has trainable parameters that move its output.
    """

    name: str
    factory: Callable
    event_shape: tuple
    conditional: bool = False
    dropout: bool = False
    perturbation: float = 0.1
    has_parameters: bool = True

    @property
    def is_glow(self) -> bool:
        return len(self.event_shape) == 1

    @property
    def is_image_bijector(self) -> bool:
        """An image bijector of one channel count in both directions (not Glow or Expand)."""
        return not self.is_glow and self.name != "expand"

    def kwargs(self, batch_shape=(), seed: int = 0) -> dict:
        """The conditioning keyword arguments for inputs of batch shape `batch_shape`."""
        kwargs = {}
        if self.conditional:
            kwargs["labels"] = tf.random.stateless_uniform(
                list(batch_shape), [seed, 3], 0, NUM_CLASSES, dtype=tf.int32
            )
        if self.dropout:
            kwargs["dropout_seed"] = tf.constant(DROPOUT_SEED, tf.int32)
        return kwargs

    def build(self, dtype=tf.float64, validate_args=False, seed: int = 0, perturb_parameters=True):
        """A new bijector of this case, initialized on data, its parameters moved (unless not
        `perturb_parameters`)."""
        bijector = self.factory(dtype, validate_args)
        if hasattr(bijector, "initialize"):
            bijector.initialize(self.initialization_batch(bijector, dtype, seed), **self.init_kwargs(8))
        if perturb_parameters:
            perturb(bijector, seed, scale=self.perturbation)
        return bijector

    def init_kwargs(self, batch_size: int) -> dict:
        return {"labels": tf.zeros([batch_size], tf.int32)} if self.conditional and self.is_glow else {}

    def initialization_batch(self, bijector, dtype, seed: int = 0) -> tf.Tensor:
        """A batch of 8 in the data direction: images in [-0.5, 0.5] for a Glow, else N(0, 1)
        scaled and shifted, so that the ActNorms have something to normalize."""
        if self.is_glow:
            return tf.random.stateless_uniform((8, *bijector.image_shape), [seed, 1], -0.5, 0.5, dtype)
        shape = (8, *bijector.forward_event_shape(self.event_shape))
        return 2.0 * tf.random.stateless_normal(shape, [seed, 1], dtype=dtype) + 0.5

    def sample_input(self, batch_shape, dtype, seed: int = 0) -> tf.Tensor:
        """A forward input of batch shape `batch_shape`."""
        return tf.random.stateless_normal((*batch_shape, *self.event_shape), [seed, 7], dtype=dtype)


def _glow(**kwargs):
    def factory(dtype, validate_args):
        config = dict(
            image_shape=(4, 4, 2), num_levels=2, num_steps=2, hidden_channels=8, seed=5, learn_top_prior=True
        )
        config.update(kwargs)
        return tfp_glow.Glow(**config, dtype=dtype, validate_args=validate_args)

    return factory


def _stacked(**kwargs):
    def factory(dtype, validate_args):
        return tfp_glow.StackedFlowSteps(3, 4, 8, seed=6, dtype=dtype, validate_args=validate_args, **kwargs)

    return factory


IMAGE = (4, 4, 4)
GLOW = (32,)
# Small moves for the Glows: a deep stack compounds them, and N(0, 1) latents already sit outside
# the range its ActNorms were initialized on. Moderate ones where a coupling network is inside:
# its sigmoid scale far below 1 makes the generative direction divide by it (test_numerical_safety).
CASES = {
    case.name: case
    for case in [
        Case("actnorm", lambda d, v: tfp_glow.ActNorm(4, dtype=d, validate_args=v), IMAGE, perturbation=0.3),
        Case(
            "conv1x1_lu",
            lambda d, v: tfp_glow.InvertibleConv1x1(4, seed=1, dtype=d, validate_args=v),
            IMAGE,
            perturbation=0.3,
        ),
        Case(
            "conv1x1_plain",
            lambda d, v: tfp_glow.PlainInvertibleConv1x1(4, seed=1, dtype=d, validate_args=v),
            IMAGE,
            perturbation=0.3,
        ),
        Case(
            "reverse",
            lambda d, v: tfp_glow.ChannelPermutation(4, "reverse", validate_args=v),
            IMAGE,
            has_parameters=False,
        ),
        Case(
            "shuffle",
            lambda d, v: tfp_glow.ChannelPermutation(4, "shuffle", seed=3, validate_args=v),
            IMAGE,
            has_parameters=False,
        ),
        Case(
            "coupling_affine",
            lambda d, v: tfp_glow.AffineCoupling(4, 8, seed=2, dtype=d, validate_args=v),
            IMAGE,
            perturbation=0.05,
        ),
        Case(
            "coupling_exp",
            lambda d, v: tfp_glow.AffineCoupling(4, 8, scale_fn="exp", seed=2, dtype=d, validate_args=v),
            IMAGE,
            perturbation=0.05,
        ),
        Case(
            "coupling_additive",
            lambda d, v: tfp_glow.AffineCoupling(4, 8, additive=True, seed=2, dtype=d, validate_args=v),
            IMAGE,
            perturbation=0.05,
        ),
        Case("expand", lambda d, v: tfp_glow.Expand(2, validate_args=v), (2, 2, 8), has_parameters=False),
        Case("split_prior", lambda d, v: tfp_glow.SplitPrior(4, dtype=d, validate_args=v), IMAGE),
        Case(
            "split_prior_conditional",
            lambda d, v: tfp_glow.SplitPrior(4, num_classes=NUM_CLASSES, dtype=d, validate_args=v),
            IMAGE,
            conditional=True,
        ),
        Case("top_prior", lambda d, v: tfp_glow.TopPrior(4, dtype=d, validate_args=v), IMAGE),
        Case(
            "top_prior_conditional",
            lambda d, v: tfp_glow.TopPrior(4, num_classes=NUM_CLASSES, dtype=d, validate_args=v),
            IMAGE,
            conditional=True,
        ),
        Case(
            "flow_step",
            lambda d, v: tfp_glow.FlowStep(4, 8, seed=4, dtype=d, validate_args=v),
            IMAGE,
            perturbation=0.05,
        ),
        Case(
            "flow_step_dropout",
            lambda d, v: tfp_glow.FlowStep(4, 8, seed=4, dropout=0.5, dtype=d, validate_args=v),
            IMAGE,
            dropout=True,
            perturbation=0.05,
        ),
        Case("stacked_steps_unrolled", _stacked(), IMAGE, perturbation=0.05),
        Case("stacked_steps_loop", _stacked(unroll=False), IMAGE, perturbation=0.05),
        Case("stacked_steps_recompute", _stacked(memory_efficient="recompute"), IMAGE, perturbation=0.05),
        Case("stacked_steps_reversible", _stacked(memory_efficient="reversible"), IMAGE, perturbation=0.05),
        Case("glow", _glow(), GLOW, perturbation=0.02),
        Case("glow_memory_efficient", _glow(memory_efficient=True), GLOW, perturbation=0.02),
        Case("glow_reversible", _glow(memory_efficient="reversible"), GLOW, perturbation=0.02),
        Case("glow_additive", _glow(coupling="additive"), GLOW, perturbation=0.02),
        Case(
            "glow_no_split_prior",
            _glow(split_prior=False, permutation="shuffle", learn_top_prior=False),
            GLOW,
            perturbation=0.02,
        ),
        Case(
            "glow_conditional",
            _glow(num_classes=NUM_CLASSES, conditional_split_priors=True),
            GLOW,
            conditional=True,
            perturbation=0.02,
        ),
        Case(
            "glow_dropout",
            _glow(dropout=0.5, memory_efficient=True, lu_decomposed=False),
            GLOW,
            dropout=True,
            perturbation=0.02,
        ),
    ]
}


@functools.cache
def shared(name: str, dtype=tf.float64, validate_args: bool = False):
    """The bijector of case `name`, built once per process: for tests that do not change it."""
    return CASES[name].build(dtype, validate_args)


def names(predicate=lambda case: True) -> list[str]:
    """The names of the cases for which `predicate(case)` holds, sorted."""
    return sorted(name for name, case in CASES.items() if predicate(case))
