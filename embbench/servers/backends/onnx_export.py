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
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from embbench.machine.cache import cache_root
from embbench.machine.files import write_atomically

log = logging.getLogger(__name__)

OPSET = 18
# Tried in this order; the first that gives a graph onnxruntime runs correctly is used.
# fused against dynamo, int8, one thread, CPU time per row: 0.80x at batch 1 x 24 tokens, 0.93x
# at 8 x 24, 0.88x at 1 x 128, 0.73x at 1 x 256; the mixed payload in the batched server's
# batches (256 tokens): 240 against 206 sentences per CPU second, short sentences 587 against
# 561. Cosine to sentence-transformers, 512 inputs each, one at a time: short min 0.9814, p1
# 0.9862 (dynamo 0.9823, 0.9867); mixed min 0.9863, p1 0.9879 (dynamo 0.9842, 0.9876); fp32
# 1.0000.
EXPORTERS = ("fused", "dynamo", "torchscript")
# The architectures onnxruntime's transformer optimizer knows as "bert" (config.json model_type).
FUSED_MODEL_TYPES = ("bert",)
QUANTIZE_CHOICES = ("none", "int8")
# What `quantize="int8"` means; part of the cache key, so changing it re-quantises.
INT8_SETTINGS: dict[str, Any] = {
    "method": "quantize_dynamic",
    "weight_type": "QInt8",
    "per_channel": True,
    # This box has AVX-512 VNNI, where U8S8 products accumulate in int32. On AVX2 without VNNI
    # the U8S8 kernel adds pairs of products in int16 and can saturate; ORT's advice there is
    # reduce_range=True (7-bit weights). Not needed here, and it cost accuracy in a trial.
    "reduce_range": False,
    "pre_process": True,
}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "config.json")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "last_hidden_state"


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
            _write_atomically(target, functools.partial(_quantize, fp32))
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
                    _export_fused, torch, load(attn_implementation="eager"), model_dir
                )
            else:
                write = functools.partial(_export_checked, torch, model, kind)
            _write_atomically(target, write)
        except Exception as exc:  # any failure, from torch or from the check: try the next one
            log.warning("ONNX export with the %s exporter failed: %s", kind, exc)
            errors.append(f"{kind}: {exc}")
            _failed(target).write_text(f"{exc}\n")
            continue
        log.info("exported %s in %.1fs", target.name, time.perf_counter() - started)
        return target
    raise RuntimeError(f"could not export {model_dir} to ONNX: " + "; ".join(errors))


def _export_checked(torch: Any, model: Any, kind: str, file: Path) -> None:
    import inspect

    names = [n for n in _INPUTS if n in inspect.signature(model.forward).parameters]
    if names[:2] != ["input_ids", "attention_mask"]:
        raise ValueError(f"the model does not take input_ids and attention_mask: {names}")

    # A wrapper called with keywords (transformers 5's BertModel.forward takes more positional
    # parameters than before, so the TorchScript exporter's positional call fails) that returns
    # only the one output used (the pooler head would otherwise run and be exported for nothing).
    if "token_type_ids" in names:

        class Wrapper(torch.nn.Module):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state

    else:

        class Wrapper(torch.nn.Module):  # type: ignore[misc,no-redef]
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.model(
                    input_ids=input_ids, attention_mask=attention_mask
                ).last_hidden_state

    # Batch 2, sequence 8: sizes 0 and 1 are specialised by torch.export, and batch and sequence
    # must differ so the two axes are not unified.
    ids = torch.full((2, 8), _token_ids(model)[0], dtype=torch.int64)
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    example["token_type_ids"] = torch.zeros_like(ids)
    args = tuple(example[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    wrapper = Wrapper().eval()
    if kind == "dynamo":
        with warnings.catch_warnings():
            # Harmless: inputs share the "batch"/"sequence" names, and torch's own pytree use.
            warnings.filterwarnings("ignore", "# The axis name", UserWarning)
            warnings.filterwarnings("ignore", ".*LeafSpec", FutureWarning)
            torch.onnx.export(
                wrapper,
                args,
                str(file),
                input_names=names,
                output_names=[OUTPUT],
                dynamic_shapes=tuple(axes[n] for n in names),
                opset_version=OPSET,
                dynamo=True,
                external_data=False,  # one self-contained file; fine below ONNX's 2 GB limit
                verbose=False,
            )
    else:
        torch.onnx.export(
            wrapper,
            args,
            str(file),
            input_names=names,
            output_names=[OUTPUT],
            dynamic_axes={**axes, OUTPUT: {0: "batch", 1: "sequence"}},
            opset_version=OPSET,
            dynamo=False,
        )
    _check_against_torch(torch, model, names, file)


def _export_fused(torch: Any, model: Any, model_dir: Path, file: Path) -> None:
    """TorchScript export, then onnxruntime's transformer fusions (module docstring); refused
    (so the next exporter is tried) unless every layer's attention was fused."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") not in FUSED_MODEL_TYPES:
        raise ValueError(f"no fusions for model_type {config.get('model_type')!r}")
    plain = file.with_name(file.name + ".plain")  # a temporary of the target's: cleaned alike
    try:
        _export_checked(torch, model, "torchscript", plain)
        fused = optimizer.optimize_model(
            str(plain),
            model_type="bert",
            num_heads=int(config["num_attention_heads"]),
            hidden_size=int(config["hidden_size"]),
            optimization_options=FusionOptions("bert"),
            opt_level=0,  # fusions only; the session applies onnxruntime's own at load time
        )
    finally:
        plain.unlink(missing_ok=True)
    layers = int(config.get("num_hidden_layers", 0))
    attention = fused.get_fused_operator_statistics().get("Attention", 0)
    if layers < 1 or attention != layers:
        raise ValueError(f"{attention} of {layers} attention layers fused")
    fused.save_model_to_file(str(file))
    names = [i.name for i in fused.model.graph.input]
    _check_against_torch(torch, model, names, file)


def _check_against_torch(torch: Any, model: Any, names: list[str], file: Path) -> None:
    """Run the exported file at shapes other than the example's, with padding, against torch.

    Catches graphs that load but had a dimension frozen at export time.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    low, high = _token_ids(model)
    for batch, seq in ((1, 5), (3, 13)):
        ids = rng.integers(low, high, size=(batch, seq), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[-1, seq // 2 :] = 0
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feed = {n: feed[n] for n in names}
        got = session.run([OUTPUT], feed)[0]
        with torch.inference_mode():
            want = model(**{n: torch.from_numpy(v) for n, v in feed.items()}).last_hidden_state
        # Padded positions are not compared: pooling never reads them, and a fused attention
        # op may leave other values there than torch does.
        kept = mask.astype(bool)
        err = float(np.abs(got[kept] - want.numpy()[kept]).max()) if got.shape == want.shape else 0
        if got.shape != tuple(want.shape) or not err < 1e-3:
            raise ValueError(f"exported graph differs from torch at {(batch, seq)}: max {err}")


def _token_ids(model: Any) -> tuple[int, int]:
    """A range of ordinary token ids for the examples: 1000-2000, or the upper half of a small
    vocabulary (a tiny test model's)."""
    vocab = int(getattr(model.config, "vocab_size", 30522) or 30522)
    return (1000, 2000) if vocab >= 2000 else (vocab // 2, vocab)


def _quantize(fp32: Path, file: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = fp32
    # Named after `file` (itself a temporary of the target), so a kill leaves nothing that
    # remove_stale_temporaries does not find.
    with tempfile.TemporaryDirectory(dir=file.parent, prefix=f"{file.name}.pre-") as tmp:
        if INT8_SETTINGS["pre_process"]:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = Path(tmp) / "pre.onnx"
            try:
                # Symbolic shape inference gives up on the dynamo graph ("Incomplete symbolic
                # shape inference"); ONNX shape inference plus ORT's basic optimisations
                # (constant folding) is what is left, and it is harmless here (36 of 36 weight
                # MatMuls are quantised with or without it) but may help other graphs.
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
                source = pre
            except Exception as exc:
                log.warning("quant_pre_process failed (%s); quantising the export as is", exc)
        quantize_dynamic(
            str(source),
            str(file),
            weight_type=getattr(QuantType, INT8_SETTINGS["weight_type"]),
            per_channel=INT8_SETTINGS["per_channel"],
            reduce_range=INT8_SETTINGS["reduce_range"],
            # ONNX shape inference gives no types to the outputs of onnxruntime's fused ops
            # (Attention, SkipLayerNormalization); they are float, as every activation here.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
