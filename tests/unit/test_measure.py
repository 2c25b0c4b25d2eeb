from __future__ import annotations

import pytest

from embbench import measure
from embbench.sampler import Sample


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
