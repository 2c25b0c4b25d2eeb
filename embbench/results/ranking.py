"""Which label leads at a level: the ranking rule, written once. The report's winners
(report/compare.py) and `--repeats auto`'s rounds (run/adaptive.py) both rank through it, so
the leader a run spends its repeats on is the one its report names.

The rule: per level, the labels by highest median rps, then lowest median p99 (a label with no
p99 after one with), equal keys in the order given. A failed cell (no ok repeat, no rps) does
not rank. Nor does a label flagged as caching at that level (run/cache_check.py: repeats of one
input answered more than 10 % faster than new inputs of the same length, beyond the noise):
on a payload that repeats its inputs its throughput measures its cache, so ranking it against
the others would compare unlike things. It is named in `excluded` rather than dropped silently.

A label caches at a level where more than half of its cells there that made the check are
flagged (results/columns.py aggregates `cache_flag` by MAJORITY; `Caching.caches` is the same
rule over any set of cells): a cache is flagged in every cell, an honest server in under 2.5 %
of them, so one odd cell among many does not exclude it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from embbench.results import levels


@dataclass(frozen=True)
class Ranked:
    """One level: its labels best first, and the labels left out because they cache."""

    level: str
    labels: tuple[str, ...]
    excluded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Caching:
    """The cache check over some cells of a label: how many made it, how many were flagged,
    and the median speedup of the flagged ones (distinct over repeated latency; nan: none)."""

    checked: int
    flagged: int
    speedup: float

    @property
    def caches(self) -> bool:
        return 2 * self.flagged > self.checked

    def words(self, where: str = "") -> str:
        """`flagged as caching at c=10 (repeats 240 % faster), so its throughput is not
        compared`."""
        at = f" at {where}" if where else ""
        faster = (
            f" (repeats {(self.speedup - 1) * 100:.0f} % faster)"
            if math.isfinite(self.speedup)
            else ""
        )
        return f"flagged as caching{at}{faster}, so its throughput is not compared"


def rank(cells: Iterable[Mapping[str, Any]]) -> list[Ranked]:
    """Per level, in order of first appearance, the module's rule over `cells`: one mapping per
    (label, level) with `label`, `level`, `rps` (median over its ok repeats), `latency_p99_ms`
    (median; None or nan: none), and optionally `n_ok` (0: failed) and `cache_flag`. A level
    none of whose cells could rank is left out; one whose only rankable cells cache is kept,
    with no labels, so that its exclusions are still said."""
    ranked: dict[str, list[tuple[tuple[float, float], str]]] = {}
    excluded: dict[str, list[str]] = {}
    for cell in cells:
        rps = _number(cell.get("rps"))
        if math.isnan(rps) or _number(cell.get("n_ok", 1)) <= 0:
            continue
        level, label = str(cell.get("level")), str(cell.get("label"))
        ranked.setdefault(level, [])
        if is_flagged(cell.get("cache_flag")):
            excluded.setdefault(level, []).append(label)
            continue
        p99 = _number(cell.get("latency_p99_ms"))
        ranked[level].append(((-rps, math.inf if math.isnan(p99) else p99), label))
    return [
        # sorted() is stable: equal keys keep the order they were given in.
        Ranked(level, tuple(label for _, label in sorted(found, key=lambda kv: kv[0])),
               tuple(excluded.get(level, ())))
        for level, found in ranked.items()
    ]  # fmt: skip


def caching(rows: Iterable[Mapping[str, Any]]) -> Caching:
    """The cache check over summary rows (any status: the check follows the window)."""
    flags = [(is_flagged(r.get("cache_flag")), _number(r.get("cache_speedup"))) for r in rows
             if _checked(r)]  # fmt: skip
    speedups = [s for flagged, s in flags if flagged and math.isfinite(s)]
    return Caching(
        checked=len(flags),
        flagged=sum(flagged for flagged, _ in flags),
        speedup=statistics.median(speedups) if speedups else math.nan,
    )


def exclusion_lines(ranked: Sequence[Ranked], rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per label `rank` left out somewhere, with the levels and the median speedup of
    its flagged cells there (from the summary rows `rows`), in order of first exclusion."""
    where: dict[str, list[str]] = {}
    for found in ranked:
        for label in found.excluded:
            where.setdefault(label, []).append(found.level)
    if not where:
        return []
    cells: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        label = str(row.get("label") or row.get("variant"))
        if label in where and _level(row) in where[label]:
            cells.setdefault(label, []).append(row)
    return [
        f"{label} is {caching(cells.get(label, [])).words(', '.join(found))}."
        for label, found in where.items()
    ]


def is_flagged(value: Any) -> bool:
    """A flag as summary.csv holds it: True, "True", "true" or 1; anything else is not set."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, bool):
        return value
    number = _number(value)
    return number == 1  # numpy's bool_ and 1.0 too


def _checked(row: Mapping[str, Any]) -> bool:
    """Whether the cache check was made in this cell: its flag is recorded either way."""
    value = row.get("cache_flag")
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "false", "0", "no")
    return isinstance(value, bool) or math.isfinite(_number(value))


def _level(row: Mapping[str, Any]) -> str:
    # A prepared summary's rows name their level; summary.csv's own (columns.Row) do not.
    level = row.get("level") if "level" in row else None
    return level if isinstance(level, str) and level else levels.label_of(row)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
