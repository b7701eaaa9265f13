"""Classification metrics from predicted class probabilities (numpy; no sklearn at run time)."""

import numpy as np


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(labels == predictions))


def f1(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """Binary: F1 of class 1. More classes: macro average over classes."""
    classes = [1] if num_classes == 2 else range(num_classes)
    scores = []
    for c in classes:
        tp = np.sum((predictions == c) & (labels == c))
        denom = np.sum(predictions == c) + np.sum(labels == c)
        scores.append(2.0 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC-AUC as the Mann-Whitney U statistic (ties count half); None with a single class."""
    positive = positive.astype(bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    # Average rank within each group of tied scores.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Binary: AUC of P(class 1). More classes: macro one-vs-rest over classes present."""
    if probabilities.shape[1] == 2:
        return binary_auc(labels == 1, probabilities[:, 1])
    aucs = [binary_auc(labels == c, probabilities[:, c]) for c in range(probabilities.shape[1])]
    aucs = [a for a in aucs if a is not None]
    return float(np.mean(aucs)) if aucs else None


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """accuracy, f1 and auc of probabilities [N, C] against integer labels [N]."""
    labels = np.asarray(labels)
    predictions = probabilities.argmax(-1)
    return {
        "accuracy": accuracy(labels, predictions),
        "f1": f1(labels, predictions, probabilities.shape[1]),
        "auc": roc_auc(labels, probabilities),
    }
