"""Gin set-up shared by the entry points: where configs live, how a run records its config, logging.

A run writes WORKDIR/gin_config.json (its gin files and bindings) so that tools such as
`python -m gbair.explain` can rebuild the same model and data later.
"""

import json
import logging as std_logging
import os
import pathlib
from typing import Callable, Sequence

import gin
from absl import logging

from gbair import atomic

# Everything a gin file may reference must be imported (registered) before parsing.
import gbair.data.tasks  # noqa: F401,E402  pylint: disable=unused-import,wrong-import-position
import gbair.models.classifier  # noqa: F401,E402  pylint: disable=unused-import,wrong-import-position
import gbair.train.trainer  # noqa: F401,E402  pylint: disable=unused-import,wrong-import-position

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
GIN_RECORD = "gin_config.json"


@gin.configurable
def execute(workdir: str, job: Callable[[str], object] = gin.REQUIRED) -> object:
    """Runs `job(workdir)`; a gin run file chooses the job (`execute.job = @train_and_evaluate`)."""
    return job(workdir)


def find_gin_file(name: str) -> str:
    for candidate in (pathlib.Path(name), REPO_ROOT / name):
        if candidate.is_file():
            return str(candidate.absolute())
    raise FileNotFoundError(f"--gin_file={name}: no such file (looked in . and {REPO_ROOT})")


def parse(files: Sequence[str], bindings: Sequence[str]) -> list[str]:
    """Parses gin files (found as given or under the repository root) and bindings; returns the files."""
    gin.clear_config()
    gin.add_config_file_search_path(str(REPO_ROOT))
    found = [find_gin_file(f) for f in files]
    gin.parse_config_files_and_bindings(found, bindings)
    return found


def record(workdir: str | os.PathLike, files: Sequence[str], bindings: Sequence[str]) -> None:
    atomic.write_json(pathlib.Path(workdir) / GIN_RECORD, {"gin_files": list(files), "gin_bindings": list(bindings)})


def parse_recorded(workdir: str | os.PathLike) -> None:
    """Parses the gin config a run in `workdir` was started with."""
    path = pathlib.Path(workdir) / GIN_RECORD
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: is {workdir} a gbair.main workdir?")
    recorded = json.loads(path.read_text())
    parse(recorded["gin_files"], recorded["gin_bindings"])


def quiet_library_logs() -> None:
    """Orbax and JAX log every checkpoint write at INFO; keep INFO for gbair's own progress only."""
    gbair_dir = str(REPO_ROOT / "gbair")
    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= std_logging.WARNING or record.pathname.startswith(gbair_dir))
