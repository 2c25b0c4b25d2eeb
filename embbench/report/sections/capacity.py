"""The capacity section of report.md: the rate each variant sustains within its p99 target,
what that costs in CPU, memory and money, and where its knee is.

CPU per embedding is the server's own CPU time per answered request at the rate found, set
beside the offline ceiling's (all cores busy at its best batched rate), so the cost of serving
reads apart from the load generator's share of the machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from embbench.errors import EmbbenchError
from embbench.report.markdown import num as _num
from embbench.report.markdown import table as _table
from embbench.report.plan import measured_from
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.sections.ceiling import CEILING_CPU_MS, CPU_MS, ceiling_cpu_ms, host_cores
from embbench.report.stats import records
from embbench.report.view import RunView
from embbench.results.record import RunRecord

MS_PER_HOUR = 3_600_000.0


def _ceiling_cpu_ms(record: RunRecord, backend: Any, quantize: Any) -> float:
    """CPU ms per embedding at the offline ceiling measured before the cells."""
    first = record.ceilings.first(backend, quantize)
    return ceiling_cpu_ms(first, host_cores(record)) if first else math.nan


# capacity.csv's columns as tables show them: this section's and `embbench capacity`'s.
HEADINGS = {
    "label": "label",
    "status": "status",
    "qps_at_slo": "rps at target",
    "p99_at_slo_ms": "p99 ms",
    "cpu_pct_at_slo": "CPU %",
    "cpu_ms_per_embedding": CPU_MS,
    "pss_mb_at_slo": "PSS MB",
    "probes": "probes",
}


def body(view: RunView, options: ReportOptions) -> list[str] | None:
    """None for a run that is not an `embbench capacity` run (no capacity.csv)."""
    capacity, agg, record = view.capacity, view.agg, view.record
    if capacity is None:
        return None
    price_per_core_hour = options.price_per_core_hour
    backends = {r["label"]: (r.get("backend"), r.get("quantize") or "none") for r in records(agg)}
    rows, knees = [], []
    words = _words(view)
    for r in records(capacity):
        cpu_ms = float(r.get("cpu_ms_per_embedding") or math.nan)
        ceiling = _ceiling_cpu_ms(record, *backends.get(r["label"], (None, None)))
        cost = cpu_ms / MS_PER_HOUR * 1e6 * price_per_core_hour
        rows.append([
            str(r["label"]), words.get(str(r["label"]), str(r["status"])),
            _num(r.get("qps_at_slo"), 1),
            _num(r.get("p99_at_slo_ms"), 0), _num(r.get("cpu_pct_at_slo"), 0),
            _num(cpu_ms, 2), _num(ceiling, 2), _num(r.get("pss_mb_at_slo"), 0),
            _num(cost, 3), str(int(r.get("probes") or 0)),
        ])  # fmt: skip
        knees.append(f"- {r['label']}: {_knee(r)}")  # the search's own account
    slo = float(capacity["slo_p99_ms"].iloc[0]) if len(capacity) else math.nan
    shown = ("label", "status", "qps_at_slo", "p99_at_slo_ms", "cpu_pct_at_slo",
             "cpu_ms_per_embedding")  # fmt: skip
    usd = f"USD per million (at {price_per_core_hour:g}/core-hour)"
    headers = [*(HEADINGS[k] if k != "status" else "capacity" for k in shown), CEILING_CPU_MS,
               HEADINGS["pss_mb_at_slo"], usd, HEADINGS["probes"]]  # fmt: skip
    return [
        f"The highest open-loop arrival rate whose p99 (from the scheduled send) stays within "
        f"{slo:g} ms and whose errors stay within the limit, per label; every probe is a row "
        "of summary.csv and a point of the offered-load chart.",
        "",
        *_table(headers, rows),
        "",
        *knees,
    ]


def _words(view: RunView) -> dict[str, str]:
    """Per label, its capacity in words ("sustains 17.8 rps; 18.6 too close to call"), not a
    bare status beside a number (report/plan.py reads the rate probed above it)."""
    try:
        return {m.label: m.sustains + ("; caches: not compared" if m.caching else "")
                for m in measured_from(view.run)}  # fmt: skip
    except EmbbenchError:
        return {}


def _knee(r: Mapping[str, Any]) -> str:
    reason = str(r.get("reason") or "")
    if r.get("status") == "found":
        return f"sustains {float(r['qps_at_slo']):.1f} rps within the target ({reason})."
    if r.get("status") == "none":
        return f"meets the target at no rate tried ({reason})."
    if r.get("status") == "below_quality_floor":
        return f"no capacity reported: {reason}."
    return f"capacity not decided ({reason})."


SECTION = Section("Capacity", body)
