"""Start-up cost of one launch: seconds from process start to ready, and the process tree's
memory peak while it started.

A server's start-up peak can be far above its steady state (loading weights, exporting or
quantising a graph, warming up: TEI's users report 8 GB start-up spikes under a 4 GB steady
state), and a replica that is added under load pays it on a machine that is already busy. So
the tree is sampled in a background thread from the spawn until /health answers, with the same
meter as the cell's sampler (sampler.TreeMeter), memory read at every tick: the tree is small
and nothing is being measured yet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from embbench.machine.sampler import TreeMeter

INTERVAL_S = 0.2


@dataclass(frozen=True)
class StartupCost:
    seconds: float  # process start to ready
    rss_mb_peak: float
    pss_mb_peak: float
    samples: int


class StartupWatch:
    """`start()` just before the spawn, `point(pid)` once it is known, `ready()` once /health
    answered -> StartupCost. `stop()` is idempotent and for error paths."""

    def __init__(self, interval: float = INTERVAL_S) -> None:
        self.interval = interval
        self._root: Callable[[], int | None] | None = None
        self._meter: TreeMeter | None = None
        self._rss = 0.0
        self._pss = 0.0
        self._samples = 0
        self._started = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="startup-watch", daemon=True)

    def start(self) -> None:
        self._started = time.monotonic()

    def point(self, root: Callable[[], int | None]) -> None:
        """Sample the tree whose root `root()` names (it may be None for a while: a container's
        first process appears after the client started)."""
        self._root = root
        self._thread.start()

    def _read(self) -> None:
        if self._meter is None:
            assert self._root is not None
            pid = self._root()
            if not pid:
                return
            self._meter = TreeMeter(pid)
        _, rss, pss, *_ = self._meter.read(memory=True)
        if rss > 0:
            self._rss = max(self._rss, rss)
            self._pss = max(self._pss, pss)
            self._samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def ready(self) -> StartupCost:
        """The cost so far: call as soon as the server answered ready."""
        seconds = time.monotonic() - self._started
        self.stop()
        if self._root is not None:
            self._read()  # the tree as it stands at ready, in case start-up beat the first tick
        return StartupCost(seconds, self._rss, self._pss, self._samples)
