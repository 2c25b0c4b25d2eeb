"""The server process's wire config: what a variant resolved for one server, passed to it as
JSON in its environment (EMBBENCH_SERVER_CONFIG). Server modules read this, never the run's
config (run.py): a server knows what it serves, not how the run around it is planned."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from embbench.config.options import ServerOptions


@dataclass(frozen=True)
class ServerConfig:
    """Everything a server process needs; passed to it as JSON (env EMBBENCH_SERVER_CONFIG).

    `options` are the user's, as declared; the other fields are what the variant resolved
    from them (a port, a worker and thread count, a strategy).
    """

    variant: str
    model_path: str
    port: int
    workers: int
    threads: int
    options: ServerOptions = field(default_factory=ServerOptions)
    strategy: str = "mutex"  # a name in servers/strategies.STRATEGIES
    streams: int = 1  # forward passes that may run at once in one process (rwlock, batched)
    preload: bool = False  # the model is loaded before fork (gunicorn --preload)
    model_name: str = ""
    ready_dir: str = ""
    # How the variant chose what the user left to it (autotune.record), shown by /info.
    autotune: dict[str, Any] | None = None

    @property
    def host(self) -> str:
        return self.options.host

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        data = json.loads(text)
        data["options"] = ServerOptions(**data.get("options", {}))
        return cls(**data)
