"""The transformer in PyTorch eager mode, CPU, with an explicit number of intra-op threads."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import numpy.typing as npt

from embbench.servers.backends import Embeddings


class TorchBackend:
    name = "torch"

    def __init__(
        self, path: Path, *, threads: int, quantize: str = "none", cache_dir: str | None = None
    ) -> None:
        import torch
        from transformers import AutoModel

        if quantize != "none":
            raise ValueError("the torch backend does not quantise; use --backend onnx")
        # Set before the first op creates the pool; inter-op parallelism only adds threads that
        # compete with the intra-op ones on a small machine.
        torch.set_num_threads(threads)
        # Raises once set in this process (a reload): the first value stays.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        self._torch = torch
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.model.eval()
        # DistilBERT and MPNet take no token_type_ids.
        import inspect

        self._takes_token_types = (
            "token_type_ids" in inspect.signature(self.model.forward).parameters
        )

    def set_threads(self, threads: int) -> None:
        self._torch.set_num_threads(threads)

    def forward(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> Embeddings:
        torch = self._torch
        with torch.inference_mode():
            ids = torch.from_numpy(input_ids)
            extra = {"token_type_ids": torch.zeros_like(ids)} if self._takes_token_types else {}
            out = self.model(
                input_ids=ids, attention_mask=torch.from_numpy(attention_mask), **extra
            )
        result: Embeddings = out.last_hidden_state.numpy().astype(np.float32, copy=False)
        return result
