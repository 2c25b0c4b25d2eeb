"""A cell's files -> its summary row (run/record.py), without a server or Locust."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from embbench.config.run import RunConfig, VariantRun
from embbench.load.loops.base import Loop
from embbench.load.loops.closed import ClosedLoop
from embbench.load.loops.open import OpenLoop
from embbench.machine.sampler import Sample
from embbench.results import folder as results
from embbench.run.plan import Cell
from embbench.run.record import first_row, record_cell

CONFIG = RunConfig(variants=(VariantRun("batched"),), warmup=1.0, duration=5.0)


def folder_of(tmp_path: Path) -> results.RunFolder:
    folder = results.RunFolder(tmp_path)
    for sub in results.RunFolder.SUBFOLDERS:
        (tmp_path / sub).mkdir()
    return folder


def write_log(folder: results.RunFolder, cell: Cell, rows: list[tuple[Any, ...]]) -> Path:
    raw = folder.raw(cell.name)
    raw.mkdir(parents=True)
    with (raw / "requests-1.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(results.REQUEST_COLUMNS)
        writer.writerows(rows)
    return raw


def started(loop: Loop) -> tuple[Cell, Any]:
    cell = Cell(0, VariantRun("batched"), loop, 0)
    row = first_row(CONFIG, cell)
    row.update(status=results.OK, protocol="predict")
    return cell, row


def sample(t: float) -> Sample:
    return Sample(t, 50.0, 100.0, 80.0, 60.0, 10, 2, 5.0, 5.0)


def test_a_closed_cell_is_measured_in_its_live_window_and_its_files_written(
    tmp_path: Path,
) -> None:
    folder = folder_of(tmp_path)
    cell, row = started(ClosedLoop(2))
    assert (row["load_model"], row["concurrency"], row["offered_rps"]) == ("closed", 2, None)
    # Two users, each answered in 100 ms: 20 rps, from 100 s to 110 s.
    log = [(100.0 + i * 0.05, 100.0, 200, "", 10, 100.0 + i * 0.05) for i in range(200)]
    raw = write_log(folder, cell, log)
    warned: list[str] = []
    recorded = record_cell(
        row, cell, CONFIG, folder, live_window=(102.02, 107.02),
        samples=[sample(101.0), sample(104.0), sample(109.0)], reference=None, warn=warned.append,
    )  # fmt: skip
    assert len(recorded.rows) == 200 and recorded.verdict is None
    assert (row["window_start"], row["window_end"]) == (102.02, 107.02)
    assert row["status"] == results.OK and row["requests"] == 100
    assert row["rps"] == pytest.approx(20.0) and row["little_law_ok"] is True
    assert row["cpu_pct_mean"] == 50.0 and not warned
    with folder.samples(cell.name).open() as handle:
        phases = [r["phase"] for r in csv.DictReader(handle)]
    assert phases == ["warmup", "measure", "after"]
    assert folder.requests(cell.name).read_text().startswith("start,latency_ms")
    assert not list(raw.glob("requests-*.csv"))  # the raw logs are removed once read


def test_an_open_cell_is_measured_from_its_schedule(tmp_path: Path) -> None:
    folder = folder_of(tmp_path)
    cell, row = started(OpenLoop(10.0, 100))
    # Arrival i due at 100 + i / 10, sent 30 ms late, served in 20 ms.
    log = [(100.0 + i / 10 + 0.03, 20.0, 200, "", 10, 100.0 + i / 10) for i in range(100)]
    write_log(folder, cell, log)
    record_cell(row, cell, CONFIG, folder, live_window=None, samples=[], reference=None,
                warn=print)  # fmt: skip
    assert (row["window_start"], row["window_end"]) == (101.0, 106.0)
    assert row["load_model"] == "open" and row["offered_rps"] == 10.0 and row["arrivals"] == 50
    assert row["latency_p50_ms"] == pytest.approx(50.0) and row["little_ratio"] is None


def test_a_cell_without_requests_in_its_window_is_failed(tmp_path: Path) -> None:
    folder = folder_of(tmp_path)
    cell, row = started(ClosedLoop(2))
    recorded = record_cell(
        row, cell, CONFIG, folder, live_window=None, samples=[], reference=None, warn=print
    )
    assert recorded.rows == [] and row["status"] == results.FAILED
    assert row["failure_reason"] == "no request completed in the measured window"


def test_an_interrupted_cell_is_measured_up_to_its_last_answer(tmp_path: Path) -> None:
    folder = folder_of(tmp_path)
    cell, row = started(ClosedLoop(2))
    row["status"] = results.INTERRUPTED
    log = [(100.0 + i * 0.05, 100.0, 200, "", 10, 100.0 + i * 0.05) for i in range(80)]
    write_log(folder, cell, log)
    record_cell(row, cell, CONFIG, folder, live_window=(102.02, 107.02), samples=[],
                reference=None, warn=print)  # fmt: skip
    assert row["window_end"] == pytest.approx(104.05) and row["status"] == results.INTERRUPTED
    assert row["duration_s"] == pytest.approx(2.03) and row["rps"] == pytest.approx(20.0, rel=0.05)
