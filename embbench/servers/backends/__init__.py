"""What runs the transformer (token ids in, token embeddings out), chosen by name.

The encoder imports this package and the backends import only its types, never the encoder: the
dependency goes one way. As uvicorn's HTTP_PROTOCOLS, the registry maps a name to an import
string, so that a server on onnxruntime never imports torch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Embeddings = npt.NDArray[np.float32]


class Backend(Protocol):
    """Runs the transformer: token ids in, token embeddings (batch, seq, dim) out."""

    name: str

    def forward(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> Embeddings: ...

    def set_threads(self, threads: int) -> None: ...


class BackendClass(Protocol):
    def __call__(
        self, path: Path, *, threads: int, quantize: str = "none", cache_dir: str | None = None
    ) -> Backend: ...


BACKENDS: dict[str, str] = {
    "torch": "embbench.servers.backends.torch:TorchBackend",
    "onnx": "embbench.servers.backends.onnx_runtime:OnnxBackend",
    "openvino": "embbench.servers.backends.openvino:OpenVinoBackend",
    "fastembed": "embbench.servers.backends.fastembed:FastembedBackend",
}


def backend_facts(backend: Backend) -> dict[str, Any]:
    """What a backend says it runs (OpenVINO's compiled precision and threads), for /info and
    the ceiling; {} for a backend that has nothing to add to the server's own options."""
    facts = getattr(backend, "facts", None)
    return dict(facts()) if callable(facts) else {}


def load_backend(
    name: str, path: Path, *, threads: int, quantize: str = "none", cache_dir: str | None = None
) -> Backend:
    """A backend of the model folder `path`, by name (a key of BACKENDS)."""
    try:
        module_name, _, attr = BACKENDS[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}") from None
    factory: BackendClass = getattr(importlib.import_module(module_name), attr)
    return factory(path, threads=threads, quantize=quantize, cache_dir=cache_dir)
