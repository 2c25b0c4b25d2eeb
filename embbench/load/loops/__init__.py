"""The load loops: how load is offered to a cell, one module per loop behind `LOOPS`.

- `closed` (closed.py): N users, each sending again once answered; the server sets the rate.
- `open` (open.py): arrivals at a seeded schedule's times, whatever the server does.

A loop instance is one level (`ClosedLoop(10)`, `OpenLoop(40.0, 1000)`); base.py says what a
loop answers. Adding a loop is a new module here with a `Loop` subclass and one line in `LOOPS`:
the plan, the runner (run/cell.py), the capacity search and the Locust command ask the loop and
do not change. (Its settings are flags in config/run.py; a level that is neither users nor a
rate also needs its label in results/levels.py.) In summary.csv a cell's loop is the
`load_model` column, a name kept for old results: in code it is a "loop", never a "model".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from embbench.config.run import RunConfig
from embbench.load.loops.base import Loop
from embbench.load.loops.closed import ClosedLoop
from embbench.load.loops.open import OpenLoop

if TYPE_CHECKING:
    from embbench.load.locust import LoadSpec

__all__ = ["LOOPS", "levels_of", "loop_of"]

# Name -> loop, in the order a run's settings (or a Locust spec) are offered to them: the first
# that takes them is the cell's loop. The closed loop takes any settings, so it comes last.
LOOPS: dict[str, type[Loop]] = {
    "open": OpenLoop,
    "closed": ClosedLoop,
}


def levels_of(config: RunConfig) -> list[Loop]:
    """A run's levels, in order: those of the first loop its settings ask for."""
    for loop in LOOPS.values():
        found = loop.from_config(config)
        if found:
            return found
    return []


def loop_of(spec: LoadSpec) -> Loop:
    """The level a Locust spec describes."""
    for loop in LOOPS.values():
        found = loop.from_spec(spec)
        if found is not None:
            return found
    raise ValueError("no loop takes this load spec")
