"""Retrieval agreement in the report (report/retrieval.py, the Quality section, the speed x
quality chart) and in the gate, on the checked-in run with retrieval figures added."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from embbench.config.assertions import parse_assertion
from embbench.report import gate
from embbench.report.charts import CHARTS
from embbench.report.charts.speed_quality import speed_quality_figure
from embbench.report.retrieval import retrieval_rows
from embbench.report.sections.base import ReportOptions
from embbench.report.sections.quality import body
from embbench.report.view import RunView
from embbench.results.folder import load_run

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"


@pytest.fixture
def view(tmp_path: Path) -> RunView:
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    summary = pd.read_csv(folder / "summary.csv")
    fp32 = summary["variant"] != "shared-mutex"
    for name in ("recall_at_10", "ndcg_at_10", "spearman", "doc_recall_at_10"):
        summary[name] = [1.0 if f else 0.95 for f in fp32]
        summary[f"{name}_low"] = [1.0 if f else 0.93 for f in fp32]
        summary[f"{name}_high"] = [1.0 if f else 0.97 for f in fp32]
    summary["doc_recall_at_10_ref"] = 0.6
    summary["quality_queries"] = 60
    summary["threshold_reason"] = "the server's /info: quantize none"
    summary.to_csv(folder / "summary.csv", index=False)
    return RunView(load_run(folder))


def test_rows_per_label_carry_intervals_and_speed(view: RunView) -> None:
    rows, speed = retrieval_rows(view)
    assert speed == "best rps"
    by_label = {r["label"]: r for r in rows}
    mutex = by_label["shared-mutex"]
    assert (mutex["recall_at_10"], mutex["recall_at_10_low"], mutex["recall_at_10_high"]) == (
        0.95, 0.93, 0.97,
    )  # fmt: skip
    assert mutex["quality_queries"] == 60 and mutex["speed"] > 0
    assert by_label["shared-rwlock"]["recall_at_10"] == 1.0


def test_the_quality_section_shows_the_figures_and_the_threshold_reason(view: RunView) -> None:
    text = "\n".join(body(view, ReportOptions()))
    assert "recall@10" in text and "0.950 [0.930, 0.970]" in text
    assert "quantize none" in text and "60 x" in text


def test_the_speed_quality_chart_applies_and_draws(view: RunView) -> None:
    [chart] = [c for c in CHARTS if c.name == "speed-quality"]
    assert chart.applies(view)
    fig = chart.draw(view)
    assert fig.axes[0].get_xlabel().startswith("recall@10")
    empty = speed_quality_figure([], "best rps", view.record)
    assert empty.axes


def test_the_gate_judges_recall_on_the_query_interval(view: RunView) -> None:
    found = gate.judge_run(view, [parse_assertion("recall_at_10>=0.99")])
    verdicts = {j.label: j.verdict for j in found}
    assert verdicts["shared-rwlock"] == gate.PASS  # [1, 1], one repeat: still decided
    assert verdicts["shared-mutex"] == gate.FAIL  # [0.93, 0.97] below 0.99
    straddles = gate.judge_run(view, [parse_assertion("shared-mutex: recall_at_10>=0.95")])
    assert {j.verdict for j in straddles} == {gate.INDETERMINATE}
