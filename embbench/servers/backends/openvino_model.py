"""The model OpenVINO runs: the fp32 ONNX export as it is, or quantised to int8 by NNCF, cached.

OpenVINO reads embbench's fp32 export (onnx_export.py) directly, fused ops included
(onnxruntime's Attention, EmbedLayerNormalization and SkipLayerNormalization are in its ONNX
frontend), but not the int8 file: its QAttention / QEmbedLayerNormalization are not. So int8 is
OpenVINO's own: NNCF post-training *static* quantisation of the fp32 graph, with activation
scales calibrated once on inputs of the shipped corpus (config/payloads.py, never a hub data
set), where onnxruntime's dynamic quantisation takes them per batch (one input's vector then
moves with its batch-mates).

The quantised model is cached beside the ONNX exports as an OpenVINO IR folder (model.xml +
model.bin) named by a digest of what made it: the fp32 file (itself named by the model's
fingerprint and the exporting tools), the openvino and nncf versions, the settings below and
the number of calibration inputs. Calibration takes about a minute on two cores with 300
inputs; `EMBBENCH_OPENVINO_CALIBRATION` sets fewer (the integration tests use it), and the count
is part of the key, so a small test calibration is never served as the real one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from embbench.errors import ConfigError
from embbench.servers.backends.onnx_export import _digest, _locked, export_onnx

log = logging.getLogger(__name__)

QUANTIZE_CHOICES = ("none", "bf16", "int8")
CALIBRATION_ENV = "EMBBENCH_OPENVINO_CALIBRATION"
CALIBRATION_SIZE = 300  # inputs; the measurement in the issue (min cosine 0.9976) used 300
# What `quantize="int8"` means here; part of the cache key, so changing it re-quantises.
INT8_SETTINGS: dict[str, Any] = {
    "method": "nncf.quantize",
    "model_type": "TRANSFORMER",  # NNCF's transformer preset: mixed (asymmetric activations),
    # attention's softmax and layer norms kept in float, SmoothQuant on the MatMuls' inputs
    "payload": "mixed",  # short sentences, paragraphs and a few long passages, as served
    "seed": 1,  # not the runs' own seed 0: the inputs checked are not those calibrated on
    "max_tokens": 256,  # the model's max_seq_length: longer inputs are truncated when served
}


def calibration_size() -> int:
    """Inputs NNCF calibrates on: CALIBRATION_SIZE, or the environment's count."""
    raw = os.environ.get(CALIBRATION_ENV)
    if raw is None or raw == "":
        return CALIBRATION_SIZE
    try:
        count = int(raw)
    except ValueError:
        raise ConfigError(f"{CALIBRATION_ENV} must be a whole number, got {raw!r}") from None
    if count < 1:
        raise ConfigError(f"{CALIBRATION_ENV} must be positive, got {count}")
    return count


def int8_key(fp32_name: str, count: int) -> dict[str, Any]:
    """Everything the quantised model depends on (pure, so a unit test can check it)."""
    return {
        "fp32": fp32_name,
        "openvino": version("openvino"),
        "nncf": version("nncf"),
        "calibration": count,
        **INT8_SETTINGS,
    }


def int8_folder_name(fp32: Path, count: int) -> str:
    stem = fp32.stem.replace("-fp32-", "-")
    return f"{stem}-ov-int8-{_digest(int8_key(fp32.name, count))}.ov"


def openvino_model(path: Path, *, quantize: str = "none", cache_dir: str | None = None) -> Path:
    """The file OpenVINO reads for the model folder `path`: the fp32 ONNX export for none and
    bf16 (bf16 is a precision hint, not another file), the cached IR for int8."""
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, not {quantize!r}")
    fp32 = export_onnx(path, quantize="none", cache_dir=cache_dir)
    if quantize != "int8":
        return fp32
    count = calibration_size()
    folder = fp32.parent / int8_folder_name(fp32, count)
    xml = folder / "model.xml"
    if xml.is_file():
        return xml
    with _locked(fp32.parent / f"{folder.name}.lock"):
        if not xml.is_file():  # another process may have made it while this one waited
            started = time.perf_counter()
            _quantize_into(folder, fp32, Path(path), count)
            log.info("quantised %s (NNCF, %d inputs) in %.1fs", folder.name, count,
                     time.perf_counter() - started)  # fmt: skip
    return xml


def _quantize_into(folder: Path, fp32: Path, model_dir: Path, count: int) -> None:
    """Quantise into a temporary folder beside `folder`, then rename it into place: a reader
    sees the whole IR or nothing. A temporary left by a killed process is removed first (the
    caller holds the lock)."""
    for stale in folder.parent.glob(f".{folder.stem}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.stem}."))
    try:
        quantize_int8(fp32, model_dir, count, tmp / "model.xml")
        (tmp / "key.json").write_text(json.dumps(int8_key(fp32.name, count), indent=2))
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache's entry from other users
        for each in tmp.iterdir():
            each.chmod(0o644)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def calibration_inputs(model_dir: Path, names: list[str], count: int) -> list[dict[str, Any]]:
    """`count` inputs of the shipped corpus, tokenised as the server does, one per item."""
    import numpy as np
    from tokenizers import Tokenizer

    from embbench.config.payloads import build_payloads

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(int(INT8_SETTINGS["max_tokens"]))
    texts = build_payloads(str(INT8_SETTINGS["payload"]), count=count, seed=INT8_SETTINGS["seed"])
    items = []
    for encoding in tokenizer.encode_batch(texts):
        ids = np.asarray([encoding.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": np.zeros_like(ids)}  # fmt: skip
        items.append({name: feed[name] for name in names})
    return items


def quantize_int8(fp32: Path, model_dir: Path, count: int, xml: Path) -> None:
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32))
    names = [each.get_any_name() for each in model.inputs]
    items = calibration_inputs(model_dir, names, count)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(items),
        model_type=getattr(nncf.ModelType, INT8_SETTINGS["model_type"]),
        subset_size=len(items),
    )
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
