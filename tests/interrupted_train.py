"""`tfp-glow train` that stops dead after a given training batch, to be SIGKILLed there (a helper
that tests/test_resume.py runs; the assertions on what it leaves are there).

Usage: python interrupted_train.py STOP_AFTER MARKER_FILE [tfp-glow train flags...]

After its STOP_AFTER-th training batch (counted over the run, resumed batches included) the
process writes MARKER_FILE and sleeps; the test then kills it with SIGKILL, so the kill falls at a
known batch however fast the machine is.
"""

import os
import sys
import time

import keras

from tfp_glow import cli, training


class _StopDead(keras.callbacks.Callback):
    def __init__(self, stop_after: int, marker: str):
        super().__init__()
        self.stop_after = stop_after
        self.marker = marker
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches == self.stop_after:
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            while True:
                time.sleep(1)


def main() -> None:
    stop_after, marker, flags = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    config = cli._train_config(cli._parsers()["train"].parse_args(flags))
    training.train(config, callbacks=[_StopDead(stop_after, marker)])


if __name__ == "__main__":
    main()
