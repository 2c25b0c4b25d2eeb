"""report.html in a real browser: headless Chromium opens it from disk, as a user would.

For the checked-in fixture run and for a tiny real run: the page loads with no console error
and no network request, every chart draws (ink in the screenshot where each chart is), a click
on a table's heading reorders its rows, and the answer is the first thing on the page. The
first screen is kept under results/report-html/ (CI keeps it as an artifact).

Skipped when no Chromium is installed, except in CI (`.ci/run` installs it), where that fails.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from embbench.config.run import RunConfig, VariantRun
from embbench.report.publish import publish_report
from embbench.run.session import run_benchmark
from tests.integration.browser import Browser, find_chromium

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "results" / "20261124-000000"
SHOTS = REPO / "results" / "report-html"  # uploaded by CI with the run's report

FIRST_SECTION = """(() => {
  const first = document.querySelector('main').firstElementChild;
  const sections = [...document.querySelectorAll('main section[id]')];
  const top = el => el.getBoundingClientRect().top;
  return {id: first.id, heading: first.querySelector('h2').textContent,
          above_all: sections.every(s => s === first || first.contains(s) || top(first) < top(s)),
          visible: top(first) < window.innerHeight};
})()"""

CHART_BOXES = """[...document.querySelectorAll('figure.chart svg')].map(svg => {
  const r = svg.getBoundingClientRect();
  return {name: svg.closest('figure').id, x: r.left + scrollX, y: r.top + scrollY,
          width: r.width, height: r.height};
})"""

SORTABLE = """(() => {
  const tables = [...document.querySelectorAll('table.sortable')];
  for (let t = 0; t < tables.length; t++) {
    const heads = [...tables[t].tHead.rows[0].cells];
    for (let col = 1; col < heads.length; col++) {
      if (!heads[col].classList.contains('num')) continue;
      const values = [...tables[t].tBodies[0].rows].map(r => r.cells[col].textContent.trim());
      if (new Set(values.map(v => parseFloat(v))).size < 2) continue;
      heads[col].scrollIntoView({block: 'center'});
      const r = heads[col].getBoundingClientRect();
      return {table: t, col: col, x: r.left + r.width / 2, y: r.top + r.height / 2,
              heading: heads[col].textContent};
    }
  }
  return null;
})()"""


def rows_of(table: int) -> str:
    return f"""[...document.querySelectorAll('table.sortable')[{table}].tBodies[0].rows]
      .map(r => [...r.cells].map(c => c.textContent.trim()))"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("no Chromium in CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no Chromium installed (apt-get install chromium)")
    browser = Browser(executable, tmp_path_factory.mktemp("chromium"))
    try:
        yield browser
    finally:
        browser.close()


def test_fixture_report_in_a_browser(browser: Browser, tmp_path: Path) -> None:
    run_dir = tmp_path / FIXTURE.name
    shutil.copytree(FIXTURE, run_dir)
    published = publish_report(run_dir)
    check_page(browser, published.html, len(published.charts), "fixture")


def test_tiny_real_run_report_in_a_browser(browser: Browser, tmp_path: Path) -> None:
    config = RunConfig(
        variants=(VariantRun("shared-rwlock"), VariantRun("batched")),
        concurrency=(2,), duration=2.0, warmup=0.5, out=str(tmp_path / "results"),
    )  # fmt: skip
    outcome = run_benchmark(config)
    assert outcome.failed == 0
    published = publish_report(outcome.run_dir)
    assert published.view.record.command  # the command line is recorded and shown
    check_page(browser, published.html, len(published.charts), "tiny-run")


@pytest.mark.skipif(not os.environ.get("EMBBENCH_CHECK_PAGE"), reason="EMBBENCH_CHECK_PAGE unset")
def test_given_report_in_a_browser(browser: Browser) -> None:
    """A page written before, named by EMBBENCH_CHECK_PAGE (`.ci/run` names the smoke run's)."""
    # `.ci/run` names it relative to the clone; a file URI needs an absolute path.
    page = Path(os.environ["EMBBENCH_CHECK_PAGE"]).resolve()
    check_page(browser, page, len(list((page.parent / "charts").glob("*.png"))), "smoke")


def check_page(browser: Browser, page: Path, charts: int, name: str) -> None:
    text = page.read_text(encoding="utf-8")
    # Nothing on the page points off the disk: no script, style, image or font from a URL.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text, re.I)
    browser.open(page.as_uri())
    assert browser.console_errors() == []
    assert browser.network_requests() == []
    SHOTS.mkdir(parents=True, exist_ok=True)

    first = browser.evaluate(FIRST_SECTION)
    assert first["id"] == "answer" and first["heading"] in ("Answer", "Capacity", "Winners")
    assert first["above_all"] and first["visible"]
    (SHOTS / f"{name}-first-screen.png").write_bytes(browser.screenshot())

    boxes = browser.evaluate(CHART_BOXES)
    assert len(boxes) == charts > 0
    for box in boxes:
        assert box["width"] > 300 and box["height"] > 150, box
        clip = {k: box[k] for k in ("x", "y", "width", "height")}
        assert ink(browser.screenshot(clip)) > 0.02, f"{box['name']} looks blank"

    target = browser.evaluate(SORTABLE)
    assert target is not None, "no table with two different numbers in a column"
    before = browser.evaluate(rows_of(target["table"]))
    orders = []
    for _click in range(2):  # ascending, then descending
        browser.click(target["x"], target["y"])
        after = browser.evaluate(rows_of(target["table"]))
        assert sorted(map(tuple, after)) == sorted(map(tuple, before))  # the same rows
        orders.append([number(row[target["col"]]) for row in after])
    assert orders[0] == sorted(orders[0], key=missing_last)
    assert orders[1] == sorted(orders[1], key=missing_last, reverse=True)
    assert orders[0] != orders[1], f"sorting by {target['heading']!r} reordered nothing"
    assert browser.console_errors() == [] and browser.network_requests() == []


def ink(png: bytes) -> float:
    """The share of pixels that are not (nearly) white."""
    image = Image.open(io.BytesIO(png)).convert("L")
    histogram = image.histogram()
    return 1 - sum(histogram[240:]) / max(sum(histogram), 1)


def number(text: str) -> float | None:
    found = re.search(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text.replace(",", ""), re.I)
    return float(found.group()) if found else None


def missing_last(value: Any) -> tuple[bool, float]:
    return (value is None, value if value is not None else 0.0)
