"""Why the losers lose: sentences from a run's columns, each citing the numbers it rests on.

Pure functions of the run's view. A rule speaks only when its columns are present and say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from embbench.report import phases
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.stats import error_kinds, is_false, is_true, level_order, records
from embbench.report.view import RunView
from embbench.results.ceilings import best_rate
from embbench.results.record import RunRecord

# Below this much idle CPU (% of all cores) a mutex is not what holds a server back.
IDLE_WORTH_SAYING = 10.0
# Throughput within this factor of another counts as "about the same".
SIMILAR = 1.10
# RSS above PSS by this fraction of RSS counts as visible copy-on-write sharing.
SHARED_WORTH_SAYING = 0.15


def explain(view: RunView) -> list[str]:
    """Sentences saying why the losers lose, each from the columns that show it.

    A rule speaks only when its columns are present and say so; every sentence carries the
    numbers it rests on.
    """
    frame, agg, record = view.frame, view.agg, view.record
    cores = _cores(record, frame)
    best = {row["level"]: row for row in records(view.winners)}
    return [
        *_oversubscription(frame, agg, best, cores),
        *phases.p99_sentences(agg),  # measured: where they exist, no inference from CPU %
        *_lock_contention(agg, cores, record),
        *_memory_per_worker(agg, record),
        *_saturated_loadgen(frame),
        *_little_law(frame),
        *_wrong_embeddings(frame),
        *_request_failures(frame),
        *_against_ceiling(agg, record),
    ]


def body(view: RunView, options: ReportOptions) -> list[str]:
    reasons = [f"- {s}" for s in explain(view)]
    return reasons or ["Nothing in the data calls for an explanation."]


SECTION = Section("Why", body)


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
            win = best.get(row["level"])
            if win is None:
                continue
            if win["label"] == label:
                parts.append(f"at {row['level']} it still serves the most ({row['rps']:.1f} rps)")
            else:
                parts.append(
                    f"at {row['level']} it serves {row['rps']:.1f} rps, "
                    f"{row['rps'] / win['rps']:.2f}× the {win['rps']:.1f} rps of {win['label']}"
                )
        tail = ": " + "; ".join(parts) if parts else ""
        out.append(
            f"{label} is oversubscribed ({what}), so its threads time-slice the cores{tail}."
        )
    return out


def _lock_contention(agg: pd.DataFrame, cores: int, record: RunRecord) -> list[str]:
    if cores <= 0:
        return []
    capacity = cores * 100.0
    out = []
    # One process, one model: a mutex set against a read-write lock over the same model.
    single = agg[[not _trait(record, v, "multi_process") for v in agg["variant"]]]
    mutexes = records(single[[_trait(record, v, "lock") == "mutex" for v in single["variant"]]])
    rwlocks = records(single[[_trait(record, v, "lock") == "rwlock" for v in single["variant"]]])
    for m in mutexes:
        for r in rwlocks:
            if phases.has_phases(m):
                continue  # its lock wait was measured: p99_sentences says it
            same = all(_same(m[k], r[k]) for k in ("level", "backend", "quantize"))
            numbers = [m["rps"], r["rps"], m["cpu_pct_mean"], r["cpu_pct_mean"]]
            if not same or any(math.isnan(float(x)) for x in numbers):
                continue
            idle = 100.0 * (1.0 - m["cpu_pct_mean"] / capacity)
            if m["rps"] > r["rps"] * SIMILAR or idle < IDLE_WORTH_SAYING:
                continue
            verb = "about the same as" if m["rps"] * SIMILAR >= r["rps"] else "less than"
            out.append(
                f"At {m['level']} {m['label']} serves {m['rps']:.1f} rps, {verb} "
                f"{r['label']}'s {r['rps']:.1f} rps, on {m['cpu_pct_mean']:.0f} % CPU of the "
                f"{capacity:.0f} % that {cores} cores offer: one inference at a time leaves "
                f"{idle:.0f} % of the CPU idle ({r['label']} uses {r['cpu_pct_mean']:.0f} %)."
            )
    return out


def _memory_per_worker(agg: pd.DataFrame, record: RunRecord) -> list[str]:
    workers = pd.to_numeric(agg["workers"], errors="coerce").fillna(1)
    many = pd.Series([bool(_trait(record, v, "multi_process")) for v in agg["variant"]], agg.index)
    multi = agg[many & (workers > 1)]
    single = agg[~many & (workers <= 1) & agg["pss_mb_max"].notna()]
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
        shares = _trait(record, rows["variant"].iloc[0], "shared_memory")
        if shares and not math.isnan(rss) and rss > 0:
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
    for (label, level), rows in _by_cell(frame):
        hit = rows[is_true(rows["loadgen_saturated"])]
        if hit.empty:
            continue
        rps = ", ".join(f"{x:.1f}" for x in hit["rps"].dropna())
        cpu = hit["loadgen_cpu_pct_mean"].dropna()
        cpu_text = f" (its CPU averaged {cpu.mean():.0f} %)" if len(cpu) else ""
        what = f"{rps} rps is a floor" if rps else "the numbers are a floor"
        out.append(
            f"{label} at {level}: the load generator was saturated in {len(hit)} of "
            f"{len(rows)} repeats{cpu_text}, so {what}, not the server's limit."
        )
    return out


def _little_law(frame: pd.DataFrame) -> list[str]:
    out = []
    for row in records(frame[is_false(frame["little_law_ok"])]):
        where = f"{row['label']} at {row['level']} (repeat {row['repeat']:g})"
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
        swapped = rows["mismatched"].fillna(0).sum() if "mismatched" in rows else 0
        limit += (
            f"; {swapped:.0f} answers under load were closer to another input's reference than "
            "to their own"
            if swapped
            else ""
        )
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
            f"{row['label']} at {row['level']} (repeat {row['repeat']:g}): "
            f"{row['failures']:.0f}{total} requests failed ({kinds})."
        )
    return out


def _against_ceiling(agg: pd.DataFrame, record: RunRecord) -> list[str]:
    """How close the best server of each measured backend comes to its offline ceiling: the
    best throughput against the best batched rate, the best c=1 p50 against one bare pass."""
    out = []
    # Only servers that answered every request rightly: one that refuses long inputs (no
    # truncation) serves less work than the ceiling measured.
    ok = agg[
        (agg["n_ok"] > 0)
        & agg["rps"].notna()
        & (agg["failures"].fillna(0) == 0)
        & ~is_true(agg["incorrect"])
    ]
    for ceiling in record.ceilings.before:
        backend: Any = ceiling.backend  # compared with a column: pandas' Any, as the rows are
        quantize = ceiling.quantize
        rows = ok[(ok["backend"] == backend) & (ok["quantize"].fillna("none") == quantize)]
        rate, figure = best_rate(ceiling)
        if rows.empty or not rate > 0:
            continue
        after = record.ceilings.last(backend, quantize)
        top = rows.loc[rows["rps"].idxmax()]
        # Runs from before thread layouts were measured record the rate alone.
        layout = (
            f": {ceiling.threads} thread(s) x {ceiling.streams or 1} stream(s)"
            + (f", batch {ceiling.best_batch}" if ceiling.best_batch is not None else "")
            if ceiling.threads is not None
            else ""
        )
        if figure == "reachable" and ceiling.reachable is not None:
            reach = ceiling.reachable
            layout = (
                f": {reach.threads} thread(s) x {reach.streams or 1} stream(s), "
                f"arrival order, up to {reach.batch_tokens} tokens a batch"
            )
        again = best_rate(after)[0] if after else math.nan
        out.append(
            f"At {top['level']}, {top['label']} serves {top['rps']:.1f} rps, "
            f"{100 * top['rps'] / rate:.0f} % of the {ceiling.kind} offline ceiling "
            f"({rate:.1f} sentences/s{layout}, no HTTP)"
            + (
                f"; measured again after the cells, {again:.1f} sentences/s "
                f"({100 * top['rps'] / again:.0f} %)."
                if again > 0
                else "."
            )
        )
        single = rows[rows["concurrency"] == 1]
        bare = ceiling.batch1_ms or math.nan
        bare_again = (after.batch1_ms if after else None) or math.nan
        if not single.empty and bare > 0:
            quick = single.loc[single["latency_p50_ms"].idxmin()]
            p50 = quick["latency_p50_ms"]
            out.append(
                f"At c=1, {quick['label']}'s p50 of {p50:.2f} ms is {p50 / bare:.2f}x one bare "
                f"{ceiling.kind} forward pass ({bare:.2f} ms with "
                f"{'?' if ceiling.batch1_threads is None else ceiling.batch1_threads} thread(s))"
                + (
                    f", and {p50 / bare_again:.2f}x the {bare_again:.2f} ms measured after the "
                    "cells"
                    if bare_again > 0
                    else ""
                )
                + ": what HTTP, JSON, queueing and the client add."
            )
    return out


def _trait(record: RunRecord, variant: Any, name: str) -> Any:
    """A trait of a variant as the run recorded it (None: a server not ours to describe)."""
    traits = record.traits_of(variant)
    return getattr(traits, name) if traits is not None else None


def _cores(record: RunRecord, frame: pd.DataFrame) -> int:
    if record.host.cores is not None:
        return record.host.cores
    present = frame["cores"].dropna()
    return int(present.iloc[0]) if len(present) else 0


def _first(values: pd.Series[Any], default: float) -> float:
    present = values.dropna()
    return float(present.iloc[0]) if len(present) else default


def _same(a: Any, b: Any) -> bool:
    missing_a, missing_b = pd.isna(a), pd.isna(b)
    return bool(missing_a and missing_b) or (not missing_a and not missing_b and a == b)


def _by_cell(frame: pd.DataFrame) -> list[tuple[tuple[str, str], pd.DataFrame]]:
    """(label, level) groups: labels in order of appearance, levels in level_order (an open
    loop's rates share one `concurrency`, their cap on requests in flight)."""
    out = []
    for label in dict.fromkeys(frame["label"]):
        rows = frame[frame["label"] == label]
        for level in sorted(rows["level"].dropna().unique(), key=level_order):
            out.append(((str(label), str(level)), rows[rows["level"] == level]))
    return out
