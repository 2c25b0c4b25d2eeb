"""Every server of ours says where a request's time went (Server-Timing, X-Batch-Size,
X-Request-Id: servers/timing.py), and turns away what it cannot take with a 429, never a
dropped connection. Real servers, real model, real sockets.

One server per variant, each used for everything asked of it: a timed request, an error, and
300 requests at once against a cap of 32. Every own variant is here but ray-serve, whose Ray
head takes ~20 s to start: test_ray_serve.py runs the same two checks (`check_timing`,
`check_flood`) on the server it already has.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from embbench.load.phases import parse_server_timing as parse
from tests.integration.conftest import serve_variant

pytestmark = pytest.mark.integration

SHORT = "How do I reset my password?"
CAP = 32
FLOOD = 300


def _rust_has_timing() -> bool:
    """Built, with Server-Timing and the request cap (a build from before the cap runs
    without one: its flood would have no 429 to show)."""
    from embbench.variants.rust import binary_path

    if not binary_path().is_file():
        return False
    done = subprocess.run(
        [str(binary_path()), "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    return "--no-server-timing" in done.stdout and "--max-concurrent-requests" in done.stdout


RUST = pytest.mark.skipif(
    not _rust_has_timing(),
    reason="the Rust server is not built with Server-Timing and its request cap (make rust)",
)
CAPPED = {"max_concurrent_requests": CAP}
# (variant, options, the phase before the forward pass). Every one under the same cap: the Rust
# server's is its --max-concurrent-requests, per process as the Python servers'.
SERVERS: list[Any] = [
    pytest.param(("shared-rwlock", CAPPED, "lock"), id="rwlock"),
    pytest.param(("batched", CAPPED, "queue"), id="batched"),
    pytest.param(("shared-mutex", {**CAPPED, "http": "asgi"}, "lock"), id="mutex-asgi"),
    pytest.param(("per-worker", {**CAPPED, "workers": 2}, "lock"), id="per-worker"),
    pytest.param(("preload", {**CAPPED, "workers": 2}, "lock"), id="preload"),
    pytest.param(("rust-mutex", CAPPED, "lock"), id="rust-mutex", marks=RUST),
    pytest.param(("rust-rwlock", CAPPED, "lock"), id="rust-rwlock", marks=RUST),
]


@pytest.fixture(scope="module", params=SERVERS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    name, options, wait = request.param
    with serve_variant(name, tmp_path_factory.mktemp(name), **options) as (url, _):
        yield url, wait


def check_timing(url: str, wait: str) -> None:
    """A real request's phases: the strategy's own, summing to about the server's total, which
    lies within the client's latency; a batch size and a request id; an error timed too."""
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/predict", json={"text": SHORT})  # the connection, and a warm path
        began = time.perf_counter()
        reply = client.post("/predict", json={"text": SHORT}, headers={"x-request-id": "t-1"})
        latency_ms = (time.perf_counter() - began) * 1000
        assert reply.status_code == 200
        phases = parse(reply.headers["server-timing"])
        assert list(phases)[-1] == "total" and wait in phases
        assert {"tokenize", "forward", "serialize"} <= set(phases)
        parts = sum(ms for name, ms in phases.items() if name != "total")
        total = phases["total"]
        assert 0.5 * total <= parts <= total + 0.05, phases
        assert total <= latency_ms, (phases, latency_ms)
        assert reply.headers["x-batch-size"] == "1"
        assert reply.headers["x-request-id"] == "t-1"

        # Three inputs in one request, without the client's id: the server makes one.
        reply = client.post("/embed", json={"inputs": [SHORT, "hello", "world"]})
        assert reply.status_code == 200 and "server-timing" in reply.headers
        # Unbatched, the three share one forward pass; batched, lengths apart may not.
        assert int(reply.headers["x-batch-size"]) >= (3 if wait == "lock" else 1)
        assert reply.headers["x-request-id"] and "," not in reply.headers["x-request-id"]

        # An error is timed too, and is never a 5xx.
        wrong = client.post("/predict", json={"txt": SHORT})
        assert wrong.status_code == 422
        assert "total" in parse(wrong.headers["server-timing"])


def check_flood(url: str) -> None:
    """FLOOD requests at once, one connection each, against a cap of CAP: every one answered
    200 or 429 (with Retry-After and error_type "overloaded"), some of each, each timed; none
    dropped; the server serves on."""

    async def at_once() -> list[httpx.Response | BaseException]:
        # One connection per request, as many clients would: beyond the server's connection
        # cap (4 x 32 per process) too.
        limits = httpx.Limits(max_connections=FLOOD, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            body = {"text": SHORT}
            posts = (client.post("/predict", json=body) for _ in range(FLOOD))
            return await asyncio.gather(*posts, return_exceptions=True)

    replies = asyncio.run(at_once())
    dropped = [r for r in replies if isinstance(r, BaseException)]
    assert not dropped, f"{len(dropped)} dropped, e.g. {dropped[0]!r}"
    answers = [r for r in replies if isinstance(r, httpx.Response)]
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429}, sorted(set(codes))
    assert codes.count(200) >= 1
    assert codes.count(429) >= 1, f"no 429 from {FLOOD} requests at once against a cap of {CAP}"
    for reply in answers:
        assert "total" in parse(reply.headers["server-timing"]), reply.headers
        if reply.status_code == 429:
            assert reply.headers["retry-after"] and reply.json()["error_type"] == "overloaded"
    assert httpx.post(url + "/predict", json={"text": SHORT}, timeout=60).status_code == 200


def test_a_request_says_where_its_time_went(server: tuple[str, str]) -> None:
    check_timing(*server)


def test_beyond_the_cap_only_200s_and_429s(server: tuple[str, str]) -> None:
    check_flood(server[0])


@pytest.mark.parametrize("name", ["shared-mutex", pytest.param("rust-mutex", marks=RUST)])
def test_no_server_timing_sends_none(name: str, tmp_path: Path) -> None:
    with serve_variant(name, tmp_path, server_timing=False) as (url, _):
        reply = httpx.post(url + "/predict", json={"text": SHORT}, timeout=60)
        assert reply.status_code == 200
        assert "server-timing" not in reply.headers and "x-batch-size" not in reply.headers
