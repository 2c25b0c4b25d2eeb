"""Tokenise, pad, run a backend, pool and normalise: one sentence-transformers model, no magic.

The steps are the ones sentence-transformers' `encode` takes (its modules.json says which
pooling and whether to normalise), done here so that padding and truncation are ours to choose
and so that tokenisation (cheap, per request) is apart from the forward pass (costly, batched).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from embbench.config.options import ServerOptions
from embbench.config.run import ServerConfig
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

    def load_backend(self) -> Backend:
        return load_backend(
            self.options.backend,
            Path(self.model_path),
            threads=self.threads,
            quantize=self.options.quantize,
            cache_dir=self.cache_dir,
        )


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

    def apply(
        self, tokens: Embeddings, mask: npt.NDArray[np.int64], normalize: bool | None = None
    ) -> Embeddings:
        """Pooled embeddings, normalised as the model says unless `normalize` says otherwise."""
        # Few numpy calls, each on the whole batch: at batch 8 their fixed cost, not the
        # arithmetic, is what pooling spends (the batch workers hold the GIL meanwhile).
        if self.mode == "cls":
            pooled = tokens[:, 0, :]
        elif self.mode == "max":
            masked = np.where(mask[:, :, None] > 0, tokens, np.float32(-1e9))
            pooled = masked.max(axis=1)
        else:
            weights = mask.astype(np.float32)
            summed = np.matmul(weights[:, None, :], tokens)[:, 0, :]  # (B,1,L) @ (B,L,D)
            pooled = summed / np.maximum(weights.sum(axis=1, keepdims=True), np.float32(1e-9))
        if self.normalize if normalize is None else normalize:
            norms = np.sqrt(np.einsum("bd,bd->b", pooled, pooled))[:, None]
            pooled = pooled / np.maximum(norms, np.float32(1e-12))
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


def _width(path: Path) -> int | None:
    """Width of the pooled embedding (the transformer's hidden size: no Dense module here)."""
    width = json.loads((path / "config.json").read_text()).get("hidden_size")
    return int(width) if isinstance(width, int) else None


class Encoder:
    """One model ready to embed; safe to call from several threads (the backends are)."""

    def __init__(self, settings: EncoderSettings) -> None:
        from tokenizers import Tokenizer

        path = Path(settings.model_path)
        default_seq, self.max_positions = _model_limits(path)
        self.settings = settings
        self.max_seq_length = min(
            settings.options.max_seq_length or default_seq, self.max_positions
        )
        self.pooling = Pooling.from_model_folder(path)
        base = Tokenizer.from_file(str(path / "tokenizer.json"))
        base.no_padding()
        base.no_truncation()
        self._untruncated = base
        self._truncating = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._truncating.no_padding()
        self._truncating.enable_truncation(self.max_seq_length)
        # TEI's truncation_direction "Left": drop the start, keep the end (and the special tokens).
        self._truncating_left = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._truncating_left.no_padding()
        self._truncating_left.enable_truncation(self.max_seq_length, direction="left")
        self.dimensions = _width(path)
        pad = base.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else pad
        self.backend = settings.load_backend()

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
    ) -> list[TokenIds]:
        """Token ids of each input, as `tokenize`. encode_batch lets go of the GIL while it
        works (encode does not: a 1 MiB input held the event loop for 0.6 s), so a thread pool
        can tokenise while the event loop serves other clients. `inline`: encode one input at a
        time on the calling thread, for short inputs tokenised where they arrive (api.py).

        With truncation off, an input longer than max_seq_length is refused rather than run
        at its full length: a client must not raise the cost of a forward pass above what the
        server was configured for (TEI answers 413 the same way).
        """
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
            twin.backend = self.settings.load_backend()
        return twin

    def set_threads(self, threads: int) -> None:
        """Re-apply the intra-op thread count (after a fork, the child's pool is new)."""
        self.backend.set_threads(threads)

    def encode(self, texts: Sequence[str], truncate: bool | None = None) -> Embeddings:
        """Tokenise and embed on this thread, the cheapest way (the offline ceiling's)."""
        return self.embed(self.tokenize_batch(texts, truncate, inline=True))
