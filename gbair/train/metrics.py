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


def average_precision(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the precision-recall curve as scikit-learn defines it: sum_n (R_n - R_{n-1}) P_n over
    the distinct score thresholds, highest first (tied scores enter together); None with no positives."""
    positive = np.asarray(positive, bool)
    if not positive.any():
        return None
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    sorted_scores, hits = np.asarray(scores)[order], np.cumsum(positive[order])
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(order) - 1]  # last row of each tie group
    precision, recall = hits[ends] / (ends + 1.0), hits[ends] / positive.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def detection_metrics(corrupted: np.ndarray, suspicion: np.ndarray, flagged: np.ndarray) -> dict[str, float | None]:
    """How well suspicion scores find the corrupted labels: over the whole ranking (AUROC, average
    precision) and at the flagged set (precision and recall at k). None where undefined."""
    corrupted = np.asarray(corrupted, bool)
    found = int(corrupted[flagged].sum())
    return {
        "detection_auroc": binary_auc(corrupted, suspicion),
        "detection_ap": average_precision(corrupted, suspicion),
        "precision_at_k": found / len(flagged) if len(flagged) else None,
        "recall_at_k": found / int(corrupted.sum()) if corrupted.any() else None,
    }


def roc_auc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Binary: AUC of P(class 1). More classes: macro one-vs-rest over classes present."""
    if probabilities.shape[1] == 2:
        return binary_auc(labels == 1, probabilities[:, 1])
    aucs = [binary_auc(labels == c, probabilities[:, c]) for c in range(probabilities.shape[1])]
    aucs = [a for a in aucs if a is not None]
    return float(np.mean(aucs)) if aucs else None


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """accuracy, f1, auc and loss (mean cross-entropy) of probabilities [N, C] against integer labels [N]."""
    labels = np.asarray(labels)
    predictions = probabilities.argmax(-1)
    picked = probabilities[np.arange(len(labels)), labels].astype(np.float64)
    return {
        "accuracy": accuracy(labels, predictions),
        "f1": f1(labels, predictions, probabilities.shape[1]),
        "auc": roc_auc(labels, probabilities),
        "loss": float(-np.mean(np.log(np.maximum(picked, 1e-12)))) if len(labels) else None,
    }


def found_by_prefix(corrupted: np.ndarray, ranking: np.ndarray, n_train: int,
                    points: int = 51) -> list[tuple[float, float]]:
    """The recovery curve of one ranking: (fraction of the n_train examples flagged, fraction of the
    corrupted labels found) when flagging each prefix of `ranking` (indices, most suspicious first;
    examples it leaves out are never flagged), at `points` prefix lengths round(i / (points - 1) * n_train).
    corrupted: bool [n_train]. Empty list when nothing is corrupted (the curve is undefined)."""
    corrupted = np.asarray(corrupted, bool)
    total = int(corrupted.sum())
    if not total or not n_train:
        return []
    hits = np.r_[0, np.cumsum(corrupted[np.asarray(ranking, int)])]
    lengths = np.unique(np.round(np.linspace(0, n_train, points)).astype(int))
    return [(n / n_train, int(hits[min(n, len(hits) - 1)]) / total) for n in lengths]
