"""TEI's and OpenAI's APIs as their real client libraries call them, against real servers of ours.

Clients: huggingface_hub's InferenceClient (feature_extraction posts to "/"), the openai client
(asks for base64 unless told otherwise), and tei-client (reads /info's model_type first). Both
HTTP layers and both kinds of strategy (a batching queue, a mutex around a pool) are covered.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from embbench import __version__
from embbench.config.payloads import PROBE_SENTENCES
from tests.integration.conftest import serve_variant, st_encode

pytestmark = pytest.mark.integration

SERVERS: list[tuple[str, dict[str, Any]]] = [
    ("batched", {}),
    ("shared-mutex", {"http": "asgi"}),
]
TEXTS = list(PROBE_SENTENCES[:3])
# Two beginnings and one ending, each longer than the 256 tokens that truncation keeps.
FILLER_A = "apples and pears " * 100
FILLER_B = "a different beginning altogether " * 80
TAIL = " the ending is about a train crossing a bridge at night" * 30


@pytest.fixture(
    scope="module",
    params=SERVERS,
    ids=[name + "".join(f"-{k}={v}" for k, v in opts.items()) for name, opts in SERVERS],
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    name, options = request.param
    with serve_variant(name, tmp_path_factory.mktemp(name), **options) as (url, _):
        yield name, url


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_huggingface_hub_feature_extraction(
    server: tuple[str, str], st_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import InferenceClient, constants
    from huggingface_hub.errors import HfHubHTTPError

    _, url = server
    # HF_HUB_OFFLINE (tests/conftest.py) blocks every request of the client, even to a local
    # URL; with a URL as its model it asks no hub anything, so lift the block for this test.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    client = InferenceClient(base_url=url, timeout=60)
    want = st_encode(st_model, TEXTS)
    got = client.feature_extraction(TEXTS)  # {"inputs": [...]} to POST /
    assert got.shape == (3, 384)
    assert cosine(got, want).min() >= 0.999
    single = client.feature_extraction(TEXTS[0])
    assert single.shape == (1, 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-4)
    raw = client.feature_extraction(TEXTS, normalize=False)
    assert cosine(raw, want).min() >= 0.999
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-2)  # the pooled vector as is
    cut = client.feature_extraction(
        FILLER_A + TAIL, truncate=True, truncation_direction="left", dimensions=384
    )
    assert cut.shape == (1, 384)
    with pytest.raises(HfHubHTTPError) as refused:
        client.feature_extraction(TEXTS[0], prompt_name="query")  # this model has no prompts
    assert refused.value.response is not None and refused.value.response.status_code == 422


def test_openai_client(server: tuple[str, str], st_model: Any) -> None:
    import openai

    _, url = server
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
    want = st_encode(st_model, TEXTS)
    for encoding in ({}, {"encoding_format": "float"}):  # the client's default is base64
        reply = client.embeddings.create(input=TEXTS, model="all-MiniLM-L6-v2", **encoding)
        got = np.array([each.embedding for each in reply.data])
        assert got.shape == (3, 384)
        assert cosine(got, want).min() >= 0.999
        assert [each.index for each in reply.data] == [0, 1, 2]
        assert reply.usage.prompt_tokens == reply.usage.total_tokens > 3 * 2
        assert reply.model
    one = client.embeddings.create(input=TEXTS[0], model="m", dimensions=384)
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(input=TEXTS[0], model="m", dimensions=10)


def test_openai_base64_is_little_endian_float32(server: tuple[str, str]) -> None:
    _, url = server
    body = {"input": TEXTS[:2], "model": "m"}
    floats = httpx.post(url + "/v1/embeddings", json=body, timeout=60).json()
    packed = httpx.post(
        url + "/v1/embeddings", json={**body, "encoding_format": "base64"}, timeout=60
    ).json()
    for plain, b64 in zip(floats["data"], packed["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b64["embedding"]), dtype="<f4")
        assert np.allclose(decoded, plain["embedding"], atol=1e-6)
    assert floats["usage"] == packed["usage"]


def test_tei_client(server: tuple[str, str], st_model: Any) -> None:
    from tei_client import HttpClient, ModelType

    name, url = server
    client = HttpClient(url, timeout=60)
    info = client.info()  # pydantic: every TEI field present, model_type parsed
    assert info.server_model_type == ModelType.Embedding
    assert info.server_model_metadata is not None
    assert info.server_model_metadata.pooling == "mean"  # type: ignore[union-attr]
    assert info.max_client_batch_size == 64
    assert (info.max_batch_requests is not None) == (name == "batched")
    # {"inputs": [...], "normalize": true, "truncate": false, "truncation_direction": "Right",
    #  "prompt_name": null} to /embed
    got = np.array(client.embed(TEXTS))
    assert cosine(got, st_encode(st_model, TEXTS)).min() >= 0.999
    tokens = client.tokenize(["Hello world", TEXTS[0]])
    assert len(tokens) == 2
    assert [t.text for t in tokens[0].tokens] == ["[CLS]", "Hello", "world", "[SEP]"]
    assert client.decode(tokens[0].get_ids()) == ["hello world"]
    assert client.prompt_names() == []


def test_info_has_tei_fields_and_ours(server: tuple[str, str]) -> None:
    name, url = server
    info = httpx.get(url + "/info").json()
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["model_dtype"] == "float32" and info["model_sha"] is None
    assert info["max_input_length"] == 256 and info["auto_truncate"] is True
    assert info["max_concurrent_requests"] >= 1 and info["max_batch_tokens"] >= 1
    assert info["max_client_batch_size"] == 64 and info["version"] == __version__
    # batched chooses its own batch size (autotune) and says so in /info.
    tuned = info["autotune"]["max_batch_size"] if name == "batched" else None
    assert info["max_batch_requests"] == tuned
    assert info["model_id"] == info["model"] and info["variant"] == name


def test_truncation_left_keeps_the_end(server: tuple[str, str]) -> None:
    _, url = server

    def embed(text: str, direction: str) -> np.ndarray:
        body = {"inputs": text, "truncate": True, "truncation_direction": direction}
        reply = httpx.post(url + "/embed", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        return np.array(reply.json())

    # Same ending, different beginnings: Left keeps the ending only, so the two agree.
    left_a, left_b = embed(FILLER_A + TAIL, "Left"), embed(FILLER_B + TAIL, "left")
    assert cosine(left_a, left_b)[0] >= 0.9999
    right_a, right_b = embed(FILLER_A + TAIL, "Right"), embed(FILLER_B + TAIL, "RIGHT")
    assert cosine(right_a, right_b)[0] < 0.99
    assert cosine(left_a, right_a)[0] < 0.99


def test_tokenize_speaks_tei(server: tuple[str, str]) -> None:
    _, url = server
    reply = httpx.post(url + "/tokenize", json={"inputs": "héllo wörld"})
    assert reply.status_code == 200
    assert reply.json() == [
        [
            {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None},
            {"id": 7592, "text": "héllo", "special": False, "start": 0, "stop": 5},
            {"id": 2088, "text": "wörld", "special": False, "start": 6, "stop": 11},
            {"id": 102, "text": "[SEP]", "special": True, "start": None, "stop": None},
        ]
    ]
    bare = httpx.post(url + "/tokenize", json={"inputs": ["a b"], "add_special_tokens": False})
    assert [t["text"] for t in bare.json()[0]] == ["a", "b"]


@pytest.mark.parametrize(
    "path, body, error_type",
    [
        ("/embed", {"inputs": "x", "truncation_direction": "Up"}, "validation"),
        ("/", {"inputs": "x", "normalize": "yes"}, "validation"),
        ("/", {"inputs": "x", "truncate": "no"}, "validation"),
        ("/", {"inputs": "x", "dimensions": 10}, "unsupported"),
        ("/embed", {"inputs": "x", "prompt_name": "query"}, "validation"),
        ("/v1/embeddings", {"input": "x", "model": "m", "dimensions": 10}, "unsupported"),
        ("/v1/embeddings", {"input": "x", "model": "m", "dimensions": "384"}, "validation"),
        ("/v1/embeddings", {"input": "x", "model": "m", "encoding_format": "hex"}, "validation"),
        ("/v1/embeddings", {"input": [[101, 102]], "model": "m"}, "unsupported"),
        ("/tokenize", {"inputs": "x", "add_special_tokens": "no"}, "validation"),
        ("/decode", {"ids": [1, -2]}, "validation"),
        ("/decode", {"ids": [[1], "2"]}, "validation"),
        ("/decode", {"ids": [1 << 40]}, "validation"),
    ],
)
def test_bad_fields_get_422_json_and_the_server_goes_on(
    server: tuple[str, str], path: str, body: dict[str, Any], error_type: str
) -> None:
    _, url = server
    reply = httpx.post(url + path, json=body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["error_type"] == error_type and reply.json()["error"]
    assert httpx.post(url + "/", json={"inputs": "still here"}).status_code == 200
