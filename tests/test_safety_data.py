"""Tests for gbair.data.safety (ParlAI safety, BAD, TFDS toxicity) and gbair.data.seqio_tasks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gin
import numpy as np
import pytest

from gbair.data import safety, seqio_tasks
from gbair.data.safety import (
    BAD_DIR,
    load_bad,
    load_parlai_single_turn,
    parse_parlai_line,
    split_off,
    stratified_subset,
    tfds_toxicity_examples,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "safety"
PARLAI_JSON = FIXTURES / "single_turn_safety.json"


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def _bad_copy(tmp_path: Path) -> Path:
    """A writable copy of the BAD fixture folder; returns the data_dir to pass to load_bad."""
    shutil.copytree(FIXTURES / BAD_DIR, tmp_path / BAD_DIR)
    return tmp_path


# ---------------------------------------------------------------- ParlAI single-turn safety


def test_parlai_single_turn_records():
    splits = load_parlai_single_turn(PARLAI_JSON)
    assert list(splits) == ["train", "validation", "test"]
    train = splits["train"]
    assert train.class_names == ("ok", "not ok")
    assert len(train) == 12  # 3 rounds x (2 good + 2 bad)
    got = {i: (train.texts[k], int(train.labels[k]), train.groups[k]) for k, i in enumerate(train.ids)}
    assert got["standard/train/1/good[0]"] == ("I love the café down the street ☕", 0, "standard/round1")
    assert got["standard/train/1/bad[0]"] == ("You are a worthless idiot 😡", 1, "standard/round1")
    assert got["standard/train/1/bad[1]"] == ('He said "go away" and slammed the door.', 1, "standard/round1")
    assert got["standard/train/2/good[1]"] == ("standard train round 2 good example 1", 0, "standard/round2")
    assert train.ids[:4] == (
        "standard/train/1/good[0]", "standard/train/1/good[1]", "standard/train/1/bad[0]", "standard/train/1/bad[1]"
    )
    assert splits["validation"].ids[0] == "standard/valid/1/good[0]"


def test_parlai_kind_rounds_and_folder_path():
    test = load_parlai_single_turn(FIXTURES, kind="adversarial", rounds=(3,))["test"]  # folder and int round
    assert test.ids == ("adversarial/test/3/good[0]", "adversarial/test/3/good[1]", "adversarial/test/3/bad[0]")
    assert test.texts[2] == "Maybe some people just don't deserve rights, not saying who…"
    assert test.labels.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match=r"kind must be one of \('standard', 'adversarial'\), got 'adv'"):
        load_parlai_single_turn(PARLAI_JSON, kind="adv")
    with pytest.raises(ValueError, match="rounds must be distinct values from"):
        load_parlai_single_turn(PARLAI_JSON, rounds=("4",))


def _edited_parlai(tmp_path: Path, edit) -> Path:
    data = json.loads(PARLAI_JSON.read_text())
    edit(data)
    path = tmp_path / "single_turn_safety.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("label", ["__notok__", "__maybe__"])
def test_parlai_label_disagreeing_with_bucket(tmp_path, label):
    def edit(data):
        data["standard"]["train"]["1"]["good"][1]["labels"] = [label]

    path = _edited_parlai(tmp_path, edit)
    with pytest.raises(ValueError) as e:
        load_parlai_single_turn(path)
    assert str(e.value) == (
        f"{path}: standard/train/1/good[1]: label {label!r} disagrees with its bucket, expected '__ok__'"
    )


def test_parlai_missing_key_and_file(tmp_path):
    path = _edited_parlai(tmp_path, lambda data: data["standard"]["valid"].pop("2"))
    with pytest.raises(ValueError, match=r"standard/valid: missing key '2', expected ParlAI's layout"):
        load_parlai_single_turn(path)
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:
        load_parlai_single_turn(missing)
    assert str(missing) in str(e.value)
    assert "point data_dir at the folder holding single_turn_safety.json" in str(e.value)


# ---------------------------------------------------------------- BAD


def test_parse_parlai_line_unescapes_and_splits_on_first_colon():
    line = "text:a\\nb\\tc __PIPE__ d\tlabels:__ok__\tbot_persona:your persona: x\tepisode_done:True\t\n"
    assert parse_parlai_line(line) == {
        "text": "a\nb\tc | d", "labels": "__ok__", "bot_persona": "your persona: x", "episode_done": "True"
    }
    # No escape for "\" in the format: "\\n" reads as a backslash then a newline, as in ParlAI.
    assert parse_parlai_line(r"text:C:\\new\Users") == {"text": "C:\\\new\\Users"}
    with pytest.raises(ValueError, match="field 'oops' has no ':', expected key:value"):
        parse_parlai_line("text:x\toops")


def test_bad_records_keep_last_four_turns():
    splits = load_bad(FIXTURES)
    assert list(splits) == ["train", "validation", "test"]
    train = splits["train"]
    assert train.class_names == ("ok", "not ok")
    assert train.ids == ("train:1", "train:2", "train:3", "train:5", "train:6")  # line 4 is blank
    assert train.texts[0] == (
        "Fine. Do you like cats?\nI do | they are great\nWhat about\tdogs?\nDogs are dumb and so are you."
    )
    assert train.texts[1] == "Tell me a secret.\nI keep my files in C:\\Users\\bot — shh!"
    assert train.texts[2] == "What's your favourite food?"
    assert train.texts[3] == "e\nf\ng\nPeople like you should be locked up 🙃"
    assert train.texts[4] == (
        "Sure, what subject?\nMaths: 3|4 means?\nIt means 3 divides 4, which is false.\nThanks, café later?"
    )
    assert train.labels.tolist() == [1, 0, 0, 1, 0]
    assert train.groups == ("bot", "bot", "human", "human", "human")
    assert [len(splits[s]) for s in ("validation", "test")] == [2, 3]
    assert splits["test"].texts[1] == "Say something mean.\nNo.\nPlease?\nFine: you smell\tbad."


def test_bad_turn_window():
    all_turns = load_bad(FIXTURES, last_n_turns=None)["train"]
    assert all_turns.texts[3] == "a\nb\nc\nd\ne\nf\ng\nPeople like you should be locked up 🙃"
    assert load_bad(FIXTURES, last_n_turns=1)["train"].texts[0] == "Dogs are dumb and so are you."
    with pytest.raises(ValueError, match="last_n_turns must be a positive int or None, got 0"):
        load_bad(FIXTURES, last_n_turns=0)


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("text:hello\tlabels:__ok__\tbroken field", "field 'broken field' has no ':', expected key:value"),
        ("text:hello\tepisode_done:True", "no 'labels' field, expected text:... and labels:__ok__ or __notok__"),
        ("labels:__ok__\tepisode_done:True", "no 'text' field, expected text:... and labels:__ok__ or __notok__"),
        ("text:hello\tlabels:__maybe__", "unknown label '__maybe__', expected __ok__ or __notok__"),
    ],
)
def test_bad_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    data_dir = _bad_copy(tmp_path)
    path = data_dir / BAD_DIR / "valid.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], bad_line, *lines[1:]]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_bad(data_dir)
    assert str(e.value) == f"{path}:2: {message}"


def test_bad_missing_file(tmp_path):
    data_dir = _bad_copy(tmp_path)
    (data_dir / BAD_DIR / "test.txt").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_bad(data_dir)
    assert str(data_dir / BAD_DIR / "test.txt") in str(e.value)
    assert f"point data_dir at the folder holding {BAD_DIR}/" in str(e.value)


# ---------------------------------------------------------------- TFDS toxicity


def test_tfds_converter_threshold_and_ids():
    examples = [
        {"text": b"caf\xc3\xa9 is nice", "toxicity": np.float32(0.0), "id": b"101"},
        {"text": b"borderline", "toxicity": np.float32(0.5), "id": b"102"},
        {"text": b"almost", "toxicity": np.float32(0.4999), "id": b"103"},
        {"text": b"awful", "toxicity": np.float32(1.0)},
    ]
    ds = tfds_toxicity_examples(examples, split="train", group="civil_comments")
    assert ds.class_names == ("non-toxic", "toxic")
    assert ds.ids == ("train:101", "train:102", "train:103", "train:3")
    assert ds.texts == ("café is nice", "borderline", "almost", "awful")
    assert ds.labels.tolist() == [0, 1, 0, 1]  # exactly 0.5 counts as toxic
    assert ds.groups == ("civil_comments",) * 4
    strict = tfds_toxicity_examples(examples, split="train", group="g", threshold=0.6)
    assert strict.labels.tolist() == [0, 0, 0, 1]


@pytest.mark.parametrize(
    "example, message",
    [
        ({"text": b"x", "toxicity": np.float32(1.5)}, r"g test example 0: expected 'toxicity' in \[0, 1\], got 1.5"),
        ({"text": b"x"}, r"g test example 0: expected a float 'toxicity' in \[0, 1\], got None"),
        ({"text": b"\xff", "toxicity": 0.0}, "g test example 0: text is not UTF-8"),
    ],
)
def test_tfds_converter_errors(example, message):
    with pytest.raises(ValueError, match=message):
        tfds_toxicity_examples([example], split="test", group="g")


def test_tfds_not_prepared(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        safety.load_tfds_toxicity("wikipedia_toxicity_subtypes", tmp_path)
    msg = str(e.value)
    assert "'wikipedia_toxicity_subtypes' is not prepared" in msg and str(tmp_path) in msg
    assert "tfds build wikipedia_toxicity_subtypes" in msg and "network access" in msg


def test_split_off_and_subset_are_stratified_and_in_file_order():
    examples = [{"text": f"t{i}".encode(), "toxicity": float(i % 4 == 0)} for i in range(40)]  # 10 toxic
    ds = tfds_toxicity_examples(examples, split="train", group="g")
    rest, held = split_off(ds, 0.2, seed=0)
    assert (len(rest), len(held)) == (32, 8)
    assert held.class_counts().tolist() == [6, 2]
    assert set(rest.ids).isdisjoint(held.ids) and len(set(rest.ids) | set(held.ids)) == 40
    assert list(held.ids) == sorted(held.ids, key=ds.ids.index)
    assert split_off(ds, 0.2, seed=0)[1] == held and split_off(ds, 0.2, seed=1)[1] != held
    sub = stratified_subset(ds, 8, seed=0)
    assert sub.class_counts().tolist() == [6, 2]
    assert list(sub.ids) == sorted(sub.ids, key=ds.ids.index)
    assert stratified_subset(ds, None, seed=0) is ds and stratified_subset(ds, 100, seed=0) is ds


# ---------------------------------------------------------------- seqio


def test_seqio_round_trip_matches_parser():
    expected = load_bad(FIXTURES)
    task = seqio_tasks.register_safety_task("gbair_test_bad", lambda: expected)
    assert set(task.splits) == {"train", "validation", "test"}
    raw = next(task.get_dataset(split="train", shuffle=False).as_numpy_iterator())
    assert raw["id"] == b"train:1" and raw["label"] == 1 and raw["targets"] == b"not ok"
    assert raw["text"].decode() == expected["train"].texts[0]
    assert seqio_tasks.seqio_splits("gbair_test_bad") == expected


def test_register_replaces_task_of_same_name():
    seqio_tasks.register_safety_task("gbair_test_replace", lambda: load_bad(FIXTURES))
    seqio_tasks.register_safety_task("gbair_test_replace", lambda: load_bad(FIXTURES, last_n_turns=1))
    assert seqio_tasks.seqio_splits("gbair_test_replace")["train"].texts[0] == "Dogs are dumb and so are you."


def test_providers_through_gin(clean_gin):
    from gbair import config  # pylint: disable=import-outside-toplevel  (registers the providers)

    config.parse([], ["SPLITS = @parlai_safety_splits()", f"parlai_safety_splits.data_dir = '{FIXTURES}'",
                      "parlai_safety_splits.kind = 'adversarial'", "parlai_safety_splits.max_examples_per_split = 4"])
    splits = gin.query_parameter("%SPLITS").scoped_configurable_fn()  # what a job's SPLITS gives
    full = load_parlai_single_turn(PARLAI_JSON, kind="adversarial")
    for name, ds in splits.items():
        assert len(ds) == 4 and ds.class_counts().tolist() == [2, 2]
        assert ds == full[name].by_ids(sorted(ds.ids, key=full[name].ids.index))
    assert seqio_tasks.bad_splits(data_dir=str(FIXTURES)) == load_bad(FIXTURES)
