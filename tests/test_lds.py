"""experiments/lds.py's score: Spearman over subsets of summed attribution against the retrained margin."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
from lds import linear_datamodeling_scores  # noqa: E402


def test_a_linear_datamodel_scores_one_and_its_negation_minus_one():
    rng = np.random.default_rng(0)
    members = (rng.random((40, 30)) < 0.5).astype(np.float64)  # [J, N]
    scores = rng.normal(size=(30, 5))  # [N, |V|]
    truth = members @ scores + 7.0  # margins exactly linear in the subset
    np.testing.assert_allclose(linear_datamodeling_scores(members, scores, truth), 1.0)
    np.testing.assert_allclose(linear_datamodeling_scores(members, -scores, truth), -1.0)


def test_unrelated_margins_score_near_zero_and_constant_queries_are_dropped():
    rng = np.random.default_rng(1)
    members = (rng.random((2000, 30)) < 0.5).astype(np.float64)
    scores = rng.normal(size=(30, 3))
    truth = rng.normal(size=(2000, 3))
    truth[:, 2] = 1.5  # a query whose margin never moves: its correlation is undefined
    per_v = linear_datamodeling_scores(members, scores, truth)
    assert per_v.shape == (3,) and np.isnan(per_v[2])
    assert np.all(np.abs(per_v[:2]) < 0.1)


def test_the_score_is_rank_based():
    rng = np.random.default_rng(2)
    members = (rng.random((50, 20)) < 0.5).astype(np.float64)
    scores = rng.normal(size=(20, 4))
    linear = members @ scores
    assert linear_datamodeling_scores(members, scores, np.exp(linear)) == pytest.approx(np.ones(4))


def test_the_lds_table_in_results_md_is_the_committed_one():
    root = Path(__file__).parents[1] / "experiments"
    committed = (root / "evidence" / "lds.md").read_text().split("\n\n")
    table = next(block for block in committed if block.startswith("| method | LDS |"))
    assert table.count("\n") >= 3
    assert table in (root / "RESULTS.md").read_text()
