"""The transformer as an ONNX graph run by onnxruntime on CPU, fp32 or dynamically quantised int8.

The file comes from onnx_export (made once, cached); this module only runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embbench.servers.backends import Embeddings
from embbench.servers.backends.onnx_export import export_onnx
from embbench.servers.backends.onnx_graphs import OUTPUT


class OnnxBackend:
    name = "onnx"

    def __init__(
        self, path: Path, *, threads: int, quantize: str = "none", cache_dir: str | None = None
    ) -> None:
        import onnxruntime as ort

        self.model_file = export_onnx(path, quantize=quantize, cache_dir=cache_dir)
        self.quantize = quantize
        # InferenceSession.run is thread-safe (onnxruntime documents concurrent Run calls on one
        # session as supported), so one session serves every request thread of a worker.
        self._session = ort.InferenceSession(
            str(self.model_file), session_options(ort, threads), providers=["CPUExecutionProvider"]
        )
        names = {i.name for i in self._session.get_inputs()}
        self._takes_token_types = "token_type_ids" in names

    def set_threads(self, threads: int) -> None:
        """A session's thread pool is fixed when it is made; nothing to re-apply."""

    def forward(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> Embeddings:
        ids = np.ascontiguousarray(input_ids, dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ascontiguousarray(attention_mask, np.int64)}
        if self._takes_token_types:
            feed["token_type_ids"] = np.zeros_like(ids)
        out = self._session.run([OUTPUT], feed)[0]
        result: Embeddings = np.asarray(out, dtype=np.float32)
        return result


def session_options(ort: Any, threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning off. By default, idle intra-op threads busy-wait for the next op. That buys
    # latency on an idle machine and costs it when the cores are shared. With threads=2 and
    # 24-token inputs:
    #   one caller, nothing else running: spinning is faster at batch 1 (fp32 5.5 vs 6.4 ms,
    #     int8 3.2 vs 3.8 ms) and about even at batch 32;
    #   two request threads doing Python work (the HTTP/tokeniser side) between calls: spinning
    #     is slower (batch 1: fp32 158 vs 193/s, int8 235 vs 319/s; batch 32: int8 501 vs
    #     592/s, fp32 about even) and uses more CPU per sentence.
    # A server is the second case, so the spinning threads would take CPU from the event loop.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Memory arena off. The arena keeps every block it ever allocated, so the process stays at
    # the size of its largest request: shared-mutex int8 went from 158 to 1402 MB RSS after ten
    # requests of 64 x 254 tokens, and stayed there (8.75 GB once with 64 x 490 tokens in one
    # pass); without it, 157 to 242 MB. It cost little here: 937 against 943 sentences/s at
    # batch 1, 507 against 525/s at batch 32 (int8, threads=2, medians of 6 x 1 s alternated).
    # Large passes pay for it: without the arena a tensor of tens of MB gets fresh pages every
    # pass (256-token rows at batch 32: 53 ms of CPU per row, 22 of them in page faults; 29 ms
    # with the arena). The batched server stops a batch at `batch_tokens` (batching.py), below
    # that size; there, on the mixed payload, the arena bought 3 % (252 against 244 sentences
    # per CPU second, one thread), not worth a process that keeps its largest request's size.
    opts.enable_cpu_mem_arena = False
    return opts
