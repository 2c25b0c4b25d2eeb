"""Server timing headers -> request-log columns -> "where the p99 went" (load/phases.py)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embbench.load import phases
from embbench.load.locust import read_logged, read_requests
from embbench.results.folder import REQUEST_COLUMNS
from embbench.results.phases import PHASES, SUMMARY, TIMING_COLUMNS


def raw(
    timing: str | None = None,
    tei: tuple[str | None, ...] = (None, None, None, None),
    batch: str | None = None,
    rid: str | None = None,
) -> list[str | None]:
    return [timing, *tei, batch, rid]


def test_server_timing_is_read_as_the_w3c_format_says() -> None:
    header = (
        'lock;dur=1.25, Forward;desc="the forward pass";dur=4.000,queue, '
        "cache;dur=9, tokenize;dur=abc, total;dur=6.5"
    )
    # Unknown metrics and unreadable durations are skipped; names are case-insensitive;
    # params come in any order.
    assert phases.parse_server_timing(header) == {"lock": 1.25, "forward": 4.0, "total": 6.5}
    assert phases.parse_server_timing("") == {}
    assert phases.parse_server_timing("total;dur=inf, lock;dur=nan") == {}


def test_tei_headers_map_onto_the_same_phases() -> None:
    tei = ("2", "0.5", "10", "13")
    assert phases.phases_of(raw(tei=tei)) == {
        "queue": 2.0, "tokenize": 0.5, "forward": 10.0, "total": 13.0,
    }  # fmt: skip
    # Server-Timing wins when it says anything; TEI's headers are the fallback.
    assert phases.phases_of(raw("total;dur=1", tei)) == {"total": 1.0}
    assert phases.phases_of(raw("app;dur=1", tei))["total"] == 13.0


def test_log_fields_are_one_text_per_timing_column() -> None:
    fields = phases.log_fields(raw("lock;dur=1.2346, total;dur=3", batch="4", rid="17-3"))
    assert len(fields) == len(TIMING_COLUMNS)
    named = dict(zip(TIMING_COLUMNS, fields, strict=True))
    assert named["srv_lock_ms"] == "1.235" and named["srv_total_ms"] == "3.000"
    assert named["srv_queue_ms"] == "" and named["batch_size"] == "4"
    assert named["request_id"] == "17-3"
    # No answer, or an answer without headers: all empty.
    assert phases.log_fields(None) == phases.EMPTY_FIELDS
    assert phases.log_fields(raw()) == phases.EMPTY_FIELDS
    # An echoed id must not break the comma-split log.
    assert phases.log_fields(raw(rid='a,b"c\nd'))[-1] == "a;b'c d"


def test_columns_of_reads_the_logged_text_back() -> None:
    rows = [phases.log_fields(raw("forward;dur=2, total;dur=3", batch="8")), phases.EMPTY_FIELDS]
    values, batch = phases.columns_of(rows)
    assert set(values) == set(PHASES)
    assert values["forward"][0] == 2.0 and math.isnan(values["forward"][1])
    assert math.isnan(values["lock"][0]) and list(batch[:1]) == [8.0] and math.isnan(batch[1])


def mutex_cell(n: int = 1000) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A mutex-like cell: a 4 ms forward for all, lock wait growing with latency."""
    latency = np.linspace(5.0, 105.0, n)
    forward = np.full(n, 4.0)
    lock = latency - 5.0
    total = lock + forward + 0.5  # 0.5 ms framework overhead, 0.5 ms outside
    return latency, {"lock": lock, "forward": forward, "total": total}


def test_breakdown_parts_add_up_to_the_group_latency() -> None:
    latency, values = mutex_cell()
    out = phases.breakdown(latency, values, np.full(len(latency), 1.0))
    assert set(out) == {name for name, _ in SUMMARY}
    for group in ("p50", "p99"):
        parts = [out[f"{group}_{p}_ms"] or 0.0 for p in phases.STEPS]
        parts += [out[f"{group}_other_ms"], out[f"{group}_outside_ms"]]
        assert sum(parts) == pytest.approx(out[f"{group}_latency_ms"])
        assert out[f"{group}_other_ms"] == pytest.approx(0.5)
        assert out[f"{group}_outside_ms"] == pytest.approx(0.5)
        assert out[f"{group}_forward_ms"] == pytest.approx(4.0)
        assert out[f"{group}_queue_ms"] is None  # a phase the server never sent
        assert out[f"{group}_batch_size"] == 1.0
    # The p99 group is the band around p99: lock wait near 99 ms, the median's near 50.
    assert out["p99_lock_ms"] == pytest.approx(0.99 * 100, abs=0.6)
    assert out["p50_lock_ms"] == pytest.approx(50.0, abs=0.6)
    # Ranks floor(0.985 x 999)..ceil(0.995 x 999) and floor(0.45 x 999)..ceil(0.55 x 999).
    assert out["p99_timed"] == 12 and out["p50_timed"] == 102


def test_breakdown_takes_the_p99_band_by_latency_not_by_order() -> None:
    latency, values = mutex_cell()
    shuffle = np.random.default_rng(0).permutation(len(latency))
    again = phases.breakdown(latency[shuffle], {k: v[shuffle] for k, v in values.items()})
    assert again["p99_lock_ms"] == pytest.approx(phases.breakdown(latency, values)["p99_lock_ms"])


def test_breakdown_without_timing_says_so() -> None:
    out = phases.breakdown([5.0, 6.0, 7.0], {})
    assert out["p99_timed"] == 0 and out["p99_lock_ms"] is None and out["p99_outside_ms"] is None
    assert out["p50_latency_ms"] == 6.0  # the group's latency, for a report that wants it
    empty = phases.breakdown([], {})
    assert empty["p50_timed"] == 0 and empty["p50_latency_ms"] is None


def test_breakdown_of_a_single_request_and_of_partly_timed_groups() -> None:
    one = phases.breakdown([10.0], {"forward": [6.0], "total": [8.0]})
    assert one["p99_forward_ms"] == 6.0 and one["p99_outside_ms"] == 2.0 and one["p50_timed"] == 1
    # A request without timing in the group is left out of its parts (not counted as 0 ms).
    nan = math.nan
    mixed = phases.breakdown([10.0, 10.0], {"forward": [6.0, nan], "total": [8.0, nan]})
    assert mixed["p99_timed"] == 1 and mixed["p99_forward_ms"] == 6.0


def test_the_request_log_reads_with_and_without_the_timing_columns(tmp_path: Path) -> None:
    timing = phases.log_fields(raw("lock;dur=1, total;dur=2", batch="1", rid="9-1"))
    (tmp_path / "requests-1.csv").write_text(
        ",".join(REQUEST_COLUMNS) + "\n"
        + "100.0,5.0,200,,10,100.0," + ",".join(timing) + "\n"
        + "101.0,0.0,0,dropped,0,101.0," + ",".join(phases.EMPTY_FIELDS) + "\n"
        + "102.0,5.0,200,,10\n"  # cut by an interrupt: skipped
    )  # fmt: skip
    (tmp_path / "requests-2.csv").write_text(  # written before the timing columns
        "start,latency_ms,status,error,bytes,scheduled\n103.0,6.0,200,,10,103.0\n"
    )
    logged = sorted(read_logged(tmp_path))
    assert [r for r, _ in logged] == sorted(read_requests(tmp_path))
    assert len(logged) == 4  # 102.0 has five fields: the shape of the oldest logs
    by_start = {r[0]: t for r, t in logged}
    assert by_start[100.0] == timing and by_start[103.0] == phases.EMPTY_FIELDS
    assert by_start[101.0] == phases.EMPTY_FIELDS


# The locustfile's own path, in a process of its own (importing it patches everything with
# gevent): answers with Server-Timing, with TEI's headers, without an answer, and a dropped
# arrival, recorded and flushed as Locust would, then read back as the cell's record reads them.
LOCUSTFILE_SCRIPT = """
from geventhttpclient.header import Headers
import embbench.load.locustfile as lf

class Answer:
    status_code = 200
    content = b"[]"
    def __init__(self, **headers):
        self.headers = Headers()
        for name, value in headers.items():
            self.headers[name.replace("_", "-")] = value

class NoAnswer:
    status_code = 0
    headers = None

timed = Answer(**{"Server-Timing": "lock;dur=1.5, forward;dur=3.25, total;dur=5",
                  "X-Batch-Size": "1", "X-Request-Id": "s-9"})
lf._record("POST", "/predict", 7.0, 10, response=timed, start_time=100.0,
           context={"input": 0, "id": "c-0"})
lf._record("POST", "/predict", 7.0, 0, response=NoAnswer(), exception=ConnectionError("x"),
           start_time=101.0, context={"input": 0, "id": "c-1"})
tei = Answer(x_queue_time="2", x_inference_time="4", x_total_time="7")
lf._record("POST", "/embed", 9.0, 10, response=tei, start_time=102.0,
           context={"input": 1, "id": "c-2"})
lf._rows.append((103.0, 0.0, 0, "dropped", 0, 103.0))
lf._flush()
"""


def test_the_locustfile_logs_each_answers_timing(tmp_path: Path) -> None:
    payloads = tmp_path / "payloads.json"
    payloads.write_text('["a", "b"]')
    env = {**os.environ, "EMBBENCH_PAYLOADS": str(payloads),
           "EMBBENCH_REQUESTS": str(tmp_path / "raw")}  # fmt: skip
    subprocess.run([sys.executable, "-c", LOCUSTFILE_SCRIPT], env=env, check=True, timeout=120)
    (log,) = (tmp_path / "raw").glob("requests-*.csv")
    assert log.read_text().splitlines()[0].split(",") == REQUEST_COLUMNS
    logged = {r[0]: dict(zip(TIMING_COLUMNS, t, strict=True)) for r, t in read_logged(log.parent)}
    assert len(logged) == 4
    ours = logged[100.0]
    assert (ours["srv_lock_ms"], ours["srv_forward_ms"], ours["srv_total_ms"]) == (
        "1.500", "3.250", "5.000",
    )  # fmt: skip
    assert ours["srv_queue_ms"] == "" and ours["batch_size"] == "1"
    assert ours["request_id"] == "s-9"  # the server's echo (or its own id) wins
    assert logged[101.0]["request_id"] == "c-1"  # no answer: the id the client sent
    assert logged[101.0]["srv_total_ms"] == ""
    assert (logged[102.0]["srv_queue_ms"], logged[102.0]["srv_total_ms"]) == ("2.000", "7.000")
    assert set(logged[103.0].values()) == {""}
