"""The gunicorn worker class of the preload variant: uvicorn's, on our guarded protocol.

`gunicorn -k embbench.servers.gunicorn_worker.UvicornWorker` (see protocol.py for the limits).
"""

from __future__ import annotations

from typing import Any, ClassVar

import uvicorn_worker


class UvicornWorker(uvicorn_worker.UvicornWorker):  # type: ignore[misc]
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "auto",
        "http": "embbench.servers.protocol:GuardedHttpToolsProtocol",
    }
