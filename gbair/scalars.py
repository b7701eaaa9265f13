"""TensorBoard scalars, written with clu's metric writers (T5X's choice) under WORKDIR/tensorboard/.

One event folder per training run (loss and examples/s every log window, validation metrics at
every checkpoint) and per G-BAIR strategy of a cell (test metrics, flagged precision and detection
per iteration, step = iteration), so `tensorboard --logdir WORKDIR/tensorboard` shows them all.
Only process 0 writes. clu (and TensorFlow under it) is imported on the first write only, with
TensorFlow kept off the GPUs (they are JAX's) and its known start-up lines held back (STARTUP_NOISE).
"""

import contextlib
import os
import sys
import tempfile
from typing import Iterator, Mapping

import jax


class Scalars:
    """Scalars of one run or strategy; a no-op when `logdir` is None or on processes other than 0."""

    def __init__(self, logdir: os.PathLike | None):
        self.logdir = None if logdir is None or jax.process_index() != 0 else os.fspath(logdir)
        self._writer = None

    def write(self, step: int, values: Mapping[str, float | None]) -> None:
        """Writes the finite numbers of `values` at `step` (None, e.g. an undefined AUC, is skipped)."""
        values = {k: float(v) for k, v in values.items() if v is not None}
        if self.logdir is None or not values:
            return
        if self._writer is None:
            self._writer = _create_writer(self.logdir)
        self._writer.write_scalars(step, values)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# What TensorFlow's C++ start-up writes on every machine without a GPU (or about its CPU build): not
# errors of this run, which only writes event files with it. Every other line is passed on.
STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
)


def _create_writer(logdir: str):
    with _without_startup_noise():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        from clu import metric_writers  # pylint: disable=import-outside-toplevel

        tf.config.set_visible_devices([], "GPU")  # TensorFlow only writes event files
        return metric_writers.create_default_writer(logdir, asynchronous=False)


@contextlib.contextmanager
def _without_startup_noise() -> Iterator[None]:
    """TensorFlow's C++ logs go straight to file descriptor 2, before any Python filter could see them:
    hold fd 2 in a file meanwhile, then pass on every line that is not STARTUP_NOISE."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode("utf-8", errors="replace").splitlines(keepends=True):
                if not any(noise in line for noise in STARTUP_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()
