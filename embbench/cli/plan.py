"""`embbench plan RUN...`: parse the target, call report/plan.py, print its table and choice
(or its JSON, for scripts)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer

from embbench.cli.render import console, fmt, friendly, print_table
from embbench.report.plan import Option
from embbench.report.prices import DEFAULT_PRICE_PER_CORE_HOUR

HEADERS = ["variant", "cores/replica", "capacity rps", "per replica rps", "replicas",
           "total cores", "GB", "USD/month", "USD/million", "add a replica s", "holds in",
           "meets"]  # fmt: skip


@friendly
def plan_cmd(
    runs: list[Path] = typer.Argument(..., help="Capacity run folder(s) (embbench capacity)."),
    target_rps: float = typer.Option(..., "--target-rps", help="Traffic to serve (requests/s)."),
    slo_p99_ms: float = typer.Option(..., "--slo-p99-ms", help="The p99 latency target (ms)."),
    quality_floor: float | None = typer.Option(
        None, "--quality-floor", help="Lowest recall@10 allowed (cosine min in runs without it)."
    ),
    price_per_core_hour: float = typer.Option(
        DEFAULT_PRICE_PER_CORE_HOUR, "--price-per-core-hour", help="USD per core-hour."
    ),
    price_per_gb_hour: float = typer.Option(
        0.0, "--price-per-gb-hour", help="USD per GB-hour of memory (0: in the core price)."
    ),
    headroom: float = typer.Option(
        0.7, "--headroom", help="Share of its capacity each replica is given (0-1]."
    ),
    replica_cores: int | None = typer.Option(
        None, "--replica-cores", help="Plan replicas of this size (default: each size measured)."
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON on stdout, for scripts."),
) -> None:
    """Replicas, cores, memory and cost per variant for a target rate at a p99 target, and
    the cheapest variant that meets it. Exit 2: not a capacity run, or a bad number."""
    from embbench.report.plan import PlanTarget, make_plan, read_runs
    from embbench.report.scaling import scaling

    target = PlanTarget(
        target_rps=target_rps,
        slo_p99_ms=slo_p99_ms,
        quality_floor=quality_floor,
        price_per_core_hour=price_per_core_hour,
        price_per_gb_hour=price_per_gb_hour,
        headroom=headroom,
        replica_cores=replica_cores,
    )
    measured = read_runs(runs)
    plan = make_plan(measured, target)
    scaled = scaling(measured)
    if as_json:
        data = {**plan.to_json(), "scaling": [{**asdict(s), "words": s.words} for s in scaled]}
        typer.echo(json.dumps(data, indent=2))  # no Rich: no wrapping, no colour
        return
    rows = [
        [o.label, str(o.replica_cores), fmt(o.capacity_rps), fmt(o.replica_rps),
         fmt(o.replicas), fmt(o.total_cores), fmt(o.total_memory_gb), fmt(o.usd_per_month, 0),
         fmt(o.usd_per_million, 3), fmt(o.startup_s), o.holds_in,
         _meets(o)]
        for o in plan.options
    ]  # fmt: skip
    print_table(
        f"plan for {target_rps:g} rps at p99 <= {slo_p99_ms:g} ms (headroom {headroom:g}, "
        f"USD {price_per_core_hour:g}/core-hour, {price_per_gb_hour:g}/GB-hour)",
        HEADERS,
        rows,
    )
    for s in scaled:
        console.print(s.words, markup=False, highlight=False, soft_wrap=True)
    for o in plan.options:
        for note in (o.extrapolation, o.caveat):
            if note:
                console.print(f"{o.label}: {note}", markup=False, highlight=False)
    console.print(plan.answer, markup=False, highlight=False, soft_wrap=True)


def capacity_words_of(run_dir: Path) -> dict[str, str]:
    """Per label, a capacity run's result in words ("sustains 17.8 rps; 18.6 too close to
    call"), for `embbench capacity`'s table; {} where the run cannot be read back."""
    from embbench.errors import EmbbenchError
    from embbench.report.plan import measured_from
    from embbench.results.folder import load_run

    try:
        return {m.label: m.sustains for m in measured_from(load_run(run_dir))}
    except EmbbenchError:
        return {}


def parse_cores(text: str) -> tuple[int, ...]:
    """`capacity --cores 1,2` -> (1, 2); "" -> () (no pinning)."""
    from embbench.errors import ConfigError

    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--cores takes core counts such as 1,2, got {text!r}") from None
    if len(set(counts)) != len(counts):
        raise ConfigError(f"--cores lists a count twice: {text!r}")
    return tuple(sorted(counts))


def _meets(option: Option) -> str:
    if not option.meets:
        return "no"
    return (
        "yes (extrapolated)" if option.extrapolation else "yes (floor)" if option.caveat else "yes"
    )
