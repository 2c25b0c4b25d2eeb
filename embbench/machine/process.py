"""ServerProcess: start a server in its own process group, wait until healthy, stop it for sure.

Like pyperf's and asv's workers: the child gets its own session (so TERM/KILL reach every
process it forks, workers included), its output goes to a log file (never an undrained pipe),
and it is stopped in `finally` whatever happened.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from embbench.errors import PortInUseError, ServerStartError
from embbench.machine.children import spawn_group, stop_group


@dataclass(frozen=True)
class LaunchSpec:
    """A command to run in its own process group, and what to do once it is stopped."""

    argv: list[str]
    env: dict[str, str]
    protocol: str = "predict"
    info: dict[str, object] = field(default_factory=dict)
    # Extra clean-up after the process group is gone (a container to remove, say).
    cleanup: Callable[[], None] | None = None
    # The root of the process tree to sample, when it is not the launched process (a container's
    # first process, whose parent is the engine, not the `docker run` client).
    sample_pid: Callable[[], int | None] | None = None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"port {port} on {host} is already in use ({exc.strerror})"
            ) from exc


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _load_failed(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error_type") == "load_failed"


class ServerProcess:
    def __init__(self, spec: LaunchSpec, log_path: Path, *, cwd: Path | None = None) -> None:
        self.spec = spec
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.proc = spawn_group(self.spec.argv, self.spec.env, self.log_path, self.cwd)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait_ready(self, url: str, timeout: float, *, path: str = "/health") -> None:
        """Poll `url + path` until 200; fail fast (with the log's tail) if the process exits."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                code = self.exited()
                if code is not None:
                    raise ServerStartError(
                        f"server exited with code {code} before it was ready; "
                        f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                    )
                try:
                    response = client.get(url + path)
                    if response.status_code == 200:
                        return
                    if _load_failed(response):
                        # The server said its model will not load: waiting longer changes nothing.
                        raise ServerStartError(
                            f"server failed to load its model ({response.text[:200]}); "
                            f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                        )
                    last = f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(0.2)
        raise ServerStartError(
            f"server not ready after {timeout:.0f} s ({last}); "
            f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def stop(self, grace: float = 8.0) -> int | None:
        """TERM the whole group, wait `grace` seconds, KILL what is left, reap. Idempotent."""
        proc = self.proc
        if proc is None:
            return None
        try:
            stop_group(proc, grace)
        finally:
            if self.spec.cleanup is not None:
                self.spec.cleanup()
        return proc.returncode

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
