"""Comparisons: each label against a baseline in one run, and two runs side by side.

Pure functions of DataFrames (stats.aggregate's), rendered by report.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from embbench.results import RunData
from embbench.stats import (
    _ratio,
    aggregate,
    ratio_interval,
    records,
    resolve_label,
    spans_one,
)


def compare_to_baseline(agg: pd.DataFrame, baseline_label: str) -> pd.DataFrame:
    """Per (label, concurrency), rps and p50 relative to the baseline at the same concurrency.

    `rps_ratio` = rps / rps_base and `p50_ratio` = p50 / p50_base (ratios of medians), each with
    a 95 % bootstrap interval when both sides have at least two ok repeats (NaN otherwise).
    `significant` is about throughput: True only when the rps interval exists and excludes 1;
    `p50_significant` is the same for latency. `has_interval` says whether intervals exist.
    """
    baseline = resolve_label(agg, baseline_label)
    base = {row["concurrency"]: row for row in records(agg) if row["label"] == baseline}
    rows: list[dict[str, Any]] = []
    for row in records(agg):
        if row["label"] == baseline:
            continue
        ref = base.get(row["concurrency"])
        out: dict[str, Any] = {
            "label": row["label"],
            "concurrency": row["concurrency"],
            "baseline": baseline,
        }
        intervals = []
        for name, column in (("rps", "rps"), ("p50", "latency_p50_ms")):
            ref_value = math.nan if ref is None else ref[column]
            interval = (
                None
                if ref is None
                else ratio_interval(row[f"{column}_values"], ref[f"{column}_values"])
            )
            intervals.append(interval)
            out[f"{name}_ratio"] = _ratio(row[column], ref_value)
            out[f"{name}_ratio_ci_low"], out[f"{name}_ratio_ci_high"] = interval or (
                math.nan,
                math.nan,
            )
            out[f"{name}_significant"] = interval is not None and not spans_one(interval)
        out["significant"] = out["rps_significant"]
        out["has_interval"] = intervals[0] is not None
        rows.append(out)
    return pd.DataFrame(rows)


COMPARE_COLUMNS = [
    "label", "concurrency", "rps_a", "rps_b", "rps_ratio", "rps_ratio_ci_low",
    "rps_ratio_ci_high", "significant", "p50_ratio", "p99_ratio", "cpu_ratio", "pss_ratio",
]  # fmt: skip


def compare_runs(a: RunData, b: RunData) -> pd.DataFrame:
    """Per (label, concurrency) present in either run: medians of a and b and the ratios b / a.

    The rps ratio carries a bootstrap interval and `significant` like compare_to_baseline.
    """
    agg_a, agg_b = aggregate(a.summary), aggregate(b.summary)
    merged = agg_a.merge(agg_b, on=["label", "concurrency"], how="outer", suffixes=("_a", "_b"))
    rows: list[dict[str, Any]] = []
    for row in records(merged):
        interval = ratio_interval(
            _values(row.get("rps_values_b")), _values(row.get("rps_values_a"))
        )
        rows.append(
            {
                "label": row["label"],
                "concurrency": row["concurrency"],
                "rps_a": row["rps_a"],
                "rps_b": row["rps_b"],
                "rps_ratio": _ratio(row["rps_b"], row["rps_a"]),
                "rps_ratio_ci_low": math.nan if interval is None else interval[0],
                "rps_ratio_ci_high": math.nan if interval is None else interval[1],
                "significant": interval is not None and not spans_one(interval),
                "p50_ratio": _ratio(row["latency_p50_ms_b"], row["latency_p50_ms_a"]),
                "p99_ratio": _ratio(row["latency_p99_ms_b"], row["latency_p99_ms_a"]),
                "cpu_ratio": _ratio(row["cpu_pct_mean_b"], row["cpu_pct_mean_a"]),
                "pss_ratio": _ratio(row["pss_mb_max_b"], row["pss_mb_max_a"]),
            }
        )
    order = {label: i for i, label in enumerate(dict.fromkeys([*agg_a["label"], *agg_b["label"]]))}
    rows.sort(key=lambda row: (order[row["label"]], row["concurrency"]))
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def _values(value: Any) -> Sequence[float]:
    return tuple(value) if isinstance(value, tuple | list) else ()
