"""`--repeats auto`: after each round, which comparisons are still undecided, and the next
round's cells (the design and its error rate: results/sequential.py).

Pure functions of the summary rows a run has written so far; session.py plays the rounds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from embbench.config.run import EXTERNAL, RunConfig, VariantRun
from embbench.results import levels, ranking
from embbench.results.folder import OK
from embbench.results.sequential import Sequential
from embbench.results.verdicts import Comparison
from embbench.run.plan import Cell, in_run_order


@dataclass(frozen=True)
class Pending:
    """A level whose winner is undecided: its leader, the runner-up, the verdict so far."""

    level: str
    leader: str
    runner_up: str
    comparison: Comparison

    def describe(self) -> str:
        return f"{self.level}: {self.leader} vs {self.runner_up}, {self.comparison.describe()}"


@dataclass
class _Cell:
    rps: dict[int, float]
    p99: list[float]

    def ranked(self, label: str, level: str, caches: bool) -> dict[str, Any]:
        """The cell as results/ranking.py ranks it: medians over its ok repeats."""
        p99 = statistics.median(self.p99) if self.p99 else math.nan
        return {"label": label, "level": level, "rps": statistics.median(self.rps.values()),
                "latency_p99_ms": p99, "cache_flag": caches}  # fmt: skip


def pending(rows: Iterable[Mapping[str, Any]], design: Sequential) -> list[Pending]:
    """Per level (in order of first appearance), the leader and the runner-up as the report
    ranks them (results/ranking.py: median rps over their ok repeats, then p99; a label
    flagged as caching there does not rank), and their paired comparison over the repeats
    both have, at the design's level; the levels where it is not `design.decided`. A level
    with one label has nothing to decide."""
    by_level: dict[str, dict[str, _Cell]] = {}
    # The cache check follows the window, so a failed cell's verdict counts too; it is the
    # label's, over all its cells (made once per label: session.py), as the report's aggregate.
    checks: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        level, label = levels.label_of(row), str(row.get("label"))
        checks.setdefault(label, []).append(row)
        rps = _number(row.get("rps"))
        if row.get("status") != OK or not rps > 0:
            continue
        cell = by_level.setdefault(level, {}).setdefault(label, _Cell({}, []))
        cell.rps[int(row.get("repeat") or 0)] = rps
        p99 = _number(row.get("latency_p99_ms"))
        if not math.isnan(p99):
            cell.p99.append(p99)
    cells = [
        cell.ranked(label, level, ranking.caching(checks[label]).caches)
        for level, found in by_level.items()
        for label, cell in found.items()
    ]
    undecided = []
    for ranked in ranking.rank(cells):
        if len(ranked.labels) < 2:
            continue
        leader, runner_up = ranked.labels[:2]
        best, second = by_level[ranked.level][leader], by_level[ranked.level][runner_up]
        shared = sorted(set(best.rps) & set(second.rps))
        comparison = design.compare([second.rps[r] for r in shared], [best.rps[r] for r in shared])
        if not design.decided(comparison):
            undecided.append(Pending(ranked.level, leader, runner_up, comparison))
    return undecided


def next_round(
    planned: Sequence[Cell], undecided: Sequence[Pending], repeat: int, config: RunConfig,
    start: int,
) -> list[Cell]:  # fmt: skip
    """The cells of repeat `repeat` for the labels of the undecided levels, in the plan's order
    for that repeat (plan.in_run_order: counterbalanced, a variant's levels together when
    the run keeps one server across them). `start` is the index of the first new cell (cells
    are numbered in run order)."""
    wanted = {(p.level, label) for p in undecided for label in (p.leader, p.runner_up)}
    levels = list({cell.level: cell.loop for cell in planned}.values())
    runs = list(config.variants) or [VariantRun(name=EXTERNAL)]  # as plan.py lists them
    return in_run_order(
        runs, levels, [repeat], config, start, lambda level, label: (level, label) in wanted
    )


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
