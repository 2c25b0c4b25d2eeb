"""Where one request's time went, as the answer's `Server-Timing` header says it.

The per-request timing contract (shared with the load generator's parser in load/):
every answer carries `Server-Timing: <phase>;dur=<ms>, ...` (W3C; milliseconds, 3 decimals) with
the phases its strategy has, in PHASES' order and always ending with `total` (from the
request's arrival in the handler to its body being ready), plus `X-Batch-Size` (the inputs of
the forward pass it rode in) and `X-Request-Id` (the client's, echoed, or `<pid>-<counter>`).

Cheap by design: one small object per request (`Phases`, integer nanoseconds from
perf_counter_ns), found through a context variable by the layers that time a phase, and the
header string built once, when the response starts. `--no-server-timing` skips all of it.
"""

from __future__ import annotations

import contextvars
import itertools
import os
from collections.abc import Iterable
from time import perf_counter_ns

# Every phase a server of ours may report, in the header's order.
PHASES = ("admission", "lock", "queue", "tokenize", "forward", "pool", "serialize", "total")

SERVER_TIMING = b"server-timing"
BATCH_SIZE = b"x-batch-size"
REQUEST_ID = b"x-request-id"


def format_server_timing(phases: Iterable[tuple[str, float]]) -> str:
    """`name;dur=ms, ...` of (name, milliseconds) pairs, in the order given."""
    return ", ".join([f"{name};dur={ms:.3f}" for name, ms in phases])


_ids = itertools.count(1)
_pid = os.getpid()


def next_request_id() -> str:
    """`<pid>-<counter>`: unique among the worker processes of one server."""
    global _pid
    if os.getpid() != _pid:  # a forked worker (preload) starts a series of its own
        _pid = os.getpid()
    return f"{_pid}-{next(_ids)}"


class Phases:
    """One request's phases so far, in nanoseconds. `wait` is the lock's or the queue's, as the
    strategy has one or the other (`wait_name`); `admitted`: the server has an admission phase
    (ray-serve has none of its own)."""

    __slots__ = (
        "admission",
        "admitted",
        "arrived",
        "batch_size",
        "forward",
        "serialize",
        "tokenize",
        "wait",
        "wait_name",
    )

    def __init__(self, wait_name: str, *, admitted: bool = True) -> None:
        self.arrived = perf_counter_ns()
        self.wait_name = wait_name
        self.admitted = admitted
        self.admission = 0
        self.wait = 0
        self.tokenize = 0
        self.forward = 0
        self.serialize = 0
        self.batch_size = 0

    def pairs(self, total_ns: int) -> list[tuple[str, float]]:
        admission = [("admission", self.admission / 1e6)] if self.admitted else []
        return [
            *admission,
            (self.wait_name, self.wait / 1e6),
            ("tokenize", self.tokenize / 1e6),
            ("forward", self.forward / 1e6),
            ("serialize", self.serialize / 1e6),
            ("total", total_ns / 1e6),
        ]

    def headers(self, request_id: bytes) -> list[tuple[bytes, bytes]]:
        """The three headers, with `total` up to now (the body is ready when this is asked)."""
        total = perf_counter_ns() - self.arrived
        return [
            (SERVER_TIMING, format_server_timing(self.pairs(total)).encode()),
            (BATCH_SIZE, str(self.batch_size).encode()),
            (REQUEST_ID, request_id),
        ]


# The phases of the request this task serves (set by guard.py), for the layers that time one.
current: contextvars.ContextVar[Phases | None] = contextvars.ContextVar(
    "embbench_phases", default=None
)
