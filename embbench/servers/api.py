"""The API every variant of ours serves, apart from any web framework.

DESIGN.md's contract: POST /predict, POST /embed and POST / (TEI's shape), POST /tokenize and
POST /decode (TEI's), POST /v1/embeddings (OpenAI's shape), POST /reload, GET /health, GET /info
(TEI's fields and ours); errors are JSON {"error", "error_type"} and never a 500 for bad input.
The optional fields of TEI's and OpenAI's requests are checked in fields.py. `Api` takes
parsed JSON and returns what to send; app.py (FastAPI) and asgi.py (a bare ASGI callable) only
carry bytes to and from it, so both serve exactly the same thing.

Why one module of ~400 lines: it is the one place that says what each route answers, error
by error, for every strategy; split by route, the shared checks (sizes, truncation, prompts)
would be written once per route or imported back and forth.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import orjson

from embbench import __version__
from embbench.config.model import ModelSpec
from embbench.config.wire import ServerConfig
from embbench.machine.host import cpu_count
from embbench.servers import admission, timing
from embbench.servers.backends import backend_facts
from embbench.servers.encoder import (
    Embeddings,
    Encoder,
    EncoderSettings,
    InputTooLongError,
    Side,
    TokenIds,
)
from embbench.servers.fields import (
    FieldError,
    as_base64,
    check_dimensions,
    decode_fields,
    embed_fields,
    load_prompts,
    openai_base64,
    simple_tokens,
    tokenize_fields,
    with_prompt,
)
from embbench.servers.strategies import Strategy, build_strategy

log = logging.getLogger("embbench.server")
WARMUP_TEXT = "Warming up the model so that the first measured request is not the slowest."
MAX_CLIENT_BATCH = 64  # inputs per /embed request, as TEI's --max-client-batch-size
# Requests of at most this many characters are tokenised on the event loop, the rest in the
# tokenisers' pool. The hop to a pool thread and back cost 119 us of CPU per request, the
# tokenising of a 77-character sentence 21 us (a 935-character paragraph 230 us): below this
# the hop is the dearer part, and the loop is held for half a millisecond at most.
INLINE_TOKENIZE_CHARS = 2048
LOAD_FAILED = "the model failed to load; the server log says why"


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


def reply_body(payload: Any, phases: timing.Phases | None = None) -> bytes:
    """json_body of an answer, its time counted as the request's `serialize` (timing.py): of
    `phases` where given (Ray Serve's handlers carry their own), else the request's current."""
    phases = phases or timing.current.get()
    if phases is None:
        return json_body(payload)
    begun = perf_counter_ns()
    body = json_body(payload)
    phases.serialize += perf_counter_ns() - begun
    return body


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


def warm(encoder: Encoder) -> Encoder:
    """Run a few forward passes: the first calls allocate and pick kernels."""
    ids = encoder.tokenize(WARMUP_TEXT)
    for size in (1, 1, 4):
        encoder.embed([ids] * size)
    return encoder


@contextlib.contextmanager
def checked_fields() -> Iterator[None]:
    try:
        yield
    except FieldError as exc:
        raise ApiError(422, exc.error_type, str(exc)) from exc


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
        self.error: str | None = None  # for the log; clients only learn that loading failed
        self._preloaded = encoder
        self.admission = admission.Admission(admission.Limits.of(config.options))
        # Tokenising a long input takes the CPU for a while (0.5 s for 1 MiB): a thread pool
        # keeps it off the event loop, which goes on answering /health and parsing requests.
        self._tokenizers = ThreadPoolExecutor(cpu_count(), thread_name_prefix="tokenize")

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self.load, name="model-loader", daemon=True).start()

    def close(self) -> None:
        if self.strategy is not None:
            self.strategy.close()
        self._tokenizers.shutdown(wait=False, cancel_futures=True)

    def load(self) -> None:
        try:
            if self._preloaded is not None:
                # Loaded before fork: only this worker's thread setting is new.
                self._preloaded.set_threads(self.config.threads)
            encoder = self._preloaded or Encoder(EncoderSettings.of(self.config))
            strategy = build_strategy(self.config, encoder)
            for each in strategy.encoders():
                warm(each)
            # The ~400k Python objects torch, transformers and the tokenizer leave live for the
            # process's life make a full collection cost ~230 ms here (gc.collect() right after
            # loading): a stall in whichever request it lands on, visible in p99 at low rates.
            # Frozen, later collections leave them out.
            gc.collect()
            gc.freeze()
            self.strategy = strategy
            if self.config.ready_dir:
                Path(self.config.ready_dir, str(os.getpid())).touch()
        except Exception as exc:  # reported by /health; the launcher sees it in the log too
            log.exception("model failed to load")
            self.error = f"{type(exc).__name__}: {exc}"

    def fresh_encoder(self) -> Encoder:
        """A new encoder of this server's model, warmed, for /reload (runs in a thread)."""
        return warm(Encoder(EncoderSettings.of(self.config)))

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
            # The reason stays in the server's log: it may name files of this machine.
            raise ApiError(503, "unavailable", LOAD_FAILED if self.error else "model is loading")
        return self.strategy

    @functools.cached_property
    def prompts(self) -> dict[str, str]:
        return load_prompts(self.config.model_path)

    async def tokenize_texts(
        self,
        texts: list[str],
        truncate: bool | None = None,
        side: Side = "right",
        prompted: bool = False,
    ) -> list[TokenIds]:
        encoder = self.current().encoder
        limit = self.config.options.max_input_chars
        for text in texts:
            if not text.strip():
                raise ApiError(422, "validation", "input text is empty")
            if len(text) > limit:
                raise ApiError(413, "input_too_long", f"input of {len(text)} characters > {limit}")
        try:
            admission.charge(inputs=len(texts))
            begun = perf_counter_ns()
            if sum(len(text) for text in texts) <= INLINE_TOKENIZE_CHARS:
                ids = encoder.tokenize_batch(texts, truncate, side, inline=True, prompted=prompted)
            else:
                ids = await asyncio.get_running_loop().run_in_executor(
                    self._tokenizers,
                    functools.partial(encoder.tokenize_batch, prompted=prompted),
                    texts,
                    truncate,
                    side,
                )
            phases = timing.current.get()
            if phases is not None:
                phases.tokenize += perf_counter_ns() - begun
            admission.charge(tokens=sum(len(each) for each in ids))
        except InputTooLongError as exc:
            raise ApiError(413, "input_too_long", str(exc)) from exc
        except admission.Overloaded as exc:  # guard.py adds Retry-After to every 429
            raise ApiError(429, "overloaded", str(exc)) from exc
        return ids

    async def embed_ids(self, ids: list[TokenIds], normalize: bool | None = None) -> Embeddings:
        current = self.current()
        if normalize is current.encoder.pooling.normalize:
            # What the model does anyway: None keeps such requests in one batch with the rest.
            normalize = None
        return await current.embed(ids, normalize)

    async def embed_texts(self, texts: list[str], truncate: bool | None = None) -> Any:
        return await self.embed_ids(await self.tokenize_texts(texts, truncate))

    async def predict(self, payload: Any) -> Any:
        return {"embeddings": await self.embed_texts([text_field(payload, "text")])}

    async def embed(self, payload: Any) -> Any:
        """TEI's /embed (and /): a list of vectors, one per input."""
        texts = text_list(payload, "inputs")
        with checked_fields():
            fields = embed_fields(payload)
            check_dimensions(payload, self.current().encoder.dimensions)
            texts = with_prompt(texts, fields.prompt_name, self.prompts)
        # A named prompt replaces the model's default one (sentence-transformers' rule).
        prompted = fields.prompt_name is not None
        ids = await self.tokenize_texts(texts, fields.truncate, fields.side, prompted)
        return await self.embed_ids(ids, fields.normalize)

    async def tokenize(self, payload: Any) -> Any:
        """TEI's /tokenize: per input, its tokens as {id, text, special, start, stop}."""
        texts = text_list(payload, "inputs")
        with checked_fields():
            add_special, prompt_name = tokenize_fields(payload)
            texts = with_prompt(texts, prompt_name, self.prompts)
        encoder = self.current().encoder
        limit = self.config.options.max_input_chars
        for text in texts:
            if len(text) > limit:
                raise ApiError(413, "input_too_long", f"input of {len(text)} characters > {limit}")

        def tokens() -> list[list[dict[str, Any]]]:
            return [simple_tokens(encoder.encoding(t, add_special), t) for t in texts]

        # In the tokenisers' pool, as for /embed: a long input must not hold the event loop.
        return await asyncio.get_running_loop().run_in_executor(self._tokenizers, tokens)

    async def decode(self, payload: Any) -> Any:
        """TEI's /decode: per list of ids, its text."""
        with checked_fields():
            batch, skip_special = decode_fields(payload)
        if len(batch) > MAX_CLIENT_BATCH:
            raise ApiError(413, "validation", f"{len(batch)} inputs exceed {MAX_CLIENT_BATCH}")
        encoder = self.current().encoder
        return await asyncio.get_running_loop().run_in_executor(
            self._tokenizers, encoder.decode, batch, skip_special
        )

    async def openai(self, payload: Any) -> Any:
        """OpenAI's /v1/embeddings, floats or base64 (the openai client asks for base64)."""
        with checked_fields():
            in_base64 = openai_base64(payload)
            check_dimensions(payload, self.current().encoder.dimensions)
        ids = await self.tokenize_texts(text_list(payload, "input"))
        vectors = await self.embed_ids(ids)
        embeddings = as_base64(vectors) if in_base64 else vectors
        data = [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(embeddings)
        ]
        model = self.config.model_name or self.config.model_path
        tokens = sum(len(each) for each in ids)  # special tokens too: the model computes them
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": model, "usage": usage}

    async def reload(self) -> Any:
        if not self.config.options.enable_reload:
            # Off by default: any client could otherwise make the server load its model again
            # and again, taking the CPU from inference.
            raise ApiError(403, "forbidden", "POST /reload is off; start with --enable-reload")
        current = self.current()
        if not current.can_reload:
            raise ApiError(405, "unsupported", f"{self.config.variant} does not reload its model")
        await current.reload(self.fresh_encoder)
        return {"status": "reloaded"}

    def health(self) -> tuple[int, bytes]:
        if self.error:
            return 503, error_body("load_failed", LOAD_FAILED)
        if not self.ready():
            return 503, error_body("unavailable", "model is loading")
        assert self.strategy is not None
        if not self.strategy.healthy():
            return 503, error_body("unhealthy", "a model worker has stopped; see the server log")
        return 200, json_body({"status": "ok"})

    def tei_info(self) -> dict[str, Any]:
        """TEI's /info fields (router/src/http/types.rs Info), as TEI clients read them."""
        config, current = self.config, self.strategy
        encoder = current.encoder if current else None
        return {
            "model_id": config.model_name or config.model_path,
            "model_sha": None,
            "model_dtype": "int8" if config.options.quantize == "int8" else "float32",
            "model_type": {"embedding": {"pooling": encoder.pooling.mode if encoder else None}},
            "max_concurrent_requests": config.options.max_concurrent_requests,
            # The longest input embedded without loss: truncation cuts at max_seq_length
            # (untruncated inputs may go up to max_input_tokens, the model's positions).
            "max_input_length": encoder.max_seq_length if encoder else None,
            "max_batch_tokens": config.options.max_batch_tokens,
            "max_batch_requests": (
                config.options.max_batch_size if config.strategy == "batched" else None
            ),
            "max_client_batch_size": MAX_CLIENT_BATCH,
            "auto_truncate": config.options.truncation,
            # Each worker process tokenises its own requests.
            "tokenization_workers": config.workers,
            "version": __version__,
            "sha": None,
            "docker_label": None,
        }

    def info(self) -> Any:
        config, current = self.config, self.strategy
        return {
            **self.tei_info(),
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
            # The model as embbench read it (config/model.py ModelSpec).
            **(model_facts(current.encoder.spec) if current else {}),
            # What the engine compiled (OpenVINO's inference precision and threads), {} if
            # the options say it all.
            "engine": backend_facts(current.encoder.backend) if current else {},
            "model": config.model_name or config.model_path,
            "strategy": config.strategy,
            # How streams, threads and batch limits were chosen (autotune.py); None: not tuned.
            "autotune": config.autotune,
            "ready": self.ready(),
            "stats": current.stats() if current else {},
            "admission": self.admission.stats(),
        }


def model_facts(spec: ModelSpec) -> dict[str, Any]:
    """What /info says of the model beyond TEI's fields."""
    facts = spec.describe()
    keys = ("dimensions", "pooling", "normalize", "dense", "default_prompt", "fingerprint",
            "architecture")  # fmt: skip
    return {key: facts[key] for key in keys}
