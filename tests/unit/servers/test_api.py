"""The request fields of TEI's and OpenAI's APIs (fields.py), and a batch that mixes requests
asking for normalised and raw vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embbench.servers.batching import BatchQueue
from embbench.servers.fields import (
    EmbedFields,
    FieldError,
    as_base64,
    check_dimensions,
    decode_fields,
    embed_fields,
    load_prompts,
    openai_base64,
    tokenize_fields,
    with_prompt,
)


def test_embed_fields_defaults_are_tei_s() -> None:
    # truncate absent: None, so the server's --truncation decides (TEI's auto-truncate).
    assert embed_fields({"inputs": "x"}) == EmbedFields(True, None, "right", None)
    # What tei-client sends on every call, nulls included.
    sent = {
        "normalize": False,
        "truncate": False,
        "truncation_direction": "Left",
        "prompt_name": None,
    }
    assert embed_fields(sent) == EmbedFields(False, False, "left", None)
    assert embed_fields({"truncation_direction": "right"}).side == "right"


@pytest.mark.parametrize(
    "body",
    [
        {"truncation_direction": "Up"},
        {"truncation_direction": 1},
        {"normalize": "yes"},
        {"normalize": 1},
        {"truncate": "false"},
        {"prompt_name": 3},
        ["not", "an", "object"],
    ],
)
def test_embed_fields_refuse_wrong_types(body: Any) -> None:
    with pytest.raises(FieldError) as refused:
        embed_fields(body)
    assert refused.value.error_type == "validation"


def test_dimensions_only_restate_the_width() -> None:
    check_dimensions({}, 384)
    check_dimensions({"dimensions": None}, 384)
    check_dimensions({"dimensions": 384}, 384)
    with pytest.raises(FieldError) as refused:
        check_dimensions({"dimensions": 10}, 384)
    assert refused.value.error_type == "unsupported"
    with pytest.raises(FieldError):
        check_dimensions({"dimensions": True}, 384)


def test_openai_fields() -> None:
    assert openai_base64({"input": "x", "encoding_format": "base64"}) is True
    assert openai_base64({"input": "x", "encoding_format": None}) is False
    assert openai_base64({"input": ["x"], "encoding_format": "float", "user": "u"}) is False
    with pytest.raises(FieldError):
        openai_base64({"input": "x", "encoding_format": "hex"})
    for ids in ([1, 2], [[1, 2]]):
        with pytest.raises(FieldError) as refused:
            openai_base64({"input": ids})
        assert refused.value.error_type == "unsupported"


def test_base64_is_what_the_openai_client_decodes() -> None:
    vectors = np.array([[1.5, -2.0, 0.25], [0.0, 1e-3, 3.0]], dtype=np.float32)
    for row, text in zip(vectors, as_base64(vectors), strict=True):
        assert np.array_equal(np.frombuffer(base64.b64decode(text), dtype="float32"), row)


def test_tokenize_and_decode_fields() -> None:
    assert tokenize_fields({"inputs": "x"}) == (True, None)
    assert tokenize_fields({"add_special_tokens": False, "prompt_name": "q"}) == (False, "q")
    assert decode_fields({"ids": [101, 102]}) == ([[101, 102]], True)
    assert decode_fields({"ids": [[1], [2, 3]], "skip_special_tokens": False}) == (
        [[1], [2, 3]],
        False,
    )
    for ids in ([], [1, -1], [True], [[1], 2], "1 2", [1 << 32], None):
        with pytest.raises(FieldError):
            decode_fields({"ids": ids})


def test_prompts(tmp_path: Path) -> None:
    assert load_prompts(str(tmp_path)) == {}
    config = {"prompts": {"query": "query: ", "passage": "passage: "}}
    (tmp_path / "config_sentence_transformers.json").write_text(json.dumps(config))
    prompts = load_prompts(str(tmp_path))
    assert with_prompt(["a"], "query", prompts) == ["query: a"]
    assert with_prompt(["a"], None, prompts) == ["a"]
    with pytest.raises(FieldError, match=r'Available prompts: \["query", "passage"\]'):
        with_prompt(["a"], "nope", prompts)


def test_queue_serves_normalised_and_raw_requests_of_one_batch() -> None:
    from embbench.config.model import resolve_model
    from embbench.servers.encoder import Encoder, EncoderSettings

    encoder = Encoder(EncoderSettings(model_path=str(resolve_model(None))))
    ids = encoder.tokenize("A batch may mix normalize=true and normalize=false requests.")
    queue = BatchQueue(encoder.embed, max_batch_size=8, max_batch_tokens=10_000)
    try:
        # Submitted at once, so that the worker may take them as one batch.
        futures = [queue.submit([ids], normalize) for normalize in (None, False, True, False)]
        default, raw, normalised, raw_again = (f.result(timeout=60)[0] for f in futures)
    finally:
        queue.close()
    assert np.isclose(np.linalg.norm(default), 1, atol=1e-5)
    assert np.allclose(default, normalised, atol=1e-6)
    assert np.allclose(raw, raw_again, atol=1e-6)
    assert not np.isclose(np.linalg.norm(raw), 1, atol=1e-2)
    assert np.allclose(raw / np.linalg.norm(raw), default, atol=1e-5)


def test_inline_tokenising_gives_the_pools_ids() -> None:
    """Short requests are tokenised on the event loop (encode_batch_fast, one input at a time),
    long ones in the pool (encode_batch): the same ids either way, truncated on either side,
    and the same refusal of an input too long with truncation off."""
    from embbench.config.model import resolve_model
    from embbench.servers.encoder import Encoder, EncoderSettings, InputTooLongError

    encoder = Encoder(EncoderSettings(model_path=str(resolve_model(None))))
    long_text = " ".join(["Tokenisers cut text into word pieces, one piece at a time."] * 40)
    texts = ["A short sentence.", "Ünïcödé àccents and CJK 漢字 too.", long_text]
    for side in ("right", "left"):
        inline = encoder.tokenize_batch(texts, True, side, inline=True)
        pooled = encoder.tokenize_batch(texts, True, side)
        assert inline == pooled
        assert len(inline[2]) == encoder.max_seq_length
    assert encoder.tokenize_batch(texts[:2], False, inline=True) == encoder.tokenize_batch(
        texts[:2], False
    )
    with pytest.raises(InputTooLongError):
        encoder.tokenize_batch([long_text], False, inline=True)
