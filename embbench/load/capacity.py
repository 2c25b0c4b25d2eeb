"""Capacity at an SLO: the highest arrival rate whose p99 stays within a target, per variant.

Pure logic: `search` drives a probe callback (one open-loop cell at a given rate, run by the
caller) the way MLPerf LoadGen's peak-performance mode does: from an estimate, grow the rate
until a probe fails, then bisect between the highest pass and the lowest fail until the two
are within a tolerance. Each probe is judged from its own per-request latencies: the p99 is
known only up to an order-statistic interval, and a probe whose interval holds the SLO is "too
close" to call. It is run again; if it stays too close, the boundary is reported as
indeterminate instead of being decided by noise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.stats import binom

from embbench.load import measure
from embbench.results.cpu import server_cpu_ms

ProbeOutcome = Literal["pass", "fail", "too_close"]
Status = Literal["found", "indeterminate", "none"]

QUANTILE = 0.99
CONFIDENCE = 0.95
# Below this a probe cannot hold enough requests for a p99 in any sensible time (1,000
# requests at 1 rps is 17 minutes): a variant failing here has no capacity worth a number.
MIN_RATE = 1.0


def quantile_interval(
    values: Sequence[float], q: float = QUANTILE, confidence: float = CONFIDENCE
) -> tuple[float | None, float, float]:
    """(estimate, low, high) of the q-quantile; None and infinities where too few values.

    Distribution-free: the number of values below the true quantile is Binomial(n, q), so the
    order statistics X(l) and X(u) with P(B <= l-1) <= a/2 and P(B <= u-1) >= 1-a/2 bracket it
    with probability >= confidence. With 1,000 values the p99 interval runs from the
    983rd to the 997th value; under 370 values it has no upper end at all.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0:
        return None, -math.inf, math.inf
    cdf = binom.cdf(np.arange(n + 1), n, q)  # P(B <= k) for k = 0..n
    alpha = 1.0 - confidence
    # Ranks are 1-based: rank j is x[j - 1]; cdf[j - 1] = P(B <= j - 1).
    lows = np.nonzero(cdf <= alpha / 2)[0]
    highs = np.nonzero(cdf >= 1 - alpha / 2)[0]
    low = float(x[lows[-1]]) if len(lows) and lows[-1] >= 1 else -math.inf
    high = float(x[highs[0]]) if len(highs) and highs[0] < n else math.inf
    return float(np.percentile(x, q * 100)), low, high


def verdict_of(
    p99_low: float, p99_high: float, error_rate: float, slo_p99_ms: float, max_error_rate: float
) -> ProbeOutcome:
    # Errors decide alone: a p99 over the requests that got through says nothing of the rest.
    if error_rate > max_error_rate:
        return "fail"
    if p99_high <= slo_p99_ms:
        return "pass"
    if p99_low > slo_p99_ms:
        return "fail"
    return "too_close"


def judge_probe(
    latencies_ms: Sequence[float],
    errors: int,
    arrivals: int,
    slo_p99_ms: float,
    max_error_rate: float,
) -> ProbeOutcome:
    """pass: p99 interval wholly within the SLO and errors within the limit; fail: errors over
    the limit or interval wholly above; too_close: the SLO inside the interval."""
    if arrivals <= 0:
        return "fail"  # nothing was offered: the rate is not shown to work
    _, low, high = quantile_interval(latencies_ms)
    return verdict_of(low, high, errors / arrivals, slo_p99_ms, max_error_rate)


@dataclass(frozen=True)
class ProbeResult:
    """One probe: an open-loop cell at `rate`. `row` is the caller's (its summary row)."""

    rate: float
    requests: int  # arrivals in the window, dropped ones included
    p99_ms: float | None  # open-loop latency (from the scheduled send) of successful requests
    p99_low_ms: float
    p99_high_ms: float
    error_rate: float  # (failures + dropped) / arrivals
    verdict: ProbeOutcome
    row: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def measure(
        cls,
        rate: float,
        latencies_ms: Sequence[float],
        errors: int,
        arrivals: int,
        slo_p99_ms: float,
        max_error_rate: float,
        row: dict[str, Any] | None = None,
    ) -> ProbeResult:
        p99, low, high = quantile_interval(latencies_ms)
        error_rate = errors / arrivals if arrivals > 0 else 1.0
        return cls(
            rate=rate,
            requests=arrivals,
            p99_ms=p99,
            p99_low_ms=low,
            p99_high_ms=high,
            error_rate=error_rate,
            verdict=verdict_of(low, high, error_rate, slo_p99_ms, max_error_rate),
            row=dict(row or {}),
        )

    @classmethod
    def broken(cls, rate: float, row: dict[str, Any] | None = None) -> ProbeResult:
        """A probe whose cell failed (server crashed, wrong embeddings): the rate failed."""
        return cls(rate, 0, None, -math.inf, math.inf, 1.0, "fail", dict(row or {}))


def probe_from_rows(
    rate: float,
    rows: Sequence[measure.RequestRow],
    start: float,
    end: float,
    slo_p99_ms: float,
    max_error_rate: float,
    row: dict[str, Any] | None = None,
) -> ProbeResult:
    """A probe judged from an open cell's raw request rows and its window."""
    arrivals = measure.scheduled_in(rows, start, end)
    ok = [r for r in arrivals if r[2] == 200 and not r[3]]
    errors = len(arrivals) - len(ok)  # failures, timeouts and dropped alike
    latencies = [measure.open_latency_ms(r) for r in ok]
    return ProbeResult.measure(
        rate, latencies, errors, len(arrivals), slo_p99_ms, max_error_rate, row
    )


@dataclass(frozen=True)
class CapacityResult:
    status: Status
    qps_at_slo: float | None  # the highest rate that passed (a floor when indeterminate)
    p99_at_slo_ms: float | None
    best: ProbeResult | None
    probes: list[ProbeResult]
    slo_p99_ms: float
    max_error_rate: float
    reason: str

    def summary(self) -> dict[str, Any]:
        """The capacity.csv columns this result knows (the caller adds variant and label).

        CPU and memory come from the best probe's row (summarize_samples' columns);
        cpu_ms_per_embedding is the server's CPU time per answered request at that rate.
        """
        row = self.best.row if self.best else {}
        cpu = row.get("cpu_pct_mean")
        rps = row.get("rps")
        return {
            "slo_p99_ms": self.slo_p99_ms,
            "max_error_rate": self.max_error_rate,
            "status": self.status,
            "qps_at_slo": self.qps_at_slo,
            "p99_at_slo_ms": self.p99_at_slo_ms,
            "cpu_pct_at_slo": cpu,
            "pss_mb_at_slo": row.get("pss_mb_max"),
            "cpu_ms_per_embedding": server_cpu_ms(cpu, rps) if cpu is not None and rps else None,
            "probes": len(self.probes),
            "reason": self.reason,
        }


def search(
    probe: Callable[[float], ProbeResult],
    slo_p99_ms: float,
    max_error_rate: float,
    start_rate: float,
    *,
    growth: float = 2.0,
    tolerance: float = 0.05,
    max_probes: int = 12,
    retries: int = 1,
    min_rate: float = MIN_RATE,
) -> CapacityResult:
    """The highest rate within the SLO, to `tolerance` (relative gap between the highest pass
    and the lowest fail), in at most `max_probes` calls of `probe` (re-runs included).

    Start from an estimate (say 70 % of a short closed-loop run's throughput): while probes
    pass, multiply the rate by `growth`; while they fail, divide it, down to `min_rate`. Once a
    pass and a fail bracket the boundary, bisect. Each probe is judged here, with this SLO,
    from its interval and error rate (its own `verdict` is replaced). A too-close probe is run
    up to `retries` more times; if it stays too close, the search stops as "indeterminate",
    since bisecting on a coin flip would report noise as a number. If no rate has passed by
    then, it first steps down for a floor: "too close at X, passes at Y" tells a user more
    than no number at all.
    """
    if not (growth > 1 and 0 < tolerance < 1 and max_probes >= 1 and retries >= 0):
        raise ValueError("need growth > 1, 0 < tolerance < 1, max_probes >= 1, retries >= 0")
    if not 0 < min_rate <= start_rate:
        raise ValueError(f"start rate {start_rate} must be >= the minimum rate {min_rate}")
    probes: list[ProbeResult] = []

    def attempt(rate: float) -> ProbeResult | None:
        result = None
        for _ in range(1 + retries):
            if len(probes) >= max_probes:
                break
            raw = probe(rate)
            verdict = verdict_of(
                raw.p99_low_ms, raw.p99_high_ms, raw.error_rate, slo_p99_ms, max_error_rate
            )
            result = dataclasses.replace(raw, verdict=verdict)
            probes.append(result)
            if verdict != "too_close":
                break
        return result

    passed: ProbeResult | None = None  # highest pass
    failed: ProbeResult | None = None  # lowest fail
    stuck: ProbeResult | None = None  # too close after its re-runs
    rate = start_rate
    # 1. Bracket the boundary.
    while passed is None or failed is None:
        result = attempt(rate)
        if result is None:
            break
        if result.verdict == "too_close":
            stuck = result
            if passed is not None or rate <= min_rate:
                break
            # Nothing has passed yet: the boundary is at or below this rate, so step down as
            # after a fail, for a floor the variant is shown to hold.
            rate = max(min_rate, rate / growth)
            continue
        if result.verdict == "pass":
            passed = result
            if stuck is not None:
                break  # a floor under a rate too close to call: as far as the noise allows
            rate *= growth
        else:
            failed = result
            if passed is None and rate <= min_rate:
                break  # even the lowest sensible rate fails
            rate = max(min_rate, rate / growth)
    # 2. Bisect it.
    while stuck is None and passed is not None and failed is not None:
        if failed.rate - passed.rate <= tolerance * failed.rate:
            break
        result = attempt((passed.rate + failed.rate) / 2)
        if result is None or result.verdict == "too_close":
            stuck = result
            break
        if result.verdict == "pass":
            passed = result
        else:
            failed = result
    if stuck is not None:
        status: Status = "indeterminate"
        reason = (
            f"p99 at {stuck.rate:.1f} rps stayed within noise of the SLO "
            f"({stuck.p99_low_ms:.0f}-{stuck.p99_high_ms:.0f} ms) over {1 + retries} runs"
        )
    elif passed is None and failed is not None and failed.rate <= min_rate:
        status, reason = "none", f"fails even at {failed.rate:.1f} rps"
    elif (
        passed is not None
        and failed is not None
        and (failed.rate - passed.rate <= tolerance * failed.rate)
    ):
        status = "found"
        reason = f"passes at {passed.rate:.1f} rps, fails at {failed.rate:.1f} rps"
    else:
        status = "indeterminate"
        if passed is not None and failed is not None:
            reason = (
                f"probe budget spent ({len(probes)} probes) bisecting between "
                f"{passed.rate:.1f} and {failed.rate:.1f} rps"
            )
        else:
            reason = f"probe budget spent ({len(probes)} probes) before the boundary was bracketed"
    if status == "indeterminate" and passed is not None:
        reason += f"; passes at {passed.rate:.1f} rps"
    return CapacityResult(
        status=status,
        qps_at_slo=passed.rate if passed else None,
        p99_at_slo_ms=passed.p99_ms if passed else None,
        best=passed,
        probes=probes,
        slo_p99_ms=slo_p99_ms,
        max_error_rate=max_error_rate,
        reason=reason,
    )


def probe_seconds(
    rate: float, min_requests: int = 1000, min_s: float = 10.0, max_s: float = 60.0
) -> float:
    """Measured seconds of a probe at `rate` (warmup not included).

    Long enough for `min_requests` arrivals (1,000: the p99 interval then spans about the
    98.3rd to 99.7th percentile, narrow enough to call most rates), but never under `min_s`:
    just above capacity the queue grows by (rate - capacity) per second, so a probe of T
    seconds sees an overload of e only once e * T exceeds the SLO (10 s shows a 1 % overload
    against a 100 ms SLO). Never over `max_s`, so that a search of 12 probes fits in about
    12 x (max_s + warmup + start-up), 15 minutes per variant at the defaults; the price is
    that below min_requests / max_s (17 rps) a probe holds fewer requests, its interval
    widens, and under 370 requests it cannot pass at all (too close).
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate}")
    return min(max_s, max(min_s, min_requests / rate))
