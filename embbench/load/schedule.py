"""Arrival schedules of an open loop: when each request is due, fixed before the cell starts.

A schedule is a pure function of (rate, duration, arrival, seed), so every Locust process (a
`--processes` child, or a worker on another machine that has none of the orchestrator's files)
rebuilds the same one from those four values and takes its own slice of it. The same seed gives
every variant the same arrivals (common random numbers: the variants are compared on equal
traffic, not on two draws of it).

Pure and light (stdlib only): imported by the locustfile inside Locust and by the orchestrator.
"""

from __future__ import annotations

import math
import random
from typing import Literal

Arrival = Literal["poisson", "constant"]
ARRIVALS: tuple[Arrival, ...] = ("poisson", "constant")

# The master fixes the schedule's time zero this long after the test starts, so that every
# process has its user spawned (one spawn message each) before the first arrival is due.
START_LEAD_S = 1.0
# The schedule runs on this long after the measured window: the window's last requests are
# answered under the same offered load as the rest, and have this long to come back before
# Locust stops (what is still outstanding then is logged as a timeout).
TAIL_S = 5.0
# Locust's run-time beyond lead + schedule: its own stop and the last flush of the log.
STOP_MARGIN_S = 1.0


def build_schedule(
    rate: float, duration: float, arrival: str = "poisson", seed: int = 0
) -> list[float]:
    """Due times in seconds from the schedule's zero, increasing, all in [0, duration).

    `poisson`: exponential gaps of mean 1/rate (independent arrivals, as from many clients);
    `constant`: even gaps of 1/rate. The first arrival is due at 0 in both, so the log's first
    scheduled time is the schedule's zero (the Poisson process seen from an arrival is the same
    process: memoryless).
    """
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"arrival rate must be a positive number, not {rate!r}")
    if duration < 0:
        raise ValueError(f"schedule duration must be >= 0, not {duration!r}")
    if arrival == "constant":
        # From the index, not by adding gaps: no drift from summing rounding errors.
        return [i / rate for i in range(math.ceil(duration * rate))]
    if arrival != "poisson":
        choices = ", ".join(ARRIVALS)
        raise ValueError(f"unknown arrival process {arrival!r}; choose one of {choices}")
    rng = random.Random(seed)
    due: list[float] = []
    t = 0.0
    while t < duration:
        due.append(t)
        t += rng.expovariate(rate)
    return due


def slice_for(schedule: list[float], index: int, count: int) -> list[float]:
    """Process `index` of `count`: every count-th arrival from the index-th.

    Slices are disjoint and together hold the whole schedule. Interleaving (not cutting the
    schedule in time blocks) gives each process the same share of every second, so a process
    that falls behind delays a 1/count share of the arrivals instead of a whole stretch of time.
    Arrival k of the slice is arrival `index + k * count` of the schedule.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"slice {index} of {count} does not exist")
    return schedule[index::count]


def schedule_seconds(warmup: float, duration: float) -> float:
    """Length of an open cell's schedule: warmup, the measured window, then the tail."""
    return warmup + duration + TAIL_S


def run_seconds(schedule_s: float) -> float:
    """Locust's --run-time for a schedule this long (Locust counts from its test start)."""
    return START_LEAD_S + schedule_s + STOP_MARGIN_S


def per_process(total: int, count: int) -> int:
    """One process's share of a cap on the whole load generator (at least 1 each)."""
    return max(1, math.ceil(total / max(1, count)))
