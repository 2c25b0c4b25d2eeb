"""The command line: parse options into config objects, call the core, render the outcome.

No measuring or serving logic lives here; each command forwards to an importable function.
Server and run flags are not written here: cli_options.py derives them from the declarations.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import typer
from rich.markup import escape

from embbench.cli import gate as gate_cli
from embbench.cli.flags import run_flags, server_flags
from embbench.cli.model import ceiling, model_cmd
from embbench.cli.plan import capacity_words_of, parse_cores, plan_cmd
from embbench.cli.render import (
    console,
    err_console,
    fmt,
    friendly,
    print_table,
    progress_for_stderr,
    render_aggregate,
    render_rows,
)
from embbench.config import run as cfg
from embbench.config.options import ServerOptions, override_options
from embbench.errors import ConfigError, EmbbenchError, ExitStatus
from embbench.machine.quiet import quiet_libraries
from embbench.report.sections.base import DEFAULT_PRICE_PER_CORE_HOUR
from embbench.report.sections.capacity import HEADINGS as CAPACITY_HEADINGS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark the ways of serving a sentence-embedding model, with real servers and load."
    " Exit status: 0 ok, 1 a cell failed, 2 a usage or config error, 3 a CI check (--assert,"
    " --fail-on-regress) failed, 4 a check undecided under --strict, 130 interrupted.",
)

try:  # recent Typer vendors its own copy of click: its usage errors are not click's
    from typer._click.exceptions import UsageError as _VendoredUsageError

    USAGE_ERRORS: tuple[type[Exception], ...] = (click.UsageError, _VendoredUsageError)
except ImportError:
    USAGE_ERRORS = (click.UsageError,)
ABORTS: tuple[type[BaseException], ...] = (click.Abort, KeyboardInterrupt)


@app.command()
def variants() -> None:
    """List the serving strategies embbench can run."""
    from embbench.variants import REGISTRY

    print_table(
        "embbench variants",
        ["name", "what it is", "workers", "protocol", "seed analogue"],
        [
            [v.name, v.summary, "external" if v.external else str(v.default_workers),
             v.protocol, v.seed_analogue]
            for v in REGISTRY.values()
        ],
    )  # fmt: skip


@app.command()
@friendly
@server_flags()
def serve(
    variant: str = typer.Option(..., "--variant", help="Variant to run (see `embbench variants`)."),
    server: dict[str, Any] | None = None,
) -> None:
    """Run one server in the foreground until Ctrl-C."""
    from embbench.run.serve import serve_foreground

    given = dict(server or {})
    if given.get("port") is None:
        given["port"] = 8000
    options = override_options(ServerOptions(), given)
    code = serve_foreground(
        variant,
        options,
        on_ready=lambda url: err_console.print(
            f"[green]{escape(variant)}[/] ready at {escape(url)}  (Ctrl-C to stop)"
        ),
    )
    raise typer.Exit(code)


@app.command()
@friendly
@server_flags()
@run_flags(skip=("out",))
def run(
    variant: list[str] = typer.Option([], "--variant", help="Variant(s) to measure; repeatable."),
    config_file: Path | None = typer.Option(
        None, "--config", help="TOML run file (configs/*.toml)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Results folder (default results/)."),
    label: str | None = typer.Option(None, "--label", help="Row label (with --url)."),
    assertion: list[str] = typer.Option([], "--assert", help=gate_cli.ASSERT_HELP),
    junit: Path | None = typer.Option(None, "--junit", help=gate_cli.JUNIT_HELP),
    strict: bool = typer.Option(False, "--strict", help=gate_cli.STRICT_HELP),
    server: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Measure variants under Locust load; results go to results/<run-id>/.

    Exit status: 0 ok, 1 a cell failed, 2 usage, 3 an assertion failed, 4 one undecided
    (with --strict), 130 interrupted.
    """
    from embbench.report.gate import RUN
    from embbench.run.session import run_benchmark

    config = cfg.build_run_config(
        file=config_file,
        variants=variant,
        server=server,
        settings={**(settings or {}), "out": str(out) if out else None},
        label=label,
        assertions=assertion,
    )
    gate_cli.check_before(config, RUN)
    # SIGTERM and SIGHUP (a CI timeout, `kill`, a closed terminal) take Ctrl-C's path: stop
    # servers, keep cells.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    with progress_for_stderr() as progress:
        outcome = run_benchmark(config, progress)
    render_rows(outcome.rows, title=f"run {outcome.run_dir.name}: {_model_of(config)}")
    console.print(f"results: {outcome.run_dir}", markup=False, highlight=False)
    if outcome.interrupted:
        err_console.print("[yellow]interrupted[/]: the cells measured so far are kept.")
        raise typer.Exit(int(ExitStatus.INTERRUPTED))
    verdict = gate_cli.after_run("run", outcome.run_dir, config, junit=junit, strict=strict)
    if outcome.failed:
        err_console.print(
            f"[red]{outcome.failed} cell(s) failed[/]; see failure_reason in summary.csv"
        )
        raise typer.Exit(int(ExitStatus.CELL_FAILED))
    raise typer.Exit(verdict)


@app.command()
@friendly
@server_flags()
@run_flags(skip=("out", "rates", "concurrency", "repeats", "max_repeats", "duration"))
def capacity(
    variant: list[str] = typer.Option([], "--variant", help="Variant(s) to size; repeatable."),
    slo_p99_ms: float = typer.Option(..., "--slo-p99-ms", help="The p99 latency target (ms)."),
    max_error_rate: float = typer.Option(
        0.001, "--max-error-rate", help="Errors and drops allowed per arrival."
    ),
    max_probes: int = typer.Option(10, "--max-probes", help="Probes per variant at most."),
    quality_floor: float | None = typer.Option(
        None, "--quality-floor", help="Lowest recall@10 a variant's capacity is reported at."
    ),
    cores: str = typer.Option(
        "", "--cores", help="Core counts, e.g. 1,2: each variant's server pinned to each in turn."
    ),
    config_file: Path | None = typer.Option(None, "--config", help="TOML run file."),
    out: Path | None = typer.Option(None, "--out", help="Results folder (default results/)."),
    assertion: list[str] = typer.Option([], "--assert", help=gate_cli.ASSERT_HELP),
    junit: Path | None = typer.Option(None, "--junit", help=gate_cli.JUNIT_HELP),
    strict: bool = typer.Option(False, "--strict", help=gate_cli.STRICT_HELP),
    server: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Per variant, the highest arrival rate whose p99 stays within --slo-p99-ms.

    --assert takes capacity.csv's columns, e.g. 'capacity>=400' (qps_at_slo). Exit status as
    `run`'s: 3 an assertion failed, 4 one undecided with --strict.
    """
    from embbench.report.gate import CAPACITY
    from embbench.run.capacity import Target, run_capacity

    target = Target(
        slo_p99_ms, max_error_rate, max_probes, cores=parse_cores(cores),
        quality_floor=quality_floor,
    )  # fmt: skip
    config = cfg.build_run_config(
        file=config_file,
        variants=variant,
        server=server,
        settings={**(settings or {}), "out": str(out) if out else None},
        assertions=assertion,
    )
    gate_cli.check_before(config, CAPACITY)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    with progress_for_stderr() as progress:
        found = run_capacity(config, target, progress)
    words = capacity_words_of(found.run.run_dir)  # not a bare status beside a number
    print_table(
        f"capacity at p99 <= {slo_p99_ms:g} ms (run {found.run.run_dir.name})",
        ["label", "capacity", *(CAPACITY_HEADINGS[k] for k in (
            "qps_at_slo", "p99_at_slo_ms", "cpu_pct_at_slo", "pss_mb_at_slo",
            "cpu_ms_per_embedding"))],
        [
            [str(r["label"]), words.get(str(r["label"]), str(r["status"])),
             fmt(r.get("qps_at_slo")),
             fmt(r.get("p99_at_slo_ms")), fmt(r.get("cpu_pct_at_slo"), 0),
             fmt(r.get("pss_mb_at_slo"), 0), fmt(r.get("cpu_ms_per_embedding"), 2)]
            for r in found.rows
        ],
    )  # fmt: skip
    console.print(f"results: {found.path}", markup=False, highlight=False)
    if found.run.interrupted:
        err_console.print("[yellow]interrupted[/]: the probes measured so far are kept.")
        raise typer.Exit(int(ExitStatus.INTERRUPTED))
    raise typer.Exit(
        gate_cli.after_run("capacity", found.run.run_dir, config, junit=junit, strict=strict)
    )


@app.command("load-worker")
@friendly
def load_worker(
    master_host: str = typer.Option(..., "--master-host", help="Machine running `embbench run`."),
    master_port: int = typer.Option(5557, "--master-port", help="Its --master-port."),
    payload: str = typer.Option("short", "--payload", help="The run's --payload."),
    protocol: str = typer.Option("predict", "--protocol", help="The run's protocol."),
    seed: int = typer.Option(0, "--seed", help="The run's payload seed."),
    processes: int = typer.Option(1, "--processes", help="Locust processes on this machine."),
) -> None:
    """Lend this machine's cores to a run elsewhere (Locust's distributed mode)."""
    from embbench.config.payloads import build_payloads
    from embbench.load.locust import run_worker

    cfg.RunConfig(variants=(), url="http://unused", payload=payload, protocol=protocol)
    try:
        payloads = build_payloads(payload, count=512, seed=seed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    err_console.print(f"load worker for {master_host}:{master_port} ({payload}, {protocol})")
    raise typer.Exit(run_worker(master_host, master_port, payloads, protocol, processes))


app.command("model")(model_cmd)
app.command()(ceiling)
app.command("plan")(plan_cmd)


@app.command("report")
@friendly
def report_cmd(
    run_dir: Path | None = typer.Argument(None, help="Run folder (default: the newest)."),
    baseline: str | None = typer.Option(None, "--baseline", help="Label to compare against."),
    out: Path = typer.Option(Path("results"), "--out", help="Where runs are (for the default)."),
    force: bool = typer.Option(False, "--force", help="Write report.md again if it exists."),
    price: float = typer.Option(
        DEFAULT_PRICE_PER_CORE_HOUR,
        "--price-per-core-hour",
        help="USD per core-hour for the capacity table's cost.",
    ),
) -> None:
    """Tables, report.md and charts/*.png for a run."""
    from embbench.report.publish import publish_report

    if not price > 0:
        raise ConfigError(f"--price-per-core-hour must be positive, got {price:g}")
    published = publish_report(
        run_dir, out=out, baseline=baseline, force=force, price_per_core_hour=price
    )
    render_aggregate(published.table, title=f"run {published.run.path.name} (medians)")
    for line in _winner_lines(published.view.winners):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for label, words in capacity_words_of(published.run.path).items():  # a capacity run's answer
        console.print(f"{label}: {words}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"report: {published.markdown}")
    console.print(f"page:   {published.html}")
    for chart in published.charts:
        console.print(f"chart:  {chart}")


@app.command()
@friendly
def compare(
    run_a: Path = typer.Argument(..., help="Run folder a (the reference)."),
    run_b: Path = typer.Argument(..., help="Run folder b."),
    fail_on_regress: str | None = typer.Option(
        None, "--fail-on-regress", help=gate_cli.REGRESS_HELP
    ),
    junit: Path | None = typer.Option(None, "--junit", help=gate_cli.JUNIT_HELP),
    strict: bool = typer.Option(False, "--strict", help=gate_cli.STRICT_HELP),
) -> None:
    """Two runs side by side, as ratios b / a; with --fail-on-regress, a CI gate.

    Exit status: 0 no regression shown, 3 a regression beyond a threshold, 4 one undecided
    (with --strict), 2 usage.
    """
    from embbench.report.publish import publish_compare

    thresholds = gate_cli.thresholds_before(fail_on_regress)
    _, markdown = publish_compare(run_a, run_b)
    console.print(markdown, markup=False, highlight=False)
    if thresholds or junit is not None:
        raise typer.Exit(gate_cli.after_compare(run_a, run_b, thresholds, junit, strict))


def _winner_lines(winners: Any) -> list[str]:
    """One line per level of compare.winners' table."""
    lines = []
    for record in winners.to_dict("records"):
        head = f"winner at {record.get('level')}: "
        if record.get("decided"):
            lines.append(
                f"{head}{record.get('label')} ({fmt(record.get('rps'))} rps; "
                f"against {record.get('runner_up') or 'no other label'}: {record.get('verdict')})"
            )
        else:
            lines.append(
                f"{head}none, {record.get('verdict')} between {record.get('label')} "
                f"({fmt(record.get('rps'))} rps) and {record.get('runner_up')}"
            )
    return lines


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: click usage errors become one line and exit 2; Ctrl-C exits 130."""
    quiet_libraries()  # before any model loads, here or in a child: no third-party bars
    try:
        code = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except USAGE_ERRORS as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(getattr(exc, 'format_message', exc.__str__)())}",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(int(ExitStatus.USAGE))
    except ABORTS:
        err_console.print("interrupted")
        sys.exit(int(ExitStatus.INTERRUPTED))
    sys.exit(code if isinstance(code, int) else 0)


def _model_of(config: cfg.RunConfig) -> str:
    """The served model in one line (the first variant's: a run serves one model as a rule)."""
    from embbench.config.model import resolve_spec

    model = config.variants[0].options.model if config.variants else None
    try:
        return resolve_spec(model).summary()
    except EmbbenchError:
        return model or "an external server's model"
