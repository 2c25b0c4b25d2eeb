"""How the runner reports what it is doing (light: the CLI imports it at start-up)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embbench.runner import Cell


class Progress:
    """What the runner tells whoever watches; every method does nothing unless overridden.

    The CLI renders it with Rich; tests override one method to act at a given moment.
    """

    def run_started(self, run_dir: Path, cells: Sequence[Cell]) -> None:
        pass

    def cell_started(self, cell: Cell) -> None:
        pass

    def cell_live(
        self,
        cell: Cell,
        phase: str,
        elapsed: float,
        total: float,
        rps: float | None,
        p50_ms: float | None,
    ) -> None:
        pass

    def cell_finished(self, cell: Cell, row: dict[str, Any]) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


QuietProgress = Progress
