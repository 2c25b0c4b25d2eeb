"""uvicorn's httptools protocol with the limits of a server that faces its clients directly.

uvicorn closes a keep-alive connection left idle after a response, and that is all: a connection
that never sends a byte, a client that sends one header byte a second (slowloris), or 200 MB of
headers that never end (httptools has no limit of its own) were all kept, each holding a socket
and memory. As nginx's client_header_timeout, client_body_timeout and
large_client_header_buffers do, this class adds:

- IDLE_TIMEOUT_S: a connection with no request under way (new, or between keep-alive requests)
  is closed after it. (uvicorn's own keep-alive timer covers the second case but not the first,
  and any byte, even a stray CRLF, resets it.)
- HEADER_TIMEOUT_S: once a request has begun, its request line and headers must all be in
  within it, or it is answered 408 and closed, however steadily bytes trickle in.
- BODY_TIMEOUT_S: the body must be in within it after the headers, or the connection is closed
  (the app sees the client go, guard.py drops the request).
- MAX_HEADER_BYTES: request line and headers together; beyond it, 431 and close.
- A connection cap per process, CONNECTIONS_PER_REQUEST x max_concurrent_requests (2048 by
  default): a connection beyond it gets its request read and answered 429 with Retry-After
  (`connection: close`), then is closed; it never reaches the app. Admission (429) bounds the
  work; this bounds the sockets and buffers of clients that hold connections open. It used to
  answer 503 and close at once, before the request was in: the request's bytes then met a
  closed socket, the kernel reset the connection, and the client lost the answer with it (300
  requests at once against a cap of 32: 172 connections dropped with no HTTP answer at all).

Every server of ours runs it: `python -m embbench.servers` (shared-*, batched) passes the class
to uvicorn.run, per-worker names it with `--http embbench.servers.protocol:GuardedHttpToolsProtocol`
and preload runs gunicorn with `-k embbench.servers.gunicorn_worker.UvicornWorker`.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
import os
from typing import Any, cast

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from embbench.config.options import ServerOptions
from embbench.config.wire import ServerConfig
from embbench.servers.guard import DISCONNECT_HOOK, HOOK_SUPPORTED, overloaded_headers
from embbench.servers.timing import Phases, next_request_id

log = logging.getLogger("embbench.server")

IDLE_TIMEOUT_S = 5.0  # uvicorn's own keep-alive default
HEADER_TIMEOUT_S = 5.0
BODY_TIMEOUT_S = 10.0  # a 1 MiB body (the default max_body_bytes) at 100 KB/s
MAX_HEADER_BYTES = 64 * 1024  # nginx: 4 buffers of 8 KiB for large headers; ours are tiny
CONNECTIONS_PER_REQUEST = 4
MIN_CONNECTIONS = 64


@functools.cache
def _options() -> ServerOptions:
    """The server's options, from its environment."""
    text = os.environ.get("EMBBENCH_SERVER_CONFIG")
    return ServerConfig.from_json(text).options if text else ServerOptions()


def max_connections() -> int:
    """The connection cap of this process."""
    return max(MIN_CONNECTIONS, CONNECTIONS_PER_REQUEST * _options().max_concurrent_requests)


async def refuse_over_cap(scope: Any, receive: Any, send: Any) -> None:
    """The app of a connection beyond the cap: read its request to the end (a socket closed
    with unread bytes is reset, and the answer lost with it), then answer 429 and close."""
    if scope["type"] != "http":
        return
    phases = Phases("lock") if _options().server_timing else None
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    body = orjson.dumps({"error": "too many connections; retry later", "error_type": "overloaded"})
    headers = [*overloaded_headers(body), (b"connection", b"close")]
    if phases is not None:
        headers += phases.headers(next_request_id().encode())
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _raw_response(status: int, error_type: str, message: str) -> bytes:
    body = orjson.dumps({"error": message, "error_type": error_type})
    phrase = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _CoalescingTransport:
    """A transport whose writes of one loop turn go out together: uvicorn writes a response's
    head and its body separately, two send() calls and two TCP segments for a reply of a few
    KB. The protocol flushes when a response is complete; a turn's callback flushes anything
    else (a 100 Continue, an error page before close)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending = []
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:  # asked several times per request: no __getattr__ detour
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None  # what the connection waits for, if a limit applies
        self._due = 0.0
        self._reading_headers = True  # no request under way, or its headers not all in
        self._header_bytes = 0

    # -- timers --------------------------------------------------------------------------

    # One timer per connection, moved lazily: a request goes through three phases (headers,
    # body, then idle), and cancelling one timer and scheduling the next at each step cost the
    # event loop three timer handles per request. Arming only records the phase and its due
    # time; the timer, when it fires early, sets itself again for the time now due.

    def _arm(self, seconds: float, phase: str) -> None:
        self._phase = phase
        self._due = self.loop.time() + seconds
        if self._deadline is None or self._deadline.when() > self._due:
            self._schedule()

    def _disarm(self) -> None:
        self._phase = None  # a timer that fires finds nothing due

    def _schedule(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_at(self._due, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        phase = self._phase
        if phase is None:
            return
        if self._due - self.loop.time() > 0.01:  # armed again since the timer was set
            self._schedule()
            return
        self._phase = None
        if self.transport.is_closing():
            return
        if phase == "headers":
            self._refuse(408, "timeout", f"request headers not received within {HEADER_TIMEOUT_S}s")
        else:  # idle: nothing to answer; body: the app already has the request, let it see it go
            self.transport.close()

    def _refuse(self, status: int, error_type: str, message: str) -> None:
        # Only where no response of this connection is under way: bytes of ours in the middle
        # of the app's reply would corrupt it.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_raw_response(status, error_type, message))
        self.transport.close()

    # -- uvicorn's hooks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._writes = _CoalescingTransport(transport, self.loop)
        super().connection_made(cast(asyncio.Transport, self._writes))
        if len(self.connections) > max_connections():
            log.warning("connection refused: %d connections open", len(self.connections) - 1)
            self.app = refuse_over_cap  # its request is answered 429, the app never sees it
        self._arm(IDLE_TIMEOUT_S, "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._deadline is not None:  # let this protocol go now, not when the timer fires
            self._deadline.cancel()
            self._deadline = None
        cycle = self.cycle
        super().connection_lost(exc)
        if cycle is not None and not cycle.response_complete:
            hook = cast(dict[str, Any], cycle.scope).get(DISCONNECT_HOOK)
            if hook is not None:
                hook()  # guard.py: cancel the request, its client is gone

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # Counted by chunk, before the parser: a chunk that ends the headers resets the count
        # (on_headers_complete), so only headers still unfinished after a chunk are measured.
        if (
            self._reading_headers
            and self._header_bytes > MAX_HEADER_BYTES
            and not self.transport.is_closing()
        ):
            self._refuse(431, "headers_too_large", f"request headers exceed {MAX_HEADER_BYTES} B")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._arm(HEADER_TIMEOUT_S, "headers")

    def on_headers_complete(self) -> None:
        cast(dict[str, Any], self.scope)[HOOK_SUPPORTED] = True  # connection_lost calls back
        self._reading_headers = False
        self._header_bytes = 0
        self._arm(BODY_TIMEOUT_S, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()  # the request is in; the app may take its time to answer

    def on_response_complete(self) -> None:
        self._writes.flush()
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._reading_headers = True
            self._header_bytes = 0
            self._arm(IDLE_TIMEOUT_S, "idle")
