"""The results format: one folder per run, never overwritten, every path in it named here.

Format history of the folder (run.json's own is in record.py, with its SCHEMA_VERSION):
  1 (2026-11): run.json, summary.csv, requests/<cell>.csv, samples/<cell>.csv, logs/; then
    checks/<cell>.csv (answers checked under load), capacity.csv (`embbench capacity`), and
    report.md with charts/ (`embbench report`).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from embbench.errors import ResultsError
from embbench.machine.children import pid_alive
from embbench.machine.files import write_atomically
from embbench.results.columns import SUMMARY_COLUMNS, check_names
from embbench.results.phases import TIMING_COLUMNS
from embbench.results.record import ABANDONED, RUNNING, RunRecord

# `scheduled`: when the request was due (open loop); equal to `start` in a closed loop. Then the
# server's phases, batch size and request id (results/phases.py; absent in logs before them).
REQUEST_COLUMNS = ["start", "latency_ms", "status", "error", "bytes", "scheduled", *TIMING_COLUMNS]
SAMPLE_COLUMNS = [
    "time",
    "phase",
    "cpu_pct",
    "rss_mb",
    "pss_mb",
    "uss_mb",
    "threads",
    "processes",
    "loadgen_cpu_pct",
]
# capacity.csv (`embbench capacity`): one row per variant, or per variant and core count with
# --cores (`cores` then says how many its server was pinned to; empty without).
CAPACITY_COLUMNS = [
    "variant", "label", "slo_p99_ms", "max_error_rate", "status", "qps_at_slo", "p99_at_slo_ms",
    "cpu_pct_at_slo", "pss_mb_at_slo", "cpu_ms_per_embedding", "probes", "reason", "cores",
    # Retrieval agreement (run/retrieval.py): the variant's lowest recall@10 over its cells,
    # that cell's interval and queries; with --quality-floor a variant below it has status
    # below_quality_floor and no qps_at_slo.
    "recall_at_10", "recall_at_10_low", "recall_at_10_high", "quality_queries", "quality_floor",
]  # fmt: skip

# status values of a cell
OK, FAILED, BAD_EMBEDDINGS, INTERRUPTED = "ok", "failed", "bad_embeddings", "interrupted"

CHARTS = "charts"  # the folder of report's charts, also the prefix of report.md's links


@dataclass(frozen=True)
class RunFolder:
    """Every path of one run's folder: whoever writes or reads a file of a run asks here.

    results/<run-id>/
      run.json                 the record (record.py)
      summary.csv              one row per cell (columns.py)
      capacity.csv             one row per variant (`embbench capacity`)
      requests/<cell>.csv      one row per request (REQUEST_COLUMNS)
      samples/<cell>.csv       the server's and the load generator's resources (SAMPLE_COLUMNS)
      checks/<cell>.csv        answers checked under load
      logs/<cell>.server.log   the server's output; .locust.log Locust's; .info.json its /info
      logs/<cell>.raw/         the locustfile's own request and answer logs (removed once read)
      logs/<cell>.work/        the server's working folder (readiness files, a container's)
      report.md, report.html,  `embbench report` (report.html: the same, one offline page)
      charts/
    """

    path: Path

    SUBFOLDERS = ("requests", "samples", "logs")  # made with the folder

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def record(self) -> Path:
        return self.path / "run.json"

    @property
    def summary(self) -> Path:
        return self.path / "summary.csv"

    @property
    def capacity(self) -> Path:
        return self.path / "capacity.csv"

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    @property
    def charts(self) -> Path:
        return self.path / CHARTS

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def requests(self, cell: str) -> Path:
        return self.path / "requests" / f"{cell}.csv"

    def samples(self, cell: str) -> Path:
        return self.path / "samples" / f"{cell}.csv"

    def checks(self, cell: str) -> Path:
        return self.path / "checks" / f"{cell}.csv"

    def server_log(self, cell: str) -> Path:
        return self.logs / f"{cell}.server.log"

    def locust_log(self, cell: str) -> Path:
        return self.logs / f"{cell}.locust.log"

    def info(self, cell: str) -> Path:
        return self.logs / f"{cell}.info.json"

    def raw(self, cell: str) -> Path:
        return self.logs / f"{cell}.raw"

    def workdir(self, cell: str) -> Path:
        return self.logs / f"{cell}.work"


def new_run_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now()
    return now.strftime("%Y%m%d-%H%M%S")


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,127}")


def check_out_dir(out: Path, run_id: str | None = None) -> None:
    """Usage errors of --out and --run-id, before anything is made: the run folder must be a
    new plain name inside `out`, and `out` a folder (or nothing yet)."""
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file, not a folder")
    if run_id is not None and not RUN_ID.fullmatch(run_id):
        raise ResultsError(
            f"--run-id {run_id!r} must be a plain folder name (letters, digits, _ . = -)"
        )


def mark_abandoned_runs(out: Path) -> list[Path]:
    """Runs left "running" by a process that is gone (killed with -9, a machine that rebooted)
    are marked "abandoned", so that nobody reads them as still in progress. A run.json this
    embbench cannot read is left as it is."""
    marked = []
    for path in _records(out):
        try:
            record = RunRecord.load(path)
        except ResultsError:
            continue
        if record.status != RUNNING or (record.pid is not None and pid_alive(record.pid)):
            continue
        dataclasses.replace(record, status=ABANDONED).dump(path)
        marked.append(path.parent)
    return marked


def create_run_dir(out: Path, run_id: str | None = None) -> Path:
    """Make results/<run-id>/ exclusively: an existing run is never written into."""
    check_out_dir(out, run_id)
    out.mkdir(parents=True, exist_ok=True)
    base = run_id or new_run_id()
    for attempt in range(100):
        name = base if attempt == 0 else f"{base}-{attempt}"
        path = out / name
        try:
            path.mkdir()
        except FileExistsError:
            if run_id is not None:
                raise ResultsError(
                    f"run folder {path} already exists; choose another --run-id"
                ) from None
            continue
        for sub in RunFolder.SUBFOLDERS:
            (path / sub).mkdir()
        return path
    raise ResultsError(f"could not find a free run folder name under {out}")


def cell_name(index: int, label: str, level: float, repeat: int, kind: str = "c") -> str:
    """`003-batched-c100-r0` (closed loop, 100 users) or `003-batched-r40rps-r0` (open loop)."""
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_")
    if kind == "r":
        return f"{index:03d}-{safe}-{level:g}rps-r{repeat}"
    return f"{index:03d}-{safe}-c{level:g}-r{repeat}"


class SummaryWriter:
    """Appends one row per cell as soon as it is measured, so an interrupt keeps what was done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            with path.open("w", newline="") as handle:
                csv.writer(handle).writerow(SUMMARY_COLUMNS)

    def append(self, row: Mapping[str, Any]) -> None:
        check_names(row)  # a key summary.csv has no column for is a bug, not a blank
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([_csv_value(row.get(col)) for col in SUMMARY_COLUMNS])


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        # Cosines live just under 1: four decimals would round 0.99996 up to 1.0.
        return round(value, 7 if abs(value) <= 1.0 else 4)
    return value


def write_rows(path: Path, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


def write_capacity(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """capacity.csv rewritten whole (small), so that an interrupt keeps the rows written."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, CAPACITY_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(path, write)


@dataclass(frozen=True)
class RunData:
    """A run as the report reads it: its folder, its record (run.json), its summary.csv."""

    path: Path
    record: RunRecord
    summary: pd.DataFrame

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    def capacity(self) -> pd.DataFrame | None:
        """capacity.csv of an `embbench capacity` run (None for other runs)."""
        path = self.folder.capacity
        return pd.read_csv(path) if path.is_file() else None


def load_run(path: Path) -> RunData:
    folder = RunFolder(path)
    if not folder.record.is_file() or not folder.summary.is_file():
        raise ResultsError(f"{path} is not an embbench run (no run.json or summary.csv)")
    record = RunRecord.load(folder.record)
    summary = pd.read_csv(folder.summary, dtype={"label": "string", "failure_reason": "string"})
    if "label" in summary.columns:
        summary["label"] = summary["label"].fillna(summary["variant"].astype("string"))
    return RunData(path=path, record=record, summary=summary)


def latest_run(out: Path) -> Path:
    runs = _records(out)
    if not runs:
        raise ResultsError(f"no run under {out}/; run `embbench run` first or pass RUN_DIR")
    return max(runs, key=lambda p: p.stat().st_mtime).parent


def _records(out: Path) -> list[Path]:
    """The run.json of every run folder under `out`, by name."""
    folders = sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []
    return [RunFolder(p).record for p in folders if RunFolder(p).record.is_file()]
