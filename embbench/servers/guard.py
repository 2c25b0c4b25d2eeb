"""An ASGI middleware in front of either app (FastAPI or the bare one): admission, disconnects.

- Admission: every POST but /reload holds a slot of the process's Admission for its whole life;
  beyond `max_concurrent_requests` it is answered here, before its body is read: 429 JSON with
  Retry-After, as TEI does. A 429 the API raises later (too many inputs or tokens in flight)
  gets the same header on its way out.
- A client that goes away: its request is cancelled, so its work is dropped (queue entries
  skipped, lock slices never started) instead of computed for nobody. uvicorn does not do it by
  itself: it only answers http.disconnect to the app's next receive(), which an app busy
  waiting for the model never calls. So once the body is in, a watcher task waits on receive()
  for the disconnect and cancels the request's task if no response has started.
- A client that disconnects mid-body: the request ends here with one short log line, where
  FastAPI used to log two tracebacks (its exception handler, then uvicorn).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from embbench.servers.admission import RETRY_AFTER_S, Admission, Overloaded

log = logging.getLogger("embbench.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNGUARDED_POSTS = frozenset({"/reload"})  # merged into one reload anyway (strategies.py)


def _error(error_type: str, message: str) -> bytes:
    return orjson.dumps({"error": message, "error_type": error_type})


class _Exchange:
    """What the guard knows of one request/response exchange."""

    def __init__(self) -> None:
        self.body_in = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.response_started = False
        self.cancelled_here = False


class RequestGuard:
    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] in UNGUARDED_POSTS:
            await self.app(scope, receive, send)
            return
        try:
            with self.admission.admit():
                await self._guarded(scope, receive, send)
        except Overloaded as exc:
            await _send_429(send, str(exc))

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        exchange = _Exchange()

        async def guarded_receive() -> Message:
            if exchange.body_in.is_set():
                # After the body the only message left is http.disconnect, which the watcher
                # reads; two readers of one receive() would each miss what the other took.
                await exchange.disconnected.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                exchange.disconnected.set()
                exchange.cancelled_here = True
                task.cancel()
                await asyncio.Event().wait()  # raises CancelledError here, at once
            if not message.get("more_body", False):
                exchange.body_in.set()
            return message

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.response_started = True
                if message["status"] == 429:
                    retry = (b"retry-after", str(RETRY_AFTER_S).encode())
                    message = {**message, "headers": [*message.get("headers", []), retry]}
            await send(message)

        watcher = asyncio.create_task(self._watch(receive, exchange, task))
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
            if not exchange.disconnected.is_set():
                raise
            self.admission.dropped += 1
            log.info("%s %s: the client went away (%s)", scope["method"], scope["path"], exc)
        finally:
            watcher.cancel()

    @staticmethod
    async def _watch(receive: Receive, exchange: _Exchange, task: asyncio.Task[Any]) -> None:
        await exchange.body_in.wait()
        message = await receive()  # uvicorn answers once the client is gone or the reply sent
        if message["type"] == "http.disconnect":
            exchange.disconnected.set()
            if not exchange.response_started and not task.done():
                exchange.cancelled_here = True
                task.cancel()


async def _send_429(send: Send, message: str) -> None:
    body = _error("overloaded", message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_S).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
