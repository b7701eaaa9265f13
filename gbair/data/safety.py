"""Parsers for the paper's safety datasets: ParlAI single-turn safety, BAD, and two TFDS toxicity sets.

Plain Python, no TensorFlow import at module level, so the parsers are testable anywhere;
``gbair.data.seqio_tasks`` exposes them as seqio tasks.  Each loader returns
{"train", "validation", "test"} TextDatasets with label 0 = acceptable, 1 = unsafe / toxic.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gbair import UserError
from gbair.data.dataset import TextDataset, stratified_split

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SAFETY_CLASS_NAMES: tuple[str, ...] = ("ok", "not ok")  # ParlAI's __ok__ / __notok__
TOXICITY_CLASS_NAMES: tuple[str, ...] = ("non-toxic", "toxic")
PARLAI_LABELS: dict[str, int] = {"__ok__": 0, "__notok__": 1}

PARLAI_SAFETY_FILE = "single_turn_safety.json"
PARLAI_KINDS: tuple[str, ...] = ("standard", "adversarial")
PARLAI_ROUNDS: tuple[str, ...] = ("1", "2", "3")
_PARLAI_SPLITS = {"train": "train", "valid": "validation", "test": "test"}  # file name -> ours
_BUCKET_LABEL = {"good": "__ok__", "bad": "__notok__"}

BAD_DIR = "bot_adversarial_dialogue_datasets_with_persona"
_BAD_SPLITS = {"train": "train", "valid": "validation", "test": "test"}

TOXICITY_THRESHOLD = 0.5  # Jigsaw's convention: toxic when at least half the raters said so


# ---------------------------------------------------------------- ParlAI single-turn safety


def load_parlai_single_turn(
    path: str | os.PathLike[str],
    kind: str = "standard",
    rounds: Sequence[str | int] = PARLAI_ROUNDS,
) -> dict[str, TextDataset]:
    """ParlAI's dialogue_safety single-turn data (Dinan et al. 2019) as ok=0 / not ok=1 splits.

    ``path`` is ``single_turn_safety.json`` or the folder holding it (ParlAI's
    ``data/dialogue_safety``).  ``kind`` is "standard" or "adversarial"; ``rounds``
    picks rounds "1".."3".  ids are the record's place in the JSON, e.g.
    ``standard/train/1/good[17]``, and groups are ``<kind>/round<r>``.
    """
    if kind not in PARLAI_KINDS:
        raise UserError(f"load_parlai_single_turn: kind must be one of {PARLAI_KINDS}, got {kind!r}")
    if isinstance(rounds, (str, bytes)):
        raise UserError(f"load_parlai_single_turn: rounds must be a sequence like ('1', '2'), got {rounds!r}")
    rounds = tuple(str(r) for r in rounds)
    if not rounds or len(set(rounds)) != len(rounds) or not set(rounds) <= set(PARLAI_ROUNDS):
        raise UserError(f"load_parlai_single_turn: rounds must be distinct values from {PARLAI_ROUNDS}, got {rounds}")

    file = Path(path)
    if file.is_dir():
        file = file / PARLAI_SAFETY_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"ParlAI safety file {str(file)!r} does not exist; point data_dir at the folder holding "
            f"{PARLAI_SAFETY_FILE} (ParlAI's data/dialogue_safety)"
        )
    try:
        data = json.loads(file.read_bytes())
    except ValueError as e:
        raise UserError(f"{file}: not readable JSON ({e}), expected ParlAI's {PARLAI_SAFETY_FILE}") from None

    out = {}
    for parlai_split, split in _PARLAI_SPLITS.items():
        ids, texts, labels, groups = [], [], [], []
        for r in rounds:
            for bucket, expected in _BUCKET_LABEL.items():
                where = f"{kind}/{parlai_split}/{r}/{bucket}"
                records = _lookup(data, (kind, parlai_split, r, bucket), file)
                if not isinstance(records, list):
                    raise UserError(f"{file}: {where}: expected a list of records, got {type(records).__name__}")
                for i, record in enumerate(records):
                    text, label = _parlai_record(record, expected, f"{file}: {where}[{i}]")
                    ids.append(f"{where}[{i}]")
                    texts.append(text)
                    labels.append(PARLAI_LABELS[label])
                    groups.append(f"{kind}/round{r}")
        out[split] = TextDataset(
            ids=ids, texts=texts, labels=np.array(labels, np.int64), groups=groups, class_names=SAFETY_CLASS_NAMES
        )
    return out


def _lookup(data: Any, keys: tuple[str, ...], file: Path) -> Any:
    node = data
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            where = "/".join(keys[:depth]) or "top level"
            raise UserError(
                f"{file}: {where}: missing key {key!r}, expected ParlAI's layout "
                "[standard|adversarial][train|valid|test][1|2|3][good|bad]"
            )
        node = node[key]
    return node


def _parlai_record(record: Any, expected: str, where: str) -> tuple[str, str]:
    """(text, label) of one JSON record, checked against the good/bad bucket it sits in."""
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise UserError(f"{where}: expected {{'text': str, 'labels': [...]}}, got {record!r:.80}")
    labels = record.get("labels")
    if not (isinstance(labels, list) and labels and isinstance(labels[0], str)):
        raise UserError(f"{where}: expected 'labels' to be ['__ok__'] or ['__notok__'], got {labels!r:.80}")
    if labels[0] != expected:
        raise UserError(f"{where}: label {labels[0]!r} disagrees with its bucket, expected {expected!r}")
    return record["text"], labels[0]


# ---------------------------------------------------------------- BAD (ParlAI text format)


def _unescape(value: str) -> str:
    # ParlAI's str_to_msg, in its order.  The format has no escape for "\", so a
    # literal backslash before n or t reads back as a newline or tab, as in ParlAI.
    return value.replace("\\t", "\t").replace("\\n", "\n").replace("__PIPE__", "|")


def parse_parlai_line(line: str) -> dict[str, str]:
    """Fields of one ParlAI text-format line: TAB-separated ``key:value``, values unescaped.

    Splits on the first ":" like ParlAI; empty fields (a trailing TAB) are ignored
    and a repeated key keeps its last value.
    """
    fields: dict[str, str] = {}
    for field in line.rstrip("\r\n").split("\t"):
        if not field:
            continue
        key, sep, value = field.partition(":")
        if not sep:
            raise UserError(f"field {field[:40]!r} has no ':', expected key:value")
        fields[key] = _unescape(value)
    return fields


def load_bad(data_dir: str | os.PathLike[str], last_n_turns: int | None = 4) -> dict[str, TextDataset]:
    """Bot-Adversarial Dialogue (Xu et al. 2021) as ok=0 / not ok=1 splits of the dialogue's last turns.

    Reads ``data_dir/bot_adversarial_dialogue_datasets_with_persona/{train,valid,test}.txt``
    (ParlAI's ``data/bot_adversarial_dialogue/dialogue_datasets``): 69,274 / 7,002 / 2,598
    examples, 39% of train not ok.  The label is for the last turn; the text keeps the last
    ``last_n_turns`` turns (4 as in ParlAI's eval, None for all) joined with "\\n".  ids are
    ``<split>:<line number>`` and groups the ``speaker_to_eval`` field ("human" or "bot").
    """
    if last_n_turns is not None and (
        isinstance(last_n_turns, bool) or not isinstance(last_n_turns, int) or last_n_turns < 1
    ):
        raise UserError(f"load_bad: last_n_turns must be a positive int or None, got {last_n_turns!r}")
    folder = Path(data_dir) / BAD_DIR
    return {split: _read_bad_file(folder / f"{name}.txt", split, last_n_turns) for name, split in _BAD_SPLITS.items()}


def _read_bad_file(path: Path, split: str, last_n_turns: int | None) -> TextDataset:
    if not path.is_file():
        raise FileNotFoundError(
            f"BAD file {str(path)!r} does not exist; point data_dir at the folder holding {BAD_DIR}/ "
            "(ParlAI's data/bot_adversarial_dialogue/dialogue_datasets)"
        )
    ids, texts, labels, groups = [], [], [], []
    # Lines split on "\n" only: a stray carriage return inside a text must not split the line (ParlAI
    # reads the same way). Decoded line by line so that bad UTF-8 is reported with its file:line.
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{line_number}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None
            if not line.strip():
                continue
            try:
                fields = parse_parlai_line(line)
                for key in ("text", "labels"):
                    if key not in fields:
                        raise UserError(f"no {key!r} field, expected text:... and labels:__ok__ or __notok__")
                if fields["labels"] not in PARLAI_LABELS:
                    raise UserError(f"unknown label {fields['labels']!r}, expected __ok__ or __notok__")
            except ValueError as e:
                raise UserError(f"{path}:{line_number}: {e}") from None
            turns = fields["text"].split("\n")
            if last_n_turns is not None:
                turns = turns[-last_n_turns:]
            ids.append(f"{split}:{line_number}")
            texts.append("\n".join(turns))
            labels.append(PARLAI_LABELS[fields["labels"]])
            groups.append(fields.get("speaker_to_eval", "unknown"))
    return TextDataset(
        ids=ids, texts=texts, labels=np.array(labels, np.int64), groups=groups, class_names=SAFETY_CLASS_NAMES
    )


# ---------------------------------------------------------------- TFDS toxicity sets


def tfds_toxicity_examples(
    examples: Iterable[Mapping[str, Any]],
    *,
    split: str,
    group: str,
    threshold: float = TOXICITY_THRESHOLD,
) -> TextDataset:
    """TFDS ``as_numpy`` examples with ``text`` (bytes) and ``toxicity`` (fraction of raters) as a TextDataset.

    Label is 1 (toxic) when ``toxicity >= threshold``; 0.5 is the Jigsaw / Perspective
    convention (an example rated toxic by exactly half the raters counts as toxic).  ids
    are ``<split>:<TFDS id>`` (``<split>:<index>`` when there is no id) and every group is ``group``.
    """
    ids, texts, labels = [], [], []
    for i, example in enumerate(examples):
        where = f"{group} {split} example {i}"
        text = example.get("text")
        if isinstance(text, bytes):  # np.bytes_ subclasses bytes
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{where}: text is not UTF-8 ({e})") from None
        if not isinstance(text, str):
            raise UserError(f"{where}: expected 'text' as bytes or str, got {type(text).__name__}")
        try:
            toxicity = float(example["toxicity"])
        except (KeyError, TypeError, ValueError):
            got = example.get("toxicity")
            raise UserError(f"{where}: expected a float 'toxicity' in [0, 1], got {got!r}") from None
        if not (math.isfinite(toxicity) and 0.0 <= toxicity <= 1.0):
            raise UserError(f"{where}: expected 'toxicity' in [0, 1], got {toxicity}")
        raw_id = example.get("id")
        if isinstance(raw_id, bytes):
            raw_id = raw_id.decode("utf-8", errors="replace")
        ids.append(f"{split}:{raw_id if raw_id not in (None, '') else i}")
        texts.append(text)
        labels.append(int(toxicity >= threshold))
    return TextDataset(
        ids=ids,
        texts=texts,
        labels=np.array(labels, np.int64),
        groups=[group] * len(ids),
        class_names=TOXICITY_CLASS_NAMES,
    )


def import_tensorflow() -> Any:
    """TensorFlow with its C++ info logs quietened and no GPU, since JAX shares the process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TF already initialised its devices; nothing left to change
        pass
    return tf


def load_tfds_toxicity(
    name: str,
    data_dir: str | os.PathLike[str],
    *,
    threshold: float = TOXICITY_THRESHOLD,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, TextDataset]:
    """A prepared TFDS toxicity set ("civil_comments", "wikipedia_toxicity_subtypes") as splits.

    Never downloads: the dataset must already be built in ``data_dir``.  A set with no
    validation split (wikipedia_toxicity_subtypes has only train and test) gets one of
    ``validation_fraction`` of train, stratified and fixed by ``seed``; the rest stays train.
    """
    import_tensorflow()
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    builder = tfds.builder(name, data_dir=str(data_dir))
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared in data_dir {str(data_dir)!r}; prepare it with "
            f"`tfds build {name} --data_dir {data_dir}` on a machine with network access"
        )
    available = set(builder.info.splits)
    wanted = [s for s in SPLITS if s in available]
    if "train" not in available or "test" not in available:
        raise UserError(f"TFDS dataset {name!r}: expected train and test splits, found {sorted(available)}")
    group = name.split("/")[0]
    out = {}
    for split in wanted:
        ds = tfds.load(name, split=split, data_dir=str(data_dir), download=False)
        out[split] = tfds_toxicity_examples(tfds.as_numpy(ds), split=split, group=group, threshold=threshold)
    if "validation" not in out:
        out["train"], out["validation"] = split_off(out["train"], validation_fraction, seed=seed)
    return {split: out[split] for split in SPLITS}


# ---------------------------------------------------------------- subsets


def _in_order(dataset: TextDataset, part: TextDataset) -> TextDataset:
    """``part``'s examples in the order they have in ``dataset`` (file order)."""
    return dataset.subset(np.sort(dataset.positions(part.ids)))


def split_off(dataset: TextDataset, fraction: float, *, seed: int) -> tuple[TextDataset, TextDataset]:
    """(rest, held out): a stratified ``fraction`` held out by ``seed``, both kept in file order."""
    if not 0.0 < fraction < 1.0:
        raise UserError(f"split_off: fraction must be in (0, 1), got {fraction!r}")
    n_held = round(len(dataset) * fraction)
    parts = stratified_split(dataset, {"rest": len(dataset) - n_held, "held": n_held}, seed=seed)
    return _in_order(dataset, parts["rest"]), _in_order(dataset, parts["held"])


def stratified_subset(dataset: TextDataset, n: int | None, *, seed: int) -> TextDataset:
    """At most ``n`` examples with the class mix of ``dataset``, chosen by ``seed``, in file order."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise UserError(f"stratified_subset: n must be a non-negative int or None, got {n!r}")
    if n is None or n >= len(dataset):
        return dataset
    return _in_order(dataset, stratified_split(dataset, {"subset": n}, seed=seed)["subset"])


def limit_splits(
    loader: Callable[[], Mapping[str, TextDataset]], max_examples_per_split: int | None, *, seed: int = 0
) -> Callable[[], dict[str, TextDataset]]:
    """``loader`` whose splits are cut to a stratified ``max_examples_per_split`` (laptop-sized runs)."""

    def load() -> dict[str, TextDataset]:
        return {k: stratified_subset(v, max_examples_per_split, seed=seed) for k, v in loader().items()}

    return load
