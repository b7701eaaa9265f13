"""Everything the paper needs from one run directory: tables, recovered fractions, detection, plots.

    python -m gbair.reports.paper --workdir=WORKDIR   # writes them all next to results.csv, prints the main ones
"""

import os
import sys

from absl import flags

from gbair.reports import plots, tables
from gbair import cli, files
from gbair.workdir import results_path


def write_report(workdir: os.PathLike) -> str:
    """From WORKDIR/results.csv write, each as .md and .csv:
    table_<m> for test_f1, test_auc, test_accuracy and flagged_precision (mean ± std over seeds);
    recovered_<m> for test_f1, test_auc, test_accuracy (recovered fraction, mean [95% interval]);
    recovered_per_seed.csv; detection_auroc and detection_ap at iteration 1;
    and the plots (gbair.reports.plots.write_plots).
    Returns what the main job prints: test F1 and AUC tables and their recovered fractions."""
    workdir = files.path(workdir)
    rows = tables.load_results(results_path(workdir))
    tables_md = {metric: tables.write_table(rows, workdir, metric)
                 for metric in ("test_f1", "test_auc", "test_accuracy", "flagged_precision")}
    recovered_md = {metric: tables.write_table(rows, workdir, metric, "recovered") for metric in tables.RECOVERY_METRICS}
    detection_md = {metric: tables.write_table(rows, workdir, metric, "detection")
                    for metric in ("detection_auroc", "detection_ap")}
    files.write_text(workdir / "recovered_per_seed.csv", tables.recovered_per_seed_csv(rows))
    printed = [f"{m} (mean ± std over seeds):\n{tables_md[m]}" for m in ("test_f1", "test_auc")]
    printed += [f"recovered fraction of the {m} gap (mean [95% interval]):\n{recovered_md[m]}"
                for m in ("test_f1", "test_auc")]
    printed.append(f"detection AUROC at iteration 1 (mean ± std):\n{detection_md['detection_auroc']}")
    one_class = sum(1 for row in rows if row["one_class_prediction"])
    if one_class:
        printed.insert(0, f"WARNING: {one_class} of {len(rows)} rows come from one-class models (one_class_prediction "
                          f"= 1 in results.csv: they predict one class for every validation example); their "
                          f"metrics, averaged in below, are those of a constant classifier\n")
    plots.write_plots(workdir, rows)
    return "\n".join(printed)


def main(argv: list[str]) -> None:
    del argv  # cli.run refuses positional arguments
    print(write_report(flags.FLAGS.workdir))


if __name__ == "__main__":
    cli.define_workdir("Directory holding results.csv; every table and plot is written next to it.")
    cli.run(main, sys.argv)
