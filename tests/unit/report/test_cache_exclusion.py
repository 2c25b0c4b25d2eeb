"""Issue 26, part 3: a label flagged as caching is not ranked against the others. Fixed runs
where the cached label is the fastest: the next label wins, the report says why in one line,
and a capacity plan does not choose it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from embbench.report.compare import cache_exclusions, winners
from embbench.report.document import render_markdown
from embbench.report.plan import plan_runs
from embbench.report.sections import answer
from embbench.report.sections import winners as winners_section
from embbench.report.sections.base import ReportOptions
from embbench.report.stats import aggregate
from embbench.report.view import RunView
from embbench.results.folder import load_run
from tests.unit.report.test_document import RUN_JSON, row
from tests.unit.report.test_plan import TARGET, make_run

LINE = (
    "cached is flagged as caching at c=10 (repeats 200 % faster), so its throughput is not "
    "compared."
)


def _frame(flag: Any = True) -> pd.DataFrame:
    """Three labels at c=10, three repeats: `cached` the fastest by far, `honest` second."""
    speed = {"cached": 500.0, "honest": 100.0, "slow": 50.0}
    return pd.DataFrame(
        [
            row(variant=label, repeat=r, rps=rps * (1 + r / 100), cache_pairs=32,
                cache_flag=flag if label == "cached" else False,
                cache_speedup=3.0 if label == "cached" else 1.01)
            for r in range(3)
            for label, rps in speed.items()
        ]
    )  # fmt: skip


def test_the_fastest_label_wins_when_it_does_not_cache() -> None:
    table = winners(aggregate(_frame(flag=False)))
    assert list(table["label"]) == ["cached"] and list(table["runner_up"]) == ["honest"]


def test_a_cache_flagged_fastest_label_is_not_the_winner_the_next_one_is() -> None:
    table = winners(aggregate(_frame()))
    assert list(table["label"]) == ["honest"] and list(table["runner_up"]) == ["slow"]


def test_one_odd_flag_among_three_repeats_is_not_enough_two_are() -> None:
    # An honest server is flagged in under 2.5 % of cells: one odd cell must not exclude it.
    frame = _frame(flag=False)
    cached = frame["variant"] == "cached"
    frame.loc[cached & (frame["repeat"] == 1), "cache_flag"] = True
    assert list(winners(aggregate(frame))["label"]) == ["cached"]
    frame.loc[cached & (frame["repeat"] == 2), "cache_flag"] = True
    assert list(winners(aggregate(frame))["label"]) == ["honest"]


def test_the_report_says_why_in_one_line() -> None:
    frame = _frame()
    view = RunView.of(frame, RUN_JSON)
    assert cache_exclusions(view.agg, view.frame) == [LINE]
    assert LINE in winners_section.body(view, ReportOptions())
    closed = answer.body(view, ReportOptions()) or []
    assert LINE in closed and any(line.startswith("- 10 users") and "honest" in line
                                  for line in closed)  # fmt: skip
    assert "caching" not in "\n".join(winners_section.body(RunView.of(_frame(False), RUN_JSON),
                                                           ReportOptions()))  # fmt: skip


def test_a_level_where_only_the_cached_label_ran_says_so() -> None:
    frame = _frame()
    view = RunView.of(frame[frame["variant"] == "cached"], RUN_JSON)
    assert view.winners.empty
    assert winners_section.body(view, ReportOptions())[0] == LINE


def _cache_flag(run: Path, label: str, speedup: float) -> Path:
    summary = pd.read_csv(run / "summary.csv")
    cached = summary["label"] == label
    summary["cache_pairs"] = 32
    summary["cache_flag"] = cached
    summary["cache_speedup"] = [speedup if c else 1.0 for c in cached]
    summary.to_csv(run / "summary.csv", index=False)
    return run


def test_the_plan_does_not_choose_a_cache_flagged_variant_and_says_why(tmp_path: Path) -> None:
    # Unflagged, int8 is the cheapest (test_plan.py); flagged, the next cheapest is chosen.
    plan = plan_runs([_cache_flag(make_run(tmp_path), "int8", 4.0)], TARGET)
    assert plan.choice is not None and plan.choice.label == "fast"
    int8 = {o.label: o for o in plan.options}["int8"]
    assert not int8.meets and int8.caches
    assert int8.why_not == (
        "flagged as caching (repeats 300 % faster), so its throughput is not compared"
    )
    assert plan.answer.endswith(
        ". Left out: int8 is flagged as caching (repeats 300 % faster), so its throughput is "
        "not compared."
    )
    assert plan.to_json()["choice"] == "fast"


def test_the_capacity_answer_does_not_name_a_cache_flagged_variant(tmp_path: Path) -> None:
    text = render_markdown(RunView(load_run(_cache_flag(make_run(tmp_path), "int8", 4.0))))
    first = text.split("\n## ")[1]
    assert "Most per core: fast" in first and "Most per core: int8" not in first
    assert "int8 is flagged as caching (repeats 300 % faster)" in first
    assert (
        "not decided (probe budget spent): a floor; caches: not compared"
        in (text.split("## Capacity")[1])
    )
