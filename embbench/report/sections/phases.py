"""Where the p99 went: per label and level, the server's phases of the requests around the
median and around p99, and what lay outside the server, from the record's p50_*/p99_* columns.

Left out for a run whose servers sent no timing (peers without it, runs from before it existed).
"""

from __future__ import annotations

from embbench.report import phases
from embbench.report.markdown import level_cell, num, table
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.stats import level_order, records
from embbench.report.view import RunView


def body(view: RunView, options: ReportOptions) -> list[str] | None:
    rows = phases.timed(view.agg)
    if rows.empty:
        return None
    lines = [
        f"For the requests around the median ({phases.GROUP_TEXT['p50']} of the client's "
        f"latency) and around p99 ({phases.GROUP_TEXT['p99']}), the mean time of each phase the "
        "server reported (its Server-Timing header, or TEI's x-*-time headers); *other in the "
        "server* is its total less those phases, *outside the server* the client's latency less "
        "the server's total: the network, the client's own queue and, in an open loop, how late "
        "the request was sent. Milliseconds, medians over the ok repeats (so a row's parts add "
        "up to its latency only roughly when there are several).",
        "",
    ]
    for label in dict.fromkeys(rows["label"]):
        mine = rows[rows["label"] == label]
        parts = phases.present(mine)
        headers = ["level", "group", "latency ms", *(phases.NAMES[p] for p in parts),
                   "batch", "timed", "dominant"]  # fmt: skip
        body_rows = []
        ordered = sorted(records(mine), key=lambda r: level_order(str(r["level"])))
        for row in ordered:
            for group in phases.GROUP_TEXT:
                values = dict(phases.parts_of(row, group))
                top = phases.dominant(row, group)
                body_rows.append([
                    level_cell(row), group, num(phases.latency(row, group), 1),
                    *(num(values.get(p), 1) for p in parts),
                    num(phases.batch(row, group), 1),
                    num(row.get(f"{group}_timed"), 0),
                    f"{phases.NAMES[top[0]]} {top[2]:.0%}" if top else "–",
                ])  # fmt: skip
        lines += [f"### {label}", "", *table(headers, body_rows), ""]
    return lines[:-1]


SECTION = Section("Where the p99 went", body)
