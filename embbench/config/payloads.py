"""Request payload sets built from a corpus of real English sentences.

The corpus (``embbench/data/corpus.txt``) holds prose sentences from the Python
documentation (PSF License; see ``embbench/data/CORPUS.md``), grouped by source
document and kept in document order.  Longer inputs are built by joining
*consecutive* sentences of one document, so every payload reads as real text.

Payload sets:

``short``
    single sentences of 8-30 words (median about 24 WordPiece tokens);
``medium``
    2-5 consecutive sentences, 45-140 words (about 60-200 tokens);
``long``
    consecutive sentences totalling 300-800 words, so most exceed the
    512-token window of BERT-style models;
``mixed``
    a shuffled mix of 70% short, 25% medium and 5% long.

Everything here is pure standard-library Python and deterministic for a given
``(name, count, seed)``.
"""

from __future__ import annotations

import random
import statistics
from functools import lru_cache
from pathlib import Path

__all__ = [
    "PAYLOAD_SETS",
    "PROBE_SENTENCES",
    "build_payloads",
    "describe_payloads",
    "load_corpus",
    "load_documents",
]

PAYLOAD_SETS: tuple[str, ...] = ("short", "medium", "long", "mixed")

CORPUS_PATH = Path(__file__).resolve().parents[1] / "data" / "corpus.txt"

_DOC_MARKER = "# doc:"

SHORT_WORDS = (8, 30)
MEDIUM_SENTENCES = (2, 5)
MEDIUM_WORDS = (45, 140)
LONG_WORDS = (300, 800)
# Shares of the mixed set (short takes the remainder).
MIXED_MEDIUM = 0.25
MIXED_LONG = 0.05

_MAX_TRIES = 1000

#: Fixed sentences from the corpus for quick checks of a server (tests, examples):
#: varied in topic and length, all well under 128 tokens. A run's probe uses its own
#: payload instead, across its lengths (quality.probe_indices): these short sentences
#: understate what int8 costs on longer inputs.
PROBE_SENTENCES: tuple[str, ...] = (
    "The pass statement does nothing.",
    "Perhaps the most well-known statement type is the if statement.",
    "Python is an interpreted, interactive, object-oriented programming language.",
    "Windows are the basic abstraction in curses.",
    "An Enum is a set of symbolic names bound to unique values.",
    "By default, Python source files are treated as encoded in UTF-8.",
    "Testing and debugging a functional-style program is easier.",
    "This technique is fast because the key function is called exactly once for each input record.",
)


@lru_cache(maxsize=1)
def _documents() -> tuple[tuple[str, ...], ...]:
    """The corpus as documents, each a tuple of its sentences in order."""
    docs: list[tuple[str, ...]] = []
    current: list[str] = []
    with CORPUS_PATH.open(encoding="utf-8") as fh:
        for raw in fh:
            line = raw.strip()
            if line.startswith(_DOC_MARKER):
                if current:
                    docs.append(tuple(current))
                current = []
            elif line and not line.startswith("#"):
                current.append(line)
    if current:
        docs.append(tuple(current))
    if not docs:
        raise RuntimeError(f"corpus {CORPUS_PATH} holds no sentences")
    return tuple(docs)


def load_documents() -> list[list[str]]:
    """The corpus grouped by source document, sentences in document order."""
    return [list(doc) for doc in _documents()]


@lru_cache(maxsize=1)
def _sentences() -> tuple[str, ...]:
    return tuple(s for doc in _documents() for s in doc)


def load_corpus() -> list[str]:
    """All corpus sentences, in file order (cached; a fresh list each call)."""
    return list(_sentences())


def _words(text: str) -> int:
    return len(text.split())


@lru_cache(maxsize=1)
def _short_pool() -> tuple[str, ...]:
    lo, hi = SHORT_WORDS
    return tuple(s for s in _sentences() if lo <= _words(s) <= hi)


def _without_replacement(pool: tuple[str, ...], count: int, rng: random.Random) -> list[str]:
    """``count`` items: whole shuffled passes over ``pool``, so repeats only when needed."""
    out: list[str] = []
    while len(out) < count:
        order = list(pool)
        rng.shuffle(order)
        out.extend(order[: count - len(out)])
    return out


def _short(count: int, rng: random.Random) -> list[str]:
    return _without_replacement(_short_pool(), count, rng)


def _medium(count: int, rng: random.Random) -> list[str]:
    docs = [d for d in _documents() if len(d) >= MEDIUM_SENTENCES[1]]
    lo, hi = MEDIUM_WORDS
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(count):
        text = ""
        for _try in range(_MAX_TRIES):
            doc = rng.choice(docs)
            k = rng.randint(*MEDIUM_SENTENCES)
            start = rng.randrange(len(doc) - k + 1)
            text = " ".join(doc[start : start + k])
            if lo <= _words(text) <= hi and text not in seen:
                break
        seen.add(text)
        out.append(text)
    return out


def _passage(doc: tuple[str, ...], start: int, target: int) -> str:
    """Consecutive sentences of ``doc`` from ``start`` until ``target`` words.

    When the document ends first, earlier sentences are prepended instead.
    """
    end = start
    words = 0
    while end < len(doc) and words < target:
        words += _words(doc[end])
        end += 1
    while start > 0 and words < target:
        start -= 1
        words += _words(doc[start])
    return " ".join(doc[start:end])


def _long(count: int, rng: random.Random) -> list[str]:
    docs = _documents()
    sizes = [sum(_words(s) for s in d) for d in docs]
    lo, hi = LONG_WORDS
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(count):
        text = ""
        for _try in range(_MAX_TRIES):
            target = rng.randint(lo, hi)
            eligible = [d for d, size in zip(docs, sizes, strict=True) if size >= target]
            if not eligible:  # pragma: no cover - the shipped corpus has long documents
                eligible = [docs[sizes.index(max(sizes))]]
            doc = rng.choice(eligible)
            text = _passage(doc, rng.randrange(len(doc)), target)
            if text not in seen:
                break
        seen.add(text)
        out.append(text)
    return out


def _mixed(count: int, seed: int) -> list[str]:
    n_long = round(count * MIXED_LONG)
    n_medium = round(count * MIXED_MEDIUM)
    n_short = count - n_long - n_medium
    texts = (
        _short(n_short, random.Random(f"embbench:mixed/short:{seed}"))
        + _medium(n_medium, random.Random(f"embbench:mixed/medium:{seed}"))
        + _long(n_long, random.Random(f"embbench:mixed/long:{seed}"))
    )
    random.Random(f"embbench:mixed/order:{seed}").shuffle(texts)
    return texts


def build_payloads(name: str, *, count: int = 512, seed: int = 0) -> list[str]:
    """Build ``count`` request texts of payload set ``name``.

    Deterministic for a given ``(name, count, seed)``.  Raises ``ValueError``
    for an unknown set name or a negative count.
    """
    if name not in PAYLOAD_SETS:
        raise ValueError(f"unknown payload set {name!r}; choose one of short, medium, long, mixed")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if name == "mixed":
        return _mixed(count, seed)
    rng = random.Random(f"embbench:{name}:{seed}")
    if name == "short":
        return _short(count, rng)
    if name == "medium":
        return _medium(count, rng)
    return _long(count, rng)


def describe_payloads(texts: list[str]) -> dict[str, float]:
    """Word and character statistics of a payload set (no tokenizer needed)."""
    if not texts:
        return dict.fromkeys(("count", "words_mean", "words_p50", "words_max", "chars_mean"), 0.0)
    words = [_words(t) for t in texts]
    return {
        "count": float(len(texts)),
        "words_mean": float(statistics.fmean(words)),
        "words_p50": float(statistics.median(words)),
        "words_max": float(max(words)),
        "chars_mean": float(statistics.fmean(len(t) for t in texts)),
    }
