"""Samples a server's whole process tree and the load generator's, in a background thread.

CPU% is summed over every process of a tree; psutil.Process objects are cached per pid because
cpu_percent() measures since the previous call on the same object (the first call only primes
it). Memory is RSS and also PSS/USS: after a fork, RSS counts shared pages in every worker.

The sampler shares the cores with what it measures, so the costly reads are done once a second
(`FULL_EVERY` ticks): listing a tree scans all of /proc, and PSS parses each process's
smaps_rollup. CPU is read every tick from the processes last listed; in between, a sample
repeats the last memory figures.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import psutil

FULL_EVERY = 4  # ticks of 0.25 s: the process list and memory are read once a second


@dataclass(frozen=True)
class Sample:
    time: float
    cpu_pct: float
    rss_mb: float
    pss_mb: float
    uss_mb: float
    threads: int
    processes: int
    loadgen_cpu_pct: float
    loadgen_cpu_max_proc: float


class TreeMeter:
    """CPU% and memory of a process and all its descendants."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._procs: dict[int, psutil.Process] = {}
        self._memory = (0.0, 0.0, 0.0, 0)

    def refresh(self) -> None:
        self._tree()

    def _tree(self) -> list[psutil.Process]:
        try:
            root = self._procs.get(self.pid) or psutil.Process(self.pid)
            found = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        live: dict[int, psutil.Process] = {}
        for proc in found:
            cached = self._procs.get(proc.pid)
            if cached is None:
                with contextlib.suppress(psutil.Error):
                    proc.cpu_percent(None)  # prime: the first reading is meaningless
                cached = proc
            live[proc.pid] = cached
        self._procs = live
        return list(live.values())

    def read(self, memory: bool = True) -> tuple[float, float, float, float, int, int, float]:
        """(cpu %, rss MB, pss MB, uss MB, threads, processes, max cpu % of one process).

        With memory=False, the processes listed last time are read for CPU only, and the memory
        figures are those of the last full read.
        """
        cpu = rss = pss = uss = 0.0
        threads = 0
        peak = 0.0
        procs = self._tree() if memory or not self._procs else list(self._procs.values())
        for proc in procs:
            try:
                pct = proc.cpu_percent(None)
                cpu += pct
                peak = max(peak, pct)
                if memory:
                    info = proc.memory_full_info()
                    rss += info.rss
                    pss += getattr(info, "pss", info.rss)
                    uss += getattr(info, "uss", info.rss)
                    threads += proc.num_threads()
            except psutil.Error:
                continue  # a worker that exited between listing and reading
        mb = 1024 * 1024
        if memory:
            self._memory = (rss / mb, pss / mb, uss / mb, threads)
        rss_mb, pss_mb, uss_mb, threads = self._memory
        return cpu, rss_mb, pss_mb, uss_mb, threads, len(procs), peak


class Sampler:
    """`start()`, point it at the load generator with `watch_loadgen(pid)`, `stop()` -> samples."""

    def __init__(self, server_pid: int | None, interval: float = 0.25) -> None:
        self.interval = interval
        self._server = TreeMeter(server_pid) if server_pid else None
        self._loadgen: TreeMeter | None = None
        self._samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> None:
        if self._server is not None:
            self._server.read(memory=False)
        self._thread.start()

    def watch_loadgen(self, pid: int) -> None:
        meter = TreeMeter(pid)
        meter.read(memory=False)
        self._loadgen = meter

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval
        tick = 0
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval
            now = time.time()
            full = tick % FULL_EVERY == 0
            tick += 1
            cpu, rss, pss, uss, threads, procs, _ = (
                self._server.read(memory=full) if self._server else (0.0, 0.0, 0.0, 0.0, 0, 0, 0.0)
            )
            load_cpu, load_peak = 0.0, 0.0
            if self._loadgen is not None:
                if full:  # list the tree again: Locust's --processes children come and go
                    self._loadgen.refresh()
                load_cpu, *_, load_peak = self._loadgen.read(memory=False)
            self._samples.append(
                Sample(now, cpu, rss, pss, uss, threads, procs, load_cpu, load_peak)
            )

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return list(self._samples)


# The machine counts as quiet below this share of all its cores (what a previous cell's server
# or a ceiling measurement leaves spinning down); waiting never takes longer than QUIET_MAX_S.
QUIET_PCT = 25.0
QUIET_MAX_S = 15.0


def wait_quiet(max_s: float = QUIET_MAX_S, threshold_pct: float = QUIET_PCT) -> tuple[float, float]:
    """Wait until the whole machine's CPU use over half a second is below `threshold_pct`
    (of all cores), or `max_s` passed. Returns (seconds waited, the last CPU % seen), so that
    what quiet costs, and a machine that never got quiet, are both on record."""
    started = time.monotonic()
    load = psutil.cpu_percent(interval=0.5)
    while load >= threshold_pct and time.monotonic() - started < max_s:
        load = psutil.cpu_percent(interval=0.5)
    return time.monotonic() - started, float(load)
