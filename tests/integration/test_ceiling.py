from __future__ import annotations

from pathlib import Path

import pytest

from embbench.config.payloads import build_payloads
from embbench.machine.host import cpu_count
from embbench.servers.ceiling import layouts, measure_ceiling, measure_in_subprocess

pytestmark = pytest.mark.integration


def test_ceiling_measures_the_model_alone(model_path: Path) -> None:
    texts = build_payloads("mixed", count=64)
    result = measure_ceiling(
        str(model_path), threads=1, texts=texts, seconds=0.3, batch_sizes=(1, 8)
    )
    assert set(result["by_batch"]) == {"1", "8"}
    assert result["sentences_per_s"] == max(result["by_batch"].values()) > 0
    assert 0 < result["batch1_ms"] <= result["batch1_ms_p90"]


def test_ceiling_reports_what_a_server_could_reach(model_path: Path) -> None:
    # Beside the sorted ceiling: batches formed in arrival order, as the batched server forms
    # them, at each token budget; the best is the "reachable" figure.
    texts = build_payloads("mixed", count=64)
    result = measure_ceiling(
        str(model_path), threads=1, texts=texts, seconds=0.3, batch_sizes=(1,), budgets=(64, 256)
    )
    reachable = result["reachable"]
    assert set(reachable["by_tokens"]) == {"64", "256"}
    assert reachable["sentences_per_s"] == max(reachable["by_tokens"].values()) > 0
    assert str(reachable["batch_tokens"]) in reachable["by_tokens"]
    assert (reachable["threads"], reachable["streams"]) == (1, result["layouts"][0]["streams"])
    assert reachable["window"] > 0 and reachable["max_batch_size"] > 0


def test_ceiling_subprocess_reports_json() -> None:
    result = measure_in_subprocess(None, "torch", "none", 1, "short", seconds=0.3)
    assert result["backend"] == "torch" and result["threads"] == 1 and result["payload"] == "short"


def test_ceiling_is_the_best_thread_layout(model_path: Path) -> None:
    texts = build_payloads("short", count=32)
    result = measure_ceiling(str(model_path), texts=texts, seconds=0.2, batch_sizes=(1, 8))
    measured = {(m["threads"], m["streams"]): m for m in result["layouts"]}
    assert set(measured) == set(layouts(cpu_count()))
    best = max(m["sentences_per_s"] for m in measured.values())
    assert result["sentences_per_s"] == best
    assert (result["threads"], result["streams"]) in measured
    assert result["batch1_ms"] == min(m["batch1_ms"] for m in measured.values())


def test_ceiling_runs_streams_side_by_side(model_path: Path) -> None:
    texts = build_payloads("short", count=32)
    result = measure_ceiling(
        str(model_path), threads=1, streams=2, texts=texts, seconds=0.2, batch_sizes=(4,)
    )
    assert [(m["threads"], m["streams"]) for m in result["layouts"]] == [(1, 2)]
    assert result["sentences_per_s"] > 0
