"""The ONNX backend: export and cache, agreement with sentence-transformers, int8 accuracy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from embbench.servers.backends import load_backend, onnx_export


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, embbench.servers.backends.onnx_runtime, embbench.servers.encoder;"
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_unknown_quantization_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quantize"):
        onnx_export.export_onnx(tmp_path, quantize="int4", cache_dir=str(tmp_path))


def test_cache_name_follows_the_weights_and_the_exporter(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"weights")
    first = onnx_export._fp32_name(model, "dynamo")
    assert onnx_export._fp32_name(model, "dynamo") == first
    assert onnx_export._fp32_name(model, "torchscript") != first
    os.utime(weights, ns=(1, 1))
    touched = onnx_export._fp32_name(model, "dynamo")
    assert touched != first
    weights.write_bytes(b"other weights")
    os.utime(weights, ns=(1, 1))
    assert onnx_export._fp32_name(model, "dynamo") != touched


def test_an_untried_exporter_comes_before_a_later_ones_cached_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cache made before "fused" was first in EXPORTERS holds a dynamo file: the fused graph
    # is made once anyway; once an exporter has failed on a model, the next one's file is used.
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    cache = tmp_path / "cache"
    cache.mkdir()
    names = {kind: cache / onnx_export._fp32_name(model, kind) for kind in onnx_export.EXPORTERS}
    names["dynamo"].write_bytes(b"dynamo graph")
    exported: list[str] = []

    def fake_export(model_dir: Path, cache: Path, candidates: list[Path]) -> Path:
        exported.append(candidates[0].name)
        candidates[0].write_bytes(b"fused graph")
        return candidates[0]

    monkeypatch.setattr(onnx_export, "_export", fake_export)
    assert onnx_export._fp32_file(model, cache) == names["fused"]
    assert exported == [names["fused"].name]
    assert onnx_export._fp32_file(model, cache) == names["fused"]  # cached: not made again
    assert len(exported) == 1

    names["fused"].unlink()
    onnx_export._failed(names["fused"]).write_text("no fusions for this model\n")
    assert onnx_export._fp32_file(model, cache) == names["dynamo"]
    assert len(exported) == 1


def test_a_model_folder_without_weights_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        onnx_export.export_onnx(tmp_path, cache_dir=str(tmp_path / "cache"))


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "out.onnx"

    def half_write(file: Path) -> None:
        file.write_bytes(b"half")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError):
        onnx_export._write_atomically(target, half_write)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_write_is_cleaned_up_at_the_next_one(tmp_path: Path) -> None:
    # What a SIGKILL during quantisation leaves: the temporary file and the pre-processing
    # folder, named after the target; another target's temporaries are not touched.
    target = tmp_path / "model-int8-abc.onnx"
    (tmp_path / ".model-int8-abc.k3j2.tmp").write_bytes(b"partial")
    (tmp_path / ".model-int8-abc.k3j2.tmp.pre-x1").mkdir()
    (tmp_path / ".model-int8-abc.k3j2.tmp.pre-x1" / "pre.onnx").write_bytes(b"partial")
    other = tmp_path / ".model-fp32-def.zz.tmp"
    other.write_bytes(b"someone else's")

    onnx_export._write_atomically(target, lambda file: file.write_bytes(b"whole"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, target.name]
    assert target.read_bytes() == b"whole"


def test_backends_are_chosen_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend("tensorrt", tmp_path, threads=1)


# --- with the real model (exports: a few seconds) ----------------------------------------------
