"""The recipe every experiment file runs: its effective TrainConfig and RecoveryConfig equal docs/paper.md's
recipe table (one source for both), Adafactor's fixed settings are T5X's update rule, and
`--print_config` shows the effective settings without running anything."""

import ast
import dataclasses
import pathlib
import subprocess
import sys

import gin
import jax.numpy as jnp
import numpy as np
import pytest

from gbair import config
from gbair.recovery.experiment import RecoveryConfig
from gbair.train import trainer

REPO = pathlib.Path(__file__).resolve().parent.parent
TABLE_HEADING = "### The recipe each experiment runs"


def recipe_table() -> dict[str, dict[str, object]]:
    """docs/paper.md's recipe tables (every table of its recipe section) as {experiment file stem:
    {"TrainConfig.field": value}}; in each table the first column names the setting, the last is a note."""
    text = (REPO / "docs" / "paper.md").read_text()
    assert TABLE_HEADING in text, f"docs/paper.md has no {TABLE_HEADING!r} section"
    section = text.split(TABLE_HEADING, 1)[1].split("\n#", 1)[0]
    tables, rows = [], []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            tables, rows = tables + [rows], []
    table: dict[str, dict[str, object]] = {}
    for header, _, *body in tables:  # the second row is the |:---| line
        columns = [[name.strip(" `") for name in cell.split(",")] for cell in header[1:-1]]
        for names in columns:
            for name in names:
                assert name not in table, f"{name} is in two recipe tables"
                table[name] = {}
        for row in body:
            for names, cell in zip(columns, row[1:-1]):
                for name in names:
                    table[name][row[0].strip("`")] = literal(cell.strip("`"))
    return table


def literal(cell: str) -> object:
    """A table cell as Python: numbers, True/False/None, else the text (a string setting)."""
    try:
        return ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return cell


def effective(experiment: str) -> dict[str, object]:
    """Every TrainConfig and RecoveryConfig field the experiment file gives, as gin sees it."""
    config.parse([f"configs/experiments/{experiment}.gin"], [])
    try:
        return {f"{type(built).__name__}.{field.name}": getattr(built, field.name)
                for built in (trainer.TrainConfig(), RecoveryConfig()) for field in dataclasses.fields(built)}
    finally:
        gin.clear_config()


TABLE = recipe_table()


def test_the_table_covers_every_experiment_file_and_every_setting():
    files = sorted(p.stem for p in (REPO / "configs" / "experiments").glob("*.gin"))
    assert sorted(TABLE) == files
    fields = sorted(f"{cls.__name__}.{f.name}" for cls in (trainer.TrainConfig, RecoveryConfig)
                    for f in dataclasses.fields(cls))
    for name, settings in TABLE.items():
        assert sorted(settings) == fields, name


@pytest.mark.parametrize("experiment", sorted(TABLE))
def test_each_experiment_runs_the_recipe_the_readme_states(experiment):
    got, stated = effective(experiment), TABLE[experiment]
    differ = {k: (got[k], stated[k]) for k in stated if got[k] != stated[k] or type(got[k]) is not type(stated[k])}
    assert not differ, f"{experiment}.gin (effective, docs/paper.md): {differ}"


def test_paper_recipes_train_three_epochs_with_a_checkpoint_per_epoch():
    """The assumption the table states, worked out: 3 x ceil(N / 32) steps, a checkpoint every ceil(N / 32)."""
    for experiment, train_examples in (("paper_bad", 69_274), ("paper_parlai_safety", 24_000),
                                       ("paper_toxicity", 1_804_874)):
        per_epoch = trainer.steps_per_epoch(train_examples, TABLE[experiment]["TrainConfig.batch_size"])
        assert TABLE[experiment]["TrainConfig.num_steps"] == 3 * per_epoch
        assert TABLE[experiment]["TrainConfig.checkpoint_every"] == per_epoch


def t5x_adafactor(param, grads, learning_rate, decay_rate=0.8, weight_decay=1e-5, clipping=1.0, eps=1e-30):
    """T5X's Adafactor update for an unfactored parameter without parameter scaling or momentum, written
    out from t5x/adafactor.py: v_t = d_t v + (1 - d_t)(g^2 + eps), d_t = 1 - (t + 1)^-decay_rate,
    y = g / sqrt(v_t) clipped to RMS <= clipping, param = (1 - weight_decay) param - lr y."""
    v = np.zeros_like(param)
    for t, g in enumerate(grads):
        decay = 1.0 - (t + 1.0) ** -decay_rate
        v = decay * v + (1.0 - decay) * (g * g + eps)
        y = g / np.sqrt(v)
        y = y / max(1.0, np.sqrt(np.mean(y * y)) / clipping)
        param = (1.0 - weight_decay) * param - learning_rate * y
    return param


def test_adafactor_is_t5x_adafactor_with_prompt_tunings_settings():
    rng = np.random.default_rng(0)
    param = rng.standard_normal((100, 8)).astype(np.float32)  # a prompt: 100 < 128, so not factored
    grads = [rng.standard_normal(param.shape).astype(np.float32) * scale for scale in (1.0, 0.1, 3.0, 0.5)]
    optimizer = trainer.make_optimizer("adafactor", 0.3)
    state, current = optimizer.init(jnp.asarray(param)), jnp.asarray(param)
    for g in grads:
        updates, state = optimizer.update(jnp.asarray(g), state, current)
        current = current + updates
    np.testing.assert_allclose(np.asarray(current), t5x_adafactor(param.astype(np.float64), grads, 0.3),
                               rtol=2e-5, atol=2e-6)
    assert not np.allclose(t5x_adafactor(param, grads, 0.3, decay_rate=0.5), np.asarray(current), atol=1e-3)


def main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gbair.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_print_config_shows_the_effective_settings_without_running(tmp_path):
    done = main("--gin_file=configs/experiments/paper_bad.gin", "--gin.RecoveryConfig.iterations=2", "--print_config")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for setting in ("TrainConfig.num_steps = 6495", "TrainConfig.schedule = 'constant'", "TrainConfig.select_by = 'f1'",
                    "RecoveryConfig.iterations = 2"):
        assert setting in lines, done.stdout[:3000]
    assert "training run" not in done.stderr
    missing = main("--gin_file=configs/datasets/bad.gin", "--gin_file=configs/runs/paper.gin", "--print_config")
    assert missing.returncode == 2 and missing.stderr.strip().splitlines()[-1].startswith("gbair: error: gin config: ")
    assert "TRAIN_STEPS" in missing.stderr.strip().splitlines()[-1]
    no_workdir = main("--gin_file=configs/experiments/demo.gin")
    assert no_workdir.returncode == 2 and "--workdir" in no_workdir.stderr.strip().splitlines()[-1]
