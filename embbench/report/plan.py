"""`embbench plan`: from capacity runs to a decision: per variant, how many replicas of how
many cores, how much memory, what it costs, and the cheapest variant that meets the target.

Pure and importable (the CLI only parses and renders). It reads capacity runs through
results/ only: capacity.csv for the rate each variant sustains within its p99 target, and
summary.csv for what that rate cannot say alone (the cores each probe ran on, the start-up
cost, the quality of the answers, and the lowest rate probed above the capacity, which closes
its interval).

The arithmetic, per (variant, replica size):

- a replica is loaded to `capacity * headroom` (headroom < 1 keeps it off its knee, where p99
  climbs fastest); replicas = ceil(target / (capacity * headroom));
- memory per replica is what a pod must be allowed: the larger of the PSS at the capacity point
  and the PSS peak while starting (start-up can exceed the steady state);
- USD per month = (cores * price per core-hour + GB * price per GB-hour) * 730 h; per million
  embeddings = that over the target's embeddings in a month.

Replicas are assumed to add up (independent machines or pods, a balancer in front); what a
replica size that was not measured is planned by linear scaling and said in `extrapolation`,
never assumed silently; a capacity that is only a floor (the search did not bracket it) makes
the plan conservative, and is said in `caveat`. A variant with a probe flagged as caching
(run/cache_check.py) is never chosen: its capacity measures its cache; `why_not` says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import pandas as pd

from embbench.errors import ConfigError, ResultsError
from embbench.report.prices import DEFAULT_PRICE_PER_CORE_HOUR, HOURS_PER_MONTH
from embbench.results import ranking
from embbench.results.cores import base_label
from embbench.results.folder import OK, RunData, load_run

# Rows of capacity.csv a plan can stand on: "found" (bracketed within the search's tolerance)
# and "indeterminate" with a rate that passed (a floor: the boundary was not bracketed).
USABLE = ("found", "indeterminate")


@dataclass(frozen=True)
class PlanTarget:
    target_rps: float
    slo_p99_ms: float
    # The lowest recall@10 (where the run measured retrieval agreement), else cosine, allowed.
    quality_floor: float | None = None
    price_per_core_hour: float = DEFAULT_PRICE_PER_CORE_HOUR
    price_per_gb_hour: float = 0.0
    headroom: float = 0.7
    replica_cores: int | None = None  # a replica size to plan for (None: every one measured)

    def __post_init__(self) -> None:
        checks = (
            ("--target-rps", self.target_rps, self.target_rps > 0),
            ("--slo-p99-ms", self.slo_p99_ms, self.slo_p99_ms > 0),
            ("--headroom", self.headroom, 0 < self.headroom <= 1),
            ("--price-per-core-hour", self.price_per_core_hour, self.price_per_core_hour >= 0),
            ("--price-per-gb-hour", self.price_per_gb_hour, self.price_per_gb_hour >= 0),
        )
        for flag, value, ok in checks:
            if not ok or not math.isfinite(value):
                bound = "in (0, 1]" if flag == "--headroom" else "a positive number"
                raise ConfigError(f"{flag} must be {bound}, got {value:g}")
        if self.quality_floor is not None and not 0 < self.quality_floor <= 1:
            raise ConfigError(f"--quality-floor must be in (0, 1], got {self.quality_floor:g}")
        if self.replica_cores is not None and self.replica_cores < 1:
            raise ConfigError(f"--replica-cores must be at least 1, got {self.replica_cores}")


@dataclass(frozen=True)
class Measured:
    """One variant at one core count, as its capacity run measured it."""

    run: str
    label: str
    cores: int
    status: str
    slo_p99_ms: float
    capacity_rps: float | None  # the highest rate that passed
    capacity_high_rps: float | None  # the lowest rate probed above it (None: not probed)
    pss_mb: float | None  # at the capacity point
    startup_s: float | None
    startup_pss_mb: float | None
    quality: float | None  # the lowest recall@10 (else cosine min) of its ok cells
    cores_measured: tuple[int, ...]  # every core count this variant was measured at
    reason: str = ""  # the search's own account (capacity.csv's reason)
    quality_name: str = ""  # what `quality` is: "recall@10" or "cosine min"
    base: str = ""  # the label without its core count: the variant across core counts
    # Why its capacity is not compared, when a probe was flagged as caching ("": none was).
    caching: str = ""

    @property
    def sustains(self) -> str:
        """The capacity in words for people (capacity_words)."""
        return capacity_words(self.status, self.capacity_rps, self.capacity_high_rps, self.reason)


def capacity_words(status: str, low: float | None, high: float | None, reason: str = "") -> str:
    """ "sustains 17.8 rps; 18.6 too close to call" rather than a bare status beside a number.

    `low` is the highest rate that passed, `high` the lowest rate probed above it: the one that
    failed, or (a search stopped by noise) the one whose p99 interval held the target.
    """
    if status == "below_quality_floor":  # run/capacity.py: --quality-floor not held
        return "no capacity: below the quality floor"
    if status == "none":
        return "meets the target at no rate tried"
    if low is None:  # indeterminate below the lowest rate passed: say what the search found
        return f"not decided: {reason}" if reason else "not decided"
    text = f"sustains {low:.1f} rps"
    if high is None:
        return text + " (no higher rate probed: a floor)"
    if status == "found":
        return text + f"; fails at {high:.1f}"
    if "noise" in reason:  # load/capacity.py: "p99 at R rps stayed within noise of the SLO"
        return text + f"; {high:.1f} too close to call"
    return text + f"; {high:.1f} not decided (probe budget spent): a floor"


@dataclass(frozen=True)
class Option:
    """One variant planned at one replica size."""

    label: str
    run: str
    replica_cores: int
    capacity_rps: float | None
    capacity_high_rps: float | None
    replica_rps: float | None  # capacity * headroom: what each replica is given
    replicas: int | None
    total_cores: int | None
    replica_memory_mb: float | None
    total_memory_gb: float | None
    usd_per_month: float | None
    usd_per_million: float | None
    startup_s: float | None  # time to add a replica
    cores_measured: tuple[int, ...]
    meets: bool
    why_not: str  # why it does not meet the target ("" when it does)
    extrapolation: str  # what the figures rest on beyond the measurements ("" when nothing)
    caveat: str = ""  # what makes them conservative (a capacity that is only a floor)
    caches: bool = False  # left out because it caches (why_not says so)

    @property
    def holds_in(self) -> str:
        """The range the figures hold in: the capacity interval and the measured core counts."""
        if self.capacity_rps is None:
            rate = "no rate shown to pass"
        elif self.capacity_high_rps is None:
            rate = f">= {self.capacity_rps:.1f} rps (no higher rate probed)"
        else:
            rate = f"{self.capacity_rps:.1f}-{self.capacity_high_rps:.1f} rps"
        cores = ", ".join(str(c) for c in self.cores_measured)
        return f"{rate}; measured at {cores} core{'s' if cores != '1' else ''}"


@dataclass(frozen=True)
class Plan:
    target: PlanTarget
    options: tuple[Option, ...]  # cheapest first among those that meet it, then the rest
    choice: Option | None

    @property
    def answer(self) -> str:
        """The decision in one or two sentences, for people."""
        t = self.target
        goal = f"{t.target_rps:g} rps at p99 <= {t.slo_p99_ms:g} ms"
        if self.choice is None:
            reasons = "; ".join(f"{o.label}: {o.why_not}" for o in self.options)
            return f"No variant meets {goal} ({reasons})."
        c = self.choice
        text = (
            f"{c.label}: {c.replicas} replica{'s' if c.replicas != 1 else ''} of "
            f"{c.replica_cores} core{'s' if c.replica_cores != 1 else ''} "
            f"({c.total_cores} cores, {c.total_memory_gb:.1f} GB) for {goal}, "
            f"USD {c.usd_per_month:,.0f}/month, {c.usd_per_million:.3f} per million embeddings"
        )
        if c.extrapolation:
            text += f". Rests on an extrapolation: {c.extrapolation}"
        if c.caveat:
            text += f". Conservative: {c.caveat}"
        left_out = [f"{o.label} is {o.why_not}" for o in self.options if o.caches]
        if left_out:
            text += ". Left out: " + "; ".join(left_out)
        return text + "."

    def to_json(self) -> dict[str, Any]:
        return {
            "target": asdict(self.target),
            "choice": self.choice.label if self.choice else None,
            "choice_replica_cores": self.choice.replica_cores if self.choice else None,
            "answer": self.answer,
            "options": [{**asdict(o), "holds_in": o.holds_in} for o in self.options],
        }


# -- reading -------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _median(rows: pd.DataFrame, column: str) -> float | None:
    if column not in rows.columns:
        return None
    values = pd.to_numeric(rows[column], errors="coerce").dropna()
    return float(values.median()) if len(values) else None


def measured_from(data: RunData) -> list[Measured]:
    """The capacity rows of one run, with what summary.csv adds to each."""
    capacity = data.capacity()
    if capacity is None:
        raise ResultsError(f"{data.path} is not a capacity run (no capacity.csv)")
    summary = data.summary
    host_cores = data.record.host.cores
    found: list[Measured] = []
    for row in capacity.to_dict("records"):
        label = str(row.get("label") or row.get("variant"))
        probes = summary[summary["label"].astype(str) == label] if "label" in summary else summary
        cores = _number(row.get("cores"))
        if cores is not None and "cores" in probes.columns:  # --cores: that count's probes only
            probes = probes[pd.to_numeric(probes["cores"], errors="coerce") == cores]
        cores = cores or _median(probes, "cores") or host_cores
        if not cores:
            raise ResultsError(f"{data.path}: no core count recorded for {label}")
        rate = _number(row.get("qps_at_slo"))
        offered = pd.to_numeric(probes.get("offered_rps", pd.Series(dtype=float)), "coerce")
        # summary.csv's offered_rps is rounded to 0.01 and capacity.csv's rate is not: the
        # passing probe itself (427.04 against 427.035) must not read as the rate above it.
        above = offered[offered > rate + 0.01] if rate is not None else offered.iloc[0:0]
        ok = probes[probes["status"] == OK] if "status" in probes.columns else probes
        # Quality as the run measured it: retrieval agreement (recall@10 of the fp32
        # neighbours, run/agreement) where it did, else the lowest cosine to the reference.
        quality, quality_name = None, ""
        for column, name in (("recall_at_10", "recall@10"), ("cosine_min", "cosine min")):
            values = pd.to_numeric(ok.get(column, pd.Series(dtype=float)), "coerce").dropna()
            if len(values):
                quality, quality_name = float(values.min()), name
                break
        found.append(
            Measured(
                run=data.path.name,
                label=label,
                cores=int(cores),
                status=str(row.get("status")),
                slo_p99_ms=float(row["slo_p99_ms"]),
                capacity_rps=rate,
                capacity_high_rps=float(above.min()) if len(above) else None,
                pss_mb=_number(row.get("pss_mb_at_slo")),
                startup_s=_median(probes, "startup_s"),
                startup_pss_mb=_median(probes, "startup_pss_mb_peak"),
                quality=quality,
                quality_name=quality_name,
                cores_measured=(),
                reason=row["reason"] if isinstance(row.get("reason"), str) else "",
                caching=_caching(probes),
            )
        )
    counts: dict[str, set[int]] = {}
    for m in found:
        counts.setdefault(base_label(m.label), set()).add(m.cores)
    return [replace(m, base=base_label(m.label),
                    cores_measured=tuple(sorted(counts[base_label(m.label)])))
            for m in found]  # fmt: skip


def read_runs(paths: Sequence[Path]) -> list[Measured]:
    """Every capacity row of the runs; a label measured in two runs is named by its run."""
    if not paths:
        raise ConfigError("name at least one capacity run")
    rows = [m for path in paths for m in measured_from(load_run(path))]
    runs_of: dict[str, set[str]] = {}
    for m in rows:
        runs_of.setdefault(m.base, set()).add(m.run)
    return [replace(m, label=f"{m.label} ({m.run})", base=f"{m.base} ({m.run})")
            if len(runs_of[m.base]) > 1 else m for m in rows]  # fmt: skip


# -- planning ------------------------------------------------------------------------------


def _caching(probes: pd.DataFrame) -> str:
    """Why a capacity cannot be compared: more than half of its probes flagged as caching
    (results/ranking.py)."""
    found = ranking.caching(cast(list[dict[str, Any]], probes.to_dict("records")))
    return found.words() if found.caches else ""


def _why_not(m: Measured, target: PlanTarget) -> str:
    if m.caching:  # its capacity measures its cache: first, whatever else holds
        return m.caching
    if m.slo_p99_ms > target.slo_p99_ms:
        return (f"measured at p99 <= {m.slo_p99_ms:g} ms, looser than the target's "
                f"{target.slo_p99_ms:g} ms")  # fmt: skip
    if m.status not in USABLE or not m.capacity_rps:
        return f"no rate met p99 <= {m.slo_p99_ms:g} ms (capacity {m.status})"
    if target.quality_floor is not None:
        if m.quality is None:
            return "no answer was checked against the quality floor"
        if m.quality < target.quality_floor:
            return f"{m.quality_name} {m.quality:.4f} below the floor {target.quality_floor:g}"
    return ""


def plan_one(m: Measured, target: PlanTarget, cores: int | None = None) -> Option:
    """`m` planned at `cores` per replica (default: the count it was measured at)."""
    cores = cores or m.cores
    notes = []
    caveat = ""
    if m.status != "found" and m.capacity_rps:
        caveat = f"the capacity {m.capacity_rps:.1f} rps is a floor (search {m.status})"
    capacity = m.capacity_rps
    if capacity and cores != m.cores:
        capacity = capacity * cores / m.cores
        notes.append(
            f"{cores} cores per replica were not measured: {m.cores} cores' capacity "
            f"scaled linearly (measured: {', '.join(map(str, m.cores_measured))})"
        )
    why_not = _why_not(m, target)
    if why_not or not capacity:
        return Option(m.label, m.run, cores, m.capacity_rps, m.capacity_high_rps, None, None,
                      None, None, None, None, None, m.startup_s, m.cores_measured, False,
                      why_not or "no capacity", "; ".join(notes), caveat,
                      caches=bool(m.caching))  # fmt: skip
    replica_rps = capacity * target.headroom
    replicas = math.ceil(target.target_rps / replica_rps - 1e-9)
    memory_mb = max(m.pss_mb or 0.0, m.startup_pss_mb or 0.0) or None
    total_gb = replicas * memory_mb / 1024 if memory_mb else None
    hourly = replicas * cores * target.price_per_core_hour
    hourly += (total_gb or 0.0) * target.price_per_gb_hour
    monthly = hourly * HOURS_PER_MONTH
    millions = target.target_rps * 3600 * HOURS_PER_MONTH / 1e6
    return Option(
        label=m.label,
        run=m.run,
        replica_cores=cores,
        capacity_rps=m.capacity_rps,
        capacity_high_rps=m.capacity_high_rps,
        replica_rps=replica_rps,
        replicas=replicas,
        total_cores=replicas * cores,
        replica_memory_mb=memory_mb,
        total_memory_gb=total_gb,
        usd_per_month=monthly,
        usd_per_million=monthly / millions,
        startup_s=m.startup_s,
        cores_measured=m.cores_measured,
        meets=True,
        why_not="",
        extrapolation="; ".join(notes),
        caveat=caveat,
    )


def _nearest(rows: Sequence[Measured], cores: int) -> Measured:
    """The measured row to plan `cores` from: that count, else the largest below, else the
    smallest above (scaling down from more cores is the riskier guess, so last)."""
    below = [m for m in rows if m.cores <= cores]
    return max(below, key=lambda m: m.cores) if below else min(rows, key=lambda m: m.cores)


def make_plan(measured: Sequence[Measured], target: PlanTarget) -> Plan:
    """Every variant planned (at each measured size, or at --replica-cores), cheapest first."""
    if target.replica_cores is None:
        options = [plan_one(m, target) for m in measured]
    else:
        by_label: dict[str, list[Measured]] = {}
        for m in measured:
            by_label.setdefault(m.base or m.label, []).append(m)
        options = [plan_one(_nearest(rows, target.replica_cores), target, target.replica_cores)
                   for rows in by_label.values()]  # fmt: skip

    def order(o: Option) -> tuple[Any, ...]:
        # Among those that meet it: the cheapest, then the fewest cores, then the one that rests
        # on no extrapolation.
        return (not o.meets, o.usd_per_month or math.inf, o.total_cores or math.inf,
                bool(o.extrapolation), o.label)  # fmt: skip

    ranked = tuple(sorted(options, key=order))
    choice = ranked[0] if ranked and ranked[0].meets else None
    return Plan(target, ranked, choice)


def plan_runs(paths: Sequence[Path], target: PlanTarget) -> Plan:
    return make_plan(read_runs(paths), target)


def option_fields(o: Option) -> Mapping[str, Any]:
    """An option's figures by name, for tables (the CLI's, the report's answer)."""
    return {**asdict(o), "holds_in": o.holds_in}
