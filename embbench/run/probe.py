"""Correctness before the load: a server's embeddings of a few of the run's own inputs (its
shortest, quantiles of length, its longest: quality.probe_indices) against
sentence-transformers' own, one request at a time. The answers under load are checked after the
cell (quality.py) against the same references, with the same threshold."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from embbench.config.payloads import PROBE_SENTENCES
from embbench.load.protocols import parse_embeddings, request_for
from embbench.machine.quiet import quiet_libraries

FP32_THRESHOLD = 0.999
# int8 dynamic quantisation's own error: on the 512 inputs of each of the short, mixed and long
# sets the exported int8 model's lowest cosine to sentence-transformers was 0.975-0.988 (p1
# 0.985-0.990), so 0.99, which a probe of short fixed sentences passed, fails a correct int8
# server on realistic inputs. Under load it is wider still: the quantisation scales are taken per
# batch, so one input's cosine moves with its batch-mates (one short sentence: 0.971 to 0.991
# over 37 answers of a batched server, mixed payload). 0.95 leaves a margin below that, and is
# still above the 0.87 that the per-tensor quantisation onnx_export.py rejected reaches; an
# answer meant for another input is caught by the mismatch rule (quality.py) whatever the
# threshold.
INT8_THRESHOLD = 0.95
# OpenVINO int8 is NNCF's *static* quantisation (servers/backends/openvino_model.py): scales
# fixed at calibration, so an input's vector does not move with its batch-mates (batch 1 and
# batch 8 gave the same cosines to five decimals). Calibrated on 300 mixed inputs of the corpus
# (seed 1), against sentence-transformers on 256 inputs each (seed 0): short min 0.9952, p1
# 0.9961; mixed min 0.9942, p1 0.9959. 0.99 leaves a margin of 0.004 below the lowest, the same
# order as the spread between calibrations, and is 0.04 above the dynamic int8 threshold: a
# static model that falls to dynamic int8's error is a broken calibration, and is caught.
OPENVINO_INT8_THRESHOLD = 0.99
# bf16 (OpenVINO, asked for explicitly): min 0.99997 on the same sets: fp32's threshold holds.


def threshold_for(quantize: str, backend: str | None = None) -> float:
    if quantize == "int8":
        return OPENVINO_INT8_THRESHOLD if backend == "openvino" else INT8_THRESHOLD
    return FP32_THRESHOLD


def judged_as(info: Mapping[str, Any], quantize: str) -> tuple[str, str]:
    """For a server driven by URL: the quantisation it is judged as and why. An explicit
    `--quantize int8` on the run wins; else what the server says of itself in /info (ours:
    `quantize`; TEI's: `model_dtype`); else fp32, which an unknown server is held to."""
    if quantize == "int8":
        return "int8", "--quantize int8 given"
    said = info.get("quantize")
    if isinstance(said, str) and said in ("int8", "none"):
        return said, f"the server's /info: quantize {said}"
    dtype = info.get("model_dtype")
    if isinstance(dtype, str) and dtype:
        quantized = "int8" if "int8" in dtype.lower() else "none"
        return quantized, f"the server's /info: model_dtype {dtype}"
    return "none", "fp32: the server's /info names no dtype or quantisation"


@functools.lru_cache(maxsize=4)
def reference_embeddings(
    model_path: str,
    sentences: tuple[str, ...] = PROBE_SENTENCES,
    max_seq_length: int | None = None,
) -> npt.NDArray[np.float32]:
    """sentence-transformers' `encode` in this process (cached: computed once per run).

    `max_seq_length`: the server's, when it was set: the reference then does the same task (the
    truncation length is a setting with its own column, not an error of the server's).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_libraries()  # no `Loading weights` bar between the run's lines
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    vectors = model.encode(list(sentences), convert_to_numpy=True, show_progress_bar=False)
    del model
    return np.asarray(vectors, dtype=np.float32)


def cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    result: npt.NDArray[np.float32] = (a * b).sum(axis=1) / np.clip(norms, 1e-12, None)
    return result


def probe_server(
    url: str,
    protocol: str,
    reference: npt.NDArray[np.float32],
    sentences: Sequence[str] = PROBE_SENTENCES,
    *,
    model: str = "",
    timeout: float = 60.0,
    latencies_ms: list[float] | None = None,
    refused: list[int] | None = None,
) -> float:
    """Lowest cosine between the server's embeddings and the reference, one request each.

    `latencies_ms`, when given, gets each request's latency in order: the first is the first
    request the server answers after ready (start-up cost: lazy initialisation shows there).

    `refused`, when given, gets the index of each input the server answered 413 (too long: a
    server told not to truncate refuses what its model cannot take, as TEI does), and the
    cosine is over the others; without it a 413 is an error like any other.

    Raises httpx.HTTPError or ValueError when the server does not answer with embeddings.
    """
    got = []
    kept = []
    with httpx.Client(base_url=url, timeout=timeout) as client:
        for index, text in enumerate(sentences):
            path, body = request_for(protocol, text, model)
            sent = time.perf_counter()
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            if latencies_ms is not None:
                latencies_ms.append((time.perf_counter() - sent) * 1000.0)
            if refused is not None and response.status_code == 413:
                refused.append(index)
                continue
            response.raise_for_status()
            got.append(parse_embeddings(protocol, response.json())[0])
            kept.append(index)
    if not kept:
        raise ValueError(f"the server refused all {len(sentences)} probe inputs (413)")
    vectors = np.asarray(got, dtype=np.float32)
    expected = reference[kept]
    if vectors.shape != expected.shape:
        raise ValueError(f"embeddings of shape {vectors.shape}, expected {expected.shape}")
    return float(cosines(vectors, expected).min())
