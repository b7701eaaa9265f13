"""Paper-style tables and recovery curves from WORKDIR/results.csv.

results.csv has one row per (dataset, strategy, corruption_rate, seed, iteration). Iteration 0 is the
model trained on the corrupted labels, before any cleaning; strategy `clean` (trained on the true
labels) has only an iteration-0 row. Cells are "mean ± std" over seeds: std is the sample standard
deviation (ddof=1) when a cell has two or more seeds; a single-seed cell shows the mean alone
("0.912"), because one run has no spread and "± 0.000" would claim there is none.

Recovered fraction, per seed and metric m: (m_it - m_corrupted) / (m_clean - m_corrupted), with the
clean and corrupted runs of the same seed; tables show its mean and a 95% Student-t interval over
seeds ("0.62 [0.41, 0.83]"). Detection tables rank the whole training set of an iteration by a
strategy's suspicion scores against the flipped mask (AUROC, average precision).

    python -m gbair.reports.tables --workdir=WORKDIR [--metric=test_f1] [--kind=table] [--write]
"""

import csv
import io
import math
import os
import statistics
import sys
from collections import defaultdict

from absl import flags
from scipy import stats

from gbair import UserError, cli, files
from gbair.workdir import CLEAN, COLUMNS, INT_COLUMNS, REQUIRED_COLUMNS, STRATEGY_ORDER, results_path

FLAGS = flags.FLAGS

# How load_results parses results.csv's columns (gbair.workdir's schema): names, then the numbers every
# file has (test_auc may be empty: undefined for a one-class test split), then the later, optional ones.
_NAMES = ("dataset", "strategy")
_INT_COLUMNS = tuple(c for c in REQUIRED_COLUMNS if c in INT_COLUMNS)
_FLOAT_COLUMNS = tuple(c for c in REQUIRED_COLUMNS if c not in INT_COLUMNS + _NAMES + ("test_auc",))
OPTIONAL_COLUMNS: dict[str, type] = {c: int if c in INT_COLUMNS else float for c in COLUMNS[len(REQUIRED_COLUMNS):]}
METRICS: tuple[str, ...] = ("test_f1", "test_accuracy", "test_auc", "flagged_precision", "flagged_lift",
                            "detection_auroc", "detection_ap", "recall_at_k")
RECOVERY_METRICS: tuple[str, ...] = ("test_f1", "test_auc", "test_accuracy")
MISSING = "-"
DEFAULT_ARM = "main"  # the arm of a row when results.csv has no `arm` column

Row = dict  # one validated results.csv row: str / int / float values, test_auc may be None
_RUN = ("dataset", "strategy", "corruption_rate", "seed", "arm")  # a row's run; with the iteration, its key
Panel = tuple[str, float]  # (dataset, corruption_rate): a table row, a plot panel (a workdir Cell also has a seed)


def _parse(path: os.PathLike, line: int, column: str, value: str, kind: type) -> int | float:
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{path}:{line}: column {column!r} has value {value!r}, expected "
                         f"{'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(number):
        raise ValueError(f"{path}:{line}: column {column!r} has value {value!r}, expected a finite number")
    if kind is int and number < 0:
        raise ValueError(f"{path}:{line}: column {column!r} has value {value!r}, expected an integer >= 0")
    return number


def load_results(path: os.PathLike) -> list[Row]:
    """Read and check results.csv, so a malformed file fails here with its line, not deep in a plot.

    Numbers are parsed (ints, finite floats); an empty or "nan" test_auc becomes None (AUC is undefined
    when a test split has one class). Also rejected: duplicate rows, iteration-0 rows with n_flagged > 0,
    `clean` rows past iteration 0, and n_flagged_corrupted > n_flagged. Derived per row: flagged_precision
    and flagged_lift (None where nothing was flagged or the run's previous iteration is missing).

    An optional column `arm` names the arm of a study a row belongs to (absent or empty: DEFAULT_ARM).
    The tables, plots and recovered fractions key by dataset, not arm: give them one arm's rows
    (`findings` splits a study by arm).
    """
    path = files.path(path)
    with io.StringIO(path.read_text(encoding="utf-8"), newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for column in REQUIRED_COLUMNS:
            if column not in header:
                raise ValueError(f"{path}: missing column {column!r} (header is {', '.join(header) or 'empty'})")
        rows, seen = [], {}
        for raw in reader:
            line = reader.line_num
            if None in raw or any(raw[c] is None for c in REQUIRED_COLUMNS):
                n = sum(v is not None for k, v in raw.items() if k is not None) + len(raw.get(None) or [])
                raise ValueError(f"{path}:{line}: has {n} fields, expected {len(header)} as in the header")
            row: Row = {"dataset": raw["dataset"].strip(), "strategy": raw["strategy"].strip()}
            for column in _NAMES:
                if not row[column]:
                    raise ValueError(f"{path}:{line}: column {column!r} is empty, expected a name")
            for column in _INT_COLUMNS:
                row[column] = _parse(path, line, column, raw[column].strip(), int)
            for column in _FLOAT_COLUMNS:
                row[column] = _parse(path, line, column, raw[column].strip(), float)
            auc = raw["test_auc"].strip()
            row["test_auc"] = None if auc.lower() in ("", "nan") else _parse(path, line, "test_auc", auc, float)
            for column, kind in OPTIONAL_COLUMNS.items():
                value = (raw.get(column) or "").strip()
                row[column] = None if value.lower() in ("", "nan") else _parse(path, line, column, value, kind)
            row["arm"] = (raw.get("arm") or "").strip() or DEFAULT_ARM
            key = (*(row[c] for c in _RUN), row["iteration"])
            if key in seen:
                raise ValueError(f"{path}:{line}: duplicate row for dataset={row['dataset']!r} "
                                 f"strategy={row['strategy']!r} corruption_rate={row['corruption_rate']:g} "
                                 f"seed={row['seed']} iteration={row['iteration']} arm={row['arm']!r} "
                                 f"(first at line {seen[key][0]})")
            seen[key] = (line, row)
            if row["iteration"] == 0 and row["n_flagged"] != 0:
                raise ValueError(f"{path}:{line}: column 'n_flagged' has value {row['n_flagged']} at "
                                 "iteration 0, expected 0 (nothing is flagged before cleaning)")
            if row["strategy"] == CLEAN and row["iteration"] != 0:
                raise ValueError(f"{path}:{line}: column 'iteration' has value {row['iteration']} for "
                                 f"strategy 'clean', expected 0")
            if row["n_flagged_corrupted"] > row["n_flagged"]:
                raise ValueError(f"{path}:{line}: column 'n_flagged_corrupted' has value "
                                 f"{row['n_flagged_corrupted']}, expected <= n_flagged ({row['n_flagged']})")
            # Derived: of the examples flagged at this iteration, the fraction truly corrupted.
            row["flagged_precision"] = row["n_flagged_corrupted"] / row["n_flagged"] if row["n_flagged"] else None
            rows.append(row)
    # Derived: flagged precision over the corrupted share of the training set the flags were drawn from
    # (the same run one iteration earlier), so 1 is random flagging whatever is left to find, and a
    # precision that falls with the iteration is told apart from a detector that gets worse.
    for row in rows:
        _, before = seen.get((*(row[c] for c in _RUN), row["iteration"] - 1), (None, None))
        share = before["n_corrupted_remaining"] / before["n_train"] if before and before["n_train"] else 0.0
        precision = row["flagged_precision"]
        row["flagged_lift"] = precision / share if precision is not None and share else None
    return rows


def strategies(rows: list[Row]) -> list[str]:
    """Cleaning strategies present (everything but `clean`), in STRATEGY_ORDER then alphabetical."""
    present = {r["strategy"] for r in rows} - {CLEAN}
    known = [s for s in STRATEGY_ORDER if s in present]
    return known + sorted(present - set(known))


def panels(rows: list[Row]) -> list[Panel]:
    """(dataset, corruption_rate) pairs present, sorted: the table rows and the plot panels."""
    return sorted({(r["dataset"], r["corruption_rate"]) for r in rows})


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std (ddof=1); std is None for a single value, which has no spread."""
    if not values:
        raise ValueError("mean_std: expected at least one value")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_cell(values: list[float]) -> str:
    """'mean ± std' with 3 decimals; the mean alone for one seed; '-' for none."""
    if not values:
        return MISSING
    mean, std = mean_std(values)
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def corrupted_rows(rows: list[Row]) -> dict[tuple[str, float, int], Row]:
    """Iteration-0 row per (dataset, rate, seed): the model trained on the corrupted labels.

    Every cleaning strategy repeats it; the first strategy in display order supplies it.
    """
    out: dict[tuple[str, float, int], Row] = {}
    order = {s: i for i, s in enumerate(strategies(rows))}
    for r in sorted((r for r in rows if r["iteration"] == 0 and r["strategy"] != CLEAN),
                    key=lambda r: order[r["strategy"]]):
        out.setdefault((r["dataset"], r["corruption_rate"], r["seed"]), r)
    return out


def metric_values(rows: list[Row], metric: str, dataset: str, rate: float, strategy: str,
                  iteration: int) -> list[float]:
    """The metric over seeds for one (dataset, rate, strategy, iteration), skipping missing AUCs."""
    values = [r[metric] for r in rows if r["dataset"] == dataset and r["corruption_rate"] == rate
              and r["strategy"] == strategy and r["iteration"] == iteration]
    return [v for v in values if v is not None]


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(METRICS)}")


def paper_table(rows: list[Row], metric: str = "test_f1") -> tuple[list[str], list[list[str]]]:
    """The paper's table: one row per dataset x corruption rate; columns clean, corrupted, then
    `<strategy> it<t>` for each cleaning strategy and iteration t >= 1 present anywhere in the file.

    Cells are mean ± std over seeds (see the module docstring); a cell with no runs is '-'.
    """
    _check_metric(metric)
    iterations = {s: sorted({r["iteration"] for r in rows if r["strategy"] == s and r["iteration"] >= 1})
                  for s in strategies(rows)}
    columns = [(s, t) for s in strategies(rows) for t in iterations[s]]
    header = ["dataset", "corruption_rate", "clean", "corrupted"] + [f"{s} it{t}" for s, t in columns]
    base = corrupted_rows(rows)
    body = []
    for dataset, rate in panels(rows):
        corrupted = [r[metric] for (d, c, _), r in sorted(base.items())
                     if d == dataset and c == rate and r[metric] is not None]
        line = [dataset, f"{rate:g}", format_cell(metric_values(rows, metric, dataset, rate, CLEAN, 0)),
                format_cell(corrupted)]
        line += [format_cell(metric_values(rows, metric, dataset, rate, s, t)) for s, t in columns]
        body.append(line)
    return header, body


def ci95(values: list[float]) -> tuple[float, float, float] | None:
    """Mean and the 95% Student-t interval of the mean (mean +- t_{0.975, n-1} s / sqrt(n)); None below 2."""
    if len(values) < 2:
        return None
    mean, std = mean_std(values)
    half = stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
    return mean, mean - half, mean + half


def format_interval(values: list[float]) -> str:
    """'mean [low, high]' (95% interval over seeds), the mean alone for one seed, '-' for none."""
    if not values:
        return MISSING
    interval = ci95(values)
    return f"{values[0]:.2f}" if interval is None else "{:.2f} [{:.2f}, {:.2f}]".format(*interval)


def recovered_fractions(rows: list[Row], metric: str) -> dict[tuple[str, float, str, int], dict[int, float]]:
    """(dataset, rate, strategy, iteration) -> {seed: (m_it - m_corrupted) / (m_clean - m_corrupted)}.

    Clean and corrupted come from the same seed; a seed without both, without the metric, or with
    m_clean == m_corrupted (no gap to recover) is left out.
    """
    if metric not in RECOVERY_METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(RECOVERY_METRICS)}")
    clean = {(r["dataset"], r["corruption_rate"], r["seed"]): r[metric] for r in rows
             if r["strategy"] == CLEAN and r[metric] is not None}
    corrupted = {key: r[metric] for key, r in corrupted_rows(rows).items() if r[metric] is not None}
    out: dict[tuple[str, float, str, int], dict[int, float]] = defaultdict(dict)
    for r in rows:
        key = (r["dataset"], r["corruption_rate"], r["seed"])
        if r["strategy"] == CLEAN or r["iteration"] == 0 or r[metric] is None or key not in clean \
                or key not in corrupted or clean[key] == corrupted[key]:
            continue
        out[(r["dataset"], r["corruption_rate"], r["strategy"], r["iteration"])][r["seed"]] = \
            (r[metric] - corrupted[key]) / (clean[key] - corrupted[key])
    return dict(out)


def recovery_table(rows: list[Row], metric: str = "test_f1") -> tuple[list[str], list[list[str]]]:
    """Recovered fraction of the clean-corrupted gap in `metric`: one row per dataset x rate, a column per
    `<strategy> it<t>`, cells 'mean [95% interval]' over seeds (1.0 = back to clean, 0 = no better
    than training on the corrupted labels, < 0 = worse)."""
    fractions = recovered_fractions(rows, metric)
    columns = sorted({(s, t) for _, _, s, t in fractions},
                     key=lambda st: (strategies(rows).index(st[0]), st[1]))
    header = ["dataset", "corruption_rate"] + [f"{s} it{t}" for s, t in columns]
    body = [[dataset, f"{rate:g}"] + [format_interval(list(fractions.get((dataset, rate, s, t), {}).values()))
                                      for s, t in columns]
            for dataset, rate in panels(rows)]
    return header, body


def recovered_per_seed_csv(rows: list[Row]) -> str:
    """Every seed's recovered fraction, one line per (dataset, rate, strategy, iteration, seed, metric)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "corruption_rate", "strategy", "iteration", "seed", "metric", "recovered"])
    for metric in RECOVERY_METRICS:
        for (dataset, rate, strategy, iteration), seeds in sorted(recovered_fractions(rows, metric).items()):
            for seed, value in sorted(seeds.items()):
                writer.writerow([dataset, f"{rate:g}", strategy, iteration, seed, metric, f"{value:.4f}"])
    return buffer.getvalue()


def detection_table(rows: list[Row], metric: str = "detection_auroc",
                    iteration: int = 1) -> tuple[list[str], list[list[str]]]:
    """Detection quality at one iteration: one row per dataset x rate, a column per strategy, mean ± std."""
    _check_metric(metric)
    names = [s for s in strategies(rows) if any(metric_values(rows, metric, d, r, s, iteration)
                                                 for d, r in panels(rows))]
    header = ["dataset", "corruption_rate"] + names
    body = [[dataset, f"{rate:g}"] + [format_cell(metric_values(rows, metric, dataset, rate, s, iteration))
                                      for s in names] for dataset, rate in panels(rows)]
    return header, body


def to_markdown(header: list[str], body: list[list[str]]) -> str:
    """A GitHub markdown table; the two key columns left-aligned, the numbers right-aligned."""
    escape = lambda cell: cell.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(escape(h) for h in header) + " |",
             "|" + "|".join(":---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(escape(c) for c in line) + " |" for line in body]
    return "\n".join(lines) + "\n"


def to_csv(header: list[str], body: list[list[str]]) -> str:
    """The same table as CSV text (cells keep their 'mean ± std' strings)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return buffer.getvalue()


KINDS = {"table": paper_table, "recovered": recovery_table, "detection": detection_table}  # see write_table


def write_table(rows: list[Row], workdir: os.PathLike, metric: str = "test_f1", kind: str = "table",
                arm: str | None = None) -> str:
    """Write WORKDIR/<table_name>[_<arm>].md and .csv atomically; return the markdown.

    kind: `table` (the paper's table, `paper_table`), `recovered` (`recovery_table`) or `detection`
    (`detection_table` at iteration 1). `arm` names the file of one arm of a study.
    """
    header, body = KINDS[kind](rows, metric)
    markdown = to_markdown(header, body)
    name = files.path(workdir) / (table_name(kind, metric) + (f"_{arm}" if arm else ""))
    files.write_text(f"{name}.md", markdown)
    files.write_text(f"{name}.csv", to_csv(header, body))
    return markdown


def one_arm(rows: list[Row], arm: str | None, source: os.PathLike) -> list[Row]:
    """The rows of `arm`: a table pools no arms, so a study's results.csv with several needs one named;
    with one arm, `arm` may be left out (all rows)."""
    arms = sorted({r["arm"] for r in rows})
    if arm is None and len(arms) > 1:
        raise UserError(f"{source}: holds the arms {', '.join(arms)}; pass --arm=NAME (a table pools no arms)")
    if arm is not None and arm not in arms:
        raise UserError(f"{source}: --arm={arm!r} is not one of its arms ({', '.join(arms)})")
    return [r for r in rows if arm is None or r["arm"] == arm]


def table_name(kind: str, metric: str) -> str:
    """<kind>_<metric>, the kind said once: detection_ap, not detection_detection_ap."""
    return metric if metric.startswith(f"{kind}_") else f"{kind}_{metric}"


def recovery_curve(rows: list[Row], strategy: str) -> dict[Panel, list[tuple[float, float]]]:
    """Per (dataset, rate): (fraction of training data flagged, fraction of corrupted labels found)
    after each iteration, averaged over seeds, starting at (0, 0).

    Both are cumulative and relative to iteration 0 (n_train and n_corrupted_remaining there), so a
    random flagger lies on the diagonal in expectation. Seeds are averaged point by point up to the
    last iteration every seed reached; panels with no corrupted labels (rate 0) are left out.
    """
    base = corrupted_rows(rows)
    runs: dict[tuple[str, float, int], dict[int, Row]] = defaultdict(dict)
    for r in rows:
        if r["strategy"] == strategy:
            runs[(r["dataset"], r["corruption_rate"], r["seed"])][r["iteration"]] = r
    if strategy == CLEAN or not runs:
        raise ValueError(f"recovery_curve: strategy {strategy!r} has no cleaning runs "
                         f"(present: {', '.join(strategies(rows)) or 'none'})")
    per_cell: dict[Panel, list[list[tuple[float, float]]]] = defaultdict(list)
    for (dataset, rate, seed), by_iteration in sorted(runs.items()):
        start = by_iteration.get(0) or base.get((dataset, rate, seed))
        if start is None:
            raise ValueError(f"recovery_curve: no iteration-0 row for dataset={dataset!r} "
                             f"corruption_rate={rate:g} seed={seed}, expected one to count corrupted labels")
        last = max(by_iteration)
        gaps = [t for t in range(1, last + 1) if t not in by_iteration]
        if gaps:
            raise ValueError(f"recovery_curve: strategy {strategy!r} dataset={dataset!r} corruption_rate={rate:g} "
                             f"seed={seed} lacks iteration {gaps[0]}, expected iterations 1..{last}")
        if start["n_corrupted_remaining"] == 0 or start["n_train"] == 0:
            continue
        points, flagged, found = [(0.0, 0.0)], 0, 0
        for t in range(1, last + 1):
            flagged += by_iteration[t]["n_flagged"]
            found += by_iteration[t]["n_flagged_corrupted"]
            points.append((flagged / start["n_train"], found / start["n_corrupted_remaining"]))
        per_cell[(dataset, rate)].append(points)
    curves = {}
    for cell, seeds in sorted(per_cell.items()):
        length = min(len(points) for points in seeds)
        curves[cell] = [(statistics.fmean(p[t][0] for p in seeds), statistics.fmean(p[t][1] for p in seeds))
                        for t in range(length)]
    return curves


def main(argv: list[str]) -> None:
    """Prints one table; writes it (and its .csv) next to results.csv only with --write."""
    del argv  # cli.run refuses positional arguments
    rows = one_arm(load_results(results_path(FLAGS.workdir)), FLAGS.arm, results_path(FLAGS.workdir))
    markdown = write_table(rows, FLAGS.workdir, FLAGS.metric, FLAGS.kind, FLAGS.arm) if FLAGS.write else \
        to_markdown(*KINDS[FLAGS.kind](rows, FLAGS.metric))
    print(markdown, end="")


if __name__ == "__main__":
    cli.define_workdir("Directory holding results.csv.")
    flags.DEFINE_enum("metric", "test_f1", METRICS, "Metric of the table.")
    flags.DEFINE_enum("kind", "table", tuple(KINDS), "paper table, recovered fractions or "
                      "detection at iteration 1.")
    flags.DEFINE_bool("write", False, "Also write WORKDIR/<kind>_<metric>.md and .csv (printing alone writes nothing).")
    flags.DEFINE_string("arm", None, "The arm of a study's results.csv to tabulate (needed when it holds several); "
                        "written files end in _<arm>.")
    cli.run(main, sys.argv)
