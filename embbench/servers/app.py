"""The HTTP app every variant of ours serves (the variants differ in strategy and processes).

API (DESIGN.md): POST /predict, POST /embed (TEI's shape), POST /v1/embeddings (OpenAI's shape),
GET /health, GET /info; errors are JSON {"error", "error_type"} and never a 500 for bad input.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from embbench.config import ServerConfig
from embbench.servers.encoder import Encoder, EncoderSettings, InputTooLongError, TokenIds
from embbench.servers.strategies import (
    BatchedStrategy,
    MutexStrategy,
    RWLockStrategy,
    Strategy,
)

log = logging.getLogger("embbench.server")
WARMUP_TEXT = "Warming up the model so that the first measured request is not the slowest."
MAX_CLIENT_BATCH = 64  # inputs per /embed request, as TEI's --max-client-batch-size


class ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def json_response(payload: Any, status: int = 200) -> Response:
    # orjson writes numpy arrays directly: no list-of-float detour, the costly part of a reply.
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json")


def error_response(status: int, error_type: str, message: str) -> Response:
    return json_response({"error": message, "error_type": error_type}, status)


def encoder_settings(config: ServerConfig) -> EncoderSettings:
    return EncoderSettings(
        model_path=config.model_path,
        backend=config.backend,
        quantize=config.quantize,
        padding=config.padding,
        truncation=config.truncation,
        max_seq_length=config.max_seq_length,
        threads=config.threads,
    )


def build_strategy(config: ServerConfig, encoder: Encoder) -> Strategy:
    if config.strategy == "rwlock":
        return RWLockStrategy(encoder, pool_size=config.streams)
    if config.strategy == "batched":
        return BatchedStrategy(
            encoder,
            config.max_batch_size,
            config.max_batch_tokens,
            config.batch_spread,
            streams=config.streams,
        )
    return MutexStrategy(encoder)


class ServerState:
    """The model and strategy of this process, loaded in the background so /health can say 503."""

    def __init__(self, config: ServerConfig, encoder: Encoder | None = None) -> None:
        self.config = config
        self.strategy: Strategy | None = None
        self.error: str | None = None
        self._preloaded = encoder

    def load(self) -> None:
        try:
            if self._preloaded is not None:
                # Loaded before fork: only this worker's thread setting is new.
                self._preloaded.set_threads(self.config.threads)
            encoder = self._preloaded or Encoder(encoder_settings(self.config))
            strategy = build_strategy(self.config, encoder)
            ids = encoder.tokenize(WARMUP_TEXT)
            for each in strategy.encoders():  # first calls allocate and pick kernels
                for size in (1, 1, 4):
                    each.embed([ids] * size)
            self.strategy = strategy
            if self.config.ready_dir:
                Path(self.config.ready_dir, str(os.getpid())).touch()
        except Exception as exc:  # reported by /health; the launcher sees it in the log too
            log.exception("model failed to load")
            self.error = f"{type(exc).__name__}: {exc}"

    def ready(self) -> bool:
        if self.strategy is None:
            return False
        if not self.config.ready_dir or self.config.workers <= 1:
            return True
        # Several workers share the port; healthy means every one of them has its model.
        try:
            return len(os.listdir(self.config.ready_dir)) >= self.config.workers
        except OSError:
            return True


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"body of {declared} bytes exceeds {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from exc


def text_field(payload: Any, key: str) -> str:
    if not isinstance(payload, dict):
        raise ApiError(422, "validation", "body must be a JSON object")
    if key not in payload:
        raise ApiError(422, "validation", f"missing field {key!r}")
    value = payload[key]
    if not isinstance(value, str):
        raise ApiError(422, "validation", f"field {key!r} must be a string")
    return value


def text_list(payload: Any, key: str) -> list[str]:
    if not isinstance(payload, dict):
        raise ApiError(422, "validation", "body must be a JSON object")
    if key not in payload:
        raise ApiError(422, "validation", f"missing field {key!r}")
    value = payload[key]
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(422, "validation", f"field {key!r} must be a string or a list of strings")
    if len(texts) > MAX_CLIENT_BATCH:
        raise ApiError(413, "validation", f"{len(texts)} inputs exceed {MAX_CLIENT_BATCH}")
    return texts


def create_app(config: ServerConfig, encoder: Encoder | None = None) -> FastAPI:
    state = ServerState(config, encoder)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(target=state.load, name="model-loader", daemon=True)
        loader.start()
        yield
        if state.strategy is not None:
            state.strategy.close()

    app = FastAPI(title="embbench server", lifespan=lifespan, docs_url=None, redoc_url=None)

    def strategy() -> Strategy:
        if state.strategy is None:
            raise ApiError(503, "unavailable", state.error or "model is loading")
        return state.strategy

    async def embed_texts(texts: list[str], truncate: bool | None = None) -> Any:
        current = strategy()
        for text in texts:
            if not text.strip():
                raise ApiError(422, "validation", "input text is empty")
        try:
            ids: list[TokenIds] = [current.encoder.tokenize(t, truncate) for t in texts]
        except InputTooLongError as exc:
            raise ApiError(413, "input_too_long", str(exc)) from exc
        return await current.embed(ids)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.error_type, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, "http", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return error_response(500, "internal", f"{type(exc).__name__}: {exc}")

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        payload = await read_json(request, config.max_body_bytes)
        text = text_field(payload, "text")
        return json_response({"embeddings": await embed_texts([text])})

    @app.post("/embed")
    async def embed(request: Request) -> Response:
        payload = await read_json(request, config.max_body_bytes)
        texts = text_list(payload, "inputs")
        truncate = payload.get("truncate")
        if truncate is not None and not isinstance(truncate, bool):
            raise ApiError(422, "validation", "field 'truncate' must be a boolean")
        return json_response(await embed_texts(texts, truncate))

    @app.post("/v1/embeddings")
    async def openai_embeddings(request: Request) -> Response:
        payload = await read_json(request, config.max_body_bytes)
        texts = text_list(payload, "input")
        vectors = await embed_texts(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors)
        ]
        return json_response(
            {"object": "list", "data": data, "model": config.model_name or config.model_path}
        )

    @app.post("/reload")
    async def reload() -> Response:
        current = strategy()
        if not current.can_reload:
            raise ApiError(405, "unsupported", f"{config.variant} does not reload its model")
        await current.reload(lambda: Encoder(encoder_settings(config)))
        return json_response({"status": "reloaded"})

    @app.get("/health")
    async def health() -> Response:
        if state.error:
            return error_response(503, "load_failed", state.error)
        if not state.ready():
            return error_response(503, "unavailable", "model is loading")
        return json_response({"status": "ok"})

    @app.get("/info")
    async def info() -> Response:
        current = state.strategy
        return json_response(
            {
                "variant": config.variant,
                "pid": os.getpid(),
                "workers": config.workers,
                "threads": config.threads,
                "backend": config.backend,
                "quantize": config.quantize,
                "padding": config.padding,
                "truncation": config.truncation,
                "max_seq_length": current.encoder.max_seq_length if current else None,
                "max_input_tokens": current.encoder.max_positions if current else None,
                "model": config.model_name or config.model_path,
                "strategy": config.strategy,
                "ready": state.ready(),
                "stats": current.stats() if current else {},
            }
        )

    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and gunicorn workers: the config comes in the environment."""
    config = ServerConfig.from_json(os.environ["EMBBENCH_SERVER_CONFIG"])
    return create_app(config)


def preload_app() -> FastAPI:
    """gunicorn --preload target: the model is loaded here, in the master, before the fork."""
    config = ServerConfig.from_json(os.environ["EMBBENCH_SERVER_CONFIG"])
    encoder = Encoder(encoder_settings(config)) if config.backend == "torch" else None
    return create_app(config, encoder)
