"""A cell's files -> its summary row.

`first_row` holds what is known of a cell before it runs (its variant, level and settings);
`record_cell`, once the cell's processes are stopped, reads its request log, lets its loop fix
the measured window and measure it, checks the answers kept in the window, adds the resources
sampled, writes the cell's files (requests/, samples/, checks/) and removes the raw logs.
run/cell.py drives the cell; this module only reads and writes what the cell left behind.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from embbench.config.model import BUNDLED_MODEL
from embbench.config.run import RunConfig
from embbench.load import answers, measure, phases
from embbench.load.locust import read_logged
from embbench.load.loops.base import Window
from embbench.load.measure import RequestRow
from embbench.machine.host import cpu_count
from embbench.machine.sampler import Sample
from embbench.results import folder as results
from embbench.results import levels
from embbench.results.columns import Row
from embbench.run import quality
from embbench.run.plan import Cell
from embbench.run.probe import threshold_for


@dataclass
class Recorded:
    """What a caller may judge the cell by besides its row."""

    rows: list[RequestRow]  # every request of the cell, sorted (capacity probes judge them)
    verdict: quality.AnswerCheck | None  # the answers checked under load, if any were


def first_row(config: RunConfig, cell: Cell) -> Row:
    """The row before the cell runs: what it is, and what nothing has been measured of yet."""
    opts = cell.run.options
    return Row(
        {
            "variant": cell.run.name,
            "label": cell.run.display,
            "cell": cell.name,
            **cell.loop.columns(),  # concurrency, load_model (the loop), offered_rps
            "repeat": cell.repeat,
            "payload": config.payload,
            "padding": opts.padding,
            "truncation": opts.truncation,
            "backend": opts.backend,
            "quantize": opts.quantize,
            "max_seq_length": opts.max_seq_length,
            "model": opts.model or BUNDLED_MODEL,
            "cores": cpu_count(),
            "load_processes": config.load_processes,
            "cosine_threshold": threshold_for(opts.quantize, opts.backend),
            "requests": 0,
            "failures": 0,
            "started_at": time.time(),
        }
    )


def record_cell(
    row: Row,
    cell: Cell,
    config: RunConfig,
    folder: results.RunFolder,
    *,
    live_window: Window | None,
    samples: list[Sample],
    reference: quality.Vectors | None,
    warn: Callable[[str], None],
) -> Recorded:
    """Fill `row` from the cell's files and write its per-cell files. `live_window` is the
    window the runner fixed while Locust ran, if it did; `reference` the inputs' embeddings."""
    raw = folder.raw(cell.name)
    logged = sorted(read_logged(raw)) if raw.exists() else []
    rows = [r for r, _ in logged]
    loop = cell.loop
    start, end = loop.window(rows, live_window, config.warmup, config.duration)
    duration = config.duration
    if row.get("status") == results.INTERRUPTED and rows:
        last = max(r[0] + r[1] / 1000 for r in rows)
        duration = max(0.0, min(end, last) - start)
    row.update(window_start=start or None, window_end=(start + duration) or None)
    if rows and start:
        row["fill_s"] = start - rows[0][0]
    if rows:
        row.update(loop.summarize(rows, start, duration))
        row.update(_where_time_went(row, logged, start, start + duration))
    if row.get("status") == results.OK and not row.get("requests"):
        # A window with no request in it measured nothing: never an ok cell.
        row["status"] = results.FAILED
        row["failure_reason"] = "no request completed in the measured window"
    verdict = None
    if rows and start:
        verdict = _check(
            row, config, folder.checks(cell.name), raw, reference, start, start + duration
        )
    if samples:
        row.update(
            measure.summarize_samples(samples, start, start + duration, config.load_processes)
        )
    row.update(loop.checks(row))  # Little's law, in a closed loop
    saturated = measure.saturation_note(row)
    if saturated:
        warn(f"{cell.name}: {saturated}")
    if rows:
        results.write_rows(
            folder.requests(cell.name), results.REQUEST_COLUMNS, (r + t for r, t in logged)
        )
    if samples:
        results.write_rows(
            folder.samples(cell.name),
            results.SAMPLE_COLUMNS,
            _sample_rows(samples, start, start + duration),
        )
    with contextlib.suppress(OSError):
        for path in [*raw.glob("requests-*.csv"), *raw.glob(answers.RESPONSES_GLOB)]:
            path.unlink()
    return Recorded(rows, verdict)


def _check(
    row: Row,
    config: RunConfig,
    checks: Path,
    raw: Path,
    reference: quality.Vectors | None,
    start: float,
    end: float,
) -> quality.AnswerCheck | None:
    """The answers kept in the window against their own inputs' references: a mismatched
    answer, or one below the threshold as for the probe, makes the cell bad_embeddings."""
    if reference is None or not config.check_rate:
        return None
    kept = answers.in_window(answers.read_kept(raw), start, end) if raw.exists() else []
    threshold = row["cosine_threshold"]
    verdict = quality.check_answers(kept, row["protocol"], reference, threshold)
    row.update(verdict.summary())
    if verdict.checked:
        lowest = float(verdict.cosines.min())
        probe = row.get("probe_cosine_min")
        row["cosine_min"] = lowest if probe is None else min(probe, lowest)
        checks.parent.mkdir(exist_ok=True)
        results.write_rows(checks, quality.CHECK_COLUMNS, verdict.rows(kept))
    reason = quality.failure(verdict, row.get("cosine_min"), threshold)
    if reason is None:
        return verdict
    row["correct"] = False
    if row.get("status") == results.OK:
        row["status"] = results.BAD_EMBEDDINGS
        row["failure_reason"] = reason
    return verdict


def _where_time_went(
    row: Row, logged: list[tuple[RequestRow, tuple[str, ...]]], start: float, end: float
) -> dict[str, object]:
    """The p50_*/p99_* columns: the server's phases of the ok requests the loop measured (a
    closed loop's completed in the window, an open loop's due in it), by client latency (an
    open loop's from the scheduled send, as its latency_* columns)."""
    timing = {id(r): t for r, t in logged}  # the loop's selections keep the row objects
    opened = row.get("load_model") == levels.OPEN
    pick = measure.scheduled_in if opened else measure.in_window
    ok = [r for r in pick([r for r, _ in logged], start, end) if r[2] == 200 and not r[3]]
    latency = [measure.open_latency_ms(r) if opened else r[1] for r in ok]
    values, batch = phases.columns_of([timing[id(r)] for r in ok])
    return phases.breakdown(latency, values, batch)


def _sample_rows(samples: list[Sample], start: float, end: float) -> Iterator[tuple[object, ...]]:
    for s in samples:
        yield (
            f"{s.time:.3f}",
            _phase(s.time, start, end),
            round(s.cpu_pct, 1),
            round(s.rss_mb, 1),
            round(s.pss_mb, 1),
            round(s.uss_mb, 1),
            s.threads,
            s.processes,
            round(s.loadgen_cpu_pct, 1),
        )


def _phase(t: float, start: float, end: float) -> str:
    if t < start:
        return "warmup"
    return "measure" if t <= end else "after"
