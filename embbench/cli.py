"""The command line: parse options into config objects, call the core, render with Rich.

No measuring or serving logic lives here; each command forwards to an importable function.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from embbench import config as cfg
from embbench.errors import ConfigError, EmbbenchError, ExitStatus
from embbench.progress import Progress as RunProgress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark the ways of serving a sentence-embedding model, with real servers and load.",
)
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

try:  # recent Typer vendors its own copy of click: its usage errors are not click's
    from typer._click.exceptions import UsageError as _VendoredUsageError

    USAGE_ERRORS: tuple[type[Exception], ...] = (click.UsageError, _VendoredUsageError)
except ImportError:
    USAGE_ERRORS = (click.UsageError,)
ABORTS: tuple[type[BaseException], ...] = (click.Abort, KeyboardInterrupt)


def friendly(func: F) -> F:
    """A core error becomes one line on stderr and its exit status, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EmbbenchError as exc:
            err_console.print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(int(exc.exit_status)) from None

    return wrapper  # type: ignore[return-value]


# -- server options shared by serve and run ---------------------------------------------------

ModelOpt = typer.Option(
    None, "--model", help="Local folder or hub id (offline). Default: bundled all-MiniLM-L6-v2."
)
HostOpt = typer.Option(None, "--host", help="Interface to bind (default 127.0.0.1).")
PortOpt = typer.Option(None, "--port", help="Port (default: a free one).")
WorkersOpt = typer.Option(None, "--workers", help="Worker processes (per-worker, preload).")
ThreadsOpt = typer.Option(
    None, "--threads", help="Intra-op threads per stream (default cores // (workers x streams))."
)
HttpOpt = typer.Option(None, "--http", help="fastapi (default) | asgi: the layer before the API.")
StreamsOpt = typer.Option(
    None, "--streams", help="Forward passes at once per process (shared-rwlock, batched)."
)
PaddingOpt = typer.Option(None, "--padding", help="longest | max_length.")
TruncOpt = typer.Option(
    None, "--truncation/--no-truncation", help="Truncate inputs to max_seq_length."
)
SeqOpt = typer.Option(
    None, "--max-seq-length", help="Tokens kept when truncating (default: the model's)."
)
BackendOpt = typer.Option(None, "--backend", help="torch | onnx.")
QuantOpt = typer.Option(None, "--quantize", help="none | int8 (onnx only).")
BatchOpt = typer.Option(None, "--max-batch-size", help="Largest batch (batched).")
OmpOpt = typer.Option(None, "--omp-wait-policy", help="passive (default) | active | default.")


def server_overrides(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@app.command()
def variants() -> None:
    """List the serving strategies embbench can run."""
    from embbench.variants import REGISTRY

    table = Table(title="embbench variants")
    for column in ("name", "what it is", "workers", "protocol", "seed analogue"):
        table.add_column(column)
    for variant in REGISTRY.values():
        table.add_row(
            variant.name,
            variant.summary,
            "external" if variant.external else str(variant.default_workers),
            variant.protocol,
            variant.seed_analogue,
        )
    console.print(table)


@app.command()
@friendly
def serve(
    variant: str = typer.Option(..., "--variant", help="Variant to run (see `embbench variants`)."),
    model: str | None = ModelOpt,
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    workers: int | None = WorkersOpt,
    threads: int | None = ThreadsOpt,
    padding: str | None = PaddingOpt,
    truncation: bool | None = TruncOpt,
    max_seq_length: int | None = SeqOpt,
    backend: str | None = BackendOpt,
    quantize: str | None = QuantOpt,
    max_batch_size: int | None = BatchOpt,
    omp_wait_policy: str | None = OmpOpt,
    streams: int | None = StreamsOpt,
    http: str | None = HttpOpt,
) -> None:
    """Run one server in the foreground until Ctrl-C."""
    from embbench.serve import serve_foreground

    options = cfg.override_options(
        cfg.ServerOptions(),
        server_overrides(
            model=model,
            host=host,
            port=port if port is not None else 8000,
            workers=workers,
            threads=threads,
            padding=padding,
            truncation=truncation,
            max_seq_length=max_seq_length,
            backend=backend,
            quantize=quantize,
            max_batch_size=max_batch_size,
            omp_wait_policy=omp_wait_policy,
            streams=streams,
            http=http,
        ),
    )
    code = serve_foreground(
        variant,
        options,
        on_ready=lambda url: err_console.print(
            f"[green]{variant}[/] ready at {url}  (Ctrl-C to stop)"
        ),
    )
    raise typer.Exit(code)


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"--concurrency takes integers separated by commas, got {text!r}"
        ) from None
    return levels


@app.command()
@friendly
def run(
    variant: list[str] = typer.Option([], "--variant", help="Variant(s) to measure; repeatable."),
    config_file: Path | None = typer.Option(
        None, "--config", help="TOML run file (configs/*.toml)."
    ),
    concurrency: str | None = typer.Option(None, "--concurrency", help="Levels, e.g. 10,100,1000."),
    duration: float | None = typer.Option(None, "--duration", help="Measured seconds per cell."),
    warmup: float | None = typer.Option(None, "--warmup", help="Seconds of load excluded first."),
    repeats: int | None = typer.Option(
        None, "--repeats", help="Repeats of every cell (interleaved)."
    ),
    payload: str | None = typer.Option(None, "--payload", help="short | medium | long | mixed."),
    out: Path | None = typer.Option(None, "--out", help="Results folder (default results/)."),
    run_id: str | None = typer.Option(None, "--run-id", help="Name of the run folder."),
    url: str | None = typer.Option(None, "--url", help="Drive a server already running there."),
    protocol: str | None = typer.Option(
        None, "--protocol", help="predict | tei | openai (with --url)."
    ),
    pid: int | None = typer.Option(None, "--pid", help="Process to sample (with --url)."),
    label: str | None = typer.Option(None, "--label", help="Row label (with --url)."),
    load_processes: int | None = typer.Option(None, "--load-processes", help="Locust --processes."),
    load_workers: int | None = typer.Option(
        None, "--load-workers", help="Wait for N `embbench load-worker`s (other machines)."
    ),
    master_port: int | None = typer.Option(None, "--master-port", help="Locust master port."),
    model: str | None = ModelOpt,
    host: str | None = HostOpt,
    port: int | None = PortOpt,
    workers: int | None = WorkersOpt,
    threads: int | None = ThreadsOpt,
    padding: str | None = PaddingOpt,
    truncation: bool | None = TruncOpt,
    max_seq_length: int | None = SeqOpt,
    backend: str | None = BackendOpt,
    quantize: str | None = QuantOpt,
    max_batch_size: int | None = BatchOpt,
    omp_wait_policy: str | None = OmpOpt,
    streams: int | None = StreamsOpt,
    http: str | None = HttpOpt,
) -> None:
    """Measure variants under Locust load; results go to results/<run-id>/."""
    from embbench.runner import run_benchmark

    overrides = server_overrides(
        model=model,
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        padding=padding,
        truncation=truncation,
        max_seq_length=max_seq_length,
        backend=backend,
        quantize=quantize,
        max_batch_size=max_batch_size,
        omp_wait_policy=omp_wait_policy,
        streams=streams,
        http=http,
    )
    settings: dict[str, Any] = {}
    runs: list[cfg.VariantRun] = []
    if config_file is not None:
        settings, runs = cfg.load_run_file(config_file)
    if variant:
        # Variants named on the command line replace the file's list, keeping its options.
        by_name = {r.name: r for r in runs}
        runs = [by_name.get(name, cfg.VariantRun(name=name)) for name in variant]
    runs = [
        cfg.VariantRun(r.name, cfg.override_options(r.options, overrides), r.label) for r in runs
    ]
    if url is not None:
        runs = [
            cfg.VariantRun(
                name="external",
                options=cfg.override_options(cfg.ServerOptions(), overrides),
                label=label or "external",
            )
        ]
    flags = {
        "concurrency": parse_levels(concurrency) if concurrency else None,
        "duration": duration,
        "warmup": warmup,
        "repeats": repeats,
        "payload": payload,
        "out": str(out) if out else None,
        "run_id": run_id,
        "url": url,
        "protocol": protocol,
        "pid": pid,
        "load_processes": load_processes,
        "load_workers": load_workers,
        "master_port": master_port,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    try:
        config = cfg.RunConfig(variants=tuple(runs), **settings)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    # SIGTERM (a CI timeout, `kill`) takes the same path as Ctrl-C: stop servers, keep cells.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with RichProgress() as progress:
        outcome = run_benchmark(config, progress)
    render_rows(outcome.rows, title=f"run {outcome.run_dir.name}")
    console.print(f"results: {outcome.run_dir}")
    if outcome.interrupted:
        err_console.print("[yellow]interrupted[/]: the cells measured so far are kept.")
        raise typer.Exit(int(ExitStatus.INTERRUPTED))
    if outcome.failed:
        err_console.print(
            f"[red]{outcome.failed} cell(s) failed[/]; see failure_reason in summary.csv"
        )
        raise typer.Exit(int(ExitStatus.CELL_FAILED))


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
    from embbench.load.runner import run_worker
    from embbench.payloads import build_payloads

    cfg.RunConfig(variants=(), url="http://unused", payload=payload, protocol=protocol)
    try:
        payloads = build_payloads(payload, count=512, seed=seed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    err_console.print(f"load worker for {master_host}:{master_port} ({payload}, {protocol})")
    raise typer.Exit(run_worker(master_host, master_port, payloads, protocol, processes))


@app.command("report")
@friendly
def report_cmd(
    run_dir: Path | None = typer.Argument(None, help="Run folder (default: the newest)."),
    baseline: str | None = typer.Option(None, "--baseline", help="Label to compare against."),
    out: Path = typer.Option(Path("results"), "--out", help="Where runs are (for the default)."),
    force: bool = typer.Option(False, "--force", help="Write report.md again if it exists."),
) -> None:
    """Tables, report.md and charts/*.png for a run."""
    from embbench.publish import publish_report

    published = publish_report(run_dir, out=out, baseline=baseline, force=force)
    render_aggregate(published.table, title=f"run {published.run.path.name} (medians)")
    for line in _winner_lines(published.table):
        console.print(line, markup=False, highlight=False)
    console.print(f"report: {published.markdown}")
    for chart in published.charts:
        console.print(f"chart:  {chart}")


@app.command()
@friendly
def compare(
    run_a: Path = typer.Argument(..., help="Run folder a (the reference)."),
    run_b: Path = typer.Argument(..., help="Run folder b."),
) -> None:
    """Two runs side by side, as ratios b / a."""
    from embbench.publish import publish_compare

    _, markdown = publish_compare(run_a, run_b)
    console.print(markdown, markup=False, highlight=False)


@app.command()
@friendly
def ceiling(
    backend: list[str] = typer.Option(["torch"], "--backend", help="torch | onnx; repeatable."),
    quantize: str = typer.Option("none", "--quantize", help="none | int8 (onnx)."),
    threads: int | None = typer.Option(
        None, "--threads", help="Intra-op threads per stream (default: every layout)."
    ),
    streams: int | None = typer.Option(
        None, "--streams", help="Sessions side by side (default: every layout)."
    ),
    payload: str = typer.Option("short", "--payload", help="short | medium | long | mixed."),
    seconds: float = typer.Option(3.0, "--seconds", help="Seconds per measurement."),
    model: str | None = ModelOpt,
) -> None:
    """The offline ceiling: one bare forward pass and the best batched sentences/s, no HTTP.

    Each way of filling the cores is measured (one session on all of them, one single-threaded
    session per core); the ceiling is the best. --threads/--streams pin one layout.
    """
    from embbench.ceiling import measure_in_subprocess

    for flag, value in (("--threads", threads), ("--streams", streams)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be positive, got {value}")

    table = Table(
        title="offline ceiling (tokenise + forward + pool, no HTTP)",
        caption="* the best layout: the ceiling a server of that backend is set against",
    )
    for column in (
        "backend",
        "quantize",
        "threads",
        "streams",
        "batch 1 p50 ms",
        "best sentences/s",
        "at batch",
    ):
        table.add_column(column, justify="left" if column in ("backend", "quantize") else "right")
    for name in backend:
        cfg.ServerOptions(backend=name, quantize=quantize if name == "onnx" else "none")
        try:
            result = measure_in_subprocess(
                model,
                name,
                quantize if name == "onnx" else "none",
                threads,
                payload,
                seconds,
                streams=streams,
            )
        except RuntimeError as exc:
            raise EmbbenchError(str(exc)) from None
        best = (result["threads"], result["streams"])
        for layout in result["layouts"]:
            mark = " *" if (layout["threads"], layout["streams"]) == best else ""
            table.add_row(
                name + mark,
                result["quantize"],
                str(layout["threads"]),
                str(layout["streams"]),
                _fmt(layout["batch1_ms"], 2),
                _fmt(layout["sentences_per_s"]),
                str(layout["best_batch"]),
            )
    console.print(table)


def render_aggregate(table: Any, title: str) -> None:
    view = Table(title=title)
    columns = [
        ("label", "variant"),
        ("concurrency", "c"),
        ("rps", "rps"),
        ("latency_p50_ms", "p50 ms"),
        ("latency_p99_ms", "p99 ms"),
        ("cpu_pct_mean", "CPU %"),
        ("pss_mb_max", "PSS MB"),
        ("cosine_min", "cosine"),
    ]
    present = [(key, name) for key, name in columns if key in table.columns]
    for _, name in present:
        view.add_column(name, justify="left" if name == "variant" else "right")
    for record in table.to_dict("records"):
        view.add_row(
            *(escape(_fmt(record.get(key), 5 if key == "cosine_min" else 1)) for key, _ in present)
        )
    console.print(view)


def _winner_lines(table: Any) -> list[str]:
    from embbench.report import winners

    lines = []
    for record in winners(table).to_dict("records"):
        lines.append(
            f"winner at c={record.get('concurrency')}: {record.get('label')} "
            f"({_fmt(record.get('rps'))} rps)"
        )
    return lines


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_rows(rows: Sequence[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for column in (
        "variant",
        "c",
        "rep",
        "status",
        "rps",
        "p50 ms",
        "p99 ms",
        "CPU %",
        "PSS MB",
        "loadgen %",
        "cosine",
    ):
        table.add_column(column, justify="left" if column in ("variant", "status") else "right")
    for row in rows:
        status = str(row.get("status"))
        flags = []
        if row.get("loadgen_saturated"):
            flags.append("loadgen saturated")
        if row.get("oversubscribed"):
            flags.append("oversubscribed")
        if row.get("little_law_ok") is False:
            flags.append("little's law")
        table.add_row(
            escape(str(row.get("label") or row.get("variant"))),
            str(row.get("concurrency")),
            str(row.get("repeat")),
            status + (f" ({', '.join(flags)})" if flags else ""),
            _fmt(row.get("rps")),
            _fmt(row.get("latency_p50_ms")),
            _fmt(row.get("latency_p99_ms")),
            _fmt(row.get("cpu_pct_mean"), 0),
            _fmt(row.get("pss_mb_max"), 0),
            _fmt(row.get("loadgen_cpu_pct_mean"), 0),
            _fmt(row.get("cosine_min"), 5),
        )
    console.print(table)


class RichProgress(RunProgress):
    """The runner's Progress, drawn as a Rich progress bar with live rps and latency."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[live]}"),
            TimeElapsedColumn(),
            console=err_console,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(None, None, None)

    def run_started(self, run_dir: Path, cells: Sequence[Any]) -> None:
        self._bar.console.print(f"run {run_dir.name}: {len(cells)} cells -> {run_dir}")
        self._task = self._bar.add_task("starting", total=len(cells), live="")

    def cell_started(self, cell: Any) -> None:
        self._bar.update(
            self._task,
            description=escape(f"{cell.run.display} c={cell.concurrency}"),
            live="starting server",
        )

    def cell_live(
        self,
        cell: Any,
        phase: str,
        elapsed: float,
        total: float,
        rps: float | None,
        p50_ms: float | None,
    ) -> None:
        live = f"{phase} {elapsed:4.0f}/{total:.0f}s"
        if rps is not None:
            live += f"  {rps:7.1f} rps"
        if p50_ms is not None:
            live += f"  p50 {p50_ms:7.1f} ms"
        self._bar.update(self._task, live=live)

    def cell_finished(self, cell: Any, row: dict[str, Any]) -> None:
        self._bar.advance(self._task)
        status = row.get("status")
        line = (
            f"{cell.index + 1:>3} {row.get('label')} c={cell.concurrency} r={cell.repeat}: "
            f"{status} {_fmt(row.get('rps'))} rps p50 {_fmt(row.get('latency_p50_ms'))} ms"
        )
        if row.get("failure_reason"):
            line += f" - {str(row['failure_reason'])[:200]}"
        self._bar.console.print(line, highlight=False, markup=False)

    def warn(self, message: str) -> None:
        self._bar.console.print(f"[yellow]warning:[/] {message}", highlight=False)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: click usage errors become one line and exit 2; Ctrl-C exits 130."""
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
