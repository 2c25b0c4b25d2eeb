"""The open loop: requests sent at the times of a seeded schedule, whatever the server does.

`rate` arrivals per second (all Locust processes together), Poisson or evenly spaced; beyond
`max_inflight` outstanding requests an arrival is dropped, and counted. Latency counts from the
scheduled send (lateness plus service time), so a server that falls behind is charged for the
queue it makes instead of slowing its clients down (no coordinated omission). The window is
fixed by the schedule, and Locust stops by itself once the schedule has played out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from embbench.config.run import RunConfig
from embbench.load import measure
from embbench.load.loops.base import Loop, Window
from embbench.load.measure import RequestRow
from embbench.load.schedule import ARRIVALS, run_seconds, schedule_seconds
from embbench.results import folder as results
from embbench.results import levels

if TYPE_CHECKING:
    from embbench.load.locust import LoadSpec


def open_timing(warmup: float, duration: float) -> tuple[float, float]:
    """(schedule_s, run_time) of an open cell: the schedule covers warmup, window and a tail;
    Locust runs as long as the schedule plus its start lead and a margin to stop, and stops by
    itself (the orchestrator waits for it instead of stopping it once the window is over)."""
    schedule_s = schedule_seconds(warmup, duration)
    return schedule_s, run_seconds(schedule_s)


@dataclass(frozen=True)
class OpenLoop(Loop):
    name: ClassVar[str] = levels.OPEN
    rate: float  # arrivals per second
    max_inflight: int = 1000  # summary.csv's `concurrency` of an open cell

    @classmethod
    def from_config(cls, config: RunConfig) -> list[Loop]:
        return [cls(rate, config.max_inflight) for rate in config.rates]

    @classmethod
    def from_spec(cls, spec: LoadSpec) -> Loop | None:
        return cls(spec.rate, spec.max_inflight) if spec.rate > 0 else None

    @property
    def concurrency(self) -> int:
        return self.max_inflight

    @property
    def offered_rps(self) -> float | None:
        return self.rate

    def cell_name(self, index: int, label: str, repeat: int) -> str:
        return results.cell_name(index, label, self.rate, repeat, "r")

    def spec_fields(self, config: RunConfig, repeat: int) -> dict[str, Any]:
        schedule_s, run_time = open_timing(config.warmup, config.duration)
        return {
            "users": self.max_inflight,
            "run_time": run_time,
            "rate": self.rate,
            "arrival": config.arrival,
            "max_inflight": self.max_inflight,
            # Every variant of a repeat gets the same arrivals: a paired comparison.
            "seed": config.seed + repeat,
            "schedule_s": schedule_s,
        }

    def locust_args(self, spec: LoadSpec) -> tuple[int, list[str]]:
        """One user per Locust process, each playing its slice of the schedule."""
        if spec.arrival not in ARRIVALS:
            raise ValueError(f"unknown arrival process {spec.arrival!r}")
        if spec.schedule_s <= 0 or spec.run_time < run_seconds(spec.schedule_s):
            raise ValueError(
                f"an open loop needs schedule_s > 0 and run_time >= "
                f"{run_seconds(spec.schedule_s):.1f} s (open_timing); "
                f"got {spec.schedule_s} and {spec.run_time}"
            )
        if spec.max_inflight < 1 or spec.connections < 0:
            raise ValueError("max_inflight must be >= 1 and connections >= 0")
        return spec.load_processes, [
            "OpenLoopUser",
            "--embbench-rate", repr(spec.rate),
            "--embbench-arrival", spec.arrival,
            "--embbench-seed", str(spec.seed),
            "--embbench-schedule-s", repr(spec.schedule_s),
            "--embbench-max-inflight", str(spec.max_inflight),
            "--embbench-connections", str(spec.connections),
        ]  # fmt: skip

    def live_window(
        self, rows: Sequence[RequestRow], warmup: float, duration: float, waited: float, now: float
    ) -> tuple[Window, bool | None] | None:
        # Fixed by the schedule (measure.open_window): known from the first row.
        return (measure.open_window(rows, warmup, duration), None) if rows else None

    def window(
        self, rows: Sequence[RequestRow], live: Window | None, warmup: float, duration: float
    ) -> Window:
        # From every row: the schedule's zero is the earliest due time of all processes.
        if rows:
            return measure.open_window(rows, warmup, duration)
        return live if live is not None else measure.measurement_window(rows, warmup, duration)

    def summarize(
        self, rows: Sequence[RequestRow], start: float, duration: float
    ) -> dict[str, Any]:
        """Arrivals due in the window, however late answered; latency from the scheduled send."""
        return measure.summarize_open(rows, start, start + duration, self.rate)
