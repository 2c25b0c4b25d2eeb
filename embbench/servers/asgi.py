"""The API (api.py) as a bare ASGI callable: no framework between uvicorn and the handlers.

What FastAPI adds per request (routing, middleware layers, a Request object, exception
handler lookup) is small next to a forward pass but not next to the rest of the request's own
work: at c=100 it is the event loop's largest share after uvicorn itself (py-spy, batched
onnx int8). `--http asgi` measures the difference; the API and its errors are the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from embbench.servers.api import (
    Api,
    ApiError,
    check_declared_length,
    check_read_length,
    error_body,
    json_body,
    log,
    parse_json,
    reply_body,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


class AsgiApp:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.limit = api.config.options.max_body_bytes
        self.posts: dict[str, Callable[[Any], Awaitable[Any]]] = {
            "/predict": api.predict,
            "/embed": api.embed,
            "/": api.embed,  # TEI's route that its clients call (huggingface_hub)
            "/tokenize": api.tokenize,
            "/decode": api.decode,
            "/v1/embeddings": api.openai,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            status, body = await self._handle(scope, receive)
            headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        path, method = scope["path"], scope["method"]
        try:
            if path in self.posts or path == "/reload":
                if method != "POST":
                    raise ApiError(405, "http", "Method Not Allowed")
                if path == "/reload":
                    return 200, json_body(await self.api.reload())
                payload = parse_json(await self._body(scope, receive))
                return 200, reply_body(await self.posts[path](payload))
            if path in ("/health", "/info"):
                if method != "GET":
                    raise ApiError(405, "http", "Method Not Allowed")
                if path == "/health":
                    return self.api.health()
                return 200, json_body(self.api.info())
            raise ApiError(404, "http", "Not Found")
        except ApiError as exc:
            return exc.status, exc.body()
        except Exception:
            log.exception("unexpected error")
            return 500, error_body("internal", "internal error; see the server log")

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value.decode("latin-1")
        check_declared_length(declared, self.limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "http", "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            check_read_length(size, self.limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.api.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.api.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
