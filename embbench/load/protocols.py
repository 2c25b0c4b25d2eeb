"""The three request shapes embbench speaks: ours (/predict), TEI's (/embed), OpenAI's.

Pure and light (json only): imported by the locustfile inside Locust and by the probe.
"""

from __future__ import annotations

import json
from typing import Any

PATHS = {"predict": "/predict", "tei": "/embed", "openai": "/v1/embeddings"}


def request_for(protocol: str, text: str, model: str = "") -> tuple[str, bytes]:
    """(path, JSON body) of one single-input request."""
    if protocol == "predict":
        body: dict[str, Any] = {"text": text}
    elif protocol == "tei":
        # TEI refuses over-long inputs unless asked to truncate; our servers' truncation setting
        # is what a run measures, so for TEI the same choice is sent with each request.
        body = {"inputs": text, "truncate": True}
    elif protocol == "openai":
        body = {"input": [text], "model": model}
    else:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PATHS)}")
    return PATHS[protocol], json.dumps(body).encode()


def parse_embeddings(protocol: str, payload: Any) -> list[list[float]]:
    """Embeddings of a successful reply, whatever the protocol."""
    if protocol == "predict":
        vectors = payload["embeddings"]
    elif protocol == "tei":
        vectors = payload
    elif protocol == "openai":
        vectors = [item["embedding"] for item in sorted(payload["data"], key=lambda d: d["index"])]
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    if not isinstance(vectors, list) or not vectors or not isinstance(vectors[0], list):
        raise ValueError("reply holds no list of embeddings")
    return vectors
