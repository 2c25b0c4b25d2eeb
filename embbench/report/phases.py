"""Where a cell's time went, as the report reads it from the record (the p50_*/p99_* columns).

Shared by the "Where the p99 went" section, its chart and the "Why" section's sentences: which
parts a label's rows have, their readable names, and the dominant one. The columns themselves
are computed when a cell is recorded (load/phases.py); the report only reads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from embbench.report.stats import level_order, records
from embbench.results.phases import (
    PARTS,
    batch_column,
    latency_column,
    part_column,
    timed_column,
)

NAMES: Mapping[str, str] = {
    "admission": "admission wait",
    "lock": "lock wait",
    "queue": "batch queue",
    "tokenize": "tokenise",
    "forward": "forward pass",
    "pool": "pooling",
    "serialize": "serialise",
    "other": "other in the server",
    "outside": "outside the server",
}
# How the groups are chosen (load/phases.py BANDS), as a reader is told.
GROUP_TEXT = {"p50": "p45–p55", "p99": "p98.5–p99.5"}


def timed(agg: pd.DataFrame) -> pd.DataFrame:
    """The (label, level) rows of `agg` with ok repeats whose p99 group was timed."""
    if timed_column("p99") not in agg.columns:
        return agg.iloc[0:0]
    count = pd.to_numeric(agg[timed_column("p99")], errors="coerce").fillna(0)
    return agg[(agg["n_ok"] > 0) & (count > 0)]


def parts_of(row: Mapping[str, Any], group: str) -> list[tuple[str, float]]:
    """(part, ms) of one row's group, the parts the server reported, in PARTS' order."""
    out = []
    for part in PARTS:
        value = _float(row.get(part_column(group, part)))
        if not math.isnan(value):
            out.append((part, value))
    return out


def present(rows: pd.DataFrame) -> list[str]:
    """The parts any of `rows` has in either group, in PARTS' order."""
    return [
        part
        for part in PARTS
        if any(
            part_column(g, part) in rows.columns and rows[part_column(g, part)].notna().any()
            for g in GROUP_TEXT
        )
    ]


def latency(row: Mapping[str, Any], group: str) -> float:
    return _float(row.get(latency_column(group)))


def batch(row: Mapping[str, Any], group: str) -> float:
    return _float(row.get(batch_column(group)))


def dominant(row: Mapping[str, Any], group: str = "p99") -> tuple[str, float, float] | None:
    """(part, ms, share of the parts' sum) of the largest part, or None without parts."""
    parts = [(p, ms) for p, ms in parts_of(row, group) if ms > 0]
    if not parts:
        return None
    part, ms = max(parts, key=lambda item: item[1])
    return part, ms, ms / sum(v for _, v in parts)


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def p99_sentences(agg: pd.DataFrame) -> list[str]:
    """One sentence per label with timing: the dominant part of its p99 group at each level.

    "At p99, shared-mutex's requests waited longest in lock wait: 31.2 of 42.0 ms (74 %) at
    c=10; ..." The share is of the parts' sum (the group's latency, up to the medians over
    repeats)."""
    rows = timed(agg)
    out = []
    for label in dict.fromkeys(rows["label"]):
        mine = sorted(records(rows[rows["label"] == label]), key=lambda r: level_order(r["level"]))
        parts = []
        for row in mine:
            top = dominant(row)
            if top is None:
                continue
            part, ms, share = top
            parts.append(
                f"{NAMES[part]} at {row['level']}, {ms:.1f} of {latency(row, 'p99'):.1f} ms "
                f"({share:.0%})"
            )
        if parts:
            out.append(
                f"Where {label}'s p99 went (requests {GROUP_TEXT['p99']}), the largest part: "
                + "; ".join(parts)
                + "."
            )
    return out


def has_phases(row: Mapping[str, Any]) -> bool:
    """Whether a (label, level) row of the aggregate has its p99 group's phases."""
    count = _float(row.get(timed_column("p99")))
    return not math.isnan(count) and count > 0
