"""A short real benchmark: real servers, the real model, real Locust; files and numbers agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest

from embbench.config.run import RunConfig, VariantRun
from embbench.machine.process import free_port
from embbench.results import folder as results
from embbench.results import phases, record
from embbench.run.plan import Cell
from embbench.run.progress import ProgressListener
from embbench.run.session import run_benchmark
from tests.integration.conftest import serve_variant

pytestmark = pytest.mark.integration


def short_config(tmp_path: Path, *names: str, **kwargs: Any) -> RunConfig:
    settings: dict[str, Any] = dict(
        concurrency=(2, 8), duration=2.5, warmup=1.0, out=str(tmp_path / "results")
    )
    settings.update(kwargs)
    return RunConfig(variants=tuple(VariantRun(n) for n in names), **settings)


def test_short_benchmark_files_and_numbers(tmp_path: Path) -> None:
    outcome = run_benchmark(short_config(tmp_path, "shared-rwlock", "batched"))
    run_dir = outcome.run_dir
    assert not outcome.interrupted and outcome.failed == 0
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["schema_version"] == record.SCHEMA_VERSION and meta["status"] == "complete"
    assert meta["host"]["cores"] >= 1 and "torch" in meta["versions"]
    assert meta["config"]["concurrency"] == [2, 8]

    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary.columns) == results.SUMMARY_COLUMNS
    assert len(summary) == 4 and set(summary["status"]) == {"ok"}
    first = summary[summary["concurrency"] == 2].set_index("label")["cell"]
    assert (summary["server_cell"] == summary["label"].map(first)).all()
    for row in summary.itertuples():
        requests = pd.read_csv(run_dir / "requests" / f"{row.cell}.csv")
        samples = pd.read_csv(run_dir / "samples" / f"{row.cell}.csv")
        assert list(requests.columns) == results.REQUEST_COLUMNS
        # Throughput is the successful completions inside the window, per second.
        # summary.csv keeps the window's edges to 0.1 ms and the log its times to 1 µs: a
        # request that ended that close to an edge may fall on either side of it here.
        done = requests["start"] + requests["latency_ms"] / 1000
        edge = 0.001
        inside = requests[(done >= row.window_start - edge) & (done <= row.window_end + edge)]
        surely = requests[(done >= row.window_start + edge) & (done <= row.window_end - edge)]
        ok = inside[(inside["status"] == 200)]
        surely_ok = surely[(surely["status"] == 200)]
        assert len(surely_ok) <= round(row.rps * row.duration_s) <= len(ok)
        assert len(surely) <= row.requests <= len(inside) and row.failures == 0
        assert row.latency_p50_ms == pytest.approx(ok["latency_ms"].median(), rel=2e-2)
        assert row.latency_p50_ms <= row.latency_p95_ms <= row.latency_p99_ms <= row.latency_max_ms
        assert row.cosine_min >= 0.999 and bool(row.correct)
        # The server tree and the load generator were both sampled during the window.
        measured = samples[samples["phase"] == "measure"]
        assert len(measured) >= 3
        assert row.cpu_pct_mean > 0 and row.rss_mb_max > 50 and row.pss_mb_max > 0
        assert row.loadgen_cpu_pct_mean > 0
        # A variant's levels ran against one server (run/served.py), started by its first
        # cell: only that one has the launch's cost (machine/startup.py).
        assert (run_dir / "logs" / f"{row.server_cell}.server.log").exists()
        if row.server_cell == row.cell:
            assert 0 < row.startup_s < 300 and row.first_request_ms > 0
            assert row.startup_rss_mb_peak > 50 and row.startup_pss_mb_peak > 0
        else:
            assert pd.isna(row.startup_s) and pd.isna(row.first_request_ms)
        # Each answer's server-side phases, joined to its own client latency: the server's total
        # never exceeds what the client measured, and the p99 group's parts add up to its latency.
        answered = requests[requests["status"] == 200]
        assert answered["srv_total_ms"].notna().all() and answered["request_id"].notna().all()
        assert answered["srv_forward_ms"].notna().all() and (answered["batch_size"] >= 1).all()
        assert (answered["srv_total_ms"] <= answered["latency_ms"] + 0.002).all()
        assert row.p99_timed > 0 and row.p99_forward_ms > 0 and row.p99_outside_ms >= 0
        parts = [getattr(row, phases.part_column("p99", p)) for p in phases.PARTS]
        assert sum(p for p in parts if p == p) == pytest.approx(row.p99_latency_ms, abs=0.01)


def test_external_url_with_tei_protocol(tmp_path: Path) -> None:
    # TEI's protocol against our own TEI-compatible /embed; nothing here pretends to be TEI.
    with serve_variant("batched", tmp_path / "srv") as (url, proc):
        config = short_config(tmp_path, concurrency=(4,), url=url, protocol="tei", pid=proc.pid)
        outcome = run_benchmark(config)
    row = outcome.rows[0]
    assert row["status"] == "ok" and row["protocol"] == "tei" and row["rps"] > 0
    assert row["cosine_min"] >= 0.999 and row["cpu_pct_mean"] > 0


def test_openai_protocol_against_our_server(tmp_path: Path) -> None:
    with serve_variant("shared-mutex", tmp_path / "srv") as (url, _):
        config = short_config(tmp_path, concurrency=(2,), url=url, protocol="openai")
        row = run_benchmark(config).rows[0]
    assert row["status"] == "ok" and row["cosine_min"] >= 0.999


class KillServerMidCell(ProgressListener):
    """Kills the first cell's server halfway through its measured window."""

    def __init__(self) -> None:
        self.killed = False

    def cell_live(
        self,
        cell: Cell,
        phase: str,
        elapsed: float,
        total: float,
        rps: float | None,
        p50_ms: float | None,
    ) -> None:
        if cell.index == 0 and phase == "measure" and not self.killed:
            for child in psutil.Process().children(recursive=True):
                if "embbench.servers" in " ".join(child.cmdline()):
                    child.kill()
                    self.killed = True


def test_a_server_crash_fails_its_cell_and_the_run_goes_on(tmp_path: Path) -> None:
    progress = KillServerMidCell()
    outcome = run_benchmark(short_config(tmp_path, "shared-mutex", duration=4.0), progress)
    assert progress.killed
    first, second = outcome.rows
    assert first["status"] == "failed" and "exited" in first["failure_reason"]
    assert second["status"] == "ok"
    summary = pd.read_csv(outcome.run_dir / "summary.csv")
    assert list(summary["status"]) == ["failed", "ok"]


def embbench_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            env = proc.info["environ"] or {}
            cmd = " ".join(proc.info["cmdline"] or [])
        except (psutil.Error, TypeError):
            continue
        if marker in env.get("EMBBENCH_SERVER_CONFIG", "") or marker in cmd:
            found.append(proc)
    return found


def test_ctrl_c_keeps_measured_cells_and_leaves_no_process(tmp_path: Path) -> None:
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "embbench",
        "run",
        "--variant",
        "shared-mutex",
        "--concurrency",
        "2,4,8",
        "--duration",
        "3",
        "--warmup",
        "1",
        "--out",
        str(out),
        "--run-id",
        "interrupted",
    ]
    # Ctrl-C as at a terminal: a job started in the background by a non-interactive shell
    # inherits SIGINT ignored (and Python then installs no KeyboardInterrupt handler), so a CI
    # that runs the suite that way would otherwise never deliver this signal.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    summary = out / "interrupted" / "summary.csv"
    deadline = time.monotonic() + 240
    try:
        # Wait until one cell is recorded and the next one's server is up, then press Ctrl-C.
        while time.monotonic() < deadline:
            if summary.exists() and len(summary.read_text().splitlines()) >= 2:
                break
            time.sleep(0.5)
        time.sleep(4)
        os.kill(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output.decode()[-2000:]
    rows = pd.read_csv(summary)
    assert rows.loc[0, "status"] == "ok"
    assert json.loads((out / "interrupted" / "run.json").read_text())["status"] == "interrupted"
    time.sleep(1)
    assert embbench_processes(str(out)) == []


def test_locust_processes_send_their_rows_to_the_master(tmp_path: Path) -> None:
    outcome = run_benchmark(
        short_config(tmp_path, "shared-rwlock", concurrency=(4,), load_processes=2)
    )
    row = outcome.rows[0]
    assert row["status"] == "ok" and row["requests"] > 0
    requests = pd.read_csv(outcome.run_dir / "requests" / f"{row['cell']}.csv")
    done = requests["start"] + requests["latency_ms"] / 1000
    inside = requests[(done >= row["window_start"]) & (done <= row["window_end"])]
    assert row["requests"] == len(inside)


def test_a_load_worker_on_another_host_joins_the_run(tmp_path: Path) -> None:
    # Locust's distributed mode over TCP, here with both ends on this machine.
    port = free_port()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embbench",
            "load-worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            str(port),
            "--payload",
            "short",
            "--protocol",
            "predict",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        config = short_config(
            tmp_path, "shared-mutex", concurrency=(3,), load_workers=1, master_port=port
        )
        row = run_benchmark(config).rows[0]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    assert row["status"] == "ok" and row["requests"] > 0 and row["rps"] > 0
    assert row["cosine_min"] >= 0.999


def test_ceiling_is_measured_before_between_and_after_the_repeats(tmp_path: Path) -> None:
    from embbench.report.document import render_markdown
    from embbench.results.folder import load_run

    config = short_config(
        tmp_path,
        "batched",
        concurrency=(1,),
        duration=2.0,
        repeats=2,
        ceiling=True,
        ceiling_seconds=0.2,
    )
    outcome = run_benchmark(config)
    assert outcome.failed == 0
    meta = json.loads((outcome.run_dir / "run.json").read_text())
    assert [c["after_repeat"] for c in meta["ceiling_between"]] == [0]
    for key in ("ceiling", "ceiling_between", "ceiling_after"):
        [ceiling] = meta[key]
        assert (ceiling["backend"], ceiling["quantize"]) == ("torch", "none")
        assert ceiling["sentences_per_s"] > 0 and ceiling["batch1_ms"] > 0
        assert {(m["threads"], m["streams"]) for m in ceiling["layouts"]}
    text = render_markdown(load_run(outcome.run_dir))
    assert "Offline ceiling after the cells (torch)" in text
    assert "Offline ceiling after repeat 0 (torch)" in text
    assert "measured after the cells" in text  # the c=1 cell against both bare passes
    # Each repeat against the ceilings around it: both repeats of the one label judged.
    section = text.split("## CPU per embedding against the ceiling")[1].split("## ")[0]
    [line] = [each for each in section.splitlines() if each.startswith("| batched |")]
    assert line.endswith("| 2 |")
