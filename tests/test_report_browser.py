"""The HTML report in a real browser: Debian's headless Chromium driven by Selenium, offline.

Opens the page from file://, expands an explanation, checks that a training text holding a script
tag shows as text, relabels an example, exports the decisions, and saves a screenshot to
test-artifacts/report.png. Skipped where Chromium or chromedriver is missing (.ci/run installs them).
"""

import json
import os
import pathlib
import time

import pytest

from gbair import report_html
from tests.test_report_html import EVIL, sample_data

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


def open_report(driver, path: pathlib.Path, data: dict) -> float:
    """Writes and opens the report; returns seconds from driver.get until the script has rendered it."""
    report_html.write_report(path, data)
    start = time.perf_counter()
    driver.get(path.as_uri())
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-rendered"))
    return time.perf_counter() - start


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
