"""WORKDIR/gin_config.json: the gin files and bindings a job's results came from, and the gbair
source they ran (`source_version`: the git commit of the checkout, and whether it had local changes).

The entry point `remember`s what it parsed; the job `record`s it once it has validated its settings
(and its workdir), so a rerun that fails validation never overwrites the record of a good run.
`gbair.explain` reads it back (`recorded`) to rebuild the run's model and data.
"""

import os
import pathlib
import subprocess

from gbair import UserError, files

GIN_RECORD = "gin_config.json"
_parsed: dict[str, list[str]] = {"gin_files": [], "gin_bindings": []}


def remember(gin_files: list[str], bindings: list[str]) -> None:
    _parsed.update(gin_files=list(gin_files), gin_bindings=list(bindings))


def record(workdir: str | os.PathLike) -> None:
    files.write_json(files.path(workdir) / GIN_RECORD, {**_parsed, "source": source_version()})


def source_version() -> dict[str, str | bool | None]:
    """{"git_commit", "local_changes"} of the checkout gbair is imported from (None outside git), so a
    workdir says which code made it even while the clone moves on."""
    root = pathlib.Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", "gbair", "configs", "setup.py")
    return {"git_commit": commit, "local_changes": None if commit is None else bool(status)}


def recorded(workdir: str | os.PathLike) -> dict[str, list[str]]:
    record = files.read_json(files.path(workdir) / GIN_RECORD)
    if record is None:
        raise UserError(f"{files.path(workdir) / GIN_RECORD} is missing: is {workdir} a gbair.main workdir?")
    return record
