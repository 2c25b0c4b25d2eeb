"""The open loop against a real server, with the real model and real Locust (LoadProcess).

Rates are far below what the server sustains on a 2-core machine (about 20 rps of short
payloads, where batched answers in ~20 ms), so the assertions are about what the load generator
controls: arrivals, drops, the schedule, and where a stall shows up.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from embbench.config.payloads import build_payloads
from embbench.load import measure
from embbench.load.locust import LoadProcess, LoadSpec, RequestLog, read_requests
from embbench.load.loops.open import open_timing
from embbench.load.schedule import build_schedule
from embbench.machine.process import ServerProcess
from tests.integration.conftest import serve_variant

pytestmark = pytest.mark.integration

WARMUP = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ServerProcess]]:
    with serve_variant("batched", tmp_path_factory.mktemp("srv")) as found:
        yield found


def open_cell(
    url: str, folder: Path, rate: float, duration: float, **kwargs: Any
) -> tuple[LoadProcess, Path]:
    schedule_s, run_time = open_timing(WARMUP, duration)
    spec = LoadSpec(
        url=url,
        protocol="predict",
        users=1,
        run_time=run_time,
        payloads=build_payloads("short", count=64, seed=0),
        requests_dir=folder / "raw",
        log_path=folder / "locust.log",
        rate=rate,
        schedule_s=schedule_s,
        **kwargs,
    )
    load = LoadProcess(spec)
    load.start()
    return load, spec.requests_dir


def finish(load: LoadProcess, raw: Path) -> list[measure.RequestRow]:
    # An open cell's Locust stops by itself at the end of its schedule.
    try:
        code = load.wait(timeout=load.spec.run_time + 60)
    finally:
        load.stop()
    assert code == 0, load.spec.log_path.read_text()[-2000:]
    return sorted(read_requests(raw))


def summary(rows: list[measure.RequestRow], rate: float, duration: float) -> dict[str, Any]:
    start, end = measure.open_window(rows, WARMUP, duration)
    return measure.summarize_open(rows, start, end, rate)


def test_below_capacity_the_offered_rate_is_achieved(
    server: tuple[str, ServerProcess], tmp_path: Path
) -> None:
    url, _ = server
    rows = finish(*open_cell(url, tmp_path, 20.0, 5.0, arrival="constant"))
    out = summary(rows, 20.0, 5.0)
    assert out["arrivals"] == 100 and out["dropped"] == 0 and out["failures"] == 0
    assert out["rps"] == pytest.approx(20.0, rel=0.1)  # requests straddle the window edges
    assert out["load_model"] == "open" and out["latency_p50_ms"] >= out["service_p50_ms"] > 0


def test_processes_share_the_schedule_without_overlap(
    server: tuple[str, ServerProcess], tmp_path: Path
) -> None:
    # Locust's distributed mode: two worker processes, each sending its slice of one schedule.
    url, _ = server
    load, raw = open_cell(url, tmp_path, 20.0, 4.0, processes=2, seed=11)
    rows = finish(load, raw)
    zero = min(r[5] for r in rows)
    due = sorted(r[5] - zero for r in rows)
    expected = build_schedule(20.0, load.spec.schedule_s, "poisson", 11)
    # Every arrival once: disjoint slices, nothing lost or doubled (the log keeps microseconds).
    assert len(due) == len(expected) and np.allclose(due, expected, rtol=0, atol=1e-5)
    out = summary(rows, 20.0, 4.0)
    assert out["failures"] == 0 and out["dropped"] == 0
    assert out["rps"] == pytest.approx(out["arrival_rps"], rel=0.1)


def test_arrivals_beyond_the_inflight_cap_are_dropped(
    server: tuple[str, ServerProcess], tmp_path: Path
) -> None:
    # One request in flight at a time cannot keep up with 150 rps (a request takes > 7 ms).
    url, _ = server
    rows = finish(*open_cell(url, tmp_path, 150.0, 3.0, arrival="constant", max_inflight=1))
    out = summary(rows, 150.0, 3.0)
    assert out["arrivals"] == 450
    assert out["dropped"] > 0 and out["requests"] + out["dropped"] == out["arrivals"]
    assert out["error_rate"] >= out["dropped"] / out["arrivals"]
    # Never two requests out at once: each starts after the previous one came back.
    sent = sorted((r[0], r[0] + r[1] / 1000) for r in rows if r[3] != "dropped")
    assert all(b[0] >= a[1] - 1e-3 for a, b in itertools.pairwise(sent))


def server_tree(server: ServerProcess) -> list[psutil.Process]:
    assert server.pid is not None
    root = psutil.Process(server.pid)
    return [root, *root.children(recursive=True)]


def test_a_stall_shows_in_the_open_loop_p99_not_in_service_time(
    server: tuple[str, ServerProcess], tmp_path: Path
) -> None:
    # One connection, as a closed-loop client of one: while the server is stopped, the request on
    # that connection waits (one slow service time) and the arrivals behind it wait in the client
    # (no service time at all: coordinated omission). The open-loop latency sees them all.
    url, srv = server
    duration = 8.0
    load, raw = open_cell(url, tmp_path, 20.0, duration, arrival="constant", connections=1)
    log = RequestLog(raw)
    deadline = time.monotonic() + 60
    while not log.poll():
        assert time.monotonic() < deadline and load.exited() is None, "no requests logged"
        time.sleep(0.1)
    zero = min(r[5] for r in log.poll())
    time.sleep(max(0.0, zero + WARMUP + 2.0 - time.time()))
    stopped = server_tree(srv)
    for proc in stopped:
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(1.5)
    finally:
        for proc in stopped:
            os.kill(proc.pid, signal.SIGCONT)
    rows = finish(load, raw)
    out = summary(rows, 20.0, duration)
    assert out["failures"] == 0 and out["dropped"] == 0
    assert out["latency_p99_ms"] >= 1000.0
    assert out["service_p99_ms"] < out["latency_p99_ms"] / 2
    assert out["latency_max_ms"] >= 1400.0
    # The client held the arrivals back: that is lateness, and it flags the cell.
    assert out["late_p99_ms"] > 500.0 and out["loadgen_late"] is True
    service = np.array([r[1] for r in rows if r[3] == ""])
    assert (service >= 1000.0).sum() <= 2  # only what was on the connection when it stopped
