"""gbair: G-BAIR (gradient-based automated iterative recovery) for prompt tuning, in JAX/Flax."""


class UserError(ValueError):
    """The user's input (a setting, flag, file or workdir) is wrong or does not fit; the message names
    it and what was expected. The entry points print it as `gbair: error: <first line>`."""


class UsageError(UserError):
    """A wrong command line (flags, gin files or bindings): the entry points exit with status 2."""


def __getattr__(name: str):
    """`gbair.find_label_issues` (gbair.recovery.cleaning), imported on first use: every gbair module
    imports this package for UserError, so the package imports none of them back when it loads."""
    if name == "find_label_issues":
        from gbair.recovery.cleaning import find_label_issues  # pylint: disable=import-outside-toplevel
        return find_label_issues
    raise AttributeError(f"module 'gbair' has no attribute {name!r}")
