"""Prompt tuning: a jit-compiled optax step on fixed-shape batches, evaluation, resumable checkpoints.

Batch order is a pure function of (seed, step), so a run resumed from any checkpoint continues
exactly as the uninterrupted run would have.
"""

import dataclasses
import functools
import math
import os
import time
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from gbair import UserError, files
from gbair.batching import Progress, make_batch, map_batches, on_mesh, pad_indices
from gbair.data.dataset import TextDataset
from gbair.models.prompts import PromptCheckpoint, PromptModel, place
from gbair.scalars import Scalars
from gbair.train import prompt_checkpoints
from gbair.train.metrics import classification_metrics
from gbair.workdir import dataset_fingerprint, digest, model_fingerprint


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to tune the prompt.

    optimizer: `adafactor` (prompt tuning's choice: lr 0.3 constant, decay 0.8, no parameter
      scaling, weight decay 1e-5) or `adam`.
    learning_rate: the (peak) learning rate.
    schedule: `constant` (the prompt-tuning recipe) or `warmup_cosine` (linear warmup from 0 over
      `warmup_fraction` of the steps, then cosine decay to 0 at the last step).
    num_epochs: passes over the training set; steps = ceil(N / batch_size) * num_epochs.
    num_steps: if > 0, the number of steps whatever N is (and num_epochs is ignored), so removing
      training examples does not also remove optimisation.
    checkpoint_every: save every this many steps (and always at the end); 0 = once per epoch.
    select_by: which checkpoint is the reported prompt: `last`, or the best on the validation split
      by `loss` (lowest), `auc`, `accuracy` or `f1` (highest); ties go to the earlier step.

    Gin (registered by gbair.config): `TrainConfig.learning_rate = 0.3`, `TrainConfig.num_steps = 100`,
    ...; the jobs take `@TrainConfig()` (`Experiment.train_config`, `clean.train_config`,
    `train_and_evaluate.config`).
    """

    optimizer: Literal["adafactor", "adam"] = "adafactor"
    learning_rate: float = 0.3
    schedule: Literal["constant", "warmup_cosine"] = "constant"
    warmup_fraction: float = 0.1
    batch_size: int = 32
    num_epochs: int = 3
    num_steps: int = 0
    checkpoint_every: int = 0
    select_by: Literal["last", "loss", "auc", "accuracy", "f1"] = "last"
    eval_batch_size: int = 64
    log_every: int = 10
    seed: int = 0

    def __post_init__(self):
        choices = {"optimizer": ("adafactor", "adam"), "schedule": ("constant", "warmup_cosine"),
                   "select_by": ("last", "loss", "auc", "accuracy", "f1")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"TrainConfig.{name}={getattr(self, name)!r}, expected one of {allowed}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise UserError(f"TrainConfig.learning_rate={self.learning_rate!r}, expected a finite number > 0")
        for name in ("batch_size", "num_epochs", "eval_batch_size", "log_every"):
            if getattr(self, name) <= 0:
                raise UserError(f"TrainConfig.{name}={getattr(self, name)!r}, expected > 0")
        for name in ("num_steps", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise UserError(f"TrainConfig.{name}={getattr(self, name)!r}, expected >= 0")
        if not 0 <= self.warmup_fraction < 1:
            raise UserError(f"TrainConfig.warmup_fraction={self.warmup_fraction!r}, expected in [0, 1)")

    def total_steps(self, num_examples: int) -> int:
        return self.num_steps or steps_per_epoch(num_examples, self.batch_size) * self.num_epochs

    def describe_length(self, num_examples: int) -> str:
        """How long training on `num_examples` is, in steps, epochs and checkpoints (what a reader of a
        recipe needs to see at the start of a run), e.g. '6495 steps of 32 = 3.00 epochs of 69274
        examples; a checkpoint every 2165 steps (1.00 epochs): 3 checkpoints'."""
        if num_examples <= 0:
            return "no training examples"
        total, per_epoch = self.total_steps(num_examples), steps_per_epoch(num_examples, self.batch_size)
        every = min(self.checkpoint_every or per_epoch, total)
        epochs = lambda steps: f"{steps * self.batch_size / num_examples:.2f} epochs"  # noqa: E731
        return (f"{total} steps of {self.batch_size} = {epochs(total)} of {num_examples} examples; a checkpoint "
                f"every {every} steps ({epochs(every)}): {-(-total // every)} checkpoints")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    prompt: np.ndarray  # final [P, E] float32
    steps: int
    checkpoint_steps: tuple[int, ...]
    wall_time_s: float  # time spent in this call (not in earlier, resumed-from calls)


@functools.lru_cache(maxsize=16)
def _train_step_fn(loss_fn, optimizer: optax.GradientTransformation):
    """One compiled step per (model, optimizer), reused by every training run of a sweep."""

    @jax.jit
    def train_step(params, state, batch):
        def mean_loss(prompt):
            losses = loss_fn(params, prompt, batch)
            return jnp.sum(losses * batch["weight"]) / jnp.maximum(jnp.sum(batch["weight"]), 1.0)

        loss, grad = jax.value_and_grad(mean_loss)(state["prompt"])
        updates, opt_state = optimizer.update(grad, state["opt_state"], state["prompt"])
        return {"prompt": optax.apply_updates(state["prompt"], updates), "opt_state": opt_state}, loss

    return train_step


def learning_rate_schedule(config: TrainConfig, total_steps: int) -> float | optax.Schedule:
    """The optimizer's learning rate: a number (constant) or step -> rate of the update at that 0-based step."""
    return _schedule(config.schedule, config.learning_rate, config.warmup_fraction, total_steps)


@functools.lru_cache(maxsize=16)
def _schedule(kind: str, learning_rate: float, warmup_fraction: float, total_steps: int) -> float | optax.Schedule:
    """Cached, so runs with equal settings get the same schedule object and share one compiled step."""
    if kind == "constant":
        return learning_rate
    warmup = int(round(warmup_fraction * total_steps))
    return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, total_steps, end_value=0.0)


def interval_learning_rate(schedule: float | optax.Schedule, previous_step: int, step: int) -> float:
    """The TracIn weight of the checkpoint saved after `step` updates: the mean learning rate of the
    updates it stands for, those made since the previous checkpoint (0-based steps previous_step..step-1).

    For a constant rate this is the rate itself (Pruthi et al.'s lr_c); under a schedule it is the rate
    in effect over the interval, so a checkpoint taken during warmup or late in decay weighs less.
    """
    if not callable(schedule):
        return float(schedule)
    return float(np.mean(schedule(np.arange(previous_step, step))))


@functools.lru_cache(maxsize=16)
def make_optimizer(name: str, learning_rate: float | optax.Schedule) -> optax.GradientTransformation:
    """Cached, so equal settings give the same (hashable) optimizer and share a compiled step."""
    if name == "adafactor":
        return optax.adafactor(learning_rate, decay_rate=0.8, multiply_by_parameter_scale=False,
                               clipping_threshold=1.0, weight_decay_rate=1e-5)
    return optax.adam(learning_rate)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def batch_indices(num_examples: int, config: TrainConfig, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Example indices and 0/1 weights of training batch `step`; the epoch's last batch is padded."""
    per_epoch = steps_per_epoch(num_examples, config.batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([config.seed, epoch]).permutation(num_examples)
    chosen = order[position * config.batch_size:(position + 1) * config.batch_size]
    return pad_indices(chosen, config.batch_size)


def fingerprint(model: PromptModel, dataset: TextDataset, config: TrainConfig,
                validation: TextDataset | None = None) -> str:
    """Identifies what a checkpoint directory was trained on (from gbair.workdir's data and model
    fingerprints), so resume refuses a different run."""
    evaluated = None if validation is None else dataset_fingerprint(validation)
    return digest(dataclasses.asdict(config), model_fingerprint(model), list(dataset.ids), dataset.labels.tolist(),
                  evaluated)


def train(model: PromptModel, dataset: TextDataset, config: TrainConfig,
          checkpoint_dir: os.PathLike | None = None, validation: TextDataset | None = None,
          scalars_dir: os.PathLike | None = None) -> TrainResult:
    """Tunes a fresh prompt (from `config.seed`) on `dataset`; resumes from `checkpoint_dir` if it has state.

    With `validation`, every checkpoint's record also holds its validation metrics (see `select_checkpoint`).
    With `scalars_dir`, loss, examples/s and validation metrics also go to TensorBoard there
    (a resumed run writes the steps after its checkpoint again; TensorBoard shows the latest).
    """
    start_time = time.time()
    run = files.path(checkpoint_dir).parent if checkpoint_dir is not None else "training"
    if len(dataset) == 0:
        raise UserError(f"{run}: the training set is empty")
    features = model.featurize(dataset.texts)
    total_steps = config.total_steps(len(dataset))
    schedule = learning_rate_schedule(config, total_steps)
    optimizer = make_optimizer(config.optimizer, schedule)
    every = config.checkpoint_every or steps_per_epoch(len(dataset), config.batch_size)
    if config.select_by != "last" and validation is None:
        raise UserError(f"TrainConfig.select_by={config.select_by!r} needs a validation split")

    prompt = model.init_prompt(jax.random.key(config.seed))
    state = {"prompt": prompt, "opt_state": optimizer.init(prompt)}
    first_step, saved = 0, []
    mngr = prompt_checkpoints.manager(checkpoint_dir) if checkpoint_dir is not None else None
    run_id = fingerprint(model, dataset, config, validation)
    if mngr is not None and mngr.latest_step() is not None:
        first_step, state = resume(mngr, run_id, state)
        saved = list(mngr.all_steps())
        logging.info("Resuming from step %d of %d (%s)", first_step, total_steps, checkpoint_dir)
    if model.mesh is not None:
        state = place(jax.device_get(state), model.mesh)  # replicated beside the (sharded) params

    train_step = _train_step_fn(model.loss_fn, optimizer)
    scalars = Scalars(scalars_dir)
    progress = Progress(total_steps, first_step, config.batch_size, config.log_every, scalars)
    losses = []  # since the last check
    for step in range(first_step, total_steps):
        batch = on_mesh(model, make_batch(features, dataset.labels, *batch_indices(len(dataset), config, step)))
        state, loss = train_step(model.params, state, batch)
        progress.update(step + 1, loss)
        losses.append(loss)
        if (step + 1) % every and step + 1 != total_steps:
            continue
        check_finite(run, config, step + 1 - len(losses), losses, step + 1, state["prompt"])  # before it is saved
        losses = []
        if mngr is not None:
            record = {"step": step + 1, "fingerprint": run_id,
                      "learning_rate": interval_learning_rate(schedule, saved[-1] if saved else 0, step + 1)}
            if validation is not None:
                probabilities = predict(model, state["prompt"], validation, config.eval_batch_size)
                record["validation"] = classification_metrics(validation.labels, probabilities)
                record["validation_probabilities"] = probabilities.tolist()  # read back, not recomputed
                logging.info("step %d: validation %s", step + 1,
                             "  ".join(f"{k} {v:.4f}" for k, v in record["validation"].items() if v is not None))
                scalars.write(step + 1, {f"validation/{k}": v for k, v in record["validation"].items()})
            prompt_checkpoints.save(mngr, step + 1, state, record)
            saved.append(step + 1)
    scalars.close()
    return TrainResult(np.asarray(state["prompt"], np.float32), total_steps, tuple(saved),
                       time.time() - start_time)


def check_finite(run: Any, config: TrainConfig, first_step: int, losses: Sequence[Any], step: int,
                 prompt: Any) -> None:
    """Refuses (UserError naming the run and the step) a training run that diverged: a NaN or infinite
    loss among `losses` (of steps first_step + 1 ..), or such a prompt after `step`. Checked before each
    checkpoint is saved, so no checkpoint holds a diverged prompt."""
    values = np.asarray(jax.device_get(list(losses)), np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        what, at = f"the training loss became {values[bad[0]]}", first_step + int(bad[0]) + 1
    elif not np.isfinite(np.asarray(jax.device_get(prompt))).all():
        what, at = "the prompt became NaN or infinite", step
    else:
        return
    raise UserError(f"{run}: {what} at step {at} (TrainConfig.optimizer={config.optimizer!r}, learning_rate="
                    f"{config.learning_rate:g}): training diverged; try a lower TrainConfig.learning_rate")


def validation_probabilities(model: PromptModel, checkpoint: PromptCheckpoint, validation: TextDataset,
                             batch_size: int = 64) -> np.ndarray:
    """Class probabilities [N, C] of the `validation` examples under `checkpoint`'s prompt: those
    `train` recorded when it saved the checkpoint (it evaluates the validation split at every
    checkpoint; float32 survives JSON exactly), so the sweep's one-class check and its misclassified
    set cost no second pass; computed when the checkpoint has none (trained without validation, or
    by an older gbair)."""
    recorded = checkpoint.validation_probabilities
    if recorded is not None and len(recorded) == len(validation):
        return recorded
    return predict(model, checkpoint.prompt, validation, batch_size)


def warn_if_one_class(model: PromptModel, checkpoint: PromptCheckpoint, validation: TextDataset, run: Any,
                      batch_size: int = 64) -> int:
    """1 (with a warning naming the run) when `checkpoint`'s prompt predicts one class for every
    validation example although the validation split has several, else 0: such a model's test metrics
    are those of a constant classifier, and tables must not average them in unmarked."""
    predicted = np.unique(validation_probabilities(model, checkpoint, validation, batch_size).argmax(1))
    if len(predicted) != 1 or len(np.unique(validation.labels)) < 2:
        return 0
    logging.warning("%s: the trained prompt predicts %r for every validation example (a one-class model; "
                    "results mark it in one_class_prediction); try another learning rate or more steps", run,
                    model.class_names[int(predicted[0])])
    return 1


def resume(mngr, run_id: str, state: Any) -> tuple[int, Any]:
    """(step, state) of the newest readable checkpoint of this run. Damaged newer steps are deleted,
    with a warning, so training redoes them; UserError when the checkpoints are another run's, or when
    no step is readable (naming the directory to delete)."""
    damaged = []
    for step in sorted(mngr.all_steps(), reverse=True):
        try:
            record = prompt_checkpoints.read_record(mngr, step)
            if record.get("fingerprint") != run_id:
                raise UserError(f"{mngr.directory}: checkpoints come from a different run (data, model or "
                                f"TrainConfig changed); use a new --workdir or delete that directory")
            restored = prompt_checkpoints.restore_state(mngr, step, state)
        except prompt_checkpoints.DamagedCheckpoint as e:
            logging.warning("%s", e)
            damaged.append(step)
            continue
        for bad in damaged:
            mngr.delete(bad)
        if damaged:
            logging.warning("%s: resuming from step %d, the newest readable checkpoint (deleted damaged steps %s)",
                            mngr.directory, step, damaged)
        return step, restored
    raise UserError(f"{mngr.directory}: no readable checkpoint (damaged steps {sorted(damaged)}); "
                    f"delete {mngr.directory} to train that run again")


def select_checkpoint(saved: Sequence[PromptCheckpoint], select_by: str) -> PromptCheckpoint:
    """The reported checkpoint: the last, or the best by a validation metric recorded at save time.

    Lowest loss or highest auc / accuracy / f1; ties go to the earliest step. TracIn still uses every
    checkpoint (the trajectory); this only picks the prompt that is evaluated and acted on.
    """
    if select_by == "last":
        return saved[-1]
    missing = [c.step for c in saved if not c.validation or c.validation.get(select_by) is None]
    if missing:
        raise ValueError(f"select_by={select_by!r}: checkpoints at steps {missing} have no validation "
                         f"{select_by} (train with a validation split, or select_by='last')")
    sign = -1.0 if select_by == "loss" else 1.0
    return max(saved, key=lambda c: (sign * c.validation[select_by], -c.step))


def predict(model: PromptModel, prompt: Any, dataset: TextDataset, batch_size: int = 64) -> np.ndarray:
    """Class probabilities [N, C] (`model.probabilities_fn`: the softmax of the model's class scores; for T5
    over the verbalizers' log-likelihoods)."""
    if len(dataset) == 0:
        return np.zeros((0, len(model.class_names)), np.float32)
    return map_batches(model.probabilities_fn, model, prompt, dataset, batch_size)


def example_losses(model: PromptModel, prompt: Any, dataset: TextDataset, batch_size: int = 64) -> np.ndarray:
    """Per-example training loss [N] of `dataset`'s (possibly noisy) labels."""
    return map_batches(model.loss_fn, model, prompt, dataset, batch_size)


def evaluate(model: PromptModel, prompt: Any, dataset: TextDataset, batch_size: int = 64) -> dict[str, Any]:
    """accuracy, f1, auc on `dataset`'s labels."""
    return classification_metrics(dataset.labels, predict(model, prompt, dataset, batch_size))
