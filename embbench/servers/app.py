"""The API (api.py) served with FastAPI, as most Python embedding servers are written."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def _response(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


async def read_json(request: Request, limit: int) -> Any:
    check_declared_length(request.headers.get("content-length"), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        check_read_length(len(body), limit)
    return parse_json(body)


def create_fastapi_app(api: Api) -> FastAPI:
    limit = api.config.options.max_body_bytes

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        api.start()
        yield
        api.close()

    app = FastAPI(title="embbench server", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _response(exc.body(), exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _response(error_body("http", str(exc.detail)), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        # What went wrong is in the server log; a client learns no names or paths of ours.
        return _response(error_body("internal", "internal error; see the server log"), 500)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        return _response(reply_body(await api.predict(await read_json(request, limit))))

    # "/" too: TEI's route that its clients call (huggingface_hub's feature_extraction).
    @app.post("/embed")
    @app.post("/")
    async def embed(request: Request) -> Response:
        return _response(reply_body(await api.embed(await read_json(request, limit))))

    @app.post("/tokenize")
    async def tokenize(request: Request) -> Response:
        return _response(reply_body(await api.tokenize(await read_json(request, limit))))

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return _response(reply_body(await api.decode(await read_json(request, limit))))

    @app.post("/v1/embeddings")
    async def openai_embeddings(request: Request) -> Response:
        return _response(reply_body(await api.openai(await read_json(request, limit))))

    @app.post("/reload")
    async def reload() -> Response:
        return _response(json_body(await api.reload()))

    @app.get("/health")
    async def health() -> Response:
        status, body = api.health()
        return _response(body, status)

    @app.get("/info")
    async def info() -> Response:
        return _response(json_body(api.info()))

    return app
