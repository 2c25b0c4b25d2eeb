"""The OpenVINO backend's pure parts: the int8 cache key, the calibration count, the compile
properties, the options that choose it and the correctness threshold it is held to."""

from __future__ import annotations

from pathlib import Path

import pytest

from embbench.config.options import ServerOptions, default_label
from embbench.errors import ConfigError
from embbench.run.probe import FP32_THRESHOLD, INT8_THRESHOLD, threshold_for
from embbench.servers.backends import BACKENDS, backend_facts
from embbench.servers.backends import openvino_model as ovm
from embbench.servers.backends.openvino import compile_config
from embbench.variants import autotune


def test_registered() -> None:
    assert BACKENDS["openvino"] == "embbench.servers.backends.openvino:OpenVinoBackend"


def test_options_choose_openvino_and_its_precisions() -> None:
    for quantize in ("none", "bf16", "int8"):
        ServerOptions(backend="openvino", quantize=quantize)
    assert default_label("batched", ServerOptions(backend="openvino", quantize="int8")) == (
        "batched[openvino,int8]"
    )
    with pytest.raises(ConfigError, match="bf16 needs --backend openvino"):
        ServerOptions(backend="onnx", quantize="bf16")
    with pytest.raises(ConfigError, match="int8 needs --backend onnx, openvino or fastembed"):
        ServerOptions(backend="torch", quantize="int8")


def test_precision_is_always_named() -> None:
    # A CPU with native bf16 would otherwise run "fp32" in bf16 (the module's docstring).
    assert compile_config(2, "none")["INFERENCE_PRECISION_HINT"] == "f32"
    assert compile_config(2, "int8")["INFERENCE_PRECISION_HINT"] == "f32"
    assert compile_config(2, "bf16")["INFERENCE_PRECISION_HINT"] == "bf16"
    config = compile_config(3, "none")
    assert config["INFERENCE_NUM_THREADS"] == 3 and config["NUM_STREAMS"] == 1
    with pytest.raises(ValueError, match="quantize"):
        compile_config(1, "int4")


def test_calibration_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ovm.CALIBRATION_ENV, raising=False)
    assert ovm.calibration_size() == ovm.CALIBRATION_SIZE == 300
    monkeypatch.setenv(ovm.CALIBRATION_ENV, "32")
    assert ovm.calibration_size() == 32
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv(ovm.CALIBRATION_ENV, bad)
        with pytest.raises(ConfigError, match=ovm.CALIBRATION_ENV):
            ovm.calibration_size()


def test_int8_cache_key_follows_what_made_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    fp32 = Path("/cache/model-fused-fp32-0123456789abcdef.onnx")
    name = ovm.int8_folder_name(fp32, 300)
    assert name.startswith("model-fused-0123456789abcdef-ov-int8-") and name.endswith(".ov")
    assert ovm.int8_folder_name(fp32, 300) == name
    # Another calibration count, another fp32 file, another NNCF: another model.
    assert ovm.int8_folder_name(fp32, 48) != name
    assert ovm.int8_folder_name(fp32.with_name("model-fused-fp32-fedcba.onnx"), 300) != name
    versions = {"openvino": "2026.4.1", "nncf": "9.9.9"}
    monkeypatch.setattr(ovm, "version", lambda package: versions[package])
    assert ovm.int8_folder_name(fp32, 300) != name
    key = ovm.int8_key(fp32.name, 300)
    assert key["nncf"] == "9.9.9" and key["openvino"] == "2026.4.1"
    assert key["payload"] == "mixed" and key["calibration"] == 300


def test_unknown_quantization_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quantize"):
        ovm.openvino_model(tmp_path, quantize="int4", cache_dir=str(tmp_path))


def test_thresholds() -> None:
    assert threshold_for("none", "openvino") == FP32_THRESHOLD
    assert threshold_for("bf16", "openvino") == FP32_THRESHOLD
    assert threshold_for("int8", "onnx") == INT8_THRESHOLD == threshold_for("int8")
    # Static quantisation is held closer than dynamic (probe.py says why).
    assert threshold_for("int8", "openvino") == 0.99


def test_autotune_keys_openvino_by_its_runtime_and_nncf() -> None:
    key = autotune.ceiling_key(ServerOptions(backend="openvino", quantize="int8"))
    assert key["backend"] == "openvino" and key["quantize"] == "int8"
    assert key["runtime"] == autotune.runtime_version("openvino")
    assert "nncf" in key and key["graph"]
    assert "nncf" not in autotune.ceiling_key(ServerOptions(backend="onnx"))


def test_backend_facts() -> None:
    class Plain:
        name = "plain"

    class Telling:
        name = "telling"

        def facts(self) -> dict[str, object]:
            return {"inference_precision": "f32"}

    assert backend_facts(Plain()) == {}  # type: ignore[arg-type]
    assert backend_facts(Telling()) == {"inference_precision": "f32"}  # type: ignore[arg-type]
