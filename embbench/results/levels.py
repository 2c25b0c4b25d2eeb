"""A cell's level, the load it was offered, as a label: `c=10` (a closed loop of 10 users) or
`40 rps` (an open loop offered 40 requests/s).

Built and read here only. The loops (embbench.load.loops) label their cells through this module,
and the report labels a summary row from its columns (`concurrency`, `offered_rps`) through it
too, so report/ names a level without importing load/. A loop whose level is a number of users
or a rate reuses these labels; one with another kind of level adds its label here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# summary.csv's `load_model` values. The column keeps its name (the columns are a contract);
# in code the concept is a "loop", not to be confused with the embedding model.
CLOSED, OPEN = "closed", "open"

_CLOSED_PREFIX, _OPEN_SUFFIX = "c=", " rps"


def closed_label(users: float) -> str:
    return f"{_CLOSED_PREFIX}{users:g}"


def open_label(rate: float) -> str:
    return f"{rate:g}{_OPEN_SUFFIX}"


def label(concurrency: Any, offered_rps: Any) -> str:
    """The label of a summary row's level: an offered rate makes it an open loop's (rows
    written before the open loop existed have none, and were all closed loops)."""
    rate = _number(offered_rps)
    return open_label(rate) if rate > 0 else closed_label(_number(concurrency))


def label_of(row: Mapping[str, Any]) -> str:
    return label(row.get("concurrency"), row.get("offered_rps"))


def parse(level: str) -> tuple[str, float]:
    """`c=10` -> ("closed", 10.0); `40 rps` -> ("open", 40.0)."""
    if level.startswith(_CLOSED_PREFIX):
        return CLOSED, float(level[len(_CLOSED_PREFIX) :])
    return OPEN, float(level.split()[0])


def order(level: str) -> tuple[int, float]:
    """Sort key: closed-loop levels first, by users, then open-loop levels, by rate."""
    loop, value = parse(level)
    return (0 if loop == CLOSED else 1), value


def short(level: str) -> str:
    """A table's level column: users alone for a closed loop (`10`), the label for an open one."""
    loop, value = parse(level)
    return f"{value:g}" if loop == CLOSED else level


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(number) else number
