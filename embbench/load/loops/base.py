"""What every loop answers: its level, how Locust offers it, and how a cell's numbers are read.

A `Loop` instance is one level of one loop (`ClosedLoop(10)`, `OpenLoop(40.0, 1000)`); the
class is the registry entry (embbench.load.loops.LOOPS). The runner (run/cell.py), the plan,
the capacity search and the Locust command ask the loop instead of testing which one it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from embbench.config.run import RunConfig
from embbench.load.measure import RequestRow
from embbench.results import levels

if TYPE_CHECKING:
    from embbench.load.locust import LoadSpec

Window = tuple[float, float]


class Loop(ABC):
    """One level of a load loop, frozen (a subclass is a frozen dataclass)."""

    # summary.csv's `load_model` value; also the loop's key in LOOPS.
    name: ClassVar[str]

    # -- which levels -------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def from_config(cls, config: RunConfig) -> list[Loop]:
        """The levels a run's settings ask of this loop, in order; [] when they ask another."""

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: LoadSpec) -> Loop | None:
        """The level a Locust spec describes, or None when it describes another loop."""

    # -- the level ----------------------------------------------------------------------------

    @property
    @abstractmethod
    def concurrency(self) -> int:
        """summary.csv's `concurrency`: users, or a cap on requests in flight."""

    @property
    def offered_rps(self) -> float | None:
        """summary.csv's `offered_rps`: the rate offered whatever the server does, if any."""
        return None

    @property
    def label(self) -> str:
        """`c=10` or `40 rps`: as the report labels the row (results/levels.py)."""
        return levels.label(self.concurrency, self.offered_rps)

    @abstractmethod
    def cell_name(self, index: int, label: str, repeat: int) -> str:
        """The cell's name in the run folder's file names."""

    def columns(self) -> dict[str, Any]:
        """The summary columns the level fills before the cell runs."""
        return {
            "load_model": self.name,
            "concurrency": self.concurrency,
            "offered_rps": self.offered_rps,
        }

    # -- Locust -------------------------------------------------------------------------------

    @abstractmethod
    def spec_fields(self, config: RunConfig, repeat: int) -> dict[str, Any]:
        """This level's fields of a LoadSpec (`users`, `run_time`, the loop's own)."""

    @abstractmethod
    def locust_args(self, spec: LoadSpec) -> tuple[int, list[str]]:
        """Locust's `--users`, and the user class with its options. Options rather than
        environment: Locust sends them on to workers on other machines."""

    # -- measuring ----------------------------------------------------------------------------

    @abstractmethod
    def live_window(
        self, rows: Sequence[RequestRow], warmup: float, duration: float, waited: float, now: float
    ) -> tuple[Window, bool | None] | None:
        """While Locust runs: the measured window once it can be fixed, with whether the cell
        was steady when it opened (None: the loop does not say), else None."""

    def over(self, window: Window, now: float, through_master: bool = True) -> bool:
        """Whether the runner may stop Locust now (False: Locust stops by itself).
        `through_master`: the rows reach the log through a Locust master (workers)."""
        return False

    @abstractmethod
    def window(
        self, rows: Sequence[RequestRow], live: Window | None, warmup: float, duration: float
    ) -> Window:
        """The measured window from all the cell's rows, once Locust has stopped."""

    @abstractmethod
    def summarize(
        self, rows: Sequence[RequestRow], start: float, duration: float
    ) -> dict[str, Any]:
        """The request columns of the cell, from all its rows and its window."""

    def checks(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Columns that check the measured ones against the loop's own law, if it has one."""
        return {}
