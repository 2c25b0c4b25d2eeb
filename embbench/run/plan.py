"""The plan of a run: which cells, in which order.

Cells of one repeat run close together so that repeats pair (compare.py pairs label A's
repeat r with label B's). Inside a repeat, every level runs each variant once, and
the variants' order changes from one repeat to the next, so that drift in the machine, or what
a previous server leaves behind, does not always fall on the same variant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from embbench.config.run import EXTERNAL, RunConfig, VariantRun
from embbench.load import loops
from embbench.load.loops.base import Loop


@dataclass(frozen=True)
class Cell:
    index: int
    run: VariantRun
    loop: Loop  # the load offered, at this cell's level (embbench.load.loops)
    repeat: int

    @property
    def name(self) -> str:
        return self.loop.cell_name(self.index, self.run.display, self.repeat)

    @property
    def level(self) -> str:
        return self.loop.label


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

    The levels are those of the loop the run's settings ask for (loops.levels_of): the open
    loop's arrival rates when the run has any, else the closed loop's concurrency levels.
    """
    runs = list(config.variants) or [VariantRun(name=EXTERNAL)]
    levels = loops.levels_of(config)
    cells: list[Cell] = []
    for repeat in range(config.planned_repeats):
        for loop in levels:
            for position in variant_order(len(runs), repeat, config.seed, config.order):
                cells.append(Cell(len(cells), runs[position], loop, repeat))
    return cells
