"""`python -m embbench.servers`: one uvicorn process serving the app (config in the environment).

The variants that need several processes launch uvicorn's or gunicorn's own supervisor instead;
see embbench/variants.
"""

from __future__ import annotations

import os

import uvicorn

from embbench.config.wire import ServerConfig
from embbench.servers.factory import create_app
from embbench.servers.protocol import IDLE_TIMEOUT_S, GuardedHttpToolsProtocol


def main() -> None:
    config = ServerConfig.from_json(os.environ["EMBBENCH_SERVER_CONFIG"])
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
        # 1000 clients connect at once at the top level; the default backlog (2048) holds them.
        backlog=4096,
        timeout_graceful_shutdown=3,
        # Timeouts, header and connection limits (protocol.py).
        http=GuardedHttpToolsProtocol,
        timeout_keep_alive=int(IDLE_TIMEOUT_S),
        # No proxy in front of our servers: X-Forwarded-For is not ours to trust, and the
        # middleware is one more layer on every request.
        proxy_headers=False,
        # "server: uvicorn" on every reply says nothing a client needs, and costs a header.
        server_header=False,
    )


if __name__ == "__main__":
    main()
