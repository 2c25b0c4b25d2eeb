"""Quality under load: what each label's answers cost in cosine on the run's payload, beside
its speed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from embbench.report.markdown import headings
from embbench.report.markdown import num as _num
from embbench.report.markdown import table as _table
from embbench.report.retrieval import quality_rows
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.view import RunView


def _interval(r: Mapping[str, Any], name: str, digits: int = 3) -> str:
    if _num(r[name], digits) == "–":
        return "–"
    return (f"{_num(r[name], digits)} [{_num(r[f'{name}_low'], digits)}, "
            f"{_num(r[f'{name}_high'], digits)}]")  # fmt: skip


def _deviation(r: Mapping[str, Any]) -> str:
    """`2.1e-07 (p50 0; 123 answers, batch <= 8)`: the largest, the median, what is behind it."""
    if not r.get("batch_cells"):
        return "–"
    largest = f", batch <= {r['batch_largest']}" if r.get("batch_largest") else ""
    return (f"{_small(r['batch_deviation'])} (p50 {_small(r['batch_deviation_p50'])}; "
            f"{r['batch_inputs']} answers{largest})")  # fmt: skip


def _cache(r: Mapping[str, Any]) -> str:
    """`1.01 [0.97, 1.05] x 32 pairs: no`, or `... : CACHES (3 of 3 cells)`."""
    if not r.get("cache_cells"):
        return "–"
    verdict = (f"CACHES ({r['cache_flagged_cells']} of {r['cache_cells']} cells)" if r["caches"]
               else "no")  # fmt: skip
    return f"{_interval(r, 'cache_speedup', 2)} x {r['cache_pairs']} pairs: {verdict}"


def _small(value: Any) -> str:
    """A deviation: 0, or two significant digits (they span 1e-12 to 1e-2)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    if number != number:
        return "–"
    return "0" if number == 0 else f"{number:.1e}"


def retrieval_lines(view: RunView) -> list[str]:
    """The retrieval-agreement table (run/retrieval.py) with the checks after each window
    (run/after_window.py), or nothing if no cell measured any of them."""
    found, speed_name = quality_rows(view)
    if not found:
        return []
    floor = (view.record.capacity or {}).get("quality_floor")

    def speed(r: Mapping[str, Any]) -> str:
        text = _num(r["speed"], 1)
        return f"{text} (caches: not compared)" if r.get("caches") and text != "–" else text

    rows = [
        [r["label"], _interval(r, "recall_at_10"), _interval(r, "ndcg_at_10"),
         _interval(r, "spearman"), _interval(r, "doc_recall_at_10"),
         _num(r["doc_recall_at_10_ref"], 3),
         f"{r['quality_queries']} x {r['cells']}" if r["cells"] else "–",
         _deviation(r), _cache(r), speed(r),
         f"{_num(r['cosine_threshold'], 3)} ({r['threshold_reason'] or '–'})"]
        for r in found
    ]  # fmt: skip
    headers = headings(
        "label, recall@10, nDCG@10, Spearman, doc recall@10, doc recall@10 of the reference, "
        "queries x cells, batch deviation (1 - cosine; largest), repeats' speedup (cache check), "
        f"{speed_name}, cosine threshold (why)"
    )
    caching = [str(r["label"]) for r in found if r.get("caches")]
    caching_text = (
        [f"**{', '.join(caching)}: caches.** Repeated inputs were answered more than 10 % "
         "faster than distinct inputs of the same length, beyond the noise: throughput on a "
         "payload that repeats its inputs (every payload here does) measures the cache, so it "
         "is not compared with the others' (the speed column says so).", ""]
        if caching else []
    )  # fmt: skip
    floor_text = (
        f" Capacity is reported only for labels whose recall@10 holds the floor of {floor:g} "
        "in every cell."
        if isinstance(floor, int | float)
        else ""
    )
    return [
        "Retrieval agreement through each server, under its load: a fixed corpus (chunks of "
        "consecutive sentences of the 41 shipped documents, and held-out sentences as queries) "
        "embedded through the label's own endpoint during the measured window, searched, and "
        "compared with sentence-transformers in fp32 at the model's own settings. recall@10: "
        "the share of the reference's 10 nearest documents the label also returns; nDCG@10 "
        "against the reference's ranking; Spearman of the query-document cosines; doc "
        "recall@10: the share of the query's own document's chunks among its 10 nearest, with "
        "the reference's own figure (the model's ceiling) beside it. Each figure is the median "
        "over the label's cells with the widest 95 % bootstrap interval over queries." + floor_text,
        "",
        "After the measured window (never inside it) of each label's first cell, two checks "
        "through the same "
        "endpoint. Batch invariance: texts of the run's payload embedded alone and inside "
        "batches of 2 to 8 inputs (requests of several inputs, and concurrent requests a "
        "batching server queues together) with short and long batch-mates; the deviation is "
        "1 - cosine to the same text's answer alone (what a search sees), the largest over "
        "every answer compared (a worst case: no interval), with the median and the count. "
        "The cache check (MLPerf's TEST04): one text sent again and again against new orders "
        "of its words (the same tokens: the same work), alternated; the speedup is the median "
        "latency of the new texts over the repeated one's, with its 95 % bootstrap interval "
        "over the pairs. A label is flagged as caching when the interval's lower bound "
        "exceeds 1.10 in most of its cells.",
        "",
        *_table(headers, rows),
        "",
        *caching_text,
    ]


def body(view: RunView, options: ReportOptions) -> list[str]:
    """What each label's answers cost in cosine on this run's payload, beside its speed."""
    table, agg = view.quality, view.agg
    retrieval = retrieval_lines(view)
    if not table:
        return retrieval or [
            "No answer was checked under load (`--check-rate 0`, or a run before the check)."
        ]
    ok = agg[agg["n_ok"] > 0]
    best = ok.groupby("label")["rps"].max() if len(ok) else pd.Series(dtype=float)
    rows = [
        [r["label"], str(r["quantize"] or "–"), f"{r['checked']}", f"{r['mismatched']}",
         _num(r["cosine_min"], 4), _num(r["cosine_p1"], 4), _num(r["cosine_p50"], 4),
         _num(r["cosine_threshold"], 3), _num(best.get(r["label"]), 1)]
        for r in table
    ]  # fmt: skip
    headers = headings("label, quantize, answers checked, mismatched, cosine min, cosine p1, "
                       "cosine p50, threshold, best rps")  # fmt: skip
    return [
        *retrieval,
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


SECTION = Section("Quality under load", body)
