"""gbair's entry point: parse gin files and bindings, then run the configured job in --workdir.

    python -m gbair.main --gin_file=configs/runs/train.gin --workdir=/tmp/run \
        [--gin_file=...] [--gin.NAME=VALUE ...] [--gin_bindings='NAME = VALUE'] [--debug]
    python -m gbair.main --gin_file=configs/experiments/paper_bad.gin --print_config  # settings only

`--gin.NAME=VALUE` is shorthand for `--gin_bindings='NAME = VALUE'` (as in T5X). Gin files are
looked up as given, then relative to the repository root, so `configs/...` works from anywhere.
The job records the operative gin config it ran with (WORKDIR/config.gin, as T5X does) and the gin
files and bindings (WORKDIR/gin_config.json) once it has validated its settings.
One process at a time runs in a workdir (gbair.lock: a second one stops at once, naming the first).
--workdir may be local or an object-store URL (gs://bucket/run; see gbair.files).

Several hosts (docs/accelerators.md): run the same command on every host. On Cloud
TPU VMs JAX finds the other hosts itself; elsewhere give --coordinator_address=HOST:PORT (process 0's),
--num_processes and --process_id. Every process computes; process 0 writes (gbair.hosts).
"""

import os
import sys

from absl import flags, logging

from gbair import UsageError, cli, config, files, hosts, lock

flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, applied after the files.")
flags.DEFINE_string("workdir", None, "Directory (or gs:// URL) for checkpoints, metrics and results.")
flags.DEFINE_bool("print_config", False, "Print the effective TrainConfig and RecoveryConfig and the gin "
                  "bindings, then exit without running anything (no --workdir needed).")
flags.DEFINE_bool("distributed", None, "Join the other processes of a multi-host run (jax.distributed); "
                  "default: on when --coordinator_address is given or on a Cloud TPU VM.")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 for jax.distributed (not on Cloud TPU).")
flags.DEFINE_integer("num_processes", None, "How many processes the run has (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes - 1 (with --coordinator_address).")
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
    if not FLAGS.gin_file:
        raise UsageError("give at least one --gin_file (e.g. configs/runs/train.gin)")
    if FLAGS.print_config:
        config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
        config.check_settings()
        print(config.effective_settings())
        return
    if FLAGS.workdir is None:
        raise UsageError("flag --workdir must have a value (or give --print_config to only print the settings)")
    hosts.initialize(FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    command = config.parse(FLAGS.gin_file, FLAGS.gin_bindings)
    config.check_settings()  # before the job loads any data
    workdir = files.path(FLAGS.workdir)
    if hosts.is_writer():
        workdir.mkdir(parents=True, exist_ok=True)
    logging.info("gbair: workdir %s", workdir)
    with lock.hold(workdir):  # before the job builds its model and data: a second process stops at once
        config.execute(os.fspath(workdir), command)


def run() -> None:
    cli.run(main, rewrite_gin_args(sys.argv))


if __name__ == "__main__":
    run()
