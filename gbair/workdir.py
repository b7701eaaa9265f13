"""The workdir's one owner: where each part of a G-BAIR workdir lies, what results.csv holds, what a
folder was made from, and how each part is written (atomically, through gbair.files) and read back.
The sweep (gbair.recovery.loop) writes through it; gbair.explain, gbair.reports and the clean job
(gbair.recovery.cleaning) read through it, so a writer and a reader never disagree on a name.

WORKDIR/cells/<dataset>/rate=<r>/seed=<s>/ (a `Cell`) holds identity.json (what determines the cell's
results), one folder per training run (`corrupted`, then <strategy>/it<t>) and <strategy>/done.json
(a finished strategy's rows). The clean bound, the same at every rate, is trained once in
WORKDIR/cells/<dataset>/clean/seed=<s>/. A training run's folder holds checkpoints/ (resumable) and
run.json (the corrupted and clean runs: their row values) or, for it<t>, state.json (a finished
iteration's row and the training set it leaves) and explanations.npz (what the HTML report shows: the
ranking scores, V's errors, for TracIn strategies their influence matrices).
WORKDIR/results.csv has COLUMNS, one row per (dataset, strategy, corruption_rate, seed, iteration),
rebuilt from every done.json. WORKDIR/tensorboard/ mirrors cells/: scalars of every training run and
every strategy's iterations. WORKDIR/gbair.lock exists while a process writes the workdir (gbair.lock);
WORKDIR/config.gin and gin_config.json are gbair.run_record's. The clean job's workdir holds
cleaning/<identity>/ with identity.json and it<t>/ folders laid out as a sweep's iterations.
"""

import csv
import dataclasses
import hashlib
import io
import json
import pathlib
from typing import Any, Mapping, Sequence, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec

from gbair import UserError, files, hosts
from gbair.batching import map_batches
from gbair.data.dataset import TextDataset
from gbair.models.prompts import PromptModel

# ---- results.csv's schema ---------------------------------------------------------------------

# The first 13 columns are in every results.csv gbair wrote; later ones were added at the end (so older
# files still load) and are empty where undefined, e.g. detection at iteration 0. one_class_prediction:
# 1 when the row's model predicts one class for every validation example (trainer.warn_if_one_class).
COLUMNS = ("dataset", "strategy", "corruption_rate", "seed", "iteration", "n_train", "n_flagged",
           "n_flagged_corrupted", "n_corrupted_remaining", "test_accuracy", "test_f1", "test_auc", "wall_time_s",
           "selected_step", "n_misclassified", "detection_auroc", "detection_ap", "precision_at_k", "recall_at_k",
           "one_class_prediction")
REQUIRED_COLUMNS = COLUMNS[:13]
INT_COLUMNS = ("seed", "iteration", "n_train", "n_flagged", "n_flagged_corrupted", "n_corrupted_remaining",
               "selected_step", "n_misclassified", "one_class_prediction")
CLEAN = "clean"  # the bound trained on the true labels: one iteration-0 row per (dataset, seed)
# Cleaning strategies in display order (results.csv, tables, plots); oracle (flags exactly the corrupted
# labels) comes last as the upper bound on detection. Any other name follows, alphabetically.
STRATEGY_ORDER = ("tracin", "tracin_by_label", "tracin_cosine", "influence_function", "influence_function_by_label",
                  "datainf", "trak", "self_influence", "loss", "random", "cleanlab", "oracle")

# ---- the layout --------------------------------------------------------------------------------

RESULTS_FILE = "results.csv"
IDENTITY_FILE = "identity.json"
EXPLAIN_FILE = "explanations.npz"
SCALARS_DIR = "tensorboard"  # WORKDIR/tensorboard/<run or strategy folder>/: TensorBoard event files
CLEANING_DIR = "cleaning"  # the clean job's WORKDIR/cleaning/<identity>/
# <cell>/<strategy>/recovery_curves.csv: the recovery curve of the strategy's ranking at iteration 1
# (gbair.train.metrics.found_by_prefix); WORKDIR/recovery_curves.csv joins every finished strategy's.
RECOVERY_CURVES_FILE = "recovery_curves.csv"
RECOVERY_CURVE_COLUMNS = ("dataset", "corruption_rate", "seed", "strategy", "fraction_flagged", "fraction_found")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (dataset, corruption rate, seed) of a sweep; its paths are relative to the workdir."""

    dataset: str
    rate: float
    seed: int

    @property
    def path(self) -> pathlib.Path:
        return pathlib.Path("cells") / self.dataset / f"rate={self.rate:g}" / f"seed={self.seed}"

    @property
    def clean_path(self) -> pathlib.Path:
        """The clean bound does not depend on the rate: one run per (dataset, seed), shared by every rate."""
        return pathlib.Path("cells") / self.dataset / "clean" / f"seed={self.seed}"

    @property
    def corrupted_path(self) -> pathlib.Path:
        """The run on the corrupted labels: iteration 0 of every cleaning strategy."""
        return self.path / "corrupted"

    def run(self, strategy: str, iteration: int) -> pathlib.Path:
        """The training run behind a row of `strategy` at `iteration` (the clean run, the corrupted run
        at iteration 0, else <strategy>/it<iteration>)."""
        if strategy == CLEAN:
            return self.clean_path
        return self.corrupted_path if iteration == 0 else iteration_dir(self.path / strategy, iteration)

    def row(self, strategy: str, iteration: int, **values) -> dict[str, Any]:
        return {"dataset": self.dataset, "strategy": strategy, "corruption_rate": self.rate, "seed": self.seed,
                "iteration": iteration, **values}


Folder = TypeVar("Folder", pathlib.Path, epath.Path)


def iteration_dir(folder: Folder, iteration: int) -> Folder:
    """A strategy's (or the clean job's) folder of iteration t >= 1: it<t>."""
    return folder / f"it{iteration}"


def checkpoints_dir(run: files.Location) -> epath.Path:
    return files.path(run) / "checkpoints"


def read_run(run: files.Location) -> dict | None:
    """run.json of a finished corrupted or clean run (its row values), None while unfinished."""
    return files.read_json(files.path(run) / "run.json")


def write_run(run: files.Location, record: Mapping[str, Any]) -> None:
    files.write_json(files.path(run) / "run.json", dict(record))


def read_state(run: files.Location) -> dict | None:
    """state.json of a finished iteration, None while unfinished."""
    return files.read_json(files.path(run) / "state.json")


def write_state(run: files.Location, state: Mapping[str, Any]) -> None:
    files.write_json(files.path(run) / "state.json", dict(state))


def trained_set(state: Mapping[str, Any], start: TextDataset) -> TextDataset:
    """The training set an iteration's state left: its ids of `start`, with its labels."""
    return start.by_ids(state["ids"]).with_labels(state["labels"])


def read_done(workdir: files.Location, cell: Cell, strategy: str) -> list[dict] | None:
    """done.json of a finished strategy (its rows), None while unfinished."""
    return files.read_json(files.path(workdir) / cell.path / strategy / "done.json")


def write_done(workdir: files.Location, cell: Cell, strategy: str, rows: Sequence[dict]) -> None:
    files.write_json(files.path(workdir) / cell.path / strategy / "done.json", list(rows))


def scalars_dir(workdir: files.Location, run: pathlib.Path) -> epath.Path:
    return files.path(workdir) / SCALARS_DIR / run


def results_path(workdir: files.Location) -> epath.Path:
    return files.path(workdir) / RESULTS_FILE


def write_results(workdir: files.Location) -> epath.Path:
    """Rebuilds results.csv from every finished strategy's done.json, in a fixed order (process 0)."""
    path = results_path(workdir)
    if not hosts.is_writer():
        return path
    finished = sorted(done.parent for done in (files.path(workdir) / "cells").glob("*/*/*/*/done.json"))
    rows = [row for strategy in finished for row in json.loads((strategy / "done.json").read_text())]
    order = {name: i for i, name in enumerate((CLEAN,) + STRATEGY_ORDER)}
    rows.sort(key=lambda r: (r["dataset"], r["corruption_rate"], r["seed"], order.get(r["strategy"], 99),
                             r["strategy"], r["iteration"]))
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS} for row in rows)
    files.write_text(path, out.getvalue())
    curves = [(strategy / RECOVERY_CURVES_FILE).read_text().split("\n", 1)[1] for strategy in finished
              if (strategy / RECOVERY_CURVES_FILE).exists()]
    files.write_text(files.path(workdir) / RECOVERY_CURVES_FILE, ",".join(RECOVERY_CURVE_COLUMNS) + "\n" + "".join(curves))
    return path


def write_curve(workdir: files.Location, cell: Cell, strategy: str, points: Sequence[tuple[float, float]]) -> None:
    """One strategy's recovery curve in a cell (RECOVERY_CURVE_COLUMNS), one line per point."""
    key = [cell.dataset, cell.rate, cell.seed, strategy]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RECOVERY_CURVE_COLUMNS)
    writer.writerows(key + [f"{flagged:.6f}", f"{found:.6f}"] for flagged, found in points)
    files.write_text(files.path(workdir) / cell.path / strategy / RECOVERY_CURVES_FILE, out.getvalue())


def result_rows(workdir: files.Location, cell: Cell) -> list[dict[str, str]]:
    """results.csv's rows of `cell` as written (strings; gbair.reports.tables.load_results checks and
    parses a whole file); none before the sweep wrote it."""
    path = results_path(workdir)
    if not path.exists():
        return []
    return [r for r in csv.DictReader(io.StringIO(path.read_text())) if r["dataset"] == cell.dataset
            and float(r["corruption_rate"]) == cell.rate and int(r["seed"]) == cell.seed]


# ---- explanations.npz -------------------------------------------------------------------------

def save_explanations(run: files.Location, train: TextDataset, misclassified: TextDataset, predicted: np.ndarray,
                      influence: Mapping[str, np.ndarray] | None, flagged: np.ndarray,
                      suspicion: np.ndarray | None = None, confidence: np.ndarray | None = None) -> None:
    """What `gbair.explain` and the HTML report show for one iteration (numpy arrays, no pickle): the
    training set, V's misclassified examples with the predicted class (and its probability, `confidence`),
    the flagged indices and every example's ranking score (`suspicion`), and TracIn's dot and cosine
    [N_train, |V|] matrices for the TracIn strategies."""
    arrays = {"train_ids": np.array(train.ids, dtype=str), "train_labels": train.labels,
              "query_ids": np.array(misclassified.ids, dtype=str), "query_labels": misclassified.labels,
              "predicted": predicted, "flagged": flagged}
    if influence is not None:
        arrays.update(dot=influence["dot"], cosine=influence["cosine"])
    if suspicion is not None:
        arrays["suspicion"] = suspicion
    if confidence is not None:
        arrays["confidence"] = confidence
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files.write_bytes(files.path(run) / EXPLAIN_FILE, buffer.getvalue())


def load_explanations(run: files.Location) -> dict[str, np.ndarray] | None:
    """What `save_explanations` wrote in `run` (no pickle); None when it wrote nothing there."""
    path = files.path(run) / EXPLAIN_FILE
    if not path.exists():
        return None
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as saved:
        return {key: saved[key] for key in saved.files}


# ---- identities: what a folder was made from -------------------------------------------------

def digest(*parts: Any) -> str:
    """A short SHA-256 of JSON-able parts: how gbair names what a run or result was made from."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def dataset_fingerprint(dataset: TextDataset) -> str:
    return digest(list(dataset.ids), list(dataset.texts), dataset.labels.tolist(), list(dataset.class_names))


_PROBE_TEXTS = ("gbair fingerprint probe: WIN a FREE cruise, reply now!!!", "Minutes of Tuesday's meeting attached.")
_MODEL_FINGERPRINT = "_gbair_fingerprint"  # where model_fingerprint keeps its value on the model object


def model_fingerprint(model: PromptModel) -> str:
    """Identifies a model by what it computes: class names, prompt shape, the seed-0 initial prompt,
    the features and class probabilities of two probe texts (these see the weights, tokenizer,
    max_length and head), and each weight's name, shape, dtype and first values. Computed once per
    model object and kept on it (in its __dict__, as functools.cached_property keeps PromptModel's
    probabilities_fn), so every training run of a sweep reuses it and it goes when the model goes."""
    kept = vars(model)
    if _MODEL_FINGERPRINT not in kept:
        kept[_MODEL_FINGERPRINT] = _compute_model_fingerprint(model)
    return kept[_MODEL_FINGERPRINT]


def _compute_model_fingerprint(model: PromptModel) -> str:
    prompt = np.asarray(model.init_prompt(jax.random.key(0)), np.float32)
    probe = TextDataset(("probe-0", "probe-1"), _PROBE_TEXTS, np.arange(2) % len(model.class_names),
                        ("probe", "probe"), model.class_names)
    features = {k: np.asarray(v).tolist() for k, v in model.featurize(list(probe.texts)).items()}
    first = jax.jit(lambda params: jax.tree.map(lambda leaf: jnp.ravel(leaf)[:8], params),  # on every process
                    out_shardings=None if model.mesh is None else NamedSharding(model.mesh, PartitionSpec()))
    weights = [(jax.tree_util.keystr(path), list(np.shape(leaf)), str(leaf.dtype),
                np.asarray(values, np.float64).round(6).tolist())
               for (path, leaf), values in zip(jax.tree_util.tree_leaves_with_path(model.params),
                                               jax.tree.leaves(first(model.params)))]
    probabilities = map_batches(model.probabilities_fn, model, prompt, probe, 2).round(4).tolist()  # trainer.predict's
    return digest(list(model.class_names), list(model.prompt_shape), hashlib.sha256(prompt.tobytes()).hexdigest(),
                  features, weights, probabilities)


def settings_digest(config: Any) -> str:
    """A config's fields for an identity; None fields are left out, so an option added later whose
    None keeps the old behaviour does not orphan the workdirs made before it."""
    return digest({k: v for k, v in dataclasses.asdict(config).items() if v is not None})


def claim(workdir: files.Location, folder: pathlib.Path, identity: Mapping[str, str]) -> None:
    """Records in WORKDIR/folder/identity.json what determines the results there, or refuses (UserError)
    when the folder holds results of something else: resuming must never mix two settings in one table.
    Every process takes process 0's reading (gbair.hosts.agree)."""
    where, path = files.path(workdir) / folder, files.path(workdir) / folder / IDENTITY_FILE

    def check() -> bool:
        """True when `where` is new (the identity is still to be written)."""
        if path.exists():
            recorded = json.loads(path.read_text())
            changed = [name for name in identity if recorded.get(name) != identity[name]]
            if changed:
                raise UserError(f"{where} holds results of a different {', '.join(changed)} than this run's "
                                f"settings; use a new --workdir (or delete that folder to redo it)")
            return False
        if where.exists() and any(where.iterdir()):
            raise UserError(f"{where} holds results but no {IDENTITY_FILE} (made by an older gbair?); "
                            f"use a new --workdir")
        return True

    if hosts.agree(check):
        files.write_json(path, dict(identity))


def cleaning_dir(workdir: files.Location, identity: Mapping[str, Any]) -> epath.Path:
    """The clean job's folder for one setting: WORKDIR/cleaning/<its identity's digest>."""
    return files.path(workdir) / CLEANING_DIR / digest(dict(identity))[:16]


def record_identity(folder: files.Location, identity: Mapping[str, Any]) -> None:
    """Writes folder/identity.json once (a folder named by its identity's digest, e.g. the clean job's)."""
    path = files.path(folder) / IDENTITY_FILE
    if files.read_json(path) is None:
        files.write_json(path, dict(identity))
