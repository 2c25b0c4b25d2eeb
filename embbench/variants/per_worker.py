from __future__ import annotations

import sys

from embbench.config.wire import ServerConfig
from embbench.results.traits import Traits
from embbench.variants.base import OwnVariant


class PerWorker(OwnVariant):
    name = "per-worker"
    summary = "W uvicorn worker processes (spawned), each loading its own model"
    seed_analogue = "Rust non-shared model"
    strategy = "mutex"
    traits = Traits(lock="mutex", multi_process=True)
    default_workers = 2

    def command(self, config: ServerConfig) -> list[str]:
        # uvicorn's supervisor spawns (not forks) its workers: each starts clean and loads its
        # own model; TERM to the supervisor stops them all.
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "embbench.servers.factory:app_from_env",
            "--factory",
            "--host",
            config.host,
            "--port",
            str(config.port),
            "--workers",
            str(config.workers),
            # Idle, slow and oversized requests cut off as in `python -m embbench.servers`.
            "--http",
            "embbench.servers.protocol:GuardedHttpToolsProtocol",
            "--log-level",
            "warning",
            "--no-access-log",
            "--backlog",
            "4096",
            "--timeout-graceful-shutdown",
            "3",
        ]
