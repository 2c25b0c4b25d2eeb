"""The checks after each window in the report (report/retrieval.py's label_checks, the Quality
section, the speed x quality chart), on the checked-in run with their columns added."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from embbench.report.charts.speed_quality import speed_quality_figure
from embbench.report.retrieval import label_checks, quality_rows, retrieval_rows
from embbench.report.sections.base import ReportOptions
from embbench.report.sections.quality import body
from embbench.report.view import RunView
from embbench.results.folder import load_run

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"


def _view(tmp_path: Path, *, recall: bool) -> RunView:
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    summary = pd.read_csv(folder / "summary.csv")
    caching = summary["variant"] == "shared-mutex"
    if recall:
        for name in ("recall_at_10", "ndcg_at_10", "spearman", "doc_recall_at_10"):
            summary[name] = summary[f"{name}_low"] = summary[f"{name}_high"] = 1.0
        summary["doc_recall_at_10_ref"] = 0.6
        summary["quality_queries"] = 48
    summary["batch_deviation"] = [3e-3 if c else 2e-9 for c in caching]
    summary["batch_deviation_p50"] = 0.0
    summary["batch_inputs"] = 123
    summary["batch_largest"] = 8
    summary["cache_speedup"] = [6.0 if c else 1.01 for c in caching]
    summary["cache_speedup_low"] = [5.5 if c else 0.97 for c in caching]
    summary["cache_speedup_high"] = [6.5 if c else 1.05 for c in caching]
    summary["cache_pairs"] = 32
    summary["cache_flag"] = caching
    summary.to_csv(folder / "summary.csv", index=False)
    return RunView(load_run(folder))


def test_a_label_caches_when_most_of_its_cells_are_flagged() -> None:
    cell = {"label": "a", "cache_pairs": 32, "cache_speedup": 1.0, "cache_speedup_low": 0.9,
            "cache_speedup_high": 1.1}  # fmt: skip
    one_of_three = [{**cell, "cache_flag": "True"}, {**cell, "cache_flag": "False"},
                    {**cell, "cache_flag": False}]  # fmt: skip
    found = label_checks(one_of_three)["a"]
    assert found["cache_flagged_cells"] == 1 and found["cache_cells"] == 3
    assert found["caches"] is False
    two_of_three = [{**cell, "cache_flag": True}, {**cell, "cache_flag": "true"}, cell]
    assert label_checks(two_of_three)["a"]["caches"] is True
    # Batch invariance: the worst cell's largest deviation, the answers of all cells.
    batch = [{"label": "b", "batch_inputs": 10, "batch_deviation": d, "batch_deviation_p50": 0}
             for d in (1e-6, 3e-4)]  # fmt: skip
    found = label_checks(batch)["b"]
    assert found["batch_deviation"] == 3e-4 and found["batch_inputs"] == 20
    assert found["cache_cells"] == 0 and found["caches"] is False
    assert label_checks([{"label": "c", "status": "ok"}]) == {}


def test_the_section_shows_deviation_and_cache_beside_recall(tmp_path: Path) -> None:
    view = _view(tmp_path, recall=True)
    text = "\n".join(body(view, ReportOptions()))
    assert "batch deviation (1 - cosine; largest)" in text
    assert "3.0e-03 (p50 0;" in text and "2.0e-09" in text
    assert "6.00 [5.50, 6.50] x 32 pairs: CACHES" in text
    assert "1.01 [0.97, 1.05] x 32 pairs: no" in text
    assert "**shared-mutex: caches.**" in text and "(caches: not compared)" in text
    rows, _ = retrieval_rows(view)
    mutex = next(r for r in rows if r["label"] == "shared-mutex")
    assert mutex["caches"] is True and mutex["recall_at_10"] == 1.0
    fig = speed_quality_figure(rows, "best rps", view.record)
    box = fig.axes[0].get_legend()
    assert box is not None
    legend = [t.get_text() for t in box.get_texts()]
    assert any("caches: speed not comparable" in t for t in legend)


def test_labels_with_checks_but_no_retrieval_still_show_them(tmp_path: Path) -> None:
    view = _view(tmp_path, recall=False)
    assert retrieval_rows(view)[0] == []  # the chart has nothing to draw
    rows, _ = quality_rows(view)
    assert rows and all(r["batch_inputs"] == 123 * r["batch_cells"] for r in rows)
    text = "\n".join(body(view, ReportOptions()))
    assert "CACHES" in text and "| – |" in text


@pytest.mark.parametrize("value", ["True", True, 1])
def test_flags_read_back_from_csv_in_any_form(value: object) -> None:
    cell = {"label": "a", "cache_pairs": 32, "cache_flag": value}
    assert label_checks([cell])["a"]["caches"] is True
