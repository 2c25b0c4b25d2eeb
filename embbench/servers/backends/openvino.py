"""The transformer run by OpenVINO on CPU: fp32, bf16 or NNCF's static int8 (openvino_model.py).

The precision is always named: on a CPU with native bf16 (AVX-512 BF16, AMX) OpenVINO's default
inference precision is bf16, so a model meant as fp32 would silently run in bf16. Here fp32 and
int8 are compiled with INFERENCE_PRECISION_HINT f32 (int8's unquantised ops, softmax and layer
norms, stay in f32) and bf16 only when asked for. What the compiled model reports is kept
(`facts`, shown by /info), not what was asked.

Threads: INFERENCE_NUM_THREADS from the server's `threads`, one stream per compiled model (a
server's `streams` are replicas, each its own compiled model, as for onnxruntime), and no CPU
pinning: the cores are shared with the HTTP side and the other replicas, as onnxruntime's
spinning is turned off for the same reason (onnx_runtime.py).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embbench.servers.backends import Embeddings
from embbench.servers.backends.openvino_model import openvino_model

# quantize -> the inference precision asked of the CPU plugin.
PRECISION = {"none": "f32", "int8": "f32", "bf16": "bf16"}


def compile_config(threads: int, quantize: str) -> dict[str, Any]:
    """The CPU plugin's properties, by their string names (pure: unit-tested)."""
    if quantize not in PRECISION:
        raise ValueError(f"quantize must be one of {sorted(PRECISION)}, not {quantize!r}")
    return {
        "INFERENCE_PRECISION_HINT": PRECISION[quantize],
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "ENABLE_CPU_PINNING": False,
    }


class OpenVinoBackend:
    name = "openvino"

    def __init__(
        self, path: Path, *, threads: int, quantize: str = "none", cache_dir: str | None = None
    ) -> None:
        import openvino as ov

        self.model_file = openvino_model(path, quantize=quantize, cache_dir=cache_dir)
        self.quantize = quantize
        core = ov.Core()
        model = core.read_model(str(self.model_file))
        self._names = {each.get_any_name() for each in model.inputs}
        self._compiled = core.compile_model(model, "CPU", compile_config(threads, quantize))
        self._version = ov.__version__
        # An infer request is not thread-safe; the compiled model is. One request per calling
        # thread (the request threads of a worker, or the batched server's batch worker).
        self._local = threading.local()

    def set_threads(self, threads: int) -> None:
        """The compiled model's thread count is fixed when it is compiled; nothing to re-apply."""

    def facts(self) -> dict[str, Any]:
        """What the compiled model says it runs (not what was asked), for /info and run.json."""
        compiled = self._compiled
        precision = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type
        return {
            "engine": "openvino",
            "engine_version": self._version,
            # "f32" / "bf16", the names the hint is given in (compile_config)
            "inference_precision": getattr(precision, "get_type_name", precision.__str__)(),
            "engine_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "engine_streams": int(compiled.get_property("NUM_STREAMS")),
            "model_file": str(self.model_file),
        }

    def forward(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> Embeddings:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ascontiguousarray(attention_mask, np.int64)}
        if "token_type_ids" in self._names:
            feed["token_type_ids"] = np.zeros_like(ids)
        request.infer(feed)
        # The output tensor is the request's own buffer, overwritten by its next call: copied.
        result: Embeddings = np.array(request.get_output_tensor(0).data, dtype=np.float32)
        return result
