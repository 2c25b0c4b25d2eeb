"""A model folder on its own, against sentence-transformers: `embbench model`'s check, and the
causes a run's failure names when a server's /info differs from the model's description."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from embbench.config.model import ModelSpec
from embbench.errors import ConfigError
from embbench.run.quality import served_length, unit_rows

# `embbench model`: the same computation, so fp32 must agree to rounding (int8: probe.py's).
MODEL_CHECK_THRESHOLD = 0.9999
CHECK_BACKENDS = ("torch", "onnx", "int8", "openvino", "openvino-int8")
# A name above -> (backend, quantize): int8 is onnx's dynamic int8, openvino-int8 NNCF's static.
_CHECK_AS = {"int8": ("onnx", "int8"), "openvino-int8": ("openvino", "int8")}
_CHECK_WORDS = ("servers", "answer", "queries", "about", "vectors", "while", "the", "batcher",
                "waits", "for", "tokens", "from", "long", "documents")  # fmt: skip


def check_inputs(spec: ModelSpec) -> dict[str, str]:
    """Named inputs: a sentence, one word, and one far past the model's limit."""
    words = 2 * spec.max_positions + 16  # every word is a token at least
    return {
        "short": "What is the capital of France?",
        "one word": "embedding",
        "sentence": "The quick brown fox jumps over the lazy dog near the riverbank at dawn.",
        f"long ({words} words)": " ".join(
            _CHECK_WORDS[i % len(_CHECK_WORDS)] for i in range(words)
        ),
    }


@dataclass(frozen=True)
class BackendCheck:
    """One backend's embeddings of the check inputs against sentence-transformers'."""

    backend: str
    cosines: dict[str, float]  # input name -> the lower of batched and one at a time
    threshold: float
    norm_error: float  # largest relative difference of the vectors' lengths

    @property
    def passed(self) -> bool:
        return min(self.cosines.values()) >= self.threshold and self.norm_error < 1e-2


def check_model(
    spec: ModelSpec, backends: Sequence[str] = ("torch", "onnx"), threads: int = 1
) -> list[BackendCheck]:
    """Embed `check_inputs` through each backend's encoder in this process (all together, so
    padding is exercised, and one at a time) and compare with SentenceTransformer.encode."""
    from embbench.config.options import ServerOptions
    from embbench.run.probe import reference_embeddings, threshold_for
    from embbench.servers.encoder import Encoder, EncoderSettings

    unknown = [b for b in backends if b not in CHECK_BACKENDS]
    if unknown:
        raise ConfigError(f"--backend {unknown[0]!r}: choose among {', '.join(CHECK_BACKENDS)}")
    inputs = check_inputs(spec)
    texts = list(inputs.values())
    reference = reference_embeddings(
        spec.path, tuple(texts), served_length(spec.path, None)
    ).astype(np.float64)
    found = []
    for name in backends:
        backend, quantize = _CHECK_AS.get(name, (name, "none"))
        options = ServerOptions(backend=backend, quantize=quantize)
        encoder = Encoder(EncoderSettings(model_path=spec.path, options=options, threads=threads))
        together = encoder.encode(texts).astype(np.float64)
        alone = np.stack([encoder.encode([text])[0] for text in texts]).astype(np.float64)
        worst = np.minimum(_row_cosines(together, reference), _row_cosines(alone, reference))
        lengths = np.linalg.norm(reference, axis=1)
        norm_error = float(
            np.max(np.abs(np.linalg.norm(together, axis=1) - lengths) / np.maximum(lengths, 1e-12))
        )
        threshold = (
            threshold_for(quantize, backend) if quantize == "int8" else MODEL_CHECK_THRESHOLD
        )
        cosines = {label: float(c) for label, c in zip(inputs, worst, strict=True)}
        found.append(BackendCheck(name, cosines, threshold, norm_error))
    return found


def _row_cosines(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = (unit_rows(a) * unit_rows(b)).sum(axis=1)
    return result


def disagreement_causes(
    info: Mapping[str, Any], spec: ModelSpec, max_seq_length: int | None = None
) -> list[str]:
    """What a server says of itself (/info: ours, the Rust server's, TEI's) that differs from
    the model's description: why its answers would disagree with sentence-transformers'. A
    failure reason can name these rather than only a cosine."""
    causes = []
    tei = info.get("model_type")
    pooling = info.get("pooling")
    if pooling is None and isinstance(tei, Mapping):
        pooling = (tei.get("embedding") or {}).get("pooling")
    if isinstance(pooling, str) and pooling.replace("last_token", "lasttoken") != spec.pooling_name:
        causes.append(f"pooling: the server's is {pooling}, the model's {spec.pooling_name}")
    normalize = info.get("normalize")
    if isinstance(normalize, bool) and normalize != spec.normalize:
        causes.append(
            f"normalisation: the server {'does' if normalize else 'does not'} normalise, "
            f"the model {'does' if spec.normalize else 'does not'}"
        )
    served = info.get("max_seq_length", info.get("max_input_length"))
    want = min(max_seq_length or spec.max_seq_length, spec.max_positions)
    if isinstance(served, int) and served != want:
        causes.append(f"truncation: the server keeps {served} tokens, the model {want}")
    dimensions = info.get("dimensions")
    if isinstance(dimensions, int) and dimensions != spec.dimensions:
        causes.append(f"dimensions: the server's {dimensions}, the model's {spec.dimensions}")
    if "default_prompt" in info and (info["default_prompt"] or "") != spec.default_prompt:
        causes.append(
            f"prompt: the server puts {info['default_prompt']!r} before each input, "
            f"the model {spec.default_prompt or None!r}"
        )
    return causes
