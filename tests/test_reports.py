"""gbair.reports: paper table cells, recovery curves, plots and CLIs on a hand-computed results.csv."""

import csv
import pathlib
import subprocess
import sys

import pytest

from gbair.reports import paper, plots, tables
from gbair.workdir import RECOVERY_CURVES_FILE, REQUIRED_COLUMNS

REPO = pathlib.Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# (strategy, rate, seed, iteration, n_flagged, n_flagged_corrupted, test_f1); n_train is 100 at every
# iteration, 10 (rate 0.1) or 20 (rate 0.2) corrupted labels at iteration 0.
RUNS = [
    ("clean", 0.1, 0, 0, 0, 0, 0.95), ("clean", 0.1, 1, 0, 0, 0, 0.93),
    ("clean", 0.2, 0, 0, 0, 0, 0.92), ("clean", 0.2, 1, 0, 0, 0, 0.96),
]
for _strategy, _its in {
    "tracin": {(0.1, 0): [(5, 4, 0.86), (5, 3, 0.91)], (0.1, 1): [(5, 5, 0.90), (5, 2, 0.91)],
               (0.2, 0): [(5, 5, 0.78), (5, 4, 0.85)], (0.2, 1): [(5, 4, 0.84), (5, 5, 0.89)]},
    "random": {(0.1, 0): [(5, 1, 0.81), (5, 0, 0.82)], (0.1, 1): [(5, 0, 0.83), (5, 1, 0.80)],
               (0.2, 0): [(5, 1, 0.71), (5, 1, 0.72)], (0.2, 1): [(5, 2, 0.75), (5, 0, 0.78)]},
}.items():
    for (_rate, _seed), _steps in _its.items():
        _corrupted_f1 = {(0.1, 0): 0.80, (0.1, 1): 0.84, (0.2, 0): 0.70, (0.2, 1): 0.76}[(_rate, _seed)]
        RUNS.append((_strategy, _rate, _seed, 0, 0, 0, _corrupted_f1))
        RUNS += [(_strategy, _rate, _seed, t + 1, *step) for t, step in enumerate(_steps)]


def write_results(path: pathlib.Path, runs=RUNS, drop: tuple[str, ...] = ()) -> pathlib.Path:
    columns = [c for c in REQUIRED_COLUMNS if c not in drop]
    remaining: dict[tuple, int] = {}
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for strategy, rate, seed, it, flagged, found, f1 in runs:
            key = (strategy, rate, seed)
            remaining[key] = (round(rate * 100) if it == 0 else remaining[key]) - found
            writer.writerow({
                "dataset": "spam", "strategy": strategy, "corruption_rate": rate, "seed": seed,
                "iteration": it, "n_train": 100, "n_flagged": flagged, "n_flagged_corrupted": found,
                "n_corrupted_remaining": 0 if strategy == "clean" else remaining[key],
                "test_accuracy": round(f1 + 0.05, 4), "test_f1": f1,
                "test_auc": "" if seed == 1 else round(f1 + 0.02, 4), "wall_time_s": 12.5})
    return path


def close(points: list[tuple[float, float]], expected: list[tuple[float, float]]) -> bool:
    """Equal point by point up to float rounding (pytest.approx takes no nested tuples)."""
    return len(points) == len(expected) and all(
        (x, y) == pytest.approx(e, abs=1e-12) for (x, y), e in zip(points, expected))


@pytest.fixture
def workdir(tmp_path) -> pathlib.Path:
    write_results(tmp_path / "results.csv")
    return tmp_path


EXPECTED_F1_MARKDOWN = """\
| dataset | corruption_rate | clean | corrupted | tracin it1 | tracin it2 | random it1 | random it2 |
|:---|:---|---:|---:|---:|---:|---:|---:|
| spam | 0.1 | 0.940 ± 0.014 | 0.820 ± 0.028 | 0.880 ± 0.028 | 0.910 ± 0.000 | 0.820 ± 0.014 | 0.810 ± 0.014 |
| spam | 0.2 | 0.940 ± 0.028 | 0.730 ± 0.042 | 0.810 ± 0.042 | 0.870 ± 0.028 | 0.730 ± 0.028 | 0.750 ± 0.042 |
"""


def test_paper_table_cells_are_mean_and_sample_std_over_seeds(workdir):
    header, body = tables.paper_table(tables.load_results(workdir / "results.csv"))
    assert header == ["dataset", "corruption_rate", "clean", "corrupted",
                      "tracin it1", "tracin it2", "random it1", "random it2"]
    # clean 0.1: mean(0.95, 0.93) = 0.94, stdev = 0.02 / sqrt(2) = 0.01414...
    assert body[0][:4] == ["spam", "0.1", "0.940 ± 0.014", "0.820 ± 0.028"]
    assert tables.to_markdown(header, body) == EXPECTED_F1_MARKDOWN


def test_accuracy_and_auc_tables(workdir):
    rows = tables.load_results(workdir / "results.csv")
    header, body = tables.paper_table(rows, "test_accuracy")
    assert body[1][header.index("tracin it2")] == "0.920 ± 0.028"  # 0.90, 0.94
    # seed 1 has an empty test_auc: the AUC cells are seed 0 alone, shown without a spread.
    assert rows[1]["test_auc"] is None
    header, body = tables.paper_table(rows, "test_auc")
    assert body[0][header.index("clean")] == "0.970"
    with pytest.raises(ValueError, match="metric 'f1' is not one of test_f1, test_accuracy, test_auc"):
        tables.paper_table(rows, "f1")


def test_single_seed_and_missing_cells(tmp_path):
    runs = [r for r in RUNS if r[2] == 0 and not (r[0] == "random" and r[1] == 0.2 and r[3] == 2)]
    header, body = tables.paper_table(tables.load_results(write_results(tmp_path / "results.csv", runs)))
    assert body[0][2:] == ["0.950", "0.800", "0.860", "0.910", "0.810", "0.820"]
    assert body[1][header.index("random it2")] == "-"
    assert body[1][header.index("random it1")] == "0.710"


def test_recovery_curve_is_cumulative_and_averaged_over_seeds(workdir):
    rows = tables.load_results(workdir / "results.csv")
    tracin = tables.recovery_curve(rows, "tracin")
    assert list(tracin) == [("spam", 0.1), ("spam", 0.2)]
    # rate 0.1: seeds found 4 then 3, and 5 then 2, of 10 -> (0.4 + 0.5) / 2, (0.7 + 0.7) / 2
    assert close(tracin[("spam", 0.1)], [(0.0, 0.0), (0.05, 0.45), (0.10, 0.70)])
    # rate 0.2: 5 then 4, and 4 then 5, of 20 -> (0.25 + 0.2) / 2, 0.45
    assert close(tracin[("spam", 0.2)], [(0.0, 0.0), (0.05, 0.225), (0.10, 0.45)])
    assert close(tables.recovery_curve(rows, "random")[("spam", 0.1)], [(0.0, 0.0), (0.05, 0.05), (0.10, 0.10)])
    with pytest.raises(ValueError, match="strategy 'oracle' has no cleaning runs"):
        tables.recovery_curve(rows, "oracle")


def test_recovery_curve_stops_at_the_shortest_seed(tmp_path):
    runs = [r for r in RUNS if not (r[0] == "tracin" and r[2] == 1 and r[3] == 2)]
    rows = tables.load_results(write_results(tmp_path / "results.csv", runs))
    assert close(tables.recovery_curve(rows, "tracin")[("spam", 0.1)], [(0.0, 0.0), (0.05, 0.45)])


def test_missing_column_names_file_and_column(tmp_path):
    path = write_results(tmp_path / "results.csv", drop=("test_f1",))
    with pytest.raises(ValueError, match=r"results\.csv: missing column 'test_f1'"):
        tables.load_results(path)


def test_bad_values_name_file_line_column_and_value(tmp_path):
    path = write_results(tmp_path / "results.csv")
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",100,", ",1e2x,", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"results\.csv:3: column 'n_train' has value '1e2x', expected an integer"):
        tables.load_results(path)
    path.write_text("\n".join(lines[:2] + [lines[1]]) + "\n")
    with pytest.raises(ValueError, match=r"results\.csv:3: duplicate row for dataset='spam' strategy='clean'"):
        tables.load_results(path)


def test_plots_write_png_files_without_a_display(workdir, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    rows = tables.load_results(workdir / "results.csv")
    plots.plot_metric_vs_iteration(rows, workdir / "f1.png")
    plots.plot_recovery(rows, workdir / "recovery.png")
    for name in ("f1.png", "recovery.png"):
        data = (workdir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    assert not list(workdir.glob(".*.tmp"))  # atomic writes leave no temp files


def test_report_writes_tables_and_plots(workdir):
    printed = paper.write_report(workdir)
    assert printed.startswith("test_f1 (mean ± std over seeds):\n" + EXPECTED_F1_MARKDOWN)
    assert (workdir / "table_test_f1.md").read_text(encoding="utf-8") == EXPECTED_F1_MARKDOWN
    with open(workdir / "table_test_accuracy.csv", newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0][:4] == ["dataset", "corruption_rate", "clean", "corrupted"]
    assert table[1][2] == "0.990 ± 0.014"
    for name in ("test_f1_vs_iteration.png", "test_auc_vs_iteration.png", "recovery.png"):
        assert (workdir / name).read_bytes().startswith(PNG_SIGNATURE)
    for name in ("recovered_test_f1.md", "recovered_test_auc.csv", "recovered_per_seed.csv", "detection_auroc.md",
                 "detection_ap.csv"):
        assert (workdir / name).stat().st_size > 0
    assert not list(workdir.glob("detection_detection_*"))  # the kind is said once


def test_clis_take_workdir_flags_and_printing_writes_nothing(workdir):
    env = {"PATH": "/usr/bin:/bin", "MPLBACKEND": "", "PYTHONPATH": str(REPO)}

    def run(module: str, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", module, f"--workdir={workdir}", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, check=True).stdout

    assert run("gbair.reports.tables") == EXPECTED_F1_MARKDOWN
    assert sorted(p.name for p in workdir.iterdir()) == ["results.csv"]  # printing wrote nothing
    assert run("gbair.reports.tables", "--write") == EXPECTED_F1_MARKDOWN == (workdir / "table_test_f1.md").read_text()
    assert (workdir / "table_test_f1.csv").read_text(encoding="utf-8").startswith("dataset,corruption_rate,clean,")
    pngs = ("test_f1_vs_iteration.png", "test_auc_vs_iteration.png", "recovery.png")
    assert run("gbair.reports.plots").split() == [str(workdir / name) for name in pngs]
    assert (workdir / "recovery.png").read_bytes().startswith(PNG_SIGNATURE)


def test_every_strategy_keeps_a_distinct_style_in_every_figure():
    names = [s for s in tables.STRATEGY_ORDER if s not in plots.REFERENCES] + ["mine", "theirs", "zeta", "alpha"]
    assert len(names) == 15
    style = plots.styles(names)
    assert len({(s.color, s.marker) for s in style.values()}) == 15
    first = [style[n] for n in names[:len(plots.PALETTE)]]
    assert len({s.color for s in first}) == len({s.marker for s in first}) == len(plots.PALETTE)
    # Fixed by the canonical order, not by the names present:
    assert plots.styles(["loss", "tracin"]) == {"loss": style["loss"], "tracin": style["tracin"]}
    assert list(plots.styles(["oracle", "clean", "random"])) == ["random"]  # the bounds are reference lines


def test_recovery_plot_without_a_curve_file_and_with_one(workdir):
    rows = tables.load_results(workdir / "results.csv")
    assert plots.load_curves(workdir / RECOVERY_CURVES_FILE) == {}  # made before the sweep wrote it
    plots.plot_recovery(rows, workdir / "recovery.png", {})
    (workdir / RECOVERY_CURVES_FILE).write_text(
        "dataset,corruption_rate,seed,strategy,fraction_flagged,fraction_found\n"
        "spam,0.1,0,tracin,0.0,0.0\nspam,0.1,0,tracin,0.5,0.9\nspam,0.1,0,tracin,1.0,1.0\n")
    curves = plots.load_curves(workdir / RECOVERY_CURVES_FILE)
    assert list(curves) == [("spam", 0.1, "tracin")] and curves[("spam", 0.1, "tracin")][0].tolist()[1] == [0.5, 0.9]
    plots.plot_recovery(rows, workdir / "recovery.png", curves)  # a curve in one panel, points only in the other
    assert (workdir / "recovery.png").read_bytes().startswith(PNG_SIGNATURE)
    (workdir / RECOVERY_CURVES_FILE).write_text("dataset,seed\nspam,0\n")
    with pytest.raises(ValueError, match="recovery_curves.csv: missing column 'corruption_rate'"):
        plots.load_curves(workdir / RECOVERY_CURVES_FILE)


def test_flagged_precision_table(workdir):
    header, body = tables.paper_table(tables.load_results(workdir / "results.csv"), "flagged_precision")
    row = dict(zip(header, body[0]))  # rate 0.1
    # tracin it1 flags (5, 4) and (5, 5) over the two seeds: 0.8 and 1.0; random it2 (5, 0) and (5, 1).
    assert (row["clean"], row["corrupted"]) == ("-", "-")
    assert row["tracin it1"] == "0.900 ± 0.141" and row["random it2"] == "0.100 ± 0.141"


def test_flagged_lift_divides_by_the_corrupted_share_before_flagging(workdir):
    rows = tables.load_results(workdir / "results.csv")
    lift = {(r["strategy"], r["corruption_rate"], r["seed"], r["iteration"]): r["flagged_lift"] for r in rows}
    # tracin, rate 0.1, seed 0: 10 of 100 corrupted, flags (5, 4): 0.8 / 0.1; then 6 left, flags (5, 3): 0.6 / 0.06
    assert lift[("tracin", 0.1, 0, 1)] == pytest.approx(8.0) and lift[("tracin", 0.1, 0, 2)] == pytest.approx(10.0)
    assert lift[("tracin", 0.1, 0, 0)] is None and lift[("clean", 0.1, 0, 0)] is None  # nothing flagged
    header, body = tables.paper_table(rows, "flagged_lift")
    row = dict(zip(header, body[0]))  # seed 1: (5, 5) of 10 left: 10.0; then (5, 2) of 5 left: 8.0
    assert row["tracin it1"] == "9.000 ± 1.414" and row["tracin it2"] == "9.000 ± 1.414"
    gap = tables.load_results(write_results(workdir / "gap.csv", [run for run in RUNS if run[3] != 1]))
    assert all(r["flagged_lift"] is None for r in gap)  # iteration 2 has no iteration 1 to take its share from


def test_recovered_fraction_per_seed_and_its_interval(workdir):
    rows = tables.load_results(workdir / "results.csv")
    fractions = tables.recovered_fractions(rows, "test_f1")
    # rate 0.1, tracin it1: seed 0 (0.86 - 0.80) / (0.95 - 0.80), seed 1 (0.90 - 0.84) / (0.93 - 0.84)
    assert fractions[("spam", 0.1, "tracin", 1)] == pytest.approx({0: 0.4, 1: 2 / 3})
    header, body = tables.recovery_table(rows, "test_f1")
    row = dict(zip(header, body[0]))
    mean, half = (0.4 + 2 / 3) / 2, 12.7062047 * abs(2 / 3 - 0.4) / 2 ** 0.5 / 2 ** 0.5  # t(0.975, df=1)
    assert row["tracin it1"] == f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]"
    assert tables.ci95([0.5]) is None and tables.format_interval([0.5]) == "0.50"
    half = 4.30265273 / 3 ** 0.5  # t(0.975, df=2) * std 1 / sqrt(3)
    assert tables.ci95([1.0, 2.0, 3.0]) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    # test_auc is missing for seed 1: that seed is left out, not counted as 0
    assert set(tables.recovered_fractions(rows, "test_auc")[("spam", 0.1, "tracin", 1)]) == {0}
    assert "spam,0.1,tracin,1,1,test_f1,0.6667" in tables.recovered_per_seed_csv(rows)


def test_arm_column_is_kept_and_defaults_to_main(tmp_path):
    path = write_results(tmp_path / "results.csv")
    assert {r["arm"] for r in tables.load_results(path)} == {tables.DEFAULT_ARM} == {"main"}
    header, *lines = path.read_text().splitlines()
    # The same runs again under a second arm are not duplicates; an empty cell is the default arm.
    path.write_text("\n".join([header + ",arm"] + [line + "," for line in lines]
                              + [line + ",balanced" for line in lines]) + "\n")
    rows = tables.load_results(path)
    assert [r["arm"] for r in rows] == ["main"] * len(lines) + ["balanced"] * len(lines)
    path.write_text("\n".join([header + ",arm", lines[0] + ",balanced", lines[0] + ",balanced"]) + "\n")
    with pytest.raises(ValueError, match=r"results\.csv:3: duplicate row for .* iteration=0 arm='balanced'"):
        tables.load_results(path)


def test_a_table_of_a_study_takes_one_arm_and_names_it(tmp_path):
    path = write_results(tmp_path / "results.csv")
    header, *lines = path.read_text().splitlines()
    # the balanced arm: the same runs with every test_f1 raised by 0.01
    balanced = []
    for line in lines:
        cells = dict(zip(header.split(","), line.split(",")))
        cells["test_f1"] = f"{float(cells['test_f1']) + 0.01:.2f}"
        balanced.append(",".join(cells[c] for c in header.split(",")))
    path.write_text("\n".join([header + ",arm"] + [line + ",main" for line in lines]
                              + [line + ",balanced" for line in balanced]) + "\n")
    rows = tables.load_results(path)
    with pytest.raises(tables.UserError, match=r"holds the arms balanced, main; pass --arm=NAME"):
        tables.one_arm(rows, None, path)
    with pytest.raises(tables.UserError, match=r"--arm='budget4x' is not one of its arms \(balanced, main\)"):
        tables.one_arm(rows, "budget4x", path)
    main_rows = tables.one_arm(rows, "main", path)
    assert len(main_rows) == len(lines)
    assert tables.to_markdown(*tables.paper_table(main_rows, "test_f1")) == EXPECTED_F1_MARKDOWN  # main alone
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "gbair.reports.tables", f"--workdir={tmp_path}", "--arm=balanced", "--write"],
                   cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert "0.950 ± 0.014" in (tmp_path / "table_test_f1_balanced.md").read_text()  # clean at 0.1: 0.94 + 0.01
    single = tables.one_arm(tables.load_results(write_results(tmp_path / "one.csv")), None, tmp_path / "one.csv")
    assert len(single) == len(lines)  # one arm: no name needed
