"""The report: tables and sentences from a run's DataFrames, as Markdown.

Pure functions: no printing, no exit. The numbers come from stats.py (re-exported here so the
CLI needs one import); this module turns them into words that cite those numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from embbench.config.options import option_fields
from embbench.config.run import ServerOptions, default_label
from embbench.errors import EmbbenchError
from embbench.machine.host import describe_host
from embbench.report import quality
from embbench.report.compare import compare_runs, compare_to_baseline, winners
from embbench.report.markdown import num as _num
from embbench.report.markdown import table as _table
from embbench.report.markdown import with_ci as _with_ci
from embbench.report.sections.capacity import DEFAULT_PRICE_PER_CORE_HOUR, capacity_section
from embbench.report.sections.ceiling import cpu_section
from embbench.report.sections.why import explain
from embbench.report.stats import aggregate, failed_cells, level_order, records
from embbench.results import columns
from embbench.results.folder import RunData

__all__ = [
    "aggregate",
    "compare_runs",
    "compare_to_baseline",
    "explain",
    "failed_cells",
    "render_compare_markdown",
    "render_markdown",
    "winners",
]

# Options only: `given` (which names the user set) is bookkeeping, not a setting to show.
DEFAULT_OPTIONS = {f.name: f.default for f, _, _ in option_fields()}


def render_markdown(
    run: RunData,
    baseline: str | None = None,
    charts: Sequence[str] | None = None,
    price_per_core_hour: float = DEFAULT_PRICE_PER_CORE_HOUR,
) -> str:
    """report.md: machine, versions, settings, tables, winners, ratios, reasons, charts.

    `charts` are the chart paths to link, relative to the run folder (default: every chart of
    charts.CHARTS). An unknown `baseline` raises UsageError (from compare_to_baseline).
    """
    meta, agg = run.meta, aggregate(run.summary)
    lines = [f"# embbench report: run {_run_id(run)}", "", *_header(meta), ""]
    settings = _settings(meta.get("config") or {}) or ["Not recorded in run.json."]
    lines += ["## Settings", "", *settings, "", "## Results", ""]
    lines += [
        "Medians over the repeats whose status is ok; in brackets, the 95 % Student-t interval"
        " of the geometric mean over those repeats, where there are at least two. Latencies in"
        " ms; memory in MB, peak over the measured window, summed over the server's processes.",
        "",
    ]
    for level in sorted(agg["level"].unique(), key=level_order):
        rows = records(agg[agg["level"] == level])
        shown = _shown(rows)
        headers = ["label", *(c.heading for c in shown), "ok/runs", "flags"]
        title = f"Concurrency {level[2:]}" if level.startswith("c=") else f"Open loop, {level}"
        lines += [f"### {title}", "", *_table(headers, (_result(r, shown) for r in rows))]
        lines += [""]
    lines += ["## Quality under load", "", *_quality_section(run.summary, agg), ""]
    cpu = cpu_section(run.summary, meta)
    if cpu:
        lines += ["## CPU per embedding against the ceiling", "", *cpu, ""]
    capacity = run.capacity()
    if capacity is not None:
        lines += ["## Capacity", "", *capacity_section(capacity, agg, meta, price_per_core_hour)]
        lines += [""]
    lines += ["## Noise floor", "", *_noise_table(agg), ""]
    lines += ["## Winners", "", *_winners_table(winners(agg)), ""]
    if baseline is not None:
        lines += [f"## Against {baseline}", "", *_baseline_table(agg, baseline), ""]
    reasons = [f"- {s}" for s in explain(run.summary, agg, meta)]
    lines += ["## Why", "", *(reasons or ["Nothing in the data calls for an explanation."]), ""]
    lines += ["## Failed cells", "", *_failed_table(run.summary)]
    lines += ["", "## Charts", ""]
    if charts is None:
        from embbench.report.charts.registry import chart_links

        charts = chart_links(run)
    for path in charts:
        lines += [f"![{path.rsplit('/', 1)[-1].removesuffix('.png')}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_compare_markdown(a: RunData, b: RunData, table: pd.DataFrame | None = None) -> str:
    """Markdown for `compare_runs(a, b)` (ratios are b / a); warns when the machines differ."""
    table = compare_runs(a, b) if table is None else table
    lines = [f"# embbench: run {_run_id(b)} against run {_run_id(a)}", ""]
    lines += [f"- a = {_run_id(a)}: {_machine(a.meta)}", f"- b = {_run_id(b)}: {_machine(b.meta)}"]
    if _machine(a.meta) != _machine(b.meta):
        lines += ["", "The runs come from different machines: ratios mix hardware and software."]
    changed = _changed_settings(a.meta.get("config") or {}, b.meta.get("config") or {})
    if changed:
        lines += ["", "Settings that differ: " + "; ".join(changed) + "."]
    rows = [
        [r["label"], _level(r), _num(r["rps_a"], 1), _num(r["rps_b"], 1),
         _with_ci(r["rps_ratio"], r["rps_ratio_ci_low"], r["rps_ratio_ci_high"], 2),
         r["verdict"],
         *(_num(r[k], 2) for k in ("p50_ratio", "p99_ratio", "cpu_ratio", "pss_ratio"))]
        for r in records(table)
    ]  # fmt: skip
    headers = _cols("label, level, rps a, rps b, rps b/a (95 % CI), throughput, p50 b/a, "
                    "p99 b/a, CPU b/a, PSS b/a")  # fmt: skip
    return "\n".join([*lines, "", *_table(headers, rows)]) + "\n"


def _run_id(run: RunData) -> str:
    return str(run.meta.get("run_id") or run.path.name)


def _header(meta: Mapping[str, Any]) -> list[str]:
    lines = [f"- Machine: {_machine(meta)}"]
    if meta.get("status") not in (None, "complete"):
        lines.append(f"- Run status: {meta['status']} (not every planned cell ran)")
    if meta.get("versions"):
        lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    git = meta.get("git") or {}
    if git.get("sha"):
        lines.append(
            f"- Git: {git['sha']}" + (" (uncommitted changes)" if git.get("dirty") else "")
        )
    lines += [
        f"- Offline ceiling{when} ({c.get('backend')}, {c.get('quantize', 'none')}): "
        f"{_num(c.get('sentences_per_s'), 1)} sentences/s without HTTP"
        + (
            f" ({c['threads']} thread(s) x {c['streams']} stream(s), batch {c.get('best_batch')});"
            f" one bare pass {_num(c.get('batch1_ms'), 2)} ms"
            if "streams" in c
            else ""
        )
        for when, c in _ceilings_in_order(meta)
    ]
    return lines


def _ceilings_in_order(meta: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(when, ceiling): before the cells, after each repeat but the last, after the cells."""
    return [
        *(("", c) for c in meta.get("ceiling") or []),
        *((f" after repeat {c.get('after_repeat')}", c) for c in meta.get("ceiling_between") or []),
        *((" after the cells", c) for c in meta.get("ceiling_after") or []),
    ]


def _machine(meta: Mapping[str, Any]) -> str:
    return describe_host(meta.get("host") or {})


def _settings(config: Mapping[str, Any]) -> list[str]:
    rows = [[k, _setting(v)] for k, v in config.items() if k != "variants" and v is not None]
    lines = _table(["setting", "value"], rows) if rows else []
    variants = [
        [_variant_label(v), str(v.get("name")),
         _setting({k: x for k, x in (v.get("options") or {}).items()
                   if k in DEFAULT_OPTIONS and x != DEFAULT_OPTIONS[k]}) or "defaults"]
        for v in config.get("variants") or []
    ]  # fmt: skip
    return [*lines, "", *_table(["label", "variant", "options"], variants)] if variants else lines


def _variant_label(entry: Mapping[str, Any]) -> str:
    """The label its rows carry: the given one, or the name with its non-default options."""
    if entry.get("label"):
        return str(entry["label"])
    try:
        return default_label(str(entry.get("name")), ServerOptions(**(entry.get("options") or {})))
    except (TypeError, EmbbenchError):  # options written by another embbench version
        return str(entry.get("name"))


def _setting(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_setting(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list | tuple):
        return ", ".join(_setting(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value)


def _changed_settings(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]
    return [f"{k}: {_setting(a.get(k))} → {_setting(b.get(k))}" for k in keys]


def _cols(text: str) -> list[str]:
    return text.split(", ")


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


def _quality_section(summary: pd.DataFrame, agg: pd.DataFrame) -> list[str]:
    """What each label's answers cost in cosine on this run's payload, beside its speed."""
    table = quality.label_quality(records(summary))
    if not table:
        return ["No answer was checked under load (`--check-rate 0`, or a run before the check)."]
    ok = agg[agg["n_ok"] > 0]
    best = ok.groupby("label")["rps"].max() if len(ok) else pd.Series(dtype=float)
    rows = [
        [r["label"], str(r["quantize"] or "–"), f"{r['checked']}", f"{r['mismatched']}",
         _num(r["cosine_min"], 4), _num(r["cosine_p1"], 4), _num(r["cosine_p50"], 4),
         _num(r["cosine_threshold"], 3), _num(best.get(r["label"]), 1)]
        for r in table
    ]  # fmt: skip
    headers = _cols("label, quantize, answers checked, mismatched, cosine min, cosine p1, "
                    "cosine p50, threshold, best rps")  # fmt: skip
    return [
        "Answers taken during the measured windows (all cells of a label, failed ones too), "
        "each compared with sentence-transformers' embedding of the input it was sent: the "
        "cost of int8 or any other approximation on this payload, next to the speed bought "
        "with it. Cosine min includes the probe before the load; p1 is the lowest of the "
        "cells' 1st percentiles, p50 the median of their medians. A mismatched answer is "
        "closer to another input's reference than to its own: one fails its cell, as does a "
        "cosine below the threshold.",
        "",
        *_table(headers, rows),
    ]


def _failed_table(summary: pd.DataFrame) -> list[str]:
    rows = [
        [r["cell"], r["label"], _level(r), f"{r['repeat']:g}", r["status"],
         r["reason"]]
        for r in records(failed_cells(summary))
    ]  # fmt: skip
    headers = _cols("cell, label, level, repeat, status, reason")
    return _table(headers, rows) if rows else ["None: every cell finished with status ok."]


def _winners_table(table: pd.DataFrame) -> list[str]:
    rows = [
        [_level(r),
         (r["label"] if r["decided"] else f"none: tie within noise ({r['label']} leads)")
         + (" (a floor: loadgen saturated)" if r["loadgen_saturated"] else ""),
         _num(r["rps"], 1), _num(r["latency_p99_ms"], 0), r["runner_up"] or "none",
         "" if math.isnan(r["margin"]) else f"{r['margin']:.2f}×", r["verdict"]]
        for r in records(table)
    ]  # fmt: skip
    headers = _cols("level, winner, rps, p99 ms, runner-up, rps margin, verdict")
    note = [
        "A winner is named only where its throughput beats the runner-up's with a paired "
        "t-interval on the log ratio that excludes 1 (repeats pair by index); otherwise the "
        "level is a tie within the noise shown.",
        "",
    ]
    return [*note, *_table(headers, rows)] if rows else ["No cell finished with status ok."]


def _noise_table(agg: pd.DataFrame) -> list[str]:
    rows = [
        [r["label"], _level(r), f"{r['n_ok']}", _pct(r["rps_cv"]),
         "±" + _pct(r["detectable_pct"] / 100) if r["detectable_pct"] == r["detectable_pct"]
         else "too few repeats",
         ", ".join(f for f, on in (("unstable (CV > 10 %)", r["unstable"]),
                                   ("p99 imprecise (< 1000 requests)", r["p99_imprecise"])) if on)]
        for r in records(agg)
    ]  # fmt: skip
    headers = _cols("label, level, ok repeats, rps CV, detectable difference, flags")
    return [
        "How much the repeats of each cell spread (coefficient of variation of rps), and the "
        "smallest throughput difference against a label with the same noise that this many "
        "repeats could call significant.",
        "",
        *_table(headers, rows),
    ]


def _level(row: Mapping[str, Any]) -> str:
    """`10` for a closed loop of 10 users, `40 rps` for an open loop."""
    level = str(row.get("level") or "")
    if level.startswith("c="):
        return level[2:]
    return level or f"{float(row['concurrency']):g}"


def _pct(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(number) else f"{100 * number:.1f} %"


def _baseline_table(agg: pd.DataFrame, baseline: str) -> list[str]:
    table = compare_to_baseline(agg, baseline)
    rows = [
        [r["label"], _level(r),
         _with_ci(r["rps_ratio"], r["rps_ratio_ci_low"], r["rps_ratio_ci_high"], 2),
         _verdict(r["rps_verdict"], r["rps_noise_pct"]),
         _with_ci(r["p50_ratio"], r["p50_ratio_ci_low"], r["p50_ratio_ci_high"], 2),
         _verdict(r["p50_verdict"], r["p50_noise_pct"])]
        for r in records(table)
    ]  # fmt: skip
    base = table["baseline"].iloc[0] if len(table) else baseline
    headers = _cols("label, level, rps ratio (95 % CI), throughput, p50 ratio (95 % CI), "
                    "latency")  # fmt: skip
    return [
        f"Ratios to {base} at the same concurrency (paired by repeat: the geometric mean of the"
        ' per-repeat ratios, with the 95 % t-interval of the log ratio; "significant" only'
        " where it excludes 1).",
        "",
        *_table(headers, rows),
    ]


def _verdict(word: Any, noise_pct: Any) -> str:
    if word == "significant":
        return "significant"
    if word == "tie":
        return f"tie within noise (±{float(noise_pct):.0f} %)"
    return "too few repeats"
