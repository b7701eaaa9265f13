"""Fixed-shape batches of a dataset and progress lines: what training, evaluation and TracIn share.

Every batch has one shape (the last is padded with weight-0 copies of example 0), so each function
compiles once; batches are split over the DATA axis of the model's mesh when it has one.
"""

import functools
import time
from typing import Any, Callable

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gbair.data.dataset import TextDataset
from gbair.models.prompts import DATA, PromptModel, place
from gbair.scalars import Scalars


def pad_indices(indices: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pads to `size` by repeating index 0 with weight 0, so every batch has one shape (one compile)."""
    weights = np.zeros(size, np.float32)
    weights[:len(indices)] = 1.0
    return np.concatenate([indices, np.zeros(size - len(indices), indices.dtype)]), weights


def make_batch(features: dict[str, np.ndarray], labels: np.ndarray, indices: np.ndarray,
               weights: np.ndarray) -> dict[str, np.ndarray]:
    batch = {k: v[indices] for k, v in features.items()}
    batch["label"] = labels[indices].astype(np.int32)
    batch["weight"] = weights
    return batch


def on_mesh(model: PromptModel, batch: dict[str, np.ndarray]) -> Any:
    """A batch split over the DATA axis of the model's mesh (replicated if it does not divide evenly)."""
    if model.mesh is None:
        return batch
    split = len(batch["label"]) % model.mesh.shape[DATA] == 0
    return place(batch, model.mesh, jax.tree.map(lambda _: PartitionSpec(DATA) if split else PartitionSpec(), batch))


@functools.lru_cache(maxsize=32)
def _jit(fn: Callable, mesh: Mesh | None) -> Callable:
    """One compiled version per model function, shared by every call; on a mesh its outputs are
    replicated, so every process (gbair.hosts) can read them whole."""
    return jax.jit(fn, out_shardings=None if mesh is None else NamedSharding(mesh, PartitionSpec()))


def map_batches(fn: Callable, model: PromptModel, prompt: Any, dataset: TextDataset, batch_size: int = 64,
                what: str = "evaluation") -> np.ndarray:
    """fn(params, prompt, batch) -> [B, ...] over `dataset` in fixed-shape (padded) batches."""
    features = model.featurize(dataset.texts)
    compiled = _jit(fn, model.mesh)
    out, progress = [], PassProgress(what, len(dataset))
    for begin in range(0, len(dataset), batch_size):
        indices, weights = pad_indices(np.arange(begin, min(begin + batch_size, len(dataset))), batch_size)
        batch = on_mesh(model, make_batch(features, dataset.labels, indices, weights))
        out.append(np.asarray(compiled(model.params, prompt, batch))[: len(dataset) - begin])  # waits for it
        progress.update(min(begin + batch_size, len(dataset)))
    return np.concatenate(out)


class Progress:
    """Logs step, running loss, examples/s and ETA of a training run every `every` steps.

    Rates count finished steps only: the clock starts once the first step's result is ready (so
    compilation is not counted) and each line waits for the steps it reports."""

    def __init__(self, total: int, start: int, batch_size: int, every: int, scalars: Scalars | None = None):
        self.total, self.batch_size, self.every, self.scalars = total, batch_size, every, scalars
        self.last_step, self.last_time, self.losses = start, None, []

    def update(self, step: int, loss: jax.Array) -> None:
        self.losses.append(loss)
        if self.last_time is None:  # first step: compiled and run; time the steps after it
            jax.block_until_ready(loss)
            self.last_step, self.last_time = step, time.time()
        if step % self.every and step != self.total:
            return
        mean_loss = float(np.mean(jax.device_get(self.losses)))  # waits for the dispatched steps
        now = time.time()
        rate = (step - self.last_step) * self.batch_size / max(now - self.last_time, 1e-9)
        eta = (self.total - step) * self.batch_size / max(rate, 1e-9)
        logging.info("step %d/%d  loss %.4f  %.1f examples/s  ETA %s", step, self.total, mean_loss, rate,
                     format_seconds(eta))
        if self.scalars is not None:
            self.scalars.write(step, {"train/loss": mean_loss, "train/examples_per_s": rate})
        self.last_step, self.last_time, self.losses = step, now, []


class PassProgress:
    """Logs `what: done/total examples, examples/s, ETA` at most every `every_s` seconds of a pass over
    a dataset (evaluation, TracIn). Call `update` once a block's result is on the host, so the rate
    is of finished work; short passes print nothing."""

    def __init__(self, what: str, total: int, every_s: float = 10.0):
        self.what, self.total, self.every_s = what, total, every_s
        self.start = self.last_log = time.time()
        logging.vlog(1, "%s: a pass over %d examples", what, total)  # with --verbosity=1: which pass runs now

    def update(self, done: int) -> None:
        now = time.time()
        if now - self.last_log < self.every_s or done >= self.total:
            return
        rate = done / max(now - self.start, 1e-9)
        logging.info("%s: %d/%d examples  %.1f examples/s  ETA %s", self.what, done, self.total, rate,
                     format_seconds((self.total - done) / max(rate, 1e-9)))
        self.last_log = now


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
