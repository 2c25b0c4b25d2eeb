"""CPU time per embedding, the one definition the capacity search and the report share.

A server's is its CPU time per answered request: its mean CPU % over the window (100 % = one
core busy) over its rate, cpu % x 10 / rps in ms. The offline ceiling's is all the cores it
had, fully busy, over its best rate: cores x 1000 / rate in ms. Both count the same thing, CPU
time per sentence embedded, so the report sets one beside the other.
"""

from __future__ import annotations

import math


def server_cpu_ms(cpu_pct: float, rps: float) -> float:
    """CPU ms per answered request: cpu % x 10 / rps (NaN where rps is not positive)."""
    return cpu_pct * 10.0 / rps if rps > 0 else math.nan


def ceiling_cpu_ms(rate: float, cores: float) -> float:
    """CPU ms per sentence at an offline ceiling: its cores, fully busy, over its rate."""
    return cores * 1000.0 / rate if rate > 0 and cores > 0 else math.nan
