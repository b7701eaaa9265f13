"""Figures from a workdir: a metric vs cleaning iteration, and recovery of corrupted labels.

Every strategy keeps one colour and marker in every figure (`styles`: fixed by the canonical strategy
order); the bounds are black and grey reference lines, not one more colour: clean labels (dashed),
corrupted labels (dotted, iteration 0), oracle (dash-dot, flags exactly the corrupted labels). One
legend per figure, outside the panels. With few seeds every seed is a small point beside the mean.

Drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global backend switch) and
written atomically, so a half-written PNG is never left behind.

    python -m gbair.reports.plots --workdir=WORKDIR
"""

import csv
import dataclasses
import io
import os
import sys
from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np
from absl import flags
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gbair import cli, files
from gbair.reports import tables
from gbair.workdir import RECOVERY_CURVES_FILE, results_path

PANEL_SIZE = (5.0, 4.2)  # inches per dataset x rate panel
DPI = 150
# Distinct hues (matplotlib's tab10 without its grey, which the references use, and two more); the
# marker list has a length coprime to it, so (colour, marker) never repeats for len(PALETTE) * len(MARKERS).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#393b79", "#e7ba52")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p", "d")
ORACLE = "oracle"
REFERENCES = {  # name -> (legend label, line style)
    tables.CLEAN: ("clean labels (upper bound)", {"color": "black", "linestyle": "--"}),
    "corrupted": ("corrupted labels (iteration 0)", {"color": "0.45", "linestyle": ":"}),
    ORACLE: ("oracle (flags exactly the corrupted labels)", {"color": "black", "linestyle": "-.", "marker": "x"}),
    "chance": ("random flagging (expected)", {"color": "0.45", "linestyle": ":"}),
}
METRIC_NAMES = {"test_f1": "test F1", "test_accuracy": "test accuracy", "test_auc": "test AUC",
                "flagged_precision": "precision of the flagged examples",
                "flagged_lift": "flagged precision / corrupted share before flagging",
                "detection_auroc": "detection AUROC", "detection_ap": "detection average precision",
                "recall_at_k": "recall at k"}
FEW_SEEDS = 10  # below this many seeds every seed is drawn as a point; from it on, a mean ± std band
CURVE_GRID = np.linspace(0.0, 1.0, 51)  # fractions flagged at which seeds' curves are averaged


@dataclasses.dataclass(frozen=True)
class Style:
    color: str
    marker: str


def styles(names: Iterable[str]) -> dict[str, Style]:
    """A colour and marker per strategy, fixed by its place in tables.STRATEGY_ORDER (unknown names
    follow, alphabetically), so a strategy looks the same in every figure. The first len(PALETTE)
    strategies differ in colour and in marker; beyond, colour x marker pairs cycle without repeating."""
    names = [n for n in names if n not in REFERENCES]
    order = [s for s in tables.STRATEGY_ORDER if s not in REFERENCES]
    order += sorted(set(names) - set(order))
    index = {s: i for i, s in enumerate(order)}
    return {n: Style(PALETTE[index[n] % len(PALETTE)], MARKERS[index[n] % len(MARKERS)]) for n in names}


def _line_style(name: str, style: dict[str, Style]) -> dict:
    if name in REFERENCES:
        return {"linewidth": 1.4, **REFERENCES[name][1]}
    return {"color": style[name].color, "marker": style[name].marker, "linestyle": "-", "linewidth": 1.6}


def _panels(rows: list[tables.Row], sharey: bool) -> tuple[Figure, dict[tables.Panel, object]]:
    """One panel per dataset (grid row) x corruption rate (grid column)."""
    cells = tables.panels(rows)
    if not cells:
        raise ValueError("no results rows to plot")
    datasets = sorted({d for d, _ in cells})
    rates = sorted({r for _, r in cells})
    figure = Figure(figsize=(PANEL_SIZE[0] * len(rates) + 3.2, PANEL_SIZE[1] * len(datasets)), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(len(datasets), len(rates), squeeze=False, sharey="row" if sharey else False)
    axes = {(d, r): grid[i][j] for i, d in enumerate(datasets) for j, r in enumerate(rates)}
    for (d, r), ax in axes.items():
        ax.set_title(f"{d}, {r:.0%} of training labels corrupted", fontsize=11)
        ax.tick_params(labelsize=9)
        ax.grid(True, color="0.9", linewidth=0.6)
        if (d, r) not in cells:
            ax.set_axis_off()
    return figure, {cell: axes[cell] for cell in cells}


def _legend(figure: Figure, names: Sequence[str], style: dict[str, Style], title: str) -> None:
    """The figure's one legend, right of the panels: the strategies, then the references drawn."""
    ordered = [n for n in names if n not in REFERENCES] + [n for n in REFERENCES if n in names]
    handles = [Line2D([], [], markersize=6, **_line_style(n, style)) for n in ordered]
    labels = [REFERENCES[n][0] if n in REFERENCES else n for n in ordered]
    figure.legend(handles, labels, loc="outside right upper", fontsize=9, title=title, title_fontsize=9,
                  frameon=False)


def _save(figure: Figure, out_png: os.PathLike) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    files.write_bytes(out_png, buffer.getvalue())


def _seed_values(rows: list[tables.Row], metric: str, dataset: str, rate: float, strategy: str) -> dict[int, list]:
    """iteration -> the metric over seeds (missing values left out)."""
    out = defaultdict(list)
    for r in rows:
        if r["strategy"] == strategy and r["dataset"] == dataset and r["corruption_rate"] == rate \
                and r[metric] is not None:
            out[r["iteration"]].append(r[metric])
    return dict(sorted(out.items()))


def _draw_seeds(ax, xs: list[float], values: list[list[float]], means: list[float], name: str,
                style: dict[str, Style]) -> None:
    """Few seeds: each seed a small point, jittered in x; many: a mean ± std band; one: nothing more."""
    line = _line_style(name, style)
    if max(len(v) for v in values) == 1:
        return  # one seed: the mean is the seed
    if max(len(v) for v in values) < FEW_SEEDS:
        for x, vs in zip(xs, values):
            jitter = np.linspace(-0.025, 0.025, len(vs))
            ax.scatter(x + jitter, vs, s=18, alpha=0.4, color=line["color"], marker=line.get("marker", "o"),
                       linewidths=0, zorder=2)
    else:
        stds = [float(np.std(v, ddof=1)) for v in values]
        ax.fill_between(xs, np.subtract(means, stds), np.add(means, stds), color=line["color"], alpha=0.12,
                        linewidth=0)


def plot_metric_vs_iteration(rows: list[tables.Row], out_png: os.PathLike, metric: str = "test_f1") -> None:
    """The metric after each cleaning iteration: per strategy the mean over seeds (a line, nudged
    sideways so strategies do not hide each other) and every seed (points); clean and corrupted
    levels as horizontal reference lines, the oracle as a reference line."""
    if metric not in tables.METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(tables.METRICS)}")
    figure, axes = _panels(rows, sharey=True)
    names = tables.strategies(rows)
    style = styles(names)
    base = tables.corrupted_rows(rows)
    drawn = set()
    for (dataset, rate), ax in axes.items():
        clean = tables.metric_values(rows, metric, dataset, rate, tables.CLEAN, 0)
        corrupted = [r[metric] for (d, c, _), r in base.items() if d == dataset and c == rate and r[metric] is not None]
        for name, values in ((tables.CLEAN, clean), ("corrupted", corrupted)):
            if values:
                ax.axhline(float(np.mean(values)), zorder=1, **_line_style(name, style))
                drawn.add(name)
        if 1 < len(corrupted) < FEW_SEEDS:
            ax.scatter(np.zeros(len(corrupted)), corrupted, s=14, alpha=0.5, color="0.45", linewidths=0, zorder=2)
        for i, name in enumerate(names):
            by_iteration = _seed_values(rows, metric, dataset, rate, name)
            its = [t for t in by_iteration if t >= 1]
            if not its:
                continue
            nudge = min(0.3, 0.04 * (len(names) - 1)) * (i / max(len(names) - 1, 1) - 0.5)
            xs = [t + nudge for t in its]
            values = [by_iteration[t] for t in its]
            means = [float(np.mean(v)) for v in values]
            if 0 in by_iteration:  # every strategy starts from the shared corrupted model
                xs, means = [0.0] + xs, [float(np.mean(by_iteration[0]))] + means
            ax.plot(xs, means, markersize=5, zorder=3, **_line_style(name, style))
            _draw_seeds(ax, xs[-len(its):], values, means[-len(its):], name, style)
            drawn.add(name)
        ax.set_xlabel("cleaning iteration (0: trained on the corrupted labels)", fontsize=10)
        ax.set_ylabel(METRIC_NAMES.get(metric, metric), fontsize=10)
        ax.xaxis.get_major_locator().set_params(integer=True)
    seeds = len({r["seed"] for r in rows})
    title = "one seed (no spread to show)" if seeds == 1 else f"lines: mean of {seeds} seeds\n" + (
        "points: each seed" if seeds < FEW_SEEDS else "bands: ± 1 std")
    _legend(figure, [n for n in names + list(REFERENCES) if n in drawn], style, title)
    _save(figure, out_png)


def load_curves(path: os.PathLike) -> dict[tuple[str, float, str], dict[int, np.ndarray]]:
    """WORKDIR/recovery_curves.csv -> (dataset, rate, strategy) -> seed -> [points, 2] (fraction flagged,
    fraction of corrupted labels found), sorted by fraction flagged. {} when the file does not exist
    (workdirs made before the sweep wrote it)."""
    path = files.path(path)
    if not path.exists():
        return {}
    points = defaultdict(lambda: defaultdict(list))
    with io.StringIO(path.read_text(encoding="utf-8"), newline="") as f:
        reader = csv.DictReader(f)
        columns = ("dataset", "corruption_rate", "seed", "strategy", "fraction_flagged", "fraction_found")
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column {missing[0]!r} (header is {', '.join(reader.fieldnames or [])})")
        for raw in reader:
            try:
                key, seed = (raw["dataset"], float(raw["corruption_rate"]), raw["strategy"]), int(raw["seed"])
                points[key][seed].append((float(raw["fraction_flagged"]), float(raw["fraction_found"])))
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{reader.line_num}: expected numbers in corruption_rate, seed, "
                                 f"fraction_flagged and fraction_found, got {raw}") from None
    return {key: {seed: np.array(sorted(p)) for seed, p in seeds.items()} for key, seeds in points.items()}


def plot_recovery(rows: list[tables.Row], out_png: os.PathLike,
                  curves: dict[tuple[str, float, str], dict[int, np.ndarray]] | None = None) -> None:
    """Fraction of corrupted labels found vs fraction of training data flagged. Lines: the whole
    ranking each strategy made at iteration 1 (`curves`, from recovery_curves.csv, averaged over seeds);
    markers: what was flagged after each iteration (results.csv, averaged over seeds). Where a panel
    has no curve, only the markers are drawn, and the panel says so. The diagonal is what flagging at
    random finds in expectation."""
    curves = curves or {}
    figure, axes = _panels(rows, sharey=False)
    names = tables.strategies(rows)
    style = styles(names)
    measured = {s: tables.recovery_curve(rows, s) for s in names}
    for (dataset, rate), ax in axes.items():
        uncurved = [n for n in names if not curves.get((dataset, rate, n)) and measured[n].get((dataset, rate))]
        points_only = len(uncurved) == len(names)
        x_max = 1.0 if not points_only else min(1.0, max(0.5, 1.5 * max(
            x for n in names for x, _ in measured[n].get((dataset, rate), [(0, 0)]))))
        for name in names:
            line = _line_style(name, style)
            seeds = curves.get((dataset, rate, name))
            if seeds:
                mean = np.mean([np.interp(CURVE_GRID, p[:, 0], p[:, 1]) for p in seeds.values()], axis=0)
                ax.plot(CURVE_GRID, mean, zorder=3, **{**line, "marker": None})
            points = measured[name].get((dataset, rate), [])[1:]  # the measured points, not the origin
            if points:  # hollow, at their true x: strategies flagging the same k may overlap, not hide
                ax.plot([x for x, _ in points], [y for _, y in points], markersize=8, zorder=4,
                        markerfacecolor="none", markeredgewidth=1.5, **{**line, "linestyle": "none"})
        ax.plot([0, x_max], [0, x_max], zorder=1, **_line_style("chance", style))
        ax.set_xlim(0, x_max)
        ax.set_ylim(0, 1.02)
        if uncurved:
            note = ("no recovery_curves.csv in this workdir:\nmeasured points only" if points_only
                    else f"no curve for {', '.join(uncurved)}:\nits measured points only")
            ax.text(0.98, 0.03, note, transform=ax.transAxes, fontsize=8, ha="right", va="bottom", color="0.3")
        ax.set_xlabel("training data flagged (fraction)", fontsize=10)
        ax.set_ylabel("corrupted labels found (fraction)", fontsize=10)
    title = "markers: flagged after each iteration\n(mean over seeds)"
    if curves:
        title = "lines: the whole ranking at iteration 1\n" + title
    _legend(figure, names + ["chance"], style, title)
    _save(figure, out_png)


def write_plots(workdir: os.PathLike, rows: list[tables.Row] | None = None) -> list[os.PathLike]:
    """WORKDIR/test_f1_vs_iteration.png, test_auc_vs_iteration.png and recovery.png; returns their paths."""
    workdir = files.path(workdir)
    rows = tables.load_results(results_path(workdir)) if rows is None else rows
    out = []
    for metric in ("test_f1", "test_auc"):
        out.append(workdir / f"{metric}_vs_iteration.png")
        plot_metric_vs_iteration(rows, out[-1], metric)
    out.append(workdir / "recovery.png")
    plot_recovery(rows, out[-1], load_curves(workdir / RECOVERY_CURVES_FILE))
    return out


def main(argv: list[str]) -> None:
    del argv  # cli.run refuses positional arguments
    for path in write_plots(flags.FLAGS.workdir):
        print(path)


if __name__ == "__main__":
    cli.define_workdir("Directory holding results.csv (and recovery_curves.csv); the PNGs are written next to it.")
    cli.run(main, sys.argv)
