"""Every variant of ours as a real subprocess with the real model: right answers, clear errors."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from embbench.config.payloads import PROBE_SENTENCES
from embbench.run.probe import probe_server
from tests.integration.conftest import serve_variant, st_encode, tree_of

pytestmark = pytest.mark.integration

OURS = ["shared-rwlock", "shared-mutex", "per-worker", "preload", "batched"]
# The same contract through the bare ASGI layer, and with two batch streams.
SERVERS: list[tuple[str, dict[str, Any]]] = [
    *((name, {}) for name in OURS),
    ("shared-mutex", {"http": "asgi"}),
    ("batched", {"http": "asgi", "streams": 2, "max_batch_size": 8}),
]
LONG_TEXT = "embedding " * 700  # about 1400 tokens: beyond the model's 512 positions


@pytest.fixture(
    scope="module",
    params=SERVERS,
    ids=[name + "".join(f"-{k}={v}" for k, v in opts.items()) for name, opts in SERVERS],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, Any]]:
    name, options = request.param
    workdir = tmp_path_factory.mktemp(name)
    with serve_variant(name, workdir, **options) as (url, proc):
        info = httpx.get(url + "/info").json()
        for key in ("http", "streams"):
            if key in options:  # the options reached the server
                assert info[key] == options[key]
        yield name, url, proc


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_info_and_health(server: tuple[str, str, Any]) -> None:
    name, url, _ = server
    assert httpx.get(url + "/health").status_code == 200
    info = httpx.get(url + "/info").json()
    assert info["variant"] == name
    for key in (
        "pid",
        "workers",
        "threads",
        "backend",
        "padding",
        "truncation",
        "max_seq_length",
        "model",
    ):
        assert key in info
    assert info["workers"] >= 1 and info["threads"] >= 1


def test_predict_agrees_with_sentence_transformers(
    server: tuple[str, str, Any], st_model: Any
) -> None:
    _, url, _ = server
    got = np.array(
        [
            httpx.post(url + "/predict", json={"text": t}).json()["embeddings"][0]
            for t in PROBE_SENTENCES
        ]
    )
    assert cosine(got, st_encode(st_model, list(PROBE_SENTENCES))).min() >= 0.999


def test_embed_speaks_tei(server: tuple[str, str, Any], st_model: Any) -> None:
    _, url, _ = server
    texts = list(PROBE_SENTENCES[:3])
    reply = httpx.post(url + "/embed", json={"inputs": texts})
    assert reply.status_code == 200
    got = np.array(reply.json())
    assert got.shape == (3, 384)
    assert cosine(got, st_encode(st_model, texts)).min() >= 0.999
    single = httpx.post(url + "/embed", json={"inputs": texts[0]}).json()
    assert len(single) == 1


@pytest.mark.parametrize(
    "body, status, error_type",
    [
        (b"{not json", 400, "malformed_json"),
        (b'{"text": 42}', 422, "validation"),
        (b'{"txt": "hello"}', 422, "validation"),
        (b'{"text": ""}', 422, "validation"),
        (b'{"text": "   "}', 422, "validation"),
        (b'["hello"]', 422, "validation"),
        (b'{"text": "' + b"a" * (2 << 20) + b'"}', 413, "payload_too_large"),
    ],
)
def test_bad_requests_get_4xx_json_and_the_server_goes_on(
    server: tuple[str, str, Any], body: bytes, status: int, error_type: str
) -> None:
    _, url, _ = server
    reply = httpx.post(url + "/predict", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == status
    assert reply.json()["error_type"] == error_type
    assert httpx.post(url + "/predict", json={"text": "still here"}).status_code == 200


def test_tei_errors(server: tuple[str, str, Any]) -> None:
    _, url, _ = server
    assert httpx.post(url + "/embed", json={"inputs": []}).status_code == 422
    assert httpx.post(url + "/embed", json={"inputs": ["ok", 3]}).status_code == 422
    too_long = httpx.post(url + "/embed", json={"inputs": LONG_TEXT, "truncate": False})
    assert too_long.status_code == 413
    assert too_long.json()["error_type"] == "input_too_long"
    assert (
        httpx.post(url + "/embed", json={"inputs": LONG_TEXT, "truncate": True}).status_code == 200
    )


def test_unknown_route_is_json_404(server: tuple[str, str, Any]) -> None:
    _, url, _ = server
    reply = httpx.get(url + "/nope")
    assert reply.status_code == 404 and "error" in reply.json()


def test_wrong_method_is_json_405(server: tuple[str, str, Any]) -> None:
    _, url, _ = server
    for reply in (httpx.get(url + "/predict"), httpx.post(url + "/health")):
        assert reply.status_code == 405 and "error" in reply.json()
    assert httpx.post(url + "/predict", json={"text": "still here"}).status_code == 200


def test_sigterm_stops_the_whole_tree(tmp_path: Path) -> None:
    with serve_variant("per-worker", tmp_path, workers=2) as (_, proc):
        tree = tree_of(proc.pid or 0)
        assert len(tree) >= 3  # supervisor + 2 workers (+ the spawn tracker)
        started = time.monotonic()
        os.kill(proc.pid or 0, signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=15)
        assert not alive, f"left behind: {[p.pid for p in alive]}"
        assert time.monotonic() - started < 15


def test_truncation_off_and_padding_max_length(tmp_path: Path, st_model: Any) -> None:
    with serve_variant("shared-mutex", tmp_path, truncation=False, padding="max_length") as (
        url,
        _,
    ):
        info = httpx.get(url + "/info").json()
        assert info["truncation"] is False and info["padding"] == "max_length"
        reply = httpx.post(url + "/predict", json={"text": LONG_TEXT})
        assert reply.status_code == 413 and reply.json()["error_type"] == "input_too_long"
        got = np.array(
            httpx.post(url + "/predict", json={"text": PROBE_SENTENCES[0]}).json()["embeddings"]
        )
        assert cosine(got, st_encode(st_model, [PROBE_SENTENCES[0]]))[0] >= 0.999
        # The probe before a cell's load counts the refusal and judges the rest (make bench's
        # no-truncation cells had failed on it); asked to judge everything, it fails.
        texts = [PROBE_SENTENCES[0], LONG_TEXT]
        reference = np.zeros((2, got.shape[1]), dtype=np.float32)
        reference[0] = st_encode(st_model, [PROBE_SENTENCES[0]])[0]
        refused: list[int] = []
        assert probe_server(url, "predict", reference, texts, refused=refused) >= 0.999
        assert refused == [1]
        with pytest.raises(httpx.HTTPStatusError):
            probe_server(url, "predict", reference, texts)


def test_reload_under_the_write_lock(tmp_path: Path) -> None:
    with serve_variant("shared-rwlock", tmp_path, enable_reload=True) as (url, _):
        with httpx.Client(base_url=url, timeout=60) as client:
            before = client.post("/predict", json={"text": "reload me"}).json()
            assert client.post("/reload").json() == {"status": "reloaded"}
            after = client.post("/predict", json={"text": "reload me"}).json()
        assert np.allclose(before["embeddings"], after["embeddings"], atol=1e-5)
