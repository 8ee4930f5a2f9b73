"""Training, sampling and encoding speed of tfp_glow against `tfp.bijectors.Glow`.

    python experiments/benchmark.py                          # 28x28x1, L=2, K=16, width 128, batch 64
    python experiments/benchmark.py --preset=cifar10-sized   # 32x32x3, L=3, K=8, width 256
    python experiments/benchmark.py --num_steps=2 --hidden_channels=16 --steps=3   # a quick check
    python experiments/benchmark.py --rounds=3 --configs=tfp_glow,tfb_glow     # ratios through noise

Every configuration runs at the same architecture (image shape, levels L, steps K,
hidden width, affine coupling, LU 1x1 convolution, learned split prior / exit
network, batch) in its own subprocess (this script again, with `--_worker=NAME`), so
that the peak memory reported is its own; the worker prints one JSON line that the
parent reads. The configurations:

  tfp_glow                   tfp_glow.Glow, train step in tf.function
  tfp_glow_xla               the same, tf.function(jit_compile=True) (sampling, encoding too)
  tfb_glow                   tfp.bijectors.Glow(coupling_bijector_fn=GlowDefaultNetwork of the
                             same width, exit_bijector_fn=GlowDefaultExitNetwork), tf.function
  tfp_glow_memory_efficient  tfp_glow.Glow(memory_efficient=True): each step's input stored,
                             the step recomputed in the backward pass; tf.function
  tfp_glow_reversible        tfp_glow.Glow(memory_efficient="reversible"): nothing stored per
                             step, each input rebuilt by the exact inverse; tf.function
  tfp_glow_bf16              tfp_glow.Glow(compute_dtype="bfloat16"): the coupling and prior
                             networks in bfloat16 (mixed precision), the rest float32;
                             tf.function. Faster only where the CPU has bfloat16 units.
A configuration that the installed tfp_glow lacks is reported as "not implemented".

`--baseline=DIR` runs each tfp_glow configuration a second time with the tfp_glow of another
checkout (DIR, imported first; the measuring code is this script's), as `NAME@baseline`, in the
same interleaved rounds: the report then gives each configuration's step time and peak RSS over
the baseline's, per round and their median, so that two versions compare under the same load.

"Same architecture" as far as the two libraries allow: tfp_glow's coupling network has
an ActNorm after each of its first two convolutions and an edge-bias input channel on
its 3x3 convolutions (the reference code's), TFP's has biases instead; the FLOP counts
below account for the extra channel.

A training step is loss = mean bits/dim (`tfp_glow.bits_per_dim`, 256 bins) of a fixed
batch of random uniform images in [-0.5, 0.5], its gradient by tf.GradientTape and a
Keras 3 Adam update (lr 1e-3) of the flow's trainable variables. Reported: the median
(and the minimum, less sensitive to other jobs on the machine) of `--steps` steps after
`--warmup` warm-up steps (the first call, tracing and graph optimization or XLA
compilation, is reported separately), the peak RSS of the
process after the training loop (`ru_maxrss`: it includes TensorFlow itself, which the
`rss after import` column shows), and sampling and encoding images/s (tf.function,
after warm-up). A separate worker measures the machine's fp32 ceiling through
TensorFlow (a 2048x2048 matmul and a 3x3 convolution with 128 channels, best of
several runs), and the achieved GFLOP/s of each training step are computed from the
architecture's FLOP count (`train_flops`; the same useful work for the memory-efficient
configuration, its recomputation not counted). Another worker times each convolution of
the flow on its own, forward and backward, at its real shape, as the flow computes it
(`tfp_glow.functional.conv.image_conv2d`: TensorFlow's conv2d, and on CPU the thin 3x3
layers as a matrix product and a depthwise convolution; `--no-conv_floor` skips it): their
sum is what the convolutions alone cost per step, which separates the cost of the
arithmetic at these (thin) shapes from everything else.

On a shared machine one process per configuration gives a noisy ratio (tfb_glow's step
time has varied by 1.5x between runs). `--rounds=N` runs the configurations N times,
interleaved (the given order, then reversed, alternating), each run in its own process;
the table then shows each configuration's median run (a real run, so its columns agree),
and the headline ratio is the median of the per-round ratios (each compares two runs
under about the same load), next to the ratio of the per-configuration medians.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULT_PREFIX = "BENCHMARK_RESULT "

CONFIGS = {
    "tfp_glow": "tfp_glow, tf.function",
    "tfp_glow_xla": "tfp_glow, tf.function(jit_compile=True)",
    "tfb_glow": "tfp.bijectors.Glow, tf.function",
    "tfp_glow_memory_efficient": "tfp_glow, memory-efficient gradients (recompute)",
    "tfp_glow_reversible": "tfp_glow, memory-efficient gradients (reversible)",
    "tfp_glow_bf16": "tfp_glow, networks in bfloat16, tf.function",
}
BASELINE = "@baseline"
# The memory_efficient argument of each tfp_glow configuration.
MEMORY_EFFICIENT = {"tfp_glow_memory_efficient": True, "tfp_glow_reversible": "reversible"}

DEFAULTS = dict(image_shape=(28, 28, 1), num_levels=2, num_steps=16, hidden_channels=128, batch_size=64)
PRESETS = {
    "cifar10-sized": dict(image_shape=(32, 32, 3), num_levels=3, num_steps=8, hidden_channels=256),
}

NUM_BINS = 256
LEARNING_RATE = 1e-3
TARGET_SPEEDUP = 2.5
OURS = ("tfp_glow", "tfp_glow_xla", "tfp_glow_memory_efficient", "tfp_glow_reversible", "tfp_glow_bf16")
TARGET_CEILING_FRACTION = 0.45


# FLOP count from the architecture (no TensorFlow needed).


def level_shapes(image_shape, num_levels):
    """(h, w, c) of the activations that the K steps of each level see."""
    h, w, c = image_shape
    shapes = []
    for level in range(num_levels):
        h, w, c = h // 2, w // 2, c * 4
        shapes.append((h, w, c))
        if level < num_levels - 1:
            c = c // 2
    return shapes


def conv_layers(image_shape, num_levels, num_steps, hidden_channels, edge_bias=True):
    """The convolutions of one encoding pass: (name, h, w, in, out, kernel size, count).

    Per step of flow at a level of h x w pixels and c channels (c_a = c // 2 channels
    condition the other c_b = c - c_a): the coupling network's conv3x3 (c_a [+1] ->
    hidden), conv1x1 (hidden -> hidden) and conv3x3 (hidden [+1] -> 2 c_b), and the
    invertible 1x1 convolution (c x c, a matmul per pixel); per split, the prior's
    conv3x3 (c_kept [+1] -> 2 (c - c_kept)). The +1 is tfp_glow's edge-bias input
    channel, which `tfb.GlowDefaultNetwork` does not have (`edge_bias=False`).
    """
    e = 1 if edge_bias else 0
    layers = []
    for level, (h, w, c) in enumerate(level_shapes(image_shape, num_levels)):
        c_a = c // 2
        c_b = c - c_a
        layers += [
            (f"level{level} coupling conv3x3 in", h, w, c_a + e, hidden_channels, 3, num_steps),
            (f"level{level} coupling conv1x1", h, w, hidden_channels, hidden_channels, 1, num_steps),
            (f"level{level} coupling conv3x3 out", h, w, hidden_channels + e, 2 * c_b, 3, num_steps),
            (f"level{level} invertible 1x1 conv", h, w, c, c, 1, num_steps),
        ]
        if level < num_levels - 1:
            kept = c // 2
            layers.append((f"level{level} split prior conv3x3", h, w, kept + e, 2 * (c - kept), 3, 1))
    return layers


def forward_flops(image_shape, num_levels, num_steps, hidden_channels, edge_bias=True):
    """FLOPs (2 per multiply-add) of one encoding pass of one image: convolutions only.

    The layers of `conv_layers`. The elementwise work (ActNorm, scales, log-dets,
    biases) is left out: it is memory-bound and small in FLOPs.
    """
    layers = conv_layers(image_shape, num_levels, num_steps, hidden_channels, edge_bias)
    return 2 * sum(h * w * k * k * c_in * c_out * n for _, h, w, c_in, c_out, k, n in layers)


def train_flops(image_shape, num_levels, num_steps, hidden_channels, batch_size, edge_bias=True):
    """FLOPs of one training step: forward + backward ~ 3 x forward, for the whole batch."""
    return 3 * batch_size * forward_flops(image_shape, num_levels, num_steps, hidden_channels, edge_bias)


# Workers (run in their own process).


def _rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _median_seconds(fn, arg, count):
    import numpy as np

    times = []
    for _ in range(count):
        start = time.perf_counter()
        out = fn(arg) if arg is not None else fn()
        np.asarray(out)  # on CPU the call is synchronous; this only makes sure
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _timed_first_call(fn, arg):
    import numpy as np

    start = time.perf_counter()
    out = fn(arg) if arg is not None else fn()
    np.asarray(out)
    return time.perf_counter() - start, out


def _versions():
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp

    return dict(
        tensorflow=tf.__version__,
        tensorflow_probability=tfp.__version__,
        keras=keras.__version__,
        python=platform.python_version(),
    )


def worker_ceiling(args):
    """Best-of-N GFLOP/s of a large matmul and a 3x3 convolution, through TF."""
    import tensorflow as tf

    result = dict(config="ceiling", versions=_versions())
    n = args.matmul_size
    a = tf.random.stateless_normal([n, n], seed=[1, 2])
    b = tf.random.stateless_normal([n, n], seed=[3, 4])
    matmul = tf.function(lambda a, b: tf.matmul(a, b))
    shape = (64, 28, 28, 128)
    x = tf.random.stateless_normal(shape, seed=[5, 6])
    k = tf.random.stateless_normal([3, 3, 128, 128], seed=[7, 8]) * 0.05
    conv = tf.function(lambda x, k: tf.nn.conv2d(x, k, strides=1, padding="SAME"))
    for name, fn, inputs, flops in (
        ("matmul", matmul, (a, b), 2.0 * n**3),
        ("conv3x3", conv, (x, k), 2.0 * shape[0] * shape[1] * shape[2] * 9 * 128 * 128),
    ):
        fn(*inputs).numpy()  # trace and warm up
        times = []
        for _ in range(args.ceiling_runs):
            start = time.perf_counter()
            fn(*inputs).numpy()
            times.append(time.perf_counter() - start)
        result[f"{name}_gflops"] = flops / min(times) / 1e9
        result[f"{name}_description"] = (
            f"{n}x{n} @ {n}x{n}"
            if name == "matmul"
            else f"conv2d 3x3 SAME, [{', '.join(map(str, shape))}] x [3, 3, 128, 128]"
        )
    result["loadavg"] = os.getloadavg()
    return result


def worker_conv_floor(args):
    """Forward + backward time of each convolution of the flow on its own.

    Each layer of `conv_layers` (tfp_glow's shapes, whole batch) runs as y = conv(x, k),
    loss = sum(y * r), gradients with respect to x and k, in a tf.function, conv the
    flow's own (`image_conv2d`); the median time times the layer's count per step, summed,
    is what the convolutions alone cost in a training step at these shapes.
    """
    import tensorflow as tf

    from tfp_glow.functional.conv import image_conv2d

    result = dict(config="conv_floor", layers=[])
    batch = args.batch_size

    @tf.function
    def conv_step(x, k, r):
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            y = image_conv2d(x, k)
            loss = tf.reduce_sum(y * r)
        return tape.gradient(loss, [x, k])

    total = 0.0
    layers = conv_layers(args.image_shape, args.num_levels, args.num_steps, args.hidden_channels, True)
    for i, (name, h, w, c_in, c_out, size, count) in enumerate(layers):
        x = tf.random.stateless_normal([batch, h, w, c_in], seed=[i, 1])
        k = tf.random.stateless_normal([size, size, c_in, c_out], seed=[i, 2]) * 0.05
        r = tf.random.stateless_normal([batch, h, w, c_out], seed=[i, 3])
        for _ in range(2):
            conv_step(x, k, r)[0].numpy()
        times = []
        for _ in range(max(args.steps, 5)):
            start = time.perf_counter()
            conv_step(x, k, r)[0].numpy()
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        flops = 3 * 2 * batch * h * w * size * size * c_in * c_out
        total += seconds * count
        result["layers"].append(
            dict(
                name=name,
                shape=f"[{batch}, {h}, {w}, {c_in}] x [{size}, {size}, {c_in}, {c_out}]",
                count=count,
                seconds=seconds,
                gflops=flops / seconds / 1e9,
            )
        )
    result["total_s"] = total
    result["loadavg"] = os.getloadavg()
    return result


def _supports(memory_efficient) -> bool:
    """Whether the installed tfp_glow's Glow takes this `memory_efficient` value."""
    import inspect

    import tfp_glow

    if "memory_efficient" not in inspect.signature(tfp_glow.Glow).parameters:
        return False
    return memory_efficient is True or hasattr(tfp_glow, "StackedFlowSteps")


def _supports_compute_dtype() -> bool:
    """Whether the installed tfp_glow's Glow computes its networks in another precision."""
    import inspect

    import tfp_glow

    return "compute_dtype" in inspect.signature(tfp_glow.Glow).parameters


def base_config(name: str) -> str:
    """The configuration a (possibly `@baseline`) name runs."""
    return name.removesuffix(BASELINE)


def describe(name: str) -> str:
    label = CONFIGS[base_config(name)]
    return f"{label}, the baseline's tfp_glow" if name.endswith(BASELINE) else label


def _build_tfp_glow(args, images, memory_efficient=False, compute_dtype=None):
    import tfp_glow

    glow = tfp_glow.Glow(
        args.image_shape,
        args.num_levels,
        args.num_steps,
        hidden_channels=args.hidden_channels,
        coupling="affine",
        permutation="conv1x1",
        lu_decomposed=True,
        split_prior=True,
        seed=args.seed,
        **(dict(memory_efficient=memory_efficient) if memory_efficient else {}),
        **(dict(compute_dtype=compute_dtype) if compute_dtype else {}),
    )
    glow.initialize(images)
    return glow, tfp_glow.glow_distribution(glow)


def _build_tfb_glow(args, images):
    import functools

    import numpy as np
    import tensorflow_probability as tfp

    tfb, tfd = tfp.bijectors, tfp.distributions
    glow = tfb.Glow(
        output_shape=args.image_shape,
        num_glow_blocks=args.num_levels,
        num_steps_per_block=args.num_steps,
        coupling_bijector_fn=functools.partial(tfb.GlowDefaultNetwork, num_hidden=args.hidden_channels),
        exit_bijector_fn=tfb.GlowDefaultExitNetwork,
        grab_after_block=(0.5,) * (args.num_levels - 1) + (0.0,),
        use_actnorm=True,
        seed=args.seed,
    )
    # TFP's ActNorms initialize from the first data they see: make that a real batch
    # in the encoding direction, as tfp_glow's initialize() does.
    glow.inverse(images)
    base = tfd.Sample(
        tfd.Normal(np.float32(0.0), np.float32(1.0)), sample_shape=[int(np.prod(args.image_shape))]
    )
    return glow, tfd.TransformedDistribution(base, glow)


def worker_flow(args, name):
    import keras
    import numpy as np
    import tensorflow as tf

    import tfp_glow

    result = dict(config=name, versions=_versions(), loadavg_start=os.getloadavg())
    result["tfp_glow_path"] = os.path.dirname(os.path.abspath(tfp_glow.__file__))
    name = base_config(name)
    memory_efficient = MEMORY_EFFICIENT.get(name, False)
    if memory_efficient and not _supports(memory_efficient):
        return dict(config=result["config"], not_implemented=True)
    compute_dtype = "bfloat16" if name == "tfp_glow_bf16" else None
    if compute_dtype and not _supports_compute_dtype():
        return dict(config=result["config"], not_implemented=True)
    result["rss_after_import_kib"] = _rss_kib()
    images = tf.random.stateless_uniform(
        [args.batch_size, *args.image_shape], seed=[args.seed, 1], minval=-0.5, maxval=0.5
    )
    jit = name == "tfp_glow_xla"
    start = time.perf_counter()
    if name in OURS:
        glow, dist = _build_tfp_glow(args, images, memory_efficient, compute_dtype)
        flops = train_flops(
            args.image_shape, args.num_levels, args.num_steps, args.hidden_channels, args.batch_size, True
        )
    elif name == "tfb_glow":
        glow, dist = _build_tfb_glow(args, images)
        flops = train_flops(
            args.image_shape, args.num_levels, args.num_steps, args.hidden_channels, args.batch_size, False
        )
    else:
        raise ValueError(f"unknown configuration {name!r}")
    result["build_and_init_s"] = time.perf_counter() - start
    variables = list(glow.trainable_variables)
    result["trainable_parameters"] = int(sum(np.prod(v.shape) for v in variables))
    result["train_flops"] = flops
    optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE)
    image_shape = tuple(args.image_shape)

    def train_step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tfp_glow.bits_per_dim(dist.log_prob(x), image_shape, NUM_BINS))
        grads = tape.gradient(loss, variables)
        missing = [v.name for v, g in zip(variables, grads, strict=True) if g is None]
        if missing:
            raise ValueError(f"no gradient for {missing}")
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    train_step = tf.function(train_step, jit_compile=jit)
    start = time.perf_counter()
    concrete = train_step.get_concrete_function(images)
    result["trace_s"] = time.perf_counter() - start
    result["graph_ops"] = len(concrete.graph.get_operations())
    first, loss = _timed_first_call(train_step, images)
    result["first_call_s"] = first + result["trace_s"]
    losses = [float(loss)]
    for _ in range(args.warmup):
        losses.append(float(train_step(images)))
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        losses.append(float(train_step(images)))  # float() waits for the step
        times.append(time.perf_counter() - start)
    result["step_s"] = statistics.median(times)
    result["step_times_s"] = times
    result["losses_bits_per_dim"] = [losses[0], losses[-1]]
    if not all(np.isfinite(losses)):
        raise FloatingPointError(f"non-finite loss: {losses}")
    result["peak_rss_train_kib"] = _rss_kib()

    batch = args.batch_size
    sample = tf.function(lambda: dist.sample(batch, seed=args.seed), jit_compile=jit)
    encode = tf.function(glow.inverse, jit_compile=jit)
    for what, fn, arg in (("sample", sample, None), ("encode", encode, images)):
        first, _ = _timed_first_call(fn, arg)
        result[f"{what}_first_call_s"] = first
        for _ in range(args.warmup):
            np.asarray(fn(arg) if arg is not None else fn())
        seconds, _ = _median_seconds(fn, arg, args.steps)
        result[f"{what}_s"] = seconds
    out = np.asarray(sample())
    result["sample_finite"] = bool(np.isfinite(out).all())
    result["peak_rss_end_kib"] = _rss_kib()
    result["loadavg_end"] = os.getloadavg()
    return result


def run_worker(args):
    if args._tfp_glow_path:
        sys.path.insert(0, args._tfp_glow_path)
    try:
        if args.intra_op_threads and args._worker != "ceiling":
            import tensorflow as tf

            # The machine's ceiling is always measured with TensorFlow's default (every core per op).
            tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
        if args._worker == "ceiling":
            result = worker_ceiling(args)
        elif args._worker == "conv_floor":
            result = worker_conv_floor(args)
        else:
            result = worker_flow(args, args._worker)
    except Exception as e:  # reported in the table, with the traceback on stderr
        import traceback

        traceback.print_exc()
        result = dict(config=args._worker, error=f"{type(e).__name__}: {e}")
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


# Parent: runs the workers, prints the report.


def _worker_command(args, name):
    h, w, c = args.image_shape
    return [
        sys.executable,
        os.path.abspath(__file__),
        f"--_worker={name}",
        f"--image_shape={h},{w},{c}",
        f"--num_levels={args.num_levels}",
        f"--num_steps={args.num_steps}",
        f"--hidden_channels={args.hidden_channels}",
        f"--batch_size={args.batch_size}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--seed={args.seed}",
        f"--matmul_size={args.matmul_size}",
        f"--ceiling_runs={args.ceiling_runs}",
        f"--intra_op_threads={args.intra_op_threads}",
        *([f"--_tfp_glow_path={os.path.abspath(args.baseline)}"] if name.endswith(BASELINE) else []),
    ]


def spawn(args, name):
    start = time.perf_counter()
    print(f"[benchmark] running {name} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            _worker_command(args, name), capture_output=True, text=True, timeout=args.worker_timeout
        )
    except subprocess.TimeoutExpired:
        return dict(config=name, error=f"timed out after {args.worker_timeout} s")
    wall = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
            result["process_wall_s"] = wall
            if "error" in result:
                sys.stderr.write(proc.stderr[-4000:])
            print(f"[benchmark] {name} done in {wall:.0f} s", file=sys.stderr, flush=True)
            return result
    sys.stderr.write(proc.stderr[-4000:])
    return dict(config=name, error=f"worker exited with {proc.returncode} and no result")


def _best_ceiling(ceilings):
    best = dict(next((c for c in ceilings if "error" not in c), ceilings[0]))
    for key in ("matmul_gflops", "conv3x3_gflops"):
        values = [c[key] for c in ceilings if key in c]
        if values:
            best[key] = max(values)
            best[f"{key}_runs"] = values
    return best


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def _timed(result):
    """Whether a worker's result has a training step time (not failed, not "not implemented")."""
    return result is not None and "step_s" in result


def training_speedup(tfb, ours):
    """tfb.Glow's training step time over ours (above 1 = ours faster); None unless both were timed.

    The one definition of the ratio that the target is about, used for a single run and for
    each round alike.
    """
    if not (_timed(tfb) and _timed(ours)):
        return None
    return tfb["step_s"] / ours["step_s"]


# Rounds: the same configurations run several times, to see through the machine's noise.


def round_orders(configs, rounds):
    """The order of the configurations in each round: as given, then reversed, alternating.

    The machine's load drifts during a run (other jobs, their load decaying into the next
    worker), so a configuration that always ran first, or always right after another,
    would see a systematically different machine; alternating the order spreads that.
    """
    return [list(configs) if i % 2 == 0 else list(reversed(configs)) for i in range(rounds)]


def median_run(runs):
    """The run whose ms / step is the median of `runs` (the lower middle one for an even count).

    A real run rather than an average of two, so that every column of the table (memory,
    sampling, first call) comes from the same process as its step time. Failed runs are
    left out; when every run failed, the first one is returned so that its error is shown.
    """
    timed = sorted((r for r in runs if _timed(r)), key=lambda r: r["step_s"])
    return timed[(len(timed) - 1) // 2] if timed else runs[0]


def _median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize_rounds(configs, rounds):
    """Per-round step times and ratios, and the runs that the main table shows.

    Args:
      configs: the configuration names, in the order of the table.
      rounds: one list of worker results per round, in the order they ran (each result
        has its `config`).

    Returns a dict: `results` (the median run of each configuration, in `configs` order),
    `orders` (each round's order), `step_s` and `speedups` (name -> one value or None per
    round; speedups, each round's tfb.Glow step time over ours in that same round, only for
    our configurations and only when tfb_glow ran), `median_step_s`, `median_speedup` (the
    median of the per-round ratios: the headline, since each ratio compares two runs under
    the same load) and `speedup_of_medians` (tfb.Glow's median step time over ours).
    """
    by_round = [{r["config"]: r for r in results} for results in rounds]
    step_s = {
        name: [rnd[name]["step_s"] if _timed(rnd.get(name)) else None for rnd in by_round] for name in configs
    }
    median_step_s = {name: _median_or_none(times) for name, times in step_s.items()}
    ours = [name for name in configs if name in OURS] if "tfb_glow" in configs else []
    speedups = {
        name: [training_speedup(rnd.get("tfb_glow"), rnd.get(name)) for rnd in by_round] for name in ours
    }
    tfb_median = median_step_s.get("tfb_glow")
    against_baseline = {
        name: [
            rnd[name]["step_s"] / rnd[name + BASELINE]["step_s"]
            if _timed(rnd.get(name)) and _timed(rnd.get(name + BASELINE))
            else None
            for rnd in by_round
        ]
        for name in configs
        if name + BASELINE in configs
    }
    return dict(
        against_baseline=against_baseline,
        median_against_baseline={name: _median_or_none(v) for name, v in against_baseline.items()},
        results=[median_run([rnd[name] for rnd in by_round if name in rnd]) for name in configs],
        orders=[[r["config"] for r in results] for results in rounds],
        step_s=step_s,
        speedups=speedups,
        median_step_s=median_step_s,
        median_speedup={name: _median_or_none(values) for name, values in speedups.items()},
        speedup_of_medians={
            name: tfb_median / median_step_s[name]
            if tfb_median is not None and median_step_s[name] is not None
            else None
            for name in ours
        },
    )


def _ms(seconds):
    return _fmt(None if seconds is None else seconds * 1e3, ".0f")


def _ms_list(times):
    return ", ".join(_ms(t) for t in times)


def _ratio_list(values):
    return ", ".join("n/a" if v is None else f"{v:.2f}" for v in values)


def rounds_table(summary):
    """Markdown lines: each round's ms / step per configuration and its tfb.Glow / ours ratios."""
    names = list(summary["step_s"])
    ours = list(summary["speedups"])
    lines = [
        "| round | order | "
        + " | ".join(f"`{n}` ms / step" for n in names)
        + "".join(f" | `tfb_glow` / `{n}`" for n in ours)
        + " |",
        "|---" * (2 + len(names) + len(ours)) + "|",
    ]
    for i, order in enumerate(summary["orders"]):
        cells = [str(i + 1), ", ".join(order)]
        cells += [_ms(summary["step_s"][n][i]) for n in names]
        cells += [_fmt(summary["speedups"][n][i], ".2f") for n in ours]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["**median**", ""]
    cells += [_ms(summary["median_step_s"][n]) for n in names]
    cells += [_fmt(summary["median_speedup"][n], ".2f") for n in ours]
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def _speedup_line(name, tfb, ours, rounds=None):
    """The headline line of one configuration against tfb.Glow, and whether the target is met.

    With rounds the target is judged on the median of the per-round ratios: each of those
    compares two runs under about the same load, which a ratio of runs from different
    rounds does not.
    """
    if not rounds:
        speedup = training_speedup(tfb, ours)
        met = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
        return (
            f"- `{name}` vs `tfb_glow`, training step: speed-up {speedup:.2f}x "
            f"(tfb.Glow {tfb['step_s'] * 1e3:.0f} ms / {ours['step_s'] * 1e3:.0f} ms; above 1 = tfp_glow "
            f"faster); target >= {TARGET_SPEEDUP:g}x: **{met}**."
        )
    speedup = rounds["median_speedup"][name]
    met = "n/a (no round ran both)" if speedup is None else "met" if speedup >= TARGET_SPEEDUP else "NOT met"
    return (
        f"- `{name}` vs `tfb_glow`, training step: speed-up {_fmt(speedup, '.2f')}x, the median of the "
        f"per-round ratios ({_ratio_list(rounds['speedups'][name])}); the ratio of the per-configuration "
        f"median step times is {rounds['speedup_of_medians'][name]:.2f}x (tfb.Glow "
        f"{rounds['median_step_s']['tfb_glow'] * 1e3:.0f} ms / "
        f"{rounds['median_step_s'][name] * 1e3:.0f} ms); "
        f"above 1 = tfp_glow faster; target >= {TARGET_SPEEDUP:g}x on the median of the per-round ratios: "
        f"**{met}**."
    )


def report(args, command, started, loadavg_start, ceiling, results, loadavg_end, floor=None, rounds=None):
    """The markdown report of one run of the harness.

    `rounds` (from `summarize_rounds`, `results` then being its median runs) adds each
    round's numbers and makes the headline ratio the median of the per-round ratios.
    """
    lines = []
    add = lines.append
    h, w, c = args.image_shape
    versions = ceiling.get("versions") or next((r["versions"] for r in results if "versions" in r), {})
    add(f"Command: `{command}`")
    add(f"Date: {started}")
    add(
        f"Machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs "
        f"(load average at start {', '.join(f'{x:.2f}' for x in loadavg_start)}; "
        f"at end {', '.join(f'{x:.2f}' for x in loadavg_end)})"
    )
    add(
        "Versions: Python {python}, TensorFlow {tensorflow}, TensorFlow Probability "
        "{tensorflow_probability}, Keras {keras}".format(
            **{k: versions.get(k, "?") for k in ("python", "tensorflow", "tensorflow_probability", "keras")}
        )
    )
    add(
        f"Workload: {h}x{w}x{c} images (random uniform in [-0.5, 0.5], one fixed batch), "
        f"L={args.num_levels}, "
        f"K={args.num_steps}, hidden width {args.hidden_channels}, affine coupling, LU 1x1 conv, "
        f"batch {args.batch_size}; Adam lr {LEARNING_RATE:g}, loss mean bits/dim; median of {args.steps} "
        f"steps after {args.warmup} warm-up steps (first call excluded); threads per op: "
        + (f"{args.intra_op_threads}" if args.intra_op_threads else "TensorFlow's default")
        + "."
    )
    conv_ceiling = ceiling.get("conv3x3_gflops")
    add(
        f"fp32 ceiling through TF (best of {args.ceiling_runs}): matmul "
        f"{_fmt(ceiling.get('matmul_gflops'), '.0f')} GFLOP/s ({ceiling.get('matmul_description', '')}), "
        f"conv {_fmt(conv_ceiling, '.0f')} GFLOP/s ({ceiling.get('conv3x3_description', '')}); "
        f"measured before and after the configurations (matmul "
        f"{', '.join(f'{x:.0f}' for x in ceiling.get('matmul_gflops_runs', []))}; conv "
        f"{', '.join(f'{x:.0f}' for x in ceiling.get('conv3x3_gflops_runs', []))}), the best is the ceiling."
    )
    f_ours = train_flops(
        args.image_shape, args.num_levels, args.num_steps, args.hidden_channels, args.batch_size
    )
    f_tfb = train_flops(
        args.image_shape, args.num_levels, args.num_steps, args.hidden_channels, args.batch_size, False
    )
    add(
        f"FLOPs of one training step (3 x forward convolutions, whole batch): tfp_glow {f_ours / 1e9:.2f} "
        f"GFLOP, tfb.Glow {f_tfb / 1e9:.2f} GFLOP (no edge-bias channel)."
    )
    if rounds:
        add(
            f"Rounds: {len(rounds['orders'])}, interleaved (odd rounds in the order given, even rounds "
            f"reversed), every configuration in its own process each round. The table shows, for each "
            f"configuration, the run whose ms / step is the median over its rounds (the lower of the two "
            f"middle ones for an even count), so that a row is one real run; every round's ms / step is "
            f"in the column after it."
        )
    add("")
    add(
        "| configuration | ms / step |"
        + (" ms / step, each round |" if rounds else "")
        + " min ms / step | train images/s | GFLOP/s | % of conv ceiling "
        "| peak RSS train (MiB) | RSS after import (MiB) | sample images/s | encode images/s "
        "| first call (s) | graph ops | parameters |"
    )
    add("|---" * (14 if rounds else 13) + "|")
    by_name = {}
    for r in results:
        name = r["config"]
        by_name[name] = r
        label = f"`{name}` ({describe(name)})"
        each = f" {_ms_list(rounds['step_s'][name])} |" if rounds else ""
        if r.get("not_implemented"):
            add(f"| {label} | not implemented |{each} | | | | | | | | | | |")
            continue
        if "error" in r:
            add(f"| {label} | failed: {r['error'][:120]} |{each} | | | | | | | | | | |")
            continue
        step = r["step_s"]
        gflops = r["train_flops"] / step / 1e9
        r["gflops"] = gflops
        r["ceiling_fraction"] = gflops / conv_ceiling if conv_ceiling else None
        add(
            f"| {label} | {step * 1e3:.0f} |{each} {min(r['step_times_s']) * 1e3:.0f} "
            f"| {args.batch_size / step:.0f} | {gflops:.1f} "
            f"| {_fmt(None if conv_ceiling is None else 100 * r['ceiling_fraction'], '.1f')} "
            f"| {r['peak_rss_train_kib'] / 1024:.0f} | {r['rss_after_import_kib'] / 1024:.0f} "
            f"| {args.batch_size / r['sample_s']:.0f} | {args.batch_size / r['encode_s']:.0f} "
            f"| {r['first_call_s']:.1f} | {r['graph_ops']} | {r['trainable_parameters']:,} |"
        )
    loads = [
        f"{r['config']} {r['loadavg_start'][0]:.2f}" for r in results if r.get("loadavg_start") is not None
    ]
    if loads:
        add("")
        add(
            f"1-minute load average when each worker started (the previous worker's load decays "
            f"into it): {'; '.join(loads)}."
        )
    if rounds:
        add("")
        add("Each round (ratios: that round's tfb.Glow ms / step over ours, above 1 = tfp_glow faster):")
        add("")
        lines += rounds_table(rounds)
    add("")
    add("Ratios and targets:")
    tfb = by_name.get("tfb_glow")
    for name in OURS:
        r = by_name.get(name)
        if _timed(r) and _timed(tfb):
            add(_speedup_line(name, tfb, r, rounds))
            add(
                f"  {'Of the median runs: s' if rounds else 'S'}peed-up of sampling "
                f"{tfb['sample_s'] / r['sample_s']:.2f}x, of encoding "
                f"{tfb['encode_s'] / r['encode_s']:.2f}x; peak RSS of training "
                f"{r['peak_rss_train_kib'] / tfb['peak_rss_train_kib']:.2f}x tfb.Glow's."
            )
    for name in OURS:
        r, base = by_name.get(name), by_name.get(name + BASELINE)
        if _timed(r) and _timed(base):
            per_round = ""
            if rounds and name in rounds["against_baseline"]:
                median = _fmt(rounds["median_against_baseline"][name], ".3f")
                per_round = (
                    f" The median of the per-round ratios: {median}"
                    f" ({_ratio_list(rounds['against_baseline'][name])})."
                )
            add(
                f"- `{name}` against `{name}{BASELINE}` (this tfp_glow / the baseline's): ms / step "
                f"{r['step_s'] / base['step_s']:.3f} "
                f"({r['step_s'] * 1e3:.0f} / {base['step_s'] * 1e3:.0f} ms), "
                f"peak RSS of training {r['peak_rss_train_kib'] / base['peak_rss_train_kib']:.3f} "
                f"({r['peak_rss_train_kib'] / 1024:.0f} / {base['peak_rss_train_kib'] / 1024:.0f} MiB), "
                f"graph ops {r['graph_ops']} / {base['graph_ops']}.{per_round}"
            )
    for name in (*OURS, "tfb_glow"):
        r = by_name.get(name)
        if _timed(r) and conv_ceiling:
            met = "met" if r["ceiling_fraction"] >= TARGET_CEILING_FRACTION else "NOT met"
            ideal = r["train_flops"] / (conv_ceiling * 1e9)
            add(
                f"- `{name}`: {r['gflops']:.1f} GFLOP/s = {100 * r['ceiling_fraction']:.1f}% of the conv "
                f"ceiling (target >= {100 * TARGET_CEILING_FRACTION:.0f}%: **{met}**); at the ceiling a step "
                f"would take {ideal * 1e3:.0f} ms, measured {r['step_s'] * 1e3:.0f} ms "
                f"({r['step_s'] / ideal:.1f}x)."
            )
    if floor and "total_s" in floor:
        add(
            f"- The convolutions alone (each layer of tfp_glow's shapes on its own, forward + backward, "
            f"as the flow computes it) take {floor['total_s'] * 1e3:.0f} ms per training step; per layer "
            "below."
        )
        for name in (*OURS, "tfb_glow"):
            r = by_name.get(name)
            if _timed(r):
                add(
                    f"  `{name}`: {r['step_s'] * 1e3:.0f} ms per step, of which the convolutions alone would "
                    f"be {100 * floor['total_s'] / r['step_s']:.0f}%; the rest "
                    f"({(r['step_s'] - floor['total_s']) * 1e3:.0f} ms) is everything else "
                    f"(elementwise ops, slicing and concatenation, log-dets, Adam, per-op overhead)."
                )
    if max(loadavg_start[0], loadavg_end[0]) > 1.5:
        add(
            "- 1-minute load average above 1.5 at the start or end: other jobs may have shared the "
            f"{os.cpu_count()} cores during this run; its seconds are then upper bounds."
        )
    else:
        add(
            "- 1-minute load average at most 1.5 at the start and end (a busy worker alone adds about 1 "
            "to it): the cores were probably not shared."
        )
    if floor and "layers" in floor:
        add("")
        add("| layer (tfp_glow shapes) | input x kernel | per step | ms fwd+bwd | GFLOP/s | ms per step |")
        add("|---|---|---|---|---|---|")
        for layer in floor["layers"]:
            add(
                f"| {layer['name']} | {layer['shape']} | {layer['count']} | {layer['seconds'] * 1e3:.2f} "
                f"| {layer['gflops']:.1f} | {layer['seconds'] * layer['count'] * 1e3:.0f} |"
            )
        add(f"| **total** | | | | | **{floor['total_s'] * 1e3:.0f}** |")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--image_shape", default=None, help="H,W,C (default 28,28,1)")
    parser.add_argument("--num_levels", type=int, default=None, help="L (default 2)")
    parser.add_argument("--num_steps", type=int, default=None, help="K (default 16)")
    parser.add_argument("--hidden_channels", type=int, default=None, help="default 128")
    parser.add_argument("--batch_size", type=int, default=None, help="default 64")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first call")
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated subset of {', '.join(CONFIGS)}",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the configurations this many times, interleaved (order reversed every other round); "
        "the report gives each round's ratios and their median",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--intra_op_threads",
        type=int,
        default=0,
        help="threads per TensorFlow op in the configurations and the convolution floor, the same for all "
        "(0: TensorFlow's default, one per core); the fp32 ceiling always uses the default",
    )
    parser.add_argument("--matmul_size", type=int, default=2048)
    parser.add_argument("--ceiling_runs", type=int, default=10)
    parser.add_argument(
        "--conv_floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time each convolution of the flow on its own (forward + backward)",
    )
    parser.add_argument("--worker_timeout", type=float, default=3600.0, help="seconds per subprocess")
    parser.add_argument("--json", default=None, help="also write all measurements to this file")
    parser.add_argument(
        "--baseline",
        default=None,
        help="a checkout of another tfp_glow: each tfp_glow configuration also runs with it (NAME@baseline)",
    )
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--_tfp_glow_path", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    resolved = dict(DEFAULTS)
    if args.preset:
        resolved.update(PRESETS[args.preset])
    for key in DEFAULTS:
        value = getattr(args, key)
        if value is not None:
            resolved[key] = value
    if isinstance(resolved["image_shape"], str):
        resolved["image_shape"] = tuple(int(n) for n in resolved["image_shape"].split(","))
    for key, value in resolved.items():
        setattr(args, key, value)
    if len(args.image_shape) != 3:
        parser.error(f"--image_shape must be H,W,C; got {args.image_shape}")
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown --configs {unknown}; choose from {list(CONFIGS)}")
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1; got {args.rounds}")
    if args.baseline is not None:
        if not os.path.isdir(os.path.join(args.baseline, "tfp_glow")):
            parser.error(f"--baseline must be a checkout with a tfp_glow package; got {args.baseline}")
        args.configs += [f"{name}{BASELINE}" for name in args.configs if name in OURS]
    return args


def run_rounds(args):
    """Every configuration `args.rounds` times, each in its own process: a list of results per round.

    One process per configuration gives a ratio as noisy as the machine (tfb_glow's step
    time has varied by 1.5x between runs here); interleaved rounds give each configuration
    several runs under loads that the others also saw (see `round_orders`).
    """
    rounds = []
    for i, order in enumerate(round_orders(args.configs, args.rounds)):
        if args.rounds > 1:
            print(f"[benchmark] round {i + 1}/{args.rounds}: {', '.join(order)}", file=sys.stderr, flush=True)
        rounds.append([spawn(args, name) for name in order])
    return rounds


def _without_results(summary):
    """The summary for the JSON file, without the median runs (they are its `results` already)."""
    return {key: value for key, value in summary.items() if key != "results"}


def main(argv=None):
    args = parse_args(argv)
    if args._worker:
        run_worker(args)
        return
    command = shlex.join(["python", os.path.relpath(os.path.abspath(__file__)), *sys.argv[1:]])
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    loadavg_start = os.getloadavg()
    print(f"[benchmark] load average at start: {loadavg_start}", file=sys.stderr, flush=True)
    ceilings = [spawn(args, "ceiling")]
    floor = spawn(args, "conv_floor") if args.conv_floor else None
    rounds = run_rounds(args)
    summary = summarize_rounds(args.configs, rounds) if args.rounds > 1 else None
    results = summary["results"] if summary else rounds[0]
    # Measured before and after the configurations; the best of both is the ceiling.
    ceilings.append(spawn(args, "ceiling"))
    ceiling = _best_ceiling(ceilings)
    loadavg_end = os.getloadavg()
    text = report(args, command, started, loadavg_start, ceiling, results, loadavg_end, floor, summary)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                dict(
                    command=command,
                    date=started,
                    loadavg_start=loadavg_start,
                    loadavg_end=loadavg_end,
                    ceiling=ceiling,
                    conv_floor=floor,
                    results=results,
                    # Every round's raw results, in the order they ran; `results` holds their median runs.
                    **(dict(rounds=rounds, rounds_summary=_without_results(summary)) if summary else {}),
                ),
                f,
                indent=1,
            )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
