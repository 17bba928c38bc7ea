"""The HTML matrix in a real headless Chromium: it renders, runs its script without errors, loads
nothing from the network, and the figures it shows equal the JSON format (the source of truth).

Needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver) and, for
the WebDriver tests, selenium (the `test` extra).
"""

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from test_matrix import fleet, run_cli  # noqa: F401 - fixtures shared with the matrix tests

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--disable-default-apps", "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND", "--hide-scrollbars"]

IN_CI = os.environ.get("CI") == "true"


def _missing(what: str) -> None:
    """Skip on a developer machine; in CI a missing browser is a failure, never a silent skip."""
    (pytest.fail if IN_CI else pytest.skip)(f"needs {what} (apt-get install -y chromium chromium-driver)")


@pytest.fixture(autouse=True)
def _chromium():
    if CHROMIUM is None:
        _missing("chromium")

FIGURE_KEYS = ("controls", "hosts", "totals", "units", "clauses", "trend", "waivers", "run", "baseline", "filters")


def _pages(fleet, tmp_path, lang="en", extra=()):  # noqa: F811
    db, bpath = fleet["db"], fleet["base"].path
    r = run_cli("matrix", "--store", db, "-b", bpath, "--format", "json", "--lang", lang, *extra)
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    page = tmp_path / f"matrix-{lang}.html"
    r = run_cli("matrix", "--store", db, "-b", bpath, "--format", "html", "-o", page, "--lang", lang, *extra)
    assert r.exit_code == 0, r.output
    return data, page


@pytest.fixture
def driver(tmp_path):
    try:
        from selenium import webdriver
    except ImportError:
        _missing("selenium (pip install '.[test]')")
    if CHROMEDRIVER is None:
        _missing("chromium-driver")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The DevTools pipe instead of a local websocket: with the websocket, chromedriver 156 lost the
    # renderer after the first navigation on these machines.
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1900", "--remote-debugging-pipe"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield drv
    finally:
        drv.quit()


def _severe(drv):
    return [entry for entry in drv.get_log("browser") if entry["level"] == "SEVERE"]


def _text(drv, el):
    return drv.execute_script("return arguments[0].textContent;", el).strip()


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_rendered_figures_equal_the_json(fleet, tmp_path, driver, lang):  # noqa: F811
    from selenium.webdriver.common.by import By

    data, page = _pages(fleet, tmp_path, lang)
    driver.get(page.as_uri())
    root = driver.find_element(By.TAG_NAME, "html")
    assert root.get_attribute("lang") == lang
    assert root.get_attribute("data-kijun-ready") == "1", "the page script did not finish"
    assert root.get_attribute("data-kijun-consistent") == "1"
    assert _severe(driver) == [], "JavaScript errors or blocked loads"
    # The embedded data is the JSON format.
    embedded = driver.execute_script("return JSON.parse(document.getElementById('kijun-data').textContent);")
    for key in FIGURE_KEYS:
        assert embedded[key] == data[key], key
    # Heat map: one cell per host and control, each status as counted.
    cells = driver.find_elements(By.CSS_SELECTOR, "#heatmap td.cell")
    assert len(cells) == len(data["hosts"]) * len(data["controls"]) == 30
    statuses = driver.execute_script(
        "return Array.from(document.querySelectorAll('#heatmap td.cell')).map(c => c.dataset.status);")
    assert statuses == [s for h in data["hosts"] for s in h["cells"]]
    for status, n in data["totals"]["by_status"].items():
        shown = driver.find_element(By.CSS_SELECTOR, f'[data-count-status="{status}"]')
        assert int(_text(driver, shown)) == n, status
        assert statuses.count(status) == n
    # Colours differ per status (a heat map, not a grey grid).
    colours = {s: driver.execute_script(
        f"return getComputedStyle(document.querySelector('#heatmap td.cell[data-status=\"{s}\"]')).backgroundColor;")
        for s in set(statuses)}
    assert len(set(colours.values())) == len(colours)
    # Headline and per-host percentages.
    assert _text(driver, driver.find_element(By.ID, "pass-percent")) == f"{data['totals']['pass_percent']:.1f}%"
    host_pcts = [_text(driver, el) for el in driver.find_elements(By.CSS_SELECTOR, "#heatmap tbody td.pct")]
    assert host_pcts == [f"{h['pass_percent']:.1f}%" for h in data["hosts"]]
    # Trend: one label per stored run, same percentages, in order; the line is drawn.
    labels = driver.find_elements(By.CSS_SELECTOR, "#trend .trend-label")
    assert [_text(driver, el) for el in labels] == [f"{p['pass_percent']:.1f}%" for p in data["trend"]]
    assert [el.get_attribute("data-run-id") for el in labels] == [p["run_id"] for p in data["trend"]]
    assert len(data["trend"]) == 3 and driver.find_elements(By.CSS_SELECTOR, "#trend polyline")
    # Clause rollup: one cell per clause and organisation/branch.
    holds = driver.find_elements(By.CSS_SELECTOR, "#rollup td.holds")
    assert [el.get_attribute("data-holds") for el in holds] == [u["holds"] for c in data["clauses"] for u in c["units"]]
    # Titles in the chosen language.
    title = data["controls"][0]["title"]
    assert title == ("No root SSH login" if lang == "en" else "rootでのSSHログイン禁止")
    assert title in _text(driver, driver.find_element(By.ID, "controls"))
    # Expired waivers are listed.
    assert "2020-01-31" in _text(driver, driver.find_element(By.ID, "waivers-expired"))
    # The page has a real layout: the heat map cells are drawn with a size.
    size = driver.execute_script("var r = document.querySelector('#heatmap td.cell').getBoundingClientRect();"
                                 "return [r.width, r.height];")
    assert size[0] >= 10 and size[1] >= 10


def test_legend_filter_and_no_network(fleet, tmp_path, driver):  # noqa: F811
    from selenium.webdriver.common.by import By

    data, page = _pages(fleet, tmp_path, "en", ("--class", "I,II"))
    driver.get(page.as_uri())
    assert len(driver.find_elements(By.CSS_SELECTOR, "#heatmap td.cell")) == 3 * 5 == data["totals"]["cells"]
    driver.find_element(By.CSS_SELECTOR, '.legend button[data-status="fail"]').click()
    on = driver.find_elements(By.CSS_SELECTOR, "#heatmap td.cell.on")
    assert len(on) == data["totals"]["by_status"]["fail"]
    assert "dim" in driver.find_element(By.ID, "heatmap").get_attribute("class")
    # Nothing but the page itself was loaded.
    urls = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert urls == []
    assert _severe(driver) == []


class _DomFigures(HTMLParser):
    def __init__(self):
        super().__init__()
        self.root = {}
        self.cells = []
        self.counts = {}
        self._count = None
        self.trend = []
        self._trend = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.root = a
        if tag == "td" and "cell" in (a.get("class") or "").split():
            self.cells.append(a.get("data-status"))
        if a.get("data-count-status"):
            self._count = a["data-count-status"]
        if tag == "text" and "trend-label" in (a.get("class") or ""):
            self._trend = True

    def handle_data(self, text):
        if self._count:
            self.counts[self._count] = int(text)
            self._count = None
        if self._trend:
            self.trend.append(text.strip())
            self._trend = False


def test_dump_dom_without_webdriver(fleet, tmp_path):  # noqa: F811
    """The same checks through `chromium --headless --dump-dom` (the DOM after the page script ran)."""
    data, page = _pages(fleet, tmp_path, "en")
    out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile-dump'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = _DomFigures()
    dom.feed(out.stdout)
    assert dom.root.get("data-kijun-ready") == "1" and dom.root.get("data-kijun-consistent") == "1"
    assert len(dom.cells) == len(data["hosts"]) * len(data["controls"])
    assert dom.counts == data["totals"]["by_status"]
    assert dom.trend == [f"{p['pass_percent']:.1f}%" for p in data["trend"]]
    embedded = re.search(r'<script type="application/json" id="kijun-data">(.*?)</script>', out.stdout, re.S).group(1)
    assert all(json.loads(embedded)[k] == data[k] for k in FIGURE_KEYS)
