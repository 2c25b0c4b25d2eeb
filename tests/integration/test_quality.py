"""Correctness under load with real runs: a server that hands one request another's vector is
caught by the check of the window's answers; a correct one passes it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from embbench.config.options import ServerOptions
from embbench.config.run import RunConfig, VariantRun
from embbench.load import answers
from embbench.machine.process import LaunchSpec, free_port
from embbench.results import folder as results
from embbench.run import quality
from embbench.run.session import run_benchmark
from embbench.variants import OwnVariant, get_variant
from embbench.variants.base import server_env
from tests.integration.conftest import running_server

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def batched_server(workdir: Path, strategy: str) -> Iterator[tuple[str, int]]:
    """Our batched server with the given strategy (the test-only ones need their env var)."""
    variant = get_variant("batched")
    assert isinstance(variant, OwnVariant)
    port = free_port()
    ready = workdir / "ready"
    ready.mkdir(parents=True)
    config = variant.server_config(ServerOptions(), port, str(ready))
    config = dataclasses.replace(config, strategy=strategy)
    env = server_env(config) | {"EMBBENCH_TEST_STRATEGIES": "1"}
    spec = LaunchSpec(argv=variant.command(config), env=env)
    url = f"http://127.0.0.1:{port}"
    with running_server(spec, workdir / "server.log", url, timeout=180) as server:
        assert server.pid is not None
        yield url, server.pid


def run_against(url: str, pid: int, tmp_path: Path, **settings: Any) -> dict[str, Any]:
    given: dict[str, Any] = dict(
        url=url, pid=pid, protocol="predict", concurrency=(8,), duration=2.5, warmup=1.0,
        out=str(tmp_path / "results"),
    )  # fmt: skip
    config = RunConfig(variants=(), **(given | settings))
    outcome = run_benchmark(config)
    [row] = outcome.rows
    return {**row, "run_dir": outcome.run_dir}


def test_a_server_that_swaps_vectors_inside_a_batch_is_caught(tmp_path: Path) -> None:
    with batched_server(tmp_path / "srv", "swapped") as (url, pid):
        # No retrieval traffic: its corpus texts would share batches with the load, and an
        # answer swapped with one of them is near no input of the run.
        row = run_against(url, pid, tmp_path, quality_corpus=0)
    # One request at a time, the probe sees no batch and so no swap; under load it does.
    assert row["probe_cosine_min"] >= 0.999
    assert row["status"] == results.BAD_EMBEDDINGS and row["correct"] is False
    assert row["checked"] > 0 and row["mismatched"] > 0
    assert "closer to another input's reference" in row["failure_reason"]
    checks = pd.read_csv(row["run_dir"] / "checks" / f"{row['cell']}.csv")
    assert list(checks.columns) == quality.CHECK_COLUMNS and len(checks) == row["checked"]
    swapped = checks[checks["nearest_other_cosine"] > checks["cosine"]]
    assert len(swapped) == row["mismatched"]
    # A swapped answer is another input's vector: near 1 to that input's reference.
    assert swapped["nearest_other_cosine"].min() >= 0.999
    # After the window, the batch-invariance check sees it too: a text's answer inside a batch
    # is another text's vector, far from its answer alone.
    assert row["batch_inputs"] > 0 and row["batch_deviation"] > 0.1


def test_a_correct_server_passes_and_records_its_cosines(tmp_path: Path) -> None:
    with batched_server(tmp_path / "srv", "batched") as (url, pid):
        row = run_against(url, pid, tmp_path)
    assert row["status"] == results.OK and row["correct"] is True
    assert row["checked"] > 0 and row["mismatched"] == 0
    assert row["cosine_min"] >= 0.999 and row["cosine_p1"] >= row["cosine_min"]
    assert row["cosine_p50"] >= row["cosine_p1"]
    summary = pd.read_csv(row["run_dir"] / "summary.csv")
    assert int(summary.loc[0, "checked"]) == row["checked"]
    # The kept bodies are the orchestrator's to read; only the checks file stays.
    assert not list((row["run_dir"] / "logs").glob(f"*.raw/{answers.RESPONSES_GLOB}"))
    # Retrieval agreement through the endpoint under load: an fp32 server returns the
    # reference's own neighbours (1.0 within the interval over queries).
    assert row["quality_queries"] == 48
    assert row["recall_at_10_low"] <= 1.0 <= row["recall_at_10_high"]
    assert row["recall_at_10"] >= 0.99 and row["ndcg_at_10"] >= 0.99 and row["spearman"] >= 0.99
    assert row["doc_recall_at_10"] == pytest.approx(row["doc_recall_at_10_ref"], abs=0.02)
    assert float(summary.loc[0, "recall_at_10"]) == row["recall_at_10"]
    # After the window: fp32 answers barely move with their batch-mates (padding changes the
    # matrix shapes, not the result beyond float rounding), and an honest server is not
    # flagged as caching (the flag needs repeats > 10 % faster beyond the interval's noise).
    assert row["batch_inputs"] >= 100 and row["batch_deviation"] < 1e-4
    assert row["batch_largest"] >= 2
    assert row["cache_pairs"] == 32 and row["cache_flag"] is False
    assert row["cache_speedup_low"] <= row["cache_speedup"] <= row["cache_speedup_high"]
    assert str(summary.loc[0, "cache_flag"]) == "False"


def test_a_server_slightly_wrong_falls_below_the_recall_floor(tmp_path: Path) -> None:
    # Small noise on every vector (cosine ~0.97): what a search returns changes measurably.
    with batched_server(tmp_path / "srv", "perturbed") as (url, pid):
        row = run_against(url, pid, tmp_path, protocol="tei", check_rate=0)
    assert row["quality_queries"] == 48
    assert row["recall_at_10_high"] < 0.99 and row["ndcg_at_10_high"] < 0.99
    # Its noise is drawn anew for every forward pass: the same text alone twice differs.
    assert row["batch_deviation"] > 1e-3


def test_a_shorter_max_seq_length_agrees_less_with_the_model(tmp_path: Path) -> None:
    # The reference keeps the model's own length (256): documents cut at 32 tokens are other
    # documents to a search. The same variant at the model's length, in the same run, is the
    # comparison: its interval lies above the shortened one's.
    short = VariantRun("batched", ServerOptions(max_seq_length=32), label="short")
    own = VariantRun("batched", label="own")
    config = RunConfig(
        variants=(short, own), concurrency=(8,), duration=2.5, warmup=1.0, payload="mixed",
        out=str(tmp_path / "results"), check_rate=0, server_checks=False,
    )  # fmt: skip
    rows = {row["label"]: row for row in run_benchmark(config).rows}
    cut, full = rows["short"], rows["own"]
    assert cut["status"] == full["status"] == results.OK
    assert cut["quality_queries"] == full["quality_queries"] == 48
    assert cut["recall_at_10_high"] < full["recall_at_10_low"]
    assert cut["ndcg_at_10_high"] < full["ndcg_at_10_low"]
    assert cut["spearman"] < full["spearman"] and cut["recall_at_10_high"] < 0.99
    # Off, the checks after the window leave their columns empty.
    assert cut["batch_inputs"] is None and cut["cache_flag"] is None


def test_quality_corpus_set_per_variant_measures_only_that_variant(tmp_path: Path) -> None:
    # What the quality-cost experiment relies on: one run, the same server with the
    # retrieval measurement on and off (configs/experiments/quality-cost.toml).
    on = VariantRun("shared-mutex", label="on")
    off = VariantRun("shared-mutex", label="off", quality_corpus=0)
    config = RunConfig(
        variants=(on, off), concurrency=(4,), duration=2.5, warmup=1.0, check_rate=0,
        out=str(tmp_path / "results"), quality_corpus=20, server_checks=False,
    )  # fmt: skip
    rows = {row["label"]: row for row in run_benchmark(config).rows}
    assert rows["on"]["status"] == rows["off"]["status"] == results.OK
    assert rows["on"]["quality_queries"] == 10 and rows["on"]["recall_at_10"] >= 0.99
    assert rows["off"]["quality_queries"] is None and rows["off"]["recall_at_10"] is None


def test_answers_of_every_locust_process_reach_the_check(tmp_path: Path) -> None:
    # --processes 2: the workers send their kept answers to the master, as their rows.
    with batched_server(tmp_path / "srv", "batched") as (url, pid):
        row = run_against(url, pid, tmp_path, load_processes=2)
    assert row["status"] == results.OK and row["checked"] > 0 and row["mismatched"] == 0
    meta = json.loads((row["run_dir"] / "run.json").read_text())
    assert meta["config"]["check_rate"] > 0


def test_checking_off_records_no_checks(tmp_path: Path) -> None:
    with batched_server(tmp_path / "srv", "batched") as (url, pid):
        row = run_against(url, pid, tmp_path, check_rate=0)
    assert row["status"] == results.OK and row["checked"] is None
    assert row["probe_cosine_min"] >= 0.999 and not (row["run_dir"] / "checks").exists()


def test_open_loop_answers_are_checked(tmp_path: Path) -> None:
    with batched_server(tmp_path / "srv", "batched") as (url, pid):
        row = run_against(url, pid, tmp_path, concurrency=(8,), rates=(30.0,))
    assert row["load_model"] == "open" and row["status"] == results.OK
    assert row["checked"] > 0 and row["mismatched"] == 0


@contextlib.contextmanager
def load_worker(port: int, payload: str) -> Iterator[None]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "embbench", "load-worker", "--master-host", "127.0.0.1",
         "--master-port", str(port), "--payload", payload, "--protocol", "predict"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)


@pytest.mark.parametrize("payload", ["short", "medium"])
def test_a_remote_worker_sends_its_answers_only_for_the_same_payloads(
    tmp_path: Path, payload: str
) -> None:
    # The run's payload is short; a worker started with another one sends other texts, and
    # its answers cannot be judged against the run's inputs: they go unchecked, not "wrong".
    port = free_port()
    with batched_server(tmp_path / "srv", "batched") as (url, pid), load_worker(port, payload):
        row = run_against(url, pid, tmp_path, concurrency=(3,), load_workers=1, master_port=port)
    assert row["status"] == results.OK and row["requests"] > 0
    if payload == "short":
        assert row["checked"] > 0 and row["mismatched"] == 0
    else:
        assert row["checked"] == 0
