"""Runs Locust headless as a subprocess, in its own process group, and stops it for sure."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


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


def locust_command(spec: LoadSpec, payload_file: Path) -> tuple[list[str], dict[str, str]]:
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
        str(spec.users),
        # All users at once (one second): the ramp-up is excluded from the window anyway.
        "--spawn-rate",
        str(spec.users),
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
    if spec.processes > 1:
        argv += ["--processes", str(spec.processes)]
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
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spec.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

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
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        # TERM lets Locust fire its quitting event, which flushes the request log.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def read_requests(folder: Path) -> list[tuple[float, float, int, str, int]]:
    """All rows of the per-process request logs in `folder`, unsorted."""
    rows: list[tuple[float, float, int, str, int]] = []
    for path in sorted(folder.glob("requests-*.csv")):
        with path.open() as handle:
            next(handle, None)
            for line in handle:
                parts = line.rstrip("\n").split(",")
                if len(parts) != 5:
                    continue  # a line cut by an interrupt
                try:
                    rows.append(
                        (float(parts[0]), float(parts[1]), int(parts[2]), parts[3], int(parts[4]))
                    )
                except ValueError:
                    continue
    return rows
