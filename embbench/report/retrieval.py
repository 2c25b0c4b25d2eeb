"""Retrieval agreement as the report shows it: per label, over its cells that measured it
(run/retrieval.py's columns), beside the speed it was bought with."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from embbench.report import stats
from embbench.report.view import RunView

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
    return label_retrieval(stats.records(view.frame), speed), name


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(values: Any) -> list[float]:
    return [v for v in (_float(x) for x in values) if math.isfinite(v)]
