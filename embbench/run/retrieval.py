"""Retrieval agreement: does a variant's search return the documents the model's own does?

A cosine per answer (quality.py) says how far a vector moved, not whether the move changes
what a search returns. Here a small fixed corpus is embedded through the variant's endpoint
and searched, and its rankings are compared with those of the reference: sentence-transformers
in fp32 at the model's *own* settings (its own max_seq_length, no quantisation), so that a
variant that truncates earlier, pads differently or quantises shows what that costs.

The retrieval set (`retrieval_set`), from the shipped corpus (41 documents, config/payloads.py):

- documents: chunks of `CHUNK_SENTENCES` consecutive sentences of one source document
  (non-overlapping), taken round-robin over the 41 documents so that each is represented
  about equally: what a RAG index holds (passages of ~80-150 tokens; a variant whose
  max_seq_length cuts them shows it, while a short single sentence would not);
- queries: single sentences of the same documents that lie in *no* chosen chunk (seeded), one
  document after the other: a query is never literally inside a document, so its neighbours are
  its context (the nearest thing to a paraphrase the corpus offers without a hub), and each
  query's source document is a weak label for "same-document recall".

The metrics (per query, then a mean with a 95 % percentile-bootstrap interval over queries:
bounded, often skewed values near 1, where a t interval would cross 1):

- recall@10: the share of the reference's 10 nearest documents the variant also returns;
- nDCG@10 against the reference ranking: graded gains 10, 9, ..., 1 for the reference's 1st to
  10th document, so a reordering inside the top 10 costs here while recall@10 stays 1;
- Spearman: rank correlation of the variant's and the reference's cosines of the query with
  every document (the sampled pairs are all query-document pairs of the set);
- same-document recall@10: the share of the query's document's chunks (at most 10) among the
  10 nearest, for the variant and for the reference (the model's own ceiling on this task).

Everything here is pure (numpy and the shipped corpus).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embbench.config.payloads import load_documents

CHUNK_SENTENCES = 4
K = 10
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
# Columns of summary.csv this module fills (results/columns.py declares them): each metric with
# its query interval (`_low`, `_high`), the reference's own same-document figure, the queries.
METRICS = ("recall_at_10", "ndcg_at_10", "spearman", "doc_recall_at_10", "doc_recall_at_10_ref")

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RetrievalSet:
    """Documents (chunks) and queries (sentences), each with its source document's index."""

    documents: tuple[str, ...]
    document_sources: tuple[int, ...]
    queries: tuple[str, ...]
    query_sources: tuple[int, ...]

    @property
    def texts(self) -> tuple[str, ...]:
        """What is embedded: the documents, then the queries."""
        return self.documents + self.queries

    def split(self, vectors: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """(documents' vectors, queries' vectors) of vectors in `texts` order."""
        return vectors[: len(self.documents)], vectors[len(self.documents) :]


def retrieval_set(documents: int, queries: int | None = None, seed: int = 0) -> RetrievalSet:
    """`documents` chunks and `queries` sentences (default: half as many) of the shipped corpus,
    as the module's docstring says; deterministic for given arguments."""
    if documents < K:
        raise ValueError(f"the retrieval set needs at least {K} documents, got {documents}")
    queries = max(1, documents // 2) if queries is None else queries
    sources = load_documents()
    chunks = [
        [doc[i : i + CHUNK_SENTENCES] for i in range(0, len(doc), CHUNK_SENTENCES)]
        for doc in sources
    ]
    chunks = [[c for c in per if len(c) == CHUNK_SENTENCES] for per in chunks]
    rng = random.Random(f"embbench:retrieval:{seed}")
    # Each document's chunks in a seeded order: spread over the document, not only its opening.
    orders = [rng.sample(range(len(per)), len(per)) for per in chunks]
    picked: list[list[int]] = [[] for _ in sources]
    doc_texts: list[str] = []
    doc_sources: list[int] = []
    depth = 0
    while len(doc_texts) < documents and depth < max(len(c) for c in chunks):
        for source, per in enumerate(chunks):
            if depth < len(per) and len(doc_texts) < documents:
                index = orders[source][depth]
                picked[source].append(index)
                doc_texts.append(" ".join(per[index]))
                doc_sources.append(source)
        depth += 1
    free = []
    for source, doc in enumerate(sources):
        n = CHUNK_SENTENCES
        used = {j for i in picked[source] for j in range(i * n, (i + 1) * n)}
        pool = [s for j, s in enumerate(doc) if j not in used and len(s.split()) >= 5]
        rng.shuffle(pool)
        free.append(pool)
    query_texts: list[str] = []
    query_sources: list[int] = []
    while len(query_texts) < queries and any(free):
        for source, pool in enumerate(free):
            if pool and len(query_texts) < queries:
                query_texts.append(pool.pop())
                query_sources.append(source)
    return RetrievalSet(tuple(doc_texts), tuple(doc_sources), tuple(query_texts),
                        tuple(query_sources))  # fmt: skip


# -- the metrics (pure) ------------------------------------------------------------------------


def unit(vectors: npt.NDArray[Any]) -> Floats:
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    result: Floats = array / np.clip(norms, 1e-12, None)
    return result


def similarities(queries: npt.NDArray[Any], documents: npt.NDArray[Any]) -> Floats:
    """Cosine of each query (rows) with each document (columns)."""
    result: Floats = unit(queries) @ unit(documents).T
    return result


def top_k(sims: Floats, k: int = K) -> npt.NDArray[np.int64]:
    """Each row's k most similar columns, best first (ties: the lower index first)."""
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.asarray(order[:, :k], dtype=np.int64)


def recall_at_k(ref_top: npt.NDArray[np.int64], got_top: npt.NDArray[np.int64]) -> Floats:
    """Per query: the share of the reference's top k that the variant's top k holds."""
    found = [len(set(r) & set(g)) / len(r) for r, g in zip(ref_top, got_top, strict=True)]
    return np.asarray(found, dtype=np.float64)


def ndcg_at_k(ref_top: npt.NDArray[np.int64], got_top: npt.NDArray[np.int64]) -> Floats:
    """Per query: nDCG of the variant's top k, the gain of a document k - (its rank in the
    reference's top k), 0 outside it; the reference's own order scores 1."""
    k = ref_top.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = float(np.sum(np.arange(k, 0, -1) * discounts))
    found = []
    for r, g in zip(ref_top, got_top, strict=True):
        gain = {int(doc): k - rank for rank, doc in enumerate(r)}
        dcg = sum(gain.get(int(doc), 0) * discounts[rank] for rank, doc in enumerate(g))
        found.append(dcg / ideal)
    return np.asarray(found, dtype=np.float64)


def _ranks(values: Floats) -> Floats:
    """Average ranks along each row (ties share their mean rank)."""
    out = np.empty_like(values, dtype=np.float64)
    for row, each in enumerate(values):
        order = np.argsort(each, kind="stable")
        ranks = np.empty(len(each), dtype=np.float64)
        ranks[order] = np.arange(len(each), dtype=np.float64)
        # Ties: the mean of their positions.
        _, inverse, counts = np.unique(each, return_inverse=True, return_counts=True)
        if (counts > 1).any():
            sums = np.bincount(inverse, weights=ranks)
            ranks = sums[inverse] / counts[inverse]
        out[row] = ranks
    return out


def spearman_rows(ref_sims: Floats, got_sims: Floats) -> Floats:
    """Per query: Spearman's rho between the reference's and the variant's cosines with every
    document (1 where both rank them alike; nan for a row with no spread)."""
    a, b = _ranks(ref_sims), _ranks(got_sims)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        result: Floats = (a * b).sum(axis=1) / denominator
    return result


def same_source_recall(
    top: npt.NDArray[np.int64], query_sources: Sequence[int], document_sources: Sequence[int]
) -> Floats:
    """Per query: the share of its own document's chunks (at most k of them) in its top k."""
    sources = np.asarray(document_sources)
    k = top.shape[1]
    found = []
    for row, source in zip(top, query_sources, strict=True):
        relevant = int((sources == source).sum())
        hits = int((sources[row] == source).sum())
        found.append(hits / min(k, relevant) if relevant else np.nan)
    return np.asarray(found, dtype=np.float64)


@dataclass(frozen=True)
class Estimate:
    """A mean over queries and its 95 % interval."""

    value: float
    low: float
    high: float
    n: int


def bootstrap_mean(values: npt.ArrayLike, seed: int = 0) -> Estimate:
    """The mean and its percentile-bootstrap interval (seeded: the same data, the same
    interval); nan values are left out. No spread: the interval is the point."""
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(data.mean())
    if data.size == 1 or float(data.min()) == float(data.max()):
        return Estimate(mean, mean, mean, int(data.size))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(BOOTSTRAP_RESAMPLES, data.size))
    means = data[picks].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Estimate(mean, float(min(low, mean)), float(max(high, mean)), int(data.size))


def agreement(
    ref_queries: npt.NDArray[Any],
    ref_documents: npt.NDArray[Any],
    got_queries: npt.NDArray[Any],
    got_documents: npt.NDArray[Any],
    query_sources: Sequence[int],
    document_sources: Sequence[int],
    k: int = K,
) -> dict[str, Estimate]:
    """Every metric of the module's docstring, by its column name (METRICS)."""
    ref_sims = similarities(ref_queries, ref_documents)
    got_sims = similarities(got_queries, got_documents)
    ref_top, got_top = top_k(ref_sims, k), top_k(got_sims, k)
    per_query: dict[str, Callable[[], Floats]] = {
        "recall_at_10": lambda: recall_at_k(ref_top, got_top),
        "ndcg_at_10": lambda: ndcg_at_k(ref_top, got_top),
        "spearman": lambda: spearman_rows(ref_sims, got_sims),
        "doc_recall_at_10": lambda: same_source_recall(got_top, query_sources, document_sources),
        "doc_recall_at_10_ref": lambda: same_source_recall(
            ref_top, query_sources, document_sources
        ),
    }
    return {name: bootstrap_mean(compute()) for name, compute in per_query.items()}


def columns_of(found: dict[str, Estimate] | None) -> dict[str, Any]:
    """The summary row's values of `agreement`'s result (None: not measured)."""
    names = [f"{m}{s}" for m in METRICS for s in ("", "_low", "_high")]
    if not found:
        return dict.fromkeys([*names, "quality_queries"])
    row: dict[str, Any] = {}
    for name, estimate in found.items():
        row[name], row[f"{name}_low"], row[f"{name}_high"] = (
            _number(estimate.value), _number(estimate.low), _number(estimate.high),
        )  # fmt: skip
    row["quality_queries"] = found["recall_at_10"].n
    return row


def _number(value: float) -> float | None:
    return None if value != value else round(value, 6)
