"""The Server-Timing contract (servers/timing.py) and the layers that fill it, driven by hand:
the guard's headers on answers and 429s, the batch queue's queue/forward split, the refusal of
a connection beyond the cap. The real servers are in tests/integration/test_server_timing.py."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from embbench.load.phases import parse_server_timing as parse
from embbench.servers import timing
from embbench.servers.admission import Admission, Limits
from embbench.servers.batching import BatchQueue
from embbench.servers.guard import RequestGuard
from embbench.servers.protocol import refuse_over_cap
from embbench.servers.timing import PHASES, Phases, format_server_timing

BODY = {"type": "http.request", "body": b'{"text": "a"}', "more_body": False}


def test_format_is_w3c_server_timing_in_milliseconds() -> None:
    text = format_server_timing([("lock", 1.23456), ("forward", 10.0), ("total", 12)])
    assert text == "lock;dur=1.235, forward;dur=10.000, total;dur=12.000"
    assert parse(text) == {"lock": 1.235, "forward": 10.0, "total": 12.0}
    assert format_server_timing([]) == ""


@pytest.mark.parametrize("wait", ["lock", "queue"])
def test_phases_are_in_the_contracts_order_and_end_with_total(wait: str) -> None:
    phases = Phases(wait)
    phases.tokenize, phases.forward, phases.batch_size = 2_000_000, 5_000_000, 3
    headers = dict(phases.headers(b"abc"))
    parsed = parse(headers[b"server-timing"].decode())
    names = list(parsed)
    assert names[-1] == "total" and wait in names
    assert names == [name for name in PHASES if name in names]  # PHASES' order
    assert parsed["tokenize"] == 2.0 and parsed["forward"] == 5.0
    assert parsed["total"] >= 0
    assert headers[b"x-batch-size"] == b"3" and headers[b"x-request-id"] == b"abc"


def test_request_ids_are_pid_and_counter() -> None:
    first, second = timing.next_request_id(), timing.next_request_id()
    assert first.split("-")[0] == str(os.getpid()) and first != second


class Client:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return BODY

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])


def scope(path: str = "/predict", method: str = "POST", **headers: bytes) -> dict[str, Any]:
    raw = [(k.replace("_", "-").encode(), v) for k, v in headers.items()]
    return {"type": "http", "method": method, "path": path, "headers": raw}


async def app(scope: Any, receive: Any, send: Any) -> None:
    """A layer that times its phases as api.py and strategies.py do, then answers."""
    await receive()
    phases = timing.current.get()
    if phases is not None:
        phases.wait, phases.forward, phases.batch_size = 1_000_000, 2_000_000, 1
    await asyncio.sleep(0.005)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def serve(guard: RequestGuard, request: dict[str, Any]) -> Client:
    client = Client()
    asyncio.run(guard(request, client.receive, client.send))
    return client


def test_the_guard_times_a_request_and_echoes_its_id() -> None:
    admission = Admission(Limits(requests=4, inputs=100, tokens=1000))
    guard = RequestGuard(app, admission, server_timing=True, wait_phase="lock")
    headers = serve(guard, scope(x_request_id=b"client-7")).headers()
    parsed = parse(headers[b"server-timing"].decode())
    assert list(parsed) == ["admission", "lock", "tokenize", "forward", "serialize", "total"]
    assert parsed["lock"] == 1.0 and parsed["forward"] == 2.0
    # total covers the layer's sleep; the phases fit in it.
    assert parsed["total"] >= 5.0 and sum(parsed.values()) - parsed["total"] <= parsed["total"]
    assert headers[b"x-request-id"] == b"client-7" and headers[b"x-batch-size"] == b"1"
    assert timing.current.get() is None  # reset once the request is done


def test_a_429_and_a_get_carry_the_headers_too() -> None:
    admission = Admission(Limits(requests=0, inputs=100, tokens=1000))
    guard = RequestGuard(app, admission, server_timing=True, wait_phase="queue")
    refused = serve(guard, scope())
    assert refused.sent[0]["status"] == 429
    headers = refused.headers()
    assert headers[b"retry-after"] == b"1" and b"queue;dur=" in headers[b"server-timing"]
    assert headers[b"x-request-id"].startswith(str(os.getpid()).encode())
    assert b"server-timing" in serve(guard, scope("/info", "GET")).headers()


def test_no_server_timing_adds_no_header() -> None:
    admission = Admission(Limits(requests=4, inputs=100, tokens=1000))
    for request in (scope(), scope("/health", "GET")):
        sent = serve(RequestGuard(app, admission), request).sent
        assert sent[0]["headers"] == []


def test_the_batch_queue_splits_queue_wait_from_forward() -> None:
    def embed(batch: Sequence[list[int]], normalize: bool | None = None) -> np.ndarray:
        time.sleep(0.02)
        return np.ones((len(batch), 4), np.float32)

    queue = BatchQueue(embed, max_batch_size=8, max_batch_tokens=1000)

    async def two() -> tuple[Phases, Phases]:
        first, second = Phases("queue"), Phases("queue")
        # The second waits in the queue while the first's batch runs.
        await asyncio.gather(
            queue.embed([[1, 2]], None, first), queue.embed([[1, 2], [3]], None, second)
        )
        return first, second

    try:
        first, second = asyncio.run(two())
    finally:
        queue.close()
    assert first.forward >= 20_000_000 and first.batch_size >= 1
    assert second.forward >= 20_000_000 and second.batch_size in (1, 2, 3)
    if first.batch_size == 1:  # they did not share a batch: the second waited for the first
        assert second.wait >= 15_000_000


def test_a_connection_beyond_the_cap_is_read_then_answered_429() -> None:
    received: list[str] = []
    messages = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.request", "body": b"}", "more_body": False},
    ]

    async def receive() -> dict[str, Any]:
        received.append("chunk")
        return messages[len(received) - 1]

    client = Client()
    asyncio.run(refuse_over_cap(scope(), receive, client.send))
    assert received == ["chunk", "chunk"]  # the whole body read before the answer
    headers = client.headers()
    assert client.sent[0]["status"] == 429 and headers[b"retry-after"] == b"1"
    assert headers[b"connection"] == b"close" and b"total;dur=" in headers[b"server-timing"]
    assert b'"overloaded"' in client.sent[1]["body"]


def test_a_server_without_admission_leaves_it_out() -> None:
    headers = dict(Phases("queue", admitted=False).headers(b"x"))
    names = list(parse(headers[b"server-timing"].decode()))
    assert names == ["queue", "tokenize", "forward", "serialize", "total"]
