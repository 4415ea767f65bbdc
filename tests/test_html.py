"""index.html: written by `fer-bench report` beside summary.md, byte-identical when regenerated, linking every table
file and figure; and, in a real headless Chromium (Debian's `chromium`, driven by its own command line), loading
with no console error, every image loaded and tables sorted by a click on a header.

The results folder is a small grid of the two baselines on synthetic data (no CNN): a copy of part of conftest's
tiny_grid with its report, made once for the module. The browser tests are marked slow.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import copy_grid

from fer_bench.report import write_report
from fer_bench.report.html import (
    LINKED_FILES,
    anchors,
    figure_task,
    index_html,
    linked_files,
    markdown_renderer,
    render_markdown,
)
from fer_bench.report.inputs import ReportInputs, load_cells
from fer_bench.report.sections import RenderedSection
from fer_bench.report.tables import Tables
from fer_bench.settings import Settings

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless browser: `chromium` is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def dataset(tiny_synthetic):
    return tiny_synthetic


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_grid, dataset) -> Path:
    """binary and 7class, hog_svm and logreg, seed 0, of conftest's shared tiny_grid, and their report (written
    as run_grid writes it: handed the data set)."""
    out = copy_grid(tiny_grid, tmp_path_factory.mktemp("html") / "results",
                    cells=[f"{task}/{model}/seed0" for task in ("binary", "7class") for model in ("hog_svm", "logreg")])
    write_report(out, dataset=dataset)
    return out


class _Links(HTMLParser):
    """Every href and img src of a page, the ids, the sections' titles and the table of contents."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.images, self.ids, self.section_titles = [], [], [], []
        self._in_section_h2 = False
        self._depth = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "section":
            self._depth.append("section")
        if tag == "h2" and self._depth:
            self._in_section_h2 = True
            self.section_titles.append("")
        if tag == "a" and self._in_section_h2:
            self._in_section_h2 = False  # the "#" anchor link after the title

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_section_h2 = False
        if tag == "section" and self._depth:
            self._depth.pop()

    def handle_data(self, data):
        if self._in_section_h2:
            self.section_titles[-1] += data


def _parse(text: str) -> _Links:
    parser = _Links()
    parser.feed(text)
    return parser


# --- without a browser ----------------------------------------------------------------------------------------

def test_index_html_is_regenerated_byte_identically_and_links_every_file(results, dataset):
    first = (results / "index.html").read_bytes()
    write_report(results, dataset=dataset)
    assert (results / "index.html").read_bytes() == first

    page = _parse(first.decode("utf-8"))
    hrefs = set(page.hrefs)
    for name in sorted(p.name for p in results.glob("*.csv")) + ["summary.md", "summary.tex"]:
        assert name in hrefs, f"index.html does not link {name}"
    figures = sorted(f"figures/{p.name}" for p in (results / "figures").glob("*.png"))
    assert figures and sorted(set(page.images)) == figures  # every figure drawn, each shown once or more
    for link in hrefs | set(page.images):  # every relative link resolves inside the folder
        if not link.startswith("#"):
            assert (results / link).is_file(), link
        else:
            assert link[1:] in page.ids, link

    # the sections of summary.md, in the same order, each reachable from the table of contents
    summary_titles = re.findall(r"^## (.+)$", (results / "summary.md").read_text(encoding="utf-8"), re.M)
    assert [t.strip() for t in page.section_titles] == summary_titles
    for anchor in anchors(summary_titles):
        assert f"#{anchor}" in hrefs and anchor in page.ids
    assert b"http://" not in first and b"https://" not in first  # nothing fetched from the network


def test_audit_files_are_linked_when_present(tmp_path):
    inputs = SimpleNamespace(out=tmp_path)
    written = ["metrics.csv", "summary.tex", "figures/roc_binary.png"]
    assert [f["name"] for f in linked_files(inputs, written)] == ["metrics.csv", "summary.tex"]
    (tmp_path / "audit.md").write_text("# audit\n")
    assert [f["name"] for f in linked_files(inputs, written)] == ["metrics.csv", "summary.tex", "audit.md"]
    assert {name for name, _ in LINKED_FILES} >= {"metrics.csv", "per_class.csv", "confusions.csv",
                                                 "significance.csv", "floors.csv", "timing.csv", "summary.tex",
                                                 "audit.md"}


def test_markdown_is_converted_and_raw_html_escaped(results):
    inputs = ReportInputs(out=results, cells=load_cells(results), settings=Settings(), dataset=None,
                          audit_rows=[], leaked_ids=set())
    sections = [RenderedSection("Tables & <things>", "| a | b |\n|---|---|\n| 2 | x |\n| 10 | y |\n\n"
                                "- **bold**, *italic*, `code`, [link](metrics.csv)\n\n<script>alert(1)</script>"),
                RenderedSection("Tables & <things>", "second with the same title")]
    text = index_html(inputs, Tables(), sections, ["metrics.csv"])
    assert '<table class="sortable">' in text and "<th>a</th>" in text and "<td>10</td>" in text
    assert "<strong>bold</strong>" in text and "<em>italic</em>" in text and "<code>code</code>" in text
    assert '<a href="metrics.csv">link</a>' in text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Tables &amp; &lt;things&gt;" in text  # titles autoescaped by the template
    assert 'id="tables-things"' in text and 'id="tables-things-2"' in text


def test_figures_are_grouped_per_task_in_closed_details():
    md = markdown_renderer()
    text = ("- ![binary ROC](figures/roc_binary.png) *binary: ROC.*\n"
            "- ![7class ROC](figures/roc_7class.png) *7class: ROC.*\n"
            "- ![HOG visualisation](figures/hog.png) *HOG.*\n"
            "- ![7class faces, cnn vs logreg](figures/faces_7class_logreg.png) *faces.*\n\nA paragraph.\n\n"
            "- a plain item\n- another\n")
    page = render_markdown(md, text, ["7class", "binary"])
    summaries = re.findall(r"<summary>(.*?)</summary>", page)
    assert summaries == ["<strong>7class</strong>: ROC", "<strong>7class</strong>: faces, cnn vs logreg",
                         "<strong>binary</strong>: ROC", "HOG visualisation"]  # task order, then no task
    assert page.count('<li class="figure"><details>') == 4 and "<details open" not in page
    assert page.count("</details></li>") == 4 and "<li>a plain item</li>" in page
    assert figure_task("5class ROC", ["7class", "binary"]) is None


# --- in a headless browser ------------------------------------------------------------------------------------

#: put first in <head>: collects uncaught errors, failed loads and console errors/warnings of the page
COLLECTOR = """<script>
window.__problems = [];
window.addEventListener("error", function (e) {
  window.__problems.push(e.message ? "error: " + e.message : "failed to load: " + (e.target.src || e.target.href));
}, true);
window.addEventListener("unhandledrejection", function (e) { window.__problems.push("rejection: " + e.reason); });
["error", "warn"].forEach(function (level) {
  var original = console[level];
  console[level] = function () {
    window.__problems.push("console." + level + ": " + Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
});
</script>"""

#: put last in <body>: after the load event, reads the images, clicks the headline table's accuracy header twice
CHECKER = """<script>
window.addEventListener("load", function () {
  var result = {problems: window.__problems};
  try {
    result.images = Array.prototype.map.call(document.images, function (img) {
      return {src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0};
    });
    var table = document.querySelector("table.sortable");
    var column = function (k) {
      return Array.prototype.map.call(table.tBodies[0].rows, function (row) { return row.cells[k].textContent; });
    };
    var headers = Array.prototype.map.call(table.tHead.rows[0].cells, function (th) { return th.textContent; });
    var k = headers.findIndex(function (h) { return h.indexOf("accuracy %") === 0; });
    var header = table.tHead.rows[0].cells[k];
    result.headers = headers;
    result.before = {accuracy: column(k), model: column(1), task: column(0)};
    header.click();
    result.ascending = {accuracy: column(k), model: column(1), task: column(0), sort: header.getAttribute("aria-sort")};
    header.click();
    result.descending = {accuracy: column(k), sort: header.getAttribute("aria-sort")};
    result.tables = document.querySelectorAll("table.sortable").length;
    result.sections = document.querySelectorAll("section.report-section").length;
  } catch (e) {
    result.problems.push("checker: " + e);
  }
  var pre = document.createElement("pre");
  pre.id = "browser-test-result";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"""


#: put last in <body>: after the load event, measures the layout as laid out (every <details> as the page leaves
#: it: closed), the contents list, the images and the headline table's and findings' places
LAYOUT = """<script>
window.addEventListener("load", function () {
  var result = {problems: window.__problems};
  try {
    var root = document.documentElement;
    var top = function (element) { return element ? element.getBoundingClientRect().top + window.scrollY : null; };
    result.viewport = {width: window.innerWidth, height: window.innerHeight};
    result.scrollWidth = root.scrollWidth;
    result.clientWidth = root.clientWidth;
    result.height = root.scrollHeight;
    result.openDetails = document.querySelectorAll("details[open]").length;
    result.figureDetails = document.querySelectorAll("li.figure > details").length;
    result.figureSummaries = Array.prototype.map.call(document.querySelectorAll("li.figure > details > summary"),
                                                      function (s) { return s.textContent; });
    result.contents = Array.prototype.map.call(document.querySelectorAll("nav.toc a"), function (a) {
      return {href: a.getAttribute("href"), text: a.textContent};
    });
    result.images = Array.prototype.map.call(document.images, function (img) {
      return {src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0};
    });
    result.headlineTableTop = top(document.querySelector("section.report-section table"));
    result.findingsTop = top(document.getElementById("findings"));
    result.firstFindingTop = top(document.querySelector("#findings li"));
    // every element wider than its page: named, to say what overflows when the width check fails
    result.overflowing = Array.prototype.filter.call(document.querySelectorAll("body *"), function (e) {
      var box = e.getBoundingClientRect();
      return box.width > 0 && box.right > root.clientWidth + 0.5 && !e.closest(".table-wrap");
    }).slice(0, 5).map(function (e) { return e.tagName + "." + e.className + ": " + e.textContent.slice(0, 60); });
  } catch (e) {
    result.problems.push("layout: " + e);
  }
  var pre = document.createElement("pre");
  pre.id = "browser-test-result";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"""


#: a page that shows the probe in a frame of a given size (headless Chromium's window is at least 500 px wide,
#: a frame can be narrower) and copies the probe's result out of it once everything has loaded
FRAME = """<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0">
<iframe id="probe" src="_browser_test.html" style="border:0;width:{width}px;height:{height}px"></iframe>
<script>
window.addEventListener("load", function () {{
  var inner = document.getElementById("probe").contentDocument;
  var found = inner && inner.getElementById("browser-test-result");
  var pre = document.createElement("pre");
  pre.id = "browser-test-result";
  pre.textContent = found ? found.textContent : JSON.stringify({{problems: ["frame: no result"]}});
  document.body.appendChild(pre);
}});
</script></body></html>"""


def _run_probe(results: Path, profile: Path, script: str, frame: tuple[int, int] | None = None) -> tuple[dict, str]:
    """index.html with COLLECTOR and `script` injected, loaded beside it (so the figures resolve the same way) in
    headless Chromium, in a frame of `frame` = (width, height) px when given: the result the script writes into
    the page, and Chromium's stderr."""
    page = (results / "index.html").read_text(encoding="utf-8")
    assert page.count("<head>") == 1 and page.count("</body>") == 1
    probe, wrapper = results / "_browser_test.html", results / "_browser_test_frame.html"
    probe.write_text(page.replace("<head>", "<head>\n" + COLLECTOR, 1).replace("</body>", script + "\n</body>", 1),
                     encoding="utf-8")
    args, target = [], probe
    if frame is not None:
        wrapper.write_text(FRAME.format(width=frame[0], height=frame[1]), encoding="utf-8")
        args, target = [f"--window-size={frame[0] + 200},{frame[1] + 200}", "--allow-file-access-from-files"], wrapper
    try:
        run = _chromium([*args, "--dump-dom", target.as_uri()], profile)
    finally:
        probe.unlink()
        wrapper.unlink(missing_ok=True)
    assert run.returncode == 0, run.stderr[-3000:]
    match = re.search(r'<pre id="browser-test-result">(.*?)</pre>', run.stdout, re.S)
    assert match, f"the page's checker did not run; stderr: {run.stderr[-3000:]}"
    return json.loads(html.unescape(match.group(1))), run.stderr


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def _leading_number(text: str) -> float:
    return float(re.match(r"[-+]?\d+(?:\.\d+)?", text.strip()).group())


@pytest.mark.slow
@needs_chromium
def test_index_html_in_headless_chromium(results, tmp_path):
    page = (results / "index.html").read_text(encoding="utf-8")
    result, stderr = _run_probe(results, tmp_path / "profile", CHECKER)

    # no console output or uncaught error at all (the page logs nothing; a CSP violation would be logged too)
    assert result["problems"] == []
    assert _console_lines(stderr) == []

    # every <img> loaded
    assert len(result["images"]) == page.count("<img ") > 0
    assert [i["src"] for i in result["images"] if not i["loaded"]] == []

    # clicking the accuracy header sorts the headline rows by it, numerically; again: the other way round
    before, ascending = result["before"], result["ascending"]
    values = [_leading_number(v) for v in before["accuracy"]]
    assert [_leading_number(v) for v in ascending["accuracy"]] == sorted(values)
    assert ascending["accuracy"] != before["accuracy"]  # the rows did move
    assert ascending["sort"] == "ascending"
    order = sorted(range(len(values)), key=lambda i: values[i])
    assert ascending["model"] == [before["model"][i] for i in order]  # whole rows move, not one column
    assert ascending["task"] == [before["task"][i] for i in order]
    assert [_leading_number(v) for v in result["descending"]["accuracy"]] == sorted(values, reverse=True)
    assert result["descending"]["sort"] == "descending"
    assert result["tables"] >= 5 and result["sections"] == page.count('<section class="report-section"')


#: the page's height at 1,400 px wide with every figure closed, at most (what a reader scrolls past)
MAX_COLLAPSED_HEIGHT = 12_000
#: the height of the screen the headline table and the findings must start in
SCREEN_HEIGHT = 900


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("width", [1400, 390])
def test_index_html_layout_fits_the_screen(results, tmp_path, width):
    result, stderr = _run_probe(results, tmp_path / "profile", LAYOUT, frame=(width, SCREEN_HEIGHT))
    print(json.dumps({k: result[k] for k in ("viewport", "scrollWidth", "clientWidth", "height", "headlineTableTop",
                                             "findingsTop", "figureDetails")}))
    assert result["problems"] == [] and _console_lines(stderr) == []
    assert result["viewport"] == {"width": width, "height": SCREEN_HEIGHT}

    # nothing wider than the screen: wide tables scroll inside their own wrapper, long strings wrap
    assert result["scrollWidth"] <= result["clientWidth"], result["overflowing"]
    assert result["overflowing"] == []

    # every figure in a closed <details> whose summary names it; the page as it opens is short
    page = (results / "index.html").read_text(encoding="utf-8")
    assert result["openDetails"] == 0
    assert result["figureDetails"] == page.count("<img ") == len(result["images"]) > 0
    assert all(s.strip() for s in result["figureSummaries"])
    assert any(s.startswith("binary: ") for s in result["figureSummaries"])  # task-named
    assert result["height"] <= MAX_COLLAPSED_HEIGHT

    # one contents entry per section, each leading to its section
    hrefs = [entry["href"] for entry in result["contents"]]
    texts = [entry["text"] for entry in result["contents"]]
    assert len(set(hrefs)) == len(hrefs) and len(set(texts)) == len(texts)
    assert len(hrefs) == page.count('<section class="report-section"')

    # every image loaded, even inside a closed <details>
    assert [i["src"] for i in result["images"] if not i["loaded"]] == []

    # the headline table starts in the first screenful, on a phone too (the contents shrink to a few lines); on a
    # wide screen the findings as well
    assert result["headlineTableTop"] < result["viewport"]["height"]
    if width == 1400:
        assert result["findingsTop"] < result["viewport"]["height"]


#: the committed report of the real data set: the most seeds, models and rows any report has here
COMMITTED_REPORT = Path(__file__).resolve().parents[1] / "results" / "fer2013"


@pytest.mark.slow
@needs_chromium
@pytest.mark.skipif(not (COMMITTED_REPORT / "index.html").is_file(), reason="no committed results/fer2013 report")
def test_committed_fer2013_report_opens_with_the_headline_and_findings(tmp_path):
    """On the real report (every task, four models, up to three seeds, audit), a 1,400 x 900 screen shows the
    headline table and the first finding; nothing is wider than the page."""
    report = tmp_path / "fer2013"
    report.mkdir()
    shutil.copy(COMMITTED_REPORT / "index.html", report / "index.html")
    shutil.copytree(COMMITTED_REPORT / "figures", report / "figures")
    result, stderr = _run_probe(report, tmp_path / "profile", LAYOUT, frame=(1400, SCREEN_HEIGHT))
    print(json.dumps({k: result[k] for k in ("height", "headlineTableTop", "findingsTop", "firstFindingTop")}))
    assert result["problems"] == [] and _console_lines(stderr) == []
    assert result["scrollWidth"] <= result["clientWidth"], result["overflowing"]
    assert result["headlineTableTop"] < result["findingsTop"] < result["firstFindingTop"] < SCREEN_HEIGHT - 40
    assert result["height"] <= MAX_COLLAPSED_HEIGHT


@pytest.mark.slow
@needs_chromium
def test_index_html_screenshot(results, tmp_path):
    shot = tmp_path / "index.png"
    run = _chromium(["--window-size=1280,1600", f"--screenshot={shot}", (results / "index.html").as_uri()],
                    tmp_path / "profile")
    assert run.returncode == 0, run.stderr[-3000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
