"""gbair's entry point: parse gin files and bindings, then run the configured job in --workdir.

    python -m gbair.main --gin_file=configs/runs/train.gin --workdir=/tmp/run \
        [--gin_file=...] [--gin.NAME=VALUE ...] [--gin_bindings='NAME = VALUE'] [--debug]

`--gin.NAME=VALUE` is shorthand for `--gin_bindings='NAME = VALUE'` (as in T5X). Gin files are
looked up as given, then relative to the repository root, so `configs/...` works from anywhere.
The job records the gin config it ran with (WORKDIR/gin_config.json) once it has validated it.
"""

import os
import sys

from absl import flags, logging

from gbair import UsageError, cli, config

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
    del argv  # cli.run refuses positional arguments
    config.quiet_library_logs()
    if not FLAGS.gin_file:
        raise UsageError("give at least one --gin_file (e.g. configs/runs/train.gin)")
    config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    logging.info("gbair: workdir %s", os.path.abspath(FLAGS.workdir))
    config.execute(FLAGS.workdir)


def run() -> None:
    cli.run(main, rewrite_gin_args(sys.argv))


if __name__ == "__main__":
    run()
