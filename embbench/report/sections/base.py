"""What a section of report.md is: a heading and a body drawn from the run's view.

A section is one module of this folder with one job; `SECTIONS` (sections/__init__.py) lists
them in the order report.md shows them, and document.py only loops over that list, as asv's
publishers are a list. Adding a section means one module and one line there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from embbench.report.prices import DEFAULT_PRICE_PER_CORE_HOUR
from embbench.report.view import RunView

__all__ = ["DEFAULT_PRICE_PER_CORE_HOUR", "ReportOptions", "Section"]


@dataclass(frozen=True)
class ReportOptions:
    """What the reader asked of the report besides the run.

    `charts` are the chart paths to link, relative to the run folder (None: every chart of
    charts.CHARTS that applies to the run)."""

    baseline: str | None = None
    charts: Sequence[str] | None = None
    price_per_core_hour: float = DEFAULT_PRICE_PER_CORE_HOUR


@dataclass(frozen=True)
class Section:
    """`## heading`, then `body`'s lines; a body of None leaves the section out (the run has
    nothing for it), an empty one keeps the heading alone."""

    heading: str | Callable[[ReportOptions], str]
    body: Callable[[RunView, ReportOptions], list[str] | None]

    def title(self, options: ReportOptions) -> str:
        return self.heading if isinstance(self.heading, str) else self.heading(options)
