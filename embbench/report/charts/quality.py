"""Quality under load: per label, how far its checked answers sit from the reference embeddings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from embbench.report import labels as run_labels
from embbench.report.charts.kit import as_float, finish, log_axis, new_figure
from embbench.results.record import RunRecord


def quality_figure(rows: Sequence[Mapping[str, Any]], record: RunRecord) -> Figure:
    """Per label, 1 - cosine of its checked answers to their references (log scale: fp32's
    1e-7 and int8's 1e-2 on one axis): median, 1st percentile and worst, with the threshold
    each label is held to. Further right is worse; rows are quality.label_quality's."""
    fig, ax = new_figure()
    labels = [str(r["label"]) for r in rows]
    y = np.arange(len(labels))[::-1]
    marks = (("cosine_p50", "median", "o"), ("cosine_p1", "1st percentile", "^"),
             ("cosine_min", "worst (probe included)", "x"))  # fmt: skip
    colors = run_labels.colors(record, labels)
    names = run_labels.short_names(record, labels)
    handles: list[Artist] = []
    for column, name, marker in marks:
        gap = [_gap(r.get(column)) for r in rows]
        ax.scatter(gap, y, marker=marker, s=60, label=name, zorder=3,
                   c=[colors[label] for label in labels])  # fmt: skip
        handles.append(Line2D([], [], marker=marker, linestyle="", color="0.3", label=name))
    for pos, r in zip(y, rows, strict=True):
        ax.plot([_gap(r.get("cosine_p50")), _gap(r.get("cosine_min"))], [pos, pos], color="0.6")
        limit = _gap(r.get("cosine_threshold"))
        ax.scatter([limit], [pos], marker="|", s=300, color="firebrick", zorder=2,
                   label="threshold")  # fmt: skip
        if r.get("mismatched"):
            ax.annotate(f"{r['mismatched']} mismatched", (limit, pos), xytext=(8, 6),
                        textcoords="offset points", fontsize=8, color="firebrick")  # fmt: skip
    if labels:
        ax.set_xscale("log")
        log_axis(ax.xaxis)
    ax.set_yticks(y, [names[label] for label in labels], fontsize=8)
    for tick, label in zip(ax.get_yticklabels(), labels, strict=True):
        tick.set_color(colors[label])
    handles.append(Line2D([], [], marker="|", markersize=14, linestyle="", color="firebrick",
                          label="threshold"))  # fmt: skip
    if labels:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_xlabel("1 - cosine to sentence-transformers (log scale; right is worse)")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    title = "Quality under load"
    return finish(fig, ax, record, title, "" if labels else "no answer checked", legend=False)


def _gap(cosine: Any) -> float:
    # fp32 can round to a cosine of 1 or just above: kept on the log axis at 1e-8.
    value = as_float(cosine)
    return math.nan if math.isnan(value) else max(1.0 - value, 1e-8)
