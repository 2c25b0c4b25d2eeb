"""Numbers of one cell from its raw records: requests in the window, samples in the window.

Which of them a cell uses, and over which window, is its loop's choice (embbench.load.loops).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from embbench.machine.sampler import Sample
from embbench.results import levels

# start (epoch s), latency ms, status, error, bytes, scheduled (epoch s; = start in a closed loop).
# Functions of the closed loop read only the first five.
RequestRow = tuple[float, float, int, str, int, float]
MAX_FILL_S = 120.0  # longest wait for a steady state before measuring anyway (and saying so)
SATURATION_PCT = 90.0  # a Locust process above this is no longer keeping its users busy
LITTLE_TOLERANCE = 0.20
# An open cell whose requests left more than this late at p99 (client side: the load generator
# short of CPU, or, with fewer connections than the in-flight cap, waiting for a connection) did
# not offer its schedule to the server, and its latencies carry that delay. 10 ms: gevent's
# timers on a free core are late by well under 1 ms, so beyond 10 ms the generator is starved or
# queueing, while a single embedding request here takes 5 ms or more and SLOs are 50 ms and up,
# so a delay below it moves no decision. (A fraction of the mean gap would flag every cell above
# a few hundred rps for sub-millisecond jitter that no latency percentile can see.)
LATE_BOUND_MS = 10.0


def measurement_window(
    rows: Sequence[RequestRow], warmup: float, duration: float
) -> tuple[float, float]:
    """[first request + warmup, + duration]: spawn-up and warmup fall before it."""
    if not rows:
        return 0.0, 0.0
    first = min(r[0] for r in rows)
    return first + warmup, first + warmup + duration


def steady_start(rows: Sequence[RequestRow], warmup: float, concurrency: int) -> float | None:
    """When the measured window may open, or None while the system is still filling.

    Not before `warmup` seconds after the first request, and not before `concurrency` requests
    have completed: in a closed loop each user has then come back once on average, so the
    server's queue holds what it will hold. At 1000 users and 50 rps that takes 20 s, far more
    than a fixed warmup; measuring earlier reports latencies of a queue still growing.
    """
    if len(rows) < concurrency or not rows:
        return None
    ends = sorted(r[0] + r[1] / 1000.0 for r in rows)
    first = min(r[0] for r in rows)
    return max(first + warmup, ends[concurrency - 1])


def in_window(rows: Sequence[RequestRow], start: float, end: float) -> list[RequestRow]:
    """Requests that completed inside the window (completions are what throughput counts)."""
    return [r for r in rows if start <= r[0] + r[1] / 1000.0 <= end]


def summarize_requests(rows: Sequence[RequestRow], duration: float) -> dict[str, Any]:
    ok = np.array([r[1] for r in rows if r[2] == 200 and not r[3]], dtype=np.float64)
    kinds = Counter(r[3] or ("http" if r[2] != 200 else "") for r in rows)
    failures = sum(count for kind, count in kinds.items() if kind)
    out: dict[str, Any] = {
        "load_model": levels.CLOSED,
        "requests": len(rows),
        "failures": failures,
        "duration_s": duration,
        "rps": len(ok) / duration if duration > 0 else 0.0,
        "errors_connection": kinds.get("connection", 0),
        "errors_timeout": kinds.get("timeout", 0),
        "errors_429": kinds.get("429", 0),
        "errors_4xx": kinds.get("4xx", 0),
        "errors_5xx": kinds.get("5xx", 0),
        "errors_other": kinds.get("http", 0),
    }
    if len(ok):
        out.update(latency_columns(ok))
    return out


def latency_columns(latencies_ms: npt.NDArray[np.float64]) -> dict[str, float]:
    """The latency_* columns of a cell from its successful requests' latencies."""
    p50, p90, p95, p99 = np.percentile(latencies_ms, [50, 90, 95, 99])
    return {
        "latency_mean_ms": float(latencies_ms.mean()),
        "latency_p50_ms": float(p50),
        "latency_p90_ms": float(p90),
        "latency_p95_ms": float(p95),
        "latency_p99_ms": float(p99),
        "latency_max_ms": float(latencies_ms.max()),
    }


def open_window(rows: Sequence[RequestRow], warmup: float, duration: float) -> tuple[float, float]:
    """[schedule zero + warmup, + duration]: the first arrival is due at the schedule's zero
    (embbench.load.schedule), and every arrival is logged, dropped ones too."""
    if not rows:
        return 0.0, 0.0
    zero = min(r[5] for r in rows)
    return zero + warmup, zero + warmup + duration


def scheduled_in(rows: Sequence[RequestRow], start: float, end: float) -> list[RequestRow]:
    """Arrivals due in [start, end): an open loop's window holds what was offered in it, whenever
    it was answered (half-open, so that rate x duration arrivals of an even schedule fall in)."""
    return [r for r in rows if start <= r[5] < end]


def open_latency_ms(row: RequestRow) -> float:
    """Latency from the scheduled send: lateness plus service time."""
    return (row[0] - row[5]) * 1000.0 + row[1]


def summarize_open(
    rows: Sequence[RequestRow], start: float, end: float, offered_rps: float
) -> dict[str, Any]:
    """Columns of an open cell from all its rows (not pre-filtered: arrivals are chosen by
    scheduled time, throughput by completion time).

    `latency_*` run from the scheduled send and `service_*` from the actual one. Dropped
    arrivals are counted in `dropped`, not in `requests` or `failures`. Requests still out when
    Locust stopped were logged as timeouts by the locustfile: they count in `failures` and
    `errors_timeout`, and, like every failure, not in the latency percentiles (`error_rate`
    is what sees them). Arrivals the log lacks entirely (a crashed generator) are not seen.
    """
    duration = end - start
    arrivals = scheduled_in(rows, start, end)
    sent = [r for r in arrivals if r[3] != "dropped"]
    dropped = len(arrivals) - len(sent)
    out = summarize_requests(sent, duration)
    ok = [r for r in sent if r[2] == 200 and not r[3]]
    done = sum(1 for r in rows if r[2] == 200 and not r[3] and start <= r[0] + r[1] / 1000 <= end)
    late = np.array([(r[0] - r[5]) * 1000.0 for r in sent], dtype=np.float64)
    late_p99 = float(np.percentile(late, 99)) if len(late) else None
    out.update(
        load_model=levels.OPEN,
        offered_rps=offered_rps,
        arrivals=len(arrivals),
        arrival_rps=len(arrivals) / duration if duration > 0 else 0.0,
        dropped=dropped,
        error_rate=(out["failures"] + dropped) / len(arrivals) if arrivals else None,
        rps=done / duration if duration > 0 else 0.0,
        late_p99_ms=late_p99,
        late_max_ms=float(late.max()) if len(late) else None,
        loadgen_late=bool(late_p99 is not None and late_p99 > LATE_BOUND_MS),
    )
    if ok:
        service = np.array([r[1] for r in ok], dtype=np.float64)
        total = np.array([open_latency_ms(r) for r in ok], dtype=np.float64)
        out.update(
            service_p50_ms=float(np.percentile(service, 50)),
            service_p99_ms=float(np.percentile(service, 99)),
            **latency_columns(total),
        )
    return out


def summarize_samples(
    samples: Sequence[Sample], start: float, end: float, load_processes: int
) -> dict[str, Any]:
    window = [s for s in samples if start <= s.time <= end] or list(samples)
    if not window:
        return {}
    cpu = np.array([s.cpu_pct for s in window])
    load = np.array([s.loadgen_cpu_pct for s in window])
    load_peak = np.array([s.loadgen_cpu_max_proc for s in window])
    # With --processes, Locust's master idles while its workers load: judge the busiest one.
    saturated = bool(load_peak.mean() >= SATURATION_PCT) if load_processes else False
    return {
        "cpu_pct_mean": float(cpu.mean()),
        "cpu_pct_max": float(cpu.max()),
        "rss_mb_max": max(s.rss_mb for s in window),
        "pss_mb_max": max(s.pss_mb for s in window),
        "uss_mb_max": max(s.uss_mb for s in window),
        "server_processes": max(s.processes for s in window),
        "loadgen_cpu_pct_mean": float(load.mean()),
        "loadgen_cpu_pct_max": float(load.max()),
        "loadgen_saturated": saturated,
    }


def saturation_note(row: Mapping[str, Any]) -> str | None:
    """What to tell the user when the load generator, not the server, was the limit."""
    if not row.get("loadgen_saturated"):
        return None
    return (
        f"the load generator was saturated ({row.get('loadgen_cpu_pct_mean') or 0:.0f} % CPU); "
        "its numbers are a floor. Try --load-processes 2 or a load generator on another machine."
    )


def little_ratio(rps: float, latency_mean_ms: float | None, concurrency: int) -> float | None:
    """Throughput x mean latency over concurrency: 1.0 when every user always has a request out.

    Far below 1 means clients sat idle (a saturated load generator, connection set-up, errors
    answered fast); far above is impossible in a closed loop and means a measuring fault.
    """
    if latency_mean_ms is None or concurrency <= 0:
        return None
    return rps * latency_mean_ms / 1000.0 / concurrency


def little_ok(ratio: float | None) -> bool | None:
    return None if ratio is None else abs(ratio - 1.0) <= LITTLE_TOLERANCE
