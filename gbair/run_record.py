"""What a job's results came from, in its workdir: the operative gin config, the command's gin files
and bindings, and the gbair source they ran.

- WORKDIR/config.gin: the operative config (`gin.operative_config_str()`: every setting of every
  configurable the run called, defaults included), T5X's name and content. Complete on its own, so a
  run rebuilds from it however its gin files were edited or moved since.
- WORKDIR/gin_config.json: the gin files and bindings of the command (what was typed; workdirs made
  before config.gin existed rebuild from these) and `source` (`source_version`: the git commit of the
  checkout, and whether it had local changes).

The entry point parses the command (gbair.config.parse returns it, a `Command`) and hands it to the job,
which `record`s both once it has validated its settings (and its workdir), so a rerun that fails
validation never overwrites the record of a good run.
`gbair.config.parse_recorded` reads them back (`operative` first, else `recorded`).
"""

import dataclasses
import os
import pathlib
import subprocess
from typing import Sequence

import gin

from gbair import UserError, files

GIN_RECORD = "gin_config.json"
OPERATIVE_CONFIG = "config.gin"


@dataclasses.dataclass(frozen=True)
class Command:
    """The gin files (as found) and bindings a command parsed: what was typed. Empty for a job called
    from Python, whose settings config.gin alone records."""

    gin_files: Sequence[str] = ()
    gin_bindings: Sequence[str] = ()


def record(workdir: str | os.PathLike, command: Command) -> None:
    """Writes config.gin (the operative config so far: call this once the job has built its parts)
    and gin_config.json (`command` and the source)."""
    files.write_text(files.path(workdir) / OPERATIVE_CONFIG, gin.operative_config_str())
    files.write_json(files.path(workdir) / GIN_RECORD, {"gin_files": list(command.gin_files),
                                                        "gin_bindings": list(command.gin_bindings),
                                                        "source": source_version()})


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


def operative(workdir: str | os.PathLike) -> str | None:
    """The text of WORKDIR/config.gin, or None for a workdir made before gbair wrote it."""
    path = files.path(workdir) / OPERATIVE_CONFIG
    return path.read_text() if path.exists() else None


def recorded(workdir: str | os.PathLike) -> dict[str, list[str]]:
    record = files.read_json(files.path(workdir) / GIN_RECORD)
    if record is None:
        raise UserError(f"{files.path(workdir) / GIN_RECORD} is missing: is {workdir} a gbair.main workdir?")
    return record
