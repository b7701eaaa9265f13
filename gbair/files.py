"""Workdir files, on a local disk or an object store (gs://...), through one path layer (etils.epath).

- `path`: a local path, a `file://` URL of one, or an object-store URL such as `gs://bucket/run`
  (anything etils.epath takes; Orbax and TensorStore take the same for checkpoints).
- Writes are atomic and made by process 0 alone (gbair.hosts: the other processes compute the
  same and write nothing). Local and network disks: a sibling temp file, fsync, then rename, so
  readers never see half a file; a process killed mid-write leaves its temp file (`.NAME.XXXX.tmp`),
  which `remove_orphans` deletes when the next run starts. Object stores: one upload, which the store
  publishes whole (readers see the old object or the new one, never part), so no temp object is made.
- `read_json`: a file as process 0 reads it, the same on every process, for decisions that must agree.
"""

import io
import json
import os
import pathlib
import tempfile
from typing import Any

import numpy as np
from etils import epath

from gbair import UserError, hosts

Location = str | os.PathLike

_UMASK = os.umask(0)
os.umask(_UMASK)


def path(location: Location) -> epath.Path:
    """`location` as an epath.Path: object-store URLs as they are, local paths made absolute."""
    text = os.fspath(location)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return epath.Path(text if is_remote(text) else os.path.abspath(text))


def is_remote(location: Location) -> bool:
    return "://" in os.fspath(location)


def write_bytes(location: Location, data: bytes) -> None:
    if not hosts.is_writer():
        return
    target = path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(target):
        target.write_bytes(data)
        return
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions of a new file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def write_text(location: Location, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def write_json(location: Location, obj: Any) -> None:
    write_text(location, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npy(location: Location, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_bytes(location, buffer.getvalue())


def read_json(location: Location) -> Any:
    """The JSON in `location` (None if there is no such file), as process 0 reads it."""
    def read() -> Any:
        source = path(location)
        if not source.exists():
            return None
        try:
            return json.loads(source.read_text())
        except ValueError as e:
            raise UserError(f"{source}: not readable JSON ({e}); delete it to redo that work") from e

    return hosts.agree(read)


def remove_orphans(directory: Location) -> list[pathlib.Path]:
    """Deletes the temp files of interrupted writes under a local `directory` (call before any writer runs)."""
    if not hosts.is_writer() or is_remote(directory):
        return []
    orphans = [p for p in pathlib.Path(path(directory)).rglob(".*.tmp") if p.is_file()]
    for orphan in orphans:
        orphan.unlink()
    return orphans
