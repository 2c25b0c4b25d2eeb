"""The plan of a run: which cells, in which order.

Cells of one repeat run close together so that repeats pair (compare.py pairs label A's
repeat r with label B's). Inside a repeat, every level runs each variant once, and
the variants' order changes from one repeat to the next, so that drift in the machine, or what
a previous server leaves behind, does not always fall on the same variant.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
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
    """Cells in run order: repeat by repeat, variants counterbalanced.

    The levels are those of the loop the run's settings ask for (loops.levels_of): the open
    loop's arrival rates when the run has any, else the closed loop's concurrency levels.
    With `reuse_server` a variant's levels follow each other, in the same order for every
    variant, against one server (run/served.py); without it, level by level, the variants
    counterbalanced inside each.
    """
    runs = list(config.variants) or [VariantRun(name=EXTERNAL)]
    return in_run_order(runs, loops.levels_of(config), range(config.planned_repeats), config)


def in_run_order(
    runs: Sequence[VariantRun], levels: Sequence[Loop], repeats: Iterable[int],
    config: RunConfig, start: int = 0, wanted: Callable[[str, str], bool] | None = None,
) -> list[Cell]:  # fmt: skip
    """The cells of `repeats` in run order (plan's docstring), numbered from `start`;
    `wanted(level, label)`, when given, keeps only some (an auto run's next round)."""
    cells: list[Cell] = []

    def add(run: VariantRun, loop: Loop, repeat: int) -> None:
        if wanted is None or wanted(loop.label, run.display):
            cells.append(Cell(start + len(cells), run, loop, repeat))

    for repeat in repeats:
        positions = variant_order(len(runs), repeat, config.seed, config.order)
        if config.reuse_server:
            for position in positions:
                for loop in levels:
                    add(runs[position], loop, repeat)
        else:
            for loop in levels:
                for position in positions:
                    add(runs[position], loop, repeat)
    return cells
