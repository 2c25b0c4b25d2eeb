"""The numbers of a run: medians over repeats and their spread.

Pure functions of DataFrames; a report reads them once through view.py, sections/ puts them into
words and charts/ into pictures.
Comparisons between labels live in compare.py, on verdicts.py's methods. The interval given
with a median is the 95 % Student-t interval of the geometric mean over the ok repeats (the
log scale, as verdicts.py compares): with two repeats it is honestly wide, where a percentile
bootstrap would return the range of the two values and call it 95 %.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from embbench.errors import UsageError
from embbench.results import columns, levels, verdicts
from embbench.results.columns import SUMMARY_COLUMNS
from embbench.results.folder import OK

# Derived from the column table: which columns aggregate how (columns.py says it once).
MEDIAN_COLUMNS = tuple(c.name for c in columns.where(agg=columns.MEDIAN))
INTERVAL_COLUMNS = tuple(c.name for c in columns.where(interval=True))
ERROR_COLUMNS = columns.ERROR_COLUMNS
NUMERIC_COLUMNS = tuple(c.name for c in columns.where(numeric=True))
FIRST_COLUMNS = tuple(c.name for c in columns.where(agg=columns.FIRST) if c.name != "concurrency")
SUM_COLUMNS = tuple(c.name for c in columns.where(agg=columns.SUM))
MIN_COLUMNS = tuple(c.name for c in columns.where(agg=columns.MIN))
FLAGS = tuple((c.name, c.name) for c in columns.where(agg=columns.ANY))
FALSE_FLAGS = tuple((c.name, c.agg_name) for c in columns.where(agg=columns.ANY_FALSE))
MAJORITY_FLAGS = tuple(c.name for c in columns.where(agg=columns.MAJORITY))

AGG_COLUMNS = [
    "label", "concurrency", "level", "variant", *FIRST_COLUMNS,
    "n_repeats", "n_ok", "n_failed", "failed_cells", *SUM_COLUMNS,
    *MEDIAN_COLUMNS, *MIN_COLUMNS,
    *(f"{c}_{s}" for c in INTERVAL_COLUMNS for s in ("values", "by_repeat", "ci_low", "ci_high")),
    "rps_cv", "unstable", "detectable_pct", "requests_min", "p99_imprecise",
    *(name for _, name in FLAGS), *(name for _, name in FALSE_FLAGS), *MAJORITY_FLAGS,
]  # fmt: skip

CONFIDENCE = 0.95
Interval = tuple[float, float]


def prepare(summary: pd.DataFrame) -> pd.DataFrame:
    """A copy with every summary column present, numbers numeric and the label filled."""
    # Columns a run predates are added at once: one by one, pandas warns of a fragmented frame.
    missing = [column for column in SUMMARY_COLUMNS if column not in summary.columns]
    frame = pd.concat([summary, pd.DataFrame(np.nan, summary.index, missing)], axis=1).copy()
    for column in NUMERIC_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in ERROR_COLUMNS:
        frame[column] = frame[column].fillna(0)
    frame = frame.copy()  # one block per dtype again, after a hundred columns replaced
    # Runs before the open loop have no load_model: every cell was a closed loop.
    frame["load_model"] = frame["load_model"].where(frame["load_model"].notna(), levels.CLOSED)
    frame["level"] = [
        level_name(c, r) for c, r in zip(frame["concurrency"], frame["offered_rps"], strict=True)
    ]
    frame["label"] = [
        lab.strip() if isinstance(lab, str) and lab.strip() else str(var)
        for lab, var in zip(frame["label"], frame["variant"], strict=True)
    ]
    frame["status"] = [str(s) if isinstance(s, str) else "" for s in frame["status"]]
    return frame


def is_true(values: pd.Series[Any]) -> pd.Series[bool]:
    """True where a flag column says so ("True", true, 1); missing is not True."""
    return values.map(_flag).eq(True)


def is_false(values: pd.Series[Any]) -> pd.Series[bool]:
    """True where a flag column explicitly says False; missing (not checked) is not False."""
    return values.map(_flag).eq(False)


def aggregate(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (label, concurrency): medians over the ok repeats, intervals, counts, flags.

    Only rows with status "ok" contribute numbers; the others are counted (`n_failed`) and
    named (`failed_cells`). `<col>_ci_low/_ci_high` hold the 95 % t-interval of the geometric
    mean (see the module docstring) where there are at least two ok repeats, NaN otherwise;
    `<col>_values` and `<col>_by_repeat` keep the per-repeat values for comparisons.
    Flags are true when any repeat of the cell carries them. A report aggregates its run once,
    in its view (report/view.py), with `aggregate_prepared`.
    """
    return aggregate_prepared(prepare(summary))


def aggregate_prepared(frame: pd.DataFrame) -> pd.DataFrame:
    """`aggregate` of a summary `prepare` has already made ready."""
    rows: list[dict[str, Any]] = []
    # MAJORITY flags are the label's, over all its cells at every level: the server checks
    # behind them run once per label (run/session.py), after a window, on an idle server.
    majority = {
        (column, label): 2 * int(is_true(cells[column]).sum())
        > int((is_true(cells[column]) | is_false(cells[column])).sum())
        for column in MAJORITY_FLAGS
        for label, cells in frame.groupby("label", sort=False)
    }
    for (label, concurrency, level), group in _cells(frame):
        ok = group[group["status"] == OK]
        failed = group[group["status"] != OK]
        row: dict[str, Any] = {
            "label": label,
            "concurrency": concurrency,
            "level": level,
            "variant": str(group["variant"].iloc[0]),
            **{column: _first(group[column]) for column in FIRST_COLUMNS},
            "n_repeats": len(group),
            "n_ok": len(ok),
            "n_failed": len(failed),
            "failed_cells": ", ".join(_cell_names(failed)),
            **{column: float(ok[column].sum()) for column in SUM_COLUMNS},
        }
        for column in MEDIAN_COLUMNS:
            row[column] = _median(ok[column])
        for column in MIN_COLUMNS:
            row[column] = float(ok[column].min()) if ok[column].notna().any() else math.nan
        for column in INTERVAL_COLUMNS:
            present = ok[ok[column].notna()]
            values = tuple(float(v) for v in present[column])
            interval = mean_interval(values)
            row[f"{column}_values"] = values
            # Keyed by repeat: comparisons pair label A's repeat r with label B's (compare.py).
            row[f"{column}_by_repeat"] = dict(zip(present["repeat"], values, strict=True))
            row[f"{column}_ci_low"], row[f"{column}_ci_high"] = interval or (math.nan, math.nan)
        # The noise floor: how much the repeats spread, and the smallest difference between
        # two labels this noise lets a run of this size detect.
        rps = row["rps_values"]
        row["rps_cv"] = verdicts.cv(rps)
        row["unstable"] = verdicts.unstable(rps)
        row["detectable_pct"] = verdicts.detectable_pct(rps, rps, paired=False)
        row["requests_min"] = float(ok["requests"].min()) if len(ok) else math.nan
        row["p99_imprecise"] = bool(len(ok)) and verdicts.tail_imprecise(
            int(row["requests_min"]) if row["requests_min"] == row["requests_min"] else 0
        )
        for column, name in FLAGS:
            row[name] = bool(is_true(group[column]).any())
        for column, name in FALSE_FLAGS:
            row[name] = bool(is_false(group[column]).any())
        for column in MAJORITY_FLAGS:
            row[column] = majority[(column, label)]
        rows.append(row)
    return pd.DataFrame(rows, columns=AGG_COLUMNS)


def resolve_label(agg: pd.DataFrame, name: str) -> str:
    """A label of the run, given a label or a variant name that has exactly one label."""
    labels = list(dict.fromkeys(agg["label"]))
    if name in labels:
        return name
    matches = list(dict.fromkeys(agg.loc[agg["variant"] == name, "label"]))
    if len(matches) == 1:
        return str(matches[0])
    raise UsageError(f"unknown baseline {name!r}; labels in this run: {', '.join(labels)}")


def failed_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The cells whose status is not ok, with the reason the run recorded (of a prepared
    summary: `prepare`'s)."""
    failed = frame[frame["status"] != OK]
    rows = [
        {
            "cell": cell,
            "label": row["label"],
            "concurrency": row["concurrency"],
            "level": row["level"],
            "repeat": row["repeat"],
            "status": row["status"] or "unknown",
            "reason": reason(row),
        }
        for cell, row in zip(_cell_names(failed), records(failed), strict=True)
    ]
    return pd.DataFrame(
        rows, columns=["cell", "label", "concurrency", "level", "repeat", "status", "reason"]
    )


ERROR_KINDS = {
    "errors_connection": "connection",
    "errors_timeout": "timeout",
    "errors_429": "HTTP 429",
    "errors_4xx": "HTTP 4xx",
    "errors_5xx": "HTTP 5xx",
    "errors_other": "other",
}


def error_kinds(row: Mapping[str, Any]) -> str:
    """`12 timeout, 3 connection` from the errors_* columns of a summary row."""
    parts = []
    for column, kind in ERROR_KINDS.items():
        count = number_or_zero(row.get(column))
        if count > 0:
            parts.append(f"{count:.0f} {kind}")
    return ", ".join(parts)


def reason(row: Mapping[str, Any]) -> str:
    text = row.get("failure_reason")
    kinds = error_kinds(row)
    parts = [str(text)] if isinstance(text, str) and text.strip() else []
    if kinds:
        parts.append(f"request errors: {kinds}")
    return "; ".join(parts) or "no reason recorded"


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def level_name(concurrency: Any, offered_rps: Any) -> str:
    """What a cell's load was: `c=10` (closed loop, 10 users) or `40 rps` (open loop); the
    label is built in results/levels.py, as the loops build it."""
    return levels.label(concurrency, offered_rps)


def level_order(level: str) -> tuple[int, float]:
    """Closed-loop levels first, by users, then open-loop levels, by rate."""
    return levels.order(level)


def _cells(frame: pd.DataFrame) -> list[tuple[tuple[str, int, str], pd.DataFrame]]:
    """Groups by (label, level): labels in order of first appearance, levels rising."""
    order = {label: i for i, label in enumerate(dict.fromkeys(frame["label"]))}
    groups = []
    for key, group in frame.groupby(["label", "level"], sort=False):
        label, level = cast(tuple[str, str], key)
        concurrency = int(number_or_zero(group["concurrency"].iloc[0]))
        groups.append(((str(label), concurrency, str(level)), group))
    return sorted(groups, key=lambda item: (order[item[0][0]], level_order(item[0][2])))


def _cell_names(rows: pd.DataFrame) -> list[str]:
    return [
        cell if isinstance(cell, str) and cell else f"{label} {level} r={rep:g}"
        for cell, label, level, rep in zip(
            rows["cell"], rows["label"], rows["level"], rows["repeat"], strict=True
        )
    ]


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return None if math.isnan(float(value)) else bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no"):
        return False
    return None


def _first(values: pd.Series[Any]) -> Any:
    present = values.dropna()
    return present.iloc[0] if len(present) else None


def _median(values: pd.Series[Any]) -> float:
    present = values.dropna()
    return float(present.median()) if len(present) else math.nan


# A count from a CSV cell: empty, text or NaN count as nothing.
def number_or_zero(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(number) else number


def ratio(numerator: Any, denominator: Any) -> float:
    """numerator / denominator; NaN where either is missing or the denominator is not > 0."""
    try:
        num, den = float(numerator), float(denominator)
    except (TypeError, ValueError):
        return math.nan
    return num / den if den > 0 and not math.isnan(num) else math.nan


def mean_interval(values: Iterable[float]) -> Interval | None:
    """95 % Student-t interval of the geometric mean; None with fewer than two values."""
    data = _finite(values)
    data = data[data > 0]
    if data.size < 2:
        return None
    logs = np.log(data)
    half = verdicts.t_quantile(0.5 + CONFIDENCE / 2, data.size - 1)
    half *= float(logs.std(ddof=1)) / math.sqrt(data.size)
    center = float(logs.mean())
    return math.exp(center - half), math.exp(center + half)


def _finite(values: Iterable[float]) -> npt.NDArray[np.float64]:
    data = np.asarray(list(values), dtype=np.float64)
    return np.asarray(data[np.isfinite(data)], dtype=np.float64)
