"""Correctness under load as the report shows it: per label, over the cells that checked answers."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from embbench.report.stats import number_or_zero


def label_quality(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per label, over its cells that checked answers (ok or not): answers checked, mismatched,
    the lowest cosine, the lowest of the cells' 1st percentiles, the median of their medians,
    and the threshold. Labels in first-seen order."""
    by_label: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_label.setdefault(str(row.get("label") or row.get("variant")), []).append(row)
    out = []
    for label, cells in by_label.items():
        checked = [c for c in cells if number_or_zero(c.get("checked")) > 0]
        if not checked:
            continue
        out.append(
            {
                "label": label,
                "quantize": cells[0].get("quantize"),
                "cells": len(checked),
                "checked": int(sum(number_or_zero(c.get("checked")) for c in checked)),
                "mismatched": int(sum(number_or_zero(c.get("mismatched")) for c in checked)),
                "cosine_min": _low(c.get("cosine_min") for c in checked),
                "cosine_p1": _low(c.get("cosine_p1") for c in checked),
                "cosine_p50": _median(c.get("cosine_p50") for c in checked),
                "cosine_threshold": _low(c.get("cosine_threshold") for c in checked),
            }
        )
    return out


def _finite(values: Iterator[Any]) -> list[float]:
    out = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isnan(number):
            out.append(number)
    return out


def _low(values: Iterator[Any]) -> float | None:
    found = _finite(values)
    return min(found) if found else None


def _median(values: Iterator[Any]) -> float | None:
    found = _finite(values)
    return float(np.median(found)) if found else None
