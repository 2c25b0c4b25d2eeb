"""Tokenise, pad, run a backend, pool and normalise: one sentence-transformers model, no magic.

The steps are the ones sentence-transformers' `encode` takes (the default prompt, the pooling,
Dense layers and normalisation, as the model's ModelSpec says: config/model.py), done here so
that padding and truncation are ours to choose and so that tokenisation (cheap, per request) is
apart from the forward pass (costly, batched).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from embbench.config.model import DenseWeights, ModelSpec, read_spec
from embbench.config.options import ServerOptions
from embbench.config.wire import ServerConfig
from embbench.servers.backends import Backend, Embeddings, load_backend

if TYPE_CHECKING:
    from tokenizers import Encoding

__all__ = ["Embeddings", "Encoder", "EncoderSettings", "InputTooLongError", "Side", "TokenIds"]

TokenIds = list[int]
Side = Literal["right", "left"]  # which end of a too long input truncation cuts


class InputTooLongError(ValueError):
    """An input has more tokens than the server embeds (max_seq_length) and truncation is off."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(f"input has {tokens} tokens; this server embeds at most {limit}")
        self.tokens = tokens
        self.limit = limit


@dataclass(frozen=True)
class EncoderSettings:
    """What an encoder is made of: the server options as declared (options.py, the one place an
    option lives), the model folder they resolved to and the thread count the variant chose."""

    model_path: str
    options: ServerOptions = field(default_factory=ServerOptions)
    threads: int = 1
    cache_dir: str | None = None

    @classmethod
    def of(cls, config: ServerConfig) -> EncoderSettings:
        return cls(model_path=config.model_path, options=config.options, threads=config.threads)

    def spec(self) -> ModelSpec:
        return read_spec(Path(self.model_path))

    def load_backend(self, transformer_path: str | None = None) -> Backend:
        """The backend of the model's transformer (its own folder in an older layout)."""
        return load_backend(
            self.options.backend,
            Path(transformer_path or self.spec().transformer_path),
            threads=self.threads,
            quantize=self.options.quantize,
            cache_dir=self.cache_dir,
        )


@dataclass(frozen=True)
class Pooling:
    """Token embeddings to one vector: the pooling modes (concatenated), any Dense layers, then
    the normalisation, as sentence-transformers' modules after the Transformer."""

    modes: tuple[str, ...]
    normalize: bool
    dense: tuple[DenseWeights, ...] = ()

    @property
    def mode(self) -> str:
        return "+".join(self.modes)

    @classmethod
    def of(cls, spec: ModelSpec) -> Pooling:
        return cls(spec.pooling, spec.normalize, tuple(layer.weights() for layer in spec.dense))

    @classmethod
    def from_model_folder(cls, path: Path) -> Pooling:
        return cls.of(read_spec(path))

    def apply(
        self, tokens: Embeddings, mask: npt.NDArray[np.int64], normalize: bool | None = None
    ) -> Embeddings:
        """Pooled embeddings, normalised as the model says unless `normalize` says otherwise."""
        # Few numpy calls, each on the whole batch: at batch 8 their fixed cost, not the
        # arithmetic, is what pooling spends (the batch workers hold the GIL meanwhile).
        # Padding is on the right (pad() below), so a row's tokens are its first len(row).
        parts = [self._pool(mode, tokens, mask) for mode in self.modes]
        pooled = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        for layer in self.dense:
            pooled = layer.apply(pooled)
        if self.normalize if normalize is None else normalize:
            norms = np.sqrt(np.einsum("bd,bd->b", pooled, pooled))[:, None]
            pooled = pooled / np.maximum(norms, np.float32(1e-12))
        return np.ascontiguousarray(pooled, dtype=np.float32)

    @staticmethod
    def _pool(mode: str, tokens: Embeddings, mask: npt.NDArray[np.int64]) -> Embeddings:
        if mode == "cls":
            return tokens[:, 0, :]
        if mode == "max":
            masked = np.where(mask[:, :, None] > 0, tokens, np.float32(-np.inf))
            result: Embeddings = masked.max(axis=1)
            return result
        if mode == "lasttoken":
            last = np.maximum(mask.sum(axis=1) - 1, 0)
            picked: Embeddings = tokens[np.arange(len(tokens)), last, :]
            return picked
        weights = mask.astype(np.float32)
        if mode == "weightedmean":
            weights = weights * np.arange(1, mask.shape[1] + 1, dtype=np.float32)[None, :]
        summed = np.matmul(weights[:, None, :], tokens)[:, 0, :]  # (B,1,L) @ (B,L,D)
        count = np.maximum(weights.sum(axis=1, keepdims=True), np.float32(1e-9))
        pooled: Embeddings = summed / (np.sqrt(count) if mode == "mean_sqrt_len_tokens" else count)
        return pooled


class Encoder:
    """One model ready to embed; safe to call from several threads (the backends are)."""

    def __init__(self, settings: EncoderSettings) -> None:
        from tokenizers import Tokenizer

        self.spec = spec = settings.spec()
        tokenizer_file = str(Path(spec.transformer_path) / "tokenizer.json")
        self.max_positions = spec.max_positions
        self.settings = settings
        self.max_seq_length = min(
            settings.options.max_seq_length or spec.max_seq_length, self.max_positions
        )
        self.pooling = Pooling.of(spec)
        # Put before every input that names no prompt, as sentence-transformers' encode does.
        self.prompt = spec.default_prompt
        base = Tokenizer.from_file(tokenizer_file)
        base.no_padding()
        base.no_truncation()
        self._untruncated = base
        self._truncating = Tokenizer.from_file(tokenizer_file)
        self._truncating.no_padding()
        self._truncating.enable_truncation(self.max_seq_length)
        # TEI's truncation_direction "Left": drop the start, keep the end (and the special tokens).
        self._truncating_left = Tokenizer.from_file(tokenizer_file)
        self._truncating_left.no_padding()
        self._truncating_left.enable_truncation(self.max_seq_length, direction="left")
        self.dimensions = spec.dimensions
        self.pad_id = spec.pad_id
        self.backend = settings.load_backend(spec.transformer_path)

    def tokenize(self, text: str, truncate: bool | None = None, side: Side = "right") -> TokenIds:
        """Token ids of one input; raises InputTooLongError when it cannot be embedded as is."""
        return self.tokenize_batch([text], truncate, side)[0]

    def tokenize_batch(
        self,
        texts: Sequence[str],
        truncate: bool | None = None,
        side: Side = "right",
        *,
        inline: bool = False,
        prompted: bool = False,
    ) -> list[TokenIds]:
        """Token ids of each input, as `tokenize`. encode_batch lets go of the GIL while it
        works (encode does not: a 1 MiB input held the event loop for 0.6 s), so a thread pool
        can tokenise while the event loop serves other clients. `inline`: encode one input at a
        time on the calling thread, for short inputs tokenised where they arrive (api.py).

        With truncation off, an input longer than max_seq_length is refused rather than run
        at its full length: a client must not raise the cost of a forward pass above what the
        server was configured for (TEI answers 413 the same way).

        The model's default prompt is put before each input unless `prompted` (the inputs carry
        a prompt the client named: TEI's prompt_name).
        """
        if self.prompt and not prompted:
            texts = [self.prompt + text for text in texts]
        truncate = self.settings.options.truncation if truncate is None else truncate
        if not truncate:
            tokenizer = self._untruncated
        else:
            tokenizer = self._truncating_left if side == "left" else self._truncating
        if inline:
            # encode_batch_fast skips the offsets (13 % less CPU than encode on short
            # sentences, same ids); on a list of one it stays on this thread.
            fast = getattr(tokenizer, "encode_batch_fast", None)  # tokenizers >= 0.20
            if fast is not None:
                encodings = [fast([text])[0] for text in texts]
            else:
                encodings = [tokenizer.encode(text) for text in texts]
        else:
            encodings = tokenizer.encode_batch(list(texts))
        batch = [list(e.ids) for e in encodings]
        if not truncate:
            for ids in batch:
                if len(ids) > self.max_seq_length:
                    raise InputTooLongError(len(ids), self.max_seq_length)
        return batch

    def encoding(self, text: str, add_special_tokens: bool = True) -> Encoding:
        """The tokeniser's whole answer for one input, untruncated (ids, tokens, offsets)."""
        return self._untruncated.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, batch: Sequence[TokenIds], skip_special_tokens: bool = True) -> list[str]:
        return list(self._untruncated.decode_batch(batch, skip_special_tokens=skip_special_tokens))

    def pad(self, batch: Sequence[TokenIds]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        longest = max(len(ids) for ids in batch)
        width = (
            max(longest, self.max_seq_length)
            if self.settings.options.padding == "max_length"
            else longest
        )
        input_ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        return input_ids, mask

    def embed(self, batch: Sequence[TokenIds], normalize: bool | None = None) -> Embeddings:
        """Embeddings (len(batch), dim) of already tokenised inputs; `normalize` None: the
        model's own choice (its Normalize module), True/False: TEI's `normalize` field."""
        input_ids, mask = self.pad(batch)
        tokens = self.backend.forward(input_ids, mask)
        return self.pooling.apply(tokens, mask, normalize)

    def replica(self) -> Encoder:
        """An encoder for another stream of forward passes: the same tokenisers and pooling, and
        its own onnxruntime session (a torch module is shared: its threads are process-wide).

        Single-threaded sessions side by side can outrun one multi-threaded session: each
        stays on its core and runs its best batch size (measured in the README, "Peers").
        """
        twin = copy.copy(self)
        if self.settings.options.backend != "torch":
            twin.backend = self.settings.load_backend(self.spec.transformer_path)
        return twin

    def set_threads(self, threads: int) -> None:
        """Re-apply the intra-op thread count (after a fork, the child's pool is new)."""
        self.backend.set_threads(threads)

    def encode(self, texts: Sequence[str], truncate: bool | None = None) -> Embeddings:
        """Tokenise and embed on this thread, the cheapest way (the offline ceiling's)."""
        return self.embed(self.tokenize_batch(texts, truncate, inline=True))
