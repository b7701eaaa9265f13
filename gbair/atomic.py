"""Atomic file writes: write a sibling temp file, then rename, so readers never see half a file.

A process killed mid-write leaves its temp file (`.NAME.XXXX.tmp`) behind; `remove_orphans` deletes
them when the next run starts in that directory.
"""

import io
import json
import os
import pathlib
import tempfile
from typing import Any

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes(path: os.PathLike, data: bytes) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions of a new file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def remove_orphans(directory: os.PathLike) -> list[pathlib.Path]:
    """Deletes the temp files of interrupted writes under `directory` (call before any writer runs)."""
    orphans = [p for p in pathlib.Path(directory).rglob(".*.tmp") if p.is_file()]
    for path in orphans:
        path.unlink()
    return orphans


def write_text(path: os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npy(path: os.PathLike, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_bytes(path, buffer.getvalue())
