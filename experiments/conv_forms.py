"""Thin 'SAME' convolutions of Glow's shapes: `tf.nn.conv2d` against matrix-product forms.

    python experiments/conv_forms.py                        # TensorFlow's default threads
    INTRA=1 python experiments/conv_forms.py                # one thread per op (the digits preset's)

For each layer shape (the benchmark workload's and the digits preset's) it times forward and
backward (gradients of the input and the kernel) in one tf.function, median of 30 calls after 3,
in ms, for:

  conv2d   tf.nn.conv2d (oneDNN's kernels on CPU)
  im2col   the k x k shifted copies of the padded input stacked on channels, one matmul with the
           kernel as [k*k*C, O]
  col2im   one matmul to k*k*O channels, then the sum of k*k shifted slices
  matmul   (1x1 kernels) a plain matmul of [N*H*W, C] by [C, O]
  padded   (layers with fewer than 16 input or output channels) `tf.nn.conv2d` with the thin side
           zero-padded to 16 channels and the output sliced back: whether oneDNN runs a wider
           layer faster than the thin one

and checks that every form computes the same convolution.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

SHAPES = [  # name, input [N, H, W, C], kernel [k, k, C, O]
    ("bench L0 in", [64, 14, 14, 2], [3, 3, 2, 128]),
    ("bench L0 hidden", [64, 14, 14, 128], [1, 1, 128, 128]),
    ("bench L0 out", [64, 14, 14, 128], [3, 3, 128, 4]),
    ("bench L1 in", [64, 7, 7, 4], [3, 3, 4, 128]),
    ("bench L1 hidden", [64, 7, 7, 128], [1, 1, 128, 128]),
    ("bench L1 out", [64, 7, 7, 128], [3, 3, 128, 8]),
    ("bench L0 invconv", [64, 14, 14, 4], [1, 1, 4, 4]),
    ("digits L0 in", [64, 4, 4, 2], [3, 3, 2, 96]),
    ("digits L0 hidden", [64, 4, 4, 96], [1, 1, 96, 96]),
    ("digits L0 out", [64, 4, 4, 96], [3, 3, 96, 4]),
    ("digits L1 in", [64, 2, 2, 4], [3, 3, 4, 96]),
    ("digits L1 out", [64, 2, 2, 96], [3, 3, 96, 8]),
]


def conv2d(x, k):
    return tf.nn.conv2d(x, k, 1, "SAME")


def matmul(x, k):
    shape = tf.shape(x)
    y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), k[0, 0])
    return tf.reshape(y, tf.concat([shape[:-1], [k.shape[-1]]], 0))


def im2col(x, k):
    size, (height, width) = k.shape[0], x.shape[1:3]
    p = (size - 1) // 2
    padded = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
    taps = [padded[:, i : i + height, j : j + width, :] for i in range(size) for j in range(size)]
    return tf.einsum("nhwc,co->nhwo", tf.concat(taps, -1), tf.reshape(k, [-1, k.shape[-1]]))


def col2im(x, k):
    size, (height, width), out = k.shape[0], x.shape[1:3], k.shape[-1]
    p = (size - 1) // 2
    # z[..., (i, j, o)] = sum_c x[..., c] k[i, j, c, o]; out[h, w] = sum_ij z[h + i - p, w + j - p, (i, j)]
    z = tf.einsum("nhwc,ck->nhwk", x, tf.reshape(tf.transpose(k, [2, 0, 1, 3]), [k.shape[2], -1]))
    padded = tf.pad(z, [[0, 0], [p, p], [p, p], [0, 0]])
    pieces = [
        padded[:, i : i + height, j : j + width, (i * size + j) * out : (i * size + j + 1) * out]
        for i in range(size)
        for j in range(size)
    ]
    return tf.add_n(pieces)


PAD_TO = 16


def padded(x, k):
    c, o = k.shape[2], k.shape[3]
    if c < PAD_TO:
        x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, PAD_TO - c]])
        k = tf.pad(k, [[0, 0], [0, 0], [0, PAD_TO - c], [0, 0]])
    if o < PAD_TO:
        k = tf.pad(k, [[0, 0], [0, 0], [0, 0], [0, PAD_TO - o]])
    return tf.nn.conv2d(x, k, 1, "SAME")[..., :o]


def milliseconds(fn, x, k, calls=30):
    @tf.function
    def step(x, k):
        with tf.GradientTape() as tape:
            tape.watch([x, k])
            y = fn(x, k)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, k])

    for _ in range(4):
        step(x, k)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step(x, k)[0].numpy()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    threads = int(os.environ.get("INTRA", "0"))
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    print(f"threads per op: {threads or 'default'}; ms forward + backward, median of 30")
    print("| layer | input | kernel | conv2d | im2col | col2im | matmul | padded |")
    print("|---|---|---|---|---|---|---|---|")
    tf.random.set_seed(0)
    for name, x_shape, k_shape in SHAPES:
        x = tf.random.normal(x_shape)
        k = 0.1 * tf.random.normal(k_shape)
        reference = conv2d(x, k)
        forms = {"conv2d": conv2d}
        forms.update({"matmul": matmul} if k_shape[0] == 1 else {"im2col": im2col, "col2im": col2im})
        if min(k_shape[2:]) < PAD_TO:
            forms["padded"] = padded
        cells = {}
        for form, fn in forms.items():
            error = float(tf.reduce_max(tf.abs(fn(x, k) - reference)))
            if error > 1e-3:
                raise AssertionError(f"{form} differs from conv2d by {error} at {name}")
            cells[form] = f"{milliseconds(fn, x, k):.2f}"
        row = [cells.get(f, "") for f in ("conv2d", "im2col", "col2im", "matmul", "padded")]
        print(f"| {name} | {x_shape} | {k_shape} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
