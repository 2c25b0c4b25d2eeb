"""The server's phases through a cell's record: raw log -> requests/<cell>.csv -> p50_/p99_*."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from embbench.config.run import RunConfig, VariantRun
from embbench.load.loops.base import Loop
from embbench.load.loops.closed import ClosedLoop
from embbench.load.loops.open import OpenLoop
from embbench.load.phases import EMPTY_FIELDS, log_fields
from embbench.results import folder as results
from embbench.results.columns import SUMMARY_COLUMNS
from embbench.results.phases import SUMMARY, TIMING_COLUMNS
from embbench.run.plan import Cell
from embbench.run.record import first_row, record_cell

CONFIG = RunConfig(variants=(VariantRun("shared-mutex"),), warmup=1.0, duration=5.0)


def record(tmp_path: Path, loop: Loop, log: list[tuple[Any, ...]]) -> tuple[Any, Path]:
    folder = results.RunFolder(tmp_path)
    for sub in results.RunFolder.SUBFOLDERS:
        (tmp_path / sub).mkdir()
    cell = Cell(0, VariantRun("shared-mutex"), loop, 0)
    row = first_row(CONFIG, cell)
    row.update(status=results.OK, protocol="predict")
    raw = folder.raw(cell.name)
    raw.mkdir(parents=True)
    with (raw / "requests-1.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(results.REQUEST_COLUMNS)
        writer.writerows(log)
    record_cell(row, cell, CONFIG, folder, live_window=None, samples=[], reference=None,
                warn=print)  # fmt: skip
    return row, folder.requests(cell.name)


def timed(lock: float, forward: float = 4.0, rid: str = "1-1") -> tuple[str, ...]:
    header = f"lock;dur={lock}, forward;dur={forward}, total;dur={lock + forward + 0.5}"
    return log_fields([header, None, None, None, None, "1", rid])


def test_a_closed_cell_records_where_its_p99_went(tmp_path: Path) -> None:
    # 2 users from 100 s; request i: lock wait i % 50 ms, 4 ms forward, 0.5 ms overhead, and
    # 1 ms outside the server.
    log = []
    for i in range(400):
        lock = float(i % 50)
        log.append((100.0 + i * 0.02, lock + 5.5, 200, "", 10, 100.0 + i * 0.02,
                    *timed(lock, rid=f"7-{i}")))  # fmt: skip
    row, requests = record(tmp_path, ClosedLoop(2), log)
    assert row["p99_timed"] > 0 and row["p50_timed"] > 0
    assert row["p99_lock_ms"] == pytest.approx(49.0, abs=0.5)
    assert row["p99_forward_ms"] == pytest.approx(4.0) and row["p99_queue_ms"] is None
    assert row["p99_outside_ms"] == pytest.approx(1.0) and row["p99_other_ms"] == pytest.approx(0.5)
    assert row["p50_lock_ms"] == pytest.approx(24.5, abs=1.0)
    # The request log keeps every column, the timing ones included.
    frame = pd.read_csv(requests, dtype={"request_id": "string"})
    assert list(frame.columns) == results.REQUEST_COLUMNS
    assert frame["srv_lock_ms"].max() == 49.0 and frame["batch_size"].eq(1).all()
    assert frame["request_id"].iloc[0] == "7-0"
    assert {name for name, _ in SUMMARY} <= set(SUMMARY_COLUMNS)


def test_an_open_cell_counts_lateness_outside_the_server(tmp_path: Path) -> None:
    # Due every 100 ms from 100 s, sent 30 ms late, served in 10 ms of which 9.5 in the server.
    log = [(100.0 + i / 10 + 0.03, 10.0, 200, "", 10, 100.0 + i / 10, *timed(0.0, 9.0))
           for i in range(100)]  # fmt: skip
    row, _ = record(tmp_path, OpenLoop(10.0, 100), log)
    assert row["p99_latency_ms"] == pytest.approx(40.0)
    assert row["p99_outside_ms"] == pytest.approx(30.5)  # lateness + 0.5 ms on the wire


def test_a_cell_of_a_server_without_timing_has_no_breakdown(tmp_path: Path) -> None:
    log = [(100.0 + i * 0.02, 5.0, 200, "", 10, 100.0 + i * 0.02, *EMPTY_FIELDS)
           for i in range(400)]  # fmt: skip
    row, requests = record(tmp_path, ClosedLoop(2), log)
    assert row["p99_timed"] == 0 and row["p99_lock_ms"] is None and row["rps"] > 0
    frame = pd.read_csv(requests)
    assert frame[list(TIMING_COLUMNS)].isna().all().all()
