"""The run folder: every path named once, runs read and marked through the record."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from embbench.results.folder import (
    CAPACITY_COLUMNS,
    RunFolder,
    load_run,
    mark_abandoned_runs,
    write_capacity,
)
from embbench.results.record import Host, RunRecord


def test_a_run_whose_process_is_gone_is_marked_abandoned(tmp_path: Path) -> None:
    gone = RunFolder(tmp_path / "gone")
    alive = RunFolder(tmp_path / "alive")
    for folder, pid in ((gone, 2**22 + 12345), (alive, os.getpid())):
        folder.path.mkdir()
        RunRecord(run_id=folder.name, status="running", pid=pid).dump(folder.record)
    assert mark_abandoned_runs(tmp_path) == [gone.path]
    assert RunRecord.load(gone.record).status == "abandoned"
    assert RunRecord.load(alive.record).status == "running"


def test_a_folder_names_every_path() -> None:
    folder = RunFolder(Path("results/r1"))
    assert folder.record == Path("results/r1/run.json")
    assert folder.summary.name == "summary.csv" and folder.capacity.name == "capacity.csv"
    assert folder.requests("000-a-c1-r0") == Path("results/r1/requests/000-a-c1-r0.csv")
    assert (
        folder.samples("c").parent.name == "samples" and folder.checks("c").parent.name == "checks"
    )
    assert folder.server_log("c") == Path("results/r1/logs/c.server.log")
    assert folder.raw("c").name == "c.raw" and folder.workdir("c").name == "c.work"
    assert folder.report.name == "report.md" and folder.charts.name == "charts"


def test_load_run_reads_the_record(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "r")
    folder.path.mkdir()
    RunRecord(host=Host.from_json({"cores": 4})).dump(folder.record)
    folder.summary.write_text("variant,label\nbatched,\n")
    run = load_run(folder.path)
    assert run.record.run_id == "r" and run.record.host.cores == 4  # named after its folder
    assert run.folder == folder and run.capacity() is None


def test_capacity_csv_is_written_whole(tmp_path: Path) -> None:
    path = RunFolder(tmp_path).capacity
    write_capacity(path, [{"variant": "a", "status": "found", "qps_at_slo": 12.5, "other": 1}])
    write_capacity(path, [{"variant": "a"}, {"variant": "b"}])
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["variant"] for r in rows] == ["a", "b"] and list(rows[0]) == CAPACITY_COLUMNS
    assert [p.name for p in tmp_path.iterdir()] == ["capacity.csv"]
