"""Gin set-up shared by the entry points: what gin may name (`CONFIGURABLES`), where configs live,
parsing, early checks, running the configured job.

`parse` returns what it parsed (a gbair.run_record.Command); `execute` hands it to the job, which
records it, with the operative config, in WORKDIR/config.gin and WORKDIR/gin_config.json once it has
validated it (gbair.run_record), so tools such as
`python -m gbair.explain` can rebuild the same model and data (`parse_recorded`).
"""

import ast
import dataclasses
import os
import pathlib
import re
import tokenize
from typing import Callable, Sequence

import gin

from gbair import UsageError, UserError, classifiers, run_record
from gbair.data import seqio_tasks, tasks
from gbair.models import t5
from gbair.recovery import experiment
from gbair.train import trainer

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# Everything a gin file may name is registered here, before any parsing, under the names the configs
# use (as t5x keeps gin at its top): the modules that define these import no gin, and each one's
# docstring shows its bindings. The jobs (gbair.jobs, which the run files import) register themselves.
CONFIGURABLES = (classifiers.minilm_classifier, classifiers.t5_1_1_classifier, tasks.spam_assassin_splits,
                 seqio_tasks.seqio_splits, seqio_tasks.parlai_safety_splits, seqio_tasks.bad_splits,
                 seqio_tasks.civil_comments_splits, seqio_tasks.wikipedia_toxicity_splits,
                 trainer.TrainConfig, experiment.RecoveryConfig, experiment.Experiment)
for _configurable in CONFIGURABLES:
    gin.configurable(_configurable)  # a class in place (its direct calls read the bindings too), a function wrapped
gin.external_configurable(t5.T5Config)  # custom (e.g. tiny test) sizes: t5_1_1_classifier.size = @T5Config()


@gin.configurable
def execute(workdir: str, command: run_record.Command,
            job: Callable[[str, run_record.Command], object] = gin.REQUIRED) -> object:
    """Runs `job(workdir, command)`; a gin run file chooses the job (`execute.job = @train_and_evaluate`);
    `command` is what `parse` parsed, for the job's record."""
    try:
        return job(workdir, command)
    except RuntimeError as e:  # gin's way of saying a gin.REQUIRED setting was not given
        if str(e).startswith("Required bindings"):
            raise UserError(str(e)) from e
        raise
    except TypeError as e:  # a configurable called without a required argument that no binding gave
        unbound = re.search(r"No values supplied by Gin or caller for arguments: (\[.*\])", str(e))
        called = re.search(r"In call to configurable '([^']+)'", str(e))
        if unbound and called:  # gin's wording for a gin.REQUIRED argument, the arguments sorted
            raise UserError(f"Required bindings for `{called.group(1)}` not provided in config: "
                            f"{sorted(ast.literal_eval(unbound.group(1)))}") from e
        raise


def check_settings() -> None:
    """Checks, right after parsing, the settings that need no data (strategy names, rates, seeds, the
    TrainConfig and RecoveryConfig fields): a typo fails at once, not after the job has loaded its data.
    The job checks them again when it builds them; unbound settings keep their defaults."""
    from gbair.recovery import cleaning  # pylint: disable=import-outside-toplevel

    experiment.check_grid(*(_bound(f"Experiment.{name}") for name in ("strategy_names", "corruption_rates", "seeds")))
    strategy = _bound("clean.strategy")
    if isinstance(strategy, str):
        cleaning.check_strategy_name(strategy)
    trainer.TrainConfig()
    experiment.RecoveryConfig()


def _bound(name: str) -> object:
    """The value gin binds to `name` (a macro followed to its value), or None when it is unbound or is
    something only the job can evaluate (a @reference)."""
    try:
        value = gin.query_parameter(name)
        while isinstance(value, gin.config.ConfigurableReference) and value.config_key[1] == "gin.macro":
            value = gin.query_parameter(f"%{value.config_key[0]}")
    except ValueError:
        return None
    return None if isinstance(value, gin.config.ConfigurableReference) else value


def find_gin_file(name: str) -> str:
    for candidate in (pathlib.Path(name), REPO_ROOT / name):
        if candidate.is_file():
            return str(candidate.absolute())
    raise UsageError(f"--gin_file={name}: no such file (looked in . and {REPO_ROOT})")


def parse(files: Sequence[str], bindings: Sequence[str]) -> run_record.Command:
    """Parses gin files (found as given or under the repository root) and bindings; returns them, the
    files as found.

    UsageError (one line) for a missing file, an unknown name or a syntax error in a file or binding."""
    gin.clear_config()
    gin.add_config_file_search_path(str(REPO_ROOT))
    found = [find_gin_file(f) for f in files]
    try:
        gin.parse_config_files_and_bindings(found, bindings)
    except (SyntaxError, tokenize.TokenError) as e:
        raise UsageError(_parse_error(e)) from e
    except (ValueError, OSError) as e:
        raise UsageError(f"gin config: {(str(e).strip().splitlines() or [type(e).__name__])[0]}") from e
    return run_record.Command(tuple(found), tuple(bindings))


def _parse_error(e: SyntaxError | tokenize.TokenError) -> str:
    """One line for gin's parse errors: args = (message, Location(filename, line_num, char_num, line_content))."""
    message = str(e.args[0]) if e.args else type(e).__name__
    location = e.args[1] if len(e.args) > 1 else None
    where, content = getattr(location, "filename", None), getattr(location, "line_content", None)
    place = f" {where}:{location.line_num}" if where else f" the binding {content.strip()!r}" if content else ""
    token = re.search(r"Failed to parse token '([^']*)'", message)
    if token:  # ast.literal_eval refused a name, call or operator: say so, not its `<ast.Name object>` repr
        reason = (f"{token.group(1)!r} is not a value: gin takes Python literals (numbers, 'quoted strings', lists, "
                  f"dicts, None, True, False), @configurables and %MACROS, and evaluates no expression or call")
    else:
        reason = f"{message.splitlines()[0].rstrip('.')}; check the brackets and quotes"
    return f"gin config: cannot parse{place} ({reason})"


def parse_recorded(workdir: str | os.PathLike) -> None:
    """Parses the gin config a run in `workdir` ran with: its operative config (WORKDIR/config.gin), so
    neither editing nor moving its gin files changes what is rebuilt; for a workdir made before
    config.gin, its recorded gin files and bindings (WORKDIR/gin_config.json)."""
    operative = run_record.operative(workdir)
    if operative is None:
        recorded = run_record.recorded(workdir)
        parse(recorded["gin_files"], recorded["gin_bindings"])
        return
    gin.clear_config()
    try:
        gin.parse_config(operative)
    except (SyntaxError, tokenize.TokenError, ValueError, ImportError) as e:
        where = f"{workdir}/{run_record.OPERATIVE_CONFIG}"
        message = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{where}: cannot parse ({message}); it is the run's operative gin config, written by "
                        f"gbair.main: restore it, or delete it to rebuild from {run_record.GIN_RECORD}") from e


def effective_settings() -> str:
    """What the parsed config trains and cleans with, without running anything: every TrainConfig and
    RecoveryConfig field (the defaults, then the gin files and bindings in order) as gin bindings, then
    everything the gin files and bindings set (`gin.config_str()`). (`parse` already refused a
    `%gin.REQUIRED` macro, e.g. TRAIN_STEPS, that nothing set.)"""
    lines = ["# Effective TrainConfig and RecoveryConfig (defaults, then the gin files and bindings in order):"]
    for built in (trainer.TrainConfig(), experiment.RecoveryConfig()):
        lines += [f"{type(built).__name__}.{field.name} = {getattr(built, field.name)!r}"
                  for field in dataclasses.fields(built)]
    return "\n".join(lines + ["", "# Everything the gin files and bindings set (gin.config_str()):",
                              gin.config_str()])
