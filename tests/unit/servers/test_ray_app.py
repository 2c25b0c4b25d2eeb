"""The ray-serve replica's cap (ray_app.create_app): beyond max_concurrent_requests in flight in
a replica, 429 overloaded with Retry-After and Server-Timing, at once; a slot comes back however
its request ends. A fake replica stands for Embedder (no Ray, no model): its embedding waits
until released. The real deployment is flooded in tests/integration/test_ray_serve.py."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np

from embbench.config.options import ServerOptions
from embbench.load.phases import parse_server_timing
from embbench.servers.admission import Admission, Limits
from embbench.servers.api import parse_json
from embbench.servers.ray_app import create_app
from embbench.servers.timing import Phases

CAP = 2


class FakeReplica:
    """What create_app asks of an Embedder; every embedding waits for `release`."""

    def __init__(self) -> None:
        self.options = ServerOptions(max_concurrent_requests=CAP)
        self.admission = Admission(Limits.of(self.options))
        self.release = asyncio.Event()

    async def read_json(self, request: Any) -> Any:
        return parse_json(await request.body())

    async def embed_texts(self, texts: list[str], phases: Phases | None = None) -> Any:
        await self.release.wait()
        return np.zeros((len(texts), 3), dtype=np.float32)

    def info(self) -> dict[str, Any]:
        return {}


async def _beyond_the_cap() -> None:
    replica: Any = FakeReplica()
    transport = httpx.ASGITransport(app=create_app(replica))
    async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
        held = [
            asyncio.create_task(client.post("/predict", json={"text": "a"})) for _ in range(CAP)
        ]
        for _ in range(1000):  # until both are in, waiting for their embedding
            if replica.admission.requests == CAP:
                break
            await asyncio.sleep(0)
        assert replica.admission.requests == CAP

        refused = await client.post("/embed", json={"inputs": ["a", "b"]})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error_type"] == "overloaded" and refused.json()["error"]
        phases = parse_server_timing(refused.headers["server-timing"])
        assert "admission" in phases and "total" in phases

        replica.release.set()
        answered = await asyncio.gather(*held)
        assert [reply.status_code for reply in answered] == [200] * CAP
        assert "admission" in parse_server_timing(answered[0].headers["server-timing"])
        assert replica.admission.requests == 0 and replica.admission.rejected == 1

        # An error gives its slot back too; then the replica serves on.
        wrong = await client.post("/predict", json={"txt": "a"})
        assert wrong.status_code == 422 and "retry-after" not in wrong.headers
        assert replica.admission.requests == 0
        again = await client.post("/", json={"inputs": "a"})
        assert again.status_code == 200 and replica.admission.requests == 0


def test_beyond_the_cap_a_replica_answers_429() -> None:
    asyncio.run(_beyond_the_cap())
