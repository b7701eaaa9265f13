"""The safety datasets as seqio Tasks, and the providers that read their splits back through seqio.

A task's examples are ``{"id", "text", "group", "label", "targets"}``: strings plus an int32
``label``, with ``targets`` the class name as the T5 verbalizer: "ok" / "not ok" for the
dialogue-safety sets (ParlAI's __ok__ / __notok__), "non-toxic" / "toxic" for the toxicity
sets.  Nothing is tokenized (the model tokenizes itself), so listing examples needs no
vocabulary.  TensorFlow and seqio are imported on first use, so importing this module (as
gbair.config does to register the providers with gin; it imports no gin itself) is cheap.

Each ``*_splits`` provider registers its task (``gbair_parlai_safety_<kind>``, ``gbair_bad``,
``gbair_civil_comments``, ``gbair_wikipedia_toxicity``) and returns ``seqio_splits`` of it, so
an experiment sees exactly what the seqio task serves. Gin (configs/datasets/): `SPLITS =
@bad_splits()`, `bad_splits.data_dir = %DATA_DIR`, and likewise `parlai_safety_splits.kind`,
`civil_comments_splits.threshold`, `wikipedia_toxicity_splits.validation_fraction`, ...; any other
registered task: `SPLITS = @seqio_splits()`, `seqio_splits.task_name = "my_task"`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gbair import UserError
from gbair.data import safety
from gbair.data.dataset import TextDataset

if TYPE_CHECKING:
    import seqio

_CLASS_NAMES: dict[str, tuple[str, ...]] = {}  # task name -> class names, for seqio_splits
_BATCH = 4096  # examples per numpy batch when reading a split back


def _seqio() -> Any:
    safety.import_tensorflow()  # quiet, GPU-free TF before seqio imports it
    import seqio  # pylint: disable=import-outside-toplevel

    return seqio


def register_safety_task(name: str, loader: Callable[[], Mapping[str, TextDataset]]) -> seqio.Task:
    """Register seqio Task ``name`` serving the splits ``loader`` returns; replaces any task of that name.

    ``loader`` runs once, now, so a missing file fails here and every later read of a
    split sees the same examples.  All splits must share one ``class_names``.
    """
    seqio = _seqio()
    tf = safety.import_tensorflow()
    splits = dict(loader())
    if not splits:
        raise UserError(f"register_safety_task({name!r}): the loader returned no splits, expected {safety.SPLITS}")
    class_names = next(iter(splits.values())).class_names
    for split, ds in splits.items():
        if ds.class_names != class_names:
            raise UserError(
                f"register_safety_task({name!r}): split {split!r} has class_names {ds.class_names}, "
                f"expected {class_names} like the other splits"
            )

    def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
        del shuffle_files, seed  # one in-memory shard: no files to shuffle
        ds = splits[split]
        return tf.data.Dataset.from_tensor_slices(
            {
                "id": tf.constant(ds.ids, tf.string, shape=[len(ds)]),
                "text": tf.constant(ds.texts, tf.string, shape=[len(ds)]),
                "group": tf.constant(ds.groups, tf.string, shape=[len(ds)]),
                "label": tf.constant(ds.labels, tf.int32, shape=[len(ds)]),
                "targets": tf.constant([class_names[i] for i in ds.labels], tf.string, shape=[len(ds)]),
            }
        )

    def text_feature() -> seqio.Feature:
        return seqio.Feature(seqio.PassThroughVocabulary(size=0), add_eos=False, dtype=tf.string, rank=0)

    output_features = {
        "text": text_feature(),
        "targets": text_feature(),
        "label": seqio.Feature(
            seqio.PassThroughVocabulary(size=len(class_names)), add_eos=False, dtype=tf.int32, rank=0
        ),
    }
    source = seqio.FunctionDataSource(
        dataset_fn, splits=list(splits), num_input_examples={k: len(v) for k, v in splits.items()}
    )
    seqio.TaskRegistry.remove(name)
    task = seqio.TaskRegistry.add(name, source=source, output_features=output_features)
    _CLASS_NAMES[name] = class_names
    return task


def _require(data_dir: str | None, provider: str, expected: str) -> str:
    if not data_dir:
        raise UserError(f"{provider}: no data dir: pass --gin.DATA_DIR=\"'/path'\" ({expected})")
    return data_dir


def _serve(name: str, loader: Callable[[], Mapping[str, TextDataset]], max_examples_per_split: int | None,
           seed: int) -> dict[str, TextDataset]:
    """Registers task `name` over `loader` (optionally a seeded stratified subset) and reads it back."""
    register_safety_task(name, safety.limit_splits(loader, max_examples_per_split, seed=seed))
    return seqio_splits(name)


def _decode(values: list[np.ndarray]) -> list[str]:
    return [v.decode("utf-8") for batch in values for v in batch.tolist()]


def seqio_splits(
    task_name: str, *, class_names: Sequence[str] | None = None
) -> dict[str, TextDataset]:
    """Every split of seqio task ``task_name``, read in order with ``get_dataset(shuffle=False)``.

    ``class_names`` defaults to those recorded by ``register_safety_task``; each example's
    ``targets`` must be the class name of its ``label``.
    """
    seqio = _seqio()
    task = seqio.TaskRegistry.get(task_name)
    names = tuple(class_names) if class_names is not None else _CLASS_NAMES.get(task_name)
    if names is None:
        raise UserError(
            f"seqio_splits: class names of task {task_name!r} are unknown; "
            "register it with register_safety_task or pass class_names"
        )
    out = {}
    for split in task.splits:
        columns: dict[str, list[np.ndarray]] = {k: [] for k in ("id", "text", "group", "label", "targets")}
        ds = task.get_dataset(sequence_length=None, split=split, shuffle=False)
        for batch in ds.batch(_BATCH).as_numpy_iterator():
            for key, values in columns.items():
                if key not in batch:
                    raise UserError(f"seqio_splits: task {task_name!r} split {split!r} has no {key!r} feature")
                values.append(batch[key])
        labels = np.concatenate(columns["label"]).astype(np.int64) if columns["label"] else np.zeros(0, np.int64)
        dataset = TextDataset(
            ids=_decode(columns["id"]),
            texts=_decode(columns["text"]),
            labels=labels,
            groups=_decode(columns["group"]),
            class_names=names,
        )
        targets = _decode(columns["targets"])
        bad = next((i for i, t in enumerate(targets) if t != names[dataset.labels[i]]), None)
        if bad is not None:
            raise UserError(
                f"seqio_splits: task {task_name!r} split {split!r} example {dataset.ids[bad]!r} has targets "
                f"{targets[bad]!r}, expected {names[dataset.labels[bad]]!r} (class name of label {dataset.labels[bad]})"
            )
        out[split] = dataset
    return out


def parlai_safety_splits(
    data_dir: str | None = None,
    *,
    kind: str = "standard",
    rounds: Sequence[str | int] = safety.PARLAI_ROUNDS,
    max_examples_per_split: int | None = None,
    seed: int = 0,
) -> dict[str, TextDataset]:
    """ParlAI single-turn safety (``data_dir``: ParlAI's data/dialogue_safety) via task gbair_parlai_safety_<kind>."""
    _require(data_dir, "parlai_safety_splits", f"the dir holding {safety.PARLAI_SAFETY_FILE}")
    name = f"gbair_parlai_safety_{kind}"
    loader = functools.partial(safety.load_parlai_single_turn, data_dir, kind=kind, rounds=rounds)
    return _serve(name, loader, max_examples_per_split, seed)


def bad_splits(
    data_dir: str | None = None,
    *,
    last_n_turns: int | None = 4,
    max_examples_per_split: int | None = None,
    seed: int = 0,
) -> dict[str, TextDataset]:
    """Bot-Adversarial Dialogue via task gbair_bad.

    ``data_dir`` is ParlAI's data/bot_adversarial_dialogue/dialogue_datasets.
    """
    _require(data_dir, "bad_splits", f"the dir holding {safety.BAD_DIR}/")
    loader = functools.partial(safety.load_bad, data_dir, last_n_turns=last_n_turns)
    return _serve("gbair_bad", loader, max_examples_per_split, seed)


def civil_comments_splits(
    data_dir: str | None = None,
    *,
    tfds_name: str = "civil_comments",
    threshold: float = safety.TOXICITY_THRESHOLD,
    max_examples_per_split: int | None = None,
    seed: int = 0,
) -> dict[str, TextDataset]:
    """TFDS civil_comments prepared in ``data_dir`` (toxic when toxicity >= threshold) via gbair_civil_comments."""
    _require(data_dir, "civil_comments_splits", f"the TFDS data dir where {tfds_name} is prepared")
    loader = functools.partial(safety.load_tfds_toxicity, tfds_name, data_dir, threshold=threshold, seed=seed)
    return _serve("gbair_civil_comments", loader, max_examples_per_split, seed)


def wikipedia_toxicity_splits(
    data_dir: str | None = None,
    *,
    tfds_name: str = "wikipedia_toxicity_subtypes",
    threshold: float = safety.TOXICITY_THRESHOLD,
    validation_fraction: float = 0.1,
    max_examples_per_split: int | None = None,
    seed: int = 0,
) -> dict[str, TextDataset]:
    """TFDS wikipedia_toxicity_subtypes in ``data_dir`` via gbair_wikipedia_toxicity.

    It has no validation split, so a stratified ``validation_fraction`` of train, fixed by ``seed``, becomes one.
    """
    _require(data_dir, "wikipedia_toxicity_splits", f"the TFDS data dir where {tfds_name} is prepared")
    loader = functools.partial(safety.load_tfds_toxicity, tfds_name, data_dir, threshold=threshold,
                               validation_fraction=validation_fraction, seed=seed)
    return _serve("gbair_wikipedia_toxicity", loader, max_examples_per_split, seed)
