"""A person's relabel / remove / keep decisions (exported from the HTML report), applied to a dataset.

File format: {"decisions": [{"id": "<example id>", "action": "relabel" | "remove" | "keep",
"label": "<class name>" (relabel only)}]}. The whole file is validated before anything is applied.
"""

import json
import os

import numpy as np

from gbair import UserError, files
from gbair.data.dataset import TextDataset

ACTIONS = ("relabel", "remove", "keep")


def apply_decisions(dataset: TextDataset, path: os.PathLike) -> TextDataset:
    """`dataset` with the decisions in `path` applied; ValueError (nothing applied) on any bad entry."""
    return apply(dataset, read_decisions(dataset, path))


def read_decisions(dataset: TextDataset, path: os.PathLike) -> dict[str, dict]:
    """id -> {"action", "label" (relabel only)} of the file, every entry checked against `dataset`."""
    try:
        raw = json.loads(files.path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read decisions JSON ({e})") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("decisions"), list):
        raise UserError(f'{path}: expected an object {{"decisions": [...]}}')
    position = {example_id: i for i, example_id in enumerate(dataset.ids)}
    decisions: dict[str, dict] = {}
    for n, entry in enumerate(raw["decisions"]):
        where = f"{path}: decisions[{n}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected an object, got {entry!r}")
        example_id, action = entry.get("id"), entry.get("action")
        if example_id not in position:
            raise UserError(f"{where}: id {example_id!r} is not in the training set")
        if example_id in decisions:
            raise UserError(f"{where}: id {example_id!r} has a second decision")
        if action not in ACTIONS:
            raise UserError(f"{where}: action {action!r}, expected one of {list(ACTIONS)}")
        if action == "relabel" and entry.get("label") not in dataset.class_names:
            raise UserError(f"{where}: label {entry.get('label')!r}, expected one of {list(dataset.class_names)}")
        decisions[example_id] = {"action": action, **({"label": entry["label"]} if action == "relabel" else {})}
    return decisions


def reviewed(decisions: dict[str, dict]) -> set[str]:
    """Ids a person decided to keep or relabel: their labels are settled, so no strategy flags them again."""
    return {example_id for example_id, d in decisions.items() if d["action"] != "remove"}


def apply(dataset: TextDataset, decisions: dict[str, dict]) -> TextDataset:
    """`dataset` minus the removed examples, with the relabelled ones' new labels (ids not in it are ignored)."""
    labels = dataset.labels.copy()
    for i, example_id in enumerate(dataset.ids):
        if decisions.get(example_id, {}).get("action") == "relabel":
            labels[i] = dataset.class_names.index(decisions[example_id]["label"])
    keep = [i for i, example_id in enumerate(dataset.ids) if decisions.get(example_id, {}).get("action") != "remove"]
    return dataset.with_labels(labels).subset(np.array(keep, np.int64))
