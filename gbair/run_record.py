"""WORKDIR/gin_config.json: the gin files and bindings a job's results came from.

The entry point `remember`s what it parsed; the job `record`s it once it has validated its settings
(and its workdir), so a rerun that fails validation never overwrites the record of a good run.
`gbair.explain` reads it back (`recorded`) to rebuild the run's model and data.
"""

import json
import os
import pathlib

from gbair import UserError, atomic

GIN_RECORD = "gin_config.json"
_parsed: dict[str, list[str]] = {"gin_files": [], "gin_bindings": []}


def remember(files: list[str], bindings: list[str]) -> None:
    _parsed.update(gin_files=list(files), gin_bindings=list(bindings))


def record(workdir: str | os.PathLike) -> None:
    atomic.write_json(pathlib.Path(workdir) / GIN_RECORD, _parsed)


def recorded(workdir: str | os.PathLike) -> dict[str, list[str]]:
    path = pathlib.Path(workdir) / GIN_RECORD
    if not path.exists():
        raise UserError(f"{path} is missing: is {workdir} a gbair.main workdir?")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path}: not readable JSON ({e})") from e
