"""Retrieval agreement as the report shows it: per label, over its cells that measured it
(run/retrieval.py's columns), beside the speed it was bought with, and the checks made after
each window (run/after_window.py): batch invariance and the cache-defeat check."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from embbench.report import stats
from embbench.report.view import RunView
from embbench.results import ranking

METRICS = ("recall_at_10", "ndcg_at_10", "spearman", "doc_recall_at_10", "doc_recall_at_10_ref")


def label_retrieval(
    rows: Sequence[Mapping[str, Any]], speed: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """Per label (first-seen order), over its ok cells with retrieval figures: each metric's
    median over the cells, the lowest of their lower bounds and the highest of their upper
    bounds (an interval over queries in each cell), the queries per cell, the cells, the
    threshold and why, and `speed` (best rps, or capacity) of the label if given."""
    by_label: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "ok" and _float(row.get("recall_at_10")) == _float(
            row.get("recall_at_10")
        ):
            by_label.setdefault(str(row.get("label") or row.get("variant")), []).append(row)
    out = []
    for label, cells in by_label.items():
        found: dict[str, Any] = {"label": label, "cells": len(cells)}
        for metric in METRICS:
            values = _finite(c.get(metric) for c in cells)
            lows = _finite(c.get(f"{metric}_low") for c in cells)
            highs = _finite(c.get(f"{metric}_high") for c in cells)
            found[metric] = float(np.median(values)) if values else math.nan
            found[f"{metric}_low"] = min(lows) if lows else math.nan
            found[f"{metric}_high"] = max(highs) if highs else math.nan
        found["quality_queries"] = int(max(_finite(c.get("quality_queries") for c in cells) or [0]))
        found["quantize"] = cells[0].get("quantize")
        found["cosine_threshold"] = cells[0].get("cosine_threshold")
        found["threshold_reason"] = cells[0].get("threshold_reason")
        found["speed"] = (speed or {}).get(label, math.nan)
        out.append(found)
    return out


CHECKS = ("batch_deviation", "batch_deviation_p50", "batch_inputs", "batch_largest",
          "batch_cells", "cache_speedup", "cache_speedup_low", "cache_speedup_high",
          "cache_pairs", "cache_cells", "cache_flagged_cells", "caches")  # fmt: skip


def label_checks(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per label (first-seen order), over its cells that made them (whatever their status: the
    checks follow the window and do not depend on it):

    - batch invariance: the largest deviation of any cell (a worst case), the median of the
      cells' medians, the answers compared in all, the largest batch seen, the cells;
    - the cache check: the median of the cells' speedups, the lowest of their lower bounds and
      the highest of their upper ones, the pairs per cell, the cells, those flagged, and
      `caches`: flagged in more than half of them (one odd cell of an honest server among
      many does not make it a cache; a cache is flagged in every cell)."""
    by_label: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_label.setdefault(str(row.get("label") or row.get("variant")), []).append(row)
    out: dict[str, dict[str, Any]] = {}
    for label, cells in by_label.items():
        batch = [c for c in cells if _float(c.get("batch_inputs")) > 0]
        cache = [c for c in cells if _float(c.get("cache_pairs")) > 0]
        if not batch and not cache:
            continue
        flagged = sum(_flag(c.get("cache_flag")) for c in cache)
        deviations = _finite(c.get("batch_deviation") for c in batch)
        medians = _finite(c.get("batch_deviation_p50") for c in batch)
        largest = _finite(c.get("batch_largest") for c in batch)
        speedups = _finite(c.get("cache_speedup") for c in cache)
        lows = _finite(c.get("cache_speedup_low") for c in cache)
        highs = _finite(c.get("cache_speedup_high") for c in cache)
        out[label] = {
            "batch_deviation": max(deviations) if deviations else math.nan,
            "batch_deviation_p50": float(np.median(medians)) if medians else math.nan,
            "batch_inputs": int(sum(_finite(c.get("batch_inputs") for c in batch))),
            "batch_largest": int(max(largest)) if largest else None,
            "batch_cells": len(batch),
            "cache_speedup": float(np.median(speedups)) if speedups else math.nan,
            "cache_speedup_low": min(lows) if lows else math.nan,
            "cache_speedup_high": max(highs) if highs else math.nan,
            "cache_pairs": int(max(_finite(c.get("cache_pairs") for c in cache) or [0])),
            "cache_cells": len(cache),
            "cache_flagged_cells": flagged,
            "caches": ranking.caching(cache).caches,
        }
    return out


def quality_rows(view: RunView) -> tuple[list[dict[str, Any]], str]:
    """`retrieval_rows` (with each label's `label_checks`), and the labels that made the checks
    without measuring retrieval (their retrieval figures nan)."""
    found, speed_name = retrieval_rows(view)
    known = {str(r["label"]) for r in found}
    empty = {f"{m}{s}": math.nan for m in METRICS for s in ("", "_low", "_high")}
    for label, checks in label_checks(stats.records(view.frame)).items():
        if label not in known:
            found.append({"label": label, "cells": 0, **empty, "quality_queries": 0,
                          "speed": math.nan, "cosine_threshold": None,
                          "threshold_reason": None, **checks})  # fmt: skip
    return found, speed_name


def retrieval_rows(view: RunView) -> tuple[list[dict[str, Any]], str]:
    """`label_retrieval` of a run, each label's speed its capacity at the SLO in a capacity run,
    else its best rps over the levels; and what that speed is, in words."""
    if view.capacity is not None and "qps_at_slo" in view.capacity:
        table = view.capacity
        qps = pd.to_numeric(table["qps_at_slo"], errors="coerce").astype(float)
        speed = dict(zip(table["label"].astype(str), qps, strict=True))
        name = "capacity"
    else:
        ok = view.agg[view.agg["n_ok"] > 0]
        best = ok.groupby("label")["rps"].max() if len(ok) else pd.Series(dtype=float)
        speed = {str(k): float(v) for k, v in best.items()}
        name = "best rps"
    records = stats.records(view.frame)
    found = label_retrieval(records, speed)
    checks = label_checks(records)
    for row in found:  # the checks after the window beside the figures (CHECKS' keys)
        row.update(checks.get(str(row["label"]), dict.fromkeys(CHECKS)))
    return found, name


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _flag(value: Any) -> bool:
    """A flag as summary.csv holds it: True, "True", "true" or 1; anything else is not set."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    if isinstance(value, bool | np.bool_):
        return bool(value)
    return isinstance(value, int | float) and value == 1


def _finite(values: Any) -> list[float]:
    return [v for v in (_float(x) for x in values) if math.isfinite(v)]
