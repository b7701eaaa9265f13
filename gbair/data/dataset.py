"""In-memory text classification dataset and a deterministic stratified split.

Every stage of gbair (loading, embedding, training, evaluation) passes the
same columnar ``TextDataset`` around, so its invariants are checked once, here.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from gbair import UserError


def _as_str_tuple(field: str, values: Iterable[str]) -> tuple[str, ...]:
    out = tuple(values)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise TypeError(f"TextDataset.{field}[{i}]: expected str, got {type(v).__name__}")
    return out


def _as_index_array(name: str, values: Sequence[int] | np.ndarray) -> np.ndarray:
    """Integer 1-D array; refuses floats/bools so a wrong array never silently truncates."""
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise UserError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TextDataset:
    """Columnar (text, label) examples; what every stage of gbair passes around.

    Columns are tuples and a read-only int32 array so a dataset can be shared
    between stages without anyone mutating it under another's feet.
    """

    ids: tuple[str, ...]
    texts: tuple[str, ...]
    labels: np.ndarray
    groups: tuple[str, ...]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        ids = _as_str_tuple("ids", self.ids)
        texts = _as_str_tuple("texts", self.texts)
        groups = _as_str_tuple("groups", self.groups)
        class_names = _as_str_tuple("class_names", self.class_names)
        labels = _as_index_array("TextDataset.labels", self.labels)

        n = len(ids)
        lengths = {"texts": len(texts), "labels": len(labels), "groups": len(groups)}
        for field, length in lengths.items():
            if length != n:
                raise UserError(f"TextDataset.{field}: expected {n} entries (one per id), got {length}")
        if len(set(ids)) != n:
            dup = next(i for i, k in collections.Counter(ids).items() if k > 1)
            raise UserError(f"TextDataset.ids: expected unique ids, {dup!r} appears more than once")
        if not class_names:
            raise UserError("TextDataset.class_names: expected at least one class name, got ()")
        if len(set(class_names)) != len(class_names):
            raise UserError(f"TextDataset.class_names: expected unique names, got {class_names}")
        if n and (labels.min() < 0 or labels.max() >= len(class_names)):
            bad = int(labels[(labels < 0) | (labels >= len(class_names))][0])
            raise UserError(
                f"TextDataset.labels: expected values in [0, {len(class_names)}) "
                f"for class_names {class_names}, got {bad}"
            )

        labels = labels.astype(np.int32)  # always a fresh copy we own
        labels.setflags(write=False)
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "texts", texts)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "class_names", class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TextDataset):
            return NotImplemented
        return (
            self.ids == other.ids
            and self.texts == other.texts
            and self.groups == other.groups
            and self.class_names == other.class_names
            and np.array_equal(self.labels, other.labels)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an ndarray; equality is by value

    def __repr__(self) -> str:
        # The default repr would print every text; a summary is what one wants in logs.
        counts = dict(zip(self.class_names, self.class_counts().tolist()))
        return f"TextDataset(n={len(self)}, class_counts={counts})"

    def class_counts(self) -> np.ndarray:
        """Number of examples per class, indexed like ``class_names``."""
        return np.bincount(self.labels, minlength=len(self.class_names))

    def subset(self, indices: Sequence[int] | np.ndarray) -> TextDataset:
        """The examples at ``indices``, in that order (indices must be unique and in range)."""
        idx = _as_index_array("TextDataset.subset indices", indices)
        n = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            bad = int(idx[(idx < 0) | (idx >= n)][0])
            raise IndexError(f"TextDataset.subset: expected indices in [0, {n}), got {bad}")
        if len(np.unique(idx)) != len(idx):
            raise UserError("TextDataset.subset: expected unique indices, got repeats")
        return TextDataset(
            ids=tuple(self.ids[i] for i in idx),
            texts=tuple(self.texts[i] for i in idx),
            labels=self.labels[idx],
            groups=tuple(self.groups[i] for i in idx),
            class_names=self.class_names,
        )

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Indices of ``ids`` in this dataset, in that order."""
        index = {example_id: i for i, example_id in enumerate(self.ids)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise KeyError(f"TextDataset.positions: {len(missing)} ids not in the dataset, e.g. {missing[0]!r}")
        return np.array([index[i] for i in ids], np.int64)

    def by_ids(self, ids: Sequence[str]) -> TextDataset:
        """The examples with ``ids``, in that order."""
        return self.subset(self.positions(ids))

    def with_labels(self, labels: Sequence[int] | np.ndarray) -> TextDataset:
        """Same examples relabelled (e.g. noisy or predicted labels); validated like the original."""
        arr = _as_index_array("TextDataset.with_labels labels", labels)
        if arr.shape != (len(self),):
            raise UserError(f"TextDataset.with_labels: expected {len(self)} labels, got shape {arr.shape}")
        return dataclasses.replace(self, labels=arr)


def concat(parts: Sequence[TextDataset]) -> TextDataset:
    """The examples of `parts` (same class names, disjoint ids) one after the other."""
    return TextDataset(sum((p.ids for p in parts), ()), sum((p.texts for p in parts), ()),
                       np.concatenate([p.labels for p in parts]), sum((p.groups for p in parts), ()),
                       parts[0].class_names)


SPLITS = ("train", "validation", "test")
_SPLIT_NEEDS = {"train": "the prompt is trained on it",
                "validation": "checkpoints are chosen and the examples to clean against are found on it",
                "test": "the reported metrics are measured on it"}


def check_splits(splits: Mapping[str, TextDataset], where: str) -> None:
    """Refuses (UserError) a missing or empty train, validation or test split before any training, so a
    run never trains first and fails on an empty split afterwards."""
    missing = [name for name in SPLITS if name not in splits]
    if missing:
        raise UserError(f"{where} has no {missing} split (it has {sorted(splits)}); expected {list(SPLITS)}")
    for name in SPLITS:
        if len(splits[name]) == 0:
            raise UserError(f"{where}: the {name!r} split has 0 examples; expected at least 1 "
                            f"({_SPLIT_NEEDS[name]})")


def _round_allocation(sizes: Sequence[int], class_counts: Sequence[int]) -> np.ndarray:
    """Per-split per-class counts: each within 1 of ``size * class_count / total``.

    Rows are the splits plus one row for the unused remainder, so row sums are
    the split sizes and column sums are exactly the class counts.  Each entry is
    the floor of its ideal, plus 1 for some entries with a fractional part:
    largest remainders first, then (rarely, with 3+ classes) fixed up by
    augmenting paths so all sums come out exact.  Such a rounding always exists
    because the ideal matrix has integer row and column sums.
    """
    total = int(sum(class_counts))
    rows = list(sizes) + [total - sum(sizes)]
    num = np.array([[r * c for c in class_counts] for r in rows], dtype=np.int64)
    alloc = num // total
    rem = num % total  # fractional part, times total
    row_need = [int(r) for r in (np.array(rows) - alloc.sum(axis=1))]
    col_need = [int(c) for c in (np.array(class_counts) - alloc.sum(axis=0))]
    up = np.zeros_like(alloc, dtype=bool)

    order = sorted(zip(*np.nonzero(rem)), key=lambda sc: (-rem[sc], sc[0], sc[1]))
    for s, c in order:
        if row_need[s] > 0 and col_need[c] > 0:
            up[s, c] = True
            row_need[s] -= 1
            col_need[c] -= 1

    # Augment: move a unit from row s along s -> c (not up) -> s' (up at c) -> ... -> c* with spare need.
    while any(n > 0 for n in row_need):
        start = next(s for s, n in enumerate(row_need) if n > 0)
        parent: dict[tuple[str, int], tuple[str, int] | None] = {("r", start): None}
        queue = [("r", start)]
        end = None
        while queue and end is None:
            kind, i = queue.pop(0)
            if kind == "r":
                for c in range(len(class_counts)):
                    if rem[i, c] and not up[i, c] and ("c", c) not in parent:
                        parent[("c", c)] = (kind, i)
                        if col_need[c] > 0:
                            end = ("c", c)
                            break
                        queue.append(("c", c))
            else:
                for s in range(len(rows)):
                    if up[s, i] and ("r", s) not in parent:
                        parent[("r", s)] = (kind, i)
                        queue.append(("r", s))
        if end is None:  # impossible by the rounding theorem; guard against an infinite loop
            raise AssertionError("stratified_split: no exact rounding found")
        col_need[end[1]] -= 1
        row_need[start] -= 1
        node: tuple[str, int] = end
        while parent[node] is not None:
            prev = parent[node]
            assert prev is not None
            if node[0] == "c":  # edge row prev -> column node: round it up
                up[prev[1], node[1]] = True
            else:  # edge column prev -> row node: undo its round-up
                up[node[1], prev[1]] = False
            node = prev
    return (alloc + up)[:-1]


def stratified_split(
    dataset: TextDataset, sizes: Mapping[str, int], *, seed: int,
    universe: Sequence[tuple[str, int]] | None = None, balanced: bool = False,
) -> dict[str, TextDataset]:
    """Disjoint splits of exact ``sizes`` whose class mix matches the full set (``balanced``: every
    class equally often in every split, the first classes taking one more when a size does not
    divide; the control for class imbalance).

    Deterministic in ``seed`` and the order of ``sizes``; each class count is
    within 1 of ``size * class_fraction``.  Examples not in any split are dropped.

    ``universe``: the (id, label) pairs of the whole corpus the dataset was loaded from, in a fixed
    order (default: the dataset itself). Each class's order is drawn over the universe, and an
    example missing from ``dataset`` (a record skipped on load) leaves a gap that the next example
    of its class fills: one skipped record moves at most one example of its class across each
    split boundary instead of reshuffling every split.
    """
    names = list(sizes)
    counts = [sizes[k] for k in names]
    for name, size in zip(names, counts):
        if not isinstance(name, str):
            raise TypeError(f"stratified_split: split names must be str, got {name!r}")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"stratified_split: sizes[{name!r}] must be an int, got {size!r}")
        if size < 0:
            raise UserError(f"stratified_split: sizes[{name!r}] must be >= 0, got {size}")
    counts = [int(c) for c in counts]
    if sum(counts) > len(dataset):
        raise UserError(
            f"stratified_split: sizes {dict(zip(names, counts))} sum to {sum(counts)}, "
            f"more than the {len(dataset)} examples in the dataset"
        )

    rng = np.random.default_rng(seed)
    if len(dataset) == 0:
        return {name: dataset.subset([]) for name in names}
    if universe is None:
        universe = list(zip(dataset.ids, dataset.labels.tolist()))
    universe_ids = [example_id for example_id, _ in universe]
    unknown = set(dataset.ids) - set(universe_ids)
    if unknown:
        raise UserError(f"stratified_split: {len(unknown)} ids are not in the universe, e.g. {sorted(unknown)[:3]}")
    position = {example_id: i for i, example_id in enumerate(dataset.ids)}
    universe_labels = np.array([label for _, label in universe], np.int64)
    per_class = []
    for c in range(len(dataset.class_names)):
        order = rng.permutation(np.flatnonzero(universe_labels == c))
        per_class.append(np.array([position[universe_ids[u]] for u in order if universe_ids[u] in position], np.int64))
    if balanced:
        classes = len(per_class)
        alloc = np.array([[size // classes + (c < size % classes) for c in range(classes)] for size in counts])
        short = [dataset.class_names[c] for c in range(classes) if alloc[:, c].sum() > len(per_class[c])]
        if short:
            raise UserError(f"stratified_split: balanced sizes {dict(zip(names, counts))} need "
                            f"{alloc.sum(0).tolist()} examples per class; too few of {short} "
                            f"(has {[len(p) for p in per_class]})")
    else:
        alloc = _round_allocation(counts, [len(p) for p in per_class])

    taken = [0] * len(per_class)
    out: dict[str, TextDataset] = {}
    for s, name in enumerate(names):
        parts = []
        for c, pool in enumerate(per_class):
            k = int(alloc[s, c])
            parts.append(pool[taken[c] : taken[c] + k])
            taken[c] += k
        idx = rng.permutation(np.concatenate(parts))
        out[name] = dataset.subset(idx)
    return out
