"""The G-BAIR loop and resumable sweeps over datasets x corruption rates x seeds x strategies.

Per (dataset, rate, seed): corrupt the training labels, train on them once (iteration 0, shared by
every strategy), train once on the true labels (`clean`), then per strategy and t = 1..T: find the
misclassified validation examples V, score every training example, flag the k most suspicious,
remove or relabel them, retrain a fresh prompt with the same seed, evaluate. Stops early when V is
empty. Each training run reports the checkpoint chosen on the (clean) validation split
(TrainConfig.select_by); TracIn uses all of its checkpoints.

The workdir's layout is gbair.workdir's; the loop writes it through that module. Every training run
resumes from its Orbax checkpoints, each finished iteration and strategy is written atomically, and
results.csv is rebuilt from the finished strategies: a rerun skips finished work, resumes the rest,
and never duplicates or loses a row. With several processes (gbair.hosts) every one runs all of
this, process 0 alone writes, and every resume decision is process 0's reading of the workdir. Each
cell folder first records in identity.json what determines its results (data, corrupted labels,
model, TrainConfig, RecoveryConfig); a rerun whose settings give another identity is refused before
any training, so results of different settings never mix. One process at a time writes a workdir (gbair.lock).

Degenerate models are named: a NaN or infinite loss stops the sweep naming the run and the step
(gbair.train.trainer.check_finite); a reported prompt that predicts one class for every validation
example is warned about and marked in its row (`one_class_prediction`).
"""

import dataclasses
import pathlib
import time
from typing import Any, Mapping, Sequence

import numpy as np
from absl import logging
from etils import epath

from gbair import files, hosts, lock, run_record
from gbair.batching import format_seconds
from gbair.data.dataset import TextDataset
from gbair.influence.matrices import InfluenceMatrices
from gbair.models.prompts import PromptCheckpoint, PromptModel
from gbair.recovery import strategies
from gbair.scalars import Scalars
from gbair.recovery.experiment import Experiment, RecoveryConfig, corrupted_train, reviewed_ids
from gbair.train import prompt_checkpoints
from gbair.train import trainer
from gbair.train.metrics import detection_metrics, found_by_prefix
from gbair.workdir import (Cell, checkpoints_dir, claim, dataset_fingerprint, digest, model_fingerprint, read_done,
                           read_run, read_state, save_explanations, scalars_dir, settings_digest, trained_set,
                           write_curve, write_done, write_results, write_run, write_state)


class Sweep:
    """Runs and records cells (layout: gbair.workdir; guarantees: this module's docstring)."""

    def __init__(self, workdir: files.Location, model: PromptModel, train_config: trainer.TrainConfig,
                 recovery: RecoveryConfig, total_runs: int, relabel_file: str | None = None):
        self.workdir, self.model, self.relabel_file = files.path(workdir), model, relabel_file
        self.train_config, self.recovery = train_config, recovery
        self.total_runs, self.runs_done, self.run_seconds = total_runs, 0, 0.0
        self._influence: tuple[pathlib.Path, InfluenceMatrices] | None = None  # the last scored run's

    # ---- what a folder's results were made from ---------------------------------------------------

    def prepare(self, cells: Sequence[Cell], datasets: Mapping[str, Mapping[str, TextDataset]],
                with_clean: bool) -> None:
        """Claims every cell's folders for this run's settings (gbair.workdir.claim) before any training,
        which also validates every cell's corrupted labels and decisions file."""
        model = model_fingerprint(self.model)
        training = settings_digest(dataclasses.replace(self.train_config, seed=0))
        recovery = settings_digest(self.recovery)
        data = {name: digest([dataset_fingerprint(splits[s]) for s in ("train", "validation", "test")])
                for name, splits in datasets.items()}
        for cell in cells:
            noisy = corrupted_train(cell, datasets[cell.dataset]["train"], self.recovery, self.relabel_file)
            claim(self.workdir, cell.path, {"data": data[cell.dataset], "model": model, "TrainConfig": training,
                                            "corrupted labels (rate, seed, decisions file)": dataset_fingerprint(noisy),
                                            "RecoveryConfig": recovery})
            if with_clean:
                claim(self.workdir, cell.clean_path, {"data": data[cell.dataset], "model": model,
                                                      "TrainConfig": training})

    # ---- one training run ----------------------------------------------------------------------

    def fit(self, train: TextDataset, validation: TextDataset, directory: pathlib.Path,
            seed: int) -> tuple[list[PromptCheckpoint], PromptCheckpoint]:
        """Trains a fresh prompt (resuming from `directory`); returns its checkpoints and the reported one."""
        start = time.time()
        config = dataclasses.replace(self.train_config, seed=seed)
        trainer.train(self.model, train, config, checkpoints_dir(self.workdir / directory),
                      validation=None if config.select_by == "last" else validation,
                      scalars_dir=scalars_dir(self.workdir, directory))
        self.runs_done += 1
        self.run_seconds += time.time() - start
        remaining = (self.total_runs - self.runs_done) * self.run_seconds / self.runs_done
        logging.info("training run %d/%d done (%s); ETA %s", self.runs_done, self.total_runs, directory,
                     format_seconds(remaining))
        return self.load(directory)

    def load(self, directory: pathlib.Path) -> tuple[list[PromptCheckpoint],
                                                     PromptCheckpoint]:
        saved = prompt_checkpoints.load_prompt_checkpoints(checkpoints_dir(self.workdir / directory),
                                                           delete_hint=self.workdir / directory)
        return saved, trainer.select_checkpoint(saved, self.train_config.select_by)

    def run_metrics(self, directory: pathlib.Path, chosen: PromptCheckpoint, validation: TextDataset,
                    test: TextDataset) -> dict[str, Any]:
        """A run's row values from its reported checkpoint: test metrics, and whether it predicts one
        class for every validation example (warned, naming the run)."""
        batch = self.train_config.eval_batch_size
        metrics = trainer.evaluate(self.model, chosen.prompt, test, batch)
        return {**{f"test_{k}": metrics[k] for k in ("accuracy", "f1", "auc")},
                "one_class_prediction": trainer.warn_if_one_class(self.model, chosen, validation,
                                                                  self.workdir / directory, batch)}

    def cached_run(self, directory: pathlib.Path, train: TextDataset, splits: Mapping[str, TextDataset],
                   seed: int, extra: dict) -> dict:
        """fit + test metrics of the reported checkpoint, remembered in directory/run.json."""
        record = read_run(self.workdir / directory)
        if record is not None:
            return record
        start = time.time()
        _, chosen = self.fit(train, splits["validation"], directory, seed)
        record = {**extra, "n_train": len(train),
                  **self.run_metrics(directory, chosen, splits["validation"], splits["test"]),
                  "wall_time_s": round(time.time() - start, 3), "selected_step": chosen.step}
        write_run(self.workdir / directory, record)
        return record

    # ---- one cell --------------------------------------------------------------------------------

    def run_cell(self, cell: Cell, splits: Mapping[str, TextDataset], strategy_names: Sequence[str]) -> None:
        clean_train, validation, test = splits["train"], splits["validation"], splits["test"]
        noisy_train = corrupted_train(cell, clean_train, self.recovery, self.relabel_file)
        reviewed = reviewed_ids(cell, clean_train, self.recovery, self.relabel_file)  # once per cell
        true_labels = clean_train.by_ids(noisy_train.ids).labels
        base = {"n_flagged": 0, "n_flagged_corrupted": 0}
        corrupted = self.cached_run(cell.corrupted_path, noisy_train, splits, cell.seed,
                                    {**base, "n_corrupted_remaining": int((noisy_train.labels != true_labels).sum())})
        for name in strategy_names:
            if read_done(self.workdir, cell, name) is not None:
                continue
            if name == "clean":
                rows = [cell.row("clean", 0, **self.cached_run(cell.clean_path, clean_train, splits, cell.seed,
                                                                 {**base, "n_corrupted_remaining": 0}))]
            else:
                rows = [cell.row(name, 0, **corrupted)] + self.iterate(cell, name, clean_train, noisy_train,
                                                                       validation, test, reviewed)
            write_scalars(scalars_dir(self.workdir, cell.path / name), rows)
            write_done(self.workdir, cell, name, rows)
            write_results(self.workdir)

    def iterate(self, cell: Cell, name: str, clean_train: TextDataset, noisy_train: TextDataset,
                validation: TextDataset, test: TextDataset, reviewed: set[str]) -> list[dict]:
        """Iterations 1..T of one strategy, resuming after the last finished one; `reviewed`: ids a
        person kept or relabelled, never flagged."""
        train, rows = noisy_train, []
        for t in range(1, self.recovery.iterations + 1):
            previous, directory = cell.run(name, t - 1), cell.run(name, t)
            state = read_state(self.workdir / directory)
            if state is not None:  # finished before an interruption: restore, do not redo
                rows.append(state["row"])
                train = trained_set(state, noisy_train)
                continue
            start = time.time()
            checkpoints, chosen = self.load(previous)
            probabilities = trainer.validation_probabilities(self.model, chosen, validation)
            predicted = probabilities.argmax(1)
            wrong = predicted != validation.labels
            if not wrong.any():
                logging.info("%s %s: no misclassified validation examples; stopping at iteration %d",
                             cell, name, t - 1)
                break
            is_corrupted = train.labels != clean_train.by_ids(train.ids).labels
            misclassified = validation.subset(np.flatnonzero(wrong))
            influence = self.influence(previous, checkpoints, train, misclassified)
            context = strategies.SelectionContext(
                model=self.model, train=train, prompt=chosen.prompt, misclassified=misclassified,
                corrupted=is_corrupted, seed=cell.seed,
                fit=lambda data, run: self.fit(data, validation, directory / run, cell.seed)[1].prompt,
                influence=influence, balance_classes=self.recovery.balance_classes)
            suspicion = strategies.score(name, context)
            kept = np.flatnonzero([example_id in reviewed for example_id in train.ids])  # a person's keep/relabel
            flagged = strategies.top_k(suspicion, self.recovery.k(len(train)), exclude=kept)
            save_explanations(self.workdir / directory, train, misclassified, predicted[wrong],
                              influence if name in strategies.TRACIN_BASED else None, flagged, suspicion,
                              probabilities[wrong].max(1))
            if t == 1:  # the whole ranking of the corrupted model's training set, for the recovery plot
                ranking = strategies.top_k(suspicion, len(train), exclude=kept)
                write_curve(self.workdir, cell, name, found_by_prefix(is_corrupted, ranking, len(train)))
            train = self.apply(train, flagged, chosen.prompt)
            _, final = self.fit(train, validation, directory, cell.seed)
            remaining = int((train.labels != clean_train.by_ids(train.ids).labels).sum())
            row = cell.row(name, t, n_train=len(train), n_flagged=len(flagged),
                           n_flagged_corrupted=int(is_corrupted[flagged].sum()), n_corrupted_remaining=remaining,
                           **self.run_metrics(directory, final, validation, test),
                           wall_time_s=round(time.time() - start, 3),
                           selected_step=final.step, n_misclassified=len(misclassified),
                           **detection_metrics(is_corrupted, suspicion, flagged))
            logging.info("%s %s iteration %d: flagged %d (%d corrupted; detection AUROC %s), test f1 %.4f auc %s",
                         cell, name, t, len(flagged), row["n_flagged_corrupted"], _fmt(row["detection_auroc"]),
                         row["test_f1"], _fmt(row["test_auc"]))
            write_state(self.workdir / directory, {"row": row, "ids": list(train.ids), "labels": train.labels.tolist()})
            rows.append(row)
        return rows

    def influence(self, scored_run: pathlib.Path, checkpoints: Sequence[PromptCheckpoint], train: TextDataset,
                  misclassified: TextDataset) -> InfluenceMatrices:
        """The influence of `scored_run` (each family computed on first read), one for every strategy
        that scores the same run: at iteration 1 they all score the corrupted run."""
        if self._influence is None or self._influence[0] != scored_run:
            self._influence = (scored_run, InfluenceMatrices(
                self.model, checkpoints, train, misclassified, batch_size=self.recovery.tracin_batch_size,
                projection_dim=self.recovery.projection_dim, damping=self.recovery.damping,
                curvature=self.recovery.curvature))
        return self._influence[1]

    def apply(self, train: TextDataset, flagged: np.ndarray, prompt: np.ndarray) -> TextDataset:
        """Removes the flagged examples, or relabels each to the model's most likely other class."""
        if self.recovery.action == "remove":
            return train.subset(np.setdiff1d(np.arange(len(train)), flagged))
        labels = train.labels.copy()
        labels[flagged] = strategies.other_class(trainer.predict(self.model, prompt, train.subset(flagged)),
                                                 train.labels[flagged])
        return train.with_labels(labels)

def write_scalars(logdir: files.Location, rows: Sequence[dict]) -> None:
    """A strategy's test metrics, flagged precision and detection per iteration (step = iteration)."""
    scalars = Scalars(logdir)
    for row in rows:
        flagged = row.get("n_flagged") or 0
        scalars.write(row["iteration"], {
            **{f"test/{m}": row.get(f"test_{m}") for m in ("f1", "auc", "accuracy")},
            "flagged/precision": row["n_flagged_corrupted"] / flagged if flagged else None,
            "flagged/detection_auroc": row.get("detection_auroc"), "flagged/detection_ap": row.get("detection_ap"),
            "n_corrupted_remaining": row.get("n_corrupted_remaining")})
    scalars.close()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def run_sweep(workdir: files.Location, experiment: Experiment,
              command: run_record.Command = run_record.Command()) -> epath.Path:
    """Every (dataset, rate, seed, strategy) cell of `experiment` in `workdir`; returns results.csv.
    `command`: the gin files and bindings it came from, for the workdir's record (gbair.run_record)."""
    with lock.hold(workdir):  # the workdir's only writer (already held when started by gbair.main)
        return _run_sweep(workdir, experiment, command)


def _run_sweep(workdir: files.Location, experiment: Experiment, command: run_record.Command) -> epath.Path:
    cells = experiment.cells()
    files.remove_orphans(workdir)
    runs_per_cell = 1 + sum(experiment.recovery.iterations * (4 if s == "cleanlab" else 1)
                            for s in experiment.strategy_names if s != "clean")
    clean_runs = len(experiment.datasets) * len(experiment.seeds) if "clean" in experiment.strategy_names else 0
    run = Sweep(workdir, experiment.model, experiment.train_config, experiment.recovery,
                total_runs=len(cells) * runs_per_cell + clean_runs, relabel_file=experiment.relabel_file)
    run.prepare(cells, experiment.datasets, with_clean="clean" in experiment.strategy_names)
    run_record.record(workdir, command)  # only now: the settings are valid and this workdir is theirs
    for name, splits in experiment.datasets.items():
        logging.info("TrainConfig on %s: %s", name, experiment.train_config.describe_length(len(splits["train"])))
    for i, cell in enumerate(cells, 1):
        logging.info("cell %d/%d: %s rate=%g seed=%d, strategies %s", i, len(cells), cell.dataset, cell.rate,
                     cell.seed, ", ".join(experiment.strategy_names))
        run.run_cell(cell, experiment.datasets[cell.dataset], experiment.strategy_names)
    results = write_results(workdir)
    hosts.barrier("sweep written")  # what reads the workdir next sees every file
    return results
