"""How G-BAIR sums TracIn over the misclassified validation set V, studied on a finished SpamAssassin run.

For every (rate, seed) cell of WORKDIR, reads the TracIn matrices the loop stored at iteration 1
(cells/.../tracin/it1/explanations.npz: [N_train, |V|] dot and cosine scores, V's true labels) and
scores the training set with each aggregation, with no retraining:
  plain     sum over V (G-BAIR as published);
  balanced  each class of V weighs the same (RecoveryConfig.balance_classes);
and prints detection AUROC and average precision against the flipped mask, mean ± std over seeds,
with V's class mix and the given labels of the flipped examples (which explain the differences),
and the AUROC within each given label (does the score separate flipped from clean examples that
carry the same label, whatever the direction V pulls in?).

    python experiments/aggregation_study.py WORKDIR --sizes 400 200 400
"""

import argparse
import pathlib
from collections import defaultdict

import numpy as np

from gbair.reports import tables
from gbair.data.corruption import corrupt_labels
from gbair.data.tasks import spam_assassin_splits
from gbair.recovery.strategies import query_weights
from gbair.train.metrics import average_precision, binary_auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--sizes", type=int, nargs=3, default=[400, 200, 400], help="train validation test")
    args = parser.parse_args()
    splits = spam_assassin_splits(dict(zip(("train", "validation", "test"), args.sizes)))
    results = defaultdict(list)
    print("| rate | seed | V ham / spam | flipped, given ham / spam |\n|---:|---:|---|---|")
    for path in sorted(pathlib.Path(args.workdir).glob("cells/spam_assassin/rate=*/seed=*/tracin/it1/explanations.npz")):
        rate, seed = float(path.parts[-5].split("=")[1]), int(path.parts[-4].split("=")[1])
        noisy, flipped = corrupt_labels(splits["train"], rate, seed=seed)
        with np.load(path, allow_pickle=False) as saved:
            if list(saved["train_ids"]) != list(noisy.ids):
                raise ValueError(f"{path}: training ids differ from the corrupted split; wrong --sizes?")
            queries = saved["query_labels"]
            for variant in ("dot", "cosine"):
                for balanced in (False, True):
                    suspicion = -(saved[variant] @ query_weights(queries, balanced))
                    key = (rate, variant, "balanced" if balanced else "plain")
                    within = [binary_auc(flipped[noisy.labels == c], suspicion[noisy.labels == c]) for c in (0, 1)]
                    results[key].append((binary_auc(flipped, suspicion), average_precision(flipped, suspicion),
                                         *within))
        v_mix = np.bincount(queries, minlength=2)
        given = np.bincount(noisy.labels[flipped], minlength=2)
        print(f"| {rate:g} | {seed} | {v_mix[0]} / {v_mix[1]} | {given[0]} / {given[1]} |")
    print("\n| rate | TracIn | sum over V | detection AUROC | detection AP | AUROC within given ham "
          "| AUROC within given spam |\n|---:|:---|:---|---:|---:|---:|---:|")
    for (rate, variant, aggregation), values in sorted(results.items()):
        cells = [tables.format_cell(list(column)) for column in zip(*values)]
        print(f"| {rate:g} | {variant} | {aggregation} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
