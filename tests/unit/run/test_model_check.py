"""Why a server's answers would disagree with sentence-transformers, read from its /info."""

from __future__ import annotations

from embbench.config.model import resolve_spec
from embbench.run.model_check import disagreement_causes


def test_a_server_that_matches_the_model_has_no_cause() -> None:
    spec = resolve_spec(None)
    info = {"pooling": "mean", "normalize": True, "max_seq_length": 256, "dimensions": 384,
            "default_prompt": None}  # fmt: skip
    assert disagreement_causes(info, spec) == []
    assert disagreement_causes({**info, "max_seq_length": 128}, spec, max_seq_length=128) == []


def test_each_difference_is_named() -> None:
    spec = resolve_spec(None)
    info = {"pooling": "cls", "normalize": False, "max_seq_length": 512, "dimensions": 256,
            "default_prompt": "query: "}  # fmt: skip
    causes = disagreement_causes(info, spec)
    assert [c.split(":")[0] for c in causes] == [
        "pooling", "normalisation", "truncation", "dimensions", "prompt",
    ]  # fmt: skip
    # TEI's /info: pooling under model_type, the limit as max_input_length.
    tei = {"model_type": {"embedding": {"pooling": "cls"}}, "max_input_length": 512}
    assert len(disagreement_causes(tei, spec)) == 2
