"""gbair's numpy metrics against scikit-learn (an independent implementation)."""

import numpy as np
import pytest
from sklearn import metrics as skm

from gbair.train.metrics import average_precision, binary_auc, classification_metrics, detection_metrics


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
    assert got["loss"] == pytest.approx(skm.log_loss(labels, probs))
    if num_classes == 2:
        assert got["f1"] == pytest.approx(skm.f1_score(labels, predictions))
        assert got["auc"] == pytest.approx(skm.roc_auc_score(labels, probs[:, 1]))
    else:
        assert got["f1"] == pytest.approx(skm.f1_score(labels, predictions, average="macro"))
        assert got["auc"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def test_auc_undefined_with_one_class():
    assert binary_auc(np.ones(4, bool), np.arange(4.0)) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_detection_metrics_match_sklearn_and_a_count(seed):
    rng = np.random.default_rng(seed)
    corrupted = rng.random(300) < 0.3
    suspicion = np.round(rng.standard_normal(300) + 1.2 * corrupted, 1)  # ties on purpose
    flagged = np.argsort(-suspicion, kind="stable")[:40]
    got = detection_metrics(corrupted, suspicion, flagged)
    assert got["detection_auroc"] == pytest.approx(skm.roc_auc_score(corrupted, suspicion))
    assert got["detection_ap"] == pytest.approx(skm.average_precision_score(corrupted, suspicion))
    hits = sum(bool(corrupted[i]) for i in flagged)
    assert got["precision_at_k"] == hits / 40 and got["recall_at_k"] == hits / corrupted.sum()


def test_detection_metrics_undefined_without_corrupted_labels():
    got = detection_metrics(np.zeros(5, bool), np.arange(5.0), np.array([4, 3]))
    assert got == {"detection_auroc": None, "detection_ap": None, "precision_at_k": 0.0, "recall_at_k": None}
    assert average_precision(np.array([True, False]), np.array([0.5, 0.5])) == 0.5  # one tie group
