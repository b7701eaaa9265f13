"""gbair: G-BAIR (gradient-based automated iterative recovery) for prompt tuning, in JAX/Flax."""


class UserError(ValueError):
    """The user's input (a setting, flag, file or workdir) is wrong or does not fit; the message names
    it and what was expected. The entry points print it as `gbair: error: <first line>`."""


class UsageError(UserError):
    """A wrong command line (flags, gin files or bindings): the entry points exit with status 2."""
