"""The ONNX file a model folder is run from: exported from torch, quantised to int8, cached.

The graph is exported from the same transformers model the torch backend runs, once, and cached
on disk under a name that changes whenever the model or the tools that made the file change.
torch is imported only when a file has to be made: a server that finds its file in the cache
runs on onnxruntime alone.

Measured on the 2-core dev box (threads=2, all-MiniLM-L6-v2, 24-token inputs; the machine is
shared, so take ±10%):

- exporter: the dynamo exporter (torch.onnx.export(dynamo=True), opset 18) gives a 309-node
  graph that ORT cuts to 279 (SkipLayerNormalization fused); the TorchScript exporter
  (dynamo=False) gives 669 nodes, 338 after ORT, most of them Shape/Gather/Unsqueeze shape
  arithmetic. Both match torch to ~1e-5, but at batch 1 the dynamo graph ran in 4.6 ms against
  6.3 ms (the same at batch 32). So dynamo is kept for the unfused graph, and TorchScript is
  only a fallback for models the dynamo exporter cannot handle.
- fused (tried first, BERT models): the TorchScript exporter on the model with eager
  attention, then onnxruntime's transformer optimizer, which fuses each layer's attention into
  one Attention op (QAttention once quantised) and the embeddings into EmbedLayerNormalization.
  Neither the dynamo graph nor the SDPA attention of transformers 5 matches its patterns (no
  Attention fused). It is faster than the dynamo graph, the more so the longer the input
  (attention weighs more), and as accurate; the measurements are beside EXPORTERS.
- int8: quantize_dynamic with QInt8 weights (ORT's U8S8 kernels: uint8 activations, int8
  weights) per channel. QUInt8 weights (U8U8) were slower (4.0 ms / 418 sentences/s against
  3.0 ms / 683/s; fp32 5.8 ms / 317/s) and no more accurate. Per-tensor weights were as fast
  but lost too much: cosine to fp32 of 0.87-0.97 per sentence against 0.987-0.996 per channel
  (0.965 for a one-word input: a short input averages fewer noisy tokens). Quantising the
  embedding Gathers as well costs almost nothing (cosine 0.9995 alone) and takes the file
  from 90 MB to 23 MB.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from embbench.machine.cache import cache_root
from embbench.machine.files import write_atomically
from embbench.servers.backends.onnx_graphs import (
    INT8_SETTINGS,
    OPSET,
    export_checked,
    export_fused,
    quantize_int8,
)

log = logging.getLogger(__name__)

# Tried in this order; the first that gives a graph onnxruntime runs correctly is used.
# fused against dynamo, int8, one thread, CPU time per row: 0.80x at batch 1 x 24 tokens, 0.93x
# at 8 x 24, 0.88x at 1 x 128, 0.73x at 1 x 256; the mixed payload in the batched server's
# batches (256 tokens): 240 against 206 sentences per CPU second, short sentences 587 against
# 561. Cosine to sentence-transformers, 512 inputs each, one at a time: short min 0.9814, p1
# 0.9862 (dynamo 0.9823, 0.9867); mixed min 0.9863, p1 0.9879 (dynamo 0.9842, 0.9876); fp32
# 1.0000.
EXPORTERS = ("fused", "dynamo", "torchscript")
QUANTIZE_CHOICES = ("none", "int8")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json")


def default_cache_dir() -> Path:
    # EMBBENCH_CACHE_DIR: the exports' own folder, as before there was one cache root.
    env = os.environ.get("EMBBENCH_CACHE_DIR")
    return Path(env) if env else cache_root() / "onnx"


def export_onnx(path: Path, *, quantize: str = "none", cache_dir: str | None = None) -> Path:
    """The cached ONNX file for the model folder `path`, exporting (and quantising) if needed.

    Safe to call from several processes at once: one does the work under a file lock while the
    others wait for it, and a file only appears under its final name once it is complete.
    """
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, not {quantize!r}")
    model_dir = Path(path).resolve()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    fp32 = _fp32_file(model_dir, cache)
    if quantize == "none":
        return fp32
    return _int8_file(fp32, cache)


# ---------------------------------------------------------------------------------------------
# Cache


def _digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _model_fingerprint(model_dir: Path) -> dict[str, Any]:
    files = {}
    for name in _WEIGHT_FILES:
        f = model_dir / name
        if f.is_file():
            st = f.stat()
            files[name] = [st.st_size, st.st_mtime_ns]
    if not any(name in files for name in _WEIGHT_FILES[:2]):
        raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {model_dir}")
    return {"model": str(model_dir), "files": files}


def _fp32_name(model_dir: Path, exporter: str) -> str:
    # Read versions from package metadata, not by importing torch (slow) or onnx.
    from importlib.metadata import version

    key = {
        **_model_fingerprint(model_dir),
        "torch": version("torch"),
        "onnx": version("onnx"),
        "opset": OPSET,
        "exporter": exporter,
    }
    if exporter == "fused":  # the fusions are onnxruntime's: a new version may fuse otherwise
        key["onnxruntime"] = version("onnxruntime")
    return f"{model_dir.name}-{exporter}-fp32-{_digest(key)}.onnx"


def _fp32_file(model_dir: Path, cache: Path) -> Path:
    candidates = [cache / _fp32_name(model_dir, kind) for kind in EXPORTERS]
    found = _cached(candidates)
    if found is not None:
        return found
    with _locked(cache / f"{candidates[0].name}.lock"):
        # Another process may have made it while this one waited for the lock.
        return _cached(candidates) or _export(model_dir, cache, candidates)


def _cached(candidates: list[Path]) -> Path | None:
    """The cached export of the most preferred exporter that did not fail on this model.

    A model an exporter failed on was exported by the next one and cached under that name; the
    failure is recorded (`_failed`) so that the model is not exported again at each start. A
    later exporter's file does not count while an earlier one is untried: a cache made before
    an exporter was added to EXPORTERS gets that exporter's file once.
    """
    for file in candidates:
        if file.is_file():
            return file
        if not _failed(file).is_file():
            return None
    return None


def _failed(target: Path) -> Path:
    return target.with_name(target.name + ".failed")


def _int8_file(fp32: Path, cache: Path) -> Path:
    from importlib.metadata import version

    key = {"fp32": fp32.name, "onnxruntime": version("onnxruntime"), **INT8_SETTINGS}
    target = cache / f"{fp32.stem.replace('-fp32-', '-')}-int8-{_digest(key)}.onnx"
    if target.is_file():
        return target
    with _locked(cache / f"{target.name}.lock"):
        if not target.is_file():
            started = time.perf_counter()
            _write_atomically(target, functools.partial(quantize_int8, fp32))
            log.info("quantised %s in %.1fs", target.name, time.perf_counter() - started)
    return target


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    # flock locks belong to the open file description, so this serialises threads of one
    # process as well as processes. The lock file is left behind: removing it could let two
    # processes lock different inodes.
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Have `write` fill a temporary file beside `target`, then rename it into place.

    The caller holds `target`'s lock, so any temporary of `target` found now was left by a
    process killed mid-write (a SIGKILL skips the `finally` below): it is removed first, or an
    interrupted 87 MB quantisation would stay on disk for ever.
    """
    remove_stale_temporaries(target)
    write_atomically(target, write)  # `.{stem}.*.tmp`, 0644: workers may run as another user


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporaries of `target` (files and folders named `.{stem}.*` beside it)."""
    removed = []
    for stale in target.parent.glob(f".{target.stem}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    if removed:
        log.warning("removed %d temporary file(s) left by an interrupted export", len(removed))
    return removed


# ---------------------------------------------------------------------------------------------
# Export and quantisation


def _export(model_dir: Path, cache: Path, candidates: list[Path]) -> Path:
    import torch
    from transformers import AutoModel

    def load(**kwargs: Any) -> Any:
        return AutoModel.from_pretrained(str(model_dir), local_files_only=True, **kwargs).eval()

    model = load()
    errors = []
    for kind, target in zip(EXPORTERS, candidates, strict=True):
        if _failed(target).is_file():
            errors.append(f"{kind}: failed before ({_failed(target).read_text().strip()})")
            continue
        started = time.perf_counter()
        try:
            if kind == "fused":
                # The optimizer recognises attention written out op by op, not SDPA's.
                write = functools.partial(
                    export_fused, torch, load(attn_implementation="eager"), model_dir
                )
            else:
                write = functools.partial(export_checked, torch, model, kind)
            # The exporters warn about traced shapes and control flow (TracerWarning,
            # UserWarning) in the middle of a run's output; what they warn of is checked
            # instead: each export is compared with torch's output before it is kept.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _write_atomically(target, write)
        except Exception as exc:  # any failure, from torch or from the check: try the next one
            log.warning("ONNX export with the %s exporter failed: %s", kind, exc)
            errors.append(f"{kind}: {exc}")
            _failed(target).write_text(f"{exc}\n")
            continue
        log.info("exported %s in %.1fs", target.name, time.perf_counter() - started)
        return target
    raise RuntimeError(f"could not export {model_dir} to ONNX: " + "; ".join(errors))
