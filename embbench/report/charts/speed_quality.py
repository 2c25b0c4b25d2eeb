"""Speed x quality: per label, its speed (capacity at the SLO, else its best rps) against its
retrieval agreement (recall@10 with its interval over queries), the quality floor drawn."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from embbench.report import labels as run_labels
from embbench.report.charts.kit import as_float, finish, new_figure
from embbench.results.record import RunRecord


def speed_quality_figure(
    rows: Sequence[Mapping[str, Any]], speed_name: str, record: RunRecord
) -> Figure:
    """One point per label (report/retrieval.py's rows, `speed` their speed); a label with no
    speed (below the floor: no capacity reported) is drawn at 0 with an open marker, and one
    flagged as caching (run/cache_check.py) says so: its speed is not comparable."""
    fig, ax = new_figure()
    labels = [str(r["label"]) for r in rows]
    colors = run_labels.colors(record, labels)
    names = run_labels.short_names(record, labels)
    floor = (record.capacity or {}).get("quality_floor")
    for r, label in zip(rows, labels, strict=True):
        x = as_float(r.get("recall_at_10"))
        low, high = as_float(r.get("recall_at_10_low")), as_float(r.get("recall_at_10_high"))
        speed = as_float(r.get("speed"))
        missing = math.isnan(speed)
        y = 0.0 if missing else speed
        xerr = [[max(0.0, x - low) if math.isfinite(low) else 0.0],
                [max(0.0, high - x) if math.isfinite(high) else 0.0]]  # fmt: skip
        below = isinstance(floor, int | float) and x < float(floor)
        why = " (no capacity: below the floor)" if below else " (no capacity found)"
        name = names[label] + (why if missing else "")
        if r.get("caches"):
            name += " (caches: speed not comparable)"
        ax.errorbar([x], [y], xerr=xerr, fmt="o", ms=8, capsize=4, color=colors[label],
                    mfc="none" if missing else colors[label], label=name)  # fmt: skip
    if isinstance(floor, int | float):
        ax.axvline(float(floor), color="firebrick", linestyle="--", label=f"floor {floor:g}")
    ax.set_xlabel("recall@10 of the fp32 reference's neighbours (95 % interval over queries)")
    ax.set_ylabel(f"{speed_name} (requests/s)")
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)
    empty = "" if labels else "no retrieval agreement measured"
    return finish(fig, ax, record, "Speed x quality", empty)
