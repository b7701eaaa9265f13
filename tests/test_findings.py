"""gbair.reports.findings: the registered comparisons against scipy and hand computations, Holm's
correction against a hand-worked example, and byte-identical regeneration of findings.md/.csv."""

import csv
import dataclasses
import math
import pathlib
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from gbair.reports import findings, tables
from gbair.workdir import REQUIRED_COLUMNS

REPO = pathlib.Path(__file__).resolve().parents[1]
CORRUPTED = "<iteration 0>"  # study key for the model trained on the corrupted labels (every strategy's it0)
STRATEGIES = ("tracin", "tracin_by_label", "trak", "influence_function", "cleanlab", "loss", "random", "oracle")
# Per-iteration gain in test F1 over the corrupted model; detection AUROC is 0.5 + 4 x this.
EFFECT = {"tracin": 0.02, "tracin_by_label": 0.04, "trak": 0.05, "influence_function": 0.01, "cleanlab": 0.03,
          "loss": 0.035, "random": 0.0, "oracle": 0.08}
DATASET = {"main": "spam", "balanced": "spam_balanced", "budget4x": "spam", "iterations": "spam"}

Study = dict[tuple[str, str, float, int, int], tuple[float, float | None, float | None]]  # -> (f1, auc, det)


def make_study(seeds=range(10), rng_seed: int = 0) -> Study:
    """Every arm, strategy, rate 0.2/0.3 and iterations 1-3, with a large per-replicate offset shared
    by all strategies of a seed (what pairing cancels) and a small per-strategy effect."""
    rng = np.random.default_rng(rng_seed)
    study: Study = {}
    for arm in DATASET:
        for rate in (0.2, 0.3):
            for seed in seeds:
                f1, auc = 0.6 + 0.08 * rng.standard_normal(), 0.75 + 0.05 * rng.standard_normal()
                study[(arm, "clean", rate, seed, 0)] = (f1 + 0.2 + 0.02 * rng.standard_normal(), auc + 0.15, None)
                study[(arm, CORRUPTED, rate, seed, 0)] = (f1, auc, None)
                for s in STRATEGIES:
                    for it in (1, 2, 3):
                        study[(arm, s, rate, seed, it)] = (
                            f1 + EFFECT[s] * it + 0.01 * rng.standard_normal(),
                            auc + EFFECT[s] * it / 2 + 0.01 * rng.standard_normal(),
                            0.5 + 4 * EFFECT[s] + 0.03 * rng.standard_normal())
    return study


def write_study(path: pathlib.Path, study: Study, arm_column: bool = True) -> pathlib.Path:
    """results.csv as the loop writes it: the corrupted model repeated as iteration 0 of each strategy."""
    present = {(arm, rate, seed, s) for arm, s, rate, seed, _ in study if s not in ("clean", CORRUPTED)}
    lines = []
    for (arm, strategy, rate, seed, it), (f1, auc, det) in study.items():
        names = sorted(s for a, r, sd, s in present if (a, r, sd) == (arm, rate, seed)) \
            if strategy == CORRUPTED else [strategy]
        lines += [(arm, name, rate, seed, it, f1, auc, det) for name in names]
    columns = REQUIRED_COLUMNS + ("detection_auroc",) + (("arm",) if arm_column else ())
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for arm, strategy, rate, seed, it, f1, auc, det in lines:
            writer.writerow({
                "arm": arm, "dataset": DATASET[arm], "strategy": strategy, "corruption_rate": rate, "seed": seed,
                "iteration": it, "n_train": 100, "n_flagged": 5 if it else 0, "n_flagged_corrupted": 2 if it else 0,
                "n_corrupted_remaining": 10, "test_accuracy": f1, "test_f1": f1,
                "test_auc": "" if auc is None else auc, "wall_time_s": 1.0,
                "detection_auroc": "" if det is None else det})
    return path


def expected(study: Study, arm: str, endpoint: str, rate: float, strategy: str, it: int, seed: int) -> float | None:
    """An endpoint straight from the study's numbers (an independent recovered-fraction formula)."""
    index = {"test_f1": 0, "test_auc": 1, "detection_auroc": 2}[endpoint.removeprefix("recovered_")]
    if (arm, strategy, rate, seed, it) not in study:
        return None
    value = study[(arm, strategy, rate, seed, it)][index]
    if not endpoint.startswith("recovered_") or value is None:
        return value
    clean, corrupted = (study[(arm, s, rate, seed, 0)][index] for s in ("clean", CORRUPTED))
    return (value - corrupted) / (clean - corrupted)


def by_id(result: list[findings.Finding]) -> dict[str, findings.Finding]:
    return {f.comparison.row_id: f for f in result}


@pytest.fixture(scope="module")
def study() -> Study:
    study = make_study()
    del study[("main", "cleanlab", 0.2, 3, 1)]  # cleanlab lacks seed 3: its pairs use the other nine
    f1, _, det = study[("main", "loss", 0.3, 5, 1)]
    study[("main", "loss", 0.3, 5, 1)] = (f1, None, det)  # no AUC for one seed: left out of AUC rows only
    return study


@pytest.fixture(scope="module")
def analysed(study, tmp_path_factory) -> list[findings.Finding]:
    path = write_study(tmp_path_factory.mktemp("study") / "results.csv", study)
    return findings.analyse(tables.load_results(path))


def test_registered_family_is_the_protocol():
    ids = [c.row_id for c in findings.REGISTERED]
    assert len(ids) == len(set(ids)) == 62
    count = lambda family: sum(c.family == family for c in findings.REGISTERED)  # noqa: E731
    assert (count("primary"), count("raw"), count("controls")) == (24, 24, 14)
    primary = [(c.hypothesis, c.rate, c.a, c.b) for c in findings.REGISTERED if c.family == "primary"]
    raw = [(c.hypothesis, c.rate, c.a, c.b) for c in findings.REGISTERED if c.family == "raw"]
    assert primary == raw  # the raw family is the primary comparisons on the raw metrics
    assert {c.endpoint for c in findings.REGISTERED if c.family == "raw"} == {"test_f1", "test_auc"}
    with pytest.raises(ValueError, match="H9: endpoint 'test_accuracy' is not one of"):
        findings.Comparison("H9", "raw", "paired", "main", 0.2, "test_accuracy", "trak", "loss")
    with pytest.raises(ValueError, match="H9: a paired comparison needs b"):
        findings.Comparison("H9", "raw", "paired", "main", 0.2, "test_f1", "trak")


def test_paired_rows_match_ttest_rel_and_a_direct_t_interval(study, analysed):
    paired = [f for f in analysed if f.comparison.kind == "paired"]
    assert len(paired) == 48
    for f in paired:
        c = f.comparison
        pairs = [tuple(expected(study, c.arm, c.endpoint, c.rate, strategy, 1, s) for strategy in (c.a, c.b))
                 for s in range(10)]
        a, b = map(np.array, zip(*[(x, y) for x, y in pairs if x is not None and y is not None]))
        d = a - b
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        assert f.n == len(d) and f.wins == int((d > 0).sum()), c.row_id
        assert f.test == pytest.approx((d.mean(), d.std(ddof=1), d.mean() - half, d.mean() + half,
                                        stats.ttest_rel(a, b).pvalue), rel=1e-9, abs=1e-12), c.row_id
    f = by_id(analysed)
    assert f["H3c/0.2/test_f1"].n == 9 and f["H3c/0.3/test_f1"].n == 10  # cleanlab lacks seed 3 at 0.2
    assert f["H3d/0.3/test_auc"].n == 9 and f["H3d/0.3/test_f1"].n == 10  # loss lacks one AUC at 0.3


def test_pairing_by_seed_matters(study, analysed):
    """The seed offset dwarfs the effect: an unpaired test (or pairs matched by the wrong seed) would
    give a p far from the paired one."""
    f = by_id(analysed)["H3a/0.3/test_f1"]
    a = np.array([study[("main", "trak", 0.3, s, 1)][0] for s in range(10)])
    b = np.array([study[("main", "tracin", 0.3, s, 1)][0] for s in range(10)])
    assert f.test.p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert f.test.p < 1e-3 < 0.1 < stats.ttest_ind(a, b).pvalue
    assert stats.ttest_rel(a, np.roll(b, 1)).pvalue > 100 * f.test.p
    assert f.verdict == "supported"


def test_t_test_against_scipy_and_without_spread():
    d = [0.12, -0.03, 0.2, 0.07, 0.01]
    assert findings.t_test(d).p == pytest.approx(stats.ttest_1samp(d, 0).pvalue, rel=1e-12)
    assert findings.t_test([0.0, 0.0]) == (0.0, 0.0, 0.0, 0.0, 1.0)  # scipy gives nan here
    assert findings.t_test([0.25, 0.25]) == (0.25, 0.0, 0.25, 0.25, 0.0)


def test_holm_hand_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06 for 0.04
    assert findings.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert findings.holm([0.2, 0.5]) == pytest.approx([0.4, 0.5])
    assert findings.holm([0.7, 0.6]) == [1.0, 1.0]
    assert findings.holm([0.037]) == [0.037] and findings.holm([]) == []


def test_holm_invariants_and_definition():
    rng = random.Random(0)
    for _ in range(200):
        p = [rng.choice([rng.random(), rng.random() / 100, 0.01, 0.5]) for _ in range(rng.randint(1, 12))]
        adjusted = findings.holm(p)
        ordered = sorted(range(len(p)), key=lambda i: p[i])
        assert all(p[i] <= adjusted[i] <= 1 for i in range(len(p)))
        assert all(adjusted[i] <= adjusted[j] for i, j in zip(ordered, ordered[1:]))
        s, m = sorted(p), len(p)
        for i in range(m):  # adj = max over the p_(j) <= p_i of min(1, (m - j + 1) p_(j)), j from 1
            assert adjusted[i] == pytest.approx(max(min(1, (m - j) * s[j]) for j in range(m) if s[j] <= p[i]))


def hand_study(p_target: float, rates: tuple[float, ...]) -> Study:
    """tracin vs random on three seeds whose test-F1 differences give exactly p_target at each rate."""
    t = stats.t.ppf(1 - p_target / 2, 2)
    mean = t * 0.01 / math.sqrt(3)  # deviations -0.01, 0, +0.01 have sd 0.01
    study: Study = {}
    for rate in rates:
        for seed, deviation in enumerate((-0.01, 0.0, 0.01)):
            study[("main", "clean", rate, seed, 0)] = (0.9, None, None)
            study[("main", CORRUPTED, rate, seed, 0)] = (0.6, None, None)
            study[("main", "random", rate, seed, 1)] = (0.7, None, None)
            study[("main", "tracin", rate, seed, 1)] = (0.7 + mean + deviation, None, None)
    return study


def test_holm_decides_the_verdict(tmp_path):
    """p = 0.03 on each of two rows: supported alone (m = 1), not supported once Holm doubles it."""
    def analyse(study: Study) -> dict[str, findings.Finding]:
        return by_id(findings.analyse(tables.load_results(write_study(tmp_path / "results.csv", study))))

    two = analyse(hand_study(0.03, (0.2, 0.3)))
    for row in ("H1/0.2/test_f1", "H1/0.3/test_f1", "H1/0.2/recovered_test_f1"):
        f = two[row]
        assert f.test.p == pytest.approx(0.03, rel=1e-6) and f.m == 2 and f.holm_p == pytest.approx(0.06, rel=1e-6)
        assert f.verdict == "not supported"
    one = analyse(hand_study(0.03, (0.2,)))
    f = one["H1/0.2/test_f1"]
    assert f.m == 1 and f.holm_p == f.test.p == pytest.approx(0.03, rel=1e-6) and f.verdict == "supported"
    assert one["H1/0.3/test_f1"].verdict == "no data" and one["H1/0.2/test_auc"].verdict == "no data"


def test_constant_iteration_and_across_arms_rows_by_hand(tmp_path):
    study: Study = {}
    for arm, seeds in (("main", (0, 1, 2)), ("balanced", (1, 2, 3)), ("iterations", (0, 1, 2))):
        for seed in seeds:  # gap 0.3, so F1 0.6 + 0.3 x recovered fraction
            study[(arm, "clean", 0.3, seed, 0)] = (0.9, None, None)
            study[(arm, CORRUPTED, 0.3, seed, 0)] = (0.6, None, None)
    # H4a: detection AUROC 0.6, 0.7, 0.8 on balanced seeds 1-3 -> differences from 0.5: 0.1, 0.2, 0.3
    # H4b, recovered fractions (tracin_by_label, tracin): main seeds 0-2 (0.5, 0.2) (0.5, 0.2) (0.6, 0.1),
    #   balanced seeds 1-3 (0.4, 0.3) (0.3, 0.3) (0.9, 0.0); shared seeds 1, 2: 0.1 - 0.3, 0.0 - 0.5
    # H6 oracle: it1 0.3, 0.4, 0.2 and it3 0.8, 0.7, 0.9 -> 0.5, 0.3, 0.7
    for seed, (tbl, tr) in zip((0, 1, 2), ((0.5, 0.2), (0.5, 0.2), (0.6, 0.1))):
        study[("main", "tracin_by_label", 0.3, seed, 1)] = (0.6 + 0.3 * tbl, None, None)
        study[("main", "tracin", 0.3, seed, 1)] = (0.6 + 0.3 * tr, None, None)
    for seed, (tbl, tr), det in zip((1, 2, 3), ((0.4, 0.3), (0.3, 0.3), (0.9, 0.0)), (0.6, 0.7, 0.8)):
        study[("balanced", "tracin_by_label", 0.3, seed, 1)] = (0.6 + 0.3 * tbl, None, None)
        study[("balanced", "tracin", 0.3, seed, 1)] = (0.6 + 0.3 * tr, None, det)
    for seed, (it1, it3) in enumerate(((0.3, 0.8), (0.4, 0.7), (0.2, 0.9))):
        study[("iterations", "oracle", 0.3, seed, 1)] = (0.6 + 0.3 * it1, None, None)
        study[("iterations", "oracle", 0.3, seed, 3)] = (0.6 + 0.3 * it3, None, None)
    result = by_id(findings.analyse(tables.load_results(write_study(tmp_path / "results.csv", study))))
    t2 = 4.30265273  # t(0.975, df=2)

    h4a = result["H4a/0.3/detection_auroc"]  # mean 0.2, sd 0.1
    assert h4a.differences == pytest.approx({1: 0.1, 2: 0.2, 3: 0.3})
    assert h4a.test[:4] == pytest.approx((0.2, 0.1, 0.2 - t2 * 0.1 / math.sqrt(3), 0.2 + t2 * 0.1 / math.sqrt(3)))
    assert h4a.test.p == pytest.approx(2 * stats.t.sf(0.2 / (0.1 / math.sqrt(3)), 2)) and h4a.wins == 3

    h4b = result["H4b/0.3/recovered_test_f1"]  # -0.2, -0.5: mean -0.35, sd 0.3 / sqrt 2, t = -0.35 / 0.15
    assert h4b.differences == pytest.approx({1: -0.2, 2: -0.5}) and h4b.wins == 0
    assert h4b.test.mean == pytest.approx(-0.35) and h4b.test.sd == pytest.approx(0.3 / math.sqrt(2))
    assert h4b.test.p == pytest.approx(2 * stats.t.sf(0.35 / 0.15, 1))
    assert h4b.comparison.text == "(tracin_by_label - tracin): balanced - main"

    h6 = result["H6/oracle/0.3/recovered_test_f1"]  # 0.5, 0.3, 0.7: mean 0.5, sd 0.2
    assert h6.differences == pytest.approx({0: 0.5, 1: 0.3, 2: 0.7}) and h6.comparison.text == "oracle it3 - it1"
    assert h6.test[:4] == pytest.approx((0.5, 0.2, 0.5 - t2 * 0.2 / math.sqrt(3), 0.5 + t2 * 0.2 / math.sqrt(3)))
    # Controls family: these three rows alone have two or more seeds.
    assert {f.m for f in result.values() if f.comparison.family == "controls"} == {3}
    assert h6.holm_p == pytest.approx(min(1, 3 * h6.test.p))


def test_missing_data_gives_no_data_rows(tmp_path):
    study = {k: v for k, v in make_study(seeds=range(3)).items()
             if k[0] == "main" and k[1] in ("clean", CORRUPTED, "tracin", "random", "trak")
             and not (k[2] == 0.3 and k[3] > 0)}  # rate 0.3 keeps one seed
    result = findings.analyse(tables.load_results(write_study(tmp_path / "results.csv", study)))
    f = by_id(result)
    assert f["H1/0.2/test_f1"].n == 3 and f["H1/0.2/test_f1"].test is not None
    assert f["H3a/0.2/recovered_test_auc"].n == 3
    one = f["H1/0.3/test_f1"]
    assert one.n == 1 and one.test is None and one.holm_p is None and one.verdict == "no data"
    for row in ("H2/0.2/test_f1", "H3b/0.3/recovered_test_f1", "H4a/0.3/detection_auroc",
                "H6/trak/0.3/recovered_test_auc"):
        assert f[row].n == 0 and f[row].verdict == "no data"
    # m counts the rows with two or more seeds: H1 and H3a at rate 0.2, two endpoints each.
    assert {x.m for x in result if x.comparison.family == "raw"} == {4}
    assert {x.m for x in result if x.comparison.family == "controls"} == {0}
    lines = {r["hypothesis"] + "/" + r["rate"] + "/" + r["endpoint"]: r
             for r in csv.DictReader(findings.to_csv(result).splitlines())}
    assert [lines["H1/0.3/test_f1"][k] for k in ("n", "mean", "p", "holm_p", "m", "wins", "verdict")] == \
        ["1", "-", "-", "-", "4", str(one.wins), "no data"]
    markdown = findings.to_markdown(result)
    assert markdown.startswith("# Findings (interim)\n\nInterim: ")
    assert f"| H1/0.3/test_f1 | tracin - random | main | +1 | 1 | - | - | - | {one.wins}/1 | no data |" in markdown


def test_verdicts_and_formatting(study, analysed):
    f = by_id(analysed)
    assert f["H4a/0.3/detection_auroc"].verdict == "supported"  # AUROC ~0.58 > 0.5, as hypothesised
    assert f["H5/0.3/detection_auroc"].verdict == "contradicted"  # hypothesised < 0.5
    rows = list(csv.DictReader(findings.to_csv(analysed).splitlines()))
    assert tuple(rows[0]) == findings.CSV_COLUMNS and len(rows) == 62
    h3a = next(r for r in rows if (r["hypothesis"], r["rate"], r["endpoint"]) == ("H3a", "0.3", "recovered_test_auc"))
    x = f["H3a/0.3/recovered_test_auc"]
    assert (h3a["mean"], h3a["ci_low"], h3a["p"], h3a["holm_p"], h3a["wins"]) == \
        (f"{x.test.mean:.4f}", f"{x.test.ci_low:.4f}", f"{x.test.p:.3g}", f"{x.holm_p:.3g}", str(x.wins))
    assert (h3a["comparison"], h3a["direction"], h3a["m"], h3a["family"]) == ("trak - tracin", "+1", "24", "primary")
    markdown = findings.to_markdown(analysed)
    assert markdown.startswith("# Findings (interim)\n")  # H3c/0.2 has 9 of the 10 target seeds
    assert [line for line in markdown.splitlines() if line.startswith("## ")] == \
        ["## primary (Holm over m = 24)", "## raw (Holm over m = 24)", "## controls (Holm over m = 14)"]
    cell = f"{x.test.mean:.2f} [{x.test.ci_low:.2f}, {x.test.ci_high:.2f}]"
    assert f"| H3a/0.3/recovered_test_auc | trak - tracin | main | +1 | 10 | {cell} | {x.test.p:.2g} | " \
           f"{x.holm_p:.2g} | {x.wins}/10 | {x.verdict} |" in markdown


def test_a_verdict_short_of_its_target_seeds_is_shown_as_interim(analysed):
    supported = by_id(analysed)["H4a/0.3/detection_auroc"]  # a control row: target 5 seeds
    assert supported.verdict == "supported" and supported.n >= findings.TARGET_SEEDS["controls"]
    kept = dict(list(supported.differences.items())[:findings.TARGET_SEEDS["controls"] - 1])
    short = dataclasses.replace(supported, differences=kept)  # same verdict, one seed short
    assert findings.to_markdown([short]).splitlines()[-1].endswith("| supported (interim) |")
    assert findings.to_markdown([supported]).splitlines()[-1].endswith("| supported |")
    no_data = dataclasses.replace(short, verdict="not supported")
    assert findings.to_markdown([no_data]).splitlines()[-1].endswith("| not supported |")


def test_complete_study_is_not_interim(tmp_path):
    markdown = findings.write_findings(write_study(tmp_path / "results.csv", make_study()).parent)
    assert markdown.startswith("# Findings\n\nPer seed") and "nterim" not in markdown


def test_each_arm_holds_one_dataset(tmp_path):
    path = write_study(tmp_path / "results.csv", make_study(seeds=range(2)))
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    next(r for r in rows if r["arm"] == "balanced")["dataset"] = "other"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match="arm 'balanced' holds datasets other, spam_balanced, expected one per arm"):
        findings.analyse(tables.load_results(path))


def test_output_is_deterministic_and_independent_of_row_order(study, tmp_path):
    path = write_study(tmp_path / "results.csv", study)
    findings.write_findings(tmp_path)
    first = {name: (tmp_path / name).read_bytes() for name in ("findings.md", "findings.csv")}
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "gbair.reports.findings", f"--workdir={tmp_path}"], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.encode("utf-8") == first["findings.md"]
    assert {name: (tmp_path / name).read_bytes() for name in first} == first
    header, *rows = path.read_text().splitlines()
    random.Random(1).shuffle(rows)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    (shuffled / "results.csv").write_text("\n".join([header] + rows) + "\n")
    findings.write_findings(shuffled)
    assert {name: (shuffled / name).read_bytes() for name in first} == first


COMMITTED = sorted(p.parent for p in (REPO / "experiments").rglob("findings.md")
                   if (p.parent / "results.csv").is_file())


@pytest.mark.parametrize("directory", COMMITTED or [pytest.param(None, marks=pytest.mark.skip(
    reason="no experiments/**/findings.md with a results.csv beside it is committed yet"))],
    ids=lambda d: str(d.relative_to(REPO)) if d else "none")
def test_committed_findings_regenerate_byte_for_byte(directory, tmp_path):
    shutil.copy(directory / "results.csv", tmp_path / "results.csv")
    findings.write_findings(tmp_path)
    for name in ("findings.md", "findings.csv"):
        assert (tmp_path / name).read_bytes() == (directory / name).read_bytes(), f"{directory}/{name}"


def test_a_quote_holds_against_its_own_row_and_fails_when_a_number_or_the_row_is_wrong(analysed):
    row = next(f for f in analysed if f.test is not None)
    text = f"as measured, `{findings.quote(row)}`, and so on"
    assert findings.check_quotes(text, analysed) == []
    low = f"{row.test.ci_low:.2f}"
    assert findings.check_quotes(text.replace(f"[{low},", f"[{float(low) + 0.01:.2f},"), analysed)  # wrong interval
    assert findings.check_quotes(text.replace(f", n = {row.n}", f", n = {row.n + 1}"), analysed)  # wrong n
    assert findings.check_quotes(text.replace(row.comparison.row_id, "H9/0.3/test_f1"), analysed)  # no such row
    other = "supported" if row.verdict != "supported" else "not supported"
    assert findings.check_quotes(text.replace(f", {row.verdict}`", f", {other}`"), analysed)  # wrong verdict
    bare = text.replace(f", n = {row.n}, {row.verdict}", "").replace(": +", ": ")  # n, verdict and sign are optional
    assert bare != text and findings.check_quotes(bare, analysed) == []


CLAIMS = ("README.md", "experiments/RESULTS.md", "docs/results.md")


@pytest.mark.parametrize("document", CLAIMS)
def test_every_evidence_study_quote_in_the_docs_matches_the_committed_findings(document):
    """Prose cites the evidence study's rows as findings.QUOTE; each must equal experiments/evidence's row."""
    result = findings.analyse(tables.load_results(REPO / "experiments" / "evidence" / "results.csv"))
    assert findings.check_quotes((REPO / document).read_text(), result) == []
