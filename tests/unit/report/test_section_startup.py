"""The start-up section's rows: medians over launches, steady state from ok cells only."""

from __future__ import annotations

import math

import pandas as pd

from embbench.report.sections.startup import startup_rows, startup_table


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["a", "a", "a", "b", "ext"],
            "status": ["ok", "ok", "failed", "ok", "ok"],
            "startup_s": [2.0, 4.0, 3.0, 1.0, math.nan],
            "first_request_ms": [30.0, 50.0, 40.0, 5.0, math.nan],
            "startup_rss_mb_peak": [500.0, 600.0, 550.0, 200.0, math.nan],
            "startup_pss_mb_peak": [400.0, 500.0, 450.0, 150.0, math.nan],
            "rss_mb_max": [300.0, 300.0, 900.0, 200.0, 100.0],
            "pss_mb_max": [250.0, 250.0, 900.0, 150.0, 100.0],
        }
    )


def test_rows_per_label() -> None:
    rows = {r["label"]: r for r in startup_rows(_frame())}
    assert set(rows) == {"a", "b"}  # "ext" was never launched by the run
    a = rows["a"]
    assert a["launches"] == 3 and a["startup_s"] == 3.0 and a["startup_range"] == "2.0–4.0"
    assert a["first_ms"] == 40.0 and a["first_max_ms"] == 50.0
    assert a["steady_pss"] == 250.0  # the failed cell's 900 is not a steady state
    assert a["ratio"] == 450.0 / 250.0
    assert [r["label"] for r in startup_rows(_frame())] == ["b", "a"]  # fastest first


def test_table_and_old_runs() -> None:
    lines = startup_table(startup_rows(_frame()))
    assert lines[0].startswith("| label | launches | start-up s")
    assert "1.80x" in lines[-1]
    assert startup_rows(pd.DataFrame({"label": ["a"], "status": ["ok"]})) == []
