"""Our servers against hostile clients: real servers, real model, real sockets.

Floods beyond the cap, large requests beside small ones, clients that go away, idle and slow
connections, huge headers, huge inputs, /reload loops and memory after large requests. Every
assertion is functional (an answer, its status, an order of completion, a byte count); the only
times are deadlines on behaviours the server is configured for (protocol.py: about 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from embbench.config.options import ServerOptions
from embbench.machine.process import free_port
from embbench.servers.protocol import CONNECTIONS_PER_REQUEST, MIN_CONNECTIONS
from embbench.variants import get_variant
from tests.integration.conftest import running_server, tree_of

pytestmark = pytest.mark.integration

CAP = 4
# 28 x 9 words: 254 tokens, just within the model's max_seq_length (256).
NEAR_MAX = "the quick brown fox jumps over the lazy dog " * 28
SHORT = "How do I reset my password?"
CUT_OFF_WITHIN_S = 15.0  # what protocol.py configures at 5 s (idle, headers)


@contextlib.contextmanager
def serve(name: str, workdir: Path, **options: Any) -> Iterator[tuple[str, int, Path]]:
    port = free_port()
    spec = get_variant(name).launch(ServerOptions(**options), port, workdir)
    url = f"http://127.0.0.1:{port}"
    log = workdir / "server.log"
    with running_server(spec, log, url, timeout=180) as server:
        yield url, server.pid or 0, log


# The lock and queue families, each with the bare ASGI layer or FastAPI, a small cap and a
# body limit above 1 MiB (so that a 1 MiB input reaches the per-input character cap).
FAMILIES = [
    ("batched", {}),
    ("shared-mutex", {}),
    ("shared-rwlock", {"http": "asgi"}),
]


@pytest.fixture(scope="module", params=FAMILIES, ids=[name for name, _ in FAMILIES])
def family(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Path]]:
    name, options = request.param
    workdir = tmp_path_factory.mktemp(name)
    with serve(name, workdir, max_concurrent_requests=CAP, max_body_bytes=4 << 20, **options) as (
        url,
        _,
        log,
    ):
        yield name, url, log


def stats(url: str) -> dict[str, Any]:
    info = httpx.get(url + "/info", timeout=30).json()
    return {**info["stats"], **{f"admission_{k}": v for k, v in info["admission"].items()}}


def still_serving(url: str) -> None:
    assert httpx.get(url + "/health", timeout=30).status_code == 200
    reply = httpx.post(url + "/predict", json={"text": SHORT}, timeout=60)
    assert reply.status_code == 200 and len(reply.json()["embeddings"][0]) == 384


def wait_for(condition: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


# -- admission ------------------------------------------------------------------------------


def test_beyond_the_cap_429_with_retry_after(family: tuple[str, str, Path]) -> None:
    _, url, _ = family

    async def flood() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            body = {"inputs": [NEAR_MAX] * 16}
            return await asyncio.gather(*(client.post("/embed", json=body) for _ in range(20)))

    replies = asyncio.run(flood())
    codes = sorted(r.status_code for r in replies)
    assert set(codes) == {200, 429}, codes
    assert codes.count(200) >= 1
    refused = [r for r in replies if r.status_code == 429]
    for reply in refused:
        assert reply.headers["retry-after"] == "1"
        assert reply.json()["error_type"] == "overloaded" and reply.json()["error"]
    assert stats(url)["admission_rejected"] >= len(refused)
    still_serving(url)


# -- no request monopolises the model -------------------------------------------------------


def test_a_small_request_finishes_before_a_large_one(family: tuple[str, str, Path]) -> None:
    _, url, _ = family

    async def race() -> list[str]:
        done: list[str] = []
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:

            async def large() -> None:
                reply = await client.post("/embed", json={"inputs": [NEAR_MAX] * 64})
                assert reply.status_code == 200 and len(reply.json()) == 64
                done.append("large")

            async def small() -> None:
                await asyncio.sleep(0.5)  # the large one is tokenised and running by now
                reply = await client.post("/embed", json={"inputs": SHORT})
                assert reply.status_code == 200
                done.append("small")

            await asyncio.gather(large(), small())
        return done

    assert asyncio.run(race()) == ["small", "large"]


def test_truncate_false_cannot_go_past_max_seq_length(family: tuple[str, str, Path]) -> None:
    _, url, _ = family
    # About 400 tokens: under the model's 512 positions, over the server's 256.
    reply = httpx.post(url + "/embed", json={"inputs": "embedding " * 200, "truncate": False})
    assert reply.status_code == 413 and reply.json()["error_type"] == "input_too_long"
    reply = httpx.post(url + "/embed", json={"inputs": NEAR_MAX, "truncate": False})
    assert reply.status_code == 200


# -- clients that go away -------------------------------------------------------------------


def _raw_post(port: int, path: str, payload: Any) -> socket.socket:
    body = json.dumps(payload).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def test_work_of_clients_that_went_away_is_dropped(family: tuple[str, str, Path]) -> None:
    _, url, _ = family
    port = int(url.rsplit(":", 1)[1])
    before = stats(url)
    sockets = [_raw_post(port, "/embed", {"inputs": [NEAR_MAX] * 64}) for _ in range(CAP)]
    time.sleep(1.0)  # admitted, tokenised, queued or under way
    for sock in sockets:
        sock.close()
    assert wait_for(lambda: stats(url)["admission_dropped"] - before["admission_dropped"] == CAP)
    assert wait_for(lambda: stats(url)["admission_requests_in_flight"] == 0)
    # The queue counts dropped rows when its worker next looks (after the batch under way).
    assert wait_for(lambda: stats(url)["abandoned_rows"] > before["abandoned_rows"])
    after = stats(url)
    asked = CAP * 64
    computed = after["rows"] - before["rows"]
    abandoned = after["abandoned_rows"] - before["abandoned_rows"]
    assert abandoned > 0 and computed < asked, (computed, abandoned)
    still_serving(url)  # a cancelled waiter did not take a worker down


def test_a_client_gone_mid_body_leaves_no_traceback(family: tuple[str, str, Path]) -> None:
    _, url, log = family
    port = int(url.rsplit(":", 1)[1])
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(
            b"POST /embed HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 1000\r\n\r\n{"inputs": ["half a bo'
        )
        time.sleep(0.2)
        sock.close()
    time.sleep(1.0)
    still_serving(url)
    assert "Traceback" not in log.read_text(errors="replace")


# -- inputs that cost the tokeniser ---------------------------------------------------------


def test_a_1_mib_input_is_refused(family: tuple[str, str, Path]) -> None:
    _, url, _ = family
    reply = httpx.post(url + "/predict", json={"text": "a" * (1 << 20)}, timeout=60)
    assert reply.status_code == 413 and reply.json()["error_type"] == "input_too_long"


def test_health_answers_while_long_inputs_are_tokenised(family: tuple[str, str, Path]) -> None:
    _, url, _ = family
    # 40 inputs just under the 100,000-character cap: 3.6 MB, about a second of tokenising.
    texts = [("lorem ipsum dolor sit amet " * 3700)[:99_000]] * 40

    async def race() -> list[str]:
        done: list[str] = []
        async with httpx.AsyncClient(base_url=url, timeout=300) as client:

            async def long() -> None:
                reply = await client.post("/embed", json={"inputs": texts})
                assert reply.status_code == 200
                done.append("long")

            async def health() -> None:
                await asyncio.sleep(0.3)
                assert (await client.get("/health")).status_code == 200
                done.append("health")

            await asyncio.gather(long(), health())
        return done

    assert asyncio.run(race()) == ["health", "long"]


# -- /reload ---------------------------------------------------------------------------------


def test_reload_is_off_by_default(family: tuple[str, str, Path]) -> None:
    _, url, _ = family
    reply = httpx.post(url + "/reload")
    assert reply.status_code == 403 and reply.json()["error_type"] == "forbidden"


def test_reload_loops_do_not_starve_inference(tmp_path: Path) -> None:
    with serve("shared-rwlock", tmp_path, enable_reload=True) as (url, _, _):

        async def loops() -> tuple[int, list[int]]:
            stop = time.monotonic() + 6
            answered = 0
            reloads: list[int] = []
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:

                async def predict() -> None:
                    nonlocal answered
                    while time.monotonic() < stop:
                        reply = await client.post("/predict", json={"text": SHORT})
                        assert reply.status_code == 200
                        answered += 1

                async def reload() -> None:
                    while time.monotonic() < stop:
                        reloads.append((await client.post("/reload")).status_code)

                await asyncio.gather(predict(), *(reload() for _ in range(4)))
            return answered, reloads

        answered, reloads = asyncio.run(loops())
        assert set(reloads) == {200}
        numbers = stats(url)
        # Four clients, fewer reloads: concurrent ones were merged into one.
        assert numbers["reloads_merged"] > 0 and numbers["reloads"] < len(reloads)
        assert answered >= numbers["reloads"]  # answers kept coming between the swaps
        still_serving(url)


# -- connections: idle, slow, huge headers (every server of ours) ------------------------------


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bytes:
    """What the server sent before closing, sending `trickle` a byte a second meanwhile;
    fails if the connection is still open after `seconds`."""
    sock.settimeout(1.0)
    received = b""
    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if sent < len(trickle):
                try:
                    sock.sendall(trickle[sent : sent + 1])
                except OSError:
                    return received
                sent += 1
            continue
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError(f"connection still open after {seconds}s")


def check_connection_limits(url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    results: dict[str, bytes | BaseException] = {}

    def idle() -> bytes:
        return _closed_within(socket.create_connection(("127.0.0.1", port)), CUT_OFF_WITHIN_S)

    def slowloris() -> bytes:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        return _closed_within(sock, CUT_OFF_WITHIN_S, trickle=b"x-a: " + b"b" * 40)

    def huge_headers() -> bytes:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        with contextlib.suppress(OSError):  # the server may close before all of it is sent
            for _ in range(64):  # 4 MiB of one header that never ends
                sock.sendall(b"x-filler: " + b"a" * 65536)
        return _closed_within(sock, CUT_OFF_WITHIN_S)

    def idle_after_a_reply() -> bytes:
        # Kept alive after its request: the connection's one timer went through every phase.
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        return _closed_within(sock, CUT_OFF_WITHIN_S)

    def slow_body() -> bytes:
        sock = socket.create_connection(("127.0.0.1", port))
        head = b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 4096\r\n\r\n"
        sock.sendall(head)
        return _closed_within(sock, CUT_OFF_WITHIN_S, trickle=b'{"text": "' + b"a" * 40)

    def run(name: str, check: Any) -> None:
        try:
            results[name] = check()
        except BaseException as exc:  # reported below, in the test's thread
            results[name] = exc

    threads = [
        threading.Thread(target=run, args=(name, check))
        for name, check in (
            ("idle", idle),
            ("slowloris", slowloris),
            ("huge", huge_headers),
            ("idle after a reply", idle_after_a_reply),
            ("slow body", slow_body),
        )
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for name, result in results.items():
        if isinstance(result, BaseException):
            raise AssertionError(f"{name}: {result}") from result
    assert results["idle"] == b""  # an idle connection is closed without a word
    assert isinstance(results["slowloris"], bytes) and results["slowloris"].startswith(
        b"HTTP/1.1 408"
    )
    huge = results["huge"]
    assert isinstance(huge, bytes)
    assert huge == b"" or huge.startswith(b"HTTP/1.1 431"), huge[:100]
    after = results["idle after a reply"]
    assert isinstance(after, bytes) and after.startswith(b"HTTP/1.1 200"), after[:100]
    slow = results["slow body"]
    assert isinstance(slow, bytes) and not slow.startswith(b"HTTP/1.1 200"), slow[:100]
    assert httpx.get(url + "/health", timeout=30).status_code == 200


def test_connection_limits(family: tuple[str, str, Path]) -> None:
    _, url, _ = family
    check_connection_limits(url)


def test_connections_beyond_the_cap_are_refused(family: tuple[str, str, Path]) -> None:
    _, url, _ = family
    port = int(url.rsplit(":", 1)[1])
    cap = max(MIN_CONNECTIONS, CONNECTIONS_PER_REQUEST * CAP)  # protocol.max_connections
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap + 8)]
    body = json.dumps({"text": SHORT}).encode()
    request = (
        f"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        # A connection beyond the cap gets its request answered 429 (never a bare close), then
        # is closed.
        answers = []
        for sock in sockets[cap:]:
            sock.sendall(request)
            answers.append(_closed_within(sock, CUT_OFF_WITHIN_S))
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 429"), answer[:100]
            assert b"retry-after: 1" in answer.lower() and b'"overloaded"' in answer
    finally:
        for sock in sockets:
            sock.close()
    assert httpx.get(url + "/health", timeout=30).status_code == 200


@pytest.mark.parametrize("name", ["per-worker", "preload"])
def test_connection_limits_of_multi_process_servers(name: str, tmp_path: Path) -> None:
    with serve(name, tmp_path, workers=2) as (url, _, _):
        check_connection_limits(url)
        assert httpx.post(url + "/predict", json={"text": SHORT}).status_code == 200


# -- memory ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options", [{"backend": "onnx", "quantize": "int8"}, {}], ids=["onnx-int8", "torch"]
)
def test_memory_comes_back_after_large_requests(options: dict[str, Any], tmp_path: Path) -> None:
    with serve("shared-mutex", tmp_path, **options) as (url, pid, _):

        def rss() -> int:
            return sum(p.memory_info().rss for p in tree_of(pid))

        for _ in range(5):
            httpx.post(url + "/predict", json={"text": SHORT})
        idle = rss()

        async def large() -> list[int]:
            async with httpx.AsyncClient(base_url=url, timeout=600) as client:
                body = {"inputs": [NEAR_MAX] * 64, "truncate": False}
                replies = await asyncio.gather(
                    *(client.post("/embed", json=body) for _ in range(3))
                )
                return [r.status_code for r in replies]

        assert asyncio.run(large()) == [200, 200, 200]
        time.sleep(1.0)
        assert psutil.pid_exists(pid)
        grown = rss() - idle
        assert grown < 1 << 30, f"RSS grew by {grown / 2**20:.0f} MB"
