"""Label corruption: exact counts, only the chosen labels change, deterministic in the seed."""

import numpy as np
import pytest

from gbair.data.corruption import corrupt_labels
from gbair.data.dataset import TextDataset


def dataset(labels, num_classes=2):
    n = len(labels)
    return TextDataset(tuple(map(str, range(n))), ("t",) * n, np.array(labels), ("g",) * n,
                       tuple(f"c{i}" for i in range(num_classes)))


@pytest.mark.parametrize("stratified", [False, True])
@pytest.mark.parametrize("num_classes", [2, 4])
def test_flips_exactly_round_rate_n_and_nothing_else(stratified, num_classes):
    clean = dataset(np.random.default_rng(0).integers(0, num_classes, 101), num_classes)
    for rate in (0.0, 0.1, 0.255, 0.3, 1.0):
        noisy, flipped = corrupt_labels(clean, rate, seed=3, stratified=stratified)
        assert flipped.sum() == int(np.floor(rate * 101 + 0.5))
        np.testing.assert_array_equal(noisy.labels != clean.labels, flipped)  # flipped = changed, exactly
        assert noisy.ids == clean.ids and noisy.texts == clean.texts


def test_stratified_noise_follows_class_sizes():
    clean = dataset([0] * 70 + [1] * 30)
    _, flipped = corrupt_labels(clean, 0.2, seed=0, stratified=True)
    assert flipped[:70].sum() == 14 and flipped[70:].sum() == 6


def test_deterministic_in_seed():
    clean = dataset([0, 1] * 50)
    a, fa = corrupt_labels(clean, 0.3, seed=1)
    b, fb = corrupt_labels(clean, 0.3, seed=1)
    _, fc = corrupt_labels(clean, 0.3, seed=2)
    assert a == b and np.array_equal(fa, fb) and not np.array_equal(fa, fc)


def test_bad_rate():
    with pytest.raises(ValueError, match="rate=1.5"):
        corrupt_labels(dataset([0, 1]), 1.5, seed=0)
