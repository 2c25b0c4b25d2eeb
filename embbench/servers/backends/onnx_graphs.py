"""How an ONNX graph is made from a model folder: the exporters (fused, dynamo, TorchScript),
the check of each graph against torch, and dynamic int8 quantisation. onnx_export.py decides
which file is needed and caches it; this module only writes one file when asked. torch,
transformers and onnxruntime's tools are imported inside the functions: a server that finds its
file in the cache never loads them."""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

OPSET = 18
# The architectures onnxruntime's transformer optimizer knows as "bert" (config.json model_type).
FUSED_MODEL_TYPES = ("bert",)
# What `quantize="int8"` means; part of the cache key, so changing it re-quantises.
INT8_SETTINGS: dict[str, Any] = {
    "method": "quantize_dynamic",
    "weight_type": "QInt8",
    "per_channel": True,
    # This box has AVX-512 VNNI, where U8S8 products accumulate in int32. On AVX2 without VNNI
    # the U8S8 kernel adds pairs of products in int16 and can saturate; ORT's advice there is
    # reduce_range=True (7-bit weights). Not needed here, and it cost accuracy in a trial.
    "reduce_range": False,
    "pre_process": True,
}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "last_hidden_state"


def export_checked(torch: Any, model: Any, kind: str, file: Path) -> None:
    import inspect

    names = [n for n in INPUTS if n in inspect.signature(model.forward).parameters]
    if names[:2] != ["input_ids", "attention_mask"]:
        raise ValueError(f"the model does not take input_ids and attention_mask: {names}")

    # A wrapper called with keywords (transformers 5's BertModel.forward takes more positional
    # parameters than before, so the TorchScript exporter's positional call fails) that returns
    # only the one output used (the pooler head would otherwise run and be exported for nothing).
    if "token_type_ids" in names:

        class Wrapper(torch.nn.Module):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state

    else:

        class Wrapper(torch.nn.Module):  # type: ignore[misc,no-redef]
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.model(
                    input_ids=input_ids, attention_mask=attention_mask
                ).last_hidden_state

    # Batch 2, sequence 8: sizes 0 and 1 are specialised by torch.export, and batch and sequence
    # must differ so the two axes are not unified.
    ids = torch.full((2, 8), token_ids(model)[0], dtype=torch.int64)
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    example["token_type_ids"] = torch.zeros_like(ids)
    args = tuple(example[n] for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    wrapper = Wrapper().eval()
    if kind == "dynamo":
        with warnings.catch_warnings():
            # Harmless: inputs share the "batch"/"sequence" names, and torch's own pytree use.
            warnings.filterwarnings("ignore", "# The axis name", UserWarning)
            warnings.filterwarnings("ignore", ".*LeafSpec", FutureWarning)
            torch.onnx.export(
                wrapper,
                args,
                str(file),
                input_names=names,
                output_names=[OUTPUT],
                dynamic_shapes=tuple(axes[n] for n in names),
                opset_version=OPSET,
                dynamo=True,
                external_data=False,  # one self-contained file; fine below ONNX's 2 GB limit
                verbose=False,
            )
    else:
        torch.onnx.export(
            wrapper,
            args,
            str(file),
            input_names=names,
            output_names=[OUTPUT],
            dynamic_axes={**axes, OUTPUT: {0: "batch", 1: "sequence"}},
            opset_version=OPSET,
            dynamo=False,
        )
    check_against_torch(torch, model, names, file)


def export_fused(torch: Any, model: Any, model_dir: Path, file: Path) -> None:
    """TorchScript export, then onnxruntime's transformer fusions (module docstring); refused
    (so the next exporter is tried) unless every layer's attention was fused."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") not in FUSED_MODEL_TYPES:
        raise ValueError(f"no fusions for model_type {config.get('model_type')!r}")
    plain = file.with_name(file.name + ".plain")  # a temporary of the target's: cleaned alike
    try:
        export_checked(torch, model, "torchscript", plain)
        fused = optimizer.optimize_model(
            str(plain),
            model_type="bert",
            num_heads=int(config["num_attention_heads"]),
            hidden_size=int(config["hidden_size"]),
            optimization_options=FusionOptions("bert"),
            opt_level=0,  # fusions only; the session applies onnxruntime's own at load time
        )
    finally:
        plain.unlink(missing_ok=True)
    layers = int(config.get("num_hidden_layers", 0))
    attention = fused.get_fused_operator_statistics().get("Attention", 0)
    if layers < 1 or attention != layers:
        raise ValueError(f"{attention} of {layers} attention layers fused")
    fused.save_model_to_file(str(file))
    names = [i.name for i in fused.model.graph.input]
    check_against_torch(torch, model, names, file)


def check_against_torch(torch: Any, model: Any, names: list[str], file: Path) -> None:
    """Run the exported file at shapes other than the example's, with padding, against torch.

    Catches graphs that load but had a dimension frozen at export time.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    low, high = token_ids(model)
    for batch, seq in ((1, 5), (3, 13)):
        ids = rng.integers(low, high, size=(batch, seq), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[-1, seq // 2 :] = 0
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feed = {n: feed[n] for n in names}
        got = session.run([OUTPUT], feed)[0]
        with torch.inference_mode():
            want = model(**{n: torch.from_numpy(v) for n, v in feed.items()}).last_hidden_state
        # Padded positions are not compared: pooling never reads them, and a fused attention
        # op may leave other values there than torch does.
        kept = mask.astype(bool)
        err = float(np.abs(got[kept] - want.numpy()[kept]).max()) if got.shape == want.shape else 0
        if got.shape != tuple(want.shape) or not err < 1e-3:
            raise ValueError(f"exported graph differs from torch at {(batch, seq)}: max {err}")


def token_ids(model: Any) -> tuple[int, int]:
    """A range of ordinary token ids for the examples: 1000-2000, or the upper half of a small
    vocabulary (a tiny test model's)."""
    vocab = int(getattr(model.config, "vocab_size", 30522) or 30522)
    return (1000, 2000) if vocab >= 2000 else (vocab // 2, vocab)


def quantize_int8(fp32: Path, file: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = fp32
    # Named after `file` (itself a temporary of the target), so a kill leaves nothing that
    # remove_stale_temporaries does not find.
    with tempfile.TemporaryDirectory(dir=file.parent, prefix=f"{file.name}.pre-") as tmp:
        if INT8_SETTINGS["pre_process"]:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = Path(tmp) / "pre.onnx"
            try:
                # Symbolic shape inference gives up on the dynamo graph ("Incomplete symbolic
                # shape inference"); ONNX shape inference plus ORT's basic optimisations
                # (constant folding) is what is left, and it is harmless here (36 of 36 weight
                # MatMuls are quantised with or without it) but may help other graphs.
                quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
                source = pre
            except Exception as exc:
                log.warning("quant_pre_process failed (%s); quantising the export as is", exc)
        quantize_dynamic(
            str(source),
            str(file),
            weight_type=getattr(QuantType, INT8_SETTINGS["weight_type"]),
            per_channel=INT8_SETTINGS["per_channel"],
            reduce_range=INT8_SETTINGS["reduce_range"],
            # ONNX shape inference gives no types to the outputs of onnxruntime's fused ops
            # (Attention, SkipLayerNormalization); they are float, as every activation here.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
