"""What the CLI prints: tables of cells and medians, winner lines, run progress.

On a terminal, Rich tables and a live progress bar. Anywhere else (a CI log, a pipe, a file),
whole cells as Markdown tables and progress as plain lines, since Rich would cut a table to 80
columns ("shar…") and redraw a bar as thousands of lines. The metrics shown are the columns
marked for the console in columns.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from embbench.errors import EmbbenchError
from embbench.results import columns, levels
from embbench.run.plan import Cell
from embbench.run.progress import ProgressListener

console = Console()
err_console = Console(stderr=True)


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A Rich table on a terminal; a Markdown table (whole cells) anywhere else."""
    if not console.is_terminal:
        console.print(title, markup=False, highlight=False)
        for line in (headers, ["---"] * len(headers), *rows):
            console.print("| " + " | ".join(line) + " |", markup=False, highlight=False,
                          soft_wrap=True)  # fmt: skip
        return
    table = Table(title=title)
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index == 0 or header == "status" else "right")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def _metrics(record: Mapping[str, Any]) -> list[str]:
    return [fmt(record.get(c.name), c.digits) for c in columns.where(show=columns.CONSOLE)]


def render_aggregate(table: Any, title: str) -> None:
    """Medians per (label, concurrency), as `embbench report` prints them."""
    headers = ["variant", "level", *(c.heading for c in columns.where(show=columns.CONSOLE))]
    rows = [[str(r.get("label")), _level(r), *_metrics(r)] for r in table.to_dict("records")]
    print_table(title, headers, rows)


def render_rows(rows: Sequence[Mapping[str, Any]], title: str) -> None:
    """One line per cell, as `embbench run` prints them at the end."""
    headers = [
        "variant",
        "level",
        "rep",
        "status",
        *(c.heading for c in columns.where(show=columns.CONSOLE)),
    ]
    print_table(title, headers, [
        [str(row.get("label") or row.get("variant")), _level(row),
         fmt(row.get("repeat")), status_text(row), *_metrics(row)]
        for row in rows
    ])  # fmt: skip


def _level(row: Mapping[str, Any]) -> str:
    """Users of a closed loop (`10`), or an open loop's offered rate (`40 rps`)."""
    return levels.short(levels.label_of(row))


def status_text(row: Mapping[str, Any]) -> str:
    flags = []
    if row.get("loadgen_saturated"):
        flags.append("loadgen saturated")
    if row.get("oversubscribed"):
        flags.append("oversubscribed")
    if row.get("little_law_ok") is False:
        flags.append("little's law")
    status = str(row.get("status"))
    return status + (f" ({', '.join(flags)})" if flags else "")


def cell_line(cell: Cell, row: Mapping[str, Any]) -> str:
    line = (
        f"{cell.index + 1:>3} {row.get('label')} {cell.level} r={cell.repeat}: "
        f"{row.get('status')} {fmt(row.get('rps'))} rps p50 {fmt(row.get('latency_p50_ms'))} ms"
    )
    if row.get("failure_reason"):
        line += f" - {str(row['failure_reason'])[:200]}"
    return line


class PlainProgress(ProgressListener):
    """Progress as plain lines on stderr: one per cell started and finished."""

    def run_started(self, run_dir: Path, cells: Sequence[Cell]) -> None:
        err_console.print(f"run {run_dir.name}: {len(cells)} cells -> {run_dir}", markup=False)

    def cell_started(self, cell: Cell) -> None:
        err_console.print(
            f"{cell.index + 1:>3} {cell.run.display} {cell.level} r={cell.repeat}: starting",
            markup=False,
            highlight=False,
        )

    def cell_finished(self, cell: Cell, row: Mapping[str, Any]) -> None:
        err_console.print(cell_line(cell, row), markup=False, highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        err_console.print(message, markup=False, highlight=False, soft_wrap=True)

    def warn(self, message: str) -> None:
        err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class RichProgress(PlainProgress):
    """The runner's ProgressListener, drawn as a Rich progress bar with live rps and latency."""

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

    def run_started(self, run_dir: Path, cells: Sequence[Cell]) -> None:
        self._bar.console.print(f"run {run_dir.name}: {len(cells)} cells -> {run_dir}")
        self._task = self._bar.add_task("starting", total=len(cells), live="")

    def cell_started(self, cell: Cell) -> None:
        self._bar.update(
            self._task,
            description=escape(f"{cell.run.display} {cell.level}"),
            live="starting server",
        )

    def cell_live(
        self,
        cell: Cell,
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

    def cell_finished(self, cell: Cell, row: Mapping[str, Any]) -> None:
        self._bar.advance(self._task)
        self._bar.console.print(cell_line(cell, row), highlight=False, markup=False)

    def note(self, message: str) -> None:
        self._bar.console.print(message, highlight=False, markup=False)

    def warn(self, message: str) -> None:
        self._bar.console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


def progress_for_stderr() -> PlainProgress:
    return RichProgress() if err_console.is_terminal else PlainProgress()


F = TypeVar("F", bound=Callable[..., Any])


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
