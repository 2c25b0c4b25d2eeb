"""`capacity --cores N`'s pinning on a real cell: while it runs, every thread of the server's
tree is on the server's core and Locust's on the other, seen from outside by polling the
orchestrator's children (real server, real Locust; no capacity search: CI time)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import psutil
import pytest

from embbench.config.options import ServerOptions
from embbench.config.run import RunConfig, VariantRun
from embbench.machine.affinity import available, split_cores
from embbench.run.session import run_benchmark

pytestmark = pytest.mark.integration


def _masks(stop: threading.Event, seen: dict[str, set[frozenset[int]]]) -> None:
    """Every 0.3 s: each child process's threads' masks, by what the process is."""
    me = psutil.Process(os.getpid())
    while not stop.wait(0.3):
        for proc in me.children(recursive=True):
            try:
                line = " ".join(proc.cmdline())
                tids = os.listdir(f"/proc/{proc.pid}/task")
                masks = {frozenset(os.sched_getaffinity(int(t))) for t in tids}
            except (psutil.Error, OSError):
                continue
            kind = "locust" if "locust" in line else "server" if "embbench.servers" in line else ""
            if kind:
                seen.setdefault(kind, set()).update(masks)


@pytest.mark.skipif(len(available()) < 2, reason="needs a core for the load generator")
def test_a_pinned_cell_keeps_server_and_load_apart(tmp_path: Path) -> None:
    server_cores, rest = split_cores(1)
    seen: dict[str, set[frozenset[int]]] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_masks, args=(stop, seen), daemon=True)
    watcher.start()
    try:
        outcome = run_benchmark(
            RunConfig(variants=(VariantRun("shared-mutex", ServerOptions(threads=1)),),
                      concurrency=(2,), duration=3.0, warmup=1.0, out=str(tmp_path),
                      pin_cores=1)
        )  # fmt: skip
    finally:
        stop.set()
        watcher.join()
    (row,) = outcome.rows
    assert row["status"] == "ok" and row["cores"] == 1 and row["threads"] == 1
    assert not row["oversubscribed"]
    # Sampled before the first pin (just spawned) a thread may still show the full mask; once
    # pinned, only the server's core. Locust is pinned just after it starts, likewise.
    assert server_cores in seen["server"] and seen["server"] <= {
        server_cores,
        frozenset(available()),
    }
    assert rest in seen["locust"] and seen["locust"] <= {rest, frozenset(available())}
