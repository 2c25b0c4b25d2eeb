"""The fastembed backend's pure parts: the name and local folder fastembed loads our export
from, and the variant that runs it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from embbench.config.options import ServerOptions, default_label
from embbench.errors import ConfigError, PeerUnavailableError
from embbench.servers.backends import BACKENDS
from embbench.servers.backends.fastembed import (
    MODEL_FILE,
    TOKENIZER_FILES,
    local_folder,
    model_name_for,
)
from embbench.variants import REGISTRY, get_variant


def test_registered_as_backend_and_variant() -> None:
    assert BACKENDS["fastembed"].endswith("fastembed:FastembedBackend")
    assert "fastembed" in REGISTRY
    label = default_label("fastembed", ServerOptions(backend="fastembed", quantize="int8"))
    assert label == "fastembed[fastembed,int8]"


def test_the_variant_names_its_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    variant = get_variant("fastembed")
    with pytest.raises(ConfigError, match="--backend fastembed"):
        variant.check(ServerOptions())
    with pytest.raises(ConfigError, match="--backend fastembed"):
        variant.check(ServerOptions(backend="onnx"))
    if importlib.util.find_spec("fastembed") is None:
        # `make test` without `make peers`: the one line that says what to run, not a failure.
        with pytest.raises(PeerUnavailableError, match="make peers"):
            variant.check(ServerOptions(backend="fastembed"))
    else:
        variant.check(ServerOptions(backend="fastembed"))  # the bundled model resolves


def test_one_name_per_export() -> None:
    fp32 = Path("/c/model-fused-fp32-0123.onnx")
    int8 = Path("/c/model-fused-0123-int8-4567.onnx")
    assert model_name_for(fp32) == model_name_for(fp32)
    assert model_name_for(fp32) != model_name_for(int8)
    assert model_name_for(fp32).startswith("embbench/model-fused-fp32-0123-")


def test_local_folder_links_the_export_and_the_tokenizer(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    for name in TOKENIZER_FILES[:3]:  # no config.json: fastembed does without it
        (model / name).write_text(name)
    cache = tmp_path / "cache"
    cache.mkdir()
    export = cache / "model-fused-fp32-0123.onnx"
    export.write_bytes(b"graph")
    folder = local_folder(export, model)
    assert folder.parent == cache
    assert (folder / MODEL_FILE).resolve() == export.resolve()
    for name in TOKENIZER_FILES[:3]:
        assert (folder / name).read_text() == name
    assert not (folder / "config.json").exists()
    again = local_folder(export, model)  # idempotent: the same folder, the same links
    assert again == folder
    assert sorted(p.name for p in folder.iterdir()) == sorted([MODEL_FILE, *TOKENIZER_FILES[:3]])
