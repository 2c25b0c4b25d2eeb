"""How a model folder is read into a ModelSpec (config/model.py), and its fingerprint.

What sentence-transformers 6.3 does, and so what is mirrored here:
- modules.json lists the modules; without it a plain transformers folder gets mean pooling.
- Pooling's config is `{"pooling_mode": "cls"}` (6.x) or `pooling_mode_*_token` booleans
  (older); several modes are concatenated; no mode set means mean.
- max_seq_length: sentence_bert_config.json's `max_seq_length`, else tokenizer_config.json's
  `model_max_length` capped at `max_position_embeddings`. Here it is also capped at the positions
  the model can embed (RoBERTa-style models start positions at pad_token_id + 1: XLM-R's 514 are
  512 tokens), which sentence-transformers does not do: it would fail on such an input.
- the default prompt (`default_prompt_name` in config_sentence_transformers.json) is put before
  every input that does not name a prompt of its own.
- a Dense activation that is not a `torch.` class is replaced by Tanh (as sentence-transformers
  does without trust_remote_code).

Why one module of ~420 lines: reading a folder is one job whose parts check each other (the
pooling width against the transformer's, Dense shapes against their config, the tokenizer
against sentence_bert_config.json); each refusal is one line here, next to the fact it guards.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

from embbench.config.model import (
    ACTIVATION_FUNCTIONS,
    DenseLayer,
    ModelSpec,
    bundled_model_path,
)
from embbench.errors import ModelError, ModelNotFoundError

# The encoders served here: AutoModel gives last_hidden_state, and the ONNX export handles them.
ENCODER_MODEL_TYPES = ("bert", "distilbert", "mpnet", "roberta", "xlm-roberta", "camembert")
# Position ids start at pad_token_id + 1 (transformers' create_position_ids_from_input_ids).
OFFSET_POSITION_MODEL_TYPES = ("roberta", "xlm-roberta", "camembert", "mpnet")
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Dense activations by torch class name (sentence-transformers saves the class's full name).
ACTIVATIONS = tuple(ACTIVATION_FUNCTIONS)
# transformers' "no limit" model_max_length (int(1e30)): anything this large means none.
_UNLIMITED = 1e29
_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                 "pytorch_model.bin.index.json")  # fmt: skip
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack")
_SKIPPED_FOLDERS = ("onnx", "openvino", ".git", ".cache")
_HASHED_BYTES = 1 << 20  # of a weights file: its first and last MiB, with its size


def read_folder(path: Path, model_id: str) -> ModelSpec:
    """The ModelSpec of the folder `path` (config/model.py read_spec caches it)."""
    return _Reader(path, model_id).spec()


class _Reader:
    """Reads one folder; `fail` raises the one-line ModelError."""

    def __init__(self, path: Path, model_id: str) -> None:
        self.path = path
        self.model_id = model_id

    def fail(self, what: str) -> ModelError:
        return ModelError(f"model {self.path}: {what}")

    def json_file(self, file: Path, required: bool = True) -> Any:
        name = file.relative_to(self.path) if file.is_relative_to(self.path) else file
        if not file.is_file():
            if required:
                raise self.fail(f"{name} is missing")
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.fail(f"{name} is not valid JSON ({str(exc).splitlines()[0]})") from None

    def spec(self) -> ModelSpec:
        modules = self.modules()
        transformer = self.path / modules[0][1] if modules else self.path
        config = self.json_file(transformer / "config.json")
        if not isinstance(config, dict):
            raise self.fail("config.json is not a JSON object")
        model_type, architecture = self.check_architecture(config)
        hidden = _int(config.get("hidden_size", config.get("dim")))
        if hidden is None:
            raise self.fail(f"config.json has no hidden_size for model_type {model_type!r}")
        positions = _int(config.get("max_position_embeddings"))
        if positions is None:
            raise self.fail("config.json has no max_position_embeddings")
        offset = 0
        if model_type in OFFSET_POSITION_MODEL_TYPES:
            offset = (_int(config.get("pad_token_id")) or 1) + 1
        max_positions = positions - offset
        self.check_weights(transformer, config, hidden, positions)
        tokenizer = self.tokenizer(transformer)
        bert_config = self.json_file(transformer / "sentence_bert_config.json", required=False)
        if bert_config is not None and not isinstance(bert_config, dict):
            raise self.fail("sentence_bert_config.json is not a JSON object")
        bert_config = bert_config or {}
        task = bert_config.get("transformer_task", "feature-extraction")
        if task != "feature-extraction":
            raise self.fail(f"sentence_bert_config.json transformer_task {task!r} is not supported")
        if bert_config.get("do_lower_case") and not _lowercases(transformer):
            raise self.fail(
                "sentence_bert_config.json do_lower_case=true with a tokenizer.json that does not "
                "lowercase is not supported"
            )
        tok_config = self.json_file(transformer / "tokenizer_config.json", required=False) or {}
        side = (
            tok_config.get("truncation_side", "right") if isinstance(tok_config, dict) else "right"
        )
        if side != "right":
            raise self.fail(f"tokenizer_config.json truncation_side {side!r} is not supported")
        seq = _int(bert_config.get("max_seq_length"))
        if seq is None:
            limit = tok_config.get("model_max_length") if isinstance(tok_config, dict) else None
            seq = positions
            if isinstance(limit, (int, float)) and 0 < limit < _UNLIMITED:
                seq = min(int(limit), positions)
        max_seq_length = max(1, min(seq, max_positions))

        pooling: tuple[str, ...] = ("mean",)
        include_prompt, normalize, dense = True, False, list[DenseLayer]()
        if modules:
            pooling, include_prompt, normalize, dense = self.head(modules[1:], hidden)
        st_config = self.json_file(self.path / "config_sentence_transformers.json", required=False)
        prompts, default_name = self.prompts(st_config)
        if not include_prompt and any(prompts.values()):
            raise self.fail(
                "Pooling include_prompt=false (prompt tokens left out of pooling) is not supported"
            )
        dimensions = dense[-1].out_features if dense else hidden * len(pooling)
        bundled = self.path == _bundled_or_none()
        return ModelSpec(
            path=str(self.path),
            model_id=self.model_id,
            transformer_path=str(transformer),
            model_type=model_type,
            architecture=architecture,
            hidden_size=hidden,
            pooling=pooling,
            normalize=normalize,
            dense=tuple(dense),
            prompts=prompts,
            default_prompt_name=default_name,
            max_seq_length=max_seq_length,
            max_positions=max_positions,
            pad_id=self.pad_id(tokenizer, config),
            dimensions=dimensions,
            fingerprint=fingerprint(self.path),
            bundled=bundled,
        )

    def modules(self) -> list[tuple[str, str, str]]:
        """(kind, path, type) of each module in modules.json; [] for a plain transformers folder."""
        listed = self.json_file(self.path / "modules.json", required=False)
        if listed is None:
            return []
        if not isinstance(listed, list) or not all(isinstance(m, dict) for m in listed):
            raise self.fail("modules.json is not a list of modules")
        found = []
        for module in listed:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            where = module.get("path")
            if not kind or not isinstance(where, str):
                raise self.fail(f"modules.json entry {module!r} lacks a type or a path")
            found.append((kind, where, str(module.get("type"))))
        if not found or found[0][0] != "Transformer":
            first = found[0][2] if found else "nothing"
            raise self.fail(f"modules.json starts with {first}, not a Transformer module")
        return found

    def head(
        self, modules: list[tuple[str, str, str]], hidden: int
    ) -> tuple[tuple[str, ...], bool, bool, list[DenseLayer]]:
        """Pooling, then any Dense, then an optional Normalize: anything else is refused."""
        pooling: tuple[str, ...] | None = None
        include_prompt, normalize, dense = True, False, []
        width = hidden
        for kind, where, type_name in modules:
            folder = self.path / where
            if normalize:
                raise self.fail(f"modules.json: {type_name} after Normalize is not supported")
            if kind == "Pooling":
                if pooling is not None:
                    raise self.fail("modules.json has two Pooling modules")
                conf = self.json_file(folder / "config.json")
                if not isinstance(conf, dict):
                    raise self.fail(f"{where}/config.json is not a JSON object")
                pooling = self.pooling_modes(conf, where)
                include_prompt = bool(conf.get("include_prompt", True))
                declared = _int(
                    conf.get("embedding_dimension", conf.get("word_embedding_dimension"))
                )
                if declared is not None and declared != hidden:
                    raise self.fail(
                        f"{where}/config.json embedding dimension {declared} does not match "
                        f"the transformer's hidden_size {hidden}"
                    )
                width = hidden * len(pooling)
            elif kind == "Dense":
                if pooling is None:
                    raise self.fail("modules.json: Dense before Pooling is not supported")
                layer = self.dense(folder, where, width)
                dense.append(layer)
                width = layer.out_features
            elif kind == "Normalize":
                normalize = True
            else:
                raise self.fail(f"modules.json: module {type_name} ({where}) is not supported")
        if pooling is None:
            raise self.fail("modules.json has no Pooling module")
        return pooling, include_prompt, normalize, dense

    def pooling_modes(self, conf: dict[str, Any], where: str) -> tuple[str, ...]:
        mode = conf.get("pooling_mode")
        if mode is None:
            modes = tuple(m for key, m in _LEGACY_POOLING.items() if conf.get(key))
            unknown = [k for k, v in conf.items() if k.startswith("pooling_mode_") and v
                       and k not in _LEGACY_POOLING]  # fmt: skip
            if unknown:
                raise self.fail(f"{where}/config.json {unknown[0]} is not supported")
            return modes or ("mean",)
        modes = (mode,) if isinstance(mode, str) else tuple(mode) if isinstance(mode, list) else ()
        if not modes:
            raise self.fail(f"{where}/config.json pooling_mode {mode!r} is not supported")
        for each in modes:
            if each not in POOLING_MODES:
                raise self.fail(f"{where}/config.json pooling_mode {each!r} is not supported")
        return modes

    def dense(self, folder: Path, where: str, width: int) -> DenseLayer:
        conf = self.json_file(folder / "config.json")
        if not isinstance(conf, dict):
            raise self.fail(f"{where}/config.json is not a JSON object")
        size_in, size_out = _int(conf.get("in_features")), _int(conf.get("out_features"))
        if size_in is None or size_out is None:
            raise self.fail(f"{where}/config.json lacks in_features or out_features")
        if size_in != width:
            raise self.fail(f"{where} takes {size_in} features but its input has {width}")
        for key in ("module_input_name", "module_output_name"):
            if conf.get(key, "sentence_embedding") != "sentence_embedding":
                raise self.fail(f"{where}/config.json {key} {conf[key]!r} is not supported")
        activation = str(conf.get("activation_function", "torch.nn.modules.activation.Tanh"))
        name = activation.rsplit(".", 1)[-1] if activation.startswith("torch.") else "Tanh"
        if name not in ACTIVATIONS:
            raise self.fail(f"{where} activation_function {activation} is not supported")
        layer = DenseLayer(
            folder=str(folder),
            in_features=size_in,
            out_features=size_out,
            bias=bool(conf.get("bias", True)),
            activation=name,
            residual=bool(conf.get("use_residual", False)),
        )
        shapes = _tensor_shapes(folder)
        if shapes is None:
            raise self.fail(f"{where} has no model.safetensors or pytorch_model.bin")
        want = [size_out, size_in]
        if shapes and shapes.get("linear.weight") not in (None, want):
            raise self.fail(
                f"{where} linear.weight has shape {shapes['linear.weight']}, its config says {want}"
            )
        return layer

    def prompts(self, st_config: Any) -> tuple[dict[str, str], str | None]:
        if st_config is None:
            return {}, None
        if not isinstance(st_config, dict):
            raise self.fail("config_sentence_transformers.json is not a JSON object")
        prompts = st_config.get("prompts") or {}
        if not isinstance(prompts, dict):
            raise self.fail("config_sentence_transformers.json prompts is not an object")
        prompts = {str(k): str(v) for k, v in prompts.items() if v is not None}
        default = st_config.get("default_prompt_name")
        if default is not None and default not in prompts:
            raise self.fail(
                f"config_sentence_transformers.json default_prompt_name {default!r} "
                "is not one of its prompts"
            )
        return prompts, default

    def check_architecture(self, config: dict[str, Any]) -> tuple[str, str]:
        model_type = str(config.get("model_type", ""))
        architectures = config.get("architectures") or []
        architecture = str(architectures[0]) if architectures else model_type
        if config.get("is_encoder_decoder") or model_type in ("t5", "mt5", "bart", "umt5"):
            raise self.fail(
                f"model_type {model_type!r} is an encoder-decoder model; embbench serves encoders "
                f"({', '.join(ENCODER_MODEL_TYPES)})"
            )
        if config.get("is_decoder") or architecture.endswith("ForCausalLM"):
            raise self.fail(
                f"model_type {model_type!r} ({architecture}) is a decoder model; embbench serves "
                f"encoders ({', '.join(ENCODER_MODEL_TYPES)})"
            )
        if model_type not in ENCODER_MODEL_TYPES:
            raise self.fail(
                f"model_type {model_type!r} is not supported "
                f"(supported: {', '.join(ENCODER_MODEL_TYPES)})"
            )
        return model_type, architecture

    def check_weights(
        self, folder: Path, config: dict[str, Any], hidden: int, positions: int
    ) -> None:
        if not any((folder / name).is_file() for name in _WEIGHT_NAMES):
            raise self.fail("no weights file (model.safetensors or pytorch_model.bin)")
        shapes = _safetensors_shapes(folder / "model.safetensors")
        if not shapes:
            return
        vocab = _int(config.get("vocab_size"))
        for key, shape in shapes.items():
            if key.endswith("embeddings.word_embeddings.weight"):
                want = [vocab, hidden]
            elif key.endswith("embeddings.position_embeddings.weight"):
                want = [positions, hidden]
            else:
                continue
            if shape != want:
                raise self.fail(
                    f"model.safetensors {key} has shape {shape}, config.json says {want}"
                )

    def tokenizer(self, folder: Path) -> Any:
        from tokenizers import Tokenizer

        file = folder / "tokenizer.json"
        if not file.is_file():
            raise ModelNotFoundError(
                f"model folder {self.path} lacks tokenizer.json (a fast tokenizer is needed)"
            )
        try:
            return Tokenizer.from_file(str(file))
        except Exception as exc:  # tokenizers raises its own Exception type
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise self.fail(f"tokenizer.json cannot be read by tokenizers ({first})") from None

    def pad_id(self, tokenizer: Any, config: dict[str, Any]) -> int:
        padding = tokenizer.padding
        if padding and isinstance(padding.get("pad_id"), int):
            return int(padding["pad_id"])
        for token in ("[PAD]", "<pad>"):
            found = tokenizer.token_to_id(token)
            if found is not None:
                return int(found)
        return _int(config.get("pad_token_id")) or 0


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bundled_or_none() -> Path | None:
    try:
        return bundled_model_path().resolve()
    except ImportError:
        return None


def _lowercases(folder: Path) -> bool:
    try:
        normalizer = json.loads((folder / "tokenizer.json").read_text()).get("normalizer") or {}
    except (OSError, ValueError):
        return False
    text = json.dumps(normalizer)
    return '"Lowercase"' in text or '"lowercase": true' in text


def _safetensors_shapes(file: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors file's header (8-byte length, then JSON); {} if none."""
    try:
        with open(file, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > 100_000_000:
                return {}
            header = json.loads(handle.read(size))
    except (OSError, ValueError, struct.error):
        return {}
    return {k: list(v["shape"]) for k, v in header.items() if isinstance(v, dict) and "shape" in v}


def _tensor_shapes(folder: Path) -> dict[str, list[int]] | None:
    """A module folder's tensor shapes ({} when they cannot be read cheaply); None: no weights."""
    if (folder / "model.safetensors").is_file():
        return _safetensors_shapes(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return {}
    return None


# -- the fingerprint ----------------------------------------------------------------------------


def model_files(path: Path) -> list[Path]:
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_FOLDERS)
        found += [Path(root, name) for name in sorted(names) if name != "README.md"]
    return found


def fingerprint(path: Path) -> str:
    """sha256 over each file's name and content; a weights file counts by its size and its
    first and last MiB (reading a GB to name a model is not worth it)."""
    digest = hashlib.sha256()
    for file in model_files(path):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        size = file.stat().st_size
        if file.suffix in _WEIGHT_SUFFIXES and size > 2 * _HASHED_BYTES:
            with open(file, "rb") as handle:
                head = handle.read(_HASHED_BYTES)
                handle.seek(size - _HASHED_BYTES)
                tail = handle.read(_HASHED_BYTES)
            digest.update(f"{size}\0".encode() + hashlib.sha256(head + tail).digest())
        else:
            digest.update(f"{size}\0".encode() + hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()
