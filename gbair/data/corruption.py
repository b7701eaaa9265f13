"""Label noise for benchmarks: one definition of "corrupted", shared by experiments and tests."""

import numpy as np

from gbair import UserError
from gbair.data.dataset import TextDataset


def corrupt_labels(dataset: TextDataset, rate: float, *, seed: int,
                   stratified: bool = False) -> tuple[TextDataset, np.ndarray]:
    """Flips exactly round(rate * N) labels chosen from `seed`; returns (noisy dataset, flipped mask).

    A flipped label moves to a different class, uniformly among the others (binary: the other one).
    stratified: each class loses labels in proportion to its size (largest remainders), so the
    noise does not also shift the class balance by chance.
    """
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"corrupt_labels: rate={rate!r}, expected a fraction in [0, 1]")
    num_classes = len(dataset.class_names)
    if num_classes < 2:
        raise UserError(f"corrupt_labels: need at least 2 classes, dataset has {dataset.class_names}")
    n = len(dataset)
    n_flip = int(np.floor(rate * n + 0.5))
    rng = np.random.default_rng(seed)
    if stratified:
        members = [np.flatnonzero(dataset.labels == c) for c in range(num_classes)]
        ideal = np.array([n_flip * len(m) / n for m in members]) if n else np.zeros(num_classes)
        counts = np.floor(ideal).astype(int)
        counts[np.argsort(counts - ideal, kind="stable")[: n_flip - counts.sum()]] += 1
        chosen = np.concatenate([rng.choice(m, k, replace=False) for m, k in zip(members, counts)])
    else:
        chosen = rng.choice(n, n_flip, replace=False)
    labels = dataset.labels.copy()
    labels[chosen] = (labels[chosen] + rng.integers(1, num_classes, len(chosen))) % num_classes
    flipped = np.zeros(n, bool)
    flipped[chosen] = True
    return dataset.with_labels(labels), flipped
