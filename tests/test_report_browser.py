"""The HTML report in a real browser: Debian's headless Chromium driven by Selenium, offline.

Opens the page from file://, expands an explanation, checks that a training text holding a script
tag shows as text, relabels an example, exports the decisions, and saves a screenshot to
test-artifacts/report.png. Skipped where Chromium or chromedriver is missing (.ci/run installs them). Pages of real cleaning runs (tests/conftest.py) show every strategy's
ranking scores sorted; decisions survive a reload and come back from an imported file.
"""

import csv
import json
import os
import pathlib
import time

import pytest

from gbair.reports import html as report_html
from tests.test_reports_html import EVIL, sample_data

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMEDRIVER = pathlib.Path("/usr/bin/chromedriver")
ARTIFACTS = pathlib.Path(__file__).resolve().parent.parent / "test-artifacts"

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); "
                "apt-get install chromium chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[test]')")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    saved = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-quic",
                 "--window-size=1280,1800", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    browser = webdriver.Chrome(options=options, service=service)
    yield browser
    browser.quit()
    if saved is None:
        os.environ.pop("SE_OFFLINE")
    else:
        os.environ["SE_OFFLINE"] = saved


def open_report(driver, path: pathlib.Path, data: dict | None = None) -> float:
    """Writes (given `data`) and opens the report with no stored decisions (the browser keeps them per
    report); returns seconds from driver.get until the script has rendered it."""
    if data is not None:
        report_html.write_report(path, data)
    driver.get(path.as_uri())
    rendered(driver)
    driver.execute_script("localStorage.clear()")
    start = time.perf_counter()
    driver.refresh()
    rendered(driver)
    return time.perf_counter() - start


def rendered(driver) -> None:
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-rendered"))


def test_review_relabel_export(driver, tmp_path):
    seconds = open_report(driver, tmp_path / "report.html", sample_data())
    print(f"report rendered {seconds * 1000:.0f} ms after driver.get")

    assert driver.find_element(By.ID, "title").text == "G-BAIR <demo> report"
    assert len(driver.find_elements(By.CSS_SELECTOR, "section.iteration")) == 2
    assert len(driver.find_elements(By.CSS_SELECTOR, "#plots img")) == 1
    assert driver.execute_script("return document.querySelector('#plots img').naturalWidth") == 160

    # Proponents are built only when the row is expanded.
    row = driver.find_element(By.CSS_SELECTOR, 'details.misclassified[data-val-id="v0"]')
    assert row.find_elements(By.CSS_SELECTOR, ".train") == []
    row.find_element(By.CSS_SELECTOR, "summary.expand").click()
    proponents = WebDriverWait(driver, 10).until(lambda d: row.find_elements(By.CSS_SELECTOR, ".proponents .train"))
    assert [p.get_attribute("data-train-id") for p in proponents] == ["t1", "t4"]
    assert [o.get_attribute("data-train-id") for o in row.find_elements(By.CSS_SELECTOR, ".opponents .train")] == ["t0"]
    meta = proponents[0].find_element(By.CSS_SELECTOR, ".meta").text
    assert "label: ham" in meta and "corrupted: yes" in meta and "dot: 2.5000" in meta and "cosine: 0.6100" in meta

    # The script tag in t1's text is text: no alert, no injected elements.
    assert EVIL in proponents[0].find_element(By.TAG_NAME, "pre").get_attribute("textContent")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # pylint: disable=expression-not-assigned
    assert driver.execute_script("return document.scripts.length") == 2
    assert driver.execute_script("return document.querySelectorAll('#iterations b').length") == 0

    # Relabel t1 (ham -> spam) from its proponent entry; every place t1 is listed shows it.
    proponents[0].find_element(By.CSS_SELECTOR, '[data-train-id="t1"][data-action="relabel"]').click()
    marked = driver.find_elements(By.CSS_SELECTOR, '.train[data-train-id="t1"].decided-relabel')
    assert len(marked) == 2  # the proponent entry and the flagged entry

    driver.find_element(By.ID, "export").click()
    exported = json.loads(driver.find_element(By.ID, "export-json").get_attribute("value"))
    assert exported == {"decisions": [{"id": "t1", "action": "relabel", "label": "spam"}]}
    link = driver.find_element(By.ID, "export-download")
    assert link.get_attribute("download") == "decisions.json"
    assert link.get_attribute("href").startswith("blob:")

    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []  # e.g. a CSP violation
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "report.png"))


def test_pages_and_multiclass_relabel(driver, tmp_path):
    data = sample_data()
    data["class_names"] = ["ham", "spam", "phish"]
    template = data["iterations"][0]["misclassified"][0]
    data["iterations"][0]["misclassified"] = [dict(template, id=f"v{i}") for i in range(120)]
    open_report(driver, tmp_path / "report.html", data)

    section = driver.find_elements(By.CSS_SELECTOR, "section.iteration")[0]
    ids = lambda: [r.get_attribute("data-val-id") for r in section.find_elements(By.CSS_SELECTOR, "details.misclassified")]  # noqa: E731
    assert ids() == [f"v{i}" for i in range(50)]
    section.find_element(By.CSS_SELECTOR, "button.next").click()
    assert ids() == [f"v{i}" for i in range(50, 100)]
    section.find_element(By.CSS_SELECTOR, "button.next").click()
    assert ids() == [f"v{i}" for i in range(100, 120)]

    # Three classes: relabel takes the class from the example's <select>; remove replaces it.
    flagged = section.find_element(By.CSS_SELECTOR, '.paged:last-of-type .train[data-train-id="t4"]')
    flagged.find_element(By.CSS_SELECTOR, 'select option[value="phish"]').click()
    flagged.find_element(By.CSS_SELECTOR, '[data-action="relabel"]').click()
    driver.find_element(By.CSS_SELECTOR, '.train[data-train-id="t1"] [data-action="keep"]').click()
    driver.find_element(By.ID, "export").click()
    assert json.loads(driver.find_element(By.ID, "export-json").get_attribute("value")) == {"decisions": [
        {"id": "t4", "action": "relabel", "label": "phish"}, {"id": "t1", "action": "keep"}]}
    flagged.find_element(By.CSS_SELECTOR, '[data-action="remove"]').click()
    driver.find_element(By.ID, "export").click()
    assert json.loads(driver.find_element(By.ID, "export-json").get_attribute("value")) == {"decisions": [
        {"id": "t4", "action": "remove"}, {"id": "t1", "action": "keep"}]}


def exported(driver) -> dict:
    driver.find_element(By.ID, "export").click()
    return json.loads(driver.find_element(By.ID, "export-json").get_attribute("value"))


def shown_scores(section, name: str) -> list[float]:
    """The `name: value` field of each flagged example of a section, in page order."""
    items = section.find_elements(By.CSS_SELECTOR, ".paged:last-of-type .train .meta")
    return [float(next(s.text.split(": ", 1)[1] for s in item.find_elements(By.TAG_NAME, "span")
                       if s.text.startswith(name + ": "))) for item in items]


@pytest.mark.parametrize("run, strategy", [("cleaned_by_loss", "loss"),
                                           ("cleaned_by_tracin_by_label", "tracin_by_label")])
def test_a_cleaning_page_shows_the_ranking_scores_sorted_with_their_meaning(driver, request, run, strategy):
    workdir = request.getfixturevalue(run)
    open_report(driver, workdir / "report.html")
    with open(workdir / "flagged.csv", newline="") as f:
        flagged = list(csv.DictReader(f))
    sections = driver.find_elements(By.CSS_SELECTOR, "section.iteration")
    assert len(sections) == len({r["iteration"] for r in flagged}) >= 1
    for section in sections:
        it = section.get_attribute("data-iteration")
        scores = shown_scores(section, f"{strategy} score")
        assert scores == sorted(scores, reverse=True)
        assert scores == pytest.approx([float(r["score"]) for r in flagged if r["iteration"] == it], abs=1e-4)
        meaning = section.find_element(By.CSS_SELECTOR, "p.meaning").text
        assert "more suspicious" in meaning and meaning.startswith(f"{strategy} score: ")
        assert "p(given label): " in section.find_element(By.CSS_SELECTOR, ".paged:last-of-type .train .meta").text
    if strategy == "tracin_by_label":  # V's errors: the model's confidence, proponents and opponents explained
        row = sections[0].find_element(By.CSS_SELECTOR, "details.misclassified")
        assert "given " in row.text and "predicted " in row.text and "(0." in row.text
        assert "opponents" in sections[0].find_element(By.CSS_SELECTOR, "p.legend").text
        row.find_element(By.CSS_SELECTOR, "summary.expand").click()
        WebDriverWait(driver, 10).until(lambda d: row.find_elements(By.CSS_SELECTOR, ".opponents .train"))
        wrap = row.find_element(By.CSS_SELECTOR, "pre.val-text").value_of_css_property("white-space")
        assert wrap == "pre-wrap"
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_decisions_survive_a_reload_and_an_imported_file_restores_them(driver, tmp_path):
    page = tmp_path / "report.html"
    open_report(driver, page, sample_data())
    driver.find_element(By.CSS_SELECTOR, '.paged:last-of-type .train[data-train-id="t1"] [data-action="relabel"]').click()
    driver.find_element(By.CSS_SELECTOR, '.paged:last-of-type .train[data-train-id="t4"] [data-action="keep"]').click()
    decided = {"decisions": [{"id": "t1", "action": "relabel", "label": "spam"}, {"id": "t4", "action": "keep"}]}
    assert exported(driver) == decided

    driver.refresh()
    rendered(driver)
    assert driver.find_element(By.ID, "decision-count").text == "2 decision(s)"
    assert driver.find_elements(By.CSS_SELECTOR, '.train[data-train-id="t4"].decided-keep')
    assert exported(driver) == decided

    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps({"decisions": [{"id": "t2", "action": "remove"}]}))
    driver.find_element(By.ID, "import-file").send_keys(str(saved))
    WebDriverWait(driver, 10).until(lambda d: "imported" in d.find_element(By.ID, "import-status").text)
    assert exported(driver) == {"decisions": [{"id": "t2", "action": "remove"}]}
    assert not driver.find_elements(By.CSS_SELECTOR, '.train[data-train-id="t4"].decided-keep')
    assert driver.find_elements(By.CSS_SELECTOR, '.train[data-train-id="t2"].decided-remove')

    bad = tmp_path / "bad.json"  # a file naming an example the report does not have changes nothing
    bad.write_text(json.dumps({"decisions": [{"id": "t1", "action": "keep"}, {"id": "zzz", "action": "keep"}]}))
    driver.find_element(By.ID, "import-file").send_keys(str(bad))
    WebDriverWait(driver, 10).until(lambda d: "not imported" in d.find_element(By.ID, "import-status").text)
    assert "decisions[1]" in driver.find_element(By.ID, "import-status").text
    driver.refresh()
    rendered(driver)
    assert exported(driver) == {"decisions": [{"id": "t2", "action": "remove"}]}
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
