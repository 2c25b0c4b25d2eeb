"""A run as the report reads it: every number the sections and charts share, computed once.

`RunView` holds the run and, on first use, its prepared summary, its aggregate, the winners,
the failed cells, the quality rows and (for charts) the per-cell files. Every section
(sections/) and every chart (charts/) is handed the same view, so a report prepares and
aggregates its run once however many parts read it; nothing in them calls stats.prepare,
stats.aggregate or compare.winners for the run again.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from embbench.report import quality, stats
from embbench.report.compare import compare_to_baseline, winners
from embbench.results import levels
from embbench.results.folder import RunData
from embbench.results.record import RunRecord


@dataclass(frozen=True)
class RunView:
    """One run, read once. `ceiling` is an offline-ceiling table to draw instead of the
    record's (the throughput chart's); every other part comes from `run`."""

    run: RunData
    ceiling: pd.DataFrame | None = None
    _against: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(
        cls, summary: pd.DataFrame, record: RunRecord | Mapping[str, Any], path: Path = Path(".")
    ) -> RunView:
        """A view of a summary and a record that no folder holds (a test's, a made-up run)."""
        if not isinstance(record, RunRecord):
            record = RunRecord.from_json(record, run_id=path.name)
        return cls(RunData(path=path, record=record, summary=summary))

    @functools.cached_property
    def record(self) -> RunRecord:
        """The run's record, named after its folder when it names no run itself."""
        record = self.run.record
        return record if record.run_id else dataclasses.replace(record, run_id=self.run.path.name)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @functools.cached_property
    def frame(self) -> pd.DataFrame:
        """summary.csv prepared: every column present, numbers numeric, labels and levels."""
        return stats.prepare(self.run.summary)

    @functools.cached_property
    def agg(self) -> pd.DataFrame:
        """One row per (label, level): medians over the ok repeats (stats.aggregate)."""
        return stats.aggregate_prepared(self.frame)

    @functools.cached_property
    def winners(self) -> pd.DataFrame:
        """Per level, the label with the highest median rps and whether it truly won."""
        return winners(self.agg, self.record.verdict_confidence)

    @functools.cached_property
    def failed(self) -> pd.DataFrame:
        """The cells whose status is not ok, with the reason the run recorded."""
        return stats.failed_cells(self.frame)

    @functools.cached_property
    def quality(self) -> list[dict[str, Any]]:
        """Per label, the answers checked under load (quality.label_quality)."""
        return quality.label_quality(stats.records(self.run.summary))

    @functools.cached_property
    def capacity(self) -> pd.DataFrame | None:
        """capacity.csv of an `embbench capacity` run (None for other runs)."""
        return self.run.capacity()

    def against(self, baseline: str) -> pd.DataFrame:
        """Every label against `baseline` (compare.compare_to_baseline), once per baseline.
        An unknown baseline raises UsageError."""
        if baseline not in self._against:
            self._against[baseline] = compare_to_baseline(
                self.agg, baseline, self.record.verdict_confidence
            )
        return self._against[baseline]

    # -- what the charts draw from ----------------------------------------------------------

    @functools.cached_property
    def closed(self) -> pd.DataFrame:
        """Closed-loop levels: the charts whose x axis is concurrency."""
        return self.agg[self.agg["load_model"].fillna(levels.CLOSED) != levels.OPEN]

    @functools.cached_property
    def open(self) -> pd.DataFrame:
        return self.agg[self.agg["load_model"] == levels.OPEN]

    @functools.cached_property
    def cells(self) -> list[str]:
        return [str(c) for c in self.frame["cell"].dropna()]

    @functools.cached_property
    def requests(self) -> dict[str, pd.DataFrame]:
        """Per-cell request logs; a missing or unreadable file (a failed cell) is left out."""
        return self._per_cell(self.run.folder.requests)

    @functools.cached_property
    def samples(self) -> dict[str, pd.DataFrame]:
        return self._per_cell(self.run.folder.samples)

    def _per_cell(self, path: Callable[[str], Path]) -> dict[str, pd.DataFrame]:
        found = {c: _read_frame(path(c)) for c in self.cells}
        return {c: f for c, f in found.items() if f is not None}


def _read_frame(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError, pd.errors.ParserError, OSError):
        return None
