"""fastembed (Qdrant's ONNX library) as the engine behind our own server, over our own export.

fastembed downloads its models from a hub; here it is pointed at embbench's cached ONNX export
instead (onnx_export.py: the fused fp32 graph, or its dynamic int8 quantisation), registered as
a custom model (`TextEmbedding.add_custom_model`) and loaded from a local folder
(`specific_model_path`, `local_files_only`): the folder holds links to that export and to the
model folder's tokenizer files, so nothing is fetched and fastembed runs the very graph the
onnx backend runs. What differs is fastembed's engine: its onnxruntime session, made by
fastembed with its own settings (intra- and inter-op threads both set to `threads`, spinning and
the memory arena at onnxruntime's defaults), where the onnx backend turns spinning and the
arena off (onnx_runtime.py). Tokenising, batching and pooling stay the server's, as for every
backend, so a run compares engines and nothing else.

fastembed's `parallel` (data-parallel worker processes inside `embed`) is for offline encoding
of a large list; a server is not one call of `embed`, and its processes are the variant's
`workers` and `streams`. So `parallel` is None here and recorded as such (`facts`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embbench.servers.backends import Embeddings
from embbench.servers.backends.onnx_export import _digest, export_onnx
from embbench.servers.backends.onnx_graphs import OUTPUT

# The model folder's files fastembed's loader reads (config.json is optional for it).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "config.json")  # fmt: skip
MODEL_FILE = "model.onnx"
_registered: set[str] = set()
_lock = threading.Lock()


def model_name_for(export: Path) -> str:
    """The name fastembed knows our export by: one per file, so an int8 and an fp32 export (or
    two models) never share a registration."""
    return f"embbench/{export.stem}-{_digest({'file': export.name})[:8]}"


def local_folder(export: Path, model_dir: Path) -> Path:
    """A folder fastembed can load as a model: links to `export` and the tokenizer files.

    Made beside the export, once; links (not copies) so it costs nothing and follows the cache.
    """
    folder = export.parent / f"{export.stem}.fastembed"
    folder.mkdir(exist_ok=True)
    targets = {MODEL_FILE: export, **{name: model_dir / name for name in TOKENIZER_FILES}}
    for name, target in targets.items():
        link = folder / name
        if not target.is_file() or (link.is_symlink() and link.resolve() == target.resolve()):
            continue
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target.resolve())
        os.replace(tmp, link)  # another process may be making the same link: last one wins
    return folder


def register(name: str, dimensions: int, pooling: str, normalize: bool) -> None:
    """Make `name` known to fastembed (once per process: its registry refuses a second add)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    with _lock:
        if name in _registered:
            return
        kind = {"mean": PoolingType.MEAN, "cls": PoolingType.CLS}.get(pooling)
        TextEmbedding.add_custom_model(
            model=name,
            pooling=kind or PoolingType.DISABLED,
            normalization=normalize,
            # Never fetched: the folder is given as specific_model_path.
            sources=ModelSource(hf=name),
            dim=dimensions,
            model_file=MODEL_FILE,
            description="embbench's own ONNX export, loaded locally",
            output_name=OUTPUT,
        )
        _registered.add(name)


class FastembedBackend:
    name = "fastembed"

    def __init__(
        self, path: Path, *, threads: int, quantize: str = "none", cache_dir: str | None = None
    ) -> None:
        from fastembed import TextEmbedding

        from embbench.config.model import read_spec

        self.model_file = export_onnx(path, quantize=quantize, cache_dir=cache_dir)
        self.quantize = quantize
        self.threads = threads
        # fastembed's own pooling is used only by `embed_texts` (the check of the local model
        # against sentence-transformers); served answers are pooled by the server. A
        # transformer in a subfolder (an older layout) is no model folder: no pooling then.
        try:
            spec = read_spec(Path(path))
            pooling, normalize, dimensions = "+".join(spec.pooling), spec.normalize, spec.dimensions
        except Exception:
            pooling, normalize, dimensions = "", False, 0
        self.model_name = model_name_for(self.model_file)
        register(self.model_name, dimensions, pooling, normalize)
        self.embedding = TextEmbedding(
            self.model_name,
            threads=threads,
            providers=["CPUExecutionProvider"],
            specific_model_path=str(local_folder(self.model_file, Path(path))),
            local_files_only=True,
        )
        # fastembed's session (onnxruntime.InferenceSession), as fastembed made it.
        inner: Any = self.embedding.model  # OnnxTextEmbedding; typed as its abstract base
        self._session: Any = inner.model
        names = {each.name for each in self._session.get_inputs()}
        self._takes_token_types = "token_type_ids" in names

    def set_threads(self, threads: int) -> None:
        """fastembed's session has its thread pool fixed when made; nothing to re-apply."""

    def facts(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {
            "engine": "fastembed",
            "engine_version": version("fastembed"),
            "engine_threads": self.threads,
            "parallel": None,  # the module docstring says why
            "model_file": str(self.model_file),
        }

    def embed_texts(self, texts: list[str]) -> Embeddings:
        """fastembed end to end (its tokeniser, session and pooling), as a user would call it."""
        return np.asarray(list(self.embedding.embed(texts)), dtype=np.float32)

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
