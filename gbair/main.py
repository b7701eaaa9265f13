"""gbair's entry point: parse gin files and bindings, then run the configured job in --workdir.

    python -m gbair.main --gin_file=configs/runs/train.gin --workdir=/tmp/run \
        [--gin_file=...] [--gin.NAME=VALUE ...] [--gin_bindings='NAME = VALUE']

`--gin.NAME=VALUE` is shorthand for `--gin_bindings='NAME = VALUE'` (as in T5X). Gin files are
looked up as given, then relative to the repository root, so `configs/...` works from anywhere.
"""

import logging as std_logging
import os
import pathlib
import sys
from typing import Callable

import gin
from absl import app, flags, logging

# Everything a gin file may reference must be imported (registered) before parsing.
import gbair.data.tasks  # noqa: F401  pylint: disable=unused-import
import gbair.models.classifier  # noqa: F401  pylint: disable=unused-import
import gbair.train.trainer  # noqa: F401  pylint: disable=unused-import

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.", required=True)
FLAGS = flags.FLAGS


@gin.configurable
def execute(workdir: str, job: Callable[[str], object] = gin.REQUIRED) -> object:
    """Runs `job(workdir)`; a gin run file chooses the job (`execute.job = @train_and_evaluate`)."""
    return job(workdir)


def rewrite_gin_args(argv: list[str]) -> list[str]:
    """Turns `--gin.NAME=VALUE` into `--gin_bindings=NAME = VALUE`."""
    out = []
    for arg in argv:
        if arg.startswith("--gin.") and "=" in arg:
            name, value = arg[len("--gin."):].split("=", 1)
            arg = f"--gin_bindings={name} = {value}"
        out.append(arg)
    return out


def find_gin_file(name: str) -> str:
    for candidate in (pathlib.Path(name), REPO_ROOT / name):
        if candidate.is_file():
            return str(candidate)
    raise app.UsageError(f"--gin_file={name}: no such file (looked in . and {REPO_ROOT})")


def quiet_library_logs() -> None:
    """Orbax and JAX log every checkpoint write at INFO; keep INFO for gbair's own progress only."""
    gbair_dir = str(REPO_ROOT / "gbair")
    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= std_logging.WARNING or record.pathname.startswith(gbair_dir))


def main(argv: list[str]) -> None:
    quiet_library_logs()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.gin_file:
        raise app.UsageError("give at least one --gin_file (e.g. configs/runs/train.gin)")
    gin.add_config_file_search_path(str(REPO_ROOT))
    gin.parse_config_files_and_bindings([find_gin_file(f) for f in FLAGS.gin_file], FLAGS.gin_bindings)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    logging.info("gbair: workdir %s", os.path.abspath(FLAGS.workdir))
    execute(FLAGS.workdir)


def run() -> None:
    app.run(main, argv=rewrite_gin_args(sys.argv))


if __name__ == "__main__":
    run()
