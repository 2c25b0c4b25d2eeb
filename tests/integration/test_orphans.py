"""No process of ours outlives its parent, even when `embbench run` is killed with -9, and the
run it left "running" is marked abandoned by the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _wait_for(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.5)
    return False


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP])
def test_killed_run_leaves_no_process(tmp_path: Path, how: signal.Signals) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    argv = [sys.executable, "-m", "embbench", "run", "--variant", "shared-mutex",
            "--concurrency", "2", "--duration", "60", "--warmup", "1",
            "--out", str(tmp_path)]  # fmt: skip
    run = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[psutil.Process] = []
    try:
        # Wait until the server and Locust both run under it (Locust's name is in its argv).
        def loaded() -> bool:
            children[:] = _descendants(run.pid)
            return any("locust" in " ".join(p.cmdline()) for p in children if p.is_running())

        assert _wait_for(loaded, 180), "the run never started its load generator"
        os.kill(run.pid, how)
        run.wait(timeout=60)
        gone = _wait_for(lambda: not any(p.is_running() for p in children), 30)
        alive = [p.cmdline() for p in children if p.is_running()]
        assert gone, f"left behind: {alive}"
    finally:
        for p in children:
            if p.is_running():
                p.kill()
        if run.poll() is None:
            run.kill()
    meta = json.loads(next(tmp_path.glob("*/run.json")).read_text())
    if how == signal.SIGKILL:
        assert meta["status"] == "running"  # nothing ran to say otherwise...
        # ...until the next start marks it.
        from embbench.results.folder import mark_abandoned_runs

        assert mark_abandoned_runs(tmp_path)
        meta = json.loads(next(tmp_path.glob("*/run.json")).read_text())
        assert meta["status"] == "abandoned"
    else:  # SIGHUP takes Ctrl-C's path: servers stopped, cells kept
        assert meta["status"] == "interrupted"
