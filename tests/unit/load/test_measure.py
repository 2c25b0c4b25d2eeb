from __future__ import annotations

from pathlib import Path

import pytest

from embbench.load import measure
from embbench.machine.sampler import Sample


def test_window_starts_after_warmup() -> None:
    rows = [(100.0, 10.0, 200, "", 1), (101.0, 10.0, 200, "", 1)]
    assert measure.measurement_window(rows, warmup=2, duration=5) == (102.0, 107.0)


def test_in_window_counts_completions() -> None:
    rows = [
        (101.5, 600.0, 200, "", 1),  # completes at 102.1: in
        (101.0, 500.0, 200, "", 1),  # completes at 101.5: before
        (106.9, 200.0, 200, "", 1),  # completes at 107.1: after
    ]
    assert measure.in_window(rows, 102.0, 107.0) == [rows[0]]


def test_summary_percentiles_from_raw_latencies() -> None:
    rows = [(0.0, float(ms), 200, "", 10) for ms in range(1, 101)]
    rows += [(0.0, 5.0, 0, "connection", 0), (0.0, 1.0, 429, "429", 0), (0.0, 1.0, 503, "5xx", 0)]
    out = measure.summarize_requests(rows, duration=10.0)
    assert out["requests"] == 103
    assert out["failures"] == 3
    assert out["rps"] == pytest.approx(10.0)
    assert out["latency_p50_ms"] == pytest.approx(50.5)
    assert out["latency_p99_ms"] == pytest.approx(99.01)
    assert out["latency_max_ms"] == 100.0
    assert (out["errors_connection"], out["errors_429"], out["errors_5xx"]) == (1, 1, 1)


def test_little_ratio() -> None:
    assert measure.little_ratio(100.0, 100.0, 10) == pytest.approx(1.0)
    assert measure.little_ok(measure.little_ratio(50.0, 100.0, 10)) is False
    assert measure.little_ok(measure.little_ratio(95.0, 100.0, 10)) is True
    assert measure.little_ratio(10.0, None, 10) is None


def sample(t: float, cpu: float, load_peak: float) -> Sample:
    return Sample(t, cpu, 100.0 + t, 80.0, 60.0, 10, 2, load_peak, load_peak)


def test_samples_in_window_and_saturation() -> None:
    samples = [sample(t, cpu, peak) for t, cpu, peak in [(0, 10, 0), (5, 150, 95), (6, 170, 97)]]
    out = measure.summarize_samples(samples, 4.0, 7.0, load_processes=1)
    assert out["cpu_pct_mean"] == pytest.approx(160.0)
    assert out["rss_mb_max"] == pytest.approx(106.0)
    assert out["loadgen_saturated"] is True
    calm = measure.summarize_samples([sample(5, 100, 30)], 4.0, 7.0, load_processes=1)
    assert calm["loadgen_saturated"] is False


def test_window_waits_for_every_user_to_come_back() -> None:
    # 4 users; the 4th completion comes at 100 + 9 s, long after a 2 s warmup.
    rows = [(100.0, 1000.0 * d, 200, "", 1) for d in (1, 3, 5, 9, 12)]
    assert measure.steady_start(rows, warmup=2.0, concurrency=4) == pytest.approx(109.0)
    assert measure.steady_start(rows[:3], warmup=2.0, concurrency=4) is None
    # Fast servers: the warmup is what waits.
    quick = [(100.0, 10.0, 200, "", 1)] * 8
    assert measure.steady_start(quick, warmup=2.0, concurrency=4) == pytest.approx(102.0)


def test_closed_cells_say_so() -> None:
    assert measure.summarize_requests([(0.0, 1.0, 200, "", 1)], 1.0)["load_model"] == "closed"


def open_rows() -> list[measure.RequestRow]:
    """An open cell at 10 rps with its window at [100, 110): arrival i due at 100 + i / 10."""
    rows: list[measure.RequestRow] = []
    for i in range(100):
        due = 100.0 + i / 10
        rows.append((due + 0.002, 20.0, 200, "", 10, due))  # sent 2 ms late, 20 ms service
    # A 1 s stall hit arrivals 10-14: sent on time, answered when the server woke up.
    for i in range(10, 15):
        due = 100.0 + i / 10
        rows[i] = (due + 0.002, 2000.0 - i * 100.0, 200, "", 10, due)
    rows[50] = (105.0, 0.0, 0, "dropped", 0, 105.0)
    rows[60] = (106.0 + 0.002, 3.0, 503, "5xx", 0, 106.0)
    rows[99] = (109.9 + 0.002, 500.0, 0, "timeout", 0, 109.9)  # still out when Locust stopped
    # Outside the window by schedule: a warmup arrival answered inside it, one after it.
    rows.append((99.5, 700.0, 200, "", 10, 99.5))
    rows.append((110.0, 1.0, 200, "", 10, 110.0))
    return rows


def test_open_window_starts_at_the_schedule_zero() -> None:
    rows = [(100.3, 5.0, 200, "", 1, 100.2), (100.1, 0.0, 0, "dropped", 0, 100.0)]
    assert measure.open_window(rows, warmup=2.0, duration=10.0) == (102.0, 112.0)


def test_open_summary_counts_from_the_scheduled_send() -> None:
    out = measure.summarize_open(open_rows(), 100.0, 110.0, offered_rps=10.0)
    assert out["load_model"] == "open" and out["offered_rps"] == 10.0
    assert out["arrivals"] == 100 and out["dropped"] == 1
    assert out["requests"] == 99 and out["failures"] == 2  # dropped counted apart
    assert (out["errors_5xx"], out["errors_timeout"]) == (1, 1)
    assert out["error_rate"] == pytest.approx(3 / 100)
    # Throughput: successful completions inside the window, whichever arrival they answer:
    # the 97 ok arrivals of the window, and the warmup one answered at 100.2 (not the one due
    # at 110, answered after the window).
    assert out["rps"] == pytest.approx(98 / 10.0)
    assert out["late_p99_ms"] == pytest.approx(2.0, abs=1e-3) and out["loadgen_late"] is False
    # Service time ignores the wait; open-loop latency includes the 2 ms lateness.
    assert out["service_p50_ms"] == pytest.approx(20.0)
    assert out["latency_p50_ms"] == pytest.approx(22.0, abs=1e-3)
    assert out["latency_max_ms"] == pytest.approx(1002.0, abs=1e-3)
    assert out["latency_p99_ms"] > out["latency_p95_ms"] >= 22.0


def test_a_late_load_generator_is_flagged() -> None:
    rows = [(100.0 + i / 10 + 0.05, 20.0, 200, "", 10, 100.0 + i / 10) for i in range(100)]
    out = measure.summarize_open(rows, 100.0, 110.0, offered_rps=10.0)
    assert out["late_p99_ms"] == pytest.approx(50.0, abs=1e-3)
    assert out["loadgen_late"] is True
    assert out["service_p99_ms"] == pytest.approx(20.0)
    assert out["latency_p99_ms"] == pytest.approx(70.0, abs=1e-3)


def test_request_log_reads_old_and_new_columns(tmp_path: Path) -> None:
    from embbench.load.locust import RequestLog

    (tmp_path / "requests-1.csv").write_text(
        "start,latency_ms,status,error,bytes\n1.0,2.5,200,,10\n"
    )
    (tmp_path / "requests-2.csv").write_text(
        "start,latency_ms,status,error,bytes,scheduled\n"
        "2.0,1.0,200,,12,1.999\n2.1,0.0,0,dropped,0,2.05\n"
    )
    assert sorted(RequestLog(tmp_path).poll()) == [
        (1.0, 2.5, 200, "", 10, 1.0),  # a closed-loop row is due when it was sent
        (2.0, 1.0, 200, "", 12, 1.999),
        (2.1, 0.0, 0, "dropped", 0, 2.05),
    ]
