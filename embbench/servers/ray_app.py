"""Our API as a Ray Serve deployment (variant `ray-serve`; ray_launch.py starts and stops it).

A FastAPI ingress deployment whose replicas (Ray actor processes) each hold one embbench
Encoder (torch or onnx) and batch requests with `@serve.batch`; Serve's HTTP proxy (one actor on
the head) takes the connections and hands each request to a replica. Each replica refuses what
is beyond `max_concurrent_requests` in flight in it (429 overloaded with Retry-After, as our
other servers, per process): Serve's proxy hands a replica at most `max_ongoing` requests at
once and queues the rest, so the cap only bites when it is below that.

Ray is imported only by the process that deploys and by the replicas; embbench.variants imports
this module only to launch it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response

from embbench import __version__
from embbench.config.model import BUNDLED_MODEL
from embbench.config.options import ServerOptions, base_type, option_fields, server_options
from embbench.errors import ConfigError
from embbench.servers.admission import RETRY_AFTER_S, Admission, Limits, Overloaded
from embbench.servers.api import (
    MAX_CLIENT_BATCH,
    ApiError,
    check_declared_length,
    check_read_length,
    error_body,
    json_body,
    parse_json,
    reply_body,
    text_field,
    text_list,
    warm,
)
from embbench.servers.encoder import Embeddings, InputTooLongError, TokenIds
from embbench.servers.timing import REQUEST_ID, Phases

VARIANT = "ray-serve"
APP_NAME = "embbench"
DEFAULT_REPLICAS = 2
# How long a replica waits for more requests before it runs a batch that is not full. Short:
# under load the queue fills a batch anyway, and alone a request should not wait for company.
BATCH_WAIT_S = 0.002
# Ray Serve's logs of the controller, the proxy and the replicas: one access-log line per
# request would be file I/O on the measured path.
QUIET_LOGS = {"log_level": "WARNING", "enable_access_log": False}

log = logging.getLogger("embbench.ray_app")


@dataclass(frozen=True)
class RayServeSettings:
    """What one deployment is made of: our server options and where Ray runs."""

    options: ServerOptions
    port: int = 8000
    address: str | None = None  # None: start a local Ray head of our own
    temp_dir: str | None = None  # the local head's session folder (short: it holds sockets)
    logs_dir: str | None = None  # where Ray's logs of it are kept when it is removed

    @property
    def replicas(self) -> int:
        return self.options.resolved_workers(DEFAULT_REPLICAS)

    @property
    def threads(self) -> int:
        return self.options.resolved_threads(self.replicas)

    @property
    def max_ongoing(self) -> int:
        # Ray Serve's default lets 5 requests into a replica at once, which would cap a batch at
        # 5. Two batches' worth: one running, the next one gathering; the rest wait in the
        # proxy's queue, from which the next free replica takes them.
        return 2 * self.options.max_batch_size


# -- flags ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m embbench.servers.ray_app",
        description="Serve embbench's API from a Ray Serve deployment (the ray-serve variant).",
    )
    parser.add_argument(
        "--address",
        help="Ray cluster to deploy onto (auto, HOST:6379); default: start a local head",
    )
    parser.add_argument(
        "--temp-dir", help="session folder of the local head, removed at exit (default: Ray's)"
    )
    parser.add_argument("--logs-dir", help="copy Ray's logs here before --temp-dir is removed")
    # One flag per server option (options.py declares them), as the variant writes them.
    for each, annotation, spec in option_fields():
        kind, flag = base_type(annotation), "--" + each.name.replace("_", "-")
        help_text = spec.help + (" Here: the replica count." if each.name == "workers" else "")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, type=kind, choices=spec.choices or None, help=help_text)
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> RayServeSettings:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    address, temp_dir, logs_dir = args.pop("address"), args.pop("temp_dir"), args.pop("logs_dir")
    given = {name: value for name, value in args.items() if value is not None}
    try:
        options = server_options(given, "ray_app")
    except ConfigError as exc:
        parser.error(str(exc))
    return RayServeSettings(options, options.port or 8000, address, temp_dir, logs_dir)


# -- the deployment -------------------------------------------------------------------------------


def replica_env(settings: RayServeSettings) -> dict[str, str]:
    """Set in every replica through its runtime_env, so that replicas on other nodes of a
    cluster get them as well as those that inherit them from this process."""
    threads = str(settings.threads)
    return {
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _app_running() -> bool:
    """Every replica up and healthy, as Serve's controller sees it: /health must not say 200
    while a second replica is still loading its model."""
    from ray import serve

    state = serve.status().applications.get(APP_NAME)
    return state is not None and state.status == "RUNNING"  # a str Enum


def _reply(body: bytes, status: int = 200, phases: Phases | None = None,
           request: Request | None = None) -> Response:  # fmt: skip
    # Every 429 says when to come back, as guard.py has it on our other servers' 429s.
    retry = {"retry-after": str(RETRY_AFTER_S)} if status == 429 else {}
    if phases is None or request is None:
        return Response(body, status_code=status, media_type="application/json", headers=retry)
    # X-Request-Id is the proxy's: Serve echoes the client's (or makes one) on every answer, and
    # a second of ours made it `t-1, t-1`.
    headers = {
        name.decode(): value.decode("latin-1")
        for name, value in phases.headers(b"")
        if name != REQUEST_ID
    }
    return Response(
        body, status_code=status, media_type="application/json", headers={**headers, **retry}
    )


# One batch's rows as `forward` hands them back: the vector, the row's time in the queue, the
# batch's forward pass (ns) and its size.
Row = tuple[Any, int, int, int]


class Embedder:
    """One replica: an Encoder and a `@serve.batch` queue. Ray pickles this class by reference
    (each replica imports this module), and the replica builds its FastAPI app itself
    (`__serve_build_asgi_app__`): FastAPI reads the handlers' annotations, strings here, from
    the module's names, which a pickled app would not carry."""

    def __init__(self, settings: RayServeSettings) -> None:
        from ray import serve

        from embbench.config.model import resolve_model
        from embbench.servers.encoder import Encoder, EncoderSettings

        self.settings = settings
        self.options = options = settings.options
        # This replica's requests in flight, against max_concurrent_requests (admission.py's
        # request bound; its input and token bounds are never charged here).
        self.admission = Admission(Limits.of(options))
        # Resolved here, not by the deployer: on a cluster, each node has its own copy.
        path = str(resolve_model(options.model))
        self.encoder = encoder = warm(
            Encoder(EncoderSettings(model_path=path, options=options, threads=settings.threads))
        )

        def timed_embed(batch: list[TokenIds]) -> tuple[Embeddings, int]:
            begun = perf_counter_ns()
            vectors = encoder.embed(batch)
            return vectors, perf_counter_ns() - begun

        async def forward(batch: list[tuple[TokenIds, int]]) -> list[Row]:
            # In a thread: the event loop goes on taking requests (and filling the next batch)
            # while this one runs; Serve runs one batch at a time per replica. Each item is
            # (ids, when it was queued), for the `queue` phase of Server-Timing.
            formed = perf_counter_ns()
            vectors, took = await asyncio.to_thread(timed_embed, [ids for ids, _ in batch])
            size = len(batch)
            pairs = zip(vectors, batch, strict=True)
            return [(v, formed - queued, took, size) for v, (_, queued) in pairs]

        # Applied here rather than as a decorator, so that the batch size is this deployment's
        # option and this module needs no Ray to be imported.
        self.forward = serve.batch(
            max_batch_size=options.max_batch_size, batch_wait_timeout_s=BATCH_WAIT_S
        )(forward)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self)

    async def read_json(self, request: Request) -> Any:
        limit = self.options.max_body_bytes
        check_declared_length(request.headers.get("content-length"), limit)
        body = await request.body()
        check_read_length(len(body), limit)
        return parse_json(body)

    async def embed_texts(self, texts: list[str], phases: Phases | None = None) -> Embeddings:
        limit = self.options.max_input_chars
        for text in texts:
            if not text.strip():
                raise ApiError(422, "validation", "input text is empty")
            if len(text) > limit:
                raise ApiError(413, "input_too_long", f"input of {len(text)} characters > {limit}")
        begun = perf_counter_ns()
        try:
            ids = self.encoder.tokenize_batch(texts)
        except InputTooLongError as exc:
            raise ApiError(413, "input_too_long", str(exc)) from exc
        queued = perf_counter_ns()
        # One queue item per input: the inputs of one request may land in different batches.
        rows: list[Row] = await asyncio.gather(*(self.forward((each, queued)) for each in ids))
        if phases is not None:
            # Its inputs waited and ran side by side: the longest of each is the request's.
            phases.tokenize = queued - begun
            phases.wait = max(row[1] for row in rows)
            phases.forward = max(row[2] for row in rows)
            phases.batch_size = max(row[3] for row in rows)
        return np.stack([row[0] for row in rows])

    def info(self) -> dict[str, Any]:
        import ray

        settings, options, encoder = self.settings, self.options, self.encoder
        return {
            # TEI's fields, as our own servers give them.
            "model_id": options.model or BUNDLED_MODEL,
            "model_dtype": "int8" if options.quantize == "int8" else "float32",
            "model_type": {"embedding": {"pooling": encoder.pooling.mode}},
            "max_input_length": encoder.max_seq_length,
            "max_batch_requests": options.max_batch_size,
            "max_client_batch_size": MAX_CLIENT_BATCH,
            "max_concurrent_requests": options.max_concurrent_requests,
            "auto_truncate": options.truncation,
            "version": __version__,
            # Ours.
            "variant": VARIANT,
            "ray_version": ray.__version__,
            "replicas": settings.replicas,
            "workers": settings.replicas,
            "threads": settings.threads,
            **{
                key: getattr(options, key)
                for key in ("backend", "quantize", "padding", "truncation")
            },
            "max_seq_length": encoder.max_seq_length,
            # The model as embbench read it (config/model.py), as our own servers' /info.
            "dimensions": encoder.dimensions,
            "pooling": encoder.spec.pooling_name,
            "normalize": encoder.spec.normalize,
            "default_prompt": encoder.spec.default_prompt or None,
            "fingerprint": encoder.spec.fingerprint,
            "batch_wait_timeout_s": BATCH_WAIT_S,
            "max_ongoing_requests": settings.max_ongoing,
            "pid": os.getpid(),  # this replica's
            "admission": self.admission.stats(),  # this replica's
        }


def create_app(replica: Embedder) -> FastAPI:
    """The routes of DESIGN.md's API that this deployment serves, on one replica."""
    app = FastAPI(title="embbench on Ray Serve", docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        # An error is timed too: the route left its phases on the request.
        phases = getattr(request.state, "phases", None)
        return _reply(exc.body(), exc.status, phases, request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        # What went wrong is in the replica's log; a client learns no names or paths of ours.
        return _reply(error_body("internal", "internal error; see the server log"), 500)

    # Server-Timing here: admission (the replica's cap), tokenize, queue (Serve's batch queue in
    # the replica), forward, serialize, total (the proxy's hop to the replica is outside it).
    timed = replica.options.server_timing

    async def admitted(
        request: Request, answer: Callable[[Request, Phases | None], Awaitable[Response]]
    ) -> Response:
        """`answer`, holding one of the replica's slots for its whole life (given back however
        it ends, a cancel included); beyond the cap, a 429 at once, before the body is read."""
        phases = request.state.phases = Phases("queue") if timed else None
        try:
            with replica.admission.admit():
                if phases is not None:
                    phases.admission = perf_counter_ns() - phases.arrived
                return await answer(request, phases)
        except Overloaded as exc:
            if phases is not None:
                phases.admission = perf_counter_ns() - phases.arrived
            return _reply(error_body("overloaded", str(exc)), 429, phases, request)

    async def predicted(request: Request, phases: Phases | None) -> Response:
        text = text_field(await replica.read_json(request), "text")
        vectors = await replica.embed_texts([text], phases)
        return _reply(reply_body({"embeddings": vectors}, phases), 200, phases, request)

    async def embedded(request: Request, phases: Phases | None) -> Response:
        texts = text_list(await replica.read_json(request), "inputs")
        vectors = await replica.embed_texts(texts, phases)
        return _reply(reply_body(vectors, phases), 200, phases, request)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        return await admitted(request, predicted)

    # "/" too: TEI's route that its clients call.
    @app.post("/embed")
    @app.post("/")
    async def embed(request: Request) -> Response:
        return await admitted(request, embedded)

    @app.get("/health")
    async def health() -> Response:
        if await asyncio.to_thread(_app_running):
            return _reply(json_body({"status": "ok"}))
        return _reply(error_body("unavailable", "replicas are starting"), 503)

    @app.get("/info")
    async def info() -> Response:
        return _reply(json_body(replica.info()))

    return app


def build_app(settings: RayServeSettings) -> Any:
    """The Serve application: Embedder behind FastAPI, `settings.replicas` times."""
    from ray import serve

    deployment = serve.deployment(
        num_replicas=settings.replicas,
        max_ongoing_requests=settings.max_ongoing,
        ray_actor_options={
            "num_cpus": settings.threads,
            "runtime_env": {"env_vars": replica_env(settings)},
        },
        # A stop should not wait Ray's default 20 s for requests that no client still wants.
        graceful_shutdown_timeout_s=2.0,
        graceful_shutdown_wait_loop_s=0.5,
        logging_config=QUIET_LOGS,
    )(serve.ingress()(Embedder))
    return deployment.bind(settings)
