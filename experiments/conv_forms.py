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
  thin_grad  (3x3 layers with at most 8 channels on one side and more on the other)
           `tf.nn.conv2d` forward, and the gradient on the thin side as one matrix product over the
           9 taps: with few inputs, dL/dx = the shifted sum of g K^T ([N*H*W, O] by [O, 9C]); with
           few outputs, dL/dK = x^T times the 9 shifted copies of g ([C, N*H*W] by [N*H*W, 9O])
  thin     (the same layers) `tfp_glow.functional.conv.thin_conv2d`, the form the flow runs on
           CPU: a matrix product on the wide side, a depthwise convolution that places the 9 taps
           on the thin side, forward, and their gradients as TensorFlow derives them

and checks that every form computes the same convolution, and thin_grad the same gradients.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from tfp_glow.functional.conv import thin_conv2d  # noqa: E402

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


def _taps(t, size=3):
    """[N, H, W, C] -> [N, H, W, k*k*C]: tap (i, j) at (h, w) is t[h + i - p, w + j - p], 0 outside,
    p = (k - 1) // 2."""
    (height, width), p = t.shape[1:3], (size - 1) // 2
    padded = tf.pad(t, [[0, 0], [p, p], [p, p], [0, 0]])
    return tf.concat(
        [padded[:, i : i + height, j : j + width, :] for i in range(size) for j in range(size)], -1
    )


def im2col(x, k):
    return tf.einsum("nhwc,co->nhwo", _taps(x, k.shape[0]), tf.reshape(k, [-1, k.shape[-1]]))


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


THIN = 8
FORMS = ("conv2d", "im2col", "col2im", "matmul", "padded", "thin_grad", "thin")


def _sum_of_taps(z, channels):
    """The adjoint of `_taps`: out[h, w] = sum_ij z[h - i + 1, w - j + 1, tap (i, j)]."""
    height, width = z.shape[1], z.shape[2]
    padded = tf.pad(z, [[0, 0], [1, 1], [1, 1], [0, 0]])
    pieces = [
        padded[
            :,
            2 - i : 2 - i + height,
            2 - j : 2 - j + width,
            (3 * i + j) * channels : (3 * i + j + 1) * channels,
        ]
        for i in range(3)
        for j in range(3)
    ]
    return tf.add_n(pieces)


@tf.autograph.experimental.do_not_convert  # AutoGraph would turn the gradient function into a tensor
@tf.custom_gradient
def thin_grad(x, k):
    c, o = k.shape[2], k.shape[3]

    def gradient(g):
        if c <= THIN:  # dL/dx by a product to the 9C taps, then their shifted sum
            per_tap = tf.matmul(tf.reshape(g, [-1, o]), tf.reshape(k, [9 * c, o]), transpose_b=True)
            grad_x = _sum_of_taps(tf.reshape(per_tap, [*x.shape[:3], 9 * c]), c)
            grad_k = tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=k.shape, out_backprop=g, strides=[1, 1, 1, 1], padding="SAME"
            )
        else:  # dL/dK by a product of x with the 9 shifted copies of g; tap (i', j') meets (2 - i', 2 - j')
            products = tf.matmul(tf.reshape(x, [-1, c]), tf.reshape(_taps(g), [-1, 9 * o]), transpose_a=True)
            grad_k = tf.reverse(tf.transpose(tf.reshape(products, [c, 3, 3, o]), [1, 2, 0, 3]), [0, 1])
            grad_x = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=x.shape, filter=k, out_backprop=g, strides=[1, 1, 1, 1], padding="SAME"
            )
        return grad_x, grad_k

    return conv2d(x, k), gradient


def _gradients(fn, x, k):
    with tf.GradientTape() as tape:
        tape.watch([x, k])
        loss = tf.reduce_sum(tf.sin(fn(x, k)))
    return tape.gradient(loss, [x, k])


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
    print("| layer | input | kernel | " + " | ".join(FORMS) + " |")
    print("|---|---|---|" + "---|" * len(FORMS))
    tf.random.set_seed(0)
    for name, x_shape, k_shape in SHAPES:
        x = tf.random.normal(x_shape)
        k = 0.1 * tf.random.normal(k_shape)
        reference = conv2d(x, k)
        forms = {"conv2d": conv2d}
        forms.update({"matmul": matmul} if k_shape[0] == 1 else {"im2col": im2col, "col2im": col2im})
        if min(k_shape[2:]) < PAD_TO:
            forms["padded"] = padded
        if k_shape[0] == 3 and min(k_shape[2:]) <= THIN < max(k_shape[2:]):
            forms.update(thin_grad=thin_grad, thin=thin_conv2d)
            for form in ("thin_grad", "thin"):
                for what, a, b in zip(
                    ("x", "kernel"), _gradients(forms[form], x, k), _gradients(conv2d, x, k), strict=True
                ):
                    error = float(tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(b)))
                    if error > 1e-4:
                        raise AssertionError(f"{form}'s gradient of {what} differs by {error} at {name}")
        cells = {}
        for form, fn in forms.items():
            error = float(tf.reduce_max(tf.abs(fn(x, k) - reference)))
            if error > 1e-3:
                raise AssertionError(f"{form} differs from conv2d by {error} at {name}")
            cells[form] = f"{milliseconds(fn, x, k):.2f}"
        row = [cells.get(f, "") for f in FORMS]
        print(f"| {name} | {x_shape} | {k_shape} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
