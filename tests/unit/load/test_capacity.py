from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from embbench.load import capacity
from embbench.load.capacity import ProbeResult

SLO_MS = 100.0
KNEE = 200.0  # rps where the synthetic server's p99 crosses the SLO


def synthetic_latencies(rate: float, n: int = 2000, seed: int = 0) -> np.ndarray:
    """A server with a sharp knee, as queues have: p99 = SLO * exp(20 * (rate / KNEE - 1)),
    so 1 % more rate is 20 % more p99 and the SLO is crossed at KNEE. Exponential latencies."""
    p99 = SLO_MS * math.exp(20 * (rate / KNEE - 1))
    return np.random.default_rng(seed).exponential(p99 / -math.log(0.01), size=n)


def knee_probe(calls: list[float]) -> Callable[[float], ProbeResult]:
    def probe(rate: float) -> ProbeResult:
        calls.append(rate)
        lat = synthetic_latencies(rate, seed=len(calls))
        return ProbeResult.measure(rate, list(lat), 0, len(lat), SLO_MS, 0.001)

    return probe


def test_order_statistic_interval_brackets_the_sample_p99() -> None:
    values = np.arange(1.0, 1001.0)
    p99, low, high = capacity.quantile_interval(values)
    assert low <= p99 <= high
    assert (low, high) == (983.0, 997.0)  # ranks from Binomial(1000, 0.99), 95 %
    # Too few values for an upper end: a p99 cannot be shown below anything.
    assert capacity.quantile_interval(np.arange(1.0, 101.0))[2] == math.inf


def test_judge() -> None:
    fast = list(np.linspace(1.0, 50.0, 1000))
    assert capacity.judge_probe(fast, 0, 1000, SLO_MS, 0.001) == "pass"
    assert capacity.judge_probe(fast, 5, 1000, SLO_MS, 0.001) == "fail"  # errors over the limit
    slow = list(np.linspace(100.0, 500.0, 1000))
    assert capacity.judge_probe(slow, 0, 1000, SLO_MS, 0.001) == "fail"
    # The SLO falls between the 983rd and 997th values: too close to call.
    near = list(np.linspace(1.0, 1000.0, 1000) / 990.0 * SLO_MS)
    assert capacity.judge_probe(near, 0, 1000, SLO_MS, 0.001) == "too_close"
    assert capacity.judge_probe(fast[:100], 0, 100, SLO_MS, 0.001) == "too_close"  # too few
    assert capacity.judge_probe([], 0, 0, SLO_MS, 0.001) == "fail"


def test_search_finds_the_knee_within_tolerance() -> None:
    calls: list[float] = []
    result = capacity.search(knee_probe(calls), SLO_MS, 0.001, start_rate=70.0, tolerance=0.05)
    assert result.status == "found", result.reason
    assert result.qps_at_slo is not None and result.best is not None
    # The highest pass is below the knee and within the tolerance (plus the p99's noise) of it.
    assert KNEE * 0.90 <= result.qps_at_slo <= KNEE
    assert result.best.verdict == "pass" and result.p99_at_slo_ms == result.best.p99_ms
    failing = min(p.rate for p in result.probes if p.verdict == "fail")
    assert (failing - result.qps_at_slo) / failing <= 0.05
    assert calls == [p.rate for p in result.probes] and len(calls) <= 12
    assert calls[:3] == [70.0, 140.0, 280.0]  # grows, then bisects


def test_a_probe_too_close_to_call_is_rerun_then_indeterminate() -> None:
    calls: list[float] = []

    def noisy(rate: float) -> ProbeResult:
        calls.append(rate)
        if rate < 150:
            low, high = 40.0, 60.0
        elif rate < 170:
            low, high = 80.0, 120.0  # the SLO inside the interval, every time
        else:
            low, high = 150.0, 300.0
        return ProbeResult(rate, 1000, (low + high) / 2, low, high, 0.0, "pass")

    result = capacity.search(noisy, SLO_MS, 0.001, start_rate=100.0, retries=1)
    assert result.status == "indeterminate"
    assert calls == [100.0, 200.0, 150.0, 150.0]  # 150 run twice, then given up
    assert result.qps_at_slo == 100.0  # the highest rate shown to pass: a floor
    assert "150.0 rps" in result.reason and [p.verdict for p in result.probes[-2:]] == [
        "too_close",
        "too_close",
    ]


def test_too_close_before_any_pass_steps_down_for_a_floor() -> None:
    # Fails high, too close twice lower down, passes lower still: the floor is reported.
    calls: list[float] = []

    def slow(rate: float) -> ProbeResult:
        calls.append(rate)
        if rate > 40:
            low, high = 150.0, 300.0
        elif rate > 20:
            low, high = 80.0, 120.0
        else:
            low, high = 40.0, 60.0
        return ProbeResult(rate, 1000, (low + high) / 2, low, high, 0.0, "pass")

    result = capacity.search(slow, SLO_MS, 0.001, start_rate=100.0, retries=1)
    assert calls == [100.0, 50.0, 25.0, 25.0, 12.5]
    assert result.status == "indeterminate" and result.qps_at_slo == 12.5
    assert "25.0 rps" in result.reason and "passes at 12.5 rps" in result.reason
    # Too close all the way down to the minimum rate: no floor, still not "none".
    calls.clear()

    def never_clear(rate: float) -> ProbeResult:
        calls.append(rate)
        return ProbeResult(rate, 1000, 100.0, 90.0, 110.0, 0.0, "pass")

    stuck = capacity.search(never_clear, SLO_MS, 0.001, start_rate=4.0, retries=0, min_rate=1.0)
    assert calls == [4.0, 2.0, 1.0]
    assert stuck.status == "indeterminate" and stuck.qps_at_slo is None


def test_a_variant_failing_at_the_lowest_rate_has_no_capacity() -> None:
    calls: list[float] = []

    def hopeless(rate: float) -> ProbeResult:
        calls.append(rate)
        return ProbeResult.broken(rate)

    result = capacity.search(hopeless, SLO_MS, 0.001, start_rate=10.0, min_rate=1.0)
    assert result.status == "none" and result.qps_at_slo is None and result.best is None
    assert calls == [10.0, 5.0, 2.5, 1.25, 1.0]


def test_search_never_exceeds_its_probe_budget() -> None:
    calls: list[float] = []

    def always_fine(rate: float) -> ProbeResult:
        calls.append(rate)
        return ProbeResult(rate, 1000, 10.0, 9.0, 11.0, 0.0, "pass")

    result = capacity.search(always_fine, SLO_MS, 0.001, start_rate=10.0, max_probes=5)
    assert len(calls) == 5 and result.status == "indeterminate"
    assert result.qps_at_slo == 160.0 and "budget" in result.reason
    # Re-runs count too: a budget of 3 with every probe too close stops at 3.
    flaky: list[float] = []

    def always_close(rate: float) -> ProbeResult:
        flaky.append(rate)
        return ProbeResult(rate, 1000, 100.0, 90.0, 110.0, 0.0, "pass")

    capacity.search(always_close, SLO_MS, 0.001, 10.0, max_probes=3, retries=5)
    assert len(flaky) == 3


def test_the_search_judges_with_its_own_slo() -> None:
    # The probe's own verdict is ignored: the numbers are judged against the search's SLO.
    def lying(rate: float) -> ProbeResult:
        return ProbeResult(rate, 1000, 500.0, 400.0, 600.0, 0.0, "pass")

    result = capacity.search(lying, SLO_MS, 0.001, start_rate=4.0, min_rate=1.0)
    assert result.status == "none"


def test_summary_columns_come_from_the_best_probe() -> None:
    row = {"cpu_pct_mean": 150.0, "rps": 100.0, "pss_mb_max": 420.0}
    best = ProbeResult(100.0, 1000, 80.0, 70.0, 90.0, 0.0, "pass", row)
    result = capacity.CapacityResult("found", 100.0, 80.0, best, [best], SLO_MS, 0.001, "ok")
    out = result.summary()
    assert out["cpu_ms_per_embedding"] == pytest.approx(15.0)  # 1.5 cores / 100 per s
    assert (out["pss_mb_at_slo"], out["probes"], out["status"]) == (420.0, 1, "found")


@pytest.mark.parametrize("rate", [1.0, 50.0, 1000.0])
def test_probe_seconds(rate: float) -> None:
    seconds = capacity.probe_seconds(rate)
    assert 10.0 <= seconds <= 60.0
    if 1000 / 60.0 <= rate <= 100.0:
        assert seconds * rate >= 1000
