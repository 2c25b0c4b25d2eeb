"""`embbench capacity`: per variant, the highest arrival rate whose p99 meets a target.

Each probe is an open-loop cell of the run (a row of summary.csv like any other), long enough
for its p99 (capacity.probe_seconds); capacity.search decides the next rate from the probes,
as MLPerf LoadGen's peak search does: an estimate from a short closed-loop cell, growth until a
probe fails, then bisection. One row per variant goes to capacity.csv.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embbench.config.run import RunConfig, VariantRun
from embbench.errors import ConfigError
from embbench.load import capacity
from embbench.load.loops.base import Loop
from embbench.load.loops.closed import ClosedLoop
from embbench.load.loops.open import OpenLoop
from embbench.machine.affinity import split_cores
from embbench.results import folder as results
from embbench.results.cores import cores_label
from embbench.run.plan import Cell
from embbench.run.progress import ProgressListener
from embbench.run.session import RunOutcome, RunSession, check

# The estimate: a short closed loop with enough users to fill any server of ours on 2 cores.
ESTIMATE_USERS = 32
ESTIMATE_SECONDS = 5.0
START_FRACTION = 0.7  # of the estimate's throughput: the first probe should pass


@dataclass(frozen=True)
class Target:
    slo_p99_ms: float
    max_error_rate: float = 0.001
    max_probes: int = 10
    min_requests: int = 1000  # per probe: enough for a p99 (capacity.probe_seconds)
    max_probe_s: float = 60.0
    # --cores 1,2: each variant searched once per count, its server's tree pinned to that many
    # cores with as many threads, the load generator on the others; (): unpinned, as before.
    cores: tuple[int, ...] = ()
    # --quality-floor: the lowest recall@10 (run/retrieval.py) at which a variant's capacity is
    # reported; None: not asked.
    quality_floor: float | None = None

    def __post_init__(self) -> None:
        if self.quality_floor is not None and not 0 < self.quality_floor <= 1:
            raise ConfigError(f"--quality-floor must be in (0, 1], got {self.quality_floor:g}")
        for count in self.cores:
            split_cores(count)  # a count this machine cannot give: one line, exit 2, nothing run
        if not self.slo_p99_ms > 0:
            raise ConfigError(f"--slo-p99-ms must be positive, got {self.slo_p99_ms:g}")
        if not 0 <= self.max_error_rate < 1:
            raise ConfigError(f"--max-error-rate must be in [0, 1), got {self.max_error_rate:g}")
        if self.max_probes < 2:
            raise ConfigError(f"--max-probes must be at least 2, got {self.max_probes}")


@dataclass
class CapacityOutcome:
    run: RunOutcome
    rows: list[dict[str, Any]]
    path: Path


def run_capacity(
    config: RunConfig, target: Target, progress: ProgressListener | None = None
) -> CapacityOutcome:
    progress = progress or ProgressListener()
    # The ceiling's CPU per embedding is what the capacity table sets each server against; the
    # retrieval corpus waits for the window to close (RunConfig.corpus_after_window).
    config = dataclasses.replace(config, ceiling=True, corpus_after_window=True)
    if target.quality_floor is not None and not config.quality_corpus:
        raise ConfigError("--quality-floor needs the retrieval measurement (--quality-corpus > 0)")
    check(config)
    session = RunSession(config, progress, [])
    session.record = dataclasses.replace(
        session.record, capacity=dataclasses.asdict(target), slo_p99_ms=target.slo_p99_ms
    )
    path = session.folder.capacity
    found: list[dict[str, Any]] = []
    interrupted = False
    try:
        session.prepare_backends()
        session.save()
        for run in config.variants:
            for count in target.cores or (None,):
                found.append(_one_variant(session, run, target, progress, count))
                results.write_capacity(path, found)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        outcome = session.finish(interrupted)
    return CapacityOutcome(outcome, found, path)


def _one_variant(
    session: RunSession,
    run: VariantRun,
    target: Target,
    progress: ProgressListener,
    cores: int | None = None,
) -> dict[str, Any]:
    config = session.config
    if cores is not None:
        # Threads to match the cores (shared among its workers and streams), and a label of its
        # own: the two counts' rows never pool.
        sharing = (run.options.workers or 1) * (run.options.streams or 1)
        options = dataclasses.replace(run.options, threads=max(1, cores // sharing))
        run = dataclasses.replace(run, options=options, label=cores_label(run.display, cores))
        config = dataclasses.replace(config, pin_cores=cores)
    counter = [0]
    cells: list[dict[str, Any]] = []  # every cell's row: the quality floor is judged on them

    def next_cell(loop: Loop) -> Cell:
        cell = Cell(session.index, run, loop, counter[0])
        session.index += 1
        counter[0] += 1
        return cell

    closed = ClosedLoop(ESTIMATE_USERS)
    estimate = session.run_cell(
        next_cell(closed),
        dataclasses.replace(config, duration=ESTIMATE_SECONDS, warmup=2.0),
    )
    cells.append(dict(estimate.row))
    rps = float(estimate.row.get("rps") or 0.0)
    progress.note(f"{run.display}: {rps:.1f} rps at {closed.label}; probing from there")

    def probe(rate: float) -> capacity.ProbeResult:
        seconds = capacity.probe_seconds(rate, target.min_requests, max_s=target.max_probe_s)
        runner = session.run_cell(
            next_cell(OpenLoop(round(rate, 2), config.max_inflight)),
            dataclasses.replace(config, duration=seconds),
        )
        row = dict(runner.row)
        cells.append(row)
        if row["status"] != results.OK or not runner.request_rows:
            return capacity.ProbeResult.broken(rate, row)
        return capacity.probe_from_rows(
            rate, runner.request_rows, row["window_start"], row["window_end"],
            target.slo_p99_ms, target.max_error_rate, row,
        )  # fmt: skip

    start = max(capacity.MIN_RATE, START_FRACTION * rps)
    result = capacity.search(
        probe, target.slo_p99_ms, target.max_error_rate, start, max_probes=target.max_probes
    )
    progress.note(f"{run.display}: {result.status}, {result.reason}")
    found = {"variant": run.name, "label": run.display, **result.summary(), "cores": cores}
    found.update(quality_of(cells, target.quality_floor))
    if found["status"] == BELOW_FLOOR:
        progress.note(f"{run.display}: {found['reason']}")
    return found


BELOW_FLOOR = "below_quality_floor"  # capacity.csv's status of a variant that fails the floor


def quality_of(cells: list[dict[str, Any]], floor: float | None) -> dict[str, Any]:
    """A variant's retrieval agreement over the cells it ran (its lowest recall@10 and that
    cell's interval: the floor must hold at every rate probed) and, with a floor it does not
    hold, its capacity withheld: status below_quality_floor, no qps_at_slo."""
    measured = [c for c in cells if c.get("recall_at_10") is not None]
    out: dict[str, Any] = {"quality_floor": floor}
    if not measured:
        if floor is not None:
            why = f"retrieval agreement was not measured; floor {floor:g} unknown"
            out.update(status=BELOW_FLOOR, qps_at_slo=None, p99_at_slo_ms=None, reason=why)
        return out
    worst = min(measured, key=lambda c: float(c["recall_at_10"]))
    out.update(
        recall_at_10=worst["recall_at_10"], recall_at_10_low=worst.get("recall_at_10_low"),
        recall_at_10_high=worst.get("recall_at_10_high"),
        quality_queries=worst.get("quality_queries"),
    )  # fmt: skip
    if floor is not None and float(worst["recall_at_10"]) < floor:
        out.update(
            status=BELOW_FLOOR, qps_at_slo=None, p99_at_slo_ms=None,
            reason=(f"recall@10 {float(worst['recall_at_10']):.3f} "
                    f"[{_num(worst.get('recall_at_10_low'))}, "
                    f"{_num(worst.get('recall_at_10_high'))}] over "
                    f"{worst.get('quality_queries')} queries is below the floor {floor:g}"),
        )  # fmt: skip
    return out


def _num(value: Any) -> str:
    return "?" if value is None else f"{float(value):.3f}"
