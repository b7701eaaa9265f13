"""WORKDIR/gin_config.json: the gin files and bindings a job's results came from.

The entry point `remember`s what it parsed; the job `record`s it once it has validated its settings
(and its workdir), so a rerun that fails validation never overwrites the record of a good run.
`gbair.explain` reads it back (`recorded`) to rebuild the run's model and data.
"""

import os

from gbair import UserError, files

GIN_RECORD = "gin_config.json"
_parsed: dict[str, list[str]] = {"gin_files": [], "gin_bindings": []}


def remember(gin_files: list[str], bindings: list[str]) -> None:
    _parsed.update(gin_files=list(gin_files), gin_bindings=list(bindings))


def record(workdir: str | os.PathLike) -> None:
    files.write_json(files.path(workdir) / GIN_RECORD, _parsed)


def recorded(workdir: str | os.PathLike) -> dict[str, list[str]]:
    record = files.read_json(files.path(workdir) / GIN_RECORD)
    if record is None:
        raise UserError(f"{files.path(workdir) / GIN_RECORD} is missing: is {workdir} a gbair.main workdir?")
    return record
