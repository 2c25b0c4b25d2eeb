from __future__ import annotations

import sys

from embbench.config.wire import ServerConfig
from embbench.results.traits import Traits
from embbench.variants.base import OwnVariant


class Preload(OwnVariant):
    name = "preload"
    summary = (
        "gunicorn --preload -w W + uvicorn workers: model loaded before fork, shared copy-on-write"
    )
    seed_analogue = "the article's Python server (gunicorn --preload -w 10)"
    strategy = "mutex"
    traits = Traits(lock="mutex", multi_process=True, shared_memory=True)
    default_workers = 2

    def command(self, config: ServerConfig) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "embbench.servers.factory:preload_app()",
            "--preload",
            "-w",
            str(config.workers),
            "-k",
            # uvicorn_worker's worker with embbench's guarded HTTP protocol (dotted: gunicorn's
            # worker class syntax).
            "embbench.servers.gunicorn_worker.UvicornWorker",
            "--bind",
            f"{config.host}:{config.port}",
            "--backlog",
            "4096",
            "--graceful-timeout",
            "3",
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ]
