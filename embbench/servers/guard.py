"""An ASGI middleware in front of either app (FastAPI or the bare one): admission, disconnects.

- Admission: every POST but /reload holds a slot of the process's Admission for its whole life;
  beyond `max_concurrent_requests` it is answered here, before its body is read: 429 JSON with
  Retry-After, as TEI does. A 429 the API raises later (too many inputs or tokens in flight)
  gets the same header on its way out.
- A client that goes away: its request is cancelled, so its work is dropped (queue entries
  skipped, lock slices never started) instead of computed for nobody. uvicorn does not do it by
  itself: it only answers http.disconnect to the app's next receive(), which an app busy
  waiting for the model never calls. So once the body is in, our HTTP protocol (protocol.py)
  calls the guard back when the connection is lost, and the guard cancels the request's task
  if no response has started. Under another server, a watcher task per request waits on
  receive() for the disconnect instead (a task per request is CPU the hook saves).
- A client that disconnects mid-body: the request ends here with one short log line, where
  FastAPI used to log two tracebacks (its exception handler, then uvicorn).
- Timing (timing.py): with `server_timing` on, the guard opens each request's `Phases` (its
  arrival, the admission), hands it to the layers below through `timing.current`, and puts
  `Server-Timing`, `X-Batch-Size` and `X-Request-Id` on the response as it starts, 429s and
  errors included.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter_ns
from typing import Any

import orjson

from embbench.servers import timing
from embbench.servers.admission import RETRY_AFTER_S, Admission, Overloaded
from embbench.servers.timing import Phases

log = logging.getLogger("embbench.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNGUARDED_POSTS = frozenset({"/reload"})  # merged into one reload anyway (strategies.py)


def _error(error_type: str, message: str) -> bytes:
    return orjson.dumps({"error": message, "error_type": error_type})


# The scope key through which our HTTP protocol (protocol.py) tells the guard that the client's
# connection is lost: it calls the function the guard leaves under it. Under another server the
# guard watches for http.disconnect itself, with a task per request.
DISCONNECT_HOOK = "embbench.on_disconnect"
HOOK_SUPPORTED = "embbench.disconnect_hook"


class _Exchange:
    """What the guard knows of one request/response exchange."""

    __slots__ = ("_gone_event", "body_in", "cancelled_here", "gone", "response_started", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.body_in = False
        self.gone = False
        self.response_started = False
        self.cancelled_here = False
        self._gone_event: asyncio.Event | None = None

    def client_gone(self) -> None:
        """The client's connection is lost: once its body is in and no response has begun,
        cancel the request (while the body is read, guarded_receive sees the disconnect)."""
        if self.gone:
            return
        self.gone = True
        if self._gone_event is not None:
            self._gone_event.set()
        if self.body_in and not self.response_started and not self.task.done():
            self.cancel()

    def cancel(self) -> None:
        self.cancelled_here = True
        self.task.cancel()

    async def wait_gone(self) -> None:
        if not self.gone:
            self._gone_event = self._gone_event or asyncio.Event()
            await self._gone_event.wait()


def request_id(scope: Scope) -> bytes:
    """The client's X-Request-Id, or one of ours."""
    for name, value in scope["headers"]:
        if name == timing.REQUEST_ID:
            return bytes(value)
    return timing.next_request_id().encode()


def with_timing(message: Message, phases: Phases, scope: Scope) -> Message:
    """An http.response.start message with the timing headers added (total: until now)."""
    headers = [*message.get("headers", []), *phases.headers(request_id(scope))]
    return {**message, "headers": headers}


class RequestGuard:
    """`server_timing`: put the timing headers on every answer; `wait_phase`: what the strategy's
    wait is called (the lock's, or the batch queue's)."""

    def __init__(
        self,
        app: ASGIApp,
        admission: Admission,
        *,
        server_timing: bool = False,
        wait_phase: str = "lock",
    ) -> None:
        self.app = app
        self.admission = admission
        self.server_timing = server_timing
        self.wait_phase = wait_phase

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        phases = None
        if self.server_timing:
            phases = Phases(self.wait_phase)
            token = timing.current.set(phases)
        try:
            if scope["method"] != "POST" or scope["path"] in UNGUARDED_POSTS:
                if phases is not None:
                    send = _timed_send(send, phases, scope)
                await self.app(scope, receive, send)
                return
            try:
                with self.admission.admit():
                    if phases is not None:
                        phases.admission = perf_counter_ns() - phases.arrived
                    await self._guarded(scope, receive, send, phases)
            except Overloaded as exc:
                if phases is not None:
                    phases.admission = perf_counter_ns() - phases.arrived
                await _send_429(send, str(exc), phases, scope)
        finally:
            if phases is not None:
                timing.current.reset(token)

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, phases: Phases | None
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        exchange = _Exchange(task)
        hooked = bool(scope.get(HOOK_SUPPORTED))
        if hooked:
            scope[DISCONNECT_HOOK] = exchange.client_gone
        watcher: asyncio.Task[None] | None = None

        async def guarded_receive() -> Message:
            nonlocal watcher
            if exchange.body_in:
                # After the body the only message left is http.disconnect, which the watcher
                # (or the protocol's hook) reports; two readers of one receive() would each
                # miss what the other took.
                await exchange.wait_gone()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                exchange.gone = True
                exchange.cancel()
                await asyncio.Event().wait()  # raises CancelledError here, at once
            if not message.get("more_body", False):
                exchange.body_in = True
                if exchange.gone:  # the hook fired while the last chunk was on its way
                    exchange.cancel()
                    await asyncio.Event().wait()
                if not hooked:
                    watcher = asyncio.create_task(self._watch(receive, exchange))
            return message

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.response_started = True
                if message["status"] == 429:
                    retry = (b"retry-after", str(RETRY_AFTER_S).encode())
                    message = {**message, "headers": [*message.get("headers", []), retry]}
                if phases is not None:
                    message = with_timing(message, phases, scope)
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except asyncio.CancelledError:
            if not exchange.cancelled_here:
                raise
            if hasattr(task, "uncancel"):  # 3.11+: this cancel is handled, not pending
                task.uncancel()
            self.admission.dropped += 1
            log.info("%s %s: the client went away; request dropped", scope["method"], scope["path"])
        except Exception as exc:
            if not exchange.gone:
                raise
            self.admission.dropped += 1
            log.info("%s %s: the client went away (%s)", scope["method"], scope["path"], exc)
        finally:
            scope.pop(DISCONNECT_HOOK, None)
            if watcher is not None:
                watcher.cancel()

    @staticmethod
    async def _watch(receive: Receive, exchange: _Exchange) -> None:
        message = await receive()  # uvicorn answers once the client is gone or the reply sent
        if message["type"] == "http.disconnect":
            exchange.client_gone()


def _timed_send(send: Send, phases: Phases, scope: Scope) -> Send:
    async def timed_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = with_timing(message, phases, scope)
        await send(message)

    return timed_send


async def _send_429(send: Send, message: str, phases: Phases | None, scope: Scope) -> None:
    body = _error("overloaded", message)
    headers = overloaded_headers(body)
    start: Message = {"type": "http.response.start", "status": 429, "headers": headers}
    if phases is not None:
        start = with_timing(start, phases, scope)
    await send(start)
    await send({"type": "http.response.body", "body": body})


def overloaded_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_S).encode()),
    ]
