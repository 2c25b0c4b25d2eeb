"""Where the p99 went: the section, the chart and the "Why" sentences, from a record's
p50_*/p99_* columns (built here; the checked-in run predates them)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import matplotlib.colors
import pandas as pd
import pytest

from embbench.report import labels
from embbench.report.charts import CHARTS
from embbench.report.charts.phases import phases_figure
from embbench.report.publish import publish_report
from embbench.report.sections import SECTIONS
from embbench.report.sections import phases as section
from embbench.report.sections.base import ReportOptions
from embbench.report.sections.why import explain
from embbench.report.view import RunView
from embbench.results.columns import SUMMARY_COLUMNS
from embbench.results.folder import load_run
from embbench.results.record import RunRecord

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"
RECORD = RunRecord.from_json({"schema_version": 1, "host": {"cores": 2}})


def cell(variant: str, users: int, repeat: int, **parts: float) -> dict[str, Any]:
    """A summary row whose p99 (and, at a tenth, p50) group has `parts` in ms."""
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS)
    row.update(variant=variant, label=variant, concurrency=users, repeat=repeat, status="ok",
               requests=1000, failures=0, rps=100.0)  # fmt: skip
    for group, scale in (("p99", 1.0), ("p50", 0.1)):
        for part, ms in parts.items():
            row[f"{group}_{part}_ms"] = ms * scale
        row[f"{group}_latency_ms"] = sum(parts.values()) * scale
        row[f"{group}_timed"] = 10
        row[f"{group}_batch_size"] = 1.0
    return row


def mutex_and_rwlock() -> pd.DataFrame:
    return pd.DataFrame([
        cell("shared-mutex", users, r, lock=30.0 * users / 10, forward=8.0, other=0.5, outside=1.5)
        for users in (1, 10) for r in (0, 1)
    ] + [
        cell("shared-rwlock", users, r, lock=0.1, forward=20.0, other=0.5, outside=1.5)
        for users in (1, 10) for r in (0, 1)
    ] + [
        {**dict.fromkeys(SUMMARY_COLUMNS), "variant": "tei", "label": "tei", "concurrency": 10,
         "repeat": 0, "status": "ok", "rps": 50.0, "requests": 10, "failures": 0},
    ])  # fmt: skip


@pytest.fixture
def view() -> RunView:
    return RunView.of(mutex_and_rwlock(), RECORD)


def test_the_section_has_a_table_per_label_with_the_phases_it_has(view: RunView) -> None:
    lines = section.body(view, ReportOptions())
    assert lines is not None
    text = "\n".join(lines)
    assert "### shared-mutex" in text and "### shared-rwlock" in text
    assert "### tei" not in text  # no timing: no table
    head = next(line for line in lines if line.startswith("| level"))
    assert "lock wait" in head and "outside the server" in head and "batch queue" not in head
    row = next(
        line for line in lines if line.startswith("| 10 | p99 |") and "lock wait 75%" in line
    )
    assert "| 40.0 |" in row  # the p99 group's latency at c=10: 30 + 8 + 0.5 + 1.5
    assert section.SECTION in SECTIONS


def test_the_section_is_left_out_of_a_run_without_timing() -> None:
    run = load_run(FIXTURE)
    assert section.body(RunView(run), ReportOptions()) is None


def test_the_chart_stacks_each_groups_parts_per_level(view: RunView) -> None:
    chart = next(c for c in CHARTS if c.name == "phases")
    assert chart.applies(view) and not chart.applies(RunView(load_run(FIXTURE)))
    fig = phases_figure(view.agg, view.record)
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["c=1", "c=10"]
    # 2 labels x 2 groups x 4 parts per panel; the stacks reach each group's latency.
    bars = panels[1].patches
    assert len(bars) == 16
    tops = sorted({round(b.get_y() + b.get_height(), 6) for b in bars})
    assert tops[-1] == pytest.approx(40.0)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["lock wait", "forward pass", "other in the server", "outside the server"]
    # A label keeps its colour of every chart: its bars' outline and its name.
    colors = labels.colors(view.record, view.frame["label"])
    ticks = {t.get_text(): t.get_color() for t in panels[1].get_xticklabels()}
    assert ticks["shared-mutex"] == colors["shared-mutex"]
    mutex_edges = {matplotlib.colors.to_hex(b.get_edgecolor()) for b in bars[:8]}
    assert mutex_edges == {colors["shared-mutex"]}


def test_why_states_the_dominant_phase_at_p99(view: RunView) -> None:
    text = "\n".join(explain(view))
    assert (
        "Where shared-mutex's p99 went (requests p98.5–p99.5), the largest part: forward pass "
        "at c=1, 8.0 of 13.0 ms (62%); lock wait at c=10, 30.0 of 40.0 ms (75%)."
    ) in text
    assert "shared-rwlock's p99 went" in text and "forward pass at c=10, 20.0 of 22.1 ms" in text
    assert "tei's p99" not in text


def test_measured_phases_replace_the_cpu_inference_where_they_exist() -> None:
    run = load_run(FIXTURE)
    before = "\n".join(explain(RunView.of(run.summary, run.record)))
    assert "one inference at a time leaves" in before  # no timing: the old inference stays
    summary = run.summary.copy()
    mutex = summary["variant"] == "shared-mutex"
    for column, value in (("p99_lock_ms", 900.0), ("p99_forward_ms", 100.0),
                          ("p99_latency_ms", 1000.0), ("p99_timed", 10)):  # fmt: skip
        summary[column] = None
        summary.loc[mutex, column] = value
    after = "\n".join(explain(RunView.of(summary, run.record)))
    assert "one inference at a time leaves" not in after
    assert "Where shared-mutex's p99 went" in after and "lock wait at c=10, 900.0 of" in after


def test_the_report_and_its_page_show_the_section_and_the_chart(tmp_path: Path) -> None:
    # The checked-in run, copied, with the phases its cells would have recorded.
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    summary = pd.read_csv(folder / "summary.csv")
    for column, value in (("p99_lock_ms", 900.0), ("p99_forward_ms", 100.0),
                          ("p99_outside_ms", 5.0), ("p99_latency_ms", 1005.0),
                          ("p99_timed", 10), ("p50_forward_ms", 90.0),
                          ("p50_latency_ms", 90.0), ("p50_timed", 10)):  # fmt: skip
        summary[column] = value
    summary.to_csv(folder / "summary.csv", index=False)
    published = publish_report(folder)
    text = published.markdown.read_text()
    assert "## Where the p99 went" in text and "charts/phases.png" in text
    assert (folder / "charts" / "phases.png").is_file()
    page = published.html.read_text()
    assert 'id="chart-phases"' in page and ">Where the p99 went</h2>" in page
