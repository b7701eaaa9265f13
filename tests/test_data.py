"""Tests for gbair.data: TextDataset, stratified_split and the SpamAssassin loader."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from gbair import UserError
from gbair.data import spam_assassin
from gbair.data.dataset import TextDataset, stratified_split
from gbair.data.spam_assassin import GROUPS, LoadReport, load_spam_assassin

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "spam_assassin"

# (id, label, text) of every fixture message that should load, in load order.
EXPECTED = [
    ("easy-ham-1/00001", 0, "Meeting notes\nHi Bob, the meeting moved to Tuesday. Alice"),
    ("easy-ham-1/00002", 0, "Build status\nThe nightly build passed."),
    ("easy-ham-1/00003", 0, "Café menu\nLe café est prêt, à bientôt."),
    ("easy-ham-2/00001", 0, "CV\nRésumé attached."),
    ("hard-ham-1/00001", 0, "Naive question\nA naïve question about sockets."),
    ("spam-1/00001", 1, "You WON!!!\nClaim your $1,000 prize Fish & chips <today> only, café!"),
    ("spam-2/00001", 1, "Gewinnen Sie 100 €\nJetzt klicken: für nur 100 €!"),
    ("spam-2/00002", 1, "Cheap meds\nLowest prices here"),
]


def _file(group: str, msg_id: str, suffix: str = ".json") -> Path:
    (path,) = (FIXTURES / group).glob(f"{msg_id}.*{suffix}")
    return path


def _name(group: str, msg_id: str) -> str:
    return f"{group}/{_file(group, msg_id).name}"


def _toy(labels: list[int], class_names: tuple[str, ...] = ("a", "b", "c")) -> TextDataset:
    n = len(labels)
    return TextDataset(
        ids=tuple(f"x/{i:05d}" for i in range(n)),
        texts=tuple(f"text {i}" for i in range(n)),
        labels=np.array(labels, dtype=np.int64),
        groups=tuple("g" for _ in range(n)),
        class_names=class_names,
    )


# ---------------------------------------------------------------- TextDataset


def test_dataset_columns_and_readonly_labels():
    source = np.array([0, 1, 1])
    ds = _toy(list(source), ("ham", "spam"))
    assert len(ds) == 3
    assert ds.labels.dtype == np.int32
    assert ds.labels.tolist() == [0, 1, 1]
    assert not ds.labels.flags.writeable
    with pytest.raises(ValueError):
        ds.labels[0] = 1
    assert ds.class_counts().tolist() == [1, 2]
    assert repr(ds) == "TextDataset(n=3, class_counts={'ham': 1, 'spam': 2})"


def test_dataset_copies_label_array():
    labels = np.array([0, 1], dtype=np.int32)
    ds = TextDataset(ids=("a", "b"), texts=("x", "y"), labels=labels, groups=("g", "g"), class_names=("n", "p"))
    labels[0] = 1
    assert ds.labels.tolist() == [0, 1]


def test_dataset_lists_become_tuples():
    ds = TextDataset(ids=["a"], texts=["x"], labels=[1], groups=["g"], class_names=["n", "p"])
    assert ds.ids == ("a",) and ds.texts == ("x",) and ds.groups == ("g",) and ds.class_names == ("n", "p")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(texts=("x",)), ValueError, "TextDataset.texts: expected 2 entries"),
        (dict(labels=[0]), ValueError, "TextDataset.labels: expected 2 entries"),
        (dict(groups=("g", "g", "g")), ValueError, "TextDataset.groups: expected 2 entries"),
        (dict(ids=("a", "a")), ValueError, "expected unique ids, 'a'"),
        (dict(labels=[0, 2]), ValueError, r"expected values in \[0, 2\).*got 2"),
        (dict(labels=[-1, 0]), ValueError, "got -1"),
        (dict(labels=[0.0, 1.0]), TypeError, "expected integers, got dtype float64"),
        (dict(labels=[[0, 1]]), ValueError, "expected a 1-D array"),
        (dict(class_names=()), ValueError, "at least one class name"),
        (dict(class_names=("n", "n")), ValueError, "expected unique names"),
        (dict(texts=("x", 3)), TypeError, r"TextDataset.texts\[1\]: expected str, got int"),
    ],
)
def test_dataset_validation(kwargs, error, match):
    base = dict(ids=("a", "b"), texts=("x", "y"), labels=[0, 1], groups=("g", "g"), class_names=("n", "p"))
    with pytest.raises(error, match=match):
        TextDataset(**{**base, **kwargs})


def test_dataset_equality_by_value():
    assert _toy([0, 1, 2]) == _toy([0, 1, 2])
    assert _toy([0, 1, 2]) != _toy([0, 1, 1])
    with pytest.raises(TypeError):
        hash(_toy([0]))


def test_subset_keeps_index_order():
    ds = _toy([0, 1, 2, 0, 1])
    sub = ds.subset([4, 0, 2])
    assert sub.ids == ("x/00004", "x/00000", "x/00002")
    assert sub.texts == ("text 4", "text 0", "text 2")
    assert sub.labels.tolist() == [1, 0, 2]
    assert sub.class_names == ds.class_names
    assert len(ds.subset(np.array([], dtype=int))) == 0


@pytest.mark.parametrize(
    "indices, error, match",
    [
        ([0, 5], IndexError, r"expected indices in \[0, 5\), got 5"),
        ([-1], IndexError, "got -1"),
        ([1, 1], ValueError, "expected unique indices"),
        ([0.0], TypeError, "expected integers"),
    ],
)
def test_subset_errors(indices, error, match):
    with pytest.raises(error, match=match):
        _toy([0, 1, 2, 0, 1]).subset(indices)


def test_with_labels():
    ds = _toy([0, 1, 2])
    relabelled = ds.with_labels([2, 2, 0])
    assert relabelled.labels.tolist() == [2, 2, 0]
    assert relabelled.ids == ds.ids and relabelled.texts == ds.texts
    assert ds.labels.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="expected 3 labels, got shape"):
        ds.with_labels([0, 1])
    with pytest.raises(ValueError, match="got 3"):
        ds.with_labels([0, 1, 3])


# ------------------------------------------------------------ stratified_split


def _check_split(ds: TextDataset, sizes: dict[str, int], splits: dict[str, TextDataset]) -> None:
    assert list(splits) == list(sizes)
    all_ids = [i for s in splits.values() for i in s.ids]
    assert len(all_ids) == len(set(all_ids)), "splits overlap"
    assert set(all_ids) <= set(ds.ids)
    full = ds.class_counts()
    for name, split in splits.items():
        assert len(split) == sizes[name]
        ideal = sizes[name] * full / len(ds)
        assert np.all(np.abs(split.class_counts() - ideal) < 1), (name, split.class_counts(), ideal)
        # Each example keeps its own label.
        index = {i: k for k, i in enumerate(ds.ids)}
        assert [int(ds.labels[index[i]]) for i in split.ids] == split.labels.tolist()


def test_stratified_split_invariants():
    ds = _toy([0] * 50 + [1] * 30 + [2] * 17)
    sizes = {"train": 60, "val": 20, "test": 10}
    splits = stratified_split(ds, sizes, seed=0)
    _check_split(ds, sizes, splits)
    assert splits["train"].class_counts().tolist() == [31, 19, 10]  # ideal 30.9, 18.6, 10.5
    # Shuffled within a split: neither in index order nor grouped by class.
    train = splits["train"]
    assert list(train.ids) != sorted(train.ids)
    assert train.labels.tolist() != sorted(train.labels.tolist())


def test_balanced_splits_are_half_and_half_at_the_requested_sizes():
    ds = _toy([0] * 70 + [1] * 31, class_names=("a", "b"))
    sizes = {"train": 40, "validation": 11, "test": 10}
    splits = stratified_split(ds, sizes, seed=0, balanced=True)
    all_ids = [i for s in splits.values() for i in s.ids]
    assert len(all_ids) == len(set(all_ids)), "splits overlap"
    assert {name: split.class_counts().tolist() for name, split in splits.items()} == {
        "train": [20, 20], "validation": [6, 5], "test": [5, 5]}
    index = {i: k for k, i in enumerate(ds.ids)}
    for split in splits.values():
        assert [int(ds.labels[index[i]]) for i in split.ids] == split.labels.tolist()
    assert splits["train"].ids != stratified_split(ds, sizes, seed=1, balanced=True)["train"].ids
    with pytest.raises(UserError, match=r"too few of \['b'\]"):
        stratified_split(ds, {"train": 64}, seed=0, balanced=True)  # 32 of class 1 needed, 31 exist


def test_stratified_split_is_deterministic_in_seed():
    ds = _toy([0] * 50 + [1] * 30 + [2] * 17)
    sizes = {"train": 60, "val": 20}
    first = stratified_split(ds, sizes, seed=3)
    assert stratified_split(ds, sizes, seed=3) == first
    other = stratified_split(ds, sizes, seed=4)
    assert other["train"].ids != first["train"].ids
    assert set(other["val"].ids) != set(first["val"].ids)


def test_stratified_split_uses_every_example_when_sizes_sum_to_n():
    ds = _toy([0] * 7 + [1] * 3)
    splits = stratified_split(ds, {"a": 5, "b": 5}, seed=0)
    _check_split(ds, {"a": 5, "b": 5}, splits)
    assert sorted(splits["a"].ids + splits["b"].ids) == sorted(ds.ids)


def test_stratified_split_never_overdraws_a_class():
    # Rounding each split alone would give every split a "b" (ideal 2/3 each); only 2 exist.
    ds = _toy([0, 1, 1])
    splits = stratified_split(ds, {"x": 1, "y": 1, "z": 1}, seed=0)
    assert sorted(int(s.labels[0]) for s in splits.values()) == [0, 1, 1]


def test_stratified_split_random_configurations():
    rng = np.random.default_rng(123)
    for trial in range(200):
        counts = rng.integers(0, 12, size=rng.integers(1, 5))
        n = int(counts.sum())
        if n == 0:
            continue
        ds = _toy(np.repeat(np.arange(len(counts)), counts).tolist(), tuple(f"c{i}" for i in range(len(counts))))
        cuts = np.sort(rng.integers(0, n + 1, size=rng.integers(1, 5)))
        sizes = {f"s{i}": int(k) for i, k in enumerate(np.diff(cuts, prepend=0))}
        _check_split(ds, sizes, stratified_split(ds, sizes, seed=trial))


def test_stratified_split_zero_sizes_and_empty_dataset():
    ds = _toy([0, 1])
    assert len(stratified_split(ds, {"a": 0}, seed=0)["a"]) == 0
    assert len(stratified_split(_toy([]), {"a": 0}, seed=0)["a"]) == 0


@pytest.mark.parametrize(
    "sizes, error, match",
    [
        ({"a": 3, "b": 2}, ValueError, "sum to 5, more than the 4 examples"),
        ({"a": -1}, ValueError, r"sizes\['a'\] must be >= 0, got -1"),
        ({"a": 1.5}, TypeError, r"sizes\['a'\] must be an int"),
        ({"a": True}, TypeError, r"sizes\['a'\] must be an int"),
    ],
)
def test_stratified_split_errors(sizes, error, match):
    with pytest.raises(error, match=match):
        stratified_split(_toy([0, 1, 0, 1]), sizes, seed=0)


# ------------------------------------------------------------ SpamAssassin


def test_fixtures_are_in_package_format():
    # The lossy record really is lossy and its .txt really matches, so the loader must use the .txt.
    lossy = json.loads(_file("easy-ham-2", "00001").read_bytes())
    assert "\ufffd" in lossy["text"]
    assert hashlib.md5(lossy["text"].encode()).hexdigest() != lossy["checksum"]["value"]
    assert hashlib.md5(_file("easy-ham-2", "00001", ".txt").read_bytes()).hexdigest() == lossy["checksum"]["value"]
    plain = json.loads(_file("easy-ham-1", "00001").read_bytes())
    assert set(plain) == {"id", "group", "checksum", "text"}
    assert hashlib.md5(plain["text"].encode()).hexdigest() == plain["checksum"]["value"]
    assert _file("easy-ham-1", "00001").name == f"00001.{plain['checksum']['value']}.json"


def test_load_fixtures_expected_examples():
    ds, report = load_spam_assassin(FIXTURES)
    assert list(zip(ds.ids, ds.labels.tolist(), ds.texts)) == EXPECTED
    assert ds.groups == tuple(i.split("/")[0] for i, _, _ in EXPECTED)
    assert ds.class_names == ("ham", "spam")
    assert isinstance(report, LoadReport)
    assert (report.n_read, report.n_loaded, report.n_skipped) == (12, 8, 4)


def test_load_fixtures_skip_report():
    _, report = load_spam_assassin(FIXTURES)
    assert report.counts() == {"invalid_record": 2, "checksum_mismatch": 1, "unparsable": 0, "empty": 1}
    assert report.skipped == {
        "invalid_record": (_name("easy-ham-2", "00002"), _name("spam-2", "00003")),
        "checksum_mismatch": (_name("spam-1", "00002"),),
        "unparsable": (),
        "empty": (_name("spam-1", "00003"),),
    }
    assert report.summary() == (
        "SpamAssassin: loaded 8 of 12 messages (2 invalid record, 1 checksum mismatch, "
        f"0 unparsable, 1 empty) from {FIXTURES}"
    )


def test_load_is_deterministic_and_independent_of_group_order():
    first, _ = load_spam_assassin(FIXTURES)
    second, _ = load_spam_assassin(FIXTURES, groups=tuple(reversed(GROUPS)))
    assert first == second


def test_load_group_subset_and_max_chars():
    ds, report = load_spam_assassin(FIXTURES, groups=["spam-2", "easy-ham-1"], max_chars=12)
    assert ds.ids == ("easy-ham-1/00001", "easy-ham-1/00002", "easy-ham-1/00003", "spam-2/00001", "spam-2/00002")
    assert ds.texts[0] == "Meeting note"
    assert all(len(t) <= 12 for t in ds.texts)
    assert report.n_read == 6 and report.counts()["invalid_record"] == 1


def test_parser_failure_is_counted_not_raised(monkeypatch):
    real = spam_assassin.message_text

    def flaky(raw: bytes, max_chars: int) -> str:
        if b"Build status" in raw:
            raise UnicodeError("boom")
        return real(raw, max_chars)

    monkeypatch.setattr(spam_assassin, "message_text", flaky)
    ds, report = load_spam_assassin(FIXTURES)
    assert "easy-ham-1/00002" not in ds.ids and len(ds) == 7
    assert report.skipped["unparsable"] == (_name("easy-ham-1", "00002"),)


def test_record_with_wrong_group_or_checksum_type_is_skipped(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    path = next((data / "easy-ham-1").glob("00001.*.json"))
    record = json.loads(path.read_bytes())
    path.write_text(json.dumps({**record, "group": "spam-1"}))
    path = next((data / "easy-ham-1").glob("00002.*.json"))
    record = json.loads(path.read_bytes())
    path.write_text(json.dumps({**record, "checksum": {"type": "SHA1", "value": record["checksum"]["value"]}}))
    ds, report = load_spam_assassin(data)
    assert report.counts()["invalid_record"] == 4
    assert [i for i in ds.ids if i.startswith("easy-ham-1")] == ["easy-ham-1/00003"]


def test_missing_data_raises_with_install_hint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist; run `python -m gbair.assets`"):
        load_spam_assassin(tmp_path / "nowhere")
    (tmp_path / "spam-1").mkdir()
    with pytest.raises(FileNotFoundError, match=r"easy-ham-1.*does not exist; run `python -m gbair.assets`"):
        load_spam_assassin(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"spam-1.*has no .json records"):
        load_spam_assassin(tmp_path, groups=["spam-1"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_chars=0), "max_chars must be a positive int, got 0"),
        (dict(groups=["../etc"]), "groups must be folder names"),
        (dict(groups=["spam-1", "spam-1"]), "non-empty and unique"),
        (dict(groups=[]), "non-empty and unique"),
    ],
)
def test_load_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_spam_assassin(FIXTURES, **kwargs)


def test_message_text_edge_cases():
    text = spam_assassin.message_text
    assert text(b"Subject: only subject\n\n", 100) == "only subject\n"
    assert text(b"\n\nbody only\n", 100) == "\nbody only"
    assert text(b"Subject: x\nContent-Type: text/plain; charset=us-ascii\n\nsmart \x93quotes\x94\n", 100) == (
        "x\nsmart \u201cquotes\u201d"
    )
    # A multipart message whose boundary never appears still yields its text.
    broken = b'Subject: b\nContent-Type: multipart/mixed; boundary="nope"\n\nplain words\n'
    assert text(broken, 100) == "b\nplain words"
    assert text(b"Subject: ctl\n\na\x00b\x07c\n", 100) == "ctl\na b c"


def _real_corpus_dir() -> Path | None:
    candidates = [Path("/tmp/npmdata/package/data")]
    if os.environ.get("GBAIR_DATA_DIR"):
        candidates.insert(0, Path(os.environ["GBAIR_DATA_DIR"]) / "package" / "data")
    return next((p for p in candidates if p.is_dir()), None)


@pytest.mark.skipif(_real_corpus_dir() is None, reason="SpamAssassin corpus not installed")
def test_real_corpus_counts(caplog):
    with caplog.at_level("INFO"):
        ds, report = load_spam_assassin(_real_corpus_dir())
    # The pinned corpus's one bad record is reported once, as known, and is no warning.
    assert [r.levelname for r in caplog.records if "known bad record" in r.getMessage()] == ["INFO"]
    assert "1 known bad record skipped (listed in gbair.data.spam_assassin.KNOWN_BAD_RECORDS)" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert report.n_read == 6046
    assert report.skipped["checksum_mismatch"] == ("hard-ham-1/00230.244a63cd74c81123ef26129453e32c95.json",)
    assert report.counts() == {"invalid_record": 0, "checksum_mismatch": 1, "unparsable": 0, "empty": 0}
    assert len(ds) == 6045
    assert ds.class_counts().tolist() == [4149, 1896]
    assert all(0 < len(t) <= 2000 for t in ds.texts)


def test_by_ids_follows_the_given_order_and_names_unknown_ids():
    ds = _toy([0, 1, 0, 1])
    picked = ds.by_ids([ds.ids[2], ds.ids[0]])
    assert picked.ids == (ds.ids[2], ds.ids[0]) and picked.labels.tolist() == [0, 0]
    assert ds.positions([ds.ids[3]]).tolist() == [3]
    with pytest.raises(KeyError, match="'nope'"):
        ds.positions(["nope"])


def test_skipped_records_are_a_warning_naming_them(spam_fixture_dir, caplog):
    _, report = spam_assassin.load_spam_assassin(spam_fixture_dir)
    assert report.n_skipped  # the fixtures hold broken records on purpose
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(all(name in message for names in report.skipped.values() for name in names) for message in warnings)


def toy_universe(n: int = 300) -> TextDataset:
    labels = (np.arange(n) % 3 == 0).astype(int)
    return TextDataset(tuple(f"g/{i:04d}" for i in range(n)), tuple(f"text {i}" for i in range(n)), labels,
                       ("g",) * n, ("ham", "spam"))


def split_of(splits):
    return {example_id: name for name, part in splits.items() for example_id in part.ids}


def test_a_skipped_record_leaves_a_gap_instead_of_reshuffling_the_splits():
    full = toy_universe()
    sizes = {"train": 150, "validation": 60, "test": 60}
    universe = list(zip(full.ids, full.labels.tolist()))
    before = split_of(stratified_split(full, sizes, seed=3, universe=universe))
    assert before == split_of(stratified_split(full, sizes, seed=3))  # nothing skipped: today's splits
    skipped = next(i for i in full.ids if before.get(i) == "train")
    rest = full.subset([i for i, example_id in enumerate(full.ids) if example_id != skipped])
    after = split_of(stratified_split(rest, sizes, seed=3, universe=universe))
    moved = [i for i in after if before.get(i) != after[i]]
    assert len(moved) <= 2 * 2  # at most one example per class per split boundary (two boundaries)
    reshuffled = split_of(stratified_split(rest, sizes, seed=3))  # without the universe: everything moves
    assert sum(before.get(i) != reshuffled[i] for i in reshuffled) > 10 * 2 * 2


def test_the_pinned_ids_are_what_the_pinned_corpus_loads():
    from gbair import assets  # pylint: disable=import-outside-toplevel
    from gbair.data import tasks  # pylint: disable=import-outside-toplevel

    dataset, _ = spam_assassin.load_spam_assassin(assets.verified_spam_assassin_dir())
    assert list(dataset.ids) == tasks.PINNED_IDS.read_text().split()
