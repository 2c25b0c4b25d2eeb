"""Correctness: a server's embeddings of fixed sentences against sentence-transformers' own."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import httpx
import numpy as np
import numpy.typing as npt

from embbench.load.protocols import parse_embeddings, request_for
from embbench.payloads import PROBE_SENTENCES

FP32_THRESHOLD = 0.999
INT8_THRESHOLD = 0.99


def threshold_for(quantize: str) -> float:
    return INT8_THRESHOLD if quantize == "int8" else FP32_THRESHOLD


@functools.lru_cache(maxsize=4)
def reference_embeddings(
    model_path: str, sentences: tuple[str, ...] = PROBE_SENTENCES
) -> npt.NDArray[np.float32]:
    """sentence-transformers' `encode` in this process (cached: computed once per run)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu")
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
) -> float:
    """Lowest cosine between the server's embeddings and the reference, one request each.

    Raises httpx.HTTPError or ValueError when the server does not answer with embeddings.
    """
    got = []
    with httpx.Client(base_url=url, timeout=timeout) as client:
        for text in sentences:
            path, body = request_for(protocol, text, model)
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            response.raise_for_status()
            got.append(parse_embeddings(protocol, response.json())[0])
    vectors = np.asarray(got, dtype=np.float32)
    if vectors.shape != reference.shape:
        raise ValueError(f"embeddings of shape {vectors.shape}, expected {reference.shape}")
    return float(cosines(vectors, reference).min())
