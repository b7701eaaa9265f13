"""gbair's entry point: parse gin files and bindings, then run the configured job in --workdir.

    python -m gbair.main --gin_file=configs/runs/train.gin --workdir=/tmp/run \
        [--gin_file=...] [--gin.NAME=VALUE ...] [--gin_bindings='NAME = VALUE']

`--gin.NAME=VALUE` is shorthand for `--gin_bindings='NAME = VALUE'` (as in T5X). Gin files are
looked up as given, then relative to the repository root, so `configs/...` works from anywhere.
"""

import os
import sys

from absl import app, flags, logging

from gbair import SettingError, config

flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.", required=True)
FLAGS = flags.FLAGS


def rewrite_gin_args(argv: list[str]) -> list[str]:
    """Turns `--gin.NAME=VALUE` into `--gin_bindings=NAME = VALUE`."""
    out = []
    for arg in argv:
        if arg.startswith("--gin.") and "=" in arg:
            name, value = arg[len("--gin."):].split("=", 1)
            arg = f"--gin_bindings={name} = {value}"
        out.append(arg)
    return out


def main(argv: list[str]) -> None:
    config.quiet_library_logs()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.gin_file:
        raise app.UsageError("give at least one --gin_file (e.g. configs/runs/train.gin)")
    try:
        files = config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    except FileNotFoundError as e:
        raise app.UsageError(str(e)) from e
    os.makedirs(FLAGS.workdir, exist_ok=True)
    config.record(FLAGS.workdir, files, FLAGS.gin_bindings)
    logging.info("gbair: workdir %s", os.path.abspath(FLAGS.workdir))
    try:
        config.execute(FLAGS.workdir)
    except (SettingError, FileNotFoundError) as e:  # the user's paths or settings: one line, no traceback
        sys.exit(f"gbair: error: {str(e).splitlines()[0]}")


def run() -> None:
    app.run(main, argv=rewrite_gin_args(sys.argv))


if __name__ == "__main__":
    run()
