"""What every entry point shares: absl flags (`--workdir=...`, as gbair.main), the user's mistakes as
one line, tracebacks behind --debug (listed in each entry point's --helpshort).

Exit status: 2 for a wrong command line (flags, gin files, bindings), 1 for any other error of the
user's (`gbair.UserError`, a missing file), a traceback for anything else (a bug: please report it).
"""

import logging as std_logging
import os
import sys
from typing import Callable, NoReturn

from absl import app, flags, logging

from gbair import UsageError, UserError

flags.DEFINE_bool("debug", False, "Show the full traceback of an error instead of one line.")
FLAGS = flags.FLAGS


def fail(message: str, status: int) -> NoReturn:
    first_line = (str(message).strip().splitlines() or ["(no message)"])[0]
    print(f"gbair: error: {first_line}", file=sys.stderr)
    sys.exit(status)


def _parse_flags(argv: list[str]) -> list[str]:
    try:
        return FLAGS(argv)
    except flags.Error as e:
        fail(f"{e} (see --helpshort)", 2)


def quiet_library_logs() -> None:
    """Orbax and JAX log every checkpoint write (and JAX each backend it does not find) at INFO; keep
    INFO for gbair's own progress only."""
    gbair_dir = os.path.dirname(os.path.abspath(__file__))
    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= std_logging.WARNING or record.pathname.startswith(gbair_dir))


def define_workdir(help_text: str) -> None:
    """The required --workdir of a tool that reads one (call it under `if __name__ == "__main__"`: the
    sweep imports these tools inside gbair.main, which has its own --workdir)."""
    flags.DEFINE_string("workdir", None, help_text, required=True)
    FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS["workdir"])


def run(main: Callable[[list[str]], None], argv: list[str]) -> None:
    """absl's app.run(main), with flag errors and the user's errors as one line each."""
    FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS["debug"])  # --helpshort lists the main module's flags

    def guarded(args: list[str]) -> None:
        if len(args) > 1:
            fail(f"unexpected arguments: {args[1:]}", 2)
        quiet_library_logs()
        try:
            main(args)
        except (UserError, FileNotFoundError) as e:
            if FLAGS.debug:
                raise
            fail(str(e), 2 if isinstance(e, UsageError) else 1)

    app.run(guarded, argv=argv, flags_parser=_parse_flags)
