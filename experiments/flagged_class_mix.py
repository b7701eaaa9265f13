"""Which given labels each strategy removed at iteration 1, against the training set's own mix.

    python experiments/flagged_class_mix.py WORKDIR [--strategies tracin,influence_function,...]

For every cell of a finished sweep: the share of the flagged examples per given label, and how many
of them were flipped. A strategy whose flags lean towards one label moves the classifier's prior as
well as cleaning it, which can lift F1 (and AUC) without finding flipped labels.
"""

import argparse
import collections

import numpy as np

from gbair import files
from gbair.explain import RunExplainer
from gbair.workdir import read_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir")
    parser.add_argument("--strategies", default=None, help="comma-separated (default: every one in the run)")
    args = parser.parse_args()
    run = RunExplainer(args.workdir)
    names = args.strategies.split(",") if args.strategies else [s for s in run.experiment.strategy_names
                                                                 if s != "clean"]
    class_names = None
    shares = collections.defaultdict(list)  # (strategy, rate) -> per seed [share of each given label]
    flipped = collections.defaultdict(list)
    base = collections.defaultdict(list)
    for cell in run.experiment.cells():
        noisy = run.noisy_train(cell)
        class_names = noisy.class_names
        true = run.true_labels(cell, noisy)
        base[cell.rate].append(np.bincount(noisy.labels, minlength=len(class_names)) / len(noisy))
        for name in names:
            state = read_state(files.path(args.workdir) / cell.run(name, 1))
            if state is None:
                continue
            flagged = np.flatnonzero(~np.isin(np.asarray(noisy.ids), state["ids"]))
            shares[name, cell.rate].append(np.bincount(noisy.labels[flagged], minlength=len(class_names))
                                           / max(len(flagged), 1))
            flipped[name, cell.rate].append(float(np.mean(noisy.labels[flagged] != true[flagged])))
    label_columns = " | ".join(f"flagged labelled {c}" for c in class_names)
    print(f"| strategy | rate | {label_columns} | flagged that were flipped |")
    print("|:---|---:|" + "---:|" * (len(class_names) + 1))
    for rate in sorted(base):
        mix = " | ".join(f"{v:.2f}" for v in np.mean(base[rate], axis=0))
        print(f"| (training set) | {rate:g} | {mix} | {rate:.2f} |")
        for name in names:
            if (name, rate) in shares:
                mix = " | ".join(f"{v:.2f}" for v in np.mean(shares[name, rate], axis=0))
                print(f"| {name} | {rate:g} | {mix} | {np.mean(flipped[name, rate]):.2f} |")


if __name__ == "__main__":
    main()
