"""The G-BAIR loop end to end on a tiny random BERT: row bookkeeping, bounds, SIGKILL + resume."""

import csv
import dataclasses
import json
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import gin
import numpy as np
import pytest

from gbair import UserError
from gbair.recovery import experiment, strategies
from gbair.reports import plots
from gbair.train.metrics import found_by_prefix
from gbair.train import prompt_checkpoints
from gbair.train import trainer
from gbair import workdir as workdir_lib
from gbair.workdir import COLUMNS
from tests.test_main import read_scalars

REPO = pathlib.Path(__file__).resolve().parent.parent


def sweep_command(workdir, model_dir, *extra):
    return [sys.executable, "-m", "gbair.main", "--gin_file=tests/tiny_sweep.gin", f"--workdir={workdir}",
            f"--gin.minilm_classifier.model_dir='{model_dir}'", *extra]


def read_rows(workdir):
    with open(pathlib.Path(workdir) / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def without_wall_time(rows):
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in rows]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_bert_dir):
    workdir = tmp_path_factory.mktemp("sweep")
    result = subprocess.run(sweep_command(workdir, tiny_bert_dir), cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, result


def test_rows_follow_the_bookkeeping(uninterrupted):
    workdir, result = uninterrupted
    rows = read_rows(workdir)
    by_strategy = {}
    for row in rows:
        by_strategy.setdefault(row["strategy"], []).append(row)
    assert list(by_strategy) == ["clean", "tracin", "loss", "random", "oracle"]
    assert len(by_strategy["clean"]) == 1 and by_strategy["clean"][0]["n_corrupted_remaining"] == "0"
    first = {k: v for k, v in by_strategy["tracin"][0].items() if k != "strategy"}
    assert int(first["n_corrupted_remaining"]) == 10  # round(0.25 * 40) flipped
    for name, series in by_strategy.items():
        if name == "clean":
            continue
        assert {k: v for k, v in series[0].items() if k != "strategy"} == first  # iteration 0 is shared
        assert [int(r["iteration"]) for r in series] == list(range(len(series)))
        for before, after in zip(series, series[1:]):
            flagged, hits = int(after["n_flagged"]), int(after["n_flagged_corrupted"])
            assert flagged == 4 and 0 <= hits <= flagged
            assert int(after["n_train"]) == int(before["n_train"]) - flagged  # action = remove
            assert int(after["n_corrupted_remaining"]) == int(before["n_corrupted_remaining"]) - hits
            assert 0.0 <= float(after["test_f1"]) <= 1.0
    assert all(r["n_flagged"] == r["n_flagged_corrupted"] for r in by_strategy["oracle"])
    assert "| dataset | corruption_rate | clean | corrupted |" in result.stdout  # the printed table
    for name in ("table_test_f1.md", "recovered_test_auc.md", "detection_auroc.md",
                 "test_f1_vs_iteration.png", "recovery.png"):
        assert (workdir / name).stat().st_size > 0
    for row in rows:  # detection is measured at every cleaning iteration, and only there
        cleaning = row["iteration"] != "0"
        assert all((row[c] != "") == cleaning for c in ("detection_auroc", "detection_ap", "precision_at_k"))
        if cleaning:
            assert float(row["precision_at_k"]) == int(row["n_flagged_corrupted"]) / int(row["n_flagged"])
            assert 0 < int(row["n_misclassified"]) <= 16
    assert all(float(r["detection_auroc"]) == float(r["detection_ap"]) == 1.0
               for r in by_strategy["oracle"] if r["iteration"] != "0")


def test_the_sweep_writes_each_strategys_recovery_curve_at_iteration_1(uninterrupted):
    workdir, _ = uninterrupted
    curves = plots.load_curves(workdir / workdir_lib.RECOVERY_CURVES_FILE)
    assert sorted(curves) == [("spam_assassin", 0.25, s) for s in ("loss", "oracle", "random", "tracin")]
    oracle = curves[("spam_assassin", 0.25, "oracle")][0]  # 10 of 40 corrupted, flagged first: min(n, 10) / 10 found
    assert oracle[0].tolist() == [0, 0] and oracle[-1].tolist() == [1, 1]
    assert oracle[:, 1] == pytest.approx(np.minimum(np.round(oracle[:, 0] * 40), 10) / 10)


def test_a_recovery_curve_counts_the_corrupted_labels_of_every_prefix_and_finished_ones_are_joined(tmp_path):
    corrupted = np.array([0, 1, 0, 0, 1, 1, 0, 0, 0, 1], bool)  # 4 of 10
    ranking = np.array([4, 0, 9, 2, 1, 3, 8, 7])  # 5 and 6 left out (a person reviewed them): never flagged
    found = [0, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3]  # counted by hand, prefix lengths 0..10
    assert found_by_prefix(corrupted, ranking, 10, points=11) == [(n / 10, f / 4) for n, f in enumerate(found)]
    assert found_by_prefix(np.zeros(10, bool), ranking, 10) == []  # nothing to find: no curve
    cell = workdir_lib.Cell("toy", 0.1, 3)
    for name, finished in (("oracle", True), ("loss", False)):  # loss was interrupted: its curve is not joined
        oracle = np.argsort(~corrupted, kind="stable")
        workdir_lib.write_curve(tmp_path, cell, name, found_by_prefix(corrupted, oracle, 10, points=11))
        if finished:
            workdir_lib.write_done(tmp_path, cell, name, [cell.row(name, 0, n_train=10)])
    workdir_lib.write_results(tmp_path)
    curves = plots.load_curves(tmp_path / workdir_lib.RECOVERY_CURVES_FILE)
    assert list(curves) == [("toy", 0.1, "oracle")] and list(curves[("toy", 0.1, "oracle")]) == [3]
    assert curves[("toy", 0.1, "oracle")][3][:, 1].tolist() == [min(n, 4) / 4 for n in range(11)]


def test_tensorboard_scalars_of_every_run_and_strategy_are_readable(uninterrupted):
    workdir, _ = uninterrupted
    rows = [r for r in read_rows(workdir) if r["strategy"] == "tracin"]
    cell = next((workdir / "tensorboard" / "cells").glob("*/rate=*/seed=*"))
    strategy = read_scalars(cell / "tracin")
    assert strategy["test/f1"] == {int(r["iteration"]): pytest.approx(float(r["test_f1"])) for r in rows}
    assert sorted(strategy["flagged/precision"]) == [1, 2]
    run = read_scalars(cell / "tracin" / "it1")
    assert sorted(run["train/loss"]) == [10] and sorted(run["validation/loss"]) == [5, 10]  # log_every 25


def test_every_run_trains_the_same_number_of_steps_and_reports_its_validation_choice(uninterrupted):
    workdir, _ = uninterrupted
    runs = sorted(workdir.glob("cells/**/checkpoints"))
    assert len(runs) >= 3  # corrupted, clean, and at least one cleaning run
    for run in runs:
        saved = prompt_checkpoints.load_prompt_checkpoints(run)
        assert [c.step for c in saved] == [5, 10]  # TrainConfig.num_steps = 10 whatever the set's size
        chosen = trainer.select_checkpoint(saved, "loss")
        record = json.loads((run.parent / "run.json").read_text()) if (run.parent / "run.json").exists() \
            else json.loads((run.parent / "state.json").read_text())["row"]
        assert record["selected_step"] == chosen.step


TRACIN_AND_TRAK = ("--gin.Experiment.strategy_names=['tracin','trak']", "--gin.RecoveryConfig.iterations=1")


@pytest.fixture(scope="module")
def raced(tmp_path_factory, tiny_bert_dir, compile_cache_env):
    """The sweep with tracin and trak, started twice at once on one workdir: (workdir, winner, loser
    stderr, whether the winner was still running when the loser had exited)."""
    workdir = tmp_path_factory.mktemp("raced")
    command = sweep_command(workdir, tiny_bert_dir, *TRACIN_AND_TRAK)
    processes = [subprocess.Popen(command, cwd=REPO, text=True, env=compile_cache_env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for _ in range(2)]
    while all(p.poll() is None for p in processes):
        time.sleep(0.1)
    loser = next(p for p in processes if p.poll() is not None)
    winner = next(p for p in processes if p is not loser)
    overlapped = winner.poll() is None
    loser_log = loser.communicate()[1]
    winner_log = winner.communicate(timeout=600)[1]
    assert winner.returncode == 0, winner_log[-4000:]
    return workdir, winner, loser, loser_log, overlapped


def test_two_processes_on_one_workdir_one_runs_the_other_stops_at_once_naming_it(raced):
    workdir, winner, loser, loser_log, overlapped = raced
    assert overlapped and loser.returncode == 1  # it stopped while the other was running
    last = loser_log.strip().splitlines()[-1]
    assert last.startswith("gbair: error: ") and "is in use by another gbair process" in last
    assert f"pid {winner.pid} on host {socket.gethostname()}" in last and str(workdir / "gbair.lock") in last
    assert "Traceback" not in loser_log and "training run" not in loser_log  # it did no work
    assert not (workdir / "gbair.lock").exists()  # released on exit
    assert {r["strategy"] for r in read_rows(workdir)} == {"tracin", "trak"}


def run_until(command, marker: str, env: dict[str, str]) -> str:
    """Runs `command` until its log shows `marker`, then SIGKILLs it; returns its log."""
    process = subprocess.Popen(command, cwd=REPO, text=True, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    log = []
    for line in process.stderr:
        log.append(line)
        if marker in line:
            process.send_signal(signal.SIGKILL)
            break
    log.append(process.communicate()[1])
    assert process.returncode == -signal.SIGKILL, f"{marker!r} never came:\n" + "".join(log)[-4000:]
    return "".join(log)


def test_sigkill_series_then_rerun_gives_the_same_results_and_leaves_nothing_behind(raced, tmp_path, tiny_bert_dir,
                                                                                     compile_cache_env):
    """Killed during training (as it saves a checkpoint), during TRAK's curvature pass (which keeps the
    training gradients it scores from) and during its test-side pass; each rerun takes over the dead
    process's lock, and the last one finishes."""
    reference = raced[0]
    command = sweep_command(tmp_path, tiny_bert_dir, *TRACIN_AND_TRAK, "--verbosity=1")  # logs each pass
    for i, marker in enumerate(["step 5: validation", "TracIn TRAK kernel: a pass", "TracIn TRAK test side: a pass"]):
        log = run_until(command, marker, compile_cache_env)
        assert ("taking over the lock left by pid" in log) == (i > 0), log[-4000:]
    rerun = subprocess.run(command, cwd=REPO, env=compile_cache_env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert "taking over the lock left by pid" in rerun.stderr
    assert without_wall_time(read_rows(tmp_path)) == without_wall_time(read_rows(reference))
    states = sorted(p.relative_to(reference) for p in reference.glob("cells/**/state.json"))
    assert states and states == sorted(p.relative_to(tmp_path) for p in tmp_path.glob("cells/**/state.json"))
    for state in states:  # the same examples were flagged and kept, with the same labels
        before, after = json.loads((reference / state).read_text()), json.loads((tmp_path / state).read_text())
        assert (before["ids"], before["labels"]) == (after["ids"], after["labels"])
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or "orbax-checkpoint-tmp" in p.name]
    assert not leftovers and not (tmp_path / "gbair.lock").exists()


def test_sigkill_while_writing_reports_then_rerun_gives_the_same_results_and_reports(uninterrupted, tmp_path,
                                                                                      tiny_bert_dir):
    reference, _ = uninterrupted
    command = sweep_command(tmp_path, tiny_bert_dir)
    expected_rows = len(read_rows(reference))
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # Kill once every row is written: the sweep is then in its table / plot / HTML stage.
    while time.time() < deadline and process.poll() is None:
        try:
            if len(read_rows(tmp_path)) == expected_rows:
                break
        except (FileNotFoundError, AssertionError):
            pass
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert "training run" not in rerun.stderr and not list(tmp_path.rglob(".*.tmp"))
    assert without_wall_time(read_rows(tmp_path)) == without_wall_time(read_rows(reference))
    for name in ("table_test_f1.md", "recovered_test_f1.md", "detection_auroc.md"):
        assert (tmp_path / name).read_text() == (reference / name).read_text()
    assert sorted(p.name for p in tmp_path.glob("report_*.html")) == sorted(p.name for p in reference.glob("report_*.html"))


def test_relabel_keeps_the_training_set_size(tmp_path, tiny_bert_dir):
    result = subprocess.run(sweep_command(tmp_path, tiny_bert_dir, "--gin.RecoveryConfig.action='relabel'",
                                          "--gin.Experiment.strategy_names=['oracle']"),
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    rows = read_rows(tmp_path)
    assert {r["n_train"] for r in rows} == {"40"}
    # Oracle + relabel (binary) fixes exactly the flagged labels.
    assert [int(r["n_corrupted_remaining"]) for r in rows] == [10, 6, 2]


def test_unknown_strategy_and_bad_action_are_rejected():
    with pytest.raises(ValueError, match="RecoveryConfig.action='drop'"):
        experiment.RecoveryConfig(action="drop")
    with pytest.raises(ValueError, match="unknown strategy 'magic'"):
        strategies.score("magic", None)
    with pytest.raises(ValueError, match=r"Experiment.strategy_names: unknown \['magic'\]"):
        experiment.Experiment(datasets={}, model=None, corruption_rates=[0.1], strategy_names=["clean", "magic"])


@pytest.fixture
def clean_gin():
    yield
    gin.clear_config()  # RunExplainer parses the run's gin config; do not leak it into other tests


def test_explain_lists_equal_a_full_sort_of_fresh_engine_scores(uninterrupted, clean_gin):
    from gbair.explain import RunExplainer, neighbours  # pylint: disable=import-outside-toplevel
    workdir, _ = uninterrupted
    explainer = RunExplainer(workdir)
    cell = explainer.cell(None, None, None)
    stored = explainer.stored(cell, "tracin", 2)
    fresh = explainer.compute(cell, "tracin", 2, list(stored.queries.ids))  # recomputed from checkpoints
    np.testing.assert_allclose(stored.dot, fresh.dot, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stored.cosine, fresh.cosine, rtol=1e-4, atol=1e-6)
    best, worst = neighbours(stored.dot, 5)
    np.testing.assert_array_equal(best, np.argsort(-fresh.dot, axis=0, kind="stable")[:5].T)
    np.testing.assert_array_equal(worst, np.argsort(fresh.dot, axis=0, kind="stable")[:5].T)
    cli = subprocess.run([sys.executable, "-m", "gbair.explain", f"--workdir={workdir}", "--iteration=2", "--k=5"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-3000:]
    first = cli.stdout.split("opponents")[0]
    assert [line.split()[1] for line in first.splitlines() if line.strip()[:3].strip(". ").isdigit()] == [
        stored.train.ids[i] for i in best[0]]
    report = (workdir / "report_spam_assassin_rate0.25_seed0.html").read_text()
    assert stored.queries.ids[0] in report and "http://" not in report and "https://" not in report


def test_relabel_file_is_applied_to_the_corrupted_training_set(tmp_path, tiny_bert_dir):
    from gbair.data.corruption import corrupt_labels  # pylint: disable=import-outside-toplevel
    from tests.toy_model import toy_spam_splits  # pylint: disable=import-outside-toplevel
    noisy, flipped = corrupt_labels(toy_spam_splits()["train"], 0.25, seed=0)
    fix, drop, kept = [noisy.ids[i] for i in np.flatnonzero(flipped)[:3]]
    true_name = noisy.class_names[1 - noisy.labels[noisy.ids.index(fix)]]
    decisions = tmp_path / "decisions.json"
    decisions.write_text(json.dumps({"decisions": [{"id": fix, "action": "relabel", "label": true_name},
                                                   {"id": drop, "action": "remove"},
                                                   {"id": kept, "action": "keep"}]}))  # a person says: right
    result = subprocess.run(sweep_command(tmp_path / "run", tiny_bert_dir, f"--gin.RELABEL_FILE='{decisions}'",
                                          "--gin.Experiment.strategy_names=['oracle']",
                                          "--gin.RecoveryConfig.iterations=1"),
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    it0, it1 = read_rows(tmp_path / "run")
    assert (it0["n_train"], it0["n_corrupted_remaining"]) == ("39", "8")  # 10 flipped: one fixed, one removed
    # The oracle flags flipped labels first (4 of the 8 left), but never the kept or the relabelled one.
    state = json.loads(next((tmp_path / "run").glob("cells/*/*/*/oracle/it1/state.json")).read_text())
    assert (it1["n_flagged"], it1["n_flagged_corrupted"]) == ("4", "4") and {kept, fix} <= set(state["ids"])


def test_top_k_is_a_stable_full_sort_and_balanced_weights_equalise_classes():
    scores = np.array([0.5, 2.0, 0.5, -1.0, 2.0])
    np.testing.assert_array_equal(strategies.top_k(scores, 3), [1, 4, 0])
    np.testing.assert_array_equal(strategies.top_k(scores, 9), np.argsort(-scores, kind="stable"))
    np.testing.assert_array_equal(strategies.top_k(scores, 3, exclude=np.array([4, 2])), [1, 0, 3])  # reviewed
    labels = np.array([0, 0, 0, 1])
    weights = strategies.query_weights(labels, balance_classes=True)
    assert weights[labels == 0].sum() == pytest.approx(weights[labels == 1].sum())
    np.testing.assert_array_equal(strategies.query_weights(labels, balance_classes=False), np.ones(4))


def test_tracin_by_label_ranks_each_label_on_the_errors_it_can_cause():
    rng = np.random.default_rng(0)
    train_labels, query_labels = rng.integers(0, 3, 12), np.array([0, 0, 1, 2, 2])
    influence = rng.normal(size=(12, 5))
    train = type("Train", (), {"labels": train_labels, "__len__": lambda self: 12})()
    context = strategies.SelectionContext(
        model=None, train=train, prompt=None, corrupted=None, seed=0, fit=None,
        misclassified=type("V", (), {"labels": query_labels})(), influence={"dot": influence}, balance_classes=True)
    suspicion = strategies.tracin_by_label(context)
    for label in range(3):  # naive: the balanced sum over V's other classes, ranked within the label
        members = [i for i in range(12) if train_labels[i] == label]
        harmed = [j for j in range(5) if query_labels[j] != label]
        counts = {c: sum(query_labels[j] == c for j in harmed) for c in set(query_labels[harmed])}
        naive = {i: -sum(influence[i, j] / counts[query_labels[j]] for j in harmed) for i in members}
        order = sorted(members, key=lambda i: naive[i])
        expected = [(order.index(i) + 1) / len(members) for i in members]
        np.testing.assert_allclose(suspicion[members], expected)
    context = dataclasses.replace(context, misclassified=type("V", (), {"labels": np.zeros(5, int)})())
    assert (strategies.tracin_by_label(context)[train_labels == 0] == 0).all()  # no error label 0 can cause


def count_scorers(monkeypatch) -> list[str]:
    """The class name of every TracIn-family scorer built from now on (second-order ones included)."""
    from gbair.influence.tracin import TracIn  # pylint: disable=import-outside-toplevel
    built, original = [], TracIn.__init__

    def counting(self, *args, **kwargs):
        built.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(TracIn, "__init__", counting)
    return built


def test_every_strategy_reads_influence_from_the_owner_which_computes_each_family_once(monkeypatch):
    from gbair.influence.matrices import SECOND_ORDER, InfluenceMatrices  # pylint: disable=import-outside-toplevel
    from gbair.influence.tracin import TracIn  # pylint: disable=import-outside-toplevel
    from tests.toy_model import toy_checkpoints, toy_dataset, toy_model  # pylint: disable=import-outside-toplevel
    model = toy_model()
    checkpoints, train, wrong = toy_checkpoints(model), toy_dataset(9, seed=1), toy_dataset(3, seed=2)
    reference = TracIn(model, checkpoints, batch_size=4)  # the second-order scores: tests/test_second_order.py
    built = count_scorers(monkeypatch)
    influence = InfluenceMatrices(model, checkpoints, train, wrong, batch_size=4)
    context = strategies.SelectionContext(model=model, train=train, prompt=None, misclassified=wrong,
                                          corrupted=np.zeros(len(train), bool), seed=0, fit=None, influence=influence)
    scores = {name: strategies.score(name, context) for name in (*strategies.NEEDS_VALIDATION, "self_influence")}
    assert sorted(built) == ["DataInf", "InfluenceFunction", "TRAK", "TracIn"]  # one scorer per family, shared
    assert influence.computed == {"tracin": 1, **{name: 1 for name in SECOND_ORDER}, "self_influence": 1}
    np.testing.assert_allclose(scores["tracin"], -reference.influence(train, wrong).sum(1), rtol=1e-6)
    np.testing.assert_allclose(scores["self_influence"], reference.self_influence(train), rtol=1e-6)
    for name in SECOND_ORDER:
        np.testing.assert_allclose(scores[name], -influence[name].sum(1), rtol=1e-6)
    with pytest.raises(KeyError, match="expected one of"):
        _ = influence["loss"]


def test_a_sweep_computes_each_family_once_per_scored_run(tmp_path, monkeypatch):
    from gbair.recovery.loop import run_sweep  # pylint: disable=import-outside-toplevel
    from tests.toy_model import toy_dataset, toy_model  # pylint: disable=import-outside-toplevel
    splits = {name: toy_dataset(n, seed=seed, num_classes=2)
              for name, n, seed in (("train", 12, 1), ("validation", 8, 2), ("test", 8, 3))}
    names = ["tracin", "tracin_by_label", "influence_function", "influence_function_by_label"]
    sweep = experiment.Experiment(
        datasets={"toy": splits}, model=toy_model(num_classes=2), corruption_rates=[0.25], strategy_names=names,
        train_config=trainer.TrainConfig(batch_size=4, num_steps=2, checkpoint_every=2),
        recovery=experiment.RecoveryConfig(iterations=1, flag_count=1, tracin_batch_size=4))
    built = count_scorers(monkeypatch)
    run_sweep(tmp_path, sweep)
    assert [r["strategy"] for r in read_rows(tmp_path) if r["iteration"] == "1"] == names  # V was not empty
    assert sorted(built) == ["InfluenceFunction", "TracIn"]  # all four scored the corrupted run, two families


def test_a_one_class_model_is_warned_naming_the_run_and_marked_in_results_and_report(tmp_path, caplog):
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    from gbair.recovery.loop import run_sweep  # pylint: disable=import-outside-toplevel
    from gbair.reports import paper  # pylint: disable=import-outside-toplevel
    from tests.toy_model import toy_dataset, toy_model  # pylint: disable=import-outside-toplevel
    model = toy_model(num_classes=2)
    forced = dataclasses.replace(model, logits_fn=lambda p, prompt, b: model.logits_fn(p, prompt, b) + jnp.array(
        [1e4, 0.0]))  # trains as usual, predicts c0 for everything
    splits = {name: toy_dataset(n, seed=seed, num_classes=2)
              for name, n, seed in (("train", 12, 1), ("validation", 8, 2), ("test", 8, 3))}
    sweep = experiment.Experiment(
        datasets={"toy": splits}, model=forced, corruption_rates=[0.25], strategy_names=["random"],
        train_config=trainer.TrainConfig(batch_size=4, num_steps=2, checkpoint_every=2),
        recovery=experiment.RecoveryConfig(iterations=1, flag_count=1))
    with caplog.at_level("WARNING"):
        run_sweep(tmp_path, sweep)
    rows = read_rows(tmp_path)
    assert [(r["iteration"], r["one_class_prediction"]) for r in rows] == [("0", "1"), ("1", "1")]
    for run in ("corrupted", "random/it1"):
        assert f"{tmp_path}/cells/toy/rate=0.25/seed=0/{run}: the trained prompt predicts 'c0' for every " \
               "validation example" in caplog.text
    assert paper.write_report(tmp_path).startswith("WARNING: 2 of 2 rows come from one-class models")


def test_explain_rebuilds_a_run_from_its_config_gin_after_its_gin_files_moved(uninterrupted, tmp_path, clean_gin):
    from gbair.explain import RunExplainer  # pylint: disable=import-outside-toplevel

    workdir, _ = uninterrupted
    operative = (workdir / "config.gin").read_text()
    assert "TrainConfig.num_steps = 10" in operative and "execute.job = @sweep" in operative  # T5X's content
    moved = tmp_path / "moved"
    shutil.copytree(workdir, moved)
    record = json.loads((moved / "gin_config.json").read_text())
    (moved / "gin_config.json").write_text(json.dumps({**record, "gin_files": [str(tmp_path / "gone.gin")]}))
    explainer = RunExplainer(moved)
    cell = explainer.cell(None, None, None)
    stored = explainer.stored(cell, "tracin", 1)
    np.testing.assert_allclose(explainer.compute(cell, "tracin", 1, list(stored.queries.ids)).dot, stored.dot,
                               rtol=1e-4, atol=1e-6)
    (moved / "config.gin").unlink()  # an older workdir: rebuilt from its gin files, here gone
    with pytest.raises(UserError, match="gone.gin: no such file"):
        RunExplainer(moved)
    (moved / "gin_config.json").write_text(json.dumps(record))
    assert RunExplainer(moved).experiment.train_config == explainer.experiment.train_config
    (moved / "config.gin").write_text("TrainConfig.num_steps = (")
    with pytest.raises(UserError, match=r"config.gin: cannot parse"):
        RunExplainer(moved)
