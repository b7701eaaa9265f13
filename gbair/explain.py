"""Explain a G-BAIR run's mistakes with their most influential training examples.

    python -m gbair.explain --workdir=DIR [--iteration=1] [--strategy=tracin] [--example=ID] [--k=10]
        [--dataset=NAME --rate=R --seed=S] [--html=PATH]

For one validation/test example (or every misclassified validation example of the iteration) it
prints the text, gold and predicted label, and the top-k proponents and opponents among the
training examples of that iteration (text, given label, whether that label was corrupted, TracIn
dot and cosine scores). Misclassified validation examples are answered from the scores the run
stored (explanations.npz); any other example is scored on the spot from the run's checkpoints.
"""

import base64
import dataclasses
import pathlib
import sys
import textwrap
from typing import Any, Sequence

import numpy as np
from absl import flags

from gbair import UserError, cli, config, files
from gbair.reports import html as report_html
from gbair.data.dataset import TextDataset, concat
from gbair.influence.tracin import TracIn, most_influential
from gbair.recovery import cleaning, strategies
from gbair.recovery.experiment import Experiment, corrupted_train
from gbair.train import prompt_checkpoints
from gbair.train import trainer
from gbair.workdir import (COLUMNS, Cell, checkpoints_dir, iteration_dir, load_explanations, read_state,
                           result_rows, trained_set)


@dataclasses.dataclass(frozen=True)
class IterationScores:
    """TracIn of the training set at the start of one iteration against some query examples."""

    train: TextDataset  # training set as the iteration saw it (given labels)
    queries: TextDataset  # gold labels
    predicted: np.ndarray  # [Q] the model's classes for the queries (model of the previous iteration)
    dot: np.ndarray  # [N_train, Q]
    cosine: np.ndarray  # [N_train, Q]
    flagged: np.ndarray | None  # indices into train flagged at this iteration (stored runs only)


def neighbours(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query (column of [N_train, Q] `scores`), the k proponents' and the k opponents' training
    indices [Q, k] (gbair.influence.tracin.most_influential: TracIn.top_k's ranking of a stored matrix)."""
    return most_influential(scores, k).indices, most_influential(scores, k, opponents=True).indices


class RunExplainer:
    """Reads a finished (or running) G-BAIR workdir back: its experiment, data, checkpoints, scores."""

    def __init__(self, workdir: files.Location, experiment: Experiment | None = None):
        """`experiment` as the run had it; default: rebuilt from the workdir's operative gin config (config.gin)."""
        self.workdir = files.path(workdir)
        if experiment is None:
            config.parse_recorded(self.workdir)
            experiment = Experiment()
        self.experiment = experiment

    def cell(self, dataset: str | None, rate: float | None, seed: int | None) -> Cell:
        for cell in self.experiment.cells():
            if ((dataset is None or cell.dataset == dataset) and (rate is None or cell.rate == rate)
                    and (seed is None or cell.seed == seed)):
                return cell
        raise UserError(f"no cell dataset={dataset} rate={rate} seed={seed} in {self.experiment.cells()}")

    def splits(self, cell: Cell) -> dict[str, TextDataset]:
        return self.experiment.datasets[cell.dataset]

    def noisy_train(self, cell: Cell) -> TextDataset:
        return corrupted_train(cell, self.splits(cell)["train"], self.experiment.recovery, self.experiment.relabel_file)

    def true_labels(self, cell: Cell, dataset: TextDataset) -> np.ndarray:
        return self.splits(cell)["train"].by_ids(dataset.ids).labels

    def train_at(self, cell: Cell, strategy: str, iteration: int) -> TextDataset:
        """The training set at the start of `iteration` (after the previous iterations' cleaning)."""
        noisy = self.noisy_train(cell)
        if iteration == 1:
            return noisy
        before = self.workdir / cell.run(strategy, iteration - 1)
        state = read_state(before)
        if state is None:
            raise FileNotFoundError(f"{before}: iteration {iteration - 1} of {strategy} has not finished")
        return trained_set(state, noisy)

    def checkpoints_before(self, cell: Cell, strategy: str, iteration: int):
        return prompt_checkpoints.load_prompt_checkpoints(
            checkpoints_dir(self.workdir / cell.run(strategy, iteration - 1)))

    def stored(self, cell: Cell, strategy: str, iteration: int) -> IterationScores | None:
        saved = load_explanations(self.workdir / cell.run(strategy, iteration))
        if saved is None or "dot" not in saved:  # "dot": TracIn strategies (the others' pages show their ranking)
            return None
        train = self.noisy_train(cell).by_ids(saved["train_ids"]).with_labels(saved["train_labels"])
        queries = self.splits(cell)["validation"].by_ids(saved["query_ids"])
        return IterationScores(train, queries, saved["predicted"], saved["dot"], saved["cosine"], saved["flagged"])

    def compute(self, cell: Cell, strategy: str, iteration: int, example_ids: Sequence[str]) -> IterationScores:
        """Scores `example_ids` (validation or test) against the iteration's training set on the spot."""
        splits = self.splits(cell)
        pool = {example_id: (name, i) for name in ("validation", "test") for i, example_id in enumerate(splits[name].ids)}
        missing = [i for i in example_ids if i not in pool]
        if missing:
            raise UserError(f"--example: {missing} not in the validation or test split of {cell}")
        queries = concat([splits[pool[i][0]].subset([pool[i][1]]) for i in example_ids])
        train = self.train_at(cell, strategy, iteration)
        checkpoints = self.checkpoints_before(cell, strategy, iteration)
        model = self.experiment.model
        reported = trainer.select_checkpoint(checkpoints, self.experiment.train_config.select_by)
        predicted = trainer.predict(model, reported.prompt, queries).argmax(1)
        batch = self.experiment.recovery.tracin_batch_size
        dot, cosine = TracIn(model, checkpoints, batch_size=batch).influence_dot_and_cosine(train, queries)
        return IterationScores(train, queries, predicted, dot, cosine, None)

    def scores(self, cell: Cell, strategy: str, iteration: int, example_id: str | None) -> IterationScores:
        stored = self.stored(cell, strategy, iteration)
        if example_id is None:
            if stored is None:
                raise FileNotFoundError(f"no stored explanations for {cell} {strategy} iteration {iteration}; "
                                        f"give --example=ID to score one example from the checkpoints")
            return stored
        if stored is not None and example_id in stored.queries.ids:
            j = stored.queries.ids.index(example_id)
            return dataclasses.replace(stored, queries=stored.queries.subset([j]), predicted=stored.predicted[[j]],
                                       dot=stored.dot[:, [j]], cosine=stored.cosine[:, [j]])
        return self.compute(cell, strategy, iteration, [example_id])

    # ---- outputs ---------------------------------------------------------------------------------

    def text_report(self, cell: Cell, scores: IterationScores, k: int) -> str:
        names = scores.train.class_names
        corrupted = scores.train.labels != self.true_labels(cell, scores.train)
        out = []
        best, worst = neighbours(scores.dot, k)
        for q in range(len(scores.queries)):
            out.append(f"{scores.queries.ids[q]}  gold: {names[scores.queries.labels[q]]}  "
                       f"predicted: {names[scores.predicted[q]]}")
            out.append(textwrap.indent(_short(scores.queries.texts[q], 300), "    "))
            for title, rows in (("proponents", best[q]), ("opponents", worst[q])):
                out.append(f"  {title} (training examples; dot, cosine):")
                for rank, i in enumerate(rows, 1):
                    flag = " CORRUPTED" if corrupted[i] else ""
                    out.append(f"    {rank:2d}. {scores.train.ids[i]}  label {names[scores.train.labels[i]]}{flag}  "
                               f"dot {scores.dot[i, q]:+.3e}  cos {scores.cosine[i, q]:+.3f}  "
                               f"{_short(scores.train.texts[i], 90)}")
            out.append("")
        return "\n".join(out)

    def report_data(self, cell: Cell, k: int = 10) -> dict[str, Any]:
        """The HTML report's data (see gbair.reports.html) for every strategy of `cell`: the flagged examples
        by the score they were ranked by; V's errors, with TracIn's proponents and opponents for TracIn
        strategies."""
        noisy = self.noisy_train(cell)
        corrupted = (noisy.labels != self.true_labels(cell, noisy)).tolist()
        validation = self.splits(cell)["validation"]
        iterations = []
        for strategy in [s for s in self.experiment.strategy_names if s not in strategies.BOUNDS]:
            found = hits = 0
            for t in range(1, self.experiment.recovery.iterations + 1):
                saved = load_explanations(self.workdir / cell.run(strategy, t))
                if saved is None:
                    break
                train = noisy.by_ids(saved["train_ids"]).with_labels(saved["train_labels"])
                to_global, flagged = noisy.positions(train.ids), saved["flagged"]
                flagged_corrupted = train.labels[flagged] != self.true_labels(cell, train.subset(flagged))
                found, hits = found + len(flagged), hits + int(flagged_corrupted.sum())
                queries = validation.by_ids(saved["query_ids"])
                misclassified = []
                for q in range(len(queries)):
                    entry = {"id": queries.ids[q], "text": queries.texts[q], "gold": int(queries.labels[q]),
                             "predicted": int(saved["predicted"][q])}
                    if "confidence" in saved:
                        entry["confidence"] = float(saved["confidence"][q])
                    if "dot" in saved:
                        entry.update(_explained(saved["dot"], saved["cosine"], to_global, q, k))
                    misclassified.append(entry)
                if "suspicion" in saved:
                    ranked_by, name, meaning = saved["suspicion"], f"{strategy} score", strategies.MEANINGS[strategy]
                else:  # a run made before the ranking scores were stored
                    ranked_by, name = saved["dot"].sum(1), "TracIn sum over V"
                    meaning = "an older run's page: the plain TracIn sum over V, not the score the examples were ranked by."
                iterations.append({
                    "strategy": strategy, "iteration": t, "score_name": name, "score_meaning": meaning,
                    "misclassified": misclassified,
                    "flagged": [{"train": int(to_global[i]), "score": float(ranked_by[i]), "rank": r + 1}
                                for r, i in enumerate(flagged)],
                    "n_flagged_corrupted": int(flagged_corrupted.sum()),
                    "precision_so_far": hits / found if found else None,
                })
        rows = result_rows(self.workdir, cell)
        header = list(COLUMNS)
        plots = {p.stem: "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode()
                 for p in sorted(self.workdir.glob("*.png"))}
        return {
            "title": f"G-BAIR: {cell.dataset}, corruption {cell.rate:g}, seed {cell.seed}",
            "class_names": list(noisy.class_names),
            "metrics": {"header": header, "rows": [[_rounded(r.get(c) or "") for c in header] for r in rows]},
            "plots": plots,
            "train": {"ids": list(noisy.ids), "texts": list(noisy.texts), "labels": noisy.labels.tolist(),
                      "corrupted": corrupted},
            "iterations": iterations,
        }

    def write_html(self, cell: Cell, path: files.Location | None = None, k: int = 10) -> files.Location:
        path = path or self.workdir / f"report_{cell.dataset}_rate{cell.rate:g}_seed{cell.seed}.html"
        report_html.write_report(path, self.report_data(cell, k))
        return path


def cleaning_report_data(result: cleaning.Cleaning, name: str, strategy: str, k: int = 10) -> dict[str, Any]:
    """The review page's data (gbair.reports.html) of a cleaning run: per iteration the flagged examples by
    the score they were ranked by, with the model's view of each; V's misclassified examples with the
    model's confidence and, for TracIn strategies, their proponents and opponents."""
    train, validation = result.train, result.validation
    names = train.class_names
    to_page = {example_id: i for i, example_id in enumerate(train.ids)}
    validation_at = {} if validation is None else {example_id: i for i, example_id in enumerate(validation.ids)}
    iterations, rows = [], []
    for state in result.iterations:
        t = state["iteration"]
        saved = load_explanations(iteration_dir(result.folder, t))
        where = {example_id: j for j, example_id in enumerate(saved["query_ids"])} if saved is not None else {}
        misclassified = []
        for m in state["misclassified"]:
            entry = {"id": m["id"], "text": validation.texts[validation_at[m["id"]]], "gold": m["given"],
                     "predicted": m["predicted"], "confidence": m["confidence"]}
            if m["id"] in where:
                to_global = np.array([to_page[i] for i in saved["train_ids"]])
                entry.update(_explained(saved["dot"], saved["cosine"], to_global, where[m["id"]], k))
            misclassified.append(entry)
        flagged = [{"train": to_page[r["id"]], "score": r["score"], "rank": r["rank"], "details": _details(r, strategy)}
                   for r in state["flagged"]]
        iterations.append({"strategy": strategy, "iteration": t, "score_name": f"{strategy} score",
                           "score_meaning": strategies.MEANINGS[strategy], "misclassified": misclassified,
                           "flagged": flagged, "n_flagged_corrupted": None, "precision_so_far": None})
        metrics = state["validation"] or {}
        rows.append([t, state["n_train"], len(flagged), len(misclassified)] + [
            "" if metrics.get(m) is None else round(metrics[m], 4) for m in ("accuracy", "f1", "auc")])
    return {
        "title": f"gbair cleaning: {name}, {strategy}",
        "class_names": list(names), "validation_label": "given",
        "metrics": {"header": ["iteration", "n_train", "n_flagged", "n_misclassified", "validation_accuracy",
                               "validation_f1", "validation_auc"], "rows": rows},
        "plots": {},
        "train": {"ids": list(train.ids), "texts": list(train.texts), "labels": train.labels.tolist(),
                  "corrupted": [None] * len(train)},
        "iterations": iterations,
    }


def _details(row: dict, strategy: str) -> list[list]:
    """What the model makes of a flagged example, beside its ranking score."""
    out = [["p(given label)", round(row["p_given"], 4)],
           ["model predicts", f"{row['predicted']} ({row['p_predicted']:.4f})"],
           ["suggested label", row["suggested_label"]]]
    if strategy == "cleanlab":  # its score is 1 - the out-of-fold probability of the given label
        out.insert(1, ["out-of-fold p(given label)", round(1.0 - row["score"], 4)])
    return out


def _explained(dot: np.ndarray, cosine: np.ndarray, to_global: np.ndarray, q: int, k: int) -> dict[str, list]:
    """Proponents and opponents of query q (column q of the [N_train, Q] matrices), by dot."""
    best, worst = neighbours(dot[:, [q]], k)
    entry = lambda i: {"train": int(to_global[i]), "dot": float(dot[i, q]), "cosine": float(cosine[i, q])}  # noqa: E731
    return {"proponents": [entry(i) for i in best[0]], "opponents": [entry(i) for i in worst[0]]}


def _rounded(cell: str) -> str:
    """A results.csv cell for display: metrics to 4 decimals, everything else as written."""
    try:
        return f"{float(cell):.4f}" if "." in cell else cell
    except ValueError:
        return cell


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def write_reports(workdir: files.Location, experiment: Experiment) -> list[files.Location]:
    """One HTML report per cell of the run in `workdir` (the sweep calls this at the end)."""
    explainer = RunExplainer(workdir, experiment)
    return [explainer.write_html(cell) for cell in explainer.experiment.cells()]


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Only when run as a program: the sweep imports this module inside gbair.main's flags."""
    flags.DEFINE_string("workdir", None, "A gbair.main workdir of a G-BAIR run.", required=True)
    flags.DEFINE_integer("iteration", 1, "G-BAIR iteration (its misclassified set and training set).")
    flags.DEFINE_string("strategy", "tracin", "Strategy whose iteration to explain.")
    flags.DEFINE_string("example", None, "A validation or test example id; default every misclassified one.")
    flags.DEFINE_integer("k", 10, "Proponents and opponents to list.")
    flags.DEFINE_string("dataset", None, "Cell to explain (default the first).")
    flags.DEFINE_float("rate", None, "Cell's corruption rate (default the first).")
    flags.DEFINE_integer("seed", None, "Cell's seed (default the first).")
    flags.DEFINE_string("html", None, "Also write the cell's HTML report here.")


def main(argv: list[str]) -> None:
    del argv  # cli.run refuses positional arguments
    explainer = RunExplainer(FLAGS.workdir)
    cell = explainer.cell(FLAGS.dataset, FLAGS.rate, FLAGS.seed)
    scores = explainer.scores(cell, FLAGS.strategy, FLAGS.iteration, FLAGS.example)
    print(explainer.text_report(cell, scores, FLAGS.k))
    if FLAGS.html:
        print(f"HTML report: {explainer.write_html(cell, pathlib.Path(FLAGS.html), FLAGS.k)}")


if __name__ == "__main__":
    define_flags()
    cli.run(main, sys.argv)
