"""Training memory against depth, with and without memory-efficient gradients.

    python experiments/memory.py [--steps_per_level=4,32] [--image_shape=28,28,1] [--num_levels=2]
                                 [--hidden_channels=128] [--batch_size=64] [--steady_steps=5]
                                 [--gradients=plain,memory_efficient,reversible] [--grappler=on]
                                 [--allocator=default|bfc|malloc] [--no-malloc_trim]

Each configuration trains (loss, gradients, Adam update in one tf.function) in its
own process: one first step, which includes TensorFlow's graph optimization
(Grappler) and executor setup, then `--steady_steps` more. It reports the process's
peak RSS (ru_maxrss; the ratio K=32 / K=4 says how memory grows with depth), the current RSS at each stage,
and the steady state: the peak of the current RSS, sampled every 5 ms in a
background thread during steps 2..N, minus the current RSS just before step 2.
Before that baseline, free heap pages are returned to the system (glibc's
malloc_trim), so that the steady growth is the memory a step uses rather than what
the first step left cached in the allocator; `--no-malloc_trim` skips this.

With oneDNN on (the default of x86 Linux builds) TensorFlow's CPU allocator is
MklCPUAllocator, a BFC pool for large tensors that never returns memory to the
system: after the first step the RSS holds that step's peak of tensor memory, and
the RSS growth of later steps is near zero whatever they use. Two other allocators
measure the steady state: `--allocator=bfc` (TensorFlow's own BFC allocator, which
counts the bytes of live tensors; this adds the peak tensor bytes of the steady
steps: activations and gradients, no graph or runtime state) and
`--allocator=malloc` (oneDNN off, TF_ENABLE_ONEDNN_OPTS=0: tensors from malloc,
freed back after each step, so the RSS growth is what a step uses; slower Eigen
kernels).

`--grappler=off` disables TensorFlow's graph optimizer (`disable_meta_optimizer`),
to show how much of the first step's growth is graph optimization; `--grappler=on,off`
measures both. RSS includes TensorFlow itself
(a constant few hundred MB) and the weights (linear in K either way).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_MB = 1024 * 1024


def _current_rss_mb() -> float:
    # Second field of statm: resident pages (the VmRSS of /proc/self/status).
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / _MB


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # Not glibc: nothing to trim.


class _RssSampler:
    """Peak of the current RSS, sampled in a background thread while in the `with` block."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak_mb = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, _current_rss_mb())
            self.samples += 1
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _current_rss_mb())


def _worker(config: dict) -> dict:
    load = os.getloadavg()[0]
    if config["allocator"] == "bfc":
        os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
    elif config["allocator"] == "malloc":
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    import keras
    import tensorflow as tf

    import tfp_glow

    if config["grappler"] == "off":
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    rss_after_import = _current_rss_mb()
    glow = tfp_glow.Glow(
        tuple(config["image_shape"]),
        config["num_levels"],
        config["num_steps"],
        hidden_channels=config["hidden_channels"],
        memory_efficient=config["memory_efficient"],
        seed=0,
    )
    images = tf.random.stateless_uniform([config["batch_size"], *config["image_shape"]], [0, 1], -0.5, 0.5)
    glow.initialize(images)
    dist = tfp_glow.glow_distribution(glow)
    optimizer = keras.optimizers.Adam(1e-3)
    variables = list(glow.trainable_variables)
    optimizer.build(variables)
    after_build = _peak_rss_mb()
    rss_before_training = _current_rss_mb()

    @tf.function
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(dist.log_prob(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    # Tracing alone (no run): the graph itself also grows with K.
    start = time.perf_counter()
    train_step.get_concrete_function(images)
    trace_seconds = time.perf_counter() - start
    after_trace = _peak_rss_mb()
    rss_after_tracing = _current_rss_mb()

    start = time.perf_counter()
    loss = float(train_step(images))
    first_seconds = time.perf_counter() - start
    peak_after_first_step = _peak_rss_mb()
    rss_after_first_step = _current_rss_mb()

    if config["malloc_trim"]:
        _malloc_trim()
    if config["allocator"] == "bfc":
        tensors_before = tf.config.experimental.get_memory_info("CPU:0")["current"] / _MB
        tf.config.experimental.reset_memory_stats("CPU:0")
    rss_before_steady = _current_rss_mb()
    start = time.perf_counter()
    with _RssSampler() as sampler:
        for _ in range(config["steady_steps"]):
            loss = float(train_step(images))
    steady_seconds = time.perf_counter() - start
    result = dict(
        tf_version=tf.__version__,
        load=load,
        parameters=sum(int(v.shape.num_elements()) for v in variables),
        loss=loss,
        # Peaks (ru_maxrss), as in the first version of this script.
        peak_rss_mb=_peak_rss_mb(),
        rss_before_training_mb=after_build,
        peak_rss_after_tracing_mb=after_trace,
        peak_rss_after_first_step_mb=peak_after_first_step,
        # Current RSS at each stage.
        rss_after_import_mb=rss_after_import,
        rss_now_before_training_mb=rss_before_training,
        rss_now_after_tracing_mb=rss_after_tracing,
        rss_now_after_first_step_mb=rss_after_first_step,
        rss_now_before_steady_mb=rss_before_steady,
        rss_now_after_steady_mb=_current_rss_mb(),
        steady_peak_rss_mb=sampler.peak_mb,
        steady_growth_mb=sampler.peak_mb - rss_before_steady,
        rss_samples=sampler.samples,
        trace_seconds=trace_seconds,
        first_step_seconds=first_seconds,
        steady_seconds_per_step=steady_seconds / config["steady_steps"],
        seconds_per_step=(first_seconds + steady_seconds) / (1 + config["steady_steps"]),
    )
    if config["allocator"] == "bfc":
        memory = tf.config.experimental.get_memory_info("CPU:0")
        result.update(tensors_before_steady_mb=tensors_before, tensors_steady_peak_mb=memory["peak"] / _MB)
    return result


# --gradients names: the `memory_efficient` argument of Glow each one trains with.
GRADIENTS = {"plain": False, "memory_efficient": True, "reversible": "reversible"}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps_per_level", default="4,32")
    parser.add_argument("--image_shape", default="28,28,1")
    parser.add_argument("--num_levels", type=int, default=2)
    parser.add_argument("--hidden_channels", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--steady_steps", type=int, default=5, help="train steps measured after the first")
    parser.add_argument(
        "--gradients", default="plain,memory_efficient,reversible", help=f"of {list(GRADIENTS)}"
    )
    parser.add_argument("--grappler", default="on", help="on, off, or on,off")
    parser.add_argument("--allocator", default="default", choices=["default", "bfc", "malloc"])
    parser.add_argument("--malloc_trim", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        print(json.dumps(_worker(json.loads(args._worker))))
        return
    if args.steady_steps < 1:
        parser.error(f"--steady_steps must be at least 1. Received: steady_steps={args.steady_steps}")
    ks = [int(n) for n in args.steps_per_level.split(",")]
    unknown = [g for g in args.gradients.split(",") if g not in GRADIENTS]
    if unknown:
        parser.error(f"--gradients must be of {list(GRADIENTS)}. Received: {unknown}")
    rows = []
    for grappler in args.grappler.split(","):
        for gradients in args.gradients.split(","):
            for k in ks:
                config = dict(
                    image_shape=[int(n) for n in args.image_shape.split(",")],
                    num_levels=args.num_levels,
                    num_steps=k,
                    hidden_channels=args.hidden_channels,
                    batch_size=args.batch_size,
                    steady_steps=args.steady_steps,
                    memory_efficient=GRADIENTS[gradients],
                    grappler=grappler,
                    allocator=args.allocator,
                    malloc_trim=args.malloc_trim,
                )
                done = subprocess.run(
                    [sys.executable, __file__, f"--_worker={json.dumps(config)}"],
                    capture_output=True,
                    text=True,
                )
                if done.returncode:
                    sys.exit(f"grappler={grappler} {gradients} K={k} failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append((grappler, gradients, k, result))
                print(f"grappler={grappler} {gradients} K={k}: {result}", file=sys.stderr, flush=True)
    loads = ", ".join(f"{r['load']:.1f}" for *_, r in rows)
    print(
        f"`python experiments/memory.py {' '.join(sys.argv[1:])}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"TF {rows[0][3]['tf_version']}, allocator {args.allocator}, malloc_trim {args.malloc_trim}; "
        f"1-minute load at the start of each configuration: {loads}\n"
    )
    bfc = args.allocator == "bfc"
    print(
        "| gradients | grappler | K | parameters | peak RSS (MB) | before training (MB) | after tracing (MB) "
        "| growth in the steps (MB) | s / step | RSS now: before training | after tracing | after step 1 "
        "| before step 2 | steady peak | steady growth (MB) | trace (s) | step 1 (s) | steady s / step |"
        + (" tensors before step 2 (MB) | tensors steady peak (MB) |" if bfc else "")
    )
    print("|---" * (18 + 2 * bfc) + "|")
    for grappler, gradients, k, r in rows:
        print(
            f"| {gradients.replace('_', '-')} | {grappler} | {k} | {r['parameters']:,} | "
            f"{r['peak_rss_mb']:.0f} | {r['rss_before_training_mb']:.0f} | "
            f"{r['peak_rss_after_tracing_mb']:.0f} | "
            f"{r['peak_rss_mb'] - r['peak_rss_after_tracing_mb']:.0f} | "
            f"{r['seconds_per_step']:.2f} | {r['rss_now_before_training_mb']:.0f} | "
            f"{r['rss_now_after_tracing_mb']:.0f} | {r['rss_now_after_first_step_mb']:.0f} | "
            f"{r['rss_now_before_steady_mb']:.0f} | {r['steady_peak_rss_mb']:.0f} | "
            f"{r['steady_growth_mb']:.0f} | {r['trace_seconds']:.1f} | {r['first_step_seconds']:.1f} | "
            f"{r['steady_seconds_per_step']:.2f} |"
            + (f" {r['tensors_before_steady_mb']:.0f} | {r['tensors_steady_peak_mb']:.0f} |" if bfc else "")
        )
    by_config = {(g, grad, k): r for g, grad, k, r in rows}
    print()
    for grappler in args.grappler.split(","):
        for gradients in args.gradients.split(","):
            big, small = by_config[(grappler, gradients, ks[-1])], by_config[(grappler, gradients, ks[0])]
            line = (
                f"K={ks[-1]} / K={ks[0]}, {gradients}, grappler {grappler}: peak RSS "
                f"{_ratio(big['peak_rss_mb'], small['peak_rss_mb'])}, steady-state step growth "
                f"{_ratio(big['steady_growth_mb'], small['steady_growth_mb'])}"
            )
            if bfc:
                line += (
                    ", steady tensor peak "
                    f"{_ratio(big['tensors_steady_peak_mb'], small['tensors_steady_peak_mb'])}"
                )
            print(line)


if __name__ == "__main__":
    main()
