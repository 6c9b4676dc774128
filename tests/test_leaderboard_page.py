"""The static leaderboard page (`sepit leaderboard build` -> index.html) in a real headless browser: Debian's
chromium and chromedriver, driven by Selenium from file:// with no server and no network.

Checks what only a browser can: the rows as rendered, sorting on a header click (compared with the cells'
data-sort values), the slice selects, that the embedded plots decode at their own size, that the script logs no
error, and a non-blank screenshot. Those tests are skipped when chromium, chromedriver or selenium is missing,
unless SEPIT_REQUIRE_BROWSER=1 (as .ci/run sets), where a missing browser fails instead of hiding the test.

Without a browser: a large board's plots keep their labels apart, inside the figure and at a readable size
(matplotlib's text extents), and the page shows no folder of the machine that built it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import matplotlib.text
import numpy as np
import pytest
from leaderboard_data import write_all
from PIL import Image

from sepit_leaderboard.board import build_board
from sepit_leaderboard.cli import build
from sepit_leaderboard.page import render
from sepit_leaderboard.plots import DPI, bar_chart, bar_figure, radar_figure
from sepit_leaderboard.results import find_results, load_run
from sepit_leaderboard.tables import MISSING, metric_name
from sepit.evaluation.scoring import leakage_report

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError as err:  # pragma: no cover - depends on the environment
    webdriver = None
    SELENIUM_ERROR = str(err)

slow = pytest.mark.slow  # the toy page: about 16 s, most of it scoring the toy runs (METEOR loads WordNet)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BOARD_ORDER = ["oracle", "retrieval", "majority", "partial"]
TOY_TASKS = ["toy_caption", "toy_location", "toy_membrane"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# What JavaScript's `+v` accepts as a number, for the data-sort values the page writes (no hex, no Infinity).
NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _unavailable(reason: str, install: str) -> None:
    if os.environ.get("SEPIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}, and SEPIT_REQUIRE_BROWSER=1 says the browser test must run: {install}",
                    pytrace=False)
    pytest.skip(f"{reason} ({install}; with SEPIT_REQUIRE_BROWSER=1 this fails instead of skipping)")


@pytest.fixture(scope="module")
def _browser_installed() -> None:
    """Before the (slower) board build: skip or fail at once when there is no browser to drive."""
    if webdriver is None:
        _unavailable(f"selenium is not importable ({SELENIUM_ERROR})",
                     "`pip install -r requirements/ci.txt`, or `pip install selenium`")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        _unavailable(f"{' and '.join(missing)} not found",
                     "install Debian's browser and driver with `sudo apt-get install chromium chromium-driver`")


def _add_leakage(runs: Path) -> None:
    """Give each run the test-to-train identity report `sepit score` writes for a registered task (toy tasks
    have no training set), built by the scorer's own leakage_report from the per-sample logs, so that the
    page has slice tables to switch between. Identity rises with the sample id: P000 0 % ... P039 97.5 %;
    `partial` answered P000-P019 only, so its upper bins are empty."""
    for path in sorted(runs.glob("*/results.json")):
        results = json.loads(path.read_text())
        for task, result in results["tasks"].items():
            metric = "accuracy" if result["kind"] == "closed" else "rougeL"
            lines = (path.parent / "samples" / f"{task}.jsonl").read_text().splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
            values = np.array([100.0 * row["correct"] if metric == "accuracy" else row[metric] for row in rows])
            identity = np.array([2.5 * int(row["id"][1:]) for row in rows])
            result["leakage"] = leakage_report(
                identity, lambda masks, v=values, m=metric: {m: masks @ v / np.maximum(masks.sum(1), 1)})
        path.write_text(json.dumps(results))


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("leaderboard")
    runs = write_all(folder / "runs")
    _add_leakage(runs)
    build(str(runs), folder / "board")
    return folder / "board" / "index.html"


@pytest.fixture(scope="module")
def driver(_browser_installed, tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager (which may try the network) is never run.
    browser = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def board(driver, page):
    """The page freshly loaded (the sort order of an earlier test gone); afterwards, no script error logged."""
    driver.get_log("browser")  # drop what earlier tests left
    driver.get(page.as_uri())
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(driver, 10).until(expected_conditions.presence_of_element_located((By.ID, "board")))
    yield driver
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"the page logged errors: {errors}"


def _models(driver, table: str = "#board") -> list[str]:
    return driver.execute_script(
        "return [...document.querySelector(arguments[0]).tBodies[0].rows].map(r => r.dataset.model)", table)


def _header(driver, text: str, table: str = "#board"):
    headers = driver.find_elements(By.CSS_SELECTOR, f"{table} thead th")
    found = [th for th in headers if th.text == text]
    assert len(found) == 1, f"no single header {text!r} in {[th.text for th in headers]}"
    return found[0]


def _click_sort(driver, th, direction: str) -> None:
    th.click()
    WebDriverWait(driver, 5).until(lambda _: th.get_attribute("aria-sort") == direction)


def _sort_key(value: str | None):
    """The page's sortValue(): '' is no value (always last); a number compares as a number, else as text."""
    if value is None or value == "":
        return None
    return float(value) if NUMBER.fullmatch(value) else value


def _expected(driver, table: str, column: int, ascending: bool) -> list[str]:
    """The row order a stable sort of the current rows by the column's data-sort values gives."""
    rows = driver.execute_script(
        "return [...document.querySelector(arguments[0]).tBodies[0].rows]"
        ".map(r => [r.dataset.model, r.cells[arguments[1]].dataset.sort])", table, column)
    keyed = [(model, _sort_key(value)) for model, value in rows]
    present = sorted([r for r in keyed if r[1] is not None], key=lambda r: r[1], reverse=not ascending)
    return [model for model, _ in present] + [model for model, key in keyed if key is None]


@slow
def test_rows_in_board_order(board):
    assert _models(board) == BOARD_ORDER
    headers = [th.text for th in board.find_elements(By.CSS_SELECTOR, "#board thead th")]
    assert headers == ["Rank", "Model", "Modality", "Params total", "Params active", "Profile", "Average",
                       "Biology average", "toy_caption (entity F1)", "toy_caption (ROUGE-L)", "toy_location (accuracy)",
                       "toy_membrane (accuracy)"]
    ranks = [td.text for td in board.find_elements(By.CSS_SELECTOR, "#board tbody tr td:first-child")]
    assert ranks == ["1", "2", "3", MISSING]
    partial = board.find_element(By.CSS_SELECTOR, "#board tr[data-model='partial']")
    assert "*(20/40)" in partial.text


@slow
def test_click_sorts_by_model_then_reverses(board):
    model = _header(board, "Model")
    _click_sort(board, model, "ascending")
    assert _models(board) == ["majority", "oracle", "partial", "retrieval"]
    _click_sort(board, model, "descending")
    assert _models(board) == ["retrieval", "partial", "oracle", "majority"]
    assert [th.get_attribute("aria-sort") for th in board.find_elements(By.CSS_SELECTOR, "#board th")
            if th.get_attribute("aria-sort")] == ["descending"]


@slow
def test_click_sorts_numbers_best_first(board):
    membrane = _header(board, "toy_membrane (accuracy)")
    _click_sort(board, membrane, "descending")
    # oracle 95, partial 90 (on its 20 samples), retrieval 87.5, majority 52.5
    assert _models(board) == ["oracle", "partial", "retrieval", "majority"]
    _click_sort(board, membrane, "ascending")
    assert _models(board) == ["majority", "retrieval", "partial", "oracle"]
    # Rank starts ascending; the unranked row stays last in both directions.
    rank = _header(board, "Rank")
    _click_sort(board, rank, "ascending")
    assert _models(board) == BOARD_ORDER
    assert membrane.get_attribute("aria-sort") is None
    _click_sort(board, rank, "descending")
    assert _models(board) == ["majority", "retrieval", "oracle", "partial"]


@slow
@pytest.mark.parametrize("table", ["#board", "#significance"])
def test_every_column_sorts_by_its_data_sort_values(board, table):
    count = len(board.find_elements(By.CSS_SELECTOR, f"{table} thead th"))
    assert count >= 5
    for column in range(count):
        th = board.find_elements(By.CSS_SELECTOR, f"{table} thead th")[column]
        first = th.get_attribute("data-first")
        assert first in ("ascending", "descending")
        for direction in (first, "descending" if first == "ascending" else "ascending"):
            expected = _expected(board, table, column, direction == "ascending")
            _click_sort(board, th, direction)
            assert _models(board, table) == expected, (th.text, direction)


@slow
def test_slice_selects_show_one_table(board):
    assert board.find_elements(By.ID, "slice-kind"), "no slice view, though every run has a leakage report"
    kind, task = Select(board.find_element(By.ID, "slice-kind")), Select(board.find_element(By.ID, "slice-task"))
    assert [o.get_attribute("value") for o in kind.options] == ["identity"]
    assert [o.get_attribute("value") for o in task.options] == TOY_TASKS

    def shown() -> list[tuple[str, str]]:
        return [(t.get_attribute("data-slice"), t.get_attribute("data-task"))
                for t in board.find_elements(By.CSS_SELECTOR, "table.slice") if t.is_displayed()]

    assert len(board.find_elements(By.CSS_SELECTOR, "table.slice")) == len(TOY_TASKS)
    assert shown() == [("identity", "toy_caption")]
    for name in ("toy_membrane", "toy_location", "toy_caption"):
        task.select_by_value(name)
        WebDriverWait(board, 5).until(lambda _, n=name: shown() == [("identity", n)])
    task.select_by_value("toy_membrane")
    WebDriverWait(board, 5).until(lambda _: shown() == [("identity", "toy_membrane")])
    visible = "table.slice[data-task='toy_membrane']"
    assert sorted(_models(board, visible)) == sorted(BOARD_ORDER)
    # partial answered the low-identity half only: no value at >=90 %, so it sorts last.
    top = _header(board, ">=90", visible)
    column = [th.text for th in board.find_elements(By.CSS_SELECTOR, f"{visible} thead th")].index(">=90")
    expected = _expected(board, visible, column, ascending=False)
    _click_sort(board, top, "descending")
    assert _models(board, visible) == expected
    assert expected[-1] == "partial"


@slow
def test_slice_view_follows_restored_selects(board):
    Select(board.find_element(By.ID, "slice-task")).select_by_value("toy_membrane")
    board.get("about:blank")
    board.back()
    WebDriverWait(board, 10).until(lambda d: d.execute_script(
        "return location.protocol === 'file:' && document.readyState === 'complete'"))
    restored = board.find_element(By.ID, "slice-task").get_attribute("value")
    shown = [t.get_attribute("data-task") for t in board.find_elements(By.CSS_SELECTOR, "table.slice")
             if t.is_displayed()]
    assert shown == [restored]


@slow
def test_plots_decode_and_screenshot_is_not_blank(board, tmp_path):
    images = board.find_elements(By.TAG_NAME, "img")
    assert [img.get_attribute("alt") for img in images] == ["tasks chart", "radar chart"]
    WebDriverWait(board, 10).until(lambda d: d.execute_script(
        "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"))
    for img in images:
        assert img.is_displayed()
        assert min(img.size["width"], img.size["height"]) > 100
    _assert_shown_at_own_size(board)
    # The whole page in one shot: a window whose viewport is as large as the document.
    width, height = board.execute_script(
        "const e = document.documentElement; return [e.scrollWidth + window.outerWidth - window.innerWidth,"
        " e.scrollHeight + window.outerHeight - window.innerHeight]")
    board.set_window_size(max(width, 1400), height)
    try:
        path = tmp_path / "leaderboard.png"
        assert board.save_screenshot(str(path))
    finally:
        board.set_window_size(1400, 1000)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 50_000, f"screenshot of {len(data)} bytes: blank?"
    with Image.open(path) as shot:
        assert min(shot.size) >= 1000
        grey = shot.convert("L")
        low, high = grey.getextrema()
        assert high - low > 100, "the screenshot has no contrast"
        assert len(grey.getcolors()) > 16, "the screenshot has almost one colour"


def _assert_shown_at_own_size(driver) -> None:
    """A plot the browser shrinks to fit the page shrinks its 9 pt names with it."""
    shown = driver.execute_script("return [...document.images].map(i => [i.alt, i.width, i.naturalWidth])")
    assert shown and all(width == natural for _, width, natural in shown), shown


# A board of SEPIT's size and beyond: the nine SP14 tasks, a second column for each open task, twelve models.
OPEN = ["sp14_caption", "sp14_catalytic_activity", "sp14_function", "sp14_location", "sp14_process"]
CLOSED = ["sp14_enzyme_class", "sp14_go_cc", "sp14_localization", "sp14_membrane", "sp14_go_bp"]
WIDE_TASKS = OPEN[:2] + CLOSED[:2] + OPEN[2:] + CLOSED[2:4] + [f"{t}_v2" for t in OPEN] + CLOSED[4:]
WIDE_MODELS = ["sepit-7b-moe", "sepit-7b", "sepit-7b-no-structure", "esm2-llama-projector", "protein-chat",
               "retrieval", "galactica-6.7b", "biomedgpt-10b", "majority", "gpt-4o-zero-shot", "prot2text",
               "partial-run"]
SIZES = [(4, 3), (10, 9), (12, 15)]  # (models, tasks)


def _wide_runs(folder: Path, models: int, tasks: int) -> Path:
    """`folder/<model>/results.json` with seeded scores and CIs, and no sample logs (the plots and the page need
    none): the last of several models answered half of each task and none of the last one."""
    for m, model in enumerate(WIDE_MODELS[:models]):
        rng = np.random.default_rng(m)
        partial = m == models - 1 and models > 1
        results = {}
        for name in WIDE_TASKS[:tasks][:-1] if partial else WIDE_TASKS[:tasks]:
            kind = "closed" if name in CLOSED else "open"
            metric, value = ("accuracy" if kind == "closed" else "rougeL"), float(rng.uniform(10, 95))
            results[name] = {"version": "1", "kind": kind, "n": 20 if partial else 40, "expected_n": 40,
                             "complete": not partial, "metrics": {metric: value},
                             "ci": {metric: [max(value - 9, 0), min(value + 9, 100)]}}
        (folder / model).mkdir(parents=True)
        (folder / model / "results.json").write_text(json.dumps({
            "schema_version": 1, "scale": "0-100", "metric_profile": {"name": "sepit_v1", "version": "1"},
            "model": {"name": model, "modality": "seq", "params_total": 10 ** (m % 10), "fingerprint": model},
            "tasks": results}))
    return folder


def _wide_board(folder: Path, models: int, tasks: int) -> dict:
    return build_board([load_run(p) for p in find_results(_wide_runs(folder, models, tasks))])


def _texts(fig) -> list[tuple[str, object]]:
    """Every text a reader sees in `fig`, drawn at the saved resolution, with its extent in pixels."""
    fig.set_dpi(DPI)
    fig.canvas.draw()
    return [(t.get_text(), t.get_window_extent()) for t in fig.findobj(matplotlib.text.Text)
            if t.get_text() and t.get_visible() and (t.axes is None or t.axes.get_visible())]


def _overlap(a, b) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5


def _assert_legible(fig) -> None:
    """No text runs over another or past the figure's edge (where the saved image would clip it)."""
    texts = _texts(fig)
    edge = fig.bbox
    for text, box in texts:
        assert edge.x0 - 1 <= box.x0 and box.x1 <= edge.x1 + 1 and edge.y0 - 1 <= box.y0 and box.y1 <= edge.y1 + 1, \
            f"{text!r} is clipped"
    clashes = [(a, b) for i, (a, box) in enumerate(texts) for b, other in texts[i + 1:] if _overlap(box, other)]
    assert not clashes, clashes[:5]


@pytest.mark.parametrize("models,tasks", SIZES)
def test_bar_chart_gives_every_task_a_panel_and_every_name_room(tmp_path, models, tasks):
    board = _wide_board(tmp_path, models, tasks)
    fig = bar_figure(board)
    try:
        _assert_legible(fig)
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title() for ax in panels] == [f"{t['name']}\n{metric_name(t['metric'])}" for t in board["tasks"]]
        assert [t.get_text() for t in panels[0].get_yticklabels()] == [r["model"] for r in board["rows"]]
        names = [t for ax in panels for t in ax.get_yticklabels() if t.get_visible()]
        assert names and min(t.get_fontsize() for t in names) >= 9
        # A model's line is taller than its name, however many models: the figure grows instead.
        pitch = np.diff(sorted(t.get_window_extent().y0 for t in panels[0].get_yticklabels()))
        assert pitch.min() >= 1.5 * max(t.get_window_extent().height for t in names)
        # Shown at its own size in a 1400 px window (the page's column is 1400 px less 2 x 2em margins).
        assert fig.get_figwidth() * DPI <= 1400 - 64
        bars = [patch for ax in panels for patch in ax.patches]
        assert len(bars) == sum(len(r["tasks"]) for r in board["rows"])
        assert sum(len(ax.lines) for ax in panels) > 0, "no CI error bars"
    finally:
        fig.clf()


def test_bar_chart_grows_with_the_board(tmp_path):
    sizes = []
    for models, tasks in SIZES:
        fig = bar_figure(_wide_board(tmp_path / f"{models}x{tasks}", models, tasks))
        sizes.append((fig.get_figwidth(), fig.get_figheight()))
        fig.clf()
    heights = [h for _, h in sizes]
    assert heights == sorted(heights) and heights[-1] > 2.5 * heights[0]
    assert all(w <= 12.2 for w, _ in sizes)  # grows downwards: a wider figure would be shrunk by the page


@pytest.mark.parametrize("models,tasks", [(4, 3), (12, 15)])
def test_radar_legend_covers_no_task_label(tmp_path, models, tasks):
    fig = radar_figure(_wide_board(tmp_path, models, tasks))
    try:
        _assert_legible(fig)
        (ax,), (legend,) = fig.axes, fig.legends
        box = legend.get_window_extent()
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        assert len(labels) == tasks
        covered = [t.get_text() for t in labels if _overlap(box, t.get_window_extent())]
        assert not covered, f"the legend covers {covered}"
        assert not _overlap(box, ax.bbox), "the legend lies on the polar axes"
        assert len(legend.get_texts()) == models - 1  # the ranked ones: the partial run has no rank
    finally:
        fig.clf()


def test_plots_are_the_same_bytes_for_the_same_board(tmp_path):
    board = _wide_board(tmp_path / "runs", 10, 9)
    first, second = bar_chart(board, tmp_path / "a"), bar_chart(board, tmp_path / "b")
    for kind in ("svg", "png"):
        assert first[kind].read_bytes() == second[kind].read_bytes(), kind


def test_page_shows_no_folder_of_the_builder(tmp_path):
    runs = _wide_runs(tmp_path / "machine" / "results", 10, 9)
    board = build_board([load_run(p) for p in find_results(runs)])
    board["notes"].append(f"{runs / 'majority' / 'results.json'}: a note that names a results file")
    page = render(board, {}, "today")
    assert str(tmp_path) not in page
    assert "<li>majority/results.json: a note that names a results file</li>" in page
    assert sorted(f"{m}/results.json" for m in WIDE_MODELS[:10]) == re.findall(r"<li>source: ([^<]*)</li>", page)


@pytest.fixture(scope="module")
def wide_page(tmp_path_factory) -> Path:
    """A page of ten models on the nine SP14 tasks, built by `sepit leaderboard build` in a folder of its own."""
    folder = tmp_path_factory.mktemp("builder")
    build(str(_wide_runs(folder / "results", 10, 9)), folder / "board", n_resamples=50)
    return folder / "board" / "index.html"


def test_built_page_shows_no_folder_of_the_builder(wide_page):
    page = wide_page.read_text()
    builder = wide_page.parent.parent
    assert str(builder) not in page and f"{os.sep}results{os.sep}" not in page
    assert "<li>source: sepit-7b/results.json</li>" in page


def test_wide_board_plots_show_at_their_own_size(driver, wide_page):
    driver.get(wide_page.as_uri())
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && [...document.images].every(i => i.complete && i.naturalWidth)"))
    assert len(driver.find_elements(By.TAG_NAME, "img")) == 2
    _assert_shown_at_own_size(driver)
