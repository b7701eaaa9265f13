"""Figures from WORKDIR/results.csv: metric vs iteration, and recovery of corrupted labels.

Drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global backend switch) and
written atomically, so a half-written PNG is never left behind.

    python -m gbair.reports.plots WORKDIR
"""

import argparse
import io
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from gbair.reports import tables
from gbair import files
from gbair.workdir import results_path

PANEL_SIZE = (4.0, 3.0)  # inches per dataset x rate panel


def _panels(rows: list[tables.Row]) -> tuple[Figure, dict[tables.Panel, object]]:
    """One panel per dataset (grid row) x corruption rate (grid column)."""
    cells = tables.panels(rows)
    if not cells:
        raise ValueError("no results rows to plot")
    datasets = sorted({d for d, _ in cells})
    rates = sorted({r for _, r in cells})
    figure = Figure(figsize=(PANEL_SIZE[0] * len(rates), PANEL_SIZE[1] * len(datasets)), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(len(datasets), len(rates), squeeze=False)
    axes = {(d, r): grid[i][j] for i, d in enumerate(datasets) for j, r in enumerate(rates)}
    for (d, r), ax in axes.items():
        ax.set_title(f"{d}, corruption {r:g}", fontsize=9)
        if (d, r) not in cells:
            ax.set_axis_off()
    return figure, {cell: axes[cell] for cell in cells}


def _save(figure: Figure, out_png: os.PathLike) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    files.write_bytes(out_png, buffer.getvalue())


def plot_metric_vs_iteration(rows: list[tables.Row], out_png: os.PathLike, metric: str = "test_f1") -> None:
    """The metric after each cleaning iteration: a line per strategy with a mean ± std band over seeds,
    and the clean (upper) and corrupted (start) levels as horizontal reference lines."""
    if metric not in tables.METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(tables.METRICS)}")
    figure, axes = _panels(rows)
    base = tables.corrupted_rows(rows)
    colors = {s: f"C{i}" for i, s in enumerate(tables.strategies(rows))}
    for (dataset, rate), ax in axes.items():
        for name, values, style in (
                ("clean", tables.metric_values(rows, metric, dataset, rate, tables.CLEAN, 0), "--"),
                ("corrupted", [r[metric] for (d, c, _), r in base.items()
                               if d == dataset and c == rate and r[metric] is not None], ":")):
            if values:
                ax.axhline(tables.mean_std(values)[0], color="black", linestyle=style, linewidth=1, label=name)
        for strategy in tables.strategies(rows):
            its = sorted({r["iteration"] for r in rows if r["strategy"] == strategy
                          and r["dataset"] == dataset and r["corruption_rate"] == rate})
            xs, means, stds = [], [], []
            for t in its:
                values = tables.metric_values(rows, metric, dataset, rate, strategy, t)
                if values:
                    mean, std = tables.mean_std(values)
                    xs.append(t), means.append(mean), stds.append(std or 0.0)
            if not xs:
                continue
            ax.plot(xs, means, marker="o", markersize=3, color=colors[strategy], label=strategy)
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=colors[strategy], alpha=0.2, linewidth=0)
        ax.set_xlabel("iteration")
        ax.set_ylabel(metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7)
    _save(figure, out_png)


def plot_recovery(rows: list[tables.Row], out_png: os.PathLike) -> None:
    """Fraction of corrupted labels found vs fraction of training data flagged, a line per strategy;
    the diagonal is what flagging at random finds in expectation."""
    figure, axes = _panels(rows)
    curves = {s: tables.recovery_curve(rows, s) for s in tables.strategies(rows)}
    for i, strategy in enumerate(curves):
        for cell, points in curves[strategy].items():
            axes[cell].plot([x for x, _ in points], [y for _, y in points], marker="o", markersize=3,
                            color=f"C{i}", label=strategy)
    for cell, ax in axes.items():
        x_max = max([x for c in curves.values() for x, _ in c.get(cell, [])] + [0.0]) or 1.0
        ax.plot([0, x_max], [0, x_max], color="gray", linestyle="--", linewidth=1, label="random (expected)")
        ax.set_xlim(0, x_max * 1.05)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("fraction of training data flagged")
        ax.set_ylabel("fraction of corrupted labels found")
        ax.legend(fontsize=7)
    _save(figure, out_png)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gbair.reports.plots", description=__doc__.split("\n")[0])
    parser.add_argument("workdir", help="directory holding results.csv; the PNGs are written next to it")
    args = parser.parse_args(argv)
    workdir = files.path(args.workdir)
    rows = tables.load_results(results_path(workdir))
    for metric in ("test_f1", "test_auc"):
        plot_metric_vs_iteration(rows, workdir / f"{metric}_vs_iteration.png", metric)
        print(workdir / f"{metric}_vs_iteration.png")
    plot_recovery(rows, workdir / "recovery.png")
    print(workdir / "recovery.png")


if __name__ == "__main__":
    main()
