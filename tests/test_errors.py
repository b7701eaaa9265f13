"""The user's mistakes: one line `gbair: error: ...`, the right exit status, and the workdir untouched.

Also a workdir's identity: a rerun with settings that give other results is refused, never mixed.
"""

import hashlib
import json
import pathlib
import shutil
import subprocess
import sys

import gin
import pytest

from gbair import UsageError, UserError, config
from gbair.data.dataset import TextDataset
from gbair.data.safety import load_bad
from gbair.recovery.experiment import Experiment, RecoveryConfig

REPO = pathlib.Path(__file__).resolve().parent.parent


def sweep(workdir, model_dir, *extra):
    command = [sys.executable, "-m", "gbair.main", "--gin_file=tests/tiny_sweep.gin", f"--workdir={workdir}",
               f"--gin.minilm_classifier.model_dir='{model_dir}'", "--gin.RecoveryConfig.iterations=1",
               "--gin.Experiment.strategy_names=['clean','tracin','oracle']", *extra]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    """Every file under `folder` and its content hash: what "nothing changed" means."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_line_error(result, fragment: str, status: int):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, result.stderr[-3000:]
    assert lines and lines[-1].startswith("gbair: error: ") and fragment in lines[-1], result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_bert_dir):
    workdir = tmp_path_factory.mktemp("finished")
    result = sweep(workdir, tiny_bert_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def bad_decisions(tmp_path):
    path = tmp_path / "decisions.json"
    path.write_text('{"decisions": [{"id": "nope", "action": "remove"}]}')
    return f"--gin.RELABEL_FILE='{path}'"


CASES = [  # (name, extra arguments (or a function of tmp_path giving one), message fragment, exit status)
    ("flag_fraction", "--gin.RecoveryConfig.flag_fraction=2.0", "flag_fraction=2.0", 1),
    ("rate", "--gin.Experiment.corruption_rates=[0.25, 1.5]", "Experiment.corruption_rates: [1.5]", 1),
    ("strategy", "--gin.Experiment.strategy_names=['tracn']", "unknown ['tracn']", 1),
    ("binding", "--gin.Nope.x=1", "No configurable matching 'Nope'", 2),
    ("binding syntax", "--gin.TrainConfig.seed=(", "gin config", 2),
    ("train setting", "--gin.TrainConfig.select_by='f2'", "TrainConfig.select_by='f2'", 1),
    ("decisions", bad_decisions, "id 'nope' is not in the training set", 1),
    ("missing decisions", "--gin.RELABEL_FILE='/no/such.json'", "RELABEL_FILE='/no/such.json': no such file", 1),
    ("gin file", "--gin_file=configs/nope.gin", "--gin_file=configs/nope.gin: no such file", 2),
    ("flag", "--wrkdir=x", "Unknown command line flag 'wrkdir'", 2),
    ("argument", "extra", "unexpected arguments: ['extra']", 2),
]


@gin.configurable
def splits_that_must_not_load():
    raise AssertionError("the data were loaded")


@pytest.mark.parametrize("gin_file, binding, fragment", [
    ("tests/tiny_sweep.gin", "Experiment.strategy_names = ['clean', 'tracn']",
     "Experiment.strategy_names: unknown ['tracn'], expected from"),
    ("tests/tiny_sweep.gin", "Experiment.seeds = [-1]", "Experiment.seeds=[-1], expected non-negative ints"),
    ("tests/tiny_sweep.gin", "RecoveryConfig.action = 'drop'", "RecoveryConfig.action='drop'"),
    ("configs/runs/clean.gin", "STRATEGY = 'oracle'", "strategy 'oracle': expected one of"),  # through a macro
])
def test_cheap_settings_are_refused_before_any_data_is_loaded(gin_file, binding, fragment):
    config.parse([gin_file], ["SPLITS = @splits_that_must_not_load()", "clean.splits = @splits_that_must_not_load",
                              binding])
    try:
        with pytest.raises(UserError) as raised:
            config.check_settings()  # gbair.main calls it right after parsing, before the job builds its data
    finally:
        gin.clear_config()
    assert fragment in str(raised.value).splitlines()[0]  # the line the entry points print


@pytest.mark.parametrize("name, extra, fragment, status", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_the_workdir_as_it_was(finished, tmp_path, tiny_bert_dir,
                                                                 name, extra, fragment, status):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    before = snapshot(workdir)
    result = sweep(workdir, tiny_bert_dir, extra(tmp_path) if callable(extra) else extra)
    assert_one_line_error(result, fragment, status)
    assert snapshot(workdir) == before  # gin_config.json included: it still records the good run


def test_explain_on_a_folder_that_is_not_a_workdir_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "gbair.explain", f"--workdir={tmp_path}"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert_one_line_error(result, "gin_config.json is missing", 1)
    missing_flag = subprocess.run([sys.executable, "-m", "gbair.explain"], cwd=REPO, capture_output=True,
                                  text=True, timeout=300)
    assert_one_line_error(missing_flag, "--workdir", 2)


IDENTITY_CASES = [  # a rerun of a finished workdir with other settings: which part of the identity differs
    ("split sizes", "--gin.toy_spam_splits.train=36", "different data"),
    ("max_length", "--gin.minilm_classifier.max_length=10", "different model"),
    ("training", "--gin.TrainConfig.num_steps=12", "different TrainConfig"),
    ("recovery", "--gin.RecoveryConfig.flag_count=5", "different RecoveryConfig"),
    ("decisions", "RELABEL", "different corrupted labels"),
]


@pytest.mark.parametrize("name, extra, fragment", IDENTITY_CASES, ids=[c[0] for c in IDENTITY_CASES])
def test_a_rerun_with_other_settings_is_refused_before_any_training(finished, tmp_path, tiny_bert_dir,
                                                                     name, extra, fragment):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    if extra == "RELABEL":
        train_id = json.loads(next(workdir.glob("cells/*/*/*/tracin/it1/state.json")).read_text())["ids"][0]
        decisions = tmp_path / "decisions.json"
        decisions.write_text(json.dumps({"decisions": [{"id": train_id, "action": "remove"}]}))
        extra = f"--gin.RELABEL_FILE='{decisions}'"
    before = snapshot(workdir)
    result = sweep(workdir, tiny_bert_dir, extra)
    assert_one_line_error(result, fragment, 1)
    assert "use a new --workdir" in result.stderr and "training run" not in result.stderr
    assert snapshot(workdir) == before


def test_a_rerun_with_the_same_settings_removes_orphan_temp_files_and_changes_nothing(finished, tmp_path,
                                                                                        tiny_bert_dir):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    before = snapshot(workdir)
    orphans = [workdir / ".results.csv.x1y2.tmp", next(workdir.glob("cells/*/*/*")) / ".done.json.abc.tmp"]
    for orphan in orphans:
        orphan.write_text("half a file")
    result = sweep(workdir, tiny_bert_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(orphan.exists() for orphan in orphans)
    after = snapshot(workdir)
    assert {k: after[k] for k in before if k.endswith((".csv", ".json"))} == {
        k: before[k] for k in before if k.endswith((".csv", ".json"))}


def test_bad_utf8_in_a_bad_file_names_file_and_line(tmp_path):
    folder = tmp_path / "bot_adversarial_dialogue_datasets_with_persona"
    folder.mkdir()
    good = "text:hello\tlabels:__ok__\tepisode_done:True\n".encode()
    for name in ("train", "valid", "test"):
        (folder / f"{name}.txt").write_bytes(good)
    (folder / "valid.txt").write_bytes(good + b"text:caf\xe9\tlabels:__ok__\n")
    with pytest.raises(UserError, match=r"valid\.txt:2: not UTF-8"):
        load_bad(tmp_path)


UNWORKABLE = [  # settings no cleaning could work under: refused before any training, no cell folder made
    ("flag_fraction 1", ("--gin.RecoveryConfig.flag_fraction=1.0", "--gin.RecoveryConfig.flag_count=0"),
     "RecoveryConfig: flag_fraction=1.0 over iterations=1 removes up to 40 of the 40 examples"),
    ("flag_count > N", ("--gin.RecoveryConfig.flag_count=10000",),
     "RecoveryConfig.flag_count=10000 is more than the 40"),
    ("empty split", ("--gin.toy_spam_splits.validation=0",),
     "the 'validation' split has 0 examples; expected at least 1"),
]


@pytest.mark.parametrize("name, extra, fragment", UNWORKABLE, ids=[c[0] for c in UNWORKABLE])
def test_a_budget_or_split_no_run_can_work_with_is_one_line_before_anything_is_written(tmp_path, tiny_bert_dir,
                                                                                     name, extra, fragment):
    workdir = tmp_path / "run"
    result = sweep(workdir, tiny_bert_dir, *extra)
    assert_one_line_error(result, fragment, 1)
    assert "training run" not in result.stderr and list(workdir.iterdir()) == []  # no cell folder, no lock file


def counts_dataset(ham: int, spam: int) -> TextDataset:
    n = ham + spam
    return TextDataset(tuple(f"t{i}" for i in range(n)), ("text",) * n, [0] * ham + [1] * spam, ("g",) * n,
                       ("ham", "spam"))


def test_the_cleaning_budget_is_the_worst_case_for_the_smallest_class_on_the_shrinking_set():
    train, where = counts_dataset(30, 10), "the training set"  # at most 9 removals leave 'spam' an example
    assert RecoveryConfig(iterations=2, flag_fraction=0.125).flagged_per_iteration(40) == [5, 4]  # 40 -> 35 -> 31
    RecoveryConfig(iterations=2, flag_fraction=0.125).check_budget(train, where)  # 9: at the limit
    RecoveryConfig(iterations=3, flag_count=3).check_budget(train, where)
    with pytest.raises(UserError, match=r"flag_count=5 over iterations=2 removes up to 10 of the 40 examples of "
                                        r"the training set; expected at most 9, .*\('spam' has 10\)"):
        RecoveryConfig(iterations=2, flag_count=5).check_budget(train, where)
    relabel = RecoveryConfig(iterations=3, flag_fraction=1.0, action="relabel")
    assert relabel.flagged_per_iteration(40) == [40, 40, 40]
    relabel.check_budget(train, where)  # relabelling shrinks nothing
    with pytest.raises(UserError, match="flag_count=41 is more than the 40 examples of the training set"):
        RecoveryConfig(flag_count=41, action="relabel").check_budget(train, where)
    RecoveryConfig(iterations=0, flag_count=41).check_budget(train, where)  # no cleaning, nothing to check


def test_an_experiment_is_checked_per_cell_and_its_small_mistakes_are_plain():
    splits = {"train": counts_dataset(30, 10), "validation": counts_dataset(2, 2), "test": counts_dataset(2, 2)}
    common = {"model": None, "corruption_rates": [0.0]}
    with pytest.raises(UserError, match=r"removes up to 40 of the 40 examples of the training set of toy \(rate 0, "
                                        r"seed 0\)"):
        Experiment(datasets={"toy": splits}, strategy_names=["tracin"], recovery=RecoveryConfig(flag_fraction=1.0,
                                                                                                iterations=1), **common)
    Experiment(datasets={"toy": splits}, strategy_names=["clean"], recovery=RecoveryConfig(flag_fraction=1.0), **common)
    with pytest.raises(UserError, match=r"^Experiment.datasets\['toy'\]: the 'test' split has 0 examples"):
        Experiment(datasets={"toy": {**splits, "test": counts_dataset(0, 0)}}, strategy_names=["clean"], **common)
    with pytest.raises(UserError, match=r"^Experiment.strategy_names is empty; expected one or more of \['clean', "):
        Experiment(datasets={"toy": splits}, strategy_names=[], **common)
    with pytest.raises(UsageError) as bad_value:
        config.parse([], ['TrainConfig.learning_rate = float("nan")'])
    gin.clear_config()
    assert str(bad_value.value).startswith("gin config: cannot parse the binding 'TrainConfig.learning_rate = float(")
    assert "'float' is not a value" in str(bad_value.value) and "<ast." not in str(bad_value.value)


def test_a_setting_no_binding_gives_is_one_line_naming_the_configurable(tmp_path):
    for unset, expected in (("Experiment.model = None", "`Experiment` not provided in config: ['corruption_rates', "
                                                        "'datasets', 'strategy_names']"),  # a plain argument
                            ("", "`sweep` not provided in config: ['experiment']")):  # a gin.REQUIRED one
        command = config.parse([], ["import gbair.jobs", "execute.job = @sweep"] + (
            ["sweep.experiment = @Experiment()", unset] if unset else []))
        try:
            with pytest.raises(UserError) as missing:
                config.execute(str(tmp_path), command)
        finally:
            gin.clear_config()
        assert str(missing.value).splitlines()[0] == f"Required bindings for {expected}"  # gin appends its calls
    assert not any(tmp_path.iterdir())
