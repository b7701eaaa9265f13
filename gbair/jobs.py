"""gbair's jobs, every one that a gin run file names (`execute.job = @...`): one training run
(`configs/runs/train.gin`); the G-BAIR sweep (`configs/runs/gbair.gin`), then what reads its workdir
(tables and plots from gbair.reports, one HTML report per cell from gbair.explain); and cleaning a
person's own data (`configs/runs/clean.gin`). The sweep itself (gbair.recovery.loop) knows nothing of
its readers. The jobs register themselves with gin here; what they are built from (models, data,
settings) is registered by gbair.config, so the modules that define those import no gin.
"""

import csv
import io
from typing import Any, Callable, Mapping

import gin
from absl import logging

from gbair import UserError, explain, files, lock, run_record
from gbair.batching import format_seconds
from gbair.data import decisions as decisions_lib
from gbair.data import user_files
from gbair.data.dataset import TextDataset, check_splits
from gbair.influence.gradients import Method
from gbair.models import prompts
from gbair.models.prompts import PromptModel
from gbair.recovery import cleaning, loop
from gbair.recovery.experiment import Experiment, RecoveryConfig
from gbair.reports import html as report_html
from gbair.reports import paper
from gbair.train import prompt_checkpoints
from gbair.train import trainer


@gin.configurable
def train_and_evaluate(workdir: str, command: run_record.Command = run_record.Command(), *,
                       model: PromptModel = gin.REQUIRED,
                       splits: dict[str, TextDataset] = gin.REQUIRED,
                       config: trainer.TrainConfig = trainer.TrainConfig(),
                       relabel_file: str | None = None) -> dict[str, Any]:
    """The training run: tune on splits["train"], evaluate on "validation" and "test".

    relabel_file: decisions (see gbair.data.decisions) applied to the training split first.

    Writes WORKDIR/checkpoints/ (resumable), WORKDIR/prompt.npy (the checkpoint chosen by
    config.select_by), WORKDIR/metrics.json and TensorBoard scalars in WORKDIR/tensorboard/.
    `command`: as for `sweep`.
    """
    workdir = files.path(workdir)
    check_splits(splits, "train_and_evaluate: splits")
    with lock.hold(workdir):  # the workdir's only writer (already held when started by gbair.main)
        files.remove_orphans(workdir)
        train_set = decisions_lib.apply_decisions(splits["train"], relabel_file) if relabel_file else splits["train"]
        logging.info("Training on %s; validation %s; test %s", train_set, splits["validation"], splits["test"])
        result = trainer.train(model, train_set, config, workdir / "checkpoints",
                               validation=None if config.select_by == "last" else splits["validation"],
                               scalars_dir=workdir / "tensorboard")
        chosen = trainer.select_checkpoint(prompt_checkpoints.load_prompt_checkpoints(workdir / "checkpoints"),
                                           config.select_by)
        metrics: dict[str, Any] = {"steps": result.steps, "wall_time_s": round(result.wall_time_s, 3),
                                   "checkpoint_steps": list(result.checkpoint_steps), "selected_step": chosen.step}
        for name in ("validation", "test"):
            for key, value in trainer.evaluate(model, chosen.prompt, splits[name], config.eval_batch_size).items():
                metrics[f"{name}_{key}"] = value
        metrics["one_class_prediction"] = trainer.warn_if_one_class(model, chosen, splits["validation"], workdir,
                                                                    config.eval_batch_size)
        prompts.save_prompt(workdir / "prompt.npy", chosen.prompt)
        files.write_json(workdir / "metrics.json", metrics)
        run_record.record(workdir, command)
    logging.info("test accuracy %.4f  f1 %.4f  auc %s  (%d steps, %s)", metrics["test_accuracy"],
                 metrics["test_f1"], metrics["test_auc"], result.steps, format_seconds(result.wall_time_s))
    return metrics


@gin.configurable
def sweep(workdir: str, command: run_record.Command = run_record.Command(),
          experiment: Experiment = gin.REQUIRED) -> str:
    """Runs every (dataset, rate, seed, strategy) cell, writes the reports; returns the printed tables.
    `command`: what gbair.main parsed, for the workdir's record (gbair.run_record)."""
    results = loop.run_sweep(workdir, experiment, command)
    table = paper.write_report(workdir)
    pages = explain.write_reports(workdir, experiment)
    print(f"\nResults: {results}\nHTML reports: {', '.join(map(str, pages))}\n\n{table}")
    return table


@gin.configurable
def clean(workdir: str, command: run_record.Command = run_record.Command(), *,
          model: PromptModel = gin.REQUIRED, data_file: str | None = None,
          splits: Callable[[], Mapping[str, TextDataset]] | None = None, text_column: str = "text",
          label_column: str = "label", id_column: str | None = None, validation_file: str | None = None,
          decisions_file: str | None = None, strategy: str = "loss", holdout_fraction: float = 0.2,
          train_config: trainer.TrainConfig = trainer.TrainConfig(), recovery: RecoveryConfig = RecoveryConfig(),
          method: Method = "tiled", seed: int = 0) -> str:
    """Cleans `data_file` (JSONL or CSV; gbair.data.user_files), or else the train split of `splits`, a
    dataset config's splits provider (the embedded corpus's `spam_assassin_splits`, or a seqio/TFDS task's
    such as `bad_splits`; their validation split is then V), with T iterations of `strategy` (gbair.recovery.cleaning). Writes
    WORKDIR/flagged.csv, WORKDIR/cleaned.<jsonl|csv> (the data minus removals, with relabels, in its own
    format and columns) and WORKDIR/report.html; returns the summary it prints. `command`: as for `sweep`."""
    workdir = files.path(workdir)
    def read(path: str) -> user_files.LabelledFile:
        return user_files.read_labelled_file(path, text_column=text_column, label_column=label_column,
                                             class_names=model.class_names, id_column=id_column)

    if data_file:
        source, validation = read(data_file), None
    elif splits is not None:
        given = splits()
        source = user_files.from_dataset(given["train"], getattr(splits, "__name__", "the dataset config's splits"))
        validation = given["validation"]
    else:
        raise UserError("DATA_FILE is not set; expected a .jsonl or .csv file, e.g. --gin.DATA_FILE=\"'my.jsonl'\"")
    if validation_file:
        validation = read(validation_file).dataset
    decisions = decisions_lib.read_decisions(source.dataset, decisions_file) if decisions_file else {}
    cleaner = cleaning.Cleaner(workdir, model, source.dataset, strategy, validation=validation,
                               holdout_fraction=holdout_fraction, decisions=decisions, train_config=train_config,
                               recovery=recovery, method=method, seed=seed)
    with lock.hold(workdir):  # the workdir's only writer (already held when started by gbair.main)
        files.remove_orphans(workdir)
        run_record.record(workdir, command)  # only now: the settings and the data are valid
        result = cleaner.run()
        files.write_text(workdir / "flagged.csv", flagged_csv(result.flagged))
        cleaned = workdir / f"cleaned{source.suffix}"
        files.write_text(cleaned, user_files.cleaned_text(source, result.cleaned))
        report = workdir / "report.html"
        report_html.write_report(report, explain.cleaning_report_data(result, source.name, strategy))
    summary = (f"{len(result.flagged)} flagged over {len(result.iterations)} iteration(s) by {strategy}: "
               f"{workdir / 'flagged.csv'}\ncleaned data ({len(result.cleaned)} of {len(source.dataset)} examples): "
               f"{cleaned}\nreview page: {report}")
    print(summary)
    return summary


def flagged_csv(rows: list[dict]) -> str:
    """flagged.csv: cleaning.FLAGGED_COLUMNS, one row per flagged example."""
    out = io.StringIO()
    writer = csv.DictWriter(out, cleaning.FLAGGED_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
