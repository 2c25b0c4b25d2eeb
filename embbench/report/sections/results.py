"""The results: per level, each label's medians over its ok repeats, with intervals and flags."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from embbench.report.markdown import num as _num
from embbench.report.markdown import table as _table
from embbench.report.markdown import with_ci as _with_ci
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.stats import level_order, records
from embbench.report.view import RunView
from embbench.results import columns, levels


def body(view: RunView, options: ReportOptions) -> list[str]:
    """One table per level, closed-loop levels first; a column only where some row has a value."""
    agg = view.agg
    lines = [
        "Medians over the repeats whose status is ok; in brackets, the 95 % Student-t interval"
        " of the geometric mean over those repeats, where there are at least two. Latencies in"
        " ms; memory in MB, peak over the measured window, summed over the server's processes.",
        "",
    ]
    for level in sorted(agg["level"].unique(), key=level_order):
        rows = records(agg[agg["level"] == level])
        shown = _shown(rows)
        headers = ["label", *(c.heading for c in shown), "ok/runs", "flags"]
        closed = levels.parse(level)[0] == levels.CLOSED
        title = f"Concurrency {levels.short(level)}" if closed else f"Open loop, {level}"
        lines += [f"### {title}", "", *_table(headers, (_result(r, shown) for r in rows))]
        lines += [""]
    return lines[:-1]


SECTION = Section("Results", body)


def _shown(rows: Sequence[Mapping[str, Any]]) -> list[columns.Column]:
    """The report's columns (columns.py) that some row of the table has a value for."""
    return [
        c for c in columns.where(show=columns.REPORT)
        if any(_num(r.get(c.name), 1) != "–" for r in rows)
    ]  # fmt: skip


def _result(r: Mapping[str, Any], shown: Sequence[columns.Column]) -> list[str]:
    cells = [
        _with_ci(r[c.name], r[f"{c.name}_ci_low"], r[f"{c.name}_ci_high"], c.digits)
        if c.interval
        else _num(r[c.name], c.digits)
        for c in shown
    ]
    return [r["label"], *cells, f"{r['n_ok']}/{r['n_repeats']}", _flags(r)]


def _flags(row: Mapping[str, Any]) -> str:
    names = {"oversubscribed": "oversubscribed", "loadgen_saturated": "loadgen saturated",
             "little_law_off": "Little's law off", "incorrect": "wrong embeddings",
             "unstable": "unstable (CV > 10 %)", "p99_imprecise": "p99 imprecise",
             "loadgen_late": "loadgen late"}  # fmt: skip
    flags = [name for key, name in names.items() if row.get(key)]
    if row["n_failed"]:
        flags.append(f"{row['n_failed']} failed")
    if row["failures"] > 0:
        flags.append(f"{row['failures']:.0f} request errors")
    return ", ".join(flags)
