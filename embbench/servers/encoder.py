"""Tokenise, pad, run a backend, pool and normalise: one sentence-transformers model, no magic.

The steps are the ones sentence-transformers' `encode` takes (its modules.json says which
pooling and whether to normalise), done here so that padding and truncation are ours to choose
and so that tokenisation (cheap, per request) is apart from the forward pass (costly, batched).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

Embeddings = npt.NDArray[np.float32]
TokenIds = list[int]


class InputTooLongError(ValueError):
    """An input has more tokens than the model accepts and truncation is off."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(f"input has {tokens} tokens; the model accepts at most {limit}")
        self.tokens = tokens
        self.limit = limit


class Backend(Protocol):
    """Runs the transformer: token ids in, token embeddings (batch, seq, dim) out."""

    name: str

    def forward(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> Embeddings: ...


@dataclass(frozen=True)
class EncoderSettings:
    model_path: str
    backend: str = "torch"
    quantize: str = "none"
    padding: str = "longest"
    truncation: bool = True
    max_seq_length: int | None = None
    threads: int = 1
    cache_dir: str | None = None


@dataclass(frozen=True)
class Pooling:
    mode: str  # "mean", "cls" or "max"
    normalize: bool

    @classmethod
    def from_model_folder(cls, path: Path) -> Pooling:
        modules_file = path / "modules.json"
        if not modules_file.is_file():
            # A plain transformers folder: mean pooling is the common sentence-embedding choice.
            return cls(mode="mean", normalize=False)
        modules = json.loads(modules_file.read_text())
        mode, normalize = "mean", False
        for module in modules:
            kind = module.get("type", "")
            if kind.endswith("Pooling"):
                conf = json.loads((path / module["path"] / "config.json").read_text())
                if conf.get("pooling_mode_cls_token"):
                    mode = "cls"
                elif conf.get("pooling_mode_max_tokens"):
                    mode = "max"
            elif kind.endswith("Normalize"):
                normalize = True
        return cls(mode=mode, normalize=normalize)

    def apply(self, tokens: Embeddings, mask: npt.NDArray[np.int64]) -> Embeddings:
        if self.mode == "cls":
            pooled = tokens[:, 0, :]
        elif self.mode == "max":
            masked = np.where(mask[:, :, None] > 0, tokens, np.float32(-1e9))
            pooled = masked.max(axis=1)
        else:
            weights = mask[:, :, None].astype(np.float32)
            summed = (tokens * weights).sum(axis=1)
            pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
        if self.normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.clip(norms, 1e-12, None)
        return np.ascontiguousarray(pooled, dtype=np.float32)


def _model_limits(path: Path) -> tuple[int, int]:
    """(max_seq_length sentence-transformers uses, max positions the model accepts)."""
    config = json.loads((path / "config.json").read_text())
    positions = int(config.get("max_position_embeddings", 512))
    st_config = path / "sentence_bert_config.json"
    if st_config.is_file():
        seq = int(json.loads(st_config.read_text()).get("max_seq_length", positions))
    else:
        seq = positions
    return min(seq, positions), positions


class Encoder:
    """One model ready to embed; safe to call from several threads (the backends are)."""

    def __init__(self, settings: EncoderSettings) -> None:
        from tokenizers import Tokenizer

        path = Path(settings.model_path)
        default_seq, self.max_positions = _model_limits(path)
        self.settings = settings
        self.max_seq_length = min(settings.max_seq_length or default_seq, self.max_positions)
        self.pooling = Pooling.from_model_folder(path)
        base = Tokenizer.from_file(str(path / "tokenizer.json"))
        base.no_padding()
        base.no_truncation()
        self._untruncated = base
        self._truncating = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._truncating.no_padding()
        self._truncating.enable_truncation(self.max_seq_length)
        pad = base.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else pad
        self.backend = load_backend(settings, path)

    def tokenize(self, text: str, truncate: bool | None = None) -> TokenIds:
        """Token ids of one input; raises InputTooLongError when it cannot be embedded as is."""
        truncate = self.settings.truncation if truncate is None else truncate
        if truncate:
            return list(self._truncating.encode(text).ids)
        ids = list(self._untruncated.encode(text).ids)
        if len(ids) > self.max_positions:
            raise InputTooLongError(len(ids), self.max_positions)
        return ids

    def pad(self, batch: Sequence[TokenIds]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        longest = max(len(ids) for ids in batch)
        width = (
            max(longest, self.max_seq_length) if self.settings.padding == "max_length" else longest
        )
        input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return input_ids, mask

    def embed(self, batch: Sequence[TokenIds]) -> Embeddings:
        """Embeddings (len(batch), dim) of already tokenised inputs."""
        input_ids, mask = self.pad(batch)
        tokens = self.backend.forward(input_ids, mask)
        return self.pooling.apply(tokens, mask)

    def replica(self) -> Encoder:
        """An encoder for another stream of forward passes: the same tokenisers and pooling, and
        its own onnxruntime session (a torch module is shared: its threads are process-wide).

        Two single-threaded sessions side by side outran one two-threaded session on 2 cores
        (onnx int8, short inputs, each at its best batch size): offline 754.7 against 637.8
        sentences/s, and as batched servers at c=100 632.0 against 458.4 rps (run
        20261125-011251; README, "Peers").
        """
        twin = copy.copy(self)
        if self.settings.backend != "torch":
            twin.backend = load_backend(self.settings, Path(self.settings.model_path))
        return twin

    def set_threads(self, threads: int) -> None:
        """Re-apply the intra-op thread count (after a fork, the child's pool is new)."""
        setter = getattr(self.backend, "set_threads", None)
        if setter is not None:
            setter(threads)

    def encode(self, texts: Sequence[str], truncate: bool | None = None) -> Embeddings:
        return self.embed([self.tokenize(text, truncate) for text in texts])


def load_backend(settings: EncoderSettings, path: Path) -> Backend:
    if settings.backend == "onnx":
        from embbench.servers.backend_onnx import OnnxBackend

        return OnnxBackend(
            path, threads=settings.threads, quantize=settings.quantize, cache_dir=settings.cache_dir
        )
    from embbench.servers.backend_torch import TorchBackend

    return TorchBackend(path, threads=settings.threads)
