"""The report: tables and sentences from a run's DataFrames, as Markdown.

Pure functions: no printing, no exit. The numbers come from stats.py (re-exported here so the
CLI needs one import); this module turns them into words that cite those numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from embbench.config import ServerOptions, default_label
from embbench.errors import EmbbenchError
from embbench.metadata import describe_host
from embbench.results import RunData
from embbench.stats import (
    RESAMPLES,
    aggregate,
    compare_runs,
    compare_to_baseline,
    error_kinds,
    failed_cells,
    is_false,
    is_true,
    prepare,
    records,
    winners,
)

__all__ = [
    "CHART_FILES",
    "aggregate",
    "compare_runs",
    "compare_to_baseline",
    "explain",
    "failed_cells",
    "render_compare_markdown",
    "render_markdown",
    "winners",
]

# Written by charts.write_charts, linked from report.md (paths relative to the run folder).
CHART_FILES = ("throughput.png", "latency.png", "resources.png", "timeline.png")
DEFAULT_OPTIONS = dataclasses.asdict(ServerOptions())
MULTI_PROCESS = ("per-worker", "preload")
# Below this much idle CPU (% of all cores) a mutex is not what holds a server back.
IDLE_WORTH_SAYING = 10.0
# Throughput within this factor of another counts as "about the same".
SIMILAR = 1.10
# RSS above PSS by this fraction of RSS counts as visible copy-on-write sharing.
SHARED_WORTH_SAYING = 0.15


def explain(summary: pd.DataFrame, agg: pd.DataFrame, meta: Mapping[str, Any]) -> list[str]:
    """Sentences saying why the losers lose, each from the columns that show it.

    A rule speaks only when its columns are present and say so; every sentence carries the
    numbers it rests on.
    """
    frame = prepare(summary)
    cores = _cores(meta, frame)
    best = {int(row["concurrency"]): row for row in records(winners(agg))}
    return [
        *_oversubscription(frame, agg, best, cores),
        *_lock_contention(agg, cores),
        *_memory_per_worker(agg),
        *_saturated_loadgen(frame),
        *_little_law(frame),
        *_wrong_embeddings(frame),
        *_request_failures(frame),
    ]


def _oversubscription(
    frame: pd.DataFrame, agg: pd.DataFrame, best: Mapping[int, Mapping[str, Any]], cores: int
) -> list[str]:
    out = []
    for label in dict.fromkeys(frame["label"]):
        rows = frame[frame["label"] == label]
        workers, threads = _first(rows["workers"], 1.0), _first(rows["threads"], math.nan)
        flagged = bool(is_true(rows["oversubscribed"]).any())
        over = cores > 0 and not math.isnan(threads) and workers * threads > cores
        if not (flagged or over):
            continue
        if math.isnan(threads) or cores <= 0:
            what = "flagged by the run"
        else:
            total = workers * threads
            compute = (
                _first(rows["compute_threads"], math.nan) if "compute_threads" in rows else math.nan
            )
            if not math.isnan(compute) and compute > total:
                what = (
                    f"{workers:g} process(es) × {threads:g} intra-op threads × "
                    f"{compute / total:g} inferences that overlap = {compute:g} compute threads "
                    f"on {cores} cores"
                )
            else:
                what = f"{workers:g} × {threads:g} intra-op threads = {total:g} on {cores} cores"
                if not over:
                    what += ", times the inferences that overlap in one process"
        parts = []
        for row in records(agg[(agg["label"] == label) & agg["rps"].notna()]):
            win = best.get(int(row["concurrency"]))
            if win is None:
                continue
            if win["label"] == label:
                parts.append(
                    f"at c={row['concurrency']} it still serves the most ({row['rps']:.1f} rps)"
                )
            else:
                parts.append(
                    f"at c={row['concurrency']} it serves {row['rps']:.1f} rps, "
                    f"{row['rps'] / win['rps']:.2f}× the {win['rps']:.1f} rps of {win['label']}"
                )
        tail = ": " + "; ".join(parts) if parts else ""
        out.append(
            f"{label} is oversubscribed ({what}), so its threads time-slice the cores{tail}."
        )
    return out


def _lock_contention(agg: pd.DataFrame, cores: int) -> list[str]:
    if cores <= 0:
        return []
    capacity = cores * 100.0
    out = []
    mutexes = records(agg[agg["variant"] == "shared-mutex"])
    rwlocks = records(agg[agg["variant"] == "shared-rwlock"])
    for m in mutexes:
        for r in rwlocks:
            same = all(_same(m[k], r[k]) for k in ("concurrency", "backend", "quantize"))
            numbers = [m["rps"], r["rps"], m["cpu_pct_mean"], r["cpu_pct_mean"]]
            if not same or any(math.isnan(float(x)) for x in numbers):
                continue
            idle = 100.0 * (1.0 - m["cpu_pct_mean"] / capacity)
            if m["rps"] > r["rps"] * SIMILAR or idle < IDLE_WORTH_SAYING:
                continue
            verb = "about the same as" if m["rps"] * SIMILAR >= r["rps"] else "less than"
            out.append(
                f"At c={m['concurrency']} {m['label']} serves {m['rps']:.1f} rps, {verb} "
                f"{r['label']}'s {r['rps']:.1f} rps, on {m['cpu_pct_mean']:.0f} % CPU of the "
                f"{capacity:.0f} % that {cores} cores offer: one inference at a time leaves "
                f"{idle:.0f} % of the CPU idle ({r['label']} uses {r['cpu_pct_mean']:.0f} %)."
            )
    return out


def _memory_per_worker(agg: pd.DataFrame) -> list[str]:
    workers = pd.to_numeric(agg["workers"], errors="coerce").fillna(1)
    multi = agg[agg["variant"].isin(MULTI_PROCESS) & (workers > 1)]
    single = agg[~agg["variant"].isin(MULTI_PROCESS) & (workers <= 1) & agg["pss_mb_max"].notna()]
    out = []
    for label in dict.fromkeys(multi["label"]):
        rows = multi[multi["label"] == label]
        n = float(pd.to_numeric(rows["workers"]).max())
        pss, rss = float(rows["pss_mb_max"].max()), float(rows["rss_mb_max"].max())
        if math.isnan(pss):
            continue
        backend = rows["backend"].iloc[0]
        same_backend = single[[_same(b, backend) for b in single["backend"]]]
        ref_rows = same_backend if len(same_backend) else single
        if len(ref_rows):
            per_label = ref_rows.groupby("label", sort=False)["pss_mb_max"].max()
            ref = float(per_label.median())
            names = ", ".join(str(x) for x in per_label.index)
            out.append(
                f"{label} runs {n:g} processes in {pss:.0f} MB PSS ({pss / n:.0f} MB per process; "
                f"RSS {rss:.0f} MB) against {ref:.0f} MB PSS for one process ({names}): each "
                f"extra worker costs about {(pss - ref) / (n - 1):.0f} MB."
            )
        if rows["variant"].iloc[0] == "preload" and not math.isnan(rss) and rss > 0:
            shared = rss - pss
            if shared / rss >= SHARED_WORTH_SAYING:
                out.append(
                    f"Copy-on-write sharing shows in {label}: its RSS ({rss:.0f} MB) counts "
                    f"{shared:.0f} MB ({shared / rss:.0%}) more than its PSS ({pss:.0f} MB), "
                    "pages the workers still share since the fork."
                )
            else:
                out.append(
                    f"Copy-on-write sharing barely shows in {label}: its PSS ({pss:.0f} MB) is "
                    f"within {max(shared, 0.0) / rss:.0%} of its RSS ({rss:.0f} MB), so the "
                    "workers hold mostly private copies."
                )
    return out


def _saturated_loadgen(frame: pd.DataFrame) -> list[str]:
    out = []
    for (label, concurrency), rows in _by_cell(frame):
        hit = rows[is_true(rows["loadgen_saturated"])]
        if hit.empty:
            continue
        rps = ", ".join(f"{x:.1f}" for x in hit["rps"].dropna())
        cpu = hit["loadgen_cpu_pct_mean"].dropna()
        cpu_text = f" (its CPU averaged {cpu.mean():.0f} %)" if len(cpu) else ""
        what = f"{rps} rps is a floor" if rps else "the numbers are a floor"
        out.append(
            f"{label} at c={concurrency}: the load generator was saturated in {len(hit)} of "
            f"{len(rows)} repeats{cpu_text}, so {what}, not the server's limit."
        )
    return out


def _little_law(frame: pd.DataFrame) -> list[str]:
    out = []
    for row in records(frame[is_false(frame["little_law_ok"])]):
        where = f"{row['label']} at c={row['concurrency']:g} (repeat {row['repeat']:g})"
        rps, mean_s = row["rps"], row["latency_mean_ms"] / 1000.0
        if math.isnan(rps) or math.isnan(mean_s):
            out.append(
                f"{where}: Little's law does not hold (little_ratio {row['little_ratio']:.2f})."
            )
            continue
        in_flight = rps * mean_s
        why = (
            "the users spent time outside timed requests, so the server saw less load than asked"
            if in_flight < row["concurrency"]
            else "more requests in flight than users: the request log or window is inconsistent"
        )
        out.append(
            f"{where}: Little's law does not hold: {rps:.1f} rps × {mean_s:.3f} s mean latency "
            f"= {in_flight:.1f} requests in flight for {row['concurrency']:g} users; {why}."
        )
    return out


def _wrong_embeddings(frame: pd.DataFrame) -> list[str]:
    out = []
    for label in dict.fromkeys(frame["label"]):
        rows = frame[(frame["label"] == label) & is_false(frame["correct"])]
        if rows.empty:
            continue
        threshold = rows["cosine_threshold"].dropna()
        limit = f" below the threshold {threshold.iloc[0]:.4f}" if len(threshold) else ""
        out.append(
            f"{label}: the embeddings disagree with the reference in {len(rows)} cells "
            f"(cosine min {rows['cosine_min'].min():.4f}{limit}), so its numbers do not count."
        )
    return out


def _request_failures(frame: pd.DataFrame) -> list[str]:
    out = []
    for row in records(frame[frame["failures"].fillna(0) > 0]):
        kinds = error_kinds(row) or "kind not recorded"
        total = f" of {row['requests']:.0f}" if not math.isnan(row["requests"]) else ""
        out.append(
            f"{row['label']} at c={row['concurrency']:g} (repeat {row['repeat']:g}): "
            f"{row['failures']:.0f}{total} requests failed ({kinds})."
        )
    return out


def render_markdown(
    run: RunData, baseline: str | None = None, charts: Sequence[str] | None = None
) -> str:
    """report.md: machine, versions, settings, tables, winners, ratios, reasons, charts.

    `charts` are the chart paths to link, relative to the run folder (default: CHART_FILES
    under charts/). An unknown `baseline` raises UsageError (from compare_to_baseline).
    """
    meta, agg = run.meta, aggregate(run.summary)
    lines = [f"# embbench report: run {_run_id(run)}", "", *_header(meta), ""]
    settings = _settings(meta.get("config") or {}) or ["Not recorded in run.json."]
    lines += ["## Settings", "", *settings, "", "## Results", ""]
    lines += [
        "Medians over the repeats whose status is ok; in brackets, the 95 % percentile-"
        f"bootstrap interval of the median ({RESAMPLES} resamples, fixed seed) where there are"
        " at least two ok repeats (with two, it is their range). Latencies in ms; memory in MB,"
        " peak over the measured window, summed over the server's processes.",
        "",
    ]
    for concurrency in sorted(agg["concurrency"].unique()):
        rows = records(agg[agg["concurrency"] == concurrency])
        lines += [f"### Concurrency {concurrency}", "", *_table(RESULT_HEADERS, map(_result, rows))]
        lines += [""]
    lines += ["## Winners", "", *_winners_table(winners(agg)), ""]
    if baseline is not None:
        lines += [f"## Against {baseline}", "", *_baseline_table(agg, baseline), ""]
    reasons = [f"- {s}" for s in explain(run.summary, agg, meta)]
    lines += ["## Why", "", *(reasons or ["Nothing in the data calls for an explanation."]), ""]
    lines += ["## Failed cells", "", *_failed_table(run.summary)]
    lines += ["", "## Charts", ""]
    for path in charts if charts is not None else [f"charts/{name}" for name in CHART_FILES]:
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
        [r["label"], f"{r['concurrency']:g}", _num(r["rps_a"], 1), _num(r["rps_b"], 1),
         _with_ci(r["rps_ratio"], r["rps_ratio_ci_low"], r["rps_ratio_ci_high"], 2),
         _verdict(r["significant"], not math.isnan(r["rps_ratio_ci_low"])),
         *(_num(r[k], 2) for k in ("p50_ratio", "p99_ratio", "cpu_ratio", "pss_ratio"))]
        for r in records(table)
    ]  # fmt: skip
    headers = _cols("label, concurrency, rps a, rps b, rps b/a (95 % CI), throughput, p50 b/a, "
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
        f"- Offline ceiling ({c.get('backend')}, {c.get('quantize', 'none')}): "
        f"{_num(c.get('sentences_per_s'), 1)} sentences/s without HTTP"
        for c in meta.get("ceiling") or []
    ]
    return lines


def _machine(meta: Mapping[str, Any]) -> str:
    return describe_host(meta.get("host") or {})


def _settings(config: Mapping[str, Any]) -> list[str]:
    rows = [[k, _setting(v)] for k, v in config.items() if k != "variants" and v is not None]
    lines = _table(["setting", "value"], rows) if rows else []
    variants = [
        [_variant_label(v), str(v.get("name")),
         _setting({k: x for k, x in (v.get("options") or {}).items()
                   if x != DEFAULT_OPTIONS.get(k, None)}) or "defaults"]
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


RESULT_HEADERS = _cols("label, rps, p50 ms, p95 ms, p99 ms, CPU %, RSS MB, PSS MB, "
                       "loadgen CPU %, cosine min, ok/runs, flags")  # fmt: skip


def _result(r: Mapping[str, Any]) -> list[str]:
    def ci(column: str, digits: int) -> str:
        return _with_ci(r[column], r[f"{column}_ci_low"], r[f"{column}_ci_high"], digits)

    plain = ("cpu_pct_mean", "rss_mb_max", "pss_mb_max", "loadgen_cpu_pct_mean")
    return [
        r["label"], ci("rps", 1), ci("latency_p50_ms", 0), _num(r["latency_p95_ms"], 0),
        ci("latency_p99_ms", 0), *(_num(r[k], 0) for k in plain), _num(r["cosine_min"], 4),
        f"{r['n_ok']}/{r['n_repeats']}", _flags(r),
    ]  # fmt: skip


def _flags(row: Mapping[str, Any]) -> str:
    names = {"oversubscribed": "oversubscribed", "loadgen_saturated": "loadgen saturated",
             "little_law_off": "Little's law off", "incorrect": "wrong embeddings"}  # fmt: skip
    flags = [name for key, name in names.items() if row[key]]
    if row["n_failed"]:
        flags.append(f"{row['n_failed']} failed")
    if row["failures"] > 0:
        flags.append(f"{row['failures']:.0f} request errors")
    return ", ".join(flags)


def _failed_table(summary: pd.DataFrame) -> list[str]:
    rows = [
        [r["cell"], r["label"], f"{r['concurrency']:g}", f"{r['repeat']:g}", r["status"],
         r["reason"]]
        for r in records(failed_cells(summary))
    ]  # fmt: skip
    headers = _cols("cell, label, concurrency, repeat, status, reason")
    return _table(headers, rows) if rows else ["None: every cell finished with status ok."]


def _winners_table(table: pd.DataFrame) -> list[str]:
    rows = [
        [f"{r['concurrency']:g}",
         r["label"] + (" (a floor: loadgen saturated)" if r["loadgen_saturated"] else ""),
         _num(r["rps"], 1), _num(r["latency_p99_ms"], 0), r["runner_up"] or "none",
         "" if math.isnan(r["margin"]) else f"{r['margin']:.2f}×"]
        for r in records(table)
    ]  # fmt: skip
    headers = _cols("concurrency, winner, rps, p99 ms, runner-up, rps margin")
    return _table(headers, rows) if rows else ["No cell finished with status ok."]


def _baseline_table(agg: pd.DataFrame, baseline: str) -> list[str]:
    table = compare_to_baseline(agg, baseline)
    rows = [
        [r["label"], f"{r['concurrency']:g}",
         _with_ci(r["rps_ratio"], r["rps_ratio_ci_low"], r["rps_ratio_ci_high"], 2),
         _verdict(r["rps_significant"], r["has_interval"]),
         _with_ci(r["p50_ratio"], r["p50_ratio_ci_low"], r["p50_ratio_ci_high"], 2),
         _verdict(r["p50_significant"], not math.isnan(r["p50_ratio_ci_low"]))]
        for r in records(table)
    ]  # fmt: skip
    base = table["baseline"].iloc[0] if len(table) else baseline
    headers = _cols("label, concurrency, rps ratio (95 % CI), throughput, p50 ratio (95 % CI), "
                    "latency")  # fmt: skip
    return [
        f"Ratios to {base} at the same concurrency (ratios of medians; 95 % bootstrap interval"
        " over the repeats of both sides; an interval that spans 1 is not significant).",
        "",
        *_table(headers, rows),
    ]


def _verdict(significant: Any, has_interval: Any) -> str:
    if not has_interval:
        return "no interval (< 2 ok repeats)"
    return "significant" if significant else "not significant"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    def line(values: Iterable[Any]) -> str:
        return (
            "| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in values) + " |"
        )

    text = ("label", "winner", "runner-up", "flags", "reason", "cell", "setting", "value",
            "variant", "options", "status", "throughput", "latency")  # fmt: skip
    return [line(headers), line("---" if h in text else "---:" for h in headers), *map(line, rows)]


def _num(value: Any, digits: int) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(number) else f"{number:.{digits}f}"


def _with_ci(value: Any, low: Any, high: Any, digits: int) -> str:
    text, low_text = _num(value, digits), _num(low, digits)
    return text if "–" in (text, low_text) else f"{text} ({low_text}–{_num(high, digits)})"


def _cores(meta: Mapping[str, Any], frame: pd.DataFrame) -> int:
    cores = (meta.get("host") or {}).get("cores")
    if isinstance(cores, int | float) and cores > 0:
        return int(cores)
    present = frame["cores"].dropna()
    return int(present.iloc[0]) if len(present) else 0


def _first(values: pd.Series[Any], default: float) -> float:
    present = values.dropna()
    return float(present.iloc[0]) if len(present) else default


def _same(a: Any, b: Any) -> bool:
    missing_a, missing_b = pd.isna(a), pd.isna(b)
    return bool(missing_a and missing_b) or (not missing_a and not missing_b and a == b)


def _by_cell(frame: pd.DataFrame) -> list[tuple[tuple[str, int], pd.DataFrame]]:
    out = []
    for label in dict.fromkeys(frame["label"]):
        rows = frame[frame["label"] == label]
        for concurrency in sorted(rows["concurrency"].dropna().unique()):
            out.append(((str(label), int(concurrency)), rows[rows["concurrency"] == concurrency]))
    return out
