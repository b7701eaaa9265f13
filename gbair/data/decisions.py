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
    try:
        raw = json.loads(files.path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read decisions JSON ({e})") from e
    if not isinstance(raw, dict) or not isinstance(raw.get("decisions"), list):
        raise UserError(f'{path}: expected an object {{"decisions": [...]}}')
    position = {example_id: i for i, example_id in enumerate(dataset.ids)}
    labels, remove, seen = dataset.labels.copy(), set(), set()
    for n, entry in enumerate(raw["decisions"]):
        where = f"{path}: decisions[{n}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected an object, got {entry!r}")
        example_id, action = entry.get("id"), entry.get("action")
        if example_id not in position:
            raise UserError(f"{where}: id {example_id!r} is not in the training set")
        if example_id in seen:
            raise UserError(f"{where}: id {example_id!r} has a second decision")
        seen.add(example_id)
        if action not in ACTIONS:
            raise UserError(f"{where}: action {action!r}, expected one of {list(ACTIONS)}")
        if action == "relabel":
            if entry.get("label") not in dataset.class_names:
                raise UserError(f"{where}: label {entry.get('label')!r}, expected one of {list(dataset.class_names)}")
            labels[position[example_id]] = dataset.class_names.index(entry["label"])
        elif action == "remove":
            remove.add(position[example_id])
    keep = np.array([i for i in range(len(dataset)) if i not in remove], np.int64)
    return dataset.with_labels(labels).subset(keep)
