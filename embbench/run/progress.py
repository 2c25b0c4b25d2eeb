"""How the runner reports what it is doing (light: the CLI imports it at start-up)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from embbench.run.plan import Cell


class ProgressListener:
    """What the runner tells whoever watches; every method does nothing unless overridden.

    The CLI renders it with Rich (or plain lines off a terminal); tests override one method to
    act at a given moment.
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

    def cell_finished(self, cell: Cell, row: Mapping[str, Any]) -> None:
        pass

    def note(self, message: str) -> None:
        """Progress worth a line (a ceiling being measured), not a problem."""

    def warn(self, message: str) -> None:
        """Something that makes numbers less trustworthy (a saturated load generator)."""
