"""`tfp-glow VERB [flags]`: train, evaluate, sample and use Glow models from the command line.

Verbs (`tfp-glow VERB --help` lists each one's flags):

  train        train a model into --model_dir (tfp_glow.training.train); the default run trains
               the digits preset on scikit-learn's digits in about 5 minutes on 2 CPU cores
  evaluate     test bits/dim of a run (or of --pretrained=digits)
  sample       a grid of samples, or one row per temperature
  interpolate  rows from one image to another, linear in latent space
  inpaint      fill hidden pixels by gradient ascent on log p (or Langevin sampling)
  export       a SavedModel for TF Serving

Every verb after `train` reads the dataset, image shape and preset from the run's own record
(`<model_dir>/run.json`), so `tfp-glow evaluate --model_dir=RUN` works for a run on any data;
`--dataset` overrides it. Flags are `--name=value` (or `--name value`), booleans `--name` and
`--noname`. A flag of another verb is a usage error.

Exit status: 0 on success, 1 on a run-time error (such as no model in --model_dir), 2 on a usage
error (an unknown verb or flag, a bad value), reported before any training.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["PROGRAM", "VERBS", "inpainting_mask", "main", "run"]

PROGRAM = "tfp-glow"
EXIT_ERROR = 1
EXIT_USAGE = 2
DEFAULT_MODEL_DIR = os.path.join("glow_runs", "digits")


class _UsageError(Exception):
    """A bad verb, flag or flag value: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises on a usage error instead of exiting, so that `main` can
    report it (and return 2) the same way for every verb, and knows its flags' names."""

    def __init__(self, *args, **kwargs):
        self.flags: set[str] = set()
        super().__init__(*args, **kwargs)

    def add_argument(self, *names, **kwargs):
        self.flags.update(name for name in names if name.startswith("-"))
        return super().add_argument(*names, **kwargs)

    def error(self, message):
        raise _UsageError(_flag_first(message))


def _flag_first(message: str) -> str:
    """argparse's "argument --flag: expected ...; got 'value'" as "--flag=value: expected ...",
    the flag as the user typed it first."""
    value = re.fullmatch(r"argument (--\w+): (.*); got '(.*)'", message, re.DOTALL)
    if value:
        flag, expected, received = value.groups()
        return f"{flag}={received}: {expected}"
    choice = re.fullmatch(
        r"argument (--\w+): invalid choice: '(.*)' \(choose from (.*)\)", message, re.DOTALL
    )
    if choice:
        flag, received, allowed = choice.groups()
        return f"{flag}={received}: expected one of {allowed}"
    return message


# --------------------------------------------------------------------------------------------------
# Flag values.


def _positive_int(value: str) -> int:
    return _int_at_least(value, 1)


def _non_negative_int(value: str) -> int:
    return _int_at_least(value, 0)


def _int_at_least(value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}; got {value!r}") from None
    if number < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}; got {value!r}")
    return number


def _number(lower: float, upper: float = math.inf, strict_lower: bool = False) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        low_ok = number > lower if strict_lower else number >= lower
        if not (math.isfinite(number) and low_ok and number < upper):
            bound = f"> {lower:g}" if strict_lower else f">= {lower:g}"
            if upper != math.inf:
                bound = f"in [{lower:g}, {upper:g})"
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}; got {value!r}")
        return number

    return parse


def _image_shape(value: str) -> tuple[int, int, int]:
    try:
        dims = tuple(int(d) for d in value.split(","))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(
            f"expected three positive integers 'H,W,C', such as '32,32,3'; got {value!r}"
        )
    return dims


def _temperatures(value: str) -> list[float]:
    try:
        temperatures = [float(t) for t in value.split(",")]
    except ValueError:
        temperatures = []
    if not temperatures or not all(math.isfinite(t) and t >= 0 for t in temperatures):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated finite numbers >= 0, such as '0,0.5,0.7,1.0'; got {value!r}"
        )
    return temperatures


def _indices(value: str) -> list[tuple[int, int]]:
    try:
        indices = [int(i) for i in value.split(",")]
    except ValueError:
        indices = []
    if not indices or len(indices) % 2 or min(indices) < 0:
        raise argparse.ArgumentTypeError(
            "expected an even number of comma-separated integers >= 0, pairs A,B of images to "
            f"interpolate between, such as '0,1,2,3'; got {value!r}"
        )
    return list(zip(indices[::2], indices[1::2], strict=True))


def _steps(value: str) -> int:
    steps = _int_at_least(value, 2)
    return steps


def _boolean(parser, name: str, help: str, default=False) -> None:
    """`--name` and `--noname`, as absl spells them."""
    parser.add_argument(f"--{name}", dest=name, action="store_true", default=default, help=help)
    parser.add_argument(f"--no{name}", dest=name, action="store_false", help=argparse.SUPPRESS)


# --------------------------------------------------------------------------------------------------
# The verbs' flags.


def _model_flags(parser, pretrained: bool = True) -> None:
    parser.add_argument(
        "--model_dir",
        default=DEFAULT_MODEL_DIR,
        help=f"folder of the run (default: {DEFAULT_MODEL_DIR})",
    )
    if pretrained:
        parser.add_argument(
            "--pretrained",
            choices=_pretrained_names(),
            default=None,
            help="use the model that ships with tfp-glow instead of a run (no training, offline)",
        )


def _data_flags(parser) -> None:
    parser.add_argument("--dataset", default=None, help="dataset spec (default: the run's own)")
    parser.add_argument("--data_dir", default=None, help="TensorFlow Datasets data directory")


def _verbose_flag(parser) -> None:
    parser.add_argument(
        "--verbose",
        type=int,
        choices=[0, 1, 2],
        default=1,
        help="0 silent, 1 progress bar, 2 one line per epoch",
    )


def _train_flags(parser) -> None:
    parser.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (scikit-learn's 8x8 digits, offline, the default), 'tfds:<name>[:<config>]', "
        "'folder:<path>' or 'npz:<path>' (see tfp_glow.data)",
    )
    parser.add_argument("--data_dir", default=None, help="TensorFlow Datasets data directory")
    parser.add_argument(
        "--preset",
        choices=sorted(_presets()),
        default=None,
        help="model configuration and training defaults (default: the dataset's preset: digits for "
        "digits, mnist for tfds:mnist, cifar10 for tfds:cifar10, ...)",
    )
    parser.add_argument("--model_dir", default=None, help="folder of the run (default: glow_runs/<preset>)")
    parser.add_argument(
        "--epochs", type=_positive_int, help="training epochs, at most (default: the preset's)"
    )
    parser.add_argument(
        "--time_limit",
        type=_number(0),
        help="seconds from the start within which training ends (no epoch starts that would end later; "
        "0 for none). Default: the preset's (255 for digits) without --epochs, else none",
    )
    parser.add_argument("--batch_size", type=_positive_int, default=64, help="global batch (default 64)")
    parser.add_argument(
        "--learning_rate",
        type=_number(0, strict_lower=True),
        help="after the warm-up (default: the preset's)",
    )
    parser.add_argument("--warmup_steps", type=_non_negative_int, default=200, help="linear warm-up steps")
    parser.add_argument(
        "--lr_decay",
        choices=["constant", "cosine"],
        default="constant",
        help="after the warm-up; cosine reaches 0 at the end of the time limit or of the epochs",
    )
    parser.add_argument("--clipnorm", type=_number(0, strict_lower=True), help="global gradient-norm clip")
    parser.add_argument("--optimizer", choices=["adam", "adamax"], default="adam")
    parser.add_argument(
        "--ema_momentum",
        type=_number(0, 1),
        help="decay of the weights' moving average for validation, checkpoints, samples and the model; "
        "0 for none (default: the preset's)",
    )
    _boolean(parser, "jit_compile", "compile the train and test steps with XLA")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        default="fp32",
        help="fp32, or mixed precision: the coupling and prior networks in bfloat16 / float16 "
        "(float16 with loss scaling), everything else and every variable float32",
    )
    parser.add_argument(
        "--intra_op_threads",
        type=_non_negative_int,
        help="threads per TensorFlow op, 0 for TensorFlow's default (default: the preset's; 1 for digits)",
    )
    parser.add_argument(
        "--memory_efficient",
        nargs="?",
        const="recompute",
        choices=["recompute", "reversible"],
        default=None,
        help="store only each step's input and recompute the step in the backward pass (or, with "
        "=reversible, nothing per step: rebuild inputs by the exact inverse)",
    )
    parser.add_argument(
        "--dropout", type=_number(0, 1), help="coupling networks' dropout (default: the preset's)"
    )
    parser.add_argument("--dequantization", choices=["uniform", "variational"], help="default: the preset's")
    parser.add_argument("--num_levels", type=_positive_int, help="L (default: the preset's)")
    parser.add_argument("--num_steps", type=_positive_int, help="K (default: the preset's)")
    parser.add_argument(
        "--hidden_channels", type=_positive_int, help="coupling width (default: the preset's)"
    )
    parser.add_argument("--image_shape", type=_image_shape, help="'H,W,C' the data is resized to")
    parser.add_argument(
        "--strategy",
        choices=["default", "mirrored", "multi_worker", "tpu"],
        default="default",
        help="tf.distribute strategy; --batch_size is the global batch",
    )
    parser.add_argument("--tpu", default=None, help="with --strategy=tpu: the TPU ('local' on a TPU VM)")
    parser.add_argument("--max_nonfinite_steps", type=_non_negative_int, default=20)
    parser.add_argument(
        "--resume",
        dest="resume",
        action="store_true",
        default=None,
        help="continue from --model_dir/resume (the default when there is one); --noresume starts afresh",
    )
    parser.add_argument("--noresume", dest="resume", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument(
        "--checkpoint_every", type=_positive_int, default=500, help="batches between resume commits"
    )
    parser.add_argument(
        "--keep_checkpoints", type=_non_negative_int, default=2, help="epoch checkpoints kept (default 2)"
    )
    parser.add_argument(
        "--sample_every",
        type=_positive_int,
        help="epochs between sample grids (default: about 10 grids per run)",
    )
    _boolean(parser, "deterministic", "TensorFlow's op determinism (not with --jit_compile)")
    parser.add_argument("--seed", type=_non_negative_int, default=0)
    parser.add_argument("--train_split", help="the split to train on (default: the preset's for its dataset)")
    parser.add_argument(
        "--validation_split",
        default=None,
        help="split that picks the best epoch; '' for none (default: the preset's for its own dataset)",
    )
    parser.add_argument("--test_split", default="test", help="split of the final test figures; '' to skip")
    parser.add_argument(
        "--iw_samples",
        type=_non_negative_int,
        help="importance samples of the final discrete bits/dim (default: the preset's, 64 for digits)",
    )
    parser.add_argument("--temperature", type=_number(0), default=0.7, help="temperature of the sample grids")
    parser.add_argument("--num", type=_positive_int, default=64, help="samples per grid")
    _verbose_flag(parser)


def _evaluate_flags(parser) -> None:
    _model_flags(parser)
    _data_flags(parser)
    parser.add_argument(
        "--split", "--test_split", dest="split", default=None, help="default: the run's test split"
    )
    parser.add_argument("--batch_size", type=_positive_int, default=256)
    parser.add_argument(
        "--iw_samples",
        type=_non_negative_int,
        default=0,
        help="also the discrete bits/dim with this many importance samples (one pass each)",
    )
    parser.add_argument("--seed", type=_non_negative_int, default=0)
    _verbose_flag(parser)


def _sample_flags(parser) -> None:
    _model_flags(parser)
    parser.add_argument("--num", type=_positive_int, default=64, help="samples in the grid")
    parser.add_argument("--temperature", type=_number(0), default=0.7)
    parser.add_argument(
        "--temperatures",
        type=_temperatures,
        default=None,
        help="one row of --num_per_row samples per temperature, all from the same noise",
    )
    parser.add_argument("--num_per_row", type=_positive_int, default=8)
    parser.add_argument("--label", type=_non_negative_int, default=None, help="class of a conditional model")
    parser.add_argument("--seed", type=_non_negative_int, default=0)
    parser.add_argument("--out", default=None, help="PNG file (default: <model_dir>/samples.png)")


def _interpolate_flags(parser) -> None:
    _model_flags(parser)
    _data_flags(parser)
    parser.add_argument("--split", default="test")
    parser.add_argument("--indices", type=_indices, default=_indices("0,1,2,3,4,5,6,7"), help="pairs A,B")
    parser.add_argument("--steps", type=_steps, default=8, help="images per row, both ends included")
    parser.add_argument("--out", default=None, help="PNG file (default: <model_dir>/interpolation.png)")
    _verbose_flag(parser)


def _inpaint_flags(parser) -> None:
    _model_flags(parser)
    _data_flags(parser)
    parser.add_argument("--split", default="test")
    parser.add_argument("--mask", choices=["center", "left", "random"], default="center")
    parser.add_argument("--num", type=_positive_int, default=64, help="images of --split")
    parser.add_argument("--num_per_row", type=_positive_int, default=8)
    parser.add_argument("--inpaint_steps", type=_positive_int, default=300)
    _boolean(parser, "langevin", "sample the hidden pixels by Langevin dynamics instead of maximizing log p")
    parser.add_argument("--seed", type=_non_negative_int, default=0)
    parser.add_argument("--out", default=None, help="PNG file (default: <model_dir>/inpainting.png)")
    _verbose_flag(parser)


def _export_flags(parser) -> None:
    _model_flags(parser)
    parser.add_argument(
        "--export_dir", default=None, help="SavedModel base folder (default: <model_dir>/export)"
    )
    parser.add_argument("--export_version", type=_positive_int, default=None, help="default: the next one")
    parser.add_argument(
        "--max_num_samples", type=_positive_int, default=1024, help="most samples of a request"
    )
    parser.add_argument("--max_batch_size", type=_positive_int, default=4096, help="most images of a request")
    _verbose_flag(parser)


# --------------------------------------------------------------------------------------------------
# The verbs.


def _train(args) -> int:
    from tfp_glow import training

    result = training.train(_train_config(args))
    print(f"best epoch: {result.best_epoch}, model: {result.model_path}")
    _print_test_figures(result.test_bits_per_dim, result.test_discrete_bits_per_dim, result.iw_samples)
    return 0


def _train_config(args):
    """The `tfp_glow.training.TrainConfig` of `tfp-glow train`'s flags."""
    from tfp_glow import training

    architecture = {
        name: getattr(args, name)
        for name in (
            "num_levels",
            "num_steps",
            "hidden_channels",
            "dequantization",
            "dropout",
            "memory_efficient",
        )
        if getattr(args, name) is not None
    }
    preset = args.preset
    if preset is None:
        found = _preset_for_dataset(args.dataset)
        preset = found.name if found else None
    model_dir = args.model_dir or os.path.join("glow_runs", preset or "run")
    return training.TrainConfig(
        dataset=args.dataset,
        preset=args.preset,
        model_dir=model_dir,
        architecture=architecture,
        image_shape=args.image_shape,
        epochs=args.epochs,
        time_limit=args.time_limit,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        lr_decay=args.lr_decay,
        clipnorm=args.clipnorm,
        optimizer=args.optimizer,
        ema_momentum=args.ema_momentum,
        jit_compile=args.jit_compile,
        precision=args.precision,
        intra_op_threads=args.intra_op_threads,
        strategy=args.strategy,
        tpu=args.tpu,
        max_nonfinite_steps=args.max_nonfinite_steps,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        sample_every=args.sample_every,
        num_samples=args.num,
        temperature=args.temperature,
        deterministic=args.deterministic,
        seed=args.seed,
        train_split=args.train_split,
        validation_split=args.validation_split,
        test_split=args.test_split,
        iw_samples=args.iw_samples,
        data_dir=args.data_dir,
        verbose=args.verbose,
    )


def _print_test_figures(one_sample: float | None, discrete: float | None, iw_samples: int) -> None:
    if discrete is not None:
        print(f"test bits/dim ({iw_samples} importance samples, the discrete likelihood): {discrete:.3f}")
    print(
        "test bits/dim (one sample, the paper's estimate): "
        + ("n/a (no --test_split)" if one_sample is None else f"{one_sample:.3f}")
    )


def _evaluate(args) -> int:
    from tfp_glow import training

    model, run = _model_and_run(args)
    split = args.split or (run.config.test_split if run and run.config else None) or "test"
    dataset = _load_split(model, run, args, split, args.batch_size)
    one_sample, discrete = training.test_figures(model, dataset, args.iw_samples, args.seed, args.verbose)
    _print_test_figures(one_sample, discrete, args.iw_samples)
    return 0


def _sample(args) -> int:
    from tfp_glow import plots

    model, _ = _model_and_run(args)
    out = args.out or _default_out(args, "samples.png")
    labels = _labels(model, args.label)
    if args.temperatures is None:
        images = model.sample(args.num, temperature=args.temperature, seed=args.seed, labels=labels).numpy()
        plots.save_png(out, plots.image_grid(images, model.input_levels))
    else:
        if labels is not None:
            raise _UsageError("--temperatures draws one grid row per temperature and takes no --label")
        grid = model.temperature_grid(args.temperatures, num_per_row=args.num_per_row, seed=args.seed).numpy()
        plots.save_png(out, _rows_grid(list(grid), model.input_levels))
    print(out)
    return 0


def _interpolate(args) -> int:
    from tfp_glow import plots

    model, run = _model_and_run(args)
    images = _split_images(model, run, args)
    largest = max(max(pair) for pair in args.indices)
    if largest >= len(images):
        raise _UsageError(
            f"--indices: index {largest} is out of range; --split={args.split} has {len(images)} images "
            f"(indices 0 to {len(images) - 1})"
        )
    a, b = (images[[pair[i] for pair in args.indices]] for i in (0, 1))
    path = model.interpolate(a, b, steps=args.steps, verbose=args.verbose).numpy()  # [steps, pairs, H, W, C]
    out = args.out or _default_out(args, "interpolation.png")
    plots.save_png(out, _rows_grid(list(path.swapaxes(0, 1)), model.input_levels))
    print(out)
    return 0


def _inpaint(args) -> int:
    from tfp_glow import plots

    model, run = _model_and_run(args)
    images = _split_images(model, run, args)[: args.num]
    if not len(images):
        raise _UsageError(f"--split={args.split} has no images")
    levels = model.input_levels
    mask = inpainting_mask(args.mask, images.shape, args.seed)
    completed, scores = model.inpaint(
        images, mask, steps=args.inpaint_steps, langevin=args.langevin, seed=args.seed, verbose=args.verbose
    )
    completed = completed.numpy()
    # The baseline: the same hidden pixels filled with uniformly random levels.
    noise = np.random.default_rng(args.seed).integers(0, levels, images.shape)
    random_fill = np.where(mask, noise, images).astype(np.uint8)
    masked = np.where(mask, (levels - 1) // 2, images).astype(np.uint8)  # hidden pixels mid-grey
    rows = []
    for start in range(0, len(images), args.num_per_row):
        block = slice(start, start + args.num_per_row)
        if rows:
            rows.append(images[:0])  # an empty row between blocks
        rows += [images[block], masked[block], completed[block]]
    out = args.out or _default_out(args, "inpainting.png")
    plots.save_png(out, _rows_grid(rows, levels))
    # Density scores (bits/dim units at the bin centres), the model's preference between them.
    print(f"inpainted score: {float(np.mean(scores)):.3f}")
    print(f"random-fill score: {float(np.mean(model.score(random_fill))):.3f}")
    print(f"original score: {float(np.mean(model.score(images))):.3f}")
    print(out)
    return 0


def _export(args) -> int:
    from tfp_glow.export import export_saved_model

    model, _ = _model_and_run(args)
    export_dir = args.export_dir or _default_out(args, "export")
    try:
        path = export_saved_model(
            model,
            export_dir,
            args.export_version,
            max_num_samples=args.max_num_samples,
            max_batch_size=args.max_batch_size,
            verbose=args.verbose,
        )
    except OSError as error:  # FileExistsError for an existing version
        raise _RunFailure(f"cannot export to {export_dir}: {error}") from error
    print(path)
    return 0


VERBS: dict[str, tuple[Callable, Callable, str]] = {
    "train": (_train_flags, _train, "train a model into --model_dir"),
    "evaluate": (_evaluate_flags, _evaluate, "test bits/dim of a run"),
    "sample": (_sample_flags, _sample, "a PNG grid of samples"),
    "interpolate": (_interpolate_flags, _interpolate, "rows from one image to another in latent space"),
    "inpaint": (_inpaint_flags, _inpaint, "fill hidden pixels"),
    "export": (_export_flags, _export, "a SavedModel for TF Serving"),
}


# --------------------------------------------------------------------------------------------------
# Entry points.


def run(argv: Sequence[str] | None = None) -> None:
    """The `tfp-glow` console script: runs the verb and exits with its status."""
    sys.exit(main(list(sys.argv if argv is None else argv)))


def main(argv: Sequence[str]) -> int:
    """Runs `tfp-glow` in this process and returns its exit status.

    Args:
      argv: the command line, program name first, as `sys.argv`.
    """
    from tfp_glow import training

    tokens = _verb_first(list(argv[1:]))
    verb = tokens[0] if tokens else None
    try:
        parsers = _parsers()
        try:
            args, extra = parsers[None].parse_known_args(tokens)
        except SystemExit as exit_:  # --help
            return 0 if exit_.code is None else int(exit_.code)
        verb = args.verb
        if verb is None:
            raise _UsageError(f"missing verb: expected one of {', '.join(VERBS)}")
        if extra:
            raise _UsageError(_foreign(verb, extra, parsers))
        return VERBS[verb][1](args)
    except (_UsageError, training.UsageError) as error:
        where = f"{PROGRAM} {verb}" if verb in VERBS else PROGRAM
        print(f"{where}: error: {error}", file=sys.stderr)
        print(f"Run '{where} --help' for the flags.", file=sys.stderr)
        return EXIT_USAGE
    except (_RunFailure, training.RunError) as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return EXIT_ERROR


class _RunFailure(Exception):
    """A failure while running a valid command: exit status 1."""


def _verb_first(tokens: list[str]) -> list[str]:
    """`--flag=v VERB ...` as `VERB --flag=v ...`: flags given before the verb are its own."""
    for i, token in enumerate(tokens):
        if token in VERBS:
            return [token, *tokens[:i], *tokens[i + 1 :]]
        if token in ("-h", "--help"):
            break
    return tokens


def _parsers() -> dict:
    """The top-level parser (key None) and each verb's."""
    top = _Parser(
        prog=PROGRAM,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.epilog = "\n\n".join(__doc__.split("\n\n")[1:])
    subparsers = top.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    parsers = {None: top}
    for name, (add_flags, _, summary) in VERBS.items():
        parser = subparsers.add_parser(name, help=summary, description=f"{PROGRAM} {name}: {summary}.")
        add_flags(parser)
        parsers[name] = parser
    return parsers


def _foreign(verb: str, extra: list[str], parsers: dict) -> str:
    """The usage error for arguments `verb` does not take, naming the verbs a flag belongs to."""
    for token in extra:
        if not token.startswith("-"):
            return f"unexpected argument {token!r}"
        flag = token.split("=", 1)[0]
        owners = [name for name, parser in parsers.items() if name and flag in parser.flags]
        if owners:
            return f"{flag} is not a flag of {verb} (it is one of {', '.join(owners)})"
        return f"unrecognized flag {flag}"
    return f"unexpected arguments {extra}"


# --------------------------------------------------------------------------------------------------
# Helpers.


def _presets():
    from tfp_glow.models import PRESETS

    return PRESETS


def _preset_for_dataset(spec: str):
    from tfp_glow.models import preset_for_dataset

    return preset_for_dataset(spec)


def _pretrained_names():
    from tfp_glow import pretrained

    return pretrained.NAMES


def _model_and_run(args):
    """(the verb's model, its run or `None` for a pretrained model)."""
    from tfp_glow import training
    from tfp_glow.models import GlowModel

    if getattr(args, "pretrained", None):
        return GlowModel.from_preset(args.pretrained, pretrained=True), None
    run = training.load_run(args.model_dir)
    return run.model(), run


def _default_out(args, name: str) -> str:
    return name if getattr(args, "pretrained", None) else os.path.join(args.model_dir, name)


def _dataset(run, args) -> tuple[str, str | None]:
    """(dataset spec, data_dir): --dataset, else the run's, else the pretrained model's."""
    if args.dataset:
        return args.dataset, args.data_dir
    if run is not None and run.config is not None:
        return run.config.dataset, args.data_dir or run.config.data_dir
    if run is None:  # a pretrained model: its preset's dataset
        from tfp_glow.models import get_preset

        return get_preset(args.pretrained).dataset, args.data_dir
    raise _UsageError(f"{args.model_dir} has no record of its dataset (run.json): pass --dataset")


def _load_split(model, run, args, split: str, batch_size: int):
    from tfp_glow import training

    spec, data_dir = _dataset(run, args)
    seed = run.config.seed if run is not None and run.config is not None else 0
    return training.load_split(model, spec, split, batch_size, data_dir=data_dir, seed=seed, what="--split")


def _split_images(model, run, args) -> np.ndarray:
    """All images of --split of the run's dataset, at the model's image shape."""
    from tfp_glow import data, training

    spec, data_dir = _dataset(run, args)
    info = training.dataset_info(spec, model.image_shape, data_dir)
    if info.num_bins != model.input_levels:
        raise _UsageError(
            f"--dataset={spec} has {info.num_bins} pixel levels but the model expects {model.input_levels}"
        )
    try:
        return data.load_numpy(spec, args.split, image_shape=model.image_shape, data_dir=data_dir)
    except (ValueError, OSError) as error:
        raise _UsageError(f"--split={args.split}: {error}") from None


def _labels(model, label: int | None):
    if label is None:
        if model.num_classes is not None:
            raise _UsageError(f"the model is class-conditional ({model.num_classes} classes): pass --label")
        return None
    if model.num_classes is None:
        raise _UsageError("--label: the model is not class-conditional")
    if label >= model.num_classes:
        raise _UsageError(f"--label must be < {model.num_classes}; got {label}")
    return label


def inpainting_mask(kind: str, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """The boolean mask of `tfp-glow inpaint --mask=kind` for images [N, H, W, C], True where hidden.

    'center' hides rows and columns [n // 4, n // 4 + n // 2) of each side n (the middle half),
    'left' the columns [0, W // 2), 'random' each pixel (all its channels) with probability 1/2
    from `seed`.
    """
    n, h, w, c = shape
    mask = np.zeros(shape, bool)
    if kind == "center":
        mask[:, h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = True
    elif kind == "left":
        mask[:, :, : w // 2] = True
    elif kind == "random":
        mask[:] = np.random.default_rng(seed).random((n, h, w, 1)) < 0.5
    else:
        raise ValueError(f"unknown mask {kind!r}: expected 'center', 'left' or 'random'")
    return mask


def _rows_grid(rows: list[np.ndarray], levels: int) -> np.ndarray:
    """One grid row per entry of `rows` (images [n_i, H, W, C]); short rows end in blank cells."""
    from tfp_glow import plots

    cols = max(len(row) for row in rows)
    shape = next(row.shape[1:] for row in rows if len(row))
    blank = np.full((1, *shape), levels - 1, np.uint8)  # drawn as 255, as the padding
    cells = [np.concatenate([row.astype(np.uint8), *[blank] * (cols - len(row))]) for row in rows]
    return plots.image_grid(np.concatenate(cells), levels, rows=len(rows))


if __name__ == "__main__":
    run()
