"""Cleaning a person's own data (configs/runs/clean.gin, gbair.recovery.cleaning) on a tiny random BERT:
the ranking is the strategy's, the cleaned file is the input minus removals with relabels in the input's
own format and columns, a reviewed example is never flagged again, a rerun trains nothing again, and
every bad input is one line naming file, line and column before any training."""

import csv
import json
import pathlib
import re

import numpy as np
import pytest

from gbair import UserError, jobs
from gbair.data.user_files import read_labelled_file
from gbair.recovery import cleaning
from gbair.recovery.experiment import RecoveryConfig
from gbair.train import prompt_checkpoints
from gbair.train import trainer
from gbair.workdir import CLEANING_DIR
from tests.conftest import CLEANING_FIXTURES, JSONL_COLUMNS, clean

REPO = pathlib.Path(__file__).resolve().parent.parent
JSONL, CSV = CLEANING_FIXTURES / "emails.jsonl", CLEANING_FIXTURES / "emails.csv"


def flagged(workdir) -> list[dict]:
    with open(pathlib.Path(workdir) / "flagged.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == cleaning.FLAGGED_COLUMNS
        return list(reader)


def by_iteration(rows) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for row in rows:
        out.setdefault(int(row["iteration"]), []).append(row)
    return out


def jsonl_lines(path) -> list[str]:
    return [line for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


def write_decisions(path, *decisions) -> pathlib.Path:
    path.write_text(json.dumps({"decisions": list(decisions)}))
    return path


def test_loss_ranks_by_the_given_labels_loss_and_removes_in_the_inputs_own_lines(cleaned_by_loss, tiny_classifier):
    rows = by_iteration(flagged(cleaned_by_loss))
    assert sorted(rows) == [1, 2] and all([r["rank"] for r in v] == ["1", "2", "3"] for v in rows.values())
    assert all(r["strategy"] == "loss" for v in rows.values() for r in v)
    assert not {r["id"] for r in rows[1]} & {r["id"] for r in rows[2]}  # removed at 1, so not flaggable at 2

    # Oracle: iteration 1's scores are the given labels' losses under its own (last) checkpoint, highest first.
    data = read_labelled_file(JSONL, class_names=("ham", "spam"), **JSONL_COLUMNS).dataset
    (folder,) = (cleaned_by_loss / CLEANING_DIR).iterdir()
    prompt = prompt_checkpoints.load_prompt_checkpoints(folder / "it1" / "checkpoints")[-1].prompt
    losses = trainer.example_losses(tiny_classifier, prompt, data)
    top = np.argsort(-losses, kind="stable")[:3]
    assert [r["id"] for r in rows[1]] == [data.ids[i] for i in top]
    np.testing.assert_allclose([float(r["score"]) for r in rows[1]], losses[top], rtol=1e-5)
    for r in rows[1]:
        i = data.ids.index(r["id"])
        assert r["given_label"] == data.class_names[data.labels[i]] and r["text"] == data.texts[i]
        assert r["suggested_label"] != r["given_label"]

    removed = {r["id"] for r in flagged(cleaned_by_loss)}
    assert jsonl_lines(cleaned_by_loss / "cleaned.jsonl") == [
        line for line in jsonl_lines(JSONL) if json.loads(line)["uid"] not in removed]  # byte for byte


def test_a_rerun_trains_nothing_and_a_kept_example_is_never_flagged_again(cleaned_by_loss, tiny_classifier, tmp_path):
    before = flagged(cleaned_by_loss)
    states = sorted((cleaned_by_loss / CLEANING_DIR).glob("*/it*/state.json"))
    stamps = [p.stat().st_mtime_ns for p in states]
    clean(cleaned_by_loss, tiny_classifier, JSONL, strategy="loss")
    assert flagged(cleaned_by_loss) == before
    assert sorted((cleaned_by_loss / CLEANING_DIR).glob("*/it*/state.json")) == states
    assert [p.stat().st_mtime_ns for p in states] == stamps

    first = by_iteration(before)[1]
    decisions = write_decisions(tmp_path / "decisions.json", {"id": first[0]["id"], "action": "keep"})
    clean(cleaned_by_loss, tiny_classifier, JSONL, strategy="loss", decisions_file=str(decisions))
    again = by_iteration(flagged(cleaned_by_loss))
    assert first[0]["id"] not in {r["id"] for v in again.values() for r in v}  # neither iteration flags it
    assert [r["id"] for r in again[1][:2]] == [r["id"] for r in first[1:]]  # keep trains the same: next in line
    assert first[0]["id"] in {json.loads(line)["uid"] for line in jsonl_lines(cleaned_by_loss / "cleaned.jsonl")}


def test_csv_relabels_in_its_own_columns_with_a_persons_decisions_first(tmp_path, tiny_classifier):
    decisions = write_decisions(tmp_path / "decisions.json", {"id": "3", "action": "remove"},
                                {"id": "4", "action": "relabel", "label": "spam"}, {"id": "6", "action": "keep"})
    workdir = clean(tmp_path / "w", tiny_classifier, CSV, strategy="loss", decisions_file=str(decisions),
                    recovery=RecoveryConfig(iterations=2, flag_count=3, action="relabel"))
    rows = flagged(workdir)
    assert len(rows) == 6 and not {r["id"] for r in rows} & {"3", "4", "6"}  # removed or reviewed
    with open(CSV, newline="") as f:
        reader = csv.reader(f)
        header, records = next(reader), list(reader)
    expected = {str(line): dict(zip(header, record)) for line, record in enumerate(records, 2)}  # ids: line numbers
    del expected["3"]
    expected["4"]["tag"] = "spam"
    for row in rows:  # relabelled to the suggestion, in order (iteration 2 may flip one back)
        expected[row["id"]]["tag"] = row["suggested_label"]
    with open(workdir / "cleaned.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == header
        assert list(reader) == list(expected.values())


def test_an_influence_strategy_holds_out_v_and_ranks_by_its_own_score(cleaned_by_tracin_by_label):
    rows = flagged(cleaned_by_tracin_by_label)
    scores = [float(r["score"]) for r in rows]
    assert len(rows) == 3 and scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    (folder,) = (cleaned_by_tracin_by_label / CLEANING_DIR).iterdir()
    state = json.loads((folder / "it1" / "state.json").read_text())
    assert state["n_train"] == 18 and state["misclassified"]  # 24 - 6 held out; V has errors to explain
    held_out = {m["id"] for m in state["misclassified"]}
    assert not held_out & {r["id"] for r in rows} and (folder / "it1" / "explanations.npz").exists()


def test_find_label_issues_ranks_every_example_without_a_validation_split(tiny_classifier):
    data = read_labelled_file(JSONL, class_names=("ham", "spam"), **JSONL_COLUMNS).dataset
    config = trainer.TrainConfig(optimizer="adam", learning_rate=0.05, batch_size=8, num_steps=6,
                                 checkpoint_every=3, select_by="last")
    issues = cleaning.find_label_issues(tiny_classifier, data, "random", train_config=config,
                                        exclude_ids=["m03"])
    assert sorted(issues.ids) == sorted(set(data.ids) - {"m03"}) and list(issues.scores) == sorted(issues.scores)[::-1]
    np.testing.assert_array_equal(issues.given, data.labels[issues.indices])
    assert [r["rank"] for r in issues.rows()] == list(range(1, len(data)))


def docs_python_example() -> str:
    """The Python block of docs/cleaning.md, as a user would copy it."""
    section = (REPO / "docs" / "cleaning.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


def test_the_docs_example_runs_on_a_user_written_flax_model_and_tiled_names_vmap(capsys):
    code = docs_python_example()
    assert len(code.splitlines()) <= 20 and "flax.linen as nn" in code and "gbair.classifiers" not in code
    namespace: dict = {}
    exec(compile(code, "docs/cleaning.md", "exec"), namespace)  # pylint: disable=exec-used
    issues, data = namespace["issues"], namespace["data"]
    assert "'rank': 1" in capsys.readouterr().out
    held_out = int(round(0.2 * len(data)))
    assert len(issues) == len(data) - held_out and len(set(issues.ids)) == len(issues)
    assert list(issues.scores) == sorted(issues.scores, reverse=True)
    # The same model under the default per-example gradients: one line naming the fix, before any training.
    import gbair

    with pytest.raises(UserError, match=r"method='tiled'.*\[B, P, E\].*pass method='vmap'"):
        gbair.find_label_issues(namespace["model"], data, strategy="tracin_by_label")


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", "\n\n", r"empty\.jsonl: no examples \(the file is empty\)"),
    ("empty.csv", "", r"empty\.csv: no examples"),
    ("missing.jsonl", '{"uid": "a", "body": "x", "category": "ham"}\n{"uid": "b", "body": "y"}\n',
     r"missing\.jsonl: line 2: no column 'category'"),
    ("missing.csv", "uid,body\na,x\n", r"missing\.csv: line 2: no column 'category'"),
    ("unknown.csv", "uid,body,category\na,x,ham\nb,y,hamm\n",
     r"unknown\.csv: line 3, column 'category': label 'hamm' is not one of CLASS_NAMES \['ham', 'spam'\]"),
    ("dup.jsonl", '{"uid": "a", "body": "x", "category": "ham"}\n\n{"uid": "a", "body": "y", "category": "spam"}\n',
     r"dup\.jsonl: line 3, column 'uid': id 'a' is also on line 1; expected unique ids"),
    ("bad.jsonl", '{"uid": "a", "body": "x", "category": "ham"}\n[1, 2]\n', r"bad\.jsonl: line 2: expected a JSON object"),
    ("text.jsonl", '{"uid": "a", "body": 3, "category": "ham"}\n', r"text\.jsonl: line 1, column 'body': 3 is not text"),
])
def test_bad_input_is_one_line_naming_file_line_and_column(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(UserError, match=message) as raised:
        read_labelled_file(tmp_path / name, class_names=("ham", "spam"), **JSONL_COLUMNS)
    assert "\n" not in str(raised.value)


def test_the_job_stops_on_bad_input_before_any_training(tmp_path, tiny_classifier):
    (tmp_path / "dup.csv").write_text("uid,body,category\na,x,ham\nb,y,spam\na,z,ham\n")
    with pytest.raises(UserError, match=re.escape(f"{tmp_path / 'dup.csv'}: line 4, column 'uid': id 'a' is also on "
                                                  f"line 2; expected unique ids")):
        clean(tmp_path / "w", tiny_classifier, tmp_path / "dup.csv", id_column="uid", text_column="body",
              label_column="category")
    assert not (tmp_path / "w").exists()  # nothing trained, nothing recorded


@pytest.mark.parametrize("through_seqio", [False, True])
def test_a_dataset_configs_splits_are_cleaned_with_their_validation_split_for_checkpoints(tmp_path, tiny_classifier,
                                                                                          through_seqio):
    from gbair.data import seqio_tasks
    from tests.toy_model import toy_spam_splits

    splits = toy_spam_splits(train=12, validation=6, test=2)
    provider = lambda: splits  # noqa: E731  (the embedded corpus's spam_assassin_splits, in small)
    if through_seqio:  # a seqio task, as configs/datasets/bad.gin's bad_splits reads one
        seqio_tasks.register_safety_task("gbair_test_clean", lambda: splits)
        provider = lambda: seqio_tasks.seqio_splits("gbair_test_clean")  # noqa: E731
    jobs.clean(str(tmp_path), model=tiny_classifier, splits=provider, strategy="loss",
               train_config=trainer.TrainConfig(optimizer="adam", learning_rate=0.05, batch_size=8, num_steps=4,
                                                checkpoint_every=2, select_by="loss"),
               recovery=RecoveryConfig(iterations=1, flag_count=2))
    (folder,) = (tmp_path / CLEANING_DIR).iterdir()
    state = json.loads((folder / "it1" / "state.json").read_text())
    assert state["n_train"] == 12  # all of train is cleaned; the checkpoint is chosen on the validation split
    expected = trainer.evaluate(tiny_classifier, trainer.select_checkpoint(
        prompt_checkpoints.load_prompt_checkpoints(folder / "it1" / "checkpoints"), "loss").prompt, splits["validation"])
    assert state["validation"] == pytest.approx(expected)
    removed = {r["id"] for r in flagged(tmp_path)}
    cleaned = [json.loads(line) for line in jsonl_lines(tmp_path / "cleaned.jsonl")]
    assert len(removed) == 2 and [c["id"] for c in cleaned] == [i for i in splits["train"].ids if i not in removed]
    assert set(cleaned[0]) == {"id", "text", "label"}


def test_clean_gin_runs_the_cleaning_job_with_loss_on_the_embedded_corpus_by_default():
    import gin

    from gbair import config

    config.parse(["configs/runs/clean.gin"], [])
    assert gin.query_parameter("execute.job").selector == "clean"
    assert gin.query_parameter("%STRATEGY") == "loss"
    assert gin.query_parameter("%DATA_FILE") is None
    assert gin.query_parameter("clean.splits").selector == "spam_assassin_splits"
    gin.clear_config()
    config.parse(["configs/runs/clean.gin", "configs/datasets/bad.gin"], ["clean.splits = @bad_splits"])
    assert gin.query_parameter("clean.splits").selector == "bad_splits"  # a seqio task's splits, as documented
    assert gin.query_parameter("%CLASS_NAMES") == ["ok", "not ok"]
    assert gin.query_parameter("TrainConfig.select_by") == "last"  # loss then needs no validation split
    gin.clear_config()
