"""Retrieval agreement's metrics and set (run/retrieval.py), on small made-up vectors."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from embbench.run import agreement, retrieval


def _vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).normal(size=(n, dim))


def _agree(got_q: Any, got_d: Any, ref_q: Any, ref_d: Any) -> dict[str, retrieval.Estimate]:
    q_sources = [i % 4 for i in range(len(ref_q))]
    d_sources = [i % 4 for i in range(len(ref_d))]
    return retrieval.agreement(ref_q, ref_d, got_q, got_d, q_sources, d_sources)


def test_identical_embeddings_agree_fully() -> None:
    docs, queries = _vectors(40), _vectors(12, seed=1)
    found = _agree(queries, docs, queries, docs)
    for name in ("recall_at_10", "ndcg_at_10", "spearman"):
        assert found[name].value == pytest.approx(1.0)
        assert found[name].low == found[name].high == pytest.approx(1.0)
        assert found[name].n == 12
    # The variant's same-document figure is the reference's when the vectors are the same.
    assert found["doc_recall_at_10"].value == found["doc_recall_at_10_ref"].value


def test_a_scale_does_not_change_agreement() -> None:
    docs, queries = _vectors(40), _vectors(12, seed=1)
    found = _agree(3.0 * queries, 0.5 * docs, queries, docs)
    assert found["recall_at_10"].value == pytest.approx(1.0)


def test_a_reordering_inside_the_top_10_keeps_recall_and_costs_ndcg() -> None:
    ref_top = np.array([np.arange(10)])
    got_top = np.array([np.arange(10)[::-1]])
    assert retrieval.recall_at_k(ref_top, got_top)[0] == 1.0
    assert retrieval.ndcg_at_k(ref_top, got_top)[0] < 0.9
    assert retrieval.ndcg_at_k(ref_top, ref_top)[0] == pytest.approx(1.0)


def test_documents_permuted_agree_less() -> None:
    docs, queries = _vectors(60), _vectors(20, seed=1)
    shuffled = docs[np.random.default_rng(2).permutation(len(docs))]
    found = _agree(queries, shuffled, queries, docs)
    assert found["recall_at_10"].value < 0.5
    assert found["ndcg_at_10"].value < 0.5
    assert abs(found["spearman"].value) < 0.5


def test_noise_lowers_agreement_by_its_size() -> None:
    docs, queries = _vectors(80, dim=32), _vectors(30, dim=32, seed=1)
    rng = np.random.default_rng(3)
    small = _agree(queries, docs + 0.05 * rng.normal(size=docs.shape), queries, docs)
    large = _agree(queries, docs + 0.5 * rng.normal(size=docs.shape), queries, docs)
    assert 1.0 >= small["recall_at_10"].value > large["recall_at_10"].value
    assert small["spearman"].value > large["spearman"].value
    assert small["recall_at_10"].low <= small["recall_at_10"].value <= small["recall_at_10"].high


def test_spearman_of_a_monotone_change_is_one() -> None:
    ref = np.array([[0.1, 0.5, 0.3, 0.9]])
    assert retrieval.spearman_rows(ref, ref**3)[0] == pytest.approx(1.0)
    assert retrieval.spearman_rows(ref, -ref)[0] == pytest.approx(-1.0)


def test_same_document_recall_counts_at_most_k_relevant() -> None:
    top = np.array([[0, 1, 2], [0, 1, 2]])
    # Query 0 is of source 0, which has two documents, both in its top 3; query 1 of source 1,
    # one of whose four documents is in its top 3.
    sources = [0, 0, 1, 1, 1, 1]
    got = retrieval.same_source_recall(top, [0, 1], sources)
    assert got.tolist() == pytest.approx([1.0, 1 / 3])


def test_the_bootstrap_interval_holds_the_mean_and_is_seeded() -> None:
    values = np.r_[np.ones(50), 0.9 * np.ones(10)]
    first, again = retrieval.bootstrap_mean(values), retrieval.bootstrap_mean(values)
    assert first == again
    assert first.low < first.value < first.high <= 1.0
    assert retrieval.bootstrap_mean([np.nan, 1.0]).n == 1
    assert retrieval.bootstrap_mean([]).n == 0


def test_columns_name_every_metric_with_its_interval() -> None:
    docs, queries = _vectors(40), _vectors(12, seed=1)
    row = retrieval.columns_of(_agree(queries, docs, queries, docs))
    assert row["recall_at_10"] == row["recall_at_10_low"] == 1.0 and row["quality_queries"] == 12
    empty = retrieval.columns_of(None)
    assert set(empty) == set(row) and all(v is None for v in empty.values())
    from embbench.results.columns import check_names

    check_names(row)


def test_the_retrieval_set_covers_the_documents_and_keeps_queries_out_of_them() -> None:
    chosen = retrieval.retrieval_set(120)
    assert len(chosen.documents) == 120 and len(chosen.queries) == 60
    assert len(set(chosen.document_sources)) == 41  # every document has a chunk
    assert max(Counter(chosen.document_sources).values()) <= 3  # round-robin
    for query in chosen.queries:
        assert not any(query in doc for doc in chosen.documents)
    assert chosen.texts == chosen.documents + chosen.queries
    assert retrieval.retrieval_set(120) == chosen  # deterministic
    with pytest.raises(ValueError):
        retrieval.retrieval_set(5)


def test_requests_carry_batches_the_server_accepts() -> None:
    assert agreement.batch_size("predict", {"max_client_batch_size": 64}) == 1
    assert agreement.batch_size("tei", {"max_client_batch_size": 4}) == 4
    assert agreement.batch_size("tei", {}) == agreement.BATCH
    path, body = agreement.request_body("tei", ["a", "b"], "m")
    assert path == "/embed" and json.loads(body) == {"inputs": ["a", "b"], "truncate": True}
    path, body = agreement.request_body("openai", ["a", "b"], "m")
    assert path == "/v1/embeddings" and json.loads(body)["input"] == ["a", "b"]


def test_a_url_server_is_judged_by_what_it_says_of_itself() -> None:
    from embbench.run.probe import judged_as

    assert judged_as({"quantize": "int8", "backend": "onnx"}, "none")[0] == "int8"
    assert judged_as({"model_dtype": "int8"}, "none")[0] == "int8"
    assert judged_as({"model_dtype": "float16"}, "none") == (
        "none", "the server's /info: model_dtype float16",
    )  # fmt: skip
    assert judged_as({}, "none")[0] == "none"
    assert judged_as({"quantize": "none"}, "int8") == ("int8", "--quantize int8 given")


def test_capacity_is_withheld_below_the_quality_floor() -> None:
    from embbench.run.capacity import BELOW_FLOOR, quality_of

    good = {"recall_at_10": 1.0, "recall_at_10_low": 1.0, "recall_at_10_high": 1.0,
            "quality_queries": 60}  # fmt: skip
    bad = {"recall_at_10": 0.9, "recall_at_10_low": 0.85, "recall_at_10_high": 0.95,
           "quality_queries": 60}  # fmt: skip
    held = quality_of([good, good], 0.99)
    assert "status" not in held and held["recall_at_10"] == 1.0 and held["quality_floor"] == 0.99
    # One cell below the floor is enough: it must hold at every rate probed.
    fell = quality_of([good, bad], 0.99)
    assert fell["status"] == BELOW_FLOOR and fell["qps_at_slo"] is None
    assert "0.900 [0.850, 0.950] over 60 queries" in fell["reason"]
    assert quality_of([{"recall_at_10": None}], 0.99)["status"] == BELOW_FLOOR
    assert "status" not in quality_of([bad], None)  # no floor asked: figures only


class _FakeTei:
    """A TEI-shaped /embed on a local port: each request's inputs go to `on_inputs`, and each
    input is answered `vector(text)`."""

    def __init__(
        self, vector: Callable[[str], list[float]], on_inputs: Callable[[list[str]], None]
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                on_inputs(body["inputs"])
                reply = json.dumps([vector(t) for t in body["inputs"]]).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_the_embedder_waits_for_the_window_and_sends_batches() -> None:
    sizes: list[int] = []
    fake = _FakeTei(lambda t: [float(len(t)), 1.0], lambda inputs: sizes.append(len(inputs)))
    opened: list[float] = []
    texts = tuple(f"text {'x' * i}" for i in range(20))
    try:
        embedder = agreement.CorpusEmbedder(
            fake.url, "tei", texts, model="m", batch=8,
            opens=lambda: opened[0] if opened else None, spread_s=0.2,
        )  # fmt: skip
        embedder.start()
        time.sleep(0.3)
        assert not sizes  # the window is not open yet
        opened.append(time.time())
        embedder.join(timeout=10)
    finally:
        fake.server.shutdown()
    assert sizes == [8, 8, 4] and embedder.error is None
    assert embedder.vectors is not None and embedder.vectors.shape == (20, 2)
    assert embedder.vectors[:, 0].tolist() == [float(len(t)) for t in texts]


def test_queries_go_in_the_window_and_documents_after_it() -> None:
    """CellAgreement's split (run/agreement.py): inside the window only the sentence queries,
    which cost the traffic little; the documents, which would pad every batch they joined,
    once `after_window` is called; the columns then compare both with the reference."""
    received: list[tuple[str, str]] = []  # (phase, text)
    phase = ["window"]

    def vector(text: str) -> list[float]:
        rng = np.random.default_rng(abs(hash(text)) % 2**32)
        return [float(v) for v in rng.normal(size=8)]

    fake = _FakeTei(vector, lambda inputs: received.extend((phase[0], t) for t in inputs))
    cell = agreement.CellAgreement.__new__(agreement.CellAgreement)
    cell.chosen = retrieval.retrieval_set(12)
    cell.reference = np.asarray([vector(t) for t in cell.chosen.texts], dtype=np.float32)
    cell.queries = cell.documents = None
    url = fake.url
    opened = time.time()
    try:
        cell.start(url, "tei", model="m", info={}, duration_s=0.2, opens=lambda: opened)
        assert cell.queries is not None
        cell.queries.join(timeout=10)
        phase[0] = "after"
        cell.after_window(url, "tei", model="m", info={})
    finally:
        fake.server.shutdown()
    in_window = {t for p, t in received if p == "window"}
    after = {t for p, t in received if p == "after"}
    assert in_window == set(cell.chosen.queries)
    assert after == set(cell.chosen.documents)
    columns = cell.columns(None, lambda text: pytest.fail(text))
    assert columns["recall_at_10"] == 1.0 and columns["quality_queries"] == 6


def test_a_capacity_probe_sends_the_whole_set_after_its_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`after_window` without `start` (capacity probes): queries and documents both after."""
    sent: list[tuple[str, ...]] = []

    class Fake(agreement.CorpusEmbedder):
        def run(self) -> None:
            sent.append(self.texts)
            self.vectors = np.zeros((len(self.texts), 2), dtype=np.float32)
            self.sent_at = (time.time(), time.time())

    cell = agreement.CellAgreement.__new__(agreement.CellAgreement)
    cell.chosen = retrieval.retrieval_set(12)
    cell.queries = cell.documents = None
    monkeypatch.setattr(agreement, "CorpusEmbedder", Fake)
    cell.after_window("http://127.0.0.1:9", "tei", model="m", info={})
    assert sent == [cell.chosen.documents, cell.chosen.queries]


def test_late_queries_say_how_many_were_answered_under_load() -> None:
    answered = [(10.0, 8), (11.0, 8), (12.5, 8), (30.0, 24)]
    text = agreement.late_queries(answered, closed=12.0)
    assert text.startswith("retrieval queries: 16 of 48 answered inside the measured window")
