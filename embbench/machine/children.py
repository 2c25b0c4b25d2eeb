"""Child processes in their own process group: started with output to a log, stopped for sure.

One session per child, so that TERM and KILL reach every process it forks (uvicorn and
gunicorn workers, Locust's --processes) and a Ctrl-C in the terminal reaches only embbench,
which then stops its children itself, in order. If embbench itself is killed (kill -9, no
`finally` runs), each child gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and stops its own
workers as on any TERM.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
try:  # looked up before any fork: the child only calls a function already loaded
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(
        ctypes.util.find_library("c") or "libc.so.6", use_errno=True
    )
except OSError:  # not Linux: no parent-death signal, the process group still stops children
    _LIBC = None


def _die_with(parent: int) -> Callable[[], None]:
    """For the child, between fork and exec: TERM me when my parent dies, even by SIGKILL
    (Linux's PR_SET_PDEATHSIG), and exit at once if it already has."""

    def arm() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def spawn_group(
    argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session, stdout and stderr appended to `log_path` (never a pipe)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Between fork and exec only a libc call already loaded: no lock a thread could hold.
            preexec_fn=_die_with(os.getpid()),
        )


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> int | None:
    """TERM the group, wait up to `grace` s, KILL whatever is left of the group, reap."""
    signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    # Workers may outlive their supervisor for a moment: KILL the group either way.
    signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    return proc.returncode


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
