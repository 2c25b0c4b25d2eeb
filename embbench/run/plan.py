"""The plan of a run: which cells, in which order.

Cells of one repeat run close together so that repeats pair (compare.py pairs label A's
repeat r with label B's). Inside a repeat, every concurrency level runs each variant once, and
the variants' order changes from one repeat to the next, so that drift in the machine, or what
a previous server leaves behind, does not always fall on the same variant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from embbench.config.run import EXTERNAL, RunConfig, VariantRun
from embbench.results import folder as results


@dataclass(frozen=True)
class Cell:
    index: int
    run: VariantRun
    concurrency: int  # users of a closed loop; an open loop's cap on requests in flight
    repeat: int
    rate: float | None = None  # arrivals per second of an open loop (None: closed loop)

    @property
    def name(self) -> str:
        if self.rate is not None:
            return results.cell_name(self.index, self.run.display, self.rate, self.repeat, "r")
        return results.cell_name(self.index, self.run.display, self.concurrency, self.repeat)

    @property
    def level(self) -> str:
        return f"{self.rate:g} rps" if self.rate is not None else f"c={self.concurrency}"


def variant_order(count: int, repeat: int, seed: int, order: str) -> list[int]:
    """Positions of the variants in one repeat.

    "alternate": as given in even repeats, reversed in odd ones (ABBA: a linear drift falls
    on every variant alike over two repeats). "shuffle": a seeded shuffle per repeat.
    """
    positions = list(range(count))
    if order == "shuffle":
        random.Random(f"{seed}:{repeat}").shuffle(positions)
    elif order == "alternate" and repeat % 2 == 1:
        positions.reverse()
    return positions


def plan(config: RunConfig) -> list[Cell]:
    """Cells in run order: repeat by repeat, level by level, variants counterbalanced.

    The levels are the open loop's arrival rates when the run has any, else the closed loop's
    concurrency levels.
    """
    runs = list(config.variants) or [VariantRun(name=EXTERNAL)]
    levels: list[tuple[int, float | None]] = (
        [(config.max_inflight, rate) for rate in config.rates]
        if config.rates
        else [(c, None) for c in config.concurrency]
    )
    cells: list[Cell] = []
    for repeat in range(config.repeats):
        for concurrency, rate in levels:
            for position in variant_order(len(runs), repeat, config.seed, config.order):
                cells.append(Cell(len(cells), runs[position], concurrency, repeat, rate))
    return cells
