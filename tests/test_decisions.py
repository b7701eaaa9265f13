"""Applying a decisions file changes exactly the chosen labels; a malformed file changes nothing."""

import json

import numpy as np
import pytest

from gbair.data.dataset import TextDataset
from gbair.data.decisions import apply_decisions

DATA = TextDataset(("a", "b", "c", "d"), ("ta", "tb", "tc", "td"), np.array([0, 1, 0, 1]), ("g",) * 4,
                   ("ham", "spam"))


def write(tmp_path, obj):
    path = tmp_path / "decisions.json"
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_decisions_change_exactly_the_chosen_examples(tmp_path):
    path = write(tmp_path, {"decisions": [{"id": "b", "action": "relabel", "label": "ham"},
                                          {"id": "c", "action": "remove"}, {"id": "d", "action": "keep"}]})
    out = apply_decisions(DATA, path)
    assert out.ids == ("a", "b", "d") and out.labels.tolist() == [0, 0, 1] and out.texts == ("ta", "tb", "td")


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read decisions JSON"),
    ({"decision": []}, 'expected an object {"decisions"'),
    ({"decisions": [{"id": "zzz", "action": "remove"}]}, "decisions\\[0\\]: id 'zzz' is not in the training set"),
    ({"decisions": [{"id": "a", "action": "relabel", "label": "eggs"}]}, "label 'eggs', expected one of"),
    ({"decisions": [{"id": "a", "action": "burn"}]}, "action 'burn'"),
    ({"decisions": [{"id": "a", "action": "keep"}, {"id": "a", "action": "remove"}]}, "second decision"),
])
def test_malformed_file_is_rejected_whole(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(ValueError, match=message):
        apply_decisions(DATA, path)
    assert DATA.labels.tolist() == [0, 1, 0, 1] and len(DATA) == 4  # nothing applied


def test_a_good_entry_before_a_bad_one_is_not_applied(tmp_path):
    path = write(tmp_path, {"decisions": [{"id": "a", "action": "relabel", "label": "spam"},
                                          {"id": "nope", "action": "remove"}]})
    with pytest.raises(ValueError, match="'nope'"):
        apply_decisions(DATA, path)
