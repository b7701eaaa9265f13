"""The G-BAIR main job, as `configs/runs/gbair.gin` names it: the sweep, then what reads its workdir
(tables and plots from gbair.reports, one HTML report per cell from gbair.explain). The sweep itself
(gbair.recovery.loop) knows nothing of its readers."""

import gin

from gbair import explain
from gbair.recovery import loop
from gbair.recovery.experiment import Experiment
from gbair.reports import paper


@gin.configurable
def sweep(workdir: str, experiment: Experiment = gin.REQUIRED) -> str:
    """Runs every (dataset, rate, seed, strategy) cell, writes the reports; returns the printed tables."""
    results = loop.run_sweep(workdir, experiment)
    table = paper.write_report(workdir)
    pages = explain.write_reports(workdir, experiment)
    print(f"\nResults: {results}\nHTML reports: {', '.join(map(str, pages))}\n\n{table}")
    return table
