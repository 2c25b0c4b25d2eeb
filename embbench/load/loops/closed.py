"""The closed loop: `users` users, each sending its next request when the last is answered.

The server's speed sets the rate. The window opens once the system is steady (each user has
come back once, measure.steady_start), and the runner stops Locust once it has closed; Little's
law (rate x mean latency = users) checks the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from embbench.config.run import RunConfig
from embbench.load import measure
from embbench.load.loops.base import Loop, Window
from embbench.load.measure import RequestRow
from embbench.results import folder as results
from embbench.results import levels

if TYPE_CHECKING:
    from embbench.load.locust import LoadSpec

# The locustfile flushes its log every second (workers: to the master, which then flushes):
# the runner waits this long after the window for its last lines before stopping Locust.
FLUSH_S = 2.5
# One Locust process writes its own rows and flushes all it holds when stopped (locustfile's
# `quitting`): a moment for the window's last answers to be logged is enough.
LOCAL_FLUSH_S = 0.5
# Locust's run time beyond warmup, window and the longest fill: a cap only, since the runner
# stops it once the window has closed.
RUN_TIME_MARGIN_S = 10.0


@dataclass(frozen=True)
class ClosedLoop(Loop):
    name: ClassVar[str] = levels.CLOSED
    users: int

    @classmethod
    def from_config(cls, config: RunConfig) -> list[Loop]:
        return [cls(users) for users in config.concurrency]

    @classmethod
    def from_spec(cls, spec: LoadSpec) -> Loop | None:
        return cls(spec.users)

    @property
    def concurrency(self) -> int:
        return self.users

    def cell_name(self, index: int, label: str, repeat: int) -> str:
        return results.cell_name(index, label, self.users, repeat)

    def spec_fields(self, config: RunConfig, repeat: int) -> dict[str, Any]:
        run_time = config.warmup + config.duration + measure.MAX_FILL_S + RUN_TIME_MARGIN_S
        return {"users": self.users, "run_time": run_time}

    def locust_args(self, spec: LoadSpec) -> tuple[int, list[str]]:
        return spec.users, ["EmbeddingUser"]

    def live_window(
        self, rows: Sequence[RequestRow], warmup: float, duration: float, waited: float, now: float
    ) -> tuple[Window, bool | None] | None:
        start = measure.steady_start(rows, warmup, self.users)
        steady = True
        if start is None and rows and waited > warmup + measure.MAX_FILL_S:
            start, steady = now, False  # never steady: measure what there is, and say so
        return None if start is None else ((start, start + duration), steady)

    def over(self, window: Window, now: float, through_master: bool = True) -> bool:
        return now > window[1] + (FLUSH_S if through_master else LOCAL_FLUSH_S)

    def window(
        self, rows: Sequence[RequestRow], live: Window | None, warmup: float, duration: float
    ) -> Window:
        return live if live is not None else measure.measurement_window(rows, warmup, duration)

    def summarize(
        self, rows: Sequence[RequestRow], start: float, duration: float
    ) -> dict[str, Any]:
        """Requests that completed in the window; latency from the actual send."""
        return measure.summarize_requests(
            measure.in_window(rows, start, start + duration), duration
        )

    def checks(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Little's law with users = concurrency (it holds in a closed loop only)."""
        ratio = measure.little_ratio(row.get("rps") or 0.0, row.get("latency_mean_ms"), self.users)
        return {"little_ratio": ratio, "little_law_ok": measure.little_ok(ratio)}
