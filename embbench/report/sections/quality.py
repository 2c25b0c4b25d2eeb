"""Quality under load: what each label's answers cost in cosine on the run's payload, beside
its speed."""

from __future__ import annotations

import pandas as pd

from embbench.report.markdown import headings
from embbench.report.markdown import num as _num
from embbench.report.markdown import table as _table
from embbench.report.retrieval import retrieval_rows
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.view import RunView


def retrieval_lines(view: RunView) -> list[str]:
    """The retrieval-agreement table (run/retrieval.py), or nothing if no cell measured it."""
    found, speed_name = retrieval_rows(view)
    if not found:
        return []
    floor = (view.record.capacity or {}).get("quality_floor")

    def with_interval(r: dict[str, object], name: str) -> str:
        return (f"{_num(r[name], 3)} [{_num(r[f'{name}_low'], 3)}, "
                f"{_num(r[f'{name}_high'], 3)}]")  # fmt: skip

    rows = [
        [r["label"], with_interval(r, "recall_at_10"), with_interval(r, "ndcg_at_10"),
         with_interval(r, "spearman"), with_interval(r, "doc_recall_at_10"),
         _num(r["doc_recall_at_10_ref"], 3), f"{r['quality_queries']} x {r['cells']}",
         _num(r["speed"], 1), f"{_num(r['cosine_threshold'], 3)} ({r['threshold_reason'] or '–'})"]
        for r in found
    ]  # fmt: skip
    headers = headings(
        "label, recall@10, nDCG@10, Spearman, doc recall@10, doc recall@10 of the reference, "
        f"queries x cells, {speed_name}, cosine threshold (why)"
    )
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
        *_table(headers, rows),
        "",
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
