"""The report's first section, "Answer": the decision the run allows, before the evidence.

For a capacity run: what each variant sustains within the p99 target, in words ("sustains
17.8 rps; 18.6 too close to call"), per core count measured, and what a replica of that size
costs per million embeddings at that rate (report/plan.py's arithmetic). For a closed-loop
run: the winner per level with its verdict (the winners section's data, compare.winners), and
what such a run cannot tell: with no latency target, which way of serving meets one.
"""

from __future__ import annotations

import math

from embbench.errors import EmbbenchError
from embbench.report.compare import cache_exclusions
from embbench.report.markdown import level_cell, num, table
from embbench.report.plan import Measured, measured_from
from embbench.report.prices import HOURS_PER_MONTH
from embbench.report.scaling import scaling
from embbench.report.sections.base import ReportOptions, Section
from embbench.report.stats import records
from embbench.report.view import RunView


def _usd_per_million(m: Measured, price_per_core_hour: float) -> float:
    """A replica of m.cores cores, busy at its capacity: its core-hours per million answers."""
    if not m.capacity_rps:
        return math.nan
    return m.cores * price_per_core_hour / (m.capacity_rps * 3600) * 1e6


def _quality(m: Measured) -> str:
    """What a faster variant costs in search quality, beside its speed: the lowest recall@10
    of the fp32 neighbours over its probes (else the lowest cosine), named."""
    if m.quality is None:
        return "–"
    return f"{m.quality_name} {m.quality:.{3 if m.quality_name == 'recall@10' else 4}f}"


def capacity_answer(view: RunView, options: ReportOptions) -> list[str] | None:
    try:
        measured = measured_from(view.run)
    except EmbbenchError:
        return None
    if not measured:
        return None
    slo = measured[0].slo_p99_ms
    ranked = sorted(measured, key=lambda m: -(m.capacity_rps or 0) / m.cores)
    rows = [
        [m.label, str(m.cores), m.sustains + ("; caches: not compared" if m.caching else ""),
         num((m.capacity_rps or math.nan) / m.cores, 1),
         num(m.pss_mb, 0), num(m.startup_s, 1),
         num(_usd_per_million(m, options.price_per_core_hour), 3), _quality(m)]
        for m in ranked
    ]  # fmt: skip
    # A variant flagged as caching is not compared (results/ranking.py): never "most per core".
    best = next((m for m in ranked if not m.caching), None)
    lines = [
        f"Within p99 <= {slo:g} ms (from the scheduled send, open loop):",
        "",
        *table(["label", "cores", "capacity", "rps per core", "PSS MB", "start-up s",
                f"USD per million, the replica's cores "
                f"(at {options.price_per_core_hour:g}/core-hour)", "quality (lowest)"], rows),
        "",
    ]  # fmt: skip
    lines += [f"{m.label} is {m.caching}." for m in ranked if m.caching]
    if best is not None and best.capacity_rps:
        lines.append(
            f"Most per core: {best.label} ({best.sustains}). For a traffic target, "
            f"`embbench plan {view.run.path.name} --target-rps R --slo-p99-ms {slo:g}` sizes "
            f"the replicas and prices them ({HOURS_PER_MONTH:g} h a month)."
        )
    else:
        others = " other" if any(m.caching for m in ranked) else ""
        lines.append(f"No{others} variant met p99 <= {slo:g} ms at any rate tried.")
    scaled = scaling(measured)
    if scaled:
        lines += ["", *(f"- {s.words}" for s in scaled)]
    return lines


def closed_answer(view: RunView) -> list[str] | None:
    rows = records(view.winners)
    excluded = cache_exclusions(view.agg, view.frame)
    if not rows and not excluded:
        return None
    lines = []
    for r in rows:
        saturated = " (a floor: the load generator was saturated)" if r["loadgen_saturated"] else ""
        level = level_cell(r)
        level = f"{level} users" if level.replace(".", "").isdigit() else level
        against = f" against {r['runner_up']}" if r["runner_up"] else ""
        if r["decided"]:
            lines.append(
                f"- {level}: **{r['label']}**, {num(r['rps'], 1)} rps at p99 "
                f"{num(r['latency_p99_ms'], 0)} ms{saturated}; rps {r['verdict']}{against}."
            )
        else:
            # A tie needs an interval; with too few repeats there is none to be within.
            kind = "a tie within the noise" if str(r["verdict"]).startswith("tie") else "undecided"
            lines.append(
                f"- {level}: no winner, {kind} ({r['label']} leads "
                f"{r['runner_up']}{saturated}; {r['verdict']})."
            )
    return [
        "The label with the highest throughput at each level, named only where it beats the "
        "runner-up beyond the noise:",
        "",
        *lines,
        "",
        *((*excluded, "") if excluded else ()),
        "What this run cannot tell: it set no latency target, so it does not say which way of "
        "serving meets one, nor at what rate; `embbench capacity --slo-p99-ms MS` does, and "
        "`embbench plan` turns that into replicas and cost.",
    ]


def body(view: RunView, options: ReportOptions) -> list[str] | None:
    if view.capacity is not None:
        return capacity_answer(view, options)
    return closed_answer(view)


SECTION = Section("Answer", body)
