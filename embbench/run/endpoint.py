"""A small synchronous client of one server's embedding endpoint, for the checks that run after
a cell's measured window (run/invariance.py, run/cache_check.py): one input or several per
request, the vectors, the client latency and the batch the server says the input rode in.

Several inputs go in the protocol's list shape: TEI's `/embed {"inputs": [...]}` and OpenAI's
`input: [...]`; a server spoken to in our `/predict` shape (one text per request) is asked
through its `/embed`, which every server of ours and TEI serve (DESIGN.md, "HTTP API").
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from embbench.load.protocols import PATHS, parse_embeddings, request_for

TIMEOUT_S = 30.0
HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Answer:
    """One request's vectors (one row per input), its client latency and the X-Batch-Size it
    carried (the inputs of the forward pass it rode in; None where the server does not say)."""

    vectors: npt.NDArray[np.float64]
    latency_ms: float
    batch: int | None


def most_inputs(info: Mapping[str, Any], wanted: int) -> int:
    """Inputs per request: `wanted`, or fewer if /info's max_client_batch_size says so."""
    most = info.get("max_client_batch_size")
    return max(1, min(wanted, most)) if isinstance(most, int) and most > 0 else wanted


def many_request(protocol: str, texts: Sequence[str], model: str) -> tuple[str, bytes, str]:
    """(path, JSON body, protocol of the reply) of one request embedding every text."""
    if protocol == "openai":
        body = json.dumps({"input": list(texts), "model": model}).encode()
        return PATHS["openai"], body, protocol
    body = json.dumps({"inputs": list(texts), "truncate": True}).encode()
    return PATHS["tei"], body, "tei"


class Endpoint:
    """`with Endpoint(url, protocol, model) as e: e.one(text); e.many(texts)`: one connection,
    kept open (its set-up is not in the latencies); raises httpx.HTTPError or ValueError."""

    def __init__(self, url: str, protocol: str, model: str = "") -> None:
        self.url, self.protocol, self.model = url, protocol, model
        self.client = httpx.Client(base_url=url, timeout=TIMEOUT_S)

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def one(self, text: str) -> Answer:
        """`text` alone, in the protocol's own single-input request (as the load sends it)."""
        path, body = request_for(self.protocol, text, self.model)
        return self._post(path, body, self.protocol, 1)

    def many(self, texts: Sequence[str]) -> Answer:
        path, body, shape = many_request(self.protocol, texts, self.model)
        return self._post(path, body, shape, len(texts))

    def _post(self, path: str, body: bytes, shape: str, inputs: int) -> Answer:
        sent = time.perf_counter()
        reply = self.client.post(path, content=body, headers=HEADERS)
        latency = (time.perf_counter() - sent) * 1000.0
        reply.raise_for_status()
        vectors = np.asarray(parse_embeddings(shape, reply.json()), dtype=np.float64)
        if vectors.ndim != 2 or len(vectors) != inputs:
            raise ValueError(f"{len(vectors)} embeddings for {inputs} inputs")
        return Answer(vectors, latency, _batch(reply.headers.get("x-batch-size")))


def _batch(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
