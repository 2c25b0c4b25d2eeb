"""Repeats until decided (issue 30, part 5): the sequential design behind `--repeats auto`.

A fixed run gives every cell the same repeats (3 in `make bench`), though most comparisons are
settled long before and a few would need more. An auto run gives every cell AUTO_REPEATS (2,
the fewest with an interval), then adds one repeat at a time, in rounds, only to the cells of
the comparisons still undecided, up to `max_repeats`. pyperf and AIPerf are the anchors for
adaptive runs; neither keeps a verdict's error rate when it looks again, which is what this
module is for.

What is watched: per level, the leader against the runner-up in throughput, the comparison
the report's Winners section makes (run/adaptive.py picks them as the report ranks them). It
is decided when it is "significant", or a tie whose interval is narrower than ±min_effect (no
difference worth repeats is left to find). Other comparisons (against a `--baseline`) get
the repeats the winners left; their verdicts use the same level, so they stay honest.

The method: a Bonferroni split of alpha over the looks. A comparison is looked at with n =
first_look, first_look + 1, ..., max_repeats pairs (3, 4, 5 by default), each look a paired t
test (results/verdicts.py) at alpha / looks: with alpha 0.05 and three looks, 98.33 % intervals.
Whatever the looks' correlation, P(any look calls an A/A pair different) <= sum of the looks'
levels = alpha: today's 5 % of a fixed run at most, and the bound holds however the run came
to take a look (a round started by another comparison, a rank that changed), so the report may
judge at whatever n a pair ended with. Stopping for a narrow tie never rejects, so it cannot
add false verdicts either.

Why not Pocock or O'Brien-Fleming: their boundaries come from normal theory with a known
variance; with 2 to 4 degrees of freedom the t statistics of successive looks are far from
it, and calibrating them would need a simulation per design for a small gain (Pocock's
nominal level for three looks is 0.022 against Bonferroni's 0.0167). O'Brien-Fleming keeps
almost nothing for the early looks, which are the ones that save time here.
Why the first look at 3 pairs, not 2: with one degree of freedom the t quantile at 0.0125 is
51, so a look at n = 2 almost never decides, yet it would take a quarter of alpha. In a seeded
simulation with a paired log sd of 0.08, a 20 % difference was found 82 % of the time with
looks at 3, 4, 5 against 77 % with looks at 2 to 5 (55 % for a fixed run of 3 at 95 %).
tests/unit/run/test_adaptive.py plays the procedure itself: 4000 A/A pairs at 9 % noise are
called different 3.7 % of the time (a fixed 3 repeats: 5.0 %), and a 20 % difference at 5 %
noise is found 90 % of the time, 66 % before the cap (fixed 3 repeats: 64 %).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from embbench.config.run import AUTO_REPEATS
from embbench.results.verdicts import (
    CONFIDENCE,
    SIGNIFICANT,
    TIE,
    Comparison,
    compare_paired,
)

BONFERRONI = "Bonferroni split of alpha over the looks, paired t on log ratios"
WATCHED = "per level, the leader against the runner-up in rps (the report's winners)"
FIRST_LOOK = 3
# A tie narrower than this is decided: the run would spend repeats to find less than 10 %.
MIN_EFFECT = 0.10


@dataclass(frozen=True)
class Round:
    """One round an auto run added: the repeat it ran and the comparisons that asked for it."""

    repeat: int
    cells: int
    undecided: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"repeat": self.repeat, "cells": self.cells, "undecided": list(self.undecided)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Round:
        return cls(
            repeat=int(data.get("repeat") or 0),
            cells=int(data.get("cells") or 0),
            undecided=tuple(str(u) for u in data.get("undecided") or ()),
        )


@dataclass(frozen=True)
class Sequential:
    """The design of an auto run, and what it did: run.json's "sequential"."""

    max_repeats: int = 5
    min_repeats: int = AUTO_REPEATS
    first_look: int = FIRST_LOOK
    alpha: float = 1 - CONFIDENCE
    min_effect: float = MIN_EFFECT
    method: str = BONFERRONI
    watched: str = WATCHED
    rounds: tuple[Round, ...] = ()
    # The comparisons still undecided when the run stopped adding rounds (at the cap).
    undecided: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 2 <= self.min_repeats < self.first_look <= self.max_repeats:
            raise ValueError(
                f"need 2 <= min_repeats < first_look <= max_repeats, got {self.min_repeats}, "
                f"{self.first_look}, {self.max_repeats}"
            )
        if not (0 < self.alpha < 1 and self.min_effect > 0):
            raise ValueError(f"need 0 < alpha < 1 and min_effect > 0, got {self}")

    @property
    def looks(self) -> tuple[int, ...]:
        """The numbers of pairs at which a comparison may be decided."""
        return tuple(range(self.first_look, self.max_repeats + 1))

    @property
    def confidence(self) -> float:
        """The level of every verdict of the run: 1 - alpha / looks."""
        return 1 - self.alpha / len(self.looks)

    def compare(self, a: Sequence[float], b: Sequence[float]) -> Comparison:
        """b against a, paired, at the design's level."""
        return compare_paired(a, b, self.confidence)

    def decided(self, comparison: Comparison) -> bool:
        """Significant, or a tie narrower than ±min_effect, with at least first_look pairs."""
        if comparison.n < self.first_look:
            return False
        if comparison.word == SIGNIFICANT:
            return True
        return comparison.word == TIE and comparison.noise_pct <= 100 * self.min_effect

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "watched": self.watched,
            "alpha": self.alpha,
            "looks": list(self.looks),
            "confidence": self.confidence,
            "min_repeats": self.min_repeats,
            "max_repeats": self.max_repeats,
            "min_effect": self.min_effect,
            "rounds": [r.to_json() for r in self.rounds],
            "undecided": list(self.undecided),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sequential:
        """A recorded design; "confidence" is derived again, not trusted apart."""
        looks = [int(n) for n in data.get("looks") or () if isinstance(n, int | float)]
        return cls(
            max_repeats=max(looks) if looks else int(data.get("max_repeats") or 5),
            min_repeats=int(data.get("min_repeats") or AUTO_REPEATS),
            first_look=min(looks) if looks else FIRST_LOOK,
            alpha=_fraction(data.get("alpha"), 1 - CONFIDENCE),
            min_effect=_fraction(data.get("min_effect"), MIN_EFFECT),
            method=str(data.get("method") or BONFERRONI),
            watched=str(data.get("watched") or WATCHED),
            rounds=tuple(
                Round.from_json(r) for r in data.get("rounds") or () if isinstance(r, Mapping)
            ),
            undecided=tuple(str(u) for u in data.get("undecided") or ()),
        )

    def describe(self) -> str:
        """One sentence for a report: how the repeats were chosen and at which level."""
        looks = ", ".join(map(str, self.looks))
        return (
            f"Repeats were adaptive (`--repeats auto`): {self.min_repeats} of every cell, then "
            f"more only for the leader and runner-up of a level still undecided, up to "
            f"{self.max_repeats}. Each comparison may be decided after {looks} pairs, so every "
            f"verdict here uses {100 * self.confidence:.2f} % intervals (alpha "
            f"{self.alpha:g} split over {len(self.looks)} looks, Bonferroni): A/A pairs are "
            f"called different at most {100 * self.alpha:g} % of the time."
        )


def _fraction(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default
