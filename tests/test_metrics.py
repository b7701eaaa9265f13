"""gbair's numpy metrics against scikit-learn (an independent implementation)."""

import numpy as np
import pytest
from sklearn import metrics as skm

from gbair.train.metrics import binary_auc, classification_metrics


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn(num_classes, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, 200)
    logits = rng.standard_normal((200, num_classes)) + 1.5 * np.eye(num_classes)[labels]
    logits = np.round(logits, 1)  # force ties in the scores
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    got = classification_metrics(labels, probs)
    predictions = probs.argmax(1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(labels, predictions))
    if num_classes == 2:
        assert got["f1"] == pytest.approx(skm.f1_score(labels, predictions))
        assert got["auc"] == pytest.approx(skm.roc_auc_score(labels, probs[:, 1]))
    else:
        assert got["f1"] == pytest.approx(skm.f1_score(labels, predictions, average="macro"))
        assert got["auc"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def test_auc_undefined_with_one_class():
    assert binary_auc(np.ones(4, bool), np.arange(4.0)) is None
