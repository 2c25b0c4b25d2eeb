"""`embbench compare` as Markdown: two runs side by side as ratios b / a (compare.compare_runs's
numbers), with a warning when the machines differ."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from embbench.report.compare import compare_runs
from embbench.report.markdown import headings, level_cell, setting
from embbench.report.markdown import num as _num
from embbench.report.markdown import table as _table
from embbench.report.markdown import with_ci as _with_ci
from embbench.report.stats import records
from embbench.report.view import RunView
from embbench.results.folder import RunData


def render_compare_markdown(a: RunData, b: RunData, table: pd.DataFrame | None = None) -> str:
    """Markdown for `compare_runs(a, b)` (ratios are b / a); warns when the machines differ."""
    table = compare_runs(a, b) if table is None else table
    lines = [f"# embbench: run {_run_id(b)} against run {_run_id(a)}", ""]
    machine_a, machine_b = a.record.host.describe(), b.record.host.describe()
    lines += [f"- a = {_run_id(a)}: {machine_a}", f"- b = {_run_id(b)}: {machine_b}"]
    if machine_a != machine_b:
        lines += ["", "The runs come from different machines: ratios mix hardware and software."]
    changed = _changed_settings(a.record.config, b.record.config)
    if changed:
        lines += ["", "Settings that differ: " + "; ".join(changed) + "."]
    rows = [
        [r["label"], level_cell(r), _num(r["rps_a"], 1), _num(r["rps_b"], 1),
         _with_ci(r["rps_ratio"], r["rps_ratio_ci_low"], r["rps_ratio_ci_high"], 2),
         r["verdict"],
         *(_num(r[k], 2) for k in ("p50_ratio", "p99_ratio", "cpu_ratio", "pss_ratio"))]
        for r in records(table)
    ]  # fmt: skip
    headers = headings("label, level, rps a, rps b, rps b/a (95 % CI), throughput, p50 b/a, "
                       "p99 b/a, CPU b/a, PSS b/a")  # fmt: skip
    return "\n".join([*lines, "", *_table(headers, rows)]) + "\n"


def _run_id(run: RunData) -> str:
    return RunView(run).run_id


def _changed_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    return [f"{k}: {setting(a.get(k))} → {setting(b.get(k))}" for k in keys]
