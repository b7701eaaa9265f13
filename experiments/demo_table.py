"""The README's demo table, from a results.csv, and how far another run of the demo is from it.

The demo (configs/experiments/demo.gin) is the (spam_assassin, rate 0.3, seed 0) cell of the paper
table, so the README quotes that cell of the committed experiments/spam_paper/results.csv:

    python experiments/demo_table.py                                  # the README's table
    python experiments/demo_table.py --against=runs/demo/results.csv  # your demo vs the README

With --against it prints the largest absolute difference per column, then per row, between the two runs' rows.
"""

import pathlib
import sys

from absl import app, flags

from gbair.reports import tables

REPO = pathlib.Path(__file__).resolve().parent.parent
DATASET, RATE, SEED = "spam_assassin", 0.3, 0
STRATEGIES = ("tracin", "tracin_by_label", "loss", "random", "oracle")
COLUMNS = ("test F1", "test AUC", "F1 gap recovered", "flagged that were flipped", "detection AUROC")

_RESULTS = flags.DEFINE_string("results", str(REPO / "experiments/spam_paper/results.csv"),
                               "results.csv holding the demo's cell.")
_AGAINST = flags.DEFINE_string("against", None, "a second results.csv (e.g. runs/demo/results.csv) to compare.")


def demo_rows(source: str) -> dict[str, list[float | None]]:
    """{row name: the COLUMNS' raw values} for the demo cell: clean, corrupted and each strategy at it1."""
    cell = [r for r in tables.load_results(source) if (r["dataset"], r["corruption_rate"], r["seed"]) == (DATASET, RATE, SEED)]
    by_name = {r["strategy"]: r for r in cell if r["iteration"] == 1}
    by_name.update({r["strategy"]: r for r in cell if r["strategy"] == tables.CLEAN})
    by_name.update({"corrupted": r for r in tables.corrupted_rows(cell).values()})
    missing = [s for s in ("clean", "corrupted") + STRATEGIES if s not in by_name]
    if missing:
        sys.exit(f"demo_table: {source} has no {', '.join(missing)} row at {DATASET} rate {RATE} seed {SEED} "
                 "iteration 1: expected a results.csv of the demo or of the paper table")
    recovered = tables.recovered_fractions(cell, "test_f1")
    out = {}
    for name in ("clean", "corrupted") + STRATEGIES:
        r = by_name[name]
        gap = recovered.get((DATASET, RATE, name, 1), {}).get(SEED)
        out[name] = [r["test_f1"], r["test_auc"], gap, r["precision_at_k"], r["detection_auroc"]]
    return out


def _format(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def main(argv: list[str]) -> None:
    del argv
    ours = demo_rows(_RESULTS.value)
    print("| | " + " | ".join(COLUMNS) + " |")
    print("|:---|" + "---:|" * len(COLUMNS))
    for name, values in ours.items():
        print(f"| {name} | " + " | ".join(map(_format, values)) + " |")
    if _AGAINST.value:
        theirs = demo_rows(_AGAINST.value)
        print(f"\nlargest |difference| vs {_AGAINST.value}:")
        for j, column in enumerate(COLUMNS):
            diffs = [abs(ours[n][j] - theirs[n][j]) for n in ours
                     if ours[n][j] is not None and theirs[n][j] is not None]
            print(f"  {column}: {max(diffs, default=0.0):.4f}")
        print("largest |difference| per row:")
        for name in ours:
            diffs = [abs(a - b) for a, b in zip(ours[name], theirs[name]) if a is not None and b is not None]
            print(f"  {name}: {max(diffs, default=0.0):.4f}")


if __name__ == "__main__":
    app.run(main)
