"""CPU affinity for a capacity per core count: the server's process tree on N cores, the load
generator on the others.

`sched_setaffinity` on a pid sets one thread's mask (Linux: a pid names its main thread), and a
thread or a process takes its creator's mask when it is created. So a tree is pinned thread by
thread (/proc/<pid>/task), every process of it, and pinned again once it is ready: what it
created in between (OpenMP's pool, uvicorn's workers) took the mask from a pinned thread
anyway, and the second pass covers any that did not.
"""

from __future__ import annotations

import contextlib
import os

import psutil

from embbench.errors import ConfigError


def available() -> list[int]:
    """The cores this process may run on, in order."""
    return sorted(os.sched_getaffinity(0))


def split_cores(count: int) -> tuple[frozenset[int], frozenset[int]]:
    """(the server's `count` cores, the rest for the load generator: empty when none is left).

    The server takes the highest-numbered cores: core 0 takes most of the machine's interrupts.
    """
    cores = available()
    if not 1 <= count <= len(cores):
        raise ConfigError(f"--cores {count}: this machine lets embbench use {len(cores)} core(s)")
    return frozenset(cores[-count:]), frozenset(cores[:-count])


def pin_tree(pid: int, cpus: frozenset[int]) -> int:
    """Every thread of every process under `pid` (itself included) onto `cpus`; returns how
    many threads were pinned. Processes and threads that exit meanwhile are skipped."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    pinned = 0
    for proc in procs:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task")]
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)
                pinned += 1
    return pinned


def mask_of(pid: int) -> frozenset[int]:
    return frozenset(os.sched_getaffinity(pid))
