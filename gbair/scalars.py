"""TensorBoard scalars, written with clu's metric writers (T5X's choice) under WORKDIR/tensorboard/.

One event folder per training run (loss and examples/s every log window, validation metrics at
every checkpoint) and per G-BAIR strategy of a cell (test metrics, flagged precision and detection
per iteration, step = iteration), so `tensorboard --logdir WORKDIR/tensorboard` shows them all.
Only process 0 writes. clu (and TensorFlow under it) is imported on the first write only, with
TensorFlow kept off the GPUs (they are JAX's).
"""

import os
from typing import Mapping

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


def _create_writer(logdir: str):
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from clu import metric_writers  # pylint: disable=import-outside-toplevel

    tf.config.set_visible_devices([], "GPU")  # TensorFlow only writes event files
    return metric_writers.create_default_writer(logdir, asynchronous=False)
