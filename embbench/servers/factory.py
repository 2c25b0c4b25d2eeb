"""Build the app a server process runs: the API behind FastAPI or bare ASGI (options.http),
either one behind the request guard (admission, disconnects: guard.py)."""

from __future__ import annotations

import os
from typing import Any

from embbench.config.wire import ServerConfig
from embbench.servers.api import Api
from embbench.servers.encoder import Encoder, EncoderSettings
from embbench.servers.guard import RequestGuard
from embbench.servers.strategies import QUEUED_STRATEGIES


def create_app(config: ServerConfig, encoder: Encoder | None = None) -> Any:
    api = Api(config, encoder)
    app: Any
    if config.options.http == "asgi":
        from embbench.servers.asgi import AsgiApp

        app = AsgiApp(api)
    else:
        from embbench.servers.app import create_fastapi_app

        app = create_fastapi_app(api)
    return RequestGuard(
        app,
        api.admission,
        server_timing=config.options.server_timing,
        # What a request waits for before its forward pass: the batch queue, or the lock.
        wait_phase="queue" if config.strategy in QUEUED_STRATEGIES else "lock",
    )


def app_from_env() -> Any:
    """Factory for `uvicorn --factory` and gunicorn workers: the config comes in the environment."""
    return create_app(ServerConfig.from_json(os.environ["EMBBENCH_SERVER_CONFIG"]))


def preload_app() -> Any:
    """gunicorn --preload target: the model is loaded here, in the master, before the fork."""
    config = ServerConfig.from_json(os.environ["EMBBENCH_SERVER_CONFIG"])
    encoder = Encoder(EncoderSettings.of(config)) if config.options.backend == "torch" else None
    return create_app(config, encoder)
