"""The API every variant of ours serves, apart from any web framework.

DESIGN.md's contract: POST /predict, POST /embed (TEI's shape), POST /v1/embeddings (OpenAI's
shape), POST /reload, GET /health, GET /info; errors are JSON {"error", "error_type"} and never a
500 for bad input. `Api` takes parsed JSON and returns what to send; app.py (FastAPI) and asgi.py
(a bare ASGI callable) only carry bytes to and from it, so both serve exactly the same thing.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from embbench.config import ServerConfig
from embbench.servers.encoder import Encoder, EncoderSettings, InputTooLongError, TokenIds
from embbench.servers.strategies import BatchedStrategy, MutexStrategy, RWLockStrategy, Strategy

log = logging.getLogger("embbench.server")
WARMUP_TEXT = "Warming up the model so that the first measured request is not the slowest."
MAX_CLIENT_BATCH = 64  # inputs per /embed request, as TEI's --max-client-batch-size


class ApiError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message

    def body(self) -> bytes:
        return error_body(self.error_type, self.message)


def json_body(payload: Any) -> bytes:
    # orjson writes numpy arrays directly: no list-of-float detour, the costly part of a reply.
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def error_body(error_type: str, message: str) -> bytes:
    return json_body({"error": message, "error_type": error_type})


def parse_json(body: bytes | bytearray) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from exc


def check_declared_length(declared: str | None, limit: int) -> None:
    """Refuse a body by its Content-Length before reading it."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"body of {declared} bytes exceeds {limit}")


def check_read_length(read: int, limit: int) -> None:
    if read > limit:
        raise ApiError(413, "payload_too_large", f"body exceeds {limit} bytes")


def encoder_settings(config: ServerConfig) -> EncoderSettings:
    return EncoderSettings(
        model_path=config.model_path,
        backend=config.options.backend,
        quantize=config.options.quantize,
        padding=config.options.padding,
        truncation=config.options.truncation,
        max_seq_length=config.options.max_seq_length,
        threads=config.threads,
    )


def build_strategy(config: ServerConfig, encoder: Encoder) -> Strategy:
    if config.strategy == "rwlock":
        return RWLockStrategy(encoder, pool_size=config.streams)
    if config.strategy == "batched":
        return BatchedStrategy(
            encoder,
            config.options.max_batch_size,
            config.options.max_batch_tokens,
            config.options.batch_spread,
            streams=config.streams,
        )
    return MutexStrategy(encoder)


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


class Api:
    """The model and strategy of this process (loaded in the background, so /health can say
    503 meanwhile) and the endpoints, as functions of parsed JSON."""

    def __init__(self, config: ServerConfig, encoder: Encoder | None = None) -> None:
        self.config = config
        self.strategy: Strategy | None = None
        self.error: str | None = None
        self._preloaded = encoder

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self.load, name="model-loader", daemon=True).start()

    def close(self) -> None:
        if self.strategy is not None:
            self.strategy.close()

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

    # -- endpoints ------------------------------------------------------------------------

    def current(self) -> Strategy:
        if self.strategy is None:
            raise ApiError(503, "unavailable", self.error or "model is loading")
        return self.strategy

    async def embed_texts(self, texts: list[str], truncate: bool | None = None) -> Any:
        current = self.current()
        for text in texts:
            if not text.strip():
                raise ApiError(422, "validation", "input text is empty")
        try:
            ids: list[TokenIds] = [current.encoder.tokenize(t, truncate) for t in texts]
        except InputTooLongError as exc:
            raise ApiError(413, "input_too_long", str(exc)) from exc
        return await current.embed(ids)

    async def predict(self, payload: Any) -> Any:
        return {"embeddings": await self.embed_texts([text_field(payload, "text")])}

    async def embed(self, payload: Any) -> Any:
        texts = text_list(payload, "inputs")
        truncate = payload.get("truncate")
        if truncate is not None and not isinstance(truncate, bool):
            raise ApiError(422, "validation", "field 'truncate' must be a boolean")
        return await self.embed_texts(texts, truncate)

    async def openai(self, payload: Any) -> Any:
        vectors = await self.embed_texts(text_list(payload, "input"))
        data = [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(vectors)
        ]
        model = self.config.model_name or self.config.model_path
        return {"object": "list", "data": data, "model": model}

    async def reload(self) -> Any:
        current = self.current()
        if not current.can_reload:
            raise ApiError(405, "unsupported", f"{self.config.variant} does not reload its model")
        await current.reload(lambda: Encoder(encoder_settings(self.config)))
        return {"status": "reloaded"}

    def health(self) -> tuple[int, bytes]:
        if self.error:
            return 503, error_body("load_failed", self.error)
        if not self.ready():
            return 503, error_body("unavailable", "model is loading")
        return 200, json_body({"status": "ok"})

    def info(self) -> Any:
        config, current = self.config, self.strategy
        return {
            "variant": config.variant,
            "pid": os.getpid(),
            "workers": config.workers,
            "threads": config.threads,
            "streams": config.streams,
            "http": config.options.http,
            "backend": config.options.backend,
            "quantize": config.options.quantize,
            "padding": config.options.padding,
            "truncation": config.options.truncation,
            "max_seq_length": current.encoder.max_seq_length if current else None,
            "max_input_tokens": current.encoder.max_positions if current else None,
            "model": config.model_name or config.model_path,
            "strategy": config.strategy,
            "ready": self.ready(),
            "stats": current.stats() if current else {},
        }
