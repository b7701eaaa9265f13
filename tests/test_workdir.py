"""gbair.workdir: the layout a sweep's readers rely on, results.csv rebuilt in one order, and the model
fingerprint kept once per model object."""

import csv
import dataclasses
import io
import pathlib

from gbair import workdir
from gbair.recovery import strategies
from gbair.workdir import COLUMNS, STRATEGY_ORDER, Cell
from tests.toy_model import toy_model


def test_a_cells_runs_are_the_documented_folders():
    cell = Cell("spam", 0.25, 3)
    assert cell.run("clean", 0) == pathlib.Path("cells/spam/clean/seed=3")  # one clean run for every rate
    assert cell.run("tracin", 0) == cell.run("loss", 0) == pathlib.Path("cells/spam/rate=0.25/seed=3/corrupted")
    assert cell.run("tracin", 2) == pathlib.Path("cells/spam/rate=0.25/seed=3/tracin/it2")


def test_every_strategy_the_sweep_knows_has_a_place_in_the_order():
    assert sorted(STRATEGY_ORDER) == sorted(strategies.STRATEGIES) and strategies.BOUNDS == (workdir.CLEAN,)


def test_results_are_rebuilt_from_done_files_in_one_order(tmp_path):
    rows = {}
    for cell in (Cell("b", 0.1, 0), Cell("a", 0.2, 1), Cell("a", 0.1, 1), Cell("a", 0.1, 0)):
        for strategy in ("oracle", "mystery", "tracin", "clean"):
            iterations = [0] if strategy == "clean" else [2, 0, 1]
            rows[cell, strategy] = [cell.row(strategy, t, n_train=10 - t, test_auc=None) for t in iterations]
            workdir.write_done(tmp_path, cell, strategy, rows[cell, strategy])
    written = list(csv.DictReader(io.StringIO(workdir.write_results(tmp_path).read_text())))
    rank = {name: i for i, name in enumerate(("clean",) + STRATEGY_ORDER)}
    expected = sorted((row for strategy_rows in rows.values() for row in strategy_rows),
                      key=lambda r: (r["dataset"], r["corruption_rate"], r["seed"],
                                     rank.get(r["strategy"], len(rank)), r["strategy"], r["iteration"]))
    assert list(written[0]) == list(COLUMNS)
    assert [(r["dataset"], float(r["corruption_rate"]), int(r["seed"]), r["strategy"], int(r["iteration"]))
            for r in written] == [(r["dataset"], r["corruption_rate"], r["seed"], r["strategy"], r["iteration"])
                                  for r in expected]
    assert {r["test_auc"] for r in written} == {""} and {r["n_train"] for r in written} == {"8", "9", "10"}


def test_the_model_fingerprint_is_computed_once_per_model_object(monkeypatch):
    computed = []
    compute = workdir._compute_model_fingerprint  # pylint: disable=protected-access
    monkeypatch.setattr(workdir, "_compute_model_fingerprint", lambda model: computed.append(model) or compute(model))
    model, other = toy_model(seed=0), toy_model(seed=1)
    first = workdir.model_fingerprint(model)
    assert workdir.model_fingerprint(model) == first and len(computed) == 1 and computed[0] is model
    copy = dataclasses.replace(model)  # another object: computed afresh, and equal, since it computes the same
    assert workdir.model_fingerprint(copy) == first and len(computed) == 2
    assert workdir.model_fingerprint(other) != first and len(computed) == 3
