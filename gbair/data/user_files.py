"""A person's own labelled file (JSONL or CSV) as a TextDataset, and the cleaned copy written back in
the same format with the same column names.

JSONL (`.jsonl`): one JSON object per line, blank lines skipped. CSV (`.csv`): a header row, then one
row per example. The text and label columns are named by the caller; the id column is optional (the
default id is the number of the line the example starts on, so "3" is the file's third line). A label
is matched as text against `class_names` (a JSON integer 1 matches the name "1"). Every mistake is one
UserError naming the file, the line and the column, raised before anything else runs.
"""

import csv
import dataclasses
import io
import json
import os
from typing import Any, Sequence

from gbair import UserError, files
from gbair.data.dataset import TextDataset

FORMATS = {".jsonl": "jsonl", ".csv": "csv"}


@dataclasses.dataclass(frozen=True)
class LabelledFile:
    """The examples of one file as read, and what writing a cleaned copy needs (format, columns, lines)."""

    name: str  # the file as the user gave it (or "the embedded corpus")
    format: str  # "jsonl" | "csv"
    fields: tuple[str, ...]  # CSV: the header's columns, in order
    records: tuple[dict[str, Any], ...]  # one per example, in file order, as read
    lines: tuple[str, ...]  # JSONL: each record's line as read (written back unchanged unless relabelled)
    label_column: str
    dataset: TextDataset  # ids, texts and labels of `records`

    @property
    def suffix(self) -> str:
        return "." + self.format


def read_labelled_file(location: files.Location, *, text_column: str, label_column: str,
                       class_names: Sequence[str], id_column: str | None = None) -> LabelledFile:
    """Reads and checks a whole JSONL or CSV file (see the module docstring)."""
    name = os.fspath(location)
    kind = FORMATS.get(os.path.splitext(name)[1].lower())
    if kind is None:
        raise UserError(f"{name}: unknown file type; expected a name ending in {' or '.join(FORMATS)}")
    try:
        text = files.path(location).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{name}: not UTF-8 text ({e})") from e
    rows, fields = (_jsonl_rows if kind == "jsonl" else _csv_rows)(name, text)
    if not rows:
        raise UserError(f"{name}: no examples (the file is empty); expected "
                        f"{'one JSON object per line' if kind == 'jsonl' else 'a header row and one row per example'}"
                        f" with columns {text_column!r} and {label_column!r}")
    ids, texts, labels, first_line = [], [], [], {}
    for line, record, _ in rows:
        where = f"{name}: line {line}"
        for column in (text_column, label_column) + ((id_column,) if id_column else ()):
            if record.get(column) is None:
                raise UserError(f"{where}: no column {column!r} (it has {sorted(k for k in record if k)}); "
                                f"expected the {_role(column, text_column, label_column)} there")
        if not isinstance(record[text_column], str):
            raise UserError(f"{where}, column {text_column!r}: {record[text_column]!r} is not text")
        label = _label_text(record[label_column])
        if label not in class_names:
            raise UserError(f"{where}, column {label_column!r}: label {record[label_column]!r} is not one of "
                            f"CLASS_NAMES {list(class_names)}")
        example_id = str(line) if id_column is None else _id_text(record[id_column], f"{where}, column {id_column!r}")
        if example_id in first_line:
            raise UserError(f"{where}, column {id_column!r}: id {example_id!r} is also on line "
                            f"{first_line[example_id]}; expected unique ids")
        first_line[example_id] = line
        ids.append(example_id)
        texts.append(record[text_column])
        labels.append(list(class_names).index(label))
    dataset = TextDataset(tuple(ids), tuple(texts), labels, ("user",) * len(ids), tuple(class_names))
    return LabelledFile(name, kind, fields, tuple(r for _, r, _ in rows), tuple(t for _, _, t in rows),
                        label_column, dataset)


def from_dataset(dataset: TextDataset, name: str) -> LabelledFile:
    """A dataset that has no file of its own (the embedded corpus) as JSONL records {id, text, label}."""
    records = tuple({"id": i, "text": t, "label": dataset.class_names[y]}
                    for i, t, y in zip(dataset.ids, dataset.texts, dataset.labels))
    return LabelledFile(name, "jsonl", ("id", "text", "label"), records,
                        tuple(json.dumps(r, ensure_ascii=False) for r in records), "label", dataset)


def cleaned_text(source: LabelledFile, cleaned: TextDataset) -> str:
    """`source` as it was, minus the examples not in `cleaned` and with `cleaned`'s labels where they
    differ, in the same format and columns (unchanged JSONL lines are copied as they were)."""
    label_of = dict(zip(cleaned.ids, cleaned.labels.tolist()))
    given = dict(zip(source.dataset.ids, source.dataset.labels.tolist()))
    out = io.StringIO()
    writer = csv.DictWriter(out, source.fields, lineterminator="\n") if source.format == "csv" else None
    if writer:
        writer.writeheader()
    for example_id, record, line in zip(source.dataset.ids, source.records, source.lines):
        if example_id not in label_of:
            continue
        if label_of[example_id] != given[example_id]:
            record = {**record, source.label_column: _like(record[source.label_column],
                                                           cleaned.class_names[label_of[example_id]])}
            line = json.dumps(record, ensure_ascii=False)
        if writer:
            writer.writerow(record)
        else:
            out.write(line + "\n")
    return out.getvalue()


def _jsonl_rows(name: str, text: str) -> tuple[list[tuple[int, dict, str]], tuple[str, ...]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise UserError(f"{name}: line {number}: not JSON ({e})") from e
        if not isinstance(record, dict):
            raise UserError(f"{name}: line {number}: expected a JSON object {{...}}, got {type(record).__name__}")
        rows.append((number, record, line))
    return rows, ()


def _csv_rows(name: str, text: str) -> tuple[list[tuple[int, dict, str]], tuple[str, ...]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fields = tuple(reader.fieldnames or ())
        rows, start = [], reader.line_num + 1
        for record in reader:
            rows.append((start, {k: v for k, v in record.items() if k is not None}, ""))
            start = reader.line_num + 1
    except csv.Error as e:
        raise UserError(f"{name}: line {reader.line_num}: not CSV ({e})") from e
    return rows, fields


def _role(column: str, text_column: str, label_column: str) -> str:
    return {text_column: "text (TEXT_COLUMN)", label_column: "label (LABEL_COLUMN)"}.get(column, "id (ID_COLUMN)")


def _label_text(value: Any) -> str | None:
    """A label as text: strings as they are, JSON integers as digits; anything else matches no class."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _id_text(value: Any, where: str) -> str:
    text = _label_text(value)
    if not text:
        raise UserError(f"{where}: id {value!r}, expected a non-empty string or integer")
    return text


def _like(original: Any, name: str) -> Any:
    """A new label written as the old one was: a JSON integer stays an integer."""
    return int(name) if isinstance(original, int) and name.lstrip("-").isdigit() else name
