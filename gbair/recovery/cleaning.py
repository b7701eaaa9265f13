"""Cleaning a person's own labelled data, whose errors nobody planted (no corruption, no true labels).

`find_label_issues(model, dataset, strategy=...)` trains a prompt on the given labels and ranks every
example by the strategy's suspicion score: the ranked table (`LabelIssues`), as cleanlab's
`find_label_issues` ranks by label quality. `Cleaner` runs T iterations of it (flag the k most
suspicious, remove or relabel them as RecoveryConfig.action says, retrain): the cleaning job.

The validation set V. Strategies that weigh the validation examples the model gets wrong
(strategies.NEEDS_VALIDATION: tracin, tracin_by_label, trak, influence_function, ...) need labels to
trust there, as does choosing a checkpoint on validation (TrainConfig.select_by other than "last").
Give a trusted validation split (`validation`, the job's VALIDATION_FILE). Without one, V is a seeded
stratified hold-out of `holdout_fraction` of the given labels. What that costs: the held-out examples
are trained on and scored by no iteration, so their label errors are never flagged (they reach the
cleaned file as given, with a person's decisions applied); and V's labels are as noisy as the rest,
so some of V's "misclassified" examples are V's own label errors, which the influence strategies
then explain instead of finding errors in training. `loss`, `cleanlab`, `self_influence` and
`random` with select_by="last" need no V: every example is scored.

A person's decisions (gbair.data.decisions) are applied before any training; every example a person
decided on (keep or relabel) is never flagged again, in any iteration or rerun.

Workdir (the job's, laid out by gbair.workdir): WORKDIR/cleaning/<identity>/, one folder per distinct
setting (data, V, decisions, model, TrainConfig, RecoveryConfig, strategy, seed), holds identity.json,
it<t>/checkpoints/ (iteration t's training run, resumable), it<t>/state.json (its flagged rows and the
next training set, written once the iteration finished) and, for TracIn strategies,
it<t>/explanations.npz. A rerun of the same settings trains nothing again; other settings (a new
decisions file) get a folder of their own.
"""

import dataclasses
import pathlib
import tempfile
from typing import Any, Collection, Mapping

import numpy as np
from absl import logging

from gbair import UserError, files
from gbair.data import decisions as decisions_lib
from gbair.data.dataset import TextDataset, concat, stratified_split
from gbair.influence.gradients import Method
from gbair.influence.matrices import InfluenceMatrices
from gbair.influence.tracin import check_method
from gbair.models.prompts import PromptCheckpoint, PromptModel
from gbair.recovery import strategies
from gbair.recovery.experiment import RecoveryConfig
from gbair.train import prompt_checkpoints
from gbair.train import trainer
from gbair.workdir import (checkpoints_dir, cleaning_dir, dataset_fingerprint, digest, iteration_dir,
                           model_fingerprint, read_state, record_identity, save_explanations, trained_set,
                           write_state)

FLAGGED_COLUMNS = ("id", "text", "given_label", "suggested_label", "score", "rank", "iteration", "strategy")
DEFAULT_TRAIN_CONFIG = trainer.TrainConfig()


@dataclasses.dataclass(frozen=True)
class LabelIssues:
    """The ranked table of `find_label_issues`: one row per scored example, most suspicious first."""

    strategy: str
    meaning: str  # what `scores` mean and which direction is suspicious (strategies.MEANINGS)
    class_names: tuple[str, ...]
    indices: np.ndarray  # [N] int64, positions in the scored dataset
    ids: tuple[str, ...]  # [N]
    scores: np.ndarray  # [N] float64, the score each example was ranked by, highest (most suspicious) first
    given: np.ndarray  # [N] int32, the given label
    suggested: np.ndarray  # [N] int64, the trained prompt's most probable class other than the given one
    given_probability: np.ndarray  # [N] float32, the trained prompt's probability of the given label

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per row: rank (1 = most suspicious), id, given_label, suggested_label, score, p_given."""
        names = self.class_names
        return [{"rank": r + 1, "id": self.ids[r], "given_label": names[self.given[r]],
                 "suggested_label": names[self.suggested[r]], "score": float(self.scores[r]),
                 "p_given": float(self.given_probability[r])} for r in range(len(self))]


@dataclasses.dataclass(frozen=True)
class _Scored:
    """One scored training run: the table, and what the review page shows beside it."""

    issues: LabelIssues
    probabilities: np.ndarray  # [N_train, C], the reported prompt's, in training-set order
    misclassified: TextDataset | None  # V's examples the prompt gets wrong (given labels), None without V
    misclassified_probabilities: np.ndarray | None  # [|V wrong|, C]
    influence: InfluenceMatrices  # the run's influence on V's errors ([N_train, |V wrong|] matrices by name)
    validation_metrics: dict[str, Any] | None


def check_strategy_name(strategy: str) -> None:
    """Refuses (UserError) a name that cannot clean a person's data: unknown, or `oracle`."""
    usable = [s for s in strategies.STRATEGIES if s != "oracle"]
    if strategy not in usable:
        raise UserError(f"strategy {strategy!r}: expected one of {usable} (oracle needs true labels, "
                        f"which a person's own data does not have)")


def check_strategy(strategy: str, model: PromptModel, method: Method, *datasets: TextDataset | None) -> None:
    """Refuses (UserError) what cannot clean a person's data, before any training: an unknown strategy,
    `oracle` (it reads the true labels), classes other than the model's, a model `method` cannot
    differentiate (strategies that need per-example gradients)."""
    check_strategy_name(strategy)
    for dataset in datasets:
        if dataset is not None and tuple(dataset.class_names) != tuple(model.class_names):
            raise UserError(f"the data's classes {list(dataset.class_names)} differ from the model's "
                            f"{list(model.class_names)}; expected the same names in the same order")
    if strategy in strategies.NEEDS_VALIDATION or strategy == "self_influence":
        check_method(model, method)


def needs_validation(strategy: str, train_config: trainer.TrainConfig) -> bool:
    return strategy in strategies.NEEDS_VALIDATION or train_config.select_by != "last"


def hold_out(dataset: TextDataset, fraction: float, seed: int) -> tuple[TextDataset, TextDataset]:
    """(the rest, a stratified `fraction` of `dataset`) seeded, each in `dataset`'s order: V without a
    trusted validation split (its cost: the module docstring)."""
    size = int(round(fraction * len(dataset)))
    if not 0 < size < len(dataset):
        raise UserError(f"holdout_fraction={fraction!r} of {len(dataset)} examples holds out {size}; expected "
                        f"between 1 and {len(dataset) - 1} (or give a trusted validation split)")
    held = set(stratified_split(dataset, {"validation": size}, seed=seed)["validation"].ids)
    inside = np.array([example_id in held for example_id in dataset.ids])
    return dataset.subset(np.flatnonzero(~inside)), dataset.subset(np.flatnonzero(inside))


def _fit(model: PromptModel, train: TextDataset, validation: TextDataset | None, config: trainer.TrainConfig,
         directory: files.Location) -> tuple[list[PromptCheckpoint], PromptCheckpoint]:
    """Trains a fresh prompt on `train` (resuming from `directory`); its checkpoints and the reported one."""
    checkpoint_dir = checkpoints_dir(directory)
    trainer.train(model, train, config, checkpoint_dir, validation=None if config.select_by == "last" else validation)
    saved = prompt_checkpoints.load_prompt_checkpoints(checkpoint_dir, delete_hint=files.path(directory))
    return saved, trainer.select_checkpoint(saved, config.select_by)


def _score(model: PromptModel, train: TextDataset, validation: TextDataset | None, strategy: str, *,
           train_config: trainer.TrainConfig, recovery: RecoveryConfig, directory: files.Location, seed: int,
           method: Method, exclude_ids: Collection[str]) -> _Scored | None:
    """Trains on `train`, scores it with `strategy`, ranks it; None when the strategy needs the
    misclassified validation examples and there are none."""
    checkpoints, chosen = _fit(model, train, validation, train_config, directory)
    misclassified = misclassified_probabilities = metrics = None
    if validation is not None:
        probabilities = trainer.predict(model, chosen.prompt, validation, train_config.eval_batch_size)
        metrics = trainer.evaluate(model, chosen.prompt, validation, train_config.eval_batch_size)
        wrong = np.flatnonzero(probabilities.argmax(1) != validation.labels)
        misclassified, misclassified_probabilities = validation.subset(wrong), probabilities[wrong]
    if strategy in strategies.NEEDS_VALIDATION and not len(misclassified):
        return None
    scored_against = misclassified if misclassified is not None else train.subset([])
    influence = InfluenceMatrices(model, checkpoints, train, scored_against, batch_size=recovery.tracin_batch_size,
                                  projection_dim=recovery.projection_dim, damping=recovery.damping,
                                  curvature=recovery.curvature, method=method)
    context = strategies.SelectionContext(
        model=model, train=train, prompt=chosen.prompt, misclassified=scored_against,
        corrupted=np.zeros(len(train), bool), seed=seed,
        fit=lambda data, run: _fit(model, data, validation, train_config, files.path(directory) / run)[1].prompt,
        influence=influence, balance_classes=recovery.balance_classes)
    scores = strategies.score(strategy, context)
    probabilities = trainer.predict(model, chosen.prompt, train, train_config.eval_batch_size)
    excluded = set(exclude_ids)
    order = strategies.top_k(scores, len(scores), exclude=np.flatnonzero([i in excluded for i in train.ids]))
    given = train.labels[order]
    issues = LabelIssues(
        strategy=strategy, meaning=strategies.MEANINGS[strategy], class_names=tuple(train.class_names),
        indices=order, ids=tuple(train.ids[i] for i in order), scores=scores[order], given=given,
        suggested=strategies.other_class(probabilities[order], given),
        given_probability=probabilities[order, given])
    return _Scored(issues, probabilities, misclassified, misclassified_probabilities, influence, metrics)


def find_label_issues(model: PromptModel, dataset: TextDataset, strategy: str = "loss", *,
                      validation: TextDataset | None = None, holdout_fraction: float = 0.2,
                      train_config: trainer.TrainConfig = DEFAULT_TRAIN_CONFIG,
                      recovery: RecoveryConfig = RecoveryConfig(), method: Method = "tiled",
                      exclude_ids: Collection[str] = (), seed: int = 0,
                      workdir: files.Location | None = None) -> LabelIssues:
    """Trains a prompt of `model` on `dataset`'s given labels and ranks its examples, most suspicious first.

    Args:
      model: any PromptModel (its contract: gbair.models.prompts.PromptModel); its class_names must be
        the dataset's.
      dataset: the examples to check, labels as given.
      strategy: a name of gbair.recovery.strategies.STRATEGIES except `oracle`; `loss` (default) needs one
        training and no validation split. No strategy is the best supported by gbair's evidence so far
        (docs/results.md).
      validation: trusted labels for V; without one, strategies that need V (and select_by other than
        "last") hold out a stratified `holdout_fraction` of `dataset`, which is then not ranked
        (gbair.recovery.cleaning's docstring says what that costs).
      train_config: how the prompt trains (TrainConfig.seed sets its initialisation and batch order).
      recovery: tracin_batch_size, projection_dim, damping, curvature, balance_classes for the scorers.
      method: per-example gradients, `tiled` (logits_fn takes [B, P, E] prompts) or `vmap` (any model).
      exclude_ids: examples a person already reviewed: trained on, never ranked.
      seed: the hold-out split and seeded strategies (`random`, cleanlab's folds).
      workdir: keeps the checkpoints there (a rerun resumes); default a temporary folder.

    Returns the ranked table (LabelIssues; `.rows()` as dicts). E.g. `find_label_issues(model, data).ids[:10]`.
    """
    check_strategy(strategy, model, method, dataset, validation)
    train = dataset
    if validation is None and needs_validation(strategy, train_config):
        train, validation = hold_out(dataset, holdout_fraction, seed)
    with tempfile.TemporaryDirectory(prefix="gbair-") as scratch:
        scored = _score(model, train, validation, strategy, train_config=train_config, recovery=recovery,
                        directory=workdir or scratch, seed=seed, method=method, exclude_ids=exclude_ids)
    if scored is None:
        raise UserError(f"{strategy} ranks by influence on the misclassified validation examples, and the trained "
                        f"prompt misclassifies none of the {len(validation)}; use another strategy, e.g. loss")
    return scored.issues


@dataclasses.dataclass(frozen=True)
class Cleaning:
    """What `Cleaner.run` leaves: every iteration's state (state.json) and the cleaned dataset."""

    folder: pathlib.Path  # WORKDIR/cleaning/<identity>
    iterations: list[dict]  # state.json of iterations 1.. (stops early when V has no errors left)
    train: TextDataset  # the data iteration 1 trained on (given labels, decisions applied)
    validation: TextDataset | None  # V (trusted, or held out of the data)
    cleaned: TextDataset  # the whole data after the decisions and every iteration's remove / relabel

    @property
    def flagged(self) -> list[dict]:
        """flagged.csv's rows (FLAGGED_COLUMNS), iteration by iteration, rank by rank."""
        return [row for state in self.iterations for row in state["flagged"]]


class Cleaner:
    """The cleaning job's loop; everything is checked when it is built, before any training."""

    def __init__(self, workdir: files.Location, model: PromptModel, data: TextDataset, strategy: str, *,
                 validation: TextDataset | None = None, holdout_fraction: float = 0.2,
                 decisions: Mapping[str, dict] | None = None,
                 train_config: trainer.TrainConfig = DEFAULT_TRAIN_CONFIG,
                 recovery: RecoveryConfig = RecoveryConfig(), method: Method = "tiled", seed: int = 0):
        check_strategy(strategy, model, method, data, validation)
        self.model, self.strategy, self.method, self.seed = model, strategy, method, seed
        self.train_config, self.recovery = train_config, recovery
        self.decisions, self.data_ids = dict(decisions or {}), data.ids
        self.reviewed = decisions_lib.reviewed(self.decisions)
        self.held_out = validation is None and needs_validation(strategy, train_config)
        rest, validation = hold_out(data, holdout_fraction, seed) if self.held_out else (data, validation)
        self.train = decisions_lib.apply(rest, self.decisions)
        self.validation = decisions_lib.apply(validation, self.decisions) if self.held_out else validation
        recovery.check_budget(self.train, "the data to clean")
        identity = {
            "data": dataset_fingerprint(data), "decisions": digest(sorted(self.decisions.items())),
            "validation": None if validation is None else dataset_fingerprint(validation),
            "held_out": self.held_out, "model": model_fingerprint(model),
            "TrainConfig": digest(dataclasses.asdict(train_config)),
            "RecoveryConfig": digest(dataclasses.asdict(recovery)), "strategy": strategy,
            "method": method, "seed": seed}
        self.folder = cleaning_dir(workdir, identity)
        self.identity = identity

    def run(self) -> Cleaning:
        record_identity(self.folder, self.identity)
        train, states = self.train, []
        for t in range(1, self.recovery.iterations + 1):
            state = read_state(iteration_dir(self.folder, t))
            if state is None:  # not finished before (an interrupted run resumes its training)
                state = self.iterate(train, t)
                if state is None:
                    logging.info("%s: the prompt misclassifies no validation example; stopping at iteration %d",
                                 self.strategy, t - 1)
                    break
                write_state(iteration_dir(self.folder, t), state)
            states.append(state)
            train = trained_set(state, self.train)
        everything = concat([train, self.validation]) if self.held_out else train
        kept = set(everything.ids)
        cleaned = everything.by_ids([i for i in self.data_ids if i in kept])
        return Cleaning(self.folder, states, self.train, self.validation, cleaned)

    def iterate(self, train: TextDataset, t: int) -> dict | None:
        """Iteration t on `train`: train, score, flag k, apply the action; its state (None: V has no errors)."""
        directory = iteration_dir(self.folder, t)
        scored = _score(self.model, train, self.validation, self.strategy, train_config=self.train_config,
                        recovery=self.recovery, directory=directory, seed=self.seed, method=self.method,
                        exclude_ids=self.reviewed)
        if scored is None:
            return None
        issues, k = scored.issues, self.recovery.k(len(train))
        flagged = issues.indices[:k]
        labels = train.labels.copy()
        if self.recovery.action == "relabel":
            labels[flagged] = issues.suggested[:k]
            after = train.with_labels(labels)
        else:
            after = train.subset(np.setdiff1d(np.arange(len(train)), flagged))
        if self.strategy in strategies.TRACIN_BASED:
            save_explanations(directory, train, scored.misclassified,
                              scored.misclassified_probabilities.argmax(1), scored.influence, flagged)
        names = train.class_names
        rows = [{"id": issues.ids[r], "text": train.texts[flagged[r]], "given_label": names[issues.given[r]],
                 "suggested_label": names[issues.suggested[r]], "score": float(issues.scores[r]), "rank": r + 1,
                 "iteration": t, "strategy": self.strategy, "p_given": float(issues.given_probability[r]),
                 "predicted": names[int(scored.probabilities[flagged[r]].argmax())],
                 "p_predicted": float(scored.probabilities[flagged[r]].max())} for r in range(len(flagged))]
        misclassified = [] if scored.misclassified is None else [
            {"id": scored.misclassified.ids[q], "given": int(scored.misclassified.labels[q]),
             "predicted": int(p.argmax()), "confidence": float(p.max())}
            for q, p in enumerate(scored.misclassified_probabilities)]
        logging.info("%s iteration %d: flagged %d of %d (%s)", self.strategy, t, len(flagged), len(train),
                     ", ".join(f"{r['id']} {r['score']:.4g}" for r in rows[:5]))
        return {"iteration": t, "n_train": len(train), "flagged": rows, "misclassified": misclassified,
                "validation": scored.validation_metrics, "ids": list(after.ids), "labels": after.labels.tolist()}

