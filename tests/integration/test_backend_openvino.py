"""The OpenVINO backend behind our own server: fp32 (precision forced to f32) and NNCF's static
int8, and fastembed's engine over our export, each a real server answering real requests,
checked against sentence-transformers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from embbench.config.payloads import build_payloads
from embbench.run.probe import FP32_THRESHOLD, threshold_for
from embbench.servers.backends.openvino_model import CALIBRATION_ENV
from tests.integration.conftest import serve_variant, st_encode

pytestmark = pytest.mark.integration

# A short calibration keeps the test's NNCF run to seconds; the count is in the cache key, so
# this model is never the one a run serves (300 inputs).
TEST_CALIBRATION = "48"
TEXTS = build_payloads("mixed", count=24, seed=3)


@pytest.fixture(autouse=True)
def _short_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    monkeypatch.setenv(CALIBRATION_ENV, TEST_CALIBRATION)  # the server inherits it


def _embed(url: str, texts: list[str]) -> np.ndarray:
    reply = httpx.post(url + "/embed", json={"inputs": texts}, timeout=60)
    assert reply.status_code == 200, reply.text
    return np.asarray(reply.json(), dtype=np.float64)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    result: np.ndarray = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return result


@pytest.fixture(scope="module")
def reference(st_model: Any) -> np.ndarray:
    return st_encode(st_model, TEXTS)


# (variant, backend, quantize): int8 through the batched server (batches of several inputs:
# static scales must not let an input's vector depend on its batch-mates), fp32 through the
# mutex one; fastembed through its own variant (the batched server with fastembed's engine).
SERVERS = [
    ("shared-mutex", "openvino", "none"),
    ("batched", "openvino", "int8"),
    ("fastembed", "fastembed", "none"),
]


@pytest.fixture(params=SERVERS, ids=[f"{b}-{q}" for _, b, q in SERVERS])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    name, backend, quantize = request.param
    if backend == "fastembed":
        pytest.importorskip("fastembed")
    options: dict[str, Any] = {"threads": 2}
    if name != "shared-mutex":  # no ceiling measured for the test: a fixed layout
        options.update(autotune=False, max_batch_size=8)
    with serve_variant(name, tmp_path, backend=backend, quantize=quantize, **options) as (
        url,
        _,
    ):
        yield backend, quantize, url


def test_answers_match_sentence_transformers(
    server: tuple[str, str, str], reference: np.ndarray
) -> None:
    backend, quantize, url = server
    info = httpx.get(url + "/info").json()
    assert info["backend"] == backend and info["quantize"] == quantize
    assert info["engine"]["engine"] == backend
    assert info["engine"]["engine_threads"] == 2
    if backend == "openvino":
        # The compiled model's own account: f32 even on a CPU whose default would be bf16.
        assert info["engine"]["inference_precision"] == "f32"
        if quantize == "int8":
            assert info["engine"]["model_file"].endswith("model.xml")
    else:
        assert info["engine"]["parallel"] is None

    together = _embed(url, TEXTS)
    alone = np.concatenate([_embed(url, [text]) for text in TEXTS[:6]])
    threshold = threshold_for(quantize, backend)
    assert threshold == (0.99 if quantize == "int8" else FP32_THRESHOLD)
    assert _cosines(together, reference).min() >= threshold
    assert _cosines(alone, reference[:6]).min() >= threshold
    # Static scales (and fp32): an input's vector does not depend on what it was batched with.
    assert _cosines(alone, together[:6]).min() >= 0.9999


def test_fastembed_on_its_own_reads_our_local_export(model_path: Path, st_model: Any) -> None:
    """fastembed end to end (its tokeniser and pooling), loaded from our export with nothing
    fetched: it agrees on inputs within the model's 256 tokens. (Beyond them it does not: it
    truncates at tokenizer_config's 512, where sentence-transformers cuts at 256; behind our
    server the server's tokeniser truncates, so the served answers agree.)"""
    pytest.importorskip("fastembed")
    from embbench.servers.backends.fastembed import FastembedBackend

    short = build_payloads("short", count=16, seed=5)
    backend = FastembedBackend(model_path, threads=1)
    own = backend.embed_texts(short)
    assert _cosines(own, st_encode(st_model, short)).min() >= FP32_THRESHOLD
