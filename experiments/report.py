"""Everything the paper needs from one run directory, in one call at the end of the main job."""

import os
import pathlib

from experiments import plots, tables


def write_report(workdir: os.PathLike) -> str:
    """From WORKDIR/results.csv write table_<metric>.{md,csv} for test_f1, test_accuracy and
    flagged_precision (n_flagged_corrupted / n_flagged),
    f1_vs_iteration.png and recovery.png; return the test_f1 markdown table for printing."""
    workdir = pathlib.Path(workdir)
    rows = tables.load_results(workdir / "results.csv")
    markdown = tables.write_table(rows, workdir, "test_f1")
    tables.write_table(rows, workdir, "test_accuracy")
    tables.write_table(rows, workdir, "flagged_precision")
    plots.plot_f1_vs_iteration(rows, workdir / "f1_vs_iteration.png")
    plots.plot_recovery(rows, workdir / "recovery.png")
    return markdown
