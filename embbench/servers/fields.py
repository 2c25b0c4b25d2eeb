"""The optional fields of TEI's and OpenAI's requests: their types, their defaults, their checks.

TEI's are those of its router (text-embeddings-inference, router/src/http/types.rs). /embed and
/ take `normalize` (default true), `truncate` (default: the server's auto-truncate, ours
`--truncation`), `truncation_direction` ("Right" default; "Left" keeps the end), `prompt_name`
(a key of the model's sentence-transformers `prompts`) and, in newer releases, `dimensions`;
/tokenize takes `add_special_tokens` (default true) and `prompt_name`; /decode takes `ids` and
`skip_special_tokens` (default true). OpenAI's /v1/embeddings takes `encoding_format` ("float"
default; "base64": little-endian float32 bytes) and `dimensions`; `model` and `user` are read
by nobody. Unknown fields are ignored and null means absent, as in both servers; clients send
nulls (tei-client sends `"prompt_name": null` on every call). A field of the wrong type is a
FieldError, which the API answers with 422.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embbench.servers.encoder import Embeddings, Side, TokenIds

if TYPE_CHECKING:
    from tokenizers import Encoding


class FieldError(ValueError):
    def __init__(self, message: str, error_type: str = "validation") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(frozen=True)
class EmbedFields:
    normalize: bool = True
    truncate: bool | None = None  # None: the server's truncation option
    side: Side = "right"
    prompt_name: str | None = None


def _object(payload: Any) -> Mapping[str, Any]:
    if not isinstance(payload, dict):
        raise FieldError("body must be a JSON object")
    return payload


def _bool(payload: Mapping[str, Any], key: str) -> bool | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, bool):
        raise FieldError(f"field {key!r} must be a boolean")
    return value


def _str(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, str):
        raise FieldError(f"field {key!r} must be a string")
    return value


def _int(payload: Mapping[str, Any], key: str) -> int | None:
    value = payload.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise FieldError(f"field {key!r} must be an integer")
    return value


def embed_fields(payload: Any) -> EmbedFields:
    body = _object(payload)
    normalize = _bool(body, "normalize")
    direction = _str(body, "truncation_direction")
    # TEI spells it "Right"/"Left"; huggingface_hub sends "right"/"left".
    if direction is not None and direction.lower() not in ("right", "left"):
        raise FieldError(
            f"field 'truncation_direction' must be 'Right' or 'Left', not {direction!r}"
        )
    return EmbedFields(
        normalize=True if normalize is None else normalize,
        truncate=_bool(body, "truncate"),
        side="left" if direction is not None and direction.lower() == "left" else "right",
        prompt_name=_str(body, "prompt_name"),
    )


def check_dimensions(payload: Any, width: int | None) -> None:
    """`dimensions` may only restate the model's width: no Matryoshka truncation here."""
    wanted = _int(_object(payload), "dimensions")
    if wanted is not None and wanted != width:
        raise FieldError(
            f"dimensions={wanted} is not supported: this model's embeddings have {width}",
            "unsupported",
        )


def tokenize_fields(payload: Any) -> tuple[bool, str | None]:
    """(add_special_tokens, prompt_name) of a /tokenize request."""
    body = _object(payload)
    add_special = _bool(body, "add_special_tokens")
    return add_special is not False, _str(body, "prompt_name")


def decode_fields(payload: Any) -> tuple[list[TokenIds], bool]:
    """(batch of token id lists, skip_special_tokens) of a /decode request."""
    body = _object(payload)
    ids = body.get("ids")

    def is_id(value: Any) -> bool:
        # Ids are u32 in the tokeniser: beyond that it raises instead of decoding.
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 32

    if isinstance(ids, list) and ids and all(is_id(i) for i in ids):
        batch = [ids]
    elif (
        isinstance(ids, list)
        and ids
        and all(isinstance(row, list) and all(is_id(i) for i in row) for row in ids)
    ):
        batch = ids
    else:
        raise FieldError("field 'ids' must be a list of token ids or a list of such lists")
    skip = _bool(body, "skip_special_tokens")
    return batch, skip is not False


def openai_base64(payload: Any) -> bool:
    """Whether /v1/embeddings should answer in base64 (the openai client's default)."""
    body = _object(payload)
    texts = body.get("input")
    if isinstance(texts, list) and any(isinstance(t, (int, list)) for t in texts):
        raise FieldError("token ids as input are not supported: send text", "unsupported")
    encoding = _str(body, "encoding_format")
    if encoding not in (None, "float", "base64"):
        raise FieldError(f"field 'encoding_format' must be 'float' or 'base64', not {encoding!r}")
    return encoding == "base64"


def as_base64(vectors: Embeddings) -> list[str]:
    # What the openai client decodes: numpy.frombuffer(b64decode(s), dtype="float32").
    rows = np.ascontiguousarray(vectors, dtype="<f4")
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]


def load_prompts(model_path: str) -> dict[str, str]:
    """The model's named prompts (sentence-transformers' config), as TEI reads them."""
    path = Path(model_path, "config_sentence_transformers.json")
    try:
        prompts = json.loads(path.read_text()).get("prompts") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in prompts.items()} if isinstance(prompts, dict) else {}


def with_prompt(texts: list[str], prompt_name: str | None, prompts: Mapping[str, str]) -> list[str]:
    if prompt_name is None:
        return texts
    if not prompts:
        raise FieldError(f"prompt_name {prompt_name!r} is set but this model defines no prompts")
    if prompt_name not in prompts:
        # TEI's wording: clients (tei-client's prompt_names) parse the list out of it.
        listed = ", ".join(f'"{name}"' for name in prompts)
        raise FieldError(
            f"prompt_name {prompt_name!r} is not a prompt of this model. "
            f"Available prompts: [{listed}]"
        )
    return [prompts[prompt_name] + text for text in texts]


def simple_tokens(encoding: Encoding, text: str) -> list[dict[str, Any]]:
    """TEI's /tokenize entry per token: special tokens carry no offsets; the others carry the
    slice of the input they come from (character offsets; TEI's are bytes, the same in ASCII)."""
    tokens: list[dict[str, Any]] = []
    for token_id, token, (start, stop), special in zip(
        encoding.ids, encoding.tokens, encoding.offsets, encoding.special_tokens_mask, strict=True
    ):
        if special:
            tokens.append(
                {"id": token_id, "text": token, "special": True, "start": None, "stop": None}
            )
        else:
            tokens.append(
                {
                    "id": token_id,
                    "text": text[start:stop],
                    "special": False,
                    "start": start,
                    "stop": stop,
                }
            )
    return tokens
