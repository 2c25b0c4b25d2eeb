"""Retrieval agreement of one cell, measured through the variant's own endpoint (the metrics
and the retrieval set: retrieval.py).

A small background client (`CorpusEmbedder`, one thread, one request in flight) sends texts
in batches the server accepts (TEI's and OpenAI's shapes: up to `BATCH` inputs, no more than
/info's max_client_batch_size; ours one input per /predict). The queries (sentences, like the
traffic) go in while the cell's load runs, paced over the first `SPREAD` of the measured
window, so their vectors are the ones a loaded server returns; the documents (longer chunks,
which would pad every batch they joined) follow the window: `CellAgreement` says why.
`--quality-corpus` sets the size; 0 turns it off. The reference is sentence-transformers in
fp32 at the model's own settings (quality.references with no max_seq_length), cached on disk
like the others.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import numpy as np

from embbench.load.protocols import PATHS, parse_embeddings, request_for
from embbench.run import quality, retrieval

BATCH = 8
SPREAD = 0.6  # of the measured window: the texts are sent over its first 60 %
TIMEOUT_S = 60.0
AFTER_TIMEOUT_S = 120.0  # all of the documents after a window, however slow the server


def batch_size(protocol: str, info: Mapping[str, Any]) -> int:
    """Inputs per request: one for /predict, else BATCH or fewer if the server says so."""
    if protocol == "predict":
        return 1
    most = info.get("max_client_batch_size")
    return max(1, min(BATCH, most)) if isinstance(most, int) and most > 0 else BATCH


def request_body(protocol: str, texts: list[str], model: str) -> tuple[str, bytes]:
    """(path, JSON body) of one request embedding `texts`."""
    if len(texts) == 1 or protocol == "predict":
        return request_for(protocol, texts[0], model)
    if protocol == "tei":
        return PATHS["tei"], json.dumps({"inputs": texts, "truncate": True}).encode()
    return PATHS["openai"], json.dumps({"input": texts, "model": model}).encode()


class CorpusEmbedder(threading.Thread):
    """Embeds `texts` through `url` once the window `opens()` (an epoch time, None while not
    yet known); `vectors` holds them after a clean finish, `error` says why not otherwise."""

    def __init__(
        self,
        url: str,
        protocol: str,
        texts: tuple[str, ...],
        *,
        model: str,
        batch: int,
        opens: Callable[[], float | None],
        spread_s: float,
    ) -> None:
        super().__init__(name="embbench-corpus", daemon=True)
        self.url, self.protocol, self.texts, self.model = url, protocol, texts, model
        self.batch, self.opens, self.spread_s = batch, opens, spread_s
        self.vectors: np.ndarray[Any, Any] | None = None
        self.error: str | None = None
        self.sent_at: tuple[float, float] | None = None  # first send, last answer (epoch)
        self.answered: list[tuple[float, int]] = []  # (epoch, inputs) of each answer
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        try:
            self._run()
        except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError) as exc:
            self.error = f"retrieval corpus: {type(exc).__name__}: {exc}"[:500]

    def _run(self) -> None:
        while not self._halt.is_set():
            start = self.opens()
            if start is not None and time.time() >= start:
                break
            self._halt.wait(0.2)
        if self._halt.is_set():
            self.error = "retrieval corpus: the window never opened"
            return
        batches = [
            list(self.texts[i : i + self.batch]) for i in range(0, len(self.texts), self.batch)
        ]
        gap = self.spread_s / max(1, len(batches))
        got: list[list[float]] = []
        first = time.time()
        with httpx.Client(base_url=self.url, timeout=TIMEOUT_S) as client:
            for n, texts in enumerate(batches):
                if self._halt.is_set():
                    self.error = "retrieval corpus: the cell ended before it was embedded"
                    return
                path, body = request_body(self.protocol, texts, self.model)
                reply = client.post(
                    path, content=body, headers={"Content-Type": "application/json"}
                )
                reply.raise_for_status()
                vectors = parse_embeddings(self.protocol, reply.json())
                if len(vectors) != len(texts):
                    raise ValueError(f"{len(vectors)} embeddings for {len(texts)} inputs")
                got.extend(vectors)
                self.answered.append((time.time(), len(texts)))
                self._halt.wait(max(0.0, first + (n + 1) * gap - time.time()))
        self.sent_at = (first, time.time())
        self.vectors = np.asarray(got, dtype=np.float32)


class CellAgreement:
    """One cell's retrieval agreement: the set and its reference before the cell (computed once,
    then cached, before the quiet wait), the queries beside the load, the documents after the
    window, the columns after that.

    Why the split: the queries are single sentences, like the traffic, so they join its batches
    at its own cost; the documents are chunks of four sentences, and each batch one joined was
    padded to its length: sent inside the window, the set cost a batched onnx int8 server 11.5 %
    of its throughput on the mixed payload (run quality-cost-1: 258.9 against 292.5 rps, 1.18x
    (1.06-1.30)). After the window they cost it nothing. What a loaded server does to a vector
    (batch-mates, per-batch int8 scales) is seen in the queries, and measured for any text by the
    batch-invariance check (invariance.py)."""

    def __init__(self, documents: int, model_path: str, seed: int = 0) -> None:
        self.chosen = retrieval.retrieval_set(documents, seed=seed)
        # fp32 sentence-transformers at the model's own settings (no max_seq_length of the
        # variant's): what the variant's search is compared with.
        self.reference = quality.references(model_path, self.chosen.texts, None)
        self.queries: CorpusEmbedder | None = None
        self.documents: CorpusEmbedder | None = None

    def start(
        self,
        url: str,
        protocol: str,
        *,
        model: str,
        info: Mapping[str, Any],
        duration_s: float,
        opens: Callable[[], float | None],
    ) -> None:
        """The queries, paced over the first SPREAD of the window once it opens."""
        self.queries = CorpusEmbedder(
            url, protocol, self.chosen.queries, model=model, batch=batch_size(protocol, info),
            opens=opens, spread_s=SPREAD * duration_s,
        )  # fmt: skip
        self.queries.start()

    def after_window(
        self, url: str, protocol: str, *, model: str, info: Mapping[str, Any],
        documents: CorpusEmbedder | None = None,
    ) -> None:  # fmt: skip
        """Once the load has stopped: the documents (and the queries, if `start` was not
        called: a capacity probe sends nothing inside its window), back to back.

        `documents`: the same server's documents from an earlier cell's (reusable_documents):
        embedded after a window on the idle server, they do not depend on the cell, so the
        server's later cells take them instead of sending them again (run/served.py)."""
        self.finish()

        def embedded(texts: tuple[str, ...]) -> CorpusEmbedder:
            embedder = CorpusEmbedder(
                url, protocol, texts, model=model, batch=batch_size(protocol, info),
                opens=time.time, spread_s=0.0,
            )  # fmt: skip
            embedder.start()
            embedder.join(timeout=AFTER_TIMEOUT_S)
            embedder.stop()  # one that has not finished by then is left out, with its error
            return embedder

        reuse = documents is not None and documents.texts == self.chosen.documents
        self.documents = documents if reuse else embedded(self.chosen.documents)
        if self.queries is None:
            self.queries = embedded(self.chosen.queries)

    def reusable_documents(self) -> CorpusEmbedder | None:
        """The documents when all of them were embedded (for the server's later cells)."""
        found = self.documents
        return found if found is not None and found.vectors is not None else None

    def finish(self, wait: bool = True) -> None:
        """Before the server stops: let the embedders end (a slow server may still be answering
        the queries after the window; not when interrupted), then stop them."""
        for embedder in (self.queries, self.documents):
            if embedder is None:
                continue
            if wait and embedder.sent_at is None and embedder.opens() is not None:
                embedder.join(timeout=TIMEOUT_S)
            embedder.stop()
            embedder.join(timeout=TIMEOUT_S)

    def columns(
        self, window: tuple[float, float] | None, warn: Callable[[str], None]
    ) -> dict[str, Any]:
        """The cell's retrieval columns (all None if an embedder got nothing usable)."""
        chosen, reference = self.chosen, self.reference
        ref_docs, ref_queries = chosen.split(reference)
        got = []
        for embedder, ref in ((self.documents, ref_docs), (self.queries, ref_queries)):
            vectors = embedder.vectors if embedder is not None else None
            if vectors is None or vectors.shape != ref.shape:
                if embedder is not None:
                    warn(embedder.error or "retrieval corpus: no embeddings of the model's width")
                return retrieval.columns_of(None)
            got.append(vectors)
        sent = self.queries.sent_at if self.queries is not None else None
        if window is not None and sent is not None and sent[1] > window[1]:
            warn(late_queries(self.queries.answered if self.queries else [], window[1]))
        found = retrieval.agreement(
            ref_queries, ref_docs, got[1], got[0], chosen.query_sources, chosen.document_sources,
        )  # fmt: skip
        return retrieval.columns_of(found)


def late_queries(answered: list[tuple[float, int]], closed: float) -> str:
    """How many queries were answered under the cell's load: one client with one request in
    flight waits behind every user's request, so at high concurrency most answers come after
    the window, from a server that is no longer loaded."""
    total = sum(count for _, count in answered)
    inside = sum(count for at, count in answered if at <= closed)
    return (
        f"retrieval queries: {inside} of {total} answered inside the measured window, the rest "
        "after it closed (one request at a time behind the load's queue)"
    )
