from __future__ import annotations

import json

import pytest

from embbench.load.protocols import parse_embeddings, request_for


def test_request_shapes() -> None:
    assert request_for("predict", "hi") == ("/predict", b'{"text": "hi"}')
    path, body = request_for("tei", "hi")
    assert path == "/embed" and json.loads(body) == {"inputs": "hi", "truncate": True}
    path, body = request_for("openai", "hi", "m")
    assert path == "/v1/embeddings" and json.loads(body) == {"input": ["hi"], "model": "m"}
    with pytest.raises(ValueError, match="unknown protocol"):
        request_for("grpc", "hi")


def test_parse_replies() -> None:
    assert parse_embeddings("predict", {"embeddings": [[1.0, 2.0]]}) == [[1.0, 2.0]]
    assert parse_embeddings("tei", [[1.0], [2.0]]) == [[1.0], [2.0]]
    reply = {"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]}
    assert parse_embeddings("openai", reply) == [[1.0], [2.0]]
    with pytest.raises(ValueError):
        parse_embeddings("tei", [])
