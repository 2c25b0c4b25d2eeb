"""Quality beside speed: the report's section and the chart, from the fixture run with the
columns of the check under load added."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from embbench.report.charts import write_charts
from embbench.report.charts.quality import quality_figure
from embbench.report.document import render_markdown
from embbench.results.folder import load_run
from embbench.results.record import RunRecord

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"


@pytest.fixture
def checked_run(tmp_path: Path) -> Path:
    """The fixture run as if its cells had checked answers: batched as an int8 server whose
    second repeat at c=100 handed out one wrong vector."""
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    summary = pd.read_csv(folder / "summary.csv")
    int8 = summary["label"] == "batched"
    summary["quantize"] = summary["quantize"].where(~int8, "int8")
    summary["checked"] = 40
    summary["mismatched"] = 0
    summary["cosine_p1"] = 0.99990
    summary["cosine_p50"] = 0.99998
    summary.loc[int8, ["cosine_min", "cosine_p1", "cosine_p50", "cosine_threshold"]] = [
        0.9801, 0.9852, 0.9937, 0.97
    ]  # fmt: skip
    bad = int8 & (summary["concurrency"] == 100) & (summary["repeat"] == 1)
    summary.loc[bad, ["mismatched", "cosine_min", "status", "correct"]] = [
        1, 0.31, "bad_embeddings", False
    ]  # fmt: skip
    summary.to_csv(folder / "summary.csv", index=False)
    return folder


def section(text: str) -> list[str]:
    start = text.index("## Quality under load")
    return text[start : text.index("\n## ", start + 1)].splitlines()


def test_the_report_shows_the_cosine_distribution_beside_speed(checked_run: Path) -> None:
    text = render_markdown(load_run(checked_run), charts=[])
    lines = section(text)
    [batched] = [line for line in lines if line.startswith("| batched ")]
    cells = [c.strip() for c in batched.strip("|").split("|")]
    # label, quantize, checked, mismatched, min, p1, p50, threshold, best rps
    assert cells[:8] == ["batched", "int8", "160", "1", "0.3100", "0.9852", "0.9937", "0.970"]
    assert float(cells[8]) > 0
    [rwlock] = [line for line in lines if line.startswith("| shared-rwlock ")]
    assert "| 0 | 0.9996 | 0.9999 | 1.0000 |" in rwlock
    # The bad cell is a failed cell, with its status.
    assert "bad_embeddings" in text[text.index("## Failed cells") :]
    why = text[text.index("## Why") : text.index("## Failed cells")]
    assert "closer to another input's reference" in why


def test_a_run_without_checks_says_so() -> None:
    text = render_markdown(load_run(FIXTURE), charts=[])
    assert "No answer was checked under load" in "\n".join(section(text))


def test_the_quality_chart_is_drawn_when_answers_were_checked(
    checked_run: Path, tmp_path: Path
) -> None:
    written = write_charts(load_run(checked_run), tmp_path / "charts")
    [chart] = [p for p in written if p.name == "quality.png"]
    assert matplotlib.image.imread(chart).std() > 0.01
    text = render_markdown(load_run(checked_run))
    assert "(charts/quality.png)" in text


def test_quality_figure_marks_mismatches_and_thresholds() -> None:
    rows = [
        {"label": "fp32", "cosine_min": 1.0000001, "cosine_p1": 0.9999999, "cosine_p50": 1.0,
         "cosine_threshold": 0.999, "mismatched": 0},
        {"label": "int8", "cosine_min": 0.98, "cosine_p1": 0.985, "cosine_p50": 0.9937,
         "cosine_threshold": 0.97, "mismatched": 2},
    ]  # fmt: skip
    fig = quality_figure(rows, RunRecord(run_id="x"))
    [ax] = fig.axes
    assert {t.get_text() for t in ax.get_yticklabels()} == {"fp32", "int8"}
    texts = [t.get_text() for t in ax.texts]
    assert "2 mismatched" in texts
    assert ax.get_xscale() == "log"
    empty = quality_figure([], RunRecord(run_id="x"))
    assert "no answer checked" in [t.get_text() for t in empty.axes[0].texts]
