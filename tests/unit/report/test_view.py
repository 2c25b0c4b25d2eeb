"""A report reads its run once: one RunView, shared by every section and every chart."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from embbench.report import compare, stats
from embbench.report.publish import publish_report
from embbench.report.sections import SECTIONS
from embbench.report.sections.base import ReportOptions

FIXTURE = Path(__file__).parents[2] / "fixtures" / "results" / "20261124-000000"
COUNTED = (
    (stats, "prepare"),
    (stats, "aggregate"),
    (stats, "aggregate_prepared"),
    (compare, "winners"),
    (compare, "compare_to_baseline"),
)


def count_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts calls of the functions that read a whole run, under every name a report module
    imported them by."""
    calls: Counter[str] = Counter()
    modules = [m for n, m in sys.modules.items() if n.startswith("embbench.report")]
    for home, name in COUNTED:
        original = getattr(home, name)

        def counted(*args: Any, _f: Callable[..., Any] = original, _n: str = name) -> Any:
            calls[_n] += 1
            return _f(*args)

        for module in modules:
            if getattr(module, name, None) is original:
                monkeypatch.setattr(module, name, counted)
    return calls


@pytest.mark.parametrize("baseline", [None, "batched"])
def test_a_report_reads_its_run_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, baseline: str | None
) -> None:
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    calls = count_calls(monkeypatch)
    published = publish_report(folder, baseline=baseline)
    assert len(published.view.winners) == 2  # what the CLI prints next: already there
    once = {"prepare": 1, "aggregate_prepared": 1, "winners": 1}
    assert calls == (once if baseline is None else {**once, "compare_to_baseline": 1})


def test_sections_are_a_list_in_the_documents_order(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    text = publish_report(folder, baseline="batched").markdown.read_text()
    options = ReportOptions(baseline="batched")
    headings = [line[3:] for line in text.splitlines() if line.startswith("## ")]
    # The fixture has no capacity.csv, no assertions, no server timing and no start-up columns
    # (it predates them): those sections alone are left out.
    left_out = ("Capacity", "Assertions", "Where the p99 went", "Start-up cost")
    assert headings == [s.title(options) for s in SECTIONS if s.title(options) not in left_out]
