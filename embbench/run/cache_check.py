"""The cache-defeat check (MLPerf's TEST04 idea): is a server faster on an input it has seen?

A server that caches embeddings answers a payload that repeats its inputs (every payload here
samples a few hundred texts) from memory: its throughput measures its cache, not serving, and
cannot be compared with the others'. After the cell's window (never inside it), one connection
sends `PAIRS` pairs of requests, one after the other: the same text each time ("repeat"), and a
text it has never been sent ("distinct"). The distinct texts are the repeated one's words in
other orders: the same words give the same tokens (WordPiece and SentencePiece split at spaces
first, and a BPE's word cache hits alike), so the same token length and the same work for an
honest server, while each is a new string and a new sequence of ids to any cache. The two kinds
alternate in ABBA order so that drift and order effects hit both alike; the first pair (which
puts the repeated text in a cache that might not yet hold it) is not counted.

The decision, on 2 cores where a run-to-run noise of 10 % is ordinary: the speedup is the
ratio of the medians (distinct / repeat), with a 95 % percentile-bootstrap interval over pairs
(resampled together: they share a moment of the machine). A server is flagged as caching when
the interval's *lower* bound exceeds 1 + `MARGIN` (10 %): more than 10 % faster on repeats,
beyond the noise. An honest server's true speedup is 1, so it is flagged only if noise puts the
whole interval above 1.1 (under a 2.5 % chance, and far less in practice: 32 pairs give an
interval of a few % around 1); a cache skips tokenising and the forward pass, which are most of
a request's time, and shows a speedup of several times. A cache that saves under 10 % is not
flagged: it changes no comparison by more than the noise does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embbench.run.endpoint import Endpoint

PAIRS = 32
MARGIN = 0.10  # repeats more than 10 % faster: caching
MIN_WORDS = 6  # 6! = 720 orders: room for PAIRS + 1 distinct ones
MIN_PAIRS = 8  # fewer, when the time ran out: no verdict
BUDGET_S = 20.0  # a slow server gets fewer pairs rather than a long check
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
COLUMNS = ("cache_speedup", "cache_speedup_low", "cache_speedup_high", "cache_pairs", "cache_flag")


@dataclass(frozen=True)
class CacheVerdict:
    """Median latency of distinct inputs over repeats of one (1: no difference), its interval,
    the pairs behind it, and whether the server is flagged as caching."""

    speedup: float
    low: float
    high: float
    pairs: int
    flagged: bool

    def columns(self) -> dict[str, Any]:
        return {
            "cache_speedup": round(self.speedup, 4),
            "cache_speedup_low": round(self.low, 4),
            "cache_speedup_high": round(self.high, 4),
            "cache_pairs": self.pairs,
            "cache_flag": self.flagged,
        }


def judge(
    repeat_ms: npt.ArrayLike, distinct_ms: npt.ArrayLike, margin: float = MARGIN, seed: int = 0
) -> CacheVerdict:
    """The decision of the module's docstring on paired latencies (pair i: repeat_ms[i],
    distinct_ms[i]). Seeded: the same samples, the same interval and verdict."""
    repeat = np.asarray(repeat_ms, dtype=np.float64)
    distinct = np.asarray(distinct_ms, dtype=np.float64)
    if repeat.shape != distinct.shape or repeat.size == 0:
        raise ValueError("the repeat and distinct latencies must be paired and not empty")
    if (repeat <= 0).any() or (distinct <= 0).any():
        raise ValueError("latencies must be positive")
    speedup = float(np.median(distinct) / np.median(repeat))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, repeat.size, size=(BOOTSTRAP_RESAMPLES, repeat.size))
    ratios: npt.NDArray[np.float64] = np.median(distinct[picks], axis=1) / np.median(
        repeat[picks], axis=1
    )
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = (float(v) for v in np.percentile(ratios, [tail, 100 - tail]))
    low, high = min(low, speedup), max(high, speedup)
    # "More than" 10 %: a bound of exactly 1.1 (11 ms against 10 ms, computed as
    # 1.1000000000000001) is not flagged.
    flagged = low > 1.0 + margin + 1e-9
    return CacheVerdict(speedup, low, high, int(repeat.size), flagged)


def base_text(texts: Sequence[str]) -> str | None:
    """The text repeated: the payload's of median length among those of MIN_WORDS words or
    more (None: none has enough words to make PAIRS distinct orders of)."""
    long_enough = sorted(
        (t for t in texts if len(t.split()) >= MIN_WORDS), key=lambda t: (len(t), t)
    )
    return long_enough[len(long_enough) // 2] if long_enough else None


def reorderings(text: str, count: int, seed: int = 0) -> list[str]:
    """`count` distinct orders of `text`'s words, none of them `text` itself (seeded)."""
    words = text.split()
    rng = random.Random(f"embbench:cache:{seed}")
    seen = {" ".join(words)}
    out: list[str] = []
    for _ in range(count * 50):
        if len(out) == count:
            break
        shuffled = rng.sample(words, len(words))
        joined = " ".join(shuffled)
        if joined not in seen:
            seen.add(joined)
            out.append(joined)
    if len(out) < count:
        raise ValueError(f"{text!r} has too few distinct word orders")
    return out


def measure(endpoint: Endpoint, texts: Sequence[str], seed: int = 0) -> CacheVerdict | None:
    """The pairs of the module's docstring, one request at a time on an otherwise idle
    server; None when no text has enough words or too few pairs fit in BUDGET_S."""
    text = base_text(texts)
    if text is None:
        return None
    distinct = reorderings(text, PAIRS + 1, seed)
    endpoint.one(text)  # the first pair: a cache gets the text if it lacked it
    endpoint.one(distinct[0])
    repeat_ms: list[float] = []
    distinct_ms: list[float] = []
    deadline = time.monotonic() + BUDGET_S
    for i, other in enumerate(distinct[1:]):
        if time.monotonic() > deadline:
            break
        first, second = (text, other) if i % 2 == 0 else (other, text)  # ABBA
        a, b = endpoint.one(first).latency_ms, endpoint.one(second).latency_ms
        repeat_ms.append(a if first is text else b)
        distinct_ms.append(b if first is text else a)
    if len(repeat_ms) < MIN_PAIRS:
        return None
    return judge(repeat_ms, distinct_ms, seed=seed)
