"""The results format: one folder per run, never overwritten.

Format history (bump SCHEMA_VERSION and add a line when a file changes meaning):
  1 (2026-11): run.json, summary.csv, requests/<cell>.csv, samples/<cell>.csv, logs/.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from embbench.machine.children import pid_alive
from embbench.results.columns import SUMMARY_COLUMNS, check_names
from embbench.errors import ResultsError

SCHEMA_VERSION = 1

# `scheduled`: when the request was due (open loop); equal to `start` in a closed loop.
REQUEST_COLUMNS = ["start", "latency_ms", "status", "error", "bytes", "scheduled"]
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

# status values of a cell
OK, FAILED, BAD_EMBEDDINGS, INTERRUPTED = "ok", "failed", "bad_embeddings", "interrupted"


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
    are marked "abandoned", so that nobody reads them as still in progress."""
    marked = []
    for meta_file in sorted(out.glob("*/run.json")) if out.is_dir() else []:
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        pid = meta.get("pid")
        if meta.get("status") != "running" or (isinstance(pid, int) and pid_alive(pid)):
            continue
        meta["status"] = "abandoned"
        write_json(meta_file, meta)
        marked.append(meta_file.parent)
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
        for sub in ("requests", "samples", "logs"):
            (path / sub).mkdir()
        return path
    raise ResultsError(f"could not find a free run folder name under {out}")


def cell_name(index: int, label: str, level: float, repeat: int, kind: str = "c") -> str:
    """`003-batched-c100-r0` (closed loop, 100 users) or `003-batched-r40rps-r0` (open loop)."""
    safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", label).strip("_")
    if kind == "r":
        return f"{index:03d}-{safe}-{level:g}rps-r{repeat}"
    return f"{index:03d}-{safe}-c{level:g}-r{repeat}"


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


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


@dataclass(frozen=True)
class RunData:
    path: Path
    meta: dict[str, Any]
    summary: pd.DataFrame

    def requests(self, cell: str) -> pd.DataFrame:
        return pd.read_csv(self.path / "requests" / f"{cell}.csv")

    def capacity(self) -> pd.DataFrame | None:
        """capacity.csv of an `embbench capacity` run (None for other runs)."""
        path = self.path / "capacity.csv"
        return pd.read_csv(path) if path.is_file() else None

    def samples(self, cell: str) -> pd.DataFrame:
        return pd.read_csv(self.path / "samples" / f"{cell}.csv")


def load_run(path: Path) -> RunData:
    meta_file = path / "run.json"
    summary_file = path / "summary.csv"
    if not meta_file.is_file() or not summary_file.is_file():
        raise ResultsError(f"{path} is not an embbench run (no run.json or summary.csv)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{meta_file} is not valid JSON: {exc}") from exc
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{path} has schema_version {version}; this embbench reads {SCHEMA_VERSION}"
        )
    summary = pd.read_csv(summary_file, dtype={"label": "string", "failure_reason": "string"})
    if "label" in summary.columns:
        summary["label"] = summary["label"].fillna(summary["variant"].astype("string"))
    return RunData(path=path, meta=meta, summary=summary)


def latest_run(out: Path) -> Path:
    runs = sorted(p for p in out.glob("*/run.json")) if out.is_dir() else []
    if not runs:
        raise ResultsError(f"no run under {out}/; run `embbench run` first or pass RUN_DIR")
    return max(runs, key=lambda p: p.stat().st_mtime).parent
