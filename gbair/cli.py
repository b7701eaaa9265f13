"""What both entry points share: the user's mistakes print as one line, tracebacks hide behind --debug.

Exit status: 2 for a wrong command line (flags, gin files, bindings), 1 for any other error of the
user's (`gbair.UserError`, a missing file), a traceback for anything else (a bug: please report it).
"""

import sys
from typing import Callable, NoReturn

from absl import app, flags

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


def run(main: Callable[[list[str]], None], argv: list[str]) -> None:
    """absl's app.run(main), with flag errors and the user's errors as one line each."""

    def guarded(args: list[str]) -> None:
        if len(args) > 1:
            fail(f"unexpected arguments: {args[1:]}", 2)
        try:
            main(args)
        except (UserError, FileNotFoundError) as e:
            if FLAGS.debug:
                raise
            fail(str(e), 2 if isinstance(e, UsageError) else 1)

    app.run(guarded, argv=argv, flags_parser=_parse_flags)
