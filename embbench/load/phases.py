"""Server-side phases of a request: its headers -> request-log columns -> "where the p99 went".

The locustfile keeps each answer's raw timing headers on the hot path (a few dict lookups) and
turns them into columns here only when it writes its log (`log_fields`), once a second, off the
request path. `breakdown` is the cell's summary: for the requests around the median and around
p99 (by client latency), the mean of each phase and what lies outside the server. Pure: no
Locust, no pandas, so the locustfile may import it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from embbench.results.phases import (
    GROUPS,
    PHASES,
    STEPS,
    TEI_HEADERS,
    TIMING_COLUMNS,
    batch_column,
    latency_column,
    part_column,
    timed_column,
)

# The raw headers of one answer, as the locustfile keeps them: Server-Timing, TEI's four
# x-*-time headers, X-Batch-Size, X-Request-Id (None where absent).
RawTiming = Sequence[str | None]
RAW_HEADERS = ("server-timing", *(name for name, _ in TEI_HEADERS), "x-batch-size", "x-request-id")
_KNOWN = frozenset(PHASES)
EMPTY_FIELDS = ("",) * len(TIMING_COLUMNS)

# The requests each group averages, as ranks of client latency (fractions of the sorted ok
# requests in the window). Around the median: p45-p55. Around p99: p98.5-p99.5, a band centred
# on p99 rather than the top 1-2 %: the top also holds the slowest few requests (a GC pause,
# a timeout at the limit), which are the max's story, not the p99's; the band is the requests
# whose latencies make the p99 figure itself. At 100 rps for 60 s it holds 60 requests.
BANDS: Mapping[str, tuple[float, float]] = {"p50": (0.45, 0.55), "p99": (0.985, 0.995)}


def parse_server_timing(value: str) -> dict[str, float]:
    """`Server-Timing: lock;dur=1.2, forward;dur=4.0, total;dur=5.5` -> {phase: ms}.

    Only the contract's phases are kept; a metric without a readable `dur` is skipped, as a
    browser would (W3C Server-Timing: params in any order, `desc` may be quoted)."""
    out: dict[str, float] = {}
    for metric in value.split(","):
        name, *params = metric.split(";")
        name = name.strip().lower()
        if name not in _KNOWN:
            continue
        for param in params:
            key, _, raw = param.partition("=")
            if key.strip().lower() != "dur":
                continue
            ms = _number(raw.strip().strip('"'))
            if ms is not None:
                out[name] = ms
            break
    return out


def parse_tei(values: Sequence[str | None]) -> dict[str, float]:
    """TEI's x-queue-time, x-tokenization-time, x-inference-time, x-total-time (ms) -> phases."""
    out: dict[str, float] = {}
    for (_, phase), raw in zip(TEI_HEADERS, values, strict=False):
        ms = _number(raw) if raw is not None else None
        if ms is not None:
            out[phase] = ms
    return out


def phases_of(raw: RawTiming) -> dict[str, float]:
    """The phases of one answer: Server-Timing's when it has any, else TEI's headers."""
    timing = parse_server_timing(raw[0]) if raw[0] else {}
    return timing or parse_tei(raw[1:5])


def log_fields(raw: RawTiming | None) -> tuple[str, ...]:
    """The request log's TIMING_COLUMNS of one answer (all empty without one)."""
    if not raw:
        return EMPTY_FIELDS
    timing = phases_of(raw)
    batch = _number(raw[5]) if raw[5] is not None else None
    # The log is split on commas by its reader: a request id (an echo of anything) must not
    # carry one, nor a quote or a line break.
    rid = (raw[6] or "").translate(_UNSAFE)
    return (
        *(f"{timing[p]:.3f}" if p in timing else "" for p in PHASES),
        f"{int(batch)}" if batch is not None else "",
        rid,
    )


_UNSAFE = str.maketrans({",": ";", '"': "'", "\n": " ", "\r": " "})


def breakdown(
    latency_ms: npt.ArrayLike,
    phases: Mapping[str, npt.ArrayLike],
    batch_size: npt.ArrayLike | None = None,
) -> dict[str, Any]:
    """Where the p99 went, for one cell: summary columns per group (results/phases.py).

    `latency_ms` are the client latencies of the cell's ok requests in its window (in an open
    loop, from the scheduled send); `phases` maps a phase to its values for the same requests
    (NaN where the server sent none). A group's parts are means over its timed requests (those
    with a `total`): the steps the server sent (a step no request of the group has is None, so
    the report shows only the phases a strategy has; one some requests lack counts 0 in them),
    `other` = total - steps, `outside` = latency - total. Its parts add up to its `latency`.
    No timed request in the group: every part None, `timed` 0.
    """
    latency = np.asarray(latency_ms, dtype=np.float64)
    n = len(latency)
    nan = np.full(n, np.nan)
    values = {p: np.asarray(phases.get(p, nan), dtype=np.float64) for p in PHASES}
    batch = np.asarray(batch_size if batch_size is not None else nan, dtype=np.float64)
    order = np.argsort(latency, kind="stable")
    out: dict[str, Any] = {}
    for group in GROUPS:
        lo, hi = BANDS[group]
        if n == 0:
            pick = order
        else:
            # At least one request: with few, the band is the request(s) nearest its ranks.
            first, last = math.floor(lo * (n - 1)), math.ceil(hi * (n - 1))
            pick = order[first : last + 1]
        total = values["total"][pick]
        timed = pick[~np.isnan(total)]
        out[timed_column(group)] = len(timed)
        if len(timed) == 0:
            out[latency_column(group)] = float(latency[pick].mean()) if len(pick) else None
            out[batch_column(group)] = None
            out.update({part_column(group, p): None for p in (*STEPS, "other", "outside")})
            continue
        lat, tot = latency[timed], values["total"][timed]
        steps_sum = np.zeros(len(timed))
        for step in STEPS:
            got = values[step][timed]
            if np.isnan(got).all():
                out[part_column(group, step)] = None
                continue
            got = np.nan_to_num(got, nan=0.0)
            steps_sum += got
            out[part_column(group, step)] = float(got.mean())
        # Not clipped at 0: the servers round each phase to 1 us, and the parts must add up.
        out[part_column(group, "other")] = float((tot - steps_sum).mean())
        out[part_column(group, "outside")] = float((lat - tot).mean())
        out[latency_column(group)] = float(lat.mean())
        sizes = batch[timed]
        out[batch_column(group)] = None if np.isnan(sizes).all() else float(np.nanmean(sizes))
    return out


def columns_of(
    fields: Sequence[Sequence[str]],
) -> tuple[dict[str, npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
    """The request log's timing columns (text, as `log_fields` wrote them) -> per phase and for
    the batch size, an array over the rows (NaN where empty)."""
    table = np.full((len(fields), len(PHASES) + 1), np.nan)
    for i, row in enumerate(fields):
        for j, text in enumerate(row[: len(PHASES) + 1]):
            value = _number(text)
            if value is not None:
                table[i, j] = value
    return {p: table[:, j] for j, p in enumerate(PHASES)}, table[:, len(PHASES)]


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None
