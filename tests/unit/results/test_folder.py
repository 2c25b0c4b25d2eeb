"""The run folder: every path named once, runs read and marked through the record."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from embbench.errors import ResultsError
from embbench.results import folder as results
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


def test_run_dirs_are_never_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "new_run_id", lambda: "20260101-000000")  # same second twice
    first = results.create_run_dir(tmp_path, None)
    (first / "summary.csv").write_text("keep me")
    second = results.create_run_dir(tmp_path, None)
    assert second != first
    assert (first / "summary.csv").read_text() == "keep me"


def test_explicit_run_id_that_exists_is_an_error(tmp_path: Path) -> None:
    results.create_run_dir(tmp_path, "mine")
    with pytest.raises(ResultsError, match="already exists"):
        results.create_run_dir(tmp_path, "mine")


def test_summary_round_trip(tmp_path: Path) -> None:
    run = results.create_run_dir(tmp_path, "r1")
    RunRecord(run_id="r1").dump(run / "run.json")
    writer = results.SummaryWriter(run / "summary.csv")
    writer.append({"variant": "batched", "label": "", "concurrency": 10, "rps": 12.34567})
    data = results.load_run(run)
    assert list(data.summary.columns) == results.SUMMARY_COLUMNS
    assert data.summary.loc[0, "label"] == "batched"
    assert data.summary.loc[0, "rps"] == pytest.approx(12.3457)


def test_load_run_rejects_other_versions(tmp_path: Path) -> None:
    run = results.create_run_dir(tmp_path, "old")
    (run / "run.json").write_text(json.dumps({"schema_version": 99}))
    results.SummaryWriter(run / "summary.csv")
    with pytest.raises(ResultsError, match="schema_version 99"):
        results.load_run(run)


def test_latest_run_needs_a_run(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no run"):
        results.latest_run(tmp_path)


def test_request_log_reads_only_what_was_appended(tmp_path: Path) -> None:
    from embbench.load.locust import RequestLog

    log_file = tmp_path / "requests-1.csv"
    log_file.write_text("start,latency_ms,status,error,bytes\n1.0,2.5,200,,10\n1.5,3.0,2")
    log = RequestLog(tmp_path)
    # A closed-loop log (5 columns): `scheduled` is the start itself.
    assert log.poll() == [(1.0, 2.5, 200, "", 10, 1.0)]  # the cut line waits
    with log_file.open("a") as handle:
        handle.write("00,,12\n2.0,1.0,500,5xx,0\n")
    assert log.poll() == [
        (1.0, 2.5, 200, "", 10, 1.0),
        (1.5, 3.0, 200, "", 12, 1.5),
        (2.0, 1.0, 500, "5xx", 0, 2.0),
    ]
    assert log.poll()[-1] == (2.0, 1.0, 500, "5xx", 0, 2.0)  # nothing new, nothing doubled
    assert len(log.poll()) == 3
