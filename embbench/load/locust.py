"""Runs Locust headless as a subprocess, in its own process group, and stops it for sure."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from embbench.load import loops
from embbench.load.loops.base import Loop
from embbench.load.phases import EMPTY_FIELDS
from embbench.machine.children import spawn_group, stop_group
from embbench.results.phases import TIMING_COLUMNS

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
WORKER_WAIT_S = 120.0  # how long a master waits for its remote workers to connect


@dataclass(frozen=True)
class LoadSpec:
    url: str
    protocol: str
    users: int
    run_time: float  # seconds, warmup included
    payloads: list[str]
    requests_dir: Path
    log_path: Path
    processes: int = 1
    model: str = ""
    timeout: float = 120.0
    # Workers on other machines (Locust's distributed mode): the master waits for this many.
    expect_workers: int = 0
    master_port: int = 5557
    # Open loop when rate > 0 (loops/open.py): arrivals per second (all processes together) at
    # the times of a seeded schedule `schedule_s` long (open_timing); `users` is then ignored (one
    # user per Locust process). Beyond `max_inflight` outstanding requests an arrival is dropped.
    # `connections` (0: as many as max_inflight) caps the open connections; fewer than the cap
    # makes arrivals wait in the client, as wrk2's -c does, and that wait counts as lateness.
    rate: float = 0.0
    arrival: str = "poisson"
    max_inflight: int = 1000
    connections: int = 0
    seed: int = 0
    schedule_s: float = 0.0
    # Answers each Locust process keeps per second for the correctness check (quality.py);
    # 0: none. Sent as an option, so remote workers keep answers too (and send them here).
    check_rate: int = 0

    @property
    def loop(self) -> Loop:
        """The loop these fields describe (embbench.load.loops)."""
        return loops.loop_of(self)

    @property
    def load_processes(self) -> int:
        """Locust processes that run users: remote workers, else --processes children, else 1."""
        return self.expect_workers or max(1, self.processes)


def locust_command(spec: LoadSpec, payload_file: Path) -> tuple[list[str], dict[str, str]]:
    users, loop_args = spec.loop.locust_args(spec)
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        spec.url,
        "--users",
        str(users),
        # All users at once (one second): the ramp-up is excluded from the window anyway.
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{math.ceil(spec.run_time)}s",
        "--stop-timeout",
        "0",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]
    argv += loop_args
    if spec.check_rate > 0:
        argv += ["--embbench-check-rate", str(spec.check_rate)]
    if spec.processes > 1:
        argv += ["--processes", str(spec.processes)]
        if not spec.expect_workers:
            # Its own forked workers connect over loopback: nothing else may reach the master.
            argv += ["--master-bind-host", "127.0.0.1"]
    if spec.expect_workers:
        argv += [
            "--master", "--expect-workers", str(spec.expect_workers),
            "--expect-workers-max-wait", str(int(WORKER_WAIT_S)),
            "--master-bind-port", str(spec.master_port),
        ]  # fmt: skip
    env = dict(os.environ)
    env.update(
        EMBBENCH_PAYLOADS=str(payload_file),
        EMBBENCH_PROTOCOL=spec.protocol,
        EMBBENCH_MODEL=spec.model,
        EMBBENCH_REQUESTS=str(spec.requests_dir),
        EMBBENCH_TIMEOUT=str(spec.timeout),
        PYTHONUNBUFFERED="1",
    )
    return argv, env


class LoadProcess:
    """One Locust run: `start`, poll `exited`, `stop` (idempotent, also on interrupt)."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.spec.requests_dir.mkdir(parents=True, exist_ok=True)
        payload_file = self.spec.requests_dir / "payloads.json"
        payload_file.write_text(json.dumps(self.spec.payloads))
        argv, env = locust_command(self.spec, payload_file)
        self.proc = spawn_group(argv, env, self.spec.log_path)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 10.0) -> None:
        # TERM lets Locust fire its quitting event, which flushes the request log.
        if self.proc is not None:
            stop_group(self.proc, grace)


# start (epoch s), latency ms, status, error, bytes, scheduled (epoch s). `scheduled` is when an
# open-loop request was due (= start in a closed loop, and in logs written before it existed).
Row = tuple[float, float, int, str, int, float]


def read_requests(folder: Path) -> list[Row]:
    """All rows of the per-process request logs in `folder`, unsorted."""
    return RequestLog(folder).poll()


class RequestLog:
    """The request logs of `folder`, read incrementally: `poll()` parses only what was appended
    since the last call (re-reading every row each second cost the orchestrator ~5 % of a core
    by the end of a 600 rps cell, taken from the server it measures)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._offsets: dict[Path, int] = {}
        self._rows: list[Row] = []

    def poll(self) -> list[Row]:
        for path in sorted(self.folder.glob("requests-*.csv")):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk.rfind(b"\n") + 1  # a line still being written waits for next time
            if complete == 0:
                continue
            self._offsets[path] = offset + complete
            lines = chunk[:complete].decode().splitlines()
            if offset == 0:
                lines = lines[1:]  # the header
            self._rows.extend(_parse(lines))
        return self._rows


def read_logged(folder: Path) -> list[tuple[Row, tuple[str, ...]]]:
    """Every row of the request logs in `folder` with its timing columns (TIMING_COLUMNS, as
    text; empty in logs written before them), unsorted. Read once, when the cell is recorded."""
    out: list[tuple[Row, tuple[str, ...]]] = []
    for path in sorted(folder.glob("requests-*.csv")):
        lines = path.read_text().splitlines()[1:]
        timing = [line.split(",")[6:] for line in lines]
        out.extend(
            (row, tuple(extra) if extra else EMPTY_FIELDS)
            for row, extra in zip(_rows_of(lines), timing, strict=True)
            if row is not None
        )
    return out


# Fields of a log line: without `scheduled` (old logs), with it, with the timing columns.
_WIDTHS = (5, 6, 6 + len(TIMING_COLUMNS))


def _parse(lines: list[str]) -> Iterator[Row]:
    return (row for row in _rows_of(lines) if row is not None)


def _rows_of(lines: list[str]) -> Iterator[Row | None]:
    """One row per log line; None for a line that is not one (cut by an interrupt)."""
    for line in lines:
        parts = line.split(",")
        if len(parts) not in _WIDTHS:
            yield None
            continue
        try:
            start = float(parts[0])
            scheduled = float(parts[5]) if len(parts) > 5 else start
            yield (start, float(parts[1]), int(parts[2]), parts[3], int(parts[4]), scheduled)
        except ValueError:
            yield None


def worker_command(
    master_host: str,
    master_port: int,
    payload_file: Path,
    protocol: str,
    processes: int = 1,
    model: str = "",
) -> tuple[list[str], dict[str, str]]:
    """A Locust worker for a master on another machine (`embbench load-worker`).

    The master tells it the target host and the number of users; it sends its request rows back
    to the master, which writes the run's log (see the locustfile).
    """
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
        "--master-host", master_host, "--master-port", str(master_port),
        "--loglevel", "WARNING",
    ]  # fmt: skip
    if processes > 1:
        argv += ["--processes", str(processes)]
    env = dict(os.environ)
    env.update(
        EMBBENCH_PAYLOADS=str(payload_file),
        EMBBENCH_PROTOCOL=protocol,
        EMBBENCH_MODEL=model,
        # Workers write no log of their own; the folder is only a fallback.
        EMBBENCH_REQUESTS=str(payload_file.parent),
        PYTHONUNBUFFERED="1",
    )
    return argv, env


def run_worker(
    master_host: str,
    master_port: int,
    payloads: list[str],
    protocol: str,
    processes: int = 1,
    model: str = "",
) -> int:
    """Run a Locust worker in the foreground until its master quits (or Ctrl-C)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="embbench-worker-"))
    payload_file = folder / "payloads.json"
    payload_file.write_text(json.dumps(payloads))
    argv, env = worker_command(master_host, master_port, payload_file, protocol, processes, model)
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        stop_group(proc, 10.0)
